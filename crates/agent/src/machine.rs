//! A real node on this machine: what it looks like (name, capacity from the hardware,
//! labels) and what it takes to run its pods: the CNI config, a private containerd (or an
//! existing CRI socket), the pause image and the air-gap images imported, and the CRI
//! runtime connected.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use tracing::info;

use crate::config::{NodeIdentity, NodeTemplate};
use crate::containerd::{self, Containerd, ContainerdError, Layout, RestartBackoff, Settings};
use crate::ipam::Ipv4Cidr;
use crate::oci;
use crate::runtime::cri::CriRuntime;
use crate::runtime::{Runtime, RuntimeError};

/// The pod CIDR of a single node when none is given.
pub const DEFAULT_POD_CIDR: &str = "10.42.0.0/24";

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error("container runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// The machine's resources: cpu count, memory from /proc/meminfo, 110 pods, and the
/// size of the filesystem holding `data_dir` as ephemeral storage.
pub fn capacity(data_dir: &Path) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    let storage =
        nix::sys::statvfs::statvfs(data_dir).map(|s| s.blocks().saturating_mul(s.fragment_size())).unwrap_or(0);
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{memory_kib}Ki"))),
        ("pods".to_string(), Quantity("110".into())),
        ("ephemeral-storage".to_string(), Quantity(storage.to_string())),
    ])
}

/// The template of a real node: the machine's capacity, no extra labels.
pub fn template(data_dir: &Path) -> NodeTemplate {
    NodeTemplate { capacity: capacity(data_dir), labels: BTreeMap::new(), ..NodeTemplate::simulated() }
}

/// The machine's host name (the node's name unless told otherwise), lowercased as node
/// names must be.
pub fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().to_lowercase()
}

/// How to run the node's containers.
#[derive(Clone, Debug)]
pub struct Options {
    /// DATA/agent: containerd's files, the CNI config, the images to import.
    pub agent_dir: PathBuf,
    pub name: String,
    pub address: IpAddr,
    pub pod_cidr: Ipv4Cidr,
    /// An existing CRI socket (`unix:///…`) instead of a private containerd.
    pub runtime_endpoint: Option<String>,
    /// The containerd binary (normally `containerd` from PATH).
    pub containerd: String,
    pub cni_bin_dir: PathBuf,
    pub restart_backoff: RestartBackoff,
}

impl Options {
    pub fn new(agent_dir: PathBuf, name: String, address: IpAddr) -> Self {
        Options {
            agent_dir,
            name,
            address,
            pod_cidr: DEFAULT_POD_CIDR.parse().expect("valid literal"),
            runtime_endpoint: None,
            containerd: "containerd".into(),
            cni_bin_dir: crate::cni::DEFAULT_BIN_DIR.into(),
            restart_backoff: RestartBackoff::default(),
        }
    }

    /// Where tarballs to import at start are put (like k3s's agent/images).
    pub fn images_dir(&self) -> PathBuf {
        self.agent_dir.join("images")
    }
}

/// A node's runtime, ready: containerd running (unless an endpoint was given), images in.
pub struct Machine {
    pub identity: NodeIdentity,
    pub runtime: Arc<CriRuntime>,
    /// The private containerd, None with an external endpoint.
    pub containerd: Option<Containerd>,
    /// The images imported from DATA/agent/images at start: no registry may have them,
    /// so image garbage collection keeps them (as k3s pins its air-gap images).
    pub imported_images: Vec<String>,
}

impl Machine {
    /// Writes the CNI config, starts containerd (or connects to the given endpoint),
    /// imports the pause image and DATA/agent/images/*.tar.
    pub async fn start(options: &Options) -> Result<Machine, MachineError> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| MachineError::Io { what, source }
        };
        let identity =
            NodeIdentity { name: options.name.clone(), address: options.address, pod_cidr: options.pod_cidr };
        let (containerd, endpoint) = match &options.runtime_endpoint {
            Some(endpoint) => (None, endpoint.clone()),
            None => {
                let cni_dir = options.agent_dir.join("cni");
                let conf_dir = cni_dir.join("net.d");
                crate::cni::write_conflist(&conf_dir, &cni_dir.join("ipam"), options.pod_cidr)
                    .map_err(io("writing the CNI config"))?;
                let settings = Settings {
                    sandbox_image: oci::PAUSE_IMAGE.into(),
                    cni_bin_dir: options.cni_bin_dir.clone(),
                    cni_conf_dir: conf_dir,
                };
                let layout = Layout::under(&options.agent_dir);
                let containerd = Containerd::start(
                    &options.containerd,
                    layout,
                    &settings,
                    options.restart_backoff,
                    Duration::from_secs(30),
                )
                .await?;
                let endpoint = containerd.endpoint();
                (Some(containerd), endpoint)
            }
        };
        let runtime = Arc::new(CriRuntime::new(&endpoint)?);
        let version = runtime.wait_ready(Duration::from_secs(30)).await?;
        info!(runtime = %version.runtime_name, version = %version.runtime_version, "container runtime ready");
        let mut imported_images = Vec::new();
        if containerd.is_some() {
            let socket = runtime.socket().to_path_buf();
            if let Some(image) = oci::pause_image() {
                let path = options.agent_dir.join("containerd").join("pause.tar");
                std::fs::write(&path, image.map_err(io("building the pause image"))?)
                    .map_err(io("writing the pause image"))?;
                containerd::import_image(&socket, &path).await?;
            }
            imported_images = containerd::import_directory(&socket, &options.images_dir()).await;
            info!(imported = ?imported_images, dir = %options.images_dir().display(), "images imported");
        }
        Ok(Machine { identity, runtime, containerd, imported_images })
    }

    /// Stops and removes every sandbox (and so every container) in the runtime: for tests
    /// and for tearing a node down, not for an agent restart (which adopts them).
    pub async fn remove_all_pods(&self) -> Result<(), RuntimeError> {
        // containerd may refuse one sandbox for a moment (a removal under way): go on with
        // the others and look again, a few rounds.
        let mut last_error = None;
        for _ in 0..5 {
            let sandboxes = self.runtime.list_pod_sandbox(&Default::default()).await?;
            if sandboxes.is_empty() {
                return Ok(());
            }
            for sandbox in sandboxes {
                let removed = async {
                    self.runtime.stop_pod_sandbox(&sandbox.id).await?;
                    self.runtime.remove_pod_sandbox(&sandbox.id).await
                };
                match removed.await {
                    Ok(()) => {
                        let root = std::path::Path::new(crate::podworker::POD_LOG_ROOT);
                        crate::podworker::remove_sandbox_logs(root, &sandbox.metadata).await;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        last_error.map_or(Ok(()), Err)
    }

    /// Stops the private containerd, if any.
    pub async fn shutdown(self) {
        if let Some(containerd) = self.containerd {
            containerd.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_comes_from_the_machine() {
        let capacity = capacity(Path::new("/"));
        assert!(capacity["cpu"].0.parse::<u32>().unwrap() >= 1);
        let memory = capacity["memory"].0.strip_suffix("Ki").unwrap().parse::<u64>().unwrap();
        assert!(memory > 1024, "{memory} KiB");
        assert_eq!(capacity["pods"].0, "110");
        assert!(capacity["ephemeral-storage"].0.parse::<u64>().unwrap() > 0);
    }
}
