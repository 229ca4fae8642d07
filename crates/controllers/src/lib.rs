//! skiff-controllers: the controller manager. Each controller is one module that follows
//! the API through kube-runtime (watcher → reflector → reconcile, with retries and
//! backoff) and writes only through the API, as kube-controller-manager's do; all of
//! them run together under one leader-election Lease (kube-system/kube-controller-manager)
//! so that several servers run one active set.
//!
//! Layout: [`context`] (what every controller shares: the client, the event recorder,
//! timing), one module per controller, and [`run`] which starts them.

pub mod context;
pub mod deployment;
pub mod expectations;
pub mod ownership;
pub mod pods;
pub mod replicaset;
pub mod serviceaccount;

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::Client;
use skiff_client::leader::{self, LeaderConfig};
use tokio::task::JoinSet;
use tracing::{error, info};

pub use context::{Context, Timing};

/// A controller: its name (as kube-controller-manager's `--controllers` names it) and
/// its loop, which runs until the manager stops.
pub struct Controller {
    pub name: &'static str,
    pub run: fn(Arc<Context>) -> BoxFuture<'static, ()>,
}

/// Every controller, in start order.
pub const CONTROLLERS: &[Controller] = &[
    Controller { name: serviceaccount::NAME, run: |c| Box::pin(serviceaccount::run(c)) },
    Controller { name: replicaset::NAME, run: |c| Box::pin(replicaset::run(c)) },
    Controller { name: deployment::NAME, run: |c| Box::pin(deployment::run(c)) },
];

#[derive(Clone, Debug)]
pub struct Config {
    /// Run only while holding this Lease; None runs unconditionally.
    pub leader_election: Option<LeaderConfig>,
    /// Controllers not to run, by name.
    pub disabled: Vec<String>,
    pub timing: Timing,
}

impl Default for Config {
    fn default() -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let identity = format!("{host}_{:08x}", rand::random::<u32>());
        Config {
            leader_election: Some(LeaderConfig::in_kube_system("kube-controller-manager", identity)),
            disabled: Vec::new(),
            timing: Timing::default(),
        }
    }
}

/// Runs the enabled controllers (while leading, with leader election) until they all stop.
pub async fn run(client: Client, config: Config) {
    match config.leader_election.clone() {
        Some(lease) => leader::run_as_leader(client.clone(), lease, || run_all(client.clone(), config.clone())).await,
        None => run_all(client, config).await,
    }
}

async fn run_all(client: Client, config: Config) {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let (context, recorder) = Context::new(client, host, config.timing.clone());
    let mut tasks = JoinSet::new();
    tasks.spawn(recorder);
    for controller in CONTROLLERS.iter().filter(|c| !config.disabled.iter().any(|d| d == c.name)) {
        info!(controller = controller.name, "starting controller");
        tasks.spawn((controller.run)(context.clone()));
    }
    // Dropping `tasks` (when leadership is lost) stops every controller.
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result {
            error!(error = %e, "a controller task failed");
        }
    }
}
