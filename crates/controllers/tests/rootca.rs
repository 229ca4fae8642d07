//! The root CA publisher: `kube-root-ca.crt` in every namespace, kept as it should be.

mod support;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use skiff_controllers::rootca;
use support::{eventually, json, Cluster, PATIENCE};

/// The CA a ConfigMap publishes, once it publishes `ca`.
async fn published(api: &Api<ConfigMap>, ca: &str, what: &str) -> ConfigMap {
    eventually(what, PATIENCE, || async {
        let cm = api.get_opt(rootca::CONFIG_MAP).await.ok()??;
        (cm.data.as_ref()?.get(rootca::KEY)? == ca).then_some(cm)
    })
    .await
}

// kubectl blocks its thread: the server needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_the_cluster_ca_and_keeps_it() {
    let cluster = Cluster::start(0).await;
    let ca = cluster.server.server.pki.ca_cert_pem.clone();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    // What the controller manager in `skiff server` reads from its kubeconfig.
    assert_eq!(rootca::ca_from_kubeconfig(cluster.server.kubeconfig()).unwrap(), ca);

    published(&cluster.api("kube-system"), &ca, "kube-root-ca.crt in kube-system").await;
    let namespaces = Api::<Namespace>::all(cluster.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let api: Api<ConfigMap> = cluster.api("team");
    let first = published(&api, &ca, "kube-root-ca.crt in team").await;
    assert!(first.annotations()["kubernetes.io/description"].starts_with("Contains a CA bundle"));

    let out = cluster.server.kubectl(&[
        "get",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "-o",
        "jsonpath={.data.ca\\.crt}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), ca);

    // Deleted: recreated.
    api.delete(rootca::CONFIG_MAP, &DeleteParams::default()).await.unwrap();
    let second = eventually("kube-root-ca.crt recreated", PATIENCE, || async {
        let cm = api.get_opt(rootca::CONFIG_MAP).await.ok()??;
        (cm.uid() != first.uid()).then_some(cm)
    })
    .await;
    assert_eq!(second.data.as_ref().unwrap()[rootca::KEY], ca);

    // Edited: put back.
    let edit = json!({"data": {"ca.crt": "not a CA", "extra": "x"}});
    api.patch(rootca::CONFIG_MAP, &PatchParams::default(), &Patch::Merge(edit)).await.unwrap();
    let restored = eventually("kube-root-ca.crt restored", PATIENCE, || async {
        let cm = api.get(rootca::CONFIG_MAP).await.ok()?;
        (cm.data.as_ref()?.len() == 1 && cm.data.as_ref()?[rootca::KEY] == ca).then_some(cm)
    })
    .await;
    assert_eq!(restored.uid(), second.uid(), "restored in place, not recreated");
}
