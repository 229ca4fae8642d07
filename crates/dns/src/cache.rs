//! Keeping the [`Index`] current: one watch per kind (Services, EndpointSlices,
//! Namespaces) through kube-runtime's watcher, which relists and resumes on its own.

use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::index::{Index, Indexed};

/// The index shared by the DNS handler (readers) and the watches (writers).
#[derive(Clone, Default)]
pub struct Cache {
    index: Arc<RwLock<Index>>,
    /// How many kinds have been listed once.
    synced: Arc<watch::Sender<usize>>,
}

const KINDS: usize = 3;

impl Cache {
    pub fn new() -> Self {
        Cache { index: Arc::default(), synced: Arc::new(watch::channel(0).0) }
    }

    /// Reads the index (briefly: the lock is held while the closure runs).
    pub fn read<T>(&self, f: impl FnOnce(&Index) -> T) -> T {
        f(&self.index.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn write(&self, f: impl FnOnce(&mut Index)) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        f(&mut index);
        index.serial = unix_seconds().max(index.serial.wrapping_add(1));
    }

    /// Whether every kind has been listed once.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow() >= KINDS
    }

    /// Waits until every kind has been listed once.
    pub async fn wait_synced(&self) {
        let mut receiver = self.synced.subscribe();
        let _ = receiver.wait_for(|n| *n >= KINDS).await;
    }

    /// Starts the watches; they run until the returned tasks are aborted.
    pub fn follow(&self, client: &Client) -> Vec<JoinHandle<()>> {
        vec![
            tokio::spawn(follow_kind(self.clone(), Api::<Service>::all(client.clone()))),
            tokio::spawn(follow_kind(self.clone(), Api::<EndpointSlice>::all(client.clone()))),
            tokio::spawn(follow_kind(self.clone(), Api::<Namespace>::all(client.clone()))),
        ]
    }
}

fn unix_seconds() -> u32 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u32::try_from(now.as_secs()).unwrap_or(u32::MAX)
}

async fn follow_kind<K>(cache: Cache, api: Api<K>)
where
    K: Indexed + Resource + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut listed_once = false;
    let mut relist: Vec<K> = Vec::new();
    let mut events = watcher::watcher(api, watcher::Config::default()).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(object)) => cache.write(|index| object.apply(index)),
            Ok(Event::Delete(object)) => cache.write(|index| object.delete(index)),
            Ok(Event::Init) => relist.clear(),
            Ok(Event::InitApply(object)) => relist.push(object),
            Ok(Event::InitDone) => {
                let all = std::mem::take(&mut relist);
                cache.write(|index| K::replace_all(&all, index));
                if !listed_once {
                    listed_once = true;
                    cache.synced.send_modify(|n| *n += 1);
                }
            }
            Err(error) => tracing::warn!(kind = std::any::type_name::<K>(), %error, "DNS watch failed; retrying"),
        }
    }
}
