//! Deployment controller (kube-controller-manager's deployment-controller): rolls a
//! Deployment's pods from one template to the next through ReplicaSets, one per template.
//!
//! Each sync claims the Deployment's ReplicaSets (adopt/release by selector), then:
//! - a deleting Deployment only gets its status updated;
//! - a paused one, or one whose replicas changed, is scaled ([`sync`]: proportional
//!   scaling over the ReplicaSets, history cleanup);
//! - otherwise it rolls out by its strategy: [`rolling`] (maxSurge/maxUnavailable) or
//!   [`recreate`] (all old pods gone before new ones start).
//!
//! Status and conditions (Available, Progressing with its deadline) are [`progress`];
//! ReplicaSet naming, revisions and annotations are [`replicasets`]. Rollback is
//! kubectl's (`rollout undo` copies an old ReplicaSet's template back into the
//! Deployment); the controller then finds that ReplicaSet to be the new one again.

mod progress;
mod recreate;
pub mod replicasets;
mod rolling;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use skiff_api::selector::LabelSelector;
use skiff_client::events::Recorder;
use skiff_client::is_status;
use skiff_client::synced::Synced;
use tracing::debug;

use crate::ownership::{self, Claim};
use crate::Context;

pub const NAME: &str = "deployment-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the replica set cache stopped")]
    CacheStopped,
    #[error("replica set {0} exists with another template: retrying with a new collision count")]
    HashCollision(String),
}

struct State {
    context: Arc<Context>,
    sets: Store<ReplicaSet>,
    sets_synced: Synced,
    events: Recorder,
}

pub async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    let (sets, writer) = reflector::store();
    let controller = Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default());
    let deployments = controller.store();
    let sets_synced = Synced::of(&sets);
    let state = Arc::new(State { events: context.events.reporting_as(NAME), context, sets, sets_synced });
    let set_events = watcher(Api::<ReplicaSet>::all(client), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    controller
        .watches_stream(set_events, move |rs| owners_of(&deployments, &rs))
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "deployment reconcile failed");
            }
        })
        .await;
}

fn error_policy(_: Arc<Deployment>, error: &Error, _: Arc<State>) -> Action {
    debug!(%error, "retrying deployment");
    match error {
        // A conflict is a cache a write or two behind (ours, mostly): it catches up in
        // milliseconds, and the rollout waits on this retry (kube-controller-manager's
        // queue retries first after 5 ms).
        Error::Api(e) if is_status(e, &[409]) => Action::requeue(Duration::from_millis(10)),
        _ => Action::requeue(Duration::from_millis(200)),
    }
}

/// The Deployments a ReplicaSet event concerns: its controller, or for an orphan every
/// Deployment of its namespace whose selector matches.
fn owners_of(deployments: &Store<Deployment>, rs: &ReplicaSet) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.namespace().unwrap_or_default();
    if let Some(owner) = ownership::controller_of(&rs.metadata) {
        if owner.kind != "Deployment" {
            return Vec::new();
        }
        return vec![ObjectRef::new(&owner.name).within(&namespace)];
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| selector_of(d).is_some_and(|s| !s.is_empty() && s.matches(&rs.metadata.labels)))
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

fn selector_of(d: &Deployment) -> Option<LabelSelector> {
    d.spec.as_ref().and_then(|s| LabelSelector::from_api(&s.selector).ok())
}

async fn reconcile(d: Arc<Deployment>, state: Arc<State>) -> Result<Action, Error> {
    state.sets_synced.wait().await.map_err(|_| Error::CacheStopped)?;
    let Some(selector) = selector_of(&d).filter(|s| !s.is_empty()) else { return Ok(Action::await_change()) };
    let mut sync = Sync { state: &state, d: (*d).clone(), requeue: None };
    let sets = sync.claim_replica_sets(&selector).await?;
    sync.run(sets).await?;
    Ok(sync.requeue.map_or_else(Action::await_change, Action::requeue))
}

