//! The owner graph: one node per object that owns or is owned (by uid), edges from
//! ownerReferences. Owners that are referenced but not (yet) observed are *virtual*
//! nodes until a live lookup tells whether they exist. Applying a change returns the
//! work it makes necessary, as kube-controller-manager's graph builder does.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";

/// Which watch an observed object came from (group/version/plural).
pub type ResourceKey = String;

/// What identifies an object for the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// An object as a metadata watch saw it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub identity: Identity,
    pub resource: ResourceKey,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

/// Work for the collector.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    /// Decide whether this object goes: its owners are gone or being deleted in the
    /// foreground, it is deleting its own dependents, or (virtual) whether it exists.
    AttemptToDelete(String),
    /// Remove this owner's references from its dependents, then its `orphan` finalizer.
    Orphan(String),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub identity: Identity,
    /// None for a virtual node (referenced, not observed).
    pub resource: Option<ResourceKey>,
    pub owners: Vec<OwnerReference>,
    pub dependents: HashSet<String>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn is_virtual(&self) -> bool {
        self.resource.is_none()
    }

    /// Being deleted in the foreground: waits for its blocking dependents.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == FOREGROUND)
    }

    pub fn orphaning(&self) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == ORPHAN)
    }

    /// Whether this node's reference to `owner` blocks the owner's foreground deletion.
    pub fn blocks(&self, owner: &str) -> bool {
        self.owners.iter().any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
    }
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Uids of observed nodes from `resource`.
    pub fn observed_from(&self, resource: &str) -> Vec<String> {
        self.nodes.iter().filter(|(_, n)| n.resource.as_deref() == Some(resource)).map(|(uid, _)| uid.clone()).collect()
    }

    /// An object was added or changed.
    pub fn upsert(&mut self, object: Observed) -> Vec<Task> {
        let uid = object.identity.uid.clone();
        let mut tasks = Vec::new();
        let previous = self.nodes.get(&uid).filter(|n| !n.is_virtual()).cloned();
        let old_owners: Vec<OwnerReference> = previous.as_ref().map(|n| n.owners.clone()).unwrap_or_default();
        let owners_changed = previous.is_none() || !same_references(&old_owners, &object.owners);

        // Edges: detach from owners no longer referenced, attach to new ones.
        for gone in old_owners.iter().filter(|r| !object.owners.iter().any(|o| o.uid == r.uid)) {
            self.detach(&uid, &gone.uid, &mut tasks);
        }
        let mut needs_attention = false;
        for owner in &object.owners {
            let node = self.nodes.entry(owner.uid.clone()).or_insert_with(|| {
                // Not observed (yet): a virtual node, checked with a live lookup.
                tasks.push(Task::AttemptToDelete(owner.uid.clone()));
                Node {
                    identity: Identity {
                        api_version: owner.api_version.clone(),
                        kind: owner.kind.clone(),
                        namespace: object.identity.namespace.clone(),
                        name: owner.name.clone(),
                        uid: owner.uid.clone(),
                    },
                    resource: None,
                    owners: Vec::new(),
                    dependents: HashSet::new(),
                    deleting: false,
                    finalizers: Vec::new(),
                }
            });
            node.dependents.insert(uid.clone());
            needs_attention |= node.is_virtual() || node.deleting_dependents();
            // A changed reference may unblock an owner deleting in the foreground.
            if owners_changed && node.deleting_dependents() {
                tasks.push(Task::AttemptToDelete(owner.uid.clone()));
            }
        }
        if owners_changed {
            for old in &old_owners {
                if self.nodes.get(&old.uid).is_some_and(Node::deleting_dependents) {
                    tasks.push(Task::AttemptToDelete(old.uid.clone()));
                }
            }
        }

        let dependents = self.nodes.get(&uid).map(|n| n.dependents.clone()).unwrap_or_default();
        let node = Node {
            identity: object.identity,
            resource: Some(object.resource),
            owners: object.owners,
            dependents,
            deleting: object.deleting,
            finalizers: object.finalizers,
        };
        let was_orphaning = previous.as_ref().is_some_and(Node::orphaning);
        let was_deleting_dependents = previous.as_ref().is_some_and(Node::deleting_dependents);
        if node.orphaning() && !was_orphaning {
            tasks.push(Task::Orphan(uid.clone()));
        }
        if node.deleting_dependents() && !was_deleting_dependents {
            tasks.extend(node.dependents.iter().cloned().map(Task::AttemptToDelete));
            tasks.push(Task::AttemptToDelete(uid.clone()));
        }
        if node.deleting_dependents() || (needs_attention && owners_changed) {
            tasks.push(Task::AttemptToDelete(uid.clone()));
        }
        // A node that became virtual-then-observed keeps its dependents.
        self.nodes.insert(uid, node);
        dedup(tasks)
    }

    /// An object is gone (deleted, or found absent by a live lookup when virtual):
    /// its dependents must be looked at, and owners waiting for it may proceed.
    pub fn remove(&mut self, uid: &str) -> Vec<Task> {
        let mut tasks = Vec::new();
        let Some(node) = self.nodes.remove(uid) else { return tasks };
        for owner in &node.owners {
            self.detach(uid, &owner.uid, &mut tasks);
        }
        tasks.extend(node.dependents.iter().cloned().map(Task::AttemptToDelete));
        if !node.dependents.is_empty() {
            // The dependents still point here: keep a virtual node for their edges
            // until they are deleted or let go of it.
            self.nodes.insert(
                uid.to_string(),
                Node { resource: None, owners: Vec::new(), deleting: false, finalizers: Vec::new(), ..node },
            );
        }
        dedup(tasks)
    }

    fn detach(&mut self, dependent: &str, owner: &str, tasks: &mut Vec<Task>) {
        let Some(node) = self.nodes.get_mut(owner) else { return };
        node.dependents.remove(dependent);
        if node.deleting_dependents() {
            tasks.push(Task::AttemptToDelete(owner.to_string()));
        }
        if node.is_virtual() && node.dependents.is_empty() {
            self.nodes.remove(owner);
        }
    }

    /// The dependents of `uid` that block its foreground deletion.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<&Node> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents.iter().filter_map(|d| self.nodes.get(d)).filter(|d| d.blocks(uid)).collect()
    }

    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents.iter().filter_map(|d| self.nodes.get(d)).collect()
    }
}

