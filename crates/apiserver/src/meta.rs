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

/// The object with fields that are not the user's to compare (resourceVersion,
/// managedFields) removed: two objects equal under this are a no-op update.
pub fn comparable(object: &Value) -> Value {
    let mut copy = object.clone();
    let meta = meta_mut(&mut copy);
    meta.remove("resourceVersion");
    meta.remove("managedFields");
    copy
}

/// The object minus metadata and status: what decides a generation bump.
pub fn spec_of(object: &Value) -> Value {
    match object {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
