//! skiff-controllers: the controller manager. Each controller is one module that follows
//! the API through kube-runtime (watcher → reflector → reconcile, with retries and
//! backoff) and writes only through the API, as kube-controller-manager's do; all of
//! them run together under one leader-election Lease (kube-system/kube-controller-manager)
//! so that several servers run one active set.
//!
//! Layout: [`context`] (what every controller shares: the client, the event recorder,
//! timing, and the shared [`informer`]s of pods, nodes and Services), one module per
//! controller, and [`run`] which starts them. Helpers shared by several controllers:
//! [`queue`] (a work queue for keys kube-runtime's `Controller` cannot reconcile, such as
//! deleted objects), [`discovery`] (every served resource, for the garbage collector and
//! the namespace controller), [`servicepods`] (the run loop of the Endpoints and
//! EndpointSlice controllers, and endpoint rules) and [`pernamespace`] (one named object
//! in every namespace: the ServiceAccount and root CA controllers).

pub mod clock;
pub mod context;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod expectations;
pub mod gc;
pub mod history;
pub mod informer;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod ownership;
pub mod pernamespace;
pub mod pods;
pub mod queue;
pub mod replicaset;
pub mod rootca;
pub mod serviceaccount;
pub mod servicelb;
pub mod servicepods;
pub mod statefulset;
pub mod tainteviction;
pub mod ttlafterfinished;

use std::sync::Arc;

use futures::future::BoxFuture;
use kube::Client;
use skiff_client::leader::{self, LeaderConfig};
use tokio::task::JoinSet;
use tracing::{error, info};

pub use clock::Clock;
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
    Controller { name: gc::NAME, run: |c| Box::pin(gc::run(c)) },
    Controller { name: namespace::NAME, run: |c| Box::pin(namespace::run(c)) },
    Controller { name: endpoints::NAME, run: |c| Box::pin(endpoints::run(c)) },
    Controller { name: endpointslice::NAME, run: |c| Box::pin(endpointslice::run(c)) },
    Controller { name: rootca::NAME, run: |c| Box::pin(rootca::run(c)) },
    Controller { name: disruption::NAME, run: |c| Box::pin(disruption::run(c)) },
    Controller { name: nodeipam::NAME, run: |c| Box::pin(nodeipam::run(c)) },
    Controller { name: nodelifecycle::NAME, run: |c| Box::pin(nodelifecycle::run(c)) },
    Controller { name: tainteviction::NAME, run: |c| Box::pin(tainteviction::run(c)) },
    Controller { name: job::NAME, run: |c| Box::pin(job::run(c)) },
    Controller { name: daemonset::NAME, run: |c| Box::pin(daemonset::run(c)) },
    Controller { name: statefulset::NAME, run: |c| Box::pin(statefulset::run(c)) },
    Controller { name: cronjob::NAME, run: |c| Box::pin(cronjob::run(c)) },
    Controller { name: ttlafterfinished::NAME, run: |c| Box::pin(ttlafterfinished::run(c)) },
    Controller { name: replicaset::NAME, run: |c| Box::pin(replicaset::run(c)) },
    Controller { name: deployment::NAME, run: |c| Box::pin(deployment::run(c)) },
    Controller { name: servicelb::NAME, run: |c| Box::pin(servicelb::run(c)) },
];

#[derive(Clone, Debug)]
pub struct Config {
    /// Run only while holding this Lease; None runs unconditionally.
    pub leader_election: Option<LeaderConfig>,
    /// Controllers not to run, by name.
    pub disabled: Vec<String>,
    pub timing: Timing,
    /// The cluster CA (PEM) to publish as `kube-root-ca.crt` in every namespace (the
    /// API server's CA, e.g. [`rootca::ca_from_kubeconfig`]); empty turns that off.
    pub root_ca: String,
    /// The range node pod CIDRs are allocated from (`--cluster-cidr`,
    /// `--node-cidr-mask-size`); None leaves nodes' pod CIDRs to them.
    pub cluster_cidr: Option<nodeipam::ClusterCidr>,
}

impl Default for Config {
    fn default() -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let identity = format!("{host}_{:08x}", rand::random::<u32>());
        Config {
            leader_election: Some(LeaderConfig::in_kube_system("kube-controller-manager", identity)),
            disabled: Vec::new(),
            timing: Timing::default(),
            root_ca: String::new(),
            cluster_cidr: Some(nodeipam::ClusterCidr::default()),
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
    let (context, recorder) = Context::new(client, host, config.timing.clone(), &config.root_ca, config.cluster_cidr);
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
