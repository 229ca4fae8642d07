//! The merge itself: a step-for-step port of the server side of
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (`mergeMap` with
//! `MergeParallelList` and `IgnoreUnmatchedNulls` set, as `StrategicMergeMapPatch`
//! runs it), including its quirks:
//!
//! * a map field whose patch value has no counterpart is copied with nulls dropped
//!   and `$patch` maps removed, but other directives (`$setElementOrder/...`,
//!   `$retainKeys`) and the contents of replaced lists and maps are kept verbatim;
//! * new list elements are added as sent (directives and nulls included), ahead of
//!   the existing ones unless an order says otherwise;
//! * element order follows `$setElementOrder`, then the patch, then the live object,
//!   with Go's `sort.SliceStable` and its non-strict comparators;
//! * Go's slices share backing arrays: deleting from a merged list shifts the original
//!   in place and appends write over its tail, and deduplicating a list of scalars
//!   rewrites the original when `append` had room; the order passes then read that
//!   rewritten original as the "server order". `Backing` and `GoSlice` emulate this,
//!   for stored objects without spare capacity (the API server deep-copies them).
//!
//! Go iterates patch maps in random order, so where the order of two keys matters
//! (`x` and `$deleteFromPrimitiveList/x`, or several errors) Kubernetes itself is
//! not deterministic; this follows the patch's key order.
//!
//! Where Go would panic (comparing maps, a null first list element), this returns a
//! `Panic` error instead.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::error::PatchError;
use super::golang::{
    check_hashable, fmt_list, fmt_lists, fmt_map, fmt_s, go_eq, go_type, hash_key, quote, stable_sort, GoType, HashKey,
};
use super::types::{Ty, Type};

type Obj = Map<String, Value>;
type Result<T> = std::result::Result<T, PatchError>;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

const MAP_TYPE: &str = "map[string]interface {}";
const SLICE_TYPE: &str = "[]interface {}";

static NIL: Value = Value::Null;

/// mergepatch.ErrBadArgType: `expected` is the Go type the code asserted.
fn bad_arg_type(expected: &str, actual: &Value) -> PatchError {
    PatchError::unconverted(format!("expected a {expected}, but received a {}", go_type(actual).type_string()))
}

/// mergepatch.ErrNoMergeKey.
fn no_merge_key(map: &Obj, key: &str) -> PatchError {
    PatchError::unconverted(format!("map: {} does not contain declared merge key: {key}", fmt_map(map)))
}

/// mergepatch.ErrBadPatchType.
fn bad_patch_type(directive: &Value, map: &Obj) -> PatchError {
    PatchError::unconverted(format!("unknown patch type: {} in map: {}", fmt_s(directive), fmt_map(map)))
}

/// A type assertion Go's code makes without checking (`v.(map[string]interface{})`).
fn interface_conversion(actual: &Value) -> PatchError {
    PatchError::panic(format!(
        "interface conversion: interface {{}} is {}, not {MAP_TYPE}",
        match go_type(actual) {
            GoType::Nil => "nil",
            other => other.type_string(),
        }
    ))
}

/// Patch metadata of one field: the type it leads to (for a list, its elements') and
/// its tags.
struct Meta {
    ty: Ty,
    strategy: &'static str,
    merge_key: &'static str,
}

/// `LookupPatchMetadataForStruct`.
fn lookup_struct(ty: Ty, key: &str) -> Result<Meta> {
    match ty {
        Ty::Untyped => Ok(Meta { ty: Ty::Untyped, strategy: "", merge_key: "" }),
        Ty::Struct(index) => {
            let Some(t) = Type::by_index(index) else {
                return Err(PatchError::unconverted(format!("unknown type index {index}")));
            };
            match t.field(key) {
                Some(field) => Ok(Meta { ty: field.ty, strategy: field.strategy, merge_key: field.merge_key }),
                None => Err(PatchError::unconverted(format!(
                    "unable to find api field in struct {} for the json field {}",
                    t.go_name(),
                    quote(key)
                ))),
            }
        }
        other => Err(PatchError::unconverted(format!(
            "merging an object in json but data type is not struct, instead is: {}",
            other.kind_name()
        ))),
    }
}

/// `LookupPatchMetadataForSlice`: the field's metadata with its element type.
fn lookup_slice(ty: Ty, key: &str) -> Result<Meta> {
    let meta = lookup_struct(ty, key)?;
    let elem = match meta.ty {
        Ty::List(Ty::List(_)) => return Err(PatchError::unconverted("unexpected slice of slice")),
        Ty::List(elem) => *elem,
        Ty::Untyped => Ty::Untyped,
        _ => return Err(PatchError::unconverted(format!("expected slice or array type, but got: {}", ty.kind_name()))),
    };
    Ok(Meta { ty: elem, ..meta })
}

/// `extractRetainKeysPatchStrategy`: the strategy besides `retainKeys` (which the
/// server ignores; only the `$retainKeys` directive counts).
fn other_strategy(tag: &'static str) -> Result<&'static str> {
    let parts: Vec<&'static str> = tag.split(',').collect();
    match parts.as_slice() {
        [one] if *one == RETAIN_KEYS_STRATEGY => Ok(""),
        [one] => Ok(one),
        [a, b] if *a == RETAIN_KEYS_STRATEGY => Ok(b),
        [a, b] if *b == RETAIN_KEYS_STRATEGY => Ok(a),
        _ => Err(PatchError::unconverted(format!("unexpected patch strategy: [{}]", parts.join(" ")))),
    }
}

/// `mergeMap`: merges `patch` into `original` for a value of type `ty`.
pub(super) fn merge_map(mut original: Obj, mut patch: Obj, ty: Ty) -> Result<Obj> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => {
                patch.shift_remove(DIRECTIVE_MARKER);
                Ok(patch)
            }
            Some(DELETE_DIRECTIVE) => Ok(Obj::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }

    apply_retain_keys_directive(&mut original, &mut patch)?;
    merge_patch_into_original(&mut original, &mut patch, ty)?;

    // Lists this call rebuilt with spare capacity (a `$deleteFromPrimitiveList` result
    // keeps its input's), should a second key merge into them.
    let mut capacity: HashMap<String, usize> = HashMap::new();
    for (patch_key, patch_v) in patch {
        let mut key = patch_key;
        let mut is_delete_list = false;
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            let stripped = extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?;
            is_delete_list = true;
            if !stripped.is_empty() {
                key = stripped;
            }
        }

        // null deletes; with IgnoreUnmatchedNulls an unmatched null is simply dropped.
        if patch_v.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let Some(original_v) = original.get_mut(&key) else {
            if !is_delete_list {
                take_patch_value(&mut original, key, patch_v);
            }
            continue;
        };
        if go_type(original_v) != go_type(&patch_v) {
            if !is_delete_list {
                take_patch_value(&mut original, key, patch_v);
            }
            continue;
        }

        match (original_v.take(), patch_v) {
            (Value::Object(original_map), Value::Object(patch_map)) => {
                let meta = lookup_struct(ty, &key)?;
                let strategy = other_strategy(meta.strategy)?;
                *original_v = if strategy != REPLACE_DIRECTIVE {
                    Value::Object(merge_map(original_map, patch_map, meta.ty)?)
                } else {
                    Value::Object(patch_map)
                };
            }
            (Value::Array(original_list), Value::Array(patch_list)) => {
                let meta = lookup_slice(ty, &key)?;
                let strategy = other_strategy(meta.strategy)?;
                let cap = capacity.get(&key).copied().unwrap_or(original_list.len());
                let original_list = GoSlice { items: original_list, cap };
                let merged =
                    merge_slice_handler(original_list, patch_list, meta.ty, strategy, meta.merge_key, is_delete_list)?;
                capacity.insert(key, merged.cap);
                *original_v = Value::Array(merged.items);
            }
            // Scalars of the same type: the patch wins.
            (_, scalar) => *original_v = scalar,
        }
    }
    Ok(original)
}

