//! What the scheduler writes: bindings (pods/binding), the PodScheduled=False condition
//! of pods that fit nowhere (pods/status), and events (events.k8s.io/v1, which kubectl
//! describe shows), through skiff-client's recorder.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::Client;
use serde_json::json;
use skiff_client::events::{Event, Recorder};
use skiff_client::is_status;

use crate::model::PodInfo;

/// Who the scheduler is in what it writes.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The schedulerName it serves and reports as (`default-scheduler`).
    pub scheduler_name: String,
    /// reportingInstance of its events.
    pub instance: String,
}

#[derive(Clone)]
pub struct Writer {
    client: Client,
    identity: Arc<Identity>,
    events: Recorder,
}

impl Writer {
    /// A writer, and the task that records its events (run it alongside the scheduler).
    pub fn new(client: Client, identity: Identity) -> (Self, impl std::future::Future<Output = ()>) {
        let (events, recorder) =
            Recorder::new(client.clone(), identity.scheduler_name.clone(), identity.instance.clone());
        (Writer { client, identity: Arc::new(identity), events }, recorder)
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// POST pods/NAME/binding. Ok(false) when the pod can no longer be bound (deleted,
    /// already bound, being deleted).
    pub async fn bind(&self, pod: &PodInfo, node: &str) -> Result<bool, kube::Error> {
        let api = Api::<Pod>::namespaced(self.client.clone(), &pod.namespace);
        let binding = json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}
        });
        match api
            .create_subresource::<_, serde::de::IgnoredAny>("binding", &pod.name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_status(&e, &[404, 409]) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets PodScheduled=False, reason Unschedulable, unless the pod already says so. A
    /// JSON patch touches only that condition (others stay), and its `test` step fails
    /// rather than overwrite a condition list that changed meanwhile.
    pub async fn mark_unschedulable(&self, pod: &PodInfo, message: &str) -> Result<(), kube::Error> {
        let current = pod.scheduled_condition.as_ref();
        if current.is_some_and(|c| c.status == "False" && c.reason == "Unschedulable" && c.message == message) {
            return Ok(());
        }
        let now = Time(Timestamp::now());
        let transition = match current {
            Some(c) if c.status == "False" => None,
            _ => Some(now),
        };
        let mut condition = json!({
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastProbeTime": null,
        });
        if let Some(at) = &transition {
            condition["lastTransitionTime"] = json!(at);
        }
        let patch = match current {
            Some(c) => {
                let path = format!("/status/conditions/{}", c.index);
                if transition.is_none() {
                    // Keep the original lastTransitionTime: replace only what changed.
                    json!([
                        {"op": "test", "path": format!("{path}/type"), "value": "PodScheduled"},
                        {"op": "replace", "path": format!("{path}/status"), "value": "False"},
                        {"op": "add", "path": format!("{path}/reason"), "value": "Unschedulable"},
                        {"op": "add", "path": format!("{path}/message"), "value": message},
                    ])
                } else {
                    json!([
                        {"op": "test", "path": format!("{path}/type"), "value": "PodScheduled"},
                        {"op": "replace", "path": path, "value": condition},
                    ])
                }
            }
            None if pod.conditions_len > 0 => {
                json!([{"op": "add", "path": "/status/conditions/-", "value": condition}])
            }
            None => json!([{"op": "add", "path": "/status/conditions", "value": [condition]}]),
        };
        let uri = format!("/api/v1/namespaces/{}/pods/{}/status", pod.namespace, pod.name);
        let request = http::Request::patch(uri)
            .header(http::header::CONTENT_TYPE, "application/json-patch+json")
            .body(serde_json::to_vec(&patch).expect("JSON serializes"))
            .expect("valid request");
        match self.client.request::<serde::de::IgnoredAny>(request).await {
            Ok(_) => Ok(()),
            // Gone, or its conditions moved: the next attempt writes from fresh state.
            Err(e) if is_status(&e, &[404, 409, 422]) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Records where a preemption made room for `pod` (status.nominatedNodeName).
    pub async fn nominate(&self, pod: &PodInfo, node: &str) -> Result<(), kube::Error> {
        let api = Api::<Pod>::namespaced(self.client.clone(), &pod.namespace);
        let patch = json!({"status": {"nominatedNodeName": node}});
        match api.patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Evicts a preemption victim as kube-scheduler does: a DisruptionTarget condition
    /// (reason PreemptionByScheduler) on it, then a graceful delete of that very pod.
    pub async fn preempt(&self, victim: &PodInfo) -> Result<(), kube::Error> {
        let api = Api::<Pod>::namespaced(self.client.clone(), &victim.namespace);
        let condition = json!({
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": format!("{}: preempting to accommodate a higher priority pod", self.identity.scheduler_name),
            "lastTransitionTime": Time(Timestamp::now()),
        });
        let patch = json!({"status": {"conditions": [condition]}});
        match api.patch_status(&victim.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {}
            Err(e) if is_status(&e, &[404]) => return Ok(()),
            Err(e) => return Err(e),
        }
        let options = DeleteParams {
            preconditions: Some(Preconditions { uid: Some(victim.uid.clone()), resource_version: None }),
            ..DeleteParams::default()
        };
        match api.delete(&victim.name, &options).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, &[404, 409]) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Queues an event; drops it when the queue is full.
    pub fn event(&self, event: Event) {
        self.events.record(event);
    }
}
