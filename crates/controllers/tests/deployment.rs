//! The Deployment controller through the API (with the ReplicaSet controller, the
//! scheduler and simulated nodes running the pods).

mod support;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::Value;
use support::{eventually, json, Cluster, PATIENCE};

fn deployment(name: &str, replicas: i32, image: &str, extra_spec: Value) -> Deployment {
    let mut d = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    });
    if let (Some(spec), Some(extra)) = (d["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(d).unwrap()
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String, String)> {
    let c = d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

fn image(rs: &ReplicaSet) -> String {
    rs.spec.as_ref().unwrap().template.as_ref().unwrap().spec.as_ref().unwrap().containers[0].image.clone().unwrap()
}

fn annotation(rs: &ReplicaSet, key: &str) -> Option<String> {
    rs.annotations().get(key).cloned()
}

/// The Deployment's ReplicaSets (controlled by it).
async fn replica_sets(sets: &Api<ReplicaSet>, d: &Deployment) -> Vec<ReplicaSet> {
    let uid = d.uid().unwrap();
    let mut all: Vec<ReplicaSet> = sets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|r| r.uid == uid && r.controller == Some(true)))
        .collect();
    all.sort_by_key(|rs| annotation(rs, "deployment.kubernetes.io/revision").and_then(|r| r.parse::<i64>().ok()));
    all
}

/// Waits for a complete rollout of `replicas` of this generation.
async fn rolled_out(deployments: &Api<Deployment>, name: &str, replicas: i32) -> Deployment {
    eventually(&format!("{name} rolled out with {replicas} replicas"), PATIENCE, || async {
        let d = deployments.get(name).await.ok()?;
        let s = d.status.clone()?;
        let done = s.observed_generation == d.metadata.generation
            && s.replicas == Some(replicas)
            && s.updated_replicas == Some(replicas)
            && s.ready_replicas == Some(replicas)
            && s.available_replicas == Some(replicas)
            && s.unavailable_replicas.is_none()
            && condition(&d, "Progressing").is_some_and(|c| c.1 == "NewReplicaSetAvailable");
        done.then_some(d)
    })
    .await
}

