//! Scenarios modelled on the Kubernetes "Server-Side Apply" documentation and on what
//! `kubectl get -o yaml --show-managed-fields` shows for objects kubectl writes.

use serde_json::{json, Value};

use super::*;

const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T10:01:00Z";
const T2: &str = "2024-05-01T10:02:00Z";
const T3: &str = "2024-05-01T10:03:00Z";

fn deployments() -> Schema {
    schema_for("apps", "v1", "Deployment")
}

fn configmaps() -> Schema {
    schema_for("", "v1", "ConfigMap")
}

fn entries(object: &Value) -> Vec<Value> {
    object.pointer("/metadata/managedFields").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn entry(object: &Value, manager: &str, operation: &str) -> Option<Value> {
    entries(object).into_iter().find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn fields(object: &Value, manager: &str, operation: &str) -> Value {
    entry(object, manager, operation).map(|e| e["fieldsV1"].clone()).unwrap_or(Value::Null)
}

fn managers(object: &Value) -> Vec<String> {
    entries(object)
        .iter()
        .map(|e| format!("{}/{}", e["manager"].as_str().unwrap(), e["operation"].as_str().unwrap()))
        .collect()
}

fn apply_ok(live: Option<&Value>, applied: &Value, manager: &str, now: &str, schema: Schema) -> Value {
    match apply(live, applied, manager, false, now, schema) {
        Ok(object) => object,
        Err(e) => panic!("apply by {manager} failed: {e}"),
    }
}

/// The stored form of a freshly created object: the server adds identity.
fn stored(mut object: Value) -> Value {
    object["metadata"]["uid"] = json!("7d4e1f3a-0000-4000-8000-000000000001");
    object["metadata"]["resourceVersion"] = json!("1");
    object
}

fn config_map(data: Value, labels: Value) -> Value {
    let mut object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default"},
        "data": data,
    });
    // `labels: {}` would be applied too (and owned as a whole); leave it out instead.
    if labels.as_object().is_some_and(|l| !l.is_empty()) {
        object["metadata"]["labels"] = labels;
    }
    object
}

/// `kubectl create deployment nginx --image=nginx` after Kubernetes' defaulting.
fn created_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx",
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                        "imagePullPolicy": "Always"
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "securityContext": {},
                    "schedulerName": "default-scheduler"
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        },
        "status": {}
    })
}

fn create(mut object: Value, manager: &str, now: &str, schema: Schema) -> Value {
    track_update(None, &mut object, manager, Operation::Update, None, now, schema);
    stored(object)
}

// --- encoding -------------------------------------------------------------------------

#[test]
fn create_deployment_fields_match_kubernetes() {
    let object = create(created_deployment(), "kubectl-create", T0, deployments());
    // As `kubectl get deploy nginx -o json --show-managed-fields` prints it.
    let expected = json!([{
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "apps/v1",
        "time": T0,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:progressDeadlineSeconds": {},
                "f:replicas": {},
                "f:revisionHistoryLimit": {},
                "f:selector": {},
                "f:strategy": {
                    "f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                    "f:type": {}
                },
                "f:template": {
                    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                    "f:spec": {
                        "f:containers": {
                            "k:{\"name\":\"nginx\"}": {
                                ".": {},
                                "f:image": {},
                                "f:imagePullPolicy": {},
                                "f:name": {},
                                "f:resources": {},
                                "f:terminationMessagePath": {},
                                "f:terminationMessagePolicy": {}
                            }
                        },
                        "f:dnsPolicy": {},
                        "f:restartPolicy": {},
                        "f:schedulerName": {},
                        "f:securityContext": {},
                        "f:terminationGracePeriodSeconds": {}
                    }
                }
            }
        }
    }]);
    // Compared as text: key order is part of the encoding.
    assert_eq!(object["metadata"]["managedFields"].to_string(), expected.to_string());
}

