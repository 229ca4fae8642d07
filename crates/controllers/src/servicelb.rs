//! ServiceLB (as k3s' servicelb): a LoadBalancer Service gets the addresses of the ready
//! nodes as status.loadBalancer.ingress (a node's ExternalIP, else its InternalIP), and
//! every node's service proxy serves those addresses on the service port, so a
//! LoadBalancer Service works on bare machines. Services with a spec.loadBalancerClass
//! belong to another implementation and are left alone; a Service that stops being a
//! LoadBalancer has the ingress this controller wrote removed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use skiff_client::events::reference;
use skiff_client::synced::Synced;
use tracing::debug;

use crate::Context;

pub const NAME: &str = "servicelb-controller";

struct State {
    context: Arc<Context>,
    nodes: Store<Node>,
    nodes_synced: Synced,
}

pub async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    // Node addresses and readiness change every LoadBalancer's ingress; there are few.
    let node_changes = context.informers.nodes().any_change();
    let nodes = context.informers.nodes();
    let state = Arc::new(State { nodes: nodes.store(), nodes_synced: nodes.synced(), context: context.clone() });
    Controller::new(Api::<Service>::all(client), watcher::Config::default())
        .reconcile_all_on(node_changes)
        .run(reconcile, |_, error, _| retry(error), state)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "servicelb reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

/// The ingress addresses for the current nodes: each ready node's ExternalIP, or its
/// InternalIP when it has none; sorted, each once.
pub fn ingress_addresses<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Vec<String> {
    let mut addresses: Vec<String> = nodes
        .into_iter()
        .filter(|node| is_ready(node))
        .filter_map(|node| {
            let addresses = node.status.as_ref()?.addresses.as_ref()?;
            let of_type = |kind: &str| addresses.iter().find(|a| a.type_ == kind).map(|a| a.address.clone());
            of_type("ExternalIP").or_else(|| of_type("InternalIP"))
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn current_ingress(service: &Service) -> Vec<String> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone()).collect()
}

async fn reconcile(service: Arc<Service>, state: Arc<State>) -> Result<Action, kube::Error> {
    if state.nodes_synced.wait().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let Some(spec) = &service.spec else { return Ok(Action::await_change()) };
    if spec.load_balancer_class.is_some() || service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let is_load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    let wanted =
        if is_load_balancer { ingress_addresses(state.nodes.state().iter().map(|n| n.as_ref())) } else { Vec::new() };
    let current = current_ingress(&service);
    if current == wanted {
        return Ok(Action::await_change());
    }
    let ingress: Vec<_> = wanted.iter().map(|ip| json!({ "ip": ip, "ipMode": "VIP" })).collect();
    let patch = json!({ "status": { "loadBalancer": if ingress.is_empty() { json!({}) } else { json!({ "ingress": ingress }) } } });
    let namespace = service.namespace().unwrap_or_default();
    let api = Api::<Service>::namespaced(state.context.client.clone(), &namespace);
    api.patch_status(&service.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    if is_load_balancer {
        let events = state.context.events.reporting_as("service-controller");
        events.normal(
            reference(service.as_ref()),
            "EnsureLoadBalancer",
            "EnsuredLoadBalancer",
            "Ensured load balancer".into(),
        );
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: bool, addresses: &[(&str, &str)]) -> Node {
        let addresses: Vec<_> = addresses.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "addresses": addresses,
            },
        }))
        .expect("node")
    }

    #[test]
    fn ready_nodes_give_their_external_or_else_internal_address() {
        let nodes = [
            node(true, &[("InternalIP", "10.0.0.2"), ("Hostname", "b")]),
            node(true, &[("InternalIP", "10.0.0.1"), ("ExternalIP", "203.0.113.1")]),
            node(false, &[("InternalIP", "10.0.0.3")]),
            node(true, &[("InternalIP", "10.0.0.2")]),
        ];
        assert_eq!(ingress_addresses(&nodes), ["10.0.0.2", "203.0.113.1"]);
    }
}
