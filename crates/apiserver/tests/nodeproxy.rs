//! The subresources served by node agents, as the API server answers them on its own:
//! discovery, the checks made before anything is forwarded, and an agent that cannot be
//! reached. (Forwarding to a real agent is tested in skiff-agent's tests/streaming.rs.)

use skiff_testkit::{json, TestServer};

async fn pod(s: &TestServer, name: &str, node: Option<&str>) {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    let answer = s.post("/api/v1/namespaces/default/pods", &pod).await;
    assert_eq!(answer.code(), 201, "{}", answer.body);
}

#[tokio::test]
async fn discovery_lists_the_streaming_subresources() {
    let s = TestServer::start().await;
    let legacy = s.get("/api/v1").await;
    let resources = legacy.body["resources"].as_array().unwrap();
    let find = |name: &str| resources.iter().find(|r| r["name"] == name).cloned().unwrap_or_default();
    assert_eq!(find("pods/log")["kind"], "Pod");
    assert_eq!(find("pods/exec")["kind"], "PodExecOptions");
    assert_eq!(find("pods/exec")["verbs"], json!(["create", "get"]));
    assert_eq!(find("pods/attach")["kind"], "PodAttachOptions");
    assert_eq!(find("pods/portforward")["kind"], "PodPortForwardOptions");
    assert_eq!(find("nodes/proxy")["kind"], "NodeProxyOptions");

    let aggregated = s
        .client
        .get(format!("{}/api", s.url))
        .header("accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let pods = aggregated["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "pods")
        .cloned()
        .unwrap();
    let subresources: Vec<&str> =
        pods["subresources"].as_array().unwrap().iter().filter_map(|s| s["subresource"].as_str()).collect();
    for sub in ["status", "binding", "attach", "exec", "log", "portforward"] {
        assert!(subresources.contains(&sub), "{sub}: {subresources:?}");
    }
}

#[tokio::test]
async fn checks_before_forwarding() {
    let s = TestServer::start().await;
    pod(&s, "pending", None).await;
    // An unbound pod's log is empty, as kube-apiserver answers it.
    let log = s.client.get(format!("{}/api/v1/namespaces/default/pods/pending/log", s.url)).send().await.unwrap();
    assert_eq!(log.status(), 200);
    assert_eq!(log.text().await.unwrap(), "");
    let exec = s.post("/api/v1/namespaces/default/pods/pending/exec?command=sh", &json!({})).await;
    assert_eq!((exec.code(), exec.body["message"].as_str()), (400, Some("pod pending does not have a host assigned")));
    let forward = s.get("/api/v1/namespaces/default/pods/pending/portforward").await;
    assert_eq!(forward.code(), 400);
    let missing = s.get("/api/v1/namespaces/default/pods/nope/log").await;
    assert_eq!((missing.code(), missing.body["message"].as_str()), (404, Some("pods \"nope\" not found")));
    let wrong = s.get("/api/v1/namespaces/default/pods/pending/log?container=other").await;
    assert_eq!(wrong.body["message"], "container other is not valid for pod pending");
    let method = s.delete("/api/v1/namespaces/default/pods/pending/log").await;
    assert_eq!(method.code(), 405);

    // Bound to a node that does not exist, then to one whose agent is not listening.
    pod(&s, "lost", Some("ghost")).await;
    let answer = s.get("/api/v1/namespaces/default/pods/lost/log").await;
    assert_eq!((answer.code(), answer.body["message"].as_str()), (404, Some("nodes \"ghost\" not found")));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ghost"}});
    assert_eq!(s.post("/api/v1/nodes", &node).await.code(), 201);
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    let patched = s.patch("/api/v1/nodes/ghost/status", "application/merge-patch+json", &status).await;
    assert_eq!(patched.code(), 200, "{}", patched.body);
    let answer = s.get("/api/v1/namespaces/default/pods/lost/log").await;
    assert_eq!(answer.code(), 500);
    let message = answer.body["message"].as_str().unwrap();
    assert!(message.contains(&format!("https://127.0.0.1:{port}/containerLogs/default/lost/app")), "{message}");
}