/// One sync of one Deployment: a working copy that follows every write.
pub(crate) struct Sync<'a> {
    state: &'a State,
    d: Deployment,
    /// When to look at the Deployment again without an event (deadlines, old pods).
    requeue: Option<Duration>,
}

impl Sync<'_> {
    fn namespace(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn sets_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.state.context.client.clone(), &self.namespace())
    }

    fn api(&self) -> Api<Deployment> {
        Api::namespaced(self.state.context.client.clone(), &self.namespace())
    }

    fn requeue_after(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }

    async fn run(&mut self, sets: Vec<ReplicaSet>) -> Result<(), Error> {
        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(sets).await;
        }
        self.check_paused_conditions().await?;
        let spec = self.d.spec.clone().unwrap_or_default();
        if spec.paused == Some(true) || self.is_scaling_event(&sets) {
            return self.sync(sets).await;
        }
        match spec.strategy.and_then(|s| s.type_).as_deref() {
            Some("Recreate") => self.rollout_recreate(sets).await,
            _ => self.rollout_rolling(sets).await,
        }
    }

    /// The ReplicaSets this Deployment controls, adopting and releasing by selector.
    async fn claim_replica_sets(&mut self, selector: &LabelSelector) -> Result<Vec<ReplicaSet>, Error> {
        let uid = self.d.uid().unwrap_or_default();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let namespace = self.namespace();
        let api = self.sets_api();
        let mut owned = Vec::new();
        let mut may_adopt = None;
        for rs in self.state.sets.state().iter().filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str())) {
            match ownership::claim(&uid, deleting, selector, &rs.metadata) {
                Claim::Owned => owned.push((**rs).clone()),
                Claim::Ignore => {}
                Claim::Release => {
                    ownership::release(&api, &rs.name_any(), rs.uid().as_deref().unwrap_or_default(), &uid).await?
                }
                Claim::Adopt => {
                    if may_adopt.is_none() {
                        let fresh = self.api().get_opt(&self.d.name_any()).await?;
                        may_adopt = Some(fresh.is_some_and(|f| {
                            f.uid().as_deref() == Some(uid.as_str()) && f.metadata.deletion_timestamp.is_none()
                        }));
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    let owner = ownership::controller_reference(&self.d);
                    let rs_uid = rs.uid().unwrap_or_default();
                    match ownership::adopt(&api, &rs.name_any(), &rs_uid, owner.clone()).await {
                        Ok(()) => {
                            let mut adopted = (**rs).clone();
                            adopted.metadata.owner_references.get_or_insert_with(Vec::new).push(owner);
                            owned.push(adopted);
                        }
                        Err(e) if is_status(&e, &[404, 409, 422]) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(owned)
    }

    fn condition(&self, type_: &str) -> Option<&DeploymentCondition> {
        progress::condition(self.d.status.as_ref(), type_)
    }

    /// progressDeadlineSeconds is set (and not "never": MaxInt32).
    fn has_progress_deadline(&self) -> bool {
        self.d.spec.as_ref().and_then(|s| s.progress_deadline_seconds).is_some_and(|s| s != i32::MAX)
    }

    /// Writes the Deployment's status (with the cached resourceVersion: a stale cache
    /// conflicts rather than overwriting newer state) and follows the result.
    async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let mut updated = self.d.clone();
        updated.status = Some(status);
        self.d = self.api().replace_status(&self.d.name_any(), &PostParams::default(), &updated).await?;
        Ok(())
    }

    /// Sets the Deployment's revision annotation.
    async fn set_deployment_revision(&mut self, revision: String) -> Result<(), Error> {
        let current = self.d.metadata.annotations.as_ref().and_then(|a| a.get(replicasets::REVISION));
        if current == Some(&revision) || revision.is_empty() {
            return Ok(());
        }
        let patch = json!({"metadata": {
            "annotations": {replicasets::REVISION: revision},
            "resourceVersion": self.d.resource_version(),
        }});
        self.d = self.api().patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }
}
