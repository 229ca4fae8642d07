//! `skiff agent`: the node agent. By default one real node on this machine, running pods
//! as containers through containerd (a private instance it supervises, or an existing
//! CRI socket with `--container-runtime-endpoint`); with `--simulate N`, N simulated
//! nodes in this process. `skiff server` runs a real node in-process the same way.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use skiff_agent::config::{self, NodeTemplate, Timing};
use skiff_agent::dns::ClusterDns;
use skiff_agent::imagegc::{self, CriImageFs, GcPolicy, ImageGc};
use skiff_agent::ipam::Ipv4Cidr;
use skiff_agent::machine::{self, Machine};
use skiff_agent::network::{masquerade, nodeip, podcidr, routes};
use skiff_agent::oci;
use skiff_agent::podworker::PodTiming;
use skiff_agent::runtime::simulated::{Behaviour, SimulatedRuntime};
use skiff_agent::runtime::Runtime;
use skiff_agent::server::{self, NodeServer, ServerConfig};
use skiff_agent::volumes::VolumeHost;
use skiff_agent::{Agent, NodeHandle};
use skiff_proxy::ProxyConfig;
use tokio::task::JoinHandle;

use crate::clusterconfig;

#[derive(Parser)]
pub struct AgentArgs {
    /// The API server's URL (default: the one in the kubeconfig; required with --token).
    #[arg(long)]
    server: Option<String>,
    /// The join token the server wrote to DATA/token (`K10<CA hash>::server:<secret>`):
    /// the agent checks the server's CA against it, then authenticates with it instead
    /// of --kubeconfig.
    #[arg(long, env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// Credentials for the API server: the admin kubeconfig the server writes under its
    /// data directory.
    #[arg(long, env = "KUBECONFIG", default_value = "/var/lib/skiff/kubeconfig.yaml")]
    kubeconfig: PathBuf,
    /// Where the node keeps its files (DATA/agent: containerd, CNI config, images to import).
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// Run N simulated nodes in this process (no containers; pods run in a simulated
    /// runtime and report status as real ones do).
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// The node's name (default: the host name); with --simulate, the prefix of
    /// `PREFIX-0`, `PREFIX-1`, ... (default: sim).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's address, which other nodes route this node's pods through (default: the
    /// first global IPv4 of the default route's interface; with no default route, of the
    /// lowest-index interface that is up).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// Use this CRI socket (unix:///path) instead of starting containerd.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// The real node's pod CIDR, registered with the Node instead of waiting for the
    /// server's node-ipam-controller to assign one (a pod CIDR the Node already has wins).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Extra node labels: key=value,...
    #[arg(long, default_value = "")]
    node_labels: String,
    /// Taints to register with: key=value:Effect,...
    #[arg(long, default_value = "")]
    register_with_taints: String,
    /// Capacity of each simulated node: cpu=32,memory=256Gi,pods=110,... (extended
    /// resources such as nvidia.com/gpu=4 too).
    #[arg(long)]
    capacity: Option<String>,
    /// The cluster's pod range: a real node masquerades pod traffic leaving it, and its
    /// service proxy masquerades traffic to Service IPs from outside it; simulated node i
    /// takes its i-th subnet. Default: what the server publishes (kube-system/skiff-cluster),
    /// else 10.42.0.0/16.
    #[arg(long)]
    cluster_cidr: Option<String>,
    /// Do not run the service proxy (nftables rules for Services) on the real node.
    #[arg(long)]
    disable_kube_proxy: bool,
    /// The prefix length of each simulated node's pod subnet.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// How long simulated containers take to exit after SIGTERM (seconds).
    #[arg(long, default_value_t = 0.0)]
    stop_delay: f64,
    /// API requests the agent keeps in flight at most (all nodes together).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// The port of the node's HTTPS server (logs, exec, attach, port-forward).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Seconds between Lease renewals of each node.
    #[arg(long, default_value_t = 10)]
    lease_renew_seconds: u64,
    #[command(flatten)]
    cluster: crate::dns::ClusterDnsArgs,
    #[command(flatten)]
    image_gc: ImageGcArgs,
}

