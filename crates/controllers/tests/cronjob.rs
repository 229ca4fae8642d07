//! The CronJob controller through the API, with an adjustable clock so that schedules
//! come due at once instead of after minutes of real time.

mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use skiff_controllers::{Clock, Timing};
use support::{eventually, json, Cluster, PATIENCE};

fn cronjob(name: &str, spec: serde_json::Value, command: serde_json::Value) -> CronJob {
    let mut spec = spec;
    spec["jobTemplate"] = json!({"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{
        "name": "main", "image": "busybox", "command": command
    }]}}}});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn start() -> (Cluster, Clock) {
    let clock = Clock::adjustable();
    let timing = Timing { cronjob_sync_period: Duration::from_millis(200), clock: clock.clone(), ..Timing::default() };
    (Cluster::start_with(1, timing).await, clock)
}

/// The next whole minute after `at`.
fn next_minute(at: Timestamp) -> Timestamp {
    Timestamp::from_second((at.as_second().div_euclid(60) + 1) * 60).unwrap()
}

async fn owned_jobs(jobs: &Api<Job>, cronjob: &str) -> Vec<Job> {
    let list = jobs.list(&ListParams::default()).await.unwrap().items;
    list.into_iter().filter(|j| j.owner_references().iter().any(|o| o.name == cronjob)).collect()
}

