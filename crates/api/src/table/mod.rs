//! Server-side printing: the `meta.k8s.io/v1` `Table` that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, holding the columns and cells
//! Kubernetes' own printers (`pkg/printers/internalversion`, v1.32) give each built-in
//! kind. kubectl prints what it is sent, so these are what users see.
//!
//! Pure: the caller hands in the objects (their stored JSON) and the current time.
//!
//! # What the server does with it
//!
//! * A list, or a single object (a one-row table): [`table`], or [`Printer::table`].
//!   The result has `"metadata": {}`; the server fills in `resourceVersion`, `continue`
//!   and `remainingItemCount` as it does for a list (for a single object, the object's
//!   resourceVersion).
//! * Every row's `object` follows the `includeObject` query parameter
//!   ([`IncludeObject::from_query`]): by default (`Metadata`) a `PartialObjectMetadata`
//!   with the object's whole metadata; `Object` embeds the object itself; `None` gives
//!   `"object": null`, as Kubernetes encodes an absent object.
//! * Columns of priority 1 are the `-o wide` ones: Kubernetes always sends them (its
//!   server prints wide) and kubectl hides them unless asked.
//! * A watch with `as=Table` ([`watch_table`], [`Printer::watch_table`]): each event's
//!   object is a `Table` with exactly one row. Kubernetes sends the column definitions
//!   only with the first event the watch sends, whatever its type (bookmarks included);
//!   every later event carries `"columnDefinitions": null`. So pass `headers: true` for
//!   the first event and `false` after. A `BOOKMARK` event's object (an empty object
//!   bar its resourceVersion) is turned into a one-row table like any other, and counts
//!   as the first event if it comes first. `ERROR` events carry their `Status` as is,
//!   never a table.
//!
//! # Columns
//!
//! Kinds with no printer in Kubernetes (roles, cluster roles, limit ranges) get its
//! default: `Name` and `Created At` (an RFC 3339 timestamp). Kinds this module does not
//! know, custom resources among them, get what a CRD without printer columns gets:
//! `Name` and `Age`. A CRD's `additionalPrinterColumns` go through
//! [`Printer::custom`].

mod apps;
mod batch;
mod common;
mod core;
mod custom;
mod events;
mod other;
mod pod;
#[cfg(test)]
mod tests;

use jiff::Timestamp;
use serde_json::{json, Map, Value};

pub use common::human_duration;

/// What each row's `object` holds (the `includeObject` query parameter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// `"object": null`.
    None,
    /// A `PartialObjectMetadata` with the object's metadata (Kubernetes' default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter (absent or empty means `Metadata`).
    /// The error is the message of Kubernetes' 400 Bad Request.
    pub fn from_query(value: Option<&str>) -> Result<Self, String> {
        match value.unwrap_or("") {
            "" | "Metadata" => Ok(Self::Metadata),
            "None" => Ok(Self::None),
            "Object" => Ok(Self::Object),
            other => Err(format!(
                "Unable to convert to Table as requested: includeObject: Unsupported value: {other:?}: \
                 supported values: \"Metadata\", \"None\", \"Object\""
            )),
        }
    }

    fn render(self, object: &Value) -> Value {
        match self {
            Self::None => Value::Null,
            Self::Object => object.clone(),
            Self::Metadata => json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
            }),
        }
    }
}

/// One column definition of a built-in kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// As Kubernetes names it (`Nominated Node`); kubectl upper-cases it.
    pub name: &'static str,
    /// An OpenAPI type: `string`, `integer`, `number`, `boolean`, or `date`.
    pub type_: &'static str,
    /// `name` for the column holding the object's name, else empty.
    pub format: &'static str,
    pub description: &'static str,
    /// 0, or 1 for the columns kubectl shows only with `-o wide`.
    pub priority: i32,
}

impl Column {
    fn to_json(self) -> Value {
        column_json(self.name, self.type_, self.format, self.description, self.priority)
    }
}

/// One of a custom resource definition's `additionalPrinterColumns`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrinterColumn {
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    /// A simple JSONPath, such as `.spec.replicas` or
    /// `.status.conditions[?(@.type=="Ready")].status`.
    pub json_path: String,
}

/// How one built-in kind prints.
struct Builtin {
    columns: &'static [Column],
    /// Every column's cell, wide ones included.
    cells: fn(&Value, Timestamp) -> Vec<Value>,
    /// The row's `conditions` (pods mark finished ones).
    conditions: fn(&Value) -> Option<Value>,
}

fn no_conditions(_: &Value) -> Option<Value> {
    None
}

/// Kubernetes' default for kinds without a printer: the name and the creation time as
/// an RFC 3339 timestamp (the zero time when unset, as Go formats it).
static DEFAULT: Builtin = Builtin {
    columns: &[
        common::NAME,
        common::col("Created At", "date", "When the object was created (metadata.creationTimestamp)."),
    ],
    cells: default_cells,
    conditions: no_conditions,
};

fn default_cells(object: &Value, _now: Timestamp) -> Vec<Value> {
    let created = common::time(object, &["metadata", "creationTimestamp"])
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    vec![common::name(object), created.into()]
}

