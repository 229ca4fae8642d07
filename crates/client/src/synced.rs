//! Waiting for a reflector cache's first list from any number of tasks at once.
//!
//! kube-runtime's `Store::wait_until_ready` keeps a single waker: when several tasks wait
//! at once (reconciles of one controller, or controllers sharing one cache), only the
//! last one to poll is woken when the list lands and the others wait for ever. A
//! [`Synced`] is a watch channel instead, which wakes every waiter. Wait on it, never on
//! the store it follows.

use kube::runtime::reflector::Store;
use kube::Resource;
use tokio::sync::watch;

/// The cache's first list was never completed: its writer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cache stopped before its first list")]
pub struct CacheStopped;

/// Whether a cache holds its first complete list; cheap to clone, one per waiter.
#[derive(Debug, Clone)]
pub struct Synced(watch::Receiver<bool>);

/// Sets the [`Synced`] it was made with.
#[derive(Debug)]
pub struct MarkSynced(watch::Sender<bool>);

impl MarkSynced {
    pub fn mark(&self) {
        self.0.send_replace(true);
    }

    pub fn is_marked(&self) -> bool {
        *self.0.borrow()
    }
}

impl Synced {
    /// A readiness for a cache whose writer reports its first list itself.
    pub fn pending() -> (MarkSynced, Synced) {
        let (sender, receiver) = watch::channel(false);
        (MarkSynced(sender), Synced(receiver))
    }

    /// Follows `store`'s readiness from one task of its own (on the current tokio runtime),
    /// the store's only waiter.
    pub fn of<K>(store: &Store<K>) -> Synced
    where
        K: Resource + Clone + Send + Sync + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
    {
        let (mark, synced) = Synced::pending();
        let store = store.clone();
        tokio::spawn(async move {
            // On an error the writer is gone: dropping `mark` tells the waiters.
            if store.wait_until_ready().await.is_ok() {
                mark.mark();
            }
        });
        synced
    }

    pub async fn wait(&self) -> Result<(), CacheStopped> {
        let mut receiver = self.0.clone();
        receiver.wait_for(|synced| *synced).await.map(|_| ()).map_err(|_| CacheStopped)
    }

    /// Whether the first list is in, without waiting.
    pub fn is_synced(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::future::{join_all, BoxFuture};
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;
    use tokio::task::JoinHandle;

    use super::*;

    /// Four tasks waiting at once through `wait`.
    fn waiters(wait: impl Fn() -> BoxFuture<'static, ()>) -> Vec<JoinHandle<()>> {
        (0..4).map(|_| tokio::spawn(wait())).collect()
    }

    async fn all_finish(waiters: Vec<JoinHandle<()>>) -> bool {
        tokio::time::timeout(Duration::from_secs(2), join_all(waiters)).await.is_ok()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_every_waiter_where_the_store_wakes_only_one() {
        let (store, mut writer) = reflector::store::<Pod>();
        let synced = Synced::of(&store);
        let on_synced = waiters(|| {
            let synced = synced.clone();
            Box::pin(async move { synced.wait().await.unwrap() })
        });
        let (bare_store, mut bare_writer) = reflector::store::<Pod>();
        let on_store = waiters(|| {
            let store = bare_store.clone();
            Box::pin(async move { store.wait_until_ready().await.unwrap() })
        });
        // Every waiter is parked before the list lands.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!synced.is_synced());
        for event in [Event::Init, Event::InitDone] {
            writer.apply_watcher_event(&event);
            bare_writer.apply_watcher_event(&event);
        }
        assert!(all_finish(on_synced).await, "every Synced waiter is woken");
        assert!(synced.is_synced());
        // The defect this type exists for; should kube-runtime fix it, this fails and the
        // type can go.
        assert!(!all_finish(on_store).await, "the store wakes only its last waiter");
    }

    #[tokio::test]
    async fn a_dropped_writer_fails_the_waiters() {
        let (store, writer) = reflector::store::<Pod>();
        let synced = Synced::of(&store);
        drop(writer);
        assert_eq!(synced.wait().await, Err(CacheStopped));
    }
}
