//! Kubernetes protobuf (`application/vnd.kubernetes.protobuf`) to and from JSON.
//!
//! client-go's typed clients (kubectl create, auth whoami, drain...) send bodies as
//! protobuf. skiff stores and serves JSON, so request bodies are transcoded here:
//! the 4-byte magic `k8s\0`, then a `runtime.Unknown` envelope naming the object's
//! apiVersion and kind and carrying the object's own protobuf encoding.
//!
//! The decoder produces the JSON the same Go client would have sent (checked against
//! bodies captured from kubectl in `testdata/`): special types take their JSON
//! spellings (Time as RFC 3339, Quantity and IntOrString as strings or numbers,
//! RawExtension as the embedded JSON, bytes as base64), structs Go embeds inline are
//! flattened, and zero values follow Go's `omitempty`. That last point matters: Go's
//! marshaler writes every non-pointer field, so kubectl's ConfigMap arrives with
//! `namespace: ""` and `generation: 0` on the wire; those are dropped, while pointer
//! zeros such as `replicas: 0` or `storageClassName: ""` are kept. Unknown fields are
//! skipped.
//!
//! The schema is a generated table (`schema.rs`, from `tools/gen-protobuf-schema.py`)
//! covering every message in k8s-pb; no I/O, no unsafe, and malformed input is an
//! error, never a panic.

mod decode;
mod encode;
mod error;
#[rustfmt::skip] // generated, one line per message
mod schema;
mod schema_types;
mod time;
mod wire;

#[cfg(test)]
mod tests;

use serde_json::Value;

/// Go's duration syntax (`1h2m3.5s`), shared with flags that take Go durations.
pub use time::parse_duration;

/// The media type of Kubernetes protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every Kubernetes protobuf body starts with these bytes.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// Whether `body` looks like Kubernetes protobuf (starts with the magic).
pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(&MAGIC)
}

/// Whether objects of this apiVersion and kind can be transcoded.
pub fn supports(api_version: &str, kind: &str) -> bool {
    schema_types::Message::for_kind(api_version, kind).is_some()
}

/// Decodes a protobuf request body into the object's JSON, `apiVersion` and `kind`
/// first.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    decode::decode_object(body, 0).map_err(|e| e.to_string())
}

/// Encodes a JSON object (with `apiVersion` and `kind`) as a protobuf body. Fails on
/// keys the schema does not know, so callers can fall back to JSON. Objects inside a
/// RawExtension are embedded as JSON.
pub fn encode(value: &Value) -> Result<Vec<u8>, String> {
    encode::encode_object(value).map_err(|e| e.to_string())
}
