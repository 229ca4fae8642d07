//! The shape of the generated schema table (`schema.rs`) and lookups into it.

use super::schema::{GROUP_VERSIONS, MESSAGES};

/// One protobuf message of the Kubernetes API.
#[derive(Debug)]
pub(super) struct Message {
    /// Full proto name, e.g. `k8s.io.api.core.v1.Pod`.
    pub name: &'static str,
    pub repr: Repr,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

/// How a message appears in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repr {
    /// An object of its fields.
    Plain,
    /// meta/v1 Time {1: seconds}: RFC 3339 with whole seconds; an empty message is null.
    Time,
    /// meta/v1 MicroTime {1: seconds, 2: nanos}: RFC 3339 with six fractional digits.
    MicroTime,
    /// meta/v1 Duration {1: nanoseconds}: Go's duration string, e.g. `1h0m0s`.
    Duration,
    /// resource.Quantity {1: string}: the string.
    Quantity,
    /// intstr.IntOrString {1: type (0 int, 1 string), 2: intVal, 3: strVal}.
    IntOrString,
    /// RawExtension, FieldsV1, apiextensions JSON {1: raw bytes}: the embedded JSON.
    RawJson,
    /// A named slice wrapper {1: repeated string} (ExtraValue, Verbs): a JSON array.
    Items,
    /// JSONSchemaPropsOrBool {1: allows, 2: schema}: the schema, else the bool.
    SchemaOrBool,
    /// JSONSchemaPropsOrArray {1: schema, 2: repeated schema}: the array, else the schema.
    SchemaOrArray,
    /// JSONSchemaPropsOrStringArray {1: schema, 2: repeated string}: the array, else the schema.
    SchemaOrStringArray,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Field {
    pub tag: u32,
    /// The JSON key; empty for inline fields.
    pub json: &'static str,
    pub kind: Kind,
    pub card: Card,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Card {
    /// A non-pointer `omitempty` field in Go. Go's protobuf marshaler writes it even
    /// when zero but Go's JSON leaves it out, so a zero scalar here means "unset".
    Optional,
    /// A Go pointer (`replicas: 0` differs from no replicas) or a field Go's JSON
    /// always writes: a zero scalar is kept.
    Kept,
    Repeated,
    /// A Go struct embedded with `json:",inline"`: a nested message on the wire whose
    /// fields sit directly in the parent's JSON object.
    Inline,
}

/// A field's wire type, as far as JSON cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// A message, by index into `MESSAGES`.
    Msg(u16),
    /// `map<string, string>`, sent as repeated {1: key, 2: value} entries.
    MapStr,
    MapBytes,
    MapMsg(u16),
}

pub(super) const fn msg(name: &'static str, repr: Repr, fields: &'static [Field]) -> Message {
    Message { name, repr, fields }
}

pub(super) const fn opt(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field { tag, json, kind, card: Card::Optional }
}

pub(super) const fn kept(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field { tag, json, kind, card: Card::Kept }
}

pub(super) const fn rep(tag: u32, json: &'static str, kind: Kind) -> Field {
    Field { tag, json, kind, card: Card::Repeated }
}

pub(super) const fn inline(tag: u32, kind: Kind) -> Field {
    Field { tag, json: "", kind, card: Card::Inline }
}

/// Kinds every group version shares (Status, DeleteOptions, ...) live in meta/v1.
const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

impl Kind {
    /// Strings, bytes, numbers and booleans: what Go's `omitempty` can leave out.
    pub fn is_scalar(self) -> bool {
        !matches!(self, Kind::Msg(_) | Kind::MapStr | Kind::MapBytes | Kind::MapMsg(_))
    }
}

impl Message {
    pub fn by_index(index: u16) -> &'static Message {
        // The generator only emits indexes into MESSAGES.
        &MESSAGES[usize::from(index)]
    }

    pub fn by_name(name: &str) -> Option<&'static Message> {
        MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok().map(|i| &MESSAGES[i])
    }

    /// The message a `{apiVersion, kind}` names, if the schema has it.
    pub fn for_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
        let package = GROUP_VERSIONS.iter().find(|(gv, _)| *gv == api_version)?.1;
        Self::by_name(&format!("{package}.{kind}"))
            .or_else(|| Self::by_name(&format!("{META_V1}.{kind}")))
            .filter(|m| m.repr == Repr::Plain)
    }

    pub fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields.binary_search_by_key(&tag, |f| f.tag).ok().map(|i| &self.fields[i])
    }

    /// The message type of field `tag`, for the special reprs that embed schemas.
    pub fn child(&self, tag: u32) -> Option<&'static Message> {
        match self.field(tag)?.kind {
            Kind::Msg(index) => Some(Self::by_index(index)),
            _ => None,
        }
    }

    /// Whether `key` is one of this message's JSON keys, looking through inline fields.
    pub fn has_json_key(&self, key: &str) -> bool {
        self.fields.iter().any(|f| match (f.card, f.kind) {
            (Card::Inline, Kind::Msg(index)) => Self::by_index(index).has_json_key(key),
            _ => f.json == key,
        })
    }
}
