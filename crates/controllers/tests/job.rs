//! The Job and TTL-after-finished controllers through the API, on simulated nodes whose
//! containers run the commands busybox would finish (`sh -c "sleep 0.2; exit 1"`).

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use skiff_controllers::Timing;
use support::{eventually, json, Cluster, PATIENCE};

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut spec = spec;
    let command = spec.as_object_mut().unwrap().remove("command").unwrap_or(json!(["sh", "-c", "sleep 0.2"]));
    spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{
        "name": "main", "image": "busybox", "command": command
    }]}});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

/// Short failure backoff so that retries do not take Kubernetes' 10 s, 20 s, ...
fn fast_timing() -> Timing {
    Timing { job_backoff_base: Duration::from_millis(100), ..Timing::default() }
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status.as_ref()?.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True")
}

async fn wait_for_condition(jobs: &Api<Job>, name: &str, type_: &str) -> Job {
    eventually(&format!("job {name} {type_}"), PATIENCE, || async {
        let job = jobs.get(name).await.ok()?;
        condition(&job, type_).is_some().then_some(job)
    })
    .await
}

async fn events_of(cluster: &Cluster, name: &str) -> Vec<(String, String)> {
    let events: Api<Event> = cluster.api("default");
    let list = events.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_its_completions_in_parallel_and_completes() {
    let cluster = Cluster::start(2).await;
    let jobs: Api<Job> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    jobs.create(&PostParams::default(), &job("pi", json!({"completions": 3, "parallelism": 2}))).await.unwrap();

    let done = wait_for_condition(&jobs, "pi", "Complete").await;
    let status = done.status.clone().unwrap();
    assert_eq!((status.succeeded, status.failed, status.active), (Some(3), Some(0), Some(0)));
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    let complete = condition(&done, "Complete").unwrap();
    assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
    assert_eq!(complete.message.as_deref(), Some("Reached expected number of succeeded pods"));
    assert!(condition(&done, "SuccessCriteriaMet").is_some(), "SuccessCriteriaMet comes first");
    let uncounted = status.uncounted_terminated_pods.unwrap();
    assert!(uncounted.succeeded.unwrap_or_default().is_empty() && uncounted.failed.unwrap_or_default().is_empty());

    let uid = done.uid().unwrap();
    let list = pods.list(&ListParams::default().labels("job-name=pi")).await.unwrap().items;
    assert_eq!(list.len(), 3, "one pod per completion, none retried");
    for pod in &list {
        assert_eq!(pod.labels()["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(pod.labels()["controller-uid"], uid);
        assert_eq!(pod.labels()["batch.kubernetes.io/job-name"], "pi");
        assert!(pod.finalizers().is_empty(), "the tracking finalizer is removed once counted");
        assert_eq!(pod.owner_references()[0].uid, uid);
        assert_eq!(pod.status.as_ref().unwrap().phase.as_deref(), Some("Succeeded"));
    }
    let events = eventually("Completed event", PATIENCE, || async {
        let events = events_of(&cluster, "pi").await;
        events.iter().any(|(reason, _)| reason == "Completed").then_some(events)
    })
    .await;
    assert!(events.contains(&("Completed".into(), "Job completed".into())));
    for pod in &list {
        assert!(events.contains(&("SuccessfulCreate".into(), format!("Created pod: {}", pod.name_any()))));
    }

    let table = cluster.kubectl_ok(&["get", "jobs"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["pi", "Complete", "3/3"], "{table}");
    assert!(row[3].ends_with('s'), "a duration: {table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_retries_with_backoff_then_fails() {
    let cluster = Cluster::start_with(1, fast_timing()).await;
    let jobs: Api<Job> = cluster.api("default");
    let spec = json!({"backoffLimit": 2, "command": ["sh", "-c", "sleep 0.1; exit 1"]});
    jobs.create(&PostParams::default(), &job("flaky", spec)).await.unwrap();

    let failed = wait_for_condition(&jobs, "flaky", "Failed").await;
    let status = failed.status.clone().unwrap();
    assert_eq!((status.failed, status.succeeded, status.active), (Some(3), Some(0), Some(0)), "1 + backoffLimit tries");
    let reason = condition(&failed, "Failed").unwrap();
    assert_eq!(reason.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(reason.message.as_deref(), Some("Job has reached the specified backoff limit"));
    assert_eq!(condition(&failed, "FailureTarget").unwrap().reason.as_deref(), Some("BackoffLimitExceeded"));
    assert!(status.completion_time.is_none());

    // No pod beyond the three tries, though each failure made a new one wait.
    let pods: Api<Pod> = cluster.api("default");
    let created = pods.list(&ListParams::default().labels("job-name=flaky")).await.unwrap().items;
    assert_eq!(created.len(), 3);

    eventually("BackoffLimitExceeded event", PATIENCE, || async {
        let events = events_of(&cluster, "flaky").await;
        events
            .contains(&("BackoffLimitExceeded".into(), "Job has reached the specified backoff limit".into()))
            .then_some(())
    })
    .await;
    let table = cluster.kubectl_ok(&["get", "job", "flaky", "--no-headers"]).await;
    let row: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(&row[..3], ["flaky", "Failed", "0/1"], "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_gives_each_pod_its_index_and_completes_every_index() {
    let cluster = Cluster::start(2).await;
    let jobs: Api<Job> = cluster.api("default");
    let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"});
    jobs.create(&PostParams::default(), &job("indexed", spec)).await.unwrap();
    let done = wait_for_condition(&jobs, "indexed", "Complete").await;
    let status = done.status.unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(status.succeeded, Some(3));

    let pods: Api<Pod> = cluster.api("default");
    let mut seen = Vec::new();
    for pod in pods.list(&ListParams::default().labels("job-name=indexed")).await.unwrap().items {
        let index = pod.annotations()["batch.kubernetes.io/job-completion-index"].clone();
        assert_eq!(pod.labels()["batch.kubernetes.io/job-completion-index"], index);
        assert!(pod.name_any().starts_with(&format!("indexed-{index}-")));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname, Some(format!("indexed-{index}")));
        let env = spec.containers[0].env.clone().unwrap();
        let field = env.iter().find(|e| e.name == "JOB_COMPLETION_INDEX").unwrap();
        let path = &field.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path;
        assert_eq!(path, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
        seen.push(index);
    }
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_failure_policy_fails_the_job_or_ignores_the_failure() {
    let cluster = Cluster::start_with(1, fast_timing()).await;
    let jobs: Api<Job> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    let rules = json!({"rules": [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]}},
    ]});
    // Each pod exits with its index: 0 succeeds, 1 fails again and again but is ignored,
    // so even with backoffLimit 0 the Job does not fail.
    let ignoring = json!({
        "completions": 2, "parallelism": 2, "completionMode": "Indexed", "backoffLimit": 0,
        "command": ["sh", "-c", "sleep 0.1; exit $JOB_COMPLETION_INDEX"], "podFailurePolicy": rules,
    });
    jobs.create(&PostParams::default(), &job("ignoring", ignoring)).await.unwrap();
    eventually("index 1 failed three times", PATIENCE, || async {
        let list = pods.list(&ListParams::default().labels("job-name=ignoring")).await.ok()?.items;
        let failed = list.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"));
        (failed.count() >= 3).then_some(())
    })
    .await;
    let status = jobs.get("ignoring").await.unwrap().status.unwrap();
    assert_eq!(status.failed, Some(0), "ignored failures are not counted");
    assert_eq!(status.completed_indexes.as_deref(), Some("0"));
    assert!(status.conditions.unwrap_or_default().iter().all(|c| c.type_ != "FailureTarget" && c.type_ != "Failed"));

    // Index 2 matches the FailJob rule.
    let failing = json!({
        "completions": 3, "parallelism": 3, "completionMode": "Indexed", "backoffLimit": 100,
        "command": ["sh", "-c", "sleep 0.1; exit $JOB_COMPLETION_INDEX"], "podFailurePolicy": rules,
    });
    jobs.create(&PostParams::default(), &job("policy", failing)).await.unwrap();
    let failed = wait_for_condition(&jobs, "policy", "Failed").await;
    let reason = condition(&failed, "Failed").unwrap();
    assert_eq!(reason.reason.as_deref(), Some("PodFailurePolicy"));
    let message = reason.message.clone().unwrap();
    assert!(message.starts_with("Container main for pod default/policy-2-"), "{message}");
    assert!(message.ends_with("failed with exit code 2 matching FailJob rule at index 1"), "{message}");
    assert_eq!(failed.status.unwrap().completed_indexes.as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_active_deadline_fails_and_its_pods_are_stopped() {
    let cluster = Cluster::start(1).await;
    let jobs: Api<Job> = cluster.api("default");
    let spec = json!({"activeDeadlineSeconds": 1, "command": ["sleep", "3600"]});
    jobs.create(&PostParams::default(), &job("slow", spec)).await.unwrap();
    let failed = wait_for_condition(&jobs, "slow", "Failed").await;
    let reason = condition(&failed, "Failed").unwrap();
    assert_eq!(reason.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(reason.message.as_deref(), Some("Job was active longer than specified deadline"));
    let status = failed.status.unwrap();
    assert_eq!((status.active, status.failed), (Some(0), Some(1)));
    let pods: Api<Pod> = cluster.api("default");
    eventually("the job's pod stopped", PATIENCE, || async {
        let list = pods.list(&ListParams::default().labels("job-name=slow")).await.ok()?.items;
        let stopped = |p: &Pod| {
            p.metadata.deletion_timestamp.is_some()
                || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        };
        list.iter().all(stopped).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_has_no_pods_until_resumed() {
    let cluster = Cluster::start(1).await;
    let jobs: Api<Job> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    let spec = json!({"parallelism": 2, "completions": 2, "command": ["sleep", "3600"]});
    jobs.create(&PostParams::default(), &job("later", spec)).await.unwrap();
    eventually("two running pods", PATIENCE, || async {
        let job = jobs.get("later").await.ok()?;
        (job.status?.ready == Some(2)).then_some(())
    })
    .await;

    let suspend = Patch::Merge(json!({"spec": {"suspend": true}}));
    jobs.patch("later", &PatchParams::default(), &suspend).await.unwrap();
    let suspended = wait_for_condition(&jobs, "later", "Suspended").await;
    let reason = condition(&suspended, "Suspended").unwrap();
    assert_eq!((reason.reason.as_deref(), reason.message.as_deref()), (Some("JobSuspended"), Some("Job suspended")));
    eventually("the pods deleted", PATIENCE, || async {
        let list = pods.list(&ListParams::default().labels("job-name=later")).await.ok()?.items;
        list.is_empty().then_some(())
    })
    .await;
    let status = jobs.get("later").await.unwrap().status.unwrap();
    assert_eq!((status.active, status.failed), (Some(0), Some(0)), "suspension is not a failure");
    let table = cluster.kubectl_ok(&["get", "job", "later", "--no-headers"]).await;
    assert_eq!(table.split_whitespace().nth(1), Some("Suspended"), "{table}");

    let resume = Patch::Merge(json!({"spec": {"suspend": false}}));
    jobs.patch("later", &PatchParams::default(), &resume).await.unwrap();
    let resumed = eventually("pods again", PATIENCE, || async {
        let job = jobs.get("later").await.ok()?;
        (job.status.as_ref()?.active == Some(2)).then_some(job)
    })
    .await;
    let condition = resumed.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Suspended").unwrap();
    assert_eq!((condition.status.as_str(), condition.reason.as_deref()), ("False", Some("JobResumed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_after_its_ttl() {
    let cluster = Cluster::start(1).await;
    let jobs: Api<Job> = cluster.api("default");
    let spec = json!({"ttlSecondsAfterFinished": 1, "command": ["true"]});
    let created = jobs.create(&PostParams::default(), &job("brief", spec)).await.unwrap();
    // Watched, not polled: completionTime has whole seconds, so the job may be deleted
    // well under a second after it completes, between two polls on a loaded machine.
    let params = WatchParams::default().fields("metadata.name=brief");
    let mut events = jobs.watch(&params, &created.resource_version().unwrap()).await.unwrap().boxed();
    let mut completed = false;
    let deleted = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.try_next().await.unwrap() {
            match event {
                WatchEvent::Modified(job) => completed |= condition(&job, "Complete").is_some(),
                WatchEvent::Deleted(_) => return true,
                _ => {}
            }
        }
        false
    })
    .await;
    assert!(completed, "the job was not seen Complete before it was deleted");
    assert_eq!(deleted, Ok(true), "the job was not deleted after its TTL");
}
