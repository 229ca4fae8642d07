//! Kubernetes' Priority admission plugin: a new pod's spec.priorityClassName resolves to
//! spec.priority and spec.preemptionPolicy from that PriorityClass; a pod naming no class
//! gets the globalDefault class (the lowest-valued one if several claim it) or priority 0.
//! A class that does not exist, or a priority/preemptionPolicy in the pod that disagrees
//! with its class, is Forbidden with Kubernetes' wording.

use serde::Deserialize;
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

/// The fields of a PriorityClass admission reads; decoding only these keeps a pod create
/// from building every class as a JSON tree.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Class {
    #[serde(default)]
    value: i64,
    #[serde(default)]
    global_default: Option<bool>,
    #[serde(default)]
    preemption_policy: Option<String>,
}

impl Class {
    fn from_json(json: &[u8]) -> Class {
        serde_json::from_slice(json).unwrap_or_default()
    }

    fn resolved(&self) -> Resolved {
        Resolved {
            priority: i32::try_from(self.value).unwrap_or(0),
            preemption_policy: self.preemption_policy.as_deref().unwrap_or(DEFAULT_POLICY).to_string(),
        }
    }
}

/// Reads PriorityClasses: from the watch cache, or the store when the cache has not seen
/// a class yet (one created a moment ago).
async fn class(api: &Api, name: &str) -> Result<Option<Class>, ApiError> {
    let def = api
        .registry
        .get("scheduling.k8s.io", "v1", "priorityclasses")
        .ok_or_else(|| ApiError::Internal("no priorityclasses resource".into()))?;
    if let Some(cached) = api.cache.get(&def.key(None, name)) {
        return Ok(Some(Class::from_json(&cached.json)));
    }
    match api.get(&Addr { def: &def, namespace: None, name }, &Query::default()).await {
        Ok(reply) => Ok(Some(serde_json::from_value(reply.body).unwrap_or_default())),
        Err(ApiError::NotFound(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// The globalDefault class with the lowest value, if any.
fn global_default(api: &Api) -> Option<Class> {
    let def = api.registry.get("scheduling.k8s.io", "v1", "priorityclasses")?;
    let (items, _) = api.cache.list(&def.key_prefix(), |_| true);
    items
        .iter()
        .map(|item| Class::from_json(&item.json))
        .filter(|class| class.global_default == Some(true))
        .min_by_key(|class| class.value)
}

/// Resolves a new pod's priority and writes it into `pod`.
pub async fn admit_pod_create(api: &Api, pod: &mut Value) -> Result<(), ApiError> {
    let class_name = pod["spec"]["priorityClassName"].as_str().unwrap_or_default().to_string();
    let resolved = if class_name.is_empty() {
        global_default(api)
            .map(|class| class.resolved())
            .unwrap_or(Resolved { priority: 0, preemption_policy: DEFAULT_POLICY.into() })
    } else {
        match class(api, &class_name).await? {
            Some(class) => class.resolved(),
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
        let class = Class::from_json(br#"{"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}"#);
        assert_eq!(class.resolved(), Resolved { priority: 1000, preemption_policy: "Never".into() });
        assert_eq!(Class::from_json(br#"{"value": 5}"#).resolved().preemption_policy, "PreemptLowerPriority");
        assert_eq!(Class::from_json(br#"{"value": 5, "globalDefault": true}"#).global_default, Some(true));
    }

    #[test]
    fn forbidden_names_the_pod() {
        let error = forbidden(&json!({"metadata": {"name": "p"}}), "no PriorityClass with name x was found");
        assert_eq!(error.message(), "pods \"p\" is forbidden: no PriorityClass with name x was found");
    }
}
