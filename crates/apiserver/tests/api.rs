//! API semantics over real HTTPS against an in-process server.

use futures::StreamExt;
use skiff_testkit::{json, TestServer};
use std::sync::Arc;
use std::time::Duration;

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "web"}}, "data": {"k": "v"}})
}

fn rv(object: &serde_json::Value) -> i64 {
    object["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn anonymous_requests_get_401_except_health_and_version() {
    let s = TestServer::start().await;
    for path in ["/livez", "/readyz", "/healthz", "/version"] {
        let r = s.anonymous.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let version: serde_json::Value =
        s.anonymous.get(format!("{}/version", s.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(version["major"], "1");
    assert_eq!(version["minor"], "33");
    let r = s.anonymous.get(format!("{}{CM}", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let status: serde_json::Value = r.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
}

#[tokio::test]
async fn bootstrap_objects_exist() {
    let s = TestServer::start().await;
    let namespaces = s.get("/api/v1/namespaces").await;
    let names: Vec<_> =
        namespaces.body["items"].as_array().unwrap().iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "kube-node-lease", "kube-public", "kube-system"]);
    assert_eq!(namespaces.body["items"][0]["status"]["phase"], "Active");
    let kubernetes = s.get("/api/v1/namespaces/default/services/kubernetes").await;
    assert_eq!(kubernetes.body["spec"]["clusterIP"], "10.43.0.1");
}

#[tokio::test]
async fn create_sets_server_metadata_and_rejects_duplicates() {
    let s = TestServer::start().await;
    let created = s.post(CM, &configmap("a")).await;
    assert_eq!(created.code(), 201);
    let meta = &created.body["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert!(meta["uid"].as_str().unwrap().len() == 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert!(rv(&created.body) > 0);
    let fetched = s.get(&format!("{CM}/a")).await;
    assert_eq!(fetched.body, created.body);

    let again = s.post(CM, &configmap("a")).await;
    assert_eq!(again.code(), 409);
    assert_eq!(again.body["reason"], "AlreadyExists");
    assert_eq!(again.body["message"], r#"configmaps "a" already exists"#);

    let missing = s.get(&format!("{CM}/nope")).await;
    assert_eq!(missing.code(), 404);
    assert_eq!(missing.body["reason"], "NotFound");
    assert_eq!(missing.body["details"]["kind"], "configmaps");
}

#[tokio::test]
async fn generate_name_makes_unique_names() {
    let s = TestServer::start().await;
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "job-"}});
    let a = s.post(CM, &body).await;
    let b = s.post(CM, &body).await;
    let (na, nb) = (a.body["metadata"]["name"].as_str().unwrap(), b.body["metadata"]["name"].as_str().unwrap());
    assert!(na.starts_with("job-") && na.len() == 9, "{na}");
    assert_ne!(na, nb);
}

#[tokio::test]
async fn bad_input_gets_clear_status_errors() {
    let s = TestServer::start().await;
    let invalid = s.post(CM, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}})).await;
    assert_eq!(invalid.code(), 422);
    assert_eq!(invalid.body["reason"], "Invalid");
    assert_eq!(invalid.body["details"]["causes"][0]["field"], "metadata.name");
    assert!(invalid.body["message"]
        .as_str()
        .unwrap()
        .starts_with(r#"ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name""#));

    let labels = s
        .post(
            CM,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "-bad-"}}}),
        )
        .await;
    assert_eq!(labels.code(), 422);
    assert_eq!(labels.body["details"]["causes"][0]["field"], "metadata.labels");

    let garbage = s.request(reqwest::Method::POST, CM, "application/json", Some(b"{not json".to_vec())).await;
    assert_eq!(garbage.code(), 400);
    assert_eq!(garbage.body["reason"], "BadRequest");

    let wrong_kind = s.post(CM, &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})).await;
    assert_eq!(wrong_kind.code(), 400);

    let wrong_ns = s
        .post(CM, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}}))
        .await;
    assert_eq!(wrong_ns.code(), 400);

    let no_ns = s.post("/api/v1/namespaces/ghost/configmaps", &configmap("x")).await;
    assert_eq!(no_ns.code(), 404);
    assert_eq!(no_ns.body["message"], r#"namespaces "ghost" not found"#);

    let unsupported = s.request(reqwest::Method::POST, CM, "text/plain", Some(b"x".to_vec())).await;
    assert_eq!(unsupported.code(), 415);

    let bad_patch = s.patch(&format!("{CM}/x"), "application/json-patch+json", &json!({"not": "a list"})).await;
    assert_eq!(bad_patch.code(), 400);

    let unknown_resource = s.get("/api/v1/namespaces/default/widgets").await;
    assert_eq!(unknown_resource.code(), 404);

    let method = s.request(reqwest::Method::PUT, CM, "application/json", Some(b"{}".to_vec())).await;
    assert_eq!(method.code(), 405);

    let strict = s
        .post(
            &format!("{CM}?fieldValidation=Strict"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dataa": {}}),
        )
        .await;
    assert_eq!(strict.code(), 400);
    assert!(strict.body["message"].as_str().unwrap().contains(r#"unknown field "dataa""#), "{}", strict.body);
    let warned =
        s.post(CM, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dataa": {}})).await;
    assert_eq!(warned.code(), 201);
    assert!(warned.headers["warning"].to_str().unwrap().contains("unknown field"));
    // Repeated keys: a warning by default, a 400 under Strict (only valid JSON can say this).
    let repeated = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1","a":"2"}}"#;
    let strict = s
        .request(
            reqwest::Method::POST,
            &format!("{CM}?fieldValidation=Strict"),
            "application/json",
            Some(repeated.to_vec()),
        )
        .await;
    assert_eq!(strict.code(), 400);
    assert_eq!(strict.body["message"], r#"strict decoding error: duplicate field "data.a""#);
    let warned = s.request(reqwest::Method::POST, CM, "application/json", Some(repeated.to_vec())).await;
    assert_eq!(warned.code(), 201, "{}", warned.body);
    assert_eq!(warned.headers["warning"].to_str().unwrap(), r#"299 - "duplicate field \"data.a\"""#);
    assert_eq!(warned.body["data"]["a"], "2", "the last value wins");
    // Nothing half-written: the rejected names do not exist.
    assert_eq!(s.get(&format!("{CM}/Bad_Name")).await.code(), 404);
}

#[tokio::test]
async fn update_is_optimistic_and_status_is_separate() {
    let s = TestServer::start().await;
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        "status": {"replicas": 99}});
    let path = "/apis/apps/v1/namespaces/default/deployments";
    let created = s.post(path, &d).await;
    assert_eq!(created.code(), 201, "{}", created.body);
    assert_eq!(created.body["metadata"]["generation"], 1);
    assert!(created.body["status"].get("replicas").is_none(), "status is reset on create: {}", created.body["status"]);

    // Metadata changes do not bump generation; spec changes do.
    let mut labeled = created.body.clone();
    labeled["metadata"]["labels"] = json!({"x": "y"});
    let updated = s.put(&format!("{path}/web"), &labeled).await;
    assert_eq!(updated.code(), 200);
    assert_eq!(updated.body["metadata"]["generation"], 1);
    let mut scaled = updated.body.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["status"] = json!({"replicas": 7});
    let updated = s.put(&format!("{path}/web"), &scaled).await;
    assert_eq!(updated.body["metadata"]["generation"], 2);
    assert!(updated.body["status"].get("replicas").is_none(), "main resource ignores status");

    // A stale resourceVersion is a conflict.
    let stale = s.put(&format!("{path}/web"), &labeled).await;
    assert_eq!(stale.code(), 409);
    assert_eq!(stale.body["reason"], "Conflict");
    assert!(stale.body["message"].as_str().unwrap().contains("the object has been modified"));

    // The status subresource changes only status.
    let mut status = updated.body.clone();
    status["status"] = json!({"replicas": 3, "readyReplicas": 2});
    status["spec"]["replicas"] = json!(10);
    let written = s.put(&format!("{path}/web/status"), &status).await;
    assert_eq!(written.code(), 200, "{}", written.body);
    assert_eq!(written.body["status"]["readyReplicas"], 2);
    assert_eq!(written.body["spec"]["replicas"], 3);
    assert_eq!(written.body["metadata"]["generation"], 2);

    // A no-op update writes nothing.
    let same = s.put(&format!("{path}/web"), &written.body).await;
    assert_eq!(rv(&same.body), rv(&written.body));

    // Scale subresource.
    let scale = s.get(&format!("{path}/web/scale")).await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["spec"]["replicas"], 3);
    let rescaled =
        s.patch(&format!("{path}/web/scale"), "application/merge-patch+json", &json!({"spec": {"replicas": 5}})).await;
    assert_eq!(rescaled.body["spec"]["replicas"], 5);
    assert_eq!(s.get(&format!("{path}/web")).await.body["spec"]["replicas"], 5);
}

#[tokio::test]
async fn patches_merge_and_json() {
    let s = TestServer::start().await;
    s.post(CM, &configmap("p")).await;
    let merged = s
        .patch(
            &format!("{CM}/p"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"app": null, "tier": "db"}}, "data": {"n": "1"}}),
        )
        .await;
    assert_eq!(merged.code(), 200);
    assert_eq!(merged.body["metadata"]["labels"], json!({"tier": "db"}));
    assert_eq!(merged.body["data"], json!({"k": "v", "n": "1"}));
    let patched = s
        .patch(
            &format!("{CM}/p"),
            "application/json-patch+json",
            &json!([{"op": "replace", "path": "/data/k", "value": "w"}]),
        )
        .await;
    assert_eq!(patched.body["data"]["k"], "w");
    let failed = s
        .patch(
            &format!("{CM}/p"),
            "application/json-patch+json",
            &json!([{"op": "test", "path": "/data/k", "value": "zzz"}]),
        )
        .await;
    assert_eq!(failed.code(), 422);
    let stale = s
        .patch(
            &format!("{CM}/p"),
            "application/merge-patch+json",
            &json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}}),
        )
        .await;
    assert_eq!(stale.code(), 409);
    let missing = s.patch(&format!("{CM}/none"), "application/merge-patch+json", &json!({})).await;
    assert_eq!(missing.code(), 404);
}

