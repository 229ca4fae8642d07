//! The ServiceAccount controller through the API.

mod support;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use support::{eventually, json, Cluster, PATIENCE};

#[tokio::test]
async fn every_namespace_gets_a_default_service_account_again_after_deletion() {
    let cluster = Cluster::start(0).await;
    let namespaces = Api::<Namespace>::all(cluster.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team-a"}})).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    let accounts: Api<ServiceAccount> = cluster.api("team-a");
    eventually("default ServiceAccount in team-a", PATIENCE, || async { accounts.get_opt("default").await.ok()? })
        .await;
    // Namespaces that existed at start too.
    let system: Api<ServiceAccount> = cluster.api("kube-system");
    eventually("default ServiceAccount in kube-system", PATIENCE, || async { system.get_opt("default").await.ok()? })
        .await;

    let first = accounts.get("default").await.unwrap().metadata.uid;
    accounts.delete("default", &DeleteParams::default()).await.unwrap();
    eventually("a new default ServiceAccount", PATIENCE, || async {
        let account = accounts.get_opt("default").await.ok()??;
        (account.metadata.uid != first).then_some(())
    })
    .await;
}
