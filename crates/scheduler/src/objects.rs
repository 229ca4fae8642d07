//! The Pod as the scheduler decodes it from watch events: metadata without
//! managedFields and annotations (of owner references, only the controller's), and of the
//! status only the phase, conditions, nominatedNodeName and startTime. The skipped parts
//! are most of a pod's JSON once server-side apply has recorded its field managers, and
//! the scheduler decodes every pod at least twice (created, bound).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::NamespaceResourceScope;
use serde::{Deserialize, Deserializer};

#[derive(Clone, Debug, Deserialize)]
pub struct SchedPod {
    #[serde(deserialize_with = "lite_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<PodSpec>,
    #[serde(default)]
    pub status: Option<SchedPodStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SchedPodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(default, rename = "nominatedNodeName")]
    pub nominated_node_name: Option<String>,
    #[serde(default, rename = "startTime")]
    pub start_time: Option<Time>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LiteMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
    owner_references: Option<Vec<OwnerReference>>,
}

fn lite_meta<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let meta = LiteMeta::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        labels: meta.labels,
        deletion_timestamp: meta.deletion_timestamp,
        owner_references: meta
            .owner_references
            .map(|refs| refs.into_iter().filter(|r| r.controller == Some(true)).collect()),
        ..ObjectMeta::default()
    })
}

impl kube::Resource for SchedPod {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_the_scheduler_needs() {
        let pod: SchedPod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7", "labels": {"a": "b"},
                         "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}], "annotations": {"x": "y"},
                         "ownerReferences": [
                             {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true},
                             {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "cm-uid"}]},
            "spec": {"containers": [{"name": "c", "image": "i"}], "nodeName": "n1"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}], "podIP": "10.0.0.1"}
        }))
        .unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        assert!(pod.metadata.managed_fields.is_none() && pod.metadata.annotations.is_none());
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, "rs-uid", "only the controller is kept");
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap().len(), 1);
        assert_eq!(pod.metadata.labels.unwrap()["a"], "b");
        assert_eq!(pod.spec.unwrap().node_name.as_deref(), Some("n1"));
        assert_eq!(pod.status.unwrap().conditions.unwrap()[0].type_, "PodScheduled");
    }
}