#[test]
fn status_update_through_subresource_gets_its_own_entry() {
    let created = create(created_deployment(), "kubectl-create", T0, deployments());
    let mut updated = created.clone();
    updated["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
    let mut with_status = updated.clone();
    track_update(Some(&created), &mut updated, "kube-controller-manager", Operation::Update, None, T1, deployments());
    with_status["metadata"] = updated["metadata"].clone();
    with_status["status"] = json!({
        "observedGeneration": 1,
        "replicas": 1,
        "conditions": [{"type": "Available", "status": "True", "lastTransitionTime": T1}]
    });
    track_update(
        Some(&updated),
        &mut with_status,
        "kube-controller-manager",
        Operation::Update,
        Some("status"),
        T1,
        deployments(),
    );
    // Sorted by operation, then time, then manager.
    assert_eq!(
        managers(&with_status),
        ["kubectl-create/Update", "kube-controller-manager/Update", "kube-controller-manager/Update"]
    );
    let entries = entries(&with_status);
    let status = entries.iter().find(|e| e["subresource"] == "status").expect("status entry");
    assert_eq!(
        status["fieldsV1"].to_string(),
        json!({"f:status": {
            "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {}}},
            "f:observedGeneration": {},
            "f:replicas": {}
        }})
        .to_string()
    );
    let main = entries.iter().find(|e| e["manager"] == "kube-controller-manager" && e.get("subresource").is_none());
    assert_eq!(
        main.expect("main entry")["fieldsV1"],
        json!({"f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}}})
    );
}

#[test]
fn in_place_set_operations_match_the_copying_ones() {
    let set = |v: Value| Set::from_fields_v1(&v).unwrap();
    let a = set(json!({"f:a": {".": {}, "f:x": {}, "f:y": {"f:z": {}}}, "f:b": {}, "f:c": {"f:d": {}}}));
    let b = set(json!({"f:a": {"f:y": {}}, "f:b": {}, "f:c": {".": {}}, "f:e": {}}));
    for (left, right) in [(&a, &b), (&b, &a), (&a, &a)] {
        let mut removed = left.clone();
        removed.remove_all(right);
        assert_eq!(removed, left.difference(right));
        let mut removed = left.clone();
        removed.remove_recursive(right);
        assert_eq!(removed, left.recursive_difference(right));
        let mut joined = left.clone();
        joined.union_with(right.clone());
        assert_eq!(joined, left.union(right));
    }
    let mut empty = Set::new();
    empty.union_with(a.clone());
    assert_eq!(empty, a);
}

#[test]
fn fields_v1_round_trips_and_orders_keys() {
    let text = r#"{"f:b":{},"f:a":{".":{},"f:x":{}},"k:{\"port\":80,\"protocol\":\"TCP\"}":{},"k:{\"port\":443,\"protocol\":\"TCP\"}":{},"v:\"y\"":{},"v:3":{},"i:1":{}}"#;
    let set = Set::from_fields_v1(&serde_json::from_str(text).unwrap()).unwrap();
    let encoded = set.to_fields_v1().to_string();
    // Fields, then keys (ports compare as numbers: 80 before 443), values (numbers
    // before strings), indexes; "." first in an object whose path is also a member.
    assert_eq!(
        encoded,
        r#"{"f:a":{".":{},"f:x":{}},"f:b":{},"k:{\"port\":80,\"protocol\":\"TCP\"}":{},"k:{\"port\":443,\"protocol\":\"TCP\"}":{},"v:3":{},"v:\"y\"":{},"i:1":{}}"#
    );
    assert_eq!(Set::from_fields_v1(&serde_json::from_str(&encoded).unwrap()).unwrap(), set);
    assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
    assert!(Set::from_fields_v1(&json!({"k:[1]": {}})).is_err());
    // Unknown element types are skipped, as Kubernetes does.
    assert!(Set::from_fields_v1(&json!({"z:thing": {}})).unwrap().is_empty());
}

#[test]
fn paths_print_like_kubernetes() {
    let path = vec![
        PathElement::Field("spec".into()),
        PathElement::Field("containers".into()),
        PathElement::Key(vec![("name".into(), json!("web"))]),
        PathElement::Field("ports".into()),
        PathElement::Key(vec![("containerPort".into(), json!(80)), ("protocol".into(), json!("TCP"))]),
        PathElement::Field("args".into()),
        PathElement::Value(json!("x")),
        PathElement::Index(0),
    ];
    assert_eq!(
        path_string(&path),
        r#".spec.containers[name="web"].ports[containerPort=80,protocol="TCP"].args[="x"][0]"#
    );
    assert_eq!(path[4].to_fields_key(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
    assert_eq!(PathElement::Value(json!("<&>")).to_fields_key(), r#"v:"\u003c\u0026\u003e""#);
}

// --- apply ----------------------------------------------------------------------------

#[test]
fn first_apply_creates_the_object_and_its_ownership() {
    let applied = config_map(json!({"key": "some value"}), json!({"test-label": "test"}));
    let object = apply_ok(None, &applied, "kubectl", T0, configmaps());
    assert_eq!(object["data"], json!({"key": "some value"}));
    assert_eq!(
        object["metadata"]["managedFields"].to_string(),
        json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}
        }])
        .to_string()
    );
}

#[test]
fn reapplying_without_a_field_removes_it() {
    let first = config_map(json!({"a": "1", "b": "2"}), json!({"x": "1", "y": "2"}));
    let live = stored(apply_ok(None, &first, "ssa", T0, configmaps()));
    let second = config_map(json!({"a": "1"}), json!({"x": "1"}));
    let object = apply_ok(Some(&live), &second, "ssa", T1, configmaps());
    assert_eq!(object["data"], json!({"a": "1"}));
    assert_eq!(object["metadata"]["labels"], json!({"x": "1"}));
    assert_eq!(
        fields(&object, "ssa", "Apply"),
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:x": {}}}})
    );
    assert_eq!(entry(&object, "ssa", "Apply").unwrap()["time"], T1);
    // Identity survives: removal only touches what the applier stopped applying.
    assert_eq!(object["metadata"]["uid"], live["metadata"]["uid"]);
}

#[test]
fn reapplying_without_a_field_another_manager_owns_keeps_it() {
    let live = stored(apply_ok(None, &config_map(json!({"a": "1"}), json!({})), "one", T0, configmaps()));
    // The second applier sets the same value: no conflict, shared ownership.
    let live =
        stored(apply_ok(Some(&live), &config_map(json!({"a": "1", "b": "2"}), json!({})), "two", T1, configmaps()));
    assert_eq!(fields(&live, "one", "Apply"), json!({"f:data": {"f:a": {}}}));
    assert_eq!(fields(&live, "two", "Apply"), json!({"f:data": {"f:a": {}, "f:b": {}}}));
    // (`data: {}` would own data as a whole; an applier that wants nothing omits it.)
    let nothing =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm", "namespace": "default"}});
    let object = apply_ok(Some(&live), &nothing, "one", T2, configmaps());
    assert_eq!(object["data"], json!({"a": "1", "b": "2"}));
    assert!(entry(&object, "one", "Apply").is_none(), "an applier owning nothing has no entry");
}

#[test]
fn two_appliers_own_different_fields() {
    let live = stored(apply_ok(None, &config_map(json!({"a": "1"}), json!({"one": "x"})), "one", T0, configmaps()));
    let object = apply_ok(Some(&live), &config_map(json!({"b": "2"}), json!({"two": "y"})), "two", T1, configmaps());
    assert_eq!(object["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(object["metadata"]["labels"], json!({"one": "x", "two": "y"}));
    assert_eq!(managers(&object), ["one/Apply", "two/Apply"]);
    assert_eq!(
        fields(&object, "one", "Apply"),
        json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:one": {}}}})
    );
    assert_eq!(
        fields(&object, "two", "Apply"),
        json!({"f:data": {"f:b": {}}, "f:metadata": {"f:labels": {"f:two": {}}}})
    );
}

/// The configuration `kubectl apply --server-side` sends for the created deployment.
fn applied_deployment(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}
            }
        }
    })
}

