//! DefaultPreemption, kube-scheduler's PostFilter: when a pod fits nowhere, find nodes
//! where evicting pods of lower priority would let it fit, pick the victims on each node
//! as few and as unimportant as possible (sparing pods guarded by a PodDisruptionBudget
//! first), choose one node by kube-scheduler's criteria, and report why when there is
//! none ("preemption: 0/3 nodes are available: ...").
//!
//! The dry runs take pods out of the cache itself and put them back (the cache is the
//! scheduler's snapshot, see ADR 0004), so every filter, domain count included, sees the
//! node as it would be without them.

use std::sync::Arc;

use crate::algorithm::Prepared;
use crate::cache::{Cache, NodeId, PodId, TakenPod};
use crate::framework::{FitError, Plugin, Reason};
use crate::model::PodInfo;

/// kube-scheduler's defaults: dry-run until this share of the nodes (at least the
/// absolute number) has produced a candidate.
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// Evicting `victims` from `node` makes room for the pod.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: NodeId,
    /// Most important first.
    pub victims: Vec<Arc<PodInfo>>,
    /// How many victims a PodDisruptionBudget does not allow to go.
    pub pdb_violations: usize,
}

/// Why preemption did not help; its Display is the text after "preemption: ".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoPreemption {
    /// The pod may not preempt (its policy, or its earlier victims are still terminating).
    NotEligible(&'static str),
    /// Per-node reasons, in the scheduler's usual message format.
    NoCandidates(FitError),
}

impl std::fmt::Display for NoPreemption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoPreemption::NotEligible(why) => f.write_str(why),
            NoPreemption::NoCandidates(error) => error.fmt(f),
        }
    }
}

/// Whether `pod` may preempt at all (kube-scheduler's PodEligibleToPreemptOthers).
pub fn eligible(pod: &PodInfo, cache: &Cache) -> Result<(), NoPreemption> {
    if pod.preempt_never {
        return Err(NoPreemption::NotEligible("not eligible due to preemptionPolicy=Never."));
    }
    // Victims of an earlier preemption are still leaving: wait for them rather than evict
    // more. (The cache knows the nomination before the pod's status says it.)
    let nominated = cache.nomination(&pod.uid).or_else(|| cache.node_id(&pod.nominated_node));
    if let Some(id) = nominated {
        let leaving = cache
            .node(id)
            .pods
            .iter()
            .map(|p| &cache.pod(*p).info)
            .any(|other| other.terminating && other.priority < pod.priority);
        if leaving {
            return Err(NoPreemption::NotEligible("not eligible due to a terminating pod on the nominated node."));
        }
    }
    Ok(())
}

/// Preemption cannot help on a node that a filter rejects for something evicting pods
/// does not change (kube-scheduler's UnschedulableAndUnresolvable).
fn resolvable(reasons: &[Reason]) -> bool {
    reasons.iter().all(|reason| match reason.plugin() {
        Plugin::NodeResourcesFit | Plugin::NodePorts => true,
        Plugin::PodTopologySpread => *reason == Reason::Spread,
        Plugin::InterPodAffinity => *reason != Reason::Affinity,
        _ => false,
    })
}

/// Whether `pod` is more important than `other`: higher priority, then running longer
/// (kube-scheduler's MoreImportantPod; a pod not started yet counts as started now).
fn more_important(pod: &PodInfo, other: &PodInfo) -> std::cmp::Ordering {
    other
        .priority
        .cmp(&pod.priority)
        .then(pod.start_time.unwrap_or(i64::MAX).cmp(&other.start_time.unwrap_or(i64::MAX)))
}

/// Finds where `pod` could go by preemption: a candidate, or why there is none.
/// `offset` picks where among the nodes the dry runs start (random in the scheduler).
pub fn find(pod: &PodInfo, cache: &mut Cache, offset: usize) -> Result<Candidate, NoPreemption> {
    eligible(pod, cache)?;
    let nodes: Vec<NodeId> = cache.node_order().to_vec();
    let mut why = FitError::new(nodes.len());
    let wanted =
        (nodes.len() * MIN_CANDIDATE_NODES_PERCENTAGE / 100).max(MIN_CANDIDATE_NODES_ABSOLUTE).min(nodes.len());
    let mut candidates = Vec::new();
    for i in 0..nodes.len() {
        let id = nodes[(offset + i) % nodes.len()];
        let reasons = match Prepared::new(pod, cache).filter(pod, cache, id) {
            Ok(()) => Vec::new(),
            Err(reasons) => reasons,
        };
        if !resolvable(&reasons) {
            why.add(&[Reason::PreemptionNotHelpful]);
            continue;
        }
        match select_victims(pod, cache, id) {
            Ok(candidate) => {
                candidates.push(candidate);
                if candidates.len() >= wanted {
                    break;
                }
            }
            Err(reasons) => why.add(&reasons),
        }
    }
    pick(candidates).ok_or(NoPreemption::NoCandidates(why))
}

