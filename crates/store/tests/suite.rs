//! The behaviour every [`Store`] backend must have, run against each backend.
//!
//! Each case is a generic async fn taking a constructor; the `suite!` macro instantiates
//! every case once per backend, as `memory::<case>` and `sqlite::<case>`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_quiet, b, next_events, revisions, NewStore, PATIENCE};
use futures::StreamExt;
use skiff_store::{Error, EventKind, KeyValue, RangeRequest};

/// Live-ring capacity for cases that do not test falling behind.
const ROOMY: usize = 1024;

macro_rules! suite {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::cases::$case(super::common::$backend).await;
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($backend:ident) => {
        suite!($backend:
            empty_store_is_at_revision_zero,
            create_get_and_already_exists,
            update_cas_conflict_returns_current,
            delete_cas_conflict_and_unconditional,
            revision_increases_by_one_per_successful_write,
            range_prefix_limit_and_continue,
            range_at_past_revision,
            concurrent_cas_increments_lose_nothing,
            watch_replays_history_then_goes_live,
            watch_resumes_from_any_revision,
            watch_started_while_writer_races_has_no_gaps_or_duplicates,
            watch_sees_only_its_prefix,
            delete_events_carry_last_value,
            compaction_forgets_history_but_keeps_current_values,
            slow_watcher_never_blocks_writers_and_catches_up,
            watcher_behind_compaction_ends_with_compacted,
        );
    };
}

all_cases!(memory);
all_cases!(sqlite);

mod cases {
    use super::*;

    fn range(prefix: &str) -> RangeRequest {
        RangeRequest { prefix: prefix.into(), ..RangeRequest::default() }
    }

    fn keys(kvs: &[KeyValue]) -> Vec<&str> {
        kvs.iter().map(|kv| kv.key.as_str()).collect()
    }

    pub async fn empty_store_is_at_revision_zero(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        assert_eq!(s.current_revision().await.unwrap(), 0);
        assert_eq!(s.compacted_revision().await.unwrap(), 0);
        assert_eq!(s.get("/a").await.unwrap(), None);
        let page = s.range(range("")).await.unwrap();
        assert!(page.kvs.is_empty());
        assert!(!page.more);
        assert_eq!(page.revision, 0);
        let page = s.range(RangeRequest { revision: Some(0), ..range("") }).await.unwrap();
        assert_eq!(page.revision, 0);
        assert!(matches!(
            s.range(RangeRequest { revision: Some(1), ..range("") }).await,
            Err(Error::FutureRevision { requested: 1, current: 0 })
        ));
    }

