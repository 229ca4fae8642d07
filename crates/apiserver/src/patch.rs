//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch and
//! server-side apply, each applied to the stored object and then written like an update.

use serde_json::Value;
use skiff_api::{apply as ssa, ApiError, FieldError};

use crate::meta;
use crate::rest::{decode_as, field_schema, parse_rv, Addr, Api, Reply, WriteKind, WriteOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"
            ))),
        }
    }
}

/// Parses the patch body once, before any read of the stored object.
pub fn parse(kind: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = match kind {
        // An apply configuration is YAML (of which JSON is a subset).
        PatchType::Apply => {
            serde_yaml::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?
        }
        _ => serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?,
    };
    match kind {
        PatchType::Json if !value.is_array() => {
            Err(ApiError::BadRequest("json patch must be an array of operations".into()))
        }
        PatchType::Merge | PatchType::StrategicMerge | PatchType::Apply if !value.is_object() => {
            Err(ApiError::BadRequest("the patch must be a JSON object".into()))
        }
        _ => Ok(value),
    }
}

/// The strategic-merge structure of a kind.
pub fn merge_schema(group: &str, version: &str, kind: &str) -> skiff_api::patch::Schema {
    skiff_api::patch::schema_for(group, version, kind)
}

/// Applies a parsed JSON, merge or strategic merge patch to `target`, whose kind's
/// strategic-merge structure is `schema`.
pub fn apply(
    schema: skiff_api::patch::Schema,
    kind: PatchType,
    target: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let mut doc = target.clone();
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid json patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                let message = format!("the server rejected our request due to an error in our request: {e}");
                ApiError::Invalid(Default::default(), vec![FieldError::invalid("", "", &message)])
            })?;
        }
        PatchType::Merge => json_patch::merge(&mut doc, patch),
        PatchType::StrategicMerge => {
            doc = skiff_api::patch::strategic_merge(target, patch, schema)
                .map_err(|e| ApiError::Status(e.code(), e.status()))?;
        }
        PatchType::Apply => return Err(ApiError::Internal("apply patches go through server-side apply".into())),
    }
    Ok(doc)
}

fn apply_error(error: ssa::ApplyError) -> ApiError {
    ApiError::Status(error.code(), error.to_status())
}

impl Api {
    pub async fn patch(
        &self,
        addr: &Addr<'_>,
        write: WriteKind,
        kind: PatchType,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let parsed = parse(kind, body)?;
        if kind == PatchType::Apply {
            return self.server_side_apply(addr, write, parsed, options).await;
        }
        // A resourceVersion inside the patch is a precondition, as in Kubernetes.
        let precondition = match kind {
            PatchType::Merge | PatchType::StrategicMerge => {
                parsed["metadata"]["resourceVersion"].as_str().map(parse_rv).transpose()?
            }
            _ => None,
        };
        let def = addr.def;
        let schema = merge_schema(def.group, def.version, def.kind);
        let change = |old: &Value| {
            let patched = apply(schema, kind, old, &parsed)?;
            decode_as(def, patched, options.validation).map(|(object, _)| object)
        };
        self.write_with_retry(addr, precondition, options, change, write).await
    }

    /// `application/apply-patch+yaml`: merges the configuration by ownership, creating
    /// the object if it does not exist.
    async fn server_side_apply(
        &self,
        addr: &Addr<'_>,
        write: WriteKind,
        applied: Value,
        options: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        if !options.manager_given {
            return Err(ApiError::BadRequest(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
                    .into(),
            ));
        }
        if meta::name(&applied).is_some_and(|name| name != addr.name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                meta::name(&applied).unwrap_or_default(),
                addr.name
            )));
        }
        let def = addr.def;
        let (schema, now) = (field_schema(def), meta::now_rfc3339());
        let subresource = match write {
            WriteKind::Status => Some("status"),
            _ => None,
        };
        let recorded = WriteOptions { track_fields: false, ..options.clone() };
        match self.get(addr, &Default::default()).await {
            Err(ApiError::NotFound(_)) if subresource.is_none() => {
                let mut created =
                    ssa::apply(None, &applied, &options.manager, options.force, &now, schema).map_err(apply_error)?;
                meta::meta_mut(&mut created).insert("name".into(), Value::String(addr.name.to_string()));
                self.create(def, addr.namespace, created, &recorded).await
            }
            Err(other) => Err(other),
            Ok(_) => {
                let change = |old: &Value| {
                    let merged = ssa::apply_subresource(
                        Some(old),
                        &applied,
                        &options.manager,
                        subresource,
                        options.force,
                        &now,
                        schema,
                    )
                    .map_err(apply_error)?;
                    decode_as(def, merged, options.validation).map(|(object, _)| object)
                };
                self.write_with_retry(addr, None, &recorded, change, write).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configmaps() -> skiff_api::patch::Schema {
        merge_schema("", "v1", "ConfigMap")
    }

    #[test]
    fn merge_patch_sets_and_removes_keys() {
        let target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch = parse(PatchType::Merge, br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#).unwrap();
        let out = apply(configmaps(), PatchType::Merge, &target, &patch).unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn json_patch_failure_is_a_client_error() {
        let patch = parse(PatchType::Json, br#"[{"op":"test","path":"/a","value":1}]"#).unwrap();
        let err = apply(configmaps(), PatchType::Json, &json!({"a": 2}), &patch).unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(parse(PatchType::Json, b"{}").unwrap_err().code(), 400);
        assert_eq!(PatchType::from_content_type("text/plain").unwrap_err().code(), 415);
    }

    #[test]
    fn apply_configurations_may_be_yaml() {
        let parsed = parse(PatchType::Apply, b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n").unwrap();
        assert_eq!(parsed["metadata"]["name"], "x");
    }
}
