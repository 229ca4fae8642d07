//! NodeUnschedulable: a cordoned node (spec.unschedulable) takes only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use crate::framework::Reason;
use crate::model::{tolerated, NodeInfo, PodInfo, Taint, TaintEffect};

pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    if !node.unschedulable {
        return None;
    }
    let taint = Taint { key: TAINT_KEY.into(), value: String::new(), effect: TaintEffect::NoSchedule };
    (!tolerated(&pod.tolerations, &taint)).then_some(Reason::Unschedulable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let cordoned = node("n1", "1", "1Gi", json!({}), json!({"spec": {"unschedulable": true}}));
        let open = node("n2", "1", "1Gi", json!({}), json!({}));
        let plain = pod("p", json!({}), json!({}));
        assert_eq!(filter(&plain, &cordoned), Some(Reason::Unschedulable));
        assert_eq!(filter(&plain, &open), None);
        let tolerant = pod(
            "t",
            json!({}),
            json!({"tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(filter(&tolerant, &cordoned), None);
    }
}