    pub async fn create_get_and_already_exists(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        let kv = s.create("/a", b("one")).await.unwrap();
        assert_eq!(kv, KeyValue { key: "/a".into(), value: b("one"), create_revision: 1, mod_revision: 1 });
        assert_eq!(s.get("/a").await.unwrap(), Some(kv.clone()));
        match s.create("/a", b("two")).await {
            Err(Error::AlreadyExists(key)) => assert_eq!(key, "/a"),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(s.get("/a").await.unwrap(), Some(kv));
        assert_eq!(s.current_revision().await.unwrap(), 1);
        // Empty values and unusual characters are kept as given.
        let odd = s.create("/ü/ key\u{1F600}", bytes::Bytes::new()).await.unwrap();
        assert_eq!(s.get("/ü/ key\u{1F600}").await.unwrap(), Some(odd));
    }

    pub async fn update_cas_conflict_returns_current(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        let v1 = s.create("/k", b("v1")).await.unwrap();
        let v2 = s.update("/k", b("v2"), v1.mod_revision).await.unwrap();
        assert_eq!(v2.value, b("v2"));
        assert_eq!(v2.create_revision, 1);
        assert_eq!(v2.mod_revision, 2);
        match s.update("/k", b("v3"), v1.mod_revision).await {
            Err(Error::Conflict { key, current }) => {
                assert_eq!(key, "/k");
                assert_eq!(current, Some(v2.clone()));
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
        match s.update("/missing", b("x"), 1).await {
            Err(Error::NotFound(key)) => assert_eq!(key, "/missing"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        assert_eq!(s.get("/k").await.unwrap(), Some(v2));
        assert_eq!(s.current_revision().await.unwrap(), 2);
    }

    pub async fn delete_cas_conflict_and_unconditional(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        let v1 = s.create("/d", b("v1")).await.unwrap();
        let v2 = s.update("/d", b("v2"), v1.mod_revision).await.unwrap();
        match s.delete("/d", Some(v1.mod_revision)).await {
            Err(Error::Conflict { key, current }) => {
                assert_eq!(key, "/d");
                assert_eq!(current, Some(v2.clone()));
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
        let deleted = s.delete("/d", Some(v2.mod_revision)).await.unwrap();
        assert_eq!(deleted, KeyValue { key: "/d".into(), value: b("v2"), create_revision: 1, mod_revision: 3 });
        assert_eq!(s.get("/d").await.unwrap(), None);
        assert!(matches!(s.delete("/d", None).await, Err(Error::NotFound(_))));
        assert!(matches!(s.delete("/d", Some(3)).await, Err(Error::NotFound(_))));

        // Unconditional delete, whatever the revision.
        s.create("/e", b("e")).await.unwrap();
        let gone = s.delete("/e", None).await.unwrap();
        assert_eq!(gone.mod_revision, 5);
        assert_eq!(gone.value, b("e"));

        // Re-creating starts a new life: a new create revision.
        let again = s.create("/d", b("new")).await.unwrap();
        assert_eq!(again.create_revision, 6);
        assert_eq!(again.mod_revision, 6);
    }

    pub async fn revision_increases_by_one_per_successful_write(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        let mut revision = 0;
        for i in 0..30 {
            let key = format!("/seq/{}", i % 4);
            let existing = s.get(&key).await.unwrap();
            // Failed writes do not take a revision.
            match &existing {
                None => {
                    assert!(s.update(&key, b("u"), 1).await.is_err());
                    assert!(s.delete(&key, None).await.is_err());
                }
                Some(kv) => {
                    assert!(s.create(&key, b("c")).await.is_err());
                    assert!(s.update(&key, b("u"), kv.mod_revision + 100).await.is_err());
                    assert!(s.delete(&key, Some(kv.mod_revision - 1)).await.is_err());
                }
            }
            assert_eq!(s.current_revision().await.unwrap(), revision);
            let written = match existing {
                None => s.create(&key, b("c")).await,
                Some(kv) if i % 3 == 0 => s.delete(&key, Some(kv.mod_revision)).await,
                Some(kv) => s.update(&key, b(&i.to_string()), kv.mod_revision).await,
            };
            revision += 1;
            assert_eq!(written.unwrap().mod_revision, revision);
            assert_eq!(s.current_revision().await.unwrap(), revision);
        }
        assert_eq!(s.range(range("/seq/")).await.unwrap().revision, revision);
    }

    pub async fn range_prefix_limit_and_continue(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        for key in ["/r/c", "/r/a", "/rr", "/r/b/x", "/q", "/r/e", "/r/d", "/r", "/s/a"] {
            s.create(key, b(key)).await.unwrap();
        }
        let all = s.range(range("/r/")).await.unwrap();
        assert_eq!(keys(&all.kvs), ["/r/a", "/r/b/x", "/r/c", "/r/d", "/r/e"]);
        assert!(!all.more);
        assert_eq!(all.revision, 9);
        for kv in &all.kvs {
            assert_eq!(kv.value, b(&kv.key));
        }

        // Pages of 2, continuing after the last key of each page.
        let mut seen = Vec::new();
        let mut start_after = None;
        let mut pages = 0;
        loop {
            let page =
                s.range(RangeRequest { limit: 2, start_after: start_after.clone(), ..range("/r/") }).await.unwrap();
            pages += 1;
            assert!(page.kvs.len() <= 2);
            seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
            start_after = page.kvs.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        assert_eq!(seen, ["/r/a", "/r/b/x", "/r/c", "/r/d", "/r/e"]);
        assert_eq!(pages, 3);

        // A page that exactly reaches the end says so.
        let exact = s.range(RangeRequest { limit: 5, ..range("/r/") }).await.unwrap();
        assert_eq!(exact.kvs.len(), 5);
        assert!(!exact.more);
        let cut = s.range(RangeRequest { limit: 4, ..range("/r/") }).await.unwrap();
        assert!(cut.more);

        // start_after before the prefix, and past the end.
        let from_start = s.range(RangeRequest { start_after: Some("/a".into()), ..range("/r/") }).await.unwrap();
        assert_eq!(from_start.kvs.len(), 5);
        let past = s.range(RangeRequest { start_after: Some("/r/z".into()), ..range("/r/") }).await.unwrap();
        assert!(past.kvs.is_empty() && !past.more);

        // The empty prefix is everything, in byte order.
        let everything = s.range(range("")).await.unwrap();
        assert_eq!(keys(&everything.kvs), ["/q", "/r", "/r/a", "/r/b/x", "/r/c", "/r/d", "/r/e", "/rr", "/s/a"]);
        // A prefix that is not a directory matches by bytes.
        let rr = s.range(range("/r")).await.unwrap();
        assert_eq!(rr.kvs.len(), 7);
    }

    pub async fn range_at_past_revision(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        let a1 = s.create("/p/a", b("a1")).await.unwrap(); // 1
        let b2 = s.create("/p/b", b("b2")).await.unwrap(); // 2
        let a3 = s.update("/p/a", b("a3"), 1).await.unwrap(); // 3
        s.delete("/p/b", None).await.unwrap(); // 4
        let c5 = s.create("/p/c", b("c5")).await.unwrap(); // 5
        s.create("/other", b("o")).await.unwrap(); // 6
        let b7 = s.create("/p/b", b("b7")).await.unwrap(); // 7

        let at = |revision| RangeRequest { revision: Some(revision), ..range("/p/") };
        let expect = [
            (0, vec![]),
            (1, vec![a1.clone()]),
            (2, vec![a1.clone(), b2.clone()]),
            (3, vec![a3.clone(), b2.clone()]),
            (4, vec![a3.clone()]),
            (5, vec![a3.clone(), c5.clone()]),
            (6, vec![a3.clone(), c5.clone()]),
            (7, vec![a3.clone(), b7.clone(), c5.clone()]),
        ];
        for (revision, kvs) in expect {
            let page = s.range(at(revision)).await.unwrap();
            assert_eq!(page.kvs, kvs, "at revision {revision}");
            assert_eq!(page.revision, revision);
            assert!(!page.more);
        }
        // Paging works at a past revision too.
        let first = s.range(RangeRequest { limit: 1, ..at(2) }).await.unwrap();
        assert_eq!(first.kvs, vec![a1]);
        assert!(first.more);
        let second = s.range(RangeRequest { limit: 1, start_after: Some("/p/a".into()), ..at(2) }).await.unwrap();
        assert_eq!(second.kvs, vec![b2]);
        assert!(!second.more);
        assert!(matches!(s.range(at(8)).await, Err(Error::FutureRevision { requested: 8, current: 7 })));
    }

    pub async fn concurrent_cas_increments_lose_nothing(new: NewStore) {
        const TASKS: u64 = 32;
        const INCREMENTS: u64 = 10;
        let h = new(ROOMY);
        let s = Arc::clone(&h.store);
        s.create("/counter", b("0")).await.unwrap();
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let mut conflicts = 0u64;
                for _ in 0..INCREMENTS {
                    let mut kv = s.get("/counter").await.unwrap().unwrap();
                    loop {
                        let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        match s.update("/counter", b(&(n + 1).to_string()), kv.mod_revision).await {
                            Ok(_) => break,
                            Err(Error::Conflict { current, .. }) => {
                                conflicts += 1;
                                // Odd tasks retry from the conflict's value, even ones
                                // re-read: both must work.
                                kv = if task % 2 == 1 {
                                    current.expect("counter exists")
                                } else {
                                    s.get("/counter").await.unwrap().unwrap()
                                };
                            }
                            Err(err) => panic!("increment failed: {err}"),
                        }
                    }
                }
                conflicts
            }));
        }
        let mut conflicts = 0;
        for task in tasks {
            conflicts += tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap();
        }
        let kv = s.get("/counter").await.unwrap().unwrap();
        assert_eq!(kv.value, b(&(TASKS * INCREMENTS).to_string()), "{conflicts} conflicts");
        // One revision per successful increment, plus the create.
        assert_eq!(s.current_revision().await.unwrap(), (TASKS * INCREMENTS) as i64 + 1);
        assert_eq!(kv.mod_revision, (TASKS * INCREMENTS) as i64 + 1);
    }

    pub async fn watch_replays_history_then_goes_live(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        let mut live = s.watch("/w/", 0).await.unwrap();
        s.create("/w/a", b("a1")).await.unwrap(); // 1
        s.create("/w/b", b("b1")).await.unwrap(); // 2
        s.update("/w/a", b("a2"), 1).await.unwrap(); // 3
        s.delete("/w/b", Some(2)).await.unwrap(); // 4
        s.create("/w/b", b("b2")).await.unwrap(); // 5

        let mut replay = s.watch("/w/", 0).await.unwrap();
        let replayed = next_events(&mut replay, 5).await;
        assert_eq!(revisions(&replayed), [1, 2, 3, 4, 5]);
        let kinds: Vec<_> = replayed.iter().map(|e| e.kind).collect();
        use EventKind::{Delete, Put};
        assert_eq!(kinds, [Put, Put, Put, Delete, Put]);
        assert_eq!(replayed[0].prev, None);
        assert_eq!(replayed[2].kv.value, b("a2"));
        assert_eq!(replayed[2].kv.create_revision, 1);
        assert_eq!(replayed[2].prev.as_ref().map(|p| (p.value.clone(), p.mod_revision)), Some((b("a1"), 1)));
        assert_eq!(replayed[4].prev, None, "a create after a delete has no previous value");
        assert_eq!(replayed[4].kv.create_revision, 5);

        // Replayed history and live events are the same events.
        let seen_live = next_events(&mut live, 5).await;
        assert_eq!(replayed, seen_live);

        // Both go on with live events.
        s.update("/w/b", b("b3"), 5).await.unwrap(); // 6
        for stream in [&mut live, &mut replay] {
            let next = next_events(stream, 1).await;
            assert_eq!(revisions(&next), [6]);
            assert_eq!(next[0].kv.value, b("b3"));
            assert_eq!(next[0].prev.as_ref().map(|p| p.value.clone()), Some(b("b2")));
            assert_quiet(stream).await;
        }
    }

    pub async fn watch_resumes_from_any_revision(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        for i in 0..20 {
            s.create(&format!("/res/{i:02}"), b("x")).await.unwrap();
        }
        for after in [0, 1, 7, 19, 20] {
            let mut stream = s.watch("/res/", after).await.unwrap();
            let events = next_events(&mut stream, (20 - after) as usize).await;
            assert_eq!(revisions(&events), ((after + 1)..=20).collect::<Vec<_>>());
            assert_quiet(&mut stream).await;
        }
        // Watching from the future starts when the store gets there.
        let mut ahead = s.watch("/res/", 21).await.unwrap();
        s.create("/res/20", b("x")).await.unwrap(); // 21: not after 21
        s.create("/res/21", b("x")).await.unwrap(); // 22
        assert_eq!(revisions(&next_events(&mut ahead, 1).await), [22]);
    }

    pub async fn watch_started_while_writer_races_has_no_gaps_or_duplicates(new: NewStore) {
        const WRITES: i64 = 300;
        let h = new(ROOMY);
        let s = Arc::clone(&h.store);
        let writer = {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                for i in 0..WRITES {
                    let key = format!("/race/{}", i % 7);
                    match s.get(&key).await.unwrap() {
                        None => s.create(&key, b("c")).await.unwrap(),
                        Some(kv) if i % 5 == 0 => s.delete(&key, Some(kv.mod_revision)).await.unwrap(),
                        Some(kv) => s.update(&key, b(&i.to_string()), kv.mod_revision).await.unwrap(),
                    };
                    // Spread the writes over the time the watchers start.
                    if i % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            })
        };
        // Start watchers at whatever revision the store is at, while it is being written.
        let mut watchers = Vec::new();
        for round in 0..12 {
            let after = if round == 0 { 0 } else { s.current_revision().await.unwrap() };
            let stream = s.watch("/race/", after).await.unwrap();
            watchers.push((after, stream));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::timeout(PATIENCE, writer).await.unwrap().unwrap();
        assert_eq!(s.current_revision().await.unwrap(), WRITES);
        for (after, mut stream) in watchers {
            let events = next_events(&mut stream, (WRITES - after) as usize).await;
            assert_eq!(revisions(&events), ((after + 1)..=WRITES).collect::<Vec<_>>(), "watch after {after}");
            assert_quiet(&mut stream).await;
        }
    }

    pub async fn watch_sees_only_its_prefix(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        s.create("/a/old", b("1")).await.unwrap(); // 1
        s.create("/b/old", b("2")).await.unwrap(); // 2
        let mut replayed = s.watch("/a/", 0).await.unwrap();
        let mut live = s.watch("/a/", 2).await.unwrap();
        s.create("/ab", b("3")).await.unwrap(); // 3: shares bytes, not the prefix
        s.create("/b/x", b("4")).await.unwrap(); // 4
        s.create("/a/x", b("5")).await.unwrap(); // 5
        s.create("/a", b("6")).await.unwrap(); // 6
        s.delete("/b/x", None).await.unwrap(); // 7
        s.delete("/a/x", None).await.unwrap(); // 8
        let events = next_events(&mut replayed, 3).await;
        assert_eq!(revisions(&events), [1, 5, 8]);
        assert_quiet(&mut replayed).await;
        let events = next_events(&mut live, 2).await;
        assert_eq!(revisions(&events), [5, 8]);
        assert!(events.iter().all(|e| e.kv.key.starts_with("/a/")));
        assert_quiet(&mut live).await;
    }

    pub async fn delete_events_carry_last_value(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        s.create("/del/k", b("v1")).await.unwrap(); // 1
        let v2 = s.update("/del/k", b("v2"), 1).await.unwrap(); // 2
        let mut live = s.watch("/del/", 2).await.unwrap();
        let deleted = s.delete("/del/k", None).await.unwrap(); // 3
        let event = next_events(&mut live, 1).await.remove(0);
        assert_eq!(event.kind, EventKind::Delete);
        assert_eq!(event.kv, KeyValue { key: "/del/k".into(), value: b("v2"), create_revision: 1, mod_revision: 3 });
        assert_eq!(event.kv, deleted);
        assert_eq!(event.prev, Some(v2));
        // History says the same.
        let mut replay = s.watch("/del/", 2).await.unwrap();
        assert_eq!(next_events(&mut replay, 1).await, vec![event]);
    }

    pub async fn compaction_forgets_history_but_keeps_current_values(new: NewStore) {
        let h = new(ROOMY);
        let s = &h.store;
        s.create("/c/a", b("a1")).await.unwrap(); // 1
        s.create("/c/b", b("b1")).await.unwrap(); // 2
        s.update("/c/a", b("a2"), 1).await.unwrap(); // 3
        s.create("/c/gone", b("g")).await.unwrap(); // 4
        s.delete("/c/gone", None).await.unwrap(); // 5
        s.update("/c/a", b("a3"), 3).await.unwrap(); // 6
        let snapshot_5 = s.range(RangeRequest { revision: Some(5), ..range("/c/") }).await.unwrap().kvs;
        let current = s.range(range("/c/")).await.unwrap().kvs;

        s.compact(5).await.unwrap();
        assert_eq!(s.compacted_revision().await.unwrap(), 5);
        assert_eq!(s.current_revision().await.unwrap(), 6);

        // Older reads and watches fail.
        assert!(matches!(
            s.range(RangeRequest { revision: Some(4), ..range("/c/") }).await,
            Err(Error::Compacted { requested: 4, compacted: 5 })
        ));
        assert!(matches!(s.watch("/c/", 4).await.map(|_| ()), Err(Error::Compacted { requested: 4, compacted: 5 })));
        assert!(matches!(s.watch("/c/", 0).await.map(|_| ()), Err(Error::Compacted { .. })));

        // The compacted revision itself is still readable and watchable.
        let at_5 = s.range(RangeRequest { revision: Some(5), ..range("/c/") }).await.unwrap();
        assert_eq!(at_5.kvs, snapshot_5);
        let mut stream = s.watch("/c/", 5).await.unwrap();
        let events = next_events(&mut stream, 1).await;
        assert_eq!(revisions(&events), [6]);
        assert_eq!(events[0].prev.as_ref().map(|p| p.value.clone()), Some(b("a2")));

        // Current values survive, including ones last written at or before the compaction.
        assert_eq!(s.range(range("/c/")).await.unwrap().kvs, current);
        assert_eq!(s.get("/c/b").await.unwrap().map(|kv| kv.mod_revision), Some(2));
        assert_eq!(s.get("/c/gone").await.unwrap(), None);

        // Compacting to the current revision leaves the current values readable there.
        s.compact(6).await.unwrap();
        let at_6 = s.range(RangeRequest { revision: Some(6), ..range("/c/") }).await.unwrap();
        assert_eq!(at_6.kvs, current);
        // Compacting backwards changes nothing; compacting the future is refused.
        s.compact(3).await.unwrap();
        assert_eq!(s.compacted_revision().await.unwrap(), 6);
        assert!(matches!(s.compact(7).await, Err(Error::FutureRevision { requested: 7, current: 6 })));
        // Writes carry on from there.
        let next = s.update("/c/b", b("b2"), 2).await.unwrap();
        assert_eq!(next.mod_revision, 7);
        assert_eq!(next.create_revision, 2);
        assert_eq!(revisions(&next_events(&mut stream, 1).await), [7]);
    }

    pub async fn slow_watcher_never_blocks_writers_and_catches_up(new: NewStore) {
        const WRITES: i64 = 600;
        // A live ring of 8 events: the watcher below falls far behind it.
        let h = new(8);
        let s = Arc::clone(&h.store);
        s.create("/slow/first", b("x")).await.unwrap();
        let mut slow = s.watch("/slow/", 0).await.unwrap();
        // One event read: the watcher has replayed history and follows the live ring.
        assert_eq!(revisions(&next_events(&mut slow, 1).await), [1]);
        // Writers finish although nobody reads the watch.
        let writes = futures::future::join_all((0..WRITES).map(|i| {
            let s = Arc::clone(&s);
            async move { s.create(&format!("/slow/{i:04}"), b("x")).await }
        }));
        for result in tokio::time::timeout(PATIENCE, writes).await.expect("writers blocked") {
            result.unwrap();
        }
        // Then the watcher gets every event, in order, once.
        let events = next_events(&mut slow, WRITES as usize).await;
        assert_eq!(revisions(&events), (2..=WRITES + 1).collect::<Vec<_>>());
        assert_quiet(&mut slow).await;
        // And it is live again.
        s.create("/slow/last", b("x")).await.unwrap();
        assert_eq!(revisions(&next_events(&mut slow, 1).await), [WRITES + 2]);
    }

    pub async fn watcher_behind_compaction_ends_with_compacted(new: NewStore) {
        let h = new(8);
        let s = &h.store;
        s.create("/lag/start", b("x")).await.unwrap(); // 1
        let mut stream = s.watch("/lag/", 0).await.unwrap();
        assert_eq!(revisions(&next_events(&mut stream, 1).await), [1]);
        for i in 0..50 {
            s.create(&format!("/lag/{i}"), b("x")).await.unwrap();
        }
        s.compact(30).await.unwrap();
        // The ring overflowed while nobody polled, and the history needed to catch up
        // is gone: the watcher must relist.
        match tokio::time::timeout(PATIENCE, stream.next()).await.expect("hung") {
            Some(Err(Error::Compacted { requested, compacted })) => {
                assert_eq!(requested, 1);
                assert_eq!(compacted, 30);
            }
            other => panic!("expected Compacted, got {other:?}"),
        }
        assert!(stream.next().await.is_none(), "the error ends the stream");
    }
}
