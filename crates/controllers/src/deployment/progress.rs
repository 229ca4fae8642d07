//! A Deployment's status: replica counts summed over its ReplicaSets, the Available
//! condition (enough pods available: replicas - maxUnavailable), and the Progressing
//! condition with its deadline (progressDeadlineSeconds without progress: False,
//! ProgressDeadlineExceeded).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::replicasets::{
    available_replicas, desired_replicas, max_unavailable, ready_replicas, replicas, status_replicas,
};
use super::{Error, Sync};

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";

/// Now, to the second: API times carry whole seconds, so a condition written with a
/// fraction would never compare equal to the one read back.
fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub fn condition<'a>(status: Option<&'a DeploymentStatus>, type_: &str) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Some(Time(now()));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: now.clone(),
        last_transition_time: now,
    }
}

/// Sets a condition as Kubernetes does: unchanged when status and reason are the same;
/// the transition time kept when only the reason changes; the condition goes last.
pub fn set_condition(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|c| c.type_ == new.type_) {
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Every replica updated, available, and nothing else running, for this generation.
pub(super) fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let desired = desired_replicas(d);
    status.updated_replicas.unwrap_or(0) == desired
        && status.replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) == desired
        && status.observed_generation >= d.metadata.generation
}

/// More pods updated, fewer old ones, or more ready or available than last time.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_replicas = |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || old_replicas(new) < old_replicas(&old)
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

fn deadline(d: &Deployment) -> Option<Duration> {
    let seconds = d.spec.as_ref()?.progress_deadline_seconds?;
    (seconds != i32::MAX).then(|| Duration::from_secs(seconds.max(0) as u64))
}

/// When the Progressing condition was last updated, if the deployment is still
/// progressing towards a deadline: the deadline's instant.
fn deadline_at(d: &Deployment, status: &DeploymentStatus) -> Option<Timestamp> {
    let limit = deadline(d)?;
    let current = condition(Some(status), PROGRESSING)?;
    if matches!(current.reason.as_deref(), Some(NEW_RS_AVAILABLE | TIMED_OUT)) {
        return None;
    }
    let from = current.last_update_time.as_ref()?.0;
    from.checked_add(limit).ok()
}

fn timed_out(d: &Deployment, status: &DeploymentStatus) -> bool {
    if condition(Some(status), PROGRESSING).and_then(|c| c.reason.as_deref()) == Some(TIMED_OUT) {
        return true;
    }
    deadline_at(d, status).is_some_and(|at| at < Timestamp::now())
}

fn name_for_message(new: Option<&ReplicaSet>, d: &Deployment) -> (&'static str, String) {
    match new {
        Some(rs) => ("ReplicaSet", rs.name_any()),
        None => ("Deployment", d.name_any()),
    }
}

