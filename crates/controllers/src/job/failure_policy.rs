//! spec.podFailurePolicy: which rule, if any, a failed pod matches (the first in order),
//! judged on the exit codes of its terminated containers and on its conditions.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

/// What a rule says to do with a failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Fail the whole Job at once, with this message.
    FailJob(String),
    /// Do not count the failure against backoffLimit.
    Ignore,
    /// Count it, as without a policy.
    Count,
}

/// The action of the first rule the failed `pod` matches; Count when none does.
pub fn evaluate(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Action {
    let Some(policy) = policy else { return Action::Count };
    for (index, rule) in policy.rules.iter().enumerate() {
        let Some(cause) = matches(rule, pod) else { continue };
        return match rule.action.as_str() {
            "FailJob" => Action::FailJob(format!("{cause} matching FailJob rule at index {index}")),
            "Ignore" => Action::Ignore,
            _ => Action::Count,
        };
    }
    Action::Count
}

/// What in the pod matched the rule, as the job controller's message words it.
fn matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref()?;
    if let Some(codes) = &rule.on_exit_codes {
        let containers =
            status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
        for container in containers {
            if codes.container_name.as_ref().is_some_and(|want| *want != container.name) {
                continue;
            }
            let Some(terminated) = container.state.as_ref().and_then(|s| s.terminated.as_ref()) else { continue };
            // Successful containers never match, whatever the operator.
            if terminated.exit_code == 0 {
                continue;
            }
            let listed = codes.values.contains(&terminated.exit_code);
            if listed == (codes.operator == "In") {
                return Some(format!(
                    "Container {} for pod {namespace}/{name} failed with exit code {}",
                    container.name, terminated.exit_code
                ));
            }
        }
    }
    for pattern in rule.on_pod_conditions.iter().flatten() {
        if status.conditions.iter().flatten().any(|c| c.type_ == pattern.type_ && c.status == pattern.status) {
            return Some(format!("Pod {namespace}/{name} has condition {}", pattern.type_));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(exit_code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [{
                "name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code}}
            }]}
        }))
        .unwrap()
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}},
        ]));
        assert_eq!(
            evaluate(Some(&policy), &pod(42, json!([]))),
            Action::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
        assert_eq!(evaluate(Some(&policy), &pod(1, json!([]))), Action::Count);
        let disrupted = pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(evaluate(Some(&policy), &disrupted), Action::Ignore);
        assert_eq!(evaluate(None, &pod(42, json!([]))), Action::Count);
    }
}
