//! Liveness, readiness and startup probes, as the kubelet's probe workers run them: one
//! task per probe of a running container, probing every `periodSeconds` after
//! `initialDelaySeconds`, each attempt bounded by `timeoutSeconds`, a result changing only
//! after `successThreshold` / `failureThreshold` attempts in a row.
//!
//! Results start as the kubelet's do (liveness passing, readiness failing, startup
//! unknown); until the startup probe succeeds, liveness and readiness are not run. A
//! liveness or startup failure stops that worker and wakes the pod worker, which kills
//! and restarts the container. Every failed attempt records an `Unhealthy` event.
//!
//! Handlers: exec through the runtime's ExecSync; httpGet (http and https, certificate
//! not verified, as the kubelet), tcpSocket and grpc (grpc.health.v1 over h2c) from the
//! node to the pod IP. A runtime without a real pod network (the simulated one) answers
//! network probes itself through [`Runtime::simulated_probe`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, GRPCAction, HTTPGetAction, ObjectReference, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_client::connect::AnyServer;
use skiff_client::events::Recorder;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::runtime::Runtime;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// Consecutive results needed before a probe's result changes.
#[derive(Clone, Debug)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    last: Option<bool>,
    run: u32,
    result: Option<bool>,
}

impl Tracker {
    pub fn new(probe: &Probe, initial: Option<bool>) -> Self {
        Tracker {
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            last: None,
            run: 0,
            result: initial,
        }
    }

    /// Records one attempt; returns the result in force afterwards.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if self.last == Some(ok) {
            self.run += 1;
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let needed = if ok { self.success_threshold } else { self.failure_threshold };
        if self.run >= needed {
            self.result = Some(ok);
        }
        self.result
    }

    pub fn result(&self) -> Option<bool> {
        self.result
    }
}

/// The outcome of one attempt: success, or failure with the kubelet's message.
pub type Outcome = Result<(), String>;

/// What probes share per agent: HTTP clients (no connection reuse: each probe is a new
/// connection, as the kubelet's).
pub struct Prober {
    http: reqwest::Client,
    grpc: reqwest::Client,
}

impl Prober {
    pub fn new() -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .pool_max_idle_per_host(0)
            .user_agent("kube-probe/1.33")
            .build()
            .map_err(|e| e.to_string())?;
        // h2c only, but reqwest wants a TLS configuration all the same.
        let grpc = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .http2_prior_knowledge()
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Prober { http, grpc })
    }

    /// httpGet: success for a status in [200, 400).
    pub async fn http_get(&self, url: &str, headers: &[(String, String)], timeout: Duration) -> Outcome {
        let mut request = self.http.get(url).timeout(timeout);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send().await {
            Ok(response) if (200..400).contains(&response.status().as_u16()) => Ok(()),
            Ok(response) => Err(format!("HTTP probe failed with statuscode: {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Err(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
            Err(e) => Err(format!("Get \"{url}\": {}", error_chain(&e))),
        }
    }

    /// tcpSocket: success when a connection opens.
    pub async fn tcp(&self, address: SocketAddr, timeout: Duration) -> Outcome {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("dial tcp {address}: connect: {}", lowercase_io(&e))),
            Err(_) => Err(format!("dial tcp {address}: i/o timeout")),
        }
    }

    /// grpc: grpc.health.v1.Health/Check over h2c; success when the answer is SERVING.
    pub async fn grpc(&self, address: SocketAddr, service: &str, timeout: Duration) -> Outcome {
        // HealthCheckRequest{service}: field 1, length-delimited, in a gRPC frame.
        let mut message = Vec::with_capacity(service.len() + 2);
        if !service.is_empty() {
            message.push(0x0a);
            message.push(service.len().min(127) as u8);
            message.extend_from_slice(&service.as_bytes()[..service.len().min(127)]);
        }
        let mut frame = vec![0u8];
        frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frame.extend_from_slice(&message);
        let url = format!("http://{address}/grpc.health.v1.Health/Check");
        let answer = self
            .grpc
            .post(&url)
            .timeout(timeout)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(frame)
            .send()
            .await;
        let failed =
            |e: String| Err(format!("failed to connect service {address:?} within {}s: {e}", timeout.as_secs()));
        let response = match answer {
            Ok(r) => r,
            Err(e) => return failed(error_chain(&e)),
        };
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return failed(error_chain(&e)),
        };
        // HealthCheckResponse{status}: field 1, varint; SERVING = 1.
        let status = body.get(5..).and_then(|m| (m.first() == Some(&0x08)).then(|| m.get(1).copied()).flatten());
        match status {
            Some(1) => Ok(()),
            Some(other) => {
                let name = match other {
                    2 => "NOT_SERVING",
                    3 => "SERVICE_UNKNOWN",
                    _ => "UNKNOWN",
                };
                Err(format!("service unhealthy (responded with \"{name}\")"))
            }
            None => Err("service unhealthy (responded with \"UNKNOWN\")".into()),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn lowercase_io(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        _ => error.to_string(),
    }
}

