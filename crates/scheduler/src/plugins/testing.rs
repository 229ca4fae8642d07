//! Builders for plugin tests: nodes and pods from JSON, a cache holding them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::cache::{Cache, NodeId};
use crate::model::{NodeInfo, PodInfo};

/// A node with `cpu` and `memory` allocatable (110 pods) and `labels`, merged with `extra`
/// (spec/status fields).
pub fn node(name: &str, cpu: &str, memory: &str, labels: Value, extra: Value) -> NodeInfo {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let mut object = json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
    });
    merge(&mut object, extra);
    NodeInfo::from_node(&serde_json::from_value::<Node>(object).unwrap())
}

/// A pod named `name` in namespace `default` with `spec` (containers default to one
/// without requests) and `labels`.
pub fn pod(name: &str, labels: Value, spec: Value) -> PodInfo {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    PodInfo::from_pod(
        &serde_json::from_value::<Pod>(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
            "spec": spec
        }))
        .unwrap(),
    )
}

/// A pod requesting `cpu` and `memory`.
pub fn sized(name: &str, cpu: &str, memory: &str) -> PodInfo {
    pod(
        name,
        json!({}),
        json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
    )
}

fn merge(target: &mut Value, extra: Value) {
    match (target, extra) {
        (Value::Object(t), Value::Object(e)) => {
            for (k, v) in e {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, e) => *t = e,
    }
}

/// A cache with `nodes`, and `pods` bound as (pod, node name).
pub fn cache(nodes: Vec<NodeInfo>, pods: Vec<(PodInfo, &str)>) -> Cache {
    let mut cache = Cache::new();
    for node in nodes {
        cache.set_node(node);
    }
    for (mut pod, node) in pods {
        pod.node_name = node.to_string();
        cache.set_pod(Arc::new(pod));
    }
    cache
}

pub fn id(cache: &Cache, name: &str) -> NodeId {
    cache.node_id(name).unwrap()
}
