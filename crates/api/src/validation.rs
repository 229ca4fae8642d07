//! Name, label, annotation and object-metadata validation, with Kubernetes' messages.
//!
//! Clients match on these messages (and people read them), so every string here is
//! worded exactly as the Kubernetes API server words it. The format checks are written
//! out by hand instead of with regular expressions; the regex each one implements is
//! quoted in its message, as Kubernetes does.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::registry::NameRule;

/// The most bytes all of an object's annotation keys and values may take together.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";

const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1123_SUBDOMAIN_FMT: &str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

const DNS1035_LABEL_MAX: usize = 63;
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";

const QUALIFIED_NAME_MAX: usize = 63;
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_EXAMPLES: [&str; 3] = ["MyName", "my.name", "123-abc"];

const LABEL_VALUE_MAX: usize = 63;
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

const NEGATIVE_MSG: &str = "must be greater than or equal to 0";

/// The finalizers that ask for opposite handling of dependents and so exclude each other.
const FINALIZER_ORPHAN: &str = "orphan";
const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// `must be no more than 63 characters`
pub fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// A format failure: the rule in words, examples, and the regex it stands for.
/// Kubernetes separates the examples with `',  or '` (a comma and two spaces); clients
/// see exactly that, so it is kept.
pub fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{message} (regex used for validation is '{regex}')");
    }
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{message} (e.g. {}regex used for validation is '{regex}')", examples.join(" or "))
}

