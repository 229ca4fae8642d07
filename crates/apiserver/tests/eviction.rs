//! pods/NAME/eviction over real HTTPS: PodDisruptionBudgets decide, as kube-apiserver's
//! eviction subresource does. No disruption controller runs here, so each test writes the
//! budget's status itself.

use skiff_testkit::{json, Answer, TestServer};

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
const VIOLATES: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// A pod labelled app=web, Running and Ready (or not) as a node would have reported it.
async fn running_pod(s: &TestServer, name: &str, node: Option<&str>, ready: bool) {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    assert_eq!(s.post(PODS, &pod).await.code(), 201);
    let ready = if ready { "True" } else { "False" };
    let status = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}});
    let patched = s.patch(&format!("{PODS}/{name}/status"), "application/merge-patch+json", &status).await;
    assert_eq!(patched.code(), 200, "{:?}", patched.body);
}

/// A budget selecting app=web with the status a disruption controller would have written.
async fn budget(s: &TestServer, name: &str, allowed: i64, current: i64, desired: i64) {
    let pdb = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"minAvailable": desired, "selector": {"matchLabels": {"app": "web"}}},
    });
    assert_eq!(s.post(PDBS, &pdb).await.code(), 201);
    let status = json!({"status": {
        "disruptionsAllowed": allowed, "currentHealthy": current, "desiredHealthy": desired,
        "expectedPods": current, "observedGeneration": 1,
    }});
    let patched = s.patch(&format!("{PDBS}/{name}/status"), "application/merge-patch+json", &status).await;
    assert_eq!(patched.code(), 200, "{:?}", patched.body);
}

async fn evict(s: &TestServer, pod: &str, extra: serde_json::Value) -> Answer {
    let mut eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}});
    if let Some(options) = extra.get("deleteOptions") {
        eviction["deleteOptions"] = options.clone();
    }
    s.post(&format!("{PODS}/{pod}/eviction"), &eviction).await
}

async fn exists(s: &TestServer, pod: &str) -> bool {
    s.get(&format!("{PODS}/{pod}")).await.code() == 200
}

#[tokio::test]
async fn discovery_advertises_pods_eviction_as_policy_v1() {
    let s = TestServer::start().await;
    let resources = s.get("/api/v1").await.body;
    let eviction = resources["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods/eviction").unwrap();
    assert_eq!(eviction["kind"], "Eviction");
    assert_eq!((&eviction["group"], &eviction["version"]), (&json!("policy"), &json!("v1")));
    assert_eq!(eviction["verbs"], json!(["create"]));
}

