//! Reads: a small pool of read-only connections and the queries they run.
//!
//! WAL lets these read while the writer writes, each inside its own transaction, which is
//! a consistent snapshot: a range reads its rows and the revision it reports from the same
//! snapshot. Blocking SQLite calls run on tokio's blocking pool; a semaphore caps how many
//! connections exist (each has its own page cache, and memory must stay small).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use tokio::sync::Semaphore;

use super::backend;
use super::schema::{open_reader, read_meta};
use crate::keys::prefix_end;
use crate::watch::{History, HistoryFuture};
use crate::{Error, Event, EventKind, KeyValue, RangeRequest, RangeResult, Result, Revision};

pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub(super) fn new(path: PathBuf, size: usize) -> Self {
        Self { path, idle: Mutex::new(Vec::new()), permits: Semaphore::new(size.max(1)) }
    }

    /// Runs `read` on a pooled connection, inside a read transaction.
    pub(super) async fn read<T, F>(self: &Arc<Self>, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Closed)?;
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = this.take()?;
            let result =
                conn.transaction_with_behavior(TransactionBehavior::Deferred).map_err(backend).and_then(|tx| read(&tx));
            this.give_back(conn);
            result
        })
        .await
        .map_err(|err| Error::Backend(format!("read task failed: {err}")))?
    }

    fn take(&self) -> Result<Connection> {
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path).map_err(backend),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
    }
}

/// Revisions as a read transaction sees them.
struct Revisions {
    current: Revision,
    compacted: Revision,
}

fn revisions(conn: &Connection) -> Result<Revisions> {
    let recorded = read_meta(conn, "revision").map_err(backend)?.unwrap_or(0);
    let compacted = read_meta(conn, "compacted").map_err(backend)?.unwrap_or(0);
    Ok(Revisions { current: recorded, compacted })
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    conn.prepare_cached(
        "SELECT c.key, l.value, l.create_revision, l.revision
         FROM current c JOIN log l ON l.revision = c.revision
         WHERE c.key = ?1",
    )
    .and_then(|mut stmt| stmt.query_row(params![key.as_bytes()], key_value).optional())
    .map_err(backend)
}

pub(super) fn range(conn: &Connection, request: &RangeRequest) -> Result<RangeResult> {
    let revs = revisions(conn)?;
    let revision = request.revision.unwrap_or(revs.current);
    if revision < revs.compacted {
        return Err(Error::Compacted { requested: revision, compacted: revs.compacted });
    }
    if revision > revs.current {
        return Err(Error::FutureRevision { requested: revision, current: revs.current });
    }
    // Fetch one extra row to learn whether more follow.
    let fetch = if request.limit == 0 { -1 } else { request.limit as i64 + 1 };
    let lower = request.prefix.as_bytes();
    let after = request.start_after.as_deref().map(str::as_bytes);
    let upper = prefix_end(&request.prefix);
    let sql = if revision == revs.current {
        // The live rows, through `current`.
        "SELECT c.key, l.value, l.create_revision, l.revision
         FROM current c JOIN log l ON l.revision = c.revision
         WHERE c.key >= ?1 AND c.key < ?2 AND (?3 IS NULL OR c.key > ?3)
         ORDER BY c.key LIMIT ?5"
    } else {
        // Each key's latest row at or below the revision, unless that row is a tombstone.
        "SELECT l.key, l.value, l.create_revision, l.revision
         FROM log l
         WHERE l.key >= ?1 AND l.key < ?2 AND (?3 IS NULL OR l.key > ?3)
           AND l.deleted = 0
           AND l.revision = (SELECT MAX(m.revision) FROM log m
                             WHERE m.key = l.key AND m.revision <= ?4)
         ORDER BY l.key LIMIT ?5"
    };
    let mut kvs = conn
        .prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.query_map(params![lower, upper, after, revision, fetch], key_value)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend)?;
    let more = request.limit > 0 && kvs.len() > request.limit;
    if more {
        kvs.truncate(request.limit);
    }
    Ok(RangeResult { kvs, more, revision })
}

/// Events for keys under `prefix` with revision > `after`, at most `limit`, in order.
pub(super) fn events_after(conn: &Connection, prefix: &str, after: Revision, limit: usize) -> Result<Vec<Event>> {
    let revs = revisions(conn)?;
    if after < revs.compacted {
        return Err(Error::Compacted { requested: after, compacted: revs.compacted });
    }
    conn.prepare_cached(
        "SELECT l.key, l.value, l.create_revision, l.revision, l.prev_revision, l.deleted,
                p.value, p.create_revision
         FROM log l LEFT JOIN log p ON p.revision = l.prev_revision AND l.deleted = 0
         WHERE l.revision > ?1 AND l.key >= ?2 AND l.key < ?3
         ORDER BY l.revision LIMIT ?4",
    )
    .and_then(|mut stmt| {
        stmt.query_map(params![after, prefix.as_bytes(), prefix_end(prefix), limit as i64], event)?
            .collect::<rusqlite::Result<Vec<_>>>()
    })
    .map_err(backend)
}

fn key_value(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: key_text(row, 0)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

/// Builds an event from a log row joined with the row it replaced (see `events_after`).
fn event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let kv = key_value(row)?;
    let prev_revision: Revision = row.get(4)?;
    let deleted: bool = row.get(5)?;
    if deleted {
        // A tombstone keeps the deleted value: the previous value is that same value
        // at the revision it was last written.
        let prev = KeyValue { mod_revision: prev_revision, ..kv.clone() };
        return Ok(Event { kind: EventKind::Delete, kv, prev: Some(prev) });
    }
    let prev = match row.get::<_, Option<Vec<u8>>>(6)? {
        Some(value) => Some(KeyValue {
            key: kv.key.clone(),
            value: Bytes::from(value),
            create_revision: row.get(7)?,
            mod_revision: prev_revision,
        }),
        None => None,
    };
    Ok(Event { kind: EventKind::Put, kv, prev })
}

fn key_text(row: &Row<'_>, index: usize) -> rusqlite::Result<String> {
    String::from_utf8(row.get::<_, Vec<u8>>(index)?)
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Blob, Box::new(err)))
}

/// The watch history of a sqlite store: reads the log through the reader pool.
pub(super) struct ReaderHistory(pub Arc<Readers>);

impl History for ReaderHistory {
    fn events_after(&self, prefix: &str, after: Revision, limit: usize) -> HistoryFuture {
        let readers = Arc::clone(&self.0);
        let prefix = prefix.to_owned();
        Box::pin(async move { readers.read(move |tx| events_after(tx, &prefix, after, limit)).await })
    }
}