/// A patch value with nothing to merge into: nulls dropped, `$patch` maps removed.
fn take_patch_value(original: &mut Obj, key: String, mut patch_v: Value) {
    discard_null_values(&mut patch_v);
    match remove_directives(patch_v) {
        Some(value) => {
            original.insert(key, value);
        }
        None => {
            original.shift_remove(&key);
        }
    }
}

/// `discardNullValuesFromPatch`: drops null map entries at any depth (not list items).
fn discard_null_values(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(discard_null_values);
        }
        Value::Array(list) => list.iter_mut().for_each(discard_null_values),
        _ => {}
    }
}

/// `removeDirectives`: maps carrying `$patch` disappear (None), at any depth.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE_MARKER) {
                return None;
            }
            Some(Value::Object(map.into_iter().filter_map(|(k, v)| remove_directives(v).map(|v| (k, v))).collect()))
        }
        Value::Array(list) => Some(Value::Array(list.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

/// `extractKey`: `$setElementOrder/containers` -> `containers`.
fn extract_key(s: &str, prefix: &str) -> Result<String> {
    match s.split_once('/') {
        Some((head, rest)) if head == prefix => Ok(rest.to_string()),
        _ => Err(match prefix {
            DELETE_FROM_PRIMITIVE_LIST_PREFIX => PatchError::bad_request("invalid patch format of primitive list"),
            SET_ELEMENT_ORDER_PREFIX => PatchError::bad_request("invalid patch format of setElementOrder list"),
            _ => PatchError::unconverted(format!("fail to find unknown prefix {} in {s}\n", quote(prefix))),
        }),
    }
}

/// `applyRetainKeysDirective`: `$retainKeys` lists the keys to keep in `original`;
/// every key the patch sets must be among them.
fn apply_retain_keys_directive(original: &mut Obj, patch: &mut Obj) -> Result<()> {
    let Some(retain_keys) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(list) = retain_keys else {
        return Err(PatchError::bad_request("invalid patch format of retainKeys"));
    };
    for item in &list {
        check_hashable(item)?;
    }
    let keep = |key: &str| list.iter().any(|item| item.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !keep(key) {
            return Err(PatchError::bad_request("invalid patch format of retainKeys"));
        }
    }
    original.retain(|key, _| keep(key));
    Ok(())
}

/// `mergePatchIntoOriginal`: each `$setElementOrder/<list>` merges that list now and
/// orders the result: `$setElementOrder` first, then the live object's order.
fn merge_patch_into_original(original: &mut Obj, patch: &mut Obj, ty: Ty) -> Result<()> {
    let keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER_PREFIX)).cloned().collect();
    for key in keys {
        // Gone if an earlier directive's list key was this very key.
        let Some(order_v) = patch.shift_remove(&key) else { continue };
        let Value::Array(order) = order_v else {
            return Err(bad_arg_type(SLICE_TYPE, &order_v));
        };
        let original_key = extract_key(&key, SET_ELEMENT_ORDER_PREFIX)?;
        let original_list = match original.get(&original_key) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_arg_type(SLICE_TYPE, other)),
        };
        let patch_list = match patch.get(&original_key) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(bad_arg_type(SLICE_TYPE, other)),
        };
        let meta = lookup_slice(ty, &original_key)?;
        let strategy = other_strategy(meta.strategy)?;
        validate_patch_with_set_order_list(patch_list.as_deref().unwrap_or_default(), &order, meta.merge_key)?;

        let original_values = original_list.clone().unwrap_or_default();
        let patch_values = patch_list.clone().unwrap_or_default();
        let (merged, server_order) = match (original_list, patch_list) {
            (Some(list), None) => (list.clone(), list),
            (None, Some(list)) => (list.into_iter().filter_map(remove_directives).collect(), Vec::new()),
            (Some(o), Some(p)) => {
                let merged = merge_slice_handler(GoSlice::exact(o), p, meta.ty, strategy, meta.merge_key, false)?;
                (merged.items, merged.original_view)
            }
            (None, None) => continue,
        };

        let (patch_items, server_only) = if meta.merge_key.is_empty() {
            partition_primitives(merged, &order)?
        } else {
            partition_maps(merged, &order, meta.merge_key)?
        };
        // Go reads the element type off the lists as they were sent.
        let kind = slice_element_type(&[&original_values, &patch_values])?;
        let both = normalize_element_order(patch_items, server_only, &order, &server_order, meta.merge_key, kind)?;
        original.insert(original_key.clone(), Value::Array(both));
        patch.shift_remove(&original_key);
    }
    Ok(())
}

