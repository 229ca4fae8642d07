//! Strategic merge patch behaviour, case by case. The expectations follow Kubernetes'
//! strategicpatch (its own tests' behaviours, and its output on the same inputs).

use serde_json::{json, Value};

use super::*;
use crate::builtins::builtin_resources;
use crate::ApiError;

fn pod() -> Schema {
    schema_for("", "v1", "Pod")
}

fn deployment() -> Schema {
    schema_for("apps", "v1", "Deployment")
}

type Want = Result<Value, (PatchErrorKind, &'static str)>;

struct Case {
    name: &'static str,
    schema: Schema,
    original: Value,
    patch: Value,
    want: Want,
}

fn ok(v: Value) -> Want {
    Ok(v)
}

fn err(kind: PatchErrorKind, message: &'static str) -> Want {
    Err((kind, message))
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let got = strategic_merge(&case.original, &case.patch, case.schema).map_err(|e| (e.kind, e.message.clone()));
        let matches = match (&got, &case.want) {
            (Ok(got), Ok(want)) => got == want && same_list_order(got, want),
            (Err((gk, gm)), Err((wk, wm))) => gk == wk && gm == wm,
            _ => false,
        };
        if !matches {
            failures.push(format!("{}:\n  want {:?}\n  got  {:?}", case.name, case.want, got));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// `Value` equality ignores object key order but not list order; this double-checks
/// list order through the serialized lists.
fn same_list_order(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_list_order(a, b)),
        (Value::Object(x), Value::Object(y)) => x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_list_order(v, w))),
        _ => a == b,
    }
}

fn containers(list: Value) -> Value {
    json!({"spec": {"containers": list}})
}

#[test]
fn maps() {
    use PatchErrorKind::*;
    run(vec![
        Case {
            name: "objects merge; null deletes a key; an unmatched null is dropped",
            schema: pod(),
            original: json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}}),
            patch: json!({"metadata": {"labels": {"b": null, "c": "3", "z": null}}}),
            want: ok(json!({"metadata": {"name": "p", "labels": {"a": "1", "c": "3"}}})),
        },
        Case {
            name: "a new object is taken without its nulls",
            schema: pod(),
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"annotations": {"x": "1", "y": null}}}),
            want: ok(json!({"metadata": {"name": "p", "annotations": {"x": "1"}}})),
        },
        Case {
            name: "$patch: replace replaces the map",
            schema: pod(),
            original: json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
            patch: json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}),
            want: ok(json!({"metadata": {"labels": {"c": "3"}}})),
        },
        Case {
            name: "$patch: delete empties an existing map",
            schema: pod(),
            original: json!({"spec": {"securityContext": {"runAsUser": 1}, "hostname": "h"}}),
            patch: json!({"spec": {"securityContext": {"$patch": "delete"}}}),
            want: ok(json!({"spec": {"securityContext": {}, "hostname": "h"}})),
        },
        Case {
            name: "$patch: delete of an absent map adds nothing",
            schema: pod(),
            original: json!({"spec": {"hostname": "h"}}),
            patch: json!({"spec": {"securityContext": {"$patch": "delete"}}}),
            want: ok(json!({"spec": {"hostname": "h"}})),
        },
        Case {
            name: "an unknown $patch is an error",
            schema: pod(),
            original: json!({"metadata": {"labels": {"a": "1"}}}),
            patch: json!({"metadata": {"labels": {"$patch": "bogus", "b": "2"}}}),
            want: err(Unconverted, "unknown patch type: bogus in map: map[$patch:bogus b:2]"),
        },
        Case {
            name: "$patch: merge is not accepted in a map",
            schema: pod(),
            original: json!({"metadata": {"labels": {"a": "1"}}}),
            patch: json!({"metadata": {"labels": {"$patch": "merge"}}}),
            want: err(Unconverted, "unknown patch type: merge in map: map[$patch:merge]"),
        },
        Case {
            name: "a non-string $patch prints as Go's %s does",
            schema: pod(),
            original: json!({"metadata": {"labels": {"a": "1"}}}),
            patch: json!({"metadata": {"labels": {"$patch": 1}}}),
            want: err(Unconverted, "unknown patch type: %!s(int64=1) in map: map[$patch:1]"),
        },
        Case {
            name: "$patch: replace at the top replaces the object",
            schema: pod(),
            original: json!({"metadata": {"name": "p"}, "spec": {"hostname": "h"}}),
            patch: json!({"$patch": "replace", "metadata": {"name": "q"}}),
            want: ok(json!({"metadata": {"name": "q"}})),
        },
        Case {
            name: "a value of another type replaces the original",
            schema: pod(),
            original: json!({"spec": {"nodeSelector": {"a": "b"}, "hostname": "h"}}),
            patch: json!({"spec": {"nodeSelector": "x", "hostname": {"a": null, "$patch": "replace"}}}),
            want: ok(json!({"spec": {"nodeSelector": "x"}})),
        },
        Case {
            name: "patchStrategy replace takes the patch map as sent (PodDisruptionBudget selector)",
            schema: schema_for("policy", "v1", "PodDisruptionBudget"),
            original: json!({"spec": {"selector": {"matchLabels": {"a": "1"}, "matchExpressions": []}}}),
            patch: json!({"spec": {"selector": {"matchLabels": {"b": "2", "c": null}}}}),
            want: ok(json!({"spec": {"selector": {"matchLabels": {"b": "2", "c": null}}}})),
        },
        Case {
            name: "an unknown field merged into a struct is an error",
            schema: pod(),
            original: json!({"spec": {"bogus": {"a": 1}}}),
            patch: json!({"spec": {"bogus": {"b": 2}}}),
            want: err(Unconverted, "unable to find api field in struct PodSpec for the json field \"bogus\""),
        },
        Case {
            name: "merging into a map's object values is an error",
            schema: pod(),
            original: json!({"metadata": {"labels": {"a": {"x": 1}}}}),
            patch: json!({"metadata": {"labels": {"a": {"y": 2}}}}),
            want: err(Unconverted, "merging an object in json but data type is not struct, instead is: map"),
        },
        Case {
            name: "a scalar replaces a scalar",
            schema: deployment(),
            original: json!({"spec": {"replicas": 1, "paused": false}}),
            patch: json!({"spec": {"replicas": 3}}),
            want: ok(json!({"spec": {"replicas": 3, "paused": false}})),
        },
    ]);
}

