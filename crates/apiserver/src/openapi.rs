//! OpenAPI v3 documents: the root index and one document per group/version, with the
//! operations of every served resource, each tagged with its group/version/kind and the
//! query parameters it accepts, and the schemas of its kinds generated from the
//! `k8s-openapi` types. kubectl reads them to learn that the server validates fields
//! itself (the `fieldValidation` parameter on PATCH) and for `kubectl explain`.

use serde_json::{json, Map, Value};
use skiff_api::{Registry, ResourceDef};

/// `/openapi/v3`: where each group/version's document lives.
pub fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for def in registry.all() {
        let gv = group_version_path(def.group, def.version);
        let url = format!("/openapi/v3/{gv}?hash={}", env!("CARGO_PKG_VERSION"));
        paths.insert(gv, json!({ "serverRelativeURL": url }));
    }
    json!({ "paths": paths })
}

fn group_version_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn param(name: &str, location: &str, kind: &str) -> Value {
    json!({ "name": name, "in": location, "schema": { "type": kind }, "required": location == "path" })
}

/// The document for one group/version (`api/v1`, `apis/apps/v1`), or None if unknown.
pub fn group_version(registry: &Registry, path: &str) -> Option<Value> {
    let defs: Vec<_> = registry.all().into_iter().filter(|d| group_version_path(d.group, d.version) == path).collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for def in &defs {
        add_resource_paths(def, &mut paths);
        if let Some(schema) = def.strategy.schema(&mut generator) {
            kinds.push((schema, json!({ "group": def.group, "version": def.version, "kind": def.kind })));
        }
    }
    let mut schemas = generator.take_definitions(true);
    // Each kind's schema names its group/version/kind, which is how clients find it.
    for (schema, gvk) in kinds {
        let name = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(str::to_string);
        if let Some(Value::Object(kind_schema)) = name.and_then(|n| schemas.get_mut(&n)) {
            kind_schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBE_MINOR) },
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

fn add_resource_paths(def: &ResourceDef, paths: &mut Map<String, Value>) {
    let gvk = json!({ "group": def.group, "version": def.version, "kind": def.kind });
    let base = format!("/{}", group_version_path(def.group, def.version));
    let collection = if def.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", def.plural)
    } else {
        format!("{base}/{}", def.plural)
    };
    let item = format!("{collection}/{{name}}");
    let mut path_params = vec![param("name", "path", "string")];
    if def.namespaced {
        path_params.push(param("namespace", "path", "string"));
    }
    let write_params: Vec<Value> =
        ["dryRun", "fieldManager", "fieldValidation"].iter().map(|p| param(p, "query", "string")).collect();
    let ok = json!({ "200": { "description": "OK" } });
    let operation = |action: &str, params: &[Value]| {
        json!({
            "operationId": format!("{action}{}", def.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params,
            "responses": ok,
        })
    };
    let list_params: Vec<Value> =
        ["labelSelector", "fieldSelector", "resourceVersion", "resourceVersionMatch", "continue", "limit", "watch"]
            .iter()
            .map(|p| param(p, "query", "string"))
            .collect();
    let mut collection_ops = json!({
        "get": operation("list", &list_params),
        "post": operation("post", &write_params),
        "delete": operation("deletecollection", &list_params),
    });
    if def.namespaced {
        collection_ops["parameters"] = json!([param("namespace", "path", "string")]);
    }
    paths.insert(collection, collection_ops);
    let mut item_ops = json!({
        "get": operation("get", &[]),
        "put": operation("put", &write_params),
        "patch": operation("patch", &write_params),
        "delete": operation("delete", &[param("gracePeriodSeconds", "query", "integer"), param("propagationPolicy", "query", "string")]),
    });
    item_ops["parameters"] = json!(path_params);
    paths.insert(item.clone(), item_ops);
    if def.subresources.status {
        let mut status_ops = json!({
            "get": operation("get", &[]),
            "put": operation("put", &write_params),
            "patch": operation("patch", &write_params),
        });
        status_ops["parameters"] = json!(path_params);
        paths.insert(format!("{item}/status"), status_ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        let registry = skiff_api::builtins::builtin_registry();
        assert!(root(&registry)["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with("/openapi/v3/apis/apps/v1"));
        let doc = group_version(&registry, "apis/apps/v1").unwrap();
        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        assert!(group_version(&registry, "apis/nope/v1").is_none());
        let deployment = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(deployment["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert_eq!(
            deployment["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"].is_object());
    }
}
