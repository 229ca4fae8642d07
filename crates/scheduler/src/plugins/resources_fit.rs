//! NodeResourcesFit: the pod's requests must fit in what the node's allocatable leaves
//! after the pods already there (every insufficient resource is a reason), and the node
//! must have room for one more pod. Its score is LeastAllocated: the share of CPU and
//! memory left free once the pod is placed, counting pods without requests at the
//! default request.

use crate::cache::NodeSlot;
use crate::framework::{Reason, MAX_SCORE};
use crate::model::{NodeInfo, PodInfo};
use crate::resources::Resources;

pub fn filter(pod: &PodInfo, slot: &NodeSlot, node: &NodeInfo) -> Vec<Reason> {
    filter_usage(pod, &Usage::of(slot), node)
}

/// What a node's pods take, plus whatever else must be kept free there (the resources
/// of pods nominated to it).
#[derive(Clone, Debug)]
pub struct Usage<'a> {
    pub requested: std::borrow::Cow<'a, Resources>,
    pub pods: i64,
}

impl<'a> Usage<'a> {
    pub fn of(slot: &'a NodeSlot) -> Self {
        Usage { requested: std::borrow::Cow::Borrowed(&slot.requested), pods: slot.pods.len() as i64 }
    }

    /// Adds a pod that is not on the node but must be counted as if it were.
    pub fn reserve(&mut self, pod: &PodInfo) {
        self.requested.to_mut().add(&pod.requests.requests);
        self.pods += 1;
    }
}

/// [`filter`] against a given usage.
pub fn filter_usage(pod: &PodInfo, usage: &Usage<'_>, node: &NodeInfo) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let allocatable = &node.allocatable;
    let used = &*usage.requested;
    if usage.pods + 1 > allocatable.pods {
        reasons.push(Reason::TooManyPods);
    }
    let wanted = &pod.requests.requests;
    if wanted.is_zero() {
        return reasons;
    }
    if wanted.milli_cpu > 0 && wanted.milli_cpu > allocatable.milli_cpu - used.milli_cpu {
        reasons.push(Reason::Insufficient("cpu".into()));
    }
    if wanted.memory > 0 && wanted.memory > allocatable.memory - used.memory {
        reasons.push(Reason::Insufficient("memory".into()));
    }
    if wanted.ephemeral_storage > 0 && wanted.ephemeral_storage > allocatable.ephemeral_storage - used.ephemeral_storage
    {
        reasons.push(Reason::Insufficient("ephemeral-storage".into()));
    }
    for (name, amount) in &wanted.scalar {
        if *amount > 0 && *amount > allocatable.scalar(name) - used.scalar(name) {
            reasons.push(Reason::Insufficient(name.clone()));
        }
    }
    reasons
}

/// Whether [`filter`] finds nothing missing (without listing what is).
pub fn fits(pod: &PodInfo, slot: &NodeSlot, node: &NodeInfo) -> bool {
    fits_usage(pod, &Usage::of(slot), node)
}

/// [`fits`] against a given usage.
pub fn fits_usage(pod: &PodInfo, usage: &Usage<'_>, node: &NodeInfo) -> bool {
    let (allocatable, used, wanted) = (&node.allocatable, &*usage.requested, &pod.requests.requests);
    let room = |want: i64, total: i64, taken: i64| want <= 0 || want <= total - taken;
    usage.pods < allocatable.pods
        && (wanted.is_zero()
            || room(wanted.milli_cpu, allocatable.milli_cpu, used.milli_cpu)
                && room(wanted.memory, allocatable.memory, used.memory)
                && room(wanted.ephemeral_storage, allocatable.ephemeral_storage, used.ephemeral_storage)
                && wanted
                    .scalar
                    .iter()
                    .all(|(name, amount)| room(*amount, allocatable.scalar(name), used.scalar(name))))
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        0
    } else {
        (capacity - requested) * MAX_SCORE / capacity
    }
}

/// LeastAllocated over CPU and memory, weight 1 each.
pub fn score(pod: &PodInfo, slot: &NodeSlot, node: &NodeInfo) -> i64 {
    let resources = [
        (slot.nonzero_milli_cpu + pod.requests.nonzero_milli_cpu, node.allocatable.milli_cpu),
        (slot.nonzero_memory + pod.requests.nonzero_memory, node.allocatable.memory),
    ];
    let (mut total, mut weights) = (0, 0);
    for (requested, capacity) in resources {
        if capacity == 0 {
            continue;
        }
        total += least_requested(requested, capacity);
        weights += 1;
    }
    if weights == 0 {
        0
    } else {
        total / weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache, id, node, pod, sized};
    use serde_json::json;

    #[test]
    fn requests_must_fit_what_is_left() {
        let c = cache(
            vec![node("n1", "2", "4Gi", json!({}), json!({"status": {"allocatable": {"nvidia.com/gpu": "1"}}}))],
            vec![(sized("a", "1500m", "1Gi"), "n1")],
        );
        let n = id(&c, "n1");
        let (slot, info) = (c.node(n), c.node(n).info.as_ref().unwrap());
        assert!(filter(&sized("fits", "500m", "3Gi"), slot, info).is_empty());
        assert_eq!(filter(&sized("cpu", "600m", "1Gi"), slot, info), vec![Reason::Insufficient("cpu".into())]);
        assert_eq!(
            filter(&sized("both", "1", "4Gi"), slot, info),
            vec![Reason::Insufficient("cpu".into()), Reason::Insufficient("memory".into())]
        );
        let gpus = pod(
            "g",
            json!({}),
            json!({"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "2"}}}]}),
        );
        assert_eq!(filter(&gpus, slot, info), vec![Reason::Insufficient("nvidia.com/gpu".into())]);
        let storage = pod(
            "s",
            json!({}),
            json!({"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "1Gi"}}}]}),
        );
        assert_eq!(filter(&storage, slot, info), vec![Reason::Insufficient("ephemeral-storage".into())]);
    }

    #[test]
    fn pod_count_limit() {
        let small = node("n1", "2", "4Gi", json!({}), json!({"status": {"allocatable": {"pods": "1"}}}));
        let c = cache(vec![small], vec![(pod("a", json!({}), json!({})), "n1")]);
        let n = id(&c, "n1");
        let best_effort = pod("b", json!({}), json!({}));
        assert_eq!(filter(&best_effort, c.node(n), c.node(n).info.as_ref().unwrap()), vec![Reason::TooManyPods]);
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let c = cache(
            vec![node("busy", "4", "8Gi", json!({}), json!({})), node("idle", "4", "8Gi", json!({}), json!({}))],
            vec![(sized("a", "2", "4Gi"), "busy")],
        );
        let incoming = sized("p", "1", "2Gi");
        let busy = id(&c, "busy");
        let idle = id(&c, "idle");
        // busy: cpu (4-3)/4 = 25, memory (8-6)/8 = 25; idle: 75 and 75.
        assert_eq!(score(&incoming, c.node(busy), c.node(busy).info.as_ref().unwrap()), 25);
        assert_eq!(score(&incoming, c.node(idle), c.node(idle).info.as_ref().unwrap()), 75);
        // No requests: counted as 100m and 200Mi.
        let best_effort = pod("b", json!({}), json!({}));
        let expected = ((4000 - 100) * 100 / 4000 + ((8i64 << 30) - (200 << 20)) * 100 / (8 << 30)) / 2;
        assert_eq!(score(&best_effort, c.node(idle), c.node(idle).info.as_ref().unwrap()), expected);
    }
}
