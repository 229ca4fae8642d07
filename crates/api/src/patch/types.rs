//! The shape of the generated type table (`strategies.rs`) and lookups into it.
//!
//! Each entry stands for the Go type strategic merge patch reflects on
//! (`PatchMetaFromStruct{T}`): a struct with its JSON fields (inline structs already
//! flattened), a map, a list of some element type, or a scalar.

use super::strategies::{GROUP_VERSIONS, TYPES};

/// A Go API struct: its proto name and JSON fields in declaration order.
#[derive(Debug)]
pub(super) struct Type {
    /// Full proto name, e.g. `k8s.io.api.core.v1.PodSpec`; the Go name is the last part.
    pub name: &'static str,
    pub fields: &'static [Field],
}

#[derive(Debug)]
pub(super) struct Field {
    pub json: &'static str,
    pub ty: Ty,
    /// The `patchStrategy` tag, e.g. `merge` or `merge,retainKeys`; empty if none.
    pub strategy: &'static str,
    /// The `patchMergeKey` tag; empty if none.
    pub merge_key: &'static str,
}

/// A Go type as strategic merge patch sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    /// A struct, by index into `TYPES`. Types with a custom JSON form (Time,
    /// Quantity, IntOrString, RawExtension...) have no fields.
    Struct(u16),
    /// Any Go map (`map[string]string`, `ResourceList`...).
    Map,
    /// A Go slice; `[]byte` is a slice of uint8.
    List(&'static Ty),
    Scalar(GoKind),
    /// No schema: every field exists, nothing has a patch strategy (lists are
    /// replaced, maps merged). Not a Kubernetes type; see `Schema::untyped`.
    Untyped,
}

/// The `reflect.Kind` of a scalar Go field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GoKind {
    String,
    Bool,
    Int32,
    Int64,
    Float64,
    Uint8,
}

pub(super) const STR: Ty = Ty::Scalar(GoKind::String);
pub(super) const BOOL: Ty = Ty::Scalar(GoKind::Bool);
pub(super) const I32: Ty = Ty::Scalar(GoKind::Int32);
pub(super) const I64: Ty = Ty::Scalar(GoKind::Int64);
pub(super) const F64: Ty = Ty::Scalar(GoKind::Float64);
pub(super) const MAP: Ty = Ty::Map;
pub(super) const BYTES: Ty = Ty::List(&Ty::Scalar(GoKind::Uint8));

pub(super) const fn t(name: &'static str, fields: &'static [Field]) -> Type {
    Type { name, fields }
}

/// A field without patch tags.
pub(super) const fn f(json: &'static str, ty: Ty) -> Field {
    Field { json, ty, strategy: "", merge_key: "" }
}

/// A field with `patchStrategy`/`patchMergeKey` tags.
pub(super) const fn m(json: &'static str, ty: Ty, strategy: &'static str, merge_key: &'static str) -> Field {
    Field { json, ty, strategy, merge_key }
}

impl Ty {
    /// `reflect.Kind.String()` of the Go type, as strategicpatch's messages print it.
    pub fn kind_name(self) -> &'static str {
        match self {
            Ty::Struct(_) | Ty::Untyped => "struct",
            Ty::Map => "map",
            Ty::List(_) => "slice",
            Ty::Scalar(GoKind::String) => "string",
            Ty::Scalar(GoKind::Bool) => "bool",
            Ty::Scalar(GoKind::Int32) => "int32",
            Ty::Scalar(GoKind::Int64) => "int64",
            Ty::Scalar(GoKind::Float64) => "float64",
            Ty::Scalar(GoKind::Uint8) => "uint8",
        }
    }
}

impl Type {
    pub fn by_index(index: u16) -> Option<&'static Type> {
        TYPES.get(usize::from(index))
    }

    pub fn by_name(name: &str) -> Option<u16> {
        let index = TYPES.binary_search_by(|t| t.name.cmp(name)).ok()?;
        u16::try_from(index).ok()
    }

    /// The struct an `apiVersion` and kind name, if the table has it.
    pub fn for_kind(api_version: &str, kind: &str) -> Option<u16> {
        let package = GROUP_VERSIONS.iter().find(|(gv, _)| *gv == api_version)?.1;
        Self::by_name(&format!("{package}.{kind}"))
    }

    /// The Go type name (`PodSpec`).
    pub fn go_name(&self) -> &'static str {
        self.name.rsplit('.').next().unwrap_or(self.name)
    }

    /// The field encoding/json would decode `key` into: an exact match, else the
    /// first case-insensitive one (Go's `equalFold`).
    pub fn field(&self, key: &str) -> Option<&'static Field> {
        let fields: &'static [Field] = self.fields;
        fields.iter().find(|f| f.json == key).or_else(|| fields.iter().find(|f| fold_equal(f.json, key)))
    }
}

/// Unicode simple case folding as far as Go's `bytes.EqualFold` needs it for JSON
/// field names: ASCII case, plus the Kelvin sign and long s.
fn fold_equal(a: &str, b: &str) -> bool {
    fn fold(c: char) -> char {
        match c {
            '\u{212A}' => 'k',
            '\u{017F}' => 's',
            c => {
                let mut lower = c.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(l), None) => l,
                    _ => c,
                }
            }
        }
    }
    a.chars().map(fold).eq(b.chars().map(fold))
}
