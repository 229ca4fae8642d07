//! The agent: one or many nodes in one process. It registers each Node and its Lease,
//! renews the Leases in small batches spread over the renewal interval, follows the pods
//! bound to its nodes through one shared watch, and gives each pod a worker task that
//! drives the node's runtime and reports status.
//!
//! One watch serves every node: with `--simulate 5000`, 5,000 watches would cost 5,000
//! connections and decode every event 5,000 times. A single node watches only its own
//! pods (`spec.nodeName=NAME`), as the kubelet does.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, reflector};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use skiff_client::events::Recorder;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::config::{NodeIdentity, NodeTemplate, Timing};
use crate::dns::ClusterDns;
use crate::error::{status_code, Error, Result};
use crate::imagegc::{self, ImageGc};
use crate::node::{self, LEASE_NAMESPACE};
use crate::podstatus::{self, Context};
use crate::podworker::{grace_period, remove_logs, NodeServices, PodTiming, PodWorker};
use crate::probes::Prober;
use crate::runtime::Runtime;
use crate::volumes::VolumeHost;

/// Batches per renewal interval: Lease renewals of many nodes are spread over this many
/// slots instead of arriving at the API server all at once.
const SLOTS: usize = 100;

/// One node of the agent.
pub struct NodeHandle {
    pub identity: NodeIdentity,
    pub runtime: Arc<dyn Runtime>,
    /// Where the pods' log directories are made (the kubelet's /var/log/pods by default).
    pub pod_log_root: Arc<Path>,
    /// The port of the node's HTTPS server (logs, exec, port-forward), reported as
    /// status.daemonEndpoints.kubeletEndpoint.Port; None reports the kubelet's 10250.
    pub kubelet_port: Option<u16>,
    uid: OnceLock<String>,
    runtime_name: OnceLock<String>,
    /// What its pod workers share, set when the agent runs.
    services: OnceLock<Arc<NodeServices>>,
    /// When the conditions last turned healthy after the node was found not Ready (None:
    /// healthy since the agent started).
    healthy_since: std::sync::Mutex<Option<Timestamp>>,
    /// The node's image garbage collector, taken when the agent runs (None: images stay).
    image_gc: std::sync::Mutex<Option<ImageGc>>,
}

impl NodeHandle {
    pub fn new(identity: NodeIdentity, runtime: Arc<dyn Runtime>) -> Self {
        NodeHandle {
            identity,
            runtime,
            pod_log_root: Arc::from(Path::new(crate::podworker::POD_LOG_ROOT)),
            kubelet_port: None,
            uid: OnceLock::new(),
            runtime_name: OnceLock::new(),
            services: OnceLock::new(),
            healthy_since: std::sync::Mutex::new(None),
            image_gc: std::sync::Mutex::new(None),
        }
    }

    /// Removes unused images with `gc` while the agent runs.
    pub fn with_image_gc(self, gc: ImageGc) -> Self {
        if let Ok(mut slot) = self.image_gc.lock() {
            *slot = Some(gc);
        }
        self
    }

    /// The lastTransitionTime of the node's healthy conditions.
    fn healthy_since(&self, agent_start: Timestamp) -> Timestamp {
        self.healthy_since.lock().ok().and_then(|since| *since).unwrap_or(agent_start)
    }

    pub fn with_pod_log_root(mut self, root: impl AsRef<Path>) -> Self {
        self.pod_log_root = Arc::from(root.as_ref());
        self
    }

    pub fn with_kubelet_port(mut self, port: u16) -> Self {
        self.kubelet_port = Some(port);
        self
    }

    fn name(&self) -> &str {
        &self.identity.name
    }
}

/// What every task of the agent shares.
struct Shared {
    client: Client,
    template: NodeTemplate,
    timing: Timing,
    /// API writes in flight across all nodes and pods: bounds connections and keeps a
    /// burst (thousands of pods bound at once) from swamping the API server.
    writes: Semaphore,
    concurrency: usize,
    /// When the nodes became ready (their conditions' lastTransitionTime).
    since: Timestamp,
    /// Where pods' volumes live (None: pods run without volumes, as mass-simulated nodes do).
    volumes: Option<VolumeHost>,
    pod_timing: PodTiming,
    cluster_dns: Option<Arc<ClusterDns>>,
}