/// Which printer a kind uses.
fn builtin(group: &str, kind: &str) -> Option<&'static Builtin> {
    Some(match (group, kind) {
        ("", "Pod") => &pod::POD,
        ("", "Service") => &core::SERVICE,
        ("", "Endpoints") => &core::ENDPOINTS,
        ("", "ConfigMap") => &core::CONFIG_MAP,
        ("", "Secret") => &core::SECRET,
        ("", "ServiceAccount") => &core::SERVICE_ACCOUNT,
        ("", "Namespace") => &core::NAMESPACE,
        ("", "Node") => &core::NODE,
        ("", "PersistentVolume") => &core::PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => &core::PERSISTENT_VOLUME_CLAIM,
        ("", "ResourceQuota") => &core::RESOURCE_QUOTA,
        ("", "Event") => &events::CORE_EVENT,
        ("events.k8s.io", "Event") => &events::EVENT,
        ("apps", "Deployment") => &apps::DEPLOYMENT,
        ("apps", "ReplicaSet") => &apps::REPLICA_SET,
        ("apps", "StatefulSet") => &apps::STATEFUL_SET,
        ("apps", "DaemonSet") => &apps::DAEMON_SET,
        ("apps", "ControllerRevision") => &apps::CONTROLLER_REVISION,
        ("batch", "Job") => &batch::JOB,
        ("batch", "CronJob") => &batch::CRON_JOB,
        ("coordination.k8s.io", "Lease") => &other::LEASE,
        ("discovery.k8s.io", "EndpointSlice") => &other::ENDPOINT_SLICE,
        ("policy", "PodDisruptionBudget") => &other::POD_DISRUPTION_BUDGET,
        ("autoscaling", "HorizontalPodAutoscaler") => &other::HORIZONTAL_POD_AUTOSCALER,
        ("rbac.authorization.k8s.io", "RoleBinding") => &other::ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &other::CLUSTER_ROLE_BINDING,
        ("storage.k8s.io", "StorageClass") => &other::STORAGE_CLASS,
        ("networking.k8s.io", "Ingress") => &other::INGRESS,
        ("networking.k8s.io", "IngressClass") => &other::INGRESS_CLASS,
        ("networking.k8s.io", "NetworkPolicy") => &other::NETWORK_POLICY,
        ("scheduling.k8s.io", "PriorityClass") => &other::PRIORITY_CLASS,
        ("", "LimitRange") | ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => &DEFAULT,
        _ => return None,
    })
}

/// Prints objects of one kind as table rows.
pub struct Printer(Inner);

enum Inner {
    Builtin(&'static Builtin),
    Custom(Vec<custom::Compiled>),
}

impl Printer {
    /// The printer of a kind by API group (`""` for core) and kind; kinds it does not
    /// know print as a custom resource with no printer columns does (`Name`, `Age`).
    pub fn for_kind(group: &str, kind: &str) -> Self {
        match builtin(group, kind) {
            Some(b) => Self(Inner::Builtin(b)),
            None => Self::custom(&[]),
        }
    }

    /// The printer of a custom resource: `Name`, then its CRD version's
    /// `additionalPrinterColumns` (none given means Kubernetes' default, `Age`).
    /// A column whose JSONPath this module cannot evaluate has empty cells.
    pub fn custom(columns: &[PrinterColumn]) -> Self {
        Self(Inner::Custom(custom::compile(columns)))
    }

    /// The `columnDefinitions` array.
    pub fn column_definitions(&self) -> Value {
        match &self.0 {
            Inner::Builtin(b) => b.columns.iter().map(|c| c.to_json()).collect(),
            Inner::Custom(columns) => {
                let mut all = vec![common::NAME.to_json()];
                all.extend(columns.iter().map(custom::Compiled::definition));
                Value::Array(all)
            }
        }
    }

    /// One row's cells, wide columns included.
    pub fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        match &self.0 {
            Inner::Builtin(b) => (b.cells)(object, now),
            Inner::Custom(columns) => {
                let mut cells = vec![common::name(object)];
                cells.extend(columns.iter().map(|c| c.cell(object, now)));
                cells
            }
        }
    }

    fn row(&self, object: &Value, now: Timestamp, include: IncludeObject) -> Value {
        let mut row = Map::new();
        row.insert("cells".into(), Value::Array(self.cells(object, now)));
        if let Inner::Builtin(b) = &self.0 {
            if let Some(conditions) = (b.conditions)(object) {
                row.insert("conditions".into(), conditions);
            }
        }
        row.insert("object".into(), include.render(object));
        Value::Object(row)
    }

    /// The table of a list, or of a single object (one row).
    pub fn table(&self, objects: &[&Value], now: Timestamp, include: IncludeObject) -> Value {
        let rows = objects.iter().map(|o| self.row(o, now, include)).collect();
        table_json(self.column_definitions(), rows)
    }

    /// The object of one watch event: a one-row table, with the column definitions only
    /// when `headers` (the watch's first event) and `null` in their place after.
    pub fn watch_table(&self, object: &Value, now: Timestamp, include: IncludeObject, headers: bool) -> Value {
        let columns = if headers { self.column_definitions() } else { Value::Null };
        table_json(columns, vec![self.row(object, now, include)])
    }
}

/// The table of a list (or of a single object) of a built-in kind, by API group (`""`
/// for core) and kind. See [`Printer`] for custom resources' printer columns.
pub fn table(group: &str, kind: &str, objects: &[&Value], now: Timestamp, include: IncludeObject) -> Value {
    Printer::for_kind(group, kind).table(objects, now, include)
}

/// A watch event's object: a one-row table, with column definitions only when
/// `headers` — true for the first event the watch sends, false for every later one.
pub fn watch_table(
    group: &str,
    kind: &str,
    object: &Value,
    now: Timestamp,
    include: IncludeObject,
    headers: bool,
) -> Value {
    Printer::for_kind(group, kind).watch_table(object, now, include, headers)
}

fn column_json(name: &str, type_: &str, format: &str, description: &str, priority: i32) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": description, "priority": priority})
}

fn table_json(columns: Value, rows: Vec<Value>) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}
