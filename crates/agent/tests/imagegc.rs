//! Image garbage collection on a real node: images built by the test and imported into
//! the node's containerd, pods running some of them, and the disk's usage reported by the
//! test (the OS boundary) as a function of what containerd really holds, so that removing
//! an image frees its size. The collector removes unused images least recently used first,
//! then first detected first, just enough to get back to the low threshold; it keeps the
//! images of running containers and the pause image; when it cannot free enough the Node
//! gets FreeDiskSpaceFailed and then ImageGCFailed warnings.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use skiff_agent::imagegc::{FsStats, GcPolicy, ImageFs, ImageGc};
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::{ContainerFilter, Runtime};
use skiff_agent::{containerd, oci};
use skiff_testkit::json;
use tokio::sync::watch;

mod common;
use common::{eventually, pod, running_and_ready, uid_filter, RealNode, IMAGE, NODE};

/// A disk of `capacity` bytes on which everything but the images takes `other` bytes and
/// the images take what containerd reports for them.
struct Disk {
    runtime: Arc<CriRuntime>,
    /// (capacity, other)
    setting: Mutex<(u64, u64)>,
}

impl Disk {
    async fn images_size(&self) -> u64 {
        self.runtime.list_images().await.unwrap().iter().map(|i| i.size).sum()
    }

    fn set(&self, capacity: u64, other: u64) {
        *self.setting.lock().unwrap() = (capacity, other);
    }
}

#[async_trait]
impl ImageFs for Disk {
    async fn stats(&self) -> std::io::Result<FsStats> {
        let images = self.images_size().await;
        let (capacity, other) = *self.setting.lock().unwrap();
        Ok(FsStats { capacity_bytes: capacity, available_bytes: capacity.saturating_sub(other + images) })
    }
}

async fn import(node: &RealNode, name: &str, variant: &str) {
    let path = node.agent_dir().join(format!("{variant}.tar"));
    std::fs::write(&path, skiff_testkit::images::busybox_variant(name, variant).unwrap()).unwrap();
    let names = containerd::import_image(node.machine.runtime.socket(), &path).await.unwrap();
    assert_eq!(names, [name]);
}

async fn tags(runtime: &CriRuntime) -> Vec<String> {
    runtime.list_images().await.unwrap().into_iter().flat_map(|i| i.repo_tags).collect()
}

async fn size_of(runtime: &CriRuntime, name: &str) -> u64 {
    runtime.image_status(name).await.unwrap().unwrap_or_else(|| panic!("{name} is not there")).size
}

/// Waits until the collector has made `count` more passes.
async fn passes(passes: &mut watch::Receiver<u64>, count: u64) {
    let target = *passes.borrow_and_update() + count;
    tokio::time::timeout(Duration::from_secs(60), passes.wait_for(|n| *n >= target))
        .await
        .expect("image GC passes")
        .unwrap();
}

/// Sets the disk so that the next pass is above the high threshold (85 %) and must free
/// exactly `bytes` to get back to the low one (80 %): capacity 15·bytes, 13·bytes used.
async fn needs_freeing(disk: &Disk, bytes: u64) {
    let images = disk.images_size().await;
    let other = (13 * bytes).checked_sub(images).expect("the images take less than 13× the size to free");
    disk.set(15 * bytes, other);
}

const OLD: &str = "skiff.local/gc-old:1";
const RECENT: &str = "skiff.local/gc-recent:1";
const NEWER: &str = "skiff.local/gc-newer:1";

