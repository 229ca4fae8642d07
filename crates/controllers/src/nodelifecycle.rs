//! Node lifecycle controller (kube-controller-manager's node-lifecycle-controller,
//! reporting as `node-controller`):
//!
//! - Health: every node_monitor_period, a node whose Lease (kube-node-lease) and Ready
//!   heartbeat have not moved for node_monitor_grace_period (node_startup_grace_period if
//!   it never reported) gets Ready, MemoryPressure, DiskPressure and PIDPressure set to
//!   Unknown ("Kubelet stopped posting node status."). The time is this controller's own
//!   clock from when it last saw either change, so clock skew does not matter.
//! - When a node stops being Ready: a NodeNotReady event, and the Ready condition of its
//!   pods set to False (they are not serving any more).
//! - NoExecute taints: node.kubernetes.io/unreachable while Ready is Unknown,
//!   node.kubernetes.io/not-ready while it is False, removed once Ready is True. When
//!   every zone has no Ready node at all, the control plane is more likely cut off than
//!   every node broken: no NoExecute taint is kept (Kubernetes' "master disruption mode").
//!   The taint-eviction controller evicts the pods.
//! - NoSchedule taints follow conditions and spec.unschedulable on every node change
//!   (TaintNodesByCondition): not-ready, unreachable, memory-pressure, disk-pressure,
//!   pid-pressure, network-unavailable, unschedulable.
//!
//! Not done: Kubernetes rate-limits adding NoExecute taints per zone (0.1 nodes/s, slower
//! or stopped while a zone is partially disrupted); here they are added at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;
use skiff_client::events::{reference, Recorder};
use skiff_client::synced::Synced;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::informer::Change;
use crate::Context;

pub const NAME: &str = "node-lifecycle-controller";
/// The event source Kubernetes' node lifecycle controller reports as.
const REPORTING: &str = "node-controller";

const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The Ready status of a node that has not reported one yet (within its startup grace).
const NEVER_REPORTED: &str = "";
/// Nodes with this label count in no zone's health.
const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// The conditions set to Unknown when the node stops reporting (NetworkUnavailable is
/// the control plane's, not the kubelet's).
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Condition type and status → the NoSchedule taint key it brings.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
];

pub async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let nodes = context.informers.nodes();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let lease_changes = reflector::reflector(
        lease_writer,
        watcher(Api::<Lease>::namespaced(client, LEASE_NAMESPACE), watcher::Config::default())
            .modify(|lease| lease.managed_fields_mut().clear()),
    )
    .default_backoff()
    .for_each(|_| async {});
    let no_schedule = nodes.subscribe().for_each(|change| {
        let context = context.clone();
        async move {
            if let Change::Applied { new: node, .. } = change {
                sync_no_schedule_taints(&node, &context).await;
            }
        }
    });
    let synced = [nodes.synced(), Synced::of(&leases)];
    let mut monitor = Monitor::new(context.clone(), nodes.store(), leases, synced);
    tokio::join!(lease_changes, no_schedule, monitor.run());
}

/// What this controller last saw of a node, to tell a silent node from a live one.
struct Health {
    /// When the Ready heartbeat or the Lease last moved, by this controller's clock.
    probe: Instant,
    heartbeat: Option<Timestamp>,
    renewed: Option<Timestamp>,
}

struct Monitor {
    context: Arc<Context>,
    events: Recorder,
    nodes: Store<Node>,
    leases: Store<Lease>,
    /// The nodes' and the leases' first lists.
    synced: [Synced; 2],
    health: HashMap<String, Health>,
    /// Nodes whose pods still have to be marked not ready (a failed attempt).
    retry_pods: HashSet<String>,
    /// Whether every zone had no Ready node in the last pass.
    all_disrupted: bool,
}

impl Monitor {
    fn new(context: Arc<Context>, nodes: Store<Node>, leases: Store<Lease>, synced: [Synced; 2]) -> Self {
        let events = context.events.reporting_as(REPORTING);
        Monitor {
            context,
            events,
            nodes,
            leases,
            synced,
            health: HashMap::new(),
            retry_pods: HashSet::new(),
            all_disrupted: false,
        }
    }

