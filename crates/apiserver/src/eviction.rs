//! pods/NAME/eviction: deleting a pod only if its PodDisruptionBudget allows it, as
//! kube-apiserver's eviction subresource does (what `kubectl drain` calls).
//!
//! - Pods that are Pending, Succeeded, Failed or already being deleted are deleted
//!   without looking at budgets: they are not running, so evicting them disrupts nothing.
//! - Otherwise the one PodDisruptionBudget selecting the pod (more than one is an error)
//!   must allow a disruption: its status.disruptionsAllowed is decremented and the pod
//!   recorded in status.disruptedPods (a compare-and-swap on the budget, retried on
//!   conflicts), and then the pod is deleted. A budget that allows nothing answers 429,
//!   which clients retry.
//! - A pod that is not Ready does not count as healthy, so deleting it costs the budget
//!   nothing when the budget is met anyway (or when its unhealthyPodEvictionPolicy is
//!   AlwaysAllow); it is deleted with a resourceVersion precondition, so that it cannot
//!   have become Ready in between.
//! - The pod gets the DisruptionTarget condition before it is deleted.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as ApiLabelSelector;
use serde_json::{json, Value};
use skiff_api::selector::LabelSelector;
use skiff_api::{ApiError, Target};

use crate::meta;
use crate::request::Query;
use crate::rest::{Addr, Api, DeleteOptions, Reply, WriteKind, WriteOptions};

/// The status.disruptedPods map may hold this many entries at most: beyond it, evictions
/// approved here have not been seen by the disruption controller yet.
const MAX_DISRUPTED_PODS: usize = 2000;

/// How often a pod that changed while being evicted is looked at again.
const CONFLICT_RETRIES: usize = 20;

const VIOLATES_BUDGET: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// How the pod is to be deleted once the budget (if any) allowed it.
enum Verdict {
    /// Delete as the client asked.
    Delete,
    /// Delete only if the pod is unchanged since it was judged (it was not Ready and so
    /// cost this budget nothing).
    DeleteIfUnchanged(String),
}

impl Api {
    /// POST pods/NAME/eviction with a policy/v1 (or v1beta1) Eviction.
    pub async fn evict(&self, pod: &Addr<'_>, eviction: Value, write: &WriteOptions) -> Result<Reply, ApiError> {
        check_eviction(pod, &eviction)?;
        let mut options = DeleteOptions::parse(&Query::default(), &eviction["deleteOptions"])?;
        options.dry_run |= write.dry_run;
        let client_set_version = options.resource_version.is_some();

        // Pods that skip budgets are deleted at once; a conflict (the pod changed) is
        // judged again from the pod as it is now.
        let mut attempts = 0;
        let current = loop {
            let current = self.get(pod, &Query::default()).await?.body;
            if !can_ignore_budget(&current) {
                break current;
            }
            let mut options = options.clone();
            // A Pending pod is deleted only if it is still Pending (it must not have
            // started running in between); a terminal or terminating one as it is.
            if !client_set_version && !is_terminal_or_terminating(&current) {
                options.resource_version = meta_rv(&current);
            }
            match self.add_condition_and_delete(pod, options, write).await {
                Ok(()) => return Ok(success()),
                Err(ApiError::Conflict(..)) if !client_set_version && attempts < CONFLICT_RETRIES => attempts += 1,
                Err(e) => return Err(e),
            }
        };

        let verdict = self.judge_against_budget(pod, &current, options.dry_run).await?;
        let unchanged_only = match &verdict {
            Verdict::DeleteIfUnchanged(budget) if !client_set_version => Some(budget.clone()),
            _ => None,
        };
        if unchanged_only.is_some() {
            options.resource_version = meta_rv(&current);
        }
        match self.add_condition_and_delete(pod, options, write).await {
            Ok(()) => Ok(success()),
            // It changed (perhaps became Ready): the client should ask again.
            Err(ApiError::Conflict(..)) if unchanged_only.is_some() => {
                Err(still_processing(unchanged_only.as_deref().unwrap_or_default()))
            }
            Err(e) => Err(e),
        }
    }

