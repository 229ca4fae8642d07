//! The scheduler inside `skiff server` (after the API server is up), and on its own as
//! `skiff scheduler` (to run it apart, e.g. to measure it).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
pub struct SchedulerArgs {
    /// Credentials for the API server (the admin kubeconfig under the server's data directory).
    #[arg(long, env = "KUBECONFIG", default_value = "/var/lib/skiff/kubeconfig.yaml")]
    kubeconfig: PathBuf,
    /// Schedule pods with this spec.schedulerName.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Run without taking the kube-system/kube-scheduler Lease (only one scheduler may run).
    #[arg(long)]
    no_leader_elect: bool,
}

/// Starts the scheduler in the background of `skiff server`.
pub async fn spawn_in_server(kubeconfig: &Path) -> Result<()> {
    let client = skiff_client::connect(kubeconfig, None).await?;
    tokio::spawn(async move {
        if let Err(e) = skiff_scheduler::run(client, skiff_scheduler::Config::default()).await {
            tracing::error!(error = %e, "the scheduler stopped");
        }
    });
    Ok(())
}

pub async fn run(args: SchedulerArgs) -> Result<()> {
    let client = skiff_client::connect(&args.kubeconfig, None).await?;
    let mut config = skiff_scheduler::Config { scheduler_name: args.scheduler_name, ..Default::default() };
    if args.no_leader_elect {
        config.leader_election = None;
    }
    tokio::select! {
        result = skiff_scheduler::run(client, config) => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
