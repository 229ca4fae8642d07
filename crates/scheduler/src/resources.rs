//! Resource vectors (what a node offers, what pods ask for) and a pod's effective
//! request by Kubernetes' rules: containers add up, an init container needs its own
//! request on top of the sidecars started before it, the largest of those wins, and the
//! pod overhead is added.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::quantity::{milli_value, value};

/// What the scheduler assumes for a container that requests no CPU, when scoring
/// (kube-scheduler's DefaultMilliCPURequest).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// … and no memory (DefaultMemoryRequest, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts by resource. CPU is in millicores; `pods` is the allowed pod count of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended and other scalar resources (nvidia.com/gpu, hugepages-2Mi, ...), sorted by name.
    pub scalar: Vec<(String, i64)>,
}

impl Resources {
    /// From a ResourceList (`requests`, `allocatable`, `overhead`).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut resources = Resources::default();
        for (name, quantity) in list {
            match name.as_str() {
                "cpu" => resources.milli_cpu += milli_value(&quantity.0),
                "memory" => resources.memory += value(&quantity.0),
                "ephemeral-storage" => resources.ephemeral_storage += value(&quantity.0),
                "pods" => resources.pods += value(&quantity.0),
                other if is_scalar(other) => resources.add_scalar(other, value(&quantity.0)),
                _ => {}
            }
        }
        resources
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)).map(|i| self.scalar[i].1).unwrap_or(0)
    }

    fn add_scalar(&mut self, name: &str, amount: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = self.scalar[i].1.saturating_add(amount),
            Err(i) => self.scalar.insert(i, (name.to_string(), amount)),
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (name, amount) in &other.scalar {
            self.add_scalar(name, *amount);
        }
    }

    pub fn subtract(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (name, amount) in &other.scalar {
            self.add_scalar(name, -amount);
        }
    }

    /// Each resource becomes the larger of the two.
    pub fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (name, amount) in &other.scalar {
            if self.scalar(name) < *amount {
                let current = self.scalar(name);
                self.add_scalar(name, amount - current);
            }
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, amount)| *amount == 0)
    }
}

/// Whether the scheduler tracks `name` as a scalar resource: extended resources
/// (`vendor/name`), hugepages and attachable volume limits.
pub fn is_scalar(name: &str) -> bool {
    name.contains('/') && !name.starts_with("requests.")
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

/// What a pod asks for: its effective request (for fitting) and the CPU and memory the
/// scores count, where a container that asks for nothing counts as a default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resources,
    pub nonzero_milli_cpu: i64,
    pub nonzero_memory: i64,
}

fn container_requests(container: &Container) -> (Resources, i64, i64) {
    let empty = BTreeMap::new();
    let list = container.resources.as_ref().and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
    let requests = Resources::from_list(list);
    let cpu = if list.contains_key("cpu") { requests.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST };
    let memory = if list.contains_key("memory") { requests.memory } else { DEFAULT_MEMORY_REQUEST };
    (requests, cpu, memory)
}

/// The effective request of a pod with `spec`.
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let mut total = PodRequests::default();
    for container in &spec.containers {
        let (requests, cpu, memory) = container_requests(container);
        total.requests.add(&requests);
        total.nonzero_milli_cpu += cpu;
        total.nonzero_memory += memory;
    }
    // Sidecars (restartable init containers) run alongside everything after them; a
    // regular init container runs alone with the sidecars started before it.
    let mut sidecars = PodRequests::default();
    let mut init_peak = PodRequests::default();
    for container in spec.init_containers.iter().flatten() {
        let (requests, cpu, memory) = container_requests(container);
        if container.restart_policy.as_deref() == Some("Always") {
            sidecars.requests.add(&requests);
            sidecars.nonzero_milli_cpu += cpu;
            sidecars.nonzero_memory += memory;
            init_peak.requests.set_max(&sidecars.requests);
            init_peak.nonzero_milli_cpu = init_peak.nonzero_milli_cpu.max(sidecars.nonzero_milli_cpu);
            init_peak.nonzero_memory = init_peak.nonzero_memory.max(sidecars.nonzero_memory);
        } else {
            let mut running = sidecars.requests.clone();
            running.add(&requests);
            init_peak.requests.set_max(&running);
            init_peak.nonzero_milli_cpu = init_peak.nonzero_milli_cpu.max(sidecars.nonzero_milli_cpu + cpu);
            init_peak.nonzero_memory = init_peak.nonzero_memory.max(sidecars.nonzero_memory + memory);
        }
    }
    total.requests.add(&sidecars.requests);
    total.nonzero_milli_cpu += sidecars.nonzero_milli_cpu;
    total.nonzero_memory += sidecars.nonzero_memory;
    total.requests.set_max(&init_peak.requests);
    total.nonzero_milli_cpu = total.nonzero_milli_cpu.max(init_peak.nonzero_milli_cpu);
    total.nonzero_memory = total.nonzero_memory.max(init_peak.nonzero_memory);
    if let Some(overhead) = &spec.overhead {
        let overhead = Resources::from_list(overhead);
        total.nonzero_milli_cpu += overhead.milli_cpu;
        total.nonzero_memory += overhead.memory;
        total.requests.add(&overhead);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn containers_add_up() {
        let requests = pod_requests(&spec(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi", "nvidia.com/gpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1", "ephemeral-storage": "1Gi", "nvidia.com/gpu": "2"}}}
        ]})));
        assert_eq!(requests.requests.milli_cpu, 1100);
        assert_eq!(requests.requests.memory, 1 << 30);
        assert_eq!(requests.requests.ephemeral_storage, 1 << 30);
        assert_eq!(requests.requests.scalar("nvidia.com/gpu"), 3);
        // b asks for no memory: scores count the default for it.
        assert_eq!(requests.nonzero_memory, (1 << 30) + DEFAULT_MEMORY_REQUEST);
        assert_eq!(requests.nonzero_milli_cpu, 1100);
    }

    #[test]
    fn best_effort_pods_request_nothing_but_score_as_defaults() {
        let requests = pod_requests(&spec(json!({"containers": [{"name": "a"}, {"name": "b"}]})));
        assert!(requests.requests.is_zero());
        assert_eq!(requests.nonzero_milli_cpu, 2 * DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(requests.nonzero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn init_containers_take_the_max_and_sidecars_add() {
        let requests = pod_requests(&spec(json!({
            "initContainers": [
                {"name": "big", "resources": {"requests": {"cpu": "2"}}},
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "after", "resources": {"requests": {"cpu": "1900m"}}}
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
            "overhead": {"cpu": "50m"}
        })));
        // max(2, 0.2 + 1.9 = 2.1, 0.5 + 0.2 = 0.7) + overhead 0.05
        assert_eq!(requests.requests.milli_cpu, 2150);
    }

    #[test]
    fn resource_lists_by_kind() {
        let list: BTreeMap<String, Quantity> = serde_json::from_value(json!({
            "cpu": "4", "memory": "32Gi", "pods": "110", "hugepages-2Mi": "0", "example.com/foo": "5", "storage": "1"
        }))
        .unwrap();
        let r = Resources::from_list(&list);
        assert_eq!((r.milli_cpu, r.memory, r.pods), (4000, 32 << 30, 110));
        assert_eq!(r.scalar("example.com/foo"), 5);
        assert_eq!(r.scalar.len(), 2, "hugepages and the extended resource: {:?}", r.scalar);
        let mut sum = r.clone();
        sum.add(&r);
        sum.subtract(&r);
        assert_eq!(sum, r);
    }
}
