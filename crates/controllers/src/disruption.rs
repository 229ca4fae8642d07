//! Disruption controller: keeps every PodDisruptionBudget's status current
//! (kube-controller-manager's disruption-controller), which the eviction subresource of
//! the API server reads to allow or refuse an eviction.
//!
//! - expectedPods: with an integer minAvailable, the number of selected pods; otherwise
//!   (a percentage, or maxUnavailable) the sum of the scale of the pods' controllers
//!   (ReplicaSet, or the Deployment owning it; StatefulSet; ReplicationController).
//! - desiredHealthy: minAvailable, or expectedPods - maxUnavailable (percentages of
//!   expectedPods rounded up).
//! - currentHealthy: selected pods that are Ready, not being deleted, and not recently
//!   evicted (status.disruptedPods, which entries leave after the pod is gone or after
//!   two minutes).
//! - disruptionsAllowed = currentHealthy - desiredHealthy (never below 0, and 0 while no
//!   pod is expected), with the DisruptionAllowed condition (SufficientPods /
//!   InsufficientPods); when the status cannot be computed, disruptionsAllowed is set to 0
//!   (SyncFailed) so that no eviction is allowed on stale numbers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;
use skiff_api::selector::LabelSelector;
use skiff_client::events::reference;
use skiff_client::is_status;
use skiff_client::synced::Synced;
use tracing::debug;

use crate::Context;

pub const NAME: &str = "disruption-controller";

/// How long an eviction the API server approved may take to delete its pod before the
/// pod counts as healthy again (Kubernetes' DeletionTimeout).
const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
    #[error("invalid value for IntOrString: invalid type: string is not a percentage")]
    NotAPercentage,
    #[error("invalid selector: {0}")]
    Selector(String),
}

struct State {
    context: Arc<Context>,
    /// Every pod (the shared cache).
    pods: Store<Pod>,
    pods_synced: Synced,
}

pub async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let pods = context.informers.pods();
    // Any pod change may change a budget's numbers: budgets are few, and a burst of pod
    // events collapses into one reconcile of each.
    let pod_changes = pods.any_change();
    let state = Arc::new(State { pods: pods.store(), pods_synced: pods.synced(), context: context.clone() });
    Controller::new(Api::<PodDisruptionBudget>::all(client), watcher::Config::default())
        .reconcile_all_on(pod_changes)
        .run(reconcile, |_, error, _| retry(error), state)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "disruption reconcile failed");
            }
        })
        .await;
}

fn retry(error: &Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, state: Arc<State>) -> Result<Action, Error> {
    if state.pods_synced.wait().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    match sync(&pdb, &state).await {
        Ok(recheck) => Ok(recheck.map_or_else(Action::await_change, Action::requeue)),
        // Someone else (an eviction) wrote the budget first: compute again from it.
        Err(Error::Api(e)) if is_status(&e, &[409]) => Err(Error::Api(e)),
        Err(Error::Api(e)) if is_status(&e, &[404]) => Ok(Action::await_change()),
        Err(e) => {
            fail_safe(&pdb, &e, &state.context).await?;
            Err(e)
        }
    }
}

/// Computes and writes the budget's status; returns when to look again (a disrupted pod
/// whose deletion is due).
async fn sync(pdb: &PodDisruptionBudget, state: &State) -> Result<Option<Duration>, Error> {
    let events = state.context.events.reporting_as(NAME);
    let pods = selected_pods(pdb, &state.pods)?;
    let spec = pdb.spec.clone().unwrap_or_default();
    let (expected, desired, unmanaged) = match expected_and_desired(pdb, &pods, &state.context).await {
        Ok(numbers) => numbers,
        Err(e) => {
            events.warning(
                reference(pdb),
                "Sync",
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            );
            return Err(e);
        }
    };
    let now = Timestamp::now();
    let old = pdb.status.clone().unwrap_or_default();
    let (disrupted, recheck) = current_disruptions(&old, &pods, now);
    let healthy = count_healthy(&pods, &disrupted, now);
    let allowed = if expected <= 0 { 0 } else { (healthy - desired).max(0) };
    let generation = pdb.metadata.generation.unwrap_or(0);
    let disrupted_or_none = (!disrupted.is_empty()).then_some(disrupted);
    let unchanged = old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old.disrupted_pods.clone().filter(|m| !m.is_empty()) == disrupted_or_none
        && old.observed_generation == Some(generation)
        && condition_up_to_date(&old);
    if unchanged {
        return Ok(recheck);
    }
    if pods.is_empty() {
        events.normal(reference(pdb), "Sync", "NoPods", "No matching pods found".into());
    }
    if !unmanaged.is_empty() {
        let selector = serde_json::to_string(&spec.selector).unwrap_or_default();
        events.warning(
            reference(pdb),
            "Sync",
            "UnmanagedPods",
            format!(
                "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a \
                 result, the status of the PDB cannot be calculated correctly, which may result in undefined \
                 behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an \
                 integer value."
            ),
        );
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: disrupted_or_none,
        observed_generation: Some(generation),
        conditions: old.conditions.clone(),
    };
    set_disruption_allowed(&mut status, now);
    write_status(pdb, status, &state.context).await?;
    Ok(recheck)
}