/// The fewest, least important pods on node `id` whose eviction lets `pod` fit
/// (kube-scheduler's SelectVictimsOnNode), or the reasons it cannot fit even then.
/// The cache is as before when this returns.
pub fn select_victims(pod: &PodInfo, cache: &mut Cache, id: NodeId) -> Result<Candidate, Vec<Reason>> {
    let mut potential: Vec<PodId> = cache
        .node(id)
        .pods
        .iter()
        .copied()
        .filter(|p| {
            let other = &cache.pod(*p).info;
            other.priority < pod.priority && !other.terminating
        })
        .collect();
    if potential.is_empty() {
        return Err(vec![Reason::NoVictims]);
    }
    potential.sort_by(|a, b| more_important(&cache.pod(*a).info, &cache.pod(*b).info));
    let mut removed: Vec<TakenPod> = potential.into_iter().map(|p| cache.take_for_dry_run(p)).collect();
    if let Err(reasons) = Prepared::new(pod, cache).filter(pod, cache, id) {
        for taken in removed {
            cache.put_back(taken);
        }
        return Err(reasons);
    }
    // Reprieve as many as possible, most important first: pods a budget protects before
    // the others, so that the victims break as few budgets as they can.
    let mut budgets: Vec<(&crate::model::Budget, i32)> =
        cache.budgets.values().map(|b| (b, b.disruptions_allowed)).collect();
    let mut violating = Vec::new();
    let mut other = Vec::new();
    for taken in removed.drain(..) {
        let mut breaks = false;
        for (budget, allowed) in budgets.iter_mut() {
            if budget.guards(taken.info()) {
                *allowed -= 1;
                breaks |= *allowed < 0;
            }
        }
        if breaks {
            violating.push(taken)
        } else {
            other.push(taken)
        }
    }
    drop(budgets);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    for (taken, violates) in violating.into_iter().map(|t| (t, true)).chain(other.into_iter().map(|t| (t, false))) {
        let victim = taken.id();
        cache.put_back(taken);
        if !Prepared::new(pod, cache).fits(pod, cache, id) {
            pdb_violations += usize::from(violates);
            victims.push(cache.take_for_dry_run(victim));
        }
    }
    let mut infos: Vec<Arc<PodInfo>> = victims.iter().map(|t| t.info().clone()).collect();
    infos.sort_by(|a, b| more_important(a, b));
    for taken in victims {
        cache.put_back(taken);
    }
    Ok(Candidate { node: id, victims: infos, pdb_violations })
}

