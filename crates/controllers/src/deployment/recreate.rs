//! The Recreate strategy: every old ReplicaSet is scaled to zero, and the new one is
//! created (or scaled up) only once no old pod is running any more.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::progress::complete;
use super::replicasets::{desired_replicas, replicas, split_new_and_old, status_replicas};
use super::{Error, Sync};
use crate::ownership;

/// How often to look again while old pods are still terminating. (Pods are not watched
/// by this controller: only Recreate needs them, and only for this wait.)
const OLD_PODS_POLL: Duration = Duration::from_millis(500);

impl Sync<'_> {
    pub(super) async fn rollout_recreate(&mut self, sets: Vec<ReplicaSet>) -> Result<(), Error> {
        let (new, mut old) = split_new_and_old(&self.d, sets);
        let mut new = self.new_replica_set(new, &old, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut().filter(|rs| replicas(rs) > 0) {
            scaled_down |= self.scale(rs, 0).await?;
        }
        if scaled_down || self.old_pods_running(new.as_ref(), &old).await? {
            if !scaled_down {
                self.requeue_after(OLD_PODS_POLL);
            }
            let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
            return self.sync_rollout_status(&all, new.as_ref()).await;
        }
        if new.is_none() {
            new = self.new_replica_set(None, &old, true).await?;
        }
        if let Some(rs) = new.as_mut() {
            let desired = desired_replicas(&self.d);
            if replicas(rs) != desired {
                self.scale(rs, desired).await?;
            }
        }
        if self.d.status.as_ref().is_some_and(|status| complete(&self.d, status)) {
            self.cleanup(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new.as_ref()).collect();
        self.sync_rollout_status(&all, new.as_ref()).await
    }

    /// Whether any pod of an old ReplicaSet still runs (or is still stopping).
    async fn old_pods_running(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<bool, Error> {
        if old.iter().any(|rs| status_replicas(rs) > 0) {
            return Ok(true);
        }
        if old.is_empty() {
            return Ok(false);
        }
        let selector = self.d.spec.as_ref().map(|s| &s.selector);
        let selector = selector.and_then(|s| skiff_api::selector::LabelSelector::from_api(s).ok());
        let Some(selector) = selector else { return Ok(false) };
        let query = selector.to_string();
        let pods = Api::<Pod>::namespaced(self.state.context.client.clone(), &self.namespace())
            .list(&ListParams::default().labels(&query))
            .await?;
        let new_uid = new.and_then(|rs| rs.uid());
        let old_uids: Vec<String> = old.iter().filter_map(|rs| rs.uid()).collect();
        Ok(pods.items.iter().any(|pod| {
            let owner = ownership::controller_of(&pod.metadata).map(|r| r.uid.clone());
            let of_old = owner.is_some_and(|uid| Some(&uid) != new_uid.as_ref() && old_uids.contains(&uid));
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            of_old && !matches!(phase, Some("Failed" | "Succeeded"))
        }))
    }
}