/// A port given by number or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Ok(n),
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in the container's ports")),
        },
    }
}

/// The URL and headers of an httpGet action against `pod_ip`.
pub fn http_target(
    action: &HTTPGetAction,
    pod_ip: IpAddr,
    ports: &[ContainerPort],
) -> Result<(String, Vec<(String, String)>), String> {
    let port = resolve_port(&action.port, ports)?;
    let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
    let host = action.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host,
    };
    let path = action.path.clone().unwrap_or_default();
    let path = if path.starts_with('/') { path } else { format!("/{path}") };
    let headers = action.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
    Ok((format!("{scheme}://{host}:{port}{path}"), headers))
}

/// Everything one attempt needs.
#[derive(Clone)]
pub struct Target {
    pub runtime: Arc<dyn Runtime>,
    pub prober: Arc<Prober>,
    pub container_id: String,
    pub pod_ip: Option<IpAddr>,
    pub ports: Vec<ContainerPort>,
}

/// An exec / httpGet / tcpSocket / grpc handler, as probes and lifecycle hooks have them.
pub struct Handler<'a> {
    pub exec: Option<&'a ExecAction>,
    pub http_get: Option<&'a HTTPGetAction>,
    pub tcp_socket: Option<&'a TCPSocketAction>,
    pub grpc: Option<&'a GRPCAction>,
}

impl<'a> Handler<'a> {
    pub fn of_probe(probe: &'a Probe) -> Self {
        Handler {
            exec: probe.exec.as_ref(),
            http_get: probe.http_get.as_ref(),
            tcp_socket: probe.tcp_socket.as_ref(),
            grpc: probe.grpc.as_ref(),
        }
    }
}

/// Runs a handler once.
pub async fn run_handler(handler: &Handler<'_>, target: &Target, timeout: Duration) -> Outcome {
    if let Some(exec) = handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match target.runtime.exec_sync(&target.container_id, &command, timeout).await {
            Ok(result) if result.exit_code == 0 => Ok(()),
            Ok(result) => {
                let mut output = String::from_utf8_lossy(&result.stdout).into_owned();
                output.push_str(&String::from_utf8_lossy(&result.stderr));
                Err(output)
            }
            Err(e) => Err(e.to_string()),
        };
    }
    // Pods without a real network: the runtime says how the endpoint would answer, and
    // a failure reads as that handler's would.
    if let Some(healthy) = target.runtime.simulated_probe(&target.container_id) {
        return match (healthy, handler.http_get, handler.tcp_socket) {
            (true, _, _) => Ok(()),
            (false, Some(_), _) => Err("HTTP probe failed with statuscode: 503".into()),
            (false, None, Some(tcp)) => {
                let ip = target.pod_ip.map(|ip| ip.to_string()).unwrap_or_default();
                let port = resolve_port(&tcp.port, &target.ports)?;
                Err(format!("dial tcp {ip}:{port}: connect: connection refused"))
            }
            (false, None, None) => Err("service unhealthy (responded with \"NOT_SERVING\")".into()),
        };
    }
    let Some(pod_ip) = target.pod_ip else { return Err("pod has no IP address".into()) };
    if let Some(http) = handler.http_get {
        let (url, headers) = http_target(http, pod_ip, &target.ports)?;
        return target.prober.http_get(&url, &headers, timeout).await;
    }
    if let Some(tcp) = handler.tcp_socket {
        let port = resolve_port(&tcp.port, &target.ports)?;
        let ip = tcp.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(pod_ip);
        return target.prober.tcp(SocketAddr::new(ip, port), timeout).await;
    }
    if let Some(grpc) = handler.grpc {
        let port = u16::try_from(grpc.port).map_err(|_| format!("invalid port number: {}", grpc.port))?;
        return target.prober.grpc(SocketAddr::new(pod_ip, port), grpc.service.as_deref().unwrap_or(""), timeout).await;
    }
    Err("missing probe handler".into())
}

/// The probe results of one container instance, read by the pod worker.
#[derive(Debug, Default)]
pub struct Results {
    ready: AtomicBool,
    started: AtomicBool,
    /// Set when liveness or startup failed: the message of the Killing event.
    failed: Mutex<Option<String>>,
}

