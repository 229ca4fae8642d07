//! What the agent does for one pod, against any [`Runtime`]: bring its sandbox up, run
//! init containers in order and then the containers, restart what the restart policy
//! says to restart, observe it all for the status; and on deletion stop the containers
//! within the grace period and remove the sandbox. The same code runs over containerd
//! and over the simulated runtime.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as ApiContainer, Pod};

use crate::podstatus::Observed;
use crate::runtime::{
    labels, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatus, PodSandboxConfig,
    PodSandboxMetadata, PortMapping, Result, Runtime, RuntimeError, SandboxFilter, SandboxState,
};
use tokio::time::Instant;

/// The kubelet's floor for a container's stop timeout.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// How soon to look again while something is in progress (an init container running).
const REQUEUE: Duration = Duration::from_secs(1);

/// Why a container is waiting when the pod worker knows better than the runtime (an
/// image that cannot be pulled, a restart held back), with the kubelet's reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

impl Waiting {
    fn new(reason: &str, message: String) -> Self {
        Waiting { reason: reason.into(), message }
    }
}

/// How long failures hold retries back, doubling from the initial delay up to the
/// maximum (the kubelet: 10 s to 5 min for both).
#[derive(Clone, Copy, Debug)]
pub struct Backoffs {
    pub image_pull_initial: Duration,
    pub image_pull_max: Duration,
    pub restart_initial: Duration,
    pub restart_max: Duration,
}

impl Default for Backoffs {
    fn default() -> Self {
        Backoffs {
            image_pull_initial: Duration::from_secs(10),
            image_pull_max: Duration::from_secs(300),
            restart_initial: Duration::from_secs(10),
            restart_max: Duration::from_secs(300),
        }
    }
}

fn next_delay(current: Duration, initial: Duration, max: Duration) -> Duration {
    if current.is_zero() {
        initial
    } else {
        (current * 2).min(max)
    }
}

/// A duration as Go prints it (`500ms`, `10s`, `2m40s`), as in the kubelet's messages.
fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{secs}s"),
        _ if secs < 3600 => format!("{}m{}s", secs / 60, secs % 60),
        _ => format!("{}h{}m{}s", secs / 3600, secs / 60 % 60, secs % 60),
    }
}

/// The runtime objects of one container name: the latest instance, its restart count,
/// and the back-off state of its image pulls and restarts.
#[derive(Debug, Default)]
struct Slot {
    id: Option<String>,
    attempt: u32,
    waiting: Option<Waiting>,
    /// The instance the current one replaced, as it ended (the status's lastState).
    last: Option<ContainerStatus>,
    pull_delay: Duration,
    pull_retry: Option<Instant>,
    /// The delay before the next restart (zero: the first restart is immediate).
    restart_delay: Duration,
    /// When the exited instance (by ID) may be replaced.
    restart_at: Option<(String, Instant)>,
}

/// The pull policy of a container. The API server defaults it (Always for `:latest` and
/// untagged images); a pod that somehow lacks one is not pulled needlessly.
fn pull_policy(container: &ApiContainer) -> &str {
    container.image_pull_policy.as_deref().filter(|p| !p.is_empty()).unwrap_or("IfNotPresent")
}

/// What one attempt at starting a container came to.
enum Started {
    Yes,
    /// Not started: the slot says why; look again after this long.
    Waiting(Duration),
}

/// A pod's runtime state as the agent tracks it between syncs.
pub struct PodWorker {
    runtime: Arc<dyn Runtime>,
    /// The sandbox's ID (its config is rebuilt from the pod when needed: thousands of
    /// simulated pods should not each keep a copy).
    sandbox: Option<String>,
    sandbox_attempt: u32,
    init: Vec<Slot>,
    containers: Vec<Slot>,
    /// Whether the runtime was searched for what an earlier agent started for this pod.
    adopted: bool,
    backoffs: Backoffs,
}

/// What a sync found.
pub struct SyncResult {
    pub observed: Observed,
    /// Look again after this long even without a pod change (work in progress).
    pub requeue: Option<Duration>,
}