#[test]
fn lists_merged_by_key() {
    use PatchErrorKind::*;
    run(vec![
        Case {
            name: "items merge by name",
            schema: pod(),
            original: containers(json!([{"name": "a", "image": "x", "args": ["1"]}, {"name": "b", "image": "y"}])),
            patch: containers(json!([{"name": "b", "image": "z"}])),
            want: ok(containers(json!([{"name": "a", "image": "x", "args": ["1"]}, {"name": "b", "image": "z"}]))),
        },
        Case {
            // Without $setElementOrder, new items come first (Go's mergeSortedSlice).
            name: "a new item is added before the existing ones",
            schema: pod(),
            original: containers(json!([{"name": "a"}, {"name": "b"}])),
            patch: containers(json!([{"name": "c", "image": "w"}])),
            want: ok(containers(json!([{"name": "c", "image": "w"}, {"name": "a"}, {"name": "b"}]))),
        },
        Case {
            name: "$patch: delete removes the item with that key",
            schema: pod(),
            original: containers(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            patch: containers(json!([{"name": "b", "$patch": "delete"}])),
            want: ok(containers(json!([{"name": "a"}, {"name": "c"}]))),
        },
        Case {
            name: "$patch: delete of a missing item is a no-op",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: containers(json!([{"name": "z", "$patch": "delete"}])),
            want: ok(containers(json!([{"name": "a"}]))),
        },
        Case {
            name: "$patch: delete needs the merge key",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: containers(json!([{"image": "z", "$patch": "delete"}])),
            want: err(Unconverted, "map: map[$patch:delete image:z] does not contain declared merge key: name"),
        },
        Case {
            name: "an item without its merge key is an error",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: containers(json!([{"image": "nginx"}])),
            want: err(Unconverted, "map: map[image:nginx] does not contain declared merge key: name"),
        },
        Case {
            name: "$patch: replace replaces the list with the other items",
            schema: pod(),
            original: containers(json!([{"name": "a"}, {"name": "b"}])),
            patch: containers(json!([{"name": "c"}, {"$patch": "replace"}])),
            want: ok(containers(json!([{"name": "c"}]))),
        },
        Case {
            name: "$patch: merge in a list is not supported",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: containers(json!([{"$patch": "merge"}])),
            want: err(Unconverted, "merging lists cannot yet be specified in the patch"),
        },
        Case {
            name: "nested merge lists merge too (env by name, ports by containerPort)",
            schema: pod(),
            original: containers(json!([{
                "name": "a",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
            }])),
            patch: containers(json!([{
                "name": "a",
                "env": [{"name": "B", "value": "3"}],
                "ports": [{"containerPort": 443, "name": "https"}],
            }])),
            want: ok(containers(json!([{
                "name": "a",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "name": "https"}],
            }]))),
        },
        Case {
            name: "a merge key of another number type does not match",
            schema: pod(),
            original: containers(json!([{"name": "a", "ports": [{"containerPort": 80}]}])),
            patch: containers(json!([{"name": "a", "ports": [{"containerPort": 80.5}]}])),
            want: ok(containers(json!([{"name": "a", "ports": [{"containerPort": 80.5}, {"containerPort": 80}]}]))),
        },
        Case {
            name: "a new item is appended as sent, directives included",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: containers(json!([{"name": "b", "image": null, "env": [{"name": "X", "$patch": "delete"}]}])),
            want: ok(containers(json!([
                {"name": "b", "image": null, "env": [{"name": "X", "$patch": "delete"}]},
                {"name": "a"},
            ]))),
        },
        Case {
            name: "items of different types are an error",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: containers(json!(["b"])),
            want: err(Unconverted, "list element types are not identical: [[map[name:a]] [b]]"),
        },
        Case {
            name: "a null item after others is a type mismatch",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: containers(json!([null])),
            want: err(Unconverted, "list element types are not identical: [[map[name:a]] [<nil>]]"),
        },
        Case {
            name: "a null first item makes Kubernetes panic",
            schema: pod(),
            original: containers(json!([])),
            patch: containers(json!([null, {"name": "a"}])),
            want: err(Panic, "runtime error: invalid memory address or nil pointer dereference"),
        },
        Case {
            name: "lists of lists are refused with 422",
            schema: pod(),
            original: json!({"metadata": {"finalizers": []}}),
            patch: json!({"metadata": {"finalizers": [["b"]]}}),
            want: err(Unprocessable, "lists of lists are not supported"),
        },
        Case {
            name: "Service ports merge by port",
            schema: schema_for("", "v1", "Service"),
            original: json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}}),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            want: ok(json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}})),
        },
        Case {
            name: "ownerReferences merge by uid",
            schema: pod(),
            original: json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
            patch: json!({"metadata": {"ownerReferences": [{"uid": "2", "controller": true}]}}),
            want: ok(json!({"metadata": {"ownerReferences": [
                {"uid": "1", "name": "a"},
                {"uid": "2", "name": "b", "controller": true},
            ]}})),
        },
    ]);
}

