//! The Node object and its Lease: what the agent registers and keeps fresh, with the
//! kubelet's labels, conditions and reasons so that kubectl and controllers read it as
//! they read any node.

use std::collections::BTreeMap;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::config::{NodeIdentity, NodeTemplate};
use crate::error::{status_code, Result};
use crate::runtime::RuntimeVersion;

/// Where node Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The labels every node gets (the kubelet's well-known ones), then the template's.
pub fn node_labels(template: &NodeTemplate, name: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), template.os.clone()),
        ("kubernetes.io/arch".to_string(), template.arch.clone()),
        ("beta.kubernetes.io/os".to_string(), template.os.clone()),
        ("beta.kubernetes.io/arch".to_string(), template.arch.clone()),
    ]);
    labels.extend(template.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The four conditions the kubelet reports, healthy, with `since` as their transition
/// time and `now` as the heartbeat.
pub fn healthy_conditions(since: Timestamp, now: Timestamp) -> Vec<NodeCondition> {
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    };
    vec![
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]
}

/// The status the agent reports for a node.
pub fn node_status(
    template: &NodeTemplate,
    id: &NodeIdentity,
    runtime: &RuntimeVersion,
    since: Timestamp,
    now: Timestamp,
) -> NodeStatus {
    let capacity = template.capacity.clone();
    let allocatable = template.allocatable.clone().unwrap_or_else(|| capacity.clone());
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(healthy_conditions(since, now)),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: id.address.to_string() },
            NodeAddress { type_: "Hostname".into(), address: id.name.clone() },
        ]),
        daemon_endpoints: Some(kubelet_endpoint(10250)),
        node_info: Some(NodeSystemInfo {
            architecture: template.arch.clone(),
            boot_id: String::new(),
            container_runtime_version: format!("{}://{}", runtime.runtime_name, runtime.runtime_version),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: template.version.clone(),
            machine_id: String::new(),
            operating_system: template.os.clone(),
            os_image: "skiff".into(),
            system_uuid: String::new(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// Where the node's agent serves logs, exec and port-forward (the kubelet's endpoint).
pub fn kubelet_endpoint(port: u16) -> NodeDaemonEndpoints {
    NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(port) }) }
}

/// The Node the agent creates when it first registers.
pub fn node_object(template: &NodeTemplate, id: &NodeIdentity, runtime: &RuntimeVersion, now: Timestamp) -> Node {
    let cidr = id.pod_cidr.to_string();
    Node {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            labels: Some(node_labels(template, &id.name)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
                ("volumes.kubernetes.io/controller-managed-attach-detach".to_string(), "true".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            taints: (!template.taints.is_empty()).then(|| template.taints.clone()),
            ..NodeSpec::default()
        }),
        status: Some(node_status(template, id, runtime, now, now)),
    }
}

/// The node's Lease, held by the node and owned by it (so that deleting the Node
/// garbage-collects the Lease).
pub fn lease_object(node: &str, node_uid: &str, duration_seconds: i32, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_string(),
                uid: node_uid.to_string(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// Creates the Node, or adopts an existing one (an agent restart) by refreshing the
/// labels the agent owns and its status. Returns the Node's UID.
pub async fn register(nodes: &Api<Node>, node: &Node) -> Result<String> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let existing = match nodes.create(&PostParams::default(), node).await {
        Ok(created) if created.status.as_ref().is_some_and(|s| s.conditions.is_some()) => {
            return Ok(created.metadata.uid.unwrap_or_default());
        }
        Ok(created) => created,
        Err(e) if status_code(&e) == Some(409) => {
            let labels = node.metadata.labels.clone().unwrap_or_default();
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": labels}}))).await?
        }
        Err(e) => return Err(e.into()),
    };
    nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": node.status}))).await?;
    Ok(existing.metadata.uid.unwrap_or_default())
}

/// Re-posts the node's conditions with a fresh heartbeat.
pub async fn post_conditions(nodes: &Api<Node>, name: &str, since: Timestamp, now: Timestamp) -> Result<()> {
    let patch = json!({"status": {"conditions": healthy_conditions(since, now)}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// Renews the node's Lease, creating it when missing.
pub async fn renew_lease(leases: &Api<Lease>, node: &str, node_uid: &str, duration: i32, now: Timestamp) -> Result<()> {
    let patch =
        json!({"spec": {"holderIdentity": node, "leaseDurationSeconds": duration, "renewTime": MicroTime(now)}});
    match leases.patch(node, &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(e) if status_code(&e) == Some(404) => {
            match leases.create(&PostParams::default(), &lease_object(node, node_uid, duration, now)).await {
                Ok(_) => Ok(()),
                // Someone (an earlier attempt) created it meanwhile: renewed enough.
                Err(e) if status_code(&e) == Some(409) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_has_kubelet_labels_conditions_and_capacity() {
        let template = NodeTemplate::simulated();
        let id = NodeIdentity {
            name: "sim-1".into(),
            address: "198.18.0.2".parse().unwrap(),
            pod_cidr: "10.42.1.0/24".parse().unwrap(),
        };
        let runtime = RuntimeVersion { runtime_name: "simulated".into(), runtime_version: "0.1.0".into() };
        let node = node_object(&template, &id, &runtime, Timestamp::UNIX_EPOCH);
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "sim-1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert!(labels.contains_key("kubernetes.io/arch"));
        let status = node.status.unwrap();
        assert_eq!(status.allocatable.unwrap()["pods"].0, "110");
        let conditions = status.conditions.unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        assert_eq!(node.spec.unwrap().pod_cidr.as_deref(), Some("10.42.1.0/24"));
        assert_eq!(status.node_info.unwrap().container_runtime_version, "simulated://0.1.0");
    }

    #[test]
    fn lease_is_owned_by_its_node() {
        let lease = lease_object("n1", "uid-1", 40, Timestamp::UNIX_EPOCH);
        assert_eq!(lease.metadata.namespace.as_deref(), Some(LEASE_NAMESPACE));
        assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, "uid-1");
        assert_eq!(lease.spec.unwrap().lease_duration_seconds, Some(40));
    }
}