// The format checks work on bytes: names are ASCII, any other byte fails the check,
// and a generateName prefix is masked byte-wise (see `mask_trailing_dash`).

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Non-empty, every byte `inner`, first and last byte also `edge`.
fn bounded(value: &[u8], edge: impl Fn(u8) -> bool, inner: impl Fn(u8) -> bool) -> bool {
    match (value.first(), value.last()) {
        (Some(&first), Some(&last)) => edge(first) && edge(last) && value.iter().all(|&b| inner(b)),
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_dns1123_label_format(value: &[u8]) -> bool {
    bounded(value, is_lower_alnum, |b| is_lower_alnum(b) || b == b'-')
}

/// Dot-separated RFC 1123 labels.
fn is_dns1123_subdomain_format(value: &[u8]) -> bool {
    value.split(|&b| b == b'.').all(is_dns1123_label_format)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn is_dns1035_label_format(value: &[u8]) -> bool {
    value.first().is_some_and(u8::is_ascii_lowercase) && is_dns1123_label_format(value)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_format(value: &[u8]) -> bool {
    bounded(value, |b| b.is_ascii_alphanumeric(), |b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn subdomain_errors(value: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !is_dns1123_subdomain_format(value) {
        errors.push(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errors
}

fn label_errors(value: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errors.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !is_dns1123_label_format(value) {
        // A valid subdomain that is not a valid label (length was checked) has dots.
        if is_dns1123_subdomain_format(value) {
            errors.push("must not contain dots".to_string());
        } else {
            errors.push(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errors
}

fn dns1035_errors(value: &[u8]) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1035_LABEL_MAX {
        errors.push(max_len_error(DNS1035_LABEL_MAX));
    }
    if !is_dns1035_label_format(value) {
        errors.push(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errors
}

/// Errors for `value` as an RFC 1123 subdomain (empty when valid), messages as Kubernetes'.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    subdomain_errors(value.as_bytes())
}

/// Errors for `value` as an RFC 1123 label.
pub fn dns1123_label(value: &str) -> Vec<String> {
    label_errors(value.as_bytes())
}

/// Errors for `value` as an RFC 1035 label.
pub fn dns1035_label(value: &str) -> Vec<String> {
    dns1035_errors(value.as_bytes())
}

/// Errors for a qualified name (label and annotation keys: `prefix/name`).
pub fn qualified_name(value: &str) -> Vec<String> {
    let name_format = || regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &QUALIFIED_NAME_EXAMPLES);
    let mut errors = Vec::new();
    let name = match value.split_once('/') {
        None => value,
        Some((prefix, name)) if !name.contains('/') => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                errors.extend(dns1123_subdomain(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            name
        }
        Some(_) => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                name_format()
            )];
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else if name.len() > QUALIFIED_NAME_MAX {
        errors.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    // Checked even when empty: Kubernetes reports both the emptiness and the format.
    if !is_qualified_name_format(name.as_bytes()) {
        errors.push(format!("name part {}", name_format()));
    }
    errors
}

/// Errors for a label value.
pub fn label_value(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errors.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !value.is_empty() && !is_qualified_name_format(value.as_bytes()) {
        errors.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errors
}

/// Errors for a name that must be usable as one segment of a URL path.
fn path_segment_errors(value: &str, prefix: bool) -> Vec<String> {
    // A prefix gets a suffix appended, so it can never end up being "." or "..".
    if !prefix {
        if let Some(bad) = [".", ".."].into_iter().find(|bad| value == *bad) {
            return vec![format!("may not be '{bad}'")];
        }
    }
    ["/", "%"].into_iter().filter(|bad| value.contains(bad)).map(|bad| format!("may not contain '{bad}'")).collect()
}

/// The name a generateName prefix is checked as: a trailing dash is fine there, since a
/// random suffix follows it. Kubernetes swaps the last two bytes for one `a`, so the byte
/// before the dash goes unchecked; done on bytes to agree with it on any input.
fn mask_trailing_dash(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    match bytes {
        [head @ .., _, b'-'] => {
            let mut masked = head.to_vec();
            masked.push(b'a');
            masked
        }
        _ => bytes.to_vec(),
    }
}

/// Messages for `value` as a name under `rule`; `prefix` when it is a generateName
/// (a random suffix will be appended). Emptiness is the caller's concern.
pub fn name_errors(value: &str, rule: NameRule, prefix: bool) -> Vec<String> {
    let checked = if prefix { mask_trailing_dash(value) } else { value.as_bytes().to_vec() };
    match rule {
        NameRule::DnsSubdomain => subdomain_errors(&checked),
        NameRule::DnsLabel => label_errors(&checked),
        NameRule::Dns1035Label => dns1035_errors(&checked),
        NameRule::PathSegment => path_segment_errors(value, prefix),
    }
}

/// Validates an object's name under `rule`, reporting at `field`.
/// Emptiness is not checked here: whether the name is required is the caller's call.
pub fn name(value: &str, rule: NameRule, field: &str) -> Vec<FieldError> {
    name_errors(value, rule, false).iter().map(|msg| FieldError::invalid(field, value, msg)).collect()
}

/// The string entries of a `map[string]string` field. Anything else there is reported:
/// decoding normally rejects it first, but validation must not silently pass it.
fn string_map<'a>(value: &'a Value, field: &str, errors: &mut Vec<FieldError>) -> Vec<(&'a str, &'a str)> {
    let map = match value {
        Value::Null => return Vec::new(),
        Value::Object(map) => map,
        other => {
            errors.push(FieldError::invalid(field, other.clone(), "must be an object"));
            return Vec::new();
        }
    };
    let mut entries = Vec::with_capacity(map.len());
    for (key, value) in map {
        match value.as_str() {
            Some(text) => entries.push((key.as_str(), text)),
            None => errors.push(FieldError::invalid(field, value.clone(), "must be a string")),
        }
    }
    entries
}

/// Validates labels (a map at `field`).
pub fn labels(labels: &Value, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in string_map(labels, field, &mut errors) {
        errors.extend(qualified_name(key).iter().map(|msg| FieldError::invalid(field, key, msg)));
        errors.extend(label_value(value).iter().map(|msg| FieldError::invalid(field, value, msg)));
    }
    errors
}

/// Validates annotations (a map at `field`): keys are qualified names in any case, and
/// keys and values together stay within [`TOTAL_ANNOTATION_SIZE_LIMIT`] bytes.
pub fn annotations(annotations: &Value, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let entries = string_map(annotations, field, &mut errors);
    for (key, _) in &entries {
        // Annotation keys are qualified names except that case does not matter.
        let lower = key.to_lowercase();
        errors.extend(qualified_name(&lower).iter().map(|msg| FieldError::invalid(field, *key, msg)));
    }
    let total: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errors.push(FieldError::too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errors
}

/// Validates finalizer names (a list at `field`).
pub fn finalizers(finalizers: &Value, field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let names: Vec<&str> = match finalizers {
        Value::Null => return errors,
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        other => return vec![FieldError::invalid(field, other.clone(), "must be a list")],
    };
    for name in &names {
        errors.extend(qualified_name(name).iter().map(|msg| FieldError::invalid(field, *name, msg)));
    }
    if names.contains(&FINALIZER_ORPHAN) && names.contains(&FINALIZER_FOREGROUND) {
        let detail = format!("finalizer {FINALIZER_ORPHAN} and {FINALIZER_FOREGROUND} cannot be both set");
        errors.push(FieldError::invalid(field, finalizers.clone(), &detail));
    }
    errors
}

/// A string member of a JSON object, "" when absent or not a string.
fn str_member<'a>(object: &'a Value, key: &str) -> &'a str {
    object.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The version of an apiVersion, "" when Kubernetes cannot parse it (more than one '/').
fn version_of(api_version: &str) -> &str {
    match api_version.split_once('/') {
        None => api_version,
        Some((_, version)) if !version.contains('/') => version,
        Some(_) => "",
    }
}

/// Errors for one owner reference. Kubernetes reports these at the list's path, not at
/// the element's index.
fn owner_reference(reference: &Value, field: &str) -> Vec<FieldError> {
    let api_version = str_member(reference, "apiVersion");
    let kind = str_member(reference, "kind");
    let name = str_member(reference, "name");
    let uid = str_member(reference, "uid");
    // (member, whether it is missing, the value shown, the detail)
    let required = [
        ("apiVersion", version_of(api_version).is_empty(), api_version, "version must not be empty"),
        ("kind", kind.is_empty(), kind, "kind must not be empty"),
        ("name", name.is_empty(), name, "name must not be empty"),
        ("uid", uid.is_empty(), uid, "uid must not be empty"),
    ];
    let mut errors: Vec<FieldError> = required
        .into_iter()
        .filter(|(_, missing, _, _)| *missing)
        .map(|(member, _, shown, detail)| FieldError::invalid(format!("{field}.{member}"), shown, detail))
        .collect();
    // Events are never owners: they are garbage-collected on their own schedule.
    if api_version == "v1" && kind == "Event" {
        errors.push(FieldError::invalid(field, reference.clone(), "/v1, Kind=Event is disallowed from being an owner"));
    }
    errors
}

/// Validates ownerReferences (a list at `field`): required members, one controller.
pub fn owner_references(references: &Value, field: &str) -> Vec<FieldError> {
    let items = match references {
        Value::Null => return Vec::new(),
        Value::Array(items) => items,
        other => return vec![FieldError::invalid(field, other.clone(), "must be a list")],
    };
    let mut errors = Vec::new();
    let mut controller: Option<String> = None;
    for reference in items {
        errors.extend(owner_reference(reference, field));
        if reference.get("controller").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let this = format!("{}/{}", str_member(reference, "kind"), str_member(reference, "name"));
        match &controller {
            Some(first) => {
                let detail = format!(
                    "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                );
                errors.push(FieldError::invalid(field, references.clone(), &detail));
            }
            None => controller = Some(this),
        }
    }
    errors
}

fn name_and_generate_name(meta: &Value, rule: NameRule) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let generate_name = str_member(meta, "generateName");
    if !generate_name.is_empty() {
        errors.extend(
            name_errors(generate_name, rule, true)
                .iter()
                .map(|msg| FieldError::invalid("metadata.generateName", generate_name, msg)),
        );
    }
    let name = str_member(meta, "name");
    if !name.is_empty() {
        errors.extend(self::name(name, rule, "metadata.name"));
    } else if generate_name.is_empty() {
        // With a generateName the server picks the name, so only then may it be missing.
        errors.push(FieldError::required("metadata.name", "name or generateName is required"));
    }
    errors
}

fn namespace(meta: &Value, namespaced: bool) -> Vec<FieldError> {
    const FIELD: &str = "metadata.namespace";
    let namespace = str_member(meta, "namespace");
    match (namespaced, namespace.is_empty()) {
        (true, true) => vec![FieldError::required(FIELD, "")],
        (true, false) => name(namespace, NameRule::DnsLabel, FIELD),
        // The server clears the namespace of cluster-scoped objects before validating;
        // one that is still set here is refused.
        (false, false) => vec![FieldError::forbidden(FIELD, "not allowed on this type")],
        (false, true) => Vec::new(),
    }
}

fn generation(meta: &Value) -> Vec<FieldError> {
    match meta.get("generation").and_then(Value::as_i64) {
        Some(generation) if generation < 0 => {
            vec![FieldError::invalid("metadata.generation", generation, NEGATIVE_MSG)]
        }
        _ => Vec::new(),
    }
}

/// Validates `metadata` of an object being created or updated.
pub fn object_meta(meta: &Value, namespaced: bool, rule: NameRule) -> Vec<FieldError> {
    // A missing metadata is checked as an empty one, so that the name is reported missing.
    let empty = Value::Object(Map::new());
    let meta = if meta.is_object() { meta } else { &empty };
    let member = |key: &str| meta.get(key).unwrap_or(&Value::Null);
    let mut errors = name_and_generate_name(meta, rule);
    errors.extend(namespace(meta, namespaced));
    errors.extend(generation(meta));
    errors.extend(labels(member("labels"), "metadata.labels"));
    errors.extend(annotations(member("annotations"), "metadata.annotations"));
    errors.extend(owner_references(member("ownerReferences"), "metadata.ownerReferences"));
    errors.extend(finalizers(member("finalizers"), "metadata.finalizers"));
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SUBDOMAIN_FORMAT: &str = r"a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_FORMAT: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const DNS1035_FORMAT: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_FORMAT: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_FORMAT: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(FieldError::display).collect()
    }

    #[test]
    fn subdomain_accepts_dotted_lowercase_names() {
        for ok in ["a", "example.com", "a-b.c-d", "0", "1.2.3", &"a".repeat(253)] {
            assert!(dns1123_subdomain(ok).is_empty(), "{ok}");
        }
    }

    #[test]
    fn subdomain_rejects_bad_names_with_kubernetes_message() {
        for bad in ["", "A", "a_b", "-a", "a-", "a..b", ".a", "a.", "a.-b", "é"] {
            assert_eq!(dns1123_subdomain(bad), vec![SUBDOMAIN_FORMAT.to_string()], "{bad:?}");
        }
        assert_eq!(dns1123_subdomain(&"a".repeat(254)), vec!["must be no more than 253 characters"]);
        let both = dns1123_subdomain(&"A".repeat(254));
        assert_eq!(both, vec!["must be no more than 253 characters".to_string(), SUBDOMAIN_FORMAT.to_string()]);
    }

    #[test]
    fn label_reports_dots_separately() {
        assert!(dns1123_label("my-name").is_empty());
        assert!(dns1123_label("123-abc").is_empty());
        assert!(dns1123_label(&"a".repeat(63)).is_empty());
        assert_eq!(dns1123_label("a.b"), vec!["must not contain dots"]);
        assert_eq!(dns1123_label("My"), vec![LABEL_FORMAT]);
        assert_eq!(dns1123_label(""), vec![LABEL_FORMAT]);
        assert_eq!(dns1123_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn dns1035_label_must_start_with_a_letter() {
        assert!(dns1035_label("my-svc").is_empty());
        assert!(dns1035_label("a1").is_empty());
        assert_eq!(dns1035_label("1abc"), vec![DNS1035_FORMAT]);
        assert_eq!(dns1035_label("a.b"), vec![DNS1035_FORMAT]);
        assert_eq!(dns1035_label(""), vec![DNS1035_FORMAT]);
        assert_eq!(dns1035_label(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn qualified_name_accepts_optional_prefix() {
        for ok in ["app", "App_1.x-y", "example.com/MyName", "k8s.io/x", &"a".repeat(63)] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
    }

    #[test]
    fn qualified_name_errors() {
        assert_eq!(qualified_name(""), vec!["name part must be non-empty".to_string(), NAME_PART_FORMAT.to_string()]);
        assert_eq!(qualified_name("-a"), vec![NAME_PART_FORMAT]);
        assert_eq!(qualified_name(&"a".repeat(64)), vec!["name part must be no more than 63 characters"]);
        assert_eq!(qualified_name("/a"), vec!["prefix part must be non-empty"]);
        assert_eq!(qualified_name("Example.com/a"), vec![format!("prefix part {SUBDOMAIN_FORMAT}")]);
        assert_eq!(
            qualified_name("example.com/"),
            vec!["name part must be non-empty".to_string(), NAME_PART_FORMAT.to_string()]
        );
        assert_eq!(
            qualified_name("a/b/c"),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
        );
    }

    #[test]
    fn label_value_may_be_empty() {
        for ok in ["", "v1", "My_Value.2", &"a".repeat(63)] {
            assert!(label_value(ok).is_empty(), "{ok}");
        }
        assert_eq!(label_value("-a"), vec![LABEL_VALUE_FORMAT]);
        assert_eq!(label_value("a b"), vec![LABEL_VALUE_FORMAT]);
        assert_eq!(label_value(&"a".repeat(64)), vec!["must be no more than 63 characters"]);
    }

    #[test]
    fn name_applies_the_rule() {
        assert!(name("web-1", NameRule::DnsSubdomain, "metadata.name").is_empty());
        assert_eq!(
            messages(&name("Foo", NameRule::DnsSubdomain, "metadata.name")),
            vec![format!(r#"metadata.name: Invalid value: "Foo": {SUBDOMAIN_FORMAT}"#)]
        );
        assert_eq!(
            messages(&name("a.b", NameRule::DnsLabel, "metadata.name")),
            vec![r#"metadata.name: Invalid value: "a.b": must not contain dots"#]
        );
        assert_eq!(
            messages(&name("1svc", NameRule::Dns1035Label, "metadata.name")),
            vec![format!(r#"metadata.name: Invalid value: "1svc": {DNS1035_FORMAT}"#)]
        );
    }

    #[test]
    fn path_segment_names() {
        for ok in ["system:admin", "Foo Bar", "a.b", "..."] {
            assert!(name(ok, NameRule::PathSegment, "metadata.name").is_empty(), "{ok}");
        }
        assert_eq!(name_errors(".", NameRule::PathSegment, false), vec!["may not be '.'"]);
        assert_eq!(name_errors("..", NameRule::PathSegment, false), vec!["may not be '..'"]);
        assert_eq!(
            name_errors("a/b%c", NameRule::PathSegment, false),
            vec!["may not contain '/'", "may not contain '%'"]
        );
        // As a prefix "." is fine: a suffix follows.
        assert!(name_errors(".", NameRule::PathSegment, true).is_empty());
        assert_eq!(name_errors("a/", NameRule::PathSegment, true), vec!["may not contain '/'"]);
    }

    #[test]
    fn generate_name_prefix_may_end_in_dash() {
        assert!(name_errors("web-", NameRule::DnsSubdomain, true).is_empty());
        assert!(name_errors("web-", NameRule::DnsLabel, true).is_empty());
        assert!(!name_errors("web-", NameRule::DnsSubdomain, false).is_empty());
        assert!(!name_errors("Web-", NameRule::DnsSubdomain, true).is_empty());
        // A lone dash is not masked.
        assert!(!name_errors("-", NameRule::DnsSubdomain, true).is_empty());
        // Multi-byte characters before the dash neither panic nor pass.
        assert!(!name_errors("é-", NameRule::DnsSubdomain, true).is_empty());
        assert!(!name_errors("aé-", NameRule::DnsLabel, true).is_empty());
    }

    #[test]
    fn labels_check_keys_and_values() {
        assert!(labels(&json!({"app": "web", "k8s.io/part-of": "", "tier": "Front_end"}), "metadata.labels").is_empty());
        assert!(labels(&Value::Null, "metadata.labels").is_empty());
        let errors = labels(&json!({"bad key": "ok", "ok": "bad value"}), "metadata.labels");
        assert_eq!(
            messages(&errors),
            vec![
                format!(r#"metadata.labels: Invalid value: "bad key": {NAME_PART_FORMAT}"#),
                format!(r#"metadata.labels: Invalid value: "bad value": {LABEL_VALUE_FORMAT}"#),
            ]
        );
        assert_eq!(labels(&json!({"a": 1}), "metadata.labels").len(), 1);
        assert_eq!(labels(&json!(["a"]), "metadata.labels").len(), 1);
    }

    #[test]
    fn annotations_ignore_case_and_limit_size() {
        let ok = json!({"Example.COM/Some-Key": "any value at all: {}", "kubectl.kubernetes.io/last-applied-configuration": "{}"});
        assert!(annotations(&ok, "metadata.annotations").is_empty());
        let errors = annotations(&json!({"a b": ""}), "metadata.annotations");
        assert_eq!(
            messages(&errors),
            vec![format!(r#"metadata.annotations: Invalid value: "a b": {NAME_PART_FORMAT}"#)]
        );

        let at_limit = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT - 1);
        assert!(annotations(&json!({ "k": at_limit }), "metadata.annotations").is_empty());
        let over = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        assert_eq!(
            messages(&annotations(&json!({ "k": over }), "metadata.annotations")),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }

    #[test]
    fn finalizers_are_qualified_names_and_not_contradictory() {
        assert!(finalizers(&json!(["kubernetes.io/pvc-protection", "foregroundDeletion"]), "f").is_empty());
        assert_eq!(messages(&finalizers(&json!(["a/b/c"]), "f")).len(), 1);
        assert_eq!(
            messages(&finalizers(&json!(["orphan", "foregroundDeletion"]), "f")),
            vec![
                r#"f: Invalid value: ["orphan","foregroundDeletion"]: finalizer orphan and foregroundDeletion cannot be both set"#
            ]
        );
    }

    #[test]
    fn owner_references_need_identity_and_one_controller() {
        let good =
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": true}]);
        assert!(owner_references(&good, "metadata.ownerReferences").is_empty());
        assert_eq!(
            messages(&owner_references(&json!([{}]), "metadata.ownerReferences")),
            vec![
                r#"metadata.ownerReferences.apiVersion: Invalid value: "": version must not be empty"#,
                r#"metadata.ownerReferences.kind: Invalid value: "": kind must not be empty"#,
                r#"metadata.ownerReferences.name: Invalid value: "": name must not be empty"#,
                r#"metadata.ownerReferences.uid: Invalid value: "": uid must not be empty"#,
            ]
        );
        let no_version = json!([{"apiVersion": "apps/", "kind": "K", "name": "n", "uid": "u"}]);
        assert_eq!(owner_references(&no_version, "o").len(), 1);
        let event = json!([{"apiVersion": "v1", "kind": "Event", "name": "n", "uid": "u"}]);
        assert!(
            messages(&owner_references(&event, "o"))[0].ends_with("/v1, Kind=Event is disallowed from being an owner")
        );
        let two = json!([
            {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": true},
        ]);
        let errors = messages(&owner_references(&two, "o"));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].ends_with(
            r#"Only one reference can have Controller set to true. Found "true" in references for A/a and B/b"#
        ));
    }

    #[test]
    fn object_meta_accepts_a_valid_object() {
        let meta = json!({
            "name": "web", "namespace": "default", "labels": {"app": "web"},
            "annotations": {"note": "x"}, "finalizers": ["example.com/f"], "generation": 1,
        });
        assert!(object_meta(&meta, true, NameRule::DnsSubdomain).is_empty());
        assert!(object_meta(&json!({"name": "node-1"}), false, NameRule::DnsSubdomain).is_empty());
        assert!(
            object_meta(&json!({"generateName": "web-", "namespace": "d"}), true, NameRule::DnsSubdomain).is_empty()
        );
    }

    #[test]
    fn object_meta_requires_a_name() {
        assert_eq!(
            messages(&object_meta(&json!({"namespace": "d"}), true, NameRule::DnsSubdomain)),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        let errors = object_meta(&Value::Null, false, NameRule::DnsSubdomain);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "metadata.name");
    }

    #[test]
    fn object_meta_checks_name_and_generate_name() {
        assert_eq!(
            messages(&object_meta(&json!({"name": "Foo", "namespace": "d"}), true, NameRule::DnsSubdomain)),
            vec![format!(r#"metadata.name: Invalid value: "Foo": {SUBDOMAIN_FORMAT}"#)]
        );
        assert_eq!(
            messages(&object_meta(&json!({"generateName": "Web-", "namespace": "d"}), true, NameRule::DnsSubdomain)),
            vec![format!(r#"metadata.generateName: Invalid value: "Web-": {SUBDOMAIN_FORMAT}"#)]
        );
    }

    #[test]
    fn object_meta_namespace_rules() {
        assert_eq!(
            messages(&object_meta(&json!({"name": "a"}), true, NameRule::DnsSubdomain)),
            vec!["metadata.namespace: Required value"]
        );
        assert_eq!(
            messages(&object_meta(&json!({"name": "a", "namespace": "a.b"}), true, NameRule::DnsSubdomain)),
            vec![r#"metadata.namespace: Invalid value: "a.b": must not contain dots"#]
        );
        assert_eq!(
            messages(&object_meta(&json!({"name": "a", "namespace": "d"}), false, NameRule::DnsSubdomain)),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
    }

    #[test]
    fn object_meta_collects_every_section() {
        let meta = json!({
            "name": "a", "namespace": "d", "generation": -1,
            "labels": {"-": "x"}, "annotations": {"-": "x"}, "finalizers": ["-"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "n"}],
        });
        let fields: Vec<String> =
            object_meta(&meta, true, NameRule::DnsSubdomain).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![
                "metadata.generation",
                "metadata.labels",
                "metadata.annotations",
                "metadata.ownerReferences.uid",
                "metadata.finalizers",
            ]
        );
        let generation = object_meta(&json!({"name": "a", "generation": -1}), false, NameRule::DnsSubdomain);
        assert_eq!(
            messages(&generation),
            vec!["metadata.generation: Invalid value: -1: must be greater than or equal to 0"]
        );
    }
}

/// The paths of keys that occur twice in one JSON object of `json`
/// (`spec.template.spec.containers[0].imagePullPolicy`), in document order, as
/// Kubernetes' strict JSON decoding reports them. Malformed JSON yields what was found
/// before the error (the caller's own parse reports the error).
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    let mut scan = DuplicateScan::default();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let _ = serde::de::DeserializeSeed::deserialize(&mut scan, &mut deserializer);
    scan.found
}

/// Every create and update body is scanned: one path buffer grows and shrinks as the
/// scan descends, keys are borrowed from the body, and a path is only formatted for a
/// key found twice.
#[derive(Default)]
struct DuplicateScan {
    path: String,
    found: Vec<String>,
}

/// Past this many keys an object's seen keys go into a hash set: a linear search per key
/// would let one wide object cost quadratic time.
const LINEAR_KEYS: usize = 16;

impl<'de> serde::de::DeserializeSeed<'de> for &mut DuplicateScan {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut DuplicateScan {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let parent = self.path.len();
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut seen_many: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if parent > 0 {
                self.path.push('.');
            }
            self.path.push_str(&key);
            let repeated = if seen_many.is_empty() && seen.len() < LINEAR_KEYS {
                let repeated = seen.contains(&key);
                seen.push(key);
                repeated
            } else {
                seen_many.extend(seen.drain(..));
                !seen_many.insert(key)
            };
            if repeated {
                self.found.push(self.path.clone());
            }
            map.next_value_seed(&mut *self)?;
            self.path.truncate(parent);
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let parent = self.path.len();
        for index in 0.. {
            use std::fmt::Write;
            let _ = write!(self.path, "[{index}]");
            let more = seq.next_element_seed(&mut *self)?.is_some();
            self.path.truncate(parent);
            if !more {
                break;
            }
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// An object key, borrowed from the body unless it has escapes.
struct KeySeed;

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_string()))
    }
}

#[cfg(test)]
mod duplicate_tests {
    use super::duplicate_fields;

    #[test]
    fn duplicate_keys_are_reported_with_their_paths() {
        let body = br#"{"kind":"Pod","spec":{"containers":[{"name":"a","image":"x","image":"y"}],"paused":true,"paused":false},"kind":"Pod"}"#;
        assert_eq!(duplicate_fields(body), ["spec.containers[0].image", "spec.paused", "kind"]);
        assert!(duplicate_fields(br#"{"a":{"b":1},"c":{"b":2}}"#).is_empty());
        assert!(duplicate_fields(b"{not json").is_empty());
    }

    #[test]
    fn escaped_and_many_keys_are_compared_too() {
        assert_eq!(duplicate_fields(br#"{"a\u0062":1,"ab":2}"#), ["ab"]);
        let wide: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let body = format!(r#"{{"m":[{{{},"k3":0,"k39":0}}]}}"#, wide.join(","));
        assert_eq!(duplicate_fields(body.as_bytes()), ["m[0].k3", "m[0].k39"]);
    }
}
