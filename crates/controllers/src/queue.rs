//! A work queue with client-go's workqueue semantics, for controllers whose keys are not
//! objects kube-runtime's `Controller` can reconcile (deleted Services, graph nodes):
//! a key is queued at most once, a key being worked on is never worked on twice at the
//! same time (added again meanwhile, it is queued once the work ends), and failed keys
//! come back after an exponential backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::debug;

/// First retry delay of a failing key; doubled per failure up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

struct State<T> {
    queue: VecDeque<T>,
    queued: HashSet<T>,
    active: HashSet<T>,
    /// Added while active: queued again when the work ends.
    again: HashSet<T>,
    failures: HashMap<T, u32>,
}

impl<T: Clone + Eq + Hash + Send + std::fmt::Debug + 'static> WorkQueue<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: HashSet::new(),
                active: HashSet::new(),
                again: HashSet::new(),
                failures: HashMap::new(),
            }),
            ready: Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, key: T) {
        let mut state = self.state();
        if state.active.contains(&key) {
            state.again.insert(key);
            return;
        }
        if state.queued.insert(key.clone()) {
            state.queue.push_back(key);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Adds `key` after `delay`.
    pub fn add_after(self: &Arc<Self>, key: T, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    pub fn len(&self) -> usize {
        self.state().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn next(&self) -> T {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.state();
                if let Some(key) = state.queue.pop_front() {
                    state.queued.remove(&key);
                    state.active.insert(key.clone());
                    // Others may be waiting for keys still queued.
                    if !state.queue.is_empty() {
                        self.ready.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    /// Ends work on `key`: forgets its failures on success, schedules a retry on failure.
    fn done(self: &Arc<Self>, key: T, succeeded: bool) {
        let mut state = self.state();
        state.active.remove(&key);
        let retry = if succeeded {
            state.failures.remove(&key);
            None
        } else {
            let failures = state.failures.entry(key.clone()).or_insert(0);
            *failures += 1;
            Some(BASE_BACKOFF.saturating_mul(1 << (*failures - 1).min(16)).min(MAX_BACKOFF))
        };
        let again = state.again.remove(&key);
        drop(state);
        if again {
            self.add(key.clone());
        }
        if let Some(delay) = retry {
            self.add_after(key, delay);
        }
    }

    /// Runs `workers` loops calling `work` on each key until the task is dropped.
    pub async fn run<F, Fut, E>(self: Arc<Self>, workers: usize, work: F)
    where
        F: Fn(T) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send,
        E: std::fmt::Display,
    {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let queue = self.clone();
            let work = work.clone();
            tasks.spawn(async move {
                loop {
                    let key = queue.next().await;
                    let result = work(key.clone()).await;
                    if let Err(error) = &result {
                        debug!(?key, %error, "retrying");
                    }
                    queue.done(key, result.is_ok());
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_is_queued_once_and_again_after_work_when_added_meanwhile() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("a");
        queue.add("b");
        assert_eq!(queue.len(), 2);
        let key = queue.next().await;
        assert_eq!(key, "a");
        queue.add("a"); // while active
        assert_eq!(queue.len(), 1);
        queue.done("a", true);
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.next().await, "b");
        assert_eq!(queue.next().await, "a");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_keys_come_back_after_a_growing_backoff() {
        let queue = WorkQueue::new();
        queue.add("a");
        let key = queue.next().await;
        queue.done(key, false);
        assert!(queue.is_empty());
        tokio::time::sleep(BASE_BACKOFF + Duration::from_millis(1)).await;
        assert_eq!(queue.len(), 1);
        let key = queue.next().await;
        queue.done(key, false);
        tokio::time::sleep(BASE_BACKOFF + Duration::from_millis(1)).await;
        assert!(queue.is_empty(), "second failure waits twice as long");
        tokio::time::sleep(BASE_BACKOFF).await;
        assert_eq!(queue.len(), 1);
    }
}
