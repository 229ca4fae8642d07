//! PodTopologySpread: DoNotSchedule constraints filter out nodes where placing the pod
//! would make its domain exceed the least-populated domain by more than maxSkew;
//! ScheduleAnyway constraints score nodes in less-populated domains higher.
//!
//! Domains are the values of the topology key over the eligible nodes (by default, those
//! matching the pod's node affinity); a domain's count is the number of pods in the pod's
//! namespace, not terminating, that the constraint's selector matches.

use std::collections::HashSet;

use crate::cache::{Cache, NodeId, NodeSlot};
use crate::framework::{Reason, MAX_SCORE};
use crate::groups::{Counts, FastMap, PodSet};
use crate::model::{tolerated, NodeInfo, PodInfo, SpreadConstraint, TaintEffect, Unsatisfiable};

/// Pods on `slot` that the constraint counts.
fn matching_pods(cache: &Cache, slot: &NodeSlot, pod: &PodInfo, constraint: &SpreadConstraint) -> i64 {
    slot.pods
        .iter()
        .map(|id| &cache.pod(*id).info)
        .filter(|p| !p.terminating && p.namespace == pod.namespace && constraint.selector.matches(&p.labels))
        .count() as i64
}

fn has_keys(node: &NodeInfo, constraints: &[&SpreadConstraint]) -> bool {
    constraints.iter().all(|c| node.labels.contains_key(&c.topology_key))
}

/// Whether a node counts as a domain of `constraint` for `pod` (node inclusion policies).
fn eligible(pod: &PodInfo, node: &NodeInfo, constraint: &SpreadConstraint) -> bool {
    (!constraint.honor_node_affinity || pod.node_affinity_matches(node))
        && (!constraint.honor_node_taints
            || node
                .taints
                .iter()
                .filter(|t| matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute))
                .all(|t| tolerated(&pod.tolerations, t)))
}

struct Counted<'a> {
    constraint: &'a SpreadConstraint,
    counts: Counts<'a>,
    min: i64,
    self_match: i64,
}

/// The counts the filter needs, computed once per cycle.
pub struct Filter<'a> {
    constraints: Vec<Counted<'a>>,
}

/// The pod sets whose counts `pod`'s constraints need (see [`crate::groups`]).
pub fn pod_sets(pod: &PodInfo) -> impl Iterator<Item = (PodSet, &str)> {
    pod.spread.iter().map(|c| (PodSet::spread(&pod.namespace, &c.selector), c.topology_key.as_str()))
}

/// Whether the cache's per-domain counts answer for `constraints`: every node holding the
/// key counts (no node affinity or taint to honor), and a node lacking one constraint's key
/// cannot hide another's domain (they share one key).
fn indexable(pod: &PodInfo, constraints: &[&SpreadConstraint]) -> bool {
    let has_node_affinity = !pod.node_selector.is_empty() || pod.required_node_affinity.is_some();
    constraints.iter().all(|c| (!c.honor_node_affinity || !has_node_affinity) && !c.honor_node_taints)
        && constraints.windows(2).all(|w| w[0].topology_key == w[1].topology_key)
}

/// Per-domain counts of `constraints` from the cache, when it keeps them.
fn indexed<'a>(pod: &PodInfo, cache: &'a Cache, constraints: &[&SpreadConstraint]) -> Option<Vec<Counts<'a>>> {
    if !indexable(pod, constraints) {
        return None;
    }
    constraints
        .iter()
        .map(|c| {
            let set = PodSet::spread(&pod.namespace, &c.selector);
            cache.domain_counts(&set, &c.topology_key).map(Counts::Indexed)
        })
        .collect()
}

/// Counts per domain by looking at every eligible node and its pods.
fn scanned<'a>(pod: &PodInfo, cache: &'a Cache, constraints: &[&SpreadConstraint]) -> Vec<Counts<'a>> {
    let mut counts: Vec<FastMap<&'a str, i64>> = vec![FastMap::default(); constraints.len()];
    for &id in cache.node_order() {
        let slot = cache.node(id);
        let Some(node) = slot.info.as_deref() else { continue };
        if !has_keys(node, constraints) {
            continue;
        }
        for (c, map) in constraints.iter().zip(counts.iter_mut()) {
            if !eligible(pod, node, c) {
                continue;
            }
            let value = node.labels[&c.topology_key].as_str();
            *map.entry(value).or_default() += matching_pods(cache, slot, pod, c);
        }
    }
    counts.into_iter().map(Counts::Scanned).collect()
}

