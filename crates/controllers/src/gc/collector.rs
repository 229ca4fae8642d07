//! The collector's decisions, each checked against the live object before it acts (the
//! graph may lag behind the API):
//! - attempt to delete an object: classify its owners as solid (exist), dangling (gone,
//!   or a different object now under that name) or waiting (deleting their dependents
//!   in the foreground); with no solid owner left it is deleted, with some it only loses
//!   its references to the others;
//! - an owner deleting in the foreground loses its `foregroundDeletion` finalizer once no
//!   dependent that blocks it (blockOwnerDeletion=true) remains;
//! - an owner being orphaned: its dependents lose their references to it, then it loses
//!   its `orphan` finalizer.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::is_status;
use tracing::{debug, info};

use super::graph::{Graph, Identity, Observed, Task, FOREGROUND, ORPHAN};
use crate::discovery::KindIndex;
use crate::queue::WorkQueue;

/// Owners found absent are remembered (up to this many) to spare repeated lookups.
const ABSENT_CACHE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no served resource for kind {kind} of {api_version}")]
    UnknownKind { api_version: String, kind: String },
}

pub struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    kinds: RwLock<KindIndex>,
    absent: Mutex<HashSet<String>>,
    deletes: Arc<WorkQueue<String>>,
    orphans: Arc<WorkQueue<String>>,
}

/// How an object's owner stands.
enum Standing {
    Solid,
    Dangling,
    /// Being deleted in the foreground, waiting for its dependents.
    Waiting,
}

