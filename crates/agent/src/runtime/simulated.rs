//! A runtime that runs nothing: sandboxes get an IP from the node's subnet, containers
//! are records whose state moves as a real container's would (init containers complete,
//! regular ones run until stopped, a stop honours the grace period up to `stop_delay`).
//! A container whose command is one busybox would finish (`sh -c "sleep 0.2; exit 3"`,
//! `sleep 5`, `true`, `false`) exits as it would on a real node: see [`scripted_exit`].
//! Exits are noticed lazily, when the container is next looked at; the pod worker asks
//! [`Runtime::exits_in`] when to look.
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
    /// What the command does by itself: exit with this code this long after starting.
    script: Option<(Duration, i32)>,
    /// When (nanoseconds since the epoch) the running container exits by itself.
    exits_at: Option<(i64, i32)>,
    log_path: String,
}

impl ContainerRecord {
    /// Applies a scripted exit whose time has come.
    fn settle(&mut self) {
        if let Some((at, code)) = self.exits_at {
            if self.state == ContainerState::Running && now_nanos() >= at {
                SimulatedRuntime::exit(self, code);
                self.finished_at = at;
            }
        }
    }
}

/// What a container's command does by itself, read the way busybox would run it: `sleep
/// SECONDS`, `true`, `false`, or `sh -c SCRIPT` whose statements (separated by `;` or
/// `&&`) are those, `exit CODE` and `echo ...`; `$NAME` and `${NAME}` expand from the
/// container's environment. Returns after how long it exits and with which code, or None
/// for a command that runs until stopped (anything else, e.g. `sleep infinity`, a server).
pub fn scripted_exit(argv: &[String], envs: &[(String, String)]) -> Option<(Duration, i32)> {
    let program = argv.first()?.rsplit('/').next()?;
    match (program, argv.get(1).map(String::as_str)) {
        ("sh" | "bash" | "ash", Some("-c")) => run_script(argv.get(2)?, envs),
        _ => statement(&argv.iter().map(String::as_str).collect::<Vec<_>>(), Duration::ZERO),
    }
    .map(|(elapsed, code, _)| (elapsed, code))
}

/// Runs a script's statements in order: (time taken, exit status). A failing statement
/// skips the rest of its `&&` chain; `exit` ends the script.
fn run_script(script: &str, envs: &[(String, String)]) -> Option<(Duration, i32, bool)> {
    let mut elapsed = Duration::ZERO;
    let mut code = 0;
    for sequence in script.split(';') {
        for raw in sequence.split("&&") {
            let expanded = expand(raw, envs);
            let words: Vec<&str> = expanded.split_whitespace().collect();
            if words.is_empty() {
                continue;
            }
            let (after, status, exited) = statement(&words, elapsed)?;
            (elapsed, code) = (after, status);
            if exited {
                return Some((elapsed, code, true));
            }
            if status != 0 {
                break;
            }
        }
    }
    Some((elapsed, code, false))
}

/// One simple command at time `elapsed`: (time after it, its status, whether it was `exit`).
fn statement(words: &[&str], elapsed: Duration) -> Option<(Duration, i32, bool)> {
    match words {
        ["sleep", seconds] => {
            let seconds: f64 = seconds.parse().ok().filter(|s: &f64| s.is_finite() && *s >= 0.0)?;
            Some((elapsed + Duration::from_secs_f64(seconds), 0, false))
        }
        ["true"] | [":"] => Some((elapsed, 0, false)),
        ["false"] => Some((elapsed, 1, false)),
        ["exit"] => Some((elapsed, 0, true)),
        ["exit", code] => Some((elapsed, code.parse::<i32>().ok()? & 0xff, true)),
        ["echo", ..] => Some((elapsed, 0, false)),
        _ => None,
    }
}

/// `$NAME` and `${NAME}` replaced by their values in `envs` (unknown names by nothing).
fn expand(text: &str, envs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (name, after) = match rest.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], &inner[end + 1..]),
                None => (inner, ""),
            },
            None => {
                let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        out.push_str(envs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default());
        rest = after;
    }
    out.push_str(rest);
    out
}