#[tokio::test]
async fn label_and_field_selectors_and_pagination() {
    let s = TestServer::start().await;
    for i in 0..25 {
        let mut cm = configmap(&format!("cm-{i:02}"));
        cm["metadata"]["labels"] = json!({"app": if i % 2 == 0 { "even" } else { "odd" }, "n": i.to_string()});
        assert_eq!(s.post(CM, &cm).await.code(), 201);
    }
    let even = s.get(&format!("{CM}?labelSelector=app%3Deven")).await;
    assert_eq!(even.body["items"].as_array().unwrap().len(), 13);
    let set = s.get(&format!("{CM}?labelSelector=app%20in%20(odd),n%20notin%20(1,3)")).await;
    assert_eq!(set.body["items"].as_array().unwrap().len(), 10);
    let by_name = s.get(&format!("{CM}?fieldSelector=metadata.name%3Dcm-07")).await;
    assert_eq!(by_name.body["items"][0]["metadata"]["name"], "cm-07");
    let bad = s.get(&format!("{CM}?fieldSelector=spec.bogus%3Dx")).await;
    assert_eq!(bad.code(), 400);
    assert_eq!(bad.body["message"], "field label not supported: spec.bogus");
    let bad_label = s.get(&format!("{CM}?labelSelector=a%20in%20")).await;
    assert_eq!(bad_label.code(), 400);

    // Pages of 10 see one consistent snapshot even while objects change.
    let first = s.get(&format!("{CM}?limit=10")).await;
    let token = first.body["metadata"]["continue"].as_str().unwrap().to_string();
    assert_eq!(first.body["items"].as_array().unwrap().len(), 10);
    s.delete(&format!("{CM}/cm-20")).await;
    let mut names: Vec<String> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().into())
        .collect();
    let mut next = Some(token);
    while let Some(token) = next {
        let page = s.get(&format!("{CM}?limit=10&continue={token}")).await;
        assert_eq!(page.code(), 200, "{}", page.body);
        assert_eq!(page.body["metadata"]["resourceVersion"], first.body["metadata"]["resourceVersion"]);
        names.extend(
            page.body["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
        );
        next = page.body["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(names.len(), 25, "the deleted object is still in the snapshot");
    let selected_page = s.get(&format!("{CM}?limit=5&labelSelector=app%3Dodd")).await;
    assert_eq!(selected_page.body["items"].as_array().unwrap().len(), 5);
    assert!(selected_page.body["metadata"]["continue"].is_string());

    // All-namespaces list and an exact past revision.
    let all = s.get("/api/v1/configmaps").await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 24);
    let past = s
        .get(&format!(
            "{CM}?resourceVersion={}&resourceVersionMatch=Exact",
            first.body["metadata"]["resourceVersion"].as_str().unwrap()
        ))
        .await;
    assert_eq!(past.body["items"].as_array().unwrap().len(), 25);
}

#[tokio::test]
async fn watch_delivers_ordered_events_and_resumes() {
    let s = TestServer::start().await;
    let start = rv(&s.post(CM, &configmap("w0")).await.body);
    let mut watch = s.watch(&format!("{CM}?watch=true&resourceVersion={start}")).await;
    let created = s.post(CM, &configmap("w1")).await.body;
    let mut changed = created.clone();
    changed["data"] = json!({"k": "changed"});
    s.put(&format!("{CM}/w1"), &changed).await;
    s.delete(&format!("{CM}/w1")).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap();
        events.push(event);
    }
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    let revisions: Vec<_> = events.iter().map(|e| rv(&e["object"])).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "{revisions:?}");
    assert_eq!(events[2]["object"]["data"]["k"], "changed", "DELETED carries the last state");

    // Resuming from the MODIFIED revision replays only the deletion.
    let mut resumed = s.watch(&format!("{CM}?watch=true&resourceVersion={}", revisions[1])).await;
    let event = tokio::time::timeout(Duration::from_secs(5), resumed.next()).await.unwrap().unwrap();
    assert_eq!(event["type"], "DELETED");
    assert_eq!(rv(&event["object"]), revisions[2]);

    // A label-filtered watch sees objects leave the selection as DELETED.
    let mut filtered =
        s.watch(&format!("{CM}?watch=true&labelSelector=app%3Dweb&resourceVersion={}", revisions[2])).await;
    let mut relabeled = s.get(&format!("{CM}/w0")).await.body;
    relabeled["metadata"]["labels"] = json!({"app": "db"});
    s.put(&format!("{CM}/w0"), &relabeled).await;
    let event = tokio::time::timeout(Duration::from_secs(5), filtered.next()).await.unwrap().unwrap();
    assert_eq!(event["type"], "DELETED");
}