/// `validatePatchWithSetOrderList`: the patch list's items must appear in the
/// `$setElementOrder` list, in the same relative order.
fn validate_patch_with_set_order_list(patch_list: &[Value], order: &[Value], merge_key: &str) -> Result<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<Value> =
        if merge_key.is_empty() { patch_list.to_vec() } else { extract_to_delete_items(patch_list.to_vec())?.0 };
    let (mut patch_index, mut order_index) = (0, 0);
    while patch_index < non_delete.len() && order_index < order.len() {
        if contains_directive_marker(&non_delete[patch_index]) {
            patch_index += 1;
            continue;
        }
        if merge_key_value_equal(&non_delete[patch_index], &order[order_index], merge_key)? {
            patch_index += 1;
        }
        order_index += 1;
    }
    if patch_index < non_delete.len() && order_index >= order.len() {
        return Err(PatchError::unconverted(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{}\n",
            fmt_list(patch_list),
            fmt_list(order)
        )));
    }
    Ok(())
}

fn contains_directive_marker(item: &Value) -> bool {
    item.as_object().is_some_and(|m| m.contains_key(DIRECTIVE_MARKER))
}

/// `mergeKeyValueEqual`.
fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool> {
    if merge_key.is_empty() {
        return go_eq(left, right);
    }
    let Value::Object(left_map) = left else { return Err(bad_arg_type(MAP_TYPE, left)) };
    let Value::Object(right_map) = right else { return Err(bad_arg_type(MAP_TYPE, right)) };
    let Some(left_key) = left_map.get(merge_key) else { return Err(no_merge_key(left_map, merge_key)) };
    let Some(right_key) = right_map.get(merge_key) else { return Err(no_merge_key(right_map, merge_key)) };
    go_eq(left_key, right_key)
}

