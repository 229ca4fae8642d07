//! A real node: the agent with a private containerd (from the OS packages) on a temp data
//! directory, against the in-process API server. Pods run as real containers from a
//! busybox image built by the test and imported at start; the test talks HTTP to a pod's
//! IP over the CNI bridge, watches a crashing container restart, deletes a pod and finds
//! nothing of it left in containerd, and restarts the agent to see running containers
//! adopted rather than restarted.
//!
//! One test function: a node owns the machine's `cni0` bridge, so two would collide.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use skiff_agent::runtime::{ContainerFilter, Runtime, SandboxFilter, StreamRequest};
use skiff_testkit::{json, reqwest};

mod common;
use common::{eventually, message_of, pod, running_and_ready, uid_filter, waiting_reasons_until, RealNode, IMAGE};

async fn scenario(node: &RealNode) {
    let machine = &node.machine;
    let client = node.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = node.start_agent(client.clone());

    // A pod serving HTTP gets an IP on the bridge and answers there.
    let web = pod(
        "web",
        json!({"name": "web", "image": IMAGE, "command": ["httpd", "-f", "-p", "8080", "-h", "/www"]}),
        "Always",
    );
    pods.create(&PostParams::default(), &web).await.unwrap();
    let web = running_and_ready(&pods, "web", 120).await;
    let status = web.status.clone().unwrap();
    let pod_ip = status.pod_ip.clone().expect("a pod IP");
    assert!(pod_ip.starts_with("10.42.0."), "{pod_ip}");
    let container = &status.container_statuses.as_ref().unwrap()[0];
    let container_id = container.container_id.clone().unwrap();
    assert!(container_id.starts_with("containerd://"), "{container_id}");
    assert_eq!(container.restart_count, 0);
    assert!(
        container.image_id.starts_with("sha256:") || container.image_id.contains("@sha256:"),
        "{}",
        container.image_id
    );
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let body = eventually("an HTTP answer from the pod", 30, || async {
        let response = http.get(format!("http://{pod_ip}:8080/index.html")).send().await.ok()?;
        response.text().await.ok()
    })
    .await;
    assert_eq!(body, "hello from skiff\n");

    // Commands in the container: run to completion, or a streaming URL from containerd.
    let id = container_id.trim_start_matches("containerd://");
    let cat = ["cat".to_string(), "/www/index.html".to_string()];
    let done = machine.runtime.exec_sync(id, &cat, Duration::from_secs(10)).await.unwrap();
    assert_eq!((done.stdout.as_slice(), done.exit_code), (b"hello from skiff\n".as_slice(), 0));
    let fail = ["sh".to_string(), "-c".to_string(), "echo oops >&2; exit 7".to_string()];
    let failed = machine.runtime.exec_sync(id, &fail, Duration::from_millis(1500)).await.unwrap();
    assert_eq!((failed.stderr.as_slice(), failed.exit_code), (b"oops\n".as_slice(), 7));
    let stream = StreamRequest {
        container_id: id.into(),
        cmd: vec!["sh".into()],
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let url = machine.runtime.exec(&stream).await.unwrap();
    assert!(url.starts_with("http://127.0.0.1:") && url.contains("/exec/"), "{url}");
    let sandbox = machine
        .runtime
        .list_pod_sandbox(&SandboxFilter {
            labels: uid_filter(web.metadata.uid.as_deref().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    let url = machine.runtime.port_forward(&sandbox[0].id, &[8080]).await.unwrap();
    assert!(url.contains("/portforward/"), "{url}");

    // A container that exits 3 is restarted under restartPolicy Always.
    let crash = pod("crash", json!({"name": "crash", "image": IMAGE, "command": ["sh", "-c", "exit 3"]}), "Always");
    pods.create(&PostParams::default(), &crash).await.unwrap();
    let back_off = eventually("crash in CrashLoopBackOff after restarts, exit code 3 as lastState", 120, || async {
        let pod = pods.get("crash").await.ok()?;
        let status = pod.status.as_ref()?.container_statuses.as_ref()?[0].clone();
        let waiting = status.state.as_ref()?.waiting.clone()?;
        let last = status.last_state.as_ref()?.terminated.as_ref()?;
        (status.restart_count >= 2 && waiting.reason.as_deref() == Some("CrashLoopBackOff") && last.exit_code == 3)
            .then_some((waiting, last.reason.clone(), pod.status.as_ref()?.phase.clone()))
    })
    .await;
    let (waiting, last_reason, phase) = back_off;
    let message = waiting.message.unwrap_or_default();
    assert!(
        message.starts_with("back-off ") && message.contains("restarting failed container=crash pod=crash_default("),
        "{message}"
    );
    assert_eq!(last_reason.as_deref(), Some("Error"));
    assert_eq!(phase.as_deref(), Some("Running"));

    // Images that are not there: a pull fails (ErrImagePull, then ImagePullBackOff);
    // with pull policy Never, no pull is tried (ErrImageNeverPull).
    let missing = pod("missing", json!({"name": "app", "image": "skiff.local/nothing:1"}), "Always");
    let missing = pods.create(&PostParams::default(), &missing).await.unwrap();
    let never =
        pod("never", json!({"name": "app", "image": "skiff.local/nothing:1", "imagePullPolicy": "Never"}), "Always");
    pods.create(&PostParams::default(), &never).await.unwrap();
    let waiting_reason = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let pod = pods.get(name).await.ok()?;
            let waiting = pod.status?.container_statuses?.first()?.state.clone()?.waiting?;
            Some((waiting.reason.unwrap_or_default(), waiting.message.unwrap_or_default()))
        }
    };
    let version = missing.resource_version().unwrap();
    let reasons = waiting_reasons_until(&pods, "missing", &version, "ImagePullBackOff", 60).await;
    let message = message_of(&reasons, "ErrImagePull");
    assert!(message.contains("skiff.local/nothing:1"), "{message}");
    assert_eq!(message_of(&reasons, "ImagePullBackOff"), "Back-off pulling image \"skiff.local/nothing:1\"");
    let (_, message) = eventually("ErrImageNeverPull", 60, || async {
        waiting_reason("never").await.filter(|(reason, _)| reason == "ErrImageNeverPull")
    })
    .await;
    assert_eq!(message, "Container image \"skiff.local/nothing:1\" is not present with pull policy of Never");
    for name in ["missing", "never", "crash"] {
        pods.delete(name, &DeleteParams::default()).await.unwrap();
    }

    // containerd killed: the supervisor starts it again, and the pods keep running.
    let containerd = machine.containerd.as_ref().unwrap();
    let old_pid = containerd.pid();
    let _ = std::process::Command::new("kill").args(["-9", &old_pid.to_string()]).status();
    eventually("containerd restarted", 60, || async {
        let pid = containerd.pid();
        (pid != 0 && pid != old_pid && machine.runtime.version().await.is_ok()).then_some(())
    })
    .await;

    // The agent restarts; what runs is adopted, not restarted. A pod deleted while it
    // was down has its sandbox removed.
    let orphan = pod("orphan", json!({"name": "sleep", "image": IMAGE, "command": ["sleep", "3600"]}), "Always");
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let orphan_uid = running_and_ready(&pods, "orphan", 120).await.metadata.uid.unwrap();
    running.abort();
    let _ = running.await;
    pods.delete("orphan", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.unwrap();
    let before = machine
        .runtime
        .list_containers(&ContainerFilter {
            labels: uid_filter(web.metadata.uid.as_deref().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before.len(), 1);
    let running = node.start_agent(client.clone());
    // A new pod Running proves the new agent is at work (it synced web before, from its first list).
    let probe = pod("after-restart", json!({"name": "sleep", "image": IMAGE, "command": ["sleep", "3600"]}), "Always");
    pods.create(&PostParams::default(), &probe).await.unwrap();
    running_and_ready(&pods, "after-restart", 120).await;
    let web_after = running_and_ready(&pods, "web", 30).await;
    let orphans = SandboxFilter { labels: uid_filter(&orphan_uid), ..Default::default() };
    eventually("the orphan's sandbox removed", 30, || async {
        machine.runtime.list_pod_sandbox(&orphans).await.ok()?.is_empty().then_some(())
    })
    .await;
    let container = &web_after.status.unwrap().container_statuses.unwrap()[0];
    assert_eq!(container.container_id.as_deref(), Some(container_id.as_str()), "same container after the restart");
    assert_eq!(container.restart_count, 0);
    let after = machine
        .runtime
        .list_containers(&ContainerFilter {
            labels: uid_filter(web.metadata.uid.as_deref().unwrap()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "no second container for web: {after:?}");
    assert_eq!(after[0].id, before[0].id);

    // Deleting a pod removes its sandbox and containers from containerd.
    let uid = web.metadata.uid.clone().unwrap();
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("web gone from the API", 60, || async { pods.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
    let sandboxes = machine
        .runtime
        .list_pod_sandbox(&SandboxFilter { labels: uid_filter(&uid), ..Default::default() })
        .await
        .unwrap();
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
    let containers = machine
        .runtime
        .list_containers(&ContainerFilter { labels: uid_filter(&uid), ..Default::default() })
        .await
        .unwrap();
    assert!(containers.is_empty(), "{containers:?}");
    for logs in [format!("/var/log/pods/default_web_{uid}"), format!("/var/log/pods/default_orphan_{orphan_uid}")] {
        assert!(!std::path::Path::new(&logs).exists(), "{logs} is left");
    }
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_as_real_containers() {
    let node = RealNode::start().await;
    let images = node.machine.runtime.list_images().await.unwrap();
    let tags: Vec<&String> = images.iter().flat_map(|i| i.repo_tags.iter()).collect();
    assert!(tags.iter().any(|t| *t == IMAGE), "{tags:?}");
    assert!(tags.iter().any(|t| *t == skiff_agent::oci::PAUSE_IMAGE), "{tags:?}");
    let outcome = AssertUnwindSafe(scenario(&node)).catch_unwind().await;
    node.finish(outcome).await;
}
