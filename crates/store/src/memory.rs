//! An in-memory [`Store`] for tests and for running without a disk.
//!
//! Current values live in a `BTreeMap` (ascending key order for ranges for free) and
//! every event since the compacted revision in a `VecDeque`. A past revision is read by
//! taking the current values and undoing the newer events: simple, and fast enough for
//! the history sizes tests produce. One mutex guards everything, and live events are sent
//! to the broadcast channel while it is held, so the channel carries them in revision
//! order.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use crate::keys::selected;
use crate::watch::{self, History, HistoryFuture, DEFAULT_LIVE_CAPACITY};
use crate::{Error, Event, EventKind, KeyValue, RangeRequest, RangeResult, Result, Revision, Store, WatchStream};

/// The in-memory backend. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    live: broadcast::Sender<Arc<Event>>,
}

#[derive(Default)]
struct State {
    current: BTreeMap<String, KeyValue>,
    /// Every event with revision > `compacted`, in order, without gaps.
    history: VecDeque<Event>,
    revision: Revision,
    compacted: Revision,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::with_watch_capacity(DEFAULT_LIVE_CAPACITY)
    }

    /// An empty store whose live-event ring holds `capacity` events. A watcher that falls
    /// further behind than that catches up from history instead (tests use a small ring
    /// to exercise that path).
    pub fn with_watch_capacity(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(1));
        Self { inner: Arc::new(Inner { state: Mutex::new(State::default()), live }) }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way
        // later calls would misread (each write is applied at its end), so keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a successful write: applies it, appends it to history, publishes it.
    fn commit(&self, state: &mut State, event: Event) -> KeyValue {
        state.revision = event.revision();
        match event.kind {
            EventKind::Put => {
                state.current.insert(event.kv.key.clone(), event.kv.clone());
            }
            EventKind::Delete => {
                state.current.remove(&event.kv.key);
            }
        }
        let kv = event.kv.clone();
        state.history.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.live.send(Arc::new(event));
        kv
    }
}

impl State {
    fn check_revision(&self, requested: Revision) -> Result<()> {
        if requested < self.compacted {
            return Err(Error::Compacted { requested, compacted: self.compacted });
        }
        if requested > self.revision {
            return Err(Error::FutureRevision { requested, current: self.revision });
        }
        Ok(())
    }

    /// Selected keys as of `revision` (which `check_revision` accepted), ascending.
    fn snapshot(&self, request: &RangeRequest, revision: Revision) -> Vec<KeyValue> {
        let after = request.start_after.as_deref();
        let wanted = |key: &str| selected(key, &request.prefix, after);
        let mut view: BTreeMap<&str, &KeyValue> = self
            .current
            .range::<str, _>((Bound::Included(request.prefix.as_str()), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(&request.prefix))
            .filter(|(key, _)| wanted(key))
            .map(|(key, kv)| (key.as_str(), kv))
            .collect();
        // Undo newer events, newest first, so each key ends at its value as of `revision`.
        for event in self.history.iter().rev().take_while(|e| e.revision() > revision) {
            let key = event.kv.key.as_str();
            if !wanted(key) {
                continue;
            }
            match &event.prev {
                Some(prev) => view.insert(key, prev),
                None => view.remove(key),
            };
        }
        view.into_values().cloned().collect()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.lock().revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.lock().compacted)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let mut state = self.inner.lock();
        if state.current.contains_key(key) {
            return Err(Error::AlreadyExists(key.to_owned()));
        }
        let revision = state.revision + 1;
        let kv = KeyValue { key: key.to_owned(), value, create_revision: revision, mod_revision: revision };
        Ok(self.inner.commit(&mut state, Event { kind: EventKind::Put, kv, prev: None }))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.inner.lock().current.get(key).cloned())
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult> {
        let state = self.inner.lock();
        let revision = request.revision.unwrap_or(state.revision);
        state.check_revision(revision)?;
        let mut kvs = state.snapshot(&request, revision);
        drop(state);
        let more = request.limit > 0 && kvs.len() > request.limit;
        if more {
            kvs.truncate(request.limit);
        }
        Ok(RangeResult { kvs, more, revision })
    }

    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: Revision) -> Result<KeyValue> {
        let mut state = self.inner.lock();
        let Some(current) = state.current.get(key).cloned() else {
            return Err(Error::NotFound(key.to_owned()));
        };
        if current.mod_revision != expected_mod_revision {
            return Err(Error::Conflict { key: key.to_owned(), current: Some(current) });
        }
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: current.create_revision,
            mod_revision: state.revision + 1,
        };
        Ok(self.inner.commit(&mut state, Event { kind: EventKind::Put, kv, prev: Some(current) }))
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.inner.lock();
        let Some(current) = state.current.get(key).cloned() else {
            return Err(Error::NotFound(key.to_owned()));
        };
        if expected_mod_revision.is_some_and(|expected| expected != current.mod_revision) {
            return Err(Error::Conflict { key: key.to_owned(), current: Some(current) });
        }
        let kv = KeyValue { mod_revision: state.revision + 1, ..current.clone() };
        Ok(self.inner.commit(&mut state, Event { kind: EventKind::Delete, kv, prev: Some(current) }))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let live = {
            let state = self.inner.lock();
            if after < state.compacted {
                return Err(Error::Compacted { requested: after, compacted: state.compacted });
            }
            self.inner.live.subscribe()
        };
        Ok(watch::stream(self.inner.clone(), live, prefix.to_owned(), after))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.inner.lock();
        if revision > state.revision {
            return Err(Error::FutureRevision { requested: revision, current: state.revision });
        }
        if revision <= state.compacted {
            return Ok(());
        }
        while state.history.front().is_some_and(|e| e.revision() <= revision) {
            state.history.pop_front();
        }
        state.compacted = revision;
        Ok(())
    }
}

impl History for Inner {
    fn events_after(&self, prefix: &str, after: Revision, limit: usize) -> HistoryFuture {
        let result = {
            let state = self.lock();
            if after < state.compacted {
                Err(Error::Compacted { requested: after, compacted: state.compacted })
            } else {
                let start = state.history.partition_point(|e| e.revision() <= after);
                Ok(state.history.range(start..).filter(|e| e.kv.key.starts_with(prefix)).take(limit).cloned().collect())
            }
        };
        Box::pin(std::future::ready(result))
    }
}
