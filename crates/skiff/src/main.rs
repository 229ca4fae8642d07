//! `skiff`: Kubernetes in one binary.

mod agent;
mod clusterconfig;
mod controllers;
mod dns;
mod scheduler;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use skiff_store::compactor::{self, CompactionPolicy};
use skiff_store::{memory::MemoryStore, sqlite::SqliteStore, Store};

/// mimalloc v3 for every process: the control plane spent a fifth to a quarter of its CPU
/// in glibc's allocator. Its arenas commit memory on demand (.cargo/config.toml), which
/// keeps idle RSS where glibc's was (ADR 0023).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "skiff", version, about = "Kubernetes in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane: API server on an embedded store.
    Server(ServerArgs),
    /// Run a node agent: this machine as a node, or simulated nodes (`--simulate N`).
    Agent(agent::AgentArgs),
    /// Run the scheduler on its own (`skiff server` runs one already).
    Scheduler(scheduler::SchedulerArgs),
    /// Run the controller manager on its own (`skiff server` runs one already).
    ControllerManager(controllers::ControllerManagerArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum StoreKind {
    /// Durable embedded SQLite database under the data directory.
    Sqlite,
    /// In memory only: everything is lost on exit (for tests).
    Memory,
}

#[derive(Parser)]
struct ServerArgs {
    /// Where the database, certificates and kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Extra names or IPs for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    tls_san: Vec<String>,
    /// The range ClusterIPs are allocated from.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Do not run the service proxy on the in-process node.
    #[arg(long)]
    disable_kube_proxy: bool,
    /// This node's IP (default: the first global IPv4 of the default route's interface;
    /// with no default route, of the lowest-index interface that is up).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The range nodes' pod CIDRs are allocated from (published to agents in
    /// kube-system/skiff-cluster).
    #[arg(long, default_value = clusterconfig::DEFAULT_CLUSTER_CIDR)]
    cluster_cidr: String,
    /// The prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    #[arg(long, value_enum, default_value = "sqlite")]
    store: StoreKind,
    /// Keep store history at least this many seconds (watch resume window).
    #[arg(long, default_value_t = 300)]
    history_seconds: u64,
    /// Keep at least this many of the latest revisions of history.
    #[arg(long, default_value_t = 10_000)]
    history_revisions: i64,
    /// Do not run the scheduler (e.g. to run `skiff scheduler` apart).
    #[arg(long)]
    disable_scheduler: bool,
    /// Do not run the controller manager (e.g. to run `skiff controller-manager` apart).
    #[arg(long)]
    disable_controllers: bool,
    /// Do not run a node agent in the server (no pods run on this machine).
    #[arg(long)]
    disable_agent: bool,
    /// The in-process node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The in-process node's pod CIDR (default: assigned by the controller manager; the
    /// node waits for it, so give one with --disable-controllers and no other controller
    /// manager).
    #[arg(long)]
    pod_cidr: Option<String>,
    /// Use this CRI socket (unix:///path) instead of starting containerd.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// The port of the in-process node's HTTPS server (logs, exec, attach, port-forward).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    #[command(flatten)]
    dns: dns::DnsArgs,
    #[command(flatten)]
    image_gc: agent::ImageGcArgs,
}

fn open_store(args: &ServerArgs) -> Result<Arc<dyn Store>> {
    Ok(match args.store {
        StoreKind::Memory => Arc::new(MemoryStore::new()),
        StoreKind::Sqlite => {
            let dir = args.data_dir.join("db");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Arc::new(SqliteStore::open(&dir.join("state.db"))?)
        }
    })
}

async fn server(args: ServerArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let store = open_store(&args)?;
    let policy = CompactionPolicy {
        keep_for: std::time::Duration::from_secs(args.history_seconds),
        keep_revisions: args.history_revisions,
        ..CompactionPolicy::default()
    };
    compactor::spawn(store.clone(), policy);
    let mut config = skiff_apiserver::Config::new(&args.data_dir);
    config.listen = SocketAddr::new(args.bind_address, args.https_listen_port);
    config.tls_sans = args.tls_san.clone();
    config.service_cidr = args.service_cidr.parse().map_err(anyhow::Error::msg)?;
    // One node IP for the API server's advertised address and the in-process node.
    let node_ip = match args.node_ip {
        Some(ip) => Some(ip),
        None if args.disable_agent => None,
        None => Some(agent::detect_node_ip().await),
    };
    config.node_ip = node_ip;
    let cluster_cidr = skiff_controllers::nodeipam::ClusterCidr::parse(&args.cluster_cidr, args.node_cidr_mask_size)?;
    let server = skiff_apiserver::start(config, store).await?;
    clusterconfig::publish(skiff_client::connect(&server.kubeconfig, None).await?, &args.cluster_cidr).await?;
    // Before anything else can ask for Services: kube-dns keeps its address.
    let _dns = dns::start_in_server(&server.kubeconfig, &args.dns, args.node_ip).await?;
    if !args.disable_scheduler {
        scheduler::spawn_in_server(&server.kubeconfig).await?;
    }
    if !args.disable_controllers {
        controllers::spawn_in_server(&server.kubeconfig, &server.pki.ca_cert_pem, cluster_cidr).await?;
    }
    let node = if args.disable_agent {
        None
    } else {
        let client = skiff_client::connect(&server.kubeconfig, None).await?;
        let node = agent::RealNode {
            data_dir: args.data_dir.clone(),
            name: args.node_name.clone(),
            address: node_ip,
            pod_cidr: args.pod_cidr.clone(),
            cluster_cidr: args.cluster_cidr.clone(),
            runtime_endpoint: args.container_runtime_endpoint.clone(),
            labels: String::new(),
            taints: String::new(),
            timing: skiff_agent::config::Timing::default(),
            kubelet_port: args.kubelet_port,
            kube_proxy: !args.disable_kube_proxy,
            cluster_dns: args.dns.cluster.cluster_dns,
            cluster_domain: args.dns.cluster.cluster_domain.clone(),
            image_gc: args.image_gc.policy()?,
        };
        let role = [("node-role.kubernetes.io/control-plane", "true")];
        Some(
            agent::start_real_node(client, node, &role)
                .await
                .context("starting the node agent (--disable-agent to run without)")?,
        )
    };
    eprintln!(
        "skiff server ready on https://{} in {} ms\n  export KUBECONFIG={}\n  kubectl get namespaces",
        server.addr,
        started.elapsed().as_millis(),
        server.kubeconfig.display()
    );
    tokio::signal::ctrl_c().await?;
    if let Some(node) = node {
        node.shutdown().await;
    }
    Ok(())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    // A real node's agent mostly waits on containerd and the API: one worker thread (its
    // stack and malloc arena) is enough. Simulated nodes and the control plane take one
    // per core.
    if matches!(&cli.command, Command::Agent(args) if !args.simulates()) {
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build()?;
    match cli.command {
        Command::Server(args) => runtime.block_on(server(args)),
        Command::Agent(args) => runtime.block_on(agent::run(args)),
        Command::Scheduler(args) => runtime.block_on(scheduler::run(args)),
        Command::ControllerManager(args) => runtime.block_on(controllers::run(args)),
    }
}
