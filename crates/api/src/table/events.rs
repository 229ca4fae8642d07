//! Events, of the core group and of events.k8s.io. Kubernetes serves both from one
//! store and prints both alike, so an events.k8s.io event is read through the core
//! field names it converts to (`regarding` is `involvedObject`, `note` is `message`...).

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::common::{at, col, has, opt_int, since, text, time, wide, NAME};
use super::{no_conditions, Builtin, Column};

const COLUMNS: &[Column] = &[
    col("Last Seen", "string", "How long ago the event was last seen."),
    col("Type", "string", "Normal or Warning."),
    col("Reason", "string", "Why the event happened, in a word."),
    col("Object", "string", "The object the event is about, as kind/name."),
    wide("Subobject", "string", "The part of the object the event is about (involvedObject.fieldPath)."),
    wide("Source", "string", "The component (and host) that reported the event."),
    col("Message", "string", "What happened, for humans."),
    wide("First Seen", "string", "How long ago the event was first seen."),
    wide("Count", "string", "How many times the event happened."),
    Column { priority: 1, ..NAME },
];

pub(super) static CORE_EVENT: Builtin = Builtin { columns: COLUMNS, cells: core_event, conditions: no_conditions };

pub(super) static EVENT: Builtin = Builtin { columns: COLUMNS, cells: event, conditions: no_conditions };

fn core_event(event: &Value, now: Timestamp) -> Vec<Value> {
    let first = if has(event, &["firstTimestamp"]) {
        since(time(event, &["firstTimestamp"]), now)
    } else {
        since(time(event, &["eventTime"]), now)
    };
    let mut last =
        if has(event, &["lastTimestamp"]) { since(time(event, &["lastTimestamp"]), now) } else { first.clone() };
    let mut count = opt_int(event, &["count"]).unwrap_or(0);
    if has(event, &["series"]) {
        last = since(time(event, &["series", "lastObservedTime"]), now);
        count = opt_int(event, &["series", "count"]).unwrap_or(0);
    } else if count == 0 {
        // Events of the new API happen once and leave count unset.
        count = 1;
    }
    let involved = at(event, &["involvedObject"]);
    let kind = text(involved, &["kind"]).to_lowercase();
    let target = match text(involved, &["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(text(event, &["source", "component"]), text(event, &["reportingComponent"]));
    let host = first_non_empty(text(event, &["source", "host"]), text(event, &["reportingInstance"]));
    let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
    vec![
        last.into(),
        text(event, &["type"]).into(),
        text(event, &["reason"]).into(),
        target.into(),
        text(involved, &["fieldPath"]).into(),
        source.into(),
        text(event, &["message"]).trim().into(),
        first.into(),
        count.into(),
        text(event, &["metadata", "name"]).into(),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

/// An events.k8s.io/v1 event printed as the core event it converts to.
fn event(event: &Value, now: Timestamp) -> Vec<Value> {
    core_event(&as_core_event(event), now)
}

/// The fields of an events.k8s.io/v1 event the printer reads, under their core/v1 names.
fn as_core_event(event: &Value) -> Value {
    const RENAMED: &[(&str, &str)] = &[
        ("metadata", "metadata"),
        ("eventTime", "eventTime"),
        ("series", "series"),
        ("type", "type"),
        ("reason", "reason"),
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("reportingController", "reportingComponent"),
        ("reportingInstance", "reportingInstance"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
    ];
    let mut core = Map::new();
    for (from, to) in RENAMED {
        if let Some(value) = event.get(*from) {
            core.insert((*to).to_string(), value.clone());
        }
    }
    Value::Object(core)
}
