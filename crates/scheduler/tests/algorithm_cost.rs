//! The cost of scheduling decisions alone (no API, no I/O) at scheduler_perf's scale:
//! 5,000 nodes, pods placed one after another as the scheduler loop does. Run with
//! `cargo test --release -p skiff-scheduler --test algorithm_cost -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;
use skiff_scheduler::algorithm::Algorithm;
use skiff_scheduler::cache::Cache;
use skiff_scheduler::model::{NodeInfo, PodInfo};

fn cluster(nodes: usize) -> Cache {
    let mut cache = Cache::new();
    for i in 0..nodes {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": format!("node-{i}"), "labels": {
                "kubernetes.io/hostname": format!("node-{i}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 3)}},
            "status": {"allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"}}
        }))
        .unwrap();
        cache.set_node(NodeInfo::from_node(&node));
    }
    cache
}

fn pod(i: usize, extra: serde_json::Value) -> PodInfo {
    let mut pod = json!({
        "metadata": {"name": format!("pod-{i}"), "namespace": "bench", "uid": format!("uid-{i}")},
        "spec": {"containers": [{"name": "pause", "image": "pause",
            "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}}}]}
    });
    if let Some(labels) = extra.get("labels") {
        pod["metadata"]["labels"] = labels.clone();
    }
    if let Some(spec) = extra.get("spec").and_then(|s| s.as_object()) {
        for (k, v) in spec {
            pod["spec"][k] = v.clone();
        }
    }
    PodInfo::from_pod(&serde_json::from_value::<Pod>(pod).unwrap())
}

/// Schedules `count` pods built by `make`, assuming each; returns µs per pod.
fn run(name: &str, nodes: usize, count: usize, make: impl Fn(usize) -> PodInfo) -> f64 {
    let mut cache = cluster(nodes);
    let mut algorithm = Algorithm::with_seed(42);
    let pods: Vec<Arc<PodInfo>> = (0..count).map(|i| Arc::new(make(i))).collect();
    let started = Instant::now();
    let mut failed = 0;
    for pod in pods {
        algorithm.prepare(&pod, &mut cache);
        let decision = algorithm.schedule(&pod, &cache);
        cache.next_cycle();
        match decision {
            Ok(placement) => cache.assume(pod, placement.node),
            Err(_) => failed += 1,
        }
    }
    let per_pod = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    println!("{name}: {nodes} nodes, {count} pods: {per_pod:.1} µs/pod ({failed} unschedulable)");
    per_pod
}

#[test]
#[ignore = "a measurement; run with --release --ignored"]
fn cost_per_decision() {
    run("basic", 5000, 10_000, |i| pod(i, json!({})));
    run("anti-affinity", 5000, 4000, |i| {
        pod(
            i,
            json!({"labels": {"color": "green"}, "spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}]}}}}),
        )
    });
    run("spread", 5000, 10_000, |i| {
        pod(
            i,
            json!({"labels": {"color": "blue"}, "spec": {"topologySpreadConstraints": [{
            "maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"color": "blue"}}}]}}),
        )
    });
}
