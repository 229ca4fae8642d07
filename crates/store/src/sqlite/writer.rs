//! The writer thread: the only connection that writes.
//!
//! Requests arrive over a channel. The thread takes whatever is queued (up to a cap) and
//! applies it in ONE transaction, so concurrent writers share one commit and one fsync
//! (group commit). A request that fails its own check (CAS mismatch, key exists) fails
//! alone; the rest of the batch goes on. Replies wait for the commit, because a check may
//! have seen an earlier, not yet durable, write of the same batch. Only a database error
//! fails the whole batch (it is rolled back and every request in it gets that error).
//!
//! After the commit the thread publishes the batch's events, in revision order, to the
//! live broadcast channel, and then answers. One thread owning the write connection is
//! also why "database is locked" cannot happen between our own writers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::schema::write_meta;
use super::Shared;
use crate::{Error, Event, EventKind, KeyValue, Result, Revision};

/// At most this many log rows are examined (and so deleted) per compaction step, which
/// bounds how long one compaction transaction holds up writes.
pub(super) const COMPACT_STEP_ROWS: i64 = 500;

/// Free pages always kept for reuse after a compaction (1 MiB with 4 KiB pages).
pub(super) const MIN_FREE_PAGES: i64 = 256;

/// What a request asks the writer to do.
#[derive(Debug)]
pub(super) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    /// Raises the compacted revision (first phase of a compaction).
    SetCompacted {
        revision: Revision,
    },
    /// Deletes superseded rows with revision in (`after`, `after` + one step] and at most
    /// `revision`.
    CompactStep {
        revision: Revision,
        after: Revision,
    },
    /// Gives a large excess of free pages back to the file system.
    Vacuum,
}

/// The writer's answer to an [`Op`].
#[derive(Debug)]
pub(super) enum Outcome {
    /// A write's resulting key value.
    Kv(KeyValue),
    /// `SetCompacted`: whether the compacted revision moved.
    Compacting(bool),
    /// `CompactStep`: where the next step starts, None when done.
    Step(Option<Revision>),
    Done,
}

pub(super) struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

pub(super) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    live: broadcast::Sender<Arc<Event>>,
    requests: mpsc::Receiver<Request>,
    max_batch: usize,
    incremental_vacuum: bool,
}

/// Revision counters as a batch sees them; copied back to `Shared` only after commit.
#[derive(Clone, Copy)]
struct Counters {
    revision: Revision,
    compacted: Revision,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        live: broadcast::Sender<Arc<Event>>,
        requests: mpsc::Receiver<Request>,
        max_batch: usize,
        incremental_vacuum: bool,
    ) -> Self {
        Self { conn, shared, live, requests, max_batch: max_batch.max(1), incremental_vacuum }
    }

    /// Serves requests until every sender is gone (the store was dropped).
    pub(super) fn run(mut self) {
        while let Some(first) = self.requests.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match self.requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            self.run_batch(batch);
        }
    }

    fn run_batch(&mut self, batch: Vec<Request>) {
        let before = Counters {
            revision: self.shared.revision.load(Ordering::Acquire),
            compacted: self.shared.compacted.load(Ordering::Acquire),
        };
        let mut counters = before;
        let mut events = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let committed = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for request in &batch {
                let outcome = apply(&tx, &mut counters, &request.op, &mut events, self.incremental_vacuum)?;
                outcomes.push(outcome);
            }
            if counters.revision != before.revision {
                write_meta(&tx, "revision", counters.revision)?;
            }
            if counters.compacted != before.compacted {
                write_meta(&tx, "compacted", counters.compacted)?;
            }
            tx.commit()
        })();

        if let Err(err) = committed {
            tracing::error!(%err, requests = batch.len(), "store write batch failed; rolled back");
            let message = err.to_string();
            for request in batch {
                let _ = request.reply.send(Err(Error::Backend(message.clone())));
            }
            return;
        }

        self.shared.commits.fetch_add(1, Ordering::Relaxed);
        self.shared.writes.fetch_add(events.len() as u64, Ordering::Relaxed);
        self.shared.compacted.store(counters.compacted, Ordering::Release);
        self.shared.revision.store(counters.revision, Ordering::Release);
        for event in events {
            // No receivers is fine: nobody is watching.
            let _ = self.live.send(Arc::new(event));
        }
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            // The caller may have given up waiting; the write stands regardless.
            let _ = request.reply.send(outcome);
        }
    }
}

