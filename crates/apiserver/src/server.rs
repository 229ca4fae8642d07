//! Starting the API server: store, watch cache, PKI, bootstrap objects, and the HTTPS
//! listener with client-certificate authentication.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde_json::json;
use skiff_api::builtins::builtin_registry;
use skiff_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::http::App;
use crate::pki::{Pki, ServingNames, UserInfo};
use crate::request::Query;
use crate::rest::{Api, WriteOptions};
use crate::services::{Cidr, ServiceAllocator};
use crate::watchcache::WatchCache;

#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls_sans: Vec<String>,
    pub service_cidr: Cidr,
    /// The address written into the kubeconfig and advertised; detected when None.
    pub node_ip: Option<IpAddr>,
    /// Events the watch cache keeps for watches that resume from a resourceVersion.
    pub watch_window: usize,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 6443)),
            tls_sans: Vec::new(),
            service_cidr: "10.43.0.0/16".parse().expect("valid literal"),
            node_ip: None,
            watch_window: 10_000,
        }
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir.join("kubeconfig.yaml")
    }

    pub fn token_path(&self) -> PathBuf {
        self.data_dir.join("token")
    }
}

/// A running API server.
pub struct Server {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    pub pki: Pki,
    /// The join token (also written to `DATA/token`).
    pub token: skiff_client::token::JoinToken,
    accept: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The address of the interface that routes to the outside, found without sending
/// anything (connecting a UDP socket only picks a route).
pub fn detect_node_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    socket.local_addr().ok().map(|a| a.ip()).filter(|ip| !ip.is_unspecified())
}

fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let certs = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Creates an object unless it exists already.
async fn ensure(api: &Api, plural: &str, namespace: Option<&str>, body: serde_json::Value) -> Result<()> {
    let (group, version) = match body["apiVersion"].as_str().and_then(|v| v.split_once('/')) {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), "v1".to_string()),
    };
    let def = api.registry.get(&group, &version, plural).with_context(|| format!("{plural} resource"))?;
    let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let addr = crate::rest::Addr { def: &def, namespace, name: &name };
    if api.get(&addr, &Query::default()).await.is_ok() {
        return Ok(());
    }
    match api.create(&def, namespace, body, &WriteOptions::default()).await {
        Ok(_) | Err(skiff_api::ApiError::AlreadyExists(_)) => Ok(()),
        Err(error) => anyhow::bail!("creating {plural}/{name}: {}", error.message()),
    }
}

/// Objects every cluster has: the system namespaces, the system PriorityClasses and the
/// `kubernetes` Service.
async fn bootstrap(api: &Api, config: &Config, advertise: SocketAddr) -> Result<()> {
    let system_classes = [
        ("system-cluster-critical", 2_000_000_000, "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."),
        ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
    ];
    for (name, value, description) in system_classes {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": { "name": name }, "value": value, "description": description,
        });
        ensure(api, "priorityclasses", None, class).await?;
    }
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        ensure(
            api,
            "namespaces",
            None,
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } }),
        )
        .await?;
    }
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "kubernetes", "namespace": "default",
            "labels": { "component": "apiserver", "provider": "kubernetes" } },
        "spec": {
            "clusterIP": config.service_cidr.first().to_string(),
            "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": advertise.port() }],
        },
    });
    ensure(api, "services", Some("default"), service).await?;
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": { "name": "kubernetes", "namespace": "default" },
        "subsets": [{ "addresses": [{ "ip": advertise.ip().to_string() }],
            "ports": [{ "name": "https", "port": advertise.port(), "protocol": "TCP" }] }],
    });
    ensure(api, "endpoints", Some("default"), endpoints).await?;
    // As Kubernetes' apiserver, also as an EndpointSlice: service proxies read slices.
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": "kubernetes", "namespace": "default",
            "labels": { "kubernetes.io/service-name": "kubernetes" } },
        "addressType": if advertise.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{ "addresses": [advertise.ip().to_string()], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": advertise.port(), "protocol": "TCP" }],
    });
    ensure(api, "endpointslices", Some("default"), slice).await
}

/// Starts serving. `store` is the opened backend.
pub async fn start(config: Config, store: Arc<dyn Store>) -> Result<Server> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let registry = Arc::new(builtin_registry());
    let cache = WatchCache::start(store.clone(), registry.clone(), config.watch_window).await?;

    let services = ServiceAllocator::new(config.service_cidr);
    if let Some(def) = registry.get("", "v1", "services") {
        let (stored, _) = cache.list(&def.key_prefix(), |_| true);
        let values: Vec<_> = stored.iter().map(|o| o.value()).collect();
        services.restore(values.iter());
    }
    let api = Api { store, cache, registry, services };

    let node_ip = config.node_ip.or_else(detect_node_ip);
    let advertise_ip = node_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let pki = Pki::load_or_create(&config.data_dir.join("tls"), &ServingNames::standard(node_ip, &config.tls_sans))?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr()?;
    bootstrap(&api, &config, SocketAddr::new(advertise_ip, addr.port())).await?;
    let kubeconfig = config.kubeconfig_path();
    let host = if config.listen.ip().is_loopback() || config.listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        config.listen.ip().to_string()
    };
    pki.write_admin_kubeconfig(&kubeconfig, &format!("https://{host}:{}", addr.port()))?;

    let token = crate::token::load_or_create(&config.token_path(), &pki.ca_cert_pem)?;

    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&pki)?));
    let app = Arc::new(App {
        api,
        advertise: format!("{advertise_ip}:{}", addr.port()),
        in_flight: Default::default(),
        pki: pki.clone(),
        join_token: token.clone(),
        kubelet: crate::nodeproxy::KubeletClient::new(&pki)?,
    });
    let accept = tokio::spawn(accept_loop(listener, acceptor, app));
    tracing::info!(%addr, kubeconfig = %kubeconfig.display(), "API server listening");
    Ok(Server { addr, kubeconfig, pki, token, accept })
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, app: Arc<App>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(error) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
            };
            let user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| UserInfo::from_certificate(c));
            let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
                if let Some(user) = &user {
                    request.extensions_mut().insert(user.clone());
                }
                crate::http::handle(app.clone(), request)
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
}
