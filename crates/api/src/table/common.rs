//! What several printers share: reading stored JSON the way Go reads a decoded object
//! (a missing field is its zero value), ages, and Kubernetes' ways of joining lists
//! (`<none>`, `a,b,c + 2 more...`, label selectors).

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use serde_json::Value;

use super::Column;
use crate::selector::LabelSelector;

// ---------------------------------------------------------------------------------------
// Columns every kind uses
// ---------------------------------------------------------------------------------------

pub(super) const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "The object's name, unique within its namespace (or the cluster, for cluster-scoped kinds).",
    priority: 0,
};

pub(super) const AGE: Column =
    col("Age", "string", "How long ago the object was created (metadata.creationTimestamp).");

pub(super) const CONTAINERS: Column = wide("Containers", "string", "Names of each container in the template.");
pub(super) const IMAGES: Column = wide("Images", "string", "Images referenced by each container in the template.");
pub(super) const SELECTOR: Column =
    wide("Selector", "string", "The label selector that picks the objects this one manages.");

/// A column shown by default.
pub(super) const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 0 }
}

/// A column that kubectl shows only with `-o wide`.
pub(super) const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column { name, type_, format: "", description, priority: 1 }
}

// ---------------------------------------------------------------------------------------
// Reading JSON with Go's zero values
// ---------------------------------------------------------------------------------------

/// The value at `path`, or `null` when any step is missing.
pub(super) fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| v.get(key).unwrap_or(&Value::Null))
}

/// Whether the value at `path` is set (present and not `null`), as a Go pointer is non-nil.
pub(super) fn has(value: &Value, path: &[&str]) -> bool {
    !at(value, path).is_null()
}

/// The string at `path`, `""` when missing.
pub(super) fn text<'a>(value: &'a Value, path: &[&str]) -> &'a str {
    at(value, path).as_str().unwrap_or("")
}

/// The string at `path`, when present.
pub(super) fn opt_text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).as_str()
}

/// The integer at `path`, 0 when missing.
pub(super) fn int(value: &Value, path: &[&str]) -> i64 {
    opt_int(value, path).unwrap_or(0)
}

/// The integer at `path`, when present.
pub(super) fn opt_int(value: &Value, path: &[&str]) -> Option<i64> {
    let v = at(value, path);
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// The boolean at `path`, false when missing.
pub(super) fn flag(value: &Value, path: &[&str]) -> bool {
    at(value, path).as_bool().unwrap_or(false)
}

/// The list at `path`, empty when missing.
pub(super) fn list<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path).as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The number of members of the map at `path` (0 when missing).
pub(super) fn map_len(value: &Value, path: &[&str]) -> i64 {
    at(value, path).as_object().map_or(0, |m| m.len() as i64)
}

/// The timestamp at `path`, when present and well-formed.
pub(super) fn time(value: &Value, path: &[&str]) -> Option<Timestamp> {
    opt_text(value, path).and_then(|s| s.parse().ok())
}

/// The first condition of `conditions` with this type, as Go's loops that stop at the
/// first match find it.
pub(super) fn condition<'a>(conditions: &'a [Value], type_: &str) -> Option<&'a Value> {
    conditions.iter().find(|c| text(c, &["type"]) == type_)
}

/// Whether the first condition of this type has status `True`.
pub(super) fn condition_true(conditions: &[Value], type_: &str) -> bool {
    condition(conditions, type_).is_some_and(|c| text(c, &["status"]) == "True")
}

/// An int-or-string value as Go's `IntOrString.String()` renders it.
pub(super) fn int_or_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Ages
// ---------------------------------------------------------------------------------------

/// Kubernetes' `duration.HumanDuration`: about two significant figures, `<invalid>` for
/// more than a second in the future (a little clock skew shows as `0s`).
pub fn human_duration(duration: SignedDuration) -> String {
    // Go's time.Duration saturates at ±292 years; so do we.
    let nanos = duration.as_nanos().clamp(i128::from(i64::MIN), i128::from(i64::MAX));
    let seconds = nanos / 1_000_000_000;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// How long ago `then` was (`translateTimestampSince`): `<unknown>` when unset.
pub(super) fn since(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(then) => human_duration(now.duration_since(then)),
        None => "<unknown>".into(),
    }
}