/// A Go `[]interface{}`: its items and capacity. Lists of the stored object have no
/// spare capacity (the API server deep-copies it), but a list this merge rebuilt may.
struct GoSlice {
    items: Vec<Value>,
    cap: usize,
}

impl GoSlice {
    fn exact(items: Vec<Value>) -> Self {
        let cap = items.len();
        Self { items, cap }
    }
}

/// A merged list, with Go's view of the original slice afterwards (see `Backing`).
struct Merged {
    items: Vec<Value>,
    /// The capacity of `items` in Go.
    cap: usize,
    original_view: Vec<Value>,
}

impl Merged {
    fn exact(items: Vec<Value>, original_view: Vec<Value>) -> Self {
        Self { cap: items.len(), items, original_view }
    }
}

/// `mergeSliceHandler`: merge lists with strategy `merge` (and deletion lists); any
/// other list is replaced by the patch, as sent.
fn merge_slice_handler(
    original: GoSlice,
    patch: Vec<Value>,
    elem: Ty,
    strategy: &str,
    merge_key: &'static str,
    is_delete_list: bool,
) -> Result<Merged> {
    if strategy == MERGE_DIRECTIVE || is_delete_list {
        merge_slice(original, patch, elem, merge_key, is_delete_list)
    } else {
        Ok(Merged::exact(patch, original.items))
    }
}

/// The Go backing array of the original list. Go deletes merge-list elements with
/// `append(s[:i], s[i+1:]...)` and appends new ones in place, so a caller still holding
/// the original slice (`mergePatchIntoOriginal`, which orders by it) sees elements
/// shifted left and new ones written over the tail. Only merge keys matter there, and
/// merging an element never changes its key, so merges need no mirroring.
struct Backing {
    view: Vec<Value>,
    /// False once the list lives in a new array (`$patch: replace`).
    aliased: bool,
}

