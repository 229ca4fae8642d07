//! Per-kind behaviour: decoding (which prunes unknown fields), defaulting, validation,
//! and the fields a field selector may name.
//!
//! The API server works on `serde_json::Value` so that custom resources fit the same
//! path; built-in kinds get a [`TypedStrategy`] that round-trips through the
//! `k8s-openapi` type and calls the kind's [`KindRules`].

use std::marker::PhantomData;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::error::FieldError;

/// Selectable field values of one object, e.g. `("spec.nodeName", "node-1")`.
/// `metadata.name` and `metadata.namespace` are always selectable and need not be listed.
pub type Fields = Vec<(&'static str, String)>;

/// A request body in the kind's schema, defaulted.
#[derive(Debug)]
pub struct Decoded {
    pub object: Value,
    /// Paths of the body's fields the schema does not have, e.g. `spec.containers[0].colour`.
    pub unknown: Vec<String>,
}

/// A field a field selector may name, read straight from the object's JSON (the watch
/// cache reads only these paths of each stored object, not the whole of it).
#[derive(Clone, Copy, Debug)]
pub struct SelectableField {
    pub name: &'static str,
    /// Dotted paths tried in order; the first non-empty value wins. Empty: the name's path.
    pub from: &'static [&'static str],
    /// The text of the Go zero value Kubernetes compares when the field is unset.
    pub absent: &'static str,
}

impl SelectableField {
    /// A string field; "" when unset.
    pub const fn text(name: &'static str) -> Self {
        Self { name, from: &[], absent: "" }
    }

    /// A boolean field; "false" when unset.
    pub const fn flag(name: &'static str) -> Self {
        Self { name, from: &[], absent: "false" }
    }

    /// An integer field; "0" when unset.
    pub const fn count(name: &'static str) -> Self {
        Self { name, from: &[], absent: "0" }
    }

    /// Read from other paths than the name's (first non-empty wins).
    pub const fn from(self, paths: &'static [&'static str]) -> Self {
        Self { from: paths, ..self }
    }

    /// The dotted paths this field is read from.
    pub fn paths(&self) -> &[&'static str] {
        if self.from.is_empty() {
            std::slice::from_ref(&self.name)
        } else {
            self.from
        }
    }

    pub fn read(&self, object: &Value) -> String {
        for path in self.paths() {
            let found = path.split('.').try_fold(object, |value, part| match value {
                Value::Object(map) => map.get(part),
                Value::Array(items) => items.get(part.parse::<usize>().ok()?),
                _ => None,
            });
            match found {
                Some(Value::String(text)) if !text.is_empty() => return text.clone(),
                Some(Value::Bool(flag)) => return flag.to_string(),
                Some(Value::Number(number)) => return number.to_string(),
                _ => {}
            }
        }
        self.absent.to_string()
    }
}

/// Which of a kind's update rules a write goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateRules {
    /// The main resource's changes (a subresource changes only its own part, which
    /// they would undo).
    pub prepare: bool,
    /// Validation (the server's own internal writes skip it).
    pub validate: bool,
}

/// What a resource does on each write, on JSON values.
pub trait Strategy: Send + Sync + 'static {
    /// Decodes a request body into the kind's schema and sets its defaults, in one pass
    /// through the typed form: unknown fields are dropped (their paths returned, for
    /// warnings) and wrongly typed fields are an error (a 400 to the client).
    fn decode(&self, object: Value) -> Result<Decoded, String>;

    /// Changes a new object before it is first stored (for example, resets status) and
    /// validates the result (metadata excepted: the server validates that), in one pass
    /// through the typed form.
    fn prepare_create(&self, object: &mut Value) -> Vec<FieldError>;

    /// An update of the stored `old` to `new` (both defaulted already), in one pass
    /// through the typed forms: with `rules`, the kind's update rules change `new` and
    /// its validation (immutable fields and the rules of create) is returned.
    fn prepare_update(&self, new: &mut Value, old: &Value, rules: UpdateRules) -> Vec<FieldError>;

    /// The kind-specific fields a field selector may name.
    fn selectable(&self) -> &'static [SelectableField];

    /// The values of the selectable fields of `object`.
    fn fields(&self, object: &Value) -> Fields {
        self.selectable().iter().map(|field| (field.name, field.read(object))).collect()
    }

    /// The kind's OpenAPI schema (a `$ref` into the generator's definitions), if known.
    fn schema(&self, _generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        None
    }
}

