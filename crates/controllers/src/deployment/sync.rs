//! Scaling without rolling out (a paused Deployment, or `kubectl scale` in the middle of
//! a rollout): the new replica count is spread over the ReplicaSets in proportion to
//! their size, as Kubernetes does; and revisionHistoryLimit cleanup of old ReplicaSets.

use std::collections::HashMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{DeleteParams, Preconditions};
use kube::ResourceExt;
use skiff_client::is_status;

use super::replicasets::{
    annotation, desired_replicas, max_surge, replicas, revision, split_new_and_old, total_replicas, DESIRED_REPLICAS,
    MAX_REPLICAS,
};
use super::{Error, Sync};

/// Whether a ReplicaSet's desired-replicas annotation disagrees with the Deployment:
/// someone scaled the Deployment.
pub fn scaled_since(d: &Deployment, active: &[&ReplicaSet]) -> bool {
    active
        .iter()
        .filter_map(|rs| annotation(rs, DESIRED_REPLICAS)?.parse::<i32>().ok())
        .any(|n| n != desired_replicas(d))
}

/// How many replicas a ReplicaSet gains (or loses) when the Deployment's total changes:
/// its share of the new total, by the max-replicas it was sized for.
fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    if replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if desired_replicas(d) == 0 {
        -replicas(rs)
    } else {
        let total = desired_replicas(d) + max_surge(d);
        let annotated = annotation(rs, MAX_REPLICAS)
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            0
        } else {
            (f64::from(replicas(rs)) * f64::from(total) / f64::from(annotated)).round() as i32 - replicas(rs)
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

impl Sync<'_> {
    pub(super) fn is_scaling_event(&self, sets: &[ReplicaSet]) -> bool {
        let active: Vec<&ReplicaSet> = sets.iter().filter(|rs| replicas(rs) > 0).collect();
        scaled_since(&self.d, &active)
    }

    /// Scales (paused or scaled Deployments), cleans up history when paused, updates status.
    pub(super) async fn sync(&mut self, sets: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, old) = split_new_and_old(&self.d, sets);
        let mut new = self.new_replica_set(new, &old, false).await?;
        let mut old = old;
        self.scale_proportionally(&mut new, &mut old).await?;
        if self.d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_deployment_status(&all, new.as_ref()).await
    }

    async fn scale_proportionally(
        &mut self,
        new: &mut Option<ReplicaSet>,
        old: &mut [ReplicaSet],
    ) -> Result<(), Error> {
        let desired = desired_replicas(&self.d);
        // One active ReplicaSet (or none): it simply gets every replica.
        old.sort_by(|a, b| b.metadata.creation_timestamp.cmp(&a.metadata.creation_timestamp));
        let active = new.iter().chain(old.iter()).filter(|rs| replicas(rs) > 0).count();
        if active <= 1 {
            let target = match (new.as_mut(), old.iter().position(|rs| replicas(rs) > 0)) {
                (Some(rs), _) if replicas(rs) > 0 || active == 0 => Some(rs),
                (_, Some(i)) => old.get_mut(i),
                (None, None) => old.first_mut(),
                _ => None,
            };
            if let Some(rs) = target {
                if replicas(rs) != desired {
                    self.scale(rs, desired).await?;
                }
            }
            return Ok(());
        }
        // The new ReplicaSet has every replica and they are available: old ones go.
        if let Some(rs) = new.as_ref() {
            let saturated = replicas(rs) == desired
                && annotation(rs, DESIRED_REPLICAS) == Some(desired.to_string().as_str())
                && super::replicasets::available_replicas(rs) == desired;
            if saturated {
                for rs in old.iter_mut().filter(|rs| replicas(rs) > 0) {
                    self.scale(rs, 0).await?;
                }
                return Ok(());
            }
        }
        let mut active: Vec<&mut ReplicaSet> =
            new.iter_mut().chain(old.iter_mut()).filter(|rs| replicas(rs) > 0).collect();
        let allowed = if desired > 0 { desired + max_surge(&self.d) } else { 0 };
        let to_add = allowed - total_replicas(active.iter().map(|rs| &**rs));
        // Growing: larger (then newer) first; shrinking: larger (then older) first.
        active.sort_by(|a, b| {
            let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.clone();
            let by_size = replicas(b).cmp(&replicas(a));
            if to_add > 0 {
                by_size.then_with(|| created(b).cmp(&created(a)))
            } else {
                by_size.then_with(|| created(a).cmp(&created(b)))
            }
        });
        let mut sizes: HashMap<String, i32> = HashMap::new();
        let mut added = 0;
        for rs in &active {
            let share = if to_add != 0 { proportion(&self.d, rs, to_add, added) } else { 0 };
            sizes.insert(rs.name_any(), replicas(rs) + share);
            added += share;
        }
        // What rounding left over goes to the largest.
        if let (Some(first), true) = (active.first(), to_add != 0) {
            let size = sizes.entry(first.name_any()).or_insert(0);
            *size = (*size + to_add - added).max(0);
        }
        for rs in active {
            let size = sizes.get(&rs.name_any()).copied().unwrap_or(replicas(rs));
            self.scale(rs, size).await?;
        }
        Ok(())
    }

    /// Deletes the oldest scaled-down ReplicaSets beyond revisionHistoryLimit.
    pub(super) async fn cleanup(&mut self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return Ok(()) };
        let mut alive: Vec<&ReplicaSet> = old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let surplus = alive.len() as i64 - i64::from(limit);
        if surplus <= 0 {
            return Ok(());
        }
        // Lowest revisions first.
        alive.sort_by_key(|rs| revision(rs));
        for rs in alive.into_iter().take(surplus as usize) {
            let busy = rs.status.as_ref().is_some_and(|s| s.replicas != 0)
                || replicas(rs) != 0
                || rs.metadata.generation > rs.status.as_ref().and_then(|s| s.observed_generation);
            if busy {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: rs.uid(), resource_version: None }),
                ..DeleteParams::default()
            };
            match self.sets_api().delete(&rs.name_any(), &params).await {
                Ok(_) => {}
                Err(e) if is_status(&e, &[404, 409]) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
