//! Shared informers (client-go's SharedInformerFactory): one watch per kind for the whole
//! controller manager, one cache of it (a kube-runtime reflector [`Store`]) that every
//! controller reads, and its changes fanned out to every controller that subscribed.
//! Without them about ten controllers each watched and cached every pod.
//!
//! The fan-out is our own: kube-runtime's shared reflector (`store_shared`) passes on
//! applied objects only, never deletions, which controllers need (expectations, a pod
//! leaving its Services). Each subscriber gets an unbounded queue, as client-go's
//! listeners do, so that a slow controller neither holds the watch up nor loses changes.
//! A relist is applied to the cache at once and then reported as changes, the objects it
//! no longer holds as deletions, as client-go's `Replace` does.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use futures::channel::mpsc;
use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use skiff_client::synced::{MarkSynced, Synced};
use tokio::task::AbortHandle;
use tracing::debug;

/// A change of the cache, as subscribers see it.
#[derive(Debug)]
pub enum Change<K> {
    /// Created or changed; `old` is what the cache held before (None: new to it).
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    /// Deleted, or missing from a relist (then in its last known state).
    Deleted(Arc<K>),
    /// The cache holds a complete list: after the first list and after every relist (whose
    /// changes came before).
    Synced,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied { old: old.clone(), new: new.clone() },
            Change::Deleted(object) => Change::Deleted(object.clone()),
            Change::Synced => Change::Synced,
        }
    }
}

impl<K> Change<K> {
    /// The object changed or deleted (None for [`Change::Synced`]).
    pub fn object(&self) -> Option<&Arc<K>> {
        match self {
            Change::Applied { new, .. } => Some(new),
            Change::Deleted(object) => Some(object),
            Change::Synced => None,
        }
    }
}

/// Kinds the informers can follow.
pub trait Kind: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}
impl<K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static> Kind for K {}

/// One kind's watch, cache and subscribers. Dropping it stops the watch.
pub struct Informer<K: Kind> {
    store: Store<K>,
    synced: Synced,
    fanout: Arc<Mutex<Fanout<K>>>,
    watch: AbortHandle,
}

impl<K: Kind> Drop for Informer<K> {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl<K: Kind> Informer<K> {
    /// Starts following `api` (on the current tokio runtime).
    pub fn start(api: Api<K>) -> Self {
        let (store, writer) = reflector::store();
        let (mark_synced, synced) = Synced::pending();
        let fanout =
            Arc::new(Mutex::new(Fanout { writer, store: store.clone(), subscribers: Vec::new(), synced: mark_synced }));
        let watch = tokio::spawn(follow(api, fanout.clone())).abort_handle();
        Informer { store, synced, fanout, watch }
    }

    /// The cache. Wait for its first list through [`Informer::synced`], never through
    /// the store (see [`Synced`]).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Whether the cache holds its first list.
    pub fn synced(&self) -> Synced {
        self.synced.clone()
    }

    /// Every change from now on; a subscriber that comes after the first list first gets
    /// what the cache holds, as [`Change::Applied`] from nothing, then [`Change::Synced`].
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + 'static {
        let (sender, receiver) = mpsc::unbounded();
        let mut fanout = lock(&self.fanout);
        if fanout.synced.is_marked() {
            for object in fanout.store.state() {
                let _ = sender.unbounded_send(Change::Applied { old: None, new: object });
            }
            let _ = sender.unbounded_send(Change::Synced);
        }
        fanout.subscribers.push(sender);
        receiver
    }

    /// The objects changed or deleted, for kube-runtime's `owns_shared_stream` and
    /// `watches_shared_stream`.
    pub fn touched(&self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        self.subscribe().filter_map(|change| future::ready(change.object().cloned()))
    }

    /// A unit per change, for kube-runtime's `reconcile_all_on`.
    pub fn any_change(&self) -> impl Stream<Item = ()> + Send + 'static {
        self.subscribe().map(|_| ())
    }
}

