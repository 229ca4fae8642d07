//! InterPodAffinity: required pod affinity needs a matching pod in the node's topology
//! domain (or, for the first of a group, the pod to match its own terms); required
//! anti-affinity needs none there; and pods already placed with anti-affinity keep away
//! pods they match. Preferred terms, the pod's and those of pods already placed, add or
//! subtract their weights for the domains they name.

use std::collections::HashMap;

use crate::cache::{Cache, NodeId};
use crate::framework::{Reason, MAX_SCORE};
use crate::groups::{Counts, FastMap, PodSet};
use crate::model::{AffinityTerm, NodeInfo, PodInfo};

/// A topology domain: (key, value).
type Domain<'a> = (&'a str, &'a str);

/// kube-scheduler's hardPodAffinityWeight: how much an existing pod's *required*
/// affinity to the incoming pod counts when scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

fn namespace_labels<'c>(cache: &'c Cache) -> impl Fn(&str) -> Option<&'c crate::selector::Labels> + 'c {
    move |namespace| cache.namespaces.get(namespace)
}

fn domain<'a>(node: &'a NodeInfo, key: &'a str) -> Option<Domain<'a>> {
    node.labels.get(key).map(|value| (key, value.as_str()))
}

/// Counts the filter needs, computed once per cycle.
pub struct Filter<'a> {
    pod: &'a PodInfo,
    /// Per placed pods' anti-affinity term that matches the incoming pod: its topology key
    /// and how many placed pods hold it per domain.
    existing: Vec<(&'a str, Counts<'a>)>,
    /// Per required affinity term of the incoming pod: its key and matching pods per domain.
    affinity: Vec<(&'a str, Counts<'a>)>,
    /// … per required anti-affinity term.
    anti: Vec<(&'a str, Counts<'a>)>,
    /// Whether any pod anywhere matches any required affinity term.
    affinity_found: bool,
}

/// The pod sets whose counts `pod`'s affinity terms need (see [`crate::groups`]).
pub fn pod_sets(pod: &PodInfo) -> impl Iterator<Item = (PodSet, &str)> {
    pod.affinity
        .iter()
        .flat_map(|a| a.required.iter().chain(&a.required_anti).chain(&a.preferred).chain(&a.preferred_anti))
        .map(|t| (PodSet::term(t), t.topology_key.as_str()))
}

/// Pods matching `term` per value of its topology key: from the cache's counts when it
/// keeps them, else by looking at every placed pod.
fn term_counts<'a>(term: &'a AffinityTerm, cache: &'a Cache) -> Counts<'a> {
    if let Some(counts) = cache.domain_counts(&PodSet::term(term), &term.topology_key) {
        return Counts::Indexed(counts);
    }
    let lookup = namespace_labels(cache);
    let mut counts = FastMap::default();
    for (_, placed) in cache.pods() {
        let Some(node) = cache.node(placed.node).info.as_deref() else { continue };
        if term.matches(&placed.info, &lookup) {
            if let Some((_, value)) = domain(node, &term.topology_key) {
                *counts.entry(value).or_default() += 1;
            }
        }
    }
    Counts::Scanned(counts)
}