/// The pods the budget's selector picks in its namespace (an empty selector picks all).
fn selected_pods(pdb: &PodDisruptionBudget, pods: &Store<Pod>) -> Result<Vec<Arc<Pod>>, Error> {
    let namespace = pdb.namespace().unwrap_or_default();
    let selector = pdb.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
    let selector = LabelSelector::from_api(&selector).map_err(Error::Selector)?;
    Ok(pods.state_filter(|pod| {
        pod.metadata.namespace.as_deref() == Some(namespace.as_str()) && selector.matches(pod.labels())
    }))
}

/// expectedPods, desiredHealthy, and the names of selected pods no controller manages.
async fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    context: &Context,
) -> Result<(i32, i32, Vec<String>), Error> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max_unavailable) = &spec.max_unavailable {
        let (expected, unmanaged) = controllers_scale(pods, context).await?;
        let unavailable = scaled(max_unavailable, expected)?;
        return Ok((expected, (expected - unavailable).max(0), unmanaged));
    }
    match &spec.min_available {
        Some(IntOrString::Int(min)) => Ok((pods.len() as i32, *min, Vec::new())),
        Some(percent @ IntOrString::String(_)) => {
            let (expected, unmanaged) = controllers_scale(pods, context).await?;
            Ok((expected, scaled(percent, expected)?, unmanaged))
        }
        None => Ok((0, 0, Vec::new())),
    }
}

/// An int, or a percentage of `total` rounded up.
fn scaled(value: &IntOrString, total: i32) -> Result<i32, Error> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(text) => {
            let percent: u64 = text.strip_suffix('%').and_then(|p| p.parse().ok()).ok_or(Error::NotAPercentage)?;
            Ok((percent * u64::from(total.max(0).unsigned_abs())).div_ceil(100) as i32)
        }
    }
}

/// The sum of the scale of the selected pods' controllers, each workload counted once
/// (the ReplicaSets of one Deployment count as that Deployment), and the pods that have
/// no controller.
async fn controllers_scale(pods: &[Arc<Pod>], context: &Context) -> Result<(i32, Vec<String>), Error> {
    let mut seen_owners = std::collections::HashSet::new();
    let mut workloads: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = pod.owner_references().iter().find(|o| o.controller == Some(true)) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if !seen_owners.insert(owner.uid.clone()) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let (workload, scale) =
            scale_of(owner, &namespace, context).await?.ok_or_else(|| Error::NoController(pod.name_any()))?;
        workloads.insert(workload, scale);
    }
    Ok((workloads.values().sum(), unmanaged))
}

/// The UID and desired replicas of the workload controlling a pod: the Deployment for a
/// ReplicaSet a Deployment controls, else the controller itself. None when it is gone
/// (or replaced by another object of the same name).
async fn scale_of(owner: &OwnerReference, namespace: &str, context: &Context) -> Result<Option<(String, i32)>, Error> {
    let client = context.client.clone();
    let group = owner.api_version.split_once('/').map_or("", |(g, _)| g);
    let same = |meta: &kube::api::ObjectMeta| meta.uid.as_deref() == Some(owner.uid.as_str());
    match (group, owner.kind.as_str()) {
        ("apps", "ReplicaSet") => {
            let Some(rs) = Api::<ReplicaSet>::namespaced(client.clone(), namespace).get_opt(&owner.name).await? else {
                return Ok(None);
            };
            if !same(&rs.metadata) {
                return Ok(None);
            }
            let deployment =
                rs.owner_references().iter().find(|o| o.controller == Some(true) && o.kind == "Deployment");
            if let Some(deployment) = deployment {
                let api = Api::<Deployment>::namespaced(client, namespace);
                if let Some(d) = api.get_opt(&deployment.name).await? {
                    if d.metadata.uid.as_deref() == Some(deployment.uid.as_str()) {
                        let replicas = d.spec.and_then(|s| s.replicas).unwrap_or(1);
                        return Ok(Some((deployment.uid.clone(), replicas)));
                    }
                }
                return Ok(None);
            }
            Ok(Some((owner.uid.clone(), rs.spec.and_then(|s| s.replicas).unwrap_or(1))))
        }
        ("apps", "StatefulSet") => {
            let sts = Api::<StatefulSet>::namespaced(client, namespace).get_opt(&owner.name).await?;
            Ok(sts
                .filter(|s| same(&s.metadata))
                .map(|s| (owner.uid.clone(), s.spec.and_then(|s| s.replicas).unwrap_or(1))))
        }
        ("", "ReplicationController") => {
            let rc = Api::<ReplicationController>::namespaced(client, namespace).get_opt(&owner.name).await?;
            Ok(rc
                .filter(|r| same(&r.metadata))
                .map(|r| (owner.uid.clone(), r.spec.and_then(|s| s.replicas).unwrap_or(1))))
        }
        _ => Ok(None),
    }
}

