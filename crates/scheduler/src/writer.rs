//! What the scheduler writes: bindings (pods/binding), the PodScheduled=False condition
//! of pods that fit nowhere (pods/status), and events (events.k8s.io/v1, which kubectl
//! describe shows). Events go through a bounded queue and are dropped when it is full,
//! as client-go's event broadcaster does, so that recording never holds up scheduling.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;
use tracing::debug;

use crate::model::PodInfo;

/// Events waiting to be written at most; more are dropped.
const EVENT_QUEUE: usize = 1000;
/// Event writes in flight at once: one, as client-go's broadcaster writes them in turn
/// (under load, the queue fills and events are dropped rather than slow the scheduler).
const EVENT_WRITERS: usize = 1;

/// Who the scheduler is in what it writes.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The schedulerName it serves and reports as (`default-scheduler`).
    pub scheduler_name: String,
    /// reportingInstance of its events.
    pub instance: String,
}

/// An event to record about a pod.
#[derive(Debug)]
pub struct PodEvent {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub resource_version: String,
    pub warning: bool,
    pub action: &'static str,
    pub reason: &'static str,
    pub note: String,
    /// The event's name; with `count` > 1, an existing event whose series is updated.
    pub name: String,
    pub count: i32,
}

#[derive(Clone)]
pub struct Writer {
    client: Client,
    identity: Arc<Identity>,
    events: mpsc::Sender<PodEvent>,
}

/// A unique event name for a pod, as client-go makes them: `<pod>.<nanoseconds in hex>`.
pub fn event_name(pod: &str) -> String {
    format!("{pod}.{:x}", Timestamp::now().as_nanosecond())
}

fn is_status(error: &kube::Error, codes: &[u16]) -> bool {
    matches!(error, kube::Error::Api(status) if codes.contains(&status.code))
}

impl Writer {
    /// A writer, and the task that records its events (run it alongside the scheduler).
    pub fn new(client: Client, identity: Identity) -> (Self, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let identity = Arc::new(identity);
        let recorder = record_events(client.clone(), identity.clone(), rx);
        (Writer { client, identity, events: tx }, recorder)
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

    /// Queues an event; drops it when the queue is full.
    pub fn event(&self, event: PodEvent) {
        if let Err(mpsc::error::TrySendError::Full(dropped)) = self.events.try_send(event) {
            debug!(pod = dropped.pod, reason = dropped.reason, "event queue full; dropping event");
        }
    }
}

async fn record_events(client: Client, identity: Arc<Identity>, rx: mpsc::Receiver<PodEvent>) {
    use futures::StreamExt;
    tokio_stream_from(rx)
        .for_each_concurrent(EVENT_WRITERS, |event| {
            let client = client.clone();
            let identity = identity.clone();
            async move {
                if let Err(e) = write_event(&client, &identity, &event).await {
                    debug!(pod = event.pod, error = %e, "recording an event failed");
                }
            }
        })
        .await;
}

fn tokio_stream_from<T>(mut rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn write_event(client: &Client, identity: &Identity, event: &PodEvent) -> Result<(), kube::Error> {
    let now = MicroTime(Timestamp::now());
    if event.count > 1 {
        let api = Api::<Event>::namespaced(client.clone(), &event.namespace);
        let patch = json!({"series": {"count": event.count, "lastObservedTime": now}});
        match api.patch(&event.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, &[404]) => {}
            Err(e) => return Err(e),
        }
    }
    let object = Event {
        metadata: ObjectMeta {
            name: Some(event.name.clone()),
            namespace: Some(event.namespace.clone()),
            ..Default::default()
        },
        event_time: Some(now.clone()),
        reporting_controller: Some(identity.scheduler_name.clone()),
        reporting_instance: Some(identity.instance.clone()),
        action: Some(event.action.to_string()),
        reason: Some(event.reason.to_string()),
        type_: Some(if event.warning { "Warning" } else { "Normal" }.to_string()),
        note: Some(event.note.clone()),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(event.namespace.clone()),
            name: Some(event.pod.clone()),
            uid: Some(event.uid.clone()),
            resource_version: Some(event.resource_version.clone()).filter(|rv| !rv.is_empty()),
            field_path: None,
        }),
        series: (event.count > 1).then_some(EventSeries { count: event.count, last_observed_time: now }),
        ..Default::default()
    };
    // The created Event is not needed back: skip decoding it.
    let uri = format!("/apis/events.k8s.io/v1/namespaces/{}/events", event.namespace);
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&object).expect("JSON serializes"))
        .expect("valid request");
    client.request::<serde::de::IgnoredAny>(request).await.map(|_| ())
}
