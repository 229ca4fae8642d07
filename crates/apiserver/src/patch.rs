//! PATCH: JSON patch (RFC 6902) and JSON merge patch (RFC 7386) applied to the stored
//! object, then written like an update.

use serde_json::Value;
use skiff_api::ApiError;

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
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
            ))),
        }
    }
}

/// Parses the patch body once, before any read of the stored object.
pub fn parse(kind: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    match kind {
        PatchType::StrategicMerge | PatchType::Apply => Err(ApiError::UnsupportedMediaType(format!(
            "patch type {} is not supported yet; use application/merge-patch+json or application/json-patch+json",
            match kind {
                PatchType::StrategicMerge => "application/strategic-merge-patch+json",
                _ => "application/apply-patch+yaml",
            }
        ))),
        PatchType::Json | PatchType::Merge => {
            let value: Value =
                serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
            if kind == PatchType::Json && !value.is_array() {
                return Err(ApiError::BadRequest("json patch must be an array of operations".into()));
            }
            if kind == PatchType::Merge && !value.is_object() {
                return Err(ApiError::BadRequest("merge patch must be a JSON object".into()));
            }
            Ok(value)
        }
    }
}

/// Applies a parsed patch to `target`.
pub fn apply(kind: PatchType, target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let mut doc = target.clone();
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::BadRequest(format!("invalid json patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::Invalid(
                    Default::default(),
                    vec![skiff_api::FieldError::invalid(
                        "",
                        "",
                        &format!("the server rejected our request due to an error in our request: {e}"),
                    )],
                )
            })?;
        }
        PatchType::Merge => json_patch::merge(&mut doc, patch),
        PatchType::StrategicMerge | PatchType::Apply => {
            return Err(ApiError::UnsupportedMediaType("patch type not supported yet".into()))
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes_keys() {
        let target = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch = parse(PatchType::Merge, br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#).unwrap();
        let out = apply(PatchType::Merge, &target, &patch).unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn json_patch_failure_is_a_client_error() {
        let patch = parse(PatchType::Json, br#"[{"op":"test","path":"/a","value":1}]"#).unwrap();
        let err = apply(PatchType::Json, &json!({"a": 2}), &patch).unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(parse(PatchType::Json, b"{}").unwrap_err().code(), 400);
        assert_eq!(PatchType::from_content_type("text/plain").unwrap_err().code(), 415);
    }
}