fn pod_labels(pod: &Pod) -> BTreeMap<String, String> {
    let m = &pod.metadata;
    BTreeMap::from([
        (labels::POD_NAME.to_string(), m.name.clone().unwrap_or_default()),
        (labels::POD_NAMESPACE.to_string(), m.namespace.clone().unwrap_or_default()),
        (labels::POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
    ])
}

fn sandbox_config(pod: &Pod, attempt: u32) -> PodSandboxConfig {
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
    PodSandboxConfig {
        metadata: PodSandboxMetadata { name: name.clone(), uid: uid.clone(), namespace: namespace.clone(), attempt },
        hostname: spec.and_then(|s| s.hostname.clone()).unwrap_or_else(|| name.clone()),
        log_directory: log_directory(pod).to_string_lossy().into_owned(),
        port_mappings: ports,
        labels: pod_labels(pod),
        annotations: m.annotations.clone().unwrap_or_default(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        privileged: spec
            .into_iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .any(|c| c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false)),
    }
}

fn container_config(pod: &Pod, container: &ApiContainer, attempt: u32, init: bool) -> ContainerConfig {
    let mut container_labels = pod_labels(pod);
    container_labels.insert(labels::CONTAINER_NAME.into(), container.name.clone());
    if init {
        container_labels.insert(labels::CONTAINER_KIND.into(), "init".into());
    }
    // Literal values only; valueFrom sources are resolved by the containerd agent's env module.
    let envs =
        container.env.iter().flatten().filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone()))).collect();
    ContainerConfig {
        metadata: ContainerMetadata { name: container.name.clone(), attempt },
        image: container.image.clone().unwrap_or_default(),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs,
        labels: container_labels,
        annotations: BTreeMap::new(),
        log_path: format!("{}/{attempt}.log", container.name),
        ..ContainerConfig::default()
    }
}

/// Where the runtime writes the pod's container logs (the kubelet's layout).
pub fn log_directory(pod: &Pod) -> std::path::PathBuf {
    let m = &pod.metadata;
    let part = |v: &Option<String>| v.clone().unwrap_or_default();
    log_directory_of(&PodSandboxMetadata {
        name: part(&m.name),
        namespace: part(&m.namespace),
        uid: part(&m.uid),
        attempt: 0,
    })
}

fn log_directory_of(pod: &PodSandboxMetadata) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("/var/log/pods/{}_{}_{}", pod.namespace, pod.name, pod.uid))
}

/// Removes the pod's log directory once the pod is gone from the API (as the kubelet
/// does); a finished pod that still exists keeps its logs.
pub async fn remove_logs(pod: &Pod) {
    remove_log_directory(log_directory(pod)).await
}

/// [`remove_logs`] for a pod known only by its sandbox's metadata.
pub async fn remove_sandbox_logs(pod: &PodSandboxMetadata) {
    remove_log_directory(log_directory_of(pod)).await
}