#[test]
fn conflict_with_an_update_manager_and_force() {
    let live = create(created_deployment(), "kubectl-client-side-apply", T0, deployments());
    let err = apply(Some(&live), &applied_deployment(3), "ssa-tool", false, T1, deployments()).unwrap_err();
    assert_eq!(err.code(), 409);
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
    assert_eq!(
        err.to_status(),
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
            "reason": "Conflict",
            "details": {"causes": [{
                "reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                "field": ".spec.replicas"
            }]},
            "code": 409
        })
    );

    let object = apply(Some(&live), &applied_deployment(3), "ssa-tool", true, T1, deployments()).unwrap();
    assert_eq!(object["spec"]["replicas"], 3);
    let updater = fields(&object, "kubectl-client-side-apply", "Update");
    assert!(updater["f:spec"].get("f:replicas").is_none(), "forced apply takes .spec.replicas");
    assert!(updater["f:spec"].get("f:revisionHistoryLimit").is_some(), "the rest stays");
    let applier = fields(&object, "ssa-tool", "Apply");
    assert_eq!(applier["f:spec"]["f:replicas"], json!({}));
    // Fields applied with the values they already had are shared, not taken.
    assert_eq!(applier["f:spec"]["f:selector"], json!({}));
    assert_eq!(updater["f:spec"]["f:selector"], json!({}));
    assert_eq!(managers(&object), ["ssa-tool/Apply", "kubectl-client-side-apply/Update"]);
}

