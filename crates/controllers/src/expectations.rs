//! Expectations: what a controller has asked the API for and not yet seen in its watch
//! cache (kube-controller-manager's `UIDTrackingControllerExpectations`).
//!
//! A controller that creates 3 pods and is woken again before its cache holds them would
//! count too few pods and create 3 more. So before writing, it records how many creations
//! (and which deletions) it expects for the owner; the watch marks them observed; and the
//! owner is not acted on again until every expectation is met, or has waited
//! [`EXPECTATIONS_TIMEOUT`] (a lost watch event must not block the owner for ever).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an unmet expectation holds the owner back (Kubernetes: 5 minutes).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expected {
    creations: i64,
    /// Keys (`namespace/name`) of the objects whose deletion is awaited.
    deletions: HashSet<String>,
    since: Instant,
}

/// Expectations per owner, keyed by the owner's `namespace/name`.
#[derive(Debug, Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Expected>) -> T) -> T {
        // A panic while holding the lock leaves plain counters behind: still usable.
        let mut owners = self.owners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut owners)
    }

    /// Whether the owner may be synced: nothing pending, or pending too long.
    pub fn satisfied(&self, owner: &str) -> bool {
        self.with(|owners| match owners.get(owner) {
            None => true,
            Some(e) => (e.creations <= 0 && e.deletions.is_empty()) || e.since.elapsed() > EXPECTATIONS_TIMEOUT,
        })
    }

    /// Records that `count` creations are about to be sent (replacing earlier expectations).
    pub fn expect_creations(&self, owner: &str, count: usize) {
        let expected = Expected { creations: count as i64, deletions: HashSet::new(), since: Instant::now() };
        self.with(|owners| owners.insert(owner.to_string(), expected));
    }

    /// Records that these objects are about to be deleted (replacing earlier expectations).
    pub fn expect_deletions(&self, owner: &str, keys: impl IntoIterator<Item = String>) {
        let expected = Expected { creations: 0, deletions: keys.into_iter().collect(), since: Instant::now() };
        self.with(|owners| owners.insert(owner.to_string(), expected));
    }

    /// A creation was seen (or will never happen because it failed).
    pub fn creation_observed(&self, owner: &str) {
        self.with(|owners| {
            if let Some(e) = owners.get_mut(owner) {
                e.creations -= 1;
            }
        });
    }

    /// The object `key` was seen deleted (or being deleted), or its deletion failed.
    pub fn deletion_observed(&self, owner: &str, key: &str) {
        self.with(|owners| {
            if let Some(e) = owners.get_mut(owner) {
                e.deletions.remove(key);
            }
        });
    }

    /// Forgets the owner (it was deleted).
    pub fn forget(&self, owner: &str) {
        self.with(|owners| owners.remove(owner));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_hold_the_owner_until_all_are_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn deletions_are_tracked_by_key_and_unrelated_ones_do_not_count() {
        let e = Expectations::default();
        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rs", "ns/c");
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }
}
