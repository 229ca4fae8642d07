//! Simulated nodes against the real API server: registration, Leases, pods bound by hand
//! moving to Running, graceful deletion.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use skiff_agent::config::{self, NodeTemplate, Timing};
use skiff_agent::runtime::simulated::{Behaviour, SimulatedRuntime};
use skiff_agent::{Agent, NodeHandle};
use skiff_testkit::{json, TestServer};

async fn client(s: &TestServer) -> kube::Client {
    skiff_client::connect(s.kubeconfig(), None).await.unwrap()
}

fn agent(client: kube::Client, count: usize, timing: Timing, behaviour: Behaviour) -> Agent {
    let ids = config::simulated_identities("sim", count, "10.42.0.0/16".parse().unwrap(), 24).unwrap();
    let nodes = ids
        .into_iter()
        .map(|id| {
            let runtime = Arc::new(SimulatedRuntime::new(id.pod_cidr, behaviour.clone()));
            NodeHandle::new(id, runtime)
        })
        .collect();
    Agent::new(client, NodeTemplate::simulated(), timing, nodes, 16)
}

/// Polls `check` every 50 ms for up to 10 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "initContainers": [{"name": "setup", "image": "busybox"}],
            "containers": [{"name": "app", "image": "nginx"}, {"name": "sidecar", "image": "busybox"}]
        }
    }))
    .unwrap()
}

