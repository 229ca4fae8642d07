//! Behaviour specific to the SQLite backend: durability across reopen and crash, group
//! commit, and a database file that stops growing under churn.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{b, next_events, PATIENCE};
use futures::future::join_all;
use skiff_store::sqlite::{SqliteOptions, SqliteStore};
use skiff_store::{Error, Event, RangeRequest, Store};

fn everything() -> RangeRequest {
    RangeRequest { prefix: String::new(), ..RangeRequest::default() }
}

async fn all_events(store: &SqliteStore, after: i64) -> Vec<Event> {
    let current = store.current_revision().await.unwrap();
    let mut stream = store.watch("", after).await.unwrap();
    next_events(&mut stream, (current - after) as usize).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_recovers_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (before, revision, history) = {
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        // Concurrent creates, then updates and deletes, all acknowledged.
        let creates = join_all((0..100).map(|i| {
            let store = Arc::clone(&store);
            async move { store.create(&format!("/re/{i:03}"), b(&i.to_string())).await }
        }))
        .await;
        for kv in creates {
            let kv = kv.unwrap();
            let i: usize = kv.key[4..].parse().unwrap();
            match i % 3 {
                0 => drop(store.delete(&kv.key, Some(kv.mod_revision)).await.unwrap()),
                1 => drop(store.update(&kv.key, b("updated"), kv.mod_revision).await.unwrap()),
                _ => {}
            }
        }
        let before = store.range(everything()).await.unwrap();
        let history = all_events(&store, 0).await;
        (before.kvs, before.revision, history)
    };
    assert_eq!(revision, 100 + 67);

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), revision);
    let after = store.range(everything()).await.unwrap();
    assert_eq!(after.revision, revision);
    assert_eq!(after.kvs, before);
    // History survives too: a watch from 0 replays exactly the same events.
    assert_eq!(all_events(&store, 0).await, history);
    // And revisions carry on.
    let next = store.create("/re/new", b("n")).await.unwrap();
    assert_eq!(next.mod_revision, revision + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_never_goes_backwards_even_when_compaction_emptied_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for i in 0..10 {
            store.create(&format!("/gone/{i}"), b("x")).await.unwrap();
        }
        for i in 0..10 {
            store.delete(&format!("/gone/{i}"), None).await.unwrap();
        }
        store.compact(20).await.unwrap();
        // Every row was superseded or a tombstone: the log is empty.
        assert!(store.range(everything()).await.unwrap().kvs.is_empty());
    }
    let rows: i64 =
        rusqlite::Connection::open(&path).unwrap().query_row("SELECT COUNT(*) FROM log", [], |row| row.get(0)).unwrap();
    assert_eq!(rows, 0, "compaction should have emptied the log");

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), 20);
    assert_eq!(store.compacted_revision().await.unwrap(), 20);
    assert!(matches!(
        store.range(RangeRequest { revision: Some(19), ..everything() }).await,
        Err(Error::Compacted { requested: 19, compacted: 20 })
    ));
    let at_20 = store.range(RangeRequest { revision: Some(20), ..everything() }).await.unwrap();
    assert!(at_20.kvs.is_empty());
    let mut stream = store.watch("/gone/", 20).await.unwrap();
    let kv = store.create("/gone/0", b("again")).await.unwrap();
    assert_eq!(kv.mod_revision, 21);
    assert_eq!(kv.create_revision, 21);
    assert_eq!(next_events(&mut stream, 1).await[0].kv, kv);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_commits() {
    const WRITERS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    let results = join_all((0..WRITERS).map(|i| {
        let store = Arc::clone(&store);
        async move { store.create(&format!("/gc/{i:04}"), b("x")).await }
    }))
    .await;
    let mut revisions: Vec<_> = results.into_iter().map(|r| r.unwrap().mod_revision).collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=WRITERS as i64).collect::<Vec<_>>());
    let stats = store.stats();
    assert_eq!(stats.writes, WRITERS as u64);
    assert!(
        stats.commits * 4 <= stats.writes,
        "expected group commits, got {} commits for {} writes",
        stats.commits,
        stats.writes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_fail_alone_within_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
    // 50 creates of one key interleaved with 50 creates of distinct keys, queued at once
    // so they share batches: exactly one of the contested ones wins, the rest all do.
    let results = join_all((0..100).map(|i| {
        let store = Arc::clone(&store);
        let key = if i % 2 == 0 { "/batch/same".to_owned() } else { format!("/batch/{i}") };
        async move { (i, store.create(&key, b(&i.to_string())).await) }
    }))
    .await;
    let mut contested_wins = 0;
    for (i, result) in results {
        match (i % 2, result) {
            (0, Ok(_)) => contested_wins += 1,
            (0, Err(Error::AlreadyExists(key))) => assert_eq!(key, "/batch/same"),
            (_, Ok(_)) => {}
            (_, other) => panic!("request {i}: {other:?}"),
        }
    }
    assert_eq!(contested_wins, 1);
    assert_eq!(store.current_revision().await.unwrap(), 51);
    assert!(store.stats().commits < 51, "the requests should have shared commits");
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_size_stabilises_under_churn_with_compaction() {
    const KEYS: usize = 200;
    const ROUNDS: usize = 12;
    const UPDATES_PER_ROUND: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let value = bytes::Bytes::from(vec![b'v'; 1024]);
    for i in 0..KEYS {
        store.create(&format!("/churn/{i:03}"), value.clone()).await.unwrap();
    }
    let (mut sizes, mut wal_sizes) = (Vec::new(), Vec::new());
    for _round in 0..ROUNDS {
        for _ in 0..UPDATES_PER_ROUND {
            let kvs = store.range(everything()).await.unwrap().kvs;
            let updates = join_all(kvs.into_iter().map(|kv| {
                let store = Arc::clone(&store);
                let value = value.clone();
                async move { store.update(&kv.key, value, kv.mod_revision).await }
            }))
            .await;
            for update in updates {
                update.unwrap();
            }
        }
        let current = store.current_revision().await.unwrap();
        store.compact(current).await.unwrap();
        sizes.push(file_bytes(&path));
        wal_sizes.push(file_bytes(&path.with_extension("db-wal")));
    }
    // Each round writes ~600 KiB of new rows; without reuse of freed pages the database
    // would grow by that much every round. With compaction it plateaus once the WAL has
    // been checkpointed into it a few times.
    let settled = sizes[3];
    let last = sizes[ROUNDS - 1];
    assert!(last <= settled + settled / 4 + 128 * 1024, "database kept growing: sizes per round {sizes:?}");
    // The WAL is reused from its start after each checkpoint: it stays near the
    // autocheckpoint size (4 MB) instead of growing.
    assert!(wal_sizes.iter().all(|&size| size < 12 * 1024 * 1024), "WAL kept growing: sizes per round {wal_sizes:?}");
    // And the live data is intact.
    let kvs = store.range(everything()).await.unwrap().kvs;
    assert_eq!(kvs.len(), KEYS);
    assert!(kvs.iter().all(|kv| kv.value == value));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_and_compaction_run_together_without_lock_errors() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions { readers: 2, ..SqliteOptions::default() };
    let store = Arc::new(SqliteStore::open_with(&dir.path().join("store.db"), options).unwrap());
    let writers = (0..4).map(|w| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..100 {
                let key = format!("/mix/{w}/{}", i % 10);
                match store.get(&key).await.unwrap() {
                    None => store.create(&key, b("x")).await.map(drop),
                    Some(kv) => store.update(&key, b(&i.to_string()), kv.mod_revision).await.map(drop),
                }
                .unwrap();
            }
        })
    });
    let readers = (0..4).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..100 {
                let page = store.range(everything()).await.unwrap();
                // A page is a consistent snapshot: nothing newer than its revision.
                assert!(page.kvs.iter().all(|kv| kv.mod_revision <= page.revision));
            }
        })
    });
    let compactor = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..20 {
                let current = store.current_revision().await.unwrap();
                store.compact(current).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let all = join_all(writers.chain(readers).chain([compactor]));
    for task in tokio::time::timeout(PATIENCE, all).await.unwrap() {
        task.unwrap();
    }
    assert_eq!(store.current_revision().await.unwrap(), 400);
}

