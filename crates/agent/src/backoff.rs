//! The kubelet's crash-loop back-off: a container that exits and is to be restarted waits
//! `initial` (10 s) after its first restart, twice as long after each further one, up to
//! `max` (5 min); the delay starts over once the container has gone `2 × max` (10 min)
//! without a restart. Time is tokio's, so tests run it with paused time.

use std::time::Duration;

use tokio::time::Instant;

/// Back-off durations (the kubelet's are fixed; tests shorten them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy { initial: Duration::from_secs(10), max: Duration::from_secs(300) }
    }
}

/// The back-off state of one container.
#[derive(Clone, Debug, Default)]
pub struct CrashBackoff {
    /// The current delay and when it was last raised.
    delay: Option<(Duration, Instant)>,
}

impl CrashBackoff {
    /// How long a container that exited at `exited` must still wait before its restart,
    /// if it is in back-off at `now`.
    pub fn remaining(&self, policy: BackoffPolicy, exited: Instant, now: Instant) -> Option<Duration> {
        let (delay, updated) = self.delay?;
        if now.saturating_duration_since(updated) > 2 * policy.max {
            return None;
        }
        let ready_at = exited + delay;
        (now < ready_at).then(|| ready_at - now)
    }

    /// The delay currently in force (for the CrashLoopBackOff message).
    pub fn current(&self) -> Option<Duration> {
        self.delay.map(|(d, _)| d)
    }

    /// Records a restart at `now`: the next exit waits the initial delay, or twice the
    /// current one (up to `max`); a back-off left alone for `2 × max` starts over.
    pub fn restarted(&mut self, policy: BackoffPolicy, now: Instant) {
        let next = match self.delay {
            Some((delay, updated)) if now.saturating_duration_since(updated) <= 2 * policy.max => {
                (delay * 2).min(policy.max)
            }
            _ => policy.initial,
        };
        self.delay = Some((next, now));
    }
}

/// A duration as Go prints it (`10s`, `1m20s`, `5m0s`, `200ms`), the form of the
/// kubelet's "back-off 1m20s restarting failed container=..." message.
pub fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let total = d.as_secs();
    let (hours, minutes, seconds) = (total / 3600, (total / 60) % 60, total % 60);
    let millis = d.subsec_millis();
    let seconds = if millis > 0 {
        format!("{seconds}.{}", format!("{millis:03}").trim_end_matches('0'))
    } else {
        seconds.to_string()
    };
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3700)), "1h1m40s");
    }

    #[tokio::test(start_paused = true)]
    async fn doubles_to_the_cap_and_resets_after_quiet() {
        let policy = BackoffPolicy::default();
        let mut backoff = CrashBackoff::default();
        let t0 = Instant::now();
        assert_eq!(backoff.remaining(policy, t0, t0), None, "the first restart is immediate");
        backoff.restarted(policy, t0);
        let mut delays = vec![backoff.current().unwrap().as_secs()];
        for _ in 0..6 {
            backoff.restarted(policy, t0);
            delays.push(backoff.current().unwrap().as_secs());
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300]);

        let mut backoff = CrashBackoff::default();
        backoff.restarted(policy, t0);
        let exited = t0 + Duration::from_secs(1);
        assert_eq!(backoff.remaining(policy, exited, exited), Some(Duration::from_secs(10)));
        assert_eq!(backoff.remaining(policy, exited, exited + Duration::from_secs(4)), Some(Duration::from_secs(6)));
        assert_eq!(backoff.remaining(policy, exited, exited + Duration::from_secs(10)), None);
        backoff.restarted(policy, t0 + Duration::from_secs(11));
        assert_eq!(backoff.current(), Some(Duration::from_secs(20)));

        // Ten quiet minutes later, back to the start.
        let later = t0 + Duration::from_secs(11 + 601);
        assert_eq!(backoff.remaining(policy, later, later), None);
        backoff.restarted(policy, later);
        assert_eq!(backoff.current(), Some(Duration::from_secs(10)));
    }
}