    /// Checks the pod's PodDisruptionBudget and takes one disruption from it when needed.
    async fn judge_against_budget(&self, pod: &Addr<'_>, current: &Value, dry_run: bool) -> Result<Verdict, ApiError> {
        let budgets = self.budgets_selecting(pod, current).await?;
        let budget = match budgets.as_slice() {
            [] => return Ok(Verdict::Delete),
            [one] => one,
            _ => {
                return Err(ApiError::Status(
                    500,
                    json!({
                        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                        "code": 500,
                    }),
                ))
            }
        };
        let status = &budget["status"];
        let (current_healthy, desired_healthy) =
            (status["currentHealthy"].as_i64().unwrap_or(0), status["desiredHealthy"].as_i64().unwrap_or(0));
        if !is_ready(current) {
            let always_allow = budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
            if always_allow || (current_healthy >= desired_healthy && desired_healthy > 0) {
                return Ok(Verdict::DeleteIfUnchanged(meta::name(budget).unwrap_or_default().to_string()));
            }
        }
        let def = self
            .registry
            .get("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::Internal("no poddisruptionbudgets resource".into()))?;
        let name = meta::name(budget).unwrap_or_default();
        let addr = Addr { def: &def, namespace: pod.namespace, name };
        let pod_name = pod.name.to_string();
        let options = WriteOptions { dry_run, manager: "skiff-apiserver".into(), ..WriteOptions::default() };
        // A lost race re-reads the budget and decides again.
        self.write_with_retry(&addr, None, &options, |latest| take_disruption(latest, &pod_name), WriteKind::Status)
            .await?;
        Ok(Verdict::Delete)
    }

    /// The PodDisruptionBudgets in the pod's namespace whose selector matches it (an empty
    /// selector matches nothing).
    async fn budgets_selecting(&self, pod: &Addr<'_>, current: &Value) -> Result<Vec<Value>, ApiError> {
        let def = self
            .registry
            .get("policy", "v1", "poddisruptionbudgets")
            .ok_or_else(|| ApiError::Internal("no poddisruptionbudgets resource".into()))?;
        let list: Value = serde_json::from_slice(&self.list(&def, pod.namespace, &Query::default()).await?)
            .map_err(|e| ApiError::Internal(format!("listing budgets: {e}")))?;
        let labels = &current["metadata"]["labels"];
        let selects = |budget: &Value| {
            let Ok(selector) = serde_json::from_value::<ApiLabelSelector>(budget["spec"]["selector"].clone()) else {
                return false;
            };
            LabelSelector::from_api(&selector).is_ok_and(|s| !s.is_empty() && s.matches_json(labels))
        };
        Ok(list["items"].as_array().into_iter().flatten().filter(|b| selects(b)).cloned().collect())
    }

    /// Sets the pod's DisruptionTarget condition, then deletes it.
    async fn add_condition_and_delete(
        &self,
        pod: &Addr<'_>,
        mut options: DeleteOptions,
        write: &WriteOptions,
    ) -> Result<(), ApiError> {
        if !options.dry_run {
            let expected = options.resource_version.clone();
            let uid = options.uid.clone();
            let target = Target::new("", "pods", pod.name);
            let status_write = WriteOptions { manager: write.manager.clone(), ..WriteOptions::default() };
            let marked = self
                .write_with_retry(
                    pod,
                    None,
                    &status_write,
                    |latest| {
                        check_preconditions(latest, uid.as_deref(), expected.as_deref(), &target)?;
                        let mut new = latest.clone();
                        set_disruption_target(&mut new);
                        Ok(new)
                    },
                    WriteKind::Status,
                )
                .await?;
            // The condition is this request's own change: the precondition holds for it.
            if options.resource_version.is_some() {
                options.resource_version = meta_rv(&marked.body);
            }
        }
        self.delete(pod, &options).await?;
        Ok(())
    }
}

/// The body must be an Eviction naming the pod of the URL.
fn check_eviction(pod: &Addr<'_>, eviction: &Value) -> Result<(), ApiError> {
    let kind = eviction["kind"].as_str().unwrap_or("Eviction");
    let version = eviction["apiVersion"].as_str().unwrap_or("policy/v1");
    if kind != "Eviction" || !matches!(version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::BadRequest(format!("not a Eviction object: {version}, Kind={kind}")));
    }
    if meta::name(eviction) != Some(pod.name) {
        return Err(ApiError::BadRequest("name in URL does not match name in Eviction object".into()));
    }
    if meta::meta_str(eviction, "namespace").is_some_and(|ns| Some(ns) != pod.namespace) {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request".into(),
        ));
    }
    Ok(())
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn is_terminal_or_terminating(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed") || meta::is_deleting(pod)
}