pub struct Agent {
    shared: Arc<Shared>,
    nodes: Arc<Vec<Arc<NodeHandle>>>,
}

/// Exponential backoff from 1 s to 30 s by attempt number (1-based).
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(5)).min(Duration::from_secs(30))
}

impl Agent {
    /// An agent for `nodes`, writing to the API with at most `concurrency` requests in flight.
    pub fn new(
        client: Client,
        template: NodeTemplate,
        timing: Timing,
        nodes: Vec<NodeHandle>,
        concurrency: usize,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Agent {
            shared: Arc::new(Shared {
                client,
                template,
                timing,
                writes: Semaphore::new(concurrency),
                concurrency,
                since: Timestamp::now(),
                volumes: None,
                pod_timing: PodTiming::default(),
                cluster_dns: None,
            }),
            nodes: Arc::new(nodes.into_iter().map(Arc::new).collect()),
        }
    }

    /// Prepares pods' volumes (and termination-message files) under `volumes`.
    /// Forms pods' resolv.conf per dnsPolicy from `dns` (without it the runtime's default,
    /// the host's, is used).
    pub fn with_cluster_dns(mut self, dns: ClusterDns) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.cluster_dns = Some(Arc::new(dns));
        }
        self
    }

    pub fn with_volumes(mut self, volumes: VolumeHost) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.volumes = Some(volumes);
        }
        self
    }

    /// Back-off and resync durations of the pod workers (tests shorten them).
    pub fn with_pod_timing(mut self, timing: PodTiming) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.pod_timing = timing;
        }
        self
    }

    /// Registers every node and its Lease (retrying each until it succeeds).
    pub async fn register(&self) {
        let shared = &self.shared;
        futures::stream::iter(self.nodes.iter())
            .for_each_concurrent(shared.concurrency, |node| async move {
                let mut attempt = 0;
                while let Err(e) = register_node(shared, node).await {
                    attempt += 1;
                    warn!(node = node.name(), error = %e, "registering node failed, retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
            })
            .await;
        info!(nodes = self.nodes.len(), "nodes registered");
    }

    /// Registers the nodes, then keeps them alive and runs their pods until an
    /// unrecoverable error. Dropping the future stops every task of the agent.
    pub async fn run(self) -> Result<()> {
        self.register().await;
        let shared = &self.shared;
        // Events are reported as the kubelet's, from the node (or the agent, for many).
        let instance = match self.nodes.as_slice() {
            [only] => only.name().to_string(),
            _ => "skiff-agent".to_string(),
        };
        let (recorder, recording) = Recorder::new(shared.client.clone(), "kubelet".into(), instance);
        // One Service cache for every pod's service-link variables.
        let (services, writer) = reflector::store();
        // Only names, cluster IPs and ports are read (service links): the rest of each
        // Service (field managers, annotations such as last-applied-configuration, status)
        // is dropped before it is cached.
        let services_only = watcher(Api::<Service>::all(shared.client.clone()), Default::default()).modify(|service| {
            service.metadata.managed_fields = None;
            service.metadata.annotations = None;
            service.metadata.labels = None;
            service.status = None;
        });
        let service_watch = reflector(writer, services_only)
            .default_backoff()
            .touched_objects()
            .for_each(|_| futures::future::ready(()));
        let prober = Arc::new(Prober::new().map_err(Error::Config)?);
        let memory = shared.template.capacity.get("memory").map(|q| q.0.as_str()).unwrap_or("0");
        let memory_capacity = skiff_api::Quantity::parse(memory)
            .ok()
            .and_then(|q| q.ceil_div(skiff_api::Quantity::parse("1").ok()?))
            .and_then(|v| i64::try_from(v).ok())
            .unwrap_or(0);
        let allocatable = shared.template.allocatable.clone().unwrap_or_else(|| shared.template.capacity.clone());
        for node in self.nodes.iter() {
            let _ = node.services.set(Arc::new(NodeServices {
                node_name: node.name().to_string(),
                host_ip: node.identity.address,
                client: Some(shared.client.clone()),
                services: Some(services.clone()),
                recorder: Some(recorder.clone()),
                volumes: shared.volumes.clone(),
                prober: prober.clone(),
                allocatable: allocatable.clone(),
                memory_capacity,
                timing: shared.pod_timing.clone(),
                log_root: node.pod_log_root.clone(),
                dns: shared.cluster_dns.clone(),
            }));
        }
        let collectors: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|node| {
                let gc = node.image_gc.lock().ok()?.take()?;
                Some(gc.run(Some(recorder.clone()), imagegc::node_reference(node.name())))
            })
            .collect();
        let image_gc = async move {
            futures::future::join_all(collectors).await;
            std::future::pending::<()>().await
        };
        let heartbeats = heartbeats(self.shared.clone(), self.nodes.clone());
        let restore = restore_conditions(self.shared.clone(), self.nodes.clone());
        // As the kubelet: no container starts before the Services have been read once, or
        // it would miss the service-link variables of Services that already exist.
        let services_read = services.clone();
        let (shared, nodes) = (self.shared.clone(), self.nodes.clone());
        let pods = async move {
            let _ = services_read.wait_until_ready().await;
            follow_pods(shared, nodes).await
        };
        tokio::select! {
            () = heartbeats => Ok(()),
            () = restore => Err(Error::Config("the node watch ended".into())),
            result = pods => result,
            () = recording => Ok(()),
            () = image_gc => Ok(()),
            () = service_watch => Err(Error::Config("the service watch ended".into())),
        }
    }
}