impl Collector {
    pub fn new(client: Client) -> Arc<Self> {
        Arc::new(Collector {
            client,
            graph: Mutex::default(),
            kinds: RwLock::default(),
            absent: Mutex::default(),
            deletes: WorkQueue::new(),
            orphans: WorkQueue::new(),
        })
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn graph_len(&self) -> usize {
        self.graph().len()
    }

    pub fn set_kinds(&self, kinds: KindIndex) {
        *self.kinds.write().unwrap_or_else(|e| e.into_inner()) = kinds;
    }

    fn schedule(&self, tasks: Vec<Task>) {
        for task in tasks {
            match task {
                Task::AttemptToDelete(uid) => self.deletes.add(uid),
                Task::Orphan(uid) => self.orphans.add(uid),
            }
        }
    }

    pub fn observe(&self, object: Observed) {
        let tasks = self.graph().upsert(object);
        self.schedule(tasks);
    }

    /// An object was deleted (uids are never reused: it is absent for good).
    pub fn forget(&self, uid: &str) {
        self.remember_absent(uid);
        let tasks = self.graph().remove(uid);
        self.schedule(tasks);
    }

    /// After a relist of `resource`: objects not seen in it were deleted meanwhile.
    pub fn forget_missing(&self, resource: &str, seen: &HashSet<String>) {
        let mut graph = self.graph();
        let missing: Vec<String> =
            graph.observed_from(resource).into_iter().filter(|uid| !seen.contains(uid)).collect();
        let tasks: Vec<Task> = missing.iter().flat_map(|uid| graph.remove(uid)).collect();
        drop(graph);
        missing.iter().for_each(|uid| self.remember_absent(uid));
        self.schedule(tasks);
    }

    /// The workers: deciding deletions and orphaning, until dropped.
    pub async fn work(self: Arc<Self>, deleters: usize, orphaners: usize) {
        let this = self.clone();
        let deleting = self.deletes.clone().run(deleters, move |uid: String| {
            let this = this.clone();
            async move { this.attempt_to_delete(&uid).await }
        });
        let this = self.clone();
        let orphaning = self.orphans.clone().run(orphaners, move |uid: String| {
            let this = this.clone();
            async move { this.orphan_dependents(&uid).await }
        });
        futures::join!(deleting, orphaning);
    }

    fn remember_absent(&self, uid: &str) {
        let mut absent = self.absent.lock().unwrap_or_else(|e| e.into_inner());
        if absent.len() >= ABSENT_CACHE {
            absent.clear();
        }
        absent.insert(uid.to_string());
    }

    fn known_absent(&self, uid: &str) -> bool {
        self.absent.lock().unwrap_or_else(|e| e.into_inner()).contains(uid)
    }

    /// The API for `identity`'s kind, in its namespace when the kind is namespaced;
    /// None when a namespaced kind has no namespace to look in.
    fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Option<Api<PartialObjectMeta<DynamicObject>>>, Error> {
        let kinds = self.kinds.read().unwrap_or_else(|e| e.into_inner());
        let served = kinds
            .find(api_version, kind)
            .ok_or_else(|| Error::UnknownKind { api_version: api_version.into(), kind: kind.into() })?;
        Ok(match (served.namespaced(), namespace) {
            (true, Some(ns)) => Some(Api::namespaced_with(self.client.clone(), ns, &served.resource)),
            (true, None) => None,
            (false, _) => Some(Api::all_with(self.client.clone(), &served.resource)),
        })
    }

    fn api(&self, identity: &Identity) -> Result<Option<Api<PartialObjectMeta<DynamicObject>>>, Error> {
        self.api_for(&identity.api_version, &identity.kind, identity.namespace.as_deref())
    }

    /// The live object with this identity (same uid), if it exists.
    async fn live(
        &self,
        identity: &Identity,
    ) -> Result<Option<(Api<PartialObjectMeta<DynamicObject>>, PartialObjectMeta<DynamicObject>)>, Error> {
        let Some(api) = self.api(identity)? else { return Ok(None) };
        let object = api.get_opt(&identity.name).await?;
        Ok(object.filter(|o| o.uid().as_deref() == Some(&identity.uid)).map(|o| (api, o)))
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph().get(uid).cloned() else { return Ok(()) };
        if node.is_virtual() {
            // Referenced but never observed: does it exist?
            if self.live(&node.identity).await?.is_none() {
                debug!(owner = ?node.identity, "owner does not exist");
                self.forget(uid);
            }
            return Ok(());
        }
        if node.deleting_dependents() {
            return self.finish_foreground_deletion(&node.identity).await;
        }
        if node.deleting || node.owners.is_empty() {
            return Ok(());
        }
        // Decide on the live object's references, not the graph's.
        let Some((api, latest)) = self.live(&node.identity).await? else { return Ok(()) };
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() || latest.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for owner in &owners {
            match self.standing(owner, node.identity.namespace.as_deref()).await? {
                Standing::Solid => solid.push(owner.uid.clone()),
                Standing::Dangling => dangling.push(owner.uid.clone()),
                Standing::Waiting => waiting.push(owner.uid.clone()),
            }
        }
        let identity = &node.identity;
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Keep the object for its solid owners; let go of the others.
            info!(object = ?identity, ?dangling, ?waiting, "removing references to owners that are gone or deleting");
            let kept: Vec<&OwnerReference> = owners.iter().filter(|o| solid.contains(&o.uid)).collect();
            return patch_owners(&api, &latest, json!(kept)).await;
        }
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        let has_dependents = !self.graph().dependents(uid).is_empty();
        let policy = if !waiting.is_empty() && has_dependents {
            // An owner waits for us: delete our own dependents first, so that its wait
            // covers them; if one of them is itself deleting in the foreground (a cycle),
            // stop blocking so that the cycle cannot deadlock.
            let cyclic = self.graph().dependents(uid).iter().any(|d| d.deleting_dependents());
            if cyclic {
                let unblocked: Vec<OwnerReference> =
                    owners.iter().cloned().map(|o| OwnerReference { block_owner_deletion: None, ..o }).collect();
                patch_owners(&api, &latest, json!(unblocked)).await?;
            }
            PropagationPolicy::Foreground
        } else if finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        info!(object = ?identity, ?policy, "deleting object whose owners are gone or deleting");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions { uid: Some(identity.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(&identity.name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, &[404, 409]) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `owner` (referenced from an object in `namespace`) exists.
    async fn standing(&self, owner: &OwnerReference, namespace: Option<&str>) -> Result<Standing, Error> {
        if self.known_absent(&owner.uid) {
            return Ok(Standing::Dangling);
        }
        let observed = self.graph().get(&owner.uid).filter(|n| !n.is_virtual()).map(|n| n.deleting_dependents());
        let deleting_dependents = match observed {
            Some(deleting_dependents) => deleting_dependents,
            None => {
                let Some(api) = self.api_for(&owner.api_version, &owner.kind, namespace)? else {
                    // A namespaced owner of a cluster-scoped object cannot exist.
                    return Ok(Standing::Dangling);
                };
                match api.get_opt(&owner.name).await? {
                    Some(live) if live.uid().as_deref() == Some(&owner.uid) => {
                        live.metadata.deletion_timestamp.is_some() && live.finalizers().iter().any(|f| f == FOREGROUND)
                    }
                    _ => {
                        self.remember_absent(&owner.uid);
                        return Ok(Standing::Dangling);
                    }
                }
            }
        };
        Ok(if deleting_dependents { Standing::Waiting } else { Standing::Solid })
    }

    /// An owner deleting in the foreground: done once no blocking dependent remains.
    async fn finish_foreground_deletion(&self, owner: &Identity) -> Result<(), Error> {
        let blocking: Vec<(String, bool)> =
            self.graph().blocking_dependents(&owner.uid).iter().map(|d| (d.identity.uid.clone(), d.deleting)).collect();
        if !blocking.is_empty() {
            // Those not yet deleting get (another) look; their removal requeues the owner.
            for (uid, deleting) in blocking {
                if !deleting {
                    self.deletes.add(uid);
                }
            }
            return Ok(());
        }
        info!(owner = ?owner, "dependents deleted; removing the foregroundDeletion finalizer");
        self.remove_finalizer(owner, FOREGROUND).await
    }

    /// An owner deleted with propagation Orphan: its dependents let go of it, then it goes.
    async fn orphan_dependents(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph().get(uid).cloned() else { return Ok(()) };
        if !node.orphaning() {
            return Ok(());
        }
        let dependents: Vec<Identity> = self.graph().dependents(uid).iter().map(|d| d.identity.clone()).collect();
        for dependent in dependents {
            let Some((api, latest)) = self.live(&dependent).await? else { continue };
            let owners = latest.metadata.owner_references.clone().unwrap_or_default();
            if owners.iter().any(|o| o.uid == uid) {
                let kept: Vec<&OwnerReference> = owners.iter().filter(|o| o.uid != uid).collect();
                patch_owners(&api, &latest, json!(kept)).await?;
            }
        }
        info!(owner = ?node.identity, "dependents orphaned; removing the orphan finalizer");
        self.remove_finalizer(&node.identity, ORPHAN).await
    }

    async fn remove_finalizer(&self, identity: &Identity, finalizer: &str) -> Result<(), Error> {
        let Some((api, latest)) = self.live(identity).await? else { return Ok(()) };
        let finalizers = latest.finalizers();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        // uid and resourceVersion make the patch conditional on what was read.
        let patch = json!({"metadata": {
            "uid": latest.metadata.uid,
            "resourceVersion": latest.metadata.resource_version,
            "finalizers": kept,
        }});
        match api.patch(&identity.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Replaces `object`'s ownerReferences, if it has not changed since it was read.
async fn patch_owners(
    api: &Api<PartialObjectMeta<DynamicObject>>,
    object: &PartialObjectMeta<DynamicObject>,
    owners: serde_json::Value,
) -> Result<(), Error> {
    let patch = json!({"metadata": {
        "uid": object.metadata.uid,
        "resourceVersion": object.metadata.resource_version,
        "ownerReferences": owners,
    }});
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, &[404]) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
