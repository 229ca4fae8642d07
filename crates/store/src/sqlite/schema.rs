//! Database layout, connection tuning and recovery on open.
//!
//! Tables:
//! - `log`: one row per revision, the history. A delete is a tombstone row that keeps
//!   the deleted value (so its watch event and `prev` need no extra lookup). A put's
//!   `prev_revision` names the row it replaced (0 for a create), which compaction never
//!   removes while the put is newer than the compacted revision: it is the latest row at
//!   or below it for that key.
//! - `current`: key → revision of its live row. It makes get and current-revision range
//!   reads index lookups instead of "latest row per key" scans of history; it holds no
//!   value, so values are stored once.
//! - `meta`: `revision` (the last revision, written with every batch, so the revision
//!   survives even when compaction empties `log`) and `compacted`.
//!
//! Keys are BLOBs compared bytewise, so prefix bounds need not be valid UTF-8
//! (see [`crate::keys::prefix_end`]).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::backend;
use crate::{Error, Result, Revision};

/// Bumped when the layout changes incompatibly.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             BLOB    NOT NULL,
    value           BLOB    NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    deleted         INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS current (
    key      BLOB    PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Page cache of the writer connection, in KiB. Writes touch the right edge of `log`, the
/// key index and `current`; a few MB covers that for typical clusters, and the whole
/// server has to idle small.
const WRITER_CACHE_KIB: i64 = 4096;
/// Page cache of each reader connection, in KiB.
const READER_CACHE_KIB: i64 = 1024;
/// How long a connection waits on a lock before failing. With one writer and WAL readers
/// there is no contention in normal operation; this covers checkpoints and other
/// processes opening the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Checkpoint the WAL into the database after this many pages (SQLite's default, 4 MB
/// with 4 KiB pages).
const WAL_AUTOCHECKPOINT_PAGES: i64 = 1000;
/// After a checkpoint the WAL file is truncated back to at most this size, so a burst
/// does not leave a huge WAL behind.
const JOURNAL_SIZE_LIMIT: i64 = 8 * 1024 * 1024;

/// What the database says about revisions when opened.
#[derive(Clone, Copy, Debug)]
pub(super) struct Recovered {
    pub revision: Revision,
    pub compacted: Revision,
    /// `auto_vacuum=INCREMENTAL` is in effect (only possible for databases created by us).
    pub incremental_vacuum: bool,
}

/// Opens (creating if needed) the database for the writer thread, sets it up durably and
/// reads back the revisions.
pub(super) fn open_writer(path: &Path) -> Result<(Connection, Recovered)> {
    let conn = Connection::open(path).map_err(backend)?;
    setup_writer(path, &conn)?;
    let recovered = recover(&conn).map_err(backend)?;
    Ok((conn, recovered))
}

fn setup_writer(path: &Path, conn: &Connection) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(backend)?;
    // Must precede the first table: it decides the file's layout. A no-op on databases
    // that already have tables.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(backend)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Backend(format!("could not switch {} to WAL (journal_mode is {mode})", path.display())));
    }
    // FULL: every commit fsyncs the WAL, so an acknowledged write survives power loss.
    conn.pragma_update(None, "synchronous", "FULL").map_err(backend)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES).map_err(backend)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT).map_err(backend)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(backend)?;

    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(Error::Backend(format!(
            "{} has schema version {version}; this build knows up to {SCHEMA_VERSION}",
            path.display()
        )));
    }
    conn.execute_batch(SCHEMA).map_err(backend)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(backend)?;
    Ok(())
}

/// Opens a read connection. The writer must have opened (and so created and set up) the
/// database first.
pub(super) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    Ok(conn)
}

fn recover(conn: &Connection) -> rusqlite::Result<Recovered> {
    let logged: Option<Revision> = conn.query_row("SELECT MAX(revision) FROM log", [], |r| r.get(0))?;
    let recorded = read_meta(conn, "revision")?.unwrap_or(0);
    let compacted = read_meta(conn, "compacted")?.unwrap_or(0);
    let auto_vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    Ok(Recovered {
        // Never go backwards: take whichever of the two is newer.
        revision: logged.unwrap_or(0).max(recorded),
        compacted,
        incremental_vacuum: auto_vacuum == 2,
    })
}

pub(super) fn read_meta(conn: &Connection, name: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?.query_row(params![name], |r| r.get(0)).optional()
}

pub(super) fn write_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}
