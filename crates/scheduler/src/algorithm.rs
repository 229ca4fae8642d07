//! One scheduling decision, as kube-scheduler makes it: pre-filter, then filter nodes
//! (starting where the previous cycle stopped, and stopping once enough feasible nodes
//! are found), then score the feasible ones with the default weights and take the best,
//! breaking ties at random. A pod that fits nowhere gets a [`FitError`] counting why.

use std::borrow::Cow;

use crate::cache::{Cache, NodeId};
use crate::framework::{feasible_nodes_to_find, normalize, FitError, Reason};
use crate::model::PodInfo;
use crate::plugins::{
    balanced_allocation, image_locality, inter_pod_affinity, node_affinity, node_name, node_ports, node_unschedulable,
    resources_fit, taint_toleration, topology_spread, weights,
};

/// Where a pod goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub node: NodeId,
    /// Nodes filtered, and how many of them fit.
    pub evaluated: usize,
    pub feasible: usize,
}

/// The state that carries over between cycles: where to start filtering, and the
/// random source for ties.
pub struct Algorithm {
    next_start: usize,
    rng: u64,
}

impl Default for Algorithm {
    fn default() -> Self {
        Algorithm::with_seed(rand::random::<u64>() | 1)
    }
}

struct State<'a> {
    spread: Option<topology_spread::Filter<'a>>,
    affinity: Option<inter_pod_affinity::Filter<'a>>,
}

impl Algorithm {
    /// A deterministic algorithm (tests).
    pub fn with_seed(seed: u64) -> Self {
        Algorithm { next_start: 0, rng: seed.max(1) }
    }

    /// A random index below `n` (where preemption's dry runs start).
    pub fn offset(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.random() % n as u64) as usize
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64: ties only need to be broken fairly, not securely.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Makes the cache keep the per-domain pod counts that `pod`'s spread constraints and
    /// affinity terms read (cheap when it already does). Without it, [`schedule`](Self::schedule)
    /// counts by scanning the cluster, with the same result.
    pub fn prepare(&mut self, pod: &PodInfo, cache: &mut Cache) {
        for (set, key) in topology_spread::pod_sets(pod).chain(inter_pod_affinity::pod_sets(pod)) {
            cache.track(&set, key);
        }
    }

    /// Chooses a node for `pod`.
    pub fn schedule(&mut self, pod: &PodInfo, cache: &Cache) -> Result<Placement, FitError> {
        let all = cache.node_order();
        let mut error = FitError::new(all.len());
        if all.is_empty() {
            return Err(error);
        }
        let candidates: Cow<'_, [NodeId]> = match node_affinity::pre_filter(pod) {
            Some(names) => {
                let ids: Vec<NodeId> =
                    names.iter().filter_map(|n| cache.node_id(n)).filter(|id| cache.node(*id).info.is_some()).collect();
                error.add_many(Reason::PreFilter("NodeAffinity"), all.len() - ids.len());
                if ids.is_empty() {
                    return Err(error);
                }
                Cow::Owned(ids)
            }
            None => Cow::Borrowed(all),
        };
        let state = State {
            spread: topology_spread::pre_filter(pod, cache),
            affinity: inter_pod_affinity::pre_filter(pod, cache),
        };
        let wanted = feasible_nodes_to_find(candidates.len());
        let count = candidates.len();
        let start = self.next_start % count;
        let mut feasible = Vec::with_capacity(wanted);
        let mut processed = 0;
        for i in 0..count {
            let id = candidates[(start + i) % count];
            processed += 1;
            if fits(pod, cache, id, &state) {
                feasible.push(id);
                if feasible.len() >= wanted {
                    break;
                }
            }
        }
        self.next_start = (start + processed) % count;
        let node = match feasible.len() {
            0 => {
                // Only now say why, node by node: a pod that fits pays nothing for it.
                for &id in candidates.iter() {
                    if let Err(reasons) = filter(pod, cache, id, &state) {
                        error.add(&reasons);
                    }
                }
                return Err(error);
            }
            1 => feasible[0],
            _ => self.select(pod, cache, &feasible),
        };
        Ok(Placement { node, evaluated: processed, feasible: feasible.len() })
    }

    /// Scores `feasible` and picks a highest-scoring node.
    fn select(&mut self, pod: &PodInfo, cache: &Cache, feasible: &[NodeId]) -> NodeId {
        let totals = score(pod, cache, feasible);
        let mut best = 0;
        let mut ties = 0u64;
        for (i, total) in totals.iter().enumerate() {
            if *total > totals[best] {
                best = i;
                ties = 1;
            } else if *total == totals[best] {
                ties += 1;
                // Reservoir sampling: each of the tied nodes ends up chosen with equal chance.
                if self.random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        feasible[best]
    }
}

/// What `pod` finds used on a node: its pods, and the pods nominated there by a
/// preemption that have at least `pod`'s priority (kube-scheduler's
/// RunFilterPluginsWithNominatedPods; only resources and the pod count are reserved).
fn usage<'a>(pod: &PodInfo, cache: &'a Cache, id: NodeId) -> resources_fit::Usage<'a> {
    let slot = cache.node(id);
    let mut usage = resources_fit::Usage::of(slot);
    for other in &slot.nominated {
        if other.uid != pod.uid && other.priority >= pod.priority {
            usage.reserve(other);
        }
    }
    usage
}

