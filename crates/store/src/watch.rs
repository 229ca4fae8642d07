//! The watch stream both backends hand out.
//!
//! A watcher is a pull-based state machine, not a task: it holds a receiver on the
//! backend's live broadcast channel and a handle to read history. Nothing is buffered per
//! watcher beyond one history page; the broadcast channel is a fixed-size ring shared by
//! every watcher, so a watcher that is not polled never blocks writers and never makes
//! memory grow.
//!
//! Protocol, which is what makes the switch from history to live events exact:
//! 1. the backend subscribes to the live channel *before* the stream reads any history;
//! 2. the stream reads history pages (revision > last emitted) until a short page says it
//!    reached the head as of that read;
//! 3. it then forwards live events, dropping any whose revision it already emitted.
//!
//! Every event committed after the subscription is in the channel, and every event
//! committed before it is in history, so nothing is missed; the revision check removes
//! the overlap. When the watcher falls so far behind that the ring overwrote events it
//! had not read (`Lagged`), it goes back to step 2 from its last emitted revision: it
//! catches up from history instead of failing. Only when that history has been compacted
//! does the stream end, with [`Error::Compacted`], the "relist" signal Kubernetes clients
//! understand. Events are never lost silently.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::{Error, Event, Result, Revision, WatchStream};

/// How many history events a watcher reads at a time while catching up.
pub(crate) const HISTORY_PAGE: usize = 256;

/// Default capacity of a backend's live broadcast ring (events, shared by all watchers).
pub(crate) const DEFAULT_LIVE_CAPACITY: usize = 1024;

pub(crate) type HistoryFuture = Pin<Box<dyn Future<Output = Result<Vec<Event>>> + Send>>;

/// Read access to a backend's event history.
pub(crate) trait History: Send + Sync + 'static {
    /// Up to `limit` events for keys under `prefix` with revision > `after`, in revision
    /// order. Fails with [`Error::Compacted`] when `after` is below the compacted revision
    /// (some of those events may be gone).
    fn events_after(&self, prefix: &str, after: Revision, limit: usize) -> HistoryFuture;
}

/// Builds the stream for a watch on `prefix` after revision `after`. `live` must have been
/// subscribed before this call reads any history (see the module docs).
pub(crate) fn stream(
    history: Arc<dyn History>,
    live: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    after: Revision,
) -> WatchStream {
    let watcher =
        Watcher { history, live, prefix, last: after, pending: VecDeque::new(), catching_up: true, done: false };
    futures::stream::unfold(watcher, |mut watcher| async move {
        let item = watcher.next().await?;
        Some((item, watcher))
    })
    .boxed()
}