impl AgentArgs {
    /// Whether this agent runs simulated nodes rather than this machine.
    pub fn simulates(&self) -> bool {
        self.simulate.is_some()
    }
}

/// The kubelet's image garbage collection flags (a real node on `skiff agent` and `skiff server`).
#[derive(clap::Args, Clone)]
pub struct ImageGcArgs {
    /// Disk usage (percent of the image filesystem) at or above which unused images are
    /// removed; 100 turns image garbage collection off.
    #[arg(long, default_value_t = 85)]
    image_gc_high_threshold: u8,
    /// Disk usage (percent) that image garbage collection frees down to.
    #[arg(long, default_value_t = 80)]
    image_gc_low_threshold: u8,
    /// Images are not removed until they have been on the node this long (Go duration).
    #[arg(long, default_value = "2m", value_parser = imagegc::parse_go_duration)]
    image_minimum_gc_age: Duration,
}

impl ImageGcArgs {
    pub fn policy(&self) -> Result<GcPolicy> {
        let policy = GcPolicy {
            high_threshold_percent: self.image_gc_high_threshold,
            low_threshold_percent: self.image_gc_low_threshold,
            min_age: self.image_minimum_gc_age,
            ..GcPolicy::default()
        };
        policy.validate().map_err(anyhow::Error::msg)?;
        Ok(policy)
    }
}

/// A real node on this machine: what `skiff agent` and `skiff server` need to start one.
pub struct RealNode {
    pub data_dir: PathBuf,
    pub name: Option<String>,
    pub address: Option<IpAddr>,
    /// An explicit pod CIDR; None waits for the server to assign one.
    pub pod_cidr: Option<String>,
    /// The cluster's pod range (traffic leaving it is masqueraded).
    pub cluster_cidr: String,
    pub runtime_endpoint: Option<String>,
    pub labels: String,
    pub taints: String,
    pub timing: Timing,
    /// The port of the node's HTTPS server (logs, exec, attach, port-forward).
    pub kubelet_port: u16,
    /// Runs the service proxy (not with --disable-kube-proxy).
    pub kube_proxy: bool,
    /// The nameserver ClusterFirst pods get.
    pub cluster_dns: std::net::IpAddr,
    pub cluster_domain: String,
    /// When unused images are removed.
    pub image_gc: GcPolicy,
}

/// A real node at work: its agent task and its runtime (stopped by [`RunningNode::shutdown`]).
pub struct RunningNode {
    pub agent: JoinHandle<skiff_agent::Result<()>>,
    /// Keeps the routes to other nodes' pods.
    routes: JoinHandle<()>,
    /// The service proxy, unless disabled.
    proxy: Option<JoinHandle<()>>,
    machine: Machine,
    /// Serves while it is kept.
    _server: NodeServer,
}

impl RunningNode {
    /// Stops the agent and the private containerd. Containers keep running; the next
    /// start adopts them.
    pub async fn shutdown(self) {
        self.agent.abort();
        self.routes.abort();
        if let Some(proxy) = self.proxy {
            proxy.abort();
        }
        self.machine.shutdown().await;
    }
}

