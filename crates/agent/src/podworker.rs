//! What the agent does for one pod, against any [`Runtime`]: bring its sandbox up, run
//! init containers in order and then the containers, restart what the restart policy
//! says to restart, observe it all for the status; and on deletion stop the containers
//! within the grace period and remove the sandbox. The same code runs over containerd
//! and over the simulated runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as ApiContainer, Pod};

use crate::podstatus::Observed;
use crate::runtime::{
    labels, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, PodSandboxConfig, PodSandboxMetadata,
    PortMapping, Result, Runtime, SandboxState,
};

/// The kubelet's floor for a container's stop timeout.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// How soon to look again while something is in progress (an init container running).
const REQUEUE: Duration = Duration::from_secs(1);

/// The runtime objects of one container name: the latest instance and its restart count.
#[derive(Debug, Default)]
struct Slot {
    id: Option<String>,
    attempt: u32,
}

/// Where pods' log directories go by default (the kubelet's).
pub const POD_LOG_ROOT: &str = "/var/log/pods";

/// A pod's runtime state as the agent tracks it between syncs.
pub struct PodWorker {
    runtime: Arc<dyn Runtime>,
    /// Under which each sandbox's log directory is made.
    log_root: Arc<Path>,
    /// The sandbox's ID (its config is rebuilt from the pod when needed: thousands of
    /// simulated pods should not each keep a copy).
    sandbox: Option<String>,
    sandbox_attempt: u32,
    init: Vec<Slot>,
    containers: Vec<Slot>,
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

/// A pod's log directory under `root`: `NAMESPACE_NAME_UID`, as the kubelet names it.
pub fn pod_log_directory(root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    root.join(format!("{namespace}_{name}_{uid}"))
}

fn sandbox_config(pod: &Pod, attempt: u32, log_root: &Path) -> PodSandboxConfig {
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
        log_directory: pod_log_directory(log_root, &namespace, &name, &uid).to_string_lossy().into_owned(),
        port_mappings: ports,
        labels: pod_labels(pod),
        annotations: m.annotations.clone().unwrap_or_default(),
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
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
            log_root: Arc::from(Path::new(POD_LOG_ROOT)),
            sandbox: None,
            sandbox_attempt: 0,
            init: Vec::new(),
            containers: Vec::new(),
        }
    }

    /// Puts the pod's logs under `root` instead of [`POD_LOG_ROOT`].
    pub fn with_log_root(mut self, root: Arc<Path>) -> Self {
        self.log_root = root;
        self
    }

    async fn status_of(&self, slot: &Slot) -> Result<Option<ContainerStatus>> {
        match &slot.id {
            Some(id) => Ok(Some(self.runtime.container_status(id).await?)),
            None => Ok(None),
        }
    }

    /// Makes sure a ready sandbox exists; a lost one is replaced and its containers
    /// started again (restart counts go up, as on a real node).
    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<(String, PodSandboxConfig)> {
        if let Some(id) = &self.sandbox {
            match self.runtime.pod_sandbox_status(id).await {
                Ok(status) if status.state == SandboxState::Ready => {
                    return Ok((id.clone(), sandbox_config(pod, self.sandbox_attempt, &self.log_root)))
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
        let config = sandbox_config(pod, self.sandbox_attempt, &self.log_root);
        let id = self.runtime.run_pod_sandbox(&config).await?;
        self.sandbox = Some(id.clone());
        Ok((id, config))
    }

    /// Creates and starts container `index` (of the init or regular list) as its next attempt.
    async fn start(
        &mut self,
        pod: &Pod,
        spec: &ApiContainer,
        index: usize,
        init: bool,
        sandbox: &(String, PodSandboxConfig),
    ) -> Result<()> {
        let slots = if init { &mut self.init } else { &mut self.containers };
        let slot = &mut slots[index];
        let attempt = if let Some(old) = slot.id.take() {
            self.runtime.remove_container(&old).await?;
            slot.attempt + 1
        } else {
            slot.attempt
        };
        slot.attempt = attempt;
        let image = spec.image.clone().unwrap_or_default();
        self.runtime.pull_image(&image, None).await?;
        let config = container_config(pod, spec, attempt, init);
        let id = self.runtime.create_container(&sandbox.0, &config, &sandbox.1).await?;
        slot.id = Some(id.clone());
        self.runtime.start_container(&id).await
    }

    /// Brings the pod towards running and returns what it observed.
    pub async fn sync(&mut self, pod: &Pod) -> Result<SyncResult> {
        let spec = pod.spec.clone().unwrap_or_default();
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
        self.init.resize_with(init_specs.len(), Slot::default);
        self.containers.resize_with(spec.containers.len(), Slot::default);
        let sandbox = self.ensure_sandbox(pod).await?;
        let mut requeue = None;

        // Init containers, one at a time, in order.
        let mut initialized = true;
        for (i, container) in init_specs.iter().enumerate() {
            let mut status = self.status_of(&self.init[i]).await?;
            let failed = status.as_ref().is_some_and(|s| s.state == ContainerState::Exited && s.exit_code != 0);
            if status.is_none() || (failed && restart_policy != "Never") {
                self.start(pod, container, i, true, &sandbox).await?;
                status = self.status_of(&self.init[i]).await?;
            }
            match status {
                Some(s) if s.state == ContainerState::Exited && s.exit_code == 0 => continue,
                _ => {
                    initialized = false;
                    requeue = Some(REQUEUE);
                    break;
                }
            }
        }

        if initialized {
            for (i, container) in spec.containers.iter().enumerate() {
                let status = self.status_of(&self.containers[i]).await?;
                let restart = match &status {
                    None => true,
                    Some(s) if s.state == ContainerState::Exited => match restart_policy {
                        "Always" => true,
                        "OnFailure" => s.exit_code != 0,
                        _ => false,
                    },
                    Some(_) => false,
                };
                if restart {
                    self.start(pod, container, i, false, &sandbox).await?;
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
        }
        for slot in &self.containers {
            observed.containers.push(self.status_of(slot).await?);
            observed.restarts.push(slot.attempt as i32);
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
    use crate::runtime::ContainerFilter;
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
