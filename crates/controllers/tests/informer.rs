//! The shared informer through the API: one watch fills the cache and every subscriber
//! sees creations, updates (with the state before) and deletions, also one that
//! subscribes after the first list.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use skiff_controllers::informer::{Change, Informer};
use skiff_testkit::{json, TestServer};

const PATIENCE: Duration = Duration::from_secs(30);

/// The next change about the pod `name` (skipping others), or Synced.
async fn next_about(changes: &mut (impl Stream<Item = Change<Pod>> + Unpin), name: &str) -> Change<Pod> {
    let wait = async {
        loop {
            let change = changes.next().await.expect("the informer stopped");
            match change.object() {
                Some(pod) if pod.name_any() != name => continue,
                _ => return change,
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait).await.unwrap_or_else(|_| panic!("no change about {name} in time"))
}

/// Skips changes until the pod `name` is reported deleted.
async fn deleted(changes: &mut (impl Stream<Item = Change<Pod>> + Unpin), name: &str) -> Arc<Pod> {
    loop {
        if let Change::Deleted(pod) = next_about(changes, name).await {
            return pod;
        }
    }
}

#[tokio::test]
async fn subscribers_see_creations_updates_with_the_state_before_and_deletions() {
    let server = TestServer::start().await;
    let client = skiff_client::connect(server.kubeconfig(), None).await.expect("client");
    let informer = Informer::start(Api::<Pod>::all(client.clone()));
    let mut early = Box::pin(informer.subscribe());
    let store = informer.store();
    tokio::time::timeout(PATIENCE, store.wait_until_ready()).await.expect("first list in time").unwrap();
    assert!(matches!(next_about(&mut early, "p").await, Change::Synced), "the first list is reported done");

    let pods = Api::<Pod>::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "pause"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    match next_about(&mut early, "p").await {
        Change::Applied { old: None, new } => assert_eq!(new.name_any(), "p"),
        other => panic!("expected the creation, got {other:?}"),
    }

    let label = Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}}));
    pods.patch("p", &PatchParams::default(), &label).await.unwrap();
    match next_about(&mut early, "p").await {
        Change::Applied { old: Some(old), new } => {
            assert!(old.labels().get("tier").is_none(), "old is the state before the patch");
            assert_eq!(new.labels().get("tier").map(String::as_str), Some("web"));
        }
        other => panic!("expected the update, got {other:?}"),
    }
    let cached = store.get(&ObjectRef::new("p").within("default")).expect("p in the cache");
    assert_eq!(cached.labels().get("tier").map(String::as_str), Some("web"));
    assert!(cached.metadata.managed_fields.is_none(), "managedFields are not kept");

    // A subscriber after the first list gets the cache's content first, then Synced.
    let mut late = Box::pin(informer.subscribe());
    match next_about(&mut late, "p").await {
        Change::Applied { old: None, new } => assert_eq!(new.labels().get("tier").map(String::as_str), Some("web")),
        other => panic!("expected p from the cache, got {other:?}"),
    }
    assert!(matches!(next_about(&mut late, "p").await, Change::Synced));

    // Deletions reach every subscriber (kube-runtime's shared reflector drops them).
    pods.delete("p", &DeleteParams::default().grace_period(0)).await.unwrap();
    assert_eq!(deleted(&mut early, "p").await.name_any(), "p");
    assert_eq!(deleted(&mut late, "p").await.name_any(), "p");
    assert!(store.get(&ObjectRef::new("p").within("default")).is_none(), "p left the cache");
}