/// `mergeSlice`.
fn merge_slice(
    original: GoSlice,
    patch: Vec<Value>,
    elem: Ty,
    merge_key: &'static str,
    is_delete_list: bool,
) -> Result<Merged> {
    let GoSlice { items: original, cap } = original;
    if original.is_empty() && patch.is_empty() {
        return Ok(Merged { items: original, cap, original_view: Vec::new() });
    }
    let kind = slice_element_type(&[&original, &patch])?;

    if kind != GoType::Map {
        if is_delete_list {
            let kept = delete_from_slice(&original, &patch)?;
            // make([]interface{}, 0, len(current))
            return Ok(Merged { items: kept, cap: original.len(), original_view: original });
        }
        let mut both = original.clone();
        both.extend(patch.iter().cloned());
        let (merged, buffer) = deduplicate_scalars(both)?;
        // `append(original, patch...)` reuses the original's array when it has room
        // (always, for an empty patch), and deduplicating then rewrote the original
        // list that orders the result.
        let original = if original.len() + patch.len() <= cap { buffer[..original.len()].to_vec() } else { original };
        let (patch_items, server_only) = if merge_key.is_empty() {
            partition_primitives(merged, &patch)?
        } else {
            partition_maps(merged, &patch, merge_key)?
        };
        let ordered = normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind)?;
        return Ok(Merged::exact(ordered, original));
    }

    if merge_key.is_empty() {
        return Err(PatchError::unconverted(format!("cannot merge lists without merge key for {}", elem.kind_name())));
    }
    let mut backing = Backing { view: original.clone(), aliased: true };
    let (original, patch) = merge_slice_with_special_elements(original, patch, merge_key, &mut backing)?;
    let merged = merge_slice_without_special_elements(original.clone(), &patch, merge_key, elem, &mut backing)?;
    let (patch_items, server_only) = partition_maps(merged, &patch, merge_key)?;
    let ordered = normalize_element_order(patch_items, server_only, &patch, &original, merge_key, kind)?;
    Ok(Merged::exact(ordered, backing.view))
}

/// `mergeSliceWithSpecialElements`: applies `{"$patch": "delete", key: ...}` and
/// `{"$patch": "replace"}` items; returns the original and the remaining patch items.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    backing: &mut Backing,
) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut without_special = Vec::new();
    let mut replace = false;
    for item in patch {
        let Value::Object(map) = &item else { return Err(interface_conversion(&item)) };
        let Some(directive) = map.get(DIRECTIVE_MARKER) else {
            without_special.push(item);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => match map.get(merge_key) {
                Some(value) => delete_matching_entries(&mut original, merge_key, value, backing)?,
                None => return Err(no_merge_key(map, merge_key)),
            },
            // Keep going to drop the other `$patch` items.
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => {
                return Err(PatchError::unconverted("merging lists cannot yet be specified in the patch"))
            }
            _ => return Err(bad_patch_type(directive, map)),
        }
    }
    if replace {
        backing.aliased = false;
        return Ok((without_special, Vec::new()));
    }
    Ok((original, without_special))
}

/// `deleteMatchingEntries`.
fn delete_matching_entries(
    original: &mut Vec<Value>,
    merge_key: &str,
    value: &Value,
    backing: &mut Backing,
) -> Result<()> {
    while let Some(index) = find_map_in_slice(original, merge_key, value)? {
        let len = original.len();
        original.remove(index);
        if backing.aliased {
            for j in index..len - 1 {
                backing.view[j] = backing.view[j + 1].clone();
            }
        }
    }
    Ok(())
}

/// `mergeSliceWithoutSpecialElements`: merges each patch item into the original item
/// with the same key, or appends it (as sent).
fn merge_slice_without_special_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    elem: Ty,
    backing: &mut Backing,
) -> Result<Vec<Value>> {
    let mut finder = MapFinder::new(&original, merge_key);
    for item in patch {
        let Value::Object(map) = item else { return Err(interface_conversion(item)) };
        let Some(value) = map.get(merge_key) else { return Err(no_merge_key(map, merge_key)) };
        match finder.find(&original, merge_key, value)? {
            Some(index) => {
                let Value::Object(original_map) = original[index].take() else {
                    return Err(interface_conversion(&original[index]));
                };
                original[index] = Value::Object(merge_map(original_map, map.clone(), elem)?);
            }
            None => {
                if backing.aliased && original.len() < backing.view.len() {
                    backing.view[original.len()] = item.clone();
                }
                finder.add(original.len(), item, merge_key);
                original.push(item.clone());
            }
        }
    }
    Ok(original)
}

