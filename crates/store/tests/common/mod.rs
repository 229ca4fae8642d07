//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::memory::MemoryStore;
use skiff_store::sqlite::{SqliteOptions, SqliteStore};
use skiff_store::{Event, Store, WatchStream};
use tempfile::TempDir;

/// How long any single wait in a test may take before it counts as a hang.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A store under test plus whatever must outlive it.
pub struct Harness {
    pub store: Arc<dyn Store>,
    /// Kept so the database directory lives as long as the store (declared after `store`,
    /// so it is removed after the store closed).
    pub dir: Option<TempDir>,
}

/// Makes a fresh, empty store whose live-event ring holds `watch_capacity` events.
pub type NewStore = fn(usize) -> Harness;

pub fn memory(watch_capacity: usize) -> Harness {
    Harness { store: Arc::new(MemoryStore::with_watch_capacity(watch_capacity)), dir: None }
}

pub fn sqlite(watch_capacity: usize) -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteOptions { watch_capacity, ..SqliteOptions::default() };
    let store = SqliteStore::open_with(&dir.path().join("store.db"), options).expect("open");
    Harness { store: Arc::new(store), dir: Some(dir) }
}

pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// The next `n` events of a watch, failing the test on an error item, an early end or a
/// hang.
pub async fn next_events(stream: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(Ok(event))) => events.push(event),
            Ok(Some(Err(err))) => panic!("watch failed after {} events: {err}", events.len()),
            Ok(None) => panic!("watch ended after {} of {n} events", events.len()),
            Err(_) => panic!("watch hung after {} of {n} events", events.len()),
        }
    }
    events
}

/// Asserts that nothing arrives on the watch for a short while.
pub async fn assert_quiet(stream: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
        panic!("expected no event, got {item:?}");
    }
}

pub fn revisions(events: &[Event]) -> Vec<i64> {
    events.iter().map(Event::revision).collect()
}