/// Pods whose eviction disrupts nothing: not running yet, finished, or going anyway.
fn can_ignore_budget(pod: &Value) -> bool {
    is_terminal_or_terminating(pod) || phase(pod) == "Pending"
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn meta_rv(object: &Value) -> Option<String> {
    meta::meta_str(object, "resourceVersion").map(str::to_string)
}

/// The budget with one disruption taken for `pod`, or the 429 telling the client to retry.
fn take_disruption(budget: &Value, pod: &str) -> Result<Value, ApiError> {
    let name = meta::name(budget).unwrap_or_default();
    let status = &budget["status"];
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(still_processing(name));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    let forbidden = |why: &str| ApiError::Forbidden(format!("poddisruptionbudget.policy {name:?} is forbidden: {why}"));
    if allowed < 0 {
        return Err(forbidden("pdb disruptions allowed is negative"));
    }
    if status["disruptedPods"].as_object().is_some_and(|m| m.len() > MAX_DISRUPTED_PODS) {
        return Err(forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller"));
    }
    if allowed == 0 {
        let (desired, current) =
            (status["desiredHealthy"].as_i64().unwrap_or(0), status["currentHealthy"].as_i64().unwrap_or(0));
        return Err(too_many_requests(
            &format!("The disruption budget {name} needs {desired} healthy pods and has {current} currently"),
            0,
        ));
    }
    let mut new = budget.clone();
    let status = &mut new["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        set_disruption_allowed_false(status);
    }
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(meta::now_rfc3339());
    Ok(new)
}

/// The DisruptionAllowed condition once no disruption is left (as the disruption
/// controller would set it).
fn set_disruption_allowed_false(status: &mut Value) {
    let observed = status["observedGeneration"].clone();
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else { return };
    let wanted = json!({
        "type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "",
        "observedGeneration": observed, "lastTransitionTime": meta::now_rfc3339(),
    });
    match conditions.iter_mut().find(|c| c["type"] == "DisruptionAllowed") {
        Some(existing) => {
            let changed = existing["status"] != "False";
            let transition = existing["lastTransitionTime"].clone();
            *existing = wanted;
            if !changed {
                existing["lastTransitionTime"] = transition;
            }
        }
        None => conditions.push(wanted),
    }
}

fn too_many_requests(cause: &str, retry_after_seconds: u32) -> ApiError {
    let mut details = json!({ "causes": [{ "reason": "DisruptionBudget", "message": cause }] });
    if retry_after_seconds > 0 {
        details["retryAfterSeconds"] = json!(retry_after_seconds);
    }
    ApiError::Status(
        429,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": VIOLATES_BUDGET, "reason": "TooManyRequests", "details": details, "code": 429,
        }),
    )
}

/// The answer when an unready pod changed between judging and deleting it.
fn still_processing(budget: &str) -> ApiError {
    too_many_requests(&format!("The disruption budget {budget} is still being processed by the server."), 10)
}

fn check_preconditions(pod: &Value, uid: Option<&str>, rv: Option<&str>, target: &Target) -> Result<(), ApiError> {
    if let Some(uid) = uid.filter(|u| Some(*u) != meta::meta_str(pod, "uid")) {
        let actual = meta::meta_str(pod, "uid").unwrap_or_default();
        return Err(ApiError::Conflict(
            target.clone(),
            format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
        ));
    }
    if let Some(rv) = rv.filter(|v| Some(*v) != meta::meta_str(pod, "resourceVersion")) {
        let actual = meta::meta_str(pod, "resourceVersion").unwrap_or_default();
        return Err(ApiError::Conflict(
            target.clone(),
            format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
            ),
        ));
    }
    Ok(())
}

/// Sets the pod's DisruptionTarget condition (True, EvictionByEvictionAPI).
fn set_disruption_target(pod: &mut Value) {
    let now = meta::now_rfc3339();
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let Some(conditions) = pod["status"]["conditions"].as_array_mut() else { return };
    let wanted = json!({
        "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting", "lastProbeTime": null, "lastTransitionTime": now,
    });
    match conditions.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(existing) if existing["status"] == "True" => {
            let transition = existing["lastTransitionTime"].clone();
            *existing = wanted;
            existing["lastTransitionTime"] = transition;
        }
        Some(existing) => *existing = wanted,
        None => conditions.push(wanted),
    }
}

fn success() -> Reply {
    Reply::created(json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(allowed: i64, generation: i64, observed: i64) -> Value {
        json!({
            "metadata": {"name": "web", "generation": generation},
            "status": {"disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 3, "observedGeneration": observed},
        })
    }

    #[test]
    fn taking_the_last_disruption_records_the_pod_and_flips_the_condition() {
        let new = take_disruption(&budget(1, 1, 1), "web-1").unwrap();
        assert_eq!(new["status"]["disruptionsAllowed"], 0);
        assert!(new["status"]["disruptedPods"]["web-1"].is_string());
        let condition = &new["status"]["conditions"][0];
        assert_eq!((&condition["type"], &condition["status"]), (&json!("DisruptionAllowed"), &json!("False")));
        assert_eq!(condition["reason"], "InsufficientPods");
    }

    #[test]
    fn an_exhausted_or_unprocessed_budget_answers_429() {
        let refused = take_disruption(&budget(0, 1, 1), "web-1").unwrap_err();
        let status = refused.status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["message"], VIOLATES_BUDGET);
        assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert_eq!(
            status["details"]["causes"][0]["message"],
            "The disruption budget web needs 3 healthy pods and has 3 currently"
        );
        assert!(status["details"].get("retryAfterSeconds").is_none());
        let stale = take_disruption(&budget(2, 2, 1), "web-1").unwrap_err().status();
        assert_eq!(stale["details"]["retryAfterSeconds"], 10);
        assert_eq!(take_disruption(&budget(-1, 1, 1), "web-1").unwrap_err().code(), 403);
    }

    #[test]
    fn pending_terminal_and_terminating_pods_skip_budgets() {
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budget(&json!({"status": {"phase": "Failed"}})));
        assert!(can_ignore_budget(
            &json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
    }
}