#[test]
fn applying_values_already_there_is_no_conflict() {
    let live = create(created_deployment(), "kubectl-create", T0, deployments());
    let object = apply(Some(&live), &applied_deployment(1), "ssa-tool", false, T1, deployments()).unwrap();
    assert_eq!(object["spec"], live["spec"]);
    // Nothing changed: the new entry has no time, as in Kubernetes.
    let applier = entry(&object, "ssa-tool", "Apply").unwrap();
    assert!(applier.get("time").is_none());
    assert_eq!(
        applier["fieldsV1"],
        json!({
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                }
            }
        })
    );
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let live = create(created_deployment(), "kubectl-create", T0, deployments());
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    track_update(Some(&live), &mut scaled, "kubectl-scale", Operation::Update, Some("scale"), T1, deployments());
    let mut applied = applied_deployment(2);
    applied["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.27");
    applied["spec"]["revisionHistoryLimit"] = json!(3);
    let err = apply(Some(&scaled), &applied, "ssa-tool", false, T2, deployments()).unwrap_err();
    let ApplyError::Conflicts(conflicts) = &err else { panic!("{err:?}") };
    assert_eq!(conflicts.len(), 3);
    assert_eq!(
        err.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"kubectl-create\" using apps/v1:\n\
         - .spec.revisionHistoryLimit\n\
         - .spec.template.spec.containers[name=\"nginx\"].image\n\
         conflicts with \"kubectl-scale\" with subresource \"scale\" using apps/v1:\n\
         - .spec.replicas"
    );
    let causes = conflicts.causes();
    assert_eq!(causes[2]["message"], "conflict with \"kubectl-scale\" with subresource \"scale\" using apps/v1");
    assert_eq!(causes[1]["field"], ".spec.template.spec.containers[name=\"nginx\"].image");
}