#[test]
fn atomic_lists() {
    run(vec![
        Case {
            name: "a list without strategy is replaced",
            schema: pod(),
            original: json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
            patch: json!({"spec": {"tolerations": [{"key": "c"}]}}),
            want: ok(json!({"spec": {"tolerations": [{"key": "c"}]}})),
        },
        Case {
            name: "a replaced list keeps directives and nulls verbatim",
            schema: pod(),
            original: json!({"spec": {"tolerations": [{"key": "a"}]}}),
            patch: json!({"spec": {"tolerations": [{"key": "a", "$patch": "delete"}, {"key": null}]}}),
            want: ok(json!({"spec": {"tolerations": [{"key": "a", "$patch": "delete"}, {"key": null}]}})),
        },
        Case {
            name: "container args are atomic",
            schema: pod(),
            original: containers(json!([{"name": "a", "args": ["x", "y"]}])),
            patch: containers(json!([{"name": "a", "args": ["z"]}])),
            want: ok(containers(json!([{"name": "a", "args": ["z"]}]))),
        },
        Case {
            name: "a new list is taken without $patch items",
            schema: pod(),
            original: json!({"spec": {}}),
            patch: json!({"spec": {"tolerations": [{"key": "a", "$patch": "delete"}, {"key": "b", "value": null}]}}),
            want: ok(json!({"spec": {"tolerations": [{"key": "b"}]}})),
        },
    ]);
}