struct Watcher {
    history: Arc<dyn History>,
    live: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    /// Revision of the last event emitted (or the watch's start revision).
    last: Revision,
    /// The rest of the current history page.
    pending: VecDeque<Event>,
    /// Reading history rather than the live channel.
    catching_up: bool,
    /// An error ended the stream.
    done: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                self.last = event.revision();
                return Some(Ok(event));
            }
            if self.catching_up {
                match self.history.events_after(&self.prefix, self.last, HISTORY_PAGE).await {
                    Ok(page) => {
                        // A short page means history had nothing more at the time it was
                        // read; anything newer is in the live channel.
                        self.catching_up = page.len() >= HISTORY_PAGE;
                        self.pending.extend(page);
                    }
                    Err(err) => return self.fail(err),
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) => {
                    if event.revision() > self.last && event.kv.key.starts_with(&self.prefix) {
                        self.last = event.revision();
                        return Some(Ok(Event::clone(&event)));
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::debug!(
                        prefix = %self.prefix,
                        last = self.last,
                        skipped,
                        "watcher fell behind the live channel; catching up from history"
                    );
                    self.catching_up = true;
                }
                Err(RecvError::Closed) => return self.fail(Error::Closed),
            }
        }
    }

    fn fail(&mut self, err: Error) -> Option<Result<Event>> {
        self.done = true;
        self.pending.clear();
        Some(Err(err))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::{EventKind, KeyValue};

    fn event(revision: Revision) -> Event {
        let kv = KeyValue {
            key: format!("/k/{revision}"),
            value: Bytes::new(),
            create_revision: revision,
            mod_revision: revision,
        };
        Event { kind: EventKind::Put, kv, prev: None }
    }

    /// A fake backend: `log` is what history returns; `racer`, if set, is committed (logged
    /// and published) right after the next history read took its snapshot, the way a
    /// write can land between a watcher's history read and its first live receive.
    struct Fake {
        log: Mutex<Vec<Event>>,
        live: broadcast::Sender<Arc<Event>>,
        racer: Mutex<Option<Event>>,
    }

    impl Fake {
        fn new(capacity: usize) -> Arc<Self> {
            let (live, _) = broadcast::channel(capacity);
            Arc::new(Self { log: Mutex::new(Vec::new()), live, racer: Mutex::new(None) })
        }

        fn commit(&self, event: Event) {
            self.log.lock().unwrap().push(event.clone());
            let _ = self.live.send(Arc::new(event));
        }
    }

    impl History for Fake {
        fn events_after(&self, prefix: &str, after: Revision, limit: usize) -> HistoryFuture {
            let page: Vec<Event> = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e.revision() > after && e.kv.key.starts_with(prefix))
                .take(limit)
                .cloned()
                .collect();
            if let Some(racer) = self.racer.lock().unwrap().take() {
                self.commit(racer);
            }
            Box::pin(std::future::ready(Ok(page)))
        }
    }

    async fn take(stream: &mut WatchStream, n: usize) -> Vec<Revision> {
        let mut revisions = Vec::new();
        for _ in 0..n {
            let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
            revisions.push(next.expect("hung").expect("ended").expect("error").revision());
        }
        revisions
    }

    async fn assert_quiet(stream: &mut WatchStream) {
        let next = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(next.is_err(), "unexpected {next:?}");
    }

    #[tokio::test]
    async fn a_write_racing_the_history_read_is_delivered_once() {
        let fake = Fake::new(16);
        for revision in 1..=3 {
            fake.commit(event(revision));
        }
        *fake.racer.lock().unwrap() = Some(event(4));
        let mut stream = stream(fake.clone(), fake.live.subscribe(), "/k/".into(), 0);
        // 1..=3 come from history and again from the ring (deduplicated); 4 was committed
        // after the history snapshot and comes only from the ring.
        assert_eq!(take(&mut stream, 4).await, [1, 2, 3, 4]);
        assert_quiet(&mut stream).await;
    }

    #[tokio::test]
    async fn a_lagging_watcher_catches_up_from_history() {
        let fake = Fake::new(2);
        fake.commit(event(1));
        let mut stream = stream(fake.clone(), fake.live.subscribe(), "/k/".into(), 0);
        assert_eq!(take(&mut stream, 1).await, [1]);
        // Far more than the ring holds while nobody polls.
        for revision in 2..=(2 + HISTORY_PAGE as Revision * 2) {
            fake.commit(event(revision));
        }
        let expected: Vec<Revision> = (2..=(2 + HISTORY_PAGE as Revision * 2)).collect();
        assert_eq!(take(&mut stream, expected.len()).await, expected);
        assert_quiet(&mut stream).await;
        fake.commit(event(1000));
        assert_eq!(take(&mut stream, 1).await, [1000]);
    }

    #[tokio::test]
    async fn a_closed_channel_ends_the_stream_with_an_error() {
        let fake = Fake::new(4);
        let (live, receiver) = broadcast::channel(4);
        let mut stream = stream(fake, receiver, String::new(), 0);
        drop(live);
        assert!(matches!(stream.next().await, Some(Err(Error::Closed))));
        assert!(stream.next().await.is_none());
    }
}
