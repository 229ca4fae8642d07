//! The scheduler: one task owns the cache and the queue, applies watch events between
//! cycles, and schedules one pod per cycle. A placed pod is assumed in the cache at once
//! and bound by a separate task, so the next cycle starts while the binding is in flight
//! (kube-scheduler's binding cycle). Pods that fit nowhere get their condition and event
//! written, also off the loop, and wait in the queue for a change that may help; when
//! evicting pods of lower priority would make room, the scheduler preempts them first
//! and nominates the node for the pod.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::algorithm::Algorithm;
use crate::cache::{Cache, NodeChange};
use crate::framework::{FitError, Plugin, Plugins};
use crate::model::PodInfo;
use crate::preemption;
use crate::queue::{Backoff, Queue, QueuedPod};
use crate::watch::{self, Input};
use crate::writer::{Identity, Writer};
use skiff_client::events::{unique_name, Event};
use skiff_client::leader::{self, LeaderConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the scheduler's watches stopped")]
    WatchesStopped,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Pods with this spec.schedulerName are ours.
    pub scheduler_name: String,
    pub backoff: Backoff,
    /// Bindings (and status writes) in flight at once.
    pub parallel_binds: usize,
    /// Run only while holding this Lease; None runs unconditionally.
    pub leader_election: Option<LeaderConfig>,
}

impl Default for Config {
    fn default() -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let identity = format!("{host}_{:08x}", rand::random::<u32>());
        Config {
            scheduler_name: "default-scheduler".into(),
            backoff: Backoff::default(),
            parallel_binds: 64,
            leader_election: Some(LeaderConfig::in_kube_system("kube-scheduler", identity)),
        }
    }
}

/// Runs the scheduler until its watches stop (with leader election when configured:
/// while another instance leads, this one waits).
pub async fn run(client: Client, config: Config) -> Result<(), Error> {
    match config.leader_election.clone() {
        Some(leader) => {
            leader::run_as_leader(client.clone(), leader, || run_leading(client.clone(), config.clone())).await
        }
        None => run_leading(client, config).await,
    }
}

/// Pods an event about an assigned pod may help: those rejected for resources, ports,
/// spreading or affinity.
const ASSIGNED_POD_GONE: Plugins = Plugins(
    Plugin::NodeResourcesFit as u16
        | Plugin::NodePorts as u16
        | Plugin::PodTopologySpread as u16
        | Plugin::InterPodAffinity as u16,
);
/// … a newly placed or relabelled pod: affinity and spreading.
const ASSIGNED_POD_ADDED: Plugins = Plugins(Plugin::PodTopologySpread as u16 | Plugin::InterPodAffinity as u16);

async fn run_leading(client: Client, config: Config) -> Result<(), Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    tasks.spawn(watch::nodes(client.clone(), tx.clone()));
    tasks.spawn(watch::pods(client.clone(), tx.clone()));
    tasks.spawn(watch::namespaces(client.clone(), tx.clone()));
    tasks.spawn(watch::budgets(client.clone(), tx.clone()));
    tasks.spawn(watch::selectors(client.clone(), tx.clone()));
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let identity = Identity {
        scheduler_name: config.scheduler_name.clone(),
        instance: format!("{}-{host}", config.scheduler_name),
    };
    let (writer, recorder) = Writer::new(client, identity);
    tasks.spawn(recorder);
    let mut state = Loop::new(&config, writer, tx);
    // Dropping `tasks` (when this returns or is cancelled) stops the watches.
    state.run(rx).await
}

#[derive(Debug, Default)]
struct Stats {
    bound: u64,
    unschedulable: u64,
    bind_failures: u64,
    preemptions: u64,
}

struct Loop {
    cache: Cache,
    queue: Queue,
    algorithm: Algorithm,
    writer: Writer,
    inputs: UnboundedSender<Input>,
    /// Limits bindings and status writes in flight.
    writes: Arc<Semaphore>,
    scheduler_name: String,
    /// Pods assumed on a node whose binding has not finished.
    binding: HashMap<String, QueuedPod>,
    nodes_listed: bool,
    pods_listed: bool,
    stats: Stats,
}

/// How often pods waiting as unschedulable for too long are retried, at most.
const FLUSH_EVERY: Duration = Duration::from_secs(30);

impl Loop {
    fn new(config: &Config, writer: Writer, inputs: UnboundedSender<Input>) -> Self {
        Loop {
            cache: Cache::new(),
            queue: Queue::new(config.backoff),
            algorithm: Algorithm::default(),
            writer,
            inputs,
            writes: Arc::new(Semaphore::new(config.parallel_binds.max(1))),
            scheduler_name: config.scheduler_name.clone(),
            binding: HashMap::new(),
            nodes_listed: false,
            pods_listed: false,
            stats: Stats::default(),
        }
    }