async fn register_node(shared: &Shared, node: &NodeHandle) -> Result<()> {
    let version = node.runtime.version().await?;
    let _ = node.runtime_name.set(version.runtime_name.clone());
    let now = Timestamp::now();
    let mut object = node::node_object(&shared.template, &node.identity, &version, now);
    if let (Some(port), Some(status)) = (node.kubelet_port, object.status.as_mut()) {
        status.daemon_endpoints = Some(node::kubelet_endpoint(port));
    }
    let uid = {
        let _permit = shared.writes.acquire().await;
        node::register(&Api::<Node>::all(shared.client.clone()), &object).await?
    };
    let _ = node.uid.set(uid.clone());
    let leases = Api::<Lease>::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let _permit = shared.writes.acquire().await;
    node::renew_lease(&leases, node.name(), &uid, shared.timing.lease_duration_seconds, now).await
}

/// Renews every node's Lease once per renewal interval, a slot's worth of nodes at a
/// time; re-posts each node's conditions once per status report interval, spread the
/// same way. A node found deleted is registered again.
async fn heartbeats(shared: Arc<Shared>, nodes: Arc<Vec<Arc<NodeHandle>>>) {
    let slots = nodes.len().clamp(1, SLOTS);
    let timing = &shared.timing;
    let mut tick = tokio::time::interval(timing.renew_interval / slots as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let report_every =
        (timing.status_report_interval.as_secs_f64() / timing.renew_interval.as_secs_f64()).round().max(1.0) as usize;
    let leases = Api::<Lease>::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let node_api = Api::<Node>::all(shared.client.clone());
    // Round 0 renews what registration just created; reports start with round 1.
    for round in 0usize.. {
        for slot in 0..slots {
            tick.tick().await;
            let batch = nodes.iter().enumerate().skip(slot).step_by(slots);
            let (shared, leases, node_api) = (&shared, &leases, &node_api);
            futures::stream::iter(batch)
                .for_each_concurrent(shared.concurrency, |(index, node)| async move {
                    let uid = node.uid.get().map(String::as_str).unwrap_or_default();
                    let now = Timestamp::now();
                    let permit = shared.writes.acquire().await;
                    let duration = shared.timing.lease_duration_seconds;
                    if let Err(e) = node::renew_lease(leases, node.name(), uid, duration, now).await {
                        warn!(node = node.name(), error = %e, "renewing lease failed");
                    }
                    if round > 0 && (round + index / slots).is_multiple_of(report_every) {
                        let since = node.healthy_since(shared.since);
                        match node::post_conditions(node_api, node.name(), since, now).await {
                            Err(Error::Api(e)) if status_code(&e) == Some(404) => {
                                drop(permit);
                                warn!(node = node.name(), "node was deleted; registering it again");
                                if let Err(e) = register_node(shared, node).await {
                                    warn!(node = node.name(), error = %e, "registering node failed");
                                }
                            }
                            Err(e) => warn!(node = node.name(), error = %e, "posting node status failed"),
                            Ok(()) => {}
                        }
                    }
                })
                .await;
        }
    }
}

/// Follows the pods bound to the agent's nodes and hands each to its worker.
async fn follow_pods(shared: Arc<Shared>, nodes: Arc<Vec<Arc<NodeHandle>>>) -> Result<()> {
    let by_name: HashMap<&str, &Arc<NodeHandle>> = nodes.iter().map(|n| (n.name(), n)).collect();
    let selector = match nodes.as_slice() {
        [only] => format!("spec.nodeName={}", only.name()),
        _ => "spec.nodeName!=".to_string(),
    };
    let api = Api::<Pod>::all(shared.client.clone());
    let mut stream = pin!(watcher(api, watcher::Config::default().fields(&selector)).default_backoff());
    let mut workers: HashMap<String, watch::Sender<Arc<Pod>>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut relisting: Option<HashSet<String>> = None;
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => return Err(Error::Config("the pod watch ended".into())),
            Err(e) => {
                // The stream retries by itself (with backoff) after an error.
                warn!(error = %e, "pod watch failed");
                continue;
            }
        };
        match event {
            Event::Init => relisting = Some(HashSet::new()),
            Event::InitApply(mut pod) | Event::Apply(mut pod) => {
                // Kept until the next update; the field managers are never read here.
                pod.metadata.managed_fields = None;
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = &mut relisting {
                    seen.insert(uid.clone());
                }
                let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).and_then(|n| by_name.get(n));
                let Some(node) = node else { continue };
                let pod = Arc::new(pod);
                if let Some(sender) = workers.get(&uid).filter(|s| !s.is_closed()) {
                    // The worker always reads the newest copy, but is woken only by what it acts on.
                    sender.send_if_modified(|current| {
                        let wake = needs_sync(current, &pod);
                        *current = pod;
                        wake
                    });
                    continue;
                }
                let (sender, receiver) = watch::channel(pod);
                workers.insert(uid, sender);
                tasks.spawn(pod_worker(shared.clone(), (*node).clone(), receiver));
            }
            // Dropping the sender tells the worker the pod is gone.
            Event::InitDone => {
                if let Some(seen) = relisting.take() {
                    workers.retain(|uid, _| seen.contains(uid));
                    // Before any new pod's worker runs, so that only leftovers are removed.
                    for node in nodes.iter() {
                        remove_orphans(node, &seen).await;
                    }
                }
            }
            Event::Delete(pod) => {
                workers.remove(pod.metadata.uid.as_deref().unwrap_or_default());
            }
        }
        while tasks.try_join_next().is_some() {}
    }
}

