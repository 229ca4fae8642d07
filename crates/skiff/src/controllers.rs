//! The controller manager inside `skiff server`, and on its own as
//! `skiff controller-manager` (to run it apart, e.g. to measure it).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{ArgAction, Parser};
use skiff_controllers::nodeipam::ClusterCidr;

#[derive(Parser)]
pub struct ControllerManagerArgs {
    /// Credentials for the API server (the admin kubeconfig under the server's data directory).
    #[arg(long, env = "KUBECONFIG", default_value = "/var/lib/skiff/kubeconfig.yaml")]
    kubeconfig: PathBuf,
    /// Run without taking the kube-system/kube-controller-manager Lease (only one may run).
    #[arg(long)]
    no_leader_elect: bool,
    /// Assign each Node a pod CIDR from --cluster-cidr (node-ipam-controller).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The range nodes' pod CIDRs are allocated from.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// The prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
}

/// Starts the controllers in the background of `skiff server`, publishing its CA.
pub async fn spawn_in_server(kubeconfig: &Path, ca_pem: &str, cluster_cidr: ClusterCidr) -> Result<()> {
    let client = skiff_client::connect(kubeconfig, None).await?;
    let config = skiff_controllers::Config {
        root_ca: ca_pem.to_string(),
        cluster_cidr: Some(cluster_cidr),
        ..Default::default()
    };
    tokio::spawn(skiff_controllers::run(client, config));
    Ok(())
}

pub async fn run(args: ControllerManagerArgs) -> Result<()> {
    let client = skiff_client::connect(&args.kubeconfig, None).await?;
    let root_ca = skiff_controllers::rootca::ca_from_kubeconfig(&args.kubeconfig)?;
    let cluster_cidr = ClusterCidr::parse(&args.cluster_cidr, args.node_cidr_mask_size)?;
    let cluster_cidr = args.allocate_node_cidrs.then_some(cluster_cidr);
    let mut config = skiff_controllers::Config { root_ca, cluster_cidr, ..Default::default() };
    if args.no_leader_elect {
        config.leader_election = None;
    }
    tokio::select! {
        () = skiff_controllers::run(client, config) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
