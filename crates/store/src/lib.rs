//! The revisioned key-value store behind the API server.
//!
//! The model is etcd v3's, so that an etcd backend drops in: every write gets the next
//! value of one global, strictly increasing revision; each key remembers the revision
//! that created it and the revision of its last change; writes compare-and-swap on that
//! mod revision; a watch replays every change after a revision, in order; history older
//! than the compacted revision is forgotten.
//!
//! Backends: [`sqlite::SqliteStore`] (durable, the default) and [`memory::MemoryStore`]
//! (for tests). Every backend passes the same suite (`tests/suite.rs`).

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod compactor;
mod keys;
pub mod memory;
pub mod sqlite;
mod watch;

/// A store revision. Revision 0 means "before anything was written".
pub type Revision = i64;

/// One key at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated; `kv` is the new value.
    Put,
    /// The key was deleted; `kv` holds the last value, with `mod_revision` set to the
    /// revision of the deletion.
    Delete,
}

/// One change, as a watch reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The value before this change (None for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// A page of a range read.
#[derive(Clone, Debug, Default)]
pub struct RangeResult {
    /// Keys in ascending order.
    pub kvs: Vec<KeyValue>,
    /// True when keys after the last returned one exist (the limit cut the page).
    pub more: bool,
    /// The revision the read was served at.
    pub revision: Revision,
}

/// Parameters of a range read over every key that starts with `prefix`.
#[derive(Clone, Debug, Default)]
pub struct RangeRequest {
    pub prefix: String,
    /// Only keys strictly greater than this (a continue token's last key).
    pub start_after: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Read as of this past revision; None means the current revision.
    pub revision: Option<Revision>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// The key's mod revision was not the expected one. `current` is the key's value now
    /// (None when the key does not exist).
    #[error("key {key} was modified concurrently")]
    Conflict { key: String, current: Option<KeyValue> },
    /// The requested revision is older than the compacted revision.
    #[error("revision {requested} has been compacted; oldest available is {compacted}")]
    Compacted { requested: Revision, compacted: Revision },
    /// The requested revision is newer than the current one.
    #[error("revision {requested} is in the future; current is {current}")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("store is closed")]
    Closed,
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stream of watch events. Events come in revision order, without gaps or duplicates.
/// An `Err` item (for example [`Error::Compacted`] when the watcher fell behind) ends it.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// The store every backend implements. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the last write.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision that can still be read or watched from (history at and below
    /// it is gone). 0 when nothing was compacted yet.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// Creates `key`; fails with [`Error::AlreadyExists`] if it exists.
    /// Returns the new key's revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// The current value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under a prefix, in ascending order.
    async fn range(&self, request: RangeRequest) -> Result<RangeResult>;

    /// Replaces `key`'s value if its mod revision is `expected_mod_revision`
    /// ([`Error::Conflict`] otherwise, [`Error::NotFound`] if it does not exist).
    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: Revision) -> Result<KeyValue>;

    /// Deletes `key` if its mod revision is `expected_mod_revision` (any revision when
    /// None). Returns the deleted value with `mod_revision` set to the deletion revision.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue>;

    /// Every change to keys under `prefix` with revision > `after`, then live changes.
    /// Fails at once with [`Error::Compacted`] if `after` is older than the compacted
    /// revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// Forgets history at and below `revision` (current values stay readable).
    async fn compact(&self, revision: Revision) -> Result<()>;
}