/// Whether an update of a pod asks its worker to sync now. Status changes mostly do not:
/// they are the echo of the worker's own writes, and syncing on each would replace a
/// status (ErrImagePull) before anyone saw it. The exceptions are a phase written by
/// someone else and the conditions that readiness gates wait for.
fn needs_sync(old: &Pod, new: &Pod) -> bool {
    let ignoring_version = |meta: &ObjectMeta| ObjectMeta { resource_version: None, ..meta.clone() };
    if old.spec != new.spec || ignoring_version(&old.metadata) != ignoring_version(&new.metadata) {
        return true;
    }
    let phase = |pod: &Pod| pod.status.as_ref().and_then(|s| s.phase.clone());
    let gates = new.spec.as_ref().and_then(|s| s.readiness_gates.as_deref()).unwrap_or_default();
    let gate_conditions = |pod: &Pod| {
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        conditions
            .iter()
            .filter(|c| gates.iter().any(|g| g.condition_type == c.type_))
            .map(|c| (c.type_.clone(), c.status.clone()))
            .collect::<Vec<_>>()
    };
    phase(old) != phase(new) || (!gates.is_empty() && gate_conditions(old) != gate_conditions(new))
}

/// Removes the sandboxes (and so the containers) of pods that are no longer in the API:
/// pods deleted while the agent was not running. Only sandboxes the agent labelled count.
async fn remove_orphans(node: &NodeHandle, pods: &HashSet<String>) {
    let sandboxes = match node.runtime.list_pod_sandbox(&Default::default()).await {
        Ok(sandboxes) => sandboxes,
        Err(e) => return warn!(node = node.name(), error = %e, "listing sandboxes failed"),
    };
    for sandbox in sandboxes {
        let Some(uid) = sandbox.labels.get(crate::runtime::labels::POD_UID) else { continue };
        if pods.contains(uid) {
            continue;
        }
        info!(node = node.name(), pod = %sandbox.metadata.name, "removing the sandbox of a pod that no longer exists");
        let removed = async {
            node.runtime.stop_pod_sandbox(&sandbox.id).await?;
            node.runtime.remove_pod_sandbox(&sandbox.id).await
        };
        match removed.await {
            Ok(()) => crate::podworker::remove_sandbox_logs(&node.pod_log_root, &sandbox.metadata).await,
            Err(e) => warn!(node = node.name(), error = %e, "removing an orphaned sandbox failed"),
        }
    }
}