    async fn run(&mut self) {
        for synced in &self.synced {
            if synced.wait().await.is_err() {
                return;
            }
        }
        let mut tick = tokio::time::interval(self.context.timing.node_monitor_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.pass().await;
        }
    }

    /// One look at every node.
    async fn pass(&mut self) {
        let nodes = self.nodes.state();
        self.note_added_and_removed(&nodes);
        let now = Instant::now();
        // Per zone: (ready nodes, not ready nodes).
        let mut zones: HashMap<String, (usize, usize)> = HashMap::new();
        let mut checked = Vec::new();
        for node in nodes {
            let (observed, current, node) = self.check_health(node, now).await;
            if !node.labels().contains_key(EXCLUDE_DISRUPTION) {
                let zone = zones.entry(zone_key(&node)).or_default();
                if current == "True" {
                    zone.0 += 1;
                } else {
                    zone.1 += 1;
                }
            }
            let name = node.name_any();
            let went_down = current != "True" && observed == "True";
            if went_down {
                self.events.normal(
                    node_reference(&node),
                    "NodeStatusChange",
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
            if went_down || (current != "True" && self.retry_pods.contains(&name)) {
                match self.mark_pods_not_ready(&name).await {
                    Ok(()) => {
                        self.retry_pods.remove(&name);
                    }
                    Err(e) => {
                        warn!(node = name, error = %e, "marking pods not ready failed; will retry");
                        self.retry_pods.insert(name);
                    }
                }
            } else if current == "True" {
                self.retry_pods.remove(&name);
            }
            checked.push((node, current));
        }
        let all_disrupted = !zones.is_empty() && zones.values().all(|(ready, not_ready)| *ready == 0 && *not_ready > 0);
        if all_disrupted != self.all_disrupted {
            if all_disrupted {
                info!("all nodes are not ready: entering master disruption mode, no NoExecute taints");
            } else {
                info!("some nodes are ready: leaving master disruption mode");
                // Nodes had no chance to be seen alive meanwhile: give them a full grace period.
                for health in self.health.values_mut() {
                    health.probe = now;
                }
            }
            self.all_disrupted = all_disrupted;
        }
        for (node, ready) in checked.into_iter().filter(|(_, ready)| ready != NEVER_REPORTED) {
            let wanted = match ready.as_str() {
                _ if all_disrupted => None,
                "False" => Some(NOT_READY),
                "Unknown" => Some(UNREACHABLE),
                _ => None,
            };
            if let Some(taints) = with_no_execute_taint(node_taints(&node), wanted, Timestamp::now()) {
                self.write_taints(&node, taints).await;
            }
        }
    }

    fn note_added_and_removed(&mut self, nodes: &[Arc<Node>]) {
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        for node in nodes.iter().filter(|n| !self.health.contains_key(&n.name_any())) {
            let name = node.name_any();
            self.events.normal(
                node_reference(node),
                "Register",
                "RegisteredNode",
                format!("Registered Node {name} in Controller"),
            );
        }
        let removed: Vec<String> = self.health.keys().filter(|n| !names.contains(*n)).cloned().collect();
        for name in removed {
            self.health.remove(&name);
            self.retry_pods.remove(&name);
            let reference = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(name.clone()),
                uid: Some(name.clone()),
                ..ObjectReference::default()
            };
            self.events.normal(reference, "Remove", "RemovingNode", format!("Removing Node {name} from Controller"));
        }
    }

    /// Updates what is known of the node's liveness, marks it Unknown when it has been
    /// silent too long; returns its Ready status before and after (NEVER_REPORTED after,
    /// while a new node has its startup grace), and the node as stored.
    async fn check_health(&mut self, node: Arc<Node>, now: Instant) -> (String, String, Arc<Node>) {
        let name = node.name_any();
        let ready = condition(&node, "Ready").cloned();
        let heartbeat = ready.as_ref().and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0);
        let lease = self.leases.get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let renewed = lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let health = self.health.entry(name.clone()).or_insert(Health { probe: now, heartbeat, renewed });
        if heartbeat != health.heartbeat {
            health.heartbeat = heartbeat;
            health.probe = now;
        }
        if renewed.is_some_and(|r| health.renewed.is_none_or(|seen| r > seen)) {
            health.renewed = renewed;
            health.probe = now;
        }
        let timing = &self.context.timing;
        let grace = if ready.is_some() { timing.node_monitor_grace_period } else { timing.node_startup_grace_period };
        let never_reported = ready.is_none();
        let observed = ready.map_or_else(|| "Unknown".to_string(), |c| c.status);
        if now <= health.probe + grace {
            // A node still starting up has no Ready status to act on yet.
            let current = if never_reported { NEVER_REPORTED.to_string() } else { observed.clone() };
            return (observed, current, node);
        }
        let mut updated = (*node).clone();
        let created = node.metadata.creation_timestamp.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        if !mark_unknown(status.conditions.get_or_insert_with(Vec::new), created, Timestamp::now()) {
            return (observed, "Unknown".into(), node);
        }
        debug!(node = name, "node stopped posting status: conditions now Unknown");
        let api = Api::<Node>::all(self.context.client.clone());
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(stored) => (observed, "Unknown".into(), Arc::new(stored)),
            Err(e) => {
                warn!(node = name, error = %e, "updating node status failed; will retry");
                (observed.clone(), observed, node)
            }
        }
    }

    /// Sets the Ready condition of every pod on the node to False.
    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), kube::Error> {
        let all = Api::<Pod>::all(self.context.client.clone());
        let pods = all.list(&ListParams::default().fields(&format!("spec.nodeName={node}"))).await?;
        let mut failed = None;
        for pod in pods {
            let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.clone()) else { continue };
            let Some(index) = conditions.iter().position(|c| c.type_ == "Ready") else { continue };
            if conditions[index].status == "False" {
                continue;
            }
            let mut conditions = conditions;
            conditions[index].status = "False".into();
            conditions[index].last_transition_time = Some(Time(Timestamp::now()));
            let api = Api::<Pod>::namespaced(self.context.client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({
                "metadata": {"resourceVersion": pod.resource_version()},
                "status": {"conditions": conditions},
            });
            match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {
                    self.events.warning(reference(&pod), "NodeNotReady", "NodeNotReady", "Node is not ready".into())
                }
                Err(e) if skiff_client::is_status(&e, &[404]) => {}
                Err(e) => failed = Some(e),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn write_taints(&self, node: &Node, taints: Vec<Taint>) {
        if let Err(e) = patch_taints(&self.context, node, taints).await {
            debug!(node = node.name_any(), error = %e, "updating taints failed; next pass retries");
        }
    }
}

/// The taints the node should have for its conditions and spec.unschedulable, if they
/// differ from what it has.
async fn sync_no_schedule_taints(node: &Node, context: &Context) {
    if let Some(taints) = with_no_schedule_taints(node, Timestamp::now()) {
        if let Err(e) = patch_taints(context, node, taints).await {
            // A conflict means a newer node, whose own event comes next.
            debug!(node = node.name_any(), error = %e, "updating NoSchedule taints failed");
        }
    }
}

/// Replaces the node's taints, if it is still the version they were computed from.
async fn patch_taints(context: &Context, node: &Node, taints: Vec<Taint>) -> Result<Node, kube::Error> {
    let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": taints}});
    Api::<Node>::all(context.client.clone())
        .patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
}

fn node_taints(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default()
}

fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// Events about nodes name the node as their UID, as the kubelet's do, which is what
/// `kubectl describe node` looks for.
fn node_reference(node: &Node) -> ObjectReference {
    let name = node.name_any();
    ObjectReference { uid: Some(name), resource_version: None, ..reference(node) }
}

/// The zone a node counts in: region and zone labels, as Kubernetes keys them.
fn zone_key(node: &Node) -> String {
    let labels = node.labels();
    let region = labels.get("topology.kubernetes.io/region").map(String::as_str).unwrap_or("");
    let zone = labels.get("topology.kubernetes.io/zone").map(String::as_str).unwrap_or("");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// Sets the kubelet's conditions to Unknown (adding any it never posted); whether
/// anything changed.
fn mark_unknown(conditions: &mut Vec<NodeCondition>, created: Option<Time>, now: Timestamp) -> bool {
    let mut changed = false;
    for kind in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed
}

/// The node's taints with exactly the NoExecute taint `wanted` among unreachable and
/// not-ready (None: neither); None when nothing changes.
fn with_no_execute_taint(taints: &[Taint], wanted: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let ours = |t: &Taint| t.effect == "NoExecute" && (t.key == UNREACHABLE || t.key == NOT_READY);
    let has_wanted = wanted.is_none_or(|key| taints.iter().any(|t| ours(t) && t.key == key));
    let has_other = taints.iter().any(|t| ours(t) && Some(t.key.as_str()) != wanted);
    if has_wanted && !has_other {
        return None;
    }
    let mut result: Vec<Taint> =
        taints.iter().filter(|t| !ours(t) || Some(t.key.as_str()) == wanted).cloned().collect();
    if let Some(key) = wanted.filter(|_| !has_wanted) {
        result.push(Taint { key: key.into(), value: None, effect: "NoExecute".into(), time_added: Some(Time(now)) });
    }
    Some(result)
}

/// The node's taints with the NoSchedule taints its conditions and spec.unschedulable
/// call for (and no other taints of those keys); None when nothing changes.
fn with_no_schedule_taints(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let mut wanted: Vec<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(kind, status, _)| conditions.iter().any(|c| c.type_ == *kind && c.status == *status))
        .map(|(_, _, key)| *key)
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push(UNSCHEDULABLE);
    }
    let managed = |t: &Taint| {
        t.effect == "NoSchedule" && (t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key))
    };
    let taints = node_taints(node);
    let stale = taints.iter().any(|t| managed(t) && !wanted.contains(&t.key.as_str()));
    let missing: Vec<&str> =
        wanted.iter().copied().filter(|key| !taints.iter().any(|t| managed(t) && t.key == *key)).collect();
    if !stale && missing.is_empty() {
        return None;
    }
    let mut result: Vec<Taint> =
        taints.iter().filter(|t| !managed(t) || wanted.contains(&t.key.as_str())).cloned().collect();
    result.extend(missing.into_iter().map(|key| Taint {
        key: key.into(),
        value: None,
        effect: "NoSchedule".into(),
        time_added: Some(Time(now)),
    }));
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(conditions: serde_json::Value, spec: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": spec, "status": {"conditions": conditions}}))
            .unwrap()
    }

    #[test]
    fn silent_nodes_become_unknown_and_missing_conditions_are_added() {
        let mut conditions = vec![
            NodeCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() },
            NodeCondition { type_: "NetworkUnavailable".into(), status: "False".into(), ..Default::default() },
        ];
        assert!(mark_unknown(&mut conditions, None, Timestamp::UNIX_EPOCH));
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        let pid = conditions.iter().find(|c| c.type_ == "PIDPressure").unwrap();
        assert_eq!(pid.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        // NetworkUnavailable is not the kubelet's to report.
        assert_eq!(conditions.iter().find(|c| c.type_ == "NetworkUnavailable").unwrap().status, "False");
        assert!(!mark_unknown(&mut conditions, None, Timestamp::UNIX_EPOCH), "already Unknown");
    }

    #[test]
    fn no_execute_taints_swap_and_go() {
        let now = Timestamp::UNIX_EPOCH;
        let other = Taint { key: "dedicated".into(), effect: "NoExecute".into(), ..Default::default() };
        let tainted = with_no_execute_taint(std::slice::from_ref(&other), Some(UNREACHABLE), now).unwrap();
        assert_eq!(tainted.len(), 2);
        assert!(with_no_execute_taint(&tainted, Some(UNREACHABLE), now).is_none(), "already there");
        let swapped = with_no_execute_taint(&tainted, Some(NOT_READY), now).unwrap();
        assert_eq!(swapped.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), ["dedicated", NOT_READY]);
        assert_eq!(with_no_execute_taint(&swapped, None, now).unwrap(), vec![other]);
    }

    #[test]
    fn no_schedule_taints_follow_conditions_and_unschedulable() {
        let now = Timestamp::UNIX_EPOCH;
        let cordoned = node(
            json!([{"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]),
            json!({"unschedulable": true, "taints": [{"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}]}),
        );
        let taints = with_no_schedule_taints(&cordoned, now).unwrap();
        let keys: Vec<&str> = taints.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, [UNREACHABLE, "node.kubernetes.io/disk-pressure", UNSCHEDULABLE]);
        let healthy = node(json!([{"type": "Ready", "status": "True"}]), json!({}));
        assert!(with_no_schedule_taints(&healthy, now).is_none());
    }
}
