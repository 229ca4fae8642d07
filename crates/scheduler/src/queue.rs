//! The scheduling queue, kube-scheduler's three parts: pods ready to try (highest
//! priority first, then oldest), pods backing off after a failed attempt (1 s, doubling,
//! at most 10 s), and unschedulable pods, which wait for a cluster change that could help
//! them (the plugins that rejected them say which changes those are) and only then go
//! back to backoff or active. Time is passed in, so the rules are tested with plain values.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::framework::Plugins;
use crate::model::PodInfo;

/// A pod as the queue tracks it.
#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When it was first queued: orders pods of equal priority.
    pub since: Instant,
    /// When its last attempt failed.
    pub failed_at: Option<Instant>,
    /// The plugins that rejected it last.
    pub rejected_by: Plugins,
    /// The last FailedScheduling event recorded for it: (event name, count, message).
    pub last_event: Option<(String, i32, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Has scheduling gates: waits for an update that removes them.
    Gated,
}

struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Changes whenever the entry moves, so that stale heap items are skipped.
    version: u64,
}

#[derive(PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    since: Instant,
    version: u64,
    uid: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.since.cmp(&self.since))
            .then_with(|| other.version.cmp(&self.version))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Backoff limits.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// An unschedulable pod is retried after this long even without a helpful event
    /// (kube-scheduler's podMaxInUnschedulablePodsDuration), in case an event was missed.
    pub max_unschedulable: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(300),
        }
    }
}

pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// The unschedulable pods, so that a cluster change looks at them only.
    waiting: HashSet<String>,
    next_version: u64,
    limits: Backoff,
}

impl Queue {
    pub fn new(limits: Backoff) -> Self {
        Queue {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            waiting: HashSet::new(),
            next_version: 0,
            limits,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// How many pods wait as unschedulable.
    pub fn unschedulable(&self) -> usize {
        self.waiting.len()
    }

    /// Takes an entry out (it is placed again, or handed out).
    fn take(&mut self, uid: &str) -> Option<Entry> {
        self.waiting.remove(uid);
        self.entries.remove(uid)
    }

    /// The backoff after `attempts` failures: initial, doubled per attempt, capped.
    pub fn backoff_of(&self, attempts: u32) -> Duration {
        let mut duration = self.limits.initial;
        for _ in 1..attempts {
            if duration >= self.limits.max / 2 {
                return self.limits.max;
            }
            duration *= 2;
        }
        duration.min(self.limits.max)
    }

    fn backoff_until(&self, pod: &QueuedPod) -> Option<Instant> {
        pod.failed_at.map(|at| at + self.backoff_of(pod.attempts))
    }

    fn place(&mut self, mut pod: QueuedPod, place: Place) {
        self.next_version += 1;
        let version = self.next_version;
        let uid = pod.info.uid.clone();
        self.waiting.remove(&uid);
        match place {
            Place::Active => self.active.push(ActiveItem {
                priority: pod.info.priority,
                since: pod.since,
                version,
                uid: uid.clone(),
            }),
            Place::Backoff => {
                let until = self.backoff_until(&pod).unwrap_or_else(Instant::now);
                self.backoff.push(Reverse((until, version, uid.clone())));
            }
            Place::Unschedulable => {
                self.waiting.insert(uid.clone());
            }
            Place::Gated => {}
        }
        if place == Place::Gated {
            pod.rejected_by = Plugins::default();
        }
        self.entries.insert(uid, Entry { pod, place, version });
    }

    /// Active, or backoff while its backoff lasts.
    fn place_ready(&mut self, pod: QueuedPod, now: Instant) {
        let backing_off = self.backoff_until(&pod).is_some_and(|until| until > now);
        self.place(pod, if backing_off { Place::Backoff } else { Place::Active });
    }

    /// A new pending pod.
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        let gated = info.gated;
        let pod = QueuedPod {
            info,
            attempts: 0,
            since: now,
            failed_at: None,
            rejected_by: Plugins::default(),
            last_event: None,
        };
        self.place(pod, if gated { Place::Gated } else { Place::Active });
    }

    /// A pending pod changed. A change that may matter (labels, spec) sends a waiting pod
    /// back to be tried; one that does not (its status) only refreshes what is kept.
    pub fn update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let Some(entry) = self.entries.get_mut(&info.uid) else {
            self.add(info, now);
            return;
        };
        let changed = entry.pod.info.fingerprint != info.fingerprint;
        entry.pod.info = info;
        if !changed {
            return;
        }
        let place = entry.place;
        let pod = entry.pod.clone();
        if place == Place::Unschedulable {
            self.waiting.remove(&pod.info.uid);
        }
        match place {
            Place::Gated if pod.info.gated => {}
            Place::Gated => self.place(pod, Place::Active),
            Place::Unschedulable => self.place_ready(pod, now),
            Place::Active | Place::Backoff => {}
        }
    }

