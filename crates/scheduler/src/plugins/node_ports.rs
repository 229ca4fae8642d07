//! NodePorts: a host port can be bound once per node (per protocol, on overlapping IPs).

use crate::cache::NodeSlot;
use crate::framework::Reason;
use crate::model::PodInfo;

pub fn filter(pod: &PodInfo, node: &NodeSlot) -> Option<Reason> {
    let conflict = pod.host_ports.iter().any(|wanted| node.ports.iter().any(|used| used.conflicts(wanted)));
    conflict.then_some(Reason::NodePorts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache, id, node, pod};
    use serde_json::json;

    fn with_port(name: &str, port: i32, protocol: &str, ip: &str) -> crate::model::PodInfo {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": port, "protocol": protocol, "hostIP": ip}
            ]}]}),
        )
    }

    #[test]
    fn host_ports_conflict() {
        let c =
            cache(vec![node("n1", "1", "1Gi", json!({}), json!({}))], vec![(with_port("a", 8080, "TCP", ""), "n1")]);
        let n1 = c.node(id(&c, "n1"));
        assert_eq!(filter(&with_port("b", 8080, "TCP", ""), n1), Some(Reason::NodePorts));
        assert_eq!(filter(&with_port("b", 8080, "UDP", ""), n1), None, "another protocol");
        assert_eq!(filter(&with_port("b", 8081, "TCP", ""), n1), None);
        assert_eq!(filter(&with_port("b", 8080, "TCP", "10.0.0.1"), n1), Some(Reason::NodePorts), "0.0.0.0 overlaps");
        assert_eq!(filter(&pod("c", json!({}), json!({})), n1), None);
    }
}
