//! Job controller (kube-controller-manager's job-controller): runs a Job's pods to
//! completion. Pods carry the `batch.kubernetes.io/job-tracking` finalizer until their
//! end is counted: a finished pod's UID goes first into status.uncountedTerminatedPods,
//! then its finalizer is removed, then it moves into succeeded/failed, so nothing is
//! counted twice or lost when the controller restarts between the steps.
//!
//! Each sync: count finished pods; decide whether the Job has met its success criteria
//! (completions, or every index for Indexed Jobs) or a failure target (backoffLimit,
//! activeDeadlineSeconds, a podFailurePolicy FailJob rule); otherwise create or delete
//! pods towards `parallelism` (failed pods are replaced after an exponential backoff);
//! then write status. The terminal condition (Complete / Failed) follows
//! SuccessCriteriaMet / FailureTarget once no pod is left running, as since Kubernetes 1.31.

mod failure_policy;
mod indexes;
mod pods;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{future, StreamExt};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use skiff_client::events::reference;
use skiff_client::is_status;
use tracing::debug;

use crate::Context;
use failure_policy::Action as PolicyAction;
pub use pods::{INDEX_KEY, TRACKING_FINALIZER};

pub const NAME: &str = "job-controller";
/// The label every Job pod carries (the API server adds it to the template).
const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Kubernetes' default spec.backoffLimit.
const DEFAULT_BACKOFF_LIMIT: i32 = 6;
/// Jobs are looked at again this often even when nothing changes.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn run(context: Arc<Context>) {
    let jobs = Api::<Job>::all(context.client.clone());
    // Job pods carry the controller-uid label; others are no concern of this controller.
    let pods =
        context.informers.pods().touched().filter(|pod| future::ready(pod.labels().contains_key(CONTROLLER_UID_LABEL)));
    Controller::new(jobs, watcher::Config::default())
        .owns_shared_stream(pods)
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "job reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

/// Whether the Job has a terminal condition.
pub fn is_finished(job: &Job) -> bool {
    condition(job.status.as_ref(), "Complete").is_some() || condition(job.status.as_ref(), "Failed").is_some()
}

/// The condition of `type_` when it is True.
fn condition<'a>(status: Option<&'a JobStatus>, type_: &str) -> Option<&'a JobCondition> {
    status?.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True")
}

/// Sets a condition; its lastTransitionTime moves only when its status changes.
fn set_condition(status: &mut JobStatus, type_: &str, value: &str, reason: &str, message: &str, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let new = JobCondition {
        type_: type_.into(),
        status: value.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(old) if old.status == value => {
            old.reason = new.reason;
            old.message = new.message;
            old.last_probe_time = new.last_probe_time;
        }
        Some(old) => *old = new,
        None => conditions.push(new),
    }
}

/// Why the Job ends: the condition type it gets first, and the terminal one after.
struct Ending {
    interim: &'static str,
    terminal: &'static str,
    reason: String,
    message: String,
}

impl Ending {
    fn failed(reason: &str, message: &str) -> Self {
        Ending { interim: "FailureTarget", terminal: "Failed", reason: reason.into(), message: message.into() }
    }

    fn succeeded() -> Self {
        Ending {
            interim: "SuccessCriteriaMet",
            terminal: "Complete",
            reason: "CompletionsReached".into(),
            message: "Reached expected number of succeeded pods".into(),
        }
    }

    /// An ending already decided by an earlier sync (its interim condition).
    fn recorded(status: &JobStatus) -> Option<Self> {
        let from = |c: &JobCondition| (c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default());
        if let Some((reason, message)) = condition(Some(status), "FailureTarget").map(from) {
            return Some(Ending { interim: "FailureTarget", terminal: "Failed", reason, message });
        }
        condition(Some(status), "SuccessCriteriaMet").map(|_| Ending::succeeded())
    }
}