/// Re-posts a node's conditions as soon as its Ready condition reads anything but True:
/// the node lifecycle controller set it Unknown while the agent was gone or cut off, and
/// the kubelet, comparing the Node with its own status at every update, posts it again at
/// once rather than at the next status report.
async fn restore_conditions(shared: Arc<Shared>, nodes: Arc<Vec<Arc<NodeHandle>>>) {
    let ours: HashMap<&str, &NodeHandle> = nodes.iter().map(|n| (n.name(), n.as_ref())).collect();
    let api = Api::<Node>::all(shared.client.clone());
    // A single node watches only itself, as the kubelet: every Node of a large cluster
    // would otherwise be decoded here at each of its updates.
    let config = match nodes.as_slice() {
        [only] => watcher::Config::default().fields(&format!("metadata.name={}", only.name())),
        _ => watcher::Config::default(),
    };
    let events = watcher(api.clone(), config).default_backoff().touched_objects();
    let mut events = pin!(events);
    while let Some(event) = events.next().await {
        let Ok(object) = event else { continue };
        let Some(node) = object.metadata.name.as_deref().and_then(|name| ours.get(name)) else { continue };
        let conditions = object.status.as_ref().and_then(|s| s.conditions.as_ref());
        let ready = conditions.and_then(|c| c.iter().find(|c| c.type_ == "Ready")).map(|c| c.status.as_str());
        if ready.is_none_or(|status| status == "True") {
            continue;
        }
        let now = Timestamp::now();
        if let Ok(mut since) = node.healthy_since.lock() {
            *since = Some(now);
        }
        info!(node = node.name(), ready = ?ready, "the node is not Ready in the API; posting its conditions");
        let _permit = shared.writes.acquire().await;
        if let Err(e) = node::post_conditions(&api, node.name(), now, now).await {
            warn!(node = node.name(), error = %e, "posting node status failed");
        }
    }
}

/// What a worker does next after handling an update.
enum Next {
    /// Wait for the next update, or look again after this long.
    Wait(Option<Duration>),
    /// The pod is gone from the API: the worker is done.
    Done,
}

