//! Counts of pods per topology domain, kept up to date as pods come and go, so that
//! topology spreading and inter-pod affinity read them instead of scanning every pod in
//! every cycle (which is what kube-scheduler's PreFilter does, and why its spreading and
//! anti-affinity benchmarks run at a tenth of its basic one).
//!
//! A [`PodSet`] says which pods count (namespaces, label selector, whether pods being
//! deleted count); the cache keeps a [`Group`] per set in use, with, per topology key, the
//! number of matching pods for each value of that key found on a node (values with no pod
//! are present with 0: they are domains too). The [`AntiIndex`] counts, per distinct
//! required anti-affinity term of placed pods, the pods holding it in each domain.

use std::collections::HashMap;

use crate::model::{AffinityTerm, PodInfo};
use crate::selector::{LabelSelector, Labels};

/// Which pods a count covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodSet {
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
    pub selector: LabelSelector,
    /// Topology spreading does not count pods being deleted; inter-pod affinity does.
    pub skip_terminating: bool,
}

impl PodSet {
    /// The pods a topology spread constraint counts: its selector, in the pod's namespace.
    pub fn spread(namespace: &str, selector: &LabelSelector) -> Self {
        PodSet {
            namespaces: vec![namespace.to_string()],
            namespace_selector: None,
            selector: selector.clone(),
            skip_terminating: true,
        }
    }

    /// The pods an affinity term selects.
    pub fn term(term: &AffinityTerm) -> Self {
        let mut namespaces = term.namespaces.clone();
        namespaces.sort();
        namespaces.dedup();
        PodSet {
            namespaces,
            namespace_selector: term.namespace_selector.clone(),
            selector: term.selector.clone(),
            skip_terminating: false,
        }
    }

    pub fn matches(&self, pod: &PodInfo, namespaces: &HashMap<String, Labels>) -> bool {
        if self.skip_terminating && pod.terminating {
            return false;
        }
        let in_namespace = self.namespaces.contains(&pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| namespaces.get(&pod.namespace).is_some_and(|labels| s.matches(labels)));
        in_namespace && self.selector.matches(&pod.labels)
    }
}

/// A fast hash for domain names (FxHash's multiply-rotate): lookups of a node's domain
/// happen once per node per filter, where SipHash costs more than the rest of the check.
/// The keys are node label values, which cluster administrators set, so the weaker
/// protection against crafted collisions does not matter here.
#[derive(Clone, Copy, Default)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        for byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FxHasher>>;

/// Pods per value of one topology key.
pub type DomainCounts = FastMap<String, i64>;

/// The counts of one pod set.
#[derive(Debug)]
pub struct Group {
    pub set: PodSet,
    /// Topology key → value → matching pods.
    pub domains: HashMap<String, DomainCounts>,
    last_used: u64,
}

impl Group {
    fn add(&mut self, node_labels: &Labels, delta: i64) {
        for (key, counts) in self.domains.iter_mut() {
            if let Some(value) = node_labels.get(key) {
                *counts.entry(value.clone()).or_default() += delta;
            }
        }
    }
}

/// The groups in use. Groups not used for [`MAX_IDLE`] cycles are dropped, and at most
/// [`MAX_GROUPS`] are kept, so memory and the per-pod update cost stay bounded.
#[derive(Debug, Default)]
pub struct Groups {
    index: HashMap<PodSet, usize>,
    groups: Vec<Group>,
    cycle: u64,
}

const MAX_IDLE: u64 = 10_000;
const MAX_GROUPS: usize = 64;

impl Groups {
    pub fn get(&self, set: &PodSet) -> Option<&Group> {
        self.index.get(set).map(|i| &self.groups[*i])
    }

    pub fn get_mut(&mut self, set: &PodSet) -> Option<&mut Group> {
        self.index.get(set).map(|i| &mut self.groups[*i])
    }

    /// Adds an empty group (the caller fills it); evicts the least recently used when full.
    pub fn insert(&mut self, set: PodSet) -> &mut Group {
        if self.groups.len() >= MAX_GROUPS {
            if let Some((oldest, _)) = self.groups.iter().enumerate().min_by_key(|(_, g)| g.last_used) {
                let removed = self.groups.swap_remove(oldest);
                self.index.remove(&removed.set);
                if let Some(moved) = self.groups.get(oldest) {
                    self.index.insert(moved.set.clone(), oldest);
                }
            }
        }
        self.index.insert(set.clone(), self.groups.len());
        self.groups.push(Group { set, domains: HashMap::new(), last_used: self.cycle });
        self.groups.last_mut().expect("just pushed")
    }

    pub fn touch(&mut self, set: &PodSet) {
        let cycle = self.cycle;
        if let Some(group) = self.get_mut(set) {
            group.last_used = cycle;
        }
    }

    /// Counts (or uncounts) a pod on a node with `node_labels`.
    pub fn on_pod(&mut self, pod: &PodInfo, node_labels: &Labels, namespaces: &HashMap<String, Labels>, delta: i64) {
        for group in self.groups.iter_mut() {
            if group.set.matches(pod, namespaces) {
                group.add(node_labels, delta);
            }
        }
    }

    /// A node appeared: its values join every tracked key as (empty) domains.
    pub fn on_node(&mut self, node_labels: &Labels) {
        for group in self.groups.iter_mut() {
            for (key, counts) in group.domains.iter_mut() {
                if let Some(value) = node_labels.get(key) {
                    counts.entry(value.clone()).or_default();
                }
            }
        }
    }

