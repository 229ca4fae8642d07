//! A runtime that runs nothing: sandboxes get an IP from the node's subnet, containers
//! are records whose state moves as a real container's would (init containers complete,
//! regular ones run until stopped, a stop honours the grace period up to `stop_delay`).
//! It is what `skiff agent --simulate N` puts behind the pod workers, like KWOK's fake
//! kubelet, but with the agent's real status and lifecycle code above it.
//!
//! State is one small mutex-guarded map per node: thousands of simulated nodes share a
//! process, so nothing here spawns tasks or holds more than a few words per node when idle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{
    labels, labels_match, Container, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState,
    ContainerStatus, ExecSyncResult, Image, PodSandbox, PodSandboxConfig, PodSandboxMetadata, PodSandboxNetwork,
    PodSandboxStatus, RegistryAuth, Result, Runtime, RuntimeError, RuntimeVersion, SandboxFilter, SandboxState,
    StreamRequest,
};
use crate::ipam::{Allocator, Ipv4Cidr};

/// How simulated containers behave.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// How long a container takes to exit after SIGTERM (never more than the grace
    /// period it is given: then it is killed, exit code 137).
    pub stop_delay: Duration,
    /// Keep the ContainerConfig of every container created, for tests to inspect
    /// ([`SimulatedRuntime::config_of`]). Off by default: thousands of simulated pods
    /// should not each hold a copy.
    pub record_configs: bool,
}

