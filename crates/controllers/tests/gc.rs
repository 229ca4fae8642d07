//! The garbage collector through the API and kubectl: background, foreground and orphan
//! propagation, dangling owner references.

mod support;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde_json::Value;
use support::{eventually, json, Cluster, PATIENCE};

fn reference<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> Value {
    json!({
        "apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "name": owner.name_any(), "uid": owner.uid().unwrap(), "blockOwnerDeletion": block,
    })
}

async fn config_map(api: &Api<ConfigMap>, name: &str, owners: Vec<Value>, finalizers: &[&str]) -> ConfigMap {
    let cm = json!({"metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers}});
    api.create(&PostParams::default(), &serde_json::from_value(cm).unwrap()).await.unwrap()
}

async fn pod(api: &Api<Pod>, name: &str, owners: Vec<Value>) -> Pod {
    let pod = json!({
        "metadata": {"name": name, "labels": {"app": "dependent"}, "ownerReferences": owners},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    api.create(&PostParams::default(), &serde_json::from_value(pod).unwrap()).await.unwrap()
}

async fn gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} deleted"), PATIENCE, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// A ReplicaSet no controller acts on: zero replicas, and its dependents are neither
/// selected by it nor controlled by it.
async fn replica_set(cluster: &Cluster, name: &str) -> ReplicaSet {
    let rs = json!({
        "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    });
    cluster
        .api::<ReplicaSet>("default")
        .create(&PostParams::default(), &serde_json::from_value(rs).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn background_deletion_removes_dependents_of_a_deleted_owner() {
    let cluster = Cluster::start(1).await;
    let cms: Api<ConfigMap> = cluster.api("default");
    let pods: Api<Pod> = cluster.api("default");
    let owner = config_map(&cms, "owner", vec![], &[]).await;
    config_map(&cms, "child", vec![reference(&owner, false)], &[]).await;
    pod(&pods, "child-pod", vec![reference(&owner, false)]).await;
    let unrelated = config_map(&cms, "unrelated", vec![], &[]).await;
    eventually("child-pod running", PATIENCE, || async {
        (pods.get("child-pod").await.ok()?.status?.phase? == "Running").then_some(())
    })
    .await;

    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    gone(&cms, "child").await;
    gone(&pods, "child-pod").await;
    assert_eq!(cms.get("unrelated").await.unwrap().uid(), unrelated.uid());
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let cluster = Cluster::start(0).await;
    let cms: Api<ConfigMap> = cluster.api("default");
    let owner = config_map(&cms, "owner", vec![], &[]).await;
    // The blocking dependent is held by a finalizer of its own: the owner must wait.
    config_map(&cms, "held", vec![reference(&owner, true)], &["example.com/hold"]).await;
    config_map(&cms, "free", vec![reference(&owner, false)], &[]).await;

    cms.delete("owner", &DeleteParams::foreground()).await.unwrap();
    gone(&cms, "free").await;
    eventually("held marked for deletion", PATIENCE, || async {
        cms.get("held").await.ok()?.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let waiting = cms.get("owner").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(waiting.finalizers(), &["foregroundDeletion".to_string()]);

    let release = json!({"metadata": {"finalizers": null}});
    cms.patch("held", &PatchParams::default(), &Patch::Merge(release)).await.unwrap();
    gone(&cms, "held").await;
    gone(&cms, "owner").await;
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let cluster = Cluster::start(0).await;
    let cms: Api<ConfigMap> = cluster.api("default");
    let owner = config_map(&cms, "owner", vec![], &[]).await;
    let other = config_map(&cms, "other-owner", vec![], &[]).await;
    config_map(&cms, "child", vec![reference(&owner, true), reference(&other, false)], &[]).await;

    let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..DeleteParams::default() };
    cms.delete("owner", &orphan).await.unwrap();
    gone(&cms, "owner").await;
    let child = cms.get("child").await.unwrap();
    let owners: Vec<String> = child.owner_references().iter().map(|o| o.name.clone()).collect();
    assert_eq!(owners, vec!["other-owner".to_string()]);
}

// kubectl blocks its thread: the server needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_cascade_background_foreground_and_orphan() {
    let cluster = Cluster::start(1).await;
    let pods: Api<Pod> = cluster.api("default");
    for (cascade, rs_name) in [("background", "rs-bg"), ("foreground", "rs-fg"), ("orphan", "rs-orphan")] {
        let rs = replica_set(&cluster, rs_name).await;
        let pod_name = format!("{rs_name}-pod");
        pod(&pods, &pod_name, vec![reference(&rs, true)]).await;
        let out = cluster.server.kubectl(&["delete", "rs", rs_name, &format!("--cascade={cascade}")]);
        assert!(out.status.success(), "{cascade}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("replicaset.apps \"{rs_name}\" deleted"));
        gone(&cluster.api::<ReplicaSet>("default"), rs_name).await;
        if cascade == "orphan" {
            let kept = pods.get(&pod_name).await.unwrap();
            assert!(kept.metadata.deletion_timestamp.is_none());
            assert!(kept.owner_references().is_empty(), "{:?}", kept.owner_references());
        } else {
            gone(&pods, &pod_name).await;
        }
    }
}

#[tokio::test]
async fn dangling_owner_references_are_collected() {
    let cluster = Cluster::start(0).await;
    let cms: Api<ConfigMap> = cluster.api("default");
    // An owner that never existed.
    let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
        "uid": "00000000-0000-0000-0000-000000000001"});
    config_map(&cms, "haunted", vec![ghost], &[]).await;
    // An owner whose name now belongs to another object (another uid).
    let first = config_map(&cms, "reborn", vec![], &[]).await;
    let stale = reference(&first, false);
    cms.delete("reborn", &DeleteParams::default()).await.unwrap();
    let second = config_map(&cms, "reborn", vec![], &[]).await;
    assert_ne!(first.uid(), second.uid());
    config_map(&cms, "stale", vec![stale.clone()], &[]).await;
    // With another owner alive, only the dangling reference goes.
    let alive = config_map(&cms, "alive", vec![], &[]).await;
    config_map(&cms, "partly", vec![stale, reference(&alive, false)], &[]).await;

    gone(&cms, "haunted").await;
    gone(&cms, "stale").await;
    eventually("partly keeps only its live owner", PATIENCE, || async {
        let owners = cms.get("partly").await.ok()?.metadata.owner_references?;
        (owners.len() == 1 && owners[0].name == "alive").then_some(())
    })
    .await;
    assert!(cms.get_opt("reborn").await.unwrap().is_some());
}

#[tokio::test]
async fn a_cluster_scoped_owner_collects_namespaced_dependents() {
    let cluster = Cluster::start(0).await;
    let roles = Api::<ClusterRole>::all(cluster.client.clone());
    let role: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "owner-role"}})).unwrap();
    let role = roles.create(&PostParams::default(), &role).await.unwrap();
    let cms: Api<ConfigMap> = cluster.api("kube-public");
    config_map(&cms, "role-child", vec![reference(&role, false)], &[]).await;
    // Give the collector the chance to (wrongly) collect it while the owner exists.
    let witness_owner = config_map(&cms, "witness-owner", vec![], &[]).await;
    config_map(&cms, "witness", vec![reference(&witness_owner, false)], &[]).await;
    cms.delete("witness-owner", &DeleteParams::default()).await.unwrap();
    gone(&cms, "witness").await;
    assert!(cms.get_opt("role-child").await.unwrap().is_some(), "its owner exists");

    roles.delete("owner-role", &DeleteParams::default()).await.unwrap();
    gone(&cms, "role-child").await;
}
