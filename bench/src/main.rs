//! skiff-bench: the performance numbers of the README. Runs the release `skiff` binary
//! (and etcd, for comparison) as child processes on 127.0.0.1, measures them as a client
//! would, prints tables and one JSON object per result line, and cleans up after itself.

mod client;
mod creates;
mod deployment;
mod dns;
mod kubectl;
mod list;
mod load;
mod machine;
mod pod_network;
mod pod_startup;
mod process;
mod proto;
mod proxy;
mod report;
mod schedule;
mod servers;
mod startup;
mod target;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Result};
use clap::{Parser, Subcommand};

use crate::process::Scratch;
use crate::report::Check;

#[derive(Parser)]
#[command(name = "skiff-bench", about = "Benchmarks of skiff: durable creates (against etcd), startup, memory, LIST")]
struct Cli {
    /// The skiff binary [default: `skiff` beside this program, i.e. the same target dir].
    #[arg(long, global = true)]
    skiff: Option<PathBuf>,
    /// The etcd binary (Debian: apt-get install etcd-server).
    #[arg(long, global = true, default_value = "etcd")]
    etcd: PathBuf,
    /// Where the temporary data directories go (a real disk, not tmpfs) [default: $TMPDIR].
    #[arg(long, global = true)]
    work_dir: Option<PathBuf>,
    /// Concurrent clients for the concurrent creates and for filling the LIST.
    #[arg(long, global = true, default_value_t = 64)]
    clients: usize,
    /// How long a server runs idle before its memory is read.
    #[arg(long, global = true, default_value_t = 3)]
    settle_secs: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Durable creates/s and latency, 1 and --clients clients, skiff and etcd.
    Creates(creates::CreatesArgs),
    /// Cold start to /readyz, fresh and existing data dir; idle memory.
    Startup(startup::StartupArgs),
    /// Full LIST of many ConfigMaps; memory before and after; restart with them.
    List(list::ListArgs),
    /// `kubectl get pods -A` over many pods; `kubectl apply -f` of a large manifest.
    Kubectl(kubectl::KubectlArgs),
    /// Scheduling throughput through the API server: 5,000 nodes, 10,000 pods, p99 latency, scheduler RSS.
    Schedule(schedule::ScheduleArgs),
    /// A Deployment of 1,000 replicas on 100 simulated nodes: create → available, rolling update; controller-manager RSS.
    Deployment(deployment::DeploymentArgs),
    /// Service proxy: full nftables sync of 1,000 Services × 10 endpoints, and one endpoint change (needs root and nft).
    Proxy(proxy::ProxyArgs),
    /// 100 pods on one real node (containerd): create → Running p50/p99 against raw CRI; agent RSS.
    PodStartup(pod_startup::PodStartupArgs),
    /// The cluster DNS: A queries/s over UDP against 1,000 Services, p50/p99 latency.
    Dns(dns::DnsArgs),
    /// TCP throughput (iperf3) across two real nodes: pod to pod and pod to Service against host to host (needs root and iperf3).
    PodNetwork(pod_network::PodNetworkArgs),
    /// All of the above, then the targets table.
    All {
        #[command(flatten)]
        creates: creates::CreatesArgs,
        #[command(flatten)]
        startup: startup::StartupArgs,
        #[command(flatten)]
        list: list::ListArgs,
        #[command(flatten)]
        kubectl: kubectl::KubectlArgs,
    },
}

/// What every benchmark needs: the binaries, a scratch directory, common settings.
pub struct Env {
    pub skiff: PathBuf,
    pub etcd: PathBuf,
    pub scratch: Scratch,
    pub clients: usize,
    pub settle: Duration,
}

impl Env {
    fn new(cli: &Cli) -> Result<Self> {
        let skiff = match &cli.skiff {
            Some(path) => path.clone(),
            None => std::env::current_exe()?.with_file_name("skiff"),
        };
        ensure!(
            skiff.is_file(),
            "no skiff binary at {}: run `cargo build --release -p skiff` or pass --skiff",
            skiff.display()
        );
        ensure!(cli.clients > 0, "--clients must be at least 1");
        Ok(Env {
            skiff,
            etcd: cli.etcd.clone(),
            scratch: Scratch::new(cli.work_dir.as_deref())?,
            clients: cli.clients,
            settle: Duration::from_secs(cli.settle_secs),
        })
    }
}

async fn run(env: &Env, command: &Command) -> Result<Vec<Check>> {
    machine::describe(env)?;
    Ok(match command {
        Command::Creates(args) => creates::run(env, args).await?,
        Command::Startup(args) => startup::run(env, args).await?,
        Command::List(args) => list::run(env, args).await?,
        Command::Schedule(args) => schedule::run(env, args).await?,
        Command::Deployment(args) => deployment::run(env, args).await?,
        Command::Kubectl(args) => kubectl::run(env, args).await?,
        Command::Proxy(args) => proxy::run(env, args).await?,
        Command::PodStartup(args) => pod_startup::run(env, args).await?,
        Command::Dns(args) => dns::run(env, args).await?,
        Command::PodNetwork(args) => pod_network::run(env, args).await?,
        Command::All { creates, startup, list, kubectl } => {
            let mut checks = creates::run(env, creates).await?;
            checks.extend(startup::run(env, startup).await?);
            checks.extend(list::run(env, list).await?);
            checks.extend(kubectl::run(env, kubectl).await?);
            checks
        }
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Outlives `run`, whose servers (killed when dropped) use it.
    let mut env = Env::new(&cli)?;
    let checks = tokio::select! {
        checks = run(&env, &cli.command) => checks,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    let checks = match checks {
        Ok(checks) => checks,
        Err(error) => {
            // The servers' logs tell why a run failed.
            eprintln!("kept the scratch directory with the logs: {}", env.scratch.keep().display());
            return Err(error);
        }
    };
    report::print_checks(&checks);
    Ok(())
}
