//! What the agent does for one pod, against any [`Runtime`], as the kubelet's pod worker:
//! bring the sandbox up, prepare the volumes, run init containers in order and then the
//! containers (image, env, mounts, resources, security, termination-message file), run
//! postStart hooks and probes, restart what the restart policy says with the crash-loop
//! back-off, kill containers whose liveness fails; and on deletion run preStop hooks and
//! stop the containers within the grace period, remove the sandbox and the pod's files.
//! The same code runs over containerd and over the simulated runtime.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as ApiContainer, ObjectReference, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kube::api::Api;
use kube::runtime::reflector::Store;
use skiff_client::events::{self, Recorder};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backoff::{go_duration, BackoffPolicy, CrashBackoff};
use crate::dns::ClusterDns;
use crate::downward::PodFacts;
use crate::env;
use crate::error::{Error, Result};
use crate::lifecycle::run_hook;
use crate::podstatus::{ContainerView, Observed};
use crate::probes::{ContainerProbes, EventSink, Prober, Target};
use crate::resources;
use crate::runtime::{
    labels, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatus, Mount,
    PodSandboxConfig, PodSandboxMetadata, PortMapping, Runtime, RuntimeError, SandboxFilter, SandboxState,
};
use crate::sources::{self, Sources};
use crate::volumes::{self, Prepared, VolumeHost};

/// The kubelet's floor for a container's stop timeout.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// How soon to look again while something is in progress (an init container running).
const REQUEUE: Duration = Duration::from_secs(1);
/// The kubelet reads at most this much of a termination message file.
const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// With FallbackToLogsOnError, at most this much of the log's end, and this many lines.
const MAX_FALLBACK_BYTES: u64 = 2048;
const MAX_FALLBACK_LINES: usize = 80;
const DEFAULT_TERMINATION_PATH: &str = "/dev/termination-log";

/// Durations of the pod logic (the kubelet's by default; tests shorten them).
#[derive(Clone, Debug)]
pub struct PodTiming {
    /// Crash-loop back-off of container restarts (CrashLoopBackOff).
    pub backoff: BackoffPolicy,
    /// Back-off of failed image pulls (ImagePullBackOff); the kubelet's is also 10 s to 5 min.
    pub pull_backoff: BackoffPolicy,
    /// How often volumes from ConfigMaps, Secrets and the downward API are rewritten from
    /// the current objects (the kubelet's sync period is 1 min).
    pub volume_resync: Duration,
    /// How often a pod's containers are looked at without a reason (the kubelet's PLEG
    /// relists every second): how soon an exit is noticed and the container restarted.
    pub relist: Duration,
}

impl Default for PodTiming {
    fn default() -> Self {
        PodTiming {
            backoff: BackoffPolicy::default(),
            pull_backoff: BackoffPolicy::default(),
            volume_resync: Duration::from_secs(60),
            relist: Duration::from_secs(1),
        }
    }
}

impl PodTiming {
    /// For thousands of simulated nodes in one process: containers there exit only when
    /// told to, so a relist every 30 s keeps the cost of idle pods low.
    pub fn simulated() -> Self {
        PodTiming { relist: Duration::from_secs(30), ..PodTiming::default() }
    }
}

/// What the pod workers of one node share.
pub struct NodeServices {
    pub node_name: String,
    pub host_ip: IpAddr,
    /// For ConfigMaps, Secrets and claims the pods reference; None in unit tests.
    pub client: Option<kube::Client>,
    /// The agent's Service cache, for service-link variables.
    pub services: Option<Store<Service>>,
    pub recorder: Option<Recorder>,
    /// Where volumes live; None leaves volumes out (simulated nodes without a data dir).
    pub volumes: Option<VolumeHost>,
    pub prober: Arc<Prober>,
    /// The node's allocatable resources (the downward API's default limits).
    pub allocatable: BTreeMap<String, ApiQuantity>,
    /// The node's memory in bytes (for Burstable oom_score_adj).
    pub memory_capacity: i64,
    pub timing: PodTiming,
    /// Under which each pod's log directory is made ([`POD_LOG_ROOT`] but in tests).
    pub log_root: Arc<Path>,
    /// How pods' resolv.conf is formed; None leaves it to the runtime (simulated nodes).
    pub dns: Option<Arc<ClusterDns>>,
}

impl NodeServices {
    /// Services for a node that talks to no API server (unit tests).
    pub fn detached(node_name: &str, host_ip: IpAddr) -> Result<Self> {
        Ok(NodeServices {
            node_name: node_name.to_string(),
            host_ip,
            client: None,
            services: None,
            recorder: None,
            volumes: None,
            prober: Arc::new(Prober::new().map_err(Error::Config)?),
            allocatable: BTreeMap::new(),
            memory_capacity: 0,
            timing: PodTiming::default(),
            log_root: Arc::from(Path::new(POD_LOG_ROOT)),
            dns: None,
        })
    }
}

/// The runtime objects of one container name and what the worker remembers about them.
#[derive(Default)]
struct Slot {
    id: Option<String>,
    /// Restart count: how many instances came before the current one.
    attempt: u32,
    /// The previous instance, terminated (the status's lastState).
    last: Option<ContainerStatus>,
    probes: Option<ContainerProbes>,
    backoff: CrashBackoff,
    /// When the worker first saw the current instance exited.
    exited_at: Option<Instant>,
    /// Why the container is waiting, when known (CrashLoopBackOff, config errors).
    waiting: Option<(&'static str, String)>,
    /// The host file behind the container's terminationMessagePath.
    termination_log: Option<PathBuf>,
    termination_message: Option<String>,
    /// Image pulls back off as crashes do (ImagePullBackOff).
    pull_backoff: CrashBackoff,
    pull_failed_at: Option<Instant>,
    /// When to try again after a failed start (a pull's back-off), if sooner than usual.
    retry_in: Option<Duration>,
}

/// Where pods' log directories go by default (the kubelet's).
pub const POD_LOG_ROOT: &str = "/var/log/pods";

/// A pod's runtime state as the agent tracks it between syncs.
pub struct PodWorker {
    runtime: Arc<dyn Runtime>,
    node: Arc<NodeServices>,
    uid: String,
    /// The sandbox's ID (its config is rebuilt from the pod when needed: thousands of
    /// simulated pods should not each keep a copy).
    sandbox: Option<String>,
    sandbox_attempt: u32,
    init: Vec<Slot>,
    containers: Vec<Slot>,
    /// Whether the runtime was searched for what an earlier run of the agent started for
    /// this pod (see [`PodWorker::adopt`]).
    adopted: bool,
    /// Notified when a probe result changes: the pod needs a sync.
    wake: Arc<Notify>,
    /// The last volume failure reported, so that the event is not repeated every sync.
    mount_error: Option<String>,
    /// The objects the pod references, and when they were read: read again after
    /// `volume_resync`, or at once while something waits for them.
    sources: Option<(Instant, Arc<Sources>)>,
    prepared: Option<PreparedVolumes>,
}

/// The volumes as last prepared, for which sources and which pod version: they are
/// prepared again only when either changes.
struct PreparedVolumes {
    sources: Arc<Sources>,
    pod_version: Option<String>,
    volumes: Arc<BTreeMap<String, Prepared>>,
}

/// What a sync found.
pub struct SyncResult {
    pub observed: Observed,
    /// Look again after this long even without a pod change (work in progress).
    pub requeue: Option<Duration>,
}

/// Everything a container start needs from the sync that decided it.
struct SyncContext<'a> {
    pod: &'a Pod,
    sandbox_id: &'a str,
    sandbox: &'a PodSandboxConfig,
    facts: &'a PodFacts,
    sources: &'a Sources,
    prepared: &'a BTreeMap<String, Prepared>,
}

