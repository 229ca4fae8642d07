//! ReplicaSet controller (kube-controller-manager's replicaset-controller): keeps
//! `spec.replicas` active pods for every ReplicaSet, made from its template.
//!
//! Each sync claims the pods of the namespace (adopting orphans the selector matches,
//! releasing owned pods it no longer matches), creates missing pods in slow-start batches
//! (1, 2, 4, ... so a failing template costs one request, not hundreds), deletes surplus
//! pods in Kubernetes' deletion order, and writes the status. Expectations hold a
//! ReplicaSet back until the watch has seen its own creations and deletions, so that a
//! slow watch never makes it create or delete twice.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{self, join_all};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use skiff_api::selector::LabelSelector;
use skiff_client::events::{reference, Recorder};
use skiff_client::is_status;
use skiff_client::synced::Synced;
use tracing::debug;

use crate::expectations::Expectations;
use crate::informer::Change;
use crate::ownership::{self, Claim};
use crate::pods;
use crate::Context;

pub const NAME: &str = "replicaset-controller";

/// Pods created or deleted per sync at most (Kubernetes' burstReplicas).
pub const BURST_REPLICAS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the pod cache stopped")]
    CacheStopped,
}

struct State {
    context: Arc<Context>,
    pods: Store<Pod>,
    pods_synced: Synced,
    sets: Store<ReplicaSet>,
    /// Keyed by the ReplicaSet's uid, so a ReplicaSet recreated under the same name
    /// starts afresh.
    expectations: Expectations,
    events: Recorder,
}

pub async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let pods = context.informers.pods();
    let controller = Controller::new(Api::<ReplicaSet>::all(client), watcher::Config::default());
    let state = Arc::new(State {
        events: context.events.reporting_as(NAME),
        pods: pods.store(),
        pods_synced: pods.synced(),
        context: context.clone(),
        sets: controller.store(),
        expectations: Expectations::default(),
    });
    let observer = state.clone();
    let pod_changes = pods
        .subscribe()
        .inspect(move |change| observe(&observer, change))
        .filter_map(|change| future::ready(change.object().cloned()));
    let sets = state.sets.clone();
    controller
        .watches_shared_stream(pod_changes, move |pod| owners_of(&sets, &pod))
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "replicaset reconcile failed");
            }
        })
        .await;
}

fn error_policy(_: Arc<ReplicaSet>, error: &Error, _: Arc<State>) -> Action {
    debug!(%error, "retrying replicaset");
    Action::requeue(Duration::from_millis(500))
}

/// The uid of the ReplicaSet controlling `pod`.
fn owning_set(pod: &Pod) -> Option<&str> {
    ownership::controller_of(&pod.metadata)
        .filter(|r| r.kind == "ReplicaSet" && r.api_version.starts_with("apps/"))
        .map(|r| r.uid.as_str())
}

/// Marks the creations and deletions a pod change shows as observed.
fn observe(state: &State, change: &Change<Pod>) {
    match change {
        Change::Applied { old, new: pod } => {
            let Some(owner) = owning_set(pod) else { return };
            if old.is_none() {
                state.expectations.creation_observed(owner);
            }
            let was_deleting = old.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_some());
            if pod.metadata.deletion_timestamp.is_some() && !was_deleting {
                state.expectations.deletion_observed(owner, &pods::key(pod));
            }
        }
        Change::Deleted(pod) => {
            if let Some(owner) = owning_set(pod) {
                state.expectations.deletion_observed(owner, &pods::key(pod));
            }
        }
        Change::Synced => {}
    }
}

/// The ReplicaSets a pod event concerns: its controller, or for an orphan every
/// ReplicaSet of its namespace whose selector matches (one may adopt it).
fn owners_of(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = ownership::controller_of(&pod.metadata) {
        if owner.kind != "ReplicaSet" {
            return Vec::new();
        }
        return vec![ObjectRef::new(&owner.name).within(&namespace)];
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Vec::new();
    }
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| selector_of(rs).is_some_and(|s| !s.is_empty() && s.matches(&pod.metadata.labels)))
        .map(|rs| ObjectRef::from_obj(&**rs))
        .collect()
}

