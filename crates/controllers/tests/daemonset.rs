//! The DaemonSet controller through the API and kubectl, on simulated nodes.

mod support;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use skiff_agent::config::NodeTemplate;
use support::{eventually, json, Cluster, PATIENCE};

fn daemonset(name: &str, image: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "agent", "image": image}]}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        }
    }))
    .unwrap()
}

async fn daemon_pods(cluster: &Cluster, app: &str) -> Vec<Pod> {
    let pods: Api<Pod> = cluster.api("default");
    let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap().items;
    list.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

fn node_name(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_per_eligible_node_as_nodes_come_and_an_image_update_rolls_out() {
    let mut cluster = Cluster::start(2).await;
    let sets: Api<DaemonSet> = cluster.api("default");
    sets.create(&PostParams::default(), &daemonset("logs", "fluentd:1")).await.unwrap();
    let ready = |want: i32| {
        let sets = sets.clone();
        async move {
            eventually(&format!("{want} ready daemons"), PATIENCE, || async {
                let status = sets.get("logs").await.ok()?.status?;
                (status.desired_number_scheduled == want && status.number_ready == want).then_some(status)
            })
            .await
        }
    };
    let status = ready(2).await;
    assert_eq!((status.current_number_scheduled, status.number_misscheduled), (2, 0));
    assert_eq!((status.number_available, status.updated_number_scheduled), (Some(2), Some(2)));
    assert_eq!(status.observed_generation, Some(1));

    let pods = daemon_pods(&cluster, "logs").await;
    let mut nodes: Vec<String> = pods.iter().map(node_name).collect();
    nodes.sort();
    assert_eq!(nodes, ["node-0", "node-1"]);
    let revisions: Api<ControllerRevision> = cluster.api("default");
    let revision = revisions.list(&ListParams::default().labels("app=logs")).await.unwrap().items;
    assert_eq!(revision.len(), 1);
    assert_eq!(revision[0].revision, 1);
    for pod in &pods {
        let hash = &revision[0].labels()["controller-revision-hash"];
        assert_eq!(&pod.labels()["controller-revision-hash"], hash);
        assert_eq!(revision[0].name_any(), format!("logs-{hash}"));
        let spec = pod.spec.as_ref().unwrap();
        let term = &spec.affinity.as_ref().unwrap().node_affinity.as_ref().unwrap();
        let fields = term.required_during_scheduling_ignored_during_execution.as_ref().unwrap().node_selector_terms[0]
            .match_fields
            .clone()
            .unwrap();
        assert_eq!(
            (fields[0].key.as_str(), fields[0].values.clone().unwrap()),
            ("metadata.name", vec![node_name(pod)])
        );
        let tolerated: Vec<String> = spec.tolerations.iter().flatten().filter_map(|t| t.key.clone()).collect();
        for key in
            ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable", "node.kubernetes.io/unschedulable"]
        {
            assert!(tolerated.iter().any(|t| t == key), "{key} in {tolerated:?}");
        }
    }

    // A node tainted NoSchedule gets no daemon; a plain node added after it does.
    let tainted = NodeTemplate {
        taints: vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }],
        ..NodeTemplate::simulated()
    };
    cluster.add_nodes("tainted", 1, tainted);
    let nodes_api: Api<Node> = Api::all(cluster.client.clone());
    eventually("the tainted node", PATIENCE, || async { nodes_api.get_opt("tainted-0").await.ok()? }).await;
    cluster.add_nodes("late", 1, NodeTemplate::simulated());
    ready(3).await;
    let pods = daemon_pods(&cluster, "logs").await;
    assert!(pods.iter().any(|p| node_name(p) == "late-0"), "the late node got its daemon");
    assert!(pods.iter().all(|p| node_name(p) != "tainted-0"), "no daemon on the tainted node");
    assert_eq!(pods.len(), 3);

    // A new image rolls out, one node at a time.
    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "fluentd:2"}]}}}});
    sets.patch("logs", &PatchParams::default(), &Patch::Strategic(update)).await.unwrap();
    let out = cluster.kubectl_ok(&["rollout", "status", "ds/logs", "--timeout=60s"]).await;
    assert!(out.trim_end().ends_with("daemon set \"logs\" successfully rolled out"), "{out}");
    let pods = daemon_pods(&cluster, "logs").await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        assert_eq!(pod.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("fluentd:2"));
    }
    let status = sets.get("logs").await.unwrap().status.unwrap();
    assert_eq!(
        (status.updated_number_scheduled, status.number_ready, status.observed_generation),
        (Some(3), 3, Some(2))
    );
    let revisions = revisions.list(&ListParams::default().labels("app=logs")).await.unwrap().items;
    assert_eq!(revisions.iter().map(|r| r.revision).max(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_only_the_daemons_deleted_by_hand() {
    let cluster = Cluster::start(2).await;
    let sets: Api<DaemonSet> = cluster.api("default");
    let mut set = daemonset("probe", "probe:1");
    set.spec.as_mut().unwrap().update_strategy = Some(serde_json::from_value(json!({"type": "OnDelete"})).unwrap());
    sets.create(&PostParams::default(), &set).await.unwrap();
    eventually("two ready daemons", PATIENCE, || async {
        let status = sets.get("probe").await.ok()?.status?;
        (status.number_ready == 2).then_some(())
    })
    .await;

    let update = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "probe:2"}]}}}});
    sets.patch("probe", &PatchParams::default(), &Patch::Strategic(update)).await.unwrap();
    let status = eventually("the new generation observed", PATIENCE, || async {
        let status = sets.get("probe").await.ok()?.status?;
        (status.observed_generation == Some(2)).then_some(status)
    })
    .await;
    assert_eq!(status.updated_number_scheduled, Some(0), "OnDelete leaves running daemons alone");
    let image = |pod: &Pod| pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap();
    assert!(daemon_pods(&cluster, "probe").await.iter().all(|p| image(p) == "probe:1"));

    let victim = daemon_pods(&cluster, "probe").await.into_iter().find(|p| node_name(p) == "node-0").unwrap();
    let pods: Api<Pod> = cluster.api("default");
    pods.delete(&victim.name_any(), &Default::default()).await.unwrap();
    eventually("node-0's daemon replaced with the new image", PATIENCE, || async {
        let pods = daemon_pods(&cluster, "probe").await;
        let on_0 = pods.iter().find(|p| node_name(p) == "node-0" && p.name_any() != victim.name_any())?;
        let on_1 = pods.iter().find(|p| node_name(p) == "node-1")?;
        (image(on_0) == "probe:2" && image(on_1) == "probe:1").then_some(())
    })
    .await;
    let status = eventually("one daemon updated", PATIENCE, || async {
        let status = sets.get("probe").await.ok()?.status?;
        (status.updated_number_scheduled == Some(1) && status.number_ready == 2).then_some(status)
    })
    .await;
    assert_eq!(status.desired_number_scheduled, 2);
}