fn same_references(a: &[OwnerReference], b: &[OwnerReference]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| x.uid == y.uid && x.block_owner_deletion == y.block_owner_deletion)
}

fn dedup(tasks: Vec<Task>) -> Vec<Task> {
    let mut seen = HashSet::new();
    tasks.into_iter().filter(|t| seen.insert(t.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("cm-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    fn object(uid: &str, owners: Vec<OwnerReference>) -> Observed {
        Observed {
            identity: Identity {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("default".into()),
                name: format!("cm-{uid}"),
                uid: uid.into(),
            },
            resource: "/v1/configmaps".into(),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn an_unobserved_owner_is_virtual_and_looked_up() {
        let mut graph = Graph::default();
        let tasks = graph.upsert(object("child", vec![reference("owner", false)]));
        assert!(graph.get("owner").unwrap().is_virtual());
        assert!(tasks.contains(&Task::AttemptToDelete("owner".into())));
        // Observing the owner makes it solid, with its dependent kept.
        let tasks = graph.upsert(object("owner", vec![]));
        assert!(!graph.get("owner").unwrap().is_virtual());
        assert!(graph.get("owner").unwrap().dependents.contains("child"));
        assert!(tasks.is_empty(), "{tasks:?}");
    }

    #[test]
    fn a_dependent_of_an_observed_owner_needs_no_work() {
        let mut graph = Graph::default();
        graph.upsert(object("owner", vec![]));
        assert!(graph.upsert(object("child", vec![reference("owner", false)])).is_empty());
    }

    #[test]
    fn removing_an_owner_queues_its_dependents() {
        let mut graph = Graph::default();
        graph.upsert(object("owner", vec![]));
        graph.upsert(object("a", vec![reference("owner", false)]));
        graph.upsert(object("b", vec![reference("owner", false)]));
        let mut tasks = graph.remove("owner");
        tasks.sort_by_key(|t| format!("{t:?}"));
        assert_eq!(tasks, vec![Task::AttemptToDelete("a".into()), Task::AttemptToDelete("b".into())]);
        assert!(graph.get("owner").unwrap().is_virtual());
        graph.remove("a");
        graph.remove("b");
        assert!(graph.get("owner").is_none(), "a virtual node without dependents is dropped");
        assert!(graph.is_empty());
    }

    #[test]
    fn foreground_deletion_queues_dependents_and_waits_for_blocking_ones() {
        let mut graph = Graph::default();
        graph.upsert(object("owner", vec![]));
        graph.upsert(object("blocking", vec![reference("owner", true)]));
        graph.upsert(object("free", vec![reference("owner", false)]));
        let mut deleting = object("owner", vec![]);
        deleting.deleting = true;
        deleting.finalizers = vec![FOREGROUND.into()];
        let tasks = graph.upsert(deleting);
        for uid in ["blocking", "free", "owner"] {
            assert!(tasks.contains(&Task::AttemptToDelete(uid.into())), "{uid}: {tasks:?}");
        }
        let blocking: Vec<_> = graph.blocking_dependents("owner").iter().map(|n| n.identity.uid.clone()).collect();
        assert_eq!(blocking, vec!["blocking".to_string()]);
        // The blocking dependent going away lets the owner proceed.
        assert!(graph.remove("blocking").contains(&Task::AttemptToDelete("owner".into())));
        assert!(graph.blocking_dependents("owner").is_empty());
    }

    #[test]
    fn the_orphan_finalizer_on_a_deleted_owner_queues_orphaning_once() {
        let mut graph = Graph::default();
        graph.upsert(object("owner", vec![]));
        let mut deleting = object("owner", vec![]);
        deleting.deleting = true;
        deleting.finalizers = vec![ORPHAN.into()];
        assert_eq!(graph.upsert(deleting.clone()), vec![Task::Orphan("owner".into())]);
        assert!(graph.upsert(deleting).is_empty());
    }

    #[test]
    fn dropping_a_reference_detaches_the_dependent() {
        let mut graph = Graph::default();
        graph.upsert(object("owner", vec![]));
        graph.upsert(object("child", vec![reference("owner", false)]));
        graph.upsert(object("child", vec![]));
        assert!(graph.get("owner").unwrap().dependents.is_empty());
    }
}
