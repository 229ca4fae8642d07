//! TaintToleration: a node's NoSchedule and NoExecute taints keep out pods that do not
//! tolerate them (the message names the first such taint); PreferNoSchedule taints only
//! lower the node's score, by how many of them the pod does not tolerate.

use crate::framework::Reason;
use crate::model::{tolerated, NodeInfo, PodInfo, TaintEffect, Toleration};

pub fn filter(pod: &PodInfo, node: &NodeInfo) -> Option<Reason> {
    node.taints
        .iter()
        .filter(|t| matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute))
        .find(|t| !tolerated(&pod.tolerations, t))
        .map(|t| Reason::UntoleratedTaint { key: t.key.clone(), value: t.value.clone() })
}

/// Whether the pod tolerates every NoSchedule and NoExecute taint of the node.
pub fn tolerates(pod: &PodInfo, node: &NodeInfo) -> bool {
    node.taints.iter().all(|t| {
        !matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute) || tolerated(&pod.tolerations, t)
    })
}

/// The tolerations that count for scoring: those for PreferNoSchedule or any effect.
pub fn prefer_no_schedule_tolerations(pod: &PodInfo) -> Vec<Toleration> {
    pod.tolerations.iter().filter(|t| t.effect.is_none_or(|e| e == TaintEffect::PreferNoSchedule)).cloned().collect()
}

/// The raw score: untolerated PreferNoSchedule taints (normalized in reverse: fewer is better).
pub fn score(tolerations: &[Toleration], node: &NodeInfo) -> i64 {
    node.taints.iter().filter(|t| t.effect == TaintEffect::PreferNoSchedule && !tolerated(tolerations, t)).count()
        as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::normalize;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    fn tainted(name: &str, taints: serde_json::Value) -> NodeInfo {
        node(name, "1", "1Gi", json!({}), json!({"spec": {"taints": taints}}))
    }

    #[test]
    fn untolerated_taints_keep_pods_out() {
        let gpu = tainted("n1", json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]));
        let plain = pod("p", json!({}), json!({}));
        assert_eq!(
            filter(&plain, &gpu),
            Some(Reason::UntoleratedTaint { key: "dedicated".into(), value: "gpu".into() })
        );
        let tolerant =
            pod("t", json!({}), json!({"tolerations": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}));
        assert_eq!(filter(&tolerant, &gpu), None);
        let soft = tainted("n2", json!([{"key": "spot", "effect": "PreferNoSchedule"}]));
        assert_eq!(filter(&plain, &soft), None, "PreferNoSchedule does not filter");
        let evicting = tainted("n3", json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]));
        assert!(filter(&plain, &evicting).is_some());
    }

    #[test]
    fn prefer_no_schedule_lowers_the_score() {
        let nodes = [
            tainted("n1", json!([])),
            tainted("n2", json!([{"key": "spot", "effect": "PreferNoSchedule"}])),
            tainted(
                "n3",
                json!([{"key": "spot", "effect": "PreferNoSchedule"}, {"key": "slow", "effect": "PreferNoSchedule"}]),
            ),
        ];
        let plain = pod("p", json!({}), json!({}));
        let tolerations = prefer_no_schedule_tolerations(&plain);
        let mut scores: Vec<i64> = nodes.iter().map(|n| score(&tolerations, n)).collect();
        normalize(&mut scores, true);
        assert_eq!(scores, vec![100, 50, 0]);
        let tolerant = pod("t", json!({}), json!({"tolerations": [{"key": "spot", "operator": "Exists"}]}));
        assert_eq!(score(&prefer_no_schedule_tolerations(&tolerant), &nodes[2]), 1);
    }
}