    async fn run(&mut self, mut rx: UnboundedReceiver<Input>) -> Result<(), Error> {
        let mut next_flush = Instant::now() + FLUSH_EVERY;
        let mut next_report = Instant::now() + Duration::from_secs(10);
        loop {
            while let Ok(input) = rx.try_recv() {
                self.apply(input);
            }
            let now = Instant::now();
            if now >= next_flush {
                self.queue.flush_unschedulable(now);
                next_flush = now + FLUSH_EVERY;
            }
            if now >= next_report {
                self.report();
                next_report = now + Duration::from_secs(10);
            }
            // Nothing is placed before both initial lists are in: a node's pods must be
            // known before it looks free.
            if self.nodes_listed && self.pods_listed {
                if let Some(pod) = self.queue.pop(now) {
                    self.schedule_one(pod).await;
                    // Lets the watch and binding tasks of this worker thread run.
                    tokio::task::consume_budget().await;
                    continue;
                }
            }
            let wake = self.queue.next_wakeup().unwrap_or(next_flush).min(next_flush);
            tokio::select! {
                input = rx.recv() => match input {
                    Some(input) => self.apply(input),
                    None => return Err(Error::WatchesStopped),
                },
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn report(&self) {
        let Stats { bound, unschedulable, bind_failures, preemptions } = self.stats;
        debug!(
            nodes = self.cache.node_count(),
            pods = self.cache.pod_count(),
            queued = self.queue.len(),
            waiting = self.queue.unschedulable(),
            binding = self.binding.len(),
            bound,
            unschedulable,
            bind_failures,
            preemptions,
            "scheduler"
        );
    }

    fn changed(&mut self, helps: Plugins) {
        let moved = self.queue.cluster_changed(helps, Instant::now());
        if moved > 0 {
            debug!(moved, "cluster change: retrying unschedulable pods");
        }
    }

    fn apply(&mut self, input: Input) {
        match input {
            Input::Node(info) => match self.cache.set_node(info) {
                NodeChange::Added | NodeChange::Updated => self.changed(Plugins::ALL),
                NodeChange::Unchanged => {}
            },
            Input::NodeGone(name) => {
                self.cache.remove_node(&name);
                self.changed(Plugins::of(&[Plugin::PodTopologySpread, Plugin::InterPodAffinity]));
            }
            Input::NodesListed(names) => {
                self.cache.retain_nodes(&names);
                self.nodes_listed = true;
                self.changed(Plugins::ALL);
            }
            Input::Pod(info) => self.pod(info),
            Input::PodGone(uid) => {
                self.queue.remove(&uid);
                self.cache.unnominate(&uid);
                if self.cache.remove_pod(&uid).is_some() {
                    self.changed(ASSIGNED_POD_GONE);
                }
            }
            Input::PodsListed(uids) => {
                self.queue.retain(|uid| uids.contains(uid));
                if self.cache.retain_pods(&uids) {
                    self.changed(ASSIGNED_POD_GONE);
                }
                self.pods_listed = true;
            }
            Input::Namespace(name, labels) => {
                if self.cache.set_namespace(&name, labels) {
                    self.changed(Plugins::of(&[Plugin::InterPodAffinity]));
                }
            }
            Input::NamespaceGone(name) => {
                self.cache.namespaces.remove(&name);
            }
            Input::NamespacesListed(names) => self.cache.namespaces.retain(|name, _| names.contains(name)),
            Input::Budget(uid, budget) => {
                self.cache.budgets.insert(uid, budget);
            }
            Input::BudgetGone(uid) => {
                self.cache.budgets.remove(&uid);
            }
            Input::BudgetsListed(uids) => self.cache.budgets.retain(|uid, _| uids.contains(uid)),
            Input::Selector(uid, kind, selector) => self.cache.selectors.set(uid, kind, selector),
            Input::SelectorGone(uid) => self.cache.selectors.remove(&uid),
            Input::SelectorsListed(kind, uids) => self.cache.selectors.retain(kind, &uids),
            Input::Bound(uid) => {
                self.cache.unnominate(&uid);
                self.binding.remove(&uid);
                self.stats.bound += 1;
            }
            Input::BindFailed { uid, retry, error } => {
                self.stats.bind_failures += 1;
                let pod = self.binding.remove(&uid);
                if self.cache.forget(&uid) {
                    self.changed(ASSIGNED_POD_GONE);
                }
                if retry {
                    warn!(pod = uid, error, "binding failed; retrying after backoff");
                    if let Some(pod) = pod {
                        self.queue.retry_later(pod, Instant::now());
                    }
                }
            }
        }
    }

    fn pod(&mut self, info: Arc<PodInfo>) {
        if !info.node_name.is_empty() {
            self.queue.remove(&info.uid);
            self.cache.unnominate(&info.uid);
            let previous = self.cache.pod_by_uid(&info.uid).map(|p| (p.assumed, p.info.labels.clone()));
            let relabelled = previous.as_ref().is_none_or(|(assumed, labels)| *assumed || *labels != info.labels);
            self.cache.set_pod(info);
            if relabelled {
                self.changed(ASSIGNED_POD_ADDED);
            }
            return;
        }
        if info.scheduler_name != self.scheduler_name || info.terminating {
            self.queue.remove(&info.uid);
            self.cache.unnominate(&info.uid);
            return;
        }
        // A nomination (ours, or a previous leader's) keeps room on its node.
        if !info.nominated_node.is_empty() {
            self.cache.nominate(info.clone(), &info.nominated_node.clone());
        }
        // Its binding is in flight: the watch has not caught up yet.
        if self.binding.contains_key(&info.uid) {
            return;
        }
        self.queue.update(info, Instant::now());
    }

    /// PostFilter: evicts pods to make room for `pod` when it may and something helps
    /// (the victims' deletion then retries it); otherwise says why not, for the message.
    fn preempt(&mut self, pod: &Arc<PodInfo>, fit: &FitError) -> Option<String> {
        if fit.nodes == 0 {
            return None;
        }
        let offset = self.algorithm.offset(self.cache.node_count());
        let candidate = match preemption::find(pod, &mut self.cache, offset) {
            Ok(candidate) => candidate,
            Err(why) => return Some(why.to_string()),
        };
        let node = self.cache.node(candidate.node).name.clone();
        info!(pod = pod.key(), node, victims = candidate.victims.len(), "preempting");
        self.stats.preemptions += 1;
        self.cache.nominate(pod.clone(), &node);
        for victim in candidate.victims {
            let writer = self.writer.clone();
            let note = format!("Preempted by pod {} on node {node}", pod.uid);
            let permits = self.writes.clone();
            tokio::spawn(async move {
                let Ok(_permit) = permits.acquire_owned().await else { return };
                if let Err(e) = writer.preempt(&victim).await {
                    warn!(pod = victim.key(), error = %e, "evicting a preemption victim failed");
                    return;
                }
                writer.event(Event {
                    regarding: victim.reference(),
                    warning: false,
                    action: "Preempting",
                    reason: "Preempted",
                    note,
                    name: unique_name(&victim.name),
                    count: 1,
                });
            });
        }
        let (writer, preemptor, permits) = (self.writer.clone(), pod.clone(), self.writes.clone());
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return };
            if let Err(e) = writer.nominate(&preemptor, &node).await {
                warn!(pod = preemptor.key(), error = %e, "setting nominatedNodeName failed");
            }
        });
        None
    }

