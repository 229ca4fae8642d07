//! The [`Runtime`] over CRI v1: gRPC to a container runtime's unix socket (containerd's,
//! by default the private one [`crate::containerd`] supervises). Each call is a
//! translation of the trait's plain structs to CRI's messages and back; the translations
//! are pure functions, tested without a socket.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Code;

use super::{
    Container, ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatus, ExecSyncResult,
    Image, Mount, PodSandbox, PodSandboxConfig, PodSandboxMetadata, PodSandboxNetwork, PodSandboxStatus, RegistryAuth,
    Result, Runtime, RuntimeError, RuntimeVersion, SandboxFilter, SandboxState, StreamRequest,
};

/// The CRI version this client speaks.
const CRI_VERSION: &str = "v1";

/// A CRI runtime reached over a unix socket. Cheap to clone: the gRPC channel is shared
/// and reconnects by itself when the runtime restarts.
#[derive(Clone)]
pub struct CriRuntime {
    socket: PathBuf,
    channel: Channel,
}

/// `unix:///run/x.sock` or `/run/x.sock` as a socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    if !path.starts_with('/') {
        return Err(RuntimeError::Unavailable(format!(
            "container runtime endpoint {endpoint:?}: only unix sockets (unix:///path) are supported"
        )));
    }
    Ok(PathBuf::from(path))
}

impl CriRuntime {
    /// A client for the CRI socket at `endpoint` (`unix:///path` or `/path`). Connects
    /// lazily: the first call fails with [`RuntimeError::Unavailable`] while nothing listens.
    pub fn new(endpoint: &str) -> Result<Self> {
        let socket = socket_path(endpoint)?;
        let target = socket.clone();
        // The URI is a placeholder: the connector ignores it and dials the socket.
        let channel = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let target = target.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(target).await?)) }
            }));
        Ok(CriRuntime { socket, channel })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone()).max_decoding_message_size(64 << 20)
    }

    /// Where the runtime keeps image layers (CRI ImageFsInfo's first mountpoint, e.g.
    /// containerd's overlayfs snapshotter directory): the filesystem image GC watches.
    pub async fn image_fs_mountpoint(&self) -> Result<PathBuf> {
        let reply = self
            .images()
            .image_fs_info(cri::ImageFsInfoRequest {})
            .await
            .map_err(|s| runtime_error(s, "image filesystem", ""))?
            .into_inner();
        reply
            .image_filesystems
            .into_iter()
            .find_map(|fs| fs.fs_id.map(|id| PathBuf::from(id.mountpoint)).filter(|p| !p.as_os_str().is_empty()))
            .ok_or_else(|| RuntimeError::Unavailable("the runtime reports no image filesystem".into()))
    }

    /// Waits until the runtime answers Version, for up to `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<RuntimeVersion> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.version().await {
                Ok(version) => return Ok(version),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// A gRPC failure as a runtime error. containerd reports some missing objects as
/// `Unknown` with "not found" in the message, so the message counts too.
pub fn runtime_error(status: tonic::Status, kind: &'static str, id: &str) -> RuntimeError {
    let message = status.message().to_string();
    match status.code() {
        Code::NotFound => RuntimeError::NotFound { kind, id: id.to_string() },
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => RuntimeError::Unavailable(message),
        Code::Unimplemented => RuntimeError::Unsupported(kind),
        _ if message.contains("not found") && !message.contains("image") => {
            RuntimeError::NotFound { kind, id: id.to_string() }
        }
        _ => RuntimeError::InvalidState(format!("{kind} {id}: {message}")),
    }
}

/// A gRPC error as Go's grpc-go prints it (`rpc error: code = Unknown desc = …`), which
/// is how the kubelet shows the runtime's errors in pod status.
pub fn grpc_error_text(status: &tonic::Status) -> String {
    let code = match status.code() {
        Code::Cancelled => "Canceled".to_string(),
        other => format!("{other:?}"),
    };
    format!("rpc error: code = {code} desc = {}", status.message())
}