/// The disruptedPods entries still pending (pod present, not yet being deleted, evicted
/// less than DELETION_TIMEOUT ago), and when the earliest of them expires.
fn current_disruptions(
    status: &PodDisruptionBudgetStatus,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Duration>) {
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Duration> = None;
    let Some(disrupted) = &status.disrupted_pods else { return (kept, None) };
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = pod.name_any();
        let Some(since) = disrupted.get(&name) else { continue };
        let expires = since.0 + SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
        if expires > now {
            let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
            recheck = Some(recheck.map_or(left, |r| r.min(left)));
            kept.insert(name, since.clone());
        }
    }
    (kept, recheck)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready pods that are neither being deleted nor recently evicted.
fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let timeout = SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| disrupted.get(&p.name_any()).is_none_or(|since| since.0 + timeout <= now))
        .filter(|p| is_ready(p))
        .count() as i32
}

const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// Whether the DisruptionAllowed condition matches disruptionsAllowed and the generation.
fn condition_up_to_date(status: &PodDisruptionBudgetStatus) -> bool {
    let condition = status.conditions.iter().flatten().find(|c| c.type_ == DISRUPTION_ALLOWED);
    condition.is_some_and(|c| {
        c.observed_generation == status.observed_generation && (status.disruptions_allowed > 0) == (c.status == "True")
    })
}

fn set_disruption_allowed(status: &mut PodDisruptionBudgetStatus, now: Timestamp) {
    let (value, reason) =
        if status.disruptions_allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    let observed = status.observed_generation;
    set_condition(status, value, reason, String::new(), observed, now);
}

/// Sets a condition as apimachinery's SetStatusCondition does: the transition time moves
/// only when the status changes.
fn set_condition(
    status: &mut PodDisruptionBudgetStatus,
    value: &str,
    reason: &str,
    message: String,
    observed: Option<i64>,
    now: Timestamp,
) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    match conditions.iter_mut().find(|c| c.type_ == DISRUPTION_ALLOWED) {
        Some(existing) => {
            if existing.status != value {
                existing.status = value.into();
                existing.last_transition_time = Time(now);
            }
            existing.reason = reason.into();
            existing.message = message;
            existing.observed_generation = observed;
        }
        None => conditions.push(Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: value.into(),
            reason: reason.into(),
            message,
            observed_generation: observed,
            last_transition_time: Time(now),
        }),
    }
}

/// When the numbers cannot be computed, at least allow no disruption.
async fn fail_safe(pdb: &PodDisruptionBudget, error: &Error, context: &Context) -> Result<(), Error> {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let observed = status.observed_generation;
    set_condition(&mut status, "False", "SyncFailed", error.to_string(), observed, Timestamp::now());
    write_status(pdb, status, context).await
}

/// Replaces the status, conditional on the resourceVersion the numbers were computed from.
async fn write_status(
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
    context: &Context,
) -> Result<(), Error> {
    let api = Api::<PodDisruptionBudget>::namespaced(context.client.clone(), &pdb.namespace().unwrap_or_default());
    let mut updated = pdb.clone();
    updated.metadata.managed_fields = None;
    updated.status = Some(status);
    api.replace_status(&pdb.name_any(), &PostParams::default(), &updated).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap();
        if deleting {
            pod.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        }
        Arc::new(pod)
    }

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&IntOrString::String("50%".into()), 3).unwrap(), 2);
        assert_eq!(scaled(&IntOrString::String("100%".into()), 4).unwrap(), 4);
        assert_eq!(scaled(&IntOrString::Int(2), 10).unwrap(), 2);
        assert!(scaled(&IntOrString::String("half".into()), 4).is_err());
    }

    #[test]
    fn healthy_pods_are_ready_not_deleting_and_not_recently_evicted() {
        let now = Timestamp::now();
        let pods = vec![pod("a", true, false), pod("b", true, false), pod("c", false, false), pod("d", true, true)];
        let status = PodDisruptionBudgetStatus {
            disrupted_pods: Some(BTreeMap::from([
                ("b".to_string(), Time(now)),
                // Evicted long ago but still there: no longer counts as disrupted.
                ("a".to_string(), Time(now - SignedDuration::from_secs(600))),
                ("gone".to_string(), Time(now)),
            ])),
            ..Default::default()
        };
        let (disrupted, recheck) = current_disruptions(&status, &pods, now);
        assert_eq!(disrupted.keys().collect::<Vec<_>>(), ["b"]);
        assert!(recheck.is_some_and(|r| r <= DELETION_TIMEOUT));
        assert_eq!(count_healthy(&pods, &disrupted, now), 1);
    }

    #[test]
    fn the_condition_follows_disruptions_allowed() {
        let now = Timestamp::now();
        let mut status =
            PodDisruptionBudgetStatus { disruptions_allowed: 1, observed_generation: Some(2), ..Default::default() };
        assert!(!condition_up_to_date(&status));
        set_disruption_allowed(&mut status, now);
        assert!(condition_up_to_date(&status));
        let condition = &status.conditions.as_ref().unwrap()[0];
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("True", "SufficientPods"));
        status.disruptions_allowed = 0;
        assert!(!condition_up_to_date(&status));
        set_disruption_allowed(&mut status, now);
        assert_eq!(status.conditions.as_ref().unwrap()[0].reason, "InsufficientPods");
    }
}