struct Sync<'a> {
    context: &'a Context,
    job: Job,
    jobs: Api<Job>,
    pods_api: Api<Pod>,
    now: Timestamp,
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let namespace = job.namespace().unwrap_or_default();
    // The cached Job may not have our last status write yet; decisions need the counts
    // as written (a stale `failed` would start one pod too many).
    let jobs = Api::<Job>::namespaced(context.client.clone(), &namespace);
    let Some(job) = jobs.get_opt(&job.name_any()).await? else { return Ok(Action::await_change()) };
    let mut sync = Sync {
        context: &context,
        job,
        jobs,
        pods_api: Api::namespaced(context.client.clone(), &namespace),
        now: context.timing.clock.now(),
    };
    sync.run().await
}

impl Sync<'_> {
    fn spec(&self) -> k8s_openapi::api::batch::v1::JobSpec {
        self.job.spec.clone().unwrap_or_default()
    }

    async fn list_pods(&self) -> Result<Vec<Pod>, kube::Error> {
        let uid = self.job.metadata.uid.clone().unwrap_or_default();
        let params = ListParams::default().labels(&format!("{CONTROLLER_UID_LABEL}={uid}"));
        let pods = self.pods_api.list(&params).await?.items;
        Ok(pods.into_iter().filter(|p| pods::owned_by(p, &self.job)).collect())
    }

    async fn run(&mut self) -> Result<Action, kube::Error> {
        let pods = self.list_pods().await?;
        if self.job.metadata.deletion_timestamp.is_some() || is_finished(&self.job) {
            // Nothing more to count: let the pods go.
            self.release(pods.iter().filter(|p| pods::has_tracking_finalizer(p))).await?;
            return Ok(Action::await_change());
        }
        let spec = self.spec();
        let mut status = self.job.status.clone().unwrap_or_default();
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let suspended = spec.suspend == Some(true);

        // 1. Count pods that finished, through uncountedTerminatedPods.
        // Everything below works from the same list: a pod that finished after it was
        // taken is still active here, and is counted next time.
        let fail_job = self.track_finished_pods(&mut status, &pods, indexed).await?;

        let active: Vec<&Pod> = pods.iter().filter(|p| pods::is_active(p)).collect();
        let terminating = pods.iter().filter(|p| pods::is_terminating(p)).count() as i32;
        status.active = Some(active.len() as i32);
        status.ready = Some(active.iter().filter(|p| pods::is_ready(p)).count() as i32);
        status.terminating = Some(terminating);
        let succeeded = status.succeeded.unwrap_or(0);
        let failed = status.failed.unwrap_or(0);
        let completed = indexes::parse(status.completed_indexes.as_deref().unwrap_or_default());

        // 2. Has the Job met its end?
        let mut requeue = Some(RESYNC);
        let ending = match Ending::recorded(&status) {
            Some(ending) => Some(ending),
            None if fail_job.is_some() => fail_job.map(|message| Ending::failed("PodFailurePolicy", &message)),
            None => {
                let restarts: i32 =
                    if spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure") {
                        active.iter().map(|p| restart_count(p)).sum()
                    } else {
                        0
                    };
                let deadline = spec.active_deadline_seconds.zip(status.start_time.as_ref()).map(|(seconds, start)| {
                    start.0.checked_add(SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MAX)
                });
                if failed + restarts > spec.backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT) {
                    Some(Ending::failed("BackoffLimitExceeded", "Job has reached the specified backoff limit"))
                } else if deadline.is_some_and(|d| d <= self.now) && !suspended {
                    Some(Ending::failed("DeadlineExceeded", "Job was active longer than specified deadline"))
                } else if complete(&spec, indexed, succeeded, &completed, active.len()) {
                    Some(Ending::succeeded())
                } else {
                    if let Some(deadline) = deadline.filter(|_| !suspended) {
                        requeue = Some(self.context.timing.clock.until(deadline).min(RESYNC));
                    }
                    None
                }
            }
        };

        if let Some(ending) = ending {
            return self.finish(status, ending, &active, terminating).await;
        }

        // 3. Suspended: no pods; otherwise towards parallelism.
        if suspended {
            self.delete_pods(&active, false).await?;
            status.active = Some(0);
            status.ready = Some(0);
            if condition(Some(&status), "Suspended").is_none() {
                set_condition(&mut status, "Suspended", "True", "JobSuspended", "Job suspended", self.now);
                self.event(false, "Suspended", "Job suspended".into());
            }
        } else {
            if condition(Some(&status), "Suspended").is_some() {
                set_condition(&mut status, "Suspended", "False", "JobResumed", "Job resumed", self.now);
                self.event(false, "Resumed", "Job resumed".into());
                // A resumed Job's deadline counts from now.
                status.start_time = None;
            }
            status.start_time.get_or_insert(Time(self.now));
            if let Some(wait) = self.scale(&spec, indexed, &pods, &active, &completed, succeeded, &mut status).await? {
                requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
            }
        }
        self.write_status(status).await?;
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// Moves pods that finished into the counts: their UIDs into uncountedTerminatedPods
    /// (written), their finalizers off, then into succeeded / failed / completedIndexes.
    /// Returns the message of a FailJob rule that a failed pod matched.
    async fn track_finished_pods(
        &mut self,
        status: &mut JobStatus,
        pods: &[Pod],
        indexed: bool,
    ) -> Result<Option<String>, kube::Error> {
        let spec = self.spec();
        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
        let mut newly_finished = false;
        let mut fail_job = None;
        let mut ignored = Vec::new();
        let mut indexes_by_uid = HashMap::new();
        for pod in pods.iter().filter(|p| pods::has_tracking_finalizer(p)) {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let listed = |list: &Option<Vec<String>>| list.iter().flatten().any(|u| *u == uid);
            if listed(&uncounted.succeeded) || listed(&uncounted.failed) {
                indexes_by_uid.insert(uid, pods::completion_index(pod));
                continue;
            }
            if pods::phase(pod) == "Succeeded" {
                uncounted.succeeded.get_or_insert_with(Vec::new).push(uid.clone());
            } else if pods::phase(pod) == "Failed" || pod.metadata.deletion_timestamp.is_some() {
                match failure_policy::evaluate(spec.pod_failure_policy.as_ref(), pod) {
                    PolicyAction::Ignore => {
                        ignored.push(pod);
                        continue;
                    }
                    PolicyAction::FailJob(message) => {
                        fail_job.get_or_insert(message);
                    }
                    PolicyAction::Count => {}
                }
                uncounted.failed.get_or_insert_with(Vec::new).push(uid.clone());
            } else {
                continue;
            }
            indexes_by_uid.insert(uid, pods::completion_index(pod));
            newly_finished = true;
        }
        if newly_finished {
            self.write_status(status.clone()).await?;
        }
        // Ignored failures are not counted at all; counted ones once their UID is recorded.
        let recorded: Vec<&Pod> = pods
            .iter()
            .filter(|p| pods::has_tracking_finalizer(p))
            .filter(|p| indexes_by_uid.contains_key(p.metadata.uid.as_deref().unwrap_or_default()))
            .chain(ignored)
            .collect();
        self.release(recorded.into_iter()).await?;

        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
        let succeeded_uids = uncounted.succeeded.take().unwrap_or_default();
        let failed_uids = uncounted.failed.take().unwrap_or_default();
        let mut completed = indexes::parse(status.completed_indexes.as_deref().unwrap_or_default());
        let completions = spec.completions.unwrap_or(1);
        let mut succeeded = status.succeeded.unwrap_or(0);
        for uid in &succeeded_uids {
            if !indexed {
                succeeded += 1;
                continue;
            }
            // An index counts once, and only when it is within completions.
            let index = indexes_by_uid.get(uid).copied().flatten().or_else(|| {
                pods.iter().find(|p| p.metadata.uid.as_ref() == Some(uid)).and_then(pods::completion_index)
            });
            if let Some(index) = index.filter(|i| *i < completions) {
                if completed.insert(index) {
                    succeeded += 1;
                }
            }
        }
        status.succeeded = Some(succeeded);
        status.failed = Some(status.failed.unwrap_or(0) + failed_uids.len() as i32);
        if indexed {
            status.completed_indexes = Some(indexes::format(&completed));
        }
        Ok(fail_job)
    }

    /// Removes the tracking finalizer from `pods`.
    async fn release<'p>(&self, pods: impl Iterator<Item = &'p Pod>) -> Result<(), kube::Error> {
        let patches = pods.filter(|p| pods::has_tracking_finalizer(p)).map(|pod| async move {
            let position = pod.finalizers().iter().position(|f| f == TRACKING_FINALIZER).unwrap_or(0);
            let path = format!("/metadata/finalizers/{position}");
            // The test makes the removal exact even if the list changed since we read it.
            let patch: json_patch::Patch = serde_json::from_value(json!([
                {"op": "test", "path": path, "value": TRACKING_FINALIZER},
                {"op": "remove", "path": path},
            ]))
            .unwrap_or_default();
            match self.pods_api.patch(&pod.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
                Ok(_) => Ok(()),
                Err(e) if is_status(&e, &[404]) => Ok(()),
                Err(e) => Err(e),
            }
        });
        future::try_join_all(patches).await.map(|_| ())
    }

    /// Deletes pods; `counted`: their ends count as failures (a failing Job's pods),
    /// otherwise they are released first (suspension, scale-down).
    async fn delete_pods(&self, victims: &[&Pod], counted: bool) -> Result<(), kube::Error> {
        if !counted {
            self.release(victims.iter().copied()).await?;
        }
        let deletions = victims.iter().map(|pod| async move {
            match self.pods_api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    self.event(false, "SuccessfulDelete", format!("Deleted pod: {}", pod.name_any()));
                    Ok(())
                }
                Err(e) if is_status(&e, &[404]) => Ok(()),
                Err(e) => Err(e),
            }
        });
        future::try_join_all(deletions).await.map(|_| ())
    }

    /// The Job has met its end: record it, stop what still runs, and once nothing does,
    /// the terminal condition.
    async fn finish(
        &mut self,
        mut status: JobStatus,
        ending: Ending,
        active: &[&Pod],
        terminating: i32,
    ) -> Result<Action, kube::Error> {
        if condition(Some(&status), ending.interim).is_none() {
            set_condition(&mut status, ending.interim, "True", &ending.reason, &ending.message, self.now);
        }
        self.delete_pods(active, true).await?;
        // Finished pods were counted before this; the terminal condition waits for the rest.
        if active.is_empty() && terminating == 0 {
            set_condition(&mut status, ending.terminal, "True", &ending.reason, &ending.message, self.now);
            if ending.terminal == "Complete" {
                status.completion_time = Some(Time(self.now));
                self.event(false, "Completed", "Job completed".into());
            } else {
                self.event(true, reason_static(&ending.reason), ending.message.clone());
            }
        }
        status.active = Some(0);
        status.ready = Some(0);
        self.write_status(status).await?;
        Ok(Action::requeue(RESYNC))
    }

    /// Creates or deletes pods towards the wanted number of active ones. Returns how
    /// long to wait when new pods are held back by the failure backoff.
    #[allow(clippy::too_many_arguments)]
    async fn scale(
        &self,
        spec: &k8s_openapi::api::batch::v1::JobSpec,
        indexed: bool,
        pods: &[Pod],
        active: &[&Pod],
        completed: &BTreeSet<i32>,
        succeeded: i32,
        status: &mut JobStatus,
    ) -> Result<Option<Duration>, kube::Error> {
        let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
        let want = match spec.completions {
            _ if indexed => parallelism,
            Some(completions) => parallelism.min((completions - succeeded).max(0) as usize),
            // Without completions, once any pod succeeded no more start; the others finish.
            None if succeeded > 0 => active.len(),
            None => parallelism,
        };
        if active.len() > want {
            // Remove the newest first (those that ran least), as Kubernetes ranks them.
            let mut extra: Vec<&Pod> = active.to_vec();
            extra.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)));
            extra.truncate(active.len() - want);
            self.delete_pods(&extra, false).await?;
            status.active = Some(want as i32);
            return Ok(None);
        }
        let missing: Vec<Option<i32>> = if indexed {
            let running: BTreeSet<i32> = active.iter().filter_map(|p| pods::completion_index(p)).collect();
            (0..spec.completions.unwrap_or(1))
                .filter(|i| !completed.contains(i) && !running.contains(i))
                .take(want.saturating_sub(active.len()))
                .map(Some)
                .collect()
        } else {
            vec![None; want.saturating_sub(active.len())]
        };
        if missing.is_empty() {
            return Ok(None);
        }
        if let Some(wait) = self.backoff(pods) {
            return Ok(Some(wait));
        }
        let creations = missing.into_iter().map(|index| async move {
            match self.pods_api.create(&PostParams::default(), &pods::new_pod(&self.job, index)).await {
                Ok(pod) => {
                    self.event(false, "SuccessfulCreate", format!("Created pod: {}", pod.name_any()));
                    Ok(1)
                }
                Err(e) => {
                    self.event(true, "FailedCreate", format!("Error creating: {e}"));
                    Err(e)
                }
            }
        });
        let created: i32 = future::try_join_all(creations).await?.into_iter().sum();
        status.active = Some(status.active.unwrap_or(0) + created);
        Ok(None)
    }

    /// How long new pods must still wait after the failures since the last success:
    /// the base delay, doubled for each further failure, up to the maximum.
    fn backoff(&self, pods: &[Pod]) -> Option<Duration> {
        let last_success = pods.iter().filter(|p| pods::phase(p) == "Succeeded").filter_map(finished_at).max();
        let failures: Vec<Timestamp> = pods
            .iter()
            .filter(|p| pods::phase(p) == "Failed")
            .filter_map(finished_at)
            .filter(|at| last_success.is_none_or(|s| *at > s))
            .collect();
        let last_failure = failures.iter().max()?;
        let timing = &self.context.timing;
        let delay = backoff_delay(timing.job_backoff_base, timing.job_backoff_max, failures.len());
        let ready_at = last_failure.checked_add(delay).ok()?;
        let wait = self.context.timing.clock.until(ready_at);
        (!wait.is_zero()).then_some(wait)
    }

    fn event(&self, warning: bool, reason: &'static str, note: String) {
        let events = self.context.events.reporting_as(NAME);
        let action = if reason.contains("Create") {
            "Create"
        } else if reason.contains("Delete") {
            "Delete"
        } else {
            "Sync"
        };
        let regarding = reference(&self.job);
        if warning {
            events.warning(regarding, action, reason, note);
        } else {
            events.normal(regarding, action, reason, note);
        }
    }

    /// Writes status against the resourceVersion read (a conflict retries the sync).
    async fn write_status(&mut self, mut status: JobStatus) -> Result<(), kube::Error> {
        status.uncounted_terminated_pods.get_or_insert_with(UncountedTerminatedPods::default);
        if self.job.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut job = self.job.clone();
        job.status = Some(status);
        self.job = self.jobs.replace_status(&job.name_any(), &PostParams::default(), &job).await?;
        Ok(())
    }
}