fn selector_of(rs: &ReplicaSet) -> Option<LabelSelector> {
    rs.spec.as_ref().and_then(|s| LabelSelector::from_api(&s.selector).ok())
}

async fn reconcile(rs: Arc<ReplicaSet>, state: Arc<State>) -> Result<Action, Error> {
    state.pods_synced.wait().await.map_err(|_| Error::CacheStopped)?;
    let (Some(spec), Some(uid)) = (rs.spec.as_ref(), rs.uid()) else { return Ok(Action::await_change()) };
    // An invalid selector never passes validation; an empty one would select everything.
    let Some(selector) = selector_of(&rs).filter(|s| !s.is_empty()) else { return Ok(Action::await_change()) };
    let namespace = rs.namespace().unwrap_or_default();
    let needs_sync = state.expectations.satisfied(&uid);
    let candidates: Vec<Arc<Pod>> =
        state.pods.state().into_iter().filter(|p| p.metadata.namespace.as_deref() == Some(&namespace)).collect();
    let owned = claim_pods(&rs, &uid, &selector, &candidates, &state).await?;

    let mut failure = None;
    if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        failure = manage_replicas(&rs, &uid, &owned, &candidates, &state).await;
    }
    let now = Timestamp::now();
    let status = calculate_status(&rs, &owned, failure.as_ref(), now);
    if rs.status.as_ref() != Some(&status) {
        let api = Api::<ReplicaSet>::namespaced(state.context.client.clone(), &namespace);
        write_status(&api, &rs, &status).await?;
    }
    if let Some((_, message)) = failure {
        debug!(replicaset = %rs.name_any(), %message, "syncing replicas failed");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // A Ready pod becomes available minReadySeconds later: look again then.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0 {
        let next = owned
            .iter()
            .filter_map(|p| pods::available_from(p, min_ready))
            .filter(|at| *at > now)
            .min()
            .map(|at| Duration::from_nanos((at.as_nanosecond() - now.as_nanosecond()).max(0) as u64));
        if let Some(after) = next {
            return Ok(Action::requeue(after + Duration::from_millis(100)));
        }
    }
    Ok(Action::await_change())
}

/// Writes `status` onto the cached ReplicaSet, and once more onto a fresh read when the
/// cache was behind (a conflict), as kube-controller-manager's updateReplicaSetStatus
/// does: a cache lagging our own last write costs a GET, not a requeue. The status
/// stands on what this sync saw; its observedGeneration says which spec that was.
async fn write_status(api: &Api<ReplicaSet>, rs: &ReplicaSet, status: &ReplicaSetStatus) -> Result<(), Error> {
    let name = rs.name_any();
    let mut updated = rs.clone();
    updated.status = Some(status.clone());
    match api.replace_status(&name, &PostParams::default(), &updated).await {
        Err(e) if is_status(&e, &[409]) => {
            let Some(mut fresh) = api.get_opt(&name).await? else { return Ok(()) };
            if fresh.uid() != rs.uid() {
                return Ok(());
            }
            fresh.status = Some(status.clone());
            api.replace_status(&name, &PostParams::default(), &fresh).await?;
            Ok(())
        }
        result => result.map(drop).map_err(Error::from),
    }
}

