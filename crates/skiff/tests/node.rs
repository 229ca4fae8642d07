//! `skiff server` runs a node agent in-process: the real binary on a temp data dir starts
//! its private containerd, imports the images in DATA/agent/images, registers this
//! machine as a node, and `kubectl run` gets a real container serving HTTP on its pod IP.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::Runtime;
use skiff_testkit::{images, kubectl, ok};

const IMAGE: &str = "skiff.local/busybox:1";

struct ServerProcess(Child);

impl ServerProcess {
    /// Stops the server as Ctrl-C does (it stops its containerd).
    fn interrupt(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.interrupt();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs kubectl until `check` accepts its stdout, for up to `seconds`.
fn kubectl_until(kubeconfig: &Path, args: &[&str], seconds: u64, check: impl Fn(&str) -> bool) -> String {
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

async fn scenario(data: &Path, kubeconfig: &Path) {
    let hostname = ok(&kubectl(kubeconfig, &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None));
    let labels = ok(&kubectl(kubeconfig, &["get", "node", &hostname, "--show-labels", "--no-headers"], None));
    assert!(labels.contains("node-role.kubernetes.io/control-plane=true"), "{labels}");
    assert!(labels.contains(&format!("kubernetes.io/hostname={hostname}")), "{labels}");
    kubectl_until(
        kubeconfig,
        &["get", "node", &hostname, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
        30,
        |s| s == "True",
    );
    let cidr = ok(&kubectl(kubeconfig, &["get", "node", &hostname, "-o", "jsonpath={.spec.podCIDR}"], None));
    assert_eq!(cidr, "10.42.0.0/24");

    ok(&kubectl(
        kubeconfig,
        &["run", "web", "--image", IMAGE, "--command", "--", "httpd", "-f", "-p", "8080", "-h", "/www"],
        None,
    ));
    kubectl_until(kubeconfig, &["get", "pod", "web", "-o", "jsonpath={.status.phase}"], 120, |s| s == "Running");
    // ClusterFirst: the pod asks the cluster DNS, through kube-dns, with the usual search path.
    let resolv = ok(&kubectl(kubeconfig, &["exec", "web", "--", "cat", "/etc/resolv.conf"], None));
    assert!(resolv.contains("nameserver 10.43.0.10"), "{resolv}");
    assert!(resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "{resolv}");
    assert!(resolv.contains("options ndots:5"), "{resolv}");
    let dns_ip = ok(&kubectl(
        kubeconfig,
        &["get", "service", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"],
        None,
    ));
    assert_eq!(dns_ip, "10.43.0.10");

    let ip = ok(&kubectl(kubeconfig, &["get", "pod", "web", "-o", "jsonpath={.status.podIP}"], None));
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let answer = async {
            let mut stream = tokio::net::TcpStream::connect((ip.as_str(), 8080)).await.ok()?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await.ok()?;
            let mut text = String::new();
            stream.read_to_string(&mut text).await.ok()?;
            Some(text)
        };
        if let Some(text) = answer.await {
            break text;
        }
        assert!(Instant::now() < deadline, "no HTTP answer from {ip}:8080");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.ends_with("hello from skiff\n"), "{body}");

    ok(&kubectl(kubeconfig, &["delete", "pod", "web", "--wait=true", "--timeout=60s"], None));
    let runtime = CriRuntime::new(data.join("agent/containerd/containerd.sock").to_str().unwrap()).unwrap();
    assert!(runtime.list_pod_sandbox(&Default::default()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_runs_pods_in_real_containers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    images::write_busybox(&data.join("agent/images"), IMAGE).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--store", "sqlite", "--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
        .args(["--kubelet-port", &free_port().to_string(), "--cluster-dns-port", &free_port().to_string()])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skiff starts");
    let mut server = ServerProcess(child);
    let kubeconfig = data.join("kubeconfig.yaml");
    kubectl_until(&kubeconfig, &["get", "nodes", "-o", "name"], 60, |s| s.starts_with("node/"));

    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(scenario(data, &kubeconfig))).await;
    // Leave nothing running: pods first (containers outlive the agent by design), then the server.
    let socket = data.join("agent/containerd/containerd.sock");
    if let Ok(runtime) = CriRuntime::new(socket.to_str().unwrap()) {
        for sandbox in runtime.list_pod_sandbox(&Default::default()).await.unwrap_or_default() {
            let _ = runtime.stop_pod_sandbox(&sandbox.id).await;
            let _ = runtime.remove_pod_sandbox(&sandbox.id).await;
        }
    }
    server.interrupt();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
