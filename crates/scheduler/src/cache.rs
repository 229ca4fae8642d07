//! The scheduler's view of the cluster: nodes, the pods on them (bound or assumed), and
//! namespace labels, updated from watch events. One task owns it and schedules from it
//! directly, so a scheduling cycle reads it in place: there is no snapshot to copy,
//! because nothing changes it during a cycle (events wait in a channel until the cycle
//! ends).
//!
//! Nodes and pods live in slabs addressed by small integers; per node, the cache keeps the
//! sums that the filters read (requested resources, host ports, pod list), updated when a
//! pod arrives or leaves rather than recomputed per cycle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::groups::{AntiIndex, DomainCounts, Groups, PodSet};
use crate::model::{Budget, HostPort, NodeInfo, PodInfo};
use crate::resources::Resources;
use crate::selector::Labels;

pub type NodeId = u32;
pub type PodId = u32;

/// A node and what its pods use.
#[derive(Debug, Default)]
pub struct NodeSlot {
    pub name: String,
    /// None while pods are known on a node whose object is not (or no longer) seen.
    pub info: Option<Arc<NodeInfo>>,
    pub requested: Resources,
    pub nonzero_milli_cpu: i64,
    pub nonzero_memory: i64,
    pub pods: Vec<PodId>,
    pub ports: Vec<HostPort>,
    /// Pending pods nominated here by a preemption: their resources are kept free for
    /// them (and for pods of lower priority, they count as placed). Kept on the slot
    /// because every filter of every node reads it while any nomination exists.
    pub nominated: Vec<Arc<PodInfo>>,
}

#[derive(Debug)]
pub struct PodSlot {
    pub info: Arc<PodInfo>,
    pub node: NodeId,
    /// Placed by this scheduler, binding not yet seen through the watch.
    pub assumed: bool,
}

/// A pod taken off its node by [`Cache::take_for_dry_run`].
#[derive(Debug)]
pub struct TakenPod {
    id: PodId,
    slot: PodSlot,
}

impl TakenPod {
    pub fn id(&self) -> PodId {
        self.id
    }

    pub fn info(&self) -> &Arc<PodInfo> {
        &self.slot.info
    }
}

/// What changed about a node, for deciding which waiting pods to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// Something placement depends on changed (allocatable, labels, taints, unschedulable, images).
    Updated,
    /// Only fields the scheduler ignores (conditions, heartbeats).
    Unchanged,
}

#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeSlot>,
    node_ids: HashMap<String, NodeId>,
    free_nodes: Vec<NodeId>,
    /// Nodes with an object, in a stable order that the scheduler walks round-robin.
    order: Vec<NodeId>,
    pods: Vec<Option<PodSlot>>,
    pod_ids: HashMap<String, PodId>,
    free_pods: Vec<PodId>,
    /// Pods with required anti-affinity terms (existing pods' anti-affinity is checked
    /// against every incoming pod).
    pub with_required_anti: HashSet<PodId>,
    /// Pods with any inter-pod affinity term.
    pub with_affinity: HashSet<PodId>,
    /// Pods whose terms score incoming pods: required affinity or preferred terms.
    pub with_scoring_terms: HashSet<PodId>,
    pub namespaces: HashMap<String, Labels>,
    /// Pods per topology domain for the pod sets in use (spreading and affinity).
    groups: Groups,
    /// Placed pods' required anti-affinity terms per domain.
    anti: AntiIndex,
    /// How many nodes hold each image (ImageLocality spreads its score by it).
    image_nodes: HashMap<String, u32>,
    /// What selects pods (Services, controllers), for default spreading.
    pub selectors: crate::plugins::default_spread::Selectors,
    /// PodDisruptionBudgets by uid.
    pub budgets: HashMap<String, Budget>,
    /// uid → the node it is nominated to (the pods are on [`NodeSlot::nominated`]).
    nominated_to: HashMap<String, NodeId>,
}

