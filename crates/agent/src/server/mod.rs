//! The node's HTTPS server, on the kubelet's port (10250 by default): what the API
//! server forwards pods/log, exec, attach, port-forward and nodes/proxy to.
//!
//! - TLS with a serving certificate the cluster CA signed for the node's names and
//!   addresses ([`identity`]); clients must present a certificate the cluster CA signed
//!   (the API server's kubelet-client certificate).
//! - `GET /containerLogs/{namespace}/{pod}/{container}`: the container's CRI log file,
//!   read with the pod log options ([`logs`]).
//! - `/exec/{namespace}/{pod}/{container}`, `/attach/...`, `/portForward/{namespace}/{pod}`
//!   (GET or POST): the runtime opens a session on its streaming server and the
//!   client's connection is forwarded there, upgrade and all ([`streaming`]).
//! - `GET /healthz`.

pub mod identity;
pub mod logs;
pub mod streaming;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use identity::ServingIdentity;

use crate::runtime::{labels, Container, ContainerFilter, ContainerState, Runtime, RuntimeError};

/// The body of the server's responses.
pub type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    #[error("the serving certificate or CA: {0}")]
    Tls(String),
    #[error("asking the API server for a serving certificate: {0}")]
    Certificate(#[from] kube::Error),
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The kubelet's port by default; port 0 picks a free one (tests).
    pub listen: SocketAddr,
    /// How often a followed log is looked at for new lines.
    pub log_poll: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: SocketAddr::from(([0, 0, 0, 0], 10250)), log_poll: Duration::from_millis(100) }
    }
}

/// A running server; dropping it stops accepting connections.
pub struct NodeServer {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What the handlers share.
struct Node {
    runtime: Arc<dyn Runtime>,
    config: ServerConfig,
}

fn tls_config(identity: &ServingIdentity) -> Result<rustls::ServerConfig, ServerError> {
    let tls = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(identity.ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls(&e))?;
    let certs = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    // Streams upgrade HTTP/1.1 connections.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Starts serving the node whose containers `runtime` runs.
pub async fn start(
    config: ServerConfig,
    identity: &ServingIdentity,
    runtime: Arc<dyn Runtime>,
) -> Result<NodeServer, ServerError> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(identity)?));
    let listener = TcpListener::bind(config.listen).await.map_err(|e| ServerError::Listen(config.listen, e))?;
    let addr = listener.local_addr().map_err(|e| ServerError::Listen(config.listen, e))?;
    let node = Arc::new(Node { runtime, config });
    let accept = tokio::spawn(accept_loop(listener, acceptor, node));
    tracing::info!(%addr, "node server listening");
    Ok(NodeServer { addr, accept })
}

/// Asks the API server for a serving certificate for `node` (its name and address) and
/// starts serving it: what an agent does at start, before registering the node with the
/// server's port as its kubelet endpoint.
pub async fn start_for_node(
    client: &kube::Client,
    config: ServerConfig,
    node: &crate::config::NodeIdentity,
    runtime: Arc<dyn Runtime>,
) -> Result<NodeServer, ServerError> {
    let identity = identity::request(client, &node.name, &[node.address.to_string()]).await?;
    start(config, &identity, runtime).await
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, node: Arc<Node>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, node) = (acceptor.clone(), node.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| handle(node.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}

/// A plain-text answer, as the kubelet gives its errors.
pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.into())).map_err(|e| match e {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The status code the kubelet answers a runtime error with.
pub(crate) fn runtime_error(error: &RuntimeError) -> Response<Body> {
    let status = match error {
        RuntimeError::NotFound { .. } => StatusCode::NOT_FOUND,
        RuntimeError::InvalidState(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, error.to_string())
}

async fn handle(node: Arc<Node>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let segments: Vec<String> = request
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let method = request.method().clone();
    let streaming = matches!(method, Method::GET | Method::POST);
    let response = match segments.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["containerLogs", namespace, pod, container] if method == Method::GET => {
            let query = query_pairs(&request);
            logs_response(&node, namespace, pod, container, &query).await
        }
        [kind @ ("exec" | "attach"), namespace, pod, container] if streaming => {
            streaming::exec_or_attach(&node.runtime, kind == &"exec", namespace, pod, container, request).await
        }
        ["portForward", namespace, pod] if streaming => {
            streaming::port_forward(&node.runtime, namespace, pod, request).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    };
    Ok(response)
}

pub(crate) fn query_pairs<B>(request: &Request<B>) -> Vec<(String, String)> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()).into_owned().collect()
}

/// The newest container named `container` of the pod `namespace/pod`, if any ran.
pub(crate) async fn find_container(
    runtime: &dyn Runtime,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Option<Container>, RuntimeError> {
    let filter = ContainerFilter {
        labels: [
            (labels::POD_NAMESPACE.to_string(), namespace.to_string()),
            (labels::POD_NAME.to_string(), pod.to_string()),
            (labels::CONTAINER_NAME.to_string(), container.to_string()),
        ]
        .into(),
        ..ContainerFilter::default()
    };
    let found = runtime.list_containers(&filter).await?;
    Ok(found.into_iter().max_by_key(|c| (c.metadata.attempt, c.created_at)))
}

/// Whether a container still runs, for a follower of its log.
struct ContainerLiveness {
    runtime: Arc<dyn Runtime>,
    id: String,
}

#[async_trait::async_trait]
impl logs::Liveness for ContainerLiveness {
    async fn running(&self) -> bool {
        matches!(self.runtime.container_status(&self.id).await, Ok(s) if s.state == ContainerState::Running)
    }
}

async fn logs_response(
    node: &Node,
    namespace: &str,
    pod: &str,
    container: &str,
    query: &[(String, String)],
) -> Response<Body> {
    let options = match logs::LogOptions::parse(query, k8s_openapi::jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(error) => return text(StatusCode::BAD_REQUEST, error.to_string()),
    };
    let current = match find_container(node.runtime.as_ref(), namespace, pod, container).await {
        Ok(found) => found,
        Err(error) => return runtime_error(&error),
    };
    let status = match &current {
        Some(c) => match node.runtime.container_status(&c.id).await {
            Ok(status) => Some(status),
            Err(error) => return runtime_error(&error),
        },
        None => None,
    };
    // The kubelet's answers for containers with nothing to show yet.
    let status = match status {
        Some(s) if s.state != ContainerState::Created => s,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"),
            )
        }
    };
    let (path, follow_id) = if options.previous {
        // The previous instance's log sits beside the current one (ATTEMPT.log, as the
        // pod worker names them); the runtime may already have removed that container.
        let previous = status.metadata.attempt.checked_sub(1).and_then(|attempt| {
            std::path::Path::new(&status.log_path).parent().map(|dir| dir.join(format!("{attempt}.log")))
        });
        match previous.filter(|p| !status.log_path.is_empty() && p.exists()) {
            Some(path) => (path, None),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                )
            }
        }
    } else {
        (std::path::PathBuf::from(&status.log_path), Some(status.id.clone()))
    };
    if path.as_os_str().is_empty() {
        return text(StatusCode::OK, "");
    }
    let options = logs::LogOptions { follow: options.follow && follow_id.is_some(), ..options };
    let liveness = ContainerLiveness { runtime: node.runtime.clone(), id: follow_id.unwrap_or_default() };
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(logs::stream(path, options, node.config.log_poll, Box::new(liveness), sender));
    let chunks = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let body =
        http_body_util::StreamBody::new(futures::StreamExt::map(chunks, |chunk| chunk.map(hyper::body::Frame::data)));
    let mut response = Response::new(BodyExt::boxed(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
