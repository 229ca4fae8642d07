//! The StatefulSet controller through the API and kubectl, on simulated nodes.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use support::{eventually, json, Cluster, PATIENCE};

fn statefulset(name: &str, spec: serde_json::Value) -> StatefulSet {
    let mut full = json!({
        "serviceName": name,
        "replicas": 3,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main", "image": "db:1"}]}},
    });
    for (key, value) in spec.as_object().unwrap() {
        full[key] = value.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": full})).unwrap()
}

fn ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn pods_by_name(cluster: &Cluster, app: &str) -> BTreeMap<String, Pod> {
    let pods: Api<Pod> = cluster.api("default");
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items;
    list.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(|p| (p.name_any(), p)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_pods_with_claims_scale_and_roll_out_by_partition() {
    let cluster = Cluster::start(2).await;
    let sets: Api<StatefulSet> = cluster.api("default");
    let claims = json!([{
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }]);
    let spec = json!({"volumeClaimTemplates": claims, "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"}});
    sets.create(&PostParams::default(), &statefulset("web", spec)).await.unwrap();

    // OrderedReady: a pod appears only once every lower ordinal is Running and Ready.
    eventually("three ready pods, in order", PATIENCE, || async {
        let pods = pods_by_name(&cluster, "web").await;
        for ordinal in 1..3 {
            if pods.contains_key(&format!("web-{ordinal}")) {
                let before = pods.get(&format!("web-{}", ordinal - 1)).expect("lower ordinals exist first");
                assert!(ready(before), "web-{ordinal} exists while web-{} is not ready", ordinal - 1);
            }
        }
        (pods.len() == 3 && pods.values().all(ready)).then_some(())
    })
    .await;
    let set = eventually("status", PATIENCE, || async {
        let set = sets.get("web").await.ok()?;
        (set.status.as_ref()?.ready_replicas == Some(3)).then_some(set)
    })
    .await;
    let status = set.status.clone().unwrap();
    assert_eq!((status.replicas, status.current_replicas, status.updated_replicas), (3, Some(3), Some(3)));
    assert_eq!(status.current_revision, status.update_revision);
    assert!(status.update_revision.clone().unwrap().starts_with("web-"));

    let pods = pods_by_name(&cluster, "web").await;
    let pvcs: Api<PersistentVolumeClaim> = cluster.api("default");
    for (ordinal, (name, pod)) in pods.iter().enumerate() {
        assert_eq!(name, &format!("web-{ordinal}"));
        assert_eq!(pod.labels()["statefulset.kubernetes.io/pod-name"], *name);
        assert_eq!(pod.labels()["apps.kubernetes.io/pod-index"], ordinal.to_string());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some(name.as_str()), Some("web")));
        let volume = spec.volumes.iter().flatten().find(|v| v.name == "data").unwrap();
        let claim = format!("data-web-{ordinal}");
        assert_eq!(volume.persistent_volume_claim.as_ref().unwrap().claim_name, claim);
        let pvc = pvcs.get(&claim).await.unwrap();
        assert_eq!(pvc.owner_references()[0].uid, set.uid().unwrap(), "whenDeleted: Delete");
    }

    // Scale down with kubectl: the highest ordinals go, the claims stay (whenScaled: Retain).
    cluster.kubectl_ok(&["scale", "sts", "web", "--replicas=1"]).await;
    eventually("one pod left", PATIENCE, || async {
        let pods = pods_by_name(&cluster, "web").await;
        (pods.keys().cloned().collect::<Vec<_>>() == ["web-0"]).then_some(())
    })
    .await;
    assert!(pvcs.get_opt("data-web-2").await.unwrap().is_some());
    cluster.kubectl_ok(&["scale", "sts", "web", "--replicas=3"]).await;
    cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=60s"]).await;

    // A partitioned update: ordinals 1 and 2 are replaced (2 first), 0 keeps the old image.
    let update = json!({"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
        "template": {"spec": {"containers": [{"name": "main", "image": "db:2"}]}},
    }});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(update)).await.unwrap();
    let out = cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=60s"]).await;
    assert!(out.contains("partitioned roll out complete: 2 new pods have been updated"), "{out}");
    let image = |pod: &Pod| pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
    let pods = pods_by_name(&cluster, "web").await;
    let images: Vec<String> = pods.values().map(image).collect();
    assert_eq!(images, ["db:1", "db:2", "db:2"]);
    let status = sets.get("web").await.unwrap().status.unwrap();
    assert_ne!(status.current_revision, status.update_revision);
    assert_eq!(status.updated_replicas, Some(2));

    // Partition 0: the rest follows, and the update revision becomes current.
    let all = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Strategic(all)).await.unwrap();
    let out = cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=60s"]).await;
    // kubectl reports every RollingUpdate set (whose partition defaults to 0) as partitioned.
    assert!(out.contains("partitioned roll out complete: 3 new pods have been updated"), "{out}");
    let pods = pods_by_name(&cluster, "web").await;
    assert!(pods.values().all(|p| image(p) == "db:2"));
    let status = sets.get("web").await.unwrap().status.unwrap();
    assert_eq!(status.current_revision, status.update_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_pods_start_at_the_first_ordinal_together() {
    let cluster = Cluster::start(1).await;
    let sets: Api<StatefulSet> = cluster.api("default");
    let spec = json!({"podManagementPolicy": "Parallel", "replicas": 2, "ordinals": {"start": 5}});
    sets.create(&PostParams::default(), &statefulset("cache", spec)).await.unwrap();
    let pods = eventually("two ready pods", PATIENCE, || async {
        let pods = pods_by_name(&cluster, "cache").await;
        (pods.len() == 2 && pods.values().all(ready)).then_some(pods)
    })
    .await;
    assert_eq!(pods.keys().cloned().collect::<Vec<_>>(), ["cache-5", "cache-6"]);
    assert_eq!(pods["cache-6"].labels()["apps.kubernetes.io/pod-index"], "6");
}