    async fn schedule_one(&mut self, mut pod: QueuedPod) {
        let info = pod.info.clone();
        // Decided with the default spreading constraints when they apply.
        let deciding = self.cache.selectors.with_defaults(&info).map_or_else(|| info.clone(), Arc::new);
        self.algorithm.prepare(&deciding, &mut self.cache);
        let decision = self.algorithm.schedule(&deciding, &self.cache);
        self.cache.next_cycle();
        match decision {
            Ok(placement) => {
                let node = self.cache.node(placement.node).name.clone();
                self.cache.assume(info.clone(), placement.node);
                self.binding.insert(info.uid.clone(), pod);
                let Ok(permit) = self.writes.clone().acquire_owned().await else { return };
                let writer = self.writer.clone();
                let inputs = self.inputs.clone();
                tokio::spawn(async move {
                    let result = writer.bind(&info, &node).await;
                    drop(permit);
                    let input = match result {
                        Ok(true) => {
                            writer.event(Event {
                                regarding: info.reference(),
                                warning: false,
                                action: "Binding",
                                reason: "Scheduled",
                                note: format!("Successfully assigned {}/{} to {node}", info.namespace, info.name),
                                name: unique_name(&info.name),
                                count: 1,
                            });
                            Input::Bound(info.uid.clone())
                        }
                        Ok(false) => Input::BindFailed { uid: info.uid.clone(), retry: false, error: String::new() },
                        Err(e) => Input::BindFailed { uid: info.uid.clone(), retry: true, error: e.to_string() },
                    };
                    let _ = inputs.send(input);
                });
            }
            Err(fit) => {
                self.stats.unschedulable += 1;
                let message = match self.preempt(&info, &fit) {
                    Some(suffix) => format!("{fit} preemption: {suffix}"),
                    None => fit.to_string(),
                };
                let (name, count) = match &pod.last_event {
                    Some((name, count, last)) if *last == message => (name.clone(), count + 1),
                    _ => (unique_name(&info.name), 1),
                };
                pod.last_event = Some((name.clone(), count, message.clone()));
                info!(pod = info.key(), message, "pod is unschedulable");
                self.queue.unschedulable_pod(pod, fit.plugins, Instant::now());
                self.writer.event(Event {
                    regarding: info.reference(),
                    warning: true,
                    action: "Scheduling",
                    reason: "FailedScheduling",
                    note: message.clone(),
                    name,
                    count,
                });
                let Ok(permit) = self.writes.clone().acquire_owned().await else { return };
                let writer = self.writer.clone();
                tokio::spawn(async move {
                    if let Err(e) = writer.mark_unschedulable(&info, &message).await {
                        warn!(pod = info.key(), error = %e, "writing the PodScheduled condition failed");
                    }
                    drop(permit);
                });
            }
        }
    }
}