/// Environment variable that turns [`crash_child_writer`] into the child process of
/// [`acknowledged_writes_survive_kill_9`].
const CRASH_DB: &str = "SKIFF_STORE_CRASH_TEST_DB";

/// Not a test by itself: when run as the child of `acknowledged_writes_survive_kill_9`,
/// writes keys until it is killed, printing each acknowledged one.
#[test]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(CRASH_DB) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = Arc::new(SqliteStore::open(Path::new(&path)).unwrap());
        let (acks, mut acked) = tokio::sync::mpsc::unbounded_channel();
        // Several concurrent writers, so batches are in flight when the kill lands.
        for writer in 0..8 {
            let store = Arc::clone(&store);
            let acks = acks.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{writer}/{i:06}");
                    let kv = store.create(&key, b("x")).await.unwrap();
                    if acks.send((key, kv.mod_revision)).is_err() {
                        return;
                    }
                }
            });
        }
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        while let Some((key, revision)) = acked.recv().await {
            writeln!(out, "acked {key} {revision}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 300 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(rest) = line.strip_prefix("acked ") {
            let (key, revision) = rest.split_once(' ').unwrap();
            acked.push((key.to_owned(), revision.parse::<i64>().unwrap()));
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no final checkpoint
    child.wait().unwrap();
    // Lines written before the kill are acknowledged writes too.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("acked ") {
            if let Some((key, revision)) = rest.split_once(' ') {
                if let Ok(revision) = revision.parse() {
                    acked.push((key.to_owned(), revision));
                }
            }
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        let newest = acked.iter().map(|(_, revision)| *revision).max().unwrap();
        assert!(store.current_revision().await.unwrap() >= newest);
        for (key, revision) in &acked {
            let kv = store.get(key).await.unwrap();
            assert_eq!(kv.map(|kv| kv.mod_revision), Some(*revision), "lost {key}");
        }
        // The recovered store is consistent and writable.
        let all = store.range(everything()).await.unwrap();
        assert!(all.kvs.len() >= acked.len());
        let next = store.create("/after-crash", b("x")).await.unwrap();
        assert_eq!(next.mod_revision, all.revision + 1);
    });
}

fn pages(path: &Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let count = conn.query_row("PRAGMA page_count", [], |row| row.get(0)).unwrap();
    let free = conn.query_row("PRAGMA freelist_count", [], |row| row.get(0)).unwrap();
    (count, free)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_gives_back_space_after_a_mass_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let value = bytes::Bytes::from(vec![b'v'; 2048]);
    let creates = join_all((0..3000).map(|i| {
        let store = Arc::clone(&store);
        let value = value.clone();
        async move { store.create(&format!("/big/{i:04}"), value).await }
    }));
    for kv in creates.await {
        kv.unwrap();
    }
    let (full, _) = pages(&path);
    let deletes = join_all((0..3000).map(|i| {
        let store = Arc::clone(&store);
        async move { store.delete(&format!("/big/{i:04}"), None).await }
    }));
    for kv in deletes.await {
        kv.unwrap();
    }
    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    let (after, free) = pages(&path);
    assert!(full > 1500, "expected a few MB of data, got {full} pages");
    assert!(after * 4 < full, "{full} pages before, {after} after compaction ({free} free)");
    // A reserve of free pages stays for reuse: a quarter of those in use, at least 256.
    assert!(free <= ((after - free) / 4).max(256), "{free} of {after} pages still free");
}