#[test]
fn primitive_lists() {
    use PatchErrorKind::*;
    run(vec![
        Case {
            name: "finalizers merge as a set union",
            schema: pod(),
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"finalizers": ["b", "c"]}}),
            want: ok(json!({"metadata": {"finalizers": ["a", "b", "c"]}})),
        },
        Case {
            name: "new values with nothing in common go first",
            schema: pod(),
            original: json!({"metadata": {"finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {"finalizers": ["c"]}}),
            want: ok(json!({"metadata": {"finalizers": ["c", "a", "b"]}})),
        },
        Case {
            name: "$deleteFromPrimitiveList removes values",
            schema: pod(),
            original: json!({"metadata": {"finalizers": ["a", "b", "c", "b"]}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "z"]}}),
            want: ok(json!({"metadata": {"finalizers": ["a", "c"]}})),
        },
        Case {
            name: "$deleteFromPrimitiveList of an absent list adds nothing",
            schema: pod(),
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            want: ok(json!({"metadata": {"name": "p"}})),
        },
        Case {
            name: "$deleteFromPrimitiveList works on lists without merge strategy",
            schema: pod(),
            original: containers(json!([{"name": "a", "args": ["x", "y"]}])),
            patch: containers(json!([{"name": "a", "$deleteFromPrimitiveList/args": ["x"]}])),
            want: ok(containers(json!([{"name": "a", "args": ["y"]}]))),
        },
        Case {
            name: "a malformed $deleteFromPrimitiveList key is a 400",
            schema: pod(),
            original: json!({"metadata": {"finalizers": ["a"]}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveListfinalizers": ["a"]}}),
            want: err(BadRequest, "invalid patch format of primitive list"),
        },
        Case {
            name: "finalizers with $setElementOrder and a deletion (kubectl apply)",
            schema: pod(),
            original: json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            patch: json!({"metadata": {
                "$setElementOrder/finalizers": ["c", "a"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
            }}),
            want: ok(json!({"metadata": {"finalizers": ["c", "a"]}})),
        },
        Case {
            name: "a merge list of scalars cannot take objects",
            schema: pod(),
            original: json!({"metadata": {"finalizers": []}}),
            patch: json!({"metadata": {"finalizers": [{"a": 1}]}}),
            want: err(Unconverted, "cannot merge lists without merge key for string"),
        },
    ]);
}

#[test]
fn set_element_order() {
    use PatchErrorKind::*;
    run(vec![
        Case {
            name: "the order list sets the final order",
            schema: pod(),
            original: containers(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            patch: json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}}),
            want: ok(containers(json!([{"name": "c"}, {"name": "a"}, {"name": "b"}]))),
        },
        Case {
            name: "new items go where the order list puts them; server-only items keep their place",
            schema: pod(),
            original: containers(json!([{"name": "a"}, {"name": "s"}, {"name": "b"}])),
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "n"}, {"name": "b"}],
                "containers": [{"name": "n", "image": "x"}],
            }}),
            want: ok(containers(json!([{"name": "a"}, {"name": "n", "image": "x"}, {"name": "s"}, {"name": "b"}]))),
        },
        Case {
            name: "patch items out of the order list's order are an error",
            schema: pod(),
            original: containers(json!([{"name": "a"}, {"name": "b"}])),
            patch: json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b"}, {"name": "a"}],
            }}),
            want: err(
                Unconverted,
                "The order in patch list:\n[map[name:b] map[name:a]]\n doesn't match $setElementOrder list:\n\
                 [map[name:a] map[name:b]]\n",
            ),
        },
        Case {
            name: "a malformed $setElementOrder key is a 400",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: json!({"spec": {"$setElementOrderX": [{"name": "a"}]}}),
            want: err(BadRequest, "invalid patch format of setElementOrder list"),
        },
        Case {
            name: "$setElementOrder must be a list",
            schema: pod(),
            original: containers(json!([{"name": "a"}])),
            patch: json!({"spec": {"$setElementOrder/containers": "a"}}),
            want: err(Unconverted, "expected a []interface {}, but received a string"),
        },
        Case {
            name: "an order for a list nobody has is a no-op",
            schema: pod(),
            original: json!({"spec": {"hostname": "h"}}),
            patch: json!({"spec": {"$setElementOrder/containers": [{"name": "a"}]}}),
            want: ok(json!({"spec": {"hostname": "h"}})),
        },
        Case {
            name: "an order list for an empty list is an error in Kubernetes",
            schema: pod(),
            original: containers(json!([])),
            patch: json!({"spec": {"$setElementOrder/containers": []}}),
            want: err(Unconverted, "no elements in any of the given slices"),
        },
    ]);
}

