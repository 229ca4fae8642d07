//! Field paths and sets of them, in Kubernetes' managedFields encoding (FieldsV1).
//!
//! A set is a tree: each node has members (paths that end there) and children (paths
//! that continue). FieldsV1 writes it as nested JSON objects keyed by path elements
//! (`f:name`, `k:{"name":"web"}`, `v:"x"`, `i:0`), `{}` for a member with nothing
//! below it, and `".": {}` first in an object whose path is a member as well as a
//! parent. Keys come in the order of the elements: field names before keys before
//! values before indexes, each ordered among themselves.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone)]
pub enum PathElement {
    /// A struct field or map key: `f:name`, `.name`.
    Field(String),
    /// A list-map item by its key fields, sorted by name: `k:{"name":"web"}`,
    /// `[name="web"]`.
    Key(Vec<(String, Value)>),
    /// A set item by value: `v:"x"`, `[="x"]`.
    Value(Value),
    /// A list item by position: `i:0`, `[0]`.
    Index(usize),
}

pub type Path = Vec<PathElement>;

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The FieldsV1 key for this element.
    pub fn to_fields_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut out = String::from("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_go_string(&mut out, name);
                    out.push(':');
                    write_go_json(&mut out, value, false);
                }
                out.push('}');
                out
            }
            PathElement::Value(value) => {
                let mut out = String::from("v:");
                write_go_json(&mut out, value, false);
                out
            }
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key; `Ok(None)` for element types this version does not know
    /// (Kubernetes skips those too).
    pub fn from_fields_key(key: &str) -> Result<Option<PathElement>, String> {
        let (kind, rest) = match key.split_at_checked(2) {
            Some((kind, rest)) if kind.ends_with(':') => (kind, rest),
            _ => return Err(format!("invalid path element {key:?}")),
        };
        match kind {
            "f:" => Ok(Some(PathElement::Field(rest.to_string()))),
            "v:" => serde_json::from_str(rest)
                .map(|v| Some(PathElement::Value(v)))
                .map_err(|e| format!("invalid value in {key:?}: {e}")),
            "k:" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(map)) => {
                    let mut fields: Vec<(String, Value)> = map.into_iter().collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    Ok(Some(PathElement::Key(fields)))
                }
                Ok(_) => Err(format!("invalid key in {key:?}: not an object")),
                Err(e) => Err(format!("invalid key in {key:?}: {e}")),
            },
            "i:" => rest
                .parse::<usize>()
                .map(|i| Some(PathElement::Index(i)))
                .map_err(|e| format!("invalid index in {key:?}: {e}")),
            _ => Ok(None),
        }
    }
}

impl fmt::Display for PathElement {
    /// Kubernetes' human form, as conflicts print it: `.spec`, `[name="web"]`, `[="x"]`, `[0]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> =
                    fields.iter().map(|(name, value)| format!("{name}={}", value_to_string(value))).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(value) => write!(f, "[={}]", value_to_string(value)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path in Kubernetes' human form: `.spec.template.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(|pe| pe.to_string()).collect()
}

/// Go's `%v`-like rendering of a value inside a path (strings quoted).
fn value_to_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Array(items) => format!("[{}]", items.iter().map(value_to_string).collect::<Vec<_>>().join(",")),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            keys.iter().map(|k| format!("{k}={}", value_to_string(&map[k.as_str()]))).collect()
        }
    }
}