/// The pre-filter state for `pod` on the cache as it is (preemption rebuilds it after
/// taking pods out).
pub struct Prepared<'a>(State<'a>);

impl<'a> Prepared<'a> {
    pub fn new(pod: &'a PodInfo, cache: &'a Cache) -> Self {
        Prepared(State {
            spread: topology_spread::pre_filter(pod, cache),
            affinity: inter_pod_affinity::pre_filter(pod, cache),
        })
    }

    pub fn fits(&self, pod: &PodInfo, cache: &Cache, id: NodeId) -> bool {
        fits(pod, cache, id, &self.0)
    }

    pub fn filter(&self, pod: &PodInfo, cache: &Cache, id: NodeId) -> Result<(), Vec<Reason>> {
        filter(pod, cache, id, &self.0)
    }
}

/// Whether every filter accepts the node (the same checks as [`filter`], without
/// building reasons).
fn fits(pod: &PodInfo, cache: &Cache, id: NodeId, state: &State<'_>) -> bool {
    let slot = cache.node(id);
    let Some(node) = slot.info.as_deref() else { return false };
    node_unschedulable::filter(pod, node).is_none()
        && node_name::filter(pod, node).is_none()
        && taint_toleration::tolerates(pod, node)
        && node_affinity::filter(pod, node).is_none()
        && node_ports::filter(pod, slot).is_none()
        && resources_fit::fits_usage(pod, &usage(pod, cache, id), node)
        && state.spread.as_ref().is_none_or(|s| s.filter(node).is_none())
        && state.affinity.as_ref().is_none_or(|a| a.filter(node, cache).is_none())
}

/// Runs the filters in the default profile's order; the first that rejects gives the reasons.
fn filter(pod: &PodInfo, cache: &Cache, id: NodeId, state: &State<'_>) -> Result<(), Vec<Reason>> {
    let slot = cache.node(id);
    let Some(node) = slot.info.as_deref() else { return Err(Vec::new()) };
    let single = |reason: Option<Reason>| reason.map_or(Ok(()), |r| Err(vec![r]));
    single(node_unschedulable::filter(pod, node))?;
    single(node_name::filter(pod, node))?;
    single(taint_toleration::filter(pod, node))?;
    single(node_affinity::filter(pod, node))?;
    single(node_ports::filter(pod, slot))?;
    let reasons = resources_fit::filter_usage(pod, &usage(pod, cache, id), node);
    if !reasons.is_empty() {
        return Err(reasons);
    }
    if let Some(spread) = &state.spread {
        single(spread.filter(node))?;
    }
    if let Some(affinity) = &state.affinity {
        single(affinity.filter(node, cache))?;
    }
    Ok(())
}