/// The rules of one built-in kind, on its typed form. Every method has a neutral default.
pub trait KindRules: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Defaults as Kubernetes sets them (pods: restartPolicy, dnsPolicy, ...).
    fn default(&mut self) {}

    /// Before first store: e.g. reset status, set phase.
    fn prepare_create(&mut self) {}

    /// Before an update is stored.
    fn prepare_update(&mut self, _old: &Self) {}

    fn validate(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// Immutability and transition rules. `validate` also runs on updates.
    fn validate_update(&self, _old: &Self) -> Vec<FieldError> {
        Vec::new()
    }

    /// The kind-specific fields a field selector may name.
    const FIELDS: &'static [SelectableField] = &[];
}

/// A [`Strategy`] for a `k8s-openapi` type with [`KindRules`].
pub struct TypedStrategy<T>(PhantomData<fn() -> T>);

impl<T> Default for TypedStrategy<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

fn from_value<T: DeserializeOwned>(value: &Value) -> Option<T> {
    T::deserialize(value).ok()
}

/// Applies `change` to the typed form of `value`, writing the result back.
fn edit<T: KindRules>(value: &mut Value, change: impl FnOnce(&mut T)) {
    if let Some(mut typed) = from_value::<T>(value) {
        change(&mut typed);
        if let Ok(encoded) = serde_json::to_value(&typed) {
            *value = encoded;
        }
    }
}

/// Kubernetes' spelling of a field path: `spec.containers[0].name`.
fn write_path(path: &serde_ignored::Path, out: &mut String) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            write_path(parent, out);
            out.push_str(&format!("[{index}]"));
        }
        Path::Map { parent, key } => {
            write_path(parent, out);
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(key);
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            write_path(parent, out)
        }
    }
}

/// The selectable fields of a typed object, as the API server reads them from its JSON.
#[cfg(test)]
pub(crate) fn fields_of<T: KindRules>(object: &T) -> Fields {
    let value = serde_json::to_value(object).unwrap_or(Value::Null);
    T::FIELDS.iter().map(|field| (field.name, field.read(&value))).collect()
}

impl<T: KindRules + schemars::JsonSchema> Strategy for TypedStrategy<T> {
    fn decode(&self, object: Value) -> Result<Decoded, String> {
        let mut unknown = Vec::new();
        let mut typed: T = serde_ignored::deserialize(object, |path| {
            let mut text = String::new();
            write_path(&path, &mut text);
            unknown.push(text);
        })
        .map_err(|e| e.to_string())?;
        typed.default();
        let object = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
        Ok(Decoded { object, unknown })
    }

    fn prepare_create(&self, object: &mut Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        edit::<T>(object, |typed| {
            typed.prepare_create();
            errors = typed.validate();
        });
        errors
    }

    fn prepare_update(&self, new: &mut Value, old: &Value, rules: UpdateRules) -> Vec<FieldError> {
        if !rules.prepare && !rules.validate {
            return Vec::new();
        }
        let Some(old) = from_value::<T>(old) else { return Vec::new() };
        let validate = |new: &T| {
            let mut errors = new.validate();
            errors.extend(new.validate_update(&old));
            errors
        };
        let mut errors = Vec::new();
        if rules.prepare {
            edit::<T>(new, |new| {
                new.prepare_update(&old);
                if rules.validate {
                    errors = validate(new);
                }
            });
        } else if let Some(new) = from_value::<T>(new) {
            errors = validate(&new);
        }
        errors
    }

    fn selectable(&self) -> &'static [SelectableField] {
        T::FIELDS
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<T>())
    }
}
