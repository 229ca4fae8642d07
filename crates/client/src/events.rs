//! Recording events (events.k8s.io/v1, which `kubectl describe` shows). Events go through
//! a bounded queue and are dropped when it is full, as client-go's event broadcaster
//! does, so that recording never holds up scheduling or reconciling.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as ApiEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::debug;

use crate::is_status;

/// Events waiting to be written at most; more are dropped.
const QUEUE: usize = 1000;

/// An event about one object.
#[derive(Clone, Debug)]
pub struct Event {
    pub regarding: ObjectReference,
    pub warning: bool,
    /// What was done or failed (`Binding`, `Scheduling`, `Create`, ...).
    pub action: &'static str,
    /// Why, in UpperCamelCase (`Scheduled`, `SuccessfulCreate`, ...).
    pub reason: &'static str,
    pub note: String,
    /// The event's name; with `count` > 1, an existing event whose series is updated.
    pub name: String,
    pub count: i32,
}

impl Event {
    /// A new (count 1) event with a unique name.
    pub fn new(
        regarding: ObjectReference,
        warning: bool,
        action: &'static str,
        reason: &'static str,
        note: String,
    ) -> Self {
        let name = unique_name(regarding.name.as_deref().unwrap_or("event"));
        Event { regarding, warning, action, reason, note, name, count: 1 }
    }
}

/// A unique event name for an object, as client-go makes them: `<name>.<nanoseconds in hex>`.
pub fn unique_name(object: &str) -> String {
    format!("{object}.{:x}", Timestamp::now().as_nanosecond())
}

/// A reference to `object` for `regarding`.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: object.namespace(),
        name: Some(object.name_any()),
        uid: object.uid(),
        resource_version: object.resource_version(),
        field_path: None,
    }
}

/// Queues events for writing by a background task. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<(Arc<str>, Event)>,
    /// reportingController of the events recorded through this handle.
    controller: Arc<str>,
}

impl Recorder {
    /// A recorder reporting as `controller` (e.g. `default-scheduler`) from `instance`,
    /// and the task that writes its events (run it alongside the component).
    pub fn new(client: Client, controller: String, instance: String) -> (Self, impl std::future::Future<Output = ()>) {
        let (queue, mut rx) = mpsc::channel::<(Arc<str>, Event)>(QUEUE);
        let writer = async move {
            // One write at a time, as client-go's broadcaster does: under load the queue
            // fills and events are dropped rather than slow the component down.
            while let Some((controller, event)) = rx.recv().await {
                if let Err(e) = write(&client, &controller, &instance, &event).await {
                    debug!(object = ?event.regarding.name, error = %e, "recording an event failed");
                }
            }
        };
        (Recorder { queue, controller: controller.into() }, writer)
    }

    /// A handle on the same queue reporting as `controller` (e.g. `deployment-controller`).
    pub fn reporting_as(&self, controller: &str) -> Recorder {
        Recorder { queue: self.queue.clone(), controller: controller.into() }
    }

    /// Queues an event; drops it when the queue is full.
    pub fn record(&self, event: Event) {
        if let Err(mpsc::error::TrySendError::Full((_, dropped))) =
            self.queue.try_send((self.controller.clone(), event))
        {
            debug!(object = ?dropped.regarding.name, reason = dropped.reason, "event queue full; dropping event");
        }
    }

    pub fn normal(&self, regarding: ObjectReference, action: &'static str, reason: &'static str, note: String) {
        self.record(Event::new(regarding, false, action, reason, note));
    }

    pub fn warning(&self, regarding: ObjectReference, action: &'static str, reason: &'static str, note: String) {
        self.record(Event::new(regarding, true, action, reason, note));
    }
}

async fn write(client: &Client, controller: &str, instance: &str, event: &Event) -> Result<(), kube::Error> {
    let namespace = event.regarding.namespace.clone().unwrap_or_else(|| "default".into());
    let now = MicroTime(Timestamp::now());
    if event.count > 1 {
        let api = Api::<ApiEvent>::namespaced(client.clone(), &namespace);
        let patch = json!({"series": {"count": event.count, "lastObservedTime": now}});
        match api.patch(&event.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, &[404]) => {}
            Err(e) => return Err(e),
        }
    }
    let object = ApiEvent {
        metadata: ObjectMeta {
            name: Some(event.name.clone()),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        event_time: Some(now.clone()),
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(instance.to_string()),
        action: Some(event.action.to_string()),
        reason: Some(event.reason.to_string()),
        type_: Some(if event.warning { "Warning" } else { "Normal" }.to_string()),
        note: Some(event.note.clone()),
        regarding: Some(event.regarding.clone()),
        series: (event.count > 1).then_some(EventSeries { count: event.count, last_observed_time: now }),
        ..Default::default()
    };
    // The created Event is not needed back: skip decoding it.
    let uri = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&object).expect("JSON serializes"))
        .expect("valid request");
    client.request::<serde::de::IgnoredAny>(request).await.map(|_| ())
}
