//! Taint eviction controller (kube-controller-manager's taint-eviction-controller): pods
//! on a node with NoExecute taints they do not tolerate are deleted at once; pods that
//! tolerate them only for tolerationSeconds (the API server gives every pod 300 s for
//! not-ready and unreachable) are deleted when that time has passed since the taint was
//! seen, unless the taint goes away first. Deleted pods get the DisruptionTarget condition
//! (DeletionByTaintManager) first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use serde_json::json;
use skiff_client::events::{reference, Recorder};
use skiff_client::is_status;
use skiff_client::synced::Synced;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::Context;

pub const NAME: &str = "taint-eviction-controller";

/// Looked at again at least this often, even without changes.
const RESYNC: Duration = Duration::from_secs(5);

/// When a pod on tainted nodes has to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Eviction {
    /// It tolerates every taint for ever.
    Never,
    /// It does not tolerate some taint.
    Now,
    /// It tolerates them all, the shortest for this long.
    After(Duration),
}

/// A pod due for deletion.
struct Scheduled {
    namespace: String,
    name: String,
    /// When the pod was first found tolerating its node's taints for a limited time.
    since: Instant,
    at: Instant,
}

pub async fn run(context: Arc<Context>) {
    let (nodes, pods) = (context.informers.nodes().store(), context.informers.pods().store());
    let synced = [context.informers.nodes().synced(), context.informers.pods().synced()];
    let mut changes =
        std::pin::pin!(stream::select(context.informers.nodes().any_change(), context.informers.pods().any_change()));
    let events = context.events.reporting_as(NAME);
    let mut scheduled: HashMap<String, Scheduled> = HashMap::new();
    loop {
        let next = scheduled.values().map(|s| s.at).min().unwrap_or_else(|| Instant::now() + RESYNC);
        tokio::select! {
            change = changes.next() => if change.is_none() { return },
            () = tokio::time::sleep_until(next.min(Instant::now() + RESYNC)) => {}
        }
        // Take whatever else is ready too, then look once.
        while let Some(Some(())) = changes.next().now_or_never() {}
        // Both caches must hold their initial lists.
        if !synced.iter().all(Synced::is_synced) {
            continue;
        }
        let due = plan(&nodes, &pods, &mut scheduled, &events, Instant::now());
        for (namespace, name, uid) in due {
            if let Err(e) = evict(&context, &events, &namespace, &name, &uid).await {
                warn!(pod = name, error = %e, "deleting a pod on a tainted node failed");
            }
        }
    }
}

/// Updates the schedule from the nodes' taints and the pods on them; returns the pods to
/// delete now (namespace, name, uid).
fn plan(
    nodes: &Store<Node>,
    pods: &Store<Pod>,
    scheduled: &mut HashMap<String, Scheduled>,
    events: &Recorder,
    now: Instant,
) -> Vec<(String, String, String)> {
    let tainted: HashMap<String, Vec<Taint>> = nodes
        .state()
        .iter()
        .filter_map(|node| {
            let taints: Vec<Taint> =
                node.spec.as_ref()?.taints.iter().flatten().filter(|t| t.effect == "NoExecute").cloned().collect();
            (!taints.is_empty()).then(|| (node.name_any(), taints))
        })
        .collect();
    // Nothing tainted and nothing pending: no pod to look at (the common case).
    if tainted.is_empty() && scheduled.is_empty() {
        return Vec::new();
    }
    let mut due = Vec::new();
    let mut seen = HashSet::new();
    for pod in pods.state() {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
        let Some(taints) = tainted.get(node) else { continue };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let uid = pod.uid().unwrap_or_default();
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        match eviction(tolerations, taints) {
            Eviction::Never => {}
            Eviction::Now => {
                scheduled.remove(&uid);
                due.push((namespace, name, uid));
            }
            Eviction::After(delay) => {
                seen.insert(uid.clone());
                let entry =
                    scheduled.entry(uid.clone()).or_insert(Scheduled { namespace, name, since: now, at: now + delay });
                // Tolerations only shrink (pod updates may add, never change, them).
                entry.at = entry.at.min(entry.since + delay);
                if entry.at <= now {
                    if let Some(gone) = scheduled.remove(&uid) {
                        due.push((gone.namespace, gone.name, uid));
                    }
                }
            }
        }
    }
    // Scheduled pods whose taints went away (or that went away themselves).
    let cancelled: Vec<String> = scheduled.keys().filter(|uid| !seen.contains(*uid)).cloned().collect();
    for uid in cancelled {
        let Some(gone) = scheduled.remove(&uid) else { continue };
        if let Some(pod) = pods.state().into_iter().find(|p| p.uid().as_deref() == Some(uid.as_str())) {
            events.normal(
                reference(pod.as_ref()),
                "TaintManagerEviction",
                "TaintManagerEviction",
                format!("Cancelling deletion of Pod {}/{}", gone.namespace, gone.name),
            );
        }
    }
    due
}

