//! The durable backend: one SQLite file in WAL mode.
//!
//! - Writes go to a single writer thread that group-commits whatever is queued in one
//!   transaction with `synchronous=FULL` (see [`writer`]); a write is acknowledged only
//!   after its commit is fsynced.
//! - Reads use a small pool of their own connections (see [`reader`]), so they never wait
//!   for, or lock out, the writer.
//! - Live watch events come from the writer, after commit, over a broadcast channel;
//!   older events are replayed from the log (see `crate::watch`).
//! - Compaction runs through the writer in small steps, so writes keep flowing.
//!
//! One process owns a database file: the revision counter lives in the writer thread, so
//! two processes writing the same file would hand out the same revisions.

mod reader;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};

use self::reader::{ReaderHistory, Readers};
use self::writer::{Op, Outcome, Request, Writer};
use crate::watch::{self, DEFAULT_LIVE_CAPACITY};
use crate::{Error, Event, KeyValue, RangeRequest, RangeResult, Result, Revision, Store, WatchStream};

/// Tuning knobs of [`SqliteStore`]. The defaults suit a single-node cluster.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Most write requests committed in one transaction.
    pub max_batch: usize,
    /// Most read connections open at once.
    pub readers: usize,
    /// Capacity, in events, of the live-event ring shared by watchers. A watcher further
    /// behind than this catches up from the log instead.
    pub watch_capacity: usize,
    /// Write requests that may wait for the writer before callers are held back.
    pub queue: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { max_batch: 1000, readers: 4, watch_capacity: DEFAULT_LIVE_CAPACITY, queue: 4096 }
    }
}

/// Counters of the writer, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// Transactions committed (each one fsync of the WAL).
    pub commits: u64,
    /// Successful create/update/delete operations committed (each one revision).
    pub writes: u64,
}

/// State the writer thread publishes for the async side.
struct Shared {
    /// Last committed revision.
    revision: AtomicI64,
    /// Committed compacted revision.
    compacted: AtomicI64,
    commits: AtomicU64,
    writes: AtomicU64,
}

/// The SQLite backend. See the module docs.
///
/// Dropping it lets the writer finish the requests already queued, then waits for the
/// writer thread to close the database (normally milliseconds).
pub struct SqliteStore {
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    live: broadcast::Sender<Arc<Event>>,
    shared: Arc<Shared>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if missing, with default options.
    ///
    /// Synchronous: it creates the schema, recovers the revisions and starts the writer
    /// thread, all blocking file I/O (a few milliseconds). It does not need a tokio
    /// runtime, but the store's methods must be called from one.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Like [`SqliteStore::open`], with explicit options.
    pub fn open_with(path: &Path, options: SqliteOptions) -> Result<Self> {
        let (conn, recovered) = schema::open_writer(path)?;
        sync_parent_dir(path)?;
        tracing::debug!(
            path = %path.display(),
            revision = recovered.revision,
            compacted = recovered.compacted,
            "opened sqlite store"
        );
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(recovered.revision),
            compacted: AtomicI64::new(recovered.compacted),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let (live, _) = broadcast::channel(options.watch_capacity.max(1));
        let (requests, queue) = mpsc::channel(options.queue.max(1));
        let writer = Writer::new(
            conn,
            Arc::clone(&shared),
            live.clone(),
            queue,
            options.max_batch,
            recovered.incremental_vacuum,
        );
        let writer = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|err| Error::Backend(format!("starting the writer thread: {err}")))?;
        Ok(Self {
            requests: Some(requests),
            writer: Some(writer),
            readers: Arc::new(Readers::new(path.to_owned(), options.readers)),
            live,
            shared,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writer counters since open.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            writes: self.shared.writes.load(Ordering::Relaxed),
        }
    }

    async fn submit(&self, op: Op) -> Result<Outcome> {
        let requests = self.requests.as_ref().ok_or(Error::Closed)?;
        let (reply, answer) = oneshot::channel();
        requests.send(Request { op, reply }).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn write(&self, op: Op) -> Result<KeyValue> {
        match self.submit(op).await? {
            Outcome::Kv(kv) => Ok(kv),
            other => Err(unexpected(other)),
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue stops the writer once it has drained it.
        self.requests = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        self.write(Op::Create { key: key.to_owned(), value }).await
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.readers.read(move |tx| reader::get(tx, &key)).await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult> {
        self.readers.read(move |tx| reader::range(tx, &request)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected_mod_revision: Revision) -> Result<KeyValue> {
        self.write(Op::Update { key: key.to_owned(), value, expected: expected_mod_revision }).await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<KeyValue> {
        self.write(Op::Delete { key: key.to_owned(), expected: expected_mod_revision }).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before anything reads history: see `crate::watch`.
        let live = self.live.subscribe();
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if after < compacted {
            return Err(Error::Compacted { requested: after, compacted });
        }
        let history = Arc::new(ReaderHistory(Arc::clone(&self.readers)));
        Ok(watch::stream(history, live, prefix.to_owned(), after))
    }

    /// Raises the compacted revision at once (older reads fail from then on), then
    /// deletes the superseded history in steps of a few hundred rows, each its own
    /// writer request, and finally returns a large excess of free pages to the OS.
    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(Op::SetCompacted { revision }).await? {
            Outcome::Compacting(true) => {}
            Outcome::Compacting(false) => return Ok(()),
            other => return Err(unexpected(other)),
        }
        let mut after = 0;
        loop {
            match self.submit(Op::CompactStep { revision, after }).await? {
                Outcome::Step(Some(next)) => after = next,
                Outcome::Step(None) => break,
                other => return Err(unexpected(other)),
            }
        }
        match self.submit(Op::Vacuum).await? {
            Outcome::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// Makes the directory entries of a newly created database and WAL file durable: a power
/// cut right after the first writes must not lose the files themselves.
fn sync_parent_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| Error::Backend(format!("syncing {}: {err}", dir.display())))
}

/// The error for a database failure.
fn backend(err: rusqlite::Error) -> Error {
    Error::Backend(err.to_string())
}

fn unexpected(outcome: Outcome) -> Error {
    Error::Backend(format!("store writer answered with an unexpected {outcome:?}"))
}
