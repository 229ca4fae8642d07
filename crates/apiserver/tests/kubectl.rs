//! The real kubectl against an in-process server, with the generated kubeconfig.
//! Output is checked, not only exit codes.

use skiff_testkit::{fails, ok, TestServer};

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels: {app: web}
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
type: Opaque
data:
  password: aHVudGVyMg==
---
apiVersion: v1
kind: Pod
metadata:
  name: box
  namespace: shop
  labels: {app: web}
spec:
  containers:
  - name: main
    image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
"#;

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn json(output: &str) -> serde_json::Value {
    serde_json::from_str(output).unwrap_or_else(|e| panic!("{e}: {output}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn create_get_label_annotate_delete_every_kind() {
    let s = TestServer::start().await;
    let created = ok(&s.kubectl_stdin(&["create", "-f", "-"], MANIFESTS));
    for line in [
        "namespace/shop created",
        "configmap/settings created",
        "secret/creds created",
        "pod/box created",
        "service/web created",
        "deployment.apps/web created",
    ] {
        assert!(created.contains(line), "missing {line:?} in {created}");
    }

    let names = ok(&s.kubectl(&["get", "configmaps,secrets,pods,services,deployments", "-n", "shop", "-o", "name"]));
    assert_eq!(
        names.lines().collect::<Vec<_>>(),
        ["configmap/settings", "secret/creds", "pod/box", "service/web", "deployment.apps/web"]
    );

    let cm = json(&ok(&s.kubectl(&["get", "configmap", "settings", "-n", "shop", "-o", "json"])));
    assert_eq!(cm["data"]["color"], "blue");
    assert_eq!(cm["metadata"]["namespace"], "shop");
    let yaml = ok(&s.kubectl(&["get", "secret", "creds", "-n", "shop", "-o", "yaml"]));
    assert!(yaml.contains("password: aHVudGVyMg=="), "{yaml}");
    assert!(yaml.contains("kind: Secret"));
    let ns = json(&ok(&s.kubectl(&["get", "namespace", "shop", "-o", "json"])));
    assert_eq!(ns["status"]["phase"], "Active");

    let svc = json(&ok(&s.kubectl(&["get", "service", "web", "-n", "shop", "-o", "json"])));
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.43."), "{ip}");
    let jsonpath = ok(&s.kubectl(&["get", "svc", "web", "-n", "shop", "-o", "jsonpath={.spec.clusterIP}"]));
    assert_eq!(jsonpath, ip);

    assert_eq!(ok(&s.kubectl(&["label", "pod", "box", "-n", "shop", "tier=front"])).trim(), "pod/box labeled");
    assert_eq!(
        ok(&s.kubectl(&["annotate", "deployment", "web", "-n", "shop", "owner=team-a"])).trim(),
        "deployment.apps/web annotated"
    );
    let labels = ok(&s.kubectl(&["get", "pod", "box", "-n", "shop", "-o", "jsonpath={.metadata.labels}"]));
    assert_eq!(json(&labels), serde_json::json!({"app": "web", "tier": "front"}));
    let selected = ok(&s.kubectl(&["get", "pods,configmaps", "-n", "shop", "-l", "tier=front", "-o", "name"]));
    assert_eq!(selected.trim(), "pod/box");
    assert_eq!(ok(&s.kubectl(&["label", "pod", "box", "-n", "shop", "tier-"])).trim(), "pod/box unlabeled");
    let overwrite = fails(&s.kubectl(&["label", "pod", "box", "-n", "shop", "app=db"]));
    assert!(overwrite.contains("already has a value"), "{overwrite}");
    let annotation =
        ok(&s.kubectl(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.metadata.annotations.owner}"]));
    assert_eq!(annotation, "team-a");

    let missing = fails(&s.kubectl(&["get", "configmap", "nope", "-n", "shop"]));
    assert!(missing.contains(r#"configmaps "nope" not found"#), "{missing}");
    let duplicate = fails(&s.kubectl_stdin(&["create", "-f", "-"], MANIFESTS));
    assert!(duplicate.contains("already exists"), "{duplicate}");

    let deleted = ok(&s.kubectl(&["delete", "configmap", "settings", "-n", "shop"]));
    assert_eq!(deleted.trim(), r#"configmap "settings" deleted"#);
    let deleted = ok(&s.kubectl(&[
        "delete",
        "pods,services,deployments,secrets",
        "--all",
        "-n",
        "shop",
        "--grace-period=0",
        "--force",
    ]));
    for line in [
        r#"pod "box" force deleted"#,
        r#"service "web" force deleted"#,
        r#"deployment.apps "web" force deleted"#,
        r#"secret "creds" force deleted"#,
    ] {
        assert!(deleted.contains(line), "missing {line:?} in {deleted}");
    }
    let empty = s.kubectl(&["get", "all", "-n", "shop", "-o", "name"]);
    assert_eq!(ok(&empty).trim(), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_uses_optimistic_concurrency() {
    let s = TestServer::start().await;
    ok(&s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {a: '1'}\n",
    ));
    let mut current = json(&ok(&s.kubectl(&["get", "cm", "conf", "-o", "json"])));
    current["data"]["a"] = "2".into();
    let replaced = ok(&s.kubectl_stdin(&["replace", "-f", "-"], &current.to_string()));
    assert_eq!(replaced.trim(), "configmap/conf replaced");
    // The same (now stale) resourceVersion again: a conflict.
    current["data"]["a"] = "3".into();
    let conflict = fails(&s.kubectl_stdin(&["replace", "-f", "-"], &current.to_string()));
    assert!(conflict.contains("the object has been modified"), "{conflict}");
    assert_eq!(ok(&s.kubectl(&["get", "cm", "conf", "-o", "jsonpath={.data.a}"])), "2");
    // --force deletes and recreates.
    let forced = ok(&s.kubectl_stdin(
        &["replace", "--force", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\ndata: {a: '9'}\n",
    ));
    assert!(forced.contains("configmap/conf replaced") || forced.contains("configmap \"conf\" deleted"), "{forced}");
    assert_eq!(ok(&s.kubectl(&["get", "cm", "conf", "-o", "jsonpath={.data.a}"])), "9");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_watch_streams_changes() {
    let s = TestServer::start().await;
    ok(&s.kubectl_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n"));
    let kubeconfig = s.kubeconfig().to_path_buf();
    let watcher = std::thread::spawn(move || {
        skiff_testkit::kubectl(
            &kubeconfig,
            &["get", "configmaps", "--watch", "-o", "name", "--request-timeout=4s"],
            None,
        )
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    ok(&s.kubectl_stdin(&["create", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: second}\n"));
    ok(&s.kubectl(&["label", "cm", "first", "seen=yes"]));
    let output = watcher.join().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        ["configmap/first", "configmap/second", "configmap/first"],
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_paginated_lists() {
    let s = TestServer::start().await;
    let many: String =
        (0..7).map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\n---\n")).collect();
    ok(&s.kubectl_stdin(&["create", "-f", "-"], &many));
    let page = json(&ok(&s.kubectl(&["get", "--raw", "/api/v1/namespaces/default/configmaps?limit=3"])));
    assert_eq!(page["kind"], "ConfigMapList");
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let token = page["metadata"]["continue"].as_str().unwrap();
    let next = json(&ok(&s.kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?limit=3&continue={token}"),
    ])));
    let names: Vec<_> =
        next["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["cm-3", "cm-4", "cm-5"]);
    // kubectl's own chunked get (--chunk-size) reassembles the pages.
    let all = ok(&s.kubectl(&["get", "cm", "--chunk-size=2", "-o", "name"]));
    assert_eq!(all.lines().count(), 7, "{all}");
}

/// kubectl's typed commands send protobuf bodies.
#[tokio::test(flavor = "multi_thread")]
async fn typed_create_commands() {
    let s = TestServer::start().await;
    assert_eq!(ok(&s.kubectl(&["create", "namespace", "team"])).trim(), "namespace/team created");
    assert_eq!(
        ok(&s.kubectl(&["create", "configmap", "cfg", "-n", "team", "--from-literal=mode=fast"])).trim(),
        "configmap/cfg created"
    );
    assert_eq!(
        ok(&s.kubectl(&["create", "secret", "generic", "pw", "-n", "team", "--from-literal=pw=s3cret"])).trim(),
        "secret/pw created"
    );
    assert_eq!(
        ok(&s.kubectl(&["create", "deployment", "api", "-n", "team", "--image=busybox:1.36", "--replicas=0"])).trim(),
        "deployment.apps/api created"
    );
    assert_eq!(
        ok(&s.kubectl(&["create", "service", "clusterip", "api", "-n", "team", "--tcp=80:8080"])).trim(),
        "service/api created"
    );
    assert_eq!(ok(&s.kubectl(&["get", "cm", "cfg", "-n", "team", "-o", "jsonpath={.data.mode}"])), "fast");
    assert_eq!(ok(&s.kubectl(&["get", "secret", "pw", "-n", "team", "-o", "jsonpath={.data.pw}"])), "czNjcmV0");
    let deployment = json(&ok(&s.kubectl(&["get", "deploy", "api", "-n", "team", "-o", "json"])));
    assert_eq!(deployment["spec"]["replicas"], 0);
    assert_eq!(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
    let service = json(&ok(&s.kubectl(&["get", "svc", "api", "-n", "team", "-o", "json"])));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(service["spec"]["type"], "ClusterIP");
    let ns = json(&ok(&s.kubectl(&["get", "ns", "team", "-o", "json"])));
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team");
    assert_eq!(
        ok(&s.kubectl(&["scale", "deployment", "api", "-n", "team", "--replicas=3"])).trim(),
        "deployment.apps/api scaled"
    );
    assert_eq!(ok(&s.kubectl(&["get", "deploy", "api", "-n", "team", "-o", "jsonpath={.spec.replicas}"])), "3");
    let invalid = fails(&s.kubectl(&["create", "configmap", "Bad_Name", "--from-literal=a=b"]));
    assert!(invalid.contains(r#"ConfigMap "Bad_Name" is invalid"#), "{invalid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn whoami_version_cluster_info_and_api_resources() {
    let s = TestServer::start().await;
    let whoami = ok(&s.kubectl(&["auth", "whoami"]));
    assert!(whoami.contains("system:admin") && whoami.contains("system:masters"), "{whoami}");
    let version = ok(&s.kubectl(&["version"]));
    assert!(version.contains("Server Version: v1.33."), "{version}");
    let info = ok(&s.kubectl(&["cluster-info"]));
    assert!(info.contains(&format!("Kubernetes control plane is running at {}", s.url)), "{info}");
    let resources = ok(&s.kubectl(&["api-resources", "--api-group=apps", "-o", "name"]));
    assert_eq!(
        resources.lines().collect::<Vec<_>>(),
        ["controllerrevisions.apps", "daemonsets.apps", "deployments.apps", "replicasets.apps", "statefulsets.apps"]
    );
    let short = ok(&s.kubectl(&["get", "deploy,sts,ds,rs,cm,ns,sa,svc", "-A", "-o", "name"]));
    assert!(short.contains("namespace/kube-system") && short.contains("service/kubernetes"), "{short}");
}

fn header(output: &str) -> Vec<String> {
    output.lines().next().unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

/// `kubectl get` prints the server's Table columns, as on Kubernetes.
#[tokio::test(flavor = "multi_thread")]
async fn get_prints_kubernetes_columns() {
    let s = TestServer::start().await;
    ok(&s.kubectl_stdin(&["create", "-f", "-"], MANIFESTS));
    let pods = ok(&s.kubectl(&["get", "pods", "-n", "shop"]));
    assert_eq!(header(&pods), ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = pods.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["box", "0/1", "Pending", "0"]);
    let wide = ok(&s.kubectl(&["get", "pods", "-n", "shop", "-o", "wide"]));
    assert_eq!(header(&wide)[5..], ["IP", "NODE", "NOMINATED", "NODE", "READINESS", "GATES"], "{wide}");
    let deployments = ok(&s.kubectl(&["get", "deploy", "-n", "shop"]));
    assert_eq!(header(&deployments), ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(deployments.contains("web    0/2"), "{deployments}");
    let services = ok(&s.kubectl(&["get", "svc", "-n", "shop"]));
    assert_eq!(header(&services), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert!(services.contains("ClusterIP") && services.contains("80/TCP"), "{services}");
    let namespaces = ok(&s.kubectl(&["get", "ns", "shop"]));
    assert_eq!(header(&namespaces), ["NAME", "STATUS", "AGE"]);
    assert!(namespaces.contains("shop   Active"), "{namespaces}");
    let secrets = ok(&s.kubectl(&["get", "secrets", "-n", "shop"]));
    assert_eq!(header(&secrets), ["NAME", "TYPE", "DATA", "AGE"]);
    let labels = ok(&s.kubectl(&["get", "cm", "-n", "shop", "--show-labels"]));
    assert_eq!(header(&labels), ["NAME", "DATA", "AGE", "LABELS"]);
    assert!(labels.contains("app=web"), "{labels}");
    let all = ok(&s.kubectl(&["get", "all", "-n", "shop"]));
    assert!(all.contains("pod/box") && all.contains("service/web") && all.contains("deployment.apps/web"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_reads_the_openapi_schemas() {
    let s = TestServer::start().await;
    let explained = ok(&s.kubectl(&["explain", "deployment.spec.strategy"]));
    assert!(explained.contains("KIND:       Deployment"), "{explained}");
    assert!(explained.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{explained}");
    let nested = ok(&s.kubectl(&["explain", "pods.spec.containers.ports.containerPort"]));
    assert!(nested.contains("FIELD: containerPort <integer>"), "{nested}");
    let missing = fails(&s.kubectl(&["explain", "pods.spec.nonsense"]));
    assert!(missing.contains("field \"nonsense\" does not exist"), "{missing}");
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_wait_sort_columns_expose() {
    let s = TestServer::start().await;
    ok(&s.kubectl_stdin(&["create", "-f", "-"], MANIFESTS));
    // An event about the pod, recorded through events.k8s.io as controllers do.
    ok(&s.kubectl_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "box.1", "namespace": "shop"},
            "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "skiff/test", "reportingInstance": "t",
            "action": "Testing", "reason": "Checked", "type": "Normal", "note": "looked at the box",
            "regarding": {"kind": "Pod", "namespace": "shop", "name": "box", "apiVersion": "v1"}}"#,
    ));
    let uid = ok(&s.kubectl(&["get", "pod", "box", "-n", "shop", "-o", "jsonpath={.metadata.uid}"]));
    ok(&s.kubectl(&[
        "patch",
        "events.v1.events.k8s.io",
        "box.1",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        &format!(r#"{{"regarding": {{"uid": "{uid}"}}}}"#),
    ]));
    let described = ok(&s.kubectl(&["describe", "pod", "box", "-n", "shop"]));
    assert!(described.contains("Name:             box"), "{described}");
    assert!(described.contains("Checked") && described.contains("looked at the box"), "events are shown:\n{described}");
    let described = ok(&s.kubectl(&["describe", "deployment", "web", "-n", "shop"]));
    assert!(described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"), "{described}");

    let waited =
        ok(&s.kubectl(&["wait", "--for=jsonpath={.status.phase}=Pending", "pod/box", "-n", "shop", "--timeout=10s"]));
    assert!(waited.contains("pod/box condition met"), "{waited}");

    for name in ["zeta", "alpha", "mid"] {
        ok(&s.kubectl_stdin(
            &["create", "-f", "-"],
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{sorted: 'yes'}}}}\n"),
        ));
    }
    let sorted = ok(&s.kubectl(&[
        "get",
        "cm",
        "-l",
        "sorted=yes",
        "--sort-by=.metadata.name",
        "-o",
        "custom-columns=N:.metadata.name",
    ]));
    assert_eq!(sorted.lines().collect::<Vec<_>>(), ["N", "alpha", "mid", "zeta"]);
    let field = ok(&s.kubectl(&["get", "cm", "--field-selector=metadata.name=mid", "-o", "name"]));
    assert_eq!(field.trim(), "configmap/mid");
    let deleted = ok(&s.kubectl(&["delete", "cm", "-l", "sorted=yes"]));
    assert_eq!(deleted.lines().count(), 3, "{deleted}");

    let exposed = ok(&s.kubectl(&["expose", "deployment", "web", "-n", "shop", "--port=8080", "--name=web-alt"]));
    assert_eq!(exposed.trim(), "service/web-alt exposed");
    let selector = ok(&s.kubectl(&["get", "svc", "web-alt", "-n", "shop", "-o", "jsonpath={.spec.selector.app}"]));
    assert_eq!(selector, "web");
    let versions = ok(&s.kubectl(&["api-versions"]));
    assert!(versions.lines().any(|l| l == "apps/v1") && versions.lines().any(|l| l == "v1"), "{versions}");
}

const APPLIED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels: {app: api}
  template:
    metadata:
      labels: {app: api}
    spec:
      containers:
      - name: api
        image: busybox:1.36
        env: [{name: MODE, value: fast}, {name: DEBUG, value: "1"}]
      - name: sidecar
        image: busybox:1.36
"#;

#[tokio::test(flavor = "multi_thread")]
async fn apply_client_and_server_side_patch_edit_set_image() {
    let s = TestServer::start().await;
    assert_eq!(ok(&s.kubectl_stdin(&["apply", "-f", "-"], APPLIED)).trim(), "deployment.apps/api created");
    assert_eq!(ok(&s.kubectl_stdin(&["apply", "-f", "-"], APPLIED)).trim(), "deployment.apps/api unchanged");
    // Removing a container and an env var from the manifest removes them (three-way merge).
    let changed = APPLIED
        .replace(", {name: DEBUG, value: \"1\"}", "")
        .replace("      - name: sidecar\n        image: busybox:1.36\n", "");
    assert_eq!(ok(&s.kubectl_stdin(&["apply", "-f", "-"], &changed)).trim(), "deployment.apps/api configured");
    let deployment = json(&ok(&s.kubectl(&["get", "deploy", "api", "-o", "json"])));
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["env"], serde_json::json!([{"name": "MODE", "value": "fast"}]));

    // Strategic merge patches merge lists by key.
    assert_eq!(
        ok(&s.kubectl(&["set", "image", "deployment/api", "api=busybox:1.37"])).trim(),
        "deployment.apps/api image updated"
    );
    ok(&s.kubectl(&[
        "patch",
        "deployment",
        "api",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"api","env":[{"name":"EXTRA","value":"x"}]}]}}}}"#,
    ]));
    let deployment = json(&ok(&s.kubectl(&["get", "deploy", "api", "-o", "json"])));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "busybox:1.37");
    assert_eq!(container["env"].as_array().unwrap().len(), 2, "{container}");
    ok(&s.kubectl(&[
        "patch",
        "deployment",
        "api",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]));
    ok(&s.kubectl(&["patch", "deployment", "api", "--type=merge", "-p", r#"{"metadata":{"labels":{"tier":"back"}}}"#]));
    let deployment = json(&ok(&s.kubectl(&["get", "deploy", "api", "-o", "json"])));
    assert_eq!(
        (deployment["spec"]["replicas"].as_i64(), deployment["metadata"]["labels"]["tier"].as_str()),
        (Some(4), Some("back"))
    );

    // kubectl edit through an editor that rewrites the image.
    let editor = s.dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/busybox:1.37/busybox:1.38/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let edited = std::process::Command::new("kubectl")
        .args(["edit", "deployment", "api"])
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert_eq!(ok(&edited).trim(), "deployment.apps/api edited");
    assert_eq!(
        ok(&s.kubectl(&["get", "deploy", "api", "-o", "jsonpath={.spec.template.spec.containers[0].image}"])),
        "busybox:1.38"
    );

    // Server-side apply: a conflict with the fields other managers set, then force.
    let conflict = fails(&s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &changed));
    assert!(conflict.contains("Apply failed with") && conflict.contains(".spec.replicas"), "{conflict}");
    let forced = ok(&s.kubectl_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], &changed));
    assert_eq!(forced.trim(), "deployment.apps/api serverside-applied");
    let managed = json(&ok(&s.kubectl(&["get", "deploy", "api", "-o", "json", "--show-managed-fields"])));
    let managers: Vec<&str> = managed["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl") && managers.contains(&"kubectl-client-side-apply"), "{managers:?}");
    assert_eq!(managed["spec"]["replicas"], 2);
    // A new object through server-side apply.
    let created = ok(&s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa}\ndata: {a: b}\n",
    ));
    assert_eq!(created.trim(), "configmap/ssa serverside-applied");
    let diff = s.kubectl_stdin(&["diff", "-f", "-"], &APPLIED.replace("replicas: 2", "replicas: 7"));
    assert_eq!(diff.status.code(), Some(1), "kubectl diff exits 1 when there are differences");
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("+  replicas: 7"),
        "{}",
        String::from_utf8_lossy(&diff.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kustomize_directories_generators_set_wait_proxy() {
    let s = TestServer::start().await;
    let dir = s.dir.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-dir-a}\n").unwrap();
    std::fs::write(dir.join("b.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-dir-b}\n").unwrap();
    let applied = ok(&s.kubectl(&["apply", "-f", dir.to_str().unwrap()]));
    assert!(
        applied.contains("configmap/from-dir-a created") && applied.contains("configmap/from-dir-b created"),
        "{applied}"
    );
    let kustomization = s.dir.path().join("kustomize");
    std::fs::create_dir_all(&kustomization).unwrap();
    std::fs::write(
        kustomization.join("kustomization.yaml"),
        "namePrefix: k-\nconfigMapGenerator:\n- name: gen\n  literals: [x=1]\nresources: [cm.yaml]\n",
    )
    .unwrap();
    std::fs::write(kustomization.join("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n")
        .unwrap();
    let kustomized = ok(&s.kubectl(&["apply", "-k", kustomization.to_str().unwrap()]));
    assert!(kustomized.contains("configmap/k-plain created"), "{kustomized}");

    let file = s.dir.path().join("settings.conf");
    std::fs::write(&file, "mode=fast\n").unwrap();
    ok(&s.kubectl(&["create", "configmap", "from-file", &format!("--from-file={}", file.display())]));
    assert_eq!(ok(&s.kubectl(&["get", "cm", "from-file", "-o", "jsonpath={.data.settings\\.conf}"])), "mode=fast\n");
    assert_eq!(
        ok(&s.kubectl(&["create", "job", "once", "--image=busybox:1.36", "--", "true"])).trim(),
        "job.batch/once created"
    );
    let job = json(&ok(&s.kubectl(&["get", "job", "once", "-o", "json"])));
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert!(job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"].is_string(), "{job}");

    ok(&s.kubectl(&["create", "deployment", "web", "--image=busybox:1.36"]));
    assert_eq!(
        ok(&s.kubectl(&["set", "env", "deployment/web", "MODE=fast"])).trim(),
        "deployment.apps/web env updated"
    );
    ok(&s.kubectl(&["set", "resources", "deployment/web", "--limits=cpu=200m,memory=64Mi"]));
    let container =
        &json(&ok(&s.kubectl(&["get", "deploy", "web", "-o", "json"])))["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["env"][0]["value"], "fast");
    assert_eq!(container["resources"]["limits"]["memory"], "64Mi");

    // wait for a condition set through the status subresource, and for a deletion.
    ok(&s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox}]}\n",
    ));
    ok(&s.kubectl(&[
        "patch",
        "pod",
        "p",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]));
    assert!(ok(&s.kubectl(&["wait", "--for=condition=Ready", "pod/p", "--timeout=10s"])).contains("condition met"));
    let kubeconfig = s.kubeconfig().to_path_buf();
    let waiter = std::thread::spawn(move || {
        skiff_testkit::kubectl(&kubeconfig, &["wait", "--for=delete", "cm/from-dir-a", "--timeout=10s"], None)
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    ok(&s.kubectl(&["delete", "cm", "from-dir-a", "--wait=false"]));
    assert!(ok(&waiter.join().unwrap()).contains("condition met"));

    let view = ok(&s.kubectl(&["config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"]));
    assert_eq!(view, s.url);
    // kubectl proxy serves the API on a local port without credentials.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proxy = std::process::Command::new("kubectl")
        .args(["proxy", &format!("--port={port}")])
        .env("KUBECONFIG", s.kubeconfig())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let proxy = KillOnDrop(proxy);
    let mut answer = None;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if let Ok(r) =
            reqwest::get(format!("http://127.0.0.1:{port}/api/v1/namespaces/default/configmaps/from-file")).await
        {
            answer = Some(r.json::<serde_json::Value>().await.unwrap());
            break;
        }
    }
    drop(proxy);
    assert_eq!(answer.expect("kubectl proxy answered")["data"]["settings.conf"], "mode=fast\n");
}

/// One object of each built-in kind kubectl has a describer for.
const EVERY_KIND: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: zoo}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {kubernetes.io/hostname: n1}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: robot, namespace: zoo}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg, namespace: zoo}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: sec, namespace: zoo}
stringData: {token: abc}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: zoo}
spec: {selector: {app: a}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual, namespace: zoo}
subsets: [{addresses: [{ip: 10.0.0.1}], ports: [{port: 80}]}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /tmp/pv1}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim, namespace: zoo}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: zoo}
spec: {limits: [{type: Container, default: {cpu: 500m}}]}
---
apiVersion: v1
kind: ResourceQuota
metadata: {name: quota, namespace: zoo}
spec: {hard: {pods: "10"}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs, namespace: zoo}
spec:
  replicas: 0
  selector: {matchLabels: {app: rs}}
  template: {metadata: {labels: {app: rs}}, spec: {containers: [{name: c, image: busybox}]}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts, namespace: zoo}
spec:
  replicas: 0
  serviceName: svc
  selector: {matchLabels: {app: sts}}
  template: {metadata: {labels: {app: sts}}, spec: {containers: [{name: c, image: busybox}]}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds, namespace: zoo}
spec:
  selector: {matchLabels: {app: ds}}
  template: {metadata: {labels: {app: ds}}, spec: {containers: [{name: c, image: busybox}]}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: job, namespace: zoo}
spec:
  suspend: true
  template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: cron, namespace: zoo}
spec:
  schedule: "*/5 * * * *"
  suspend: true
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa, namespace: zoo}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: ReplicaSet, name: rs}
  maxReplicas: 3
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: pdb, namespace: zoo}
spec: {minAvailable: 1, selector: {matchLabels: {app: rs}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing, namespace: zoo}
spec:
  rules: [{host: zoo.example, http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: svc, port: {number: 80}}}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: example.com/ingress}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: zoo}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: reader, namespace: zoo}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read, namespace: zoo}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}
