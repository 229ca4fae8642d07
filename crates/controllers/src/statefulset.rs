//! StatefulSet controller (kube-controller-manager's statefulset-controller): pods with
//! stable names `<set>-<ordinal>` (from spec.ordinals.start), stable hostnames under the
//! governing service (hostname = pod name, subdomain = serviceName), and a claim per
//! volumeClaimTemplate named `<template>-<set>-<ordinal>` that outlives the pod unless
//! persistentVolumeClaimRetentionPolicy says otherwise (through ownerReferences, which
//! the garbage collector follows).
//!
//! OrderedReady creates one pod at a time in ordinal order, each once the ones before it
//! are Running and Ready, and removes from the highest ordinal down; Parallel does all at
//! once. Templates are ControllerRevisions; RollingUpdate replaces pods at ordinals at or
//! above the partition from the highest down, one at a time, waiting for readiness;
//! OnDelete only recreates pods the user deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use skiff_client::events::reference;
use skiff_client::is_status;
use tracing::debug;

use crate::history::{self, REVISION_HASH_LABEL};
use crate::Context;

pub const NAME: &str = "statefulset-controller";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub async fn run(context: Arc<Context>) {
    let client = context.client.clone();
    Controller::new(Api::<StatefulSet>::all(client), watcher::Config::default())
        .owns_shared_stream(context.informers.pods().touched())
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "statefulset reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

fn owner_reference<K: Resource<DynamicType = ()>>(object: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: object.name_any(),
        uid: object.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn is_running_and_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn revision_of(pod: &Pod) -> Option<&String> {
    pod.labels().get(REVISION_HASH_LABEL)
}

/// The claim name of a volumeClaimTemplate for an ordinal.
fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

struct Sync<'a> {
    context: &'a Context,
    set: StatefulSet,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
}

async fn reconcile(set: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, kube::Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_default();
    let client = &context.client;
    let api = Api::<StatefulSet>::namespaced(client.clone(), &namespace);
    let Some(set) = api.get_opt(&set.name_any()).await? else { return Ok(Action::await_change()) };
    let sync = Sync {
        context: &context,
        set,
        pods: Api::namespaced(client.clone(), &namespace),
        claims: Api::namespaced(client.clone(), &namespace),
    };
    let revisions = Api::<ControllerRevision>::namespaced(client.clone(), &namespace);
    let status = sync.run(&revisions).await?;
    if sync.set.status.as_ref() != Some(&status) {
        let mut written = sync.set.clone();
        written.status = Some(status);
        api.replace_status(&written.name_any(), &PostParams::default(), &written).await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

impl Sync<'_> {
    fn event(&self, warning: bool, action: &'static str, reason: &'static str, note: String) {
        let events = self.context.events.reporting_as(NAME);
        if warning {
            events.warning(reference(&self.set), action, reason, note);
        } else {
            events.normal(reference(&self.set), action, reason, note);
        }
    }

    async fn run(&self, revisions_api: &Api<ControllerRevision>) -> Result<StatefulSetStatus, kube::Error> {
        let set = &self.set;
        let name = set.name_any();
        let spec = set.spec.clone().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0);
        let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
        let on_delete = spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("OnDelete");
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0);

        // Revisions: the update revision is the current template; the current revision
        // is what the set last completed rolling out.
        let mut revisions = history::list(revisions_api, &uid).await?;
        let template = serde_json::to_value(&spec.template).map_err(kube::Error::SerdeError)?;
        let collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let (update_hash, _) = history::ensure(
            revisions_api,
            &mut revisions,
            owner_reference(set),
            spec.selector.match_labels.clone().unwrap_or_default(),
            history::template_patch(&template),
            collision_count,
        )
        .await?;
        let update_revision = format!("{name}-{update_hash}");
        let current_revision = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .filter(|r| revisions.iter().any(|rev| rev.name_any() == *r))
            .unwrap_or_else(|| update_revision.clone());
        let template_of = |revision: &str| -> PodTemplateSpec {
            revisions
                .iter()
                .find(|r| r.name_any() == revision)
                .and_then(|r| r.data.as_ref())
                .and_then(|d| serde_json::from_value(d.0["spec"]["template"].clone()).ok())
                .unwrap_or_else(|| spec.template.clone())
        };
        let hash_of = |revision: &str| revision.strip_prefix(&format!("{name}-")).unwrap_or(revision).to_string();

        let pods: Vec<Pod> = self
            .pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| p.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == uid))
            .collect();
        let ordinal_of = |pod: &Pod| -> Option<i32> { pod.name_any().strip_prefix(&format!("{name}-"))?.parse().ok() };
        let by_ordinal: BTreeMap<i32, &Pod> = pods.iter().filter_map(|p| Some((ordinal_of(p)?, p))).collect();
        let wanted = start..start + replicas;

        // Failed pods are deleted and recreated.
        for pod in by_ordinal.values().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        {
            if pod.metadata.deletion_timestamp.is_none() {
                self.delete_pod(pod).await?;
            }
        }

        // Scale up (and recreate missing pods), in ordinal order.
        let mut blocked = false;
        for ordinal in wanted.clone() {
            match by_ordinal.get(&ordinal) {
                Some(pod) => {
                    if !parallel && (pod.metadata.deletion_timestamp.is_some() || !is_running_and_ready(pod)) {
                        blocked = true;
                        break;
                    }
                }
                None => {
                    // Pods below the partition keep the current revision; others get the update.
                    let revision = if !on_delete && ordinal < start + partition {
                        current_revision.clone()
                    } else {
                        update_revision.clone()
                    };
                    self.create_pod(ordinal, &template_of(&revision), &hash_of(&revision)).await?;
                    if !parallel {
                        blocked = true;
                        break;
                    }
                }
            }
        }

        // Scale down: ordinals beyond the wanted range, highest first.
        let condemned: Vec<&Pod> =
            by_ordinal.iter().rev().filter(|(o, _)| !wanted.contains(o)).map(|(_, p)| *p).collect();
        let all_ready = by_ordinal.iter().filter(|(o, _)| wanted.contains(o)).all(|(_, p)| is_running_and_ready(p));
        if !condemned.is_empty() && (parallel || (!blocked && all_ready)) {
            let retention = spec.persistent_volume_claim_retention_policy.as_ref();
            let delete_claims = retention.and_then(|r| r.when_scaled.as_deref()) == Some("Delete");
            for pod in if parallel { &condemned[..] } else { &condemned[..1] } {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if delete_claims {
                    self.claims_owned_by_pod(pod, ordinal_of(pod).unwrap_or_default()).await?;
                }
                self.delete_pod(pod).await?;
            }
        }

        // Rolling update: the highest pod at or above the partition not yet updated goes,
        // once every pod is Running and Ready.
        if !on_delete && !blocked && all_ready && condemned.is_empty() {
            let stale = by_ordinal
                .iter()
                .rev()
                .filter(|(o, _)| wanted.contains(o) && **o >= start + partition)
                .find(|(_, p)| revision_of(p) != Some(&update_hash));
            if let Some((_, pod)) = stale {
                if pod.metadata.deletion_timestamp.is_none() {
                    self.delete_pod(pod).await?;
                }
            }
        }

        // Status, from the pods as listed.
        let live: Vec<&Pod> =
            by_ordinal.values().copied().filter(|p| p.metadata.deletion_timestamp.is_none()).collect();
        let ready = live.iter().filter(|p| is_running_and_ready(p)).count() as i32;
        let current_hash = hash_of(&current_revision);
        let current = live.iter().filter(|p| revision_of(p) == Some(&current_hash)).count() as i32;
        let updated = live.iter().filter(|p| revision_of(p) == Some(&update_hash)).count() as i32;
        let mut status = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            replicas: live.len() as i32,
            ready_replicas: Some(ready),
            available_replicas: Some(ready),
            current_replicas: Some(current),
            updated_replicas: Some(updated),
            current_revision: Some(current_revision.clone()),
            update_revision: Some(update_revision.clone()),
            collision_count: Some(collision_count),
            conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
        };
        // The update is complete when every wanted pod runs it and is ready.
        if updated == replicas && ready == replicas && live.len() as i32 == replicas {
            status.current_revision = Some(update_revision.clone());
            status.current_replicas = Some(updated);
        }
        let in_use: Vec<String> = live
            .iter()
            .filter_map(|p| revision_of(p).cloned())
            .chain([update_hash, hash_of(&current_revision)])
            .collect();
        let limit = spec.revision_history_limit.unwrap_or(10).max(0) as usize;
        history::prune(revisions_api, &revisions, &in_use, limit).await?;
        Ok(status)
    }

    async fn create_pod(&self, ordinal: i32, template: &PodTemplateSpec, hash: &str) -> Result<(), kube::Error> {
        let set = &self.set;
        let set_name = set.name_any();
        let spec = set.spec.clone().unwrap_or_default();
        let pod_name = format!("{set_name}-{ordinal}");
        let meta = template.metadata.clone().unwrap_or_default();
        let mut pod_spec = template.spec.clone().unwrap_or_default();
        let mut labels = meta.labels.unwrap_or_default();
        labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        labels.insert(REVISION_HASH_LABEL.into(), hash.into());
        pod_spec.hostname = Some(pod_name.clone());
        if !spec.service_name.as_deref().unwrap_or_default().is_empty() {
            pod_spec.subdomain = spec.service_name.clone();
        }

        // Claims first, so the pod's volumes exist when it starts.
        let retention = spec.persistent_volume_claim_retention_policy.as_ref();
        let owned_by_set = retention.and_then(|r| r.when_deleted.as_deref()) == Some("Delete");
        for template in spec.volume_claim_templates.iter().flatten() {
            let template_name = template.name_any();
            let claim = claim_name(&template_name, &set_name, ordinal);
            let mut claim_labels = template.metadata.labels.clone().unwrap_or_default();
            claim_labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            let pvc = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim.clone()),
                    labels: Some(claim_labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: owned_by_set
                        .then(|| vec![OwnerReference { controller: None, ..owner_reference(set) }]),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            };
            match self.claims.create(&PostParams::default(), &pvc).await {
                Ok(_) => self.event(
                    false,
                    "Create",
                    "SuccessfulCreate",
                    format!("create Claim {claim} Pod {pod_name} in StatefulSet {set_name} success"),
                ),
                Err(e) if is_status(&e, &[409]) => {}
                Err(e) => return Err(e),
            }
            let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
            volumes.retain(|v| v.name != template_name);
            volumes.push(Volume {
                name: template_name,
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: claim, read_only: None }),
                ..Volume::default()
            });
        }

        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(pod_name.clone()),
                namespace: set.namespace(),
                labels: Some(labels),
                annotations: meta.annotations,
                owner_references: Some(vec![owner_reference(set)]),
                ..ObjectMeta::default()
            },
            spec: Some(pod_spec),
            status: None,
        };
        match self.pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.event(
                    false,
                    "Create",
                    "SuccessfulCreate",
                    format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            // The old pod of that name is still terminating: the next sync makes it.
            Err(e) if is_status(&e, &[409]) => Ok(()),
            Err(e) => {
                self.event(
                    true,
                    "Create",
                    "FailedCreate",
                    format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                );
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, pod: &Pod) -> Result<(), kube::Error> {
        let (pod_name, set_name) = (pod.name_any(), self.set.name_any());
        match self.pods.delete(&pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                self.event(
                    false,
                    "Delete",
                    "SuccessfulDelete",
                    format!("delete Pod {pod_name} in StatefulSet {set_name} successful"),
                );
                Ok(())
            }
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// whenScaled: Delete — a condemned pod's claims are owned by the pod, so that they go
    /// with it.
    async fn claims_owned_by_pod(&self, pod: &Pod, ordinal: i32) -> Result<(), kube::Error> {
        let spec = self.set.spec.clone().unwrap_or_default();
        for template in spec.volume_claim_templates.iter().flatten() {
            let claim = claim_name(&template.name_any(), &self.set.name_any(), ordinal);
            let Some(mut pvc) = self.claims.get_opt(&claim).await? else { continue };
            let owners = pvc.metadata.owner_references.get_or_insert_with(Vec::new);
            if owners.iter().any(|o| Some(&o.uid) == pod.metadata.uid.as_ref()) {
                continue;
            }
            owners.push(OwnerReference { controller: None, ..owner_reference(pod) });
            match self.claims.replace(&claim, &PostParams::default(), &pvc).await {
                Ok(_) => {}
                // Changed meanwhile: the next sync sees it again.
                Err(e) if is_status(&e, &[404, 409]) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