/// The life of one pod on one node: sync on every update, terminate and delete when it
/// is being deleted, clean up when it disappears.
async fn pod_worker(shared: Arc<Shared>, node: Arc<NodeHandle>, mut updates: watch::Receiver<Arc<Pod>>) {
    let Some(services) = node.services.get().cloned() else {
        warn!(node = node.name(), "pod worker started before the agent ran");
        return;
    };
    let mut worker = PodWorker::new(node.runtime.clone(), services);
    let wake = worker.waker();
    // A hash of the status last written: a whole PodStatus per pod would cost kilobytes.
    let mut reported: Option<u64> = None;
    let start_time = podstatus::whole_seconds(Timestamp::now());
    let mut failures = 0;
    loop {
        let pod = updates.borrow_and_update().clone();
        // Boxed: the API calls' futures are large, and thousands of idle workers would each
        // carry room for them otherwise.
        let outcome = Box::pin(handle(&shared, &node, &mut worker, &mut reported, start_time, &pod)).await;
        let wait = match outcome {
            Ok(Next::Done) => return,
            Ok(Next::Wait(wait)) => {
                failures = 0;
                wait
            }
            Err(e) => {
                failures += 1;
                let name = pod.metadata.name.as_deref().unwrap_or_default();
                warn!(pod = name, node = node.name(), error = %e, "pod sync failed");
                Some(backoff(failures))
            }
        };
        tokio::select! {
            changed = updates.changed() => if changed.is_err() {
                // Removed from the API (e.g. force-deleted): stop whatever still runs.
                if let Err(e) = worker.terminate(None, Duration::ZERO).await {
                    warn!(node = node.name(), error = %e, "cleaning up a deleted pod failed");
                }
                let last = updates.borrow().clone();
                remove_logs(&node.pod_log_root, &last).await;
                return;
            },
            () = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
            () = wake.notified() => {}
        }
    }
}

async fn handle(
    shared: &Shared,
    node: &NodeHandle,
    worker: &mut PodWorker,
    reported: &mut Option<u64>,
    start_time: Timestamp,
    pod: &Pod,
) -> Result<Next> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let api = Api::<Pod>::namespaced(shared.client.clone(), namespace);
    if pod.metadata.deletion_timestamp.is_some() {
        worker.terminate(Some(pod), grace_period(pod)).await?;
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        let _permit = shared.writes.acquire().await;
        let deleted = match api.delete(name, &params).await {
            Ok(_) => Ok(Next::Done),
            // Already gone, or replaced by a pod of the same name.
            Err(e) if matches!(status_code(&e), Some(404 | 409)) => Ok(Next::Done),
            Err(e) => Err(e.into()),
        };
        if deleted.is_ok() {
            remove_logs(&node.pod_log_root, pod).await;
        }
        return deleted;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        worker.terminate(Some(pod), Duration::ZERO).await?;
        return Ok(Next::Wait(None));
    }
    let result = worker.sync(pod).await?;
    let ctx = Context {
        host_ip: node.identity.address,
        runtime_name: node.runtime_name.get().map(String::as_str).unwrap_or("unknown"),
        start_time,
        now: podstatus::whole_seconds(Timestamp::now()),
    };
    let status = podstatus::pod_status(pod, &result.observed, &ctx);
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_vec(&status).unwrap_or_default().hash(&mut hasher);
        hasher.finish()
    };
    if *reported != Some(digest) {
        let patch = json!({"metadata": {"uid": uid}, "status": status});
        let _permit = shared.writes.acquire().await;
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => *reported = Some(digest),
            // Deleted meanwhile: the watch says so next.
            Err(e) if status_code(&e) == Some(404) => debug!(pod = name, "pod vanished before its status was written"),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Next::Wait(result.requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_updates_the_worker_acts_on_wake_it() {
        let base = json!({
            "metadata": {"name": "p", "resourceVersion": "1", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "a", "image": "i"}], "readinessGates": [{"conditionType": "example.com/lb"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]}
        });
        let old = pod(base.clone());
        let with = |pointer: &str, value: serde_json::Value| {
            let mut changed = base.clone();
            *changed.pointer_mut(pointer).unwrap() = value;
            pod(changed)
        };
        // The echo of the worker's own status write.
        let echo = with("/status/conditions/0/status", json!("True"));
        let echo = Pod { metadata: ObjectMeta { resource_version: Some("2".into()), ..echo.metadata }, ..echo };
        assert!(!needs_sync(&old, &echo));
        assert!(needs_sync(&old, &with("/spec/containers/0/image", json!("j"))));
        assert!(needs_sync(&old, &with("/metadata/labels/app", json!("b"))), "the downward API shows labels");
        assert!(needs_sync(&old, &with("/status/phase", json!("Failed"))));
        let gate = with("/status/conditions", json!([{"type": "example.com/lb", "status": "True"}]));
        assert!(needs_sync(&old, &gate));
    }
}