impl Cache {
    pub fn new() -> Self {
        Cache::default()
    }

    /// Nodes that have an object, in round-robin order.
    pub fn node_order(&self) -> &[NodeId] {
        &self.order
    }

    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    pub fn node(&self, id: NodeId) -> &NodeSlot {
        &self.nodes[id as usize]
    }

    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_ids.get(name).copied()
    }

    pub fn pod(&self, id: PodId) -> &PodSlot {
        self.pods[id as usize].as_ref().expect("live pod id")
    }

    pub fn pod_by_uid(&self, uid: &str) -> Option<&PodSlot> {
        self.pod_ids.get(uid).map(|id| self.pod(*id))
    }

    pub fn pod_count(&self) -> usize {
        self.pod_ids.len()
    }

    /// Every pod in the cache, bound or assumed.
    pub fn pods(&self) -> impl Iterator<Item = (PodId, &PodSlot)> {
        self.pods.iter().enumerate().filter_map(|(id, slot)| slot.as_ref().map(|s| (id as PodId, s)))
    }

    pub fn images_spread(&self, image: &str) -> u32 {
        self.image_nodes.get(image).copied().unwrap_or(0)
    }

    fn slot_for(&mut self, name: &str) -> NodeId {
        if let Some(id) = self.node_ids.get(name) {
            return *id;
        }
        let id = match self.free_nodes.pop() {
            Some(id) => id,
            None => {
                self.nodes.push(NodeSlot::default());
                (self.nodes.len() - 1) as NodeId
            }
        };
        self.nodes[id as usize].name = name.to_string();
        self.node_ids.insert(name.to_string(), id);
        id
    }

    /// Adds or replaces a node's object.
    pub fn set_node(&mut self, info: NodeInfo) -> NodeChange {
        let id = self.slot_for(&info.name);
        let slot = &mut self.nodes[id as usize];
        let (change, relabelled) = match &slot.info {
            None => (NodeChange::Added, false),
            Some(old) if **old == info => return NodeChange::Unchanged,
            Some(old) => (NodeChange::Updated, old.labels != info.labels),
        };
        if let Some(old) = slot.info.take() {
            for image in old.images.keys() {
                if let Some(count) = self.image_nodes.get_mut(image) {
                    *count -= 1;
                    if *count == 0 {
                        self.image_nodes.remove(image);
                    }
                }
            }
        } else {
            self.order.push(id);
        }
        for image in info.images.keys() {
            *self.image_nodes.entry(image.clone()).or_default() += 1;
        }
        let info = Arc::new(info);
        self.nodes[id as usize].info = Some(info.clone());
        if relabelled {
            // Pods were counted in their node's old domains.
            self.recount();
        } else if change == NodeChange::Added {
            self.groups.on_node(&info.labels);
            for pod in self.nodes[id as usize].pods.clone() {
                let pod = self.pod(pod).info.clone();
                self.count(id, &pod, 1);
            }
        }
        change
    }

    /// Counts (or uncounts) a pod in the domain counts, if its node's labels are known.
    fn count(&mut self, node: NodeId, pod: &PodInfo, delta: i64) {
        let Some(info) = self.nodes[node as usize].info.clone() else { return };
        self.groups.on_pod(pod, &info.labels, &self.namespaces, delta);
        self.anti.on_pod(pod, &info.labels, delta);
    }

    /// Drops the domain counts (rebuilt on demand) and recounts the anti-affinity index:
    /// after a node's labels changed or a node went, which moves pods between domains.
    fn recount(&mut self) {
        self.groups.clear();
        self.anti.clear();
        for id in self.with_required_anti.clone() {
            let slot = self.pod(id);
            let (node, info) = (slot.node, slot.info.clone());
            if let Some(labels) = self.nodes[node as usize].info.as_ref().map(|n| n.labels.clone()) {
                self.anti.on_pod(&info, &labels, 1);
            }
        }
    }

    /// Starts keeping counts of `set` per value of `key` (or keeps them longer).
    pub fn track(&mut self, set: &PodSet, key: &str) {
        if self.groups.get(set).is_some_and(|g| g.domains.contains_key(key)) {
            self.groups.touch(set);
            return;
        }
        let mut counts = DomainCounts::default();
        for &id in &self.order {
            if let Some(value) = self.nodes[id as usize].info.as_ref().and_then(|n| n.labels.get(key)) {
                counts.entry(value.clone()).or_default();
            }
        }
        for slot in self.pods.iter().flatten() {
            if !set.matches(&slot.info, &self.namespaces) {
                continue;
            }
            if let Some(value) = self.nodes[slot.node as usize].info.as_ref().and_then(|n| n.labels.get(key)) {
                *counts.entry(value.clone()).or_default() += 1;
            }
        }
        let group = match self.groups.get_mut(set) {
            Some(group) => group,
            None => self.groups.insert(set.clone()),
        };
        group.domains.insert(key.to_string(), counts);
        self.groups.touch(set);
    }

    /// Matching pods per value of `key`, when `set` is tracked for it.
    pub fn domain_counts(&self, set: &PodSet, key: &str) -> Option<&DomainCounts> {
        self.groups.get(set)?.domains.get(key)
    }

    /// Placed pods' required anti-affinity terms with their holders per domain.
    pub fn anti_terms(&self) -> impl Iterator<Item = (&PodSet, &str, &DomainCounts)> {
        self.anti.terms.iter().map(|((set, key), counts)| (set, key.as_str(), counts))
    }

    /// Ends a scheduling cycle (ages the domain counts).
    pub fn next_cycle(&mut self) {
        self.groups.next_cycle();
    }

    /// Sets a namespace's labels; pod sets that select namespaces by label are recounted.
    pub fn set_namespace(&mut self, name: &str, labels: Labels) -> bool {
        if self.namespaces.get(name) == Some(&labels) {
            return false;
        }
        self.namespaces.insert(name.to_string(), labels);
        self.groups.drop_namespace_selecting();
        true
    }

    /// Removes a node's object; its slot stays while pods are still known on it.
    pub fn remove_node(&mut self, name: &str) {
        let Some(id) = self.node_ids.get(name).copied() else { return };
        if let Some(old) = self.nodes[id as usize].info.take() {
            for image in old.images.keys() {
                if let Some(count) = self.image_nodes.get_mut(image) {
                    *count -= 1;
                    if *count == 0 {
                        self.image_nodes.remove(image);
                    }
                }
            }
            self.order.retain(|n| *n != id);
            if !self.nodes[id as usize].pods.is_empty() || !self.groups.is_empty() {
                self.recount();
            }
        }
        self.release_node_if_empty(id);
    }

    fn release_node_if_empty(&mut self, id: NodeId) {
        let slot = &self.nodes[id as usize];
        if slot.info.is_none() && slot.pods.is_empty() && slot.nominated.is_empty() {
            self.node_ids.remove(&slot.name);
            self.nodes[id as usize] = NodeSlot::default();
            self.free_nodes.push(id);
        }
    }

    fn account(&mut self, node: NodeId, info: &PodInfo, sign: i64) {
        let slot = &mut self.nodes[node as usize];
        if sign > 0 {
            slot.requested.add(&info.requests.requests);
            slot.ports.extend(info.host_ports.iter().cloned());
        } else {
            slot.requested.subtract(&info.requests.requests);
            for port in &info.host_ports {
                if let Some(i) = slot.ports.iter().position(|p| p == port) {
                    slot.ports.swap_remove(i);
                }
            }
        }
        slot.nonzero_milli_cpu += sign * info.requests.nonzero_milli_cpu;
        slot.nonzero_memory += sign * info.requests.nonzero_memory;
    }

    fn insert(&mut self, info: Arc<PodInfo>, node_name: &str, assumed: bool) -> PodId {
        let node = self.slot_for(node_name);
        let id = match self.free_pods.pop() {
            Some(id) => id,
            None => {
                self.pods.push(None);
                (self.pods.len() - 1) as PodId
            }
        };
        self.pod_ids.insert(info.uid.clone(), id);
        self.attach(id, PodSlot { info, node, assumed });
        id
    }

    /// Puts the pod `slot` on its node under `id`: the node's sums, its pod list, the
    /// affinity sets and the domain counts.
    fn attach(&mut self, id: PodId, slot: PodSlot) {
        let (node, info) = (slot.node, &slot.info);
        self.account(node, info, 1);
        self.nodes[node as usize].pods.push(id);
        if let Some(affinity) = &info.affinity {
            self.with_affinity.insert(id);
            if !affinity.required_anti.is_empty() {
                self.with_required_anti.insert(id);
            }
            if !affinity.required.is_empty() || !affinity.preferred.is_empty() || !affinity.preferred_anti.is_empty() {
                self.with_scoring_terms.insert(id);
            }
        }
        self.count(node, info, 1);
        self.pods[id as usize] = Some(slot);
    }

    /// Takes the pod `id` off its node: the reverse of [`Cache::attach`].
    fn detach(&mut self, id: PodId) -> PodSlot {
        let slot = self.pods[id as usize].take().expect("live pod id");
        self.account(slot.node, &slot.info, -1);
        self.count(slot.node, &slot.info, -1);
        let pods = &mut self.nodes[slot.node as usize].pods;
        if let Some(i) = pods.iter().position(|p| *p == id) {
            pods.swap_remove(i);
        }
        self.with_affinity.remove(&id);
        self.with_required_anti.remove(&id);
        self.with_scoring_terms.remove(&id);
        slot
    }

    /// Removes a pod; returns what was there.
    pub fn remove_pod(&mut self, uid: &str) -> Option<PodSlot> {
        let id = self.pod_ids.remove(uid)?;
        let slot = self.detach(id);
        self.free_pods.push(id);
        self.release_node_if_empty(slot.node);
        Some(slot)
    }

    /// Takes pod `id` off its node for a dry run (preemption's), keeping its id and uid
    /// reserved so that putting it back needs no lookup: the dry runs of one preemption
    /// take and put back thousands of pods. Every taken pod must be put back before the
    /// cache serves anything else.
    pub fn take_for_dry_run(&mut self, id: PodId) -> TakenPod {
        TakenPod { id, slot: self.detach(id) }
    }

    pub fn put_back(&mut self, taken: TakenPod) {
        self.attach(taken.id, taken.slot);
    }

    /// A bound pod as the watch reports it: added, updated, or confirming an assumed one.
    pub fn set_pod(&mut self, info: Arc<PodInfo>) {
        let node = info.node_name.clone();
        self.remove_pod(&info.uid);
        self.insert(info, &node, false);
    }

    /// Places a pod on `node` before its binding is confirmed, so that the next cycles
    /// see the resources it will use.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: NodeId) {
        let name = self.nodes[node as usize].name.clone();
        self.remove_pod(&info.uid);
        self.insert(info, &name, true);
    }

    /// Records that `pod` waits for room on `node` (status.nominatedNodeName).
    pub fn nominate(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.unnominate(&pod.uid);
        let id = self.slot_for(node);
        self.nominated_to.insert(pod.uid.clone(), id);
        self.nodes[id as usize].nominated.push(pod);
    }

    /// Forgets a pod's nomination (it was placed, deleted, or lost it).
    pub fn unnominate(&mut self, uid: &str) {
        let Some(id) = self.nominated_to.remove(uid) else { return };
        self.nodes[id as usize].nominated.retain(|p| p.uid != uid);
        self.release_node_if_empty(id);
    }

    /// The node `uid` is nominated to.
    pub fn nomination(&self, uid: &str) -> Option<NodeId> {
        self.nominated_to.get(uid).copied()
    }

    /// Undoes [`assume`](Self::assume) after a failed binding. A pod the watch has
    /// confirmed meanwhile stays.
    pub fn forget(&mut self, uid: &str) -> bool {
        if self.pod_by_uid(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
            true
        } else {
            false
        }
    }

    /// Removes every node and pod not in `nodes`/`pods` (after a watch relist); returns
    /// whether anything went.
    pub fn retain_nodes(&mut self, keep: &HashSet<String>) -> bool {
        let gone: Vec<String> = self
            .node_ids
            .iter()
            .filter(|(name, id)| self.nodes[**id as usize].info.is_some() && !keep.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            self.remove_node(name);
        }
        !gone.is_empty()
    }

    /// Removes bound pods (not assumed ones) whose uid is not in `keep`.
    pub fn retain_pods(&mut self, keep: &HashSet<String>) -> bool {
        let gone: Vec<String> = self
            .pod_ids
            .iter()
            .filter(|(uid, id)| !keep.contains(*uid) && !self.pod(**id).assumed)
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in &gone {
            self.remove_pod(uid);
        }
        !gone.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::HostPort;
    use crate::resources::PodRequests;
    use serde_json::json;

    pub fn node(name: &str, cpu: &str, memory: &str, pods: &str) -> NodeInfo {
        NodeInfo::from_node(
            &serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}}
            }))
            .unwrap(),
        )
    }

    pub fn pod(name: &str, cpu: &str, node: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::from_pod(
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}
            }))
            .unwrap(),
        ))
    }

    #[test]
    fn pods_add_to_their_node_and_leave_it() {
        let mut cache = Cache::new();
        assert_eq!(cache.set_node(node("n1", "4", "8Gi", "110")), NodeChange::Added);
        assert_eq!(cache.set_node(node("n1", "4", "8Gi", "110")), NodeChange::Unchanged);
        assert_eq!(cache.set_node(node("n1", "8", "8Gi", "110")), NodeChange::Updated);
        cache.set_pod(pod("a", "500m", "n1"));
        cache.set_pod(pod("b", "1", "n1"));
        let n1 = cache.node(cache.node_id("n1").unwrap());
        assert_eq!(n1.requested.milli_cpu, 1500);
        assert_eq!(n1.pods.len(), 2);
        // An update replaces the old accounting.
        cache.set_pod(pod("b", "2", "n1"));
        assert_eq!(cache.node(cache.node_id("n1").unwrap()).requested.milli_cpu, 2500);
        cache.remove_pod("uid-a");
        let n1 = cache.node(cache.node_id("n1").unwrap());
        assert_eq!((n1.requested.milli_cpu, n1.pods.len()), (2000, 1));
        assert_eq!(cache.pod_count(), 1);
    }

    #[test]
    fn pods_may_arrive_before_their_node() {
        let mut cache = Cache::new();
        cache.set_pod(pod("a", "1", "late"));
        assert_eq!(cache.node_count(), 0, "a node without its object is not schedulable");
        assert_eq!(cache.set_node(node("late", "4", "8Gi", "110")), NodeChange::Added);
        assert_eq!(cache.node(cache.node_id("late").unwrap()).requested.milli_cpu, 1000);
        cache.remove_node("late");
        assert_eq!(cache.node_count(), 0);
        assert!(cache.node_id("late").is_some(), "kept while a pod is on it");
        cache.remove_pod("uid-a");
        assert!(cache.node_id("late").is_none());
    }

    #[test]
    fn assume_and_forget() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4", "8Gi", "110"));
        let id = cache.node_id("n1").unwrap();
        let mut info = (*pod("p", "1", "")).clone();
        info.host_ports.push(HostPort { protocol: "TCP".into(), ip: "0.0.0.0".into(), port: 80 });
        info.requests = PodRequests { nonzero_milli_cpu: 1000, nonzero_memory: 10, ..info.requests.clone() };
        cache.assume(Arc::new(info.clone()), id);
        assert!(cache.pod_by_uid("uid-p").unwrap().assumed);
        assert_eq!(cache.node(id).ports.len(), 1);
        assert!(cache.forget("uid-p"));
        assert_eq!(cache.node(id).requested.milli_cpu, 0);
        assert!(cache.node(id).ports.is_empty());
        // Confirmed by the watch: forgetting no longer applies.
        cache.assume(Arc::new(info.clone()), id);
        info.node_name = "n1".into();
        cache.set_pod(Arc::new(info));
        assert!(!cache.forget("uid-p"));
        assert_eq!(cache.node(id).nonzero_memory, 10);
    }

    #[test]
    fn a_pod_taken_for_a_dry_run_is_back_as_it_was() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4", "8Gi", "110"));
        let n1 = cache.node_id("n1").unwrap();
        let mut info = (*pod("a", "1", "n1")).clone();
        info.host_ports.push(HostPort { protocol: "TCP".into(), ip: "0.0.0.0".into(), port: 80 });
        info.affinity = Some(Default::default());
        cache.set_pod(Arc::new(info));
        cache.set_pod(pod("b", "500m", "n1"));
        let a = cache.node(n1).pods[0];

        let taken = cache.take_for_dry_run(a);
        assert_eq!(taken.info().uid, "uid-a");
        let slot = cache.node(n1);
        assert_eq!((slot.requested.milli_cpu, slot.pods.len(), slot.ports.len()), (500, 1, 0));
        assert!(!cache.with_affinity.contains(&a));
        assert_eq!(cache.pods().count(), 1, "only b is on a node");

        cache.put_back(taken);
        let slot = cache.node(n1);
        assert_eq!((slot.requested.milli_cpu, slot.pods.len(), slot.ports.len()), (1500, 2, 1));
        assert!(cache.with_affinity.contains(&a));
        assert_eq!(cache.pod_by_uid("uid-a").map(|s| s.node), Some(n1), "found by uid under the same id");
        assert_eq!(cache.pods().count(), 2);
    }

    #[test]
    fn nominations_live_on_their_node_while_they_last() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4", "8Gi", "110"));
        let n1 = cache.node_id("n1").unwrap();
        cache.nominate(pod("p", "1", ""), "n1");
        cache.nominate(pod("q", "1", ""), "gone");
        assert_eq!(cache.nomination("uid-p"), Some(n1));
        assert_eq!(cache.node(n1).nominated.len(), 1);
        assert_eq!(cache.nomination("uid-q").map(|id| cache.node(id).name.as_str()), Some("gone"));
        // Nominated elsewhere: it leaves the first node.
        cache.nominate(pod("p", "1", ""), "gone");
        assert!(cache.node(n1).nominated.is_empty());
        assert_eq!(cache.node(cache.node_id("gone").unwrap()).nominated.len(), 2);
        cache.unnominate("uid-p");
        cache.unnominate("uid-q");
        assert_eq!((cache.nomination("uid-p"), cache.nomination("uid-q")), (None, None));
        assert!(cache.node_id("gone").is_none(), "a node known only from nominations is forgotten with them");
        assert_eq!(cache.node_count(), 1);
    }

    #[test]
    fn relists_drop_what_is_gone() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4", "8Gi", "110"));
        cache.set_node(node("n2", "4", "8Gi", "110"));
        cache.set_pod(pod("a", "1", "n1"));
        cache.set_pod(pod("b", "1", "n2"));
        assert!(cache.retain_nodes(&["n1".to_string()].into()));
        assert_eq!(cache.node_order().len(), 1);
        assert!(cache.retain_pods(&["uid-a".to_string()].into()));
        assert_eq!(cache.pod_count(), 1);
        assert!(cache.node_id("n2").is_none());
    }
}