async fn event_notes(cluster: &Cluster, name: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = cluster.api("default");
    let list = events.list(&ListParams::default()).await.unwrap().items;
    list.into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_fires_at_its_scheduled_minute_and_keeps_its_history() {
    let (cluster, clock) = start().await;
    let cronjobs: Api<CronJob> = cluster.api("default");
    let jobs: Api<Job> = cluster.api("default");
    let spec = json!({"schedule": "* * * * *", "timeZone": "Etc/UTC", "successfulJobsHistoryLimit": 1});
    let created = cronjobs.create(&PostParams::default(), &cronjob("tick", spec, json!(["true"]))).await.unwrap();
    let created_at = created.metadata.creation_timestamp.unwrap().0;

    // Just before the next minute: nothing yet; a second later the minute's Job.
    let first = next_minute(created_at);
    clock.set(first - SignedDuration::from_millis(1500));
    let job =
        eventually("the first job", PATIENCE, || async { owned_jobs(&jobs, "tick").await.into_iter().next() }).await;
    assert!(clock.now() >= first, "not before its time");
    assert_eq!(job.name_any(), format!("tick-{}", first.as_second() / 60));
    assert_eq!(
        job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        first.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    );
    let owner = &job.owner_references()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("CronJob", Some(true)));
    let status = eventually("status after the first run", PATIENCE, || async {
        let status = cronjobs.get("tick").await.ok()?.status?;
        status.last_successful_time.is_some().then_some(status)
    })
    .await;
    assert_eq!(status.last_schedule_time.unwrap().0, first);
    assert!(status.active.unwrap_or_default().is_empty(), "the finished job is no longer active");
    assert!(!event_notes(&cluster, "tick", "SuccessfulCreate").await.is_empty());
    eventually("SawCompletedJob", PATIENCE, || async {
        let notes = event_notes(&cluster, "tick", "SawCompletedJob").await;
        notes.contains(&format!("Saw completed job: {}, condition: Complete", job.name_any())).then_some(())
    })
    .await;

    // The next minute's run; with a history of one, the first Job goes.
    let second = first + SignedDuration::from_secs(60);
    clock.set(second - SignedDuration::from_millis(500));
    eventually("only the second job left", PATIENCE, || async {
        let names: Vec<String> = owned_jobs(&jobs, "tick").await.iter().map(|j| j.name_any()).collect();
        (names == [format!("tick-{}", second.as_second() / 60)]).then_some(())
    })
    .await;
    let deleted = event_notes(&cluster, "tick", "SuccessfulDelete").await;
    assert!(deleted.contains(&format!("Deleted job {}", job.name_any())), "{deleted:?}");

    let table = skiff_testkit::ok(&cluster.server.kubectl(&["get", "cronjob", "tick", "--no-headers"]));
    let row: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(&row[..4], ["tick", "*", "*", "*"], "{table}");
    assert_eq!(&row[6..9], ["Etc/UTC", "False", "0"], "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_runs_while_one_is_active_and_replace_replaces_it() {
    let (cluster, clock) = start().await;
    let cronjobs: Api<CronJob> = cluster.api("default");
    let jobs: Api<Job> = cluster.api("default");
    let long = json!(["sleep", "3600"]);
    let forbid = json!({"schedule": "* * * * *", "concurrencyPolicy": "Forbid"});
    let replace = json!({"schedule": "* * * * *", "concurrencyPolicy": "Replace"});
    let created = cronjobs.create(&PostParams::default(), &cronjob("forbid", forbid, long.clone())).await.unwrap();
    cronjobs.create(&PostParams::default(), &cronjob("replace", replace, long)).await.unwrap();
    let first = next_minute(created.metadata.creation_timestamp.unwrap().0 + SignedDuration::from_secs(1));
    clock.set(first);
    for name in ["forbid", "replace"] {
        eventually("a first job each", PATIENCE, || async { (owned_jobs(&jobs, name).await.len() == 1).then_some(()) })
            .await;
    }
    clock.set(first + SignedDuration::from_secs(60));
    eventually("the Forbid skip reported", PATIENCE, || async {
        let notes = event_notes(&cluster, "forbid", "JobAlreadyActive").await;
        notes
            .contains(
                &"Not starting job because prior execution is running and concurrency policy is Forbid".to_string(),
            )
            .then_some(())
    })
    .await;
    assert_eq!(owned_jobs(&jobs, "forbid").await.len(), 1);
    let second_name = format!("replace-{}", first.as_second() / 60 + 1);
    let jobs_now = eventually("the replacement", PATIENCE, || async {
        let owned = owned_jobs(&jobs, "replace").await;
        let live: Vec<String> =
            owned.iter().filter(|j| j.metadata.deletion_timestamp.is_none()).map(|j| j.name_any()).collect();
        (live == [second_name.clone()]).then_some(live)
    })
    .await;
    assert_eq!(jobs_now.len(), 1);
    eventually("replace's active list", PATIENCE, || async {
        let active = cronjobs.get("replace").await.ok()?.status?.active?;
        (active.len() == 1 && active[0].name.as_deref() == Some(second_name.as_str())).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_missed_start_times_are_reported_and_the_latest_runs() {
    let (cluster, clock) = start().await;
    let cronjobs: Api<CronJob> = cluster.api("default");
    let jobs: Api<Job> = cluster.api("default");
    let created = cronjobs
        .create(&PostParams::default(), &cronjob("late", json!({"schedule": "*/1 * * * *"}), json!(["true"])))
        .await
        .unwrap();
    // Three hours later: 180 missed minutes.
    let later = created.metadata.creation_timestamp.unwrap().0 + SignedDuration::from_hours(3);
    clock.set(later);
    let job = eventually("a job", PATIENCE, || async { owned_jobs(&jobs, "late").await.into_iter().next() }).await;
    assert_eq!(job.name_any(), format!("late-{}", later.as_second() / 60), "the most recent time runs");
    eventually("TooManyMissedTimes", PATIENCE, || async {
        let notes = event_notes(&cluster, "late", "TooManyMissedTimes").await;
        notes.iter().any(|n| n.starts_with("too many missed start times: 101.")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_a_job_from_a_cronjob() {
    let (cluster, _clock) = start().await;
    let cronjobs: Api<CronJob> = cluster.api("default");
    let spec = json!({"schedule": "@yearly", "suspend": true});
    cronjobs.create(&PostParams::default(), &cronjob("nightly", spec, json!(["true"]))).await.unwrap();
    let out = skiff_testkit::ok(&cluster.server.kubectl(&["create", "job", "manual-run", "--from=cronjob/nightly"]));
    assert_eq!(out.trim(), "job.batch/manual-run created");
    let jobs: Api<Job> = cluster.api("default");
    let job = eventually("the manual job completes", PATIENCE, || async {
        let job = jobs.get("manual-run").await.ok()?;
        let done =
            job.status.as_ref()?.conditions.iter().flatten().any(|c| c.type_ == "Complete" && c.status == "True");
        done.then_some(job)
    })
    .await;
    assert_eq!(job.annotations()["cronjob.kubernetes.io/instantiate"], "manual");
    assert_eq!(job.owner_references()[0].name, "nightly");
}