fn sooner(requeue: &mut Option<Duration>, after: Duration) {
    *requeue = Some(requeue.map_or(after, |r| r.min(after)));
}

fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    BTreeMap::from([
        (labels::POD_NAME.to_string(), m.name.clone().unwrap_or_default()),
        (labels::POD_NAMESPACE.to_string(), m.namespace.clone().unwrap_or_default()),
        (labels::POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
    ])
}

/// A pod's log directory under `root`: `NAMESPACE_NAME_UID`, as the kubelet names it; the
/// runtime writes each container's output to `NAME/ATTEMPT.log` in it, where the node
/// server reads it.
pub fn pod_log_directory(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{name}_{uid}"))
}

/// The kubelet's limit on a pod's hostname: longer ones are cut, without a trailing `-`/`.`.
const MAX_HOSTNAME_LENGTH: usize = 63;

fn pod_hostname(pod: &Pod) -> String {
    let name = pod.spec.as_ref().and_then(|s| s.hostname.clone()).filter(|h| !h.is_empty());
    let mut hostname = name.or_else(|| pod.metadata.name.clone()).unwrap_or_default();
    if hostname.len() > MAX_HOSTNAME_LENGTH {
        hostname.truncate(MAX_HOSTNAME_LENGTH);
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    hostname
}

/// The pod's sandbox config, and warnings (reason, message) from forming its DNS.
fn sandbox_config(pod: &Pod, attempt: u32, node: &NodeServices) -> (PodSandboxConfig, Vec<(&'static str, String)>) {
    let log_root = &node.log_root;
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let ports = spec
        .into_iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.is_some_and(|h| h > 0))
        .map(|p| PortMapping {
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or_default(),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();
    let namespace = m.namespace.clone().unwrap_or_default();
    let name = m.name.clone().unwrap_or_default();
    let uid = m.uid.clone().unwrap_or_default();
    let no_spec = k8s_openapi::api::core::v1::PodSpec::default();
    let dns = node.dns.as_ref().map(|cluster| crate::dns::pod_dns(spec.unwrap_or(&no_spec), &namespace, cluster));
    let warnings = dns.as_ref().map(|d| d.warnings.clone()).unwrap_or_default();
    let config = PodSandboxConfig {
        metadata: PodSandboxMetadata { name: name.clone(), uid: uid.clone(), namespace: namespace.clone(), attempt },
        hostname: pod_hostname(pod),
        log_directory: pod_log_directory(log_root, &namespace, &name, &uid).to_string_lossy().into_owned(),
        port_mappings: ports,
        labels: pod_labels(pod),
        annotations: m.annotations.clone().unwrap_or_default(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        privileged: spec
            .into_iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .any(|c| c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false)),
        dns: dns.map(|d| d.config),
    };
    (config, warnings)
}

/// Removes the pod's log directory under `root` once the pod is gone from the API (as
/// the kubelet does); a finished pod that still exists keeps its logs.
pub async fn remove_logs(root: &Path, pod: &Pod) {
    let m = &pod.metadata;
    let part = |v: &Option<String>| v.clone().unwrap_or_default();
    remove_log_directory(pod_log_directory(root, &part(&m.namespace), &part(&m.name), &part(&m.uid))).await
}

/// [`remove_logs`] for a pod known only by its sandbox's metadata.
pub async fn remove_sandbox_logs(root: &Path, pod: &PodSandboxMetadata) {
    remove_log_directory(pod_log_directory(root, &pod.namespace, &pod.name, &pod.uid)).await
}

async fn remove_log_directory(dir: PathBuf) {
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "removing pod logs failed");
        }
    }
}

/// The grace period of a deletion: deletionGracePeriodSeconds, else the pod's
/// terminationGracePeriodSeconds, else 30 s; never under the kubelet's 2 s floor.
pub fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0);
    Duration::from_secs(seconds as u64).max(MIN_GRACE)
}

/// The pod's terminationGracePeriodSeconds (for kills while it runs).
fn termination_grace(pod: &Pod) -> Duration {
    let seconds = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0);
    Duration::from_secs(seconds as u64).max(MIN_GRACE)
}

/// The image pull policy, defaulted as the API server does.
fn pull_policy(container: &ApiContainer) -> &str {
    match container.image_pull_policy.as_deref() {
        Some(policy) => policy,
        None => {
            let image = container.image.as_deref().unwrap_or_default();
            let tag = image.rsplit('/').next().and_then(|last| last.split_once(':')).map(|(_, tag)| tag);
            if image.contains('@') || tag.is_some_and(|t| t != "latest") {
                "IfNotPresent"
            } else {
                "Always"
            }
        }
    }
}

/// Whether the pod has volumes whose content follows API objects.
fn has_projected_volumes(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some())
}

/// The end of a CRI log file (lines `TIME STREAM TAG CONTENT`), content only.
fn log_tail(path: &Path) -> Option<String> {
    let mut file = fs::File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(MAX_FALLBACK_BYTES))).ok()?;
    let mut text = String::new();
    file.take(MAX_FALLBACK_BYTES).read_to_string(&mut text).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(MAX_FALLBACK_LINES);
    let content: Vec<&str> = lines[start..].iter().map(|l| l.splitn(4, ' ').nth(3).unwrap_or(l)).collect();
    Some(content.join("\n"))
}

/// A container's termination message: its file, or with FallbackToLogsOnError and a
/// failure, the end of its log.
fn termination_message(spec: &ApiContainer, log: Option<&Path>, status: &ContainerStatus, log_path: &Path) -> String {
    let mut message = String::new();
    if let Some(Ok(file)) = log.map(fs::File::open) {
        let _ = file.take(MAX_TERMINATION_MESSAGE).read_to_string(&mut message);
    }
    let fallback = spec.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if message.is_empty() && fallback && status.exit_code != 0 {
        message = log_tail(log_path).unwrap_or_default();
    }
    message
}

/// Stops one container: preStop hook within the grace period, then a stop with what is
/// left of it (at least the kubelet's 2 s).
async fn stop_container(
    runtime: &Arc<dyn Runtime>,
    prober: &Arc<Prober>,
    spec: Option<&ApiContainer>,
    id: &str,
    grace: Duration,
    events: Option<&EventSink>,
) -> Result<()> {
    let started = Instant::now();
    if let Some(hook) = spec.and_then(|s| s.lifecycle.as_ref()).and_then(|l| l.pre_stop.as_ref()) {
        let running = runtime.container_status(id).await.is_ok_and(|s| s.state == ContainerState::Running);
        if running {
            let target = Target {
                runtime: runtime.clone(),
                prober: prober.clone(),
                container_id: id.to_string(),
                pod_ip: None,
                ports: spec.and_then(|s| s.ports.clone()).unwrap_or_default(),
            };
            if run_hook(hook, &target, grace).await.is_err() {
                if let Some(sink) = events {
                    sink.recorder.warning(
                        sink.regarding.clone(),
                        "Kill",
                        "FailedPreStopHook",
                        "PreStopHook failed".into(),
                    );
                }
            }
        }
    }
    let left = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
    runtime.stop_container(id, left).await?;
    Ok(())
}

