//! The scheduler against the real API server, with simulated nodes from skiff-agent:
//! pods are bound and run, unschedulable pods get Kubernetes' condition, message and
//! event, and waiting pods are placed when the cluster changes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use skiff_agent::config::{self, NodeTemplate, Timing};
use skiff_agent::runtime::simulated::{Behaviour, SimulatedRuntime};
use skiff_agent::{Agent, NodeHandle};
use skiff_client::leader::LeaderConfig;
use skiff_scheduler::Config;
use skiff_testkit::{json, TestServer};
use tokio::task::JoinHandle;

async fn client(s: &TestServer) -> Client {
    skiff_client::connect(s.kubeconfig(), None).await.unwrap()
}

/// Runs `count` simulated nodes named `prefix-i`, shaped by `adjust`.
fn nodes(client: &Client, prefix: &str, count: usize, adjust: impl FnOnce(&mut NodeTemplate)) -> JoinHandle<()> {
    let mut template = NodeTemplate::simulated();
    adjust(&mut template);
    // Each group of nodes takes its own part of the pod address space.
    let base = prefix.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % 200;
    let cidr = format!("10.{}.0.0/16", 10 + base).parse().unwrap();
    let ids = config::simulated_identities(prefix, count, cidr, 24).unwrap();
    let handles = ids
        .into_iter()
        .map(|id| {
            let runtime = Arc::new(SimulatedRuntime::new(id.pod_cidr, Behaviour::default()));
            NodeHandle::new(id, runtime)
        })
        .collect();
    let agent = Agent::new(client.clone(), template, Timing::default(), handles, 16);
    tokio::spawn(async move {
        let _ = agent.run().await;
    })
}

fn scheduler(client: &Client) -> JoinHandle<()> {
    let config = Config { leader_election: None, ..Config::default() };
    let client = client.clone();
    tokio::spawn(async move {
        let _ = skiff_scheduler::run(client, config).await;
    })
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": name}}, "spec": spec})).unwrap()
}

fn requesting(name: &str, cpu: &str) -> Pod {
    pod(name, json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]}))
}

/// Polls `check` every 50 ms for up to `seconds`.
async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while tokio::time::Instant::now() < deadline {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("{name} running"), 20, || async {
        let pod = pods.get(name).await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(pod)
    })
    .await
}

/// The PodScheduled condition's (status, reason, message) once it is False.
async fn unschedulable(pods: &Api<Pod>, name: &str) -> (String, String) {
    eventually(&format!("{name} unschedulable"), 20, || async {
        let pod = pods.get(name).await.ok()?;
        let condition = pod.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
        (condition.status == "False")
            .then(|| (condition.reason.unwrap_or_default(), condition.message.unwrap_or_default()))
    })
    .await
}

