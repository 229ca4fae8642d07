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
    let watcher = Watcher {
        history,
        live,
        prefix,
        last: after,
        pending: VecDeque::new(),
        catching_up: true,
        done: false,
    };
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
                match self
                    .history
                    .events_after(&self.prefix, self.last, HISTORY_PAGE)
                    .await
                {
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
