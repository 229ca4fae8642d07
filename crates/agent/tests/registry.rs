//! Pulling from a real registry with credentials: Debian's docker-registry (registry:2) on
//! 127.0.0.1 with htpasswd authentication, served over plain HTTP and declared to the
//! node's containerd in its registry config directory (certs.d/HOST/hosts.toml). The test
//! pushes a busybox image it builds (the OCI distribution API, with the credentials), then
//! a pod without imagePullSecrets fails to pull (ErrImagePull, then ImagePullBackOff, with
//! the runtime's error as the kubelet shows it) and a pod with a
//! kubernetes.io/dockerconfigjson Secret runs.

use std::collections::HashMap;
use std::io::Read;
use std::panic::AssertUnwindSafe;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use kube::ResourceExt;
use skiff_agent::runtime::Runtime;
use skiff_testkit::{json, reqwest};

mod common;
use common::{eventually, message_of, running_and_ready, waiting_reasons_until, RealNode, NODE};

const USER: &str = "skiff";
const PASSWORD: &str = "registry-s3cret";
const REPOSITORY: &str = "team/private";

/// A docker-registry process with htpasswd auth on a free local port, killed on drop.
struct Registry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    async fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("htpasswd (apt-get install apache2-utils)");
        assert!(htpasswd.status.success(), "{}", String::from_utf8_lossy(&htpasswd.stderr));
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n\
             http:\n  addr: {host}\n  secret: skiff-test-secret\nauth:\n  htpasswd:\n    realm: skiff-test\n    path: {htpasswd}\n",
            root = dir.path().join("storage").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install docker-registry)");
        let registry = Registry { child, host, _dir: dir };
        // Anonymous requests are refused once it serves.
        let http = http();
        let base = format!("http://{}/v2/", registry.host);
        eventually("the registry serving", 30, || async {
            let response = http.get(&base).send().await.ok()?;
            (response.status() == reqwest::StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        registry
    }

    /// Pushes an OCI image tarball (as [`skiff_testkit::images`] builds them) as `REPOSITORY:tag`.
    async fn push(&self, tarball: &[u8], tag: &str) {
        let mut files = HashMap::new();
        let mut archive = tar::Archive::new(tarball);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            files.insert(path, bytes);
        }
        let blob = |digest: &str| files[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))].clone();
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let descriptor = &index["manifests"][0];
        let manifest_digest = descriptor["digest"].as_str().unwrap();
        let manifest_bytes = blob(manifest_digest);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
        digests
            .extend(manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()));

        let http = http();
        let base = format!("http://{}/v2/{REPOSITORY}", self.host);
        for digest in digests {
            let started =
                http.post(format!("{base}/blobs/uploads/")).basic_auth(USER, Some(PASSWORD)).send().await.unwrap();
            assert_eq!(started.status(), reqwest::StatusCode::ACCEPTED, "starting an upload");
            let location = started.headers()["location"].to_str().unwrap().to_string();
            let location = if location.starts_with('/') { format!("http://{}{location}", self.host) } else { location };
            let separator = if location.contains('?') { '&' } else { '?' };
            let put = http
                .put(format!("{location}{separator}digest={digest}"))
                .basic_auth(USER, Some(PASSWORD))
                .header("content-type", "application/octet-stream")
                .body(blob(&digest))
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), reqwest::StatusCode::CREATED, "uploading {digest}");
        }
        let media_type = descriptor["mediaType"].as_str().unwrap();
        let put = http
            .put(format!("{base}/manifests/{tag}"))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", media_type)
            .body(manifest_bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), reqwest::StatusCode::CREATED, "putting the manifest");
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

fn pod(name: &str, image: &str, secret: Option<&str>) -> Pod {
    let secrets: Vec<serde_json::Value> = secret.into_iter().map(|s| json!({"name": s})).collect();
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 2,
            "imagePullSecrets": secrets,
            "containers": [{"name": "app", "image": image, "command": ["sleep", "3600"]}]
        }
    }))
    .unwrap()
}

async fn scenario(node: &RealNode) {
    // The API client first: connecting chooses the process's TLS crypto provider.
    let client = node.client().await;
    let registry = &Registry::start().await;
    let image = format!("{}/{REPOSITORY}:1", registry.host);
    registry.push(&skiff_testkit::images::busybox_variant(&image, "private").unwrap(), "1").await;
    // Plain HTTP for this registry, as an operator would declare it.
    let hosts = node.agent_dir().join("containerd/certs.d").join(&registry.host);
    std::fs::create_dir_all(&hosts).unwrap();
    let server = format!("http://{}", registry.host);
    let hosts_toml =
        format!("server = \"{server}\"\n\n[host.\"{server}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
    std::fs::write(hosts.join("hosts.toml"), hosts_toml).unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _running = node.start_agent(client.clone());

    // Without credentials the registry refuses: ErrImagePull, then ImagePullBackOff.
    let anonymous = pods.create(&PostParams::default(), &pod("anonymous", &image, None)).await.unwrap();
    let version = anonymous.resource_version().unwrap();
    let reasons = waiting_reasons_until(&pods, "anonymous", &version, "ImagePullBackOff", 120).await;
    let message = message_of(&reasons, "ErrImagePull");
    let prefix = format!("rpc error: code = Unknown desc = failed to pull and unpack image \"{image}\"");
    assert!(message.starts_with(&prefix), "{message}");
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert_eq!(message_of(&reasons, "ImagePullBackOff"), format!("Back-off pulling image \"{image}\""));
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = eventually("a Failed event for the pull", 60, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("Failed")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("anonymous")
                && e.note.as_deref().is_some_and(|n| n.starts_with("Failed to pull image"))
        })
    })
    .await;
    assert!(failed.note.unwrap().starts_with(&format!("Failed to pull image \"{image}\": {prefix}")));

    // With a dockerconfigjson Secret in imagePullSecrets the pull succeeds and the pod runs.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = json!({"auths": {registry.host.clone(): {"username": USER, "password": PASSWORD, "auth": auth}}});
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "registry-credentials"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "default").create(&PostParams::default(), &secret).await.unwrap();
    pods.create(&PostParams::default(), &pod("authorized", &image, Some("registry-credentials"))).await.unwrap();
    let running = running_and_ready(&pods, "authorized", 180).await;
    let status = running.status.unwrap().container_statuses.unwrap()[0].clone();
    assert_eq!(status.image, image);
    assert_eq!(status.restart_count, 0);
    let present = node.machine.runtime.image_status(&image).await.unwrap();
    assert!(present.is_some(), "the pulled image is not in containerd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_pull_from_a_registry_with_image_pull_secrets() {
    let node = RealNode::start().await;
    let outcome = AssertUnwindSafe(scenario(&node)).catch_unwind().await;
    node.finish(outcome).await;
}