#[tokio::test]
async fn a_pod_without_a_budget_is_evicted() {
    let s = TestServer::start().await;
    running_pod(&s, "web-1", None, true).await;
    let answer = evict(&s, "web-1", json!({})).await;
    assert_eq!(answer.code(), 201, "{:?}", answer.body);
    assert_eq!((&answer.body["kind"], &answer.body["status"]), (&json!("Status"), &json!("Success")));
    assert!(!exists(&s, "web-1").await);

    let missing = evict(&s, "web-1", json!({})).await;
    assert_eq!(missing.code(), 404);
    assert_eq!(missing.body["message"], r#"pods "web-1" not found"#);
}

#[tokio::test]
async fn a_budget_allows_what_it_allows_then_answers_429() {
    let s = TestServer::start().await;
    for name in ["web-1", "web-2", "web-3"] {
        running_pod(&s, name, None, true).await;
    }
    budget(&s, "web", 1, 3, 2).await;

    let first = evict(&s, "web-1", json!({})).await;
    assert_eq!(first.code(), 201, "{:?}", first.body);
    assert!(!exists(&s, "web-1").await);
    let status = &s.get(&format!("{PDBS}/web")).await.body["status"];
    assert_eq!(status["disruptionsAllowed"], 0);
    assert!(status["disruptedPods"]["web-1"].is_string(), "{status}");
    let condition = &status["conditions"][0];
    assert_eq!((&condition["type"], &condition["status"]), (&json!("DisruptionAllowed"), &json!("False")));
    assert_eq!(condition["reason"], "InsufficientPods");

    let refused = evict(&s, "web-2", json!({})).await;
    assert_eq!(refused.code(), 429, "{:?}", refused.body);
    assert_eq!(refused.body["reason"], "TooManyRequests");
    assert_eq!(refused.body["message"], VIOLATES);
    let cause = &refused.body["details"]["causes"][0];
    assert_eq!(cause["reason"], "DisruptionBudget");
    assert_eq!(cause["message"], "The disruption budget web needs 2 healthy pods and has 3 currently");
    // No Retry-After: clients decide when to ask again (kubectl drain waits 5 s).
    assert!(refused.headers.get("retry-after").is_none());
    assert!(exists(&s, "web-2").await);
}

#[tokio::test]
async fn a_budget_not_yet_observed_asks_to_retry_later() {
    let s = TestServer::start().await;
    running_pod(&s, "web-1", None, true).await;
    budget(&s, "web", 1, 1, 0).await;
    // A spec change the controller has not seen: observedGeneration 1 < generation 2.
    let changed =
        s.patch(&format!("{PDBS}/web"), "application/merge-patch+json", &json!({"spec": {"minAvailable": 1}})).await;
    assert_eq!(changed.body["metadata"]["generation"], 2);
    let refused = evict(&s, "web-1", json!({})).await;
    assert_eq!(refused.code(), 429);
    assert_eq!(
        refused.body["details"]["causes"][0]["message"],
        "The disruption budget web is still being processed by the server."
    );
    assert_eq!(refused.body["details"]["retryAfterSeconds"], 10);
    assert_eq!(refused.headers["retry-after"], "10");
}

#[tokio::test]
async fn two_budgets_for_one_pod_are_an_error() {
    let s = TestServer::start().await;
    running_pod(&s, "web-1", None, true).await;
    budget(&s, "a", 1, 1, 0).await;
    budget(&s, "b", 1, 1, 0).await;
    let answer = evict(&s, "web-1", json!({})).await;
    assert_eq!(answer.code(), 500);
    assert_eq!(
        answer.body["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(exists(&s, "web-1").await);
}

#[tokio::test]
async fn unready_and_pending_pods_do_not_spend_the_budget() {
    let s = TestServer::start().await;
    running_pod(&s, "web-1", None, true).await;
    running_pod(&s, "web-2", None, true).await;
    running_pod(&s, "sick", None, false).await;
    // Two healthy of two desired: no disruption left, but an unready pod costs nothing.
    budget(&s, "web", 0, 2, 2).await;
    let answer = evict(&s, "sick", json!({})).await;
    assert_eq!(answer.code(), 201, "{:?}", answer.body);
    assert!(!exists(&s, "sick").await);
    assert_eq!(s.get(&format!("{PDBS}/web")).await.body["status"]["disruptionsAllowed"], 0);

    // A pod that never ran (no status: Pending) disrupts nothing either.
    let pending = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waiting", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    assert_eq!(s.post(PODS, &pending).await.code(), 201);
    assert_eq!(evict(&s, "waiting", json!({})).await.code(), 201);
    assert!(!exists(&s, "waiting").await);
    assert_eq!(evict(&s, "web-1", json!({})).await.code(), 429);
}

#[tokio::test]
async fn delete_options_are_honoured_and_the_pod_is_marked_as_a_disruption_target() {
    let s = TestServer::start().await;
    running_pod(&s, "web-1", Some("node-a"), true).await;
    budget(&s, "web", 1, 1, 0).await;
    let answer = evict(&s, "web-1", json!({"deleteOptions": {"gracePeriodSeconds": 7}})).await;
    assert_eq!(answer.code(), 201, "{:?}", answer.body);
    // Bound to a node: graceful deletion, waiting for the node to stop it.
    let pod = s.get(&format!("{PODS}/web-1")).await.body;
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 7);
    let condition = pod["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "DisruptionTarget");
    let condition = condition.expect("DisruptionTarget condition");
    assert_eq!((&condition["status"], &condition["reason"]), (&json!("True"), &json!("EvictionByEvictionAPI")));
    assert_eq!(condition["message"], "Eviction API: evicting");

    // A wrong UID precondition refuses the eviction (here without a budget: with one,
    // the disruption is taken before the deletion is refused, as in Kubernetes).
    assert_eq!(s.delete(&format!("{PDBS}/web")).await.code(), 200);
    running_pod(&s, "web-2", None, true).await;
    let wrong = evict(&s, "web-2", json!({"deleteOptions": {"preconditions": {"uid": "not-it"}}})).await;
    assert_eq!(wrong.code(), 409, "{:?}", wrong.body);
}

#[tokio::test]
async fn dry_run_and_mismatched_names_change_nothing() {
    let s = TestServer::start().await;
    running_pod(&s, "web-1", None, true).await;
    budget(&s, "web", 1, 1, 0).await;
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "web-1"}});
    let dry = s.post(&format!("{PODS}/web-1/eviction?dryRun=All"), &eviction).await;
    assert_eq!(dry.code(), 201, "{:?}", dry.body);
    assert!(exists(&s, "web-1").await);
    assert_eq!(s.get(&format!("{PDBS}/web")).await.body["status"]["disruptionsAllowed"], 1);

    let other = s.post(&format!("{PODS}/web-2/eviction"), &eviction).await;
    assert_eq!(other.code(), 400);
    assert_eq!(other.body["message"], "name in URL does not match name in Eviction object");

    // policy/v1beta1 Evictions are accepted too.
    let beta = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "web-1"}});
    assert_eq!(s.post(&format!("{PODS}/web-1/eviction"), &beta).await.code(), 201);
    assert!(!exists(&s, "web-1").await);
}

#[tokio::test]
async fn unhealthy_pods_may_always_go_when_the_budget_says_so() {
    let s = TestServer::start().await;
    running_pod(&s, "sick-1", None, false).await;
    running_pod(&s, "sick-2", None, false).await;
    // One healthy of two desired: by default an unready pod is protected too...
    budget(&s, "web", 0, 1, 2).await;
    let refused = evict(&s, "sick-1", json!({})).await;
    assert_eq!(refused.code(), 429, "{:?}", refused.body);
    // ...unless the budget's unhealthyPodEvictionPolicy is AlwaysAllow.
    let policy = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}});
    assert_eq!(s.patch(&format!("{PDBS}/web"), "application/merge-patch+json", &policy).await.code(), 200);
    let allowed = evict(&s, "sick-1", json!({})).await;
    assert_eq!(allowed.code(), 201, "{:?}", allowed.body);
    assert!(!exists(&s, "sick-1").await);
}
