//! Logs, exec, attach, port-forward and the node proxy, end to end through the API server
//! to an in-process agent (simulated runtime) and its HTTPS server.
//!
//! Logs go through the real kubectl: the test writes the container's output into the CRI
//! log file where the runtime says it is (the simulated runtime runs no processes).
//! exec/attach/port-forward are checked as proxying only: the simulated runtime answers
//! with the URL of a small upgrade-and-echo server of the test. Real exec over SPDY and
//! WebSocket needs containerd's streaming server: see `tests/cri_streaming.rs`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use skiff_agent::config::{NodeIdentity, NodeTemplate, Timing};
use skiff_agent::runtime::simulated::{Behaviour, SimulatedRuntime};
use skiff_agent::runtime::{labels, ContainerFilter, ContainerState, Runtime};
use skiff_agent::server::{self, NodeServer, ServerConfig};
use skiff_agent::{Agent, NodeHandle};
use skiff_testkit::{fails, json, ok, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NODE: &str = "node-a";

struct Cluster {
    s: TestServer,
    client: kube::Client,
    runtime: Arc<SimulatedRuntime>,
    node_server: NodeServer,
    _logs: tempfile::TempDir,
    agent: tokio::task::JoinHandle<skiff_agent::Result<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agent.abort();
    }
}

/// A server and one agent node at 127.0.0.1 whose HTTPS server listens on a free port.
async fn cluster() -> Cluster {
    let s = TestServer::start().await;
    let client = skiff_client::connect(s.kubeconfig(), None).await.unwrap();
    let runtime = Arc::new(SimulatedRuntime::new("10.42.0.0/24".parse().unwrap(), Behaviour::default()));
    let identity = server::identity::request(&client, NODE, &["127.0.0.1".into()]).await.unwrap();
    let config = ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), log_poll: Duration::from_millis(20) };
    let node_server = server::start(config, &identity, runtime.clone()).await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let identity =
        NodeIdentity { name: NODE.into(), address: [127, 0, 0, 1].into(), pod_cidr: "10.42.0.0/24".parse().unwrap() };
    let node = NodeHandle::new(identity, runtime.clone())
        .with_pod_log_root(logs.path())
        .with_kubelet_port(node_server.addr.port());
    let agent =
        tokio::spawn(Agent::new(client.clone(), NodeTemplate::simulated(), Timing::default(), vec![node], 8).run());
    Cluster { s, client, runtime, node_server, _logs: logs, agent }
}