#[test]
fn client_side_apply_then_server_side_apply() {
    // `kubectl apply` (client-side) created the deployment and left its annotation.
    let mut created = created_deployment();
    let last_applied = build_last_applied(&applied_deployment(1));
    created["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: last_applied });
    let live = create(created, "kubectl-client-side-apply", T0, deployments());

    // `kubectl apply --server-side` changes a field client-side apply set: no conflict,
    // the annotation follows the new configuration.
    let object = apply(Some(&live), &applied_deployment(2), "kubectl", false, T1, deployments()).unwrap();
    assert_eq!(object["spec"]["replicas"], 2);
    let annotation = object["metadata"]["annotations"][LAST_APPLIED_ANNOTATION].as_str().unwrap();
    let annotated: Value = serde_json::from_str(annotation).unwrap();
    assert_eq!(annotated["spec"]["replicas"], 2);
    assert!(annotation.ends_with('\n') && annotation.starts_with(r#"{"apiVersion":"apps/v1","kind":"Deployment","#));
    assert_eq!(fields(&object, "kubectl", "Apply")["f:spec"]["f:replicas"], json!({}));

    // Someone scaled it since: that value is no longer the last-applied one, so taking
    // it over is a conflict again.
    let mut scaled = stored(object);
    let before = scaled.clone();
    scaled["spec"]["replicas"] = json!(7);
    track_update(Some(&before), &mut scaled, "kubectl-scale", Operation::Update, None, T2, deployments());
    let err = apply(Some(&scaled), &applied_deployment(4), "kubectl", false, T3, deployments()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas"#
    );
}

#[test]
fn other_managers_get_no_last_applied_takeover() {
    let mut created = created_deployment();
    created["metadata"]["annotations"] = json!({ LAST_APPLIED_ANNOTATION: build_last_applied(&applied_deployment(1)) });
    let live = create(created, "kubectl-client-side-apply", T0, deployments());
    assert!(matches!(
        apply(Some(&live), &applied_deployment(2), "helm", false, T1, deployments()),
        Err(ApplyError::Conflicts(_))
    ));
}

fn deployment_with_containers(containers: Value) -> Value {
    let mut object = applied_deployment(1);
    object["spec"]["template"]["spec"]["containers"] = containers;
    object
}

#[test]
fn containers_merge_by_name() {
    let first = deployment_with_containers(json!([{"name": "web", "image": "web:1"}]));
    let live = stored(apply_ok(None, &first, "team-a", T0, deployments()));
    let sidecar = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}}
    });
    let object = apply_ok(Some(&live), &sidecar, "team-b", T1, deployments());
    let containers = &object["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers, &json!([{"name": "web", "image": "web:1"}, {"name": "proxy", "image": "envoy:1"}]));
    assert_eq!(
        fields(&object, "team-b", "Apply"),
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
            "k:{\"name\":\"proxy\"}": {".": {}, "f:image": {}, "f:name": {}}
        }}}}})
    );
    // team-a re-applies without the sidecar's knowledge: the sidecar stays.
    let object = apply_ok(Some(&stored(object)), &first, "team-a", T2, deployments());
    assert_eq!(object["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 2);
    // team-b drops its container: it goes.
    let mut dropped = sidecar.clone();
    dropped["spec"]["template"]["spec"]["containers"] = json!([]);
    dropped["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = json!(5);
    let object = apply_ok(Some(&stored(object)), &dropped, "team-b", T3, deployments());
    assert_eq!(object["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "web:1"}]));
}

#[test]
fn ports_are_keyed_by_container_port_and_protocol() {
    let ports = json!([{"containerPort": 53, "protocol": "UDP"}, {"containerPort": 53}, {"containerPort": 80}]);
    let applied = deployment_with_containers(json!([{"name": "dns", "image": "coredns", "ports": ports}]));
    let live = stored(apply_ok(None, &applied, "ssa", T0, deployments()));
    let container =
        &fields(&live, "ssa", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"dns\"}"];
    // A port without a protocol is keyed by the schema's default, TCP.
    assert_eq!(
        container["f:ports"].to_string(),
        json!({
            "k:{\"containerPort\":53,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}},
            "k:{\"containerPort\":53,\"protocol\":\"UDP\"}": {".": {}, "f:containerPort": {}, "f:protocol": {}},
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
        })
        .to_string()
    );
    // Dropping the UDP port removes only it.
    let applied = deployment_with_containers(
        json!([{"name": "dns", "image": "coredns", "ports": [{"containerPort": 53}, {"containerPort": 80}]}]),
    );
    let object = apply_ok(Some(&live), &applied, "ssa", T1, deployments());
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 53}, {"containerPort": 80}])
    );
}

#[test]
fn applied_order_wins_for_shared_items_and_live_only_items_keep_their_place() {
    let items =
        |names: &[&str]| -> Value { json!(names.iter().map(|n| json!({"name": n, "image": n})).collect::<Vec<_>>()) };
    let live = stored(apply_ok(None, &deployment_with_containers(items(&["a", "b", "c"])), "one", T0, deployments()));
    let object = apply_ok(Some(&live), &deployment_with_containers(items(&["c", "a"])), "two", T1, deployments());
    let names: Vec<&str> = object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
}

