//! The container runtime as the agent sees it: the shape of CRI's RuntimeService and
//! ImageService (pod sandboxes, containers, images), so that the containerd
//! implementation is a thin translation to gRPC and the pod workers above it are the
//! same for real and simulated nodes.
//!
//! Names and states follow CRI (`k8s.io/cri-api` v1): a sandbox is READY or NOTREADY, a
//! container CREATED, RUNNING, EXITED or UNKNOWN; timestamps are nanoseconds since the
//! epoch; labels carry the pod and container identity so that an agent that restarts can
//! find what it started before.

pub mod cri;
pub mod simulated;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

/// Labels the agent puts on sandboxes and containers (the kubelet's names), so that
/// state found in the runtime can be matched to pods after a restart.
pub mod labels {
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// `init` for init containers, absent for regular ones. Not a kubelet label: it lets
    /// the simulated runtime make init containers complete, and costs a real runtime nothing.
    pub const CONTAINER_KIND: &str = "io.skiff.container.kind";
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    InvalidState(String),
    #[error("pulling image {image:?}: {message}")]
    ImagePull { image: String, message: String },
    #[error("runtime unavailable: {0}")]
    Unavailable(String),
    #[error("{0} is not supported by this runtime")]
    Unsupported(&'static str),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What identifies a sandbox: the pod, and which attempt at running it this is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxMetadata {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

/// A protocol/port a sandbox publishes on the host (a pod's hostPorts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

#[derive(Clone, Debug, Default)]
pub struct PodSandboxConfig {
    pub metadata: PodSandboxMetadata,
    pub hostname: String,
    pub log_directory: String,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Pod-level host networking: the sandbox shares the node's network namespace and
    /// reports no IP of its own.
    pub host_network: bool,
    /// Whether any container of the pod is privileged: CRI runtimes refuse a privileged
    /// container in a sandbox that is not.
    pub privileged: bool,
    /// The pod's resolv.conf; None leaves it to the runtime (a copy of the host's).
    pub dns: Option<DnsConfig>,
}

/// The resolver configuration a runtime writes into a sandbox's /etc/resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// The network of a sandbox: its IP addresses, first the primary one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSandboxNetwork {
    pub ips: Vec<IpAddr>,
}

#[derive(Clone, Debug)]
pub struct PodSandboxStatus {
    pub id: String,
    pub metadata: PodSandboxMetadata,
    pub state: SandboxState,
    pub created_at: i64,
    pub network: PodSandboxNetwork,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A sandbox as ListPodSandbox returns it.
#[derive(Clone, Debug)]
pub struct PodSandbox {
    pub id: String,
    pub metadata: PodSandboxMetadata,
    pub state: SandboxState,
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct SandboxFilter {
    pub id: Option<String>,
    pub state: Option<SandboxState>,
    /// All of these labels must match.
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerMetadata {
    pub name: String,
    pub attempt: u32,
}

#[derive(Clone, Debug, Default)]
pub struct ContainerConfig {
    pub metadata: ContainerMetadata,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the sandbox's `log_directory`.
    pub log_path: String,
    pub mounts: Vec<Mount>,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub linux: LinuxContainerConfig,
}

/// A host path bind-mounted into a container (volumes are prepared on the host first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    /// Mount with SELinux relabelling (CRI `selinux_relabel`); false here.
    pub selinux_relabel: bool,
}

/// cgroup settings of a container, as CRI's LinuxContainerResources (0 means unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinuxResources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub oom_score_adj: i64,
}

/// Process identity and privileges, as CRI's LinuxContainerSecurityContext.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinuxSecurity {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub no_new_privs: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinuxContainerConfig {
    pub resources: LinuxResources,
    pub security: LinuxSecurity,
}

/// What ExecSync returns: a command run to completion in a container (exec probes, hooks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecSyncResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A streaming session to open (CRI Exec/Attach): the runtime answers with a URL on its
/// streaming server, which speaks Kubernetes' remotecommand protocols (SPDY, WebSocket).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamRequest {
    pub container_id: String,
    /// Empty for attach.
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct ContainerStatus {
    pub id: String,
    pub metadata: ContainerMetadata,
    pub state: ContainerState,
    pub created_at: i64,
    /// 0 until started.
    pub started_at: i64,
    /// 0 until exited.
    pub finished_at: i64,
    pub exit_code: i32,
    pub image: String,
    pub image_ref: String,
    /// Why it exited (`Completed`, `Error`, `OOMKilled`), empty while running.
    pub reason: String,
    pub message: String,
    pub labels: BTreeMap<String, String>,
    /// The container's log file (CRI's format), absolute: the sandbox's `log_directory`
    /// joined with the container's `log_path`. Empty when the container has no log.
    pub log_path: String,
}

/// A container as ListContainers returns it.
#[derive(Clone, Debug)]
pub struct Container {
    pub id: String,
    pub pod_sandbox_id: String,
    pub metadata: ContainerMetadata,
    pub image: String,
    pub image_ref: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub pod_sandbox_id: Option<String>,
    pub state: Option<ContainerState>,
    pub labels: BTreeMap<String, String>,
}

/// Credentials for one registry, from a pod's imagePullSecrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub auth: String,
    /// The key of the dockerconfig entry it came from (normalized `host[:port][/path]`);
    /// not sent to the runtime, as the kubelet does not send it.
    pub server_address: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub size: u64,
    /// The runtime asks that it never be removed (CRI's `pinned`: the sandbox image).
    pub pinned: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// e.g. `containerd` or `simulated`: the scheme of container IDs in pod status.
    pub runtime_name: String,
    pub runtime_version: String,
}

