//! Client libraries other than kubectl: kube-rs and the official Python client.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use skiff_testkit::{json, TestServer};

async fn kube_client(s: &TestServer) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(s.kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

#[tokio::test]
async fn kube_rs_crud_list_watch_patch() {
    let s = TestServer::start().await;
    let client = kube_client(&s).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "rs", "labels": {"from": "rust"}}, "data": {"a": "1"}}))
            .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());

    // The watcher lists, then follows changes (it uses the streaming-list form when asked).
    let stream = watcher(api.clone(), watcher::Config::default().labels("from=rust"));
    let mut stream = Box::pin(stream);
    let patched = api.patch("rs", &PatchParams::default(), &Patch::Merge(json!({"data": {"b": "2"}}))).await.unwrap();
    assert_eq!(patched.data.unwrap()["b"], "2");
    let mut seen = Vec::new();
    while let Some(event) =
        tokio::time::timeout(std::time::Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap()
    {
        if let watcher::Event::InitApply(cm) | watcher::Event::Apply(cm) = event {
            seen.push(cm.data.unwrap_or_default().len());
            if seen.last() == Some(&2) {
                break;
            }
        }
    }
    assert_eq!(seen.last(), Some(&2), "the watcher saw the patched object: {seen:?}");

    let listed = api.list(&ListParams::default().labels("from=rust")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let err = api.get("missing").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref status) if status.code == 404), "{err:?}");
    api.delete("rs", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("rs").await.unwrap().is_none());

    let streaming = watcher(api.clone(), watcher::Config::default().streaming_lists());
    let first = Box::pin(streaming).next().await.unwrap().unwrap();
    assert!(matches!(first, watcher::Event::Init), "{first:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_crud_list_watch_patch() {
    let s = TestServer::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/crud.py");
    let kubeconfig = s.kubeconfig().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").arg(script).arg(kubeconfig).output().expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("python client: ok"));
}