#[test]
fn retain_keys() {
    use PatchErrorKind::*;
    run(vec![
        Case {
            name: "a volume switching source drops the old one",
            schema: pod(),
            original: json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}]}}),
            patch: json!({"spec": {"volumes": [{"name": "v", "secret": {"secretName": "s"}, "$retainKeys": ["name", "secret"]}]}}),
            want: ok(
                json!({"spec": {"volumes": [{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}]}}),
            ),
        },
        Case {
            name: "deployment strategy Recreate clears rollingUpdate",
            schema: deployment(),
            original: json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            want: ok(json!({"spec": {"strategy": {"type": "Recreate"}}})),
        },
        Case {
            name: "every key the patch sets must be retained",
            schema: deployment(),
            original: json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 2}}}}),
            want: err(BadRequest, "invalid patch format of retainKeys"),
        },
        Case {
            name: "$retainKeys must be a list",
            schema: deployment(),
            original: json!({"spec": {"strategy": {"type": "RollingUpdate"}}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            want: err(BadRequest, "invalid patch format of retainKeys"),
        },
        Case {
            name: "a new map keeps its $retainKeys (Kubernetes does not strip it)",
            schema: deployment(),
            original: json!({"spec": {}}),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            want: ok(json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})),
        },
    ]);
}

#[test]
fn kubectl_patches() {
    let deployment_object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "finalizers": ["example.com/a"]},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                        {"name": "sidecar", "image": "busybox", "args": ["sleep", "1d"]},
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                },
            },
        },
    });
    let mut set_image = deployment_object.clone();
    set_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");

    let mut labelled = deployment_object.clone();
    labelled["metadata"]["labels"] = json!({"tier": "front"});
    labelled["metadata"]["annotations"] = json!({"note": "x"});

    let mut env_deleted = deployment_object.clone();
    env_deleted["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"name": "B", "value": "2"}]);

    let mut scaled = deployment_object.clone();
    scaled["spec"]["replicas"] = json!(5);

    let mut finalized = deployment_object.clone();
    finalized["metadata"]["finalizers"] = json!(["example.com/b", "example.com/a"]);
    let mut unfinalized = deployment_object.clone();
    unfinalized["metadata"]["finalizers"] = json!([]);

    // kubectl apply: the last-applied config had containers web and sidecar; the new
    // one drops sidecar, adds metrics before web and changes web's image.
    let mut applied = deployment_object.clone();
    applied["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": "{}"});
    applied["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "metrics", "image": "prom:1"},
        {"name": "web", "image": "nginx:3", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
    ]);

    run(vec![
        Case {
            name: "kubectl set image changes only that container",
            schema: deployment(),
            original: deployment_object.clone(),
            patch: json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}}),
            want: ok(set_image),
        },
        Case {
            name: "kubectl label --overwrite / label- / annotate",
            schema: deployment(),
            original: deployment_object.clone(),
            patch: json!({"metadata": {"labels": {"app": null, "tier": "front"}, "annotations": {"note": "x"}}}),
            want: ok(labelled),
        },
        Case {
            name: "deleting an env var with $patch: delete",
            schema: deployment(),
            original: deployment_object.clone(),
            patch: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "A", "$patch": "delete"}]},
            ]}}}}),
            want: ok(env_deleted),
        },
        Case {
            name: "kubectl scale (spec.replicas)",
            schema: deployment(),
            original: deployment_object.clone(),
            patch: json!({"spec": {"replicas": 5}}),
            want: ok(scaled),
        },
        Case {
            name: "adding a finalizer is a union",
            schema: deployment(),
            original: deployment_object.clone(),
            patch: json!({"metadata": {"finalizers": ["example.com/b"]}}),
            want: ok(finalized),
        },
        Case {
            name: "removing the last finalizer with $deleteFromPrimitiveList",
            schema: deployment(),
            original: deployment_object.clone(),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]}}),
            want: ok(unfinalized),
        },
        Case {
            name: "kubectl apply three-way patch: $setElementOrder, a deleted and an added container",
            schema: deployment(),
            original: deployment_object.clone(),
            patch: json!({
                "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
                "spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "metrics"}, {"name": "web"}],
                    "containers": [
                        {"name": "metrics", "image": "prom:1"},
                        {"name": "web", "image": "nginx:3"},
                        {"$patch": "delete", "name": "sidecar"},
                    ],
                }}},
            }),
            want: ok(applied),
        },
        Case {
            name: "kubectl apply keeps server-only items in place",
            schema: deployment(),
            original: json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a"}, {"name": "injected"}, {"name": "b"}, {"name": "c"},
            ]}}}}),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "d"}, {"name": "c"}],
                "containers": [{"name": "d"}, {"$patch": "delete", "name": "b"}],
            }}}}),
            // Go reads the original list after deleting b in place ([a, injected, c, c]
            // then d written over the tail), so d is placed by that order.
            want: ok(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "a"}, {"name": "injected"}, {"name": "d"}, {"name": "c"},
            ]}}}})),
        },
    ]);
}

