//! The namespace controller: deleting a namespace deletes its content, then the namespace.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::Value;
use support::{eventually, json, Cluster, PATIENCE};

async fn create<K>(api: &Api<K>, object: Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap();
}

async fn namespace_with_content(cluster: &Cluster, name: &str) {
    create(&Api::<Namespace>::all(cluster.client.clone()), json!({"metadata": {"name": name}})).await;
    create(&cluster.api::<ConfigMap>(name), json!({"metadata": {"name": "settings"}, "data": {"a": "b"}})).await;
    create(&cluster.api::<Secret>(name), json!({"metadata": {"name": "token"}, "stringData": {"t": "x"}})).await;
    create(
        &cluster.api::<Service>(name),
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    let pods: Api<Pod> = cluster.api(name);
    for i in 0..3 {
        create(
            &pods,
            json!({"metadata": {"name": format!("web-{i}"), "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    }
    eventually("pods running", PATIENCE, || async {
        let list = pods.list(&Default::default()).await.ok()?;
        list.items.iter().all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).then_some(())
    })
    .await;
}

// kubectl blocks its thread: the server needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_delete_namespace_removes_its_content_and_then_the_namespace() {
    let cluster = Cluster::start(2).await;
    namespace_with_content(&cluster, "doomed").await;
    // Another namespace's content is left alone.
    namespace_with_content(&cluster, "spared").await;

    let out = cluster.server.kubectl(&["delete", "namespace", "doomed", "--timeout=60s"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "namespace \"doomed\" deleted");
    let namespaces = Api::<Namespace>::all(cluster.client.clone());
    assert!(namespaces.get_opt("doomed").await.unwrap().is_none());
    assert!(cluster.api::<Pod>("doomed").list(&Default::default()).await.unwrap().items.is_empty());
    assert!(cluster.api::<ConfigMap>("doomed").get_opt("settings").await.unwrap().is_none());

    assert_eq!(cluster.api::<Pod>("spared").list(&Default::default()).await.unwrap().items.len(), 3);
    assert!(cluster.api::<Secret>("spared").get_opt("token").await.unwrap().is_some());
    let get = cluster.server.kubectl(&["get", "namespace", "doomed"]);
    assert!(String::from_utf8_lossy(&get.stderr).contains("namespaces \"doomed\" not found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_reports_what_remains_in_its_conditions() {
    let cluster = Cluster::start(1).await;
    namespace_with_content(&cluster, "held").await;
    // Content that cannot go until its finalizer is removed.
    let cms: Api<ConfigMap> = cluster.api("held");
    create(&cms, json!({"metadata": {"name": "pinned", "finalizers": ["example.com/hold"]}})).await;

    let out = cluster.server.kubectl(&["delete", "namespace", "held", "--wait=false"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let namespaces = Api::<Namespace>::all(cluster.client.clone());
    let expected_remaining = "Some resources are remaining: configmaps. has 1 resource instances";
    eventually("only the pinned configmap remains", PATIENCE, || async {
        let ns = namespaces.get("held").await.ok()?;
        let conditions = ns.status?.conditions?;
        let remaining = conditions.iter().find(|c| c.type_ == "NamespaceContentRemaining")?;
        (remaining.message.as_deref() == Some(expected_remaining)).then_some(())
    })
    .await;

    let out = cluster.server.kubectl(&["get", "namespace", "held", "-o", "yaml"]);
    let yaml: Value = serde_yaml::from_slice(&out.stdout).expect("kubectl prints YAML");
    assert_eq!(yaml["status"]["phase"], "Terminating");
    assert_eq!(yaml["spec"]["finalizers"], json!(["kubernetes"]));
    let condition = |type_: &str| -> Value {
        yaml["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).cloned().unwrap()
    };
    assert_eq!(condition("NamespaceContentRemaining")["status"], "True");
    assert_eq!(condition("NamespaceContentRemaining")["reason"], "SomeResourcesRemain");
    assert_eq!(condition("NamespaceFinalizersRemaining")["status"], "True");
    assert_eq!(condition("NamespaceFinalizersRemaining")["reason"], "SomeFinalizersRemain");
    assert_eq!(
        condition("NamespaceFinalizersRemaining")["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(condition("NamespaceDeletionDiscoveryFailure")["status"], "False");
    assert_eq!(condition("NamespaceDeletionDiscoveryFailure")["reason"], "ResourcesDiscovered");
    assert_eq!(condition("NamespaceDeletionContentFailure")["reason"], "ContentDeleted");
    // Nothing new may be created meanwhile.
    let refused = cluster.server.kubectl(&["create", "configmap", "late", "-n", "held"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("because it is being terminated"));

    cms.patch("pinned", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .unwrap();
    eventually("namespace held gone", PATIENCE, || async {
        namespaces.get_opt("held").await.ok()?.is_none().then_some(())
    })
    .await;
}