/// The wait before replacing a pod after `failures` consecutive failures (at least one).
fn backoff_delay(base: Duration, max: Duration, failures: usize) -> Duration {
    let exponent = failures.saturating_sub(1).min(31) as u32;
    base.saturating_mul(1u32 << exponent).min(max)
}

/// When a finished pod ended: its last container's finish, else its Ready condition's change.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    let containers = status.container_statuses.iter().flatten();
    let finished =
        containers.filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref()).map(|t| t.0).max();
    finished.or_else(|| {
        status.conditions.iter().flatten().filter_map(|c| c.last_transition_time.as_ref()).map(|t| t.0).max()
    })
}

fn restart_count(pod: &Pod) -> i32 {
    let status = pod.status.as_ref();
    status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().map(|c| c.restart_count).sum()
}

/// Whether the success criteria are met.
fn complete(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    indexed: bool,
    succeeded: i32,
    completed: &BTreeSet<i32>,
    active: usize,
) -> bool {
    match spec.completions {
        Some(completions) if indexed => completed.len() as i32 >= completions,
        Some(completions) => succeeded >= completions,
        // Without completions: one success, once the others have stopped.
        None => succeeded > 0 && active == 0,
    }
}

/// Event reasons are static strings; the failure reasons are a known few.
fn reason_static(reason: &str) -> &'static str {
    match reason {
        "BackoffLimitExceeded" => "BackoffLimitExceeded",
        "DeadlineExceeded" => "DeadlineExceeded",
        "PodFailurePolicy" => "PodFailurePolicy",
        _ => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_ten_seconds_up_to_six_minutes() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(360));
        let delays: Vec<u64> = (1..=7).map(|n| backoff_delay(base, max, n).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 320, 360]);
        assert_eq!(backoff_delay(base, max, 1000), max);
    }
}