impl Sync<'_> {
    /// The status the ReplicaSets add up to, with the Available condition.
    pub(super) fn calculate_status(&self, all: &[&ReplicaSet], new: Option<&ReplicaSet>) -> DeploymentStatus {
        let d = &self.d;
        let available: i32 = all.iter().map(|rs| available_replicas(rs)).sum();
        let total: i32 = all.iter().map(|rs| replicas(rs)).sum();
        let some = |n: i32| (n != 0).then_some(n);
        let mut status = DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: some(all.iter().map(|rs| status_replicas(rs)).sum()),
            updated_replicas: some(new.map_or(0, status_replicas)),
            ready_replicas: some(all.iter().map(|rs| ready_replicas(rs)).sum()),
            available_replicas: some(available),
            unavailable_replicas: some((total - available).max(0)),
            collision_count: d.status.as_ref().and_then(|s| s.collision_count),
            conditions: d.status.as_ref().and_then(|s| s.conditions.clone()),
            terminating_replicas: None,
        };
        if available >= desired_replicas(d) - max_unavailable(d) {
            let message = "Deployment has minimum availability.".to_string();
            set_condition(&mut status, new_condition(AVAILABLE, "True", "MinimumReplicasAvailable", message));
        } else {
            let message = "Deployment does not have minimum availability.".to_string();
            set_condition(&mut status, new_condition(AVAILABLE, "False", "MinimumReplicasUnavailable", message));
        }
        status
    }

    async fn write_if_changed(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        if self.d.status.as_ref() != Some(&status) {
            self.write_status(status).await?;
        }
        Ok(())
    }

    /// Counts only (paused, scaling, deleting Deployments).
    pub(super) async fn sync_deployment_status(
        &mut self,
        all: &[&ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let status = self.calculate_status(all, new);
        self.write_if_changed(status).await
    }

    pub(super) async fn sync_status_only(&mut self, sets: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, old) = super::replicasets::split_new_and_old(&self.d, sets);
        let new = self.new_replica_set(new, &old, false).await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_deployment_status(&all, new.as_ref()).await
    }

    /// Counts and the Progressing condition during a rollout; looks again at the deadline.
    pub(super) async fn sync_rollout_status(
        &mut self,
        all: &[&ReplicaSet],
        new: Option<&ReplicaSet>,
    ) -> Result<(), Error> {
        let d = self.d.clone();
        let mut status = self.calculate_status(all, new);
        if !self.has_progress_deadline() {
            remove_condition(&mut status, PROGRESSING);
        }
        let current = condition(d.status.as_ref(), PROGRESSING).cloned();
        let is_complete = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(NEW_RS_AVAILABLE);
        if self.has_progress_deadline() && !is_complete {
            let (kind, name) = name_for_message(new, &d);
            if complete(&d, &status) {
                let message = format!("{kind} {name:?} has successfully progressed.");
                set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message));
            } else if progressing(&d, &status) {
                let message = format!("{kind} {name:?} is progressing.");
                let mut updated = new_condition(PROGRESSING, "True", "ReplicaSetUpdated", message);
                if let Some(current) = current.as_ref().filter(|c| c.status == "True") {
                    updated.last_transition_time = current.last_transition_time.clone();
                }
                // Progress moves the deadline: a new update time even with the same reason.
                remove_condition(&mut status, PROGRESSING);
                set_condition(&mut status, updated);
            } else if timed_out(&d, &status) {
                let message = format!("{kind} {name:?} has timed out progressing.");
                set_condition(&mut status, new_condition(PROGRESSING, "False", TIMED_OUT, message));
            }
        }
        // A ReplicaSet that cannot create pods shows as the Deployment's ReplicaFailure.
        let failure = new.into_iter().chain(all.iter().copied()).find_map(|rs| {
            rs.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == REPLICA_FAILURE).cloned()
        });
        match failure {
            Some(f) => set_condition(
                &mut status,
                DeploymentCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: f.status,
                    reason: f.reason,
                    message: f.message,
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time,
                },
            ),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        if !complete(&d, &status) && !timed_out(&d, &status) {
            if let Some(at) = deadline_at(&d, &status) {
                let left = at.as_nanosecond() - Timestamp::now().as_nanosecond();
                self.requeue_after(Duration::from_nanos(left.max(0) as u64) + Duration::from_secs(1));
            }
        }
        self.write_if_changed(status).await
    }

    /// Progressing reads Unknown/DeploymentPaused while paused, DeploymentResumed after.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if !self.has_progress_deadline() {
            return Ok(());
        }
        let reason = self.condition(PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT) {
            return Ok(());
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        let has_paused = reason.as_deref() == Some(PAUSED);
        let mut status = self.d.status.clone().unwrap_or_default();
        if paused && !has_paused {
            set_condition(&mut status, new_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into()));
        } else if !paused && has_paused {
            set_condition(&mut status, new_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into()));
        } else {
            return Ok(());
        }
        self.write_status(status).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time_while_the_status_holds() {
        let mut status = DeploymentStatus::default();
        let mut first = new_condition(PROGRESSING, "True", "NewReplicaSetCreated", "a".into());
        first.last_transition_time = Some(Time("2026-01-01T00:00:00Z".parse().unwrap()));
        set_condition(&mut status, first.clone());
        set_condition(&mut status, new_condition(AVAILABLE, "False", "MinimumReplicasUnavailable", "b".into()));
        // Same status and reason: nothing changes.
        set_condition(&mut status, new_condition(PROGRESSING, "True", "NewReplicaSetCreated", "c".into()));
        assert_eq!(condition(Some(&status), PROGRESSING), Some(&first));
        // New reason, same status: the transition time stays, and the condition moves last.
        set_condition(&mut status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "d".into()));
        let conditions = status.conditions.as_ref().unwrap();
        assert_eq!(conditions[1].reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert_eq!(conditions[1].last_transition_time, first.last_transition_time);
        remove_condition(&mut status, PROGRESSING);
        remove_condition(&mut status, AVAILABLE);
        assert_eq!(status.conditions, None);
    }
}