#[test]
fn sets_and_atomic_lists() {
    let live = stored(apply_ok(
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["a/b", "c/d"]}}),
        "one",
        T0,
        configmaps(),
    ));
    assert_eq!(
        fields(&live, "one", "Apply"),
        json!({"f:metadata": {"f:finalizers": {"v:\"a/b\"": {}, "v:\"c/d\"": {}}}})
    );
    let object = apply_ok(
        Some(&live),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "finalizers": ["e/f"]}}),
        "two",
        T1,
        configmaps(),
    );
    assert_eq!(object["metadata"]["finalizers"], json!(["a/b", "c/d", "e/f"]));

    // Container args are atomic: owned and replaced whole.
    let applied = deployment_with_containers(json!([{"name": "c", "image": "i", "args": ["--a", "--b"]}]));
    let live = stored(apply_ok(None, &applied, "one", T0, deployments()));
    let c = &fields(&live, "one", "Apply")["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
    assert_eq!(c["f:args"], json!({}));
    let applied = deployment_with_containers(json!([{"name": "c", "image": "i", "args": ["--z"]}]));
    let err = apply(Some(&live), &applied, "two", false, T1, deployments()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"one\": .spec.template.spec.containers[name=\"c\"].args"
    );
}

#[test]
fn custom_resources_use_the_deduced_schema() {
    let schema = schema_for("example.com", "v1", "Widget");
    assert!(!schema.is_typed());
    let applied = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 3, "tags": ["a", "b"], "nested": {"x": 1}, "empty": {}}
    });
    let object = apply_ok(None, &applied, "ssa", T0, schema);
    assert_eq!(
        fields(&object, "ssa", "Apply").to_string(),
        json!({"f:spec": {".": {}, "f:empty": {}, "f:nested": {".": {}, "f:x": {}}, "f:size": {}, "f:tags": {}}})
            .to_string()
    );
    assert_eq!(schema_for_api_version("apps/v1", "Deployment").type_name(), Some("io.k8s.api.apps.v1.Deployment"));
}

#[test]
fn invalid_configurations_are_errors() {
    let dup = deployment_with_containers(json!([{"name": "a", "image": "x"}, {"name": "a", "image": "y"}]));
    let err = apply(None, &dup, "ssa", false, T0, deployments()).unwrap_err();
    assert_eq!(err.code(), 500);
    assert_eq!(
        err.to_string(),
        "failed to create typed patch object (default/nginx; apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name=\"a\"]"
    );
    let mut wrong = applied_deployment(1);
    wrong["spec"]["replicas"] = json!("two");
    let err = apply(None, &wrong, "ssa", false, T0, deployments()).unwrap_err();
    assert!(err.to_string().ends_with(".spec.replicas: expected numeric (int or float), got \"two\""), "{err}");
    let keyless = deployment_with_containers(json!([{"image": "x"}]));
    let err = apply(None, &keyless, "ssa", false, T0, deployments()).unwrap_err();
    assert!(err.to_string().contains("omits all key fields"), "{err}");
    let mut with_fields = applied_deployment(1);
    with_fields["metadata"]["managedFields"] = json!([]);
    let err = apply(None, &with_fields, "ssa", false, T0, deployments()).unwrap_err();
    assert_eq!((err.code(), err.to_string().as_str()), (400, "metadata.managedFields must be nil"));
    assert_eq!(err.to_status()["reason"], "BadRequest");
}

#[test]
fn first_apply_to_an_untracked_object_credits_before_first_apply() {
    let live = stored(created_deployment());
    let err = apply(Some(&live), &applied_deployment(2), "ssa", false, T1, deployments()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#
    );
    let object = apply(Some(&live), &applied_deployment(1), "ssa", false, T1, deployments()).unwrap();
    assert_eq!(managers(&object), ["ssa/Apply", "before-first-apply/Update"]);
}

#[test]
fn apply_on_the_main_resource_does_not_own_status() {
    let mut applied = applied_deployment(1);
    applied["status"] = json!({"replicas": 1});
    let object = apply_ok(None, &applied, "ssa", T0, deployments());
    assert!(fields(&object, "ssa", "Apply").get("f:status").is_none());
}

// --- updates --------------------------------------------------------------------------

