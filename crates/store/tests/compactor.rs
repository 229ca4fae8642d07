//! The background compactor, driven by tokio's paused clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::b;
use skiff_store::compactor::{self, CompactionPolicy};
use skiff_store::memory::MemoryStore;
use skiff_store::{Error, RangeRequest, Store};

const SECOND: Duration = Duration::from_secs(1);

async fn write(store: &dyn Store, n: usize) {
    for _ in 0..n {
        match store.get("/k").await.unwrap() {
            None => store.create("/k", b("x")).await.map(drop),
            Some(kv) => store.update("/k", b("x"), kv.mod_revision).await.map(drop),
        }
        .unwrap();
    }
}

/// Lets the compactor task run its due ticks.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn compacts_history_older_than_keep_for_but_keeps_recent_revisions() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let policy = CompactionPolicy { interval: 10 * SECOND, keep_for: 30 * SECOND, keep_revisions: 5 };
    let task = compactor::spawn(Arc::clone(&store), policy);

    write(store.as_ref(), 20).await; // revisions 1..=20 at t=0
    settle().await; // first tick at t=0 samples revision 20
    for second in [10, 20] {
        tokio::time::advance(10 * SECOND).await;
        settle().await;
        write(store.as_ref(), 10).await;
        assert_eq!(store.compacted_revision().await.unwrap(), 0, "at t={second}s");
    }
    // t=30s: what was current at t=0 (20) is now keep_for old.
    tokio::time::advance(10 * SECOND).await;
    settle().await;
    assert_eq!(store.compacted_revision().await.unwrap(), 20);
    assert!(matches!(
        store.range(RangeRequest { revision: Some(19), ..RangeRequest::default() }).await,
        Err(Error::Compacted { .. })
    ));
    assert!(store.get("/k").await.unwrap().is_some());

    // Idle from now on (current = 40): the time rule would allow everything, but the
    // last keep_revisions revisions stay.
    tokio::time::advance(120 * SECOND).await;
    settle().await;
    assert_eq!(store.compacted_revision().await.unwrap(), 35);
    task.abort();
}
