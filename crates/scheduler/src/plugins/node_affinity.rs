//! NodeAffinity: nodeSelector and required node affinity filter nodes; preferred terms
//! add their weights to the score. A required affinity whose every term names nodes by
//! `metadata.name` (DaemonSet pods) narrows the search to those nodes up front.

use std::collections::BTreeSet;

use crate::framework::Reason;
use crate::model::{NodeInfo, PodInfo};

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    (!pod.node_affinity_matches(node)).then_some(Reason::NodeAffinity)
}

/// The only node names the pod may go to, when its required affinity says so by name.
pub fn pre_filter(pod: &PodInfo) -> Option<BTreeSet<String>> {
    let terms = &pod.required_node_affinity.as_ref()?.0;
    let mut names = BTreeSet::new();
    for term in terms {
        names.extend(term.names()?);
    }
    (!terms.is_empty()).then_some(names)
}

/// The raw score: the weights of the preferred terms the node matches.
pub fn score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.preferred_node_affinity
        .iter()
        .filter(|(_, term)| term.matches(&node.labels, &node.name))
        .map(|(weight, _)| i64::from(*weight))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::normalize;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn selector_and_required_affinity() {
        let ssd = node("n1", "1", "1Gi", json!({"disk": "ssd", "zone": "a"}), json!({}));
        let hdd = node("n2", "1", "1Gi", json!({"disk": "hdd", "zone": "b"}), json!({}));
        let selecting = pod("p", json!({}), json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(filter(&selecting, &ssd), None);
        assert_eq!(filter(&selecting, &hdd), Some(Reason::NodeAffinity));
        let affine = pod(
            "q",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}}),
        );
        assert_eq!(filter(&affine, &ssd), Some(Reason::NodeAffinity));
        assert_eq!(filter(&affine, &hdd), None);
        assert_eq!(pre_filter(&affine), None, "not limited by name");
    }

    #[test]
    fn daemonset_style_affinity_names_its_node() {
        let pinned = pod(
            "ds",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
        );
        assert_eq!(pre_filter(&pinned), Some(["n2".to_string()].into()));
        assert_eq!(filter(&pinned, &node("n1", "1", "1Gi", json!({}), json!({}))), Some(Reason::NodeAffinity));
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let preferring = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 30, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}
            ]}}}),
        );
        let nodes = [
            node("n1", "1", "1Gi", json!({"zone": "a", "disk": "ssd"}), json!({})),
            node("n2", "1", "1Gi", json!({"zone": "a"}), json!({})),
            node("n3", "1", "1Gi", json!({}), json!({})),
        ];
        let mut scores: Vec<i64> = nodes.iter().map(|n| score(&preferring, n)).collect();
        assert_eq!(scores, vec![40, 10, 0]);
        normalize(&mut scores, false);
        assert_eq!(scores, vec![100, 25, 0]);
    }
}