#[test]
fn updates_take_ownership_and_merge_per_manager() {
    let live = create(created_deployment(), "kubectl-create", T0, deployments());
    let mut edited = live.clone();
    edited["spec"]["replicas"] = json!(3);
    edited["metadata"]["labels"]["tier"] = json!("web");
    track_update(Some(&live), &mut edited, "kubectl-edit", Operation::Update, None, T1, deployments());
    assert_eq!(
        fields(&edited, "kubectl-edit", "Update"),
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}, "f:spec": {"f:replicas": {}}})
    );
    assert!(fields(&edited, "kubectl-create", "Update")["f:spec"].get("f:replicas").is_none());
    assert_eq!(entry(&edited, "kubectl-create", "Update").unwrap()["time"], T0);

    // The same manager again: one entry, the union, a new time.
    let live = stored(edited);
    let mut edited = live.clone();
    edited["spec"]["paused"] = json!(true);
    track_update(Some(&live), &mut edited, "kubectl-edit", Operation::Update, None, T2, deployments());
    let e = entry(&edited, "kubectl-edit", "Update").unwrap();
    assert_eq!(e["time"], T2);
    assert_eq!(e["fieldsV1"]["f:spec"], json!({"f:paused": {}, "f:replicas": {}}));

    // Removing a field drops everyone's ownership of it.
    let live = stored(edited);
    let mut edited = live.clone();
    edited["metadata"]["labels"].as_object_mut().unwrap().remove("tier");
    track_update(Some(&live), &mut edited, "kubectl-label", Operation::Update, None, T3, deployments());
    assert!(entry(&edited, "kubectl-label", "Update").is_none(), "a removal alone credits nobody");
    assert!(fields(&edited, "kubectl-edit", "Update")["f:metadata"].is_null());
}

#[test]
fn unchanged_update_keeps_managed_fields() {
    let live = create(created_deployment(), "kubectl-create", T0, deployments());
    let mut same = live.clone();
    track_update(Some(&live), &mut same, "kubectl-replace", Operation::Update, None, T1, deployments());
    assert_eq!(same["metadata"]["managedFields"], live["metadata"]["managedFields"]);
}

#[test]
fn request_managed_fields_replace_or_reset_the_stored_ones() {
    let live = create(created_deployment(), "kubectl-create", T0, deployments());
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    track_update(Some(&live), &mut reset, "kubectl-edit", Operation::Update, None, T1, deployments());
    assert!(reset["metadata"].get("managedFields").is_none());

    let mut replaced = live.clone();
    replaced["metadata"]["managedFields"] = json!([{
        "manager": "someone", "operation": "Update", "apiVersion": "apps/v1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
    }]);
    track_update(Some(&live), &mut replaced, "kubectl-edit", Operation::Update, None, T1, deployments());
    assert_eq!(managers(&replaced), ["someone/Update"]);

    // Through a subresource the request's managedFields are ignored.
    let mut status = live.clone();
    status["metadata"]["managedFields"] = json!([{}]);
    track_update(Some(&live), &mut status, "kubelet", Operation::Update, Some("status"), T1, deployments());
    assert_eq!(status["metadata"]["managedFields"], live["metadata"]["managedFields"]);
}

#[test]
fn update_managers_are_capped_at_ten() {
    let mut live = create(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k0": "v"}}),
        "c",
        T0,
        configmaps(),
    );
    for i in 0..12 {
        let mut next = live.clone();
        next["data"] = json!({});
        for j in 0..=i {
            next["data"][format!("k{j}")] = json!("v");
        }
        let now = format!("2024-05-01T11:{i:02}:00Z");
        track_update(Some(&live), &mut next, &format!("m{i:02}"), Operation::Update, None, &now, configmaps());
        live = next;
    }
    let names = managers(&live);
    assert_eq!(names.len(), 10, "{names:?}");
    assert_eq!(names[0], "ancient-changes/Update");
    // The creator (k0) and the two oldest updaters fold into one entry.
    assert_eq!(
        fields(&live, "ancient-changes", "Update")["f:data"],
        json!({".": {}, "f:k0": {}, "f:k1": {}, "f:k2": {}})
    );
}

