//! A container's life on a real node (private containerd, the in-process API server):
//! a failing liveness probe restarts it, a memory limit gets it OOMKilled, a ConfigMap
//! update reaches the file it reads, init containers run in order before it, and a
//! deletion waits for it to stop on SIGTERM, or kills it at the grace period.
//!
//! One test function on one node (the node owns the machine's `cni0` bridge); the
//! scenarios run at once, each on its own pods.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use skiff_agent::machine::Machine;
use skiff_agent::runtime::Runtime;
use skiff_testkit::json;

mod common;
use common::{condition, eventually, running_and_ready, RealNode, IMAGE, NODE};

/// A pod on the node from `spec` (nodeName filled in).
fn pod(name: &str, mut spec: serde_json::Value) -> Pod {
    spec["nodeName"] = json!(NODE);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == container)
}

/// The containerd ID behind a container status.
fn runtime_id(status: &ContainerStatus) -> String {
    status.container_id.as_deref().unwrap_or_default().trim_start_matches("containerd://").to_string()
}

/// `cat path` inside the container: its stdout, or None if it failed.
async fn cat(machine: &Machine, status: &ContainerStatus, path: &str) -> Option<String> {
    let command = ["cat".to_string(), path.to_string()];
    let done = machine.runtime.exec_sync(&runtime_id(status), &command, Duration::from_secs(10)).await;
    let done = done.map_err(|e| eprintln!("exec cat {path}: {e}")).ok()?;
    if done.exit_code != 0 {
        eprintln!("cat {path}: {}", String::from_utf8_lossy(&done.stderr));
    }
    (done.exit_code == 0).then(|| String::from_utf8_lossy(&done.stdout).into_owned())
}

/// The notes of the events about `pod` with `reason`.
async fn event_notes(client: &kube::Client, pod: &str, reason: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(pod))
        .filter_map(|e| e.note)
        .collect()
}

/// The container removes its health file after a while: the exec liveness probe fails,
/// the kubelet's events say so, and the container is restarted (a new one, the old one in
/// lastState).
async fn liveness_failure_restarts(client: &kube::Client, pods: &Api<Pod>) {
    let spec = json!({"containers": [{"name": "app", "image": IMAGE,
        "command": ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600"],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 2}}],
        "terminationGracePeriodSeconds": 2});
    pods.create(&PostParams::default(), &pod("liveness", spec)).await.unwrap();
    let first = running_and_ready(pods, "liveness", 120).await;
    let first_id = status(&first, "app").unwrap().container_id.clone();
    let restarted = eventually("the container restarted after its liveness probe failed", 120, || async {
        let pod = pods.get("liveness").await.ok()?;
        let app = status(&pod, "app")?.clone();
        (app.restart_count >= 1 && app.state.as_ref()?.running.is_some()).then_some(app)
    })
    .await;
    assert_ne!(restarted.container_id, first_id, "a new container");
    let last = restarted.last_state.unwrap().terminated.expect("the killed container in lastState");
    assert_eq!(last.container_id, first_id);
    // `sleep` as PID 1 has no SIGTERM handler, so the kernel ignores the signal: SIGKILL at the grace period.
    assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("Error")));

    let killing = event_notes(client, "liveness", "Killing").await;
    assert!(killing.iter().any(|n| n == "Container app failed liveness probe, will be restarted"), "{killing:?}");
    let unhealthy = event_notes(client, "liveness", "Unhealthy").await;
    assert!(
        unhealthy.iter().any(|n| n.starts_with("Liveness probe failed: ") && n.contains("can't open '/tmp/healthy'")),
        "{unhealthy:?}"
    );
}

/// A container that allocates past its memory limit is killed by the kernel: reason
/// OOMKilled, exit code 137, in lastState once restarted.
async fn memory_limit_oom_kills(pods: &Api<Pod>) {
    // `tail` keeps the last lines; /dev/zero has no line end, so it buffers without bound.
    let spec = json!({"containers": [{"name": "hog", "image": IMAGE, "command": ["tail", "/dev/zero"],
        "resources": {"limits": {"memory": "32Mi"}}}]});
    pods.create(&PostParams::default(), &pod("oom", spec)).await.unwrap();
    let hog = eventually("the container OOMKilled", 120, || async {
        let pod = pods.get("oom").await.ok()?;
        let hog = status(&pod, "hog")?.clone();
        let terminated = hog.last_state.as_ref()?.terminated.as_ref().or(hog.state.as_ref()?.terminated.as_ref())?;
        (terminated.reason.as_deref() == Some("OOMKilled")).then_some(terminated.clone())
    })
    .await;
    assert_eq!(hog.exit_code, 137);
}

