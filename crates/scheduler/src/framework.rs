//! The vocabulary the plugins share: why a node was rejected (in kube-scheduler's
//! words, since users read them in `kubectl describe`), which plugin said so (to know
//! which cluster changes may help a waiting pod), score normalization, and the fit error
//! whose message becomes the PodScheduled condition.

use std::collections::BTreeMap;
use std::fmt;

/// Score plugins return 0..=MAX_SCORE per node after normalization.
pub const MAX_SCORE: i64 = 100;

/// The filter plugins, as bits of a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Plugin {
    NodeName = 1,
    NodeUnschedulable = 2,
    TaintToleration = 4,
    NodeAffinity = 8,
    NodePorts = 16,
    NodeResourcesFit = 32,
    PodTopologySpread = 64,
    InterPodAffinity = 128,
    /// The PostFilter: only in preemption's own message.
    DefaultPreemption = 256,
}

impl Plugin {
    pub fn name(self) -> &'static str {
        match self {
            Plugin::NodeName => "NodeName",
            Plugin::NodeUnschedulable => "NodeUnschedulable",
            Plugin::TaintToleration => "TaintToleration",
            Plugin::NodeAffinity => "NodeAffinity",
            Plugin::NodePorts => "NodePorts",
            Plugin::NodeResourcesFit => "NodeResourcesFit",
            Plugin::PodTopologySpread => "PodTopologySpread",
            Plugin::InterPodAffinity => "InterPodAffinity",
            Plugin::DefaultPreemption => "DefaultPreemption",
        }
    }
}

/// A set of plugins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plugins(pub u16);

impl Plugins {
    pub const ALL: Plugins = Plugins(u16::MAX);

    pub fn with(self, plugin: Plugin) -> Self {
        Plugins(self.0 | plugin as u16)
    }

    pub fn of(plugins: &[Plugin]) -> Self {
        plugins.iter().fold(Plugins::default(), |set, p| set.with(*p))
    }

    pub fn intersects(self, other: Plugins) -> bool {
        self.0 & other.0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Why a node cannot take a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NodeName,
    Unschedulable,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    /// Outside the nodes a PreFilter narrowed the search to.
    PreFilter(&'static str),
    NodePorts,
    TooManyPods,
    Insufficient(String),
    SpreadMissingLabel,
    Spread,
    Affinity,
    AntiAffinity,
    ExistingAntiAffinity,
    /// Preemption: a node rejected for something evicting pods does not change.
    PreemptionNotHelpful,
    /// Preemption: no pod of lower priority on the node.
    NoVictims,
}

impl Reason {
    pub fn plugin(&self) -> Plugin {
        match self {
            Reason::NodeName => Plugin::NodeName,
            Reason::Unschedulable => Plugin::NodeUnschedulable,
            Reason::UntoleratedTaint { .. } => Plugin::TaintToleration,
            Reason::NodeAffinity | Reason::PreFilter(_) => Plugin::NodeAffinity,
            Reason::NodePorts => Plugin::NodePorts,
            Reason::TooManyPods | Reason::Insufficient(_) => Plugin::NodeResourcesFit,
            Reason::SpreadMissingLabel | Reason::Spread => Plugin::PodTopologySpread,
            Reason::Affinity | Reason::AntiAffinity | Reason::ExistingAntiAffinity => Plugin::InterPodAffinity,
            Reason::PreemptionNotHelpful | Reason::NoVictims => Plugin::DefaultPreemption,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => write!(f, "node(s) had untolerated taint {{{key}: {value}}}"),
            Reason::NodeAffinity => f.write_str("node(s) didn't match Pod's node affinity/selector"),
            Reason::PreFilter(plugin) => write!(f, "node(s) didn't satisfy plugin(s) [{plugin}]"),
            Reason::NodePorts => f.write_str("node(s) didn't have free ports for the requested pod ports"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Reason::SpreadMissingLabel => {
                f.write_str("node(s) didn't match pod topology spread constraints (missing required label)")
            }
            Reason::Spread => f.write_str("node(s) didn't match pod topology spread constraints"),
            Reason::Affinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::AntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingAntiAffinity => f.write_str("node(s) didn't satisfy existing pods anti-affinity rules"),
            Reason::PreemptionNotHelpful => f.write_str("Preemption is not helpful for scheduling"),
            Reason::NoVictims => f.write_str("No preemption victims found for incoming pod"),
        }
    }
}

/// Why a pod fits no node: how many nodes gave each reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitError {
    pub nodes: usize,
    pub reasons: BTreeMap<Reason, usize>,
    pub plugins: Plugins,
}

impl FitError {
    pub fn new(nodes: usize) -> Self {
        FitError { nodes, ..Default::default() }
    }

    /// Counts one node's rejection.
    pub fn add(&mut self, reasons: &[Reason]) {
        for reason in reasons {
            *self.reasons.entry(reason.clone()).or_default() += 1;
            self.plugins = self.plugins.with(reason.plugin());
        }
    }

    /// Counts `count` nodes rejected for `reason`.
    pub fn add_many(&mut self, reason: Reason, count: usize) {
        if count > 0 {
            self.plugins = self.plugins.with(reason.plugin());
            *self.reasons.entry(reason).or_default() += count;
        }
    }
}

impl fmt::Display for FitError {
    /// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {a: b}.`
    /// — entries are "count reason", sorted as strings, as kube-scheduler sorts them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut entries: Vec<String> = self.reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        entries.sort();
        write!(f, "0/{} nodes are available", self.nodes)?;
        if !entries.is_empty() {
            write!(f, ": {}.", entries.join(", "))?;
        }
        Ok(())
    }
}

/// kube-scheduler's DefaultNormalizeScore: scales scores so the highest is MAX_SCORE
/// (reversed: the lowest is).
pub fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_SCORE);
        }
        return;
    }
    for score in scores.iter_mut() {
        *score = MAX_SCORE * *score / max;
        if reverse {
            *score = MAX_SCORE - *score;
        }
    }
}

