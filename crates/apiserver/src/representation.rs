//! Alternate representations a client may ask for in its Accept header: a
//! `meta.k8s.io` Table (what `kubectl get` prints) or PartialObjectMetadata(List)
//! (metadata only). Objects are converted after the REST layer produced them.

use bytes::Bytes;
use serde_json::{json, Value};
use skiff_api::table::{self, IncludeObject};
use skiff_api::{ApiError, ResourceDef};

use crate::request::Query;

/// What the client wants the response body to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Representation {
    Object,
    Table(IncludeObject),
    PartialMetadata,
}

impl Representation {
    /// Picks the first acceptable media type in `accept`, as the apiserver does.
    pub fn negotiate(accept: &str, query: &Query) -> Result<Self, ApiError> {
        for media in accept.split(',') {
            let params: Vec<&str> = media.split(';').map(str::trim).collect();
            let has = |p: &str| params.contains(&p);
            let meta_group = has("g=meta.k8s.io") && (has("v=v1") || has("v=v1beta1"));
            if meta_group && has("as=Table") {
                let include = IncludeObject::from_query(query.get("includeObject")).map_err(ApiError::BadRequest)?;
                return Ok(Representation::Table(include));
            }
            if meta_group && (has("as=PartialObjectMetadata") || has("as=PartialObjectMetadataList")) {
                return Ok(Representation::PartialMetadata);
            }
            if params.first().is_some_and(|m| matches!(*m, "application/json" | "*/*" | "application/*" | ""))
                && params.len() == 1
            {
                return Ok(Representation::Object);
            }
        }
        Ok(Representation::Object)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Representation::Object => "application/json",
            Representation::Table(_) => "application/json;as=Table;v=v1;g=meta.k8s.io",
            Representation::PartialMetadata => "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
        }
    }

    /// A single object (GET, or a write's answer).
    pub fn object(self, def: &ResourceDef, object: Value) -> Value {
        match self {
            Representation::Object => object,
            Representation::Table(include) => {
                let mut out = table::table(def.group, def.kind, &[&object], jiff::Timestamp::now(), include);
                out["metadata"] = json!({ "resourceVersion": object["metadata"]["resourceVersion"] });
                out
            }
            Representation::PartialMetadata => partial(&object),
        }
    }

    /// A list response (JSON bytes from the REST layer).
    pub fn list(self, def: &ResourceDef, list: Bytes) -> Result<Bytes, ApiError> {
        if self == Representation::Object {
            return Ok(list);
        }
        let list: Value = serde_json::from_slice(&list).map_err(|e| ApiError::Internal(e.to_string()))?;
        let items: Vec<&Value> = list["items"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let out = match self {
            Representation::Table(include) => {
                let mut out = table::table(def.group, def.kind, &items, jiff::Timestamp::now(), include);
                out["metadata"] = list["metadata"].clone();
                out
            }
            _ => json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list["metadata"],
                "items": items.iter().map(|i| partial(i)).collect::<Vec<_>>(),
            }),
        };
        serde_json::to_vec(&out).map(Bytes::from).map_err(|e| ApiError::Internal(e.to_string()))
    }
}

fn partial(object: &Value) -> Value {
    json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"] })
}

/// Converts the objects of a watch stream's lines; column definitions go in the first
/// event only, as Kubernetes sends them.
pub struct WatchConverter {
    representation: Representation,
    group: &'static str,
    kind: &'static str,
    headers_sent: bool,
}

impl WatchConverter {
    pub fn new(representation: Representation, def: &ResourceDef) -> Self {
        WatchConverter { representation, group: def.group, kind: def.kind, headers_sent: false }
    }

    pub fn convert(&mut self, line: Bytes) -> Bytes {
        if self.representation == Representation::Object {
            return line;
        }
        let Ok(mut event) = serde_json::from_slice::<Value>(&line) else { return line };
        let kind = event["type"].as_str().unwrap_or_default().to_string();
        if kind == "ERROR" {
            return line;
        }
        let object = event["object"].take();
        event["object"] = match self.representation {
            Representation::Table(include) => {
                let headers = !self.headers_sent;
                self.headers_sent = true;
                if kind == "BOOKMARK" {
                    let mut t =
                        table::watch_table(self.group, self.kind, &object, jiff::Timestamp::now(), include, headers);
                    t["rows"] = json!([]);
                    t["metadata"] = object["metadata"].clone();
                    t
                } else {
                    table::watch_table(self.group, self.kind, &object, jiff::Timestamp::now(), include, headers)
                }
            }
            _ => partial(&object),
        };
        let mut out = serde_json::to_vec(&event).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_tables_metadata_and_json() {
        let q = Query::default();
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(Representation::negotiate(kubectl, &q).unwrap(), Representation::Table(IncludeObject::Metadata));
        let partial = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json";
        assert_eq!(Representation::negotiate(partial, &q).unwrap(), Representation::PartialMetadata);
        assert_eq!(Representation::negotiate("application/json", &q).unwrap(), Representation::Object);
        let bad = Query::parse(Some("includeObject=Everything"));
        assert_eq!(Representation::negotiate(kubectl, &bad).unwrap_err().code(), 400);
    }
}
