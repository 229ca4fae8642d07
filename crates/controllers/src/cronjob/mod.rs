//! CronJob controller (kube-controller-manager's cronjob-controller, v2): creates a Job
//! for each time the schedule names, named `<cronjob>-<scheduled time in minutes since
//! the epoch>` so that a time is never run twice; honours concurrencyPolicy,
//! startingDeadlineSeconds and suspend; keeps status.active, lastScheduleTime and
//! lastSuccessfulTime; and deletes finished Jobs beyond the history limits.
//!
//! Times come from the injectable [`crate::Clock`], and each CronJob is looked at again at
//! its next scheduled time (or after `Timing::cronjob_sync_period`, whichever is sooner).

pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use futures::{future, StreamExt};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use skiff_client::events::reference;
use skiff_client::is_status;
use tracing::debug;

use crate::job::is_finished;
use crate::Context;
use schedule::Schedule;

pub const NAME: &str = "cronjob-controller";
/// The annotation that records, on each Job, the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed start times than this is reported as a likely misconfiguration.
const TOO_MANY_MISSED: usize = 100;

pub async fn run(context: Arc<Context>) {
    let cronjobs = Api::<CronJob>::all(context.client.clone());
    let jobs = Api::<Job>::all(context.client.clone());
    Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "cronjob reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference { field_path: None, ..reference(job) }
}

fn finished_type(job: &Job) -> Option<&str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_.as_str())
}

/// The Job's name for a scheduled time: minutes since the epoch, as Kubernetes names them.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

struct Sync<'a> {
    context: &'a Context,
    cronjob: CronJob,
    jobs: Api<Job>,
    now: Timestamp,
}

async fn reconcile(cronjob: Arc<CronJob>, context: Arc<Context>) -> Result<Action, kube::Error> {
    if cronjob.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = cronjob.namespace().unwrap_or_default();
    // Fresh, so that status written by the previous sync is seen.
    let api = Api::<CronJob>::namespaced(context.client.clone(), &namespace);
    let Some(cronjob) = api.get_opt(&cronjob.name_any()).await? else { return Ok(Action::await_change()) };
    let sync = Sync {
        context: &context,
        cronjob,
        jobs: Api::namespaced(context.client.clone(), &namespace),
        now: context.timing.clock.now(),
    };
    let (status, wait) = sync.run().await?;
    if sync.cronjob.status.as_ref() != Some(&status) {
        let mut updated = sync.cronjob.clone();
        updated.status = Some(status);
        api.replace_status(&updated.name_any(), &PostParams::default(), &updated).await?;
    }
    let period = context.timing.cronjob_sync_period;
    Ok(Action::requeue(wait.map_or(period, |w| w.min(period))))
}

/// The latest scheduled time in (earliest, now], and how many there are (counted up to
/// one more than [`TOO_MANY_MISSED`]). Looks back from now in doubling windows, so that a
/// CronJob that has not run for years costs no more than one that just missed a minute.
fn missed_times(schedule: &Schedule, tz: &TimeZone, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, usize) {
    let mut count = 0;
    let mut cursor = earliest;
    while let Some(next) = schedule.next_after(cursor, tz).filter(|t| *t <= now) {
        count += 1;
        cursor = next;
        if count > TOO_MANY_MISSED {
            break;
        }
    }
    if count <= TOO_MANY_MISSED {
        return (Some(cursor).filter(|_| count > 0), count);
    }
    let mut window = SignedDuration::from_hours(1);
    loop {
        let start = now.checked_sub(window).unwrap_or(earliest).max(earliest);
        let mut latest = None;
        let mut cursor = start;
        while let Some(next) = schedule.next_after(cursor, tz).filter(|t| *t <= now) {
            latest = Some(next);
            cursor = next;
        }
        if latest.is_some() || start == earliest {
            return (latest, count);
        }
        window = window.saturating_mul(2);
    }
}

