//! The rules of each built-in kind: defaults, validation, field selectors.
//!
//! One module per API group, plus the pieces several kinds share: the pod spec (pods
//! and every pod template), services, quantities, cron schedules, and the small
//! validation helpers below. Field paths and messages follow Kubernetes'
//! `pkg/apis/*/validation` so that kubectl shows what it shows against a real cluster.

mod apps;
mod batch;
mod core;
mod cron;
mod networking;
mod other;
mod pod;
mod quantity;
mod rbac;
mod service;

pub use quantity::Quantity;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::Value;

use crate::error::FieldError;
use crate::selector;
use crate::validation;

/// Kubernetes' message for a field that may not change.
const IMMUTABLE: &str = "field is immutable";
/// Kubernetes' message for a negative count.
const NEGATIVE: &str = "must be greater than or equal to 0";
/// The protocols a port may use, as Kubernetes lists them (sorted).
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// The JSON form of a typed value (`null` if it cannot be encoded, which the
/// `k8s-openapi` types never fail to be).
fn json<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// `value` with every unset-looking member removed, recursively: `null`, `[]` and `{}`
/// (Go's semantic equality takes a nil list or map for an empty one). Empty strings
/// stay: they may be meaningful values, such as a label's.
fn pruned(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, pruned(v))).filter(|(_, v)| !is_unset(v)).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(pruned).collect()),
        other => other,
    }
}

fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

/// Equality as Kubernetes' `apiequality.Semantic.DeepEqual` sees it: an unset list or
/// map is an empty one.
fn same<T: Serialize + ?Sized>(a: &T, b: &T) -> bool {
    pruned(json(a)) == pruned(json(b))
}

/// `field is immutable` when `new` differs from `old`.
fn immutable<T: Serialize + ?Sized>(new: &T, old: &T, field: &str) -> Option<FieldError> {
    (!same(new, old)).then(|| FieldError::invalid(field, json(new), IMMUTABLE))
}

/// `must be greater than or equal to 0` for a negative count.
fn nonnegative(value: Option<impl Into<i64>>, field: &str) -> Option<FieldError> {
    let value: i64 = value?.into();
    (value < 0).then(|| FieldError::invalid(field, value, NEGATIVE))
}

/// A value that must be one of `supported`: `Required` when empty, `NotSupported` when
/// another.
fn one_of(value: Option<&str>, supported: &[&str], field: &str) -> Option<FieldError> {
    match value.unwrap_or("") {
        "" => Some(FieldError::required(field, "")),
        v if supported.contains(&v) => None,
        v => Some(FieldError::not_supported(field, v, supported)),
    }
}

/// Like [`one_of`] for an optional value: nothing to say when unset.
fn optional_one_of(value: Option<&str>, supported: &[&str], field: &str) -> Option<FieldError> {
    value.filter(|v| !v.is_empty()).and_then(|v| one_of(Some(v), supported, field))
}

/// Sets a string field that is unset or empty (Go's zero value) to `value`.
fn default_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

/// Sets an integer field that is unset or zero (Go's zero value) to `value`.
fn default_nonzero(field: &mut Option<i32>, value: i32) {
    if field.is_none_or(|v| v == 0) {
        *field = Some(value);
    }
}

/// `Invalid` errors for each message of a format check.
fn invalid_each(field: &str, value: &str, messages: Vec<String>) -> Vec<FieldError> {
    messages.iter().map(|m| FieldError::invalid(field, value, m)).collect()
}

/// A label map as JSON, for `validation::labels` and for error values.
fn map_json(map: Option<&BTreeMap<String, String>>) -> Value {
    map.map_or(Value::Null, json)
}

/// Kubernetes' `IsValidIP` message for anything but an IPv4 or IPv6 address.
fn ip_errors(value: &str) -> Vec<String> {
    match value.parse::<std::net::IpAddr>() {
        Ok(_) => Vec::new(),
        Err(_) => vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()],
    }
}

// ---------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------

/// `must be between 1 and 65535, inclusive` for a port number out of range.
fn port_number(port: i32, field: &str) -> Option<FieldError> {
    (!(1..=65535).contains(&port)).then(|| FieldError::invalid(field, port, &inclusive_range(1, 65535)))
}

fn inclusive_range(low: i64, high: i64) -> String {
    format!("must be between {low} and {high}, inclusive")
}

