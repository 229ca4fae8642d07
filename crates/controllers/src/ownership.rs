//! Controller references: which controller owns an object, and claiming objects by
//! selector (kube-controller-manager's `ControllerRefManager`): an owner adopts orphans
//! its selector matches and releases the objects it owns that its selector no longer
//! matches, by patching their `metadata.ownerReferences`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use skiff_api::selector::LabelSelector;

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with this uid.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// A reference to `owner` as the controller of another object, blocking the owner's
/// foreground deletion until the object is gone.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What an owner does with an object it sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Owned, and the selector still matches.
    Owned,
    /// An orphan the selector matches: take it.
    Adopt,
    /// Owned, but the selector no longer matches: let it go.
    Release,
    /// Someone else's, or not a match.
    Ignore,
}

/// The owner (uid, whether it is being deleted, its selector) and one object.
pub fn claim(owner_uid: &str, owner_deleting: bool, selector: &LabelSelector, meta: &ObjectMeta) -> Claim {
    let matches = selector.matches(&meta.labels);
    match controller_of(meta) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // A deleting owner keeps what it has: the garbage collector deals with it.
        Some(_) if owner_deleting => Claim::Owned,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || meta.deletion_timestamp.is_some() => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// Adds `owner` as the controller of the object `name` (whose uid must still be `uid`).
pub async fn adopt<K>(api: &Api<K>, name: &str, uid: &str, owner: OwnerReference) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    // ownerReferences merge by uid; the object's uid in the patch makes it a precondition.
    let patch = json!({"metadata": {"ownerReferences": [owner], "uid": uid}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await.map(|_| ())
}

/// Removes the owner reference to `owner_uid` from the object `name` (uid `uid`).
pub async fn release<K>(api: &Api<K>, name: &str, uid: &str, owner_uid: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}], "uid": uid}});
    match api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
        // Gone, or already changed: nothing left to release.
        Err(e) if skiff_client::is_status(&e, &[404, 422]) => Ok(()),
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(labels: &[(&str, &str)], controller: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
            owner_references: controller.map(|uid| {
                vec![OwnerReference { uid: uid.into(), controller: Some(true), ..OwnerReference::default() }]
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn claims_follow_the_controller_ref_and_the_selector() {
        let selector = LabelSelector::parse("app=web").unwrap();
        assert_eq!(claim("me", false, &selector, &meta(&[("app", "web")], Some("me"))), Claim::Owned);
        assert_eq!(claim("me", false, &selector, &meta(&[("app", "db")], Some("me"))), Claim::Release);
        assert_eq!(claim("me", true, &selector, &meta(&[("app", "db")], Some("me"))), Claim::Owned);
        assert_eq!(claim("me", false, &selector, &meta(&[("app", "web")], None)), Claim::Adopt);
        assert_eq!(claim("me", true, &selector, &meta(&[("app", "web")], None)), Claim::Ignore);
        assert_eq!(claim("me", false, &selector, &meta(&[("app", "db")], None)), Claim::Ignore);
        assert_eq!(claim("me", false, &selector, &meta(&[("app", "web")], Some("other"))), Claim::Ignore);
    }
}
