//! Recording events (events.k8s.io/v1, which `kubectl describe` shows). Events go through
//! a bounded queue and are dropped when it is full, as client-go's event broadcaster
//! does, so that recording never holds up scheduling or reconciling. A recorder may also
//! limit how many events each reporter writes about one object ([`Recorder::with_spam_filter`]),
//! as client-go's legacy recorder (kube-controller-manager's) does: a ReplicaSet making
//! 1,000 pods reports 25 of them, not 1,000 writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Events one reporter may write about one object at once (client-go's defaultSpamBurst) ...
pub const SPAM_BURST: u32 = 25;
/// ... and how often one more is allowed after that (defaultSpamQPS: one per 5 minutes).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Objects whose budgets are kept at most (client-go's LRU cache size).
const SPAM_OBJECTS: usize = 4096;

/// A reporter and the object reported on (its uid, or its kind and name).
type SpamKey = (Arc<str>, String);

/// client-go's EventSourceObjectSpamFilter: a token bucket per reporter and object.
#[derive(Debug, Default)]
pub struct SpamFilter {
    /// Tokens left, and when they were counted.
    buckets: Mutex<HashMap<SpamKey, (f64, Instant)>>,
}

impl SpamFilter {
    /// Whether `controller` may write one more event about `regarding` at `now`.
    pub fn allow(&self, controller: &Arc<str>, regarding: &ObjectReference, now: Instant) -> bool {
        let object = match &regarding.uid {
            Some(uid) => uid.clone(),
            None => format!("{:?}/{:?}/{:?}", regarding.kind, regarding.namespace, regarding.name),
        };
        let burst = f64::from(SPAM_BURST);
        let refill = |tokens: f64, since: Instant| {
            (tokens + now.saturating_duration_since(since).as_secs_f64() / SPAM_REFILL.as_secs_f64()).min(burst)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SPAM_OBJECTS {
            // Full buckets hold nothing worth keeping.
            buckets.retain(|_, (tokens, since)| refill(*tokens, *since) < burst);
        }
        let (tokens, since) = buckets.entry((controller.clone(), object)).or_insert((burst, now));
        let available = refill(*tokens, *since);
        let allowed = available >= 1.0;
        *tokens = if allowed { available - 1.0 } else { available };
        *since = now;
        allowed
    }
}

/// Queues events for writing by a background task. Cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    queue: mpsc::Sender<(Arc<str>, Event)>,
    /// reportingController of the events recorded through this handle.
    controller: Arc<str>,
    /// Limits events per reporter and object, when set.
    spam: Option<Arc<SpamFilter>>,
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
        (Recorder { queue, controller: controller.into(), spam: None }, writer)
    }

    /// This recorder (and those made from it by [`Recorder::reporting_as`]) writing at most
    /// [`SPAM_BURST`] events per reporter and object at once, then one per [`SPAM_REFILL`].
    pub fn with_spam_filter(self) -> Recorder {
        Recorder { spam: Some(Arc::default()), ..self }
    }

    /// A handle on the same queue reporting as `controller` (e.g. `deployment-controller`).
    pub fn reporting_as(&self, controller: &str) -> Recorder {
        Recorder { queue: self.queue.clone(), controller: controller.into(), spam: self.spam.clone() }
    }

    /// Queues an event; drops it when the queue is full, or when the spam filter says so.
    pub fn record(&self, event: Event) {
        if let Some(spam) = &self.spam {
            if !spam.allow(&self.controller, &event.regarding, Instant::now()) {
                debug!(object = ?event.regarding.name, reason = event.reason, "too many events about the object; dropping");
                return;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str) -> ObjectReference {
        ObjectReference { kind: Some("ReplicaSet".into()), uid: Some(uid.into()), ..ObjectReference::default() }
    }

    #[test]
    fn the_spam_filter_allows_a_burst_per_reporter_and_object_then_one_per_refill() {
        let filter = SpamFilter::default();
        let (replicasets, deployments): (Arc<str>, Arc<str>) =
            ("replicaset-controller".into(), "deployment-controller".into());
        let start = Instant::now();
        let allowed = (0..100).filter(|_| filter.allow(&replicasets, &object("a"), start)).count();
        assert_eq!(allowed, SPAM_BURST as usize);
        // Other objects and other reporters have budgets of their own.
        assert!(filter.allow(&replicasets, &object("b"), start));
        assert!(filter.allow(&deployments, &object("a"), start));
        // One more once a refill period has passed, not two.
        assert!(!filter.allow(&replicasets, &object("a"), start + SPAM_REFILL / 2));
        let later = start + SPAM_REFILL;
        assert!(filter.allow(&replicasets, &object("a"), later));
        assert!(!filter.allow(&replicasets, &object("a"), later));
    }
}
