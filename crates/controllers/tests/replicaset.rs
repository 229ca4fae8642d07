//! The ReplicaSet controller through the API, with pods scheduled and run on simulated nodes.

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::Value;
use support::{eventually, json, Cluster, PATIENCE};

fn replica_set(name: &str, replicas: i32, extra_spec: Value) -> ReplicaSet {
    let mut rs = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}
            }
        }
    });
    if let (Some(spec), Some(extra)) = (rs["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(rs).unwrap()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pods the ReplicaSet controls, not being deleted.
async fn owned_pods(pods: &Api<Pod>, rs: &ReplicaSet) -> Vec<Pod> {
    let uid = rs.uid().unwrap();
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true)))
        .collect()
}

async fn wait_ready(sets: &Api<ReplicaSet>, name: &str, replicas: i32) -> ReplicaSet {
    eventually(&format!("{name} with {replicas} ready replicas"), PATIENCE, || async {
        let rs = sets.get(name).await.ok()?;
        let status = rs.status.clone()?;
        (status.replicas == replicas
            && status.ready_replicas.unwrap_or(0) == replicas
            && status.available_replicas.unwrap_or(0) == replicas
            && status.observed_generation == rs.metadata.generation)
            .then_some(rs)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_running_pods_and_replaces_a_deleted_one() {
    let cluster = Cluster::start(3).await;
    let sets: Api<ReplicaSet> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    sets.create(&PostParams::default(), &replica_set("web", 3, json!({}))).await.unwrap();
    let rs = wait_ready(&sets, "web", 3).await;
    assert_eq!(rs.status.as_ref().unwrap().fully_labeled_replicas, Some(3));

    let owned = owned_pods(&pods, &rs).await;
    assert_eq!(owned.len(), 3);
    for pod in &owned {
        assert!(pod.name_any().starts_with("web-"), "{}", pod.name_any());
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let owner = &pod.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("ReplicaSet", "web"));
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
        assert!(is_ready(pod), "{} runs on a simulated node and is Ready", pod.name_any());
    }
    let events: Api<Event> = cluster.api("default");
    let first = owned[0].name_any();
    eventually("a SuccessfulCreate event per pod", PATIENCE, || async {
        let events = events.list(&ListParams::default()).await.ok()?.items;
        let notes: Vec<_> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .filter(|e| e.reporting_controller.as_deref() == Some("replicaset-controller"))
            .filter_map(|e| e.note.clone())
            .collect();
        (notes.len() == 3 && notes.contains(&format!("Created pod: {first}"))).then_some(())
    })
    .await;

    pods.delete(&first, &DeleteParams::default()).await.unwrap();
    eventually("a replacement for the deleted pod", PATIENCE, || async {
        let owned = owned_pods(&pods, &rs).await;
        (owned.len() == 3 && owned.iter().all(|p| p.name_any() != first && is_ready(p))).then_some(())
    })
    .await;
    wait_ready(&sets, "web", 3).await;
}

/// The SuccessfulCreate events of the replicaset controller about `set`.
async fn creation_events(events: &Api<Event>, set: &str) -> Option<usize> {
    let events = events.list(&ListParams::default()).await.ok()?.items;
    Some(
        events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("SuccessfulCreate"))
            .filter(|e| e.reporting_controller.as_deref() == Some("replicaset-controller"))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(set))
            .count(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_scale_up_reports_25_creations_as_kube_controller_manager_does() {
    let cluster = Cluster::start(2).await;
    let sets: Api<ReplicaSet> = cluster.api("default");
    let events: Api<Event> = cluster.api("default");
    sets.create(&PostParams::default(), &replica_set("many", 40, json!({}))).await.unwrap();
    wait_ready(&sets, "many", 40).await;
    // Events are written one at a time in the order recorded: once a later ReplicaSet's
    // event is in, every event about `many` has been written or dropped.
    sets.create(&PostParams::default(), &replica_set("marker", 1, json!({}))).await.unwrap();
    eventually("the later ReplicaSet's event", PATIENCE, || async {
        (creation_events(&events, "marker").await? == 1).then_some(())
    })
    .await;
    assert_eq!(creation_events(&events, "many").await, Some(25), "client-go's spam filter: a burst of 25");
}

#[tokio::test(flavor = "multi_thread")]
async fn adopts_orphans_and_scales_down_unscheduled_and_unready_pods_first() {
    let cluster = Cluster::start(2).await;
    let sets: Api<ReplicaSet> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    // Two orphans with the ReplicaSet's labels: one no node fits (stays unscheduled), one
    // running but never Ready (a readiness gate nobody sets).
    let unscheduled = json!({"metadata": {"name": "unscheduled", "labels": {"app": "db"}},
        "spec": {"nodeSelector": {"disk": "none-has-this"}, "containers": [{"name": "db", "image": "nginx"}]}});
    let unready = json!({"metadata": {"name": "unready", "labels": {"app": "db"}},
        "spec": {"readinessGates": [{"conditionType": "example.com/never"}], "containers": [{"name": "db", "image": "nginx"}]}});
    for pod in [unscheduled, unready] {
        pods.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap();
    }
    eventually("the unready orphan running", PATIENCE, || async {
        let pod = pods.get("unready").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;

    sets.create(&PostParams::default(), &replica_set("db", 3, json!({}))).await.unwrap();
    let rs = eventually("db adopting both orphans and adding one pod", PATIENCE, || async {
        let rs = sets.get("db").await.ok()?;
        let status = rs.status.clone()?;
        (status.replicas == 3 && status.ready_replicas == Some(1)).then_some(rs)
    })
    .await;
    let owned = owned_pods(&pods, &rs).await;
    let names: Vec<_> = owned.iter().map(|p| p.name_any()).collect();
    assert!(names.contains(&"unscheduled".to_string()) && names.contains(&"unready".to_string()), "{names:?}");

    let scale = json!({"spec": {"replicas": 1}});
    sets.patch("db", &PatchParams::default(), &Patch::Merge(scale)).await.unwrap();
    let rs = wait_ready(&sets, "db", 1).await;
    let left = owned_pods(&pods, &rs).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].name_any().starts_with("db-") && is_ready(&left[0]), "kept {}", left[0].name_any());
    eventually("the orphans deleted", PATIENCE, || async {
        let gone = pods.get_opt("unscheduled").await.ok()?.is_none();
        let deleting = pods.get_opt("unready").await.ok()?.is_none_or(|p| p.metadata.deletion_timestamp.is_some());
        (gone && deleting).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_a_relabelled_pod_and_readopts_it() {
    let cluster = Cluster::start(2).await;
    let sets: Api<ReplicaSet> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    sets.create(&PostParams::default(), &replica_set("api", 2, json!({}))).await.unwrap();
    let rs = wait_ready(&sets, "api", 2).await;
    let uid = rs.uid().unwrap();
    let pod = owned_pods(&pods, &rs).await.remove(0).name_any();

    let relabel = |app: &str| json!({"metadata": {"labels": {"app": app}}});
    pods.patch(&pod, &PatchParams::default(), &Patch::Merge(relabel("debugging"))).await.unwrap();
    eventually("the relabelled pod released and replaced", PATIENCE, || async {
        let released = pods.get(&pod).await.ok()?.owner_references().iter().all(|r| r.uid != uid);
        (released && owned_pods(&pods, &rs).await.len() == 2).then_some(())
    })
    .await;
    wait_ready(&sets, "api", 2).await;

    // Matching again, it is adopted, and the ReplicaSet is one pod over: one goes. Which
    // one the ranking picks depends on age buckets (ties break by UID, as in Kubernetes'
    // LogarithmicScaleDown); that an orphan matching the selector is not left beside two
    // owned pods shows the adoption.
    pods.patch(&pod, &PatchParams::default(), &Patch::Merge(relabel("api"))).await.unwrap();
    eventually("the pod adopted back and the surplus pod deleted", PATIENCE, || async {
        let owned = owned_pods(&pods, &rs).await;
        let matching = pods.list(&ListParams::default().labels("app=api")).await.ok()?.items;
        let live: Vec<_> = matching.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        (owned.len() == 2 && live.len() == 2 && live.iter().all(|p| p.owner_references().iter().any(|r| r.uid == uid)))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_become_available_after_min_ready_seconds_and_never_overshoot() {
    let cluster = Cluster::start(4).await;
    let sets: Api<ReplicaSet> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    sets.create(&PostParams::default(), &replica_set("slow", 40, json!({"minReadySeconds": 2}))).await.unwrap();
    // While the ReplicaSet fills up, its pod count never exceeds 40 (expectations).
    let rs = eventually("40 ready pods", PATIENCE, || async {
        let rs = sets.get("slow").await.ok()?;
        let count = owned_pods(&pods, &rs).await.len();
        assert!(count <= 40, "{count} pods for 40 replicas");
        let status = rs.status.clone()?;
        (status.ready_replicas == Some(40)).then_some(rs)
    })
    .await;
    // No pod changes after they are Ready: the controller looks again by itself.
    eventually("40 available pods", PATIENCE, || async {
        let status = sets.get("slow").await.ok()?.status?;
        (status.available_replicas == Some(40)).then_some(())
    })
    .await;
    assert_eq!(owned_pods(&pods, &rs).await.len(), 40);
}