struct SandboxRecord {
    metadata: PodSandboxMetadata,
    state: SandboxState,
    created_at: i64,
    ip: Option<Ipv4Addr>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

struct ContainerRecord {
    sandbox_id: String,
    metadata: ContainerMetadata,
    image: String,
    state: ContainerState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: i32,
    reason: &'static str,
    labels: BTreeMap<String, String>,
    /// Whether probes of this container pass (exec and network ones alike).
    healthy: bool,
    config: Option<Box<ContainerConfig>>,
    log_path: String,
}

struct State {
    ipam: Allocator,
    sandboxes: HashMap<String, SandboxRecord>,
    containers: HashMap<String, ContainerRecord>,
    /// Container names whose every start ends at once with this exit code (crash loops).
    crashing: HashMap<String, i32>,
    /// Images that no registry has: pulls fail.
    missing_images: HashSet<String>,
    /// What exec, attach and port-forward answer (see [`SimulatedRuntime::set_streaming_url`]).
    streaming_url: Option<String>,
}

/// The simulated runtime of one node.
pub struct SimulatedRuntime {
    state: Mutex<State>,
    behaviour: Behaviour,
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

/// A 64-hex-digit ID, as containerd's.
fn new_id() -> String {
    let a: u128 = rand::random();
    let b: u128 = rand::random();
    format!("{a:032x}{b:032x}")
}

/// The image reference a pull would resolve `image` to: stable per name, shaped like a digest.
fn image_ref(image: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    image.hash(&mut hasher);
    format!("sha256:{:016x}{:048x}", hasher.finish(), 0)
}

/// The sandbox's log directory joined with the container's log path, as CRI reports it.
fn log_path(sandbox: &PodSandboxConfig, container: &ContainerConfig) -> String {
    if sandbox.log_directory.is_empty() || container.log_path.is_empty() {
        return String::new();
    }
    std::path::Path::new(&sandbox.log_directory).join(&container.log_path).to_string_lossy().into_owned()
}

fn not_found(kind: &'static str, id: &str) -> RuntimeError {
    RuntimeError::NotFound { kind, id: id.to_string() }
}

impl SimulatedRuntime {
    /// A runtime whose sandboxes take addresses from `pod_cidr`.
    pub fn new(pod_cidr: Ipv4Cidr, behaviour: Behaviour) -> Self {
        SimulatedRuntime {
            state: Mutex::new(State {
                ipam: Allocator::new(pod_cidr),
                sandboxes: HashMap::new(),
                containers: HashMap::new(),
                crashing: HashMap::new(),
                missing_images: HashSet::new(),
                streaming_url: None,
            }),
            behaviour,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for a simulation; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Succeeds when the container exists and runs.
    fn running(&self, id: &str) -> Result<()> {
        match self.lock().containers.get(id) {
            Some(c) if c.state == ContainerState::Running => Ok(()),
            Some(_) => Err(RuntimeError::InvalidState(format!("container {id} is not running"))),
            None => Err(not_found("container", id)),
        }
    }

    /// How many sandboxes exist (for tests and metrics).
    pub fn sandbox_count(&self) -> usize {
        self.lock().sandboxes.len()
    }

    /// Makes exec, attach and port-forward answer `url` (a test's streaming endpoint), as a
    /// real runtime answers with the URL of its streaming server. Without it they are
    /// unsupported: simulated containers run no processes.
    pub fn set_streaming_url(&self, url: impl Into<String>) {
        self.lock().streaming_url = Some(url.into());
    }

    fn streaming_url(&self, what: &'static str) -> Result<String> {
        self.lock().streaming_url.clone().ok_or(RuntimeError::Unsupported(what))
    }

    /// Makes a running container exit, as if its process ended (tests of restarts).
    pub fn exit_container(&self, id: &str, exit_code: i32) -> Result<()> {
        let mut state = self.lock();
        let container = state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        if container.state == ContainerState::Running {
            container.state = ContainerState::Exited;
            container.finished_at = now_nanos();
            container.exit_code = exit_code;
            container.reason = if exit_code == 0 { "Completed" } else { "Error" };
        }
        Ok(())
    }

    /// Makes a running container exit as the kernel's OOM killer ends it (exit code 137,
    /// reason OOMKilled), as a container over its memory limit does.
    pub fn oom_kill(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let container = state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        if container.state == ContainerState::Running {
            Self::exit(container, 137);
            container.reason = "OOMKilled";
        }
        Ok(())
    }

    /// Makes pulls of `image` fail (and the image absent), or work again.
    pub fn set_image_missing(&self, image: &str, missing: bool) {
        let mut state = self.lock();
        if missing {
            state.missing_images.insert(image.to_string());
        } else {
            state.missing_images.remove(image);
        }
    }

    /// Makes every later start of containers named `name` exit at once with `exit_code`
    /// (a crash loop); `None` lets them run again.
    pub fn crash_on_start(&self, name: &str, exit_code: Option<i32>) {
        let mut state = self.lock();
        match exit_code {
            Some(code) => state.crashing.insert(name.to_string(), code),
            None => state.crashing.remove(name),
        };
    }

    /// Makes the probes of a container pass or fail (exec commands exit 1, network
    /// probes answer 503).
    pub fn set_healthy(&self, id: &str, healthy: bool) {
        if let Some(container) = self.lock().containers.get_mut(id) {
            container.healthy = healthy;
        }
    }

    /// The config a container was created with (with `record_configs`).
    pub fn config_of(&self, id: &str) -> Option<ContainerConfig> {
        self.lock().containers.get(id).and_then(|c| c.config.as_deref().cloned())
    }

    /// The IDs of the containers named `name`, oldest first.
    pub fn containers_named(&self, name: &str) -> Vec<String> {
        let state = self.lock();
        let mut found: Vec<(&String, i64)> = state
            .containers
            .iter()
            .filter(|(_, c)| c.metadata.name == name)
            .map(|(id, c)| (id, c.created_at))
            .collect();
        found.sort_by_key(|(_, created)| *created);
        found.into_iter().map(|(id, _)| id.clone()).collect()
    }

    fn exit(container: &mut ContainerRecord, code: i32) {
        container.state = ContainerState::Exited;
        container.finished_at = now_nanos();
        container.exit_code = code;
        container.reason = match code {
            0 => "Completed",
            _ => "Error",
        };
    }
}

#[async_trait]
impl Runtime for SimulatedRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        Ok(RuntimeVersion { runtime_name: "simulated".into(), runtime_version: env!("CARGO_PKG_VERSION").into() })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let mut state = self.lock();
        let ip = if config.host_network {
            None
        } else {
            Some(state.ipam.allocate().ok_or_else(|| {
                RuntimeError::InvalidState(format!("no IP addresses available in range set: {}", state.ipam.cidr()))
            })?)
        };
        let id = new_id();
        state.sandboxes.insert(
            id.clone(),
            SandboxRecord {
                metadata: config.metadata.clone(),
                state: SandboxState::Ready,
                created_at: now_nanos(),
                ip,
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let State { ipam, sandboxes, containers, .. } = &mut *state;
        let Some(sandbox) = sandboxes.get_mut(id) else { return Ok(()) };
        for container in containers.values_mut().filter(|c| c.sandbox_id == id) {
            if container.state == ContainerState::Running {
                Self::exit(container, 137);
            }
        }
        sandbox.state = SandboxState::NotReady;
        if let Some(ip) = sandbox.ip.take() {
            ipam.release(ip);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        if let Some(sandbox) = state.sandboxes.remove(id) {
            if let Some(ip) = sandbox.ip {
                state.ipam.release(ip);
            }
        }
        state.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let state = self.lock();
        let sandbox = state.sandboxes.get(id).ok_or_else(|| not_found("sandbox", id))?;
        Ok(PodSandboxStatus {
            id: id.to_string(),
            metadata: sandbox.metadata.clone(),
            state: sandbox.state,
            created_at: sandbox.created_at,
            network: PodSandboxNetwork { ips: sandbox.ip.map(IpAddr::V4).into_iter().collect() },
            labels: sandbox.labels.clone(),
            annotations: sandbox.annotations.clone(),
        })
    }

    async fn list_pod_sandbox(&self, filter: &SandboxFilter) -> Result<Vec<PodSandbox>> {
        let state = self.lock();
        Ok(state
            .sandboxes
            .iter()
            .filter(|(id, s)| {
                filter.id.as_deref().is_none_or(|want| want == id.as_str())
                    && filter.state.is_none_or(|want| want == s.state)
                    && labels_match(&s.labels, &filter.labels)
            })
            .map(|(id, s)| PodSandbox {
                id: id.clone(),
                metadata: s.metadata.clone(),
                state: s.state,
                created_at: s.created_at,
                labels: s.labels.clone(),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> Result<String> {
        let mut state = self.lock();
        let sandbox = state.sandboxes.get(sandbox_id).ok_or_else(|| not_found("sandbox", sandbox_id))?;
        if sandbox.state != SandboxState::Ready {
            return Err(RuntimeError::InvalidState(format!("sandbox {sandbox_id} is not ready")));
        }
        let id = new_id();
        state.containers.insert(
            id.clone(),
            ContainerRecord {
                sandbox_id: sandbox_id.to_string(),
                metadata: config.metadata.clone(),
                image: config.image.clone(),
                state: ContainerState::Created,
                created_at: now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: "",
                labels: config.labels.clone(),
                healthy: true,
                config: self.behaviour.record_configs.then(|| Box::new(config.clone())),
                // Where a real runtime would write the container's output; nothing writes
                // it here (tests may, as the container's output).
                log_path: log_path(sandbox_config, config),
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let State { containers, crashing, .. } = &mut *state;
        let container = containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        if container.state != ContainerState::Created {
            return Err(RuntimeError::InvalidState(format!("container {id} is not in created state")));
        }
        container.state = ContainerState::Running;
        container.started_at = now_nanos();
        // Init containers do their work and exit at once.
        if let Some(code) = crashing.get(&container.metadata.name) {
            Self::exit(container, *code);
        } else if container.labels.get(labels::CONTAINER_KIND).map(String::as_str) == Some("init") {
            Self::exit(container, 0);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        {
            let state = self.lock();
            let container = state.containers.get(id).ok_or_else(|| not_found("container", id))?;
            if container.state != ContainerState::Running {
                return Ok(());
            }
        }
        let delay = self.behaviour.stop_delay.min(timeout);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let killed = self.behaviour.stop_delay > timeout;
        let mut state = self.lock();
        if let Some(container) = state.containers.get_mut(id) {
            if container.state == ContainerState::Running {
                // SIGTERM's usual outcome is exit code 143; past the grace period, SIGKILL's 137.
                Self::exit(container, if killed { 137 } else { 143 });
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        match state.containers.get(id) {
            Some(c) if c.state == ContainerState::Running => {
                Err(RuntimeError::InvalidState(format!("container {id} is running: stop it first")))
            }
            _ => {
                state.containers.remove(id);
                Ok(())
            }
        }
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let state = self.lock();
        let c = state.containers.get(id).ok_or_else(|| not_found("container", id))?;
        Ok(ContainerStatus {
            id: id.to_string(),
            metadata: c.metadata.clone(),
            state: c.state,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: c.image.clone(),
            image_ref: image_ref(&c.image),
            reason: c.reason.to_string(),
            message: String::new(),
            labels: c.labels.clone(),
            log_path: c.log_path.clone(),
        })
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>> {
        let state = self.lock();
        Ok(state
            .containers
            .iter()
            .filter(|(id, c)| {
                filter.id.as_deref().is_none_or(|want| want == id.as_str())
                    && filter.pod_sandbox_id.as_deref().is_none_or(|want| want == c.sandbox_id)
                    && filter.state.is_none_or(|want| want == c.state)
                    && labels_match(&c.labels, &filter.labels)
            })
            .map(|(id, c)| Container {
                id: id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: image_ref(&c.image),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
            })
            .collect())
    }

    /// Commands succeed in healthy containers and fail in unhealthy ones; `false` fails
    /// everywhere, as it would in a real container.
    async fn exec_sync(&self, container_id: &str, cmd: &[String], _timeout: Duration) -> Result<ExecSyncResult> {
        let fails = cmd.first().is_some_and(|c| c == "false");
        match self.lock().containers.get(container_id) {
            Some(c) if c.state == ContainerState::Running && c.healthy && !fails => Ok(ExecSyncResult::default()),
            Some(c) if c.state == ContainerState::Running => {
                Ok(ExecSyncResult { exit_code: 1, stderr: b"unhealthy".to_vec(), ..Default::default() })
            }
            Some(_) => Err(RuntimeError::InvalidState(format!("container {container_id} is not running"))),
            None => Err(not_found("container", container_id)),
        }
    }

    fn simulated_probe(&self, container_id: &str) -> Option<bool> {
        Some(self.lock().containers.get(container_id).is_some_and(|c| c.state == ContainerState::Running && c.healthy))
    }

    async fn exec(&self, request: &StreamRequest) -> Result<String> {
        self.running(&request.container_id)?;
        self.streaming_url("exec")
    }

    async fn attach(&self, request: &StreamRequest) -> Result<String> {
        self.running(&request.container_id)?;
        self.streaming_url("attach")
    }

    async fn port_forward(&self, sandbox_id: &str, _ports: &[i32]) -> Result<String> {
        match self.lock().sandboxes.get(sandbox_id) {
            Some(s) if s.state == SandboxState::Ready => {}
            Some(_) => return Err(RuntimeError::InvalidState(format!("sandbox {sandbox_id} is not ready"))),
            None => return Err(not_found("sandbox", sandbox_id)),
        }
        self.streaming_url("port-forward")
    }

    async fn pull_image(&self, image: &str, _auth: Option<&RegistryAuth>) -> Result<String> {
        if self.lock().missing_images.contains(image) {
            let message =
                format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found");
            return Err(RuntimeError::ImagePull { image: image.to_string(), message });
        }
        Ok(image_ref(image))
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        if self.lock().missing_images.contains(image) {
            return Ok(None);
        }
        Ok(Some(Image { id: image_ref(image), repo_tags: vec![image.to_string()], size: 0 }))
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(stop_delay: Duration) -> SimulatedRuntime {
        SimulatedRuntime::new("10.42.0.0/24".parse().unwrap(), Behaviour { stop_delay, ..Behaviour::default() })
    }

    fn sandbox_config(name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            },
            labels: [(labels::POD_UID.to_string(), format!("uid-{name}"))].into(),
            ..Default::default()
        }
    }

    fn container_config(name: &str, init: bool) -> ContainerConfig {
        let mut labels = BTreeMap::from([(labels::CONTAINER_NAME.to_string(), name.to_string())]);
        if init {
            labels.insert(labels::CONTAINER_KIND.into(), "init".into());
        }
        ContainerConfig {
            metadata: ContainerMetadata { name: name.into(), attempt: 0 },
            image: "busybox".into(),
            labels,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn sandbox_and_container_lifecycle() {
        let rt = runtime(Duration::ZERO);
        let config = sandbox_config("a");
        let sandbox = rt.run_pod_sandbox(&config).await.unwrap();
        let status = rt.pod_sandbox_status(&sandbox).await.unwrap();
        assert_eq!(status.state, SandboxState::Ready);
        assert_eq!(status.network.ips, vec!["10.42.0.2".parse::<IpAddr>().unwrap()]);

        let init = rt.create_container(&sandbox, &container_config("setup", true), &config).await.unwrap();
        rt.start_container(&init).await.unwrap();
        let init_status = rt.container_status(&init).await.unwrap();
        assert_eq!(
            (init_status.state, init_status.exit_code, init_status.reason.as_str()),
            (ContainerState::Exited, 0, "Completed")
        );

        let main = rt.create_container(&sandbox, &container_config("main", false), &config).await.unwrap();
        assert_eq!(rt.container_status(&main).await.unwrap().state, ContainerState::Created);
        rt.start_container(&main).await.unwrap();
        assert!(rt.start_container(&main).await.is_err(), "a running container cannot start again");
        assert_eq!(rt.container_status(&main).await.unwrap().state, ContainerState::Running);
        assert!(rt.remove_container(&main).await.is_err(), "running containers are not removed");

        let listed = rt
            .list_containers(&ContainerFilter { pod_sandbox_id: Some(sandbox.clone()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        let running = rt
            .list_containers(&ContainerFilter { state: Some(ContainerState::Running), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(running.len(), 1);

        rt.stop_container(&main, Duration::from_secs(30)).await.unwrap();
        let stopped = rt.container_status(&main).await.unwrap();
        assert_eq!((stopped.state, stopped.exit_code), (ContainerState::Exited, 143));
        rt.stop_pod_sandbox(&sandbox).await.unwrap();
        assert_eq!(rt.pod_sandbox_status(&sandbox).await.unwrap().state, SandboxState::NotReady);
        rt.remove_pod_sandbox(&sandbox).await.unwrap();
        assert!(rt.pod_sandbox_status(&sandbox).await.is_err());
        assert!(rt.list_containers(&ContainerFilter::default()).await.unwrap().is_empty());
        // Idempotent.
        rt.stop_pod_sandbox(&sandbox).await.unwrap();
        rt.remove_pod_sandbox(&sandbox).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stop_honours_the_grace_period() {
        let rt = runtime(Duration::from_secs(5));
        let config = sandbox_config("a");
        let sandbox = rt.run_pod_sandbox(&config).await.unwrap();
        let slow = rt.create_container(&sandbox, &container_config("slow", false), &config).await.unwrap();
        rt.start_container(&slow).await.unwrap();
        let started = tokio::time::Instant::now();
        rt.stop_container(&slow, Duration::from_secs(2)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2), "killed when the grace period ends");
        assert_eq!(rt.container_status(&slow).await.unwrap().exit_code, 137);

        let polite = rt.create_container(&sandbox, &container_config("polite", false), &config).await.unwrap();
        rt.start_container(&polite).await.unwrap();
        let started = tokio::time::Instant::now();
        rt.stop_container(&polite, Duration::from_secs(30)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert_eq!(rt.container_status(&polite).await.unwrap().exit_code, 143);
    }

    #[tokio::test]
    async fn addresses_return_to_the_pool() {
        let rt = SimulatedRuntime::new("10.42.0.0/31".parse().unwrap(), Behaviour::default());
        // A /31 has no room once network, gateway and broadcast are set aside.
        assert!(rt.run_pod_sandbox(&sandbox_config("a")).await.is_err());
        let rt = SimulatedRuntime::new("10.42.0.0/29".parse().unwrap(), Behaviour::default());
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(rt.run_pod_sandbox(&sandbox_config(&i.to_string())).await.unwrap());
        }
        assert!(rt.run_pod_sandbox(&sandbox_config("x")).await.is_err(), "the subnet is full");
        rt.stop_pod_sandbox(&ids[0]).await.unwrap();
        assert!(rt.run_pod_sandbox(&sandbox_config("x")).await.is_ok());
        let host = PodSandboxConfig { host_network: true, ..sandbox_config("h") };
        let id = rt.run_pod_sandbox(&host).await.unwrap();
        assert!(rt.pod_sandbox_status(&id).await.unwrap().network.ips.is_empty());
    }
}