/// kube-scheduler's pickOneNodeForPreemption: fewest PDB violations, then the lowest
/// highest-priority victim, then the smallest sum of priorities, then the fewest victims,
/// then the latest start among the highest-priority victims; the first of the rest.
pub fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let highest = c.victims.first().map_or(i32::MIN, |v| v.priority);
        // Shifted so that negative priorities still add up to more with more victims.
        let sum: i64 = c.victims.iter().map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1).sum();
        let earliest_of_highest = c
            .victims
            .iter()
            .filter(|v| v.priority == highest)
            .map(|v| v.start_time.unwrap_or(i64::MAX))
            .min()
            .unwrap_or(i64::MAX);
        (c.pdb_violations, highest, sum, c.victims.len(), std::cmp::Reverse(earliest_of_highest))
    };
    let mut best: Option<(Candidate, _)> = None;
    for candidate in candidates {
        let k = key(&candidate);
        if best.as_ref().is_none_or(|(_, best_key)| k < *best_key) {
            best = Some((candidate, k));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::Algorithm;
    use crate::model::Budget;
    use crate::plugins::testing::{cache, id, node, pod};
    use crate::selector::LabelSelector;
    use serde_json::json;

    /// A pod with `priority` requesting `cpu`.
    fn prio(name: &str, priority: i32, cpu: &str) -> PodInfo {
        pod(
            name,
            json!({"app": name}),
            json!({"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}),
        )
    }

    fn names(candidate: &Candidate) -> Vec<&str> {
        candidate.victims.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn the_fewest_lowest_priority_victims() {
        let mut c = cache(
            vec![node("n1", "4", "8Gi", json!({}), json!({})), node("n2", "4", "8Gi", json!({}), json!({}))],
            vec![
                (prio("small1", 1, "1"), "n1"),
                (prio("small2", 1, "1"), "n1"),
                (prio("big", 1, "2"), "n1"),
                (prio("mid", 5, "4"), "n2"),
            ],
        );
        let before = c.node(id(&c, "n1")).requested.clone();
        let preemptor = prio("p", 10, "2");
        let n1 = id(&c, "n1");
        let on_n1 = select_victims(&preemptor, &mut c, n1).unwrap();
        assert_eq!(names(&on_n1), ["big"], "one pod of 2 CPUs rather than two of 1");
        assert_eq!(c.node(id(&c, "n1")).requested, before, "the dry run leaves the cache as it was");
        assert_eq!(c.pod_count(), 4);
        let chosen = find(&preemptor, &mut c, 0).unwrap();
        assert_eq!(chosen.node, id(&c, "n1"), "priority 1 victims beat a priority 5 one");
    }

    #[test]
    fn ties_go_to_fewer_victims_then_later_starts() {
        let mut many = prio("a1", 1, "1");
        many.start_time = Some(100);
        let c1 =
            Candidate { node: 0, victims: vec![Arc::new(many.clone()), Arc::new(many.clone())], pdb_violations: 0 };
        let c2 = Candidate { node: 1, victims: vec![Arc::new(many.clone())], pdb_violations: 0 };
        assert_eq!(pick(vec![c1.clone(), c2.clone()]).unwrap().node, 1);
        let mut late = many.clone();
        late.start_time = Some(200);
        let c3 = Candidate { node: 2, victims: vec![Arc::new(late)], pdb_violations: 0 };
        assert_eq!(pick(vec![c2.clone(), c3]).unwrap().node, 2, "the victim that started last goes");
        let violating = Candidate { node: 3, victims: vec![], pdb_violations: 1 };
        assert_eq!(pick(vec![violating, c1]).unwrap().node, 0, "fewest budget violations first");
    }

    #[test]
    fn budgets_spare_their_pods_when_another_node_will_do() {
        let build = || {
            cache(
                vec![node("n1", "4", "8Gi", json!({}), json!({})), node("n2", "4", "8Gi", json!({}), json!({}))],
                vec![(prio("db", 1, "4"), "n1"), (prio("web", 3, "4"), "n2")],
            )
        };
        let preemptor = prio("p", 10, "2");
        let mut plain = build();
        assert_eq!(find(&preemptor, &mut plain, 0).unwrap().node, id(&plain, "n1"));
        let mut guarded = build();
        guarded.budgets.insert(
            "uid-pdb".into(),
            Budget {
                namespace: "default".into(),
                selector: Some(LabelSelector::from_api_lossy(Some(
                    &serde_json::from_value(json!({"matchLabels": {"app": "db"}})).unwrap(),
                ))),
                disruptions_allowed: 0,
            },
        );
        let n1 = id(&guarded, "n1");
        let on_n1 = select_victims(&preemptor, &mut guarded, n1).unwrap();
        assert_eq!(on_n1.pdb_violations, 1);
        let chosen = find(&preemptor, &mut guarded, 0).unwrap();
        assert_eq!((chosen.node, names(&chosen)), (id(&guarded, "n2"), vec!["web"]));
    }

    #[test]
    fn preemption_policy_never_and_messages() {
        let mut c = cache(
            vec![
                node("n1", "4", "8Gi", json!({}), json!({})),
                node("n2", "4", "8Gi", json!({}), json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}})),
            ],
            vec![(prio("high", 100, "4"), "n1")],
        );
        let mut never = prio("p", 10, "2");
        never.preempt_never = true;
        assert_eq!(find(&never, &mut c, 0).unwrap_err().to_string(), "not eligible due to preemptionPolicy=Never.");
        let error = find(&prio("p", 10, "2"), &mut c, 0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        // Too big even for an empty node: the node's own reason is given.
        let error = find(&prio("huge", 1000, "8"), &mut c, 0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "0/2 nodes are available: 1 Insufficient cpu, 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn victims_still_terminating_stop_a_second_preemption() {
        let mut leaving = prio("old", 1, "4");
        leaving.terminating = true;
        let mut c = cache(vec![node("n1", "4", "8Gi", json!({}), json!({}))], vec![(leaving, "n1")]);
        let preemptor = Arc::new(prio("p", 10, "2"));
        c.nominate(preemptor.clone(), "n1");
        assert_eq!(
            find(&preemptor, &mut c, 0).unwrap_err().to_string(),
            "not eligible due to a terminating pod on the nominated node."
        );
    }

    #[test]
    fn nominated_pods_keep_room_from_lower_priority_pods() {
        let mut c = cache(vec![node("n1", "4", "8Gi", json!({}), json!({}))], vec![]);
        c.nominate(Arc::new(prio("nominated", 10, "3")), "n1");
        let error = Algorithm::with_seed(1).schedule(&prio("low", 5, "2"), &c).unwrap_err();
        assert_eq!(error.to_string(), "0/1 nodes are available: 1 Insufficient cpu.");
        assert!(Algorithm::with_seed(1).schedule(&prio("higher", 20, "2"), &c).is_ok(), "higher priority ignores it");
        c.unnominate("uid-nominated");
        assert!(Algorithm::with_seed(1).schedule(&prio("low", 5, "2"), &c).is_ok());
    }
}