#[test]
fn manager_names_come_from_the_user_agent_when_missing() {
    assert_eq!(manager_or_user_agent(Some("kubectl-create"), "kubectl/v1.32.0"), "kubectl-create");
    assert_eq!(manager_or_user_agent(None, "kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9"), "kubectl");
    assert_eq!(manager_or_user_agent(Some(""), "Go-http-client/1.1"), "Go-http-client");
    assert_eq!(manager_or_user_agent(None, &"x".repeat(300)).len(), FIELD_MANAGER_MAX_LENGTH);
    let object = create(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}),
        "",
        T0,
        configmaps(),
    );
    assert_eq!(managers(&object), ["unknown/Update"]);
}

#[test]
fn every_builtin_kind_has_a_schema() {
    for def in crate::builtins::builtin_resources() {
        let schema = schema_for(def.group, def.version, def.kind);
        assert!(schema.is_typed(), "{}/{} {}", def.group, def.version, def.kind);
    }
}

#[test]
fn never_panics() {
    let odd = [
        json!(null),
        json!(3),
        json!("x"),
        json!([1, {"a": null}]),
        json!({}),
        json!({"metadata": null}),
        json!({"metadata": 5, "spec": []}),
        json!({"metadata": {"managedFields": "nope", "labels": ["a"]}}),
        json!({"metadata": {"managedFields": [{"operation": "Bogus"}]}}),
        json!({"metadata": {"managedFields": [{"operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:a": 1}}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"template": {"spec": {"containers": [null, 1, {"name": null}, {"name": "a"}, {"name": "a"}, []]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"selector": "x", "strategy": [], "template": {"metadata": {"labels": {"a": {"b": 1}}}}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"finalizers": [{"a": 1}, null, [1], "x", "x"]}, "data": {"k": [1, 2]}}),
        json!({"spec": {"ports": [{"port": 1.5}, {"port": -1, "protocol": null}]}}),
    ];
    let schemas =
        [deployments(), configmaps(), schema_for("", "v1", "Service"), Schema::deduced(), schema_for("", "v1", "Pod")];
    for schema in schemas {
        for a in &odd {
            for b in &odd {
                let mut new = b.clone();
                track_update(Some(a), &mut new, "m", Operation::Update, None, T0, schema);
                let mut new = b.clone();
                track_update(None, &mut new, "m", Operation::Update, Some("status"), "not a time", schema);
                let _ = apply(Some(a), b, "m", false, T0, schema);
                let _ = apply(Some(a), b, "kubectl", true, T0, schema);
                if let Ok(object) = apply(None, b, "m", false, T0, schema) {
                    let _ = apply(Some(&object), a, "m", false, T1, schema);
                }
            }
        }
    }
}

#[test]
fn handing_replicas_over_to_a_controller() {
    // The docs' recipe: apply with replicas, let a controller (an updater) own it, then
    // apply without it; the controller's value stays and nothing conflicts.
    let live = stored(apply_ok(None, &applied_deployment(3), "ssa", T0, deployments()));
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    track_update(Some(&live), &mut scaled, "hpa-controller", Operation::Update, None, T1, deployments());
    assert!(fields(&scaled, "ssa", "Apply")["f:spec"].get("f:replicas").is_none());
    assert_eq!(fields(&scaled, "hpa-controller", "Update"), json!({"f:spec": {"f:replicas": {}}}));
    let mut without = applied_deployment(0);
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let object = apply_ok(Some(&stored(scaled)), &without, "ssa", T2, deployments());
    assert_eq!(object["spec"]["replicas"], 5);
    assert_eq!(managers(&object), ["ssa/Apply", "hpa-controller/Update"]);
}

#[test]
fn removal_leaves_no_empty_maps_behind() {
    let live = stored(apply_ok(None, &config_map(json!({"a": "1"}), json!({"x": "1"})), "ssa", T0, configmaps()));
    let object = apply_ok(Some(&live), &config_map(json!({"a": "1"}), json!({})), "ssa", T1, configmaps());
    assert!(object["metadata"].get("labels").is_none(), "{object}");
    assert_eq!(object["metadata"]["name"], "test-cm");
}