/// Starts containerd (or connects to the endpoint), then the agent for one real node.
pub async fn start_real_node(
    client: kube::Client,
    node: RealNode,
    extra_labels: &[(&str, &str)],
) -> Result<RunningNode> {
    let name = node.name.clone().unwrap_or_else(machine::hostname);
    let address = match node.address {
        Some(address) => address,
        None => detect_node_ip().await,
    };
    let cluster_cidr: Ipv4Cidr = node.cluster_cidr.parse().map_err(anyhow::Error::msg)?;
    let explicit_cidr: Option<Ipv4Cidr> =
        node.pod_cidr.as_deref().map(str::parse).transpose().map_err(anyhow::Error::msg)?;
    let agent_dir = node.data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir).with_context(|| format!("creating {}", agent_dir.display()))?;

    let mut template = machine::template(&node.data_dir);
    template.labels.extend(extra_labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    template.labels.extend(config::parse_labels(&node.labels).map_err(anyhow::Error::msg)?);
    template.taints = config::parse_taints(&node.taints).map_err(anyhow::Error::msg)?;
    // The CNI config needs the pod CIDR, which the server assigns to the registered Node.
    let registration = podcidr::unready_node(&template, &name, address, explicit_cidr);
    let pod_cidr = podcidr::register_and_wait(&client, &registration, Duration::from_secs(30))
        .await
        .context("registering the node and waiting for its pod CIDR")?;

    let mut options = machine::Options::new(agent_dir.clone(), name.clone(), address);
    options.pod_cidr = pod_cidr;
    options.runtime_endpoint = node.runtime_endpoint.clone();
    let machine = Machine::start(&options).await?;
    if let Err(e) = masquerade::apply(cluster_cidr).await {
        tracing::warn!(error = %e, "pod traffic leaving the cluster is not masqueraded (is nft installed?)");
    }

    let runtime = machine.runtime.clone() as Arc<dyn Runtime>;
    let listen = SocketAddr::from(([0, 0, 0, 0], node.kubelet_port));
    let config = ServerConfig { listen, ..ServerConfig::default() };
    let server = server::start_for_node(&client, config, &machine.identity, runtime.clone())
        .await
        .with_context(|| format!("starting the node server on {listen}"))?;
    let image_fs = Arc::new(CriImageFs { runtime: machine.runtime.clone() });
    // The pause image and the air-gap images are kept: no registry may have them.
    let mut image_gc = ImageGc::new(runtime.clone(), image_fs, node.image_gc.clone()).pinning(oci::PAUSE_IMAGE);
    for image in &machine.imported_images {
        image_gc = image_gc.pinning(image.clone());
    }
    let handle = NodeHandle::new(machine.identity.clone(), runtime)
        .with_kubelet_port(server.addr.port())
        .with_image_gc(image_gc);
    let volumes = VolumeHost { pods_dir: agent_dir.join("pods"), tmpfs: true };
    let routes = tokio::spawn(routes::run(client.clone(), name, Duration::from_secs(30)));
    let proxy = match node.kube_proxy {
        true => Some(start_proxy(client.clone(), &machine.identity.name, cluster_cidr).await?),
        false => None,
    };
    let dns = ClusterDns {
        servers: vec![node.cluster_dns],
        domain: node.cluster_domain.clone(),
        host: skiff_dns::resolvconf::ResolvConf::host(),
    };
    let agent = Agent::new(client, template, node.timing, vec![handle], 16).with_volumes(volumes).with_cluster_dns(dns);
    eprintln!(
        "skiff agent: node {} ({}, pods in {}) on {}",
        machine.identity.name,
        machine.identity.address,
        machine.identity.pod_cidr,
        machine.runtime.socket().display()
    );
    Ok(RunningNode { agent: tokio::spawn(agent.run()), routes, proxy, machine, _server: server })
}

/// The node's IP when `--node-ip` is not given ([`nodeip`]), loopback on a machine without
/// a global IPv4 address.
pub async fn detect_node_ip() -> IpAddr {
    match nodeip::detect().await {
        Ok(Some(ip)) => IpAddr::V4(ip),
        Ok(None) => IpAddr::from([127, 0, 0, 1]),
        Err(e) => {
            tracing::warn!(error = %e, "detecting the node IP failed; using the default route's source address");
            skiff_apiserver::server::detect_node_ip().unwrap_or(IpAddr::from([127, 0, 0, 1]))
        }
    }
}