/// A Go `map[interface{}]bool` of `items`: panics (errors) on maps and slices.
fn go_set(items: &[Value]) -> Result<HashSet<HashKey>> {
    items.iter().map(|item| hash_key(item).ok_or_else(|| unhashable(item))).collect()
}

/// Looking up a map or slice in a Go map.
fn unhashable(item: &Value) -> PatchError {
    check_hashable(item).err().unwrap_or_else(|| PatchError::panic("runtime error: hash of unhashable type"))
}

/// `deleteFromSlice`: the parallel `$deleteFromPrimitiveList` list.
fn delete_from_slice(current: &[Value], to_delete: &[Value]) -> Result<Vec<Value>> {
    let to_delete = go_set(to_delete)?;
    let mut kept = Vec::with_capacity(current.len());
    for item in current {
        let key = hash_key(item).ok_or_else(|| unhashable(item))?;
        if !to_delete.contains(&key) {
            kept.push(item.clone());
        }
    }
    Ok(kept)
}

/// `findMapInSliceBasedOnKeyValue` over one list, with the first position of every
/// hashable key precomputed (Go scans the list each time).
struct MapFinder {
    first_non_map: Option<usize>,
    first: HashMap<HashKey, usize>,
}

impl MapFinder {
    fn new(list: &[Value], key: &str) -> Self {
        let mut finder = MapFinder { first_non_map: None, first: HashMap::new() };
        for (index, item) in list.iter().enumerate() {
            finder.add(index, item, key);
        }
        finder
    }

    /// Records the item at `index` (the list's end).
    fn add(&mut self, index: usize, item: &Value, key: &str) {
        match item {
            Value::Object(map) => {
                if let Some(h) = map.get(key).and_then(hash_key) {
                    self.first.entry(h).or_insert(index);
                }
            }
            _ => {
                self.first_non_map.get_or_insert(index);
            }
        }
    }

    /// Same result as `find_map_in_slice(list, key, value)`, `list` being the list
    /// this finder has seen.
    fn find(&self, list: &[Value], key: &str, value: &Value) -> Result<Option<usize>> {
        let Some(h) = hash_key(value) else {
            // Maps and slices compare (and panic) only against their own kind.
            return find_map_in_slice(list, key, value);
        };
        let found = self.first.get(&h).copied();
        match self.first_non_map {
            Some(bad) if found.is_none_or(|f| bad < f) => {
                Err(PatchError::unconverted(format!("value for key {bad} is not a map")))
            }
            _ => Ok(found),
        }
    }
}

/// `findMapInSliceBasedOnKeyValue`: the index of the first map whose `key` equals
/// `value`; any non-map before it is an error.
fn find_map_in_slice(list: &[Value], key: &str, value: &Value) -> Result<Option<usize>> {
    for (index, item) in list.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(PatchError::unconverted(format!("value for key {index} is not a map")));
        };
        if let Some(found) = map.get(key) {
            if go_eq(found, value)? {
                return Ok(Some(index));
            }
        }
    }
    Ok(None)
}