/// Counts pods per domain for the pod's DoNotSchedule constraints; None when it has none.
pub fn pre_filter<'a>(pod: &'a PodInfo, cache: &'a Cache) -> Option<Filter<'a>> {
    let hard: Vec<&SpreadConstraint> =
        pod.spread.iter().filter(|c| c.when_unsatisfiable == Unsatisfiable::DoNotSchedule).collect();
    if hard.is_empty() {
        return None;
    }
    let counts = indexed(pod, cache, &hard).unwrap_or_else(|| scanned(pod, cache, &hard));
    let constraints = hard
        .into_iter()
        .zip(counts)
        .map(|(c, counts)| {
            let min = if (counts.len() as i64) < i64::from(c.min_domains) { 0 } else { counts.min().unwrap_or(0) };
            Counted { constraint: c, min, self_match: i64::from(c.selector.matches(&pod.labels)), counts }
        })
        .collect();
    Some(Filter { constraints })
}

impl Filter<'_> {
    pub fn filter(&self, node: &NodeInfo) -> Option<Reason> {
        for entry in &self.constraints {
            let Some(value) = node.labels.get(&entry.constraint.topology_key) else {
                return Some(Reason::SpreadMissingLabel);
            };
            let count = entry.counts.get(value);
            if count + entry.self_match - entry.min > i64::from(entry.constraint.max_skew) {
                return Some(Reason::Spread);
            }
        }
        None
    }
}

/// What scoring needs: per ScheduleAnyway constraint, counts per domain, and the weight
/// that keeps small topologies from being drowned out.
pub struct Score<'a> {
    constraints: Vec<(&'a SpreadConstraint, Counts<'a>, f64)>,
}

const HOSTNAME: &str = "kubernetes.io/hostname";

/// Prepares scoring over `feasible` nodes; None when the pod has no ScheduleAnyway constraint.
pub fn pre_score<'a>(pod: &'a PodInfo, cache: &'a Cache, feasible: &[NodeId]) -> Option<Score<'a>> {
    let soft: Vec<&SpreadConstraint> =
        pod.spread.iter().filter(|c| c.when_unsatisfiable == Unsatisfiable::ScheduleAnyway).collect();
    if soft.is_empty() {
        return None;
    }
    // The domains are those of the feasible nodes that have every key.
    let mut domains: Vec<HashSet<&'a str>> = vec![HashSet::new(); soft.len()];
    let mut qualified = 0;
    for &id in feasible {
        let Some(node) = cache.node(id).info.as_deref() else { continue };
        if !has_keys(node, &soft) {
            continue;
        }
        qualified += 1;
        for (c, values) in soft.iter().zip(domains.iter_mut()) {
            values.insert(node.labels[&c.topology_key].as_str());
        }
    }
    let counts = match indexed(pod, cache, &soft) {
        Some(counts) => counts,
        None => {
            let mut counts: Vec<FastMap<&'a str, i64>> =
                domains.iter().map(|values| values.iter().map(|v| (*v, 0)).collect()).collect();
            for &id in cache.node_order() {
                let slot = cache.node(id);
                let Some(node) = slot.info.as_deref() else { continue };
                if !has_keys(node, &soft) {
                    continue;
                }
                for (c, map) in soft.iter().zip(counts.iter_mut()) {
                    if c.topology_key == HOSTNAME || !eligible(pod, node, c) {
                        continue;
                    }
                    if let Some(count) = map.get_mut(node.labels[&c.topology_key].as_str()) {
                        *count += matching_pods(cache, slot, pod, c);
                    }
                }
            }
            counts.into_iter().map(Counts::Scanned).collect()
        }
    };
    let constraints = soft
        .into_iter()
        .zip(counts)
        .zip(domains)
        .map(|((c, counts), values)| {
            let size = if c.topology_key == HOSTNAME { qualified } else { values.len() };
            (c, counts, ((size + 2) as f64).ln())
        })
        .collect();
    Some(Score { constraints })
}

impl Score<'_> {
    /// The raw score (more matching pods in the node's domains: higher), or None for a
    /// node missing a topology key (scored 0 after normalization).
    pub fn score(&self, cache: &Cache, pod: &PodInfo, id: NodeId) -> Option<i64> {
        let slot = cache.node(id);
        let node = slot.info.as_deref()?;
        let mut total = 0.0;
        for (c, counts, weight) in &self.constraints {
            let value = node.labels.get(&c.topology_key)?;
            let count = if c.topology_key == HOSTNAME { matching_pods(cache, slot, pod, c) } else { counts.get(value) };
            total += count as f64 * weight + f64::from(c.max_skew - 1);
        }
        Some(total.round() as i64)
    }
}

