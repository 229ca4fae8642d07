//! Kubernetes' Priority admission plugin: a new pod's spec.priorityClassName resolves to
//! spec.priority and spec.preemptionPolicy from that PriorityClass; a pod naming no class
//! gets the globalDefault class (the lowest-valued one if several claim it) or priority 0.
//! A class that does not exist, or a priority/preemptionPolicy in the pod that disagrees
//! with its class, is Forbidden with Kubernetes' wording.

use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::request::Query;
use crate::rest::{Addr, Api};

/// What a pod gets from its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub priority: i32,
    pub preemption_policy: String,
}

const DEFAULT_POLICY: &str = "PreemptLowerPriority";

impl Resolved {
    fn from_class(class: &Value) -> Self {
        Resolved {
            priority: class["value"].as_i64().and_then(|v| i32::try_from(v).ok()).unwrap_or(0),
            preemption_policy: class["preemptionPolicy"].as_str().unwrap_or(DEFAULT_POLICY).to_string(),
        }
    }
}

/// Reads PriorityClasses: from the watch cache, or the store when the cache has not seen
/// a class yet (one created a moment ago).
async fn class(api: &Api, name: &str) -> Result<Option<Value>, ApiError> {
    let def = api
        .registry
        .get("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::Internal("no priorityclasses resource".into()))?;
    if let Some(cached) = api.cache.get(&def.key(None, name)) {
        return Ok(Some(cached.value()));
    }
    match api.get(&Addr { def: &def, namespace: None, name }, &Query::default()).await {
        Ok(reply) => Ok(Some(reply.body)),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// The globalDefault class with the lowest value, if any.
fn global_default(api: &Api) -> Option<Value> {
    let def = api.registry.get("scheduling.k8s.io", "v1", "priorityclasses")?;
    let (items, _) = api.cache.list(&def.key_prefix(), |_| true);
    items
        .iter()
        .map(|item| item.value())
        .filter(|class| class["globalDefault"].as_bool() == Some(true))
        .min_by_key(|class| class["value"].as_i64().unwrap_or(0))
}

/// Resolves a new pod's priority and writes it into `pod`.
pub async fn admit_pod_create(api: &Api, pod: &mut Value) -> Result<(), ApiError> {
    let class_name = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_string();
    let resolved = if class_name.is_empty() {
        global_default(api)
            .map(|class| Resolved::from_class(&class))
            .unwrap_or(Resolved { priority: 0, preemption_policy: DEFAULT_POLICY.into() })
    } else {
        match class(api, &class_name).await? {
            Some(class) => Resolved::from_class(&class),
            None => return Err(forbidden(pod, &format!("no PriorityClass with name {class_name} was found"))),
        }
    };
    if let Some(given) = pod["spec"]["priority"].as_i64().filter(|given| *given != i64::from(resolved.priority)) {
        return Err(forbidden(
            pod,
            &format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                resolved.priority
            ),
        ));
    }
    if let Some(given) = pod["spec"]["preemptionPolicy"].as_str().filter(|given| *given != resolved.preemption_policy) {
        return Err(forbidden(
            pod,
            &format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
                resolved.preemption_policy
            ),
        ));
    }
    pod["spec"]["priority"] = json!(resolved.priority);
    pod["spec"]["preemptionPolicy"] = json!(resolved.preemption_policy);
    Ok(())
}

/// `pods "NAME" is forbidden: REASON`, as admission.NewForbidden words it.
fn forbidden(pod: &Value, reason: &str) -> ApiError {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    ApiError::Forbidden(format!("pods {name:?} is forbidden: {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_gives_value_and_policy() {
        let class = json!({"value": 1000, "preemptionPolicy": "Never"});
        assert_eq!(Resolved::from_class(&class), Resolved { priority: 1000, preemption_policy: "Never".into() });
        assert_eq!(Resolved::from_class(&json!({"value": 5})).preemption_policy, "PreemptLowerPriority");
    }

    #[test]
    fn forbidden_names_the_pod() {
        let error = forbidden(&json!({"metadata": {"name": "p"}}), "no PriorityClass with name x was found");
        assert_eq!(error.message(), "pods \"p\" is forbidden: no PriorityClass with name x was found");
    }
}