subjects: [{kind: ServiceAccount, name: robot, namespace: zoo}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: viewer}
rules: [{apiGroups: [""], resources: [nodes], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: viewer}
subjects: [{kind: ServiceAccount, name: robot, namespace: zoo}]
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: local}
provisioner: kubernetes.io/no-provisioner
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: lock, namespace: zoo}
spec: {holderIdentity: me}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn describe_every_kind() {
    let s = TestServer::start().await;
    ok(&s.kubectl_stdin(&["apply", "-f", "-"], EVERY_KIND));
    let cases: &[(&str, &str, bool, &str)] = &[
        ("namespace", "zoo", false, "Status:"),
        ("node", "n1", false, "Labels:"),
        ("serviceaccount", "robot", true, "Mountable secrets:"),
        ("configmap", "cfg", true, "Data"),
        ("secret", "sec", true, "token:  3 bytes"),
        ("service", "svc", true, "Selector:"),
        ("endpoints", "manual", true, "Subsets:"),
        ("persistentvolume", "pv1", false, "Capacity:"),
        ("persistentvolumeclaim", "claim", true, "Access Modes:"),
        ("limitrange", "limits", true, "Container"),
        ("resourcequota", "quota", true, "Resource    Used  Hard"),
        ("replicaset", "rs", true, "Replicas:"),
        ("statefulset", "sts", true, "Update Strategy:"),
        ("daemonset", "ds", true, "Desired Number of Nodes Scheduled:"),
        ("job", "job", true, "Completions:"),
        ("cronjob", "cron", true, "Schedule:"),
        ("horizontalpodautoscaler", "hpa", true, "Min replicas:"),
        ("poddisruptionbudget", "pdb", true, "Min available:"),
        ("ingress", "ing", true, "Rules:"),
        ("ingressclass", "nginx", false, "Controller:"),
        ("networkpolicy", "deny", true, "PodSelector:"),
        ("role", "reader", true, "PolicyRule:"),
        ("rolebinding", "read", true, "Subjects:"),
        ("clusterrole", "viewer", false, "PolicyRule:"),
        ("clusterrolebinding", "view", false, "Subjects:"),
        ("storageclass", "local", false, "Provisioner:"),
        ("priorityclass", "high", false, "Value:"),
        ("lease", "lock", true, "Holder Identity:"),
    ];
    for (kind, name, namespaced, expected) in cases {
        let mut args = vec!["describe", kind, name];
        if *namespaced {
            args.extend(["-n", "zoo"]);
        }
        let described = ok(&s.kubectl(&args));
        assert!(
            described.lines().next().is_some_and(|l| l.starts_with("Name:") && l.ends_with(name)),
            "{kind}:\n{described}"
        );
        assert!(described.contains(expected), "{kind}: no {expected:?} in\n{described}");
    }
    let hpa = ok(&s.kubectl(&["get", "hpa", "-n", "zoo"]));
    let row: Vec<&str> = hpa.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..7], ["hpa", "ReplicaSet/rs", "cpu:", "<unknown>/50%", "1", "3", "0"], "{hpa}");
    let bad = fails(&s.kubectl_stdin(
        &["apply", "-f", "-"],
        "{apiVersion: autoscaling/v2, kind: HorizontalPodAutoscaler, metadata: {name: bad, namespace: zoo}, spec: {scaleTargetRef: {kind: ReplicaSet, name: rs}, minReplicas: 4, maxReplicas: 2}}",
    ));
    assert!(
        bad.contains("spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"),
        "{bad}"
    );
}
