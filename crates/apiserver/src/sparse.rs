//! Reads chosen paths of a JSON document without building the rest of it: the watch
//! cache needs an object's metadata and a few selectable fields, not its whole spec.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The paths to keep, as a tree of keys (array elements are keyed by their index). Keys
/// borrow the dotted paths given (kinds declare theirs as statics), so building one per
/// stored object allocates no strings.
#[derive(Debug, Default)]
pub struct Paths<'a> {
    children: Vec<(&'a str, Paths<'a>)>,
    /// Keep the whole value here.
    whole: bool,
}

impl<'a> Paths<'a> {
    /// Adds a dotted path, e.g. `status.podIPs.0.ip`; the value at its end is kept whole.
    pub fn add(&mut self, dotted: &'a str) {
        let node = dotted.split('.').fold(self, |node, part| node.child(part));
        node.whole = true;
    }

    fn child(&mut self, key: &'a str) -> &mut Paths<'a> {
        match self.children.iter().position(|(k, _)| *k == key) {
            Some(i) => &mut self.children[i].1,
            None => {
                self.children.push((key, Paths::default()));
                &mut self.children.last_mut().expect("just pushed").1
            }
        }
    }

    fn get(&self, key: &str) -> Option<&Paths<'a>> {
        self.children.iter().find(|(k, _)| *k == key).map(|(_, p)| p)
    }

    /// `json` with only these paths (objects and arrays on the way keep their shape;
    /// skipped array elements become null so indexes stay right).
    pub fn read(&self, json: &[u8]) -> serde_json::Result<Value> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let value = self.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

/// An object read by [`Paths::read_split`]: the kept paths, and one member left as the
/// raw JSON text it has in the document.
pub struct Split<'j> {
    pub kept: Value,
    pub raw: Option<&'j RawValue>,
}

impl Paths<'_> {
    /// Like [`Paths::read`] on an object, but the member `raw_key` is not parsed: it comes
    /// back as its text in `json` (whose position there is known), in the same single pass.
    pub fn read_split<'j>(&self, json: &'j [u8], raw_key: &str) -> serde_json::Result<Split<'j>> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let split = deserializer.deserialize_map(SplitVisitor { paths: self, raw_key })?;
        deserializer.end()?;
        Ok(split)
    }
}

struct SplitVisitor<'p, 'a, 'k> {
    paths: &'p Paths<'a>,
    raw_key: &'k str,
}

impl<'de> Visitor<'de> for SplitVisitor<'_, '_, '_> {
    type Value = Split<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Split<'de>, A::Error> {
        let mut kept = Map::new();
        let mut raw = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == self.raw_key {
                raw = Some(map.next_value::<&'de RawValue>()?);
                continue;
            }
            match self.paths.get(&key) {
                Some(paths) => {
                    let value = map.next_value_seed(paths)?;
                    kept.insert(key, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Split { kept: Value::Object(kept), raw })
    }
}

impl<'de> DeserializeSeed<'de> for &Paths<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.whole {
            serde::Deserialize::deserialize(deserializer)
        } else {
            deserializer.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for &Paths<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.get(&key) {
                Some(paths) => {
                    let value = map.next_value_seed(paths)?;
                    kept.insert(key, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Elements up to the highest index asked for are kept (others as null); the rest skipped.
        let kept_up_to = self.children.iter().filter_map(|(k, _)| k.parse::<usize>().ok()).max();
        let mut kept = Vec::new();
        for index in 0.. {
            let element = match kept_up_to {
                Some(last) if index <= last => match self.get(&index.to_string()) {
                    Some(paths) => seq.next_element_seed(paths)?,
                    None => seq.next_element::<IgnoredAny>()?.map(|_| Value::Null),
                },
                _ => match seq.next_element::<IgnoredAny>()? {
                    Some(_) => continue,
                    None => None,
                },
            };
            match element {
                Some(element) => kept.push(element),
                None => break,
            }
        }
        Ok(Value::Array(kept))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths<'a>(list: &[&'a str]) -> Paths<'a> {
        let mut paths = Paths::default();
        for p in list {
            paths.add(p);
        }
        paths
    }

    #[test]
    fn keeps_only_the_chosen_paths() {
        let doc = json!({
            "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}], "hostNetwork": true},
            "status": {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "phase": "Running"},
        });
        let read = paths(&["metadata", "spec.nodeName", "spec.hostNetwork", "status.podIPs.0.ip", "spec.missing"])
            .read(&serde_json::to_vec(&doc).unwrap())
            .unwrap();
        assert_eq!(
            read,
            json!({
                "metadata": {"name": "a", "labels": {"x": "1"}},
                "spec": {"nodeName": "n1", "hostNetwork": true},
                "status": {"podIPs": [{"ip": "10.0.0.1"}]},
            })
        );
    }

    #[test]
    fn a_split_read_leaves_one_member_as_its_text() {
        let json = br#"{"kind":"Pod","metadata":{"name":"a","labels":{"x":"1"}},"spec":{"nodeName":"n1","x":[1]}}"#;
        let split = paths(&["spec.nodeName", "kind"]).read_split(json, "metadata").unwrap();
        assert_eq!(split.kept, json!({"kind": "Pod", "spec": {"nodeName": "n1"}}));
        let raw = split.raw.unwrap().get();
        assert_eq!(raw, r#"{"name":"a","labels":{"x":"1"}}"#);
        let start = raw.as_ptr() as usize - json.as_ptr() as usize;
        assert_eq!(&json[start..start + raw.len()], raw.as_bytes(), "the text is a slice of the document");
        assert!(paths(&[]).read_split(br#"{"spec":{}}"#, "metadata").unwrap().raw.is_none());
        assert!(paths(&[]).read_split(br#"[1]"#, "metadata").is_err());
    }

    #[test]
    fn scalars_where_objects_were_expected_and_bad_json() {
        let read = paths(&["spec.nodeName"]).read(br#"{"spec": "odd", "other": [1, {"a": null}]}"#).unwrap();
        assert_eq!(read, json!({"spec": "odd"}));
        assert!(paths(&["a"]).read(br#"{"a": 1"#).is_err());
        assert!(paths(&["a"]).read(br#"{"a": 1} trailing"#).is_err());
    }
}