/// The active pods this ReplicaSet controls after adopting and releasing.
async fn claim_pods(
    rs: &ReplicaSet,
    uid: &str,
    selector: &LabelSelector,
    candidates: &[Arc<Pod>],
    state: &State,
) -> Result<Vec<Arc<Pod>>, Error> {
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let api = Api::<Pod>::namespaced(state.context.client.clone(), &rs.namespace().unwrap_or_default());
    let mut owned = Vec::new();
    // Checked once, lazily: adopt only for a ReplicaSet that still exists undeleted.
    let mut may_adopt: Option<bool> = None;
    for pod in candidates.iter().filter(|p| pods::is_active(p)) {
        match ownership::claim(uid, deleting, selector, &pod.metadata) {
            Claim::Owned => owned.push(pod.clone()),
            Claim::Ignore => {}
            Claim::Release => {
                ownership::release(&api, &pod.name_any(), pod.uid().as_deref().unwrap_or_default(), uid).await?;
            }
            Claim::Adopt => {
                if may_adopt.is_none() {
                    may_adopt = Some(still_current(rs, uid, state).await?);
                }
                if may_adopt != Some(true) {
                    continue;
                }
                let owner = ownership::controller_reference(rs);
                match ownership::adopt(&api, &pod.name_any(), pod.uid().as_deref().unwrap_or_default(), owner.clone())
                    .await
                {
                    Ok(()) => {
                        let mut adopted = (**pod).clone();
                        adopted.metadata.owner_references.get_or_insert_with(Vec::new).push(owner);
                        owned.push(Arc::new(adopted));
                    }
                    // Gone or changed meanwhile: the next event says what became of it.
                    Err(e) if is_status(&e, &[404, 409, 422]) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(owned)
}

/// Whether the ReplicaSet, read from the API rather than the cache, is still this one
/// and not being deleted.
async fn still_current(rs: &ReplicaSet, uid: &str, state: &State) -> Result<bool, Error> {
    let api = Api::<ReplicaSet>::namespaced(state.context.client.clone(), &rs.namespace().unwrap_or_default());
    Ok(api
        .get_opt(&rs.name_any())
        .await?
        .is_some_and(|fresh| fresh.uid().as_deref() == Some(uid) && fresh.metadata.deletion_timestamp.is_none()))
}

/// Which way a failed sync went, and the API's message (for the ReplicaFailure condition).
type Failure = (&'static str, String);

pub(crate) fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// Creates or deletes pods to reach spec.replicas; returns what failed, if anything.
async fn manage_replicas(
    rs: &ReplicaSet,
    uid: &str,
    owned: &[Arc<Pod>],
    candidates: &[Arc<Pod>],
    state: &State,
) -> Option<Failure> {
    let desired = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
    let namespace = rs.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(state.context.client.clone(), &namespace);
    let regarding = reference(rs);
    if owned.len() < desired {
        let count = (desired - owned.len()).min(BURST_REPLICAS);
        state.expectations.expect_creations(uid, count);
        let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
        let pod = pods::from_template(&template, &namespace, &rs.name_any(), ownership::controller_reference(rs));
        let (created, error) = slow_start_batches(count, || async {
            let created = api.create(&PostParams::default(), &pod).await?;
            state.events.normal(
                regarding.clone(),
                "Create",
                "SuccessfulCreate",
                format!("Created pod: {}", created.name_any()),
            );
            Ok::<_, kube::Error>(())
        })
        .await;
        // The creations that failed or were never sent will never be observed.
        for _ in created..count {
            state.expectations.creation_observed(uid);
        }
        if let Some(e) = error {
            let message = api_message(&e);
            state.events.warning(regarding, "Create", "FailedCreate", format!("Error creating: {message}"));
            return Some(("FailedCreate", message));
        }
    } else if owned.len() > desired {
        let count = (owned.len() - desired).min(BURST_REPLICAS);
        let victims = pods_to_delete(rs, owned, candidates, count, state);
        state.expectations.expect_deletions(uid, victims.iter().map(|p| pods::key(p)));
        let api = &api;
        let results = join_all(victims.iter().map(|pod| async move {
            let result = api.delete(&pod.name_any(), &DeleteParams::default()).await;
            (pod, result)
        }))
        .await;
        let mut failure = None;
        for (pod, result) in results {
            match result {
                Ok(_) => {
                    let note = format!("Deleted pod: {}", pod.name_any());
                    state.events.normal(regarding.clone(), "Delete", "SuccessfulDelete", note);
                }
                Err(e) => {
                    state.expectations.deletion_observed(uid, &pods::key(pod));
                    if !is_status(&e, &[404]) {
                        let message = api_message(&e);
                        state.events.warning(
                            regarding.clone(),
                            "Delete",
                            "FailedDelete",
                            format!("Error deleting: {message}"),
                        );
                        failure = Some(("FailedDelete", message));
                    }
                }
            }
        }
        return failure;
    }
    None
}

/// Runs `count` calls of `call` in batches of 1, 2, 4, ...; stops after the first batch
/// with a failure. Returns how many succeeded, and the first error.
pub async fn slow_start_batches<F, Fut, E>(count: usize, call: F) -> (usize, Option<E>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
{
    let (mut done, mut succeeded, mut batch) = (0, 0, 1);
    while done < count {
        let size = batch.min(count - done);
        let results = join_all((0..size).map(|_| call())).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(()) => succeeded += 1,
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if first_error.is_some() {
            return (succeeded, first_error);
        }
        done += size;
        batch *= 2;
    }
    (succeeded, None)
}

/// The `count` pods to delete first. Pods on nodes crowded with pods of this ReplicaSet
/// and its siblings (same controller) go before others.
fn pods_to_delete(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    candidates: &[Arc<Pod>],
    count: usize,
    state: &State,
) -> Vec<Arc<Pod>> {
    let mut related_owners = vec![rs.uid().unwrap_or_default()];
    if let Some(controller) = ownership::controller_of(&rs.metadata) {
        let siblings = state.sets.state();
        related_owners.extend(
            siblings
                .iter()
                .filter(|s| {
                    s.namespace() == rs.namespace() && ownership::is_controlled_by(&s.metadata, &controller.uid)
                })
                .filter_map(|s| s.uid()),
        );
    }
    let related = candidates.iter().filter(|p| owning_set(p).is_some_and(|o| related_owners.iter().any(|r| r == o)));
    let ranks = pods::ranks_by_node(related.map(|p| &**p));
    let now = Timestamp::now();
    let mut ordered = owned.to_vec();
    ordered.sort_by(|a, b| pods::deletion_order(a, b, &ranks, now));
    ordered.truncate(count);
    ordered
}

fn calculate_status(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    failure: Option<&Failure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels =
        spec.and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            template_labels.iter().flatten().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = owned.iter().filter(|p| pods::is_ready(p)).count();
    let available = owned.iter().filter(|p| pods::is_available(p, min_ready, now)).count();

    let mut conditions: Vec<ReplicaSetCondition> =
        rs.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some((reason, message)) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(reason.to_string()),
            message: Some(message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    let count = |n: usize| (n > 0).then_some(n as i32);
    ReplicaSetStatus {
        replicas: owned.len() as i32,
        fully_labeled_replicas: count(fully_labeled),
        ready_replicas: count(ready),
        available_replicas: count(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: rs.status.as_ref().and_then(|s| s.terminating_replicas),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn status_counts_pods_and_reports_a_failed_create_until_a_sync_succeeds() {
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "rs", "generation": 4},
            "spec": {"replicas": 3, "minReadySeconds": 10, "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a", "tier": "web"}}}}
        }))
        .unwrap();
        let pod = |labels: serde_json::Value, ready_at: Option<&str>| {
            let conditions = ready_at.map(|t| json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]));
            Arc::new(
                serde_json::from_value::<Pod>(json!({"metadata": {"labels": labels},
                    "status": {"phase": "Running", "conditions": conditions.unwrap_or(json!([]))}}))
                .unwrap(),
            )
        };
        let pods = vec![
            pod(json!({"app": "a", "tier": "web"}), Some("2026-01-01T00:00:00Z")),
            pod(json!({"app": "a", "tier": "web"}), Some("2026-01-01T00:00:55Z")),
            pod(json!({"app": "a"}), None),
        ];
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let failure = ("FailedCreate", "pods \"rs-x\" is forbidden: exceeded quota".to_string());
        let status = calculate_status(&rs, &pods, Some(&failure), now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!((condition.type_.as_str(), condition.status.as_str()), ("ReplicaFailure", "True"));
        assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
        assert_eq!(condition.message.as_deref(), Some(failure.1.as_str()));

        let mut failed = rs.clone();
        failed.status = Some(status);
        assert_eq!(calculate_status(&failed, &pods, None, now).conditions, None);
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_the_first_failing_batch() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batches(10, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, ()>(())
        })
        .await;
        assert_eq!((ok, err), (10, None));
        assert_eq!(calls.load(Ordering::SeqCst), 10);

        // Fails from the 4th call on: batches 1, 2 pass, the batch of 4 fails; 8 never start.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batches(15, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n >= 3 {
                Err("quota")
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!((ok, err), (3, Some("quota")));
        assert_eq!(calls.load(Ordering::SeqCst), 7);
    }
}