async fn scenario(node: &RealNode) {
    let runtime = node.machine.runtime.clone();
    let client = node.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    import(node, OLD, "old").await;
    import(node, RECENT, "recent").await;

    // Plenty of room at first: the collector only records what it sees.
    let disk = Arc::new(Disk { runtime: runtime.clone(), setting: Mutex::new((1 << 40, 0)) });
    let policy = GcPolicy { min_age: Duration::ZERO, period: Duration::from_millis(300), ..GcPolicy::default() };
    let gc = ImageGc::new(runtime.clone() as Arc<dyn Runtime>, disk.clone(), policy).pinning(oci::PAUSE_IMAGE);
    let mut gc_passes = gc.passes();
    let _running = node.start_agent_with(client.clone(), Some(gc));

    let sleep = |name: &str, image: &str| {
        pod(name, json!({"name": "app", "image": image, "command": ["sleep", "3600"]}), "Always")
    };
    pods.create(&PostParams::default(), &sleep("keep", IMAGE)).await.unwrap();
    pods.create(&PostParams::default(), &sleep("recent", RECENT)).await.unwrap();
    let keep = running_and_ready(&pods, "keep", 120).await;
    let recent = running_and_ready(&pods, "recent", 120).await;
    // A pass while `recent` runs marks its image used now.
    passes(&mut gc_passes, 2).await;
    pods.delete("recent", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    let recent_uid = recent.metadata.uid.unwrap();
    eventually("recent's containers removed", 60, || async {
        let filter = ContainerFilter { labels: uid_filter(&recent_uid), ..Default::default() };
        runtime.list_containers(&filter).await.ok()?.is_empty().then_some(())
    })
    .await;
    // An image that appears later: never used, detected after OLD.
    import(node, NEWER, "newer").await;
    passes(&mut gc_passes, 2).await;
    let before = tags(&runtime).await;
    for image in [OLD, RECENT, NEWER, IMAGE, oci::PAUSE_IMAGE] {
        assert!(before.iter().any(|t| t == image), "{image} missing before the disk fills: {before:?}");
    }

    // Full enough to free OLD's size: OLD (never used, detected first) goes, alone.
    needs_freeing(&disk, size_of(&runtime, OLD).await).await;
    eventually("OLD removed", 60, || async { (!tags(&runtime).await.iter().any(|t| t == OLD)).then_some(()) }).await;
    passes(&mut gc_passes, 2).await;
    let left = tags(&runtime).await;
    assert!(left.iter().any(|t| t == NEWER) && left.iter().any(|t| t == RECENT), "removed more than needed: {left:?}");

    // Then NEWER's size: NEWER (never used) goes before RECENT (used a while ago).
    needs_freeing(&disk, size_of(&runtime, NEWER).await).await;
    eventually("NEWER removed", 60, || async { (!tags(&runtime).await.iter().any(|t| t == NEWER)).then_some(()) })
        .await;
    passes(&mut gc_passes, 2).await;
    assert!(tags(&runtime).await.iter().any(|t| t == RECENT), "the recently used image went before the unused");

    // Far too full: RECENT goes, the in-use and pause images stay, and the Node is told.
    let recent_size = size_of(&runtime, RECENT).await;
    let images = disk.images_size().await;
    disk.set(100 * images, 95 * images - images);
    eventually("RECENT removed", 60, || async { (!tags(&runtime).await.iter().any(|t| t == RECENT)).then_some(()) })
        .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let node_events = |reason: &'static str| {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            let found: Vec<Event> = list
                .items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some(reason)
                        && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Node")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(NODE)
                })
                .collect();
            (!found.is_empty()).then_some(found)
        }
    };
    let failed = eventually("FreeDiskSpaceFailed on the Node", 60, || node_events("FreeDiskSpaceFailed")).await;
    let expected = format!(
        "Failed to garbage collect required amount of images. Attempted to free {} bytes, but only found {recent_size} bytes eligible to free.",
        15 * images
    );
    assert!(failed.iter().any(|e| e.note.as_deref() == Some(expected.as_str())), "{expected:?} not in {failed:#?}");
    assert!(failed.iter().all(|e| e.type_.as_deref() == Some("Warning")));
    let repeated = eventually("ImageGCFailed on the Node", 60, || node_events("ImageGCFailed")).await;
    assert!(repeated[0].note.as_deref().unwrap_or_default().starts_with("Failed to garbage collect"));

    let left = tags(&runtime).await;
    assert!(left.iter().any(|t| t == IMAGE), "the running pod's image was removed: {left:?}");
    assert!(left.iter().any(|t| t == oci::PAUSE_IMAGE), "the pause image was removed: {left:?}");
    let keep_now = running_and_ready(&pods, "keep", 30).await;
    let status = |pod: &Pod| pod.status.clone().unwrap().container_statuses.unwrap()[0].clone();
    assert_eq!(status(&keep_now).container_id, status(&keep).container_id);
    assert_eq!(status(&keep_now).restart_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_images_are_collected_least_recently_used_first() {
    let node = RealNode::start().await;
    let outcome = AssertUnwindSafe(scenario(&node)).catch_unwind().await;
    node.finish(outcome).await;
}