/// Applies one request inside the batch transaction. The outer error is a database error
/// (fails the batch); the inner one is this request's own failure.
fn apply(
    conn: &Connection,
    counters: &mut Counters,
    op: &Op,
    events: &mut Vec<Event>,
    incremental_vacuum: bool,
) -> rusqlite::Result<Result<Outcome>> {
    match op {
        Op::Create { key, value } => {
            if current(conn, key)?.is_some() {
                return Ok(Err(Error::AlreadyExists(key.clone())));
            }
            let revision = counters.revision + 1;
            let kv =
                KeyValue { key: key.clone(), value: value.clone(), create_revision: revision, mod_revision: revision };
            append(conn, &kv, 0, false)?;
            set_current(conn, key, revision)?;
            counters.revision = revision;
            events.push(Event { kind: EventKind::Put, kv: kv.clone(), prev: None });
            Ok(Ok(Outcome::Kv(kv)))
        }
        Op::Update { key, value, expected } => {
            let Some(prev) = current(conn, key)? else {
                return Ok(Err(Error::NotFound(key.clone())));
            };
            if prev.mod_revision != *expected {
                return Ok(Err(Error::Conflict { key: key.clone(), current: Some(prev) }));
            }
            let revision = counters.revision + 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: revision,
            };
            append(conn, &kv, prev.mod_revision, false)?;
            set_current(conn, key, revision)?;
            counters.revision = revision;
            events.push(Event { kind: EventKind::Put, kv: kv.clone(), prev: Some(prev) });
            Ok(Ok(Outcome::Kv(kv)))
        }
        Op::Delete { key, expected } => {
            let Some(prev) = current(conn, key)? else {
                return Ok(Err(Error::NotFound(key.clone())));
            };
            if expected.is_some_and(|expected| expected != prev.mod_revision) {
                return Ok(Err(Error::Conflict { key: key.clone(), current: Some(prev) }));
            }
            let revision = counters.revision + 1;
            let kv = KeyValue { mod_revision: revision, ..prev.clone() };
            append(conn, &kv, prev.mod_revision, true)?;
            conn.prepare_cached("DELETE FROM current WHERE key = ?1")?.execute(params![key.as_bytes()])?;
            counters.revision = revision;
            events.push(Event { kind: EventKind::Delete, kv: kv.clone(), prev: Some(prev) });
            Ok(Ok(Outcome::Kv(kv)))
        }
        Op::SetCompacted { revision } => {
            if *revision > counters.revision {
                return Ok(Err(Error::FutureRevision { requested: *revision, current: counters.revision }));
            }
            let moves = *revision > counters.compacted;
            if moves {
                counters.compacted = *revision;
            }
            Ok(Ok(Outcome::Compacting(moves)))
        }
        Op::CompactStep { revision, after } => compact_step(conn, *revision, *after).map(Ok),
        Op::Vacuum => {
            if incremental_vacuum {
                vacuum(conn)?;
            }
            Ok(Ok(Outcome::Done))
        }
    }
}

/// The live value of `key`, as this transaction sees it.
fn current(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached(
        "SELECT l.value, l.create_revision, l.revision
         FROM current c JOIN log l ON l.revision = c.revision
         WHERE c.key = ?1",
    )?
    .query_row(params![key.as_bytes()], |row| {
        Ok(KeyValue {
            key: key.to_owned(),
            value: Bytes::from(row.get::<_, Vec<u8>>(0)?),
            create_revision: row.get(1)?,
            mod_revision: row.get(2)?,
        })
    })
    .optional()
}

fn append(conn: &Connection, kv: &KeyValue, prev_revision: Revision, deleted: bool) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (revision, key, value, create_revision, prev_revision, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        kv.mod_revision,
        kv.key.as_bytes(),
        kv.value.as_ref(),
        kv.create_revision,
        prev_revision,
        deleted,
    ])?;
    Ok(())
}

fn set_current(conn: &Connection, key: &str, revision: Revision) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO current (key, revision) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET revision = excluded.revision",
    )?
    .execute(params![key.as_bytes(), revision])?;
    Ok(())
}

/// Deletes, among the next [`COMPACT_STEP_ROWS`] log rows after `after` (and at most
/// `revision`), those no read at or above `revision` can need: rows superseded by a newer
/// row of the same key at or below `revision`, and tombstones.
///
/// Steps go in ascending revision order, so a key's older rows are gone before its
/// tombstone is: a reader at or above `revision` never sees a deleted key come back.
fn compact_step(conn: &Connection, revision: Revision, after: Revision) -> rusqlite::Result<Outcome> {
    let window_end: Option<Revision> = conn
        .prepare_cached(
            "SELECT MAX(revision) FROM (
                 SELECT revision FROM log WHERE revision > ?1 AND revision <= ?2
                 ORDER BY revision LIMIT ?3)",
        )?
        .query_row(params![after, revision, COMPACT_STEP_ROWS], |row| row.get(0))?;
    let Some(window_end) = window_end else {
        return Ok(Outcome::Step(None));
    };
    conn.prepare_cached(
        "DELETE FROM log
         WHERE revision > ?1 AND revision <= ?2
           AND (deleted != 0 OR EXISTS (
               SELECT 1 FROM log newer
               WHERE newer.key = log.key
                 AND newer.revision > log.revision AND newer.revision <= ?3))",
    )?
    .execute(params![after, window_end, revision])?;
    Ok(Outcome::Step(Some(window_end)))
}

/// Free pages are reused by later writes, so a reserve of them is worth keeping (giving
/// them back only to grow the file again is wasted work). But after a large deletion (a
/// compaction that removed most of the history) give the excess back to the file system,
/// keeping a reserve of a quarter of the pages in use (at least [`MIN_FREE_PAGES`]).
/// Acting only past twice the reserve keeps small compactions from vacuuming every time.
fn vacuum(conn: &Connection) -> rusqlite::Result<()> {
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let reserve = ((pages - free) / 4).max(MIN_FREE_PAGES);
    if free > 2 * reserve {
        let release = free - reserve;
        // The pragma frees one page per step: run it to completion.
        let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({release})"))?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
    }
    Ok(())
}