/// Fewer matching pods is better: maps raw scores to 0..=100 as kube-scheduler does
/// (`100 * (max + min - s) / max`); nodes without a score get 0.
pub fn normalize(raw: &[Option<i64>]) -> Vec<i64> {
    let known = raw.iter().flatten();
    let min = known.clone().copied().min().unwrap_or(0);
    let max = known.copied().max().unwrap_or(0);
    raw.iter()
        .map(|s| match s {
            None => 0,
            Some(_) if max == 0 => MAX_SCORE,
            Some(s) => MAX_SCORE * (max + min - s) / max,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache, id, node, pod};
    use serde_json::json;

    fn spread(name: &str, when: &str, skew: i32) -> PodInfo {
        pod(
            name,
            json!({"app": "web"}),
            json!({"topologySpreadConstraints": [{
                "maxSkew": skew, "topologyKey": "zone", "whenUnsatisfiable": when,
                "labelSelector": {"matchLabels": {"app": "web"}}
            }]}),
        )
    }

    fn web(name: &str) -> PodInfo {
        pod(name, json!({"app": "web"}), json!({}))
    }

    fn zoned() -> Cache {
        cache(
            vec![
                node("a1", "4", "8Gi", json!({"zone": "a"}), json!({})),
                node("a2", "4", "8Gi", json!({"zone": "a"}), json!({})),
                node("b1", "4", "8Gi", json!({"zone": "b"}), json!({})),
                node("nozone", "4", "8Gi", json!({}), json!({})),
            ],
            vec![
                (web("w1"), "a1"),
                (web("w2"), "a2"),
                (web("w3"), "b1"),
                (pod("other", json!({"app": "db"}), json!({})), "b1"),
            ],
        )
    }

    #[test]
    fn do_not_schedule_keeps_skew_within_bounds() {
        let c = zoned();
        let p = spread("p", "DoNotSchedule", 1);
        let state = pre_filter(&p, &c).unwrap();
        let info = |name: &str| c.node(id(&c, name)).info.clone().unwrap();
        // Zone a has 2, b has 1: a third in a would make 3 - 1 = 2 > 1.
        assert_eq!(state.filter(&info("a1")), Some(Reason::Spread));
        assert_eq!(state.filter(&info("b1")), None);
        assert_eq!(state.filter(&info("nozone")), Some(Reason::SpreadMissingLabel));
        let loose = spread("q", "DoNotSchedule", 2);
        assert_eq!(pre_filter(&loose, &c).unwrap().filter(&info("a1")), None);
        assert!(pre_filter(&web("plain"), &c).is_none());
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let c = zoned();
        let p = pod(
            "p",
            json!({"app": "web"}),
            json!({"topologySpreadConstraints": [{
                "maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 3,
                "labelSelector": {"matchLabels": {"app": "web"}}
            }]}),
        );
        let state = pre_filter(&p, &c).unwrap();
        let b1 = c.node(id(&c, "b1")).info.clone().unwrap();
        let a1 = c.node(id(&c, "a1")).info.clone().unwrap();
        // Only 2 of 3 required domains exist: the minimum is 0, so b (1 + 1 - 0 = 2) fits, a (3) not.
        assert_eq!(state.filter(&b1), None);
        assert_eq!(state.filter(&a1), Some(Reason::Spread));
    }

    #[test]
    fn node_affinity_limits_the_domains() {
        let c = zoned();
        let p = pod(
            "p",
            json!({"app": "web"}),
            json!({
            "nodeSelector": {"zone": "a"},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": {"matchLabels": {"app": "web"}}}]}),
        );
        // Only zone a is a domain (min 2): a third pod there has skew 1.
        let a1 = c.node(id(&c, "a1")).info.clone().unwrap();
        assert_eq!(pre_filter(&p, &c).unwrap().filter(&a1), None);
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let c = zoned();
        let p = spread("p", "ScheduleAnyway", 1);
        let feasible: Vec<NodeId> = ["a1", "b1", "nozone"].iter().map(|n| id(&c, n)).collect();
        let state = pre_score(&p, &c, &feasible).unwrap();
        let raw: Vec<Option<i64>> = feasible.iter().map(|n| state.score(&c, &p, *n)).collect();
        assert_eq!(raw[2], None);
        let scores = normalize(&raw);
        assert!(scores[1] > scores[0], "zone b has fewer: {scores:?}");
        assert_eq!(scores[2], 0);
        assert_eq!(scores[1], MAX_SCORE);
    }
}