/// Polls `check` every 50 ms for up to 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..400 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Creates pod `name` with `containers` and waits until it runs on the node.
async fn running_pod(c: &Cluster, name: &str, containers: &[&str], bind: bool) {
    let containers: Vec<_> = containers.iter().map(|n| json!({"name": n, "image": "busybox"})).collect();
    let mut pod = json!({"metadata": {"name": name}, "spec": {"containers": containers}});
    if bind {
        pod["spec"]["nodeName"] = json!(NODE);
    }
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    if bind {
        eventually("a running pod", || async {
            let pod = pods.get(name).await.ok()?;
            (pod.status?.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
    }
}

/// The running instance of a container: its ID, attempt and log file.
async fn container(c: &Cluster, pod: &str, name: &str) -> (String, u32, PathBuf) {
    let filter = ContainerFilter {
        state: Some(ContainerState::Running),
        labels: [
            (labels::POD_NAME.to_string(), pod.to_string()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    let found = c.runtime.list_containers(&filter).await.unwrap();
    let status = c.runtime.container_status(&found[0].id).await.unwrap();
    assert!(!status.log_path.is_empty());
    (status.id, status.metadata.attempt, PathBuf::from(status.log_path))
}

/// Appends CRI log lines, as the runtime writes a container's output.
fn write_log(path: &PathBuf, lines: &[(&str, &str, &str, &str)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for (time, stream, tag, message) in lines {
        writeln!(file, "{time} {stream} {tag} {message}").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reads_the_container_log() {
    let c = cluster().await;
    running_pod(&c, "web", &["app", "sidecar"], true).await;
    let (_, _, path) = container(&c, "web", "app").await;
    write_log(
        &path,
        &[
            ("2024-05-01T10:00:00.000000001Z", "stdout", "F", "hello"),
            ("2024-05-01T10:00:01.5Z", "stderr", "P", "a long "),
            ("2024-05-01T10:00:01.6Z", "stderr", "F", "line"),
            ("2024-05-01T10:00:02Z", "stdout", "F", "bye"),
        ],
    );

    assert_eq!(ok(&c.s.kubectl(&["logs", "web", "-c", "app"])), "hello\na long line\nbye\n");
    assert_eq!(ok(&c.s.kubectl(&["logs", "web", "-c", "app", "--tail=2"])), "a long line\nbye\n");
    assert_eq!(
        ok(&c.s.kubectl(&["logs", "web", "-c", "app", "--timestamps", "--tail=1"])),
        "2024-05-01T10:00:02Z bye\n"
    );
    assert_eq!(ok(&c.s.kubectl(&["logs", "web", "-c", "app", "--limit-bytes=8"])), "hello\na ");
    assert_eq!(
        ok(&c.s.kubectl(&["logs", "web", "-c", "app", "--since-time=2024-05-01T10:00:01Z"])),
        "a long line\nbye\n"
    );
    // The sidecar has written nothing yet.
    assert_eq!(ok(&c.s.kubectl(&["logs", "web", "-c", "sidecar"])), "");

    // Kubernetes' answers for what cannot be shown. (kubectl itself picks the first
    // container when none is named; the API does not.)
    let answer = c.s.get("/api/v1/namespaces/default/pods/web/log").await;
    assert_eq!(answer.code(), 400);
    assert_eq!(answer.body["message"], "a container name must be specified for pod web, choose one of: [app sidecar]");
    let defaulted = c.s.kubectl(&["logs", "web"]);
    assert_eq!(ok(&defaulted), "hello\na long line\nbye\n");
    assert!(String::from_utf8_lossy(&defaulted.stderr).contains("Defaulted container \"app\" out of: app, sidecar"));
    let err = fails(&c.s.kubectl(&["logs", "web", "-c", "nope"]));
    assert!(err.contains("container nope is not valid for pod web"), "{err}");
    let err = fails(&c.s.kubectl(&["logs", "missing"]));
    assert!(err.contains("pods \"missing\" not found"), "{err}");
    let err = fails(&c.s.kubectl(&["logs", "web", "-c", "app", "--previous"]));
    assert!(err.contains("previous terminated container \"app\" in pod \"web\" not found"), "{err}");
    // A pod no node runs yet has no log.
    running_pod(&c, "pending", &["app"], false).await;
    assert_eq!(ok(&c.s.kubectl(&["logs", "pending"])), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_follow_ends_when_the_container_exits_and_previous_shows_the_last_run() {
    let c = cluster().await;
    running_pod(&c, "job", &["app"], true).await;
    let (id, attempt, path) = container(&c, "job", "app").await;
    write_log(&path, &[("2024-05-01T10:00:00Z", "stdout", "F", "first")]);

    let mut follower = std::process::Command::new("kubectl")
        .args(["logs", "-f", "job"])
        .env("KUBECONFIG", c.s.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines_tx.send(line.unwrap_or_default());
        }
    });
    let next = || lines_rx.recv_timeout(Duration::from_secs(20)).expect("a line from kubectl logs -f");
    assert_eq!(next(), "first");
    write_log(&path, &[("2024-05-01T10:00:01Z", "stdout", "F", "second")]);
    assert_eq!(next(), "second", "an appended line is followed");
    write_log(&path, &[("2024-05-01T10:00:02Z", "stdout", "F", "last words")]);
    c.runtime.exit_container(&id, 0).unwrap();
    assert_eq!(next(), "last words");
    let status = tokio::task::spawn_blocking(move || follower.wait()).await.unwrap().unwrap();
    assert!(status.success(), "kubectl logs -f ends when the container exits");

    // The pod restarts the container (restartPolicy Always); --previous shows the last run.
    // The simulated runtime reports no exits by itself: a change to the pod makes the
    // agent look again.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let touch = json!({"metadata": {"labels": {"touched": "yes"}}});
    pods.patch("job", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(touch)).await.unwrap();
    let (_, new_attempt, new_path) = eventually("a restarted container", || async {
        let filter = ContainerFilter { state: Some(ContainerState::Running), ..Default::default() };
        let running = c.runtime.list_containers(&filter).await.ok()?;
        running.iter().any(|r| r.metadata.attempt > attempt).then_some(())?;
        Some(container(&c, "job", "app").await)
    })
    .await;
    assert_eq!(new_attempt, attempt + 1);
    write_log(&new_path, &[("2024-05-01T10:01:00Z", "stdout", "F", "again")]);
    assert_eq!(ok(&c.s.kubectl(&["logs", "job"])), "again\n");
    assert_eq!(ok(&c.s.kubectl(&["logs", "job", "--previous"])), "first\nsecond\nlast words\n");
}

/// What the fake streaming server saw.
#[derive(Default)]
struct Seen {
    targets: Vec<String>,
    /// The Upgrade header of each request.
    upgrades: Vec<String>,
}

/// A stand-in for a runtime's streaming server: answers an `Upgrade: SPDY/3.1` with 101
/// and echoes the upgraded stream; refuses WebSocket upgrades with 403, as containerd's
/// streaming server refuses a subprotocol it does not speak (v5.channel.k8s.io).
async fn echo_streaming_server(seen: Arc<Mutex<Seen>>) -> SocketAddr {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                    let target = request.uri().to_string();
                    let upgrade =
                        request.headers().get("upgrade").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    {
                        let mut seen = seen.lock().unwrap();
                        seen.targets.push(target);
                        seen.upgrades.push(upgrade.clone());
                    }
                    async move {
                        let mut response = http::Response::new(Full::new(bytes::Bytes::new()));
                        if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
                            *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
                            response.headers_mut().insert("connection", "Upgrade".parse().unwrap());
                            response.headers_mut().insert("upgrade", "SPDY/3.1".parse().unwrap());
                            response
                                .headers_mut()
                                .insert("x-stream-protocol-version", "v4.channel.k8s.io".parse().unwrap());
                            let on_upgrade = hyper::upgrade::on(&mut request);
                            tokio::spawn(async move {
                                let upgraded = on_upgrade.await.unwrap();
                                let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
                                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                            });
                        } else {
                            *response.status_mut() = http::StatusCode::FORBIDDEN;
                            *response.body_mut() = Full::new(bytes::Bytes::from("unsupported subprotocol"));
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// An HTTP/1.1-only client with the admin's certificate (upgrades need HTTP/1.1).
fn http1_admin(s: &TestServer) -> skiff_testkit::reqwest::Client {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let pki = &s.server.pki;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let certs = CertificateDer::pem_slice_iter(pki.admin_cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.admin_key_pem.as_bytes()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    skiff_testkit::reqwest::Client::builder().use_preconfigured_tls(config).http1_only().build().unwrap()
}

/// Upgrades `path` with SPDY/3.1 through the API server and checks bytes flow both ways.
async fn spdy_round_trip(client: &skiff_testkit::reqwest::Client, url: &str) {
    let response = client
        .post(url)
        .header("connection", "Upgrade")
        .header("upgrade", "SPDY/3.1")
        .header("x-stream-protocol-version", "v4.channel.k8s.io")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 101, "{url}: {:?}", response.text().await);
    assert_eq!(response.headers()["x-stream-protocol-version"], "v4.channel.k8s.io");
    let mut stream = response.upgrade().await.unwrap();
    stream.write_all(b"\x80\x03\x00\x01 opaque frames").await.unwrap();
    let mut echoed = [0u8; 18];
    tokio::time::timeout(Duration::from_secs(20), stream.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"\x80\x03\x00\x01 opaque frames");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_port_forward_upgrades_are_forwarded_to_the_runtime() {
    let c = cluster().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let streaming = echo_streaming_server(seen.clone()).await;
    c.runtime.set_streaming_url(format!("http://{streaming}/session/abc"));
    running_pod(&c, "web", &["app"], true).await;
    let client = http1_admin(&c.s);
    let base = format!("{}/api/v1/namespaces/default/pods/web", c.s.url);

    spdy_round_trip(&client, &format!("{base}/exec?command=sh&command=-c&command=echo%20hi&stdout=true&container=app"))
        .await;
    spdy_round_trip(&client, &format!("{base}/attach?stdin=true&stdout=true")).await;
    spdy_round_trip(&client, &format!("{base}/portforward?ports=8080")).await;
    let targets = seen.lock().unwrap().targets.clone();
    assert_eq!(
        targets[0], "/session/abc?command=sh&command=-c&command=echo+hi&stdout=true",
        "the query reaches the runtime"
    );
    assert_eq!(targets.len(), 3);

    // A refused WebSocket upgrade reaches the client as the refusal (kubectl then falls
    // back to SPDY).
    let refused = client
        .get(format!("{base}/exec?command=true&stdout=true"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-protocol", "v5.channel.k8s.io")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.text().await.unwrap(), "unsupported subprotocol");

    // Kubernetes' errors before anything is forwarded.
    let answer = c.s.post("/api/v1/namespaces/default/pods/web/exec?command=sh&container=nope", &json!({})).await;
    assert_eq!(
        (answer.code(), answer.body["message"].as_str()),
        (400, Some("container nope is not valid for pod web"))
    );
    running_pod(&c, "unbound", &["app"], false).await;
    let answer = c.s.post("/api/v1/namespaces/default/pods/unbound/exec?command=sh", &json!({})).await;
    assert_eq!(answer.code(), 400);
    assert_eq!(answer.body["message"], "pod unbound does not have a host assigned");
    let answer = c.s.get("/api/v1/namespaces/default/pods/none/portforward").await;
    assert_eq!((answer.code(), answer.body["reason"].as_str()), (404, Some("NotFound")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_server_requires_a_cluster_client_certificate() {
    let c = cluster().await;
    let url = format!("https://127.0.0.1:{}/healthz", c.node_server.addr.port());
    let pki = &c.s.server.pki;
    let admin = skiff_testkit::tls_client(&pki.ca_cert_pem, Some((&pki.admin_cert_pem, &pki.admin_key_pem))).unwrap();
    assert_eq!(admin.get(&url).send().await.unwrap().text().await.unwrap(), "ok");
    let anonymous = skiff_testkit::tls_client(&pki.ca_cert_pem, None).unwrap();
    assert!(anonymous.get(&url).send().await.is_err(), "no client certificate, no TLS session");

    // nodes/proxy reaches the same server through the API server, with the API server's
    // kubelet-client certificate.
    eventually("the node", || async {
        let answer = c.s.get(&format!("/api/v1/nodes/{NODE}/proxy/healthz")).await;
        (answer.code() == 200).then_some(())
    })
    .await;
    let node = c.s.get(&format!("/api/v1/nodes/{NODE}")).await;
    assert_eq!(node.body["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"], c.node_server.addr.port());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_falls_back_from_websocket_to_spdy_through_the_proxies() {
    let c = cluster().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let streaming = echo_streaming_server(seen.clone()).await;
    c.runtime.set_streaming_url(format!("http://{streaming}/session/abc"));
    running_pod(&c, "web", &["app"], true).await;
    // The stand-in speaks no SPDY, so kubectl cannot finish: what matters is the order of
    // the upgrades that reached the runtime's streaming server.
    for args in [&["exec", "web", "--", "echo", "hi"][..], &["port-forward", "pod/web", "0:8080"][..]] {
        seen.lock().unwrap().upgrades.clear();
        let mut kubectl = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", c.s.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let upgrades = eventually("kubectl to try SPDY", || async {
            let upgrades = seen.lock().unwrap().upgrades.clone();
            upgrades.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")).then_some(upgrades)
        })
        .await;
        let _ = kubectl.kill();
        let _ = kubectl.wait();
        let first = upgrades[0].to_ascii_lowercase();
        assert_eq!((first.as_str(), upgrades.last().unwrap().as_str()), ("websocket", "SPDY/3.1"), "{args:?}");
    }
}
