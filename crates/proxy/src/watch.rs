//! Following the API: reflectors for Services, EndpointSlices and the proxy's own Node,
//! and the loop that syncs the rules whenever any of them changes. A change wakes the
//! loop at once; it waits [`ProxyConfig::debounce`] to gather a burst of changes into one
//! sync (a rollout changes many slices within milliseconds), never polls.
//!
//! Each change also names the Service it concerns (a slice's `kubernetes.io/service-name`),
//! so a sync rebuilds the model of those Services only; a (re)list or a change of the
//! Node rebuilds it whole.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::model::{Ipv4Cidr, Model, NodeInfo, SERVICE_NAME_LABEL};
use crate::nft::Nft;
use crate::ruleset::RenderOptions;
use crate::sync::{SyncKind, Syncer};

/// How the proxy of one node runs.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The node whose endpoints are local.
    pub node_name: String,
    /// Traffic to cluster IPs from outside this range is masqueraded.
    pub cluster_cidr: Option<Ipv4Cidr>,
    pub nft: Nft,
    /// How long a sync waits after the first change for more to arrive.
    pub debounce: Duration,
    /// How long to wait after a failed sync before the full retry.
    pub retry: Duration,
}

impl ProxyConfig {
    pub fn new(node_name: &str) -> Self {
        ProxyConfig {
            node_name: node_name.to_string(),
            cluster_cidr: None,
            nft: Nft::default(),
            debounce: Duration::from_millis(5),
            retry: Duration::from_secs(1),
        }
    }
}

/// The proxy's caches: what each sync reads.
#[derive(Clone)]
struct Caches {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    node: Store<Node>,
}

/// A Service, by namespace and name.
type ServiceKey = (String, String);

/// What changed since the last sync.
#[derive(Default)]
struct Dirty {
    /// Rebuild the whole model (a list completed, the Node changed).
    everything: bool,
    services: BTreeSet<ServiceKey>,
}

/// Collects changes and wakes the sync loop.
#[derive(Default)]
struct Changes {
    dirty: Mutex<Dirty>,
    wake: Notify,
}

impl Changes {
    /// Records a change of `service` (None: anything may have changed).
    fn mark(&self, service: Option<ServiceKey>) {
        let mut dirty = self.dirty.lock().unwrap_or_else(PoisonError::into_inner);
        match service {
            Some(key) => {
                dirty.services.insert(key);
            }
            None => dirty.everything = true,
        }
        drop(dirty);
        self.wake.notify_one();
    }

    fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn service_of_service(service: &Service) -> Option<ServiceKey> {
    Some((service.metadata.namespace.clone()?, service.metadata.name.clone()?))
}

fn service_of_slice(slice: &EndpointSlice) -> Option<ServiceKey> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some((slice.metadata.namespace.clone()?, name.clone()))
}

/// Runs the proxy until the future is dropped. Sync failures are logged and retried
/// with a full sync; watch errors are retried by the watchers with backoff.
pub async fn run(client: Client, config: ProxyConfig) {
    let changes = Arc::new(Changes::default());
    let node_watch = watcher::Config::default().fields(&format!("metadata.name={}", config.node_name));
    let (services, services_watch) =
        follow(Api::all(client.clone()), watcher::Config::default(), &changes, service_of_service);
    let (slices, slices_watch) =
        follow(Api::all(client.clone()), watcher::Config::default(), &changes, service_of_slice);
    let (node, node_watch) = follow(Api::all(client), node_watch, &changes, |_: &Node| None);
    let caches = Caches { services, slices, node };
    let watches = async {
        tokio::join!(services_watch, slices_watch, node_watch);
    };
    tokio::select! {
        () = watches => {}
        () = sync_loop(caches, config, changes) => {}
    }
}

/// A reflector for `api` whose every change (once the first list is complete) is marked
/// in `changes`, as concerning the Service `concerns` names (None: everything).
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    changes: &Arc<Changes>,
    concerns: fn(&K) -> Option<ServiceKey>,
) -> (Store<K>, impl std::future::Future<Output = ()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, config)).default_backoff();
    (store, mark_changes(stream, changes.clone(), concerns))
}

async fn mark_changes<K>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    changes: Arc<Changes>,
    concerns: fn(&K) -> Option<ServiceKey>,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init | Event::InitApply(_)) => {}
            Ok(Event::InitDone) => changes.mark(None),
            Ok(Event::Apply(object) | Event::Delete(object)) => changes.mark(concerns(&object)),
            Err(error) => warn!(%error, "proxy watch failed; retrying"),
        }
    }
}

/// The model after the changes in `dirty`.
fn rebuild(model: &mut Model, dirty: Dirty, caches: &Caches, node: &NodeInfo) {
    let slices = caches.slices.state();
    if dirty.everything {
        let services = caches.services.state();
        *model = Model::build(services.iter().map(|s| s.as_ref()), slices.iter().map(|s| s.as_ref()), node);
        return;
    }
    for (namespace, name) in dirty.services {
        let service = caches.services.get(&reflector::ObjectRef::new(&name).within(&namespace));
        let key = Some((namespace.clone(), name.clone()));
        let own: Vec<&EndpointSlice> =
            slices.iter().map(|s| s.as_ref()).filter(|s| service_of_slice(s) == key).collect();
        model.update_service(&namespace, &name, service.as_deref(), &own, node);
    }
}

async fn sync_loop(caches: Caches, config: ProxyConfig, changes: Arc<Changes>) {
    for ready in [caches.services.wait_until_ready().await, caches.slices.wait_until_ready().await] {
        if ready.is_err() {
            return;
        }
    }
    let options = RenderOptions { cluster_cidr: config.cluster_cidr };
    let mut syncer = Syncer::new(config.nft.clone(), options);
    let mut model = Model::default();
    let mut node = NodeInfo::named(&config.node_name);
    changes.mark(None);
    info!(node = %config.node_name, "service proxy started");
    loop {
        changes.wake.notified().await;
        tokio::time::sleep(config.debounce).await;
        let mut dirty = changes.take();
        let current = NodeInfo::from_node(&config.node_name, caches.node.state().first().map(|n| n.as_ref()));
        if current != node {
            node = current;
            dirty.everything = true;
        }
        rebuild(&mut model, dirty, &caches, &node);
        match syncer.sync(&model).await {
            Ok(SyncKind::Unchanged) => {}
            Ok(kind) => tracing::debug!(?kind, "proxy synced"),
            Err(error) => {
                warn!(%error, "proxy sync failed; retrying with a full sync");
                syncer.invalidate();
                tokio::time::sleep(config.retry).await;
                // The model is still right; only the kernel's state is unknown.
                changes.wake.notify_one();
            }
        }
    }
}