/// The AGE cell: how long ago the object was created.
pub(super) fn age(object: &Value, now: Timestamp) -> Value {
    since(time(object, &["metadata", "creationTimestamp"]), now).into()
}

/// The NAME cell.
pub(super) fn name(object: &Value) -> Value {
    text(object, &["metadata", "name"]).into()
}

// ---------------------------------------------------------------------------------------
// Joining
// ---------------------------------------------------------------------------------------

/// `s`, or `<none>` when it is empty.
pub(super) fn or_none(s: impl Into<String>) -> String {
    let s = s.into();
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

/// The first `max` items joined with commas, then ` + N more...` for the rest
/// (`listWithMoreString`); `<unset>` for none at all.
pub(super) fn list_with_more(items: impl IntoIterator<Item = String>, max: usize) -> String {
    let mut shown = Vec::new();
    let mut count = 0;
    for item in items {
        if shown.len() < max {
            shown.push(item);
        }
        count += 1;
    }
    let joined = shown.join(",");
    if count > max {
        format!("{joined} + {} more...", count - max)
    } else if joined.is_empty() {
        "<unset>".into()
    } else {
        joined
    }
}

/// A label map as `labels.FormatLabels` writes it: `a=b,c=d` sorted by key, or `<none>`.
pub(super) fn format_labels(labels: &Value) -> String {
    // Go sorts the `k=v` strings, not the keys: `a.b=1` comes before `a=2`.
    let mut pairs: Vec<String> = labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    pairs.sort_unstable();
    or_none(pairs.join(","))
}

/// A `LabelSelector` rendered as selector syntax (`app=web,tier in (a,b)`); `Err` when it
/// does not convert to a selector. A missing selector renders as the empty string.
pub(super) fn selector_string(selector: &Value) -> Result<String, ()> {
    if selector.is_null() {
        return Ok(String::new());
    }
    let api: metav1::LabelSelector = serde_json::from_value(selector.clone()).map_err(|_| ())?;
    LabelSelector::from_api(&api).map(|s| s.to_string()).map_err(|_| ())
}

/// `metav1.FormatLabelSelector`: the selector, `<none>` when it selects without
/// restriction (or is missing), `<error>` when it is not a valid selector.
pub(super) fn format_label_selector(selector: &Value) -> String {
    match selector_string(selector) {
        Ok(s) => or_none(s),
        Err(()) => "<error>".into(),
    }
}

/// A pod template's containers' names and images, each comma-separated
/// (`layoutContainerCells`).
pub(super) fn containers_and_images(pod_spec: &Value) -> (String, String) {
    let containers = list(pod_spec, &["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// Access modes abbreviated in Kubernetes' fixed order (`GetAccessModesAsString`):
/// `RWO,ROX,RWX,RWOP`, each once.
pub(super) fn access_modes(modes: &[Value]) -> String {
    let has = |mode: &str| modes.iter().any(|m| m.as_str() == Some(mode));
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| has(mode))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// `host:port`, with an IPv6 host in brackets (Go's `net.JoinHostPort`).
pub(super) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A load balancer's ingress points: each IP (else hostname), sorted and deduplicated,
/// comma-separated. The server prints wide, so the list is never clipped.
pub(super) fn load_balancer_ingress(status: &Value) -> String {
    let mut points: Vec<&str> = list(status, &["ingress"])
        .iter()
        .filter_map(|i| match (text(i, &["ip"]), text(i, &["hostname"])) {
            ("", "") => None,
            ("", host) => Some(host),
            (ip, _) => Some(ip),
        })
        .collect();
    points.sort_unstable();
    points.dedup();
    points.join(",")
}

/// Go's `%t` for a bool pointer, as kubectl prints one: `True`, `False` or `<unset>`.
pub(super) fn bool_ptr(value: &Value) -> String {
    match value.as_bool() {
        Some(true) => "True".into(),
        Some(false) => "False".into(),
        None => "<unset>".into(),
    }
}
