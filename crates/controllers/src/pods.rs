//! What controllers read from pods (active, ready, available), how they make pods from a
//! template, and the order in which a controller scaling down deletes them — the rules of
//! kube-controller-manager's `controller_utils` and `podutil`.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Annotation whose (integer) value makes a pod cheaper to delete when lower.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// `namespace/name`, the key controllers track pods by.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// Neither finished nor being deleted: the pods a controller counts.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod became Ready, if it is Ready.
pub fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let ready = pod.status.as_ref()?.conditions.iter().flatten().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When a Ready pod counts as available (Ready for `min_ready_seconds`); None if not Ready.
pub fn available_from(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(Timestamp::UNIX_EPOCH);
    }
    // Ready without a transition time: Kubernetes counts it as not yet available.
    let since = since?;
    since.checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds))).ok()
}

pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    available_from(pod, min_ready_seconds).is_some_and(|at| at <= now)
}

/// A pod for `owner` from its template: the template's labels, annotations, finalizers
/// and spec, named `<prefix>-<random>`.
pub fn from_template(template: &PodTemplateSpec, namespace: &str, prefix: &str, owner: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Ranks pods for deletion: per node, how many related pods (of this owner and its
/// siblings) run there, so that doubled-up nodes lose pods first.
pub fn ranks_by_node<'a>(related: impl IntoIterator<Item = &'a Pod>) -> HashMap<String, usize> {
    let mut on_node = HashMap::new();
    for pod in related.into_iter().filter(|p| is_active(p)) {
        if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
            *on_node.entry(node).or_insert(0) += 1;
        }
    }
    on_node
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default()
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// Compares two times by the power-of-two bucket of their age, so pods of about the same
/// age count as equal (Kubernetes' LogarithmicScaleDown): negative when `a` is younger.
fn log_age_difference(a: Timestamp, b: Timestamp, now: Timestamp) -> i64 {
    let bucket = |t: Timestamp| {
        let age = now.as_nanosecond() - t.as_nanosecond();
        if age > 0 {
            (age as f64).log2() as i64
        } else {
            -1
        }
    };
    bucket(a) - bucket(b)
}

/// Orders times for deletion: missing first, then younger by log-scale age (times in
/// the same power-of-two bucket compare equal, and later rules decide).
fn younger_first(a: Option<Timestamp>, b: Option<Timestamp>, now: Timestamp) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => log_age_difference(a, b, now).cmp(&0),
    }
}

/// Deletion order (Less = delete first), as Kubernetes ranks active pods: unassigned
/// before assigned; Pending before Unknown before Running; not Ready before Ready; on
/// more crowded nodes first; lower deletion cost first; Ready for less time first; more
/// container restarts first; newer first; then by uid. Every rule compares a key of each
/// pod, so this is a total order (which `sort_by` requires: it may panic otherwise).
pub fn deletion_order(a: &Pod, b: &Pod, ranks: &HashMap<String, usize>, now: Timestamp) -> Ordering {
    let uids = (a.metadata.uid.as_deref().unwrap_or_default(), b.metadata.uid.as_deref().unwrap_or_default());
    let (node_a, node_b) = (node_name(a), node_name(b));
    let rank = |node: &str| ranks.get(node).copied().unwrap_or(0);
    (!node_a.is_empty())
        .cmp(&!node_b.is_empty())
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| rank(node_b).cmp(&rank(node_a)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(ra), Some(rb)) => younger_first(ra, rb, now),
            _ => Ordering::Equal,
        })
        .then_with(|| max_restarts(b).cmp(&max_restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            younger_first(created(a), created(b), now)
        })
        .then_with(|| uids.0.cmp(uids.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, value: serde_json::Value) -> Pod {
        let mut pod: Pod = serde_json::from_value(value).unwrap();
        pod.metadata.name = Some(name.into());
        pod.metadata.uid = Some(name.into());
        pod
    }

    fn running(node: &str, ready_at: &str, created: &str, restarts: i32) -> serde_json::Value {
        json!({
            "metadata": {"creationTimestamp": created},
            "spec": {"nodeName": node, "containers": []},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}],
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true, "restartCount": restarts}]}
        })
    }

    fn sorted(mut pods: Vec<Pod>, now: &str) -> Vec<String> {
        let ranks = ranks_by_node(&pods.clone());
        let now: Timestamp = now.parse().unwrap();
        pods.sort_by(|a, b| deletion_order(a, b, &ranks, now));
        pods.into_iter().map(|p| p.metadata.name.unwrap()).collect()
    }

    #[test]
    fn unscheduled_pending_and_unready_pods_go_first() {
        let t = "2026-01-01T00:00:00Z";
        let pods = vec![
            pod("ready", running("n1", t, t, 0)),
            pod("unscheduled", json!({"spec": {"containers": []}, "status": {"phase": "Pending"}})),
            pod("pending", json!({"spec": {"nodeName": "n2", "containers": []}, "status": {"phase": "Pending"}})),
            pod("unknown", json!({"spec": {"nodeName": "n3", "containers": []}, "status": {"phase": "Unknown"}})),
            pod(
                "not-ready",
                json!({"spec": {"nodeName": "n4", "containers": []}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        ];
        assert_eq!(sorted(pods, "2026-01-01T01:00:00Z"), ["unscheduled", "pending", "unknown", "not-ready", "ready"]);
    }

    #[test]
    fn among_ready_pods_crowded_nodes_short_readiness_restarts_and_youth_go_first() {
        let old = "2026-01-01T00:00:00Z";
        let recent = "2026-01-01T00:59:00Z";
        let now = "2026-01-01T01:00:00Z";
        let pods = vec![
            pod("old", running("a", old, old, 0)),
            pod("recently-ready", running("b", recent, old, 0)),
            pod("restarted", running("c", old, old, 3)),
            pod("crowded-1", running("d", old, old, 0)),
            pod("crowded-2", running("d", old, old, 0)),
        ];
        assert_eq!(sorted(pods, now), ["crowded-1", "crowded-2", "recently-ready", "restarted", "old"]);
        let pods = vec![pod("older", running("a", old, old, 0)), pod("newer", running("b", old, recent, 0))];
        assert_eq!(sorted(pods, now), ["newer", "older"]);
    }

    #[test]
    fn availability_waits_min_ready_seconds_after_ready() {
        let p = pod("p", running("a", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", 0));
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert!(is_available(&p, 0, at("2026-01-01T00:00:00Z")));
        assert!(!is_available(&p, 10, at("2026-01-01T00:00:05Z")));
        assert!(is_available(&p, 10, at("2026-01-01T00:00:10Z")));
        assert_eq!(available_from(&p, 10), Some(at("2026-01-01T00:00:10Z")));
    }
}
