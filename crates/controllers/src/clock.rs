//! The wall clock controllers read for schedules and deadlines (CronJob schedules, Job
//! deadlines and backoff, TTLs). Tests make it adjustable, so that a CronJob due "next
//! minute" fires without waiting for the minute: set the clock just before the boundary.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Real time, or real time shifted by an offset that tests set.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Nanoseconds added to the system time; None for the system clock itself.
    offset: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that runs at real speed from wherever [`Clock::set`] puts it.
    pub fn adjustable() -> Self {
        Clock { offset: Some(Arc::new(AtomicI64::new(0))) }
    }

    pub fn now(&self) -> Timestamp {
        let now = Timestamp::now();
        match &self.offset {
            Some(offset) => now.checked_add(SignedDuration::from_nanos(offset.load(Ordering::Relaxed))).unwrap_or(now),
            None => now,
        }
    }

    /// Moves an adjustable clock so that it reads `at` now (the system clock stays put).
    pub fn set(&self, at: Timestamp) {
        if let Some(offset) = &self.offset {
            let shift = at.as_nanosecond() - Timestamp::now().as_nanosecond();
            offset.store(i64::try_from(shift).unwrap_or(0), Ordering::Relaxed);
        }
    }

    /// How long from now until `at` (zero when it has passed).
    pub fn until(&self, at: Timestamp) -> Duration {
        Duration::try_from(at.duration_since(self.now())).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_and_the_system_clock_does_not() {
        let at: Timestamp = "2030-01-01T00:00:58Z".parse().unwrap();
        let clock = Clock::adjustable();
        clock.set(at);
        let read = clock.now();
        assert!(read >= at && read.duration_since(at) < SignedDuration::from_secs(5), "{read}");
        assert!(clock.until("2030-01-01T00:01:00Z".parse().unwrap()) <= Duration::from_secs(2));
        let system = Clock::system();
        system.set(at);
        assert!(system.now() < at);
    }
}