fn ignore_not_found(result: Result<()>) -> Result<()> {
    match result {
        Err(RuntimeError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

fn to_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn from_map(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn protocol(name: &str) -> cri::Protocol {
    match name.to_ascii_uppercase().as_str() {
        "UDP" => cri::Protocol::Udp,
        "SCTP" => cri::Protocol::Sctp,
        _ => cri::Protocol::Tcp,
    }
}

/// The namespaces of a pod's sandbox and containers, as the kubelet sets them: the pod's
/// own network (or the node's with hostNetwork), IPC shared in the pod, a PID namespace
/// per container.
fn namespace_options(host_network: bool) -> cri::NamespaceOption {
    let shared = if host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod };
    cri::NamespaceOption {
        network: shared as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: shared as i32,
        ..Default::default()
    }
}

fn sandbox_metadata(m: &PodSandboxMetadata) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

fn from_sandbox_metadata(m: Option<cri::PodSandboxMetadata>) -> PodSandboxMetadata {
    let m = m.unwrap_or_default();
    PodSandboxMetadata { name: m.name, uid: m.uid, namespace: m.namespace, attempt: m.attempt }
}

/// The CRI form of a sandbox config.
pub fn to_cri_sandbox_config(config: &PodSandboxConfig) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(sandbox_metadata(&config.metadata)),
        hostname: config.hostname.clone(),
        log_directory: config.log_directory.clone(),
        dns_config: config.dns.as_ref().map(|dns| cri::DnsConfig {
            servers: dns.servers.clone(),
            searches: dns.searches.clone(),
            options: dns.options.clone(),
        }),
        port_mappings: config
            .port_mappings
            .iter()
            .map(|p| cri::PortMapping {
                protocol: protocol(&p.protocol) as i32,
                container_port: p.container_port,
                host_port: p.host_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels: to_map(&config.labels),
        annotations: to_map(&config.annotations),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(config.host_network)),
                privileged: config.privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        windows: None,
    }
}

fn to_cri_mount(m: &Mount) -> cri::Mount {
    cri::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation: cri::MountPropagation::PropagationPrivate as i32,
        ..Default::default()
    }
}

fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec { image: image.to_string(), user_specified_image: image.to_string(), ..Default::default() }
}

/// The CRI form of a container config; `host_network` comes from its sandbox.
pub fn to_cri_container_config(config: &ContainerConfig, host_network: bool) -> cri::ContainerConfig {
    let resources = &config.linux.resources;
    let security = &config.linux.security;
    let capabilities =
        (!security.add_capabilities.is_empty() || !security.drop_capabilities.is_empty()).then(|| cri::Capability {
            add_capabilities: security.add_capabilities.clone(),
            drop_capabilities: security.drop_capabilities.clone(),
            ..Default::default()
        });
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: config.metadata.name.clone(), attempt: config.metadata.attempt }),
        image: Some(image_spec(&config.image)),
        command: config.command.clone(),
        args: config.args.clone(),
        working_dir: config.working_dir.clone(),
        envs: config.envs.iter().map(|(key, value)| cri::KeyValue { key: key.clone(), value: value.clone() }).collect(),
        mounts: config.mounts.iter().map(to_cri_mount).collect(),
        labels: to_map(&config.labels),
        annotations: to_map(&config.annotations),
        log_path: config.log_path.clone(),
        stdin: config.stdin,
        stdin_once: config.stdin_once,
        tty: config.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cri::LinuxContainerResources {
                cpu_period: resources.cpu_period,
                cpu_quota: resources.cpu_quota,
                cpu_shares: resources.cpu_shares,
                memory_limit_in_bytes: resources.memory_limit_in_bytes,
                oom_score_adj: resources.oom_score_adj,
                ..Default::default()
            }),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities,
                privileged: security.privileged,
                namespace_options: Some(namespace_options(host_network)),
                run_as_user: security.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| cri::Int64Value { value }),
                readonly_rootfs: security.readonly_rootfs,
                supplemental_groups: security.supplemental_groups.clone(),
                no_new_privs: security.no_new_privs,
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

