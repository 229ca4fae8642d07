//! Walking objects by schema: the set of fields an object sets, what changed between
//! two objects, merging an applied configuration into a live object, and removing
//! fields. These follow structured-merge-diff, the library behind Kubernetes' apply.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Map, Value};

use super::fieldpath::{path_string, values_equal, Path, PathElement, Set};
use super::types::{Key, ListType, Ty, TypeDef};

static NULL: Value = Value::Null;

/// Below this depth everything is a leaf: bounds recursion on hostile input.
const MAX_DEPTH: usize = 200;

/// What a value is at a point in the schema.
#[derive(Clone, Copy)]
enum Node {
    /// Owned and replaced as a whole: scalars, atomic lists, maps and structs, and values
    /// whose JSON type does not fit the schema.
    Leaf,
    /// A granular struct or map: each field owned on its own.
    Object(Obj),
    /// A set or a list-map: each item owned on its own.
    List(Assoc, &'static Ty),
}

#[derive(Clone, Copy)]
enum Obj {
    Struct(&'static TypeDef),
    Map(&'static Ty),
    Deduced,
}

#[derive(Clone, Copy)]
enum Assoc {
    Set,
    Keyed(&'static [Key]),
}

impl Node {
    fn kind(self) -> u8 {
        match self {
            Node::Leaf => 0,
            Node::Object(_) => 1,
            Node::List(..) => 2,
        }
    }
}

impl Obj {
    /// The type of a key. Fields a struct does not declare are walked as arbitrary JSON.
    fn child(self, key: &str) -> Ty {
        match self {
            Obj::Struct(def) => def.field(key).map_or(Ty::Deduced, |f| f.ty),
            Obj::Map(elem) => *elem,
            Obj::Deduced => Ty::Deduced,
        }
    }

    /// Whether `key` is a declared struct field (not a map entry).
    fn is_field(self, key: &str) -> bool {
        matches!(self, Obj::Struct(def) if def.field(key).is_some())
    }
}

fn node(ty: Ty, value: &Value) -> Node {
    let container = |v: &Value| matches!(v, Value::Object(_) | Value::Null);
    match ty {
        Ty::Scalar(_) => Node::Leaf,
        Ty::Deduced if container(value) => Node::Object(Obj::Deduced),
        Ty::Struct(index) => match TypeDef::by_index(index) {
            Some(def) if !def.atomic && container(value) => Node::Object(Obj::Struct(def)),
            _ => Node::Leaf,
        },
        Ty::Map(false, elem) if container(value) => Node::Object(Obj::Map(elem)),
        Ty::List(ListType::Set, elem) if matches!(value, Value::Array(_) | Value::Null) => Node::List(Assoc::Set, elem),
        Ty::List(ListType::Keyed(keys), elem) if matches!(value, Value::Array(_) | Value::Null) => {
            Node::List(Assoc::Keyed(keys), elem)
        }
        _ => Node::Leaf,
    }
}

/// The type of what lies below `pe` in a value of type `ty`, without looking at values.
pub(super) fn child_type(ty: Ty, pe: &PathElement) -> Ty {
    match (ty, pe) {
        (Ty::Struct(index), PathElement::Field(name)) => {
            TypeDef::by_index(index).and_then(|d| d.field(name)).map_or(Ty::Deduced, |f| f.ty)
        }
        (Ty::Map(_, elem), PathElement::Field(_)) => *elem,
        (Ty::List(_, elem), PathElement::Key(_) | PathElement::Value(_) | PathElement::Index(_)) => *elem,
        _ => Ty::Deduced,
    }
}

fn is_empty_container(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

/// The path element of a list item: its key fields (with schema defaults for missing
/// ones) or, in a set, its value.
fn item_element(assoc: Assoc, item: &Value) -> Result<PathElement, String> {
    match assoc {
        Assoc::Set => match item {
            Value::Object(_) => Err("associative list without keys has an element that's a map type".into()),
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => Err("associative list without keys has an element that's an explicit null".into()),
            value => Ok(PathElement::Value(value.clone())),
        },
        Assoc::Keyed(keys) => {
            let map = match item {
                Value::Object(map) => map,
                Value::Null => return Err("associative list with keys may not have a null element".into()),
                _ => return Err("associative list with keys may not have non-map elements".into()),
            };
            let mut fields: Vec<(String, Value)> = Vec::with_capacity(keys.len());
            for key in keys {
                if let Some(value) = map.get(key.name) {
                    fields.push((key.name.to_string(), value.clone()));
                } else if let Some(default) = key.default.and_then(|d| serde_json::from_str::<Value>(d).ok()) {
                    fields.push((key.name.to_string(), default));
                }
            }
            if fields.is_empty() {
                let names: Vec<String> = keys.iter().map(|k| format!("{:?}", k.name)).collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
                    names.join(" ")
                ));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
    }
}

// --- field sets -----------------------------------------------------------------------

/// The fields a value sets: every leaf, every list item, every map entry (as opposed to
/// struct field), and fields set to null or `{}`.
pub(super) fn field_set(ty: Ty, value: &Value) -> Set {
    let mut set = Set::new();
    field_set_walk(ty, value, &mut Vec::new(), &mut set);
    set
}

fn field_set_walk(ty: Ty, value: &Value, path: &mut Path, set: &mut Set) {
    let kind = if path.len() > MAX_DEPTH { Node::Leaf } else { node(ty, value) };
    match kind {
        Node::Leaf => set.insert(path),
        Node::Object(obj) => {
            let Value::Object(map) = value else { return };
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                field_set_walk(obj.child(key), child, path, set);
                let empty = child.is_null() || child.as_object().is_some_and(Map::is_empty);
                if empty || !obj.is_field(key) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Node::List(assoc, elem) => {
            let Value::Array(items) = value else { return };
            let elements: Vec<Option<PathElement>> = items.iter().map(|i| item_element(assoc, i).ok()).collect();
            let mut counts: BTreeMap<&PathElement, usize> = BTreeMap::new();
            for pe in elements.iter().flatten() {
                *counts.entry(pe).or_default() += 1;
            }
            for (pe, count) in &counts {
                if *count > 1 {
                    // Duplicates are owned as a whole, never descended into.
                    path.push((*pe).clone());
                    set.insert(path);
                    path.pop();
                }
            }
            for (item, pe) in items.iter().zip(&elements) {
                let Some(pe) = pe else { continue };
                if counts.get(pe).copied().unwrap_or(0) > 1 {
                    continue;
                }
                path.push(pe.clone());
                field_set_walk(*elem, item, path, set);
                set.insert(path);
                path.pop();
            }
        }
    }
}

/// Adds struct fields that only appear as parents to the members (so removing them
/// removes what is below). Used when pruning what an applier stopped applying.
pub(super) fn ensure_named_fields_are_members(set: &Set, ty: Ty) -> Set {
    let mut out = Set::new();
    for pe in set.members() {
        out.add_member(pe.clone());
    }
    for (pe, child) in set.children() {
        if let (PathElement::Field(name), Ty::Struct(index)) = (pe, ty) {
            if TypeDef::by_index(index).and_then(|d| d.field(name)).is_some() {
                out.add_member(pe.clone());
            }
        }
        let child_ty = match pe {
            PathElement::Field(_) | PathElement::Key(_) => child_type(ty, pe),
            _ => Ty::Deduced,
        };
        out.set_child(pe.clone(), ensure_named_fields_are_members(child, child_ty));
    }
    out
}

// --- comparison -----------------------------------------------------------------------

/// What an update changed.
#[derive(Debug, Default)]
pub(super) struct Comparison {
    pub removed: Set,
    pub modified: Set,
    pub added: Set,
}

impl Comparison {
    /// Drops paths at or below the `reset` set's members (fields the endpoint ignores).
    pub fn exclude(&mut self, reset: &Set) {
        if reset.is_empty() {
            return;
        }
        self.removed.remove_recursive(reset);
        self.modified.remove_recursive(reset);
        self.added.remove_recursive(reset);
    }
}

pub(super) fn compare(ty: Ty, old: &Value, new: &Value) -> Comparison {
    let mut out = Comparison::default();
    compare_walk(ty, Some(old), Some(new), &mut Vec::new(), &mut out);
    out
}

fn compare_walk(ty: Ty, lhs: Option<&Value>, rhs: Option<&Value>, path: &mut Path, out: &mut Comparison) {
    let kind = match (lhs.map(|v| node(ty, v)), rhs.map(|v| node(ty, v))) {
        _ if path.len() > MAX_DEPTH => Node::Leaf,
        (Some(l), Some(r)) if l.kind() != r.kind() => Node::Leaf,
        (_, Some(r)) => r,
        (Some(l), None) => l,
        (None, None) => return,
    };
    let leaf = |path: &Path, out: &mut Comparison| match (lhs, rhs) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        (Some(l), Some(r)) if !values_equal(l, r) => out.modified.insert(path),
        _ => {}
    };
    match kind {
        Node::Leaf => return leaf(path, out),
        Node::Object(obj) => {
            if is_empty_container(lhs) && is_empty_container(rhs) {
                return leaf(path, out);
            }
            let empty = Map::new();
            let lm = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rm = rhs.and_then(Value::as_object).unwrap_or(&empty);
            for (key, l) in lm {
                path.push(PathElement::Field(key.clone()));
                compare_walk(obj.child(key), Some(l), rm.get(key), path, out);
                path.pop();
            }
            for (key, r) in rm.iter().filter(|(k, _)| !lm.contains_key(*k)) {
                path.push(PathElement::Field(key.clone()));
                compare_walk(obj.child(key), None, Some(r), path, out);
                path.pop();
            }
        }
        Node::List(assoc, elem) => {
            if is_empty_container(lhs) && is_empty_container(rhs) {
                return leaf(path, out);
            }
            let l_groups = group_items(assoc, lhs);
            let r_groups = group_items(assoc, rhs);
            let mut order: Vec<&PathElement> = l_groups.order.iter().collect();
            order.extend(r_groups.order.iter().filter(|pe| !l_groups.items.contains_key(*pe)));
            for pe in order {
                let ls = l_groups.items.get(pe).map(Vec::as_slice).unwrap_or_default();
                let rs = r_groups.items.get(pe).map(Vec::as_slice).unwrap_or_default();
                path.push(pe.clone());
                match (ls.len(), rs.len()) {
                    (0..=1, 0..=1) => compare_walk(*elem, ls.first().copied(), rs.first().copied(), path, out),
                    (2.., 2..) => {
                        let same = ls.len() == rs.len() && ls.iter().zip(rs).all(|(a, b)| values_equal(a, b));
                        if !same {
                            out.modified.insert(path);
                        }
                    }
                    (2.., _) => {
                        if let Some(r) = rs.first() {
                            compare_walk(*elem, None, Some(r), path, out);
                        }
                        out.removed.insert(path);
                    }
                    (_, _) => {
                        if let Some(l) = ls.first() {
                            compare_walk(*elem, Some(l), None, path, out);
                        }
                        out.added.insert(path);
                    }
                }
                path.pop();
            }
        }
    }
    match (lhs, rhs) {
        (None, _) => out.added.insert(path),
        (_, None) => out.removed.insert(path),
        _ => {}
    }
}

struct Groups<'v> {
    order: Vec<PathElement>,
    items: BTreeMap<PathElement, Vec<&'v Value>>,
}

/// List items by path element, in first-seen order; items without one are skipped.
fn group_items(assoc: Assoc, list: Option<&Value>) -> Groups<'_> {
    let mut groups = Groups { order: Vec::new(), items: BTreeMap::new() };
    let Some(Value::Array(items)) = list else { return groups };
    for item in items {
        let Ok(pe) = item_element(assoc, item) else { continue };
        match groups.items.get_mut(&pe) {
            Some(list) => list.push(item),
            None => {
                groups.order.push(pe.clone());
                groups.items.insert(pe, vec![item]);
            }
        }
    }
    groups
}

// --- merging --------------------------------------------------------------------------

/// Merges an applied configuration into a live object: the configuration's values win,
/// granular structs and maps merge field by field, list-maps and sets item by item,
/// atomic values are replaced.
pub(super) fn merge(ty: Ty, live: &Value, config: &Value) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let out = merge_walk(ty, Some(live), Some(config), &mut Vec::new(), &mut errors);
    if errors.is_empty() {
        Ok(out.unwrap_or_else(|| Value::Object(Map::new())))
    } else {
        Err(errors)
    }
}

fn merge_walk(
    ty: Ty,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Path,
    errors: &mut Vec<String>,
) -> Option<Value> {
    let kind = match (lhs.map(|v| node(ty, v)), rhs.map(|v| node(ty, v))) {
        (None, None) => return None,
        _ if path.len() > MAX_DEPTH => Node::Leaf,
        (Some(l), Some(r)) if l.kind() != r.kind() => Node::Leaf,
        (_, Some(r)) => r,
        (Some(l), None) => l,
    };
    let leaf = || rhs.or(lhs).cloned();
    match kind {
        Node::Leaf => leaf(),
        Node::Object(obj) => {
            if is_empty_container(lhs) && is_empty_container(rhs) {
                return leaf();
            }
            let empty = Map::new();
            let lm = lhs.and_then(Value::as_object).unwrap_or(&empty);
            let rm = rhs.and_then(Value::as_object).unwrap_or(&empty);
            let mut out = Map::new();
            for (key, l) in lm {
                path.push(PathElement::Field(key.clone()));
                if let Some(v) = merge_walk(obj.child(key), Some(l), rm.get(key), path, errors) {
                    out.insert(key.clone(), v);
                }
                path.pop();
            }
            for (key, r) in rm.iter().filter(|(k, _)| !lm.contains_key(*k)) {
                path.push(PathElement::Field(key.clone()));
                if let Some(v) = merge_walk(obj.child(key), None, Some(r), path, errors) {
                    out.insert(key.clone(), v);
                }
                path.pop();
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Node::List(assoc, elem) => {
            if is_empty_container(lhs) && is_empty_container(rhs) {
                return leaf();
            }
            merge_list(assoc, *elem, lhs, rhs, path, errors)
        }
    }
}

/// Indexes list items by path element. Items whose element cannot be had are errors;
/// duplicates are errors on the applied side and kept (but never merged) on the live
/// side.
fn index_items<'v>(
    assoc: Assoc,
    list: Option<&'v Value>,
    allow_duplicates: bool,
    path: &Path,
    errors: &mut Vec<String>,
) -> (Vec<(PathElement, &'v Value)>, BTreeMap<PathElement, &'v Value>) {
    let mut elements = Vec::new();
    let mut observed: BTreeMap<PathElement, &'v Value> = BTreeMap::new();
    let Some(Value::Array(items)) = list else { return (elements, observed) };
    for (i, item) in items.iter().enumerate() {
        let pe = match item_element(assoc, item) {
            Ok(pe) => pe,
            Err(e) => {
                errors.push(format!("{}: element {i}: {e}", path_string(path)));
                continue;
            }
        };
        if observed.contains_key(&pe) {
            if !allow_duplicates {
                errors.push(format!("{}: duplicate entries for key {pe}", path_string(path)));
                continue;
            }
            observed.insert(pe.clone(), &NULL);
        } else {
            observed.insert(pe.clone(), item);
        }
        elements.push((pe, item));
    }
    (elements, observed)
}

/// Merges two associative lists. Live items keep their places; applied items follow
/// the applied order, new ones placed after the live items before them.
fn merge_list(
    assoc: Assoc,
    elem: Ty,
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    path: &mut Path,
    errors: &mut Vec<String>,
) -> Option<Value> {
    let before = errors.len();
    let (r_items, r_observed) = index_items(assoc, rhs, false, path, errors);
    let (l_items, l_observed) = index_items(assoc, lhs, true, path, errors);
    if errors.len() > before {
        return None;
    }
    let mut shared: VecDeque<&PathElement> =
        r_items.iter().map(|(pe, _)| pe).filter(|pe| l_observed.contains_key(*pe)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(l_items.len().max(r_items.len()));
    let (l_len, r_len) = (l_items.len(), r_items.len());
    let (mut li, mut ri) = (0, 0);
    let mut emit =
        |pe: &PathElement, l: Option<&Value>, r: Option<&Value>, out: &mut Vec<Value>, errors: &mut Vec<String>| {
            path.push(pe.clone());
            if let Some(v) = merge_walk(elem, l, r, path, errors) {
                out.push(v);
            }
            path.pop();
        };
    // Every round advances li or ri; the bound only guards against mistakes.
    for _ in 0..=(l_len + r_len) {
        if li >= l_len && ri >= r_len {
            break;
        }
        if li < l_len && ri < r_len {
            let pe = &l_items[li].0;
            if *pe == r_items[ri].0 {
                merged_rhs.insert(pe);
                emit(pe, l_observed.get(pe).copied(), r_observed.get(pe).copied(), &mut out, errors);
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if r_observed.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                // Shared with the applied list, but not its turn yet.
                li += 1;
                continue;
            }
        }
        if li < l_len {
            let pe = &l_items[li].0;
            if !r_observed.contains_key(pe) {
                emit(pe, Some(l_items[li].1), None, &mut out, errors);
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < r_len {
            let pe = &r_items[ri].0;
            merged_rhs.insert(pe);
            emit(pe, l_observed.get(pe).copied(), r_observed.get(pe).copied(), &mut out, errors);
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.pop_front();
            }
        }
    }
    (!out.is_empty()).then_some(Value::Array(out))
}

// --- removal --------------------------------------------------------------------------

/// Removes the paths of `remove` from a value (a path removes everything below it).
/// Structs and maps left empty by removal become `null` in their parent, as in
/// Kubernetes (whose typed conversion later drops them: see [`drop_emptied`]); list items
/// left empty are dropped.
pub(super) fn remove_items(ty: Ty, value: &Value, remove: &Set) -> Value {
    if remove.is_empty() {
        return value.clone();
    }
    match remove_walk(ty, value, remove, 0) {
        Value::Null if !value.is_null() => Value::Object(Map::new()),
        out => out,
    }
}

fn remove_walk(ty: Ty, value: &Value, remove: &Set, depth: usize) -> Value {
    let kind = if depth > MAX_DEPTH { Node::Leaf } else { node(ty, value) };
    match kind {
        Node::Leaf => match value {
            // An atomic value cannot lose part of itself.
            Value::Array(_) | Value::Object(_) => Value::Null,
            scalar => scalar.clone(),
        },
        Node::Object(obj) => {
            let Value::Object(map) = value else { return Value::Null };
            let mut out = Map::new();
            for (key, child) in map {
                let pe = PathElement::Field(key.clone());
                if remove.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                let kept = match remove.with_prefix(&pe) {
                    Some(below) => remove_walk(obj.child(key), child, below, depth + 1),
                    None => child.clone(),
                };
                out.insert(key.clone(), kept);
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Object(out)
            }
        }
        Node::List(assoc, elem) => {
            let Value::Array(items) = value else { return Value::Null };
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Ok(pe) = item_element(assoc, item) else {
                    out.push(item.clone());
                    continue;
                };
                if remove.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                match remove.with_prefix(&pe) {
                    Some(below) => match remove_walk(*elem, item, below, depth + 1) {
                        Value::Null if !item.is_null() => {}
                        kept => out.push(kept),
                    },
                    None => out.push(item.clone()),
                }
            }
            if out.is_empty() {
                Value::Null
            } else {
                Value::Array(out)
            }
        }
    }
}

/// Drops the `null`s removal left where `reference` (the object before removal) had a
/// value: Kubernetes' typed objects have no such fields.
pub(super) fn drop_emptied(value: &mut Value, reference: &Value) {
    let (Value::Object(map), Value::Object(reference)) = (value, reference) else { return };
    map.retain(|key, child| !(child.is_null() && reference.get(key).is_some_and(|r| !r.is_null())));
    for (key, child) in map.iter_mut() {
        if let Some(r) = reference.get(key) {
            drop_emptied(child, r);
        }
    }
}

// --- validation -----------------------------------------------------------------------

/// Checks an applied configuration against the schema, as Kubernetes does before it
/// merges: JSON types, list items with their keys, no duplicate items. Fields the schema
/// does not declare pass (the server's field validation reports those).
pub(super) fn validate(ty: Ty, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate_walk(ty, value, &mut Vec::new(), &mut errors, 0);
    errors
}

fn validate_walk(ty: Ty, value: &Value, path: &mut Path, errors: &mut Vec<String>, depth: usize) {
    use super::types::Scalar;
    if value.is_null() || depth > MAX_DEPTH {
        return;
    }
    let fail = |what: &str, errors: &mut Vec<String>, path: &Path| {
        let prefix = path_string(path);
        let got = short_json(value);
        errors.push(if prefix.is_empty() {
            format!("expected {what}, got {got}")
        } else {
            format!("{prefix}: expected {what}, got {got}")
        });
    };
    match ty {
        Ty::Scalar(kind) => {
            let ok = match kind {
                Scalar::Str => value.is_string(),
                Scalar::Int | Scalar::Num => value.is_number(),
                Scalar::Bool => value.is_boolean(),
                Scalar::Other => !value.is_array() && !value.is_object(),
            };
            if !ok {
                let what = match kind {
                    Scalar::Str => "string",
                    Scalar::Int | Scalar::Num => "numeric (int or float)",
                    Scalar::Bool => "boolean",
                    Scalar::Other => "scalar",
                };
                fail(what, errors, path);
            }
        }
        Ty::Deduced => {}
        Ty::Struct(index) => {
            let Value::Object(map) = value else { return fail("map", errors, path) };
            let def = TypeDef::by_index(index);
            for (key, child) in map {
                let child_ty = def.and_then(|d| d.field(key)).map_or(Ty::Deduced, |f| f.ty);
                path.push(PathElement::Field(key.clone()));
                validate_walk(child_ty, child, path, errors, depth + 1);
                path.pop();
            }
        }
        Ty::Map(_, elem) => {
            let Value::Object(map) = value else { return fail("map", errors, path) };
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                validate_walk(*elem, child, path, errors, depth + 1);
                path.pop();
            }
        }
        Ty::List(list_type, elem) => {
            let Value::Array(items) = value else { return fail("list", errors, path) };
            let assoc = match list_type {
                ListType::Atomic => None,
                ListType::Set => Some(Assoc::Set),
                ListType::Keyed(keys) => Some(Assoc::Keyed(keys)),
            };
            let mut seen = BTreeSet::new();
            for (i, item) in items.iter().enumerate() {
                let pe = match assoc.map(|a| item_element(a, item)) {
                    None => PathElement::Index(i),
                    Some(Ok(pe)) => pe,
                    Some(Err(e)) => {
                        errors.push(format!("{}: element {i}: {e}", path_string(path)));
                        continue;
                    }
                };
                if assoc.is_some() && !seen.insert(pe.clone()) {
                    errors.push(format!("{}: duplicate entries for key {pe}", path_string(path)));
                    continue;
                }
                path.push(pe);
                validate_walk(*elem, item, path, errors, depth + 1);
                path.pop();
            }
        }
    }
}

fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 64 {
        let cut = (0..=64).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        format!("{}...", &text[..cut])
    } else {
        text
    }
}