#[test]
fn patch_bodies() {
    use PatchErrorKind::*;
    run(vec![
        Case {
            name: "a null patch changes nothing",
            schema: pod(),
            original: json!({"metadata": {"name": "p"}}),
            patch: Value::Null,
            want: ok(json!({"metadata": {"name": "p"}})),
        },
        Case {
            name: "an array patch is a 400",
            schema: pod(),
            original: json!({"metadata": {"name": "p"}}),
            patch: json!([]),
            want: err(BadRequest, "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        },
        Case {
            name: "a custom resource gets 415",
            schema: schema_for("example.com", "v1", "Widget"),
            original: json!({"spec": {}}),
            patch: json!({"spec": {"a": 1}}),
            want: err(UnsupportedMediaType, CUSTOM_RESOURCE_UNSUPPORTED),
        },
        Case {
            name: "untyped: maps merge, lists are replaced, directives apply",
            schema: Schema::untyped(),
            original: json!({"spec": {"items": [1, 2], "a": {"b": 1, "c": 2}}}),
            patch: json!({"spec": {"items": [3], "a": {"c": null, "d": {"$patch": "delete"}}}}),
            want: ok(json!({"spec": {"items": [3], "a": {"b": 1}}})),
        },
        Case {
            name: "absurdly deep input is refused",
            schema: pod(),
            original: json!({}),
            patch: (0..600).fold(json!(1), |v, _| json!({"a": v})),
            want: err(BadRequest, "exceeded max depth of 512"),
        },
    ]);
}

#[test]
fn schemas_cover_the_builtin_kinds() {
    for def in builtin_resources() {
        let schema = schema_for(def.group, def.version, def.kind);
        assert!(!schema.is_custom_resource(), "{}/{} {}", def.group, def.version, def.kind);
        assert!(schema.field(&["metadata", "finalizers"]).is_some(), "{}", def.kind);
        assert!(schema.field(&["apiVersion"]).is_some(), "{}", def.kind);
    }
    // Subresource kinds are typed too.
    assert!(!schema_for("autoscaling", "v1", "Scale").is_custom_resource());
    assert!(!schema_for("policy", "v1", "Eviction").is_custom_resource());
    assert!(schema_for("stable.example.com", "v1", "CronTab").is_custom_resource());
    assert!(schema_for("apps", "v1", "NoSuchKind").is_custom_resource());
}

#[test]
fn schema_field_metadata() {
    let d = deployment();
    let pod_spec = ["spec", "template", "spec"];
    let at = |rest: &[&str]| {
        let path: Vec<&str> = pod_spec.iter().chain(rest).copied().collect();
        d.field(&path).unwrap_or_else(|| panic!("no field {path:?}"))
    };
    assert_eq!(at(&["containers"]).list, Some(ListStrategy::MergeByKey("name")));
    assert_eq!(at(&["initContainers"]).list, Some(ListStrategy::MergeByKey("name")));
    assert_eq!(at(&["containers", "env"]).list, Some(ListStrategy::MergeByKey("name")));
    assert_eq!(at(&["containers", "ports"]).list, Some(ListStrategy::MergeByKey("containerPort")));
    assert_eq!(at(&["containers", "volumeMounts"]).list, Some(ListStrategy::MergeByKey("mountPath")));
    assert_eq!(at(&["containers", "args"]).list, Some(ListStrategy::Atomic));
    assert_eq!(at(&["tolerations"]).list, Some(ListStrategy::Atomic));
    assert_eq!(at(&["imagePullSecrets"]).list, Some(ListStrategy::MergeByKey("name")));
    let volumes = at(&["volumes"]);
    assert_eq!(volumes.list, Some(ListStrategy::MergeByKey("name")));
    assert!(volumes.retains_keys());
    // Volume embeds VolumeSource inline: its fields are the volume's own.
    assert!(at(&["volumes", "configMap", "items"]).list.is_some());
    assert_eq!(d.field(&["metadata", "finalizers"]).unwrap().list, Some(ListStrategy::MergeScalars));
    assert_eq!(d.field(&["metadata", "ownerReferences"]).unwrap().list, Some(ListStrategy::MergeByKey("uid")));
    assert!(d.field(&["spec", "strategy"]).unwrap().retains_keys());
    assert_eq!(d.field(&["status", "conditions"]).unwrap().list, Some(ListStrategy::MergeByKey("type")));
    let pdb = schema_for("policy", "v1", "PodDisruptionBudget");
    assert_eq!(pdb.field(&["spec", "selector"]).unwrap().strategy, "replace");
    let svc = schema_for("", "v1", "Service");
    assert_eq!(svc.field(&["spec", "ports"]).unwrap().list, Some(ListStrategy::MergeByKey("port")));
    let node = schema_for("", "v1", "Node");
    assert_eq!(node.field(&["status", "addresses"]).unwrap().list, Some(ListStrategy::MergeByKey("type")));
    assert!(d.field(&["spec", "nope"]).is_none());
}

#[test]
fn error_statuses() {
    let missing_key =
        strategic_merge(&containers(json!([{"name": "a"}])), &containers(json!([{"image": "x"}])), pod()).unwrap_err();
    assert_eq!(missing_key.code(), 500);
    let status = missing_key.status();
    assert_eq!(status["message"], "map: map[image:x] does not contain declared merge key: name");
    assert!(status.get("reason").is_none(), "Kubernetes sets no reason: {status}");

    let bad = strategic_merge(&json!({}), &json!({"$retainKeys": 1}), pod()).unwrap_err();
    assert_eq!((bad.code(), bad.reason()), (400, "BadRequest"));
    assert_eq!(bad.status()["message"], "invalid patch format of retainKeys");

    let lists =
        strategic_merge(&json!({"metadata": {"finalizers": []}}), &json!({"metadata": {"finalizers": [[1]]}}), pod())
            .unwrap_err();
    let status = lists.status();
    assert_eq!((status["code"].as_u64(), status["reason"].as_str()), (Some(422), Some("Invalid")));
    assert_eq!(status["message"], "the server rejected our request due to an error in our request");

    let cr = strategic_merge(&json!({}), &json!({}), schema_for("example.com", "v1", "Widget")).unwrap_err();
    assert_eq!((cr.code(), cr.reason()), (415, "UnsupportedMediaType"));
    assert_eq!(ApiError::from(cr).code(), 415);

    let panic = strategic_merge(&containers(json!([])), &containers(json!([null])), pod()).unwrap_err();
    assert_eq!(panic.code(), 500);
    assert_eq!(panic.client_message(), PatchError::panic_body());
}

/// A small deterministic generator (xorshift) for the fuzz tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const KEYS: &[&str] = &[
    "metadata",
    "spec",
    "template",
    "containers",
    "name",
    "image",
    "env",
    "ports",
    "containerPort",
    "finalizers",
    "labels",
    "volumes",
    "tolerations",
    "strategy",
    "type",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/finalizers",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/args",
    "args",
    "$setElementOrder",
    "selector",
    "configMap",
    "rollingUpdate",
    "value",
    "$x",
];
const WORDS: &[&str] = &["replace", "delete", "merge", "a", "b", "name", "containers", ""];

fn random_value(r: &mut Rng, depth: usize) -> Value {
    match r.below(if depth > 5 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => json!(r.below(3) == 0),
        2 => json!(r.below(4)),
        3 => json!(r.below(4) as f64 + 0.5),
        4 | 5 => json!(r.pick(WORDS)),
        6 | 7 => {
            let mut map = serde_json::Map::new();
            for _ in 0..r.below(4) {
                map.insert(r.pick(KEYS).to_string(), random_value(r, depth + 1));
            }
            Value::Object(map)
        }
        _ => Value::Array((0..r.below(4)).map(|_| random_value(r, depth + 1)).collect()),
    }
}

/// Arbitrary JSON in the shape of the kinds' keys never panics, for any kind.
#[test]
fn fuzz_never_panics() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let schemas =
        [pod(), deployment(), schema_for("", "v1", "Service"), schema_for("", "v1", "Node"), Schema::untyped()];
    for i in 0..20_000 {
        let original = random_value(&mut r, 0);
        let patch = random_value(&mut r, 0);
        let schema = schemas[i % schemas.len()];
        // Errors are fine; panics (and stack overflows) are not.
        let _ = strategic_merge(&original, &patch, schema);
        let wrapped = json!({"spec": {"template": {"spec": {"containers": [original.clone()]}}}});
        let _ = strategic_merge(&wrapped, &json!({"spec": {"template": {"spec": patch}}}), schema);
    }
}