fn node_of(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_bound_spread_and_running() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let _nodes = nodes(&client, "sim", 3, |_| {});
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..12 {
        pods.create(&PostParams::default(), &requesting(&format!("web-{i}"), "1")).await.unwrap();
    }
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..12 {
        let pod = running(&pods, &format!("web-{i}")).await;
        let status = pod.status.as_ref().unwrap();
        let scheduled = status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "PodScheduled").unwrap();
        assert_eq!(scheduled.status, "True");
        assert!(status.pod_ip.is_some());
        *per_node.entry(node_of(&pod)).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "LeastAllocated spreads the pods: {per_node:?}");
    assert!(per_node.values().all(|n| *n == 4), "{per_node:?}");

    // A Scheduled event for each, as kubectl describe shows it.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let scheduled = eventually("a Scheduled event", 10, || async {
        let list = events.list(&ListParams::default().fields("involvedObject.name=web-0")).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("Scheduled"))
    })
    .await;
    let node = node_of(&pods.get("web-0").await.unwrap());
    assert_eq!(scheduled.message.as_deref(), Some(format!("Successfully assigned default/web-0 to {node}").as_str()));
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_say_why_as_kubernetes_does() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let _small = nodes(&client, "small", 1, |t| {
        t.capacity.insert("cpu".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()));
    });
    let _gpu = nodes(&client, "gpu", 2, |t| t.taints = config::parse_taints("dedicated=gpu:NoSchedule").unwrap());
    // The message counts nodes: all three must be registered before the pod is tried.
    let all_nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    eventually("three nodes", 10, || async {
        (all_nodes.list(&ListParams::default()).await.ok()?.items.len() == 3).then_some(())
    })
    .await;
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &requesting("big", "2")).await.unwrap();
    let (reason, message) = unschedulable(&pods, "big").await;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(
        message,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling."
    );

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually("a FailedScheduling event", 10, || async {
        let list = events.list(&ListParams::default().fields("involvedObject.name=big")).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("FailedScheduling"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.message.as_deref(), Some(message.as_str()));
    assert_eq!(event.reporting_component.as_deref(), Some("default-scheduler"));

    // A selector nothing matches, and a pod for another scheduler (left alone).
    pods.create(&PostParams::default(), &pod("picky", json!({"nodeSelector": {"disk": "nvme"}}))).await.unwrap();
    let (_, message) = unschedulable(&pods, "picky").await;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    pods.create(&PostParams::default(), &pod("other", json!({"schedulerName": "someone-else"}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = pods.get("other").await.unwrap();
    assert_eq!(node_of(&other), "");
    assert!(other.status.unwrap().conditions.unwrap_or_default().is_empty(), "not ours: untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_pods_are_placed_when_a_node_joins() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("early", json!({}))).await.unwrap();
    let (_, message) = unschedulable(&pods, "early").await;
    assert_eq!(message, "no nodes available to schedule pods");

    let started = std::time::Instant::now();
    let _nodes = nodes(&client, "late", 1, |_| {});
    let pod = running(&pods, "early").await;
    assert_eq!(node_of(&pod), "late-0");
    // Moved by the node's arrival (after at most its 1 s backoff), not by a periodic retry.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_makes_room() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let _nodes = nodes(&client, "tiny", 1, |t| {
        t.capacity.insert("pods".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("2".into()));
    });
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["one", "two"] {
        pods.create(&PostParams::default(), &pod(name, json!({}))).await.unwrap();
        running(&pods, name).await;
    }
    pods.create(&PostParams::default(), &pod("three", json!({}))).await.unwrap();
    let (_, message) = unschedulable(&pods, "three").await;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Too many pods. \
         preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    pods.delete("one", &DeleteParams::default()).await.unwrap();
    let placed = running(&pods, "three").await;
    assert_eq!(node_of(&placed), "tiny-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_and_spread_through_the_api() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let _nodes = nodes(&client, "sim", 3, |_| {});
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let replica = |i: usize| {
        let mut p = pod(
            &format!("db-{i}"),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"role": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}),
        );
        p.metadata.labels = Some([("role".to_string(), "db".to_string())].into());
        p
    };
    let mut placed = std::collections::BTreeSet::new();
    for i in 0..3 {
        pods.create(&PostParams::default(), &replica(i)).await.unwrap();
        placed.insert(node_of(&running(&pods, &format!("db-{i}")).await));
    }
    assert_eq!(placed.len(), 3, "one per node: {placed:?}");
    pods.create(&PostParams::default(), &replica(3)).await.unwrap();
    let (_, message) = unschedulable(&pods, "db-3").await;
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    let _nodes = nodes(&client, "sim", 1, |_| {});
    let lease = |identity: &str| LeaderConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
        ..LeaderConfig::in_kube_system("kube-scheduler", identity.into())
    };
    let start = |identity: &str| {
        let config = Config { leader_election: Some(lease(identity)), ..Config::default() };
        let client = client.clone();
        tokio::spawn(async move {
            let _ = skiff_scheduler::run(client, config).await;
        })
    };
    let first = start("first");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    eventually("the first to lead", 10, || async {
        let holder = leases.get_opt("kube-scheduler").await.ok()??.spec?.holder_identity?;
        (holder == "first").then_some(())
    })
    .await;
    let _second = start("second");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("a", json!({}))).await.unwrap();
    running(&pods, "a").await;
    let holder = leases.get("kube-scheduler").await.unwrap().spec.unwrap().holder_identity.unwrap();
    assert_eq!(holder, "first", "the standby does not take a renewed lease");

    first.abort();
    eventually("the second to take over", 10, || async {
        let holder = leases.get("kube-scheduler").await.ok()?.spec?.holder_identity?;
        (holder == "second").then_some(())
    })
    .await;
    pods.create(&PostParams::default(), &pod("b", json!({}))).await.unwrap();
    running(&pods, "b").await;
    let spec = leases.get("kube-scheduler").await.unwrap().spec.unwrap();
    assert_eq!(spec.lease_transitions, Some(1));
}