impl Results {
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// Why the container is to be restarted, if a liveness or startup probe failed.
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Where probe events go.
#[derive(Clone)]
pub struct EventSink {
    pub recorder: Recorder,
    pub regarding: ObjectReference,
}

/// The probe workers of one container instance; dropping it stops them.
pub struct ContainerProbes {
    pub results: Arc<Results>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ContainerProbes {
    /// Starts the probes of `container` (started just now); `wake` is notified when a
    /// result changes.
    pub fn start(container: &Container, target: Target, events: Option<EventSink>, wake: Arc<Notify>) -> Self {
        let results = Arc::new(Results::default());
        let startup_done = Arc::new(Notify::new());
        let has_startup = container.startup_probe.is_some();
        results.started.store(!has_startup, Ordering::Relaxed);
        // Without a readiness probe a running container is ready.
        results.ready.store(container.readiness_probe.is_none(), Ordering::Relaxed);
        let mut tasks = Vec::new();
        let probes = [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ];
        for (kind, probe) in probes {
            let Some(probe) = probe.clone() else { continue };
            let worker = Worker {
                kind,
                probe,
                container: container.name.clone(),
                target: target.clone(),
                events: events.clone(),
                results: results.clone(),
                wake: wake.clone(),
                startup_done: startup_done.clone(),
            };
            tasks.push(tokio::spawn(worker.run()));
        }
        ContainerProbes { results, tasks }
    }
}

struct Worker {
    kind: ProbeKind,
    probe: Probe,
    container: String,
    target: Target,
    events: Option<EventSink>,
    results: Arc<Results>,
    wake: Arc<Notify>,
    startup_done: Arc<Notify>,
}

impl Worker {
    async fn run(self) {
        let probe = &self.probe;
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let initial_delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        // Liveness and readiness wait for the startup probe to pass.
        if self.kind != ProbeKind::Startup {
            let waiting = self.startup_done.notified();
            if !self.results.started() {
                waiting.await;
            }
        }
        tokio::time::sleep(initial_delay).await;
        let initial = match self.kind {
            ProbeKind::Liveness => Some(true),
            ProbeKind::Readiness => Some(false),
            ProbeKind::Startup => None,
        };
        let mut tracker = Tracker::new(probe, initial);
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let handler = Handler::of_probe(probe);
            let outcome = run_handler(&handler, &self.target, timeout).await;
            if let (Err(message), Some(events)) = (&outcome, &self.events) {
                let note = format!("{} probe failed: {}", self.kind.name(), message.trim_end());
                events.recorder.warning(events.regarding.clone(), "Probe", "Unhealthy", note);
            }
            let before = tracker.result();
            let after = tracker.record(outcome.is_ok());
            if before == after {
                continue;
            }
            match (self.kind, after) {
                (ProbeKind::Readiness, Some(ready)) => {
                    self.results.ready.store(ready, Ordering::Relaxed);
                    self.wake.notify_one();
                }
                (ProbeKind::Startup, Some(true)) => {
                    self.results.started.store(true, Ordering::Relaxed);
                    self.startup_done.notify_waiters();
                    self.wake.notify_one();
                    return;
                }
                (ProbeKind::Liveness | ProbeKind::Startup, Some(false)) => {
                    let why = format!(
                        "Container {} failed {} probe, will be restarted",
                        self.container,
                        self.kind.name().to_lowercase()
                    );
                    *self.results.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    self.wake.notify_one();
                    return;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::simulated::{Behaviour, SimulatedRuntime};
    use crate::runtime::{ContainerConfig, ContainerMetadata, PodSandboxConfig};
    use serde_json::json;

    fn probe(value: serde_json::Value) -> Probe {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn thresholds_need_runs_in_a_row() {
        let mut readiness = Tracker::new(&probe(json!({"successThreshold": 2, "failureThreshold": 3})), Some(false));
        assert_eq!(readiness.record(true), Some(false));
        assert_eq!(readiness.record(true), Some(true), "two successes in a row");
        assert_eq!(readiness.record(false), Some(true));
        assert_eq!(readiness.record(false), Some(true));
        assert_eq!(readiness.record(true), Some(true), "a success breaks the run");
        for _ in 0..2 {
            assert_eq!(readiness.record(false), Some(true));
        }
        assert_eq!(readiness.record(false), Some(false), "three failures in a row");
        let mut startup = Tracker::new(&probe(json!({})), None);
        assert_eq!(startup.record(true), Some(true), "defaults: one success");
    }

    #[test]
    fn ports_and_urls() {
        let ports: Vec<ContainerPort> =
            serde_json::from_value(json!([{"name": "http", "containerPort": 8080}])).unwrap();
        let action: HTTPGetAction = serde_json::from_value(
            json!({"port": "http", "path": "healthz", "scheme": "HTTPS", "httpHeaders": [{"name": "X-A", "value": "b"}]}),
        )
        .unwrap();
        let (url, headers) = http_target(&action, "10.42.0.5".parse().unwrap(), &ports).unwrap();
        assert_eq!(url, "https://10.42.0.5:8080/healthz");
        assert_eq!(headers, vec![("X-A".to_string(), "b".to_string())]);
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &ports), Ok(81));
        assert!(resolve_port(&IntOrString::String("grpc".into()), &ports).is_err());
        let (url, _) = http_target(&action, "fd00::1".parse().unwrap(), &ports).unwrap();
        assert_eq!(url, "https://[fd00::1]:8080/healthz");
    }

    /// A small HTTP server answering `status` to everything, for the network handlers.
    async fn serve(status: u16) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn network_handlers_against_real_sockets() {
        let prober = Prober::new().unwrap();
        let ok = serve(204).await;
        let bad = serve(500).await;
        let timeout = Duration::from_secs(5);
        assert_eq!(prober.http_get(&format!("http://{ok}/healthz"), &[], timeout).await, Ok(()));
        assert_eq!(
            prober.http_get(&format!("http://{bad}/"), &[], timeout).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(prober.tcp(ok, timeout).await, Ok(()));
        // A port nothing listens on: bind one, note it, close it.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let refused = prober.tcp(closed, timeout).await.unwrap_err();
        assert_eq!(refused, format!("dial tcp {closed}: connect: connection refused"));
        assert!(prober.grpc(closed, "", timeout).await.is_err());
    }

    /// A gRPC health server over h2c answering `status` (1 SERVING, 2 NOT_SERVING).
    async fn grpc_health(status: u8) -> SocketAddr {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let service =
                    hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                        assert_eq!(request.uri().path(), "/grpc.health.v1.Health/Check");
                        // A gRPC frame holding HealthCheckResponse{status}.
                        let body = bytes::Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]);
                        let response = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .header("grpc-status", "0")
                            .body(http_body_util::Full::new(body))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    });
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        address
    }

