//! The Priority admission plugin through HTTPS: pods get their priority and
//! preemptionPolicy from their PriorityClass, with Kubernetes' errors.

use skiff_testkit::{json, TestServer};

const PODS: &str = "/api/v1/namespaces/default/pods";
const CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";

fn pod(name: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

fn class(name: &str, value: i64, extra: serde_json::Value) -> serde_json::Value {
    let mut class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name}, "value": value});
    for (key, value) in extra.as_object().unwrap() {
        class[key] = value.clone();
    }
    class
}

#[tokio::test]
async fn system_classes_exist_from_bootstrap() {
    let s = TestServer::start().await;
    let critical = s.get(&format!("{CLASSES}/system-cluster-critical")).await;
    assert_eq!(critical.code(), 200);
    assert_eq!(critical.body["value"], 2_000_000_000);
    let node = s.get(&format!("{CLASSES}/system-node-critical")).await;
    assert_eq!(node.body["value"], 2_000_001_000);
    assert_eq!(node.body["preemptionPolicy"], "PreemptLowerPriority");

    let created = s
        .post(
            "/api/v1/namespaces/kube-system/pods",
            &pod("dns", json!({"priorityClassName": "system-cluster-critical"})),
        )
        .await;
    assert_eq!(created.code(), 201, "{}", created.body);
    assert_eq!(created.body["spec"]["priority"], 2_000_000_000);
}

#[tokio::test]
async fn a_class_sets_priority_and_preemption_policy() {
    let s = TestServer::start().await;
    assert_eq!(s.post(CLASSES, &class("high", 1000, json!({"preemptionPolicy": "Never"}))).await.code(), 201);
    let created = s.post(PODS, &pod("p", json!({"priorityClassName": "high"}))).await;
    assert_eq!(created.code(), 201, "{}", created.body);
    assert_eq!(created.body["spec"]["priority"], 1000);
    assert_eq!(created.body["spec"]["preemptionPolicy"], "Never");
    // A full PUT without the admitted fields keeps them.
    let mut replaced = created.body.clone();
    replaced["spec"].as_object_mut().unwrap().remove("priority");
    replaced["spec"].as_object_mut().unwrap().remove("preemptionPolicy");
    replaced["metadata"]["labels"] = json!({"x": "y"});
    let updated = s.put(&format!("{PODS}/p"), &replaced).await;
    assert_eq!(updated.code(), 200, "{}", updated.body);
    assert_eq!(updated.body["spec"]["priority"], 1000);
    assert_eq!(updated.body["spec"]["preemptionPolicy"], "Never");
}

#[tokio::test]
async fn without_a_class_the_global_default_or_zero() {
    let s = TestServer::start().await;
    let plain = s.post(PODS, &pod("before", json!({}))).await;
    assert_eq!(plain.code(), 201, "{}", plain.body);
    assert_eq!(plain.body["spec"]["priority"], 0);
    assert_eq!(plain.body["spec"]["preemptionPolicy"], "PreemptLowerPriority");

    assert_eq!(s.post(CLASSES, &class("usual", 100, json!({"globalDefault": true}))).await.code(), 201);
    let defaulted =
        skiff_testkit::eventually("the default class applies", std::time::Duration::from_secs(10), || async {
            let name = format!("after-{}", rand_suffix());
            let created = s.post(PODS, &pod(&name, json!({}))).await;
            (created.body["spec"]["priority"] == 100).then_some(created)
        })
        .await;
    assert_eq!(defaulted.code(), 201);
    assert_eq!(defaulted.body["spec"]["preemptionPolicy"], "PreemptLowerPriority");
}

fn rand_suffix() -> String {
    format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
}

#[tokio::test]
async fn unknown_classes_and_disagreeing_values_are_forbidden() {
    let s = TestServer::start().await;
    let missing = s.post(PODS, &pod("p", json!({"priorityClassName": "nope"}))).await;
    assert_eq!(missing.code(), 403);
    assert_eq!(missing.body["reason"], "Forbidden");
    assert_eq!(missing.body["message"], "pods \"p\" is forbidden: no PriorityClass with name nope was found");

    assert_eq!(s.post(CLASSES, &class("high", 1000, json!({}))).await.code(), 201);
    let wrong = s.post(PODS, &pod("q", json!({"priorityClassName": "high", "priority": 5}))).await;
    assert_eq!(wrong.code(), 403);
    assert_eq!(
        wrong.body["message"],
        "pods \"q\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    );
    let wrong_policy = s.post(PODS, &pod("r", json!({"priorityClassName": "high", "preemptionPolicy": "Never"}))).await;
    assert_eq!(wrong_policy.code(), 403);
    assert!(wrong_policy.body["message"].as_str().unwrap().contains("the string value of PreemptionPolicy (Never)"));
    // Agreeing with the class is allowed.
    let same = s.post(PODS, &pod("s", json!({"priorityClassName": "high", "priority": 1000}))).await;
    assert_eq!(same.code(), 201, "{}", same.body);
    // Nothing was stored for the rejected pods.
    assert_eq!(s.get(&format!("{PODS}/p")).await.code(), 404);
}
