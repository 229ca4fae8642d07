//! A Deployment's ReplicaSets: the pod-template-hash, which ReplicaSet is the new one,
//! revisions and the annotations the controller keeps on ReplicaSets, maxSurge and
//! maxUnavailable, and creating or scaling ReplicaSets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::PostParams;
use kube::ResourceExt;
use serde_json::Value;
use skiff_client::events::reference;
use skiff_client::is_status;

use super::progress::{new_condition, set_condition, PROGRESSING};
use super::{Error, Sync};
use crate::ownership;

/// The label that tells the pods of one template from another's.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Longest revision-history annotation kept, in characters (Kubernetes' limit).
const MAX_REVISION_HISTORY_CHARS: usize = 2000;

/// Deployment annotations that are not copied to its ReplicaSets.
fn skip_copy(annotation: &str) -> bool {
    matches!(
        annotation,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | REVISION_HISTORY
            | DESIRED_REPLICAS
            | MAX_REPLICAS
            | "deprecated.deployment.rollback.to"
    )
}

/// The hash of a pod template as Kubernetes computes it: FNV-1a (32 bits) over the
/// template's serialized form, then the collision count, rendered in decimal with each
/// digit mapped to a character that cannot spell words.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    write(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        write(&bytes);
    }
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string().bytes().map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()])).collect()
}

/// The template as a value to compare: without the hash label, and with empty maps and
/// lists the same as absent ones (as Kubernetes' semantic equality has them).
fn comparable(template: Option<&PodTemplateSpec>) -> Value {
    fn prune(value: &mut Value) -> bool {
        match value {
            Value::Null => true,
            Value::Object(map) => {
                map.retain(|_, v| !prune(v));
                map.is_empty()
            }
            Value::Array(items) => {
                items.iter_mut().for_each(|v| {
                    prune(v);
                });
                items.is_empty()
            }
            _ => false,
        }
    }
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(labels) = value.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    prune(&mut value);
    value
}

/// Whether two templates are the same but for the pod-template-hash label.
pub fn equal_ignoring_hash(a: Option<&PodTemplateSpec>, b: Option<&PodTemplateSpec>) -> bool {
    comparable(a) == comparable(b)
}

pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

pub fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

pub fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

/// The revision annotation as a number (0 when absent or not a number).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

pub fn desired_replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// An int, or a percentage of `total` rounded up (surge) or down (unavailable).
fn scaled(value: Option<&IntOrString>, default_percent: i32, total: i32, round_up: bool) -> i32 {
    let percent = match value {
        Some(IntOrString::Int(n)) => return *n,
        Some(IntOrString::String(s)) => s.strip_suffix('%').and_then(|p| p.parse::<i32>().ok()).unwrap_or(0),
        None => default_percent,
    };
    let scaled = i64::from(percent) * i64::from(total);
    (if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) }) as i32
}

/// (maxSurge, maxUnavailable) in pods; both zero would never progress, so unavailable
/// becomes 1 then.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let desired = desired_replicas(d);
    let rolling = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), 25, desired, true);
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), 25, desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) {
        fenceposts(d).0
    } else {
        0
    }
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = desired_replicas(d);
    if !is_rolling(d) || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}

pub fn total_replicas<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    sets.into_iter().map(replicas).sum()
}

/// Sets the desired-replicas and max-replicas annotations; whether they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Copies the Deployment's annotations (but its own bookkeeping) to the ReplicaSet, and
/// raises the ReplicaSet's revision to `new_revision`, remembering the revision it had
/// (a rollback reuses an old ReplicaSet). Whether anything changed.
pub fn set_new_replica_set_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in d.metadata.annotations.iter().flatten() {
        if !skip_copy(key) && annotations.get(key) != Some(value) {
            annotations.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    let old = annotations.get(REVISION).cloned();
    let old_number = match old.as_deref() {
        None | Some("") => 0,
        Some(text) => match text.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_number < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            revisions.push(&old);
            // Drop the oldest entries beyond the length limit.
            while revisions.join(",").len() > MAX_REVISION_HISTORY_CHARS && revisions.len() > 1 {
                revisions.remove(0);
            }
            annotations.insert(REVISION_HISTORY.into(), revisions.join(","));
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, desired_replicas(d), desired_replicas(d) + max_surge(d));
    }
    changed
}

