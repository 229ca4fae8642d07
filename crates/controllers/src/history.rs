//! Controller history (Kubernetes' controller_history): the ControllerRevisions in which
//! DaemonSets and StatefulSets keep each pod template they have had, named
//! `<owner>-<hash>`, numbered by `revision`, labelled for their owner's selector; pods
//! carry the hash as `controller-revision-hash`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};
use skiff_client::is_status;

/// The label with a pod's (and a revision's) template hash.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// A revision's data for a pod template, as the apps controllers store it.
pub fn template_patch(template: &Value) -> Value {
    json!({"spec": {"template": template, "$patch": "replace"}})
}

/// The hash naming a revision of `data`: FNV-1a (32 bit) of the data and the owner's
/// collisionCount, written with the consonant-and-digit alphabet Kubernetes uses for
/// generated names (no vowels, so no words).
pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let salt = if collision_count > 0 { collision_count.to_le_bytes().to_vec() } else { Vec::new() };
    for byte in bytes.iter().chain(salt.iter()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string().bytes().map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char).collect()
}

/// The owner's revisions, oldest first.
pub async fn list(api: &Api<ControllerRevision>, owner_uid: &str) -> Result<Vec<ControllerRevision>, kube::Error> {
    let mut revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.owner_references().iter().any(|o| o.controller == Some(true) && o.uid == owner_uid))
        .collect();
    revisions.sort_by_key(|r| r.revision);
    Ok(revisions)
}

/// Makes sure a revision with `data` exists and is the newest; returns its hash and the
/// revision number. A revision of the same data made earlier (a rollback) is renumbered.
pub async fn ensure(
    api: &Api<ControllerRevision>,
    revisions: &mut Vec<ControllerRevision>,
    owner: OwnerReference,
    labels: BTreeMap<String, String>,
    data: Value,
    collision_count: i32,
) -> Result<(String, i64), kube::Error> {
    let hash = hash(&data, collision_count);
    let name = format!("{}-{hash}", owner.name);
    let latest = revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    if let Some(existing) = revisions.iter_mut().find(|r| r.name_any() == name) {
        if existing.revision != latest {
            existing.revision = latest + 1;
            *existing = api.replace(&name, &PostParams::default(), existing).await?;
        }
        return Ok((hash, existing.revision));
    }
    let mut labels = labels;
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    let revision = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision: latest + 1,
    };
    let created = match api.create(&PostParams::default(), &revision).await {
        Ok(created) => created,
        // Made by an earlier sync that did not see it listed yet.
        Err(e) if is_status(&e, &[409]) => api.get(&name).await?,
        Err(e) => return Err(e),
    };
    let number = created.revision;
    revisions.push(created);
    Ok((hash, number))
}

/// Deletes the oldest revisions beyond `limit` that no pod uses (`in_use` hashes).
pub async fn prune(
    api: &Api<ControllerRevision>,
    revisions: &[ControllerRevision],
    in_use: &[String],
    limit: usize,
) -> Result<(), kube::Error> {
    let unused: Vec<&ControllerRevision> =
        revisions.iter().filter(|r| !in_use.iter().any(|h| r.labels().get(REVISION_HASH_LABEL) == Some(h))).collect();
    for revision in unused.iter().take(unused.len().saturating_sub(limit)) {
        match api.delete(&revision.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, &[404]) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_change_with_the_data_and_collisions() {
        let a = template_patch(&json!({"spec": {"containers": [{"name": "c", "image": "nginx:1"}]}}));
        let b = template_patch(&json!({"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}));
        assert_eq!(hash(&a, 0), hash(&a.clone(), 0));
        assert_ne!(hash(&a, 0), hash(&b, 0));
        assert_ne!(hash(&a, 0), hash(&a, 1));
        assert!(hash(&a, 0).bytes().all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)));
    }
}