    #[tokio::test]
    async fn grpc_health_checks_over_h2c() {
        let prober = Prober::new().unwrap();
        let timeout = Duration::from_secs(5);
        assert_eq!(prober.grpc(grpc_health(1).await, "", timeout).await, Ok(()));
        assert_eq!(
            prober.grpc(grpc_health(2).await, "db", timeout).await,
            Err("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
    }

    async fn running_container(runtime: &SimulatedRuntime) -> String {
        let sandbox_config = PodSandboxConfig::default();
        let sandbox = runtime.run_pod_sandbox(&sandbox_config).await.unwrap();
        let config =
            ContainerConfig { metadata: ContainerMetadata { name: "app".into(), attempt: 0 }, ..Default::default() };
        let id = runtime.create_container(&sandbox, &config, &sandbox_config).await.unwrap();
        runtime.start_container(&id).await.unwrap();
        id
    }

    #[tokio::test(start_paused = true)]
    async fn workers_follow_startup_readiness_and_liveness() {
        let runtime = Arc::new(SimulatedRuntime::new("10.42.0.0/24".parse().unwrap(), Behaviour::default()));
        let id = running_container(&runtime).await;
        let container: Container = serde_json::from_value(json!({"name": "app",
            "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
            "readinessProbe": {"httpGet": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 2},
            "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1, "failureThreshold": 2}}))
        .unwrap();
        let target = Target {
            runtime: runtime.clone(),
            prober: Arc::new(Prober::new().unwrap()),
            container_id: id.clone(),
            pod_ip: None,
            ports: Vec::new(),
        };
        let wake = Arc::new(Notify::new());
        let probes = ContainerProbes::start(&container, target, None, wake.clone());
        let results = probes.results.clone();
        assert!(!results.started() && !results.ready());
        wake.notified().await;
        assert!(results.started(), "the startup probe passed");
        assert!(!results.ready(), "readiness waits for its initial delay");
        let started = tokio::time::Instant::now();
        wake.notified().await;
        assert!(results.ready());
        assert!(started.elapsed() >= Duration::from_secs(5));

        runtime.set_healthy(&id, false);
        wake.notified().await;
        // Liveness (period 1 s, two failures) fails before readiness (period 2 s, three).
        assert_eq!(results.failure().as_deref(), Some("Container app failed liveness probe, will be restarted"));
        wake.notified().await;
        assert!(!results.ready(), "readiness followed");
    }
}
