//! `skiff server` runs a node agent in-process: the real binary on a temp data dir starts
//! its private containerd, imports the images in DATA/agent/images, registers this
//! machine as a node, and `kubectl run` gets a real container serving HTTP on its pod IP.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::FutureExt;
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::Runtime;
use skiff_testkit::{kubectl, ok};

mod common;
use common::{kubectl_until, Server, IMAGE};

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
    let server = Server::start(dir.path());
    let outcome = AssertUnwindSafe(scenario(dir.path(), &server.kubeconfig())).catch_unwind().await;
    server.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