impl Sync<'_> {
    fn event(&self, warning: bool, action: &'static str, reason: &'static str, note: String) {
        let events = self.context.events.reporting_as(NAME);
        let regarding = reference(&self.cronjob);
        if warning {
            events.warning(regarding, action, reason, note);
        } else {
            events.normal(regarding, action, reason, note);
        }
    }

    /// One sync: the new status, and how long until the next scheduled time.
    async fn run(&self) -> Result<(CronJobStatus, Option<Duration>), kube::Error> {
        let spec = self.cronjob.spec.clone().unwrap_or_default();
        let mut status = self.cronjob.status.clone().unwrap_or_default();
        let uid = self.cronjob.metadata.uid.clone().unwrap_or_default();
        let owned: Vec<Job> = self
            .jobs
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|j| j.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
            .collect();

        // Active Jobs: the unfinished ones; finished ones are reported once.
        let mut active: Vec<ObjectReference> = Vec::new();
        for job in &owned {
            let listed = status.active.iter().flatten().any(|r| r.uid == job.metadata.uid);
            match finished_type(job) {
                None if job.metadata.deletion_timestamp.is_none() => active.push(job_reference(job)),
                None => {}
                Some(kind) => {
                    if listed {
                        self.event(
                            false,
                            "SawCompletedJob",
                            "SawCompletedJob",
                            format!("Saw completed job: {}, condition: {kind}", job.name_any()),
                        );
                    }
                    if kind == "Complete" {
                        let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
                        if completed.as_ref().map(|t| t.0) > status.last_successful_time.as_ref().map(|t| t.0) {
                            status.last_successful_time = completed;
                        }
                    }
                }
            }
        }
        status.active = (!active.is_empty()).then_some(active);

        self.clean_up_history(&spec, &owned).await?;

        if spec.suspend == Some(true) {
            return Ok((status, None));
        }
        let schedule: Schedule = match spec.schedule.parse() {
            Ok(schedule) => schedule,
            Err(e) => {
                self.event(
                    true,
                    "Sync",
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return Ok((status, None));
            }
        };
        let tz = match spec.time_zone.as_deref() {
            None => TimeZone::system(),
            Some(name) => match TimeZone::get(name) {
                Ok(tz) => tz,
                Err(e) => {
                    self.event(true, "Sync", "UnknownTimeZone", format!("invalid timeZone: {name:?}: {e}"));
                    return Ok((status, None));
                }
            },
        };

        // The most recent scheduled time not yet run, looking back no further than the
        // last run (or creation) and the starting deadline.
        let created = self.cronjob.metadata.creation_timestamp.as_ref().map_or(self.now, |t| t.0);
        let mut earliest = status.last_schedule_time.as_ref().map_or(created, |t| t.0);
        if let Some(deadline) = spec.starting_deadline_seconds {
            let window_start = self.now.checked_sub(SignedDuration::from_secs(deadline)).unwrap_or(earliest);
            earliest = earliest.max(window_start);
        }
        let (most_recent, missed) = missed_times(&schedule, &tz, earliest, self.now);
        let until_next = schedule.next_after(self.now, &tz).map(|t| self.context.timing.clock.until(t));
        let Some(scheduled) = most_recent else { return Ok((status, until_next)) };
        if missed > TOO_MANY_MISSED {
            self.event(
                true,
                "Sync",
                "TooManyMissedTimes",
                format!(
                    "too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
                ),
            );
        }
        let name = job_name(&self.cronjob.name_any(), scheduled);
        if owned.iter().any(|j| j.name_any() == name) {
            return Ok((status, until_next));
        }
        let active_now = status.active.clone().unwrap_or_default();
        match spec.concurrency_policy.as_deref() {
            Some("Forbid") if !active_now.is_empty() => {
                self.event(
                    false,
                    "Sync",
                    "JobAlreadyActive",
                    "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
                );
                return Ok((status, until_next));
            }
            Some("Replace") => {
                for old in &active_now {
                    let old_name = old.name.clone().unwrap_or_default();
                    self.delete_job(&old_name).await?;
                }
                status.active = None;
            }
            _ => {}
        }

        let job = self.new_job(&spec, &name, scheduled, &tz);
        match self.jobs.create(&PostParams::default(), &job).await {
            Ok(job) => {
                self.event(false, "Create", "SuccessfulCreate", format!("Created job {name}"));
                status.active.get_or_insert_with(Vec::new).push(job_reference(&job));
            }
            // Created by an earlier sync whose status write was lost.
            Err(e) if is_status(&e, &[409]) => {}
            Err(e) => {
                self.event(true, "Create", "FailedCreate", format!("Error creating job: {e}"));
                return Err(e);
            }
        }
        status.last_schedule_time = Some(Time(scheduled));
        Ok((status, until_next))
    }

    fn new_job(
        &self,
        spec: &k8s_openapi::api::batch::v1::CronJobSpec,
        name: &str,
        scheduled: Timestamp,
        tz: &TimeZone,
    ) -> Job {
        let template = spec.job_template.clone();
        let meta = template.metadata.unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.insert(
            SCHEDULED_TIMESTAMP.into(),
            scheduled.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        );
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: self.cronjob.namespace(),
                labels: meta.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![OwnerReference {
                    api_version: CronJob::api_version(&()).into_owned(),
                    kind: CronJob::kind(&()).into_owned(),
                    name: self.cronjob.name_any(),
                    uid: self.cronjob.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..ObjectMeta::default()
            },
            spec: template.spec,
            status: None,
        }
    }

    async fn delete_job(&self, name: &str) -> Result<(), kube::Error> {
        let params =
            DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
        match self.jobs.delete(name, &params).await {
            Ok(_) => {
                self.event(false, "Delete", "SuccessfulDelete", format!("Deleted job {name}"));
                Ok(())
            }
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the oldest finished Jobs beyond successfulJobsHistoryLimit (default 3) and
    /// failedJobsHistoryLimit (default 1).
    async fn clean_up_history(
        &self,
        spec: &k8s_openapi::api::batch::v1::CronJobSpec,
        owned: &[Job],
    ) -> Result<(), kube::Error> {
        let mut victims = Vec::new();
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
            ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let mut finished: Vec<&Job> = owned
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none() && is_finished(j) && finished_type(j) == Some(kind))
                .collect();
            // Oldest first, by start time (then name, which encodes the schedule).
            finished.sort_by_key(|j| (j.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| t.0), j.name_any()));
            let excess = finished.len().saturating_sub(limit.max(0) as usize);
            victims.extend(finished.into_iter().take(excess).map(|j| j.name_any()));
        }
        future::try_join_all(victims.iter().map(|name| self.delete_job(name))).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_times_are_counted_up_to_the_limit_and_the_latest_found() {
        let every_minute: Schedule = "* * * * *".parse().unwrap();
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        let now = at("2030-06-01T12:34:56Z");
        assert_eq!(missed_times(&every_minute, &TimeZone::UTC, at("2030-06-01T12:34:10Z"), now), (None, 0));
        assert_eq!(
            missed_times(&every_minute, &TimeZone::UTC, at("2030-06-01T12:31:00Z"), now),
            (Some(at("2030-06-01T12:34:00Z")), 3)
        );
        assert_eq!(
            missed_times(&every_minute, &TimeZone::UTC, at("2020-01-01T00:00:00Z"), now),
            (Some(at("2030-06-01T12:34:00Z")), TOO_MANY_MISSED + 1)
        );
        let yearly: Schedule = "@yearly".parse().unwrap();
        assert_eq!(
            missed_times(&yearly, &TimeZone::UTC, at("2020-06-01T00:00:00Z"), now),
            (Some(at("2030-01-01T00:00:00Z")), 10)
        );
        assert_eq!(
            job_name("hello", at("2030-06-01T12:34:00Z")),
            format!("hello-{}", at("2030-06-01T12:34:00Z").as_second() / 60)
        );
    }
}