/// `deduplicateScalars`, including the order it leaves: each later duplicate of an
/// item is overwritten by the current last item. Returns the items and the whole
/// buffer as Go leaves it (the tail past the items keeps what was there).
///
/// Go's loop is quadratic; this replays the same writes, finding each next
/// duplicate through per-value position sets.
fn deduplicate_scalars(mut buffer: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let Some(mut keys) = buffer.iter().map(hash_key).collect::<Option<Vec<HashKey>>>() else {
        return deduplicate_scalars_slowly(buffer);
    };
    let mut positions: HashMap<HashKey, BTreeSet<usize>> = HashMap::new();
    for (index, key) in keys.iter().enumerate() {
        positions.entry(key.clone()).or_default().insert(index);
    }
    // `last` is Go's `length`: the index of the last item still in the slice.
    let Some(mut last) = buffer.len().checked_sub(1) else { return Ok((buffer.clone(), buffer)) };
    let mut i = 0;
    while i < last {
        let key = keys[i].clone();
        while i < last {
            let Some(set) = positions.get_mut(&key) else { break };
            let Some(&j) = set.range(i + 1..=last).next() else { break };
            // s[j] = s[length]; s = s[:length]; length--
            set.remove(&j);
            if j != last {
                let moved = keys[last].clone();
                if let Some(moved_set) = positions.get_mut(&moved) {
                    moved_set.remove(&last);
                    moved_set.insert(j);
                }
                buffer[j] = buffer[last].clone();
                keys[j] = moved;
            }
            last -= 1;
        }
        i += 1;
    }
    Ok((buffer[..=last].to_vec(), buffer))
}

/// Go's loop as written, for lists holding maps or slices (which Go compares with a
/// panic).
fn deduplicate_scalars_slowly(mut buffer: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let mut length = buffer.len() as isize - 1;
    let mut i: isize = 0;
    while i < length {
        let mut j = i + 1;
        while j <= length {
            if go_eq(&buffer[i as usize], &buffer[j as usize])? {
                buffer[j as usize] = buffer[length as usize].clone();
                length -= 1;
                j -= 1;
            }
            j += 1;
        }
        i += 1;
    }
    let items = buffer[..(length + 1).max(0) as usize].to_vec();
    Ok((items, buffer))
}

/// `sliceElementType`: the one Go type of every element of the lists.
fn slice_element_type(lists: &[&[Value]]) -> Result<GoType> {
    let mut prev: Option<GoType> = None;
    for list in lists {
        for item in list.iter() {
            let current = go_type(item);
            match prev {
                None => {
                    if current == GoType::Nil {
                        // prevType.Kind() on a nil reflect.Type.
                        return Err(PatchError::panic(
                            "runtime error: invalid memory address or nil pointer dereference",
                        ));
                    }
                    if current == GoType::Slice {
                        return Err(PatchError::unprocessable("lists of lists are not supported"));
                    }
                    prev = Some(current);
                }
                Some(p) if p != current => {
                    return Err(PatchError::unconverted(format!(
                        "list element types are not identical: {}",
                        fmt_lists(lists)
                    )));
                }
                Some(_) => {}
            }
        }
    }
    prev.ok_or_else(|| PatchError::unconverted("no elements in any of the given slices"))
}