    /// Ends a cycle; drops groups idle for too long.
    pub fn next_cycle(&mut self) {
        self.cycle += 1;
        if self.cycle.is_multiple_of(1024) {
            let cycle = self.cycle;
            self.groups.retain(|g| cycle - g.last_used <= MAX_IDLE);
            self.index = self.groups.iter().enumerate().map(|(i, g)| (g.set.clone(), i)).collect();
        }
    }

    pub fn clear(&mut self) {
        self.index.clear();
        self.groups.clear();
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Groups whose pod set selects namespaces by label (to rebuild when labels change).
    pub fn drop_namespace_selecting(&mut self) {
        self.groups.retain(|g| g.set.namespace_selector.is_none());
        self.index = self.groups.iter().enumerate().map(|(i, g)| (g.set.clone(), i)).collect();
    }
}

/// Placed pods' required anti-affinity terms: per distinct term (pod set and topology
/// key), how many placed pods hold it in each domain.
#[derive(Debug, Default)]
pub struct AntiIndex {
    pub terms: HashMap<(PodSet, String), DomainCounts>,
}

impl AntiIndex {
    /// Counts (or uncounts) the terms of a placed pod on a node with `node_labels`.
    pub fn on_pod(&mut self, pod: &PodInfo, node_labels: &Labels, delta: i64) {
        let Some(affinity) = &pod.affinity else { return };
        for term in &affinity.required_anti {
            let Some(value) = node_labels.get(&term.topology_key) else { continue };
            let key = (PodSet::term(term), term.topology_key.clone());
            let counts = self.terms.entry(key).or_default();
            let count = counts.entry(value.clone()).or_default();
            *count += delta;
            if *count <= 0 {
                counts.remove(value);
            }
        }
        self.terms.retain(|_, counts| !counts.is_empty());
    }

    pub fn clear(&mut self) {
        self.terms.clear();
    }
}

/// Pods per domain for one cycle: counted by scanning the cluster, or read from a group.
#[derive(Debug)]
pub enum Counts<'a> {
    Scanned(FastMap<&'a str, i64>),
    Indexed(&'a DomainCounts),
}

impl Counts<'_> {
    pub fn get(&self, value: &str) -> i64 {
        match self {
            Counts::Scanned(map) => map.get(value).copied().unwrap_or(0),
            Counts::Indexed(map) => map.get(value).copied().unwrap_or(0),
        }
    }

    /// How many domains there are (values with no pod included).
    pub fn len(&self) -> usize {
        match self {
            Counts::Scanned(map) => map.len(),
            Counts::Indexed(map) => map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn min(&self) -> Option<i64> {
        match self {
            Counts::Scanned(map) => map.values().copied().min(),
            Counts::Indexed(map) => map.values().copied().min(),
        }
    }

    pub fn total(&self) -> i64 {
        match self {
            Counts::Scanned(map) => map.values().sum(),
            Counts::Indexed(map) => map.values().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::pod;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn pod_sets_follow_namespaces_and_deletion() {
        let web = pod("w", json!({"app": "web"}), json!({}));
        let selector =
            LabelSelector::from_api(Some(&serde_json::from_value(json!({"matchLabels": {"app": "web"}})).unwrap()))
                .unwrap();
        let spread = PodSet::spread("default", &selector);
        assert!(spread.matches(&web, &HashMap::new()));
        assert!(!PodSet::spread("other", &selector).matches(&web, &HashMap::new()));
        let mut leaving = web.clone();
        leaving.terminating = true;
        assert!(!spread.matches(&leaving, &HashMap::new()), "spreading ignores pods being deleted");
        let by_label = PodSet {
            namespaces: vec![],
            namespace_selector: Some(LabelSelector::everything()),
            selector,
            skip_terminating: false,
        };
        assert!(!by_label.matches(&web, &HashMap::new()), "unknown namespace labels");
        assert!(by_label.matches(&web, &[("default".to_string(), Labels::new())].into()));
        assert!(by_label.matches(&leaving, &[("default".to_string(), Labels::new())].into()));
    }

    #[test]
    fn groups_count_per_domain_and_evict() {
        let mut groups = Groups::default();
        let selector = LabelSelector::everything();
        let set = PodSet::spread("default", &selector);
        groups.insert(set.clone()).domains.insert("zone".into(), DomainCounts::default());
        groups.on_node(&labels(&[("zone", "a")]));
        groups.on_node(&labels(&[("zone", "b")]));
        let p = pod("p", json!({}), json!({}));
        groups.on_pod(&p, &labels(&[("zone", "a")]), &HashMap::new(), 1);
        groups.on_pod(&p, &labels(&[("zone", "a")]), &HashMap::new(), 1);
        groups.on_pod(&p, &labels(&[("zone", "a")]), &HashMap::new(), -1);
        let counts = &groups.get(&set).unwrap().domains["zone"];
        assert_eq!((counts["a"], counts["b"]), (1, 0));
        for _ in 0..=MAX_IDLE + 1024 {
            groups.next_cycle();
        }
        assert!(groups.get(&set).is_none(), "idle groups are dropped");
    }

    #[test]
    fn anti_index_counts_holders() {
        let guard = pod(
            "g",
            json!({}),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}]}}}),
        );
        let mut index = AntiIndex::default();
        index.on_pod(&guard, &labels(&[("zone", "a")]), 1);
        index.on_pod(&guard, &labels(&[("zone", "a")]), 1);
        assert_eq!(index.terms.values().next().unwrap()["a"], 2);
        index.on_pod(&guard, &labels(&[("zone", "a")]), -1);
        index.on_pod(&guard, &labels(&[("zone", "a")]), -1);
        assert!(index.terms.is_empty());
    }
}
