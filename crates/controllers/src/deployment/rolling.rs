//! The RollingUpdate strategy: the new ReplicaSet grows while the total stays within
//! replicas + maxSurge, and old ReplicaSets shrink while at least replicas -
//! maxUnavailable pods stay available (unhealthy old pods go first).

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::progress::complete;
use super::replicasets::{
    available_replicas, by_creation, desired_replicas, max_unavailable, replicas, split_new_and_old, total_replicas,
};
use super::{Error, Sync};

impl Sync<'_> {
    pub(super) async fn rollout_rolling(&mut self, sets: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, old) = split_new_and_old(&self.d, sets);
        let mut old = old;
        let Some(mut new) = self.new_replica_set(new, &old, true).await? else { return Ok(()) };
        self.reconcile_new(&mut new, &old).await?;
        self.reconcile_old(&new, &mut old).await?;
        if self.d.status.as_ref().is_some_and(|status| complete(&self.d, status)) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain([&new]).collect();
        self.sync_rollout_status(&all, Some(&new)).await
    }

    /// Grows the new ReplicaSet as far as maxSurge allows (or shrinks it to replicas).
    async fn reconcile_new(&mut self, new: &mut ReplicaSet, old: &[ReplicaSet]) -> Result<bool, Error> {
        let desired = desired_replicas(&self.d);
        let current = replicas(new);
        if current == desired {
            return Ok(false);
        }
        if current > desired {
            return self.scale(new, desired).await;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain([&*new]).collect();
        let count = self.new_replicas_count(&all, new);
        self.scale(new, count).await
    }

    /// Shrinks old ReplicaSets within maxUnavailable.
    async fn reconcile_old(&mut self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> Result<bool, Error> {
        let old_count = total_replicas(old.iter());
        if old_count == 0 {
            return Ok(false);
        }
        let all_count = old_count + replicas(new);
        let min_available = desired_replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = replicas(new) - available_replicas(new);
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        by_creation(old);
        let cleaned = self.scale_down_unhealthy(old, max_scaled_down).await?;
        let scaled = self.scale_down_for_rolling_update(new, old).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Old pods that are not available are removed first: they cost no availability.
    async fn scale_down_unhealthy(&mut self, old: &mut [ReplicaSet], max: i32) -> Result<i32, Error> {
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max {
                break;
            }
            let (size, available) = (replicas(rs), available_replicas(rs));
            // A status counting more available than wanted is a scale-down in flight.
            if size == 0 || available >= size {
                continue;
            }
            let count = (max - total).min(size - available);
            self.scale(rs, size - count).await?;
            total += count;
        }
        Ok(total)
    }

    /// Then available old pods, as long as enough stay available overall.
    async fn scale_down_for_rolling_update(&mut self, new: &ReplicaSet, old: &mut [ReplicaSet]) -> Result<i32, Error> {
        let min_available = desired_replicas(&self.d) - max_unavailable(&self.d);
        // An old ReplicaSet whose status counts more available pods than it now asks for
        // has a scale-down in flight: count only what it will keep, or a second pass on the
        // stale status would take away pods maxUnavailable protects.
        let available: i32 =
            old.iter().map(|rs| available_replicas(rs).min(replicas(rs))).sum::<i32>() + available_replicas(new);
        if available <= min_available {
            return Ok(0);
        }
        let to_scale_down = available - min_available;
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= to_scale_down {
                break;
            }
            let size = replicas(rs);
            if size == 0 {
                continue;
            }
            let count = size.min(to_scale_down - total);
            self.scale(rs, size - count).await?;
            total += count;
        }
        Ok(total)
    }
}