/// A ConfigMap volume follows updates of the ConfigMap while the pod runs, as the
/// container itself reads it.
async fn config_map_updates_reach_the_container(client: &kube::Client, pods: &Api<Pod>, machine: &Machine) {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let settings = json!({"metadata": {"name": "settings"}, "data": {"mode": "slow"}});
    config_maps.create(&PostParams::default(), &serde_json::from_value(settings).unwrap()).await.unwrap();
    let spec = json!({"containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}]}],
        "volumes": [{"name": "config", "configMap": {"name": "settings"}}]});
    pods.create(&PostParams::default(), &pod("configured", spec)).await.unwrap();
    let running = running_and_ready(pods, "configured", 120).await;
    let app = status(&running, "app").unwrap().clone();
    assert_eq!(cat(machine, &app, "/etc/config/mode").await.as_deref(), Some("slow"));

    let patch = Patch::Merge(json!({"data": {"mode": "fast"}}));
    config_maps.patch("settings", &PatchParams::default(), &patch).await.unwrap();
    eventually("the update inside the container", 120, || async {
        (cat(machine, &app, "/etc/config/mode").await? == "fast").then_some(())
    })
    .await;
}

/// Two init containers append to a shared emptyDir, the first after a pause: they ran
/// one after the other, both completed, before the app container started.
async fn init_containers_run_in_order(pods: &Api<Pod>, machine: &Machine) {
    let mount = json!([{"name": "work", "mountPath": "/work"}]);
    let spec = json!({
        "initContainers": [
            {"name": "first", "image": IMAGE, "command": ["sh", "-c", "sleep 1; echo first >> /work/order"],
                "volumeMounts": mount},
            {"name": "second", "image": IMAGE, "command": ["sh", "-c", "echo second >> /work/order"],
                "volumeMounts": mount}],
        "containers": [{"name": "app", "image": IMAGE,
            "command": ["sh", "-c", "echo app >> /work/order; sleep 3600"], "volumeMounts": mount}],
        "volumes": [{"name": "work", "emptyDir": {}}]});
    pods.create(&PostParams::default(), &pod("initialized", spec)).await.unwrap();
    let running = running_and_ready(pods, "initialized", 120).await;
    assert_eq!(condition(&running, "Initialized").as_deref(), Some("True"));
    let inits = running.status.as_ref().unwrap().init_container_statuses.clone().unwrap();
    let names: Vec<&str> = inits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    for init in &inits {
        let done = init.state.as_ref().unwrap().terminated.as_ref().expect("init containers terminated");
        assert_eq!((done.exit_code, done.reason.as_deref()), (0, Some("Completed")), "{}", init.name);
        assert!(init.ready, "a completed init container is ready: {}", init.name);
    }
    let app = status(&running, "app").unwrap().clone();
    let order = eventually("the app's line in the file", 30, || async {
        cat(machine, &app, "/work/order").await.filter(|o| o.ends_with("app\n"))
    })
    .await;
    assert_eq!(order, "first\nsecond\napp\n");
}

/// How long deleting a running pod takes until it is gone from the API.
async fn deletion_time(pods: &Api<Pod>, name: &str) -> Duration {
    let started = Instant::now();
    pods.delete(name, &DeleteParams::default()).await.unwrap();
    eventually(&format!("{name} deleted"), 120, || async { pods.get_opt(name).await.ok()?.is_none().then_some(()) })
        .await;
    started.elapsed()
}

/// A container that handles SIGTERM (3 s of cleanup) holds the deletion for that long,
/// well within its grace period; one that ignores SIGTERM is killed at the grace period.
async fn graceful_termination(pods: &Api<Pod>) {
    let cleans_up = json!({"terminationGracePeriodSeconds": 30, "containers": [{"name": "app", "image": IMAGE,
        "command": ["sh", "-c", "trap 'sleep 3; exit 0' TERM; while true; do sleep 1; done"]}]});
    let ignores = json!({"terminationGracePeriodSeconds": 6, "containers": [{"name": "app", "image": IMAGE,
        "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]}]});
    pods.create(&PostParams::default(), &pod("cleans-up", cleans_up)).await.unwrap();
    pods.create(&PostParams::default(), &pod("ignores-term", ignores)).await.unwrap();
    running_and_ready(pods, "cleans-up", 120).await;
    running_and_ready(pods, "ignores-term", 120).await;

    let (cleaning, ignoring) = tokio::join!(deletion_time(pods, "cleans-up"), deletion_time(pods, "ignores-term"));
    // The trap runs once the current `sleep 1` ends: 3 to 4 s, plus the agent's work.
    assert!(cleaning >= Duration::from_secs(3), "the deletion did not wait for the TERM handler: {cleaning:?}");
    assert!(cleaning < Duration::from_secs(20), "killed at the grace period instead of exiting: {cleaning:?}");
    assert!(ignoring >= Duration::from_secs(6), "killed before the grace period: {ignoring:?}");
    assert!(ignoring < Duration::from_secs(16), "not killed at the grace period: {ignoring:?}");
}

async fn scenario(node: &RealNode) {
    let client = node.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = node.start_agent(client.clone());
    let machine = &node.machine;
    tokio::join!(
        liveness_failure_restarts(&client, &pods),
        memory_limit_oom_kills(&pods),
        config_map_updates_reach_the_container(&client, &pods, machine),
        init_containers_run_in_order(&pods, machine),
        graceful_termination(&pods),
    );
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_on_a_real_node() {
    let node = RealNode::start().await;
    let outcome = AssertUnwindSafe(scenario(&node)).catch_unwind().await;
    node.finish(outcome).await;
}