fn set_image(image: &str) -> Patch<Value> {
    Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_deployment_gets_a_hashed_replica_set_revision_and_conditions() {
    let cluster = Cluster::start(3).await;
    let deployments: Api<Deployment> = cluster.api("default");
    let sets: Api<ReplicaSet> = cluster.api("default");
    deployments.create(&PostParams::default(), &deployment("web", 3, "nginx:1", json!({}))).await.unwrap();
    let d = rolled_out(&deployments, "web", 3).await;

    let all = replica_sets(&sets, &d).await;
    assert_eq!(all.len(), 1);
    let rs = &all[0];
    let hash = rs.labels().get("pod-template-hash").cloned().expect("pod-template-hash label");
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap().get("pod-template-hash"), Some(&hash));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/revision").as_deref(), Some("1"));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/desired-replicas").as_deref(), Some("3"));
    assert_eq!(annotation(rs, "deployment.kubernetes.io/max-replicas").as_deref(), Some("4"));
    assert_eq!(d.annotations().get("deployment.kubernetes.io/revision").map(String::as_str), Some("1"));
    let available = condition(&d, "Available").unwrap();
    assert_eq!(
        available,
        ("True".into(), "MinimumReplicasAvailable".into(), "Deployment has minimum availability.".into())
    );
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(progressing.2, format!("ReplicaSet \"web-{hash}\" has successfully progressed."));

    let events: Api<Event> = cluster.api("default");
    let scaled = format!("Scaled up replica set web-{hash} from 0 to 3");
    eventually("the ScalingReplicaSet event", PATIENCE, || async {
        let events = events.list(&ListParams::default()).await.ok()?.items;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScalingReplicaSet") && e.note.as_deref() == Some(&scaled))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_stays_within_max_surge_and_keeps_history_to_the_limit() {
    let cluster = Cluster::start(4).await;
    let deployments: Api<Deployment> = cluster.api("default");
    let sets: Api<ReplicaSet> = cluster.api("default");
    let strategy = json!({"revisionHistoryLimit": 1,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 0}}});
    deployments.create(&PostParams::default(), &deployment("api", 6, "nginx:1", strategy)).await.unwrap();
    let d = rolled_out(&deployments, "api", 6).await;

    for (revision, image_name) in [(2, "nginx:2"), (3, "nginx:3")] {
        deployments.patch("api", &PatchParams::default(), &set_image(image_name)).await.unwrap();
        // While it rolls, the ReplicaSets never ask for more than replicas + maxSurge,
        // and (maxUnavailable 0) never fewer than 6 available pods once rolling.
        let d = eventually(&format!("revision {revision} rolled out"), PATIENCE, || async {
            let all = replica_sets(&sets, &d).await;
            let total: i32 = all.iter().map(|rs| rs.spec.as_ref().unwrap().replicas.unwrap()).sum();
            assert!(total <= 8, "{total} replicas asked for with maxSurge 2");
            let available: i32 = all.iter().filter_map(|rs| rs.status.as_ref()?.available_replicas).sum();
            assert!(available >= 6 || total < 6, "only {available} available with maxUnavailable 0");
            let d = deployments.get("api").await.ok()?;
            let current = d.annotations().get("deployment.kubernetes.io/revision")?.parse::<i32>().ok()?;
            let s = d.status.clone()?;
            (current == revision
                && s.observed_generation == d.metadata.generation
                && s.updated_replicas == Some(6)
                && s.replicas == Some(6)
                && s.available_replicas == Some(6))
            .then_some(d)
        })
        .await;
        let all = replica_sets(&sets, &d).await;
        let newest = all.last().unwrap();
        assert_eq!(image(newest), image_name);
        assert_eq!(newest.spec.as_ref().unwrap().replicas, Some(6));
    }
    // revisionHistoryLimit 1: the new ReplicaSet and one old one remain.
    eventually("history trimmed to one old ReplicaSet", PATIENCE, || async {
        let all = replica_sets(&sets, &d).await;
        let images: Vec<_> = all.iter().map(image).collect();
        (images == ["nginx:2", "nginx:3"]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let cluster = Cluster::start(2).await;
    let deployments: Api<Deployment> = cluster.api("default");
    let sets: Api<ReplicaSet> = cluster.api("default");
    let strategy = json!({"strategy": {"type": "Recreate"}});
    deployments.create(&PostParams::default(), &deployment("db", 3, "postgres:16", strategy)).await.unwrap();
    let d = rolled_out(&deployments, "db", 3).await;
    deployments.patch("db", &PatchParams::default(), &set_image("postgres:17")).await.unwrap();
    eventually("the Recreate rollout", PATIENCE, || async {
        let all = replica_sets(&sets, &d).await;
        let old_running: i32 = all
            .iter()
            .filter(|rs| image(rs) == "postgres:16")
            .filter_map(|rs| Some(rs.status.as_ref()?.replicas))
            .sum();
        let new_wanted: i32 =
            all.iter().filter(|rs| image(rs) == "postgres:17").filter_map(|rs| rs.spec.as_ref()?.replicas).sum();
        assert!(old_running == 0 || new_wanted == 0, "old pods {old_running} while new ones are wanted");
        let d = deployments.get("db").await.ok()?;
        let s = d.status?;
        (s.observed_generation == d.metadata.generation
            && s.updated_replicas == Some(3)
            && s.available_replicas == Some(3))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_deployments_scale_without_rolling_out_and_resume() {
    let cluster = Cluster::start(2).await;
    let deployments: Api<Deployment> = cluster.api("default");
    let sets: Api<ReplicaSet> = cluster.api("default");
    deployments.create(&PostParams::default(), &deployment("app", 2, "app:1", json!({}))).await.unwrap();
    let d = rolled_out(&deployments, "app", 2).await;

    deployments.patch("app", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": true}}))).await.unwrap();
    eventually("Progressing Unknown/DeploymentPaused", PATIENCE, || async {
        let d = deployments.get("app").await.ok()?;
        let c = condition(&d, "Progressing")?;
        (c == ("Unknown".into(), "DeploymentPaused".into(), "Deployment is paused".into())).then_some(())
    })
    .await;
    deployments.patch("app", &PatchParams::default(), &set_image("app:2")).await.unwrap();
    let scale = Patch::Merge(json!({"spec": {"replicas": 4}}));
    deployments.patch("app", &PatchParams::default(), &scale).await.unwrap();
    eventually("the paused deployment scaled to 4 on its old template", PATIENCE, || async {
        let d = deployments.get("app").await.ok()?;
        let s = d.status.clone()?;
        (s.observed_generation == d.metadata.generation && s.available_replicas == Some(4)).then_some(())
    })
    .await;
    let all = replica_sets(&sets, &d).await;
    assert_eq!(all.len(), 1, "no rollout while paused");
    assert_eq!(image(&all[0]), "app:1");

    deployments.patch("app", &PatchParams::default(), &Patch::Merge(json!({"spec": {"paused": false}}))).await.unwrap();
    let d = rolled_out(&deployments, "app", 4).await;
    let all = replica_sets(&sets, &d).await;
    assert_eq!(all.iter().map(image).collect::<Vec<_>>(), ["app:1", "app:2"]);
    assert_eq!(all[0].spec.as_ref().unwrap().replicas, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_that_never_become_ready_exceed_the_progress_deadline() {
    let cluster = Cluster::start(2).await;
    let deployments: Api<Deployment> = cluster.api("default");
    let mut d = deployment("stuck", 2, "nginx", json!({"progressDeadlineSeconds": 2}));
    let spec = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    spec.readiness_gates = Some(vec![serde_json::from_value(json!({"conditionType": "example.com/never"})).unwrap()]);
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let d = eventually("Progressing False/ProgressDeadlineExceeded with 2 pods", PATIENCE, || async {
        let d = deployments.get("stuck").await.ok()?;
        let c = condition(&d, "Progressing")?;
        (c.0 == "False" && c.1 == "ProgressDeadlineExceeded" && d.status.as_ref()?.replicas == Some(2)).then_some(d)
    })
    .await;
    let rs_name = format!("stuck-{}", replica_hash(&cluster, &d).await.expect("a ReplicaSet"));
    let progressing = condition(&d, "Progressing").unwrap();
    assert_eq!(progressing.2, format!("ReplicaSet \"{rs_name}\" has timed out progressing."));
    let available = condition(&d, "Available").unwrap();
    assert_eq!((available.0.as_str(), available.1.as_str()), ("False", "MinimumReplicasUnavailable"));
    let s = d.status.unwrap();
    assert_eq!(
        (s.replicas, s.updated_replicas, s.ready_replicas, s.unavailable_replicas),
        (Some(2), Some(2), None, Some(2))
    );
}

async fn replica_hash(cluster: &Cluster, d: &Deployment) -> Option<String> {
    let sets: Api<ReplicaSet> = cluster.api("default");
    replica_sets(&sets, d).await.first().and_then(|rs| rs.labels().get("pod-template-hash").cloned())
}
