//! OpenAPI documents — v3: the root index and one document per group/version; v2: one
//! document for everything — with the
//! operations of every served resource, each tagged with its group/version/kind and the
//! query parameters it accepts, and the schemas of its kinds generated from the
//! `k8s-openapi` types. kubectl reads them to learn that the server validates fields
//! itself (the `fieldValidation` parameter on PATCH) and for `kubectl explain`.

use std::sync::Arc;

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
    let (paths, schemas) = document(&defs, schemars::generate::SchemaSettings::openapi3());
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": { "schemas": schemas },
    }))
}

/// `/openapi/v2`: one Swagger 2.0 document for everything served, as client-go's
/// `OpenAPISchema()` and older tools read it.
pub fn v2(registry: &Registry) -> Value {
    let mut settings = schemars::generate::SchemaSettings::openapi3();
    settings.definitions_path = "/definitions".into();
    let (mut paths, schemas) = document(&registry.all(), settings);
    // Swagger 2.0 parameters carry their type directly, not in a schema.
    for operations in paths.values_mut() {
        for params in operations.as_object_mut().into_iter().flat_map(|ops| ops.values_mut()).filter_map(|op| {
            if op.is_array() {
                op.as_array_mut()
            } else {
                op.get_mut("parameters").and_then(Value::as_array_mut)
            }
        }) {
            for param in params.iter_mut().filter_map(Value::as_object_mut) {
                if let Some(Value::Object(schema)) = param.remove("schema") {
                    param.extend(schema);
                }
            }
        }
    }
    json!({ "swagger": "2.0", "info": info(), "paths": paths, "definitions": schemas })
}

fn info() -> Value {
    json!({ "title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBE_MINOR) })
}

/// The operations of `defs` and the schemas of their kinds (with what they reference),
/// each kind's schema naming its group/version/kind — which is how clients find it — and
/// fields carrying their strategic-merge-patch strategy and merge key.
fn document(
    defs: &[Arc<ResourceDef>],
    settings: schemars::generate::SchemaSettings,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut paths = Map::new();
    let mut generator = settings.into_generator();
    let mut kinds = Vec::new();
    for def in defs {
        add_resource_paths(def, &mut paths);
        if let Some(schema) = def.strategy.schema(&mut generator) {
            kinds.push((schema, json!({ "group": def.group, "version": def.version, "kind": def.kind })));
        }
    }
    let mut schemas = generator.take_definitions(true);
    for (schema, gvk) in kinds {
        let name = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()).map(str::to_string);
        if let Some(Value::Object(kind_schema)) = name.and_then(|n| schemas.get_mut(&n)) {
            let gvks = kind_schema.entry("x-kubernetes-group-version-kind").or_insert_with(|| json!([]));
            if let Some(list) = gvks.as_array_mut() {
                list.push(gvk);
            }
        }
    }
    for (name, schema) in schemas.iter_mut() {
        for (field, strategy, merge_key) in skiff_api::patch::patch_tags(name) {
            let Some(Value::Object(property)) = schema.pointer_mut(&format!("/properties/{field}")) else { continue };
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            if !merge_key.is_empty() {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(merge_key));
            }
        }
    }
    (paths, schemas)
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
    fn schemas_carry_patch_strategies_and_v2_has_everything() {
        let registry = skiff_api::builtins::builtin_registry();
        let v3 = group_version(&registry, "api/v1").unwrap();
        let containers = &v3["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let v2 = v2(&registry);
        assert_eq!(v2["swagger"], "2.0");
        let deployment = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(deployment["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert_eq!(
            deployment["properties"]["spec"]["allOf"][0]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let list = &v2["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"]["parameters"];
        assert_eq!(list[0]["type"], "string", "{list}");
        assert!(list[0].get("schema").is_none());
    }

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
