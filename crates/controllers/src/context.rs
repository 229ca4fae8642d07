//! What every controller shares.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use skiff_client::events::Recorder;

use crate::clock::Clock;
use crate::informer::Informers;
use crate::nodeipam::ClusterCidr;

/// Durations controllers wait on, injectable so tests need not wait Kubernetes' defaults.
#[derive(Clone, Debug)]
pub struct Timing {
    /// How long a node's Lease may go unrenewed before the node is NotReady/Unknown
    /// (kube-controller-manager's --node-monitor-grace-period).
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked (--node-monitor-period).
    pub node_monitor_period: Duration,
    /// How long a registered node that never reported Ready may take before it is
    /// Unknown (--node-startup-grace-period).
    pub node_startup_grace_period: Duration,
    /// How often CronJob schedules are checked.
    pub cronjob_sync_period: Duration,
    /// How often the garbage collector re-reads discovery to follow new resources
    /// (kube-controller-manager re-reads it every 30 s).
    pub discovery_resync_period: Duration,
    /// How soon a terminating namespace whose content is still going away is looked at again.
    pub namespace_recheck_period: Duration,
    /// The delay before a failed Job pod is replaced, doubling with each further failure
    /// (the job controller's DefaultJobPodFailureBackOff, 10 s) ...
    pub job_backoff_base: Duration,
    /// ... up to this (MaxJobPodFailureBackOff, 6 min).
    pub job_backoff_max: Duration,
    /// The wall clock for schedules, deadlines and TTLs.
    pub clock: Clock,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            node_monitor_grace_period: Duration::from_secs(40),
            node_monitor_period: Duration::from_secs(5),
            node_startup_grace_period: Duration::from_secs(60),
            cronjob_sync_period: Duration::from_secs(10),
            discovery_resync_period: Duration::from_secs(30),
            namespace_recheck_period: Duration::from_secs(1),
            job_backoff_base: Duration::from_secs(10),
            job_backoff_max: Duration::from_secs(360),
            clock: Clock::system(),
        }
    }
}

pub struct Context {
    pub client: Client,
    /// Events, reported as `kube-controller-manager` from this host; each controller
    /// reports as itself through `events.reporting_as("deployment-controller")`.
    pub events: Recorder,
    pub timing: Timing,
    /// The cluster CA (PEM) published in every namespace; empty: not published.
    pub root_ca: Arc<str>,
    /// The range node pod CIDRs are allocated from; None: not allocated.
    pub cluster_cidr: Option<ClusterCidr>,
    /// The watches and caches of pods, nodes and Services, one each for all controllers.
    pub informers: Informers,
}

impl Context {
    /// The context, and the task writing its events (run it alongside the controllers).
    pub fn new(
        client: Client,
        host: String,
        timing: Timing,
        root_ca: &str,
        cluster_cidr: Option<ClusterCidr>,
    ) -> (Arc<Self>, impl std::future::Future<Output = ()>) {
        let (events, writer) = Recorder::new(client.clone(), "kube-controller-manager".into(), host);
        // As kube-controller-manager's recorder: a controller writes a few events about
        // one object, not one per pod of a 1,000-replica ReplicaSet.
        let events = events.with_spam_filter();
        let informers = Informers::new(client.clone());
        (Arc::new(Context { client, events, timing, root_ca: root_ca.into(), cluster_cidr, informers }), writer)
    }
}
