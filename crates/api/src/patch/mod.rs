//! Strategic merge patch (`application/strategic-merge-patch+json`), applied exactly
//! as the Kubernetes API server applies it (`strategicpatch.StrategicMergeMapPatch`).
//!
//! kubectl sends this patch type for `apply` (a three-way patch with
//! `$setElementOrder/...`, `$retainKeys` and `$patch: delete` items), `edit`, `patch`
//! (its default `--type`), `set image`, `label`, `annotate`, `scale` and more. It is a
//! JSON merge patch (null deletes a key, objects merge) where lists merge according to
//! Go struct tags of the API types:
//!
//! * `patchStrategy:"merge" patchMergeKey:"name"`: items are matched by key and merged
//!   (containers by `name`, ports by `containerPort`, volumes, env...);
//! * `patchStrategy:"merge"` on scalars: set union (`metadata.finalizers`);
//! * no strategy: the patch replaces the list (tolerations, args...);
//! * `patchStrategy:"replace"` on a struct: the patch replaces it (PDB `selector`).
//!
//! Directives: `$patch: replace|delete` on a map, `{"$patch": "delete", <key>: ..}`
//! and `{"$patch": "replace"}` list items, `$retainKeys: [..]` (keep only these keys),
//! `$setElementOrder/<list>: [..]` (the final order), `$deleteFromPrimitiveList/<list>`
//! (remove scalars).
//!
//! The tags come from a generated table (`strategies.rs`, written by
//! `tools/gen-patch-strategy.py` from k8s-pb/k8s-openapi and
//! `tools/patch-strategies.txt`, which is derived from Kubernetes' Go sources).
//! `merge.rs` is a step-for-step port of the Go code, quirks and error messages
//! included; errors carry the status Kubernetes answers with (`PatchError`). No I/O,
//! no unsafe, and no input makes it panic.
//!
//! ```
//! use serde_json::json;
//! use skiff_api::patch::{schema_for, strategic_merge};
//!
//! let deployment = json!({"spec": {"template": {"spec": {"containers": [
//!     {"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}}});
//! let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}});
//! let patched = strategic_merge(&deployment, &patch, schema_for("apps", "v1", "Deployment")).unwrap();
//! assert_eq!(patched["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:2");
//! assert_eq!(patched["spec"]["template"]["spec"]["containers"][1]["image"], "busybox");
//! ```

mod error;
mod golang;
mod merge;
mod schema;
#[rustfmt::skip] // generated, one line per type
mod strategies;
mod types;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use error::{PatchError, PatchErrorKind, CUSTOM_RESOURCE_UNSUPPORTED};
pub use schema::{patch_tags, schema_for, FieldMeta, ListStrategy, Schema};

/// The media type of strategic merge patches.
pub const CONTENT_TYPE: &str = "application/strategic-merge-patch+json";

/// Deeper input than this is refused rather than recursed into. JSON parsed with
/// serde_json's default limit (128 levels) never gets here.
const MAX_DEPTH: usize = 512;

/// Applies a strategic merge patch to `original` (the stored object, as JSON) for a
/// kind with `schema`, as the API server does before decoding the result.
///
/// `patch` is the parsed request body. A JSON `null` body is an empty patch; any
/// other non-object is a 400, as Go fails to decode it into a map. A custom resource
/// schema gives the 415 Kubernetes answers (the server may check
/// `Schema::is_custom_resource` before reading the object, as Kubernetes does).
///
/// The result may still carry what Kubernetes' merge leaves in (a `$patch` key inside
/// a newly added list item, nulls inside replaced values); decoding it into the
/// typed object drops or reports those as unknown fields, as in Kubernetes.
pub fn strategic_merge(original: &Value, patch: &Value, schema: Schema) -> Result<Value, PatchError> {
    let schema::Root::Typed(ty) = schema.0 else {
        return Err(PatchError::unsupported_media_type());
    };
    let patch = match patch {
        Value::Null => serde_json::Map::new(),
        Value::Object(map) => map.clone(),
        other => {
            let kind = match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                _ => "number",
            };
            return Err(PatchError::bad_request(format!(
                "json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"
            )));
        }
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        Value::Null => serde_json::Map::new(),
        _ => return Err(PatchError::unconverted("the original object is not a JSON object")),
    };
    if depth_exceeds(&original, MAX_DEPTH) || depth_exceeds(&patch, MAX_DEPTH) {
        return Err(PatchError::bad_request(format!("exceeded max depth of {MAX_DEPTH}")));
    }
    merge::merge_map(original, patch, ty).map(Value::Object)
}

/// Whether `map` nests deeper than `limit`, checked without recursion.
fn depth_exceeds(map: &serde_json::Map<String, Value>, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = map.values().map(|v| (v, 1)).collect();
    while let Some((value, depth)) = stack.pop() {
        if depth > limit {
            return true;
        }
        match value {
            Value::Object(m) => stack.extend(m.values().map(|v| (v, depth + 1))),
            Value::Array(l) => stack.extend(l.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    false
}