fn sandbox_state(state: i32) -> SandboxState {
    if state == cri::PodSandboxState::SandboxReady as i32 {
        SandboxState::Ready
    } else {
        SandboxState::NotReady
    }
}

fn container_state(state: i32) -> ContainerState {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
        Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
        Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
        _ => ContainerState::Unknown,
    }
}

fn to_cri_container_state(state: ContainerState) -> cri::ContainerState {
    match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

fn from_container_metadata(m: Option<cri::ContainerMetadata>) -> ContainerMetadata {
    let m = m.unwrap_or_default();
    ContainerMetadata { name: m.name, attempt: m.attempt }
}

/// A sandbox status from CRI: the primary IP first, then the additional ones.
pub fn from_cri_sandbox_status(status: cri::PodSandboxStatus) -> PodSandboxStatus {
    let network = status.network.unwrap_or_default();
    let ips = std::iter::once(network.ip)
        .chain(network.additional_ips.into_iter().map(|ip| ip.ip))
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .collect();
    PodSandboxStatus {
        id: status.id,
        metadata: from_sandbox_metadata(status.metadata),
        state: sandbox_state(status.state),
        created_at: status.created_at,
        network: PodSandboxNetwork { ips },
        labels: from_map(status.labels),
        annotations: from_map(status.annotations),
    }
}

pub fn from_cri_container_status(status: cri::ContainerStatus) -> ContainerStatus {
    ContainerStatus {
        id: status.id,
        metadata: from_container_metadata(status.metadata),
        state: container_state(status.state),
        created_at: status.created_at,
        started_at: status.started_at,
        finished_at: status.finished_at,
        exit_code: status.exit_code,
        image: status.image.map(|i| i.image).unwrap_or_default(),
        image_ref: status.image_ref,
        reason: status.reason,
        message: status.message,
        labels: from_map(status.labels),
        log_path: status.log_path,
    }
}

fn from_cri_image(image: cri::Image) -> Image {
    Image { id: image.id, repo_tags: image.repo_tags, size: image.size, pinned: image.pinned }
}

/// The credential as the kubelet sends it: without a server address. The agent has
/// already matched it to the image; containerd 1.6 would parse a bare `host:port` address
/// as a URL, fail, and pull anonymously.
fn to_cri_auth(auth: &RegistryAuth) -> cri::AuthConfig {
    cri::AuthConfig {
        username: auth.username.clone(),
        password: auth.password.clone(),
        auth: auth.auth.clone(),
        ..Default::default()
    }
}

#[async_trait]
impl Runtime for CriRuntime {
    async fn version(&self) -> Result<RuntimeVersion> {
        let request = cri::VersionRequest { version: CRI_VERSION.into() };
        let reply = self.runtime().version(request).await.map_err(|s| runtime_error(s, "runtime", ""))?.into_inner();
        Ok(RuntimeVersion { runtime_name: reply.runtime_name, runtime_version: reply.runtime_version })
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let request =
            cri::RunPodSandboxRequest { config: Some(to_cri_sandbox_config(config)), runtime_handler: String::new() };
        let name = &config.metadata.name;
        let reply = self.runtime().run_pod_sandbox(request).await.map_err(|s| runtime_error(s, "sandbox", name))?;
        Ok(reply.into_inner().pod_sandbox_id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let request = cri::StopPodSandboxRequest { pod_sandbox_id: id.into() };
        let result = self.runtime().stop_pod_sandbox(request).await;
        ignore_not_found(result.map(drop).map_err(|s| runtime_error(s, "sandbox", id)))
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let request = cri::RemovePodSandboxRequest { pod_sandbox_id: id.into() };
        let result = self.runtime().remove_pod_sandbox(request).await;
        ignore_not_found(result.map(drop).map_err(|s| runtime_error(s, "sandbox", id)))
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus> {
        let request = cri::PodSandboxStatusRequest { pod_sandbox_id: id.into(), verbose: false };
        let reply = self.runtime().pod_sandbox_status(request).await.map_err(|s| runtime_error(s, "sandbox", id))?;
        let status =
            reply.into_inner().status.ok_or_else(|| RuntimeError::NotFound { kind: "sandbox", id: id.into() })?;
        Ok(from_cri_sandbox_status(status))
    }

    async fn list_pod_sandbox(&self, filter: &SandboxFilter) -> Result<Vec<PodSandbox>> {
        let filter = cri::PodSandboxFilter {
            id: filter.id.clone().unwrap_or_default(),
            state: filter.state.map(|state| cri::PodSandboxStateValue {
                state: match state {
                    SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
                    SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
                },
            }),
            label_selector: to_map(&filter.labels),
        };
        let request = cri::ListPodSandboxRequest { filter: Some(filter) };
        let reply = self.runtime().list_pod_sandbox(request).await.map_err(|s| runtime_error(s, "sandbox", ""))?;
        Ok(reply
            .into_inner()
            .items
            .into_iter()
            .map(|s| PodSandbox {
                id: s.id,
                metadata: from_sandbox_metadata(s.metadata),
                state: sandbox_state(s.state),
                created_at: s.created_at,
                labels: from_map(s.labels),
            })
            .collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.into(),
            config: Some(to_cri_container_config(config, sandbox.host_network)),
            sandbox_config: Some(to_cri_sandbox_config(sandbox)),
        };
        let name = &config.metadata.name;
        let reply = self.runtime().create_container(request).await.map_err(|s| runtime_error(s, "container", name))?;
        Ok(reply.into_inner().container_id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let request = cri::StartContainerRequest { container_id: id.into() };
        self.runtime().start_container(request).await.map_err(|s| runtime_error(s, "container", id))?;
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<()> {
        // CRI takes whole seconds: round up, so that what is left of a grace period (6 s
        // less a few milliseconds) is not cut to a second less, as the kubelet's is not.
        let seconds = timeout.as_millis().div_ceil(1000);
        let request = cri::StopContainerRequest { container_id: id.into(), timeout: seconds as i64 };
        let mut request = tonic::Request::new(request);
        // The runtime waits `timeout` before SIGKILL; give the call room beyond that.
        request.set_timeout(timeout + Duration::from_secs(30));
        let result = self.runtime().stop_container(request).await;
        ignore_not_found(result.map(drop).map_err(|s| runtime_error(s, "container", id)))
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let request = cri::RemoveContainerRequest { container_id: id.into() };
        let result = self.runtime().remove_container(request).await;
        ignore_not_found(result.map(drop).map_err(|s| runtime_error(s, "container", id)))
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let request = cri::ContainerStatusRequest { container_id: id.into(), verbose: false };
        let reply = self.runtime().container_status(request).await.map_err(|s| runtime_error(s, "container", id))?;
        let status =
            reply.into_inner().status.ok_or_else(|| RuntimeError::NotFound { kind: "container", id: id.into() })?;
        Ok(from_cri_container_status(status))
    }

    async fn list_containers(&self, filter: &ContainerFilter) -> Result<Vec<Container>> {
        let filter = cri::ContainerFilter {
            id: filter.id.clone().unwrap_or_default(),
            state: filter.state.map(|state| cri::ContainerStateValue { state: to_cri_container_state(state) as i32 }),
            pod_sandbox_id: filter.pod_sandbox_id.clone().unwrap_or_default(),
            label_selector: to_map(&filter.labels),
        };
        let request = cri::ListContainersRequest { filter: Some(filter) };
        let reply = self.runtime().list_containers(request).await.map_err(|s| runtime_error(s, "container", ""))?;
        Ok(reply
            .into_inner()
            .containers
            .into_iter()
            .map(|c| Container {
                id: c.id,
                pod_sandbox_id: c.pod_sandbox_id,
                metadata: from_container_metadata(c.metadata),
                image: c.image.map(|i| i.image).unwrap_or_default(),
                image_ref: c.image_ref,
                state: container_state(c.state),
                created_at: c.created_at,
                labels: from_map(c.labels),
            })
            .collect())
    }

    async fn exec_sync(&self, container_id: &str, cmd: &[String], timeout: Duration) -> Result<ExecSyncResult> {
        // Whole seconds, rounded up: CRI reads 0 as "no timeout".
        let seconds = timeout.as_secs() as i64 + i64::from(timeout.subsec_nanos() > 0);
        let request = cri::ExecSyncRequest { container_id: container_id.into(), cmd: cmd.to_vec(), timeout: seconds };
        let mut request = tonic::Request::new(request);
        request.set_timeout(timeout + Duration::from_secs(10));
        let reply = self.runtime().exec_sync(request).await.map_err(|s| runtime_error(s, "container", container_id))?;
        let reply = reply.into_inner();
        Ok(ExecSyncResult { stdout: reply.stdout, stderr: reply.stderr, exit_code: reply.exit_code })
    }

    async fn exec(&self, request: &StreamRequest) -> Result<String> {
        let id = &request.container_id;
        let request = cri::ExecRequest {
            container_id: id.clone(),
            cmd: request.cmd.clone(),
            tty: request.tty,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
        };
        let reply = self.runtime().exec(request).await.map_err(|s| runtime_error(s, "container", id))?;
        Ok(reply.into_inner().url)
    }

    async fn attach(&self, request: &StreamRequest) -> Result<String> {
        let id = &request.container_id;
        let request = cri::AttachRequest {
            container_id: id.clone(),
            stdin: request.stdin,
            tty: request.tty,
            stdout: request.stdout,
            stderr: request.stderr,
        };
        let reply = self.runtime().attach(request).await.map_err(|s| runtime_error(s, "container", id))?;
        Ok(reply.into_inner().url)
    }

    async fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String> {
        let request = cri::PortForwardRequest { pod_sandbox_id: sandbox_id.into(), port: ports.to_vec() };
        let reply = self.runtime().port_forward(request).await.map_err(|s| runtime_error(s, "sandbox", sandbox_id))?;
        Ok(reply.into_inner().url)
    }

    async fn pull_image(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<String> {
        let request =
            cri::PullImageRequest { image: Some(image_spec(image)), auth: auth.map(to_cri_auth), sandbox_config: None };
        let mut request = tonic::Request::new(request);
        request.set_timeout(Duration::from_secs(600));
        let reply = self.images().pull_image(request).await.map_err(|s| match s.code() {
            Code::Unavailable => RuntimeError::Unavailable(s.message().to_string()),
            _ => RuntimeError::ImagePull { image: image.to_string(), message: grpc_error_text(&s) },
        })?;
        Ok(reply.into_inner().image_ref)
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let request = cri::ImageStatusRequest { image: Some(image_spec(image)), verbose: false };
        let reply = self.images().image_status(request).await.map_err(|s| runtime_error(s, "image", image))?;
        Ok(reply.into_inner().image.map(from_cri_image))
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let request = cri::ListImagesRequest { filter: None };
        let reply = self.images().list_images(request).await.map_err(|s| runtime_error(s, "image", ""))?;
        Ok(reply.into_inner().images.into_iter().map(from_cri_image).collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let request = cri::RemoveImageRequest { image: Some(image_spec(image)) };
        ignore_not_found(
            self.images().remove_image(request).await.map(drop).map_err(|s| runtime_error(s, "image", image)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{LinuxContainerConfig, LinuxResources, LinuxSecurity, PortMapping};

    fn sandbox(host_network: bool) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 2,
            },
            hostname: "web".into(),
            log_directory: "/var/log/pods/default_web_u1".into(),
            port_mappings: vec![PortMapping {
                protocol: "UDP".into(),
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            }],
            labels: BTreeMap::from([("io.kubernetes.pod.uid".into(), "u1".into())]),
            annotations: BTreeMap::from([("a".into(), "b".into())]),
            host_network,
            privileged: true,
            dns: Some(crate::runtime::DnsConfig {
                servers: vec!["10.43.0.10".into()],
                searches: vec!["default.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
        }
    }

    #[test]
    fn sandbox_config_carries_every_field() {
        let config = to_cri_sandbox_config(&sandbox(false));
        let metadata = config.metadata.unwrap();
        assert_eq!(
            (metadata.name.as_str(), metadata.uid.as_str(), metadata.namespace.as_str()),
            ("web", "u1", "default")
        );
        assert_eq!(metadata.attempt, 2);
        assert_eq!(config.hostname, "web");
        assert_eq!(config.log_directory, "/var/log/pods/default_web_u1");
        let dns = config.dns_config.unwrap();
        assert_eq!(
            (dns.servers, dns.searches, dns.options),
            (
                vec!["10.43.0.10".to_string()],
                vec!["default.svc.cluster.local".to_string()],
                vec!["ndots:5".to_string()]
            )
        );
        let port = &config.port_mappings[0];
        assert_eq!(port.protocol, cri::Protocol::Udp as i32);
        assert_eq!((port.container_port, port.host_port, port.host_ip.as_str()), (53, 5353, "127.0.0.1"));
        assert_eq!(config.labels["io.kubernetes.pod.uid"], "u1");
        assert_eq!(config.annotations["a"], "b");
        let security = config.linux.unwrap().security_context.unwrap();
        assert!(security.privileged);
        let namespaces = security.namespace_options.unwrap();
        assert_eq!(namespaces.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(namespaces.pid, cri::NamespaceMode::Container as i32);

        let host = to_cri_sandbox_config(&sandbox(true));
        let namespaces = host.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(namespaces.network, cri::NamespaceMode::Node as i32);
        assert_eq!(namespaces.ipc, cri::NamespaceMode::Node as i32);
    }

    #[test]
    fn container_config_carries_every_field() {
        let config = ContainerConfig {
            metadata: ContainerMetadata { name: "app".into(), attempt: 3 },
            image: "skiff.local/busybox:1".into(),
            command: vec!["httpd".into()],
            args: vec!["-f".into()],
            working_dir: "/www".into(),
            envs: vec![("A".into(), "1".into())],
            labels: BTreeMap::from([("io.kubernetes.container.name".into(), "app".into())]),
            annotations: BTreeMap::from([("x".into(), "y".into())]),
            log_path: "app/3.log".into(),
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/var/lib/x".into(),
                readonly: true,
                selinux_relabel: false,
            }],
            stdin: true,
            stdin_once: true,
            tty: true,
            linux: LinuxContainerConfig {
                resources: LinuxResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: 64 << 20,
                    oom_score_adj: 1000,
                },
                security: LinuxSecurity {
                    run_as_user: Some(1000),
                    run_as_group: Some(2000),
                    supplemental_groups: vec![3000],
                    readonly_rootfs: true,
                    privileged: false,
                    no_new_privs: true,
                    add_capabilities: vec!["NET_ADMIN".into()],
                    drop_capabilities: vec!["ALL".into()],
                },
            },
        };
        let cri = to_cri_container_config(&config, true);
        assert_eq!(cri.metadata.as_ref().unwrap().attempt, 3);
        assert_eq!(cri.image.as_ref().unwrap().image, "skiff.local/busybox:1");
        assert_eq!((cri.command.clone(), cri.args.clone()), (vec!["httpd".into()], vec!["-f".into()]));
        assert_eq!(cri.working_dir, "/www");
        assert_eq!((cri.envs[0].key.as_str(), cri.envs[0].value.as_str()), ("A", "1"));
        assert_eq!(cri.labels["io.kubernetes.container.name"], "app");
        assert_eq!(cri.annotations["x"], "y");
        assert_eq!(cri.log_path, "app/3.log");
        assert_eq!((cri.mounts[0].container_path.as_str(), cri.mounts[0].host_path.as_str()), ("/data", "/var/lib/x"));
        assert!(cri.mounts[0].readonly);
        assert!(cri.stdin && cri.stdin_once && cri.tty);
        let linux = cri.linux.unwrap();
        let resources = linux.resources.unwrap();
        assert_eq!(
            (resources.cpu_period, resources.cpu_quota, resources.cpu_shares, resources.memory_limit_in_bytes),
            (100_000, 50_000, 512, 64 << 20)
        );
        assert_eq!(resources.oom_score_adj, 1000);
        let security = linux.security_context.unwrap();
        assert_eq!(security.run_as_user.unwrap().value, 1000);
        assert_eq!(security.run_as_group.unwrap().value, 2000);
        assert_eq!(security.supplemental_groups, vec![3000]);
        assert!(security.readonly_rootfs && security.no_new_privs && !security.privileged);
        let capabilities = security.capabilities.unwrap();
        assert_eq!(
            (capabilities.add_capabilities, capabilities.drop_capabilities),
            (vec!["NET_ADMIN".into()], vec!["ALL".into()])
        );
        assert_eq!(security.namespace_options.unwrap().network, cri::NamespaceMode::Node as i32);

        let plain = to_cri_container_config(&ContainerConfig::default(), false);
        let security = plain.linux.unwrap().security_context.unwrap();
        assert!(security.run_as_user.is_none() && security.capabilities.is_none(), "unset stays unset");
    }

    #[test]
    fn statuses_come_back_from_cri() {
        let status = from_cri_sandbox_status(cri::PodSandboxStatus {
            id: "s1".into(),
            state: cri::PodSandboxState::SandboxNotready as i32,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: "10.42.0.5".into(),
                additional_ips: vec![cri::PodIp { ip: "fd00::5".into() }],
            }),
            ..Default::default()
        });
        assert_eq!(status.state, SandboxState::NotReady);
        assert_eq!(status.network.ips.len(), 2);
        assert_eq!(status.network.ips[0].to_string(), "10.42.0.5");
        let no_ip = from_cri_sandbox_status(cri::PodSandboxStatus::default());
        assert!(no_ip.network.ips.is_empty(), "a host-network sandbox reports no IP");

        let container = from_cri_container_status(cri::ContainerStatus {
            id: "c1".into(),
            metadata: Some(cri::ContainerMetadata { name: "app".into(), attempt: 4 }),
            state: cri::ContainerState::ContainerExited as i32,
            exit_code: 3,
            reason: "Error".into(),
            image: Some(image_spec("skiff.local/busybox:1")),
            image_ref: "sha256:abc".into(),
            finished_at: 7,
            log_path: "/var/log/pods/default_web_u1/app/4.log".into(),
            ..Default::default()
        });
        assert_eq!(container.log_path, "/var/log/pods/default_web_u1/app/4.log");
        assert_eq!(
            (container.state, container.exit_code, container.reason.as_str()),
            (ContainerState::Exited, 3, "Error")
        );
        assert_eq!(container.metadata.attempt, 4);
        assert_eq!((container.image.as_str(), container.image_ref.as_str()), ("skiff.local/busybox:1", "sha256:abc"));
        assert_eq!(container_state(99), ContainerState::Unknown);
    }

    #[test]
    fn grpc_errors_map_to_runtime_errors() {
        let not_found = runtime_error(tonic::Status::not_found("gone"), "container", "c1");
        assert!(matches!(not_found, RuntimeError::NotFound { kind: "container", .. }));
        let unknown =
            runtime_error(tonic::Status::unknown("container \"c1\" in namespace: not found"), "container", "c1");
        assert!(matches!(unknown, RuntimeError::NotFound { .. }));
        assert!(matches!(
            runtime_error(tonic::Status::unavailable("dial"), "runtime", ""),
            RuntimeError::Unavailable(_)
        ));
        assert!(matches!(
            runtime_error(tonic::Status::internal("boom"), "sandbox", "s"),
            RuntimeError::InvalidState(_)
        ));
        assert_eq!(
            grpc_error_text(&tonic::Status::unknown("failed to pull")),
            "rpc error: code = Unknown desc = failed to pull"
        );
        assert!(grpc_error_text(&tonic::Status::not_found("x")).starts_with("rpc error: code = NotFound desc"));
        assert!(socket_path("tcp://1.2.3.4:1").is_err());
        assert_eq!(socket_path("unix:///run/c.sock").unwrap(), PathBuf::from("/run/c.sock"));
    }
}