impl PodWorker {
    pub fn new(runtime: Arc<dyn Runtime>, node: Arc<NodeServices>) -> Self {
        PodWorker {
            runtime,
            node,
            uid: String::new(),
            sandbox: None,
            sandbox_attempt: 0,
            init: Vec::new(),
            containers: Vec::new(),
            adopted: false,
            wake: Arc::new(Notify::new()),
            mount_error: None,
            sources: None,
            prepared: None,
        }
    }

    /// Notified when the pod needs a sync without a change of the pod (a probe result changed).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    fn slot(&mut self, init: bool, index: usize) -> &mut Slot {
        if init {
            &mut self.init[index]
        } else {
            &mut self.containers[index]
        }
    }

    async fn status_of(&self, slot: &Slot) -> Result<Option<ContainerStatus>> {
        match &slot.id {
            Some(id) => Ok(Some(self.runtime.container_status(id).await?)),
            None => Ok(None),
        }
    }

    fn event_sink(&self, pod: &Pod, container: Option<(&str, bool)>) -> Option<EventSink> {
        let recorder = self.node.recorder.clone()?;
        let mut regarding: ObjectReference = events::reference(pod);
        if let Some((name, init)) = container {
            let list = if init { "initContainers" } else { "containers" };
            regarding.field_path = Some(format!("spec.{list}{{{name}}}"));
        }
        Some(EventSink { recorder, regarding })
    }

    fn event(
        &self,
        pod: &Pod,
        container: Option<(&str, bool)>,
        warning: bool,
        action: &'static str,
        reason: &'static str,
        note: String,
    ) {
        if let Some(sink) = self.event_sink(pod, container) {
            if warning {
                sink.recorder.warning(sink.regarding, action, reason, note);
            } else {
                sink.recorder.normal(sink.regarding, action, reason, note);
            }
        }
    }

    /// Takes over what an earlier run of the agent started for this pod (found by the pod
    /// UID label): the newest sandbox and, in it, the newest container of each name, with
    /// their attempt numbers as restart counts. Older sandboxes are removed. A sandbox
    /// that is no longer ready is replaced by the next [`Self::ensure_sandbox`].
    async fn adopt(&mut self, pod: &Pod) -> Result<()> {
        let filter = SandboxFilter {
            labels: BTreeMap::from([(labels::POD_UID.to_string(), self.uid.clone())]),
            ..Default::default()
        };
        let mut sandboxes = self.runtime.list_pod_sandbox(&filter).await?;
        sandboxes.sort_by_key(|s| (s.metadata.attempt, s.created_at));
        let Some(newest) = sandboxes.pop() else { return Ok(()) };
        for stale in sandboxes {
            self.runtime.stop_pod_sandbox(&stale.id).await?;
            self.runtime.remove_pod_sandbox(&stale.id).await?;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let init_specs = spec.init_containers.unwrap_or_default();
        let filter = ContainerFilter { pod_sandbox_id: Some(newest.id.clone()), ..Default::default() };
        let mut containers = self.runtime.list_containers(&filter).await?;
        containers.sort_by_key(|c| (c.metadata.attempt, c.created_at));
        for container in containers {
            let init = container.labels.get(labels::CONTAINER_KIND).is_some_and(|k| k == "init");
            let (specs, slots) =
                if init { (&init_specs, &mut self.init) } else { (&spec.containers, &mut self.containers) };
            let Some(index) = specs.iter().position(|c| c.name == container.metadata.name) else { continue };
            // Sorted by attempt: the last one of a name wins; the ones it replaces go.
            if let Some(older) = slots[index].id.replace(container.id) {
                self.runtime.remove_container(&older).await?;
            }
            slots[index].attempt = container.metadata.attempt;
        }
        tracing::info!(pod = pod.metadata.name.as_deref().unwrap_or_default(), sandbox = %newest.id, "adopted running pod");
        self.sandbox = Some(newest.id);
        self.sandbox_attempt = newest.metadata.attempt;
        Ok(())
    }

    /// Makes sure a ready sandbox exists; a lost one is replaced and its containers
    /// started again (restart counts go up, as on a real node).
    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<(String, PodSandboxConfig)> {
        if let Some(id) = &self.sandbox {
            match self.runtime.pod_sandbox_status(id).await {
                Ok(status) if status.state == SandboxState::Ready => {
                    return Ok((id.clone(), sandbox_config(pod, self.sandbox_attempt, &self.node).0))
                }
                _ => {
                    let id = id.clone();
                    self.runtime.stop_pod_sandbox(&id).await?;
                    self.runtime.remove_pod_sandbox(&id).await?;
                    self.sandbox = None;
                    self.sandbox_attempt += 1;
                    for slot in self.init.iter_mut().chain(self.containers.iter_mut()) {
                        if slot.id.take().is_some() {
                            slot.attempt += 1;
                            slot.probes = None;
                        }
                    }
                }
            }
        }
        let (config, dns_warnings) = sandbox_config(pod, self.sandbox_attempt, &self.node);
        for (reason, message) in dns_warnings {
            self.event(pod, None, true, "Sync", reason, message);
        }
        let id = self.runtime.run_pod_sandbox(&config).await?;
        self.sandbox = Some(id.clone());
        Ok((id, config))
    }

    /// The pod's sources, from the cache while it is fresh and nothing waits for a
    /// missing object (a config error, a failed mount).
    async fn fetch_sources(&mut self, pod: &Pod) -> Result<Arc<Sources>> {
        let waiting = self.mount_error.is_some()
            || self
                .init
                .iter()
                .chain(&self.containers)
                .any(|slot| matches!(slot.waiting, Some(("CreateContainerConfigError", _))));
        if let Some((at, cached)) = &self.sources {
            if !waiting && at.elapsed() < self.node.timing.volume_resync {
                return Ok(cached.clone());
            }
        }
        let fresh = match &self.node.client {
            Some(client) => Arc::new(sources::fetch(client, self.node.services.as_ref(), pod).await?),
            None => Arc::new(Sources::default()),
        };
        self.sources = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }

    /// Brings the pod towards running and returns what it observed.
    pub async fn sync(&mut self, pod: &Pod) -> Result<SyncResult> {
        let spec = pod.spec.clone().unwrap_or_default();
        self.uid = pod.metadata.uid.clone().unwrap_or_default();
        let init_count = spec.init_containers.as_ref().map_or(0, Vec::len);
        self.init.resize_with(init_count, Slot::default);
        self.containers.resize_with(spec.containers.len(), Slot::default);
        if !self.adopted {
            self.adopt(pod).await?;
            self.adopted = true;
        }
        let (sandbox_id, sandbox) = self.ensure_sandbox(pod).await?;
        let mut pod_ips = self.runtime.pod_sandbox_status(&sandbox_id).await.map(|s| s.network.ips).unwrap_or_default();
        // Host-network pods have the node's address (for probes and the downward API).
        if sandbox.host_network && pod_ips.is_empty() {
            pod_ips.push(self.node.host_ip);
        }
        let facts = PodFacts { host_ip: Some(self.node.host_ip), pod_ips, allocatable: self.node.allocatable.clone() };
        let sources = self.fetch_sources(pod).await?;
        let mut requeue = None;

        let prepared = match &self.node.volumes {
            Some(host) => {
                if has_projected_volumes(pod) {
                    sooner(&mut requeue, self.node.timing.volume_resync);
                }
                let version = pod.metadata.resource_version.clone();
                let current =
                    self.prepared.as_ref().filter(|p| Arc::ptr_eq(&p.sources, &sources) && p.pod_version == version);
                let result = match current {
                    Some(current) => Ok(current.volumes.clone()),
                    None => host.prepare(pod, &sources, &facts).map(Arc::new),
                };
                match result {
                    Ok(prepared) => {
                        self.mount_error = None;
                        self.prepared = Some(PreparedVolumes {
                            sources: sources.clone(),
                            pod_version: version,
                            volumes: prepared.clone(),
                        });
                        prepared
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if self.mount_error.as_ref() != Some(&message) {
                            self.event(pod, None, true, "Mount", "FailedMount", message.clone());
                            self.mount_error = Some(message);
                        }
                        sooner(&mut requeue, REQUEUE);
                        return Ok(SyncResult { observed: self.observe().await?, requeue });
                    }
                }
            }
            None => Arc::new(BTreeMap::new()),
        };
        let ctx = SyncContext {
            pod,
            sandbox_id: &sandbox_id,
            sandbox: &sandbox,
            facts: &facts,
            sources: &sources,
            prepared: &prepared,
        };

        // Init containers, one at a time, in order.
        let mut initialized = true;
        for (index, container) in spec.init_containers.iter().flatten().enumerate() {
            if !self.drive(&ctx, container, index, true, &mut requeue).await? {
                initialized = false;
                sooner(&mut requeue, REQUEUE);
                break;
            }
        }
        if initialized {
            for (index, container) in spec.containers.iter().enumerate() {
                self.drive(&ctx, container, index, false, &mut requeue).await?;
            }
        }
        let observed = self.observe().await?;
        // Something may still exit, or has exited and is to be restarted: look again.
        let restarts = |exit_code: i32| match spec.restart_policy.as_deref() {
            Some("Never") => false,
            Some("OnFailure") => exit_code != 0,
            _ => true,
        };
        let all_done = observed.containers.iter().all(|c| {
            c.waiting.is_none()
                && c.current.as_ref().is_some_and(|s| s.state == ContainerState::Exited && !restarts(s.exit_code))
        });
        if !all_done {
            sooner(&mut requeue, self.node.timing.relist);
        }
        // Look again when a container is due to exit by itself (simulated commands).
        for exits in self.containers.iter().filter_map(|slot| self.runtime.exits_in(slot.id.as_deref()?)) {
            sooner(&mut requeue, exits);
        }
        Ok(SyncResult { observed, requeue })
    }

    /// Moves one container towards what its pod wants. For an init container, returns
    /// whether it has completed.
    async fn drive(
        &mut self,
        ctx: &SyncContext<'_>,
        spec: &ApiContainer,
        index: usize,
        init: bool,
        requeue: &mut Option<Duration>,
    ) -> Result<bool> {
        let pod_policy = ctx.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
        // Init containers are retried on failure unless the pod never restarts.
        let policy = if init && pod_policy != "Never" { "OnFailure" } else { pod_policy };
        let mut status = self.status_of(self.slot_ref(init, index)).await?;

        // A liveness or startup probe failed: kill, then restart by the policy below.
        let running = status.as_ref().is_some_and(|s| s.state == ContainerState::Running);
        let failure = self.slot_ref(init, index).probes.as_ref().and_then(|p| p.results.failure());
        if let (true, Some(why)) = (running, failure) {
            self.event(ctx.pod, Some((&spec.name, init)), false, "Kill", "Killing", why);
            // A probe may set its own grace period for the kills it causes.
            let probe_grace = [&spec.liveness_probe, &spec.startup_probe]
                .into_iter()
                .flatten()
                .find_map(|p| p.termination_grace_period_seconds)
                .map(|s| Duration::from_secs(s.max(0) as u64).max(MIN_GRACE));
            self.kill(ctx.pod, spec, index, init, probe_grace).await?;
            status = self.status_of(self.slot_ref(init, index)).await?;
        }

        match status {
            None => {
                self.start(ctx, spec, index, init).await?;
                let usual = self.node.timing.backoff.initial.min(REQUEUE * 10);
                let slot = self.slot(init, index);
                if slot.waiting.is_some() {
                    sooner(requeue, slot.retry_in.take().unwrap_or(usual));
                }
            }
            Some(s) if s.state == ContainerState::Exited => {
                let log_path = Path::new(&ctx.sandbox.log_directory)
                    .join(&spec.name)
                    .join(format!("{}.log", self.slot_ref(init, index).attempt));
                let slot = self.slot(init, index);
                if slot.termination_message.is_none() {
                    slot.termination_message =
                        Some(termination_message(spec, slot.termination_log.as_deref(), &s, &log_path));
                }
                slot.probes = None;
                if init && s.exit_code == 0 {
                    return Ok(true);
                }
                let restart = match policy {
                    "Always" => true,
                    "OnFailure" => s.exit_code != 0,
                    _ => false,
                };
                if restart {
                    let now = Instant::now();
                    let backoff_policy = self.node.timing.backoff;
                    let slot = self.slot(init, index);
                    let exited = *slot.exited_at.get_or_insert(now);
                    match slot.backoff.remaining(backoff_policy, exited, now) {
                        Some(wait) => {
                            let pod = ctx.pod;
                            let pod_name = format!(
                                "{}_{}({})",
                                pod.metadata.name.as_deref().unwrap_or_default(),
                                pod.metadata.namespace.as_deref().unwrap_or_default(),
                                pod.metadata.uid.as_deref().unwrap_or_default()
                            );
                            let delay = go_duration(slot.backoff.current().unwrap_or_default());
                            let message =
                                format!("back-off {delay} restarting failed container={} pod={pod_name}", spec.name);
                            let first = slot.waiting.is_none();
                            slot.waiting = Some(("CrashLoopBackOff", message));
                            if first {
                                let note =
                                    format!("Back-off restarting failed container {} in pod {pod_name}", spec.name);
                                self.event(pod, Some((&spec.name, init)), true, "BackOff", "BackOff", note);
                            }
                            sooner(requeue, wait);
                        }
                        None => {
                            slot.backoff.restarted(backoff_policy, now);
                            self.start(ctx, spec, index, init).await?;
                        }
                    }
                }
            }
            // Created but never started (the start failed): a new instance, a little later.
            Some(s) if s.state == ContainerState::Created => {
                let usual = self.node.timing.backoff.initial.min(REQUEUE * 10);
                let waited = self.slot_ref(init, index).exited_at.is_some_and(|at| at.elapsed() >= usual);
                if waited {
                    self.start(ctx, spec, index, init).await?;
                } else {
                    self.slot(init, index).exited_at.get_or_insert_with(Instant::now);
                    sooner(requeue, usual);
                }
            }
            Some(_) => {}
        }
        let done = self.status_of(self.slot_ref(init, index)).await?;
        Ok(done.is_some_and(|s| s.state == ContainerState::Exited && s.exit_code == 0))
    }

    fn slot_ref(&self, init: bool, index: usize) -> &Slot {
        if init {
            &self.init[index]
        } else {
            &self.containers[index]
        }
    }

    /// Kills the current instance of a container (preStop, then stop within the pod's
    /// terminationGracePeriodSeconds).
    async fn kill(
        &mut self,
        pod: &Pod,
        spec: &ApiContainer,
        index: usize,
        init: bool,
        grace: Option<Duration>,
    ) -> Result<()> {
        let events = self.event_sink(pod, Some((&spec.name, init)));
        let slot = self.slot(init, index);
        slot.probes = None;
        let Some(id) = slot.id.clone() else { return Ok(()) };
        let grace = grace.unwrap_or_else(|| termination_grace(pod));
        stop_container(&self.runtime, &self.node.prober, Some(spec), &id, grace, events.as_ref()).await
    }

    /// Marks a container as waiting for `reason` and records the kubelet's Failed event.
    fn wait_for(
        &mut self,
        pod: &Pod,
        spec: &ApiContainer,
        index: usize,
        init: bool,
        reason: &'static str,
        message: String,
    ) {
        self.event(pod, Some((&spec.name, init)), true, "Create", "Failed", format!("Error: {message}"));
        self.slot(init, index).waiting = Some((reason, message));
    }

    /// Pulls the image as its pull policy says. Returns false (and sets the waiting
    /// reason) when there is no image to run.
    async fn pull(&mut self, pod: &Pod, spec: &ApiContainer, index: usize, init: bool) -> Result<bool> {
        let image = spec.image.clone().unwrap_or_default();
        let policy = pull_policy(spec);
        let container = Some((spec.name.as_str(), init));
        let present = if policy == "Always" { None } else { self.runtime.image_status(&image).await? };
        if present.is_some() {
            let note = format!("Container image \"{image}\" already present on machine");
            self.event(pod, container, false, "Pull", "Pulled", note);
            return Ok(true);
        }
        if policy == "Never" {
            let message = format!("Container image \"{image}\" is not present with pull policy of Never");
            self.event(pod, container, true, "Pull", "ErrImageNeverPull", message.clone());
            self.slot(init, index).waiting = Some(("ErrImageNeverPull", message));
            return Ok(false);
        }
        let now = Instant::now();
        let backoff = self.node.timing.pull_backoff;
        let slot = self.slot(init, index);
        if let Some(wait) = slot.pull_failed_at.and_then(|failed| slot.pull_backoff.remaining(backoff, failed, now)) {
            let message = format!("Back-off pulling image \"{image}\"");
            let first = slot.waiting.is_none() || matches!(slot.waiting, Some(("ErrImagePull", _)));
            slot.waiting = Some(("ImagePullBackOff", message.clone()));
            slot.retry_in = Some(wait);
            if first {
                self.event(pod, container, false, "Pull", "BackOff", message);
                self.event(pod, container, true, "Pull", "Failed", "Error: ImagePullBackOff".into());
            }
            return Ok(false);
        }
        self.event(pod, container, false, "Pull", "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        let credentials = self.pull_credentials(pod).await;
        let auths = crate::pullsecrets::for_image(&image, &credentials);
        // Each matching credential in turn, as the kubelet; anonymous when none matches.
        let mut pulled = self.runtime.pull_image(&image, auths.first()).await;
        for auth in auths.iter().skip(1) {
            if pulled.is_ok() {
                break;
            }
            pulled = self.runtime.pull_image(&image, Some(auth)).await;
        }
        match pulled {
            Ok(_) => {
                self.slot(init, index).pull_failed_at = None;
                let took = go_duration(started.elapsed());
                let size = self.runtime.image_status(&image).await.ok().flatten().map(|i| i.size).unwrap_or(0);
                let note = format!(
                    "Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes."
                );
                self.event(pod, container, false, "Pull", "Pulled", note);
                Ok(true)
            }
            Err(e) => {
                // The kubelet shows the runtime's error as it came (`rpc error: code = …`).
                let cause = match e {
                    RuntimeError::ImagePull { message, .. } => message,
                    other => other.to_string(),
                };
                let message = format!("Failed to pull image \"{image}\": {cause}");
                self.event(pod, container, true, "Pull", "Failed", message);
                self.event(pod, container, true, "Pull", "Failed", "Error: ErrImagePull".into());
                let slot = self.slot(init, index);
                slot.waiting = Some(("ErrImagePull", cause));
                slot.pull_backoff.restarted(backoff, now);
                slot.pull_failed_at = Some(now);
                slot.retry_in = slot.pull_backoff.current();
                Ok(false)
            }
        }
    }

    /// The registry credentials of the Secrets the pod's imagePullSecrets and its
    /// ServiceAccount's name. Secrets that cannot be read are reported and skipped.
    async fn pull_credentials(&self, pod: &Pod) -> Vec<(String, crate::runtime::RegistryAuth)> {
        let Some(client) = self.node.client.clone() else { return Vec::new() };
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let spec = pod.spec.as_ref();
        let mut names: Vec<String> =
            spec.and_then(|s| s.image_pull_secrets.as_ref()).into_iter().flatten().map(|r| r.name.clone()).collect();
        let account = spec.and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into());
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
        if let Ok(Some(account)) = accounts.get_opt(&account).await {
            names.extend(account.image_pull_secrets.into_iter().flatten().map(|r| r.name));
        }
        names.dedup();
        let secrets: Api<Secret> = Api::namespaced(client, &namespace);
        let mut credentials = Vec::new();
        let mut missing = Vec::new();
        for name in names.iter().filter(|n| !n.is_empty()) {
            match secrets.get_opt(name).await {
                Ok(Some(secret)) => credentials.extend(crate::pullsecrets::credentials_of(&secret)),
                _ => missing.push(format!("\"{name}\"")),
            }
        }
        if !missing.is_empty() {
            let note = format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                missing.join(", ")
            );
            self.event(pod, None, true, "Pull", "FailedToRetrieveImagePullSecret", note);
        }
        credentials
    }

    /// Creates and starts the next instance of a container, with its probes and postStart hook.
    async fn start(&mut self, ctx: &SyncContext<'_>, spec: &ApiContainer, index: usize, init: bool) -> Result<()> {
        let pod = ctx.pod;
        let runtime = self.runtime.clone();
        let slot = self.slot(init, index);
        slot.probes = None;
        slot.waiting = None;
        if let Some(old) = slot.id.take() {
            let mut previous = runtime.container_status(&old).await.ok();
            if let (Some(previous), Some(message)) = (&mut previous, slot.termination_message.take()) {
                if !message.is_empty() {
                    previous.message = message;
                }
            }
            slot.last = previous;
            runtime.remove_container(&old).await?;
            slot.attempt += 1;
        }
        slot.exited_at = None;
        slot.termination_message = None;
        if let Some(old_log) = slot.termination_log.take() {
            let _ = fs::remove_file(old_log);
        }
        let attempt = slot.attempt;

        if !self.pull(pod, spec, index, init).await? {
            return Ok(());
        }
        let envs = match env::container_env(pod, spec, ctx.sources, ctx.facts) {
            Ok(envs) => envs,
            Err(e) => {
                self.wait_for(pod, spec, index, init, "CreateContainerConfigError", e.0);
                return Ok(());
            }
        };
        let (command, args) = env::expand_command(spec, &envs);
        let mut mounts = match volumes::container_mounts(spec, ctx.prepared) {
            Ok(mounts) => mounts,
            Err(message) => {
                self.wait_for(pod, spec, index, init, "CreateContainerConfigError", message);
                return Ok(());
            }
        };
        if let Some(host) = &self.node.volumes {
            let log = host.termination_log(&self.uid, &spec.name, &format!("{:08x}", rand::random::<u32>()));
            let created = log.parent().map(fs::create_dir_all).transpose().and_then(|_| fs::write(&log, b""));
            // Writable by any user the container runs as.
            let created = created.and_then(|_| fs::set_permissions(&log, fs::Permissions::from_mode(0o666)));
            if created.is_ok() {
                let path = spec.termination_message_path.clone().unwrap_or_else(|| DEFAULT_TERMINATION_PATH.into());
                mounts.push(Mount {
                    container_path: path,
                    host_path: log.to_string_lossy().into_owned(),
                    readonly: false,
                    selinux_relabel: false,
                });
                self.slot(init, index).termination_log = Some(log);
            }
        }

        let mut container_labels = pod_labels(pod);
        container_labels.insert(labels::CONTAINER_NAME.into(), spec.name.clone());
        if init {
            container_labels.insert(labels::CONTAINER_KIND.into(), "init".into());
        }
        let config = ContainerConfig {
            metadata: ContainerMetadata { name: spec.name.clone(), attempt },
            image: spec.image.clone().unwrap_or_default(),
            command,
            args,
            working_dir: spec.working_dir.clone().unwrap_or_default(),
            envs,
            labels: container_labels,
            annotations: BTreeMap::new(),
            log_path: format!("{}/{attempt}.log", spec.name),
            mounts,
            stdin: spec.stdin.unwrap_or(false),
            stdin_once: spec.stdin_once.unwrap_or(false),
            tty: spec.tty.unwrap_or(false),
            linux: resources::linux_config(pod, spec, self.node.memory_capacity),
        };
        let id = match runtime.create_container(ctx.sandbox_id, &config, ctx.sandbox).await {
            Ok(id) => id,
            Err(e) => {
                self.wait_for(pod, spec, index, init, "CreateContainerError", e.to_string());
                return Ok(());
            }
        };
        let container = Some((spec.name.as_str(), init));
        self.event(pod, container, false, "Create", "Created", format!("Created container: {}", spec.name));
        self.slot(init, index).id = Some(id.clone());
        if let Err(e) = runtime.start_container(&id).await {
            self.wait_for(pod, spec, index, init, "RunContainerError", e.to_string());
            return Ok(());
        }
        self.event(pod, container, false, "Start", "Started", format!("Started container {}", spec.name));

        let target = Target {
            runtime: runtime.clone(),
            prober: self.node.prober.clone(),
            container_id: id.clone(),
            pod_ip: ctx.facts.pod_ips.first().copied(),
            ports: spec.ports.clone().unwrap_or_default(),
        };
        if let Some(hook) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            if run_hook(hook, &target, termination_grace(pod)).await.is_err() {
                self.event(pod, container, true, "Start", "FailedPostStartHook", "PostStartHook failed".into());
                self.kill(pod, spec, index, init, None).await?;
                return Ok(());
            }
        }
        let has_probes =
            spec.liveness_probe.is_some() || spec.readiness_probe.is_some() || spec.startup_probe.is_some();
        if has_probes && !init {
            let events = self.event_sink(pod, container);
            let probes = ContainerProbes::start(spec, target, events, self.wake.clone());
            self.slot(init, index).probes = Some(probes);
        }
        Ok(())
    }

    async fn view(&self, slot: &Slot) -> Result<ContainerView> {
        let mut current = self.status_of(slot).await?;
        if let (Some(c), Some(message)) = (&mut current, &slot.termination_message) {
            if c.state == ContainerState::Exited && !message.is_empty() {
                c.message = message.clone();
            }
        }
        Ok(ContainerView {
            current,
            last: slot.last.clone(),
            restarts: slot.attempt as i32,
            waiting: slot.waiting.clone(),
            ready: slot.probes.as_ref().is_none_or(|p| p.results.ready()),
            started: slot.probes.as_ref().is_none_or(|p| p.results.started()),
        })
    }

    /// The current state of the pod's sandbox and containers.
    pub async fn observe(&self) -> Result<Observed> {
        let mut observed = Observed::default();
        if let Some(id) = &self.sandbox {
            if let Ok(status) = self.runtime.pod_sandbox_status(id).await {
                observed.sandbox_ready = status.state == SandboxState::Ready;
                observed.pod_ips = status.network.ips;
            }
        }
        for slot in &self.init {
            observed.init.push(self.view(slot).await?);
        }
        for slot in &self.containers {
            observed.containers.push(self.view(slot).await?);
        }
        Ok(observed)
    }

    /// Stops every container (each with its preStop hook within `grace`, all at once),
    /// then the sandbox, removes them and the pod's files. `pod` is None when the pod is
    /// already gone from the API (no hooks, no events).
    pub async fn terminate(&mut self, pod: Option<&Pod>, grace: Duration) -> Result<()> {
        let specs: Vec<(Option<ApiContainer>, bool)> = match pod.and_then(|p| p.spec.as_ref()) {
            Some(spec) => spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| (Some(c.clone()), true))
                .chain(spec.containers.iter().map(|c| (Some(c.clone()), false)))
                .collect(),
            None => Vec::new(),
        };
        let mut stops = Vec::new();
        for (i, slot) in self.init.iter_mut().chain(self.containers.iter_mut()).enumerate() {
            slot.probes = None;
            if let Some(id) = slot.id.take() {
                let (spec, init) = specs.get(i).cloned().unwrap_or((None, false));
                stops.push((id, spec, init));
            }
        }
        let runtime = &self.runtime;
        let prober = &self.node.prober;
        let mut running = Vec::new();
        for (id, spec, init) in &stops {
            let is_running = runtime.container_status(id).await.is_ok_and(|s| s.state == ContainerState::Running);
            let sink = match (pod, spec) {
                (Some(pod), Some(spec)) => self.event_sink(pod, Some((&spec.name, *init))),
                _ => None,
            };
            if let (true, Some(sink), Some(spec)) = (is_running, &sink, spec) {
                sink.recorder.normal(
                    sink.regarding.clone(),
                    "Kill",
                    "Killing",
                    format!("Stopping container {}", spec.name),
                );
            }
            running.push(sink);
        }
        let futures = stops
            .iter()
            .zip(&running)
            .map(|((id, spec, _), sink)| stop_container(runtime, prober, spec.as_ref(), id, grace, sink.as_ref()));
        for result in futures::future::join_all(futures).await {
            result?;
        }
        for (id, _, _) in &stops {
            runtime.remove_container(id).await?;
        }
        if let Some(id) = self.sandbox.take() {
            runtime.stop_pod_sandbox(&id).await?;
            runtime.remove_pod_sandbox(&id).await?;
        }
        if let (Some(host), false) = (&self.node.volumes, self.uid.is_empty()) {
            if let Err(e) = host.cleanup(&self.uid) {
                tracing::warn!(uid = %self.uid, error = %e, "removing the pod's directory failed");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::simulated::{Behaviour, SimulatedRuntime};
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": spec}))
            .unwrap()
    }

    fn sim(stop_delay: Duration) -> Arc<SimulatedRuntime> {
        let behaviour = Behaviour { stop_delay, record_configs: true };
        Arc::new(SimulatedRuntime::new("10.42.0.0/24".parse().unwrap(), behaviour))
    }

    fn node(timing: PodTiming) -> Arc<NodeServices> {
        let mut node = NodeServices::detached("n1", "198.18.0.1".parse().unwrap()).unwrap();
        node.timing = timing;
        node.memory_capacity = 1 << 33;
        Arc::new(node)
    }

    fn worker(runtime: &Arc<SimulatedRuntime>) -> PodWorker {
        PodWorker::new(runtime.clone(), node(PodTiming::default()))
    }

    #[test]
    fn sandbox_gets_the_pods_hostname_and_dns_per_policy() {
        let mut services = NodeServices::detached("n1", "198.18.0.1".parse().unwrap()).unwrap();
        let plain = pod(json!({"containers": []}));
        assert_eq!(sandbox_config(&plain, 0, &services).0.dns, None, "no cluster DNS: the runtime's default");
        services.dns = Some(Arc::new(crate::dns::ClusterDns {
            servers: vec!["10.43.0.10".parse().unwrap()],
            domain: "cluster.local".into(),
            host: Default::default(),
        }));
        let (config, warnings) = sandbox_config(&plain, 0, &services);
        assert_eq!(config.hostname, "p");
        let dns = config.dns.unwrap();
        assert_eq!(dns.servers, vec!["10.43.0.10"]);
        assert_eq!(dns.searches[0], "ns.svc.cluster.local");
        assert!(warnings.is_empty());

        let named = pod(json!({"hostname": "db-0", "subdomain": "db", "containers": []}));
        assert_eq!(sandbox_config(&named, 0, &services).0.hostname, "db-0");
        let long = pod(json!({"hostname": format!("{}-{}", "a".repeat(62), "b"), "containers": []}));
        assert_eq!(sandbox_config(&long, 0, &services).0.hostname, "a".repeat(62), "cut to 63 without the dash");
    }

    #[tokio::test]
    async fn exited_containers_are_relisted_while_they_are_to_restart() {
        let cases = [
            ("Always", 1, true),
            ("Always", 0, true),
            ("OnFailure", 1, true),
            ("OnFailure", 0, false),
            ("Never", 1, false),
        ];
        for (policy, exit_code, relisted) in cases {
            let runtime = sim(Duration::ZERO);
            runtime.crash_on_start("app", Some(exit_code));
            let pod = pod(json!({"restartPolicy": policy, "containers": [{"name": "app", "image": "i"}]}));
            let result = worker(&runtime).sync(&pod).await.unwrap();
            let state = result.observed.containers[0].current.as_ref().map(|c| c.state);
            assert_eq!(state, Some(ContainerState::Exited), "{policy}");
            assert_eq!(result.requeue.is_some(), relisted, "{policy}, exit {exit_code}: {:?}", result.requeue);
        }
    }

    #[tokio::test]
    async fn runs_init_containers_then_containers() {
        let runtime = sim(Duration::ZERO);
        let mut worker = worker(&runtime);
        let pod = pod(json!({
            "initContainers": [{"name": "one", "image": "busybox"}, {"name": "two", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx", "command": ["sleep", "$(A)000"],
                "env": [{"name": "A", "value": "1"}, {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]
        }));
        let result = worker.sync(&pod).await.unwrap();
        assert_eq!(result.requeue, Some(Duration::from_secs(1)), "running containers are relisted");
        let observed = result.observed;
        assert!(observed.sandbox_ready);
        assert_eq!(observed.pod_ips.len(), 1);
        assert!(observed.init.iter().all(|c| c.current.as_ref().unwrap().state == ContainerState::Exited));
        let app = observed.containers[0].current.as_ref().unwrap();
        assert_eq!(app.state, ContainerState::Running);
        let config = runtime.config_of(&app.id).unwrap();
        assert_eq!(config.command, vec!["sleep", "1000"]);
        assert_eq!(config.envs[0], ("A".to_string(), "1".to_string()));
        assert_eq!(config.linux.resources.cpu_quota, 50_000);
        assert_eq!(config.linux.resources.memory_limit_in_bytes, 64 << 20);
        // The init containers have no limits: the pod is Burstable, with no memory request.
        assert_eq!(config.linux.resources.oom_score_adj, 999);
        // A second sync changes nothing.
        worker.sync(&pod).await.unwrap();
        assert_eq!(runtime.list_containers(&ContainerFilter::default()).await.unwrap().len(), 3);
        assert_eq!(runtime.sandbox_count(), 1);
    }

    #[tokio::test]
    async fn restarts_by_policy_and_replaces_a_lost_sandbox() {
        let runtime = sim(Duration::ZERO);
        let mut worker = worker(&runtime);
        let pod = pod(json!({"containers": [{"name": "app", "image": "nginx"}]}));
        let first = worker.sync(&pod).await.unwrap().observed;
        let id = first.containers[0].current.as_ref().unwrap().id.clone();
        runtime.exit_container(&id, 1).unwrap();
        let second = worker.sync(&pod).await.unwrap().observed;
        assert_eq!(second.containers[0].restarts, 1);
        assert_eq!(second.containers[0].current.as_ref().unwrap().state, ContainerState::Running);
        let last = second.containers[0].last.as_ref().unwrap();
        assert_eq!((last.id.as_str(), last.exit_code, last.reason.as_str()), (id.as_str(), 1, "Error"));

        let sandbox = worker.sandbox.clone().unwrap();
        runtime.stop_pod_sandbox(&sandbox).await.unwrap();
        let third = worker.sync(&pod).await.unwrap().observed;
        assert!(third.sandbox_ready);
        assert_eq!(third.containers[0].restarts, 2);
        assert_eq!(runtime.sandbox_count(), 1, "the lost sandbox was removed");

        let never =
            super::tests::pod(json!({"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox"}]}));
        let mut worker = super::tests::worker(&runtime);
        let observed = worker.sync(&never).await.unwrap().observed;
        runtime.exit_container(&observed.containers[0].current.as_ref().unwrap().id, 0).unwrap();
        let observed = worker.sync(&never).await.unwrap().observed;
        assert_eq!(observed.containers[0].current.as_ref().unwrap().state, ContainerState::Exited, "not restarted");
    }

    #[tokio::test(start_paused = true)]
    async fn crash_loops_back_off_exponentially() {
        let runtime = sim(Duration::ZERO);
        runtime.crash_on_start("app", Some(2));
        // No relisting in between: the requeue is the back-off's.
        let timing = PodTiming { relist: Duration::from_secs(3600), ..PodTiming::default() };
        let mut worker = PodWorker::new(runtime.clone(), node(timing));
        let pod = pod(json!({"containers": [{"name": "app", "image": "nginx"}]}));
        let first = worker.sync(&pod).await.unwrap();
        assert_eq!(first.observed.containers[0].restarts, 0);
        // The first restart is immediate; each later one waits 10 s, 20 s, 40 s ...
        let second = worker.sync(&pod).await.unwrap();
        assert_eq!(second.observed.containers[0].restarts, 1);
        let mut waits = Vec::new();
        for expected_restarts in 2..=4 {
            let result = worker.sync(&pod).await.unwrap();
            let view = &result.observed.containers[0];
            let (reason, message) = view.waiting.clone().unwrap();
            assert_eq!(reason, "CrashLoopBackOff");
            assert!(
                message.starts_with("back-off ") && message.ends_with("restarting failed container=app pod=p_ns(u1)"),
                "{message}"
            );
            let wait = result.requeue.unwrap();
            waits.push(wait.as_secs());
            tokio::time::advance(wait / 2).await;
            assert_eq!(
                worker.sync(&pod).await.unwrap().observed.containers[0].restarts,
                expected_restarts - 1,
                "still waiting"
            );
            tokio::time::advance(wait - wait / 2).await;
            let restarted = worker.sync(&pod).await.unwrap().observed;
            assert_eq!(restarted.containers[0].restarts, expected_restarts);
        }
        assert_eq!(waits, vec![10, 20, 40]);
    }

    #[tokio::test(start_paused = true)]
    async fn terminate_stops_everything_within_the_grace_period() {
        let runtime = sim(Duration::from_secs(10));
        let mut worker = worker(&runtime);
        let pod = pod(json!({"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}));
        worker.sync(&pod).await.unwrap();
        let started = tokio::time::Instant::now();
        worker.terminate(Some(&pod), Duration::from_secs(3)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3), "containers stop in parallel, killed at the deadline");
        assert_eq!(runtime.sandbox_count(), 0);
        assert!(runtime.list_containers(&ContainerFilter::default()).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn prestop_hooks_take_from_the_grace_period() {
        let runtime = sim(Duration::from_secs(60));
        let mut worker = worker(&runtime);
        let pod = pod(json!({"containers": [{"name": "a", "image": "i",
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}}}]}));
        worker.sync(&pod).await.unwrap();
        let started = tokio::time::Instant::now();
        worker.terminate(Some(&pod), Duration::from_secs(8)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(8), "5 s of hook, then the 3 s left");
    }

    #[tokio::test]
    async fn oom_kills_show_in_the_last_state() {
        let runtime = sim(Duration::ZERO);
        let mut worker = worker(&runtime);
        let pod =
            pod(json!({"containers": [{"name": "app", "image": "i", "resources": {"limits": {"memory": "16Mi"}}}]}));
        let first = worker.sync(&pod).await.unwrap().observed;
        runtime.oom_kill(&first.containers[0].current.as_ref().unwrap().id).unwrap();
        let after = worker.sync(&pod).await.unwrap().observed;
        let last = after.containers[0].last.as_ref().unwrap();
        assert_eq!((last.exit_code, last.reason.as_str()), (137, "OOMKilled"));
        assert_eq!(after.containers[0].restarts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_pulls_back_off() {
        let runtime = sim(Duration::ZERO);
        runtime.set_image_missing("ghost:1", true);
        let timing = PodTiming { relist: Duration::from_secs(3600), ..PodTiming::default() };
        let mut worker = PodWorker::new(runtime.clone(), node(timing));
        let pod = pod(json!({"containers": [{"name": "app", "image": "ghost:1"}]}));
        let first = worker.sync(&pod).await.unwrap();
        let (reason, _) = first.observed.containers[0].waiting.clone().unwrap();
        assert_eq!(reason, "ErrImagePull");
        assert_eq!(first.requeue, Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(3)).await;
        let second = worker.sync(&pod).await.unwrap();
        let waiting = second.observed.containers[0].waiting.clone().unwrap();
        assert_eq!(waiting, ("ImagePullBackOff", "Back-off pulling image \"ghost:1\"".to_string()));
        assert_eq!(second.requeue, Some(Duration::from_secs(7)));
        tokio::time::advance(Duration::from_secs(7)).await;
        runtime.set_image_missing("ghost:1", false);
        let third = worker.sync(&pod).await.unwrap().observed;
        assert_eq!(third.containers[0].current.as_ref().unwrap().state, ContainerState::Running);
    }

    #[tokio::test]
    async fn a_failed_post_start_hook_kills_the_container() {
        let runtime = sim(Duration::ZERO);
        let mut worker = worker(&runtime);
        let pod = pod(json!({"restartPolicy": "Never", "containers": [{"name": "app", "image": "i",
            "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}}]}));
        let observed = worker.sync(&pod).await.unwrap().observed;
        let app = observed.containers[0].current.as_ref().unwrap();
        assert_eq!((app.state, app.exit_code), (ContainerState::Exited, 143), "stopped after the hook failed");

        let fine = super::tests::pod(json!({"containers": [{"name": "app", "image": "i",
            "lifecycle": {"postStart": {"exec": {"command": ["true"]}}}}]}));
        let mut worker = super::tests::worker(&runtime);
        let observed = worker.sync(&fine).await.unwrap().observed;
        assert_eq!(observed.containers[0].current.as_ref().unwrap().state, ContainerState::Running);
    }

    #[tokio::test]
    async fn missing_config_is_a_config_error() {
        let runtime = sim(Duration::ZERO);
        let mut worker = worker(&runtime);
        let pod = pod(json!({"containers": [{"name": "app", "image": "i",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "x"}}}]}]}));
        let result = worker.sync(&pod).await.unwrap();
        let view = &result.observed.containers[0];
        assert!(view.current.is_none());
        assert_eq!(view.waiting, Some(("CreateContainerConfigError", "configmap \"settings\" not found".to_string())));
        assert!(result.requeue.is_some(), "tried again later");
    }

    #[tokio::test]
    async fn termination_messages_come_from_the_host_file() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = sim(Duration::ZERO);
        let mut node = NodeServices::detached("n1", "198.18.0.1".parse().unwrap()).unwrap();
        node.volumes = Some(VolumeHost { pods_dir: dir.path().join("pods"), tmpfs: false });
        let mut worker = PodWorker::new(runtime.clone(), Arc::new(node));
        let pod = pod(json!({"restartPolicy": "Never", "containers": [{"name": "app", "image": "i",
            "terminationMessagePath": "/tmp/why"}]}));
        let observed = worker.sync(&pod).await.unwrap().observed;
        let id = observed.containers[0].current.as_ref().unwrap().id.clone();
        let config = runtime.config_of(&id).unwrap();
        let mount = config.mounts.iter().find(|m| m.container_path == "/tmp/why").unwrap();
        // The container writes its message, then exits.
        fs::write(&mount.host_path, "disk full").unwrap();
        runtime.exit_container(&id, 3).unwrap();
        let observed = worker.sync(&pod).await.unwrap().observed;
        assert_eq!(observed.containers[0].current.as_ref().unwrap().message, "disk full");
        worker.terminate(Some(&pod), Duration::ZERO).await.unwrap();
        assert!(!dir.path().join("pods/u1").exists(), "the pod's files are removed");
    }

    #[test]
    fn grace_period_comes_from_the_deletion() {
        let mut p = pod(json!({"terminationGracePeriodSeconds": 45, "containers": []}));
        assert_eq!(grace_period(&p), Duration::from_secs(45));
        p.metadata.deletion_grace_period_seconds = Some(5);
        assert_eq!(grace_period(&p), Duration::from_secs(5));
        p.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(grace_period(&p), Duration::from_secs(2));
    }

    #[test]
    fn pull_policy_defaults() {
        let c = |image: &str| -> ApiContainer { serde_json::from_value(json!({"name": "a", "image": image})).unwrap() };
        assert_eq!(pull_policy(&c("nginx")), "Always");
        assert_eq!(pull_policy(&c("nginx:latest")), "Always");
        assert_eq!(pull_policy(&c("nginx:1.27")), "IfNotPresent");
        assert_eq!(pull_policy(&c("localhost:5000/app")), "Always");
        assert_eq!(pull_policy(&c("app@sha256:abc")), "IfNotPresent");
    }

    #[tokio::test]
    async fn a_new_worker_adopts_what_runs() {
        let runtime = sim(Duration::ZERO);
        let pod = pod(json!({
            "initContainers": [{"name": "setup", "image": "busybox:1"}],
            "containers": [{"name": "app", "image": "busybox:1"}]
        }));
        let before = worker(&runtime).sync(&pod).await.unwrap().observed;
        let after = worker(&runtime).sync(&pod).await.unwrap().observed;
        let id = |v: &ContainerView| v.current.as_ref().unwrap().id.clone();
        assert_eq!(id(&before.init[0]), id(&after.init[0]));
        assert_eq!(id(&before.containers[0]), id(&after.containers[0]));
        assert_eq!(after.containers[0].restarts, 0);
        assert_eq!(runtime.sandbox_count(), 1);
        assert_eq!(runtime.list_containers(&ContainerFilter::default()).await.unwrap().len(), 2);
    }
}
