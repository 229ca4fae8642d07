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

/// What a resource does on each write, on JSON values.
pub trait Strategy: Send + Sync + 'static {
    /// Decodes a request body into the kind's schema: unknown fields are dropped and
    /// wrongly typed fields are an error (a 400 to the client).
    fn decode(&self, object: Value) -> Result<Value, String>;

    /// Sets defaults. Runs on every create and update, after decoding.
    fn default(&self, object: &mut Value);

    /// Changes a new object before it is first stored (for example, resets status).
    fn prepare_create(&self, object: &mut Value);

    /// Changes an updated object before it is stored, knowing the stored one.
    fn prepare_update(&self, new: &mut Value, old: &Value);

    /// Validation of a new object (metadata excepted: the server validates that).
    fn validate_create(&self, object: &Value) -> Vec<FieldError>;

    /// Validation of an update (immutable fields and the rules of create).
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError>;

    /// The kind-specific fields a field selector may name.
    fn fields(&self, object: &Value) -> Fields;

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

    fn fields(&self) -> Fields {
        Vec::new()
    }
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

impl<T: KindRules + schemars::JsonSchema> Strategy for TypedStrategy<T> {
    fn decode(&self, object: Value) -> Result<Value, String> {
        let typed: T = serde_json::from_value(object).map_err(|e| e.to_string())?;
        serde_json::to_value(&typed).map_err(|e| e.to_string())
    }

    fn default(&self, object: &mut Value) {
        edit::<T>(object, T::default);
    }

    fn prepare_create(&self, object: &mut Value) {
        edit::<T>(object, T::prepare_create);
    }

    fn prepare_update(&self, new: &mut Value, old: &Value) {
        if let Some(old) = from_value::<T>(old) {
            edit::<T>(new, |new| new.prepare_update(&old));
        }
    }

    fn validate_create(&self, object: &Value) -> Vec<FieldError> {
        from_value::<T>(object).map(|t| t.validate()).unwrap_or_default()
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        match (from_value::<T>(new), from_value::<T>(old)) {
            (Some(new), Some(old)) => {
                let mut errors = new.validate();
                errors.extend(new.validate_update(&old));
                errors
            }
            _ => Vec::new(),
        }
    }

    fn fields(&self, object: &Value) -> Fields {
        from_value::<T>(object).map(|t| t.fields()).unwrap_or_default()
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> Option<schemars::Schema> {
        Some(generator.subschema_for::<T>())
    }
}