    /// Drops the pods `keep` says no (after a relist: pods deleted while the watch was down).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.entries.keys().filter(|uid| !keep(uid)).cloned().collect();
        for uid in gone {
            self.take(&uid);
        }
    }

    pub fn remove(&mut self, uid: &str) -> Option<QueuedPod> {
        self.take(uid).map(|e| e.pod)
    }

    /// Moves pods whose backoff has ended to active.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, version, uid))) = self.backoff.peek().cloned() {
            if until > now {
                break;
            }
            self.backoff.pop();
            let current = self.entries.get(&uid).is_some_and(|e| e.version == version && e.place == Place::Backoff);
            if current {
                let pod = self.take(&uid).expect("checked").pod;
                self.place(pod, Place::Active);
            }
        }
    }

    /// Retries unschedulable pods that have waited longer than `max_unschedulable`.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        let limit = self.limits.max_unschedulable;
        let stale: Vec<String> = self
            .waiting
            .iter()
            .filter(|uid| self.entries[*uid].pod.failed_at.is_some_and(|at| now - at >= limit))
            .cloned()
            .collect();
        for uid in stale {
            let pod = self.take(&uid).expect("listed").pod;
            self.place_ready(pod, now);
        }
    }

    /// The next pod to try (it leaves the queue until it is requeued).
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush_backoff(now);
        while let Some(item) = self.active.pop() {
            let current =
                self.entries.get(&item.uid).is_some_and(|e| e.version == item.version && e.place == Place::Active);
            if current {
                let mut pod = self.take(&item.uid).expect("checked").pod;
                pod.attempts += 1;
                return Some(pod);
            }
        }
        None
    }

    /// A pod that fit nowhere: it waits for a cluster change that `rejected_by` could
    /// care about.
    pub fn unschedulable_pod(&mut self, mut pod: QueuedPod, rejected_by: Plugins, now: Instant) {
        pod.failed_at = Some(now);
        pod.rejected_by = rejected_by;
        self.place(pod, Place::Unschedulable);
    }

    /// A pod whose attempt failed for another reason (an API error while binding): it
    /// is retried after its backoff.
    pub fn retry_later(&mut self, mut pod: QueuedPod, now: Instant) {
        pod.failed_at = Some(now);
        self.place(pod, Place::Backoff);
    }

    /// A cluster change that may help pods rejected by `helps`: they move to backoff or
    /// active.
    pub fn cluster_changed(&mut self, helps: Plugins, now: Instant) -> usize {
        let moving: Vec<String> = self
            .waiting
            .iter()
            .filter(|uid| {
                let rejected_by = self.entries[*uid].pod.rejected_by;
                rejected_by.is_empty() || rejected_by.intersects(helps)
            })
            .cloned()
            .collect();
        let moved = moving.len();
        for uid in moving {
            let pod = self.take(&uid).expect("listed").pod;
            self.place_ready(pod, now);
        }
        moved
    }

    /// When the earliest backoff ends, if any pod is backing off.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((until, _, _))| *until)
    }

    /// Whether a pod is ready to be tried now.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Plugin;
    use crate::plugins::testing::pod;
    use serde_json::json;

    fn info(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(name, json!({}), json!({"priority": priority})))
    }

    fn queue() -> Queue {
        Queue::new(Backoff::default())
    }

    #[test]
    fn higher_priority_then_older_first() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add(info("low", 0), t0);
        q.add(info("high", 100), t0 + Duration::from_millis(1));
        q.add(info("low2", 0), t0 + Duration::from_millis(2));
        let order: Vec<String> = std::iter::from_fn(|| q.pop(t0)).map(|p| p.info.name.clone()).collect();
        assert_eq!(order, ["high", "low", "low2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let q = queue();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_of(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_helpful_change() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add(info("p", 0), t0);
        let p = q.pop(t0).unwrap();
        assert_eq!(p.attempts, 1);
        q.unschedulable_pod(p, Plugins::of(&[Plugin::NodeResourcesFit]), t0);
        assert!(q.pop(t0 + Duration::from_secs(60)).is_none(), "no event, no retry (before the 5-minute flush)");
        assert_eq!(q.cluster_changed(Plugins::of(&[Plugin::InterPodAffinity]), t0), 0, "that change cannot help");
        // A helpful change during the backoff: it waits the rest of its second.
        assert_eq!(q.cluster_changed(Plugins::of(&[Plugin::NodeResourcesFit]), t0 + Duration::from_millis(300)), 1);
        assert!(q.pop(t0 + Duration::from_millis(500)).is_none());
        assert_eq!(q.next_wakeup(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(q.pop(t0 + Duration::from_secs(1)).unwrap().attempts, 2);
    }

    #[test]
    fn long_unschedulable_pods_are_retried_eventually() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add(info("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.unschedulable_pod(p, Plugins::of(&[Plugin::NodeAffinity]), t0);
        q.flush_unschedulable(t0 + Duration::from_secs(299));
        assert!(q.pop(t0 + Duration::from_secs(299)).is_none());
        q.flush_unschedulable(t0 + Duration::from_secs(300));
        assert!(q.pop(t0 + Duration::from_secs(300)).is_some());
    }

    #[test]
    fn updates_that_matter_retry_at_once() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add(info("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.unschedulable_pod(p, Plugins::of(&[Plugin::NodeAffinity]), t0);
        // A status-only update (same fingerprint) changes nothing.
        q.update(info("p", 0), t0 + Duration::from_secs(5));
        assert!(q.pop(t0 + Duration::from_secs(5)).is_none());
        // A label change does.
        let changed = Arc::new(pod("p", json!({"new": "label"}), json!({"priority": 0})));
        q.update(changed, t0 + Duration::from_secs(5));
        assert!(q.pop(t0 + Duration::from_secs(5)).is_some());
    }

    #[test]
    fn gated_pods_wait_until_their_gates_are_gone() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add(Arc::new(pod("g", json!({}), json!({"schedulingGates": [{"name": "example.com/wait"}]}))), t0);
        assert!(q.pop(t0).is_none());
        assert_eq!(q.len(), 1);
        q.update(Arc::new(pod("g", json!({}), json!({}))), t0);
        assert_eq!(q.pop(t0).unwrap().info.name, "g");
    }

    #[test]
    fn a_relist_drops_pods_that_are_gone() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add(info("kept", 0), t0);
        q.add(info("gone", 0), t0);
        let p = q.pop(t0).unwrap();
        q.unschedulable_pod(p, Plugins::of(&[Plugin::NodeAffinity]), t0);
        q.retain(|uid| uid == "uid-kept");
        assert_eq!(q.len(), 1);
        assert!(q.contains("uid-kept"));
    }

    #[test]
    fn retry_later_backs_off() {
        let mut q = queue();
        let t0 = Instant::now();
        q.add(info("p", 0), t0);
        let p = q.pop(t0).unwrap();
        q.retry_later(p, t0);
        assert!(q.pop(t0 + Duration::from_millis(999)).is_none());
        assert!(q.pop(t0 + Duration::from_secs(1)).is_some());
    }
}
