//! `skiff agent`: the node agent. Today it runs simulated nodes (`--simulate N`); real
//! containers through containerd come with the agent issue, behind the same runtime trait.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;
use skiff_agent::config::{self, NodeTemplate, Timing};
use skiff_agent::runtime::simulated::{Behaviour, SimulatedRuntime};
use skiff_agent::{Agent, NodeHandle};

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
    /// Run N simulated nodes in this process (no containers; pods run in a simulated
    /// runtime and report status as real ones do).
    #[arg(long, value_name = "N")]
    simulate: Option<usize>,
    /// The node's name; with --simulate, the prefix of `PREFIX-0`, `PREFIX-1`, ...
    #[arg(long, default_value = "sim")]
    node_name: String,
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
    /// The range pod addresses come from; node i gets its i-th subnet.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// The prefix length of each node's pod subnet.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// How long simulated containers take to exit after SIGTERM (seconds).
    #[arg(long, default_value_t = 0.0)]
    stop_delay: f64,
    /// API requests the agent keeps in flight at most (all nodes together).
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Seconds between Lease renewals of each node.
    #[arg(long, default_value_t = 10)]
    lease_renew_seconds: u64,
}

pub async fn run(args: AgentArgs) -> Result<()> {
    let Some(count) = args.simulate else {
        bail!("running real containers needs the containerd runtime, which is not built yet: use --simulate N");
    };
    let mut template = NodeTemplate::simulated();
    if let Some(capacity) = &args.capacity {
        template.capacity.extend(config::parse_resources(capacity).map_err(anyhow::Error::msg)?);
    }
    template.labels.extend(config::parse_labels(&args.node_labels).map_err(anyhow::Error::msg)?);
    template.taints = config::parse_taints(&args.register_with_taints).map_err(anyhow::Error::msg)?;
    let cidr = args.cluster_cidr.parse().map_err(anyhow::Error::msg)?;
    let ids = config::simulated_identities(&args.node_name, count, cidr, args.node_cidr_mask_size)
        .map_err(anyhow::Error::msg)?;
    let behaviour = Behaviour { stop_delay: Duration::from_secs_f64(args.stop_delay.max(0.0)) };
    let nodes = ids
        .into_iter()
        .map(|id| {
            let runtime = Arc::new(SimulatedRuntime::new(id.pod_cidr, behaviour.clone()));
            NodeHandle::new(id, runtime)
        })
        .collect();
    let client = match (&args.token, &args.server) {
        (Some(token), Some(server)) => skiff_client::connect_with_token(server, token).await?,
        (Some(_), None) => bail!("--token needs --server https://HOST:6443"),
        (None, server) => skiff_client::connect(&args.kubeconfig, server.as_deref()).await?,
    };
    let timing = Timing { renew_interval: Duration::from_secs(args.lease_renew_seconds.max(1)), ..Timing::default() };
    let agent = Agent::new(client, template, timing, nodes, args.max_in_flight);
    eprintln!("skiff agent: {count} simulated nodes ({}-0 …)", args.node_name);
    tokio::select! {
        result = agent.run() => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
