//! The shape of the generated schema table (`schema.rs`) and lookups into it.

use serde_json::{Map, Value};

use super::schema::{KINDS, TYPES};

/// A struct type of the Kubernetes API.
#[derive(Debug)]
pub(super) struct TypeDef {
    /// OpenAPI definition name, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub name: &'static str,
    /// `+structType=atomic`: owned and replaced as a whole (LabelSelector, OwnerReference).
    pub atomic: bool,
    pub fields: &'static [FieldDef],
}

#[derive(Debug)]
pub(super) struct FieldDef {
    pub json: &'static str,
    pub ty: Ty,
    /// What the field holds in the JSON of a Go zero value of its struct.
    pub zero: Zero,
}

/// A field's type as server-side apply sees it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    /// Strings, numbers, booleans, and types JSON writes as scalars (Quantity, Time,
    /// IntOrString).
    Scalar(Scalar),
    /// Arbitrary JSON (RawExtension, CRD JSON): maps are granular, lists atomic.
    Deduced,
    /// A struct, by index into `TYPES`.
    Struct(u16),
    List(ListType, &'static Ty),
    /// A map with string keys; `true` when atomic (`+mapType=atomic`).
    Map(bool, &'static Ty),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum ListType {
    /// Owned and replaced as a whole.
    Atomic,
    /// Scalars, each item owned on its own (`v:"x"`).
    Set,
    /// Objects identified by these fields (`k:{"name":"web"}`).
    Keyed(&'static [Key]),
}

/// A list-map key field and its schema default (JSON text), used when an item omits it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Key {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scalar {
    Str,
    Int,
    Num,
    Bool,
    Other,
}

/// A field of a Go zero value, as JSON writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Zero {
    /// Left out (`omitempty` zero, nil pointer).
    Absent,
    /// `null`: a nil pointer, slice or map without `omitempty`.
    Null,
    /// The scalar's zero value (`""`, `0`, `false`) without `omitempty`.
    Scalar0,
    /// A non-pointer struct: always written, as its own zero value.
    Object,
}

pub(super) const fn t(name: &'static str, atomic: bool, fields: &'static [FieldDef]) -> TypeDef {
    TypeDef { name, atomic, fields }
}

pub(super) const fn f(json: &'static str, ty: Ty, zero: Zero) -> FieldDef {
    FieldDef { json, ty, zero }
}

pub(super) const fn k(name: &'static str, default: Option<&'static str>) -> Key {
    Key { name, default }
}

impl TypeDef {
    pub fn by_index(index: u16) -> Option<&'static TypeDef> {
        TYPES.get(usize::from(index))
    }

    pub fn field(&self, json: &str) -> Option<&'static FieldDef> {
        self.fields.iter().find(|f| f.json == json)
    }
}

/// The schema of one kind: how apply merges it and how managedFields track it.
///
/// Built-in kinds get their Kubernetes schema; anything else (custom resources) gets
/// Kubernetes' "deduced" schema: every map granular (each key owned on its own), every
/// list atomic (owned and replaced as a whole).
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    pub(super) root: Ty,
}

impl Schema {
    /// The schema for kinds skiff has no types for: maps granular, lists atomic.
    pub fn deduced() -> Schema {
        Schema { root: Ty::Deduced }
    }

    /// Whether this is a built-in kind's schema rather than the deduced one.
    pub fn is_typed(&self) -> bool {
        !matches!(self.root, Ty::Deduced)
    }

    /// The OpenAPI definition name of the root type, e.g. `io.k8s.api.apps.v1.Deployment`.
    pub fn type_name(&self) -> Option<&'static str> {
        match self.root {
            Ty::Struct(index) => TypeDef::by_index(index).map(|t| t.name),
            _ => None,
        }
    }

    /// The JSON of a Go zero value of the kind (`objectCreater.New(gvk)` in Kubernetes):
    /// what a create is tracked against. Non-pointer structs are present (`spec: {}`),
    /// so their paths are not "added" and carry no `.` in managedFields.
    pub(super) fn zero_object(&self) -> Value {
        match self.root {
            Ty::Struct(index) => zero_struct(index, 0),
            _ => Value::Object(Map::new()),
        }
    }
}

fn zero_struct(index: u16, depth: usize) -> Value {
    let mut out = Map::new();
    let Some(def) = TypeDef::by_index(index) else { return Value::Object(out) };
    if depth > 32 {
        return Value::Object(out);
    }
    for field in def.fields {
        let value = match (field.zero, field.ty) {
            (Zero::Absent, _) => continue,
            (Zero::Object, Ty::Struct(inner)) => zero_struct(inner, depth + 1),
            (Zero::Scalar0, Ty::Scalar(Scalar::Str)) => Value::String(String::new()),
            (Zero::Scalar0, Ty::Scalar(Scalar::Int)) => Value::from(0),
            (Zero::Scalar0, Ty::Scalar(Scalar::Num)) => Value::from(0.0),
            (Zero::Scalar0, Ty::Scalar(Scalar::Bool)) => Value::Bool(false),
            _ => Value::Null,
        };
        out.insert(field.json.to_string(), value);
    }
    Value::Object(out)
}

/// The schema of a kind by group (`""` for core), version and kind. Kinds skiff has no
/// built-in types for get [`Schema::deduced`].
pub fn schema_for(group: &str, version: &str, kind: &str) -> Schema {
    KINDS
        .binary_search_by(|(g, v, k, _)| (*g, *v, *k).cmp(&(group, version, kind)))
        .ok()
        .map(|i| Schema { root: Ty::Struct(KINDS[i].3) })
        .unwrap_or_else(Schema::deduced)
}

/// The schema for an object's `apiVersion` and `kind` (e.g. `apps/v1`, `Deployment`).
pub fn schema_for_api_version(api_version: &str, kind: &str) -> Schema {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    schema_for(group, version, kind)
}
