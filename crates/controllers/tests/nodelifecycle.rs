//! The node lifecycle and taint eviction controllers through the API: a node whose agent
//! stops becomes Unknown and tainted, its pods not ready and (after their
//! tolerationSeconds) evicted; taints go when it comes back; NoExecute taints evict
//! pods that do not tolerate them.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::Value;
use skiff_agent::config::NodeTemplate;
use skiff_controllers::Timing;
use skiff_testkit::ok;
use support::{eventually, json, Cluster, PATIENCE};

/// The agent renews Leases every 10 s: the grace period must be well above that.
const GRACE: Duration = Duration::from_secs(20);

fn timing() -> Timing {
    Timing { node_monitor_grace_period: GRACE, node_monitor_period: Duration::from_millis(500), ..Timing::default() }
}

fn pod_on(name: &str, node: &str, tolerations: Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations, "containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap()
}

async fn create_ready(api: &Api<Pod>, pods: &[Pod]) {
    for pod in pods {
        api.create(&PostParams::default(), pod).await.unwrap();
    }
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap();
        eventually(&format!("{name} Ready"), PATIENCE, || async {
            is_ready(&api.get(&name).await.ok()?).then_some(())
        })
        .await;
    }
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn taint_keys(node: &Node) -> Vec<String> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}

async fn has_event(events: &Api<Event>, reason: &str, object: &str, message: &str) -> bool {
    let list = events.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
    list.iter().any(|e| {
        e.reason.as_deref() == Some(reason)
            && e.involved_object.name.as_deref() == Some(object)
            && e.message.as_deref() == Some(message)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_becomes_unknown_tainted_and_its_pods_leave_after_their_toleration() {
    let mut cluster = Cluster::start_with(1, timing()).await;
    let lost = cluster.add_nodes("lost", 1, NodeTemplate::simulated());
    let nodes = Api::<Node>::all(cluster.client.clone());
    eventually("lost-0 registered", PATIENCE, || async { nodes.get_opt("lost-0").await.ok()? }).await;
    let pods: Api<Pod> = cluster.api("default");
    let quick = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]);
    let forever = json!([{"operator": "Exists"}]);
    create_ready(
        &pods,
        &[
            pod_on("patient", "lost-0", json!([])),
            pod_on("quick", "lost-0", quick),
            pod_on("forever", "lost-0", forever),
        ],
    )
    .await;
    // The API server gave the pod without tolerations Kubernetes' default ones.
    let patient = pods.get("patient").await.unwrap();
    let tolerations = patient.spec.unwrap().tolerations.unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable") && t.toleration_seconds == Some(300)));

    lost.stop();
    let patience = GRACE + PATIENCE;
    let node = eventually("lost-0 Ready=Unknown", patience, || async {
        let node = nodes.get("lost-0").await.ok()?;
        let conditions = node.status.as_ref()?.conditions.clone()?;
        conditions.iter().any(|c| c.type_ == "Ready" && c.status == "Unknown").then_some(node)
    })
    .await;
    for condition in node.status.unwrap().conditions.unwrap() {
        if ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"].contains(&condition.type_.as_str()) {
            assert_eq!(condition.status, "Unknown", "{}", condition.type_);
            assert_eq!(condition.reason.as_deref(), Some("NodeStatusUnknown"));
            assert_eq!(condition.message.as_deref(), Some("Kubelet stopped posting node status."));
        }
    }
    eventually("unreachable taints", PATIENCE, || async {
        let keys = taint_keys(&nodes.get("lost-0").await.ok()?);
        (keys.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string())
            && keys.contains(&"node.kubernetes.io/unreachable:NoSchedule".to_string()))
        .then_some(())
    })
    .await;
    assert!(taint_keys(&nodes.get("node-0").await.unwrap()).is_empty(), "the live node stays untainted");

    eventually("patient not Ready", PATIENCE, || async { (!is_ready(&pods.get("patient").await.ok()?)).then_some(()) })
        .await;
    let events: Api<Event> = cluster.api("default");
    eventually("NodeNotReady events", PATIENCE, || async {
        (has_event(&events, "NodeNotReady", "patient", "Node is not ready").await
            && has_event(&events, "NodeNotReady", "lost-0", "Node lost-0 status is now: NodeNotReady").await)
            .then_some(())
    })
    .await;

    // "quick" tolerates unreachable for 2 s: then it is evicted (it stays Terminating,
    // since its node is not there to stop it).
    let evicted = eventually("quick evicted", PATIENCE, || async {
        let pod = pods.get("quick").await.ok()?;
        pod.metadata.deletion_timestamp.is_some().then_some(pod)
    })
    .await;
    let conditions = evicted.status.unwrap().conditions.unwrap();
    let target = conditions.iter().find(|c| c.type_ == "DisruptionTarget").expect("DisruptionTarget");
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    eventually("TaintManagerEviction event", PATIENCE, || async {
        has_event(&events, "TaintManagerEviction", "quick", "Marking for deletion Pod default/quick")
            .await
            .then_some(())
    })
    .await;
    // The others tolerate it for 300 s or for ever.
    for name in ["patient", "forever"] {
        assert!(pods.get(name).await.unwrap().metadata.deletion_timestamp.is_none(), "{name}");
    }

    // The node comes back: Ready again, taints gone.
    cluster.add_nodes("lost", 1, NodeTemplate::simulated());
    eventually("lost-0 Ready and untainted", PATIENCE, || async {
        let node = nodes.get("lost-0").await.ok()?;
        let conditions = node.status.as_ref()?.conditions.clone()?;
        let ready = conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        (ready && taint_keys(&node).is_empty()).then_some(())
    })
    .await;
    // The cancelled eviction of "patient" is reported.
    eventually("cancelled eviction", PATIENCE, || async {
        has_event(&events, "TaintManagerEviction", "patient", "Cancelling deletion of Pod default/patient")
            .await
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_execute_taints_evict_pods_that_do_not_tolerate_them_at_once() {
    let cluster = Cluster::start(1).await;
    let pods: Api<Pod> = cluster.api("default");
    let tolerant = json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"}]);
    create_ready(&pods, &[pod_on("plain", "node-0", json!([])), pod_on("db", "node-0", tolerant)]).await;
    ok(&cluster.server.kubectl(&["taint", "node", "node-0", "dedicated=db:NoExecute"]));
    eventually("plain gone", PATIENCE, || async { pods.get_opt("plain").await.ok()?.is_none().then_some(()) }).await;
    let events: Api<Event> = cluster.api("default");
    eventually("TaintManagerEviction event", PATIENCE, || async {
        has_event(&events, "TaintManagerEviction", "plain", "Marking for deletion Pod default/plain")
            .await
            .then_some(())
    })
    .await;
    let db = pods.get("db").await.unwrap();
    assert!(db.metadata.deletion_timestamp.is_none(), "a tolerating pod stays");
}
