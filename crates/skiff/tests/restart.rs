//! A Deployment of real containers on `skiff server` (in-process agent on containerd):
//! rolled out to a new image through kubectl (`set image`, `rollout status`), then the
//! server is killed with SIGKILL and started again. Its containers keep running the
//! whole time: the new agent adopts them (same container IDs, no restart) instead of
//! starting them again.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use skiff_agent::runtime::{labels, ContainerFilter, ContainerState, Runtime};
use skiff_testkit::{images, kubectl, ok};

mod common;
use common::{kubectl_until, Server, IMAGE};

const NEXT_IMAGE: &str = "skiff.local/busybox:2";

fn deployment() -> String {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{"name": "web", "image": IMAGE,
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
                        "readinessProbe": {"httpGet": {"port": 8080, "path": "/index.html"}, "periodSeconds": 1}}]
                }
            }
        }
    })
    .to_string()
}

/// One line per pod of the Deployment: name, image, phase, ready, container ID, restarts, UID.
const POD_LINES: &str = "jsonpath={range .items[*]}{.metadata.name} {.spec.containers[0].image} {.status.phase} \
    {.status.containerStatuses[0].ready} {.status.containerStatuses[0].containerID} \
    {.status.containerStatuses[0].restartCount} {.metadata.uid}{\"\\n\"}{end}";

/// The Deployment's pods once there are exactly two, both Running and ready on `image`:
/// pod name → (container ID, restart count, UID).
fn settled_pods(server: &Server, image: &str) -> BTreeMap<String, (String, String, String)> {
    let lines = kubectl_until(&server.kubeconfig(), &["get", "pods", "-l", "app=web", "-o", POD_LINES], 120, |out| {
        let lines: Vec<&str> = out.lines().collect();
        lines.len() == 2
            && lines.iter().all(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.len() == 7 && f[1] == image && f[2] == "Running" && f[3] == "true"
            })
    });
    lines
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), (f[4].to_string(), f[5].to_string(), f[6].to_string()))
        })
        .collect()
}

async fn scenario(server: &mut Server) {
    let kc = server.kubeconfig();
    ok(&kubectl(&kc, &["apply", "-f", "-"], Some(&deployment())));
    let status = ok(&kubectl(&kc, &["rollout", "status", "deployment/web", "--timeout=180s"], None));
    assert!(status.contains("deployment \"web\" successfully rolled out"), "{status}");
    let first = settled_pods(server, IMAGE);

    // A new image: the rollout replaces both pods, with real containers from the new image.
    ok(&kubectl(&kc, &["set", "image", "deployment/web", &format!("web={NEXT_IMAGE}")], None));
    let status = ok(&kubectl(&kc, &["rollout", "status", "deployment/web", "--timeout=180s"], None));
    assert!(status.contains("deployment \"web\" successfully rolled out"), "{status}");
    let before = settled_pods(server, NEXT_IMAGE);
    let history = ok(&kubectl(&kc, &["rollout", "history", "deployment/web"], None));
    assert!(history.lines().any(|l| l.starts_with('2')), "{history}");
    let first_ids: Vec<&String> = first.values().map(|(id, _, _)| id).collect();
    assert!(before.values().all(|(id, _, _)| !first_ids.contains(&id)), "new containers: {first:?} {before:?}");
    let runtime = server.runtime().unwrap();

    // SIGKILL: no shutdown; the containers run on without their agent.
    server.kill9();
    for (id, _, _) in before.values() {
        let status = runtime.container_status(id.trim_start_matches("containerd://")).await.unwrap();
        assert_eq!(status.state, ContainerState::Running, "{id} after the kill");
    }
    server.restart();
    // A new pod running proves the new agent is at work (it synced the Deployment's pods first).
    ok(&kubectl(&kc, &["run", "after-restart", "--image", IMAGE, "--", "sleep", "3600"], None));
    ok(&kubectl(&kc, &["wait", "--for=condition=Ready", "pod/after-restart", "--timeout=120s"], None));
    let after = settled_pods(server, NEXT_IMAGE);
    assert_eq!(after, before, "the same containers, not restarted");
    assert!(after.values().all(|(_, restarts, _)| restarts == "0"), "{after:?}");
    let runtime = server.runtime().unwrap();
    for (id, _, uid) in after.values() {
        let filter =
            ContainerFilter { labels: BTreeMap::from([(labels::POD_UID.into(), uid.clone())]), ..Default::default() };
        let containers = runtime.list_containers(&filter).await.unwrap();
        let ids: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [id.trim_start_matches("containerd://")], "no second container for pod {uid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rollout_and_server_kill_with_real_containers() {
    let dir = tempfile::tempdir().unwrap();
    images::write_busybox(&dir.path().join("agent/images"), NEXT_IMAGE).unwrap();
    let mut server = Server::start(dir.path());
    let outcome = AssertUnwindSafe(scenario(&mut server)).catch_unwind().await;
    server.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
