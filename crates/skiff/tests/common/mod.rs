//! What the tests of the real `skiff server` with its in-process agent on containerd
//! share: the server process on a temp data directory (its pods and containerd removed
//! when it stops, also when a test fails), killed and started again on the same ports, and
//! kubectl polling.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::Runtime;
use skiff_testkit::kubectl;

/// The test image, written where the agent imports images from at start.
pub const IMAGE: &str = "skiff.local/busybox:1";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `skiff server` process (API server, scheduler, controllers, agent on its private
/// containerd) with a SQLite store, so that a restart finds its cluster again.
pub struct Server {
    child: Option<Child>,
    data: PathBuf,
    port: u16,
    kubelet_port: u16,
    /// Whether [`Server::stop`] has removed its pods and containerd.
    stopped: bool,
}

impl Server {
    /// Starts the server on `data` with the test image to import, and waits for its node
    /// to be Ready.
    pub fn start(data: &Path) -> Server {
        skiff_testkit::hostnet::remove_leaked_pod_networks();
        skiff_testkit::images::write_busybox(&data.join("agent/images"), IMAGE).unwrap();
        let mut server = Server {
            child: None,
            data: data.to_path_buf(),
            port: free_port(),
            kubelet_port: free_port(),
            stopped: false,
        };
        server.spawn();
        server.wait_ready();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["server", "--store", "sqlite", "--bind-address", "127.0.0.1"])
            // The service proxy would program the host's own nftables: tests keep off it.
            .arg("--disable-kube-proxy")
            .args(["--https-listen-port", &self.port.to_string(), "--kubelet-port", &self.kubelet_port.to_string()])
            .arg("--data-dir")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("skiff starts");
        self.child = Some(child);
    }

    fn wait_ready(&self) {
        let kubeconfig = self.kubeconfig();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if kubeconfig.exists() {
                let out =
                    kubectl(&kubeconfig, &["wait", "--for=condition=Ready", "node", "--all", "--timeout=5s"], None);
                if out.status.success() && !out.stdout.is_empty() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no Ready node");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data.join("kubeconfig.yaml")
    }

    /// CRI of the server's private containerd.
    pub fn runtime(&self) -> Result<CriRuntime, skiff_agent::runtime::RuntimeError> {
        let socket = self.data.join("agent/containerd/containerd.sock");
        CriRuntime::new(&socket.to_string_lossy())
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL: no shutdown at all; containerd and the containers are left running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
        self.wait_ready();
    }

    /// Kills the server first (no agent may start containers again meanwhile), removes every
    /// pod sandbox through its containerd, which outlives it, then stops that containerd.
    pub async fn stop(mut self) {
        self.kill9();
        self.remove_pods_and_containerd().await;
        self.stopped = true;
    }

    async fn remove_pods_and_containerd(&self) {
        if let Ok(runtime) = self.runtime() {
            for _ in 0..3 {
                for sandbox in runtime.list_pod_sandbox(&Default::default()).await.unwrap_or_default() {
                    let _ = runtime.stop_pod_sandbox(&sandbox.id).await;
                    let _ = runtime.remove_pod_sandbox(&sandbox.id).await;
                }
            }
        }
        let pid_file = self.data.join("agent/containerd/containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Path::new(&format!("/proc/{}", pid.trim())).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// [`Server::stop`] for tests without an async runtime: dropping the server does it.
    pub fn stop_blocking(self) {
        drop(self);
    }
}

impl Drop for Server {
    /// A test that ended without [`Server::stop`] (most often by failing) must not leave
    /// its pods running either: their network namespaces would keep their addresses on
    /// the host's bridge, where the next test's pods get the same ones.
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.kill9();
        // Its own thread and runtime: drop may run inside the test's runtime.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(self.remove_pods_and_containerd());
            });
        });
    }
}

/// Runs kubectl until `check` accepts its stdout, for up to `seconds`.
pub fn kubectl_until(kubeconfig: &Path, args: &[&str], seconds: u64, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let output = kubectl(kubeconfig, args, None);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && check(&stdout) {
            return stdout;
        }
        assert!(Instant::now() < deadline, "kubectl {args:?}: {stdout} {}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_millis(250));
    }
}