fn lock<K: Kind>(fanout: &Mutex<Fanout<K>>) -> MutexGuard<'_, Fanout<K>> {
    // Only plain data behind it: a panic elsewhere leaves it usable.
    fanout.lock().unwrap_or_else(|e| e.into_inner())
}

struct Fanout<K: Kind> {
    writer: reflector::store::Writer<K>,
    store: Store<K>,
    subscribers: Vec<mpsc::UnboundedSender<Change<K>>>,
    /// Whether the first list is in; tells the informer's waiters.
    synced: MarkSynced,
}

impl<K: Kind> Fanout<K> {
    fn send(&mut self, change: Change<K>) {
        // A subscriber that went away (its controller stopped) is dropped.
        self.subscribers.retain(|subscriber| subscriber.unbounded_send(change.clone()).is_ok());
    }

    /// Applies one watch event to the cache, then tells the subscribers. `listing` holds
    /// the objects of a relist under way.
    fn apply(&mut self, event: Event<K>, listing: &mut Vec<ObjectRef<K>>) {
        match event {
            Event::Init => {
                listing.clear();
                self.writer.apply_watcher_event(&event);
            }
            Event::InitApply(ref object) => {
                listing.push(ObjectRef::from_obj(object));
                self.writer.apply_watcher_event(&event);
            }
            Event::Apply(ref object) => {
                let key = ObjectRef::from_obj(object);
                let old = self.store.get(&key);
                self.writer.apply_watcher_event(&event);
                if let Some(new) = self.store.get(&key) {
                    self.send(Change::Applied { old, new });
                }
            }
            Event::Delete(object) => {
                self.writer.apply_watcher_event(&Event::Delete(object.clone()));
                self.send(Change::Deleted(Arc::new(object)));
            }
            Event::InitDone => {
                // The cache takes the whole list at once; then what changed against what
                // it held before is reported.
                let mut before: HashMap<ObjectRef<K>, Arc<K>> =
                    self.store.state().into_iter().map(|object| (ObjectRef::from_obj(&*object), object)).collect();
                self.writer.apply_watcher_event(&event);
                for key in listing.drain(..) {
                    if let Some(new) = self.store.get(&key) {
                        let old = before.remove(&key);
                        self.send(Change::Applied { old, new });
                    }
                }
                for (_, gone) in before {
                    self.send(Change::Deleted(gone));
                }
                self.synced.mark();
                self.send(Change::Synced);
            }
        }
    }
}

/// Follows the API into the cache until the informer is dropped.
async fn follow<K: Kind>(api: Api<K>, fanout: Arc<Mutex<Fanout<K>>>) {
    let events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        // No controller reads them, and they are a large part of every object.
        .modify(|object| object.meta_mut().managed_fields = None);
    let mut events = std::pin::pin!(events);
    let mut listing = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => lock(&fanout).apply(event, &mut listing),
            Err(error) => debug!(kind = %K::kind(&()), %error, "shared watch failed; retrying"),
        }
    }
}

/// The informers of one controller manager, each started by its first user. Dropping
/// them (when the manager stops leading) stops their watches.
pub struct Informers {
    client: Client,
    pods: OnceLock<Informer<Pod>>,
    nodes: OnceLock<Informer<Node>>,
    services: OnceLock<Informer<Service>>,
}

impl Informers {
    pub fn new(client: Client) -> Self {
        Informers { client, pods: OnceLock::new(), nodes: OnceLock::new(), services: OnceLock::new() }
    }

    pub fn pods(&self) -> &Informer<Pod> {
        self.pods.get_or_init(|| Informer::start(Api::all(self.client.clone())))
    }

    pub fn nodes(&self) -> &Informer<Node> {
        self.nodes.get_or_init(|| Informer::start(Api::all(self.client.clone())))
    }

    pub fn services(&self) -> &Informer<Service> {
        self.services.get_or_init(|| Informer::start(Api::all(self.client.clone())))
    }
}
