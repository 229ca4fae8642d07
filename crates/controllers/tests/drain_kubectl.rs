//! `kubectl cordon`, `uncordon` and `drain` with the real kubectl: cordoning taints the
//! node unschedulable, and drain evicts through the eviction API, which a
//! PodDisruptionBudget may refuse.

mod support;

use std::process::Output;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, PostParams};
use support::{eventually, json, Cluster, PATIENCE};

/// Runs kubectl off the async threads (the API server answers it from them).
fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

async fn ready_pods_on(cluster: &Cluster, pods: &[(&str, &str)]) {
    let api: Api<Pod> = cluster.api("default");
    for (name, node) in pods {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        api.create(&PostParams::default(), &pod).await.unwrap();
    }
    for (name, _) in pods {
        eventually(&format!("{name} Ready"), PATIENCE, || async {
            let pod = api.get(name).await.ok()?;
            let conditions = pod.status?.conditions?;
            conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await;
    }
}

/// A budget on app=web, once the disruption controller has counted `healthy` pods.
async fn budget(cluster: &Cluster, min_available: i32, healthy: i32) {
    let budgets: Api<PodDisruptionBudget> = cluster.api("default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
    }))
    .unwrap();
    budgets.create(&PostParams::default(), &pdb).await.unwrap();
    eventually("the budget counted", PATIENCE, || async {
        let status = budgets.get("web").await.ok()?.status?;
        (status.current_healthy == healthy && status.observed_generation == Some(1)).then_some(())
    })
    .await;
}

fn taint_keys(node: &Node) -> Vec<String> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordon_and_uncordon_toggle_scheduling_and_the_unschedulable_taint() {
    let cluster = Cluster::start(1).await;
    let nodes = Api::<Node>::all(cluster.client.clone());
    eventually("node-0 registered", PATIENCE, || async { nodes.get_opt("node-0").await.ok()? }).await;

    let cordoned = cluster.kubectl(&["cordon", "node-0"]).await;
    assert!(cordoned.status.success(), "{}", text(&cordoned));
    assert_eq!(String::from_utf8_lossy(&cordoned.stdout).trim(), "node/node-0 cordoned");
    eventually("unschedulable taint", PATIENCE, || async {
        let node = nodes.get("node-0").await.ok()?;
        taint_keys(&node).contains(&"node.kubernetes.io/unschedulable:NoSchedule".to_string()).then_some(())
    })
    .await;
    let listed = cluster.kubectl(&["get", "nodes", "node-0", "--no-headers"]).await;
    assert!(text(&listed).contains("Ready,SchedulingDisabled"), "{}", text(&listed));

    let uncordoned = cluster.kubectl(&["uncordon", "node-0"]).await;
    assert_eq!(String::from_utf8_lossy(&uncordoned.stdout).trim(), "node/node-0 uncordoned");
    eventually("no taints", PATIENCE, || async {
        taint_keys(&nodes.get("node-0").await.ok()?).is_empty().then_some(())
    })
    .await;
    let again = cluster.kubectl(&["uncordon", "node-0"]).await;
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "node/node-0 already uncordoned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_retrying_while_a_budget_allows_no_disruption() {
    let cluster = Cluster::start(2).await;
    ready_pods_on(&cluster, &[("web-1", "node-0"), ("web-2", "node-0")]).await;
    budget(&cluster, 2, 2).await;
    let listed = cluster.kubectl(&["get", "pdb", "web", "--no-headers"]).await;
    let columns: Vec<String> = text(&listed).split_whitespace().map(str::to_string).collect();
    assert_eq!(columns[..4], ["web", "2", "N/A", "0"], "{}", text(&listed));

    let drain = cluster
        .kubectl(&["drain", "node-0", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=12s"])
        .await;
    let output = text(&drain);
    assert!(!drain.status.success(), "drain should fail: {output}");
    assert!(output.contains("node/node-0 cordoned"), "{output}");
    assert!(
        output.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{output}"
    );
    assert!(output.contains("global timeout reached: 12s"), "{output}");
    // Nothing was evicted, and the node stays cordoned.
    let pods: Api<Pod> = cluster.api("default");
    for name in ["web-1", "web-2"] {
        assert!(pods.get(name).await.unwrap().metadata.deletion_timestamp.is_none(), "{name}");
    }
    let node = Api::<Node>::all(cluster.client.clone()).get("node-0").await.unwrap();
    assert_eq!(node.spec.unwrap().unschedulable, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_what_the_budget_allows() {
    let cluster = Cluster::start(2).await;
    ready_pods_on(&cluster, &[("web-1", "node-0"), ("web-2", "node-1")]).await;
    // Two healthy, one required: the pod on node-0 may go.
    budget(&cluster, 1, 2).await;

    let drain = cluster
        .kubectl(&["drain", "node-0", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=60s"])
        .await;
    let output = text(&drain);
    assert!(drain.status.success(), "{output}");
    assert!(output.contains("evicting pod default/web-1"), "{output}");
    assert!(output.contains("pod/web-1 evicted"), "{output}");
    assert!(output.contains("node/node-0 drained"), "{output}");
    let pods: Api<Pod> = cluster.api("default");
    assert!(pods.get_opt("web-1").await.unwrap().is_none(), "drain waits until the pod is gone");
    assert!(pods.get("web-2").await.unwrap().metadata.deletion_timestamp.is_none());
}