/// How many feasible nodes a cycle looks for before it stops filtering (kube-scheduler's
/// adaptive percentageOfNodesToScore): all of them in small clusters, then a share that
/// shrinks with size, at least 100 nodes or 5 %.
pub fn feasible_nodes_to_find(total: usize) -> usize {
    const MIN_NODES: usize = 100;
    const MIN_PERCENT: usize = 5;
    if total < MIN_NODES {
        return total;
    }
    let percent = 50usize.saturating_sub(total / 125).max(MIN_PERCENT);
    (total * percent / 100).max(MIN_NODES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_kube_schedulers() {
        let mut error = FitError::new(3);
        error.add(&[Reason::Insufficient("cpu".into())]);
        error.add(&[Reason::UntoleratedTaint { key: "dedicated".into(), value: "gpu".into() }]);
        error.add(&[Reason::UntoleratedTaint { key: "dedicated".into(), value: "gpu".into() }]);
        assert_eq!(
            error.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}."
        );
        assert_eq!(error.plugins, Plugins::of(&[Plugin::NodeResourcesFit, Plugin::TaintToleration]));
        assert_eq!(FitError::new(0).to_string(), "no nodes available to schedule pods");
        let mut both = FitError::new(1);
        both.add(&[Reason::Insufficient("cpu".into()), Reason::Insufficient("memory".into())]);
        assert_eq!(both.to_string(), "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory.");
        let mut prefilter = FitError::new(5);
        prefilter.add_many(Reason::PreFilter("NodeAffinity"), 4);
        prefilter.add(&[Reason::TooManyPods]);
        assert_eq!(
            prefilter.to_string(),
            "0/5 nodes are available: 1 Too many pods, 4 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
    }

    #[test]
    fn sorting_is_by_string() {
        let mut error = FitError::new(12);
        error.add_many(Reason::Insufficient("cpu".into()), 10);
        error.add_many(Reason::Unschedulable, 2);
        // "10 ..." sorts before "2 ..." as kube-scheduler's sort.Strings does.
        assert_eq!(error.to_string(), "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) were unschedulable.");
    }

    #[test]
    fn normalization() {
        let mut scores = vec![0, 5, 10];
        normalize(&mut scores, false);
        assert_eq!(scores, vec![0, 50, 100]);
        let mut scores = vec![0, 1, 2];
        normalize(&mut scores, true);
        assert_eq!(scores, vec![100, 50, 0]);
        let mut zeros = vec![0, 0];
        normalize(&mut zeros, true);
        assert_eq!(zeros, vec![100, 100]);
    }

    #[test]
    fn adaptive_share_of_nodes() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(100), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }
}
