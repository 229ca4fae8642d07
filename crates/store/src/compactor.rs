//! Background compaction: keeps history bounded while leaving watchers time to resume.
//!
//! Every `interval` the compactor samples `(now, current revision)`. A sample taken at
//! time `t` with revision `r` proves every revision up to `r` existed at `t`, so once
//! `t <= now - keep_for` those revisions are at least `keep_for` old. The compaction
//! target is
//!
//! ```text
//! min(newest sampled revision at least keep_for old, current revision - keep_revisions)
//! ```
//!
//! i.e. history is kept while it is younger than `keep_for` OR among the last
//! `keep_revisions` revisions, whichever keeps more: a busy cluster keeps `keep_for` of
//! history (watchers that disconnect briefly can resume), an idle one still keeps its
//! last `keep_revisions` changes. Time is tokio's clock, so tests drive it with paused
//! time; [`Planner`] holds the rule alone and takes the time as an argument.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::{Error, Revision, Store};

/// When to compact. See the module docs for the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// How often to sample the revision and maybe compact.
    pub interval: Duration,
    /// Keep history at least this long.
    pub keep_for: Duration,
    /// Keep at least this many of the latest revisions.
    pub keep_revisions: i64,
}

impl Default for CompactionPolicy {
    /// Kubernetes' apiserver compacts every 5 minutes; sampling every minute makes the
    /// history kept between 5 and 6 minutes.
    fn default() -> Self {
        Self { interval: Duration::from_secs(60), keep_for: Duration::from_secs(5 * 60), keep_revisions: 10_000 }
    }
}

/// The compaction rule, separated from the clock and the store.
#[derive(Debug)]
pub struct Planner {
    policy: CompactionPolicy,
    /// Samples, oldest first. Only one sample at or before the `keep_for` cutoff is
    /// kept, so this holds about `keep_for / interval + 1` entries.
    samples: VecDeque<(Instant, Revision)>,
}

impl Planner {
    pub fn new(policy: CompactionPolicy) -> Self {
        Self { policy, samples: VecDeque::new() }
    }

    /// Records that the store was at `current` at time `now` and returns the revision to
    /// compact to, if it is newer than `compacted`.
    pub fn observe(&mut self, now: Instant, current: Revision, compacted: Revision) -> Option<Revision> {
        self.samples.push_back((now, current));
        let cutoff = now.checked_sub(self.policy.keep_for)?;
        // Drop samples that a newer sample at or before the cutoff makes useless.
        while self.samples.get(1).is_some_and(|(time, _)| *time <= cutoff) {
            self.samples.pop_front();
        }
        let (time, old_enough) = *self.samples.front()?;
        if time > cutoff {
            return None;
        }
        let target = old_enough.min(current - self.policy.keep_revisions);
        (target > compacted).then_some(target)
    }
}

/// Starts the compactor on the current tokio runtime. It runs until the returned handle is
/// aborted (or the runtime shuts down); store errors are logged and retried next tick.
pub fn spawn(store: Arc<dyn Store>, policy: CompactionPolicy) -> JoinHandle<()> {
    tokio::spawn(run(store, policy))
}

/// The compactor loop that [`spawn`] runs, for callers that manage the task themselves.
pub async fn run(store: Arc<dyn Store>, policy: CompactionPolicy) {
    let mut ticker = tokio::time::interval(policy.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut planner = Planner::new(policy);
    loop {
        ticker.tick().await;
        if let Err(err) = tick(store.as_ref(), &mut planner).await {
            tracing::warn!(%err, "compaction failed; retrying next interval");
        }
    }
}

async fn tick(store: &dyn Store, planner: &mut Planner) -> crate::Result<()> {
    let current = store.current_revision().await?;
    let compacted = store.compacted_revision().await?;
    let Some(target) = planner.observe(Instant::now(), current, compacted) else {
        return Ok(());
    };
    tracing::debug!(target, current, "compacting store history");
    match store.compact(target).await {
        // Someone else compacted further meanwhile: nothing left to do.
        Err(Error::Compacted { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn policy(keep_revisions: i64) -> CompactionPolicy {
        CompactionPolicy { interval: MINUTE, keep_for: 5 * MINUTE, keep_revisions }
    }

    #[test]
    fn compacts_to_the_newest_revision_older_than_keep_for() {
        let mut planner = Planner::new(policy(10));
        let t0 = Instant::now();
        // Revision r was current at minute r / 100.
        for minute in 0..5u32 {
            let now = t0 + MINUTE * minute;
            assert_eq!(planner.observe(now, i64::from(minute) * 100, 0), None, "minute {minute}");
        }
        // At minute 5, what was current at minute 0 is 5 minutes old.
        assert_eq!(planner.observe(t0 + 5 * MINUTE, 500, 0), None);
        assert_eq!(planner.observe(t0 + 6 * MINUTE, 600, 0), Some(100));
        assert_eq!(planner.observe(t0 + 7 * MINUTE, 700, 100), Some(200));
        // Nothing new to forget when already compacted that far.
        assert_eq!(planner.observe(t0 + 7 * MINUTE + Duration::from_secs(1), 700, 200), None);
    }

    #[test]
    fn keeps_at_least_keep_revisions() {
        let mut planner = Planner::new(policy(1000));
        let t0 = Instant::now();
        planner.observe(t0, 900, 0);
        // 900 is old enough, but only 1100 - 1000 = 100 may go.
        assert_eq!(planner.observe(t0 + 5 * MINUTE, 1100, 0), Some(100));
        // An idle store keeps its last 1000 revisions however old they get.
        assert_eq!(planner.observe(t0 + 60 * MINUTE, 1100, 100), None);
        assert_eq!(planner.observe(t0 + 61 * MINUTE, 500, 0), None);
    }

    #[test]
    fn remembers_a_bounded_number_of_samples() {
        let mut planner = Planner::new(policy(0));
        let t0 = Instant::now();
        for minute in 0..1000u32 {
            planner.observe(t0 + MINUTE * minute, i64::from(minute), 0);
            assert!(planner.samples.len() <= 7, "{} samples", planner.samples.len());
        }
    }
}