/// The weighted sum of every score plugin's normalized score, per feasible node.
pub fn score(pod: &PodInfo, cache: &Cache, feasible: &[NodeId]) -> Vec<i64> {
    let mut totals = vec![0i64; feasible.len()];
    let mut add = |weight: i64, scores: &[i64]| {
        for (total, score) in totals.iter_mut().zip(scores) {
            *total += weight * score;
        }
    };
    let info = |id: NodeId| cache.node(id).info.as_deref().expect("feasible nodes have objects");

    let tolerations = taint_toleration::prefer_no_schedule_tolerations(pod);
    let mut raw: Vec<i64> = feasible.iter().map(|id| taint_toleration::score(&tolerations, info(*id))).collect();
    // All zero normalizes to the same score everywhere: skip the work.
    if raw.iter().any(|s| *s != 0) {
        normalize(&mut raw, true);
        add(weights::TAINT_TOLERATION, &raw);
    }
    if !pod.preferred_node_affinity.is_empty() {
        let mut raw: Vec<i64> = feasible.iter().map(|id| node_affinity::score(pod, info(*id))).collect();
        normalize(&mut raw, false);
        add(weights::NODE_AFFINITY, &raw);
    }
    let raw: Vec<i64> = feasible.iter().map(|id| resources_fit::score(pod, cache.node(*id), info(*id))).collect();
    add(weights::RESOURCES_FIT, &raw);
    if let Some(state) = topology_spread::pre_score(pod, cache, feasible) {
        let raw: Vec<Option<i64>> = feasible.iter().map(|id| state.score(cache, pod, *id)).collect();
        add(weights::POD_TOPOLOGY_SPREAD, &topology_spread::normalize(&raw));
    }
    if let Some(state) = inter_pod_affinity::pre_score(pod, cache) {
        let mut raw: Vec<i64> = feasible.iter().map(|id| state.score(cache, *id)).collect();
        inter_pod_affinity::normalize(&mut raw);
        add(weights::INTER_POD_AFFINITY, &raw);
    }
    if balanced_allocation::applies(pod) {
        let raw: Vec<i64> =
            feasible.iter().map(|id| balanced_allocation::score(pod, cache.node(*id), info(*id))).collect();
        add(weights::BALANCED_ALLOCATION, &raw);
    }
    if image_locality::applies(cache, pod) {
        let raw: Vec<i64> = feasible.iter().map(|id| image_locality::score(cache, pod, info(*id))).collect();
        add(weights::IMAGE_LOCALITY, &raw);
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache, id, node, pod, sized};
    use serde_json::json;

    #[test]
    fn picks_the_emptiest_node() {
        let c = cache(
            vec![node("busy", "4", "8Gi", json!({}), json!({})), node("idle", "4", "8Gi", json!({}), json!({}))],
            vec![(sized("a", "3", "6Gi"), "busy")],
        );
        let placement = Algorithm::with_seed(7).schedule(&sized("p", "500m", "1Gi"), &c).unwrap();
        assert_eq!(placement.node, id(&c, "idle"));
        assert_eq!((placement.evaluated, placement.feasible), (2, 2));
    }

    #[test]
    fn the_message_counts_each_nodes_first_reason() {
        let c = cache(
            vec![
                node("small", "1", "8Gi", json!({}), json!({})),
                node(
                    "gpu1",
                    "8",
                    "8Gi",
                    json!({}),
                    json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
                ),
                node(
                    "gpu2",
                    "8",
                    "8Gi",
                    json!({}),
                    json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
                ),
            ],
            vec![],
        );
        let error = Algorithm::with_seed(1).schedule(&sized("p", "2", "1Gi"), &c).unwrap_err();
        // The tainted nodes also lack nothing, but the taint is checked first.
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}."
        );
        assert_eq!(
            Algorithm::default().schedule(&sized("p", "1", "1Gi"), &cache(vec![], vec![])).unwrap_err().to_string(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn large_clusters_stop_filtering_early_and_rotate() {
        let nodes: Vec<_> = (0..1000).map(|i| node(&format!("n{i}"), "4", "8Gi", json!({}), json!({}))).collect();
        let c = cache(nodes, vec![]);
        let mut algorithm = Algorithm::with_seed(3);
        let first = algorithm.schedule(&sized("p", "1", "1Gi"), &c).unwrap();
        assert_eq!((first.evaluated, first.feasible), (420, 420));
        let second = algorithm.schedule(&sized("q", "1", "1Gi"), &c).unwrap();
        assert_eq!(second.evaluated, 420);
        assert_eq!(algorithm.next_start, 840, "the next cycle starts where this one stopped");
    }

    #[test]
    fn prefilter_by_name_reports_the_other_nodes() {
        let c = cache(
            vec![
                node("n1", "1", "1Gi", json!({}), json!({"status": {"allocatable": {"pods": "0"}}})),
                node("n2", "1", "1Gi", json!({}), json!({})),
                node("n3", "1", "1Gi", json!({}), json!({})),
            ],
            vec![],
        );
        let pinned = pod(
            "ds",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
        );
        let error = Algorithm::with_seed(1).schedule(&pinned, &c).unwrap_err();
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 Too many pods, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
        let pinned_ok = pod(
            "ds",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n3"]}]}]}}}}),
        );
        assert_eq!(Algorithm::with_seed(1).schedule(&pinned_ok, &c).unwrap().node, id(&c, "n3"));
    }

    #[test]
    fn ties_are_broken_across_nodes() {
        let nodes: Vec<_> = (0..4).map(|i| node(&format!("n{i}"), "4", "8Gi", json!({}), json!({}))).collect();
        let c = cache(nodes, vec![]);
        let mut algorithm = Algorithm::with_seed(99);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..64 {
            seen.insert(algorithm.schedule(&sized("p", "1", "1Gi"), &c).unwrap().node);
        }
        assert_eq!(seen.len(), 4, "equal nodes are all chosen sometimes");
    }

    #[test]
    fn scores_combine_with_weights() {
        let c = cache(
            vec![
                node(
                    "spot",
                    "4",
                    "8Gi",
                    json!({"disk": "ssd"}),
                    json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}}),
                ),
                node("plain", "4", "8Gi", json!({}), json!({})),
            ],
            vec![],
        );
        // Preferring ssd (weight 2 × 100) beats the PreferNoSchedule taint (weight 3 × 100)? No: 300 > 200.
        let p = pod(
            "p",
            json!({}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}),
        );
        let feasible = [id(&c, "spot"), id(&c, "plain")];
        let totals = score(&p, &c, &feasible);
        assert!(totals[1] > totals[0], "{totals:?}");
        assert_eq!(Algorithm::with_seed(5).schedule(&p, &c).unwrap().node, id(&c, "plain"));
    }
}