/// CRI's RuntimeService and ImageService, as async calls. Implementations must be cheap
/// to share: one is held by every pod worker of a node.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    async fn version(&self) -> Result<RuntimeVersion>;

    /// Creates and starts a sandbox (network namespace with an IP, pause process) and
    /// returns its ID.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;
    /// Stops every container of the sandbox and tears down its network. Idempotent.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<()>;
    /// Removes a sandbox and its containers. Idempotent.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus>;
    async fn list_pod_sandbox(&self, filter: &SandboxFilter) -> Result<Vec<PodSandbox>>;

    /// Creates a container in a sandbox; `sandbox` is the config the sandbox was run with.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stops a container: SIGTERM, then SIGKILL once `timeout` has passed. Returns when
    /// it has exited. Idempotent.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// How soon a running container will exit by itself, when the runtime knows (the
    /// simulated runtime's scripted commands), so the pod worker looks again then. A real
    /// runtime reports exits through its events instead and returns None.
    fn exits_in(&self, _id: &str) -> Option<Duration> {
        None
    }
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>>;

    /// Runs a command in a running container to completion, killing it after `timeout`.
    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecSyncResult>;
    /// For a runtime whose pods have no real network (the simulated one): whether a
    /// network probe (httpGet, tcpSocket, grpc) of the container would pass, answered
    /// without connecting. `None` (the default, and containerd's): connect to the pod.
    fn simulated_probe(&self, _container_id: &str) -> Option<bool> {
        None
    }

    /// The URL of a streaming exec session (the caller proxies the client's upgraded connection to it).
    async fn exec(&self, request: &StreamRequest) -> Result<String>;
    /// The URL of a streaming attach session.
    async fn attach(&self, request: &StreamRequest) -> Result<String>;
    /// The URL of a port-forward session into the sandbox's network namespace.
    async fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String>;

    /// Pulls an image (a no-op when present) and returns its image reference (ID).
    /// `auth` is a registry credential (user, password) from imagePullSecrets.
    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<String>;
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;
    async fn list_images(&self) -> Result<Vec<Image>>;
    /// Removes an image (by ID or name) with all its tags. Idempotent.
    async fn remove_image(&self, image: &str) -> Result<()>;
}

/// Whether `labels` contain every pair of `wanted`.
pub(crate) fn labels_match(labels: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}