/// The ReplicaSets sorted oldest first (creation time, then name).
pub fn by_creation(sets: &mut [ReplicaSet]) {
    sets.sort_by(|a, b| {
        let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a).cmp(&created(b)).then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// The new ReplicaSet (the oldest one whose template is the Deployment's) and the others.
pub fn split_new_and_old(d: &Deployment, mut sets: Vec<ReplicaSet>) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    by_creation(&mut sets);
    let template = d.spec.as_ref().map(|s| &s.template);
    let new =
        sets.iter().position(|rs| equal_ignoring_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref()), template));
    let new = new.map(|i| sets.remove(i));
    (new, sets)
}

impl Sync<'_> {
    /// Scales the ReplicaSet (and refreshes its replica annotations), recording the event
    /// Kubernetes records. Returns whether its size changed.
    pub(super) async fn scale(&mut self, rs: &mut ReplicaSet, to: i32) -> Result<bool, Error> {
        let from = replicas(rs);
        let desired = desired_replicas(&self.d);
        let mut updated = rs.clone();
        let annotations_changed = set_replicas_annotations(&mut updated, desired, desired + max_surge(&self.d));
        if from == to && !annotations_changed {
            return Ok(false);
        }
        updated.spec.get_or_insert_with(ReplicaSetSpec::default).replicas = Some(to);
        *rs = self.sets_api().replace(&rs.name_any(), &PostParams::default(), &updated).await?;
        if from != to {
            let direction = if to > from { "up" } else { "down" };
            let note = format!("Scaled {direction} replica set {} from {from} to {to}", rs.name_any());
            self.state.events.normal(reference(&self.d), "Scale", "ScalingReplicaSet", note);
        }
        Ok(from != to)
    }

    /// Writes the ReplicaSet's annotations and minReadySeconds when they differ.
    async fn refresh(&mut self, rs: &mut ReplicaSet, new_revision: i64) -> Result<(), Error> {
        let mut updated = rs.clone();
        let annotations_changed = set_new_replica_set_annotations(&self.d, &mut updated, new_revision, true);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let spec = updated.spec.get_or_insert_with(ReplicaSetSpec::default);
        if annotations_changed || spec.min_ready_seconds != min_ready {
            spec.min_ready_seconds = min_ready;
            *rs = self.sets_api().replace(&rs.name_any(), &PostParams::default(), &updated).await?;
        }
        Ok(())
    }

    /// The new ReplicaSet, brought up to date (revision, annotations), or created when
    /// `create` and there is none; and the Deployment's revision set to it.
    pub(super) async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = old.iter().map(revision).max().unwrap_or(0) + 1;
        if let Some(mut rs) = existing {
            self.refresh(&mut rs, new_revision).await?;
            self.set_deployment_revision(annotation(&rs, REVISION).unwrap_or_default().to_string()).await?;
            if self.has_progress_deadline() && self.condition(PROGRESSING).is_none() {
                let message = format!("Found new replica set {:?}", rs.name_any());
                let mut status = self.d.status.clone().unwrap_or_default();
                set_condition(&mut status, new_condition(PROGRESSING, "True", "FoundNewReplicaSet", message));
                self.write_status(status).await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let rs = self.create_new_replica_set(old, new_revision).await?;
        Ok(Some(rs))
    }

    async fn create_new_replica_set(&mut self, old: &[ReplicaSet], new_revision: i64) -> Result<ReplicaSet, Error> {
        let d = self.d.clone();
        let spec = d.spec.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&spec.template, collision_count);
        let mut template = spec.template.clone();
        let template_meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        template_meta.labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.namespace(),
                owner_references: Some(vec![ownership::controller_reference(&d)]),
                labels: template_meta.labels.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain([&rs]).collect();
        let count = self.new_replicas_count(&all, &rs);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(count);
        }
        set_new_replica_set_annotations(&d, &mut rs, new_revision, false);
        let created = match self.sets_api().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if count > 0 {
                    let note = format!("Scaled up replica set {name} from 0 to {count}");
                    self.state.events.normal(reference(&d), "Scale", "ScalingReplicaSet", note);
                }
                if self.has_progress_deadline() {
                    let message = format!("Created new replica set {name:?}");
                    let mut status = self.d.status.clone().unwrap_or_default();
                    set_condition(&mut status, new_condition(PROGRESSING, "True", "NewReplicaSetCreated", message));
                    self.write_status(status).await?;
                }
                created
            }
            Err(e) if is_status(&e, &[409]) => {
                // Ours already (the cache lagged), or a hash collision with another template.
                let existing = self.sets_api().get(&name).await?;
                let ours = ownership::is_controlled_by(&existing.metadata, &d.uid().unwrap_or_default());
                let same =
                    equal_ignoring_hash(existing.spec.as_ref().and_then(|s| s.template.as_ref()), Some(&spec.template));
                if !(ours && same) {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                    self.write_status(status).await?;
                    return Err(Error::HashCollision(name));
                }
                existing
            }
            Err(e) => {
                let message =
                    format!("Failed to create new replica set {name:?}: {}", crate::replicaset::api_message(&e));
                if self.has_progress_deadline() {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut status,
                        new_condition(PROGRESSING, "False", "ReplicaSetCreateError", message.clone()),
                    );
                    self.write_status(status).await?;
                }
                self.state.events.warning(reference(&d), "Create", "ReplicaSetCreateError", message);
                return Err(e.into());
            }
        };
        self.set_deployment_revision(new_revision.to_string()).await?;
        Ok(created)
    }

    /// How many replicas the new ReplicaSet should have now; `all` includes it.
    pub(super) fn new_replicas_count(&self, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
        let desired = desired_replicas(&self.d);
        if !is_rolling(&self.d) {
            return desired;
        }
        let current = total_replicas(all.iter().copied());
        let max_total = desired + max_surge(&self.d);
        if current >= max_total {
            return replicas(new);
        }
        let scale_up = (max_total - current).min(desired - replicas(new));
        replicas(new) + scale_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(strategy: Value, replicas: i32) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas, "strategy": strategy,
            "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}}))
        .unwrap()
    }

    #[test]
    fn surge_rounds_up_and_unavailable_rounds_down() {
        let d = deployment(json!({"type": "RollingUpdate"}), 10);
        assert_eq!(fenceposts(&d), (3, 2));
        let d = deployment(json!({"rollingUpdate": {"maxSurge": "10%", "maxUnavailable": "10%"}}), 15);
        assert_eq!(fenceposts(&d), (2, 1));
        let d = deployment(json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}), 5);
        assert_eq!(fenceposts(&d), (0, 1));
        let d = deployment(json!({"rollingUpdate": {"maxSurge": 2, "maxUnavailable": 9}}), 5);
        assert_eq!((max_surge(&d), max_unavailable(&d)), (2, 5));
        let d = deployment(json!({"type": "Recreate"}), 5);
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }

    #[test]
    fn the_hash_is_stable_safe_and_changes_with_the_template_and_collisions() {
        let d = deployment(json!({}), 1);
        let template = &d.spec.as_ref().unwrap().template;
        let hash = template_hash(template, None);
        assert_eq!(hash, template_hash(template, None));
        assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{hash}");
        assert_ne!(hash, template_hash(template, Some(1)));
        let mut other = template.clone();
        other.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert("x".into(), "y".into());
        assert_ne!(hash, template_hash(&other, None));
        // The hash label does not make templates differ.
        let mut labelled = template.clone();
        labelled.metadata.as_mut().unwrap().labels.as_mut().unwrap().insert(POD_TEMPLATE_HASH.into(), hash);
        assert!(equal_ignoring_hash(Some(template), Some(&labelled)));
        assert!(!equal_ignoring_hash(Some(template), Some(&other)));
    }

    #[test]
    fn a_reused_replica_set_keeps_its_old_revisions() {
        let d = deployment(json!({}), 3);
        let mut rs = ReplicaSet::default();
        assert!(set_new_replica_set_annotations(&d, &mut rs, 1, false));
        assert_eq!(annotation(&rs, REVISION), Some("1"));
        assert_eq!(annotation(&rs, DESIRED_REPLICAS), Some("3"));
        assert_eq!(annotation(&rs, MAX_REPLICAS), Some("4"));
        assert!(!set_new_replica_set_annotations(&d, &mut rs, 1, true));
        assert!(set_new_replica_set_annotations(&d, &mut rs, 3, true));
        assert!(set_new_replica_set_annotations(&d, &mut rs, 5, true));
        assert_eq!(annotation(&rs, REVISION), Some("5"));
        assert_eq!(annotation(&rs, REVISION_HISTORY), Some("1,3"));
    }
}