struct State {
    ipam: Allocator,
    sandboxes: HashMap<String, SandboxRecord>,
    containers: HashMap<String, ContainerRecord>,
    /// Container names whose every start ends at once with this exit code (crash loops).
    crashing: HashMap<String, i32>,
    /// Images that no registry has: pulls fail.
    missing_images: HashSet<String>,
    /// Images pulled, which ListImages reports (any image not missing counts as present).
    pulled: std::collections::BTreeSet<String>,
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
                pulled: Default::default(),
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
                script: scripted_exit(&[config.command.as_slice(), config.args.as_slice()].concat(), &config.envs),
                exits_at: None,
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
        } else if let Some((after, code)) = container.script {
            container.exits_at = Some((container.started_at.saturating_add(after.as_nanos() as i64), code));
            container.settle();
        } else if container.labels.get(labels::CONTAINER_KIND).map(String::as_str) == Some("init") {
            Self::exit(container, 0);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        {
            let mut state = self.lock();
            let container = state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
            container.settle();
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

    fn exits_in(&self, id: &str) -> Option<Duration> {
        let mut state = self.lock();
        let container = state.containers.get_mut(id)?;
        container.settle();
        let (at, _) = container.exits_at.filter(|_| container.state == ContainerState::Running)?;
        Some(Duration::from_nanos(at.saturating_sub(now_nanos()).max(0) as u64))
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
        let mut state = self.lock();
        let c = state.containers.get_mut(id).ok_or_else(|| not_found("container", id))?;
        c.settle();
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
        let mut state = self.lock();
        state.containers.values_mut().for_each(ContainerRecord::settle);
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
        let mut state = self.lock();
        if state.missing_images.contains(image) {
            let message =
                format!("rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found");
            return Err(RuntimeError::ImagePull { image: image.to_string(), message });
        }
        state.pulled.insert(image.to_string());
        Ok(image_ref(image))
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        if self.lock().missing_images.contains(image) {
            return Ok(None);
        }
        Ok(Some(Image { id: image_ref(image), repo_tags: vec![image.to_string()], size: 0, pinned: false }))
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let state = self.lock();
        let image =
            |name: &String| Image { id: image_ref(name), repo_tags: vec![name.clone()], size: 0, pinned: false };
        Ok(state.pulled.iter().map(image).collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.lock().pulled.retain(|name| name != image && image_ref(name) != image);
        Ok(())
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

    #[test]
    fn commands_busybox_would_finish_are_scripted() {
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let env = [("JOB_COMPLETION_INDEX".to_string(), "2".to_string())];
        let ms = Duration::from_millis;
        assert_eq!(scripted_exit(&argv(&["sh", "-c", "sleep 0.2; exit 3"]), &[]), Some((ms(200), 3)));
        assert_eq!(scripted_exit(&argv(&["/bin/sh", "-c", "exit $JOB_COMPLETION_INDEX"]), &env), Some((ms(0), 2)));
        assert_eq!(
            scripted_exit(&argv(&["sh", "-c", "echo hi && exit ${JOB_COMPLETION_INDEX}"]), &env),
            Some((ms(0), 2))
        );
        assert_eq!(scripted_exit(&argv(&["sh", "-c", "false && sleep 5"]), &[]), Some((ms(0), 1)));
        assert_eq!(scripted_exit(&argv(&["sh", "-c", "sleep 1; false; sleep 1"]), &[]), Some((ms(2000), 0)));
        assert_eq!(scripted_exit(&argv(&["sleep", "5"]), &[]), Some((ms(5000), 0)));
        assert_eq!(scripted_exit(&argv(&["false"]), &[]), Some((ms(0), 1)));
        assert_eq!(scripted_exit(&argv(&["sleep", "infinity"]), &[]), None);
        assert_eq!(scripted_exit(&argv(&["httpd", "-f", "-p", "8080"]), &[]), None);
        assert_eq!(scripted_exit(&[], &[]), None);
    }

    #[tokio::test]
    async fn scripted_containers_exit_by_themselves() {
        let rt = runtime(Duration::ZERO);
        let config = sandbox_config("a");
        let sandbox = rt.run_pod_sandbox(&config).await.unwrap();
        let mut job = container_config("job", false);
        job.command = vec!["sh".into(), "-c".into()];
        job.args = vec!["sleep 0.05; exit 7".into()];
        let id = rt.create_container(&sandbox, &job, &config).await.unwrap();
        assert_eq!(rt.exits_in(&id), None, "not started yet");
        rt.start_container(&id).await.unwrap();
        assert!(rt.exits_in(&id).is_some_and(|d| d <= Duration::from_millis(50)));
        assert_eq!(rt.container_status(&id).await.unwrap().state, ContainerState::Running);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let status = rt.container_status(&id).await.unwrap();
        assert_eq!((status.state, status.exit_code, status.reason.as_str()), (ContainerState::Exited, 7, "Error"));
        assert_eq!(rt.exits_in(&id), None);
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
