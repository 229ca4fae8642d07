//! skiff-dns: the cluster DNS server. It answers names in the cluster zone
//! (`cluster.local`) from a watch-fed cache of Services, EndpointSlices and Namespaces as
//! CoreDNS's kubernetes plugin does ([`records`]), forwards every other name to the host's
//! upstream resolvers ([`forward`]), and serves both over UDP and TCP with hickory-server.
//! [`kubedns`] keeps the `kube-system/kube-dns` Service that pods reach it through.

pub mod cache;
pub mod forward;
pub mod handler;
pub mod index;
pub mod kubedns;
pub mod names;
pub mod records;
pub mod resolvconf;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::ServerFuture;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::cache::Cache;
use crate::forward::Forwarder;
use crate::handler::ClusterDns;
use crate::names::Zone;
use crate::records::Answerer;

/// CoreDNS's default TTL for cluster records.
pub const DEFAULT_TTL: u32 = 5;
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening for DNS on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
}

#[derive(Clone, Debug)]
pub struct Config {
    /// Where to serve, UDP and TCP on the same port (port 0: any free one).
    pub listen: SocketAddr,
    pub cluster_domain: String,
    /// TTL of the cluster zone's records.
    pub ttl: u32,
    /// Where names outside the zone go (default: the host's resolv.conf nameservers).
    pub upstreams: Vec<SocketAddr>,
    /// How long one upstream gets to answer.
    pub upstream_timeout: Duration,
    /// How long an idle TCP connection is kept.
    pub tcp_timeout: Duration,
}

impl Config {
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listen,
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            ttl: DEFAULT_TTL,
            upstreams: host_upstreams(),
            upstream_timeout: Duration::from_secs(2),
            tcp_timeout: Duration::from_secs(10),
        }
    }
}

/// The host's resolvers on port 53.
pub fn host_upstreams() -> Vec<SocketAddr> {
    resolvconf::ResolvConf::host().nameservers.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect()
}

/// A running DNS server; stops when dropped.
pub struct DnsServer {
    /// Where it serves (UDP and TCP).
    pub addr: SocketAddr,
    pub cache: Cache,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Binds UDP and TCP on one port; with port 0, retries until both get the same free port.
async fn bind(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    let fail = |source| Error::Listen { addr: listen, source };
    let mut attempts = 0;
    loop {
        let udp = UdpSocket::bind(listen).await.map_err(fail)?;
        let addr = udp.local_addr().map_err(fail)?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(_) if listen.port() == 0 && attempts < 20 => attempts += 1,
            Err(source) => return Err(Error::Listen { addr, source }),
        }
    }
}

/// Starts the DNS server: watches the API through `client` and serves on `config.listen`.
pub async fn start(client: kube::Client, config: Config) -> Result<DnsServer, Error> {
    let (udp, tcp) = bind(config.listen).await?;
    let addr = udp.local_addr().map_err(|source| Error::Listen { addr: config.listen, source })?;
    // Never forward to ourselves: a resolv.conf naming this server would loop.
    let upstreams = config.upstreams.iter().copied().filter(|u| *u != addr).collect();
    let cache = Cache::new();
    let mut tasks = cache.follow(&client);
    let handler = ClusterDns {
        cache: cache.clone(),
        answerer: Arc::new(Answerer::new(Zone::new(&config.cluster_domain), config.ttl)),
        forwarder: Arc::new(Forwarder::new(upstreams, config.upstream_timeout)),
    };
    let mut server = ServerFuture::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, config.tcp_timeout);
    tasks.push(tokio::spawn(async move {
        if let Err(error) = server.block_until_done().await {
            tracing::error!(%error, "DNS server stopped");
        }
    }));
    tracing::info!(%addr, domain = %config.cluster_domain, "cluster DNS serving");
    Ok(DnsServer { addr, cache, tasks })
}