/// Starts the node's service proxy, once nft is known to work here.
async fn start_proxy(client: kube::Client, node: &str, cluster_cidr: Ipv4Cidr) -> Result<JoinHandle<()>> {
    let mut config = ProxyConfig::new(node);
    config.cluster_cidr = Some(skiff_proxy::Ipv4Cidr::new(cluster_cidr.network(), cluster_cidr.prefix())?);
    config
        .nft
        .run(&["--version"], None)
        .await
        .context("the service proxy needs nft (install nftables, or pass --disable-kube-proxy)")?;
    Ok(tokio::spawn(skiff_proxy::run(client, config)))
}

fn simulated_nodes(args: &AgentArgs, count: usize) -> Result<(NodeTemplate, Vec<NodeHandle>)> {
    let mut template = NodeTemplate::simulated();
    if let Some(capacity) = &args.capacity {
        template.capacity.extend(config::parse_resources(capacity).map_err(anyhow::Error::msg)?);
    }
    template.labels.extend(config::parse_labels(&args.node_labels).map_err(anyhow::Error::msg)?);
    template.taints = config::parse_taints(&args.register_with_taints).map_err(anyhow::Error::msg)?;
    let cidr = args.cluster_cidr.as_deref().unwrap_or(clusterconfig::DEFAULT_CLUSTER_CIDR);
    let cidr = cidr.parse().map_err(anyhow::Error::msg)?;
    let prefix = args.node_name.as_deref().unwrap_or("sim");
    let ids =
        config::simulated_identities(prefix, count, cidr, args.node_cidr_mask_size).map_err(anyhow::Error::msg)?;
    let behaviour = Behaviour { stop_delay: Duration::from_secs_f64(args.stop_delay.max(0.0)), ..Behaviour::default() };
    let nodes = ids
        .into_iter()
        .map(|id| {
            let runtime = Arc::new(SimulatedRuntime::new(id.pod_cidr, behaviour.clone()));
            NodeHandle::new(id, runtime)
        })
        .collect();
    Ok((template, nodes))
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let client = match (&args.token, &args.server) {
        (Some(token), Some(server)) => skiff_client::connect_with_token(server, token).await?,
        (Some(_), None) => bail!("--token needs --server https://HOST:6443"),
        (None, server) => skiff_client::connect(&args.kubeconfig, server.as_deref()).await?,
    };
    let timing = Timing { renew_interval: Duration::from_secs(args.lease_renew_seconds.max(1)), ..Timing::default() };
    let Some(count) = args.simulate else {
        let node = RealNode {
            data_dir: args.data_dir.clone(),
            name: args.node_name.clone(),
            address: args.node_ip,
            pod_cidr: args.pod_cidr.clone(),
            cluster_cidr: clusterconfig::cluster_cidr(&client, args.cluster_cidr.as_deref()).await?,
            runtime_endpoint: args.container_runtime_endpoint.clone(),
            labels: args.node_labels.clone(),
            taints: args.register_with_taints.clone(),
            timing,
            kubelet_port: args.kubelet_port,
            kube_proxy: !args.disable_kube_proxy,
            cluster_dns: args.cluster.cluster_dns,
            cluster_domain: args.cluster.cluster_domain.clone(),
            image_gc: args.image_gc.policy()?,
        };
        let mut running = start_real_node(client, node, &[]).await?;
        let outcome = tokio::select! {
            result = &mut running.agent => Some(result),
            _ = tokio::signal::ctrl_c() => None,
        };
        running.shutdown().await;
        return match outcome {
            Some(Ok(result)) => Ok(result?),
            Some(Err(e)) => Err(e.into()),
            None => Ok(()),
        };
    };
    let (template, nodes) = simulated_nodes(&args, count)?;
    let agent = Agent::new(client, template, timing, nodes, args.max_in_flight).with_pod_timing(PodTiming::simulated());
    eprintln!("skiff agent: {count} simulated nodes ({}-0 …)", args.node_name.as_deref().unwrap_or("sim"));
    tokio::select! {
        result = agent.run() => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