/// The per-domain counts the cache keeps must give the decisions a full scan gives.
#[cfg(test)]
mod indexed_counts {
    use super::*;
    use crate::plugins::testing::{cache, node, pod};
    use serde_json::json;
    use std::sync::Arc;

    fn nodes() -> Vec<crate::model::NodeInfo> {
        (0..30)
            .map(|i| {
                node(
                    &format!("n{i}"),
                    "8",
                    "32Gi",
                    json!({"zone": format!("z{}", i % 4), "rack": format!("r{}", i % 7)}),
                    json!({}),
                )
            })
            .collect()
    }

    fn workload(i: usize) -> PodInfo {
        let group = format!("g{}", i % 5);
        let term = |key: &str| json!({"labelSelector": {"matchLabels": {"group": group}}, "topologyKey": key});
        let spec = match i % 6 {
            0 => {
                json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                                        "labelSelector": {"matchLabels": {"group": group}}}]})
            }
            1 => {
                json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("kubernetes.io/hostname")]}}})
            }
            2 => {
                json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("rack")]}}})
            }
            3 => {
                json!({"topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "ScheduleAnyway",
                                                        "labelSelector": {"matchLabels": {"group": group}}}]})
            }
            4 => {
                json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("zone")}]},
                                     "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term("rack")}]}}})
            }
            _ => json!({}),
        };
        pod(&format!("p{i}"), json!({"group": group}), spec)
    }

    #[test]
    fn indexed_and_scanned_counts_decide_alike() {
        let mut indexed = cache(nodes(), vec![]);
        let mut scanned = cache(nodes(), vec![]);
        let (mut a, mut b) = (Algorithm::with_seed(11), Algorithm::with_seed(11));
        for i in 0..300 {
            let p = Arc::new(workload(i));
            a.prepare(&p, &mut indexed);
            let left = a.schedule(&p, &indexed);
            let right = b.schedule(&p, &scanned);
            assert_eq!(
                left.as_ref().map(|x| x.node).map_err(|e| e.to_string()),
                right.as_ref().map(|x| x.node).map_err(|e| e.to_string()),
                "pod {i}"
            );
            indexed.next_cycle();
            if let Ok(placement) = left {
                indexed.assume(p.clone(), placement.node);
                scanned.assume(p, placement.node);
            }
            // Churn: pods leave, a node is relabelled, a node goes.
            if i % 17 == 16 {
                let gone = format!("uid-p{}", i - 10);
                indexed.remove_pod(&gone);
                scanned.remove_pod(&gone);
            }
            if i == 150 {
                let relabelled = node("n3", "8", "32Gi", json!({"zone": "z9", "rack": "r0"}), json!({}));
                indexed.set_node(relabelled.clone());
                scanned.set_node(relabelled);
            }
            if i == 200 {
                indexed.remove_node("n5");
                scanned.remove_node("n5");
            }
        }
    }
}