async fn bind(s: &TestServer, pod: &str, node: &str) {
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"kind": "Node", "name": node}});
    let answer = s.post(&format!("/api/v1/namespaces/default/pods/{pod}/binding"), &binding).await;
    assert_eq!(answer.code(), 201, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_renew_leases_and_run_pods() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let timing = Timing { renew_interval: Duration::from_millis(500), ..Timing::default() };
    let running = tokio::spawn(agent(client.clone(), 3, timing, Behaviour::default()).run());

    let nodes: Api<Node> = Api::all(client.clone());
    let listed = eventually("three ready nodes", || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        (list.items.len() == 3).then_some(list.items)
    })
    .await;
    let node = listed.iter().find(|n| n.metadata.name.as_deref() == Some("sim-1")).unwrap();
    let status = node.status.as_ref().unwrap();
    let ready = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, "32");
    assert_eq!(node.metadata.labels.as_ref().unwrap()["kubernetes.io/hostname"], "sim-1");

    // Leases exist, owned by their nodes, and are renewed.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = eventually("a lease", || async { leases.get_opt("sim-1").await.ok().flatten() }).await;
    assert_eq!(first.metadata.owner_references.as_ref().unwrap()[0].name, "sim-1");
    let renewed = first.spec.unwrap().renew_time.unwrap();
    eventually("a renewed lease", || async {
        let lease = leases.get("sim-1").await.ok()?;
        (lease.spec?.renew_time? != renewed).then_some(())
    })
    .await;

    // A pod bound to a node runs there.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web")).await.unwrap();
    bind(&s, "web", "sim-1").await;
    let running_pod = eventually("a running pod", || async {
        let pod = pods.get("web").await.ok()?;
        let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(pod)
    })
    .await;
    let status = running_pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.as_deref().unwrap().starts_with("10.42.1."), "{:?}", status.pod_ip);
    assert_eq!(status.host_ip.as_deref(), Some("198.18.0.2"));
    let conditions = status.conditions.unwrap();
    for kind in ["PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"] {
        assert!(conditions.iter().any(|c| c.type_ == kind && c.status == "True"), "{kind}: {conditions:?}");
    }
    let containers = status.container_statuses.unwrap();
    assert_eq!(containers.len(), 2);
    assert!(containers.iter().all(|c| c.ready && c.container_id.as_deref().unwrap().starts_with("simulated://")));
    assert_eq!(
        status.init_container_statuses.unwrap()[0].state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code,
        0
    );

    // Nothing changes, so nothing more is written (times round-trip at second precision).
    let settled = pods.get("web").await.unwrap().metadata.resource_version;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pods.get("web").await.unwrap().metadata.resource_version, settled, "status written once");

    // Graceful deletion: the agent stops the containers and removes the pod.
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("the pod to be gone", || async { pods.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_waits_for_the_grace_period() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    // Containers take 1 s to exit after SIGTERM.
    let behaviour = Behaviour { stop_delay: Duration::from_secs(1), ..Behaviour::default() };
    let running = tokio::spawn(agent(client.clone(), 1, Timing::default(), behaviour).run());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("slow")).await.unwrap();
    eventually("the node", || async { Api::<Node>::all(client.clone()).get_opt("sim-0").await.ok().flatten() }).await;
    bind(&s, "slow", "sim-0").await;
    eventually("a running pod", || async {
        let pod = pods.get("slow").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    pods.delete("slow", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("slow").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some(), "a bound pod is deleted gracefully");
    eventually("the pod to be gone", || async { pods.get_opt("slow").await.ok()?.is_none().then_some(()) }).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "took {took:?}");
    running.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_adopts_its_nodes_and_pods() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let first = tokio::spawn(agent(client.clone(), 2, Timing::default(), Behaviour::default()).run());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("kept")).await.unwrap();
    eventually("the node", || async { Api::<Node>::all(client.clone()).get_opt("sim-1").await.ok().flatten() }).await;
    bind(&s, "kept", "sim-1").await;
    eventually("a running pod", || async {
        (pods.get("kept").await.ok()?.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    first.abort();
    let _ = first.await;

    let second = tokio::spawn(agent(client.clone(), 2, Timing::default(), Behaviour::default()).run());
    // Same nodes (no duplicates), and the pod keeps running and can still be deleted.
    let nodes = Api::<Node>::all(client.clone()).list(&Default::default()).await.unwrap();
    assert_eq!(nodes.items.len(), 2);
    pods.delete("kept", &DeleteParams::default()).await.unwrap();
    eventually("the pod to be gone", || async { pods.get_opt("kept").await.ok()?.is_none().then_some(()) }).await;
    second.abort();
}

/// The node lifecycle controller marks a node Unknown when its agent stopped posting; once
/// the agent is back, it posts Ready=True at once (not at its next status report, an hour
/// away here), with the transition time of that change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_found_unknown_is_ready_again_at_once() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let timing = Timing { status_report_interval: Duration::from_secs(3600), ..Timing::default() };
    let running = tokio::spawn(agent(client.clone(), 1, timing, Behaviour::default()).run());
    let nodes: Api<Node> = Api::all(client.clone());
    let ready = |node: &Node| {
        let conditions = node.status.as_ref()?.conditions.as_ref()?;
        conditions.iter().find(|c| c.type_ == "Ready").cloned()
    };
    let first = eventually("sim-0 Ready", || async { ready(&nodes.get("sim-0").await.ok()?) }).await;
    assert_eq!(first.status, "True");

    // What the node lifecycle controller writes for a node whose Lease went stale.
    let unknown = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown",
        "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status.",
        "lastHeartbeatTime": first.last_heartbeat_time, "lastTransitionTime": "2030-01-01T00:00:00Z"}]}});
    let patch = kube::api::Patch::Strategic(unknown);
    let patched_at = k8s_openapi::jiff::Timestamp::now();
    nodes.patch_status("sim-0", &Default::default(), &patch).await.unwrap();
    let back = eventually("sim-0 Ready=True again", || async {
        ready(&nodes.get("sim-0").await.ok()?).filter(|c| c.status == "True")
    })
    .await;
    assert_eq!(back.reason.as_deref(), Some("KubeletReady"));
    // Times are whole seconds in the API.
    let transition = back.last_transition_time.unwrap().0;
    assert!(transition.as_second() >= patched_at.as_second(), "a new transition: {transition}");
    running.abort();
}
