//! Following the API: reflectors for Services, EndpointSlices and the proxy's own Node,
//! and the loop that syncs the rules whenever any of them changes. A change wakes the
//! loop at once; it waits [`ProxyConfig::debounce`] to gather a burst of changes into one
//! sync (a rollout changes many slices within milliseconds), never polls.

use std::sync::Arc;
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

use crate::model::{Ipv4Cidr, Model, NodeInfo};
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

/// Runs the proxy until the future is dropped. Sync failures are logged and retried
/// with a full sync; watch errors are retried by the watchers with backoff.
pub async fn run(client: Client, config: ProxyConfig) {
    let changed = Arc::new(Notify::new());
    let node_watch = watcher::Config::default().fields(&format!("metadata.name={}", config.node_name));
    let (services, services_watch) = follow(Api::all(client.clone()), watcher::Config::default(), &changed);
    let (slices, slices_watch) = follow(Api::all(client.clone()), watcher::Config::default(), &changed);
    let (node, node_watch) = follow(Api::all(client), node_watch, &changed);
    let caches = Caches { services, slices, node };
    let watches = async {
        tokio::join!(services_watch, slices_watch, node_watch);
    };
    tokio::select! {
        () = watches => {}
        () = sync_loop(caches, config, changed) => {}
    }
}

/// A reflector for `api` whose every change (once the first list is complete) wakes `changed`.
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: &Arc<Notify>,
) -> (Store<K>, impl std::future::Future<Output = ()>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let changed = changed.clone();
    let stream = reflector(writer, watcher(api, config)).default_backoff();
    (store, notify_on_change(stream, changed))
}

async fn notify_on_change<K>(stream: impl Stream<Item = Result<Event<K>, watcher::Error>>, changed: Arc<Notify>) {
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init | Event::InitApply(_)) => {}
            Ok(Event::InitDone | Event::Apply(_) | Event::Delete(_)) => changed.notify_one(),
            Err(error) => warn!(%error, "proxy watch failed; retrying"),
        }
    }
}

async fn sync_loop(caches: Caches, config: ProxyConfig, changed: Arc<Notify>) {
    for ready in [caches.services.wait_until_ready().await, caches.slices.wait_until_ready().await] {
        if ready.is_err() {
            return;
        }
    }
    let options = RenderOptions { cluster_cidr: config.cluster_cidr };
    let mut syncer = Syncer::new(config.nft.clone(), options);
    info!(node = %config.node_name, "service proxy started");
    loop {
        let node = caches.node.state().into_iter().next();
        let info = NodeInfo::from_node(&config.node_name, node.as_deref());
        let services = caches.services.state();
        let slices = caches.slices.state();
        let model = Model::build(services.iter().map(|s| s.as_ref()), slices.iter().map(|s| s.as_ref()), &info);
        match syncer.sync(&model).await {
            Ok(SyncKind::Unchanged) => {}
            Ok(kind) => tracing::debug!(?kind, "proxy synced"),
            Err(error) => {
                warn!(%error, "proxy sync failed; retrying with a full sync");
                syncer.invalidate();
                tokio::time::sleep(config.retry).await;
                continue;
            }
        }
        changed.notified().await;
        tokio::time::sleep(config.debounce).await;
    }
}