/// Go's `%q`: a double-quoted string with Go escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                if (c as u32) < 0x80 {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                } else {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((an, av), (bn, bv)) in a.iter().zip(b.iter()) {
                    let c = an.cmp(bn).then_with(|| compare_values(av, bv));
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// A total order on JSON values: numbers (compared numerically), strings, booleans,
/// lists, maps, null. Equal under this order means equal for apply.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => match (x.as_u64(), y.as_u64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => {
                    let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
                    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
                }
            },
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let c = compare_values(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for ((pk, pv), (qk, qv)) in xs.iter().zip(ys.iter()) {
                let c = pk.cmp(qk).then_with(|| compare_values(pv, qv));
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
        (Value::Null, Value::Null) => Ordering::Equal,
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Equality as apply sees it: numbers by value, maps regardless of key order.
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// A set of paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    /// Never holds an empty set.
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path; the empty path is not a member of anything and is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            // Looked up before cloning: most inserts land under an existing child.
            [first, rest @ ..] => match self.children.get_mut(first) {
                Some(child) => child.insert(rest),
                None => self.children.entry(first.clone()).or_default().insert(rest),
            },
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The paths below `pe`, without it.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_in(other);
        out
    }

    /// Adds every path of `other`, taking it apart instead of cloning it.
    pub fn union_with(&mut self, other: Set) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.members.extend(other.members);
        for (pe, child) in other.children {
            match self.children.get_mut(&pe) {
                Some(mine) => mine.union_with(child),
                None => {
                    self.children.insert(pe, child);
                }
            }
        }
    }

    fn union_in(&mut self, other: &Set) {
        self.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            self.children.entry(pe.clone()).or_default().union_in(child);
        }
    }

    /// Paths in both.
    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                let both = child.intersection(theirs);
                if !both.is_empty() {
                    children.insert(pe.clone(), both);
                }
            }
        }
        Set { members, children }
    }

    /// Paths of `self` not in `other` (path by path: removing `a` keeps `a.b`).
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        Set { members, children }
    }

    /// [`Set::recursive_difference`] in place.
    pub fn remove_recursive(&mut self, other: &Set) {
        self.remove(other, true);
    }

    /// [`Set::difference`] in place.
    pub fn remove_all(&mut self, other: &Set) {
        self.remove(other, false);
    }

    /// Removes `other`'s paths; `below_members` also removes what lies under its members.
    fn remove(&mut self, other: &Set, below_members: bool) {
        for pe in &other.members {
            self.members.remove(pe);
            if below_members {
                self.children.remove(pe);
            }
        }
        for (pe, theirs) in &other.children {
            if let Some(mine) = self.children.get_mut(pe) {
                mine.remove(theirs, below_members);
                if mine.is_empty() {
                    self.children.remove(pe);
                }
            }
        }
    }

    /// Paths of `self` that neither are in `other` nor lie below a member of `other`.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            let rest = match other.children.get(pe) {
                Some(theirs) => child.recursive_difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                children.insert(pe.clone(), rest);
            }
        }
        Set { members, children }
    }

    /// Every path, members of a node before its children, each in element order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for pe in &self.members {
            let mut path = prefix.clone();
            path.push(pe.clone());
            out.push(path);
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    pub(super) fn members(&self) -> &BTreeSet<PathElement> {
        &self.members
    }

    pub(super) fn children(&self) -> &BTreeMap<PathElement, Set> {
        &self.children
    }

    pub(super) fn add_member(&mut self, pe: PathElement) {
        self.members.insert(pe);
    }

    pub(super) fn set_child(&mut self, pe: PathElement, child: Set) {
        if child.is_empty() {
            self.children.remove(&pe);
        } else {
            self.children.insert(pe, child);
        }
    }

    /// The FieldsV1 encoding.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_object(false))
    }

    fn fields_v1_object(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".to_string(), Value::Object(Map::new()));
        }
        let members: Vec<&PathElement> = self.members.iter().collect();
        let children: Vec<(&PathElement, &Set)> = self.children.iter().collect();
        let (mut m, mut c) = (0, 0);
        while m < members.len() || c < children.len() {
            let order = match (members.get(m), children.get(c)) {
                (Some(member), Some((child, _))) => member.cmp(child),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match (order, members.get(m), children.get(c)) {
                (Ordering::Less, Some(pe), _) => {
                    out.insert(pe.to_fields_key(), Value::Object(Map::new()));
                    m += 1;
                }
                (Ordering::Equal, _, Some((pe, child))) => {
                    out.insert(pe.to_fields_key(), Value::Object(child.fields_v1_object(true)));
                    m += 1;
                    c += 1;
                }
                (_, _, Some((pe, child))) => {
                    out.insert(pe.to_fields_key(), Value::Object(child.fields_v1_object(false)));
                    c += 1;
                }
                _ => break,
            }
        }
        out
    }

    /// Parses the FieldsV1 encoding.
    pub fn from_fields_v1(value: &Value) -> Result<Set, String> {
        match value {
            Value::Object(map) => Ok(Self::read_object(map, 0)?.0),
            Value::Null => Ok(Set::new()),
            _ => Err("fieldsV1 must be an object".to_string()),
        }
    }

    /// The set below an object, and whether the object's own path is a member.
    fn read_object(map: &Map<String, Value>, depth: usize) -> Result<(Set, bool), String> {
        if depth > 256 {
            return Err("fieldsV1 nests too deep".to_string());
        }
        let mut set = Set::new();
        let mut is_member = false;
        for (key, child) in map {
            if key == "." {
                is_member = true;
                continue;
            }
            let Some(pe) = PathElement::from_fields_key(key)? else { continue };
            let (grandchildren, child_is_member) = match child {
                Value::Object(inner) => Self::read_object(inner, depth + 1)?,
                _ => return Err(format!("fieldsV1 entry {key:?} must be an object")),
            };
            if child_is_member {
                set.members.insert(pe.clone());
            }
            if !grandchildren.is_empty() {
                set.children.entry(pe).or_default().union_in(&grandchildren);
            }
        }
        if set.is_empty() {
            is_member = true;
        }
        Ok((set, is_member))
    }
}

/// Writes a value as Go's encoding/json does: map keys sorted, `<`, `>` and `&`
/// escaped as \u003c..., U+2028 and U+2029 escaped. `sort_keys` false keeps the map's
/// order (apply paths only ever hold scalars there).
pub fn write_go_json(out: &mut String, value: &Value, sort_keys: bool) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_go_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item, sort_keys);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            if sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(out, key);
                out.push(':');
                write_go_json(out, item, sort_keys);
            }
            out.push('}');
        }
    }
}

fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
