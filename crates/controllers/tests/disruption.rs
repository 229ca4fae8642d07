//! The disruption controller through the API: PodDisruptionBudget status from the pods
//! it selects and their controllers' scale, and evictions that spend it.

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use serde_json::Value;
use skiff_controllers::Timing;
use support::{eventually, json, Cluster, PATIENCE};

fn pod(name: &str, owner: Option<&ReplicaSet>) -> Pod {
    let mut pod = json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    if let Some(rs) = owner {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs.metadata.name, "uid": rs.metadata.uid,
            "controller": true,
        }]);
    }
    serde_json::from_value(pod).unwrap()
}

fn budget(name: &str, spec: Value) -> PodDisruptionBudget {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

async fn running_pods(cluster: &Cluster, pods: Vec<Pod>) {
    let api: Api<Pod> = cluster.api("default");
    for pod in &pods {
        api.create(&PostParams::default(), pod).await.unwrap();
    }
    for pod in &pods {
        let name = pod.metadata.name.clone().unwrap();
        eventually(&format!("{name} Ready"), PATIENCE, || async {
            let pod = api.get(&name).await.ok()?;
            let conditions = pod.status?.conditions?;
            conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await;
    }
}

/// Waits until the budget's status satisfies `check`, and returns it.
async fn status_where(
    api: &Api<PodDisruptionBudget>,
    name: &str,
    what: &str,
    check: impl Fn(&PodDisruptionBudgetStatus) -> bool,
) -> PodDisruptionBudgetStatus {
    eventually(what, PATIENCE, || async {
        let status = api.get(name).await.ok()?.status?;
        check(&status).then_some(status)
    })
    .await
}

fn numbers(s: &PodDisruptionBudgetStatus) -> (i32, i32, i32, i32) {
    (s.expected_pods, s.current_healthy, s.desired_healthy, s.disruptions_allowed)
}

fn condition(s: &PodDisruptionBudgetStatus) -> (String, String, String) {
    let c = s.conditions.iter().flatten().find(|c| c.type_ == "DisruptionAllowed").expect("DisruptionAllowed");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test]
async fn min_available_counts_selected_pods_and_evictions_spend_the_budget() {
    let cluster = Cluster::start(2).await;
    running_pods(&cluster, vec![pod("web-1", None), pod("web-2", None), pod("web-3", None)]).await;
    let budgets: Api<PodDisruptionBudget> = cluster.api("default");
    budgets.create(&PostParams::default(), &budget("web", json!({"minAvailable": 2}))).await.unwrap();
    let status = status_where(&budgets, "web", "one disruption allowed", |s| numbers(s) == (3, 3, 2, 1)).await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status), ("True".into(), "SufficientPods".into(), String::new()));

    let pods: Api<Pod> = cluster.api("default");
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    let status =
        status_where(&budgets, "web", "the evicted pod gone from the budget", |s| numbers(s) == (2, 2, 2, 0)).await;
    assert_eq!(condition(&status), ("False".into(), "InsufficientPods".into(), String::new()));
    // The eviction's record is dropped once the pod is being deleted or gone.
    let status = status_where(&budgets, "web", "disruptedPods cleaned up", |s| {
        s.disrupted_pods.as_ref().is_none_or(|m| m.is_empty())
    })
    .await;
    assert_eq!(status.disruptions_allowed, 0);

    // kube-rs retries 429s by itself (for minutes); a client that does not sees the answer.
    let pods: Api<Pod> = Api::namespaced(cluster.client_without_retries().await, "default");
    let refused = pods.evict("web-2", &EvictParams::default()).await.unwrap_err();
    let kube::Error::Api(status) = refused else { panic!("not an API error: {refused}") };
    assert_eq!(status.code, 429);
    assert_eq!(status.message, "Cannot evict pod as it would violate the pod's disruption budget.");

    // A spec change is observed: a lower bar allows a disruption again.
    budgets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"minAvailable": 1}}))).await.unwrap();
    let status = status_where(&budgets, "web", "generation 2 observed", |s| s.observed_generation == Some(2)).await;
    assert_eq!(numbers(&status), (2, 2, 1, 1));
}

#[tokio::test]
async fn percentages_and_max_unavailable_scale_with_the_pods_controller() {
    // No ReplicaSet controller runs here: the pods name the ReplicaSet as their controller
    // themselves, which is what the disruption controller reads.
    let cluster = Cluster::start_without(2, Timing::default(), &[skiff_controllers::replicaset::NAME]).await;
    let sets: Api<ReplicaSet> = cluster.api("default");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    let rs = sets.create(&PostParams::default(), &rs).await.unwrap();
    running_pods(&cluster, vec![pod("web-a", Some(&rs)), pod("web-b", Some(&rs))]).await;

    let budgets: Api<PodDisruptionBudget> = cluster.api("default");
    budgets.create(&PostParams::default(), &budget("half", json!({"maxUnavailable": "50%"}))).await.unwrap();
    // 4 expected (the ReplicaSet's scale), 50% of 4 may be unavailable: 2 must stay, 2 are.
    status_where(&budgets, "half", "scale 4 expected", |s| numbers(s) == (4, 2, 2, 0)).await;

    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.unwrap();
    // A scale change alone is not a pod change: the budget's own update brings it in.
    budgets
        .patch("half", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})))
        .await
        .unwrap();
    status_where(&budgets, "half", "scale 2 expected", |s| numbers(s) == (2, 2, 1, 1)).await;

    budgets.create(&PostParams::default(), &budget("most", json!({"minAvailable": "75%"}))).await.unwrap();
    // 75% of 2, rounded up: both must stay.
    status_where(&budgets, "most", "75% of 2", |s| numbers(s) == (2, 2, 2, 0)).await;
}

#[tokio::test]
async fn a_pod_whose_controller_is_missing_fails_safe() {
    // The garbage collector would delete a pod whose owner does not exist.
    let cluster = Cluster::start_without(1, Timing::default(), &[skiff_controllers::gc::NAME]).await;
    let ghost: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "gone", "uid": "0000-gone"}})).unwrap();
    running_pods(&cluster, vec![pod("orphan", Some(&ghost))]).await;
    let budgets: Api<PodDisruptionBudget> = cluster.api("default");
    budgets.create(&PostParams::default(), &budget("web", json!({"minAvailable": "50%"}))).await.unwrap();
    let status = status_where(&budgets, "web", "SyncFailed", |s| {
        s.conditions.iter().flatten().any(|c| c.reason == "SyncFailed")
    })
    .await;
    assert_eq!(status.disruptions_allowed, 0);
    assert_eq!(
        condition(&status),
        ("False".into(), "SyncFailed".into(), r#"found no controllers for pod "orphan""#.into())
    );
}
