//! Deployments as a user drives them with the real kubectl: rollout status, history,
//! undo, scale, pause/resume, restart, and a rollout that exceeds its progress deadline.

// Not every helper of the shared support module is used here.
#[allow(unused_imports)]
mod support;

use skiff_testkit::{fails, ok};
use support::Cluster;

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1
"#;

const STUCK: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
spec:
  replicas: 2
  progressDeadlineSeconds: 2
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      readinessGates:
      - conditionType: example.com/never-set
      containers:
      - name: web
        image: nginx:1
"#;

fn rolled_out(cluster: &Cluster, name: &str) {
    let out = ok(&cluster.server.kubectl(&["rollout", "status", &format!("deployment/{name}"), "--timeout=90s"]));
    assert!(out.ends_with(&format!("deployment \"{name}\" successfully rolled out\n")), "{out}");
}

fn jsonpath(cluster: &Cluster, what: &str, path: &str) -> String {
    ok(&cluster.server.kubectl(&["get", what, "-o", &format!("jsonpath={path}")]))
}

/// The row of `kubectl get deploy NAME`: (NAME, READY, UP-TO-DATE, AVAILABLE).
fn get_deploy(cluster: &Cluster, name: &str) -> (String, Vec<String>) {
    let out = ok(&cluster.server.kubectl(&["get", "deploy", name]));
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    let row = lines.next().unwrap_or_default().split_whitespace().take(4).map(String::from).collect();
    (header, row)
}

/// (revision, change-cause) rows of `kubectl rollout history`.
fn history(cluster: &Cluster, name: &str) -> Vec<String> {
    let out = ok(&cluster.server.kubectl(&["rollout", "history", &format!("deployment/{name}")]));
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some(format!("deployment.apps/{name}").as_str()), "{out}");
    assert_eq!(lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>()), Some(vec!["REVISION", "CHANGE-CAUSE"]));
    lines.map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_status_history_undo_scale_pause_resume_and_restart() {
    let cluster = Cluster::start(3).await;
    let kubectl = |args: &[&str]| ok(&cluster.server.kubectl(args));
    assert_eq!(ok(&cluster.server.kubectl_stdin(&["apply", "-f", "-"], WEB)), "deployment.apps/web created\n");
    rolled_out(&cluster, "web");
    let (header, row) = get_deploy(&cluster, "web");
    assert_eq!(header, "NAME READY UP-TO-DATE AVAILABLE AGE");
    assert_eq!(row, ["web", "3/3", "3", "3"]);

    // A new image rolls out as revision 2.
    assert_eq!(kubectl(&["set", "image", "deployment/web", "web=nginx:2"]), "deployment.apps/web image updated\n");
    rolled_out(&cluster, "web");
    assert_eq!(history(&cluster, "web"), ["1 <none>", "2 <none>"]);
    let first = kubectl(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(first.contains("Image:\tnginx:1") || first.contains("nginx:1"), "{first}");

    // Undo goes back to revision 1's template, which becomes revision 3.
    assert_eq!(kubectl(&["rollout", "undo", "deployment/web"]), "deployment.apps/web rolled back\n");
    rolled_out(&cluster, "web");
    assert_eq!(jsonpath(&cluster, "deploy/web", "{.spec.template.spec.containers[0].image}"), "nginx:1");
    assert_eq!(history(&cluster, "web"), ["2 <none>", "3 <none>"]);
    assert_eq!(jsonpath(&cluster, "deploy/web", "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"), "3");

    assert_eq!(kubectl(&["scale", "deployment/web", "--replicas=5"]), "deployment.apps/web scaled\n");
    rolled_out(&cluster, "web");
    assert_eq!(get_deploy(&cluster, "web").1, ["web", "5/5", "5", "5"]);

    // Paused: the template changes but nothing rolls; undo is refused; resume rolls.
    assert_eq!(kubectl(&["rollout", "pause", "deployment/web"]), "deployment.apps/web paused\n");
    kubectl(&["set", "image", "deployment/web", "web=nginx:3"]);
    let refused = fails(&cluster.server.kubectl(&["rollout", "undo", "deployment/web"]));
    assert!(refused.contains("you cannot rollback a paused deployment"), "{refused}");
    support::eventually("the paused deployment observed", support::PATIENCE, || async {
        let observed = jsonpath(&cluster, "deploy/web", "{.status.observedGeneration}/{.metadata.generation}");
        let (seen, generation) = observed.split_once('/')?;
        (seen == generation).then_some(())
    })
    .await;
    assert_eq!(history(&cluster, "web"), ["2 <none>", "3 <none>"], "no new revision while paused");
    assert_eq!(
        jsonpath(&cluster, "deploy/web", "{.status.conditions[?(@.type==\"Progressing\")].reason}"),
        "DeploymentPaused"
    );
    assert_eq!(kubectl(&["rollout", "resume", "deployment/web"]), "deployment.apps/web resumed\n");
    rolled_out(&cluster, "web");
    assert_eq!(history(&cluster, "web"), ["2 <none>", "3 <none>", "4 <none>"]);

    // restart: a new template annotation, so a new ReplicaSet with the same image.
    assert_eq!(kubectl(&["rollout", "restart", "deployment/web"]), "deployment.apps/web restarted\n");
    rolled_out(&cluster, "web");
    assert_eq!(history(&cluster, "web"), ["2 <none>", "3 <none>", "4 <none>", "5 <none>"]);
    let restarted =
        jsonpath(&cluster, "deploy/web", "{.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}");
    assert!(!restarted.is_empty());
    assert_eq!(get_deploy(&cluster, "web").1, ["web", "5/5", "5", "5"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollout_status_reports_an_exceeded_progress_deadline() {
    let cluster = Cluster::start(2).await;
    ok(&cluster.server.kubectl_stdin(&["apply", "-f", "-"], STUCK));
    let error = fails(&cluster.server.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=90s"]));
    assert_eq!(error, "error: deployment \"stuck\" exceeded its progress deadline\n");
    let (_, row) = get_deploy(&cluster, "stuck");
    assert_eq!(row, ["stuck", "0/2", "2", "0"]);
}