/// Whether and when a pod with `tolerations` must leave a node with NoExecute `taints`.
fn eviction(tolerations: &[Toleration], taints: &[Taint]) -> Eviction {
    let mut shortest: Option<i64> = None;
    for taint in taints {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Eviction::Now;
        }
        for seconds in used.iter().filter_map(|t| t.toleration_seconds) {
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    match shortest {
        None => Eviction::Never,
        Some(seconds) => Eviction::After(Duration::from_secs(seconds.max(0).unsigned_abs())),
    }
}

/// Kubernetes' ToleratesTaint: effect and key match when set (an empty key with Exists
/// matches every key), Exists matches any value, Equal (the default) the same value.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    if set(&toleration.effect).is_some_and(|e| e != taint.effect) {
        return false;
    }
    if set(&toleration.key).is_some_and(|k| k != taint.key) {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "Exists" => true,
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// Marks the pod as a disruption target, then deletes it (its node, if it ever comes
/// back, stops it).
async fn evict(
    context: &Context,
    events: &Recorder,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<(), kube::Error> {
    let api = Api::<Pod>::namespaced(context.client.clone(), namespace);
    let Some(pod) = api.get_opt(name).await? else { return Ok(()) };
    if pod.uid().as_deref() != Some(uid) || pod.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    events.normal(
        reference(&pod),
        "TaintManagerEviction",
        "TaintManagerEviction",
        format!("Marking for deletion Pod {namespace}/{name}"),
    );
    let mut conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(k8s_openapi::api::core::v1::PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..Default::default()
    });
    let patch = json!({"metadata": {"uid": uid}, "status": {"conditions": conditions}});
    if let Err(e) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await {
        debug!(pod = name, error = %e, "setting DisruptionTarget failed; deleting anyway");
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: Some(uid.into()), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, &[404, 409]) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str) -> Taint {
        Taint { key: key.into(), effect: "NoExecute".into(), ..Default::default() }
    }

    fn toleration(value: serde_json::Value) -> Toleration {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn untolerated_taints_evict_now_and_the_shortest_toleration_wins() {
        let unreachable = taint("node.kubernetes.io/unreachable");
        assert_eq!(eviction(&[], std::slice::from_ref(&unreachable)), Eviction::Now);
        let defaults = [
            toleration(
                json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ),
            toleration(
                json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
            ),
        ];
        assert_eq!(eviction(&defaults, std::slice::from_ref(&unreachable)), Eviction::After(Duration::from_secs(300)));
        let mut more = defaults.to_vec();
        more.push(toleration(json!({"operator": "Exists", "tolerationSeconds": 5, "effect": "NoExecute"})));
        assert_eq!(eviction(&more, std::slice::from_ref(&unreachable)), Eviction::After(Duration::from_secs(5)));
        let forever = [toleration(json!({"operator": "Exists"}))];
        assert_eq!(eviction(&forever, &[unreachable, taint("other")]), Eviction::Never);
    }

    #[test]
    fn tolerations_match_as_kubernetes_matches_them() {
        let mut t = taint("k");
        t.value = Some("v".into());
        assert!(tolerates(&toleration(json!({"key": "k", "value": "v"})), &t));
        assert!(!tolerates(&toleration(json!({"key": "k", "value": "w"})), &t));
        assert!(tolerates(&toleration(json!({"key": "k", "operator": "Exists"})), &t));
        assert!(!tolerates(&toleration(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})), &t));
        assert!(!tolerates(&toleration(json!({"key": "j", "operator": "Exists"})), &t));
    }
}