async fn remove_log_directory(dir: std::path::PathBuf) {
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

impl PodWorker {
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        PodWorker {
            runtime,
            sandbox: None,
            sandbox_attempt: 0,
            init: Vec::new(),
            containers: Vec::new(),
            adopted: false,
            backoffs: Backoffs::default(),
        }
    }

    /// Uses `backoffs` for image pulls and restarts instead of the kubelet's.
    pub fn with_backoffs(mut self, backoffs: Backoffs) -> Self {
        self.backoffs = backoffs;
        self
    }

    async fn status_of(&self, slot: &Slot) -> Result<Option<ContainerStatus>> {
        match &slot.id {
            Some(id) => Ok(Some(self.runtime.container_status(id).await?)),
            None => Ok(None),
        }
    }

    /// Takes over what an earlier run of the agent started for this pod (found by the pod
    /// UID label): the newest sandbox and, in it, the newest container of each name, with
    /// their attempt numbers as restart counts. Older sandboxes are removed. A sandbox
    /// that is no longer ready is replaced by the next [`Self::ensure_sandbox`].
    async fn adopt(&mut self, pod: &Pod, init_specs: &[ApiContainer], specs: &[ApiContainer]) -> Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let filter =
            SandboxFilter { labels: BTreeMap::from([(labels::POD_UID.to_string(), uid)]), ..Default::default() };
        let mut sandboxes = self.runtime.list_pod_sandbox(&filter).await?;
        sandboxes.sort_by_key(|s| (s.metadata.attempt, s.created_at));
        let Some(newest) = sandboxes.pop() else { return Ok(()) };
        for stale in sandboxes {
            self.runtime.stop_pod_sandbox(&stale.id).await?;
            self.runtime.remove_pod_sandbox(&stale.id).await?;
        }
        let filter = ContainerFilter { pod_sandbox_id: Some(newest.id.clone()), ..Default::default() };
        let mut containers = self.runtime.list_containers(&filter).await?;
        containers.sort_by_key(|c| (c.metadata.attempt, c.created_at));
        for container in containers {
            let init = container.labels.get(labels::CONTAINER_KIND).is_some_and(|k| k == "init");
            let (specs, slots) = if init { (init_specs, &mut self.init) } else { (specs, &mut self.containers) };
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
                    return Ok((id.clone(), sandbox_config(pod, self.sandbox_attempt)))
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
                        }
                    }
                }
            }
        }
        let config = sandbox_config(pod, self.sandbox_attempt);
        let id = self.runtime.run_pod_sandbox(&config).await?;
        self.sandbox = Some(id.clone());
        Ok((id, config))
    }

    /// Pulls the container's image as its pull policy says. Ok(Err(..)) is a failure the
    /// pod status reports (ErrImagePull, ErrImageNeverPull), Err a runtime that is down.
    async fn ensure_image(&self, spec: &ApiContainer) -> Result<Result<(), Waiting>> {
        let image = spec.image.clone().unwrap_or_default();
        let policy = pull_policy(spec);
        if policy != "Always" && self.runtime.image_status(&image).await?.is_some() {
            return Ok(Ok(()));
        }
        if policy == "Never" {
            let message = format!("Container image \"{image}\" is not present with pull policy of Never");
            return Ok(Err(Waiting::new("ErrImageNeverPull", message)));
        }
        match self.runtime.pull_image(&image, None).await {
            Ok(_) => Ok(Ok(())),
            Err(RuntimeError::ImagePull { message, .. }) => Ok(Err(Waiting::new("ErrImagePull", message))),
            Err(e) => Err(e),
        }
    }

    /// Creates and starts container `index` (of the init or regular list) as its next
    /// attempt, once its image is there.
    async fn start(
        &mut self,
        pod: &Pod,
        spec: &ApiContainer,
        index: usize,
        init: bool,
        sandbox: &(String, PodSandboxConfig),
    ) -> Result<Started> {
        let now = Instant::now();
        let backoffs = self.backoffs;
        let image = spec.image.clone().unwrap_or_default();
        let slot = if init { &self.init[index] } else { &self.containers[index] };
        if let Some(retry) = slot.pull_retry.filter(|at| now < *at) {
            let waiting = Waiting::new("ImagePullBackOff", format!("Back-off pulling image \"{image}\""));
            self.slot(init, index).waiting = Some(waiting);
            return Ok(Started::Waiting(retry - now));
        }
        let pulled = self.ensure_image(spec).await?;
        let slot = self.slot(init, index);
        if let Err(waiting) = pulled {
            // Never-pull failures are not retried by pulling: no back-off, same reason.
            if waiting.reason == "ErrImagePull" {
                slot.pull_delay = next_delay(slot.pull_delay, backoffs.image_pull_initial, backoffs.image_pull_max);
                slot.pull_retry = Some(now + slot.pull_delay);
            }
            slot.waiting = Some(waiting);
            return Ok(Started::Waiting(slot.pull_delay.max(REQUEUE)));
        }
        slot.pull_delay = Duration::ZERO;
        slot.pull_retry = None;

        let old = slot.id.take();
        let attempt = if old.is_some() { slot.attempt + 1 } else { slot.attempt };
        if let Some(old) = old {
            let ended = self.runtime.container_status(&old).await.ok();
            self.runtime.remove_container(&old).await?;
            let slot = self.slot(init, index);
            slot.last = ended;
            slot.attempt = attempt;
        }
        let config = container_config(pod, spec, attempt, init);
        let id = match self.runtime.create_container(&sandbox.0, &config, &sandbox.1).await {
            Ok(id) => id,
            Err(RuntimeError::Unavailable(message)) => return Err(RuntimeError::Unavailable(message)),
            Err(e) => {
                self.slot(init, index).waiting = Some(Waiting::new("CreateContainerError", e.to_string()));
                return Ok(Started::Waiting(REQUEUE));
            }
        };
        let slot = self.slot(init, index);
        slot.id = Some(id.clone());
        slot.waiting = None;
        match self.runtime.start_container(&id).await {
            Ok(()) => Ok(Started::Yes),
            Err(RuntimeError::Unavailable(message)) => Err(RuntimeError::Unavailable(message)),
            // The runtime reports the failed instance as exited (StartError); the restart
            // policy and its back-off take it from there.
            Err(e) => {
                tracing::debug!(error = %e, container = spec.name, "starting a container failed");
                Ok(Started::Yes)
            }
        }
    }

    fn slot(&mut self, init: bool, index: usize) -> &mut Slot {
        if init {
            &mut self.init[index]
        } else {
            &mut self.containers[index]
        }
    }

    /// Restarts an exited container unless its back-off holds it: the first restart is
    /// immediate, later ones wait 10 s, 20 s, ... up to 5 min (CrashLoopBackOff). A
    /// container that ran longer than twice the maximum starts the back-off afresh.
    async fn restart(
        &mut self,
        pod: &Pod,
        spec: &ApiContainer,
        index: usize,
        init: bool,
        sandbox: &(String, PodSandboxConfig),
        exited: &ContainerStatus,
    ) -> Result<Started> {
        let now = Instant::now();
        let backoffs = self.backoffs;
        let slot = self.slot(init, index);
        let ran = Duration::from_nanos((exited.finished_at - exited.started_at).max(0) as u64);
        if ran >= backoffs.restart_max * 2 {
            slot.restart_delay = Duration::ZERO;
        }
        let at = match &slot.restart_at {
            Some((id, at)) if *id == exited.id => *at,
            _ => {
                let at = now + slot.restart_delay;
                slot.restart_at = Some((exited.id.clone(), at));
                at
            }
        };
        if now < at {
            let m = &pod.metadata;
            let message = format!(
                "back-off {} restarting failed container={} pod={}_{}({})",
                go_duration(slot.restart_delay),
                spec.name,
                m.name.as_deref().unwrap_or_default(),
                m.namespace.as_deref().unwrap_or_default(),
                m.uid.as_deref().unwrap_or_default()
            );
            slot.waiting = Some(Waiting::new("CrashLoopBackOff", message));
            return Ok(Started::Waiting(at - now));
        }
        let started = self.start(pod, spec, index, init, sandbox).await?;
        if matches!(started, Started::Yes) {
            let slot = self.slot(init, index);
            slot.restart_delay = next_delay(slot.restart_delay, backoffs.restart_initial, backoffs.restart_max);
        }
        Ok(started)
    }

    /// Brings the pod towards running and returns what it observed.
    pub async fn sync(&mut self, pod: &Pod) -> Result<SyncResult> {
        let spec = pod.spec.clone().unwrap_or_default();
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
        self.init.resize_with(init_specs.len(), Slot::default);
        self.containers.resize_with(spec.containers.len(), Slot::default);
        if !self.adopted {
            self.adopt(pod, &init_specs, &spec.containers).await?;
            self.adopted = true;
        }
        let sandbox = self.ensure_sandbox(pod).await?;
        let mut requeue: Option<Duration> = None;
        let mut again = |after: Duration| requeue = Some(requeue.map_or(after, |r| r.min(after)));

        // Init containers, one at a time, in order.
        let mut initialized = true;
        for (i, container) in init_specs.iter().enumerate() {
            let status = self.status_of(&self.init[i]).await?;
            let started = match &status {
                None => Some(self.start(pod, container, i, true, &sandbox).await?),
                Some(s) if s.state == ContainerState::Exited && s.exit_code != 0 && restart_policy != "Never" => {
                    Some(self.restart(pod, container, i, true, &sandbox, s).await?)
                }
                _ => None,
            };
            if let Some(Started::Waiting(after)) = started {
                again(after);
            }
            let status = if started.is_some() { self.status_of(&self.init[i]).await? } else { status };
            match status {
                Some(s) if s.state == ContainerState::Exited && s.exit_code == 0 => continue,
                _ => {
                    initialized = false;
                    again(REQUEUE);
                    break;
                }
            }
        }

        if initialized {
            for (i, container) in spec.containers.iter().enumerate() {
                let status = self.status_of(&self.containers[i]).await?;
                let started = match &status {
                    None => Some(self.start(pod, container, i, false, &sandbox).await?),
                    Some(s) if s.state == ContainerState::Exited => {
                        let restart = match restart_policy {
                            "Always" => true,
                            "OnFailure" => s.exit_code != 0,
                            _ => false,
                        };
                        if restart {
                            Some(self.restart(pod, container, i, false, &sandbox, s).await?)
                        } else {
                            None
                        }
                    }
                    Some(_) => None,
                };
                if let Some(Started::Waiting(after)) = started {
                    again(after);
                }
            }
        }
        Ok(SyncResult { observed: self.observe().await?, requeue })
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
            observed.init.push(self.status_of(slot).await?);
            observed.init_restarts.push(slot.attempt as i32);
            observed.init_waiting.push(slot.waiting.clone());
            observed.init_last.push(slot.last.clone());
        }
        for slot in &self.containers {
            observed.containers.push(self.status_of(slot).await?);
            observed.restarts.push(slot.attempt as i32);
            observed.waiting.push(slot.waiting.clone());
            observed.last.push(slot.last.clone());
        }
        Ok(observed)
    }

    /// Stops every container (each within `grace`, all at once), then the sandbox, and
    /// removes them.
    pub async fn terminate(&mut self, grace: Duration) -> Result<()> {
        let ids: Vec<String> =
            self.init.iter_mut().chain(self.containers.iter_mut()).filter_map(|slot| slot.id.take()).collect();
        let runtime = &self.runtime;
        let stops = ids.iter().map(|id| runtime.stop_container(id, grace));
        for result in futures::future::join_all(stops).await {
            result?;
        }
        for id in &ids {
            runtime.remove_container(id).await?;
        }
        if let Some(id) = self.sandbox.take() {
            runtime.stop_pod_sandbox(&id).await?;
            runtime.remove_pod_sandbox(&id).await?;
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
        Arc::new(SimulatedRuntime::new("10.42.0.0/24".parse().unwrap(), Behaviour { stop_delay }))
    }

    #[tokio::test]
    async fn runs_init_containers_then_containers() {
        let runtime = sim(Duration::ZERO);
        let mut worker = PodWorker::new(runtime.clone());
        let pod = pod(json!({
            "initContainers": [{"name": "one", "image": "busybox"}, {"name": "two", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]
        }));
        let result = worker.sync(&pod).await.unwrap();
        assert!(result.requeue.is_none());
        let observed = result.observed;
        assert!(observed.sandbox_ready);
        assert_eq!(observed.pod_ips.len(), 1);
        assert!(observed.init.iter().all(|c| c.as_ref().unwrap().state == ContainerState::Exited));
        assert_eq!(observed.containers[0].as_ref().unwrap().state, ContainerState::Running);
        // A second sync changes nothing.
        worker.sync(&pod).await.unwrap();
        assert_eq!(runtime.list_containers(&ContainerFilter::default()).await.unwrap().len(), 3);
        assert_eq!(runtime.sandbox_count(), 1);
    }

    #[tokio::test]
    async fn restarts_by_policy_and_replaces_a_lost_sandbox() {
        let runtime = sim(Duration::ZERO);
        let mut worker = PodWorker::new(runtime.clone());
        let pod = pod(json!({"containers": [{"name": "app", "image": "nginx"}]}));
        let first = worker.sync(&pod).await.unwrap().observed;
        let id = first.containers[0].as_ref().unwrap().id.clone();
        runtime.exit_container(&id, 1).unwrap();
        let second = worker.sync(&pod).await.unwrap().observed;
        assert_eq!(second.restarts, vec![1]);
        assert_eq!(second.containers[0].as_ref().unwrap().state, ContainerState::Running);

        let sandbox = worker.sandbox.clone().unwrap();
        runtime.stop_pod_sandbox(&sandbox).await.unwrap();
        let third = worker.sync(&pod).await.unwrap().observed;
        assert!(third.sandbox_ready);
        assert_eq!(third.restarts, vec![2]);
        assert_eq!(runtime.sandbox_count(), 1, "the lost sandbox was removed");

        let never =
            super::tests::pod(json!({"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox"}]}));
        let mut worker = PodWorker::new(runtime.clone());
        let observed = worker.sync(&never).await.unwrap().observed;
        runtime.exit_container(&observed.containers[0].as_ref().unwrap().id, 0).unwrap();
        let observed = worker.sync(&never).await.unwrap().observed;
        assert_eq!(observed.containers[0].as_ref().unwrap().state, ContainerState::Exited, "not restarted");
    }

    #[tokio::test(start_paused = true)]
    async fn crashing_containers_back_off_exponentially() {
        let runtime = sim(Duration::ZERO);
        let mut worker = PodWorker::new(runtime.clone());
        let pod = pod(json!({"containers": [{"name": "app", "image": "busybox:1"}]}));
        let id = |o: &Observed| o.containers[0].as_ref().unwrap().id.clone();
        let first = worker.sync(&pod).await.unwrap().observed;
        runtime.exit_container(&id(&first), 3).unwrap();
        // The first restart is immediate.
        let second = worker.sync(&pod).await.unwrap().observed;
        assert_eq!(second.restarts, vec![1]);
        assert_eq!(second.containers[0].as_ref().unwrap().state, ContainerState::Running);
        assert_eq!(second.last[0].as_ref().unwrap().exit_code, 3, "the replaced instance is lastState");
        for (delay, text) in [(10, "10s"), (20, "20s"), (40, "40s")] {
            let observed = worker.sync(&pod).await.unwrap().observed;
            runtime.exit_container(&id(&observed), 3).unwrap();
            let held = worker.sync(&pod).await.unwrap();
            let waiting = held.observed.waiting[0].clone().unwrap();
            assert_eq!(waiting.reason, "CrashLoopBackOff");
            assert_eq!(waiting.message, format!("back-off {text} restarting failed container=app pod=p_ns(u1)"));
            assert_eq!(held.requeue, Some(Duration::from_secs(delay)));
            tokio::time::advance(Duration::from_secs(delay - 1)).await;
            assert!(worker.sync(&pod).await.unwrap().observed.waiting[0].is_some(), "still held after {}s", delay - 1);
            tokio::time::advance(Duration::from_secs(1)).await;
            let restarted = worker.sync(&pod).await.unwrap().observed;
            assert!(restarted.waiting[0].is_none());
            assert_eq!(restarted.containers[0].as_ref().unwrap().state, ContainerState::Running);
        }
        assert_eq!(worker.observe().await.unwrap().restarts, vec![4]);
    }

    #[tokio::test]
    async fn a_new_worker_adopts_what_runs() {
        let runtime = sim(Duration::ZERO);
        let pod = pod(json!({
            "initContainers": [{"name": "setup", "image": "busybox:1"}],
            "containers": [{"name": "app", "image": "busybox:1"}]
        }));
        let before = PodWorker::new(runtime.clone()).sync(&pod).await.unwrap().observed;
        let after = PodWorker::new(runtime.clone()).sync(&pod).await.unwrap().observed;
        let ids = |o: &Observed| (o.init[0].as_ref().unwrap().id.clone(), o.containers[0].as_ref().unwrap().id.clone());
        assert_eq!(ids(&before), ids(&after));
        assert_eq!(after.restarts, vec![0]);
        assert_eq!(runtime.sandbox_count(), 1);
        assert_eq!(runtime.list_containers(&ContainerFilter::default()).await.unwrap().len(), 2);
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
    }

    #[tokio::test(start_paused = true)]
    async fn terminate_stops_everything_within_the_grace_period() {
        let runtime = sim(Duration::from_secs(10));
        let mut worker = PodWorker::new(runtime.clone());
        let pod = pod(json!({"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}));
        worker.sync(&pod).await.unwrap();
        let started = tokio::time::Instant::now();
        worker.terminate(Duration::from_secs(3)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(3), "containers stop in parallel, killed at the deadline");
        assert_eq!(runtime.sandbox_count(), 0);
        assert!(runtime.list_containers(&ContainerFilter::default()).await.unwrap().is_empty());
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
}