/// Kubernetes' `IsValidPortName` messages (an IANA service name).
fn port_name_errors(name: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if name.len() > 15 {
        errors.push(validation::max_len_error(15));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') || name.is_empty() {
        errors.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errors.push("must contain at least one letter (a-z)".into());
    }
    if name.contains("--") {
        errors.push("must not contain consecutive hyphens (-)".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errors.push("must not begin or end with a hyphen (-)".into());
    }
    errors
}

/// A port given by number or by name (a probe's or a service's target port).
fn port_number_or_name(port: &IntOrString, field: &str) -> Vec<FieldError> {
    match port {
        IntOrString::Int(number) => port_number(*number, field).into_iter().collect(),
        IntOrString::String(name) if name.is_empty() => vec![FieldError::required(field, "")],
        IntOrString::String(name) => invalid_each(field, name, port_name_errors(name)),
    }
}

/// A port's protocol: required, one of TCP, UDP, SCTP.
fn protocol(value: Option<&str>, field: &str) -> Option<FieldError> {
    one_of(value, PROTOCOLS, field)
}

// ---------------------------------------------------------------------------------------
// Int-or-percent (rolling update bounds, disruption budgets)
// ---------------------------------------------------------------------------------------

fn int_or_string_json(value: &IntOrString) -> Value {
    match value {
        IntOrString::Int(i) => Value::from(*i),
        IntOrString::String(s) => Value::from(s.as_str()),
    }
}

/// The percentage of `"25%"`, if the string is one.
fn percent(value: &str) -> Option<i64> {
    let digits = value.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A non-negative integer or a percentage such as `25%`.
fn positive_int_or_percent(value: &IntOrString, field: &str) -> Option<FieldError> {
    match value {
        IntOrString::Int(i) => nonnegative(Some(*i), field),
        IntOrString::String(s) if percent(s).is_some() => None,
        IntOrString::String(s) => Some(FieldError::invalid(
            field,
            s.as_str(),
            &validation::regex_error(
                "a valid percent string must be a numeric string followed by an ending '%'",
                "[0-9]+%",
                &["1%", "93%"],
            ),
        )),
    }
}

/// `must not be greater than 100%` for a percentage over 100.
fn not_more_than_100_percent(value: &IntOrString, field: &str) -> Option<FieldError> {
    match value {
        IntOrString::String(s) if percent(s).is_some_and(|p| p > 100) => {
            Some(FieldError::invalid(field, s.as_str(), "must not be greater than 100%"))
        }
        _ => None,
    }
}

/// The number or percentage of an int-or-percent, 0 when it is neither (for the
/// "both zero" checks).
fn int_or_percent_value(value: Option<&IntOrString>) -> i64 {
    match value {
        Some(IntOrString::Int(i)) => i64::from(*i),
        Some(IntOrString::String(s)) => percent(s).unwrap_or(0),
        None => 0,
    }
}

// ---------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------

/// Whether a selector has neither matchLabels nor matchExpressions. The decoded form
/// cannot tell a missing required selector from an empty one, so both count as unset.
fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Kubernetes' `ValidateLabelSelector`: labels, operators, keys and values, each at
/// its own path under `field`.
fn label_selector(selector: &LabelSelector, field: &str) -> Vec<FieldError> {
    let mut errors = validation::labels(&map_json(selector.match_labels.as_ref()), &format!("{field}.matchLabels"));
    for (i, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        let values = requirement.values.as_deref().unwrap_or_default();
        match requirement.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::required(
                format!("{path}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::forbidden(
                format!("{path}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                errors.push(FieldError::invalid(format!("{path}.operator"), other, "not a valid selector operator"))
            }
        }
        errors.extend(invalid_each(
            &format!("{path}.key"),
            &requirement.key,
            validation::qualified_name(&requirement.key),
        ));
        for (j, value) in values.iter().enumerate() {
            errors.extend(invalid_each(&format!("{path}.values[{j}]"), value, validation::label_value(value)));
        }
    }
    errors
}

/// Whether `selector` selects `labels`; `None` when it is not a valid selector.
fn selects(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> Option<bool> {
    let empty = BTreeMap::new();
    selector::LabelSelector::from_api(selector).ok().map(|s| s.matches(labels.unwrap_or(&empty)))
}

/// A controller's selector and pod template: the selector is required and valid, and
/// selects the template's labels (a missing selector selects nothing).
fn selector_and_template(selector: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let matches = if selector_is_empty(selector) {
        errors.push(FieldError::required("spec.selector", ""));
        Some(false)
    } else {
        errors.extend(label_selector(selector, "spec.selector"));
        selects(selector, labels)
    };
    match matches {
        None => errors.push(FieldError::invalid("spec.selector", json(selector), "invalid label selector")),
        Some(false) => errors.push(FieldError::invalid(
            "spec.template.metadata.labels",
            map_json(labels),
            "`selector` does not match template `labels`",
        )),
        Some(true) => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::builtins::builtin_registry;

    /// What the server does on create, through the registry's JSON strategies.
    fn create(group: &str, plural: &str, object: Value) -> (Value, Vec<FieldError>) {
        let registry = builtin_registry();
        let strategy = &registry.get(group, "v1", plural).unwrap().strategy;
        let mut object = strategy.decode(object).unwrap().object;
        let errors = strategy.prepare_create(&mut object);
        (object, errors)
    }

    #[test]
    fn kubectl_create_deployment_round_trip() {
        let (deployment, errors) = create(
            "apps",
            "deployments",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "nginx"}},
                    "strategy": {},
                    "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}},
                },
                "status": {},
            }),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            deployment["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"], json!({}));
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(deployment["status"], json!({}));
    }

    #[test]
    fn kubectl_run_pod_round_trip() {
        let (pod, errors) = create(
            "",
            "pods",
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "default", "labels": {"run": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "resources": {}}], "dnsPolicy": "ClusterFirst", "restartPolicy": "Always"},
            }),
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "BestEffort"}));
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
    }

    #[test]
    fn invalid_objects_through_json() {
        let (_, errors) = create(
            "",
            "services",
            json!({"metadata": {"name": "s", "namespace": "d"}, "spec": {"ports": [{"port": 99999}]}}),
        );
        assert_eq!(
            errors.iter().map(FieldError::display).collect::<Vec<_>>(),
            vec![
                "spec.ports[0].port: Invalid value: 99999: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 99999: must be between 1 and 65535, inclusive",
            ]
        );
    }

    #[test]
    fn semantic_equality_ignores_unset_members() {
        let a = serde_json::json!({"a": null, "b": [], "c": {"x": {}}, "e": 1});
        let b = serde_json::json!({"e": 1});
        assert!(same(&a, &b));
        assert!(!same(&serde_json::json!({"e": 2}), &b));
        assert!(!same(&serde_json::json!({"label": ""}), &serde_json::json!({})));
    }

    #[test]
    fn port_names_follow_iana_rules() {
        assert!(port_name_errors("http").is_empty());
        assert!(port_name_errors("web-8080").is_empty());
        assert_eq!(port_name_errors("8080"), vec!["must contain at least one letter (a-z)"]);
        assert_eq!(port_name_errors("a--b"), vec!["must not contain consecutive hyphens (-)"]);
        assert_eq!(port_name_errors("a-very-long-port-name").len(), 1);
        assert_eq!(
            port_name_errors("Http"),
            vec!["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]
        );
    }

    #[test]
    fn int_or_percent_rules() {
        assert!(positive_int_or_percent(&IntOrString::String("25%".into()), "f").is_none());
        assert!(positive_int_or_percent(&IntOrString::Int(-1), "f").is_some());
        let bad = positive_int_or_percent(&IntOrString::String("25".into()), "f").unwrap();
        assert_eq!(
            bad.display(),
            r#"f: Invalid value: "25": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"#
        );
        assert!(not_more_than_100_percent(&IntOrString::String("101%".into()), "f").is_some());
        assert_eq!(int_or_percent_value(Some(&IntOrString::String("0%".into()))), 0);
    }

    #[test]
    fn label_selector_paths() {
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c", "operator": "Near"},
            ]
        }))
        .unwrap();
        let fields: Vec<String> = label_selector(&selector, "spec.selector").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator",
            ]
        );
    }
}

/// Helpers shared by the kinds' unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::error::FieldError;

    /// Errors as Kubernetes prints them, `field: message`.
    pub fn messages(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(FieldError::display).collect()
    }

    /// A typed object from JSON (test input is always well-formed).
    pub fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }
}
