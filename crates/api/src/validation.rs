//! Name, label, annotation and object-metadata validation, with Kubernetes' messages.
//! (Being written: signatures are fixed, bodies are filled in by the validation work.)

use serde_json::Value;

use crate::error::FieldError;
use crate::registry::NameRule;

/// Errors for `value` as an RFC 1123 subdomain (empty when valid), messages as Kubernetes'.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Errors for `value` as an RFC 1123 label.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Errors for `value` as an RFC 1035 label.
pub fn dns1035_label(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Errors for a qualified name (label and annotation keys: `prefix/name`).
pub fn qualified_name(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Errors for a label value.
pub fn label_value(value: &str) -> Vec<String> {
    let _ = value;
    Vec::new()
}

/// Validates an object's name under `rule`, reporting at `field`.
pub fn name(value: &str, rule: NameRule, field: &str) -> Vec<FieldError> {
    let _ = (value, rule, field);
    Vec::new()
}

/// Validates labels (a map at `field`).
pub fn labels(labels: &Value, field: &str) -> Vec<FieldError> {
    let _ = (labels, field);
    Vec::new()
}

/// Validates `metadata` of an object being created or updated.
pub fn object_meta(meta: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    let _ = (meta, namespaced, rule);
    Vec::new()
}
