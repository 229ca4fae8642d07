//! Resources served in one form and stored in another's. Kubernetes keeps
//! events.k8s.io/v1 Events as core/v1 Events, so that an event recorded through either
//! API is seen through both (controllers record with events.k8s.io, `kubectl describe`
//! reads core/v1).

use serde_json::Value;

/// Field renames between events.k8s.io/v1 (left) and core/v1 (right).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Renames top-level fields by `pairs` (from → to) and sets apiVersion.
fn rename(object: Value, pairs: impl Iterator<Item = (&'static str, &'static str)>, api_version: &str) -> Value {
    let Value::Object(mut map) = object else { return object };
    for (from, to) in pairs {
        if let Some(value) = map.remove(from) {
            map.insert(to.to_string(), value);
        }
    }
    map.insert("apiVersion".into(), Value::String(api_version.into()));
    map.insert("kind".into(), Value::String("Event".into()));
    Value::Object(map)
}

/// An events.k8s.io/v1 Event in its stored (core/v1) form.
pub fn events_to_core(object: Value) -> Value {
    rename(object, EVENT_FIELDS.iter().copied(), "v1")
}

/// A stored (core/v1) Event as events.k8s.io/v1 shows it.
pub fn core_to_events(object: Value) -> Value {
    let mut object = rename(object, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)), "events.k8s.io/v1");
    // core/v1-only fields with no events.k8s.io counterpart.
    if let Some(map) = object.as_object_mut() {
        map.retain(|k, _| k != "lastTimestamp" && k != "firstTimestamp");
        if !map.contains_key("eventTime") {
            map.insert("eventTime".into(), Value::Null);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_round_trip_through_core_form() {
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "regarding": {"kind": "Pod", "name": "p"},
            "note": "Pulled image", "reason": "Pulled", "type": "Normal",
            "reportingController": "skiff/agent", "reportingInstance": "node-1", "action": "Pull",
            "deprecatedCount": 2,
        });
        let stored = events_to_core(event.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "Pulled image");
        assert_eq!(stored["reportingComponent"], "skiff/agent");
        assert_eq!(stored["count"], 2);
        assert_eq!(core_to_events(stored), event);
    }
}