/// `partitionPrimitivesByPresentInList`.
fn partition_primitives(list: Vec<Value>, by: &[Value]) -> Result<(Vec<Value>, Vec<Value>)> {
    let by = go_set(by)?;
    let (mut present, mut absent) = (Vec::new(), Vec::new());
    for item in list {
        let key = hash_key(&item).ok_or_else(|| unhashable(&item))?;
        if by.contains(&key) {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// `partitionMapsByPresentInList`.
fn partition_maps(list: Vec<Value>, by: &[Value], merge_key: &str) -> Result<(Vec<Value>, Vec<Value>)> {
    let finder = MapFinder::new(by, merge_key);
    let (mut present, mut absent) = (Vec::new(), Vec::new());
    for item in list {
        let Value::Object(map) = &item else { return Err(bad_arg_type(MAP_TYPE, &item)) };
        let Some(value) = map.get(merge_key) else { return Err(no_merge_key(map, merge_key)) };
        if finder.find(by, merge_key, value)?.is_some() {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// `normalizeElementOrder`: patch items in patch order, server-only items in server
/// order, then the two interleaved by server order.
fn normalize_element_order(
    patch: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: GoType,
) -> Result<Vec<Value>> {
    let patch = normalize_slice_order(patch, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    merge_sorted_slice(server_only, patch, server_order, merge_key, kind)
}

/// `normalizeSliceOrder`: stable-sorts `to_sort` by position in `order` (items not in
/// it compare as "less", exactly as Go's comparator says), `$patch: delete` maps last.
fn normalize_slice_order(to_sort: Vec<Value>, order: &[Value], merge_key: &str, kind: GoType) -> Result<Vec<Value>> {
    let (mut to_sort, to_delete) = if kind == GoType::Map {
        validate_merge_key_in_lists(merge_key, &[&to_sort, order])?;
        extract_to_delete_items(to_sort)?
    } else {
        (to_sort, Vec::new())
    };
    let positions = Positions::new(order, merge_key, kind);
    let mut failure = None;
    stable_sort(&mut to_sort, &mut |a, b| {
        if failure.is_some() {
            return false;
        }
        let result = positions.of(a).and_then(|ia| match ia {
            Some(ia) => Ok(positions.of(b)?.is_none_or(|ib| ia < ib)),
            None => Ok(true),
        });
        result.unwrap_or_else(|err| {
            failure = Some(err);
            false
        })
    });
    if let Some(err) = failure {
        return Err(err);
    }
    to_sort.extend(to_delete);
    Ok(to_sort)
}

/// `validateMergeKeyInLists`.
fn validate_merge_key_in_lists(merge_key: &str, lists: &[&[Value]]) -> Result<()> {
    for item in lists.iter().flat_map(|list| list.iter()) {
        let Value::Object(map) = item else { return Err(bad_arg_type(MAP_TYPE, item)) };
        if !map.contains_key(merge_key) {
            return Err(no_merge_key(map, merge_key));
        }
    }
    Ok(())
}

/// `extractToDeleteItems`: (kept, `$patch: delete` items).
fn extract_to_delete_items(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>)> {
    let (mut kept, mut delete) = (Vec::new(), Vec::new());
    for item in list {
        let Value::Object(map) = &item else { return Err(bad_arg_type(MAP_TYPE, &item)) };
        if map.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE) {
            delete.push(item);
        } else {
            kept.push(item);
        }
    }
    Ok((kept, delete))
}

/// `index`: the position of `value` in `list`, by merge key for maps.
fn index_of(list: &[Value], value: &Value, merge_key: &str, kind: GoType) -> Result<Option<usize>> {
    let wanted = merge_key_of(value, merge_key, kind);
    for (index, item) in list.iter().enumerate() {
        if go_eq(wanted, merge_key_of(item, merge_key, kind))? {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Go's `index` over one list, with the first position of every hashable key
/// precomputed (Go scans the list on every comparison).
struct Positions<'a> {
    list: &'a [Value],
    merge_key: &'a str,
    kind: GoType,
    first: HashMap<HashKey, usize>,
}

impl<'a> Positions<'a> {
    fn new(list: &'a [Value], merge_key: &'a str, kind: GoType) -> Self {
        let mut first = HashMap::new();
        for (index, item) in list.iter().enumerate() {
            if let Some(h) = hash_key(merge_key_of(item, merge_key, kind)) {
                first.entry(h).or_insert(index);
            }
        }
        Positions { list, merge_key, kind, first }
    }

    fn of(&self, value: &Value) -> Result<Option<usize>> {
        match hash_key(merge_key_of(value, self.merge_key, self.kind)) {
            Some(h) => Ok(self.first.get(&h).copied()),
            // Maps and slices compare (and panic) only against their own kind.
            None => index_of(self.list, value, self.merge_key, self.kind),
        }
    }
}

/// What `index` compares: a map's merge key (nil if missing), other items as they are.
fn merge_key_of<'a>(item: &'a Value, merge_key: &str, kind: GoType) -> &'a Value {
    if kind == GoType::Map {
        item.as_object().and_then(|m| m.get(merge_key)).unwrap_or(&NIL)
    } else {
        item
    }
}

/// `mergeSortedSlice`: inserts the (sorted) `left` items into the (sorted) `right`
/// items, taking a left item first only when both are in `server_order` and it comes
/// first there.
fn merge_sorted_slice(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: GoType,
) -> Result<Vec<Value>> {
    let positions = Positions::new(server_order, merge_key, kind);
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                let li = positions.of(l)?;
                let ri = positions.of(r)?;
                matches!((li, ri), (Some(li), Some(ri)) if li < ri)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}
