//! The cluster DNS inside `skiff server` (skiff-dns on the node address, with the
//! `kube-system/kube-dns` Service in front of it), and the DNS flags a node's agent
//! shares with the server.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;

/// What pods are told about the cluster DNS (`skiff agent` and `skiff server`).
#[derive(Args, Clone)]
pub struct ClusterDnsArgs {
    /// The cluster DNS address: the kube-dns Service's ClusterIP and ClusterFirst pods' nameserver.
    #[arg(long, default_value = skiff_dns::kubedns::DEFAULT_CLUSTER_DNS)]
    pub cluster_dns: IpAddr,
    /// The cluster's DNS domain.
    #[arg(long, default_value = skiff_dns::DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
}

/// The DNS server's flags on `skiff server`.
#[derive(Args, Clone)]
pub struct DnsArgs {
    #[command(flatten)]
    pub cluster: ClusterDnsArgs,
    /// The port the DNS server listens on (UDP and TCP) on the node address; kube-dns
    /// forwards to it.
    #[arg(long, default_value_t = 53)]
    pub cluster_dns_port: u16,
    /// Where names outside the cluster are forwarded (IP or IP:PORT, repeatable; default:
    /// the host's resolv.conf).
    #[arg(long = "dns-upstream")]
    pub upstreams: Vec<String>,
    /// Do not run the cluster DNS server (nor keep the kube-dns Service).
    #[arg(long)]
    pub disable_dns: bool,
}

fn upstream(text: &str) -> Result<SocketAddr> {
    text.parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .with_context(|| format!("--dns-upstream {text:?}: not an IP or IP:PORT"))
}

/// Starts the DNS server on the node address and points kube-dns at it; None with --disable-dns.
pub async fn start_in_server(
    kubeconfig: &Path,
    args: &DnsArgs,
    node_ip: Option<IpAddr>,
) -> Result<Option<skiff_dns::DnsServer>> {
    if args.disable_dns {
        return Ok(None);
    }
    let address = node_ip.or_else(skiff_apiserver::server::detect_node_ip).unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let client = skiff_client::connect(kubeconfig, None).await?;
    let mut config = skiff_dns::Config::new(SocketAddr::new(address, args.cluster_dns_port));
    config.cluster_domain = args.cluster.cluster_domain.clone();
    if !args.upstreams.is_empty() {
        config.upstreams = args.upstreams.iter().map(|u| upstream(u)).collect::<Result<_>>()?;
    }
    let server = skiff_dns::start(client.clone(), config)
        .await
        .context("starting the cluster DNS (--cluster-dns-port to move it, --disable-dns to run without)")?;
    skiff_dns::kubedns::ensure(&client, args.cluster.cluster_dns, server.addr)
        .await
        .with_context(|| format!("keeping kube-system/kube-dns at {}", args.cluster.cluster_dns))?;
    Ok(Some(server))
}
