//! apps/v1: deployments, replica sets, stateful sets, daemon sets, controller revisions.

use jiff::Timestamp;
use serde_json::Value;

use super::common::{
    age, at, col, containers_and_images, format_label_selector, format_labels, int, name, opt_int, selector_string,
    text, AGE, CONTAINERS, IMAGES, NAME, SELECTOR,
};
use super::{no_conditions, Builtin};

/// `spec.replicas`, which Kubernetes defaults to 1.
fn desired(object: &Value) -> i64 {
    opt_int(object, &["spec", "replicas"]).unwrap_or(1)
}

fn template_spec(object: &Value) -> &Value {
    at(object, &["spec", "template", "spec"])
}

pub(super) static DEPLOYMENT: Builtin = Builtin {
    columns: &[
        NAME,
        col("Ready", "string", "Ready pods out of the desired number."),
        col("Up-to-date", "string", "Pods that run the current template (status.updatedReplicas)."),
        col("Available", "string", "Pods available to serve (status.availableReplicas)."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: deployment,
    conditions: no_conditions,
};

fn deployment(d: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = containers_and_images(template_spec(d));
    // Unlike the other kinds, an empty selector prints as nothing at all.
    let selector = selector_string(at(d, &["spec", "selector"])).unwrap_or_else(|()| "<invalid>".into());
    vec![
        name(d),
        format!("{}/{}", int(d, &["status", "readyReplicas"]), desired(d)).into(),
        int(d, &["status", "updatedReplicas"]).into(),
        int(d, &["status", "availableReplicas"]).into(),
        age(d, now),
        containers.into(),
        images.into(),
        selector.into(),
    ]
}

pub(super) static REPLICA_SET: Builtin = Builtin {
    columns: &[
        NAME,
        col("Desired", "integer", "The number of pods wanted (spec.replicas)."),
        col("Current", "integer", "The number of pods that exist (status.replicas)."),
        col("Ready", "integer", "The number of ready pods (status.readyReplicas)."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: replica_set,
    conditions: no_conditions,
};

fn replica_set(rs: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = containers_and_images(template_spec(rs));
    vec![
        name(rs),
        desired(rs).into(),
        int(rs, &["status", "replicas"]).into(),
        int(rs, &["status", "readyReplicas"]).into(),
        age(rs, now),
        containers.into(),
        images.into(),
        format_label_selector(at(rs, &["spec", "selector"])).into(),
    ]
}

pub(super) static STATEFUL_SET: Builtin = Builtin {
    columns: &[NAME, col("Ready", "string", "Ready pods out of the desired number."), AGE, CONTAINERS, IMAGES],
    cells: stateful_set,
    conditions: no_conditions,
};

fn stateful_set(sts: &Value, now: Timestamp) -> Vec<Value> {
    let (containers, images) = containers_and_images(template_spec(sts));
    vec![
        name(sts),
        format!("{}/{}", int(sts, &["status", "readyReplicas"]), desired(sts)).into(),
        age(sts, now),
        containers.into(),
        images.into(),
    ]
}

pub(super) static DAEMON_SET: Builtin = Builtin {
    columns: &[
        NAME,
        col("Desired", "integer", "Nodes that should run the daemon pod (status.desiredNumberScheduled)."),
        col("Current", "integer", "Nodes that run the daemon pod (status.currentNumberScheduled)."),
        col("Ready", "integer", "Nodes whose daemon pod is ready (status.numberReady)."),
        col("Up-to-date", "integer", "Nodes that run the current template (status.updatedNumberScheduled)."),
        col("Available", "integer", "Nodes whose daemon pod is available (status.numberAvailable)."),
        col("Node Selector", "string", "The labels a node needs to run the pod (spec.template.spec.nodeSelector)."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: daemon_set,
    conditions: no_conditions,
};

fn daemon_set(ds: &Value, now: Timestamp) -> Vec<Value> {
    let status = |field: &str| Value::from(int(ds, &["status", field]));
    let (containers, images) = containers_and_images(template_spec(ds));
    vec![
        name(ds),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        format_labels(at(template_spec(ds), &["nodeSelector"])).into(),
        age(ds, now),
        containers.into(),
        images.into(),
        format_label_selector(at(ds, &["spec", "selector"])).into(),
    ]
}

pub(super) static CONTROLLER_REVISION: Builtin = Builtin {
    columns: &[
        NAME,
        col("Controller", "string", "The object that owns this revision, as kind.group/name."),
        col("Revision", "string", "The revision number."),
        AGE,
    ],
    cells: controller_revision,
    conditions: no_conditions,
};

fn controller_revision(cr: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(cr), controller_of(cr).into(), int(cr, &["revision"]).into(), age(cr, now)]
}

/// The controlling owner as `kind.group/name` in lower case (`statefulset.apps/web`),
/// or `<none>`.
fn controller_of(object: &Value) -> String {
    let owners = super::common::list(object, &["metadata", "ownerReferences"]);
    let Some(owner) = owners.iter().find(|o| o.get("controller").and_then(Value::as_bool) == Some(true)) else {
        return "<none>".into();
    };
    let group = text(owner, &["apiVersion"]).rsplit_once('/').map_or("", |(group, _)| group);
    let kind = text(owner, &["kind"]);
    let owner_name = text(owner, &["name"]);
    match (kind, group) {
        ("", "") => owner_name.to_string(),
        (kind, "") => format!("{}/{owner_name}", kind.to_lowercase()),
        (kind, group) => format!("{}.{}/{owner_name}", kind.to_lowercase(), group.to_lowercase()),
    }
}