/// Mutations of a realistic object and kubectl-like patch keep working or fail
/// cleanly, and patching is deterministic.
#[test]
fn fuzz_realistic_patches() {
    let mut r = Rng(42);
    let base = json!({
        "metadata": {"name": "web", "finalizers": ["a", "b"], "labels": {"app": "web"}},
        "spec": {"template": {"spec": {
            "containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "args": ["x"]}, {"name": "b"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        }}},
    });
    let names = ["a", "b", "c"];
    for _ in 0..5_000 {
        let mut items = Vec::new();
        for _ in 0..r.below(4) {
            let name = names[r.below(3)];
            items.push(match r.below(5) {
                0 => json!({"name": name, "$patch": "delete"}),
                1 => json!({"name": name, "image": format!("i{}", r.below(3))}),
                2 => json!({"name": name, "env": [{"name": "X", "$patch": r.pick(WORDS)}]}),
                3 => json!({"$patch": r.pick(WORDS)}),
                _ => random_value(&mut r, 3),
            });
        }
        let order: Vec<Value> = (0..r.below(4)).map(|_| json!({"name": names[r.below(3)]})).collect();
        let patch = json!({
            "metadata": {"finalizers": [r.pick(WORDS)], "$deleteFromPrimitiveList/finalizers": [r.pick(WORDS)]},
            "spec": {"template": {"spec": {"containers": items, "$setElementOrder/containers": order}}},
        });
        let first = strategic_merge(&base, &patch, deployment());
        assert_eq!(first, strategic_merge(&base, &patch, deployment()));
    }
}
