//! Garbage collector (kube-controller-manager's garbage-collector-controller): deletes
//! objects whose owners are gone, and carries out foreground and orphan deletion.
//!
//! - [`graph`]: the owner graph built from ownerReferences, and the work each change makes.
//! - `collector`: that work, through the API (live lookups before anything is deleted).
//! - here: one metadata-only watch per served resource that can be deleted (found through
//!   discovery, re-run periodically so new custom resources are followed; pods come from
//!   the shared pod informer instead), feeding the graph; workers start once every watch
//!   has listed.
//!
//! The API server does the rest: DELETE with propagationPolicy=Foreground adds the
//! `foregroundDeletion` finalizer, Orphan the `orphan` finalizer, Background neither.

mod collector;
pub mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::discovery::verbs;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::discovery::{self, KindIndex, Served};
use crate::informer::Change;
use crate::Context;
use collector::Collector;
use graph::{Identity, Observed, ResourceKey};

pub const NAME: &str = "garbage-collector-controller";

/// Workers deciding deletions (kube-controller-manager's --concurrent-gc-syncs is 20;
/// two cores do not need as many).
const DELETE_WORKERS: usize = 8;
const ORPHAN_WORKERS: usize = 2;
/// How long the first start waits for every watch to list before working anyway.
const INITIAL_SYNC_LIMIT: Duration = Duration::from_secs(60);

/// Kinds the collector ignores, as Kubernetes does: Events come and go by the thousand
/// and are never owners.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

pub async fn run(context: Arc<Context>) {
    let collector = Collector::new(context.client.clone());
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel::<ResourceKey>();
    // Every task runs in `tasks`, so that they all stop when this future is dropped
    // (leadership lost).
    let mut tasks = JoinSet::new();
    let mut monitors: HashMap<ResourceKey, AbortHandle> = HashMap::new();
    let mut working = false;
    loop {
        match discovery::served(&context.client).await {
            Ok(served) => {
                let collectable: Vec<Served> = served.into_iter().filter(is_collectable).collect();
                collector.set_kinds(KindIndex::new(&collectable));
                let wanted: HashSet<ResourceKey> = collectable.iter().map(|s| key(&s.resource)).collect();
                monitors.retain(|key, task| {
                    let keep = wanted.contains(key);
                    if !keep {
                        info!(resource = %key, "no longer served; stopping its watch");
                        task.abort();
                    }
                    keep
                });
                let mut waiting = HashSet::new();
                for served in collectable {
                    let key = key(&served.resource);
                    if monitors.contains_key(&key) {
                        continue;
                    }
                    waiting.insert(key.clone());
                    let task = if is_pods(&served) {
                        let pods = context.informers.pods().subscribe().boxed();
                        tasks.spawn(monitor_pods(collector.clone(), served, pods, synced_tx.clone()))
                    } else {
                        tasks.spawn(monitor(collector.clone(), served, synced_tx.clone()))
                    };
                    monitors.insert(key, task);
                }
                if !working {
                    wait_for_sync(&mut synced_rx, waiting).await;
                    info!(nodes = collector.graph_len(), "garbage collector synced; starting workers");
                    tasks.spawn(collector.clone().work(DELETE_WORKERS, ORPHAN_WORKERS));
                    working = true;
                }
            }
            Err(error) => warn!(%error, "garbage collector: discovery failed"),
        }
        // Collect stopped watches.
        while tasks.try_join_next().is_some() {}
        tokio::time::sleep(context.timing.discovery_resync_period).await;
    }
}

/// Kinds that can be watched and deleted, minus the ignored ones.
fn is_collectable(served: &Served) -> bool {
    let r = &served.resource;
    served.supports(&[verbs::LIST, verbs::WATCH, verbs::DELETE, verbs::GET])
        && !IGNORED.iter().any(|(group, plural)| r.group == *group && r.plural == *plural)
}

fn key(resource: &kube::discovery::ApiResource) -> ResourceKey {
    format!("{}/{}/{}", resource.group, resource.version, resource.plural)
}

async fn wait_for_sync(synced: &mut mpsc::UnboundedReceiver<ResourceKey>, mut waiting: HashSet<ResourceKey>) {
    let wait = async {
        while !waiting.is_empty() {
            match synced.recv().await {
                Some(key) => {
                    waiting.remove(&key);
                }
                None => return,
            }
        }
    };
    if tokio::time::timeout(INITIAL_SYNC_LIMIT, wait).await.is_err() {
        warn!("garbage collector: some watches did not list in time; starting anyway");
    }
}

/// What the graph keeps of an object of `resource` (None without a name or uid).
fn observed(resource: &kube::discovery::ApiResource, key: &ResourceKey, meta: &ObjectMeta) -> Option<Observed> {
    Some(Observed {
        identity: Identity {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
        },
        resource: key.clone(),
        owners: meta.owner_references.clone().unwrap_or_default(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

/// Whether `served` is the core pods resource (followed through the shared informer).
fn is_pods(served: &Served) -> bool {
    served.resource.group.is_empty() && served.resource.plural == "pods"
}

/// Follows pods into the graph from the shared pod informer (which reports deletions
/// missed while its watch was down as deletions).
async fn monitor_pods(
    collector: Arc<Collector>,
    served: Served,
    mut changes: impl futures::Stream<Item = Change<Pod>> + Unpin,
    synced: mpsc::UnboundedSender<ResourceKey>,
) {
    let key = key(&served.resource);
    while let Some(change) = changes.next().await {
        match change {
            Change::Applied { new, .. } => {
                if let Some(observed) = observed(&served.resource, &key, &new.metadata) {
                    collector.observe(observed);
                }
            }
            Change::Deleted(pod) => {
                if let Some(uid) = pod.uid() {
                    collector.forget(&uid);
                }
            }
            Change::Synced => {
                let _ = synced.send(key.clone());
            }
        }
    }
}

/// Follows one resource's objects (metadata only) into the graph.
async fn monitor(collector: Arc<Collector>, served: Served, synced: mpsc::UnboundedSender<ResourceKey>) {
    let resource = served.resource;
    let key = key(&resource);
    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(collector.client(), &resource);
    let mut events = watcher(api).boxed();
    // Objects seen during a (re)list: whatever the graph holds beyond them was deleted
    // while the watch was down.
    let mut listing: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing = Some(HashSet::new()),
            Ok(Event::InitApply(object)) => {
                if let Some(observed) = observed(&resource, &key, &object.metadata) {
                    if let Some(seen) = listing.as_mut() {
                        seen.insert(observed.identity.uid.clone());
                    }
                    collector.observe(observed);
                }
            }
            Ok(Event::InitDone) => {
                let seen = listing.take().unwrap_or_default();
                collector.forget_missing(&key, &seen);
                let _ = synced.send(key.clone());
            }
            Ok(Event::Apply(object)) => {
                if let Some(observed) = observed(&resource, &key, &object.metadata) {
                    collector.observe(observed);
                }
            }
            Ok(Event::Delete(object)) => {
                if let Some(uid) = object.uid() {
                    collector.forget(&uid);
                }
            }
            Err(error) => debug!(resource = %key, %error, "garbage collector watch failed; retrying"),
        }
    }
}

fn watcher(
    api: Api<PartialObjectMeta<DynamicObject>>,
) -> impl futures::Stream<Item = Result<Event<PartialObjectMeta<DynamicObject>>, watcher::Error>> + Send {
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}
