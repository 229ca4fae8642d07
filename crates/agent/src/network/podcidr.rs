//! The node's pod CIDR comes from the server: the agent registers its Node without one
//! (Ready=False, network not ready, as the kubelet reports before its CNI config exists),
//! waits on a watch until node-ipam-controller sets spec.podCIDR, and only then writes
//! the CNI config. A pod CIDR the Node already has (an agent restart) is used at once;
//! an explicit one (`--pod-cidr`) is registered with the Node and counts as taken.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use tracing::{info, warn};

use super::NetworkError;
use crate::config::NodeTemplate;
use crate::error::status_code;
use crate::ipam::Ipv4Cidr;
use crate::node;

/// What the kubelet says while its network plugin is not ready.
pub const NETWORK_NOT_READY: &str = "container runtime network not ready: NetworkReady=false \
     reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";

/// The Node registered before its network is ready: labels, taints and addresses as
/// the agent will report them, Ready=False, and `pod_cidr` when one was given.
pub fn unready_node(template: &NodeTemplate, name: &str, address: IpAddr, pod_cidr: Option<Ipv4Cidr>) -> Node {
    let now = Time(Timestamp::now());
    let cidr = pod_cidr.map(|c| c.to_string());
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(node::node_labels(template, name)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
                ("volumes.kubernetes.io/controller-managed-attach-detach".to_string(), "true".to_string()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: cidr.clone(),
            pod_cidrs: cidr.map(|c| vec![c]),
            taints: (!template.taints.is_empty()).then(|| template.taints.clone()),
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: address.to_string() },
                NodeAddress { type_: "Hostname".into(), address: name.to_string() },
            ]),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: Some("KubeletNotReady".into()),
                message: Some(NETWORK_NOT_READY.into()),
                last_heartbeat_time: Some(now.clone()),
                last_transition_time: Some(now),
            }]),
            ..NodeStatus::default()
        }),
    }
}

/// The Node's IPv4 pod CIDR, if it has one.
pub fn pod_cidr_of(node: &Node) -> Option<Ipv4Cidr> {
    let spec = node.spec.as_ref()?;
    let listed = spec.pod_cidrs.iter().flatten();
    listed.chain(spec.pod_cidr.iter()).find_map(|text| text.parse().ok())
}

/// Registers `registration` unless its Node has a pod CIDR already, then waits until it
/// has one, saying so every `remind_every`.
pub async fn register_and_wait(
    client: &Client,
    registration: &Node,
    remind_every: Duration,
) -> Result<Ipv4Cidr, NetworkError> {
    let nodes = &Api::<Node>::all(client.clone());
    let name = registration.metadata.name.clone().unwrap_or_default();
    let wanted = pod_cidr_of(registration);
    if let Some(existing) = nodes.get_opt(&name).await? {
        if let Some(cidr) = pod_cidr_of(&existing) {
            if wanted.is_some_and(|w| w != cidr) {
                warn!(node = %name, %cidr, "the Node has another pod CIDR than --pod-cidr; using the Node's");
            }
            return Ok(cidr);
        }
        if let Some(cidr) = wanted {
            let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
            // Refused (422) when the server assigned one meanwhile: the watch reads that.
            if let Err(e) = nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                if status_code(&e) != Some(422) {
                    return Err(e.into());
                }
            }
        }
    } else {
        node::register(nodes, registration).await.map_err(Box::new)?;
    }
    info!(node = %name, "waiting for the server to assign the node's pod CIDR (node-ipam-controller)");
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = pin!(watcher(nodes.clone(), config).default_backoff().applied_objects());
    let mut remind = tokio::time::interval(remind_every);
    remind.tick().await;
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(Ok(node)) => if let Some(cidr) = pod_cidr_of(&node) {
                    info!(node = %name, %cidr, "pod CIDR assigned");
                    return Ok(cidr);
                },
                Some(Err(e)) => warn!(node = %name, error = %e, "watching the node failed; retrying"),
                None => return Err(NetworkError::Output { command: "the node watch".into(), message: "ended".into() }),
            },
            _ = remind.tick() => {
                warn!(node = %name, "still waiting for a pod CIDR: is the controller manager running with a --cluster-cidr that has room?");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_not_ready_with_the_given_pod_cidr_only() {
        let template = NodeTemplate::simulated();
        let node = unready_node(&template, "n1", "10.213.0.2".parse().unwrap(), None);
        assert_eq!(pod_cidr_of(&node), None);
        let status = node.status.clone().unwrap();
        let ready = &status.conditions.unwrap()[0];
        assert_eq!((ready.type_.as_str(), ready.status.as_str()), ("Ready", "False"));
        assert_eq!(ready.message.as_deref(), Some(NETWORK_NOT_READY));
        assert_eq!(status.addresses.unwrap()[0].address, "10.213.0.2");
        assert_eq!(node.metadata.labels.unwrap()["kubernetes.io/hostname"], "n1");

        let given = unready_node(&template, "n1", "10.213.0.2".parse().unwrap(), Some("10.42.7.0/24".parse().unwrap()));
        assert_eq!(pod_cidr_of(&given).map(|c| c.to_string()).as_deref(), Some("10.42.7.0/24"));
        assert_eq!(given.spec.unwrap().pod_cidrs, Some(vec!["10.42.7.0/24".to_string()]));
    }
}