/// PriorityClasses `low` (100), `mid` (500), `high` (1000) and `high-never` (1000, Never).
async fn priority_classes(client: &Client) {
    let classes: Api<PriorityClass> = Api::all(client.clone());
    for (name, value, policy) in [
        ("low", 100, "PreemptLowerPriority"),
        ("mid", 500, "PreemptLowerPriority"),
        ("high", 1000, "PreemptLowerPriority"),
        ("high-never", 1000, "Never"),
    ] {
        let class =
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value, "preemptionPolicy": policy}))
                .unwrap();
        classes.create(&PostParams::default(), &class).await.unwrap();
    }
}

/// A pod of priority class `class` requesting `cpu`, pinned to `node` when given.
fn prioritized(name: &str, class: &str, cpu: &str, node: Option<&str>) -> Pod {
    let mut spec = json!({"priorityClassName": class,
        "containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]});
    if let Some(node) = node {
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": node});
    }
    pod(name, spec)
}

async fn gone(pods: &Api<Pod>, name: &str) {
    eventually(&format!("{name} gone"), 30, || async { pods.get_opt(name).await.ok()?.is_none().then_some(()) }).await;
}

fn cpus(count: &str) -> impl FnOnce(&mut NodeTemplate) + '_ {
    move |t| {
        t.capacity.insert("cpu".into(), k8s_openapi::apimachinery::pkg::api::resource::Quantity(count.into()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_priority_pod_preempts_the_fewest_lower_priority_pods() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    priority_classes(&client).await;
    let _nodes = nodes(&client, "pre", 1, cpus("4"));
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, cpu) in [("small-1", "1"), ("small-2", "1"), ("big", "2")] {
        pods.create(&PostParams::default(), &prioritized(name, "low", cpu, None)).await.unwrap();
        running(&pods, name).await;
    }
    let preemptor = pods.create(&PostParams::default(), &prioritized("urgent", "high", "2", None)).await.unwrap();
    let uid = preemptor.metadata.uid.clone().unwrap();
    gone(&pods, "big").await;
    let placed = running(&pods, "urgent").await;
    assert_eq!(node_of(&placed), "pre-0");
    assert_eq!(placed.status.as_ref().unwrap().nominated_node_name.as_deref(), Some("pre-0"));
    for name in ["small-1", "small-2"] {
        assert_eq!(node_of(&pods.get(name).await.unwrap()), "pre-0", "{name} is spared");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let preempted = eventually("a Preempted event", 10, || async {
        let list = events.list(&ListParams::default().fields("involvedObject.name=big")).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("Preempted"))
    })
    .await;
    assert_eq!(preempted.type_.as_deref(), Some("Normal"));
    assert_eq!(preempted.message.as_deref(), Some(format!("Preempted by pod {uid} on node pre-0").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preemption_policy_never_waits() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    priority_classes(&client).await;
    let _nodes = nodes(&client, "never", 1, cpus("2"));
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &prioritized("filler", "low", "2", None)).await.unwrap();
    running(&pods, "filler").await;
    pods.create(&PostParams::default(), &prioritized("polite", "high-never", "1", None)).await.unwrap();
    let (_, message) = unschedulable(&pods, "polite").await;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    let filler = pods.get("filler").await.unwrap();
    assert!(filler.metadata.deletion_timestamp.is_none(), "nothing was evicted");
    assert_eq!(pods.get("polite").await.unwrap().status.unwrap().nominated_node_name, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_guarded_by_a_budget_are_spared_when_another_choice_exists() {
    let s = TestServer::start().await;
    let client = client(&s).await;
    priority_classes(&client).await;
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let budget = serde_json::from_value(json!({"metadata": {"name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}}}))
    .unwrap();
    budgets.create(&PostParams::default(), &budget).await.unwrap();
    let _nodes = nodes(&client, "pdb", 2, cpus("2"));
    let _scheduler = scheduler(&client);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Without the budget, "db" (lower priority) would be the victim.
    pods.create(&PostParams::default(), &prioritized("db", "low", "2", Some("pdb-0"))).await.unwrap();
    pods.create(&PostParams::default(), &prioritized("web", "mid", "2", Some("pdb-1"))).await.unwrap();
    running(&pods, "db").await;
    running(&pods, "web").await;
    pods.create(&PostParams::default(), &prioritized("urgent", "high", "2", None)).await.unwrap();
    gone(&pods, "web").await;
    let placed = running(&pods, "urgent").await;
    assert_eq!(node_of(&placed), "pdb-1");
    assert_eq!(placed.status.as_ref().unwrap().nominated_node_name.as_deref(), Some("pdb-1"));
    assert!(pods.get("db").await.unwrap().metadata.deletion_timestamp.is_none(), "the guarded pod stays");
}