#[tokio::test]
async fn watch_without_revision_starts_with_current_state_and_streaming_lists_bookmark() {
    let s = TestServer::start().await;
    s.post(CM, &configmap("a")).await;
    s.post(CM, &configmap("b")).await;
    let mut watch = s.watch(&format!("{CM}?watch=true")).await;
    for name in ["a", "b"] {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap();
        assert_eq!((event["type"].as_str(), event["object"]["metadata"]["name"].as_str()), (Some("ADDED"), Some(name)));
    }
    let mut streaming = s
        .watch(&format!(
            "{CM}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        ))
        .await;
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), streaming.next()).await.unwrap().unwrap();
        if event["type"] == "BOOKMARK" {
            assert_eq!(event["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
            assert_eq!(event["object"]["kind"], "ConfigMap");
            break;
        }
        seen.push(event["object"]["metadata"]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ["a", "b"]);
}

#[tokio::test]
async fn delete_honours_preconditions_finalizers_and_grace() {
    let s = TestServer::start().await;
    let created = s.post(CM, &configmap("d")).await.body;
    let wrong_uid = s.delete_with(&format!("{CM}/d"), &json!({"preconditions": {"uid": "nope"}})).await;
    assert_eq!(wrong_uid.code(), 409);
    let wrong_rv = s.delete_with(&format!("{CM}/d"), &json!({"preconditions": {"resourceVersion": "1"}})).await;
    assert_eq!(wrong_rv.code(), 409);
    let deleted =
        s.delete_with(&format!("{CM}/d"), &json!({"preconditions": {"uid": created["metadata"]["uid"]}})).await;
    assert_eq!(deleted.code(), 200);
    assert_eq!(deleted.body["status"], "Success");
    assert_eq!(s.get(&format!("{CM}/d")).await.code(), 404);
    assert_eq!(s.delete(&format!("{CM}/d")).await.code(), 404);

    // Finalizers keep the object, with deletionTimestamp, until they are removed.
    let mut held = configmap("f");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    s.post(CM, &held).await;
    let pending = s.delete(&format!("{CM}/f")).await;
    assert_eq!(pending.code(), 200);
    assert!(pending.body["metadata"]["deletionTimestamp"].is_string());
    let still = s.get(&format!("{CM}/f")).await;
    assert_eq!(still.code(), 200);
    let add = s
        .patch(
            &format!("{CM}/f"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": ["example.com/hold", "another.io/x"]}}),
        )
        .await;
    assert_eq!(add.code(), 422, "no new finalizers while deleting");
    let released =
        s.patch(&format!("{CM}/f"), "application/merge-patch+json", &json!({"metadata": {"finalizers": null}})).await;
    assert_eq!(released.code(), 200);
    assert_eq!(s.get(&format!("{CM}/f")).await.code(), 404);

    // Foreground propagation records the foregroundDeletion finalizer.
    s.post(CM, &configmap("fg")).await;
    let fg = s.delete_with(&format!("{CM}/fg"), &json!({"propagationPolicy": "Foreground"})).await;
    assert_eq!(fg.body["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    let bad = s.delete_with(&format!("{CM}/fg"), &json!({"propagationPolicy": "Sideways"})).await;
    assert_eq!(bad.code(), 422);

    // A pod bound to a node terminates gracefully; an unbound one goes at once.
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(node) = node {
            p["spec"]["nodeName"] = json!(node);
        }
        p
    };
    assert_eq!(s.post(pods, &pod("bound", Some("n1"))).await.code(), 201);
    assert_eq!(s.post(pods, &pod("free", None)).await.code(), 201);
    let graceful = s.delete(&format!("{pods}/bound")).await;
    assert_eq!(graceful.body["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(s.get(&format!("{pods}/bound")).await.code(), 200);
    let forced = s.delete(&format!("{pods}/bound?gracePeriodSeconds=0")).await;
    assert_eq!(forced.code(), 200);
    assert_eq!(s.get(&format!("{pods}/bound")).await.code(), 404);
    s.delete(&format!("{pods}/free")).await;
    assert_eq!(s.get(&format!("{pods}/free")).await.code(), 404);

    // deletecollection with a selector.
    for name in ["c1", "c2"] {
        s.post(CM, &configmap(name)).await;
    }
    let gone = s.request(reqwest::Method::DELETE, &format!("{CM}?labelSelector=app%3Dweb"), "", None).await;
    assert_eq!(gone.code(), 200);
    let left: Vec<_> =
        s.get(CM).await.body["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(left, [json!("fg")], "only the object held by its finalizer is left");
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let s = TestServer::start().await;
    let dry = s.post(&format!("{CM}?dryRun=All"), &configmap("dry")).await;
    assert_eq!(dry.code(), 201);
    assert_eq!(dry.body["metadata"]["name"], "dry");
    assert_eq!(s.get(&format!("{CM}/dry")).await.code(), 404);
    s.post(CM, &configmap("real")).await;
    let patched =
        s.patch(&format!("{CM}/real?dryRun=All"), "application/merge-patch+json", &json!({"data": {"k": "dry"}})).await;
    assert_eq!(patched.body["data"]["k"], "dry");
    assert_eq!(s.get(&format!("{CM}/real")).await.body["data"]["k"], "v");
    s.delete(&format!("{CM}/real?dryRun=All")).await;
    assert_eq!(s.get(&format!("{CM}/real")).await.code(), 200);
}

#[tokio::test]
async fn namespaces_terminate_and_refuse_new_content() {
    let s = TestServer::start().await;
    s.post("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})).await;
    s.post("/api/v1/namespaces/team/configmaps", &configmap("x")).await;
    let deleting = s.delete("/api/v1/namespaces/team").await;
    assert_eq!(deleting.code(), 200);
    assert_eq!(deleting.body["status"]["phase"], "Terminating");
    let refused = s.post("/api/v1/namespaces/team/configmaps", &configmap("y")).await;
    assert_eq!(refused.code(), 403);
    assert!(refused.body["message"].as_str().unwrap().contains("because it is being terminated"));
    // Removing the namespace's own finalizer through /finalize lets it go.
    let mut ns = s.get("/api/v1/namespaces/team").await.body;
    ns["spec"]["finalizers"] = json!([]);
    let finalized = s.put("/api/v1/namespaces/team/finalize", &ns).await;
    assert_eq!(finalized.code(), 200, "{}", finalized.body);
    assert_eq!(s.get("/api/v1/namespaces/team").await.code(), 404);
}

#[tokio::test]
async fn services_get_unique_cluster_ips_and_node_ports() {
    let s = TestServer::start().await;
    let svc = |name: &str, extra: serde_json::Value| {
        let mut v = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": {"ports": [{"port": 80}]}});
        if let Some(map) = extra.as_object() {
            for (k, val) in map {
                v["spec"][k] = val.clone();
            }
        }
        v
    };
    let path = "/api/v1/namespaces/default/services";
    let a = s.post(path, &svc("a", json!({"type": "NodePort"}))).await.body;
    let b = s.post(path, &svc("b", json!({"type": "NodePort"}))).await.body;
    assert_ne!(a["spec"]["clusterIP"], b["spec"]["clusterIP"]);
    let port = a["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&port));
    let taken = s.post(path, &svc("c", json!({"clusterIP": a["spec"]["clusterIP"]}))).await;
    assert_eq!(taken.code(), 422);
    let port_taken =
        s.post(path, &svc("d", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}))).await;
    assert_eq!(port_taken.code(), 422);
    assert_eq!(port_taken.body["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
    // Released on delete: the same IP and port can be asked for again.
    s.delete(&format!("{path}/a")).await;
    let reuse = s.post(path, &svc("e", json!({"type": "NodePort", "clusterIP": a["spec"]["clusterIP"], "ports": [{"port": 80, "nodePort": port}]}))).await;
    assert_eq!(reuse.code(), 201, "{}", reuse.body);
    let headless = s.post(path, &svc("h", json!({"clusterIP": "None"}))).await;
    assert_eq!(headless.body["spec"]["clusterIP"], "None");
}

#[tokio::test]
async fn pods_bind_once() {
    let s = TestServer::start().await;
    let pods = "/api/v1/namespaces/default/pods";
    s.post(pods, &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let bound = s.post(&format!("{pods}/p/binding"), &binding).await;
    assert_eq!(bound.code(), 201, "{}", bound.body);
    let pod = s.get(&format!("{pods}/p")).await.body;
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert!(pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "True"));
    let again = s.post(&format!("{pods}/p/binding"), &binding).await;
    assert_eq!(again.code(), 409);
    let by_node = s.get(&format!("{pods}?fieldSelector=spec.nodeName%3Dn1")).await;
    assert_eq!(by_node.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn discovery_lists_resources() {
    let s = TestServer::start().await;
    let core = s.get("/api/v1").await.body;
    let pods = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["namespaced"], true);
    assert!(core["resources"].as_array().unwrap().iter().any(|r| r["name"] == "pods/status"));
    let groups = s.get("/apis").await.body;
    assert!(groups["groups"].as_array().unwrap().iter().any(|g| g["name"] == "apps"));
    let apps = s.get("/apis/apps/v1").await.body;
    assert!(apps["resources"].as_array().unwrap().iter().any(|r| r["name"] == "deployments/scale"));
}

#[tokio::test]
async fn history_beyond_the_window_is_gone() {
    use std::sync::Arc;
    let store: Arc<dyn skiff_store::Store> = Arc::new(skiff_store::memory::MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_configured(dir, store.clone(), |c| c.watch_window = 5).await.unwrap();
    let first = rv(&s.post(CM, &configmap("h0")).await.body);
    for i in 1..10 {
        s.post(CM, &configmap(&format!("h{i}"))).await;
    }
    // The watch cache no longer holds events after `first`: 410 Expired, as an ERROR event.
    let mut watch = s.watch(&format!("{CM}?watch=true&resourceVersion={first}")).await;
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap();
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");

    // A continue token whose snapshot was compacted away is a 410 too.
    let page = s.get(&format!("{CM}?limit=2")).await;
    let token = page.body["metadata"]["continue"].as_str().unwrap().to_string();
    s.post(CM, &configmap("later")).await;
    store.compact(store.current_revision().await.unwrap()).await.unwrap();
    let expired = s.get(&format!("{CM}?limit=2&continue={token}")).await;
    assert_eq!(expired.code(), 410, "{}", expired.body);
    assert_eq!(expired.body["reason"], "Expired");
    let exact = s.get(&format!("{CM}?resourceVersion={first}&resourceVersionMatch=Exact")).await;
    assert_eq!(exact.code(), 410);
}

#[tokio::test]
async fn watch_ends_at_its_timeout() {
    let s = TestServer::start().await;
    let started = std::time::Instant::now();
    let mut watch = s.watch(&format!("{CM}?watch=true&timeoutSeconds=1&resourceVersion=0")).await;
    let end = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("the server closes the watch");
    assert!(end.is_none(), "no events, then the end of the stream: {end:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn aggregated_discovery() {
    let s = TestServer::start().await;
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let response = s.client.get(format!("{}/apis", s.url)).header("accept", accept).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let list: serde_json::Value = response.json().await.unwrap();
    assert_eq!(list["kind"], "APIGroupDiscoveryList");
    let apps = list["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
    let deployments =
        apps["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
    assert_eq!(deployments["scope"], "Namespaced");
    assert_eq!(deployments["shortNames"], json!(["deploy"]));
    assert!(deployments["subresources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["subresource"] == "scale" && s["responseKind"]["kind"] == "Scale"));
    let core: serde_json::Value =
        s.client.get(format!("{}/api", s.url)).header("accept", accept).send().await.unwrap().json().await.unwrap();
    assert!(core["items"][0]["versions"][0]["resources"].as_array().unwrap().iter().any(|r| r["resource"] == "pods"));
    // Plain JSON still gets the legacy documents.
    assert_eq!(s.get("/api").await.body["kind"], "APIVersions");
}

#[tokio::test]
async fn events_are_shared_between_core_and_events_api() {
    let s = TestServer::start().await;
    let modern = "/apis/events.k8s.io/v1/namespaces/default/events";
    let core = "/api/v1/namespaces/default/events";
    let mut core_watch = s.watch(&format!("{core}?watch=true&resourceVersion=0")).await;
    let created = s
        .post(
            modern,
            &json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e1"},
                "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "skiff/test", "reportingInstance": "t",
                "action": "Testing", "reason": "Tested", "type": "Normal", "note": "it works",
                "regarding": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u1"}}),
        )
        .await;
    assert_eq!(created.code(), 201, "{}", created.body);
    assert_eq!(created.body["note"], "it works");
    let seen = s.get(&format!("{core}/e1")).await.body;
    assert_eq!(seen["apiVersion"], "v1");
    assert_eq!(seen["message"], "it works");
    assert_eq!(seen["involvedObject"]["name"], "p");
    assert_eq!(seen["reportingComponent"], "skiff/test");
    let by_object = s.get(&format!("{core}?fieldSelector=involvedObject.name%3Dp,involvedObject.uid%3Du1")).await;
    assert_eq!(by_object.body["items"].as_array().unwrap().len(), 1);
    let event = tokio::time::timeout(Duration::from_secs(5), core_watch.next()).await.unwrap().unwrap();
    assert_eq!(event["object"]["message"], "it works");
    let listed = s.get(modern).await.body;
    assert_eq!(listed["items"][0]["note"], "it works");
    assert_eq!(listed["items"][0]["apiVersion"], "events.k8s.io/v1");
    let patched = s.patch(&format!("{modern}/e1"), "application/merge-patch+json", &json!({"note": "changed"})).await;
    assert_eq!(patched.body["note"], "changed");
    assert_eq!(s.get(&format!("{core}/e1")).await.body["message"], "changed");
}

const CACHE_LAG: Duration = Duration::from_millis(300);

/// A store whose watchers hear of each change `CACHE_LAG` late, so the API server's watch
/// cache lags behind what clients have already been told.
struct LaggingStore(skiff_store::memory::MemoryStore);

#[async_trait::async_trait]
impl skiff_store::Store for LaggingStore {
    async fn current_revision(&self) -> skiff_store::Result<i64> {
        self.0.current_revision().await
    }
    async fn compacted_revision(&self) -> skiff_store::Result<i64> {
        self.0.compacted_revision().await
    }
    async fn create(&self, key: &str, value: bytes::Bytes) -> skiff_store::Result<skiff_store::KeyValue> {
        self.0.create(key, value).await
    }
    async fn get(&self, key: &str) -> skiff_store::Result<Option<skiff_store::KeyValue>> {
        self.0.get(key).await
    }
    async fn range(&self, request: skiff_store::RangeRequest) -> skiff_store::Result<skiff_store::RangeResult> {
        self.0.range(request).await
    }
    async fn update(
        &self,
        key: &str,
        value: bytes::Bytes,
        expected: i64,
    ) -> skiff_store::Result<skiff_store::KeyValue> {
        self.0.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<i64>) -> skiff_store::Result<skiff_store::KeyValue> {
        self.0.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: i64) -> skiff_store::Result<skiff_store::WatchStream> {
        let mut events = self.0.watch(prefix, after).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let due = tokio::time::Instant::now() + CACHE_LAG;
                if tx.send((due, event)).is_err() {
                    break;
                }
            }
        });
        let delayed = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).then(|(due, event)| async move {
            tokio::time::sleep_until(due).await;
            event
        });
        Ok(Box::pin(delayed))
    }
    async fn compact(&self, revision: i64) -> skiff_store::Result<()> {
        self.0.compact(revision).await
    }
}

/// Writes start from the watch cache's copy when it has one; a copy that lags the store
/// must neither lose a write nor fail a client's precondition.
#[tokio::test]
async fn writes_through_a_lagging_watch_cache_neither_conflict_nor_lose_changes() {
    let store = Arc::new(LaggingStore(skiff_store::memory::MemoryStore::new()));
    let s = TestServer::start_on(tempfile::tempdir().unwrap(), store).await.unwrap();
    let path = format!("{CM}/hot");
    let mut latest = s.post(CM, &configmap("hot")).await.body;
    tokio::time::sleep(CACHE_LAG * 2).await;
    // Each update carries the resourceVersion the previous one returned, at once.
    for i in 0..10 {
        latest["data"]["k"] = json!(format!("v{i}"));
        let updated = s.put(&path, &latest).await;
        assert_eq!(updated.code(), 200, "update {i}: {}", updated.body);
        assert!(rv(&updated.body) > rv(&latest), "update {i} got a new resourceVersion");
        latest = updated.body;
    }
    // Concurrent patches without a precondition: every one lands.
    let patches = (0..12).map(|i| {
        let (s, path) = (&s, &path);
        async move {
            let body = json!({"metadata": {"labels": {format!("l{i}"): "x"}}});
            s.patch(path, "application/merge-patch+json", &body).await
        }
    });
    for answer in futures::future::join_all(patches).await {
        assert_eq!(answer.code(), 200, "{}", answer.body);
    }
    let stored = s.get(&path).await.body;
    let labels = stored["metadata"]["labels"].as_object().unwrap();
    assert!((0..12).all(|i| labels.contains_key(&format!("l{i}"))), "a patch was lost: {labels:?}");
    assert_eq!(stored["data"]["k"], "v9");
    // A patch that changes nothing in the cache's stale copy still changes the stored one.
    let undo = s.patch(&path, "application/merge-patch+json", &json!({"data": {"k": "v"}})).await;
    assert_eq!(undo.code(), 200, "{}", undo.body);
    let redo = s.patch(&path, "application/merge-patch+json", &json!({"data": {"k": "v9"}})).await;
    assert_eq!(redo.body["data"]["k"], "v9");
    assert_eq!(s.get(&path).await.body["data"]["k"], "v9");
    // A delete right after a write, with the write's resourceVersion as precondition.
    let mut changed = s.get(&path).await.body;
    changed["data"]["k"] = json!("last");
    let written = s.put(&path, &changed).await.body;
    assert!(rv(&written) > rv(&changed), "the last update was a write: {written}");
    let precondition = json!({"preconditions": {"resourceVersion": written["metadata"]["resourceVersion"]}});
    let gone = s.delete_with(&path, &precondition).await;
    assert_eq!(gone.code(), 200, "{}", gone.body);
    assert_eq!(s.get(&path).await.code(), 404);
}