/// None when neither the pod nor any placed pod has required (anti-)affinity that could
/// matter.
pub fn pre_filter<'a>(pod: &'a PodInfo, cache: &'a Cache) -> Option<Filter<'a>> {
    let existing: Vec<(&str, Counts<'_>)> = cache
        .anti_terms()
        .filter(|(set, _, _)| set.matches(pod, &cache.namespaces))
        .map(|(_, key, counts)| (key, Counts::Indexed(counts)))
        .collect();
    let (required, required_anti) = match &pod.affinity {
        Some(a) => (&a.required[..], &a.required_anti[..]),
        None => (&[][..], &[][..]),
    };
    if existing.is_empty() && required.is_empty() && required_anti.is_empty() {
        return None;
    }
    let affinity: Vec<(&str, Counts<'_>)> =
        required.iter().map(|t| (t.topology_key.as_str(), term_counts(t, cache))).collect();
    let anti = required_anti.iter().map(|t| (t.topology_key.as_str(), term_counts(t, cache))).collect();
    let affinity_found = affinity.iter().any(|(_, counts)| counts.total() > 0);
    Some(Filter { pod, existing, affinity, anti, affinity_found })
}

/// Pods per domain summed over the terms with the same topology key, as kube-scheduler
/// keeps them (one map keyed by topology pair for all terms).
fn merged(terms: &[(&str, Counts<'_>)], key: &str, value: &str) -> i64 {
    terms.iter().filter(|(k, _)| *k == key).map(|(_, counts)| counts.get(value)).sum()
}

impl Filter<'_> {
    fn satisfies_affinity(&self, node: &NodeInfo, cache: &Cache) -> bool {
        let Some(affinity) = &self.pod.affinity else { return true };
        let mut pods_exist = true;
        for term in &affinity.required {
            let Some((key, value)) = domain(node, &term.topology_key) else { return false };
            if merged(&self.affinity, key, value) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group with affinity to itself may go anywhere its terms allow.
        pods_exist
            || (!self.affinity_found && affinity.required.iter().all(|t| t.matches(self.pod, namespace_labels(cache))))
    }

    pub fn filter(&self, node: &NodeInfo, cache: &Cache) -> Option<Reason> {
        if !self.satisfies_affinity(node, cache) {
            return Some(Reason::Affinity);
        }
        if let Some(affinity) = &self.pod.affinity {
            let blocked = affinity.required_anti.iter().any(|term| {
                domain(node, &term.topology_key).is_some_and(|(key, value)| merged(&self.anti, key, value) > 0)
            });
            if blocked {
                return Some(Reason::AntiAffinity);
            }
        }
        let excluded =
            self.existing.iter().any(|(key, counts)| node.labels.get(*key).is_some_and(|value| counts.get(value) > 0));
        excluded.then_some(Reason::ExistingAntiAffinity)
    }
}

/// Weights per domain for scoring.
pub struct Score<'a> {
    /// The pod's preferred terms: topology key, signed weight, matching pods per domain.
    own: Vec<(&'a str, i64, Counts<'a>)>,
    /// Placed pods' terms that match the incoming pod, summed per domain.
    existing: HashMap<Domain<'a>, i64>,
    existing_keys: Vec<&'a str>,
}

fn add_terms<'a>(
    domains: &mut HashMap<Domain<'a>, i64>,
    terms: &'a [AffinityTerm],
    target: &PodInfo,
    node: &'a NodeInfo,
    sign: i64,
    weight: Option<i64>,
    cache: &Cache,
) {
    for term in terms {
        if term.matches(target, namespace_labels(cache)) {
            if let Some(d) = domain(node, &term.topology_key) {
                *domains.entry(d).or_default() += sign * weight.unwrap_or(i64::from(term.weight));
            }
        }
    }
}

/// None when no preferred term (the pod's, or a placed pod's) applies.
pub fn pre_score<'a>(pod: &'a PodInfo, cache: &'a Cache) -> Option<Score<'a>> {
    let mut own = Vec::new();
    if let Some(affinity) = pod.affinity.as_deref() {
        for (terms, sign) in [(&affinity.preferred, 1), (&affinity.preferred_anti, -1)] {
            for term in terms {
                let counts = term_counts(term, cache);
                if counts.total() > 0 {
                    own.push((term.topology_key.as_str(), sign * i64::from(term.weight), counts));
                }
            }
        }
    }
    let mut existing = HashMap::new();
    for &id in &cache.with_scoring_terms {
        let placed = cache.pod(id);
        let Some(node) = cache.node(placed.node).info.as_deref() else { continue };
        let Some(theirs) = placed.info.affinity.as_deref() else { continue };
        add_terms(&mut existing, &theirs.required, pod, node, 1, Some(HARD_POD_AFFINITY_WEIGHT), cache);
        add_terms(&mut existing, &theirs.preferred, pod, node, 1, None, cache);
        add_terms(&mut existing, &theirs.preferred_anti, pod, node, -1, None, cache);
    }
    existing.retain(|_, weight| *weight != 0);
    if own.is_empty() && existing.is_empty() {
        return None;
    }
    let mut existing_keys: Vec<&str> = existing.keys().map(|(key, _)| *key).collect();
    existing_keys.sort_unstable();
    existing_keys.dedup();
    Some(Score { own, existing, existing_keys })
}

impl Score<'_> {
    pub fn score(&self, cache: &Cache, id: NodeId) -> i64 {
        let Some(node) = cache.node(id).info.as_deref() else { return 0 };
        let own: i64 = self
            .own
            .iter()
            .filter_map(|(key, weight, counts)| node.labels.get(*key).map(|value| weight * counts.get(value)))
            .sum();
        let existing: i64 = self
            .existing_keys
            .iter()
            .filter_map(|key| node.labels.get(*key).and_then(|value| self.existing.get(&(*key, value.as_str()))))
            .sum();
        own + existing
    }
}

/// Min-max scaling to 0..=100 (all equal: all 0).
pub fn normalize(scores: &mut [i64]) {
    let min = scores.iter().copied().min().unwrap_or(0);
    let max = scores.iter().copied().max().unwrap_or(0);
    for score in scores.iter_mut() {
        *score = if max > min { MAX_SCORE * (*score - min) / (max - min) } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{cache, id, node, pod};
    use serde_json::json;

    fn term(app: &str, key: &str) -> serde_json::Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn nodes() -> Vec<NodeInfo> {
        vec![
            node("a1", "4", "8Gi", json!({"zone": "a"}), json!({})),
            node("a2", "4", "8Gi", json!({"zone": "a"}), json!({})),
            node("b1", "4", "8Gi", json!({"zone": "b"}), json!({})),
        ]
    }

    fn info(c: &Cache, name: &str) -> NodeInfo {
        (**c.node(id(c, name)).info.as_ref().unwrap()).clone()
    }

    #[test]
    fn required_affinity_needs_a_matching_pod_in_the_domain() {
        let c = cache(nodes(), vec![(pod("db", json!({"app": "db"}), json!({})), "a1")]);
        let p = pod(
            "web",
            json!({"app": "web"}),
            json!({"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("db", "zone")]}}}),
        );
        let state = pre_filter(&p, &c).unwrap();
        assert_eq!(state.filter(&info(&c, "a2"), &c), None, "same zone as the db pod");
        assert_eq!(state.filter(&info(&c, "b1"), &c), Some(Reason::Affinity));
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let c = cache(nodes(), vec![]);
        let p = pod(
            "web",
            json!({"app": "web"}),
            json!({"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("web", "zone")]}}}),
        );
        assert_eq!(pre_filter(&p, &c).unwrap().filter(&info(&c, "b1"), &c), None);
        let other = pod(
            "x",
            json!({"app": "x"}),
            json!({"affinity": {"podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("web", "zone")]}}}),
        );
        assert_eq!(pre_filter(&other, &c).unwrap().filter(&info(&c, "b1"), &c), Some(Reason::Affinity));
    }

    #[test]
    fn required_anti_affinity_both_ways() {
        let guarded = pod(
            "guard",
            json!({"app": "guard"}),
            json!({"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("web", "kubernetes.io/hostname")]}}}),
        );
        let c = cache(nodes(), vec![(pod("web1", json!({"app": "web"}), json!({})), "a1"), (guarded, "b1")]);
        let p = pod(
            "web2",
            json!({"app": "web"}),
            json!({"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [term("web", "kubernetes.io/hostname")]}}}),
        );
        let state = pre_filter(&p, &c).unwrap();
        assert_eq!(state.filter(&info(&c, "a1"), &c), Some(Reason::AntiAffinity));
        assert_eq!(state.filter(&info(&c, "a2"), &c), None);
        assert_eq!(
            state.filter(&info(&c, "b1"), &c),
            Some(Reason::ExistingAntiAffinity),
            "the guard keeps web pods away"
        );
        // A pod without terms is still subject to the existing pods' anti-affinity.
        let plain = pod("web3", json!({"app": "web"}), json!({}));
        assert_eq!(pre_filter(&plain, &c).unwrap().filter(&info(&c, "b1"), &c), Some(Reason::ExistingAntiAffinity));
        assert!(pre_filter(&pod("db", json!({"app": "db"}), json!({})), &c).is_none());
    }

    #[test]
    fn preferred_terms_score_domains() {
        let c = cache(nodes(), vec![(pod("cache", json!({"app": "cache"}), json!({})), "a1")]);
        let p = pod(
            "web",
            json!({"app": "web"}),
            json!({"affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": term("cache", "zone")}]}}}),
        );
        let state = pre_score(&p, &c).unwrap();
        let mut scores: Vec<i64> = ["a1", "a2", "b1"].iter().map(|n| state.score(&c, id(&c, n))).collect();
        assert_eq!(scores, vec![50, 50, 0]);
        normalize(&mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
        let avoid = pod(
            "w2",
            json!({"app": "web"}),
            json!({"affinity": {
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("cache", "zone")}]}}}),
        );
        let state = pre_score(&avoid, &c).unwrap();
        assert_eq!(state.score(&c, id(&c, "a1")), -10);
        assert!(pre_score(&pod("plain", json!({}), json!({})), &c).is_none());
    }
}
