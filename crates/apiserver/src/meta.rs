//! Reading and writing `metadata` on JSON objects.

use rand::Rng;
use serde_json::{Map, Value};
use skiff_store::Revision;

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

/// A time `seconds` from now, as Kubernetes writes timestamps.
pub fn rfc3339_in(seconds: i64) -> String {
    let then = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(seconds);
    then.round(jiff::Unit::Second).map(|t| t.to_string()).unwrap_or_default()
}

/// `metadata`, created if missing (and replaced if not an object).
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let root = object.as_object_mut().expect("made an object above");
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object.get("metadata")?.get(field)?.as_str().filter(|s| !s.is_empty())
}

pub fn name(object: &Value) -> Option<&str> {
    meta_str(object, "name")
}

pub fn set_resource_version(object: &mut Value, revision: Revision) {
    meta_mut(object).insert("resourceVersion".into(), Value::String(revision.to_string()));
}

pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn is_deleting(object: &Value) -> bool {
    meta_str(object, "deletionTimestamp").is_some()
}

/// A name made from `generateName`: the prefix and five random characters, from the
/// alphabet Kubernetes uses (no vowels, no look-alike digits).
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    // Kubernetes trims the prefix so the whole name stays within 63 characters.
    let keep = prefix.len().min(58);
    let keep = (0..=keep).rev().find(|&i| prefix.is_char_boundary(i)).unwrap_or(0);
    format!("{}{suffix}", &prefix[..keep])
}

/// Whether two versions of an object differ in nothing but resourceVersion and
/// managedFields (a write that would change nothing else is skipped).
pub fn same_but_bookkeeping(a: &Value, b: &Value) -> bool {
    equal_except(a, b, |key| key == "metadata")
        && equal_except(&a["metadata"], &b["metadata"], |key| matches!(key, "resourceVersion" | "managedFields"))
}

/// Whether two versions of an object have the same spec: everything but metadata,
/// status and type, what decides a generation bump.
pub fn same_spec(a: &Value, b: &Value) -> bool {
    equal_except(a, b, |key| matches!(key, "metadata" | "status" | "apiVersion" | "kind"))
}

/// Object equality ignoring the keys `skip` names, without copying either side; a
/// missing object counts as an empty one.
fn equal_except(a: &Value, b: &Value, skip: impl Fn(&str) -> bool) -> bool {
    fn as_map<'v>(value: &'v Value, empty: &'v Map<String, Value>) -> Option<&'v Map<String, Value>> {
        match value {
            Value::Object(map) => Some(map),
            Value::Null => Some(empty),
            _ => None,
        }
    }
    let empty = Map::new();
    let (Some(a_map), Some(b_map)) = (as_map(a, &empty), as_map(b, &empty)) else { return a == b };
    let kept = |map: &Map<String, Value>| map.iter().filter(|(key, _)| !skip(key)).count();
    kept(a_map) == kept(b_map) && a_map.iter().filter(|(key, _)| !skip(key)).all(|(key, v)| b_map.get(key) == Some(v))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bookkeeping_and_spec_comparisons_skip_only_their_keys() {
        let a = json!({"metadata": {"name": "p", "resourceVersion": "1", "managedFields": []}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"name": "p", "resourceVersion": "2"}, "spec": {"x": 1}, "status": {"y": 1}});
        assert!(same_but_bookkeeping(&a, &b));
        let labelled = json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"x": 1}, "status": {"y": 1}});
        assert!(!same_but_bookkeeping(&a, &labelled));
        let status = json!({"metadata": {"name": "p"}, "spec": {"x": 1}, "status": {"y": 2}});
        assert!(!same_but_bookkeeping(&b, &status));
        assert!(same_spec(&labelled, &status));
        assert!(!same_spec(&a, &json!({"metadata": {}, "spec": {"x": 2}})));
        assert!(!same_spec(&a, &json!({"spec": {"x": 1}, "extra": true})));
        assert!(same_but_bookkeeping(&json!({"spec": 1}), &json!({"spec": 1, "metadata": {"resourceVersion": "3"}})));
    }

    #[test]
    fn generated_names_keep_prefix_and_length() {
        let name = generate_name("web-");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        let long = "a".repeat(80);
        assert_eq!(generate_name(&long).len(), 63);
    }

    #[test]
    fn timestamps_are_rfc3339_seconds() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z') && !now.contains('.'), "{now}");
    }
}
