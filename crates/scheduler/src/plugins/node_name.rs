//! NodeName: a pod that names its node fits only there.

use crate::framework::Reason;
use crate::model::{NodeInfo, PodInfo};

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    (!pod.node_name.is_empty() && pod.node_name != node.name).then_some(Reason::NodeName)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node() {
        let n1 = node("n1", "1", "1Gi", json!({}), json!({}));
        assert_eq!(filter(&pod("p", json!({}), json!({})), &n1), None);
        assert_eq!(filter(&pod("p", json!({}), json!({"nodeName": "n1"})), &n1), None);
        assert_eq!(filter(&pod("p", json!({}), json!({"nodeName": "n2"})), &n1), Some(Reason::NodeName));
    }
}
