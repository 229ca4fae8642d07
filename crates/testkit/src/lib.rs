//! Test harness: boots a skiff API server in-process on a temporary directory, with
//! HTTPS clients that authenticate as the admin (client certificate) or anonymously,
//! and a way to run the real kubectl against it; [`images`] builds OCI test images.

pub mod hostnet;
pub mod images;
pub mod netlab;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use skiff_apiserver::{Config, Server};
use skiff_store::{memory::MemoryStore, sqlite::SqliteStore, Store};

pub use reqwest;
pub use serde_json::json;

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub url: String,
    /// Authenticated as system:admin (O=system:masters).
    pub client: reqwest::Client,
    /// No client certificate.
    pub anonymous: reqwest::Client,
}

/// A response: status and JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn code(&self) -> u16 {
        self.status.as_u16()
    }
}

/// An HTTPS client trusting `ca_pem`, presenting the client certificate `identity` (PEM cert, key).
pub fn tls_client(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<reqwest::Client> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(certs, PrivateKeyDer::from_pem_slice(key.as_bytes())?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder().use_preconfigured_tls(config).build()?)
}

/// With RUST_LOG set, the traces of everything in the test process go to the test's
/// captured output, so a failing test shows what the server and its clients did.
pub fn log_to_test_output() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Which store a test server runs on.
pub enum Backend {
    Memory,
    Sqlite,
}

impl TestServer {
    /// A server on an in-memory store.
    pub async fn start() -> Self {
        Self::start_with(Backend::Memory).await.expect("test server starts")
    }

    pub async fn start_with(backend: Backend) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = match backend {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Sqlite => Arc::new(SqliteStore::open(&dir.path().join("state.db"))?),
        };
        Self::start_on(dir, store).await
    }

    /// A server on `store`, with its data under `dir`.
    pub async fn start_on(dir: tempfile::TempDir, store: Arc<dyn Store>) -> Result<Self> {
        Self::start_configured(dir, store, |_| {}).await
    }

    /// A server on `store` with `adjust` applied to its configuration.
    pub async fn start_configured(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        log_to_test_output();
        let mut config = Config::new(dir.path());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.node_ip = Some([127, 0, 0, 1].into());
        adjust(&mut config);
        let server = skiff_apiserver::start(config, store).await?;
        let pki = &server.pki;
        let client = tls_client(&pki.ca_cert_pem, Some((&pki.admin_cert_pem, &pki.admin_key_pem)))?;
        let anonymous = tls_client(&pki.ca_cert_pem, None)?;
        let url = format!("https://127.0.0.1:{}", server.addr.port());
        Ok(TestServer { dir, server, url, client, anonymous })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.server.kubeconfig
    }

    pub async fn request(&self, method: Method, path: &str, content_type: &str, body: Option<Vec<u8>>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("response body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body, headers }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(Method::GET, path, "", None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.request(Method::POST, path, "application/json", Some(body.to_string().into_bytes())).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Answer {
        self.request(Method::PUT, path, "application/json", Some(body.to_string().into_bytes())).await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Answer {
        self.request(Method::PATCH, path, content_type, Some(body.to_string().into_bytes())).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.request(Method::DELETE, path, "", None).await
    }

    pub async fn delete_with(&self, path: &str, options: &Value) -> Answer {
        self.request(Method::DELETE, path, "application/json", Some(options.to_string().into_bytes())).await
    }

    /// Opens a watch (`path` should carry `watch=true`) and yields its events.
    pub async fn watch(&self, path: &str) -> impl Stream<Item = Value> + Unpin {
        let response = self.client.get(format!("{}{path}", self.url)).send().await.expect("watch request");
        assert!(response.status().is_success(), "watch {path}: {}", response.status());
        let mut buffer = Vec::new();
        Box::pin(response.bytes_stream().flat_map(move |chunk| {
            buffer.extend_from_slice(&chunk.unwrap_or_default());
            let mut events = Vec::new();
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                if let Ok(event) = serde_json::from_slice::<Value>(&line) {
                    events.push(event);
                }
            }
            futures::stream::iter(events)
        }))
    }

    /// Runs the real kubectl against this server.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(self.kubeconfig(), args, None)
    }

    /// Runs kubectl with `stdin` piped in.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl(self.kubeconfig(), args, Some(stdin))
    }
}

/// Runs `kubectl` with KUBECONFIG set, optionally feeding stdin.
pub fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECTL_EXTERNAL_DIFF", "diff -u")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("kubectl finishes")
}

/// stdout of a kubectl run that must succeed.
pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubectl failed: {}\nstdout: {}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr of a kubectl run that must fail.
pub fn fails(output: &Output) -> String {
    assert!(!output.status.success(), "kubectl unexpectedly succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The `skiff` binary built for this workspace (for tests that run the real server process).
pub fn skiff_binary() -> Result<PathBuf> {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("debug/skiff");
    path.exists()
        .then_some(path.clone())
        .with_context(|| format!("{} not built (cargo build -p skiff)", path.display()))
}

/// Polls `check` every 50 ms until it returns Some, for up to `timeout`; panics naming
/// `what` when time runs out. For conditions reached asynchronously (controllers,
/// agents), with timeouts generous enough for a loaded 2-core machine.
pub async fn eventually<T, F, Fut>(what: &str, timeout: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}
