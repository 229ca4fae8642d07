//! What runs inside pods, through the real API server and the agent's pod workers over
//! the simulated runtime: env and volumes from ConfigMaps (and their updates), config
//! errors, readiness and liveness probes, crash-loop back-off, and the kubelet's events.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use skiff_agent::backoff::BackoffPolicy;
use skiff_agent::config::{self, NodeTemplate, Timing};
use skiff_agent::podworker::PodTiming;
use skiff_agent::runtime::simulated::{Behaviour, SimulatedRuntime};
use skiff_agent::volumes::VolumeHost;
use skiff_agent::{Agent, NodeHandle};
use skiff_testkit::{json, TestServer};

/// A test server with one simulated node (`sim-0`) whose runtime the test can reach.
struct Cluster {
    _server: TestServer,
    client: kube::Client,
    runtime: Arc<SimulatedRuntime>,
    _data: tempfile::TempDir,
    agent: tokio::task::JoinHandle<skiff_agent::Result<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.agent.abort();
    }
}

async fn cluster() -> Cluster {
    cluster_with_services(&[]).await
}

/// A cluster whose `services` (in default) exist before the agent starts, so that every
/// pod sees their service-link variables.
async fn cluster_with_services(services: &[serde_json::Value]) -> Cluster {
    let server = TestServer::start().await;
    let client = skiff_client::connect(server.kubeconfig(), None).await.unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    for service in services {
        api.create(&PostParams::default(), &serde_json::from_value(service.clone()).unwrap()).await.unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    let ids = config::simulated_identities("sim", 1, "10.42.0.0/16".parse().unwrap(), 24).unwrap();
    let behaviour = Behaviour { record_configs: true, ..Behaviour::default() };
    let runtime = Arc::new(SimulatedRuntime::new(ids[0].pod_cidr, behaviour));
    let node = NodeHandle::new(ids[0].clone(), runtime.clone());
    let backoff = BackoffPolicy { initial: Duration::from_millis(400), max: Duration::from_secs(5) };
    let timing = PodTiming {
        backoff,
        pull_backoff: backoff,
        volume_resync: Duration::from_millis(200),
        relist: Duration::from_millis(100),
    };
    let agent = Agent::new(client.clone(), NodeTemplate::simulated(), Timing::default(), vec![node], 16)
        .with_volumes(VolumeHost { pods_dir: data.path().join("pods"), tmpfs: false })
        .with_pod_timing(timing);
    let agent = tokio::spawn(agent.run());
    Cluster { _server: server, client, runtime, _data: data, agent }
}

/// Polls `check` every 50 ms for up to 20 s.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..400 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn pod(name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = json!("sim-0");
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn container_status<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == name)
}

fn condition(pod: &Pod, kind: &str) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

/// The runtime ID of a container from its status (`simulated://ID`).
fn runtime_id(status: &ContainerStatus) -> String {
    status.container_id.as_deref().unwrap().trim_start_matches("simulated://").to_string()
}

async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("{name} running"), || async {
        let pod = pods.get(name).await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(pod)
    })
    .await
}

async fn events_with(client: &kube::Client, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_reach_env_and_volumes_and_updates_follow() {
    let c = cluster_with_services(&[json!({"metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}})]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let settings: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "settings"},
        "data": {"MODE": "fast", "app.conf": "version=1"}}))
    .unwrap();
    config_maps.create(&PostParams::default(), &settings).await.unwrap();
    let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let db = services.get("db").await.unwrap();
    let db_ip = db.spec.unwrap().cluster_ip.unwrap();

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = json!({"containers": [{"name": "app", "image": "busybox:1.36",
        "command": ["sh", "-c", "echo $(MODE) $(POD_NAME); sleep 3600"],
        "env": [
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}]}],
        "volumes": [{"name": "config", "configMap": {"name": "settings", "items": [{"key": "app.conf", "path": "app.conf"}]}}]});
    pods.create(&PostParams::default(), &pod("web", spec)).await.unwrap();
    let web = running(&pods, "web").await;
    let id = runtime_id(container_status(&web, "app").unwrap());
    let config = c.runtime.config_of(&id).expect("the runtime recorded the config");
    let env = |name: &str| config.envs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(env("MODE").as_deref(), Some("fast"));
    assert_eq!(env("CFG_MODE").as_deref(), Some("fast"));
    assert_eq!(env("POD_NAME").as_deref(), Some("web"));
    assert_eq!(env("DB_SERVICE_HOST"), Some(db_ip.clone()), "service links");
    assert_eq!(env("DB_PORT").unwrap(), format!("tcp://{db_ip}:5432"));
    assert_eq!(config.command, vec!["sh", "-c", "echo fast web; sleep 3600"]);

    let mount = config.mounts.iter().find(|m| m.container_path == "/etc/config").unwrap();
    assert!(mount.readonly);
    let file = std::path::Path::new(&mount.host_path).join("app.conf");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "version=1");
    assert!(config.mounts.iter().any(|m| m.container_path == "/dev/termination-log"));

    // An update of the ConfigMap reaches the running pod's volume.
    let patch = json!({"data": {"app.conf": "version=2"}});
    config_maps.patch("settings", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    eventually("the updated file", || async { (std::fs::read_to_string(&file).ok()? == "version=2").then_some(()) })
        .await;
    let events = events_with(&c.client, "Started").await;
    assert!(events.iter().any(|e| e.note.as_deref() == Some("Started container app")), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_map_is_a_config_error_until_it_exists() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = json!({"containers": [{"name": "app", "image": "busybox:1.36",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}]}]});
    pods.create(&PostParams::default(), &pod("waits", spec)).await.unwrap();
    let waiting = eventually("a config error", || async {
        let pod = pods.get("waits").await.ok()?;
        container_status(&pod, "app")?.state.as_ref()?.waiting.clone()
    })
    .await;
    assert_eq!(waiting.reason.as_deref(), Some("CreateContainerConfigError"));
    assert_eq!(waiting.message.as_deref(), Some("configmap \"later\" not found"));
    let failed = eventually("a Failed event", || async {
        let events = events_with(&c.client, "Failed").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(failed[0].note.as_deref(), Some("Error: configmap \"later\" not found"));

    let config_maps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let later: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "later"}, "data": {"x": "1"}})).unwrap();
    config_maps.create(&PostParams::default(), &later).await.unwrap();
    running(&pods, "waits").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_liveness_probes() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = json!({"containers": [
        {"name": "web", "image": "nginx:1.27", "ports": [{"name": "http", "containerPort": 80}],
            "readinessProbe": {"httpGet": {"port": "http", "path": "/ready"}, "periodSeconds": 1, "failureThreshold": 1}},
        {"name": "worker", "image": "busybox:1.36",
            "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 2}}
    ]});
    pods.create(&PostParams::default(), &pod("probed", spec)).await.unwrap();
    let ready = eventually("a ready pod", || async {
        let pod = pods.get("probed").await.ok()?;
        (condition(&pod, "Ready")? == "True").then_some(pod)
    })
    .await;
    assert!(container_status(&ready, "web").unwrap().ready);

    // The web container's endpoint starts failing: not ready, the pod neither.
    c.runtime.set_healthy(&runtime_id(container_status(&ready, "web").unwrap()), false);
    let unready = eventually("an unready pod", || async {
        let pod = pods.get("probed").await.ok()?;
        (condition(&pod, "Ready")? == "False").then_some(pod)
    })
    .await;
    assert_eq!(condition(&unready, "ContainersReady").as_deref(), Some("False"));
    let web = container_status(&unready, "web").unwrap();
    assert!(!web.ready && web.state.as_ref().unwrap().running.is_some(), "still running");
    assert_eq!(web.restart_count, 0, "readiness never restarts");

    // The worker's liveness fails: killed and restarted.
    let worker = container_status(&unready, "worker").unwrap();
    let first_id = worker.container_id.clone();
    c.runtime.set_healthy(&runtime_id(worker), false);
    let restarted = eventually("a restarted worker", || async {
        let pod = pods.get("probed").await.ok()?;
        let worker = container_status(&pod, "worker")?.clone();
        (worker.restart_count == 1 && worker.state.as_ref()?.running.is_some()).then_some(worker)
    })
    .await;
    assert_ne!(restarted.container_id, first_id);
    let last = restarted.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.container_id, first_id);
    assert_eq!(last.exit_code, 143, "stopped with SIGTERM");

    let killing = eventually("a Killing event", || async {
        let events = events_with(&c.client, "Killing").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(killing[0].note.as_deref(), Some("Container worker failed liveness probe, will be restarted"));
    assert_eq!(killing[0].regarding.as_ref().unwrap().field_path.as_deref(), Some("spec.containers{worker}"));
    let unhealthy = events_with(&c.client, "Unhealthy").await;
    let notes: BTreeSet<String> = unhealthy.iter().filter_map(|e| e.note.clone()).collect();
    assert!(notes.contains("Readiness probe failed: HTTP probe failed with statuscode: 503"), "{notes:?}");
    assert!(notes.contains("Liveness probe failed: unhealthy"), "{notes:?}");
}

/// The node lifecycle controller marks the pods of a node it lost touch with not ready.
/// When the node is back, its agent reports them ready again, as the kubelet's status
/// manager does, though nothing in the pods changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_marked_not_ready_by_the_control_plane_is_reported_ready_again() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = json!({"containers": [{"name": "main", "image": "busybox:1.36"}]});
    pods.create(&PostParams::default(), &pod("steady", spec)).await.unwrap();
    let ready = eventually("a ready pod", || async {
        let pod = pods.get("steady").await.ok()?;
        (condition(&pod, "Ready")? == "True").then_some(pod)
    })
    .await;

    // What the node lifecycle controller writes.
    let mut conditions = ready.status.unwrap().conditions.unwrap();
    conditions.iter_mut().filter(|c| c.type_ == "Ready").for_each(|c| c.status = "False".into());
    let patch = json!({"status": {"conditions": conditions}});
    let marked = pods.patch_status("steady", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    assert_eq!(condition(&marked, "Ready").as_deref(), Some("False"));

    let again = eventually("the pod reported ready again", || async {
        let pod = pods.get("steady").await.ok()?;
        (condition(&pod, "Ready")? == "True").then_some(pod)
    })
    .await;
    assert_eq!(container_status(&again, "main").unwrap().restart_count, 0, "nothing restarted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loops_back_off_longer_each_time() {
    let c = cluster().await;
    c.runtime.crash_on_start("app", Some(1));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &pod("crashy", json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})),
    )
    .await
    .unwrap();
    // Every back-off message seen while polling, until the third restart.
    let mut messages = BTreeSet::new();
    let mut status = None;
    for _ in 0..400 {
        let pod = pods.get("crashy").await.unwrap();
        if let Some(app) = container_status(&pod, "app") {
            let waiting = app.state.as_ref().and_then(|s| s.waiting.as_ref());
            if let Some(w) = waiting.filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff")) {
                messages.insert(w.message.clone().unwrap_or_default());
            }
            if app.restart_count >= 3 && messages.len() >= 2 {
                status = Some(app.clone());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.unwrap_or_else(|| panic!("no third restart; back-offs seen: {messages:?}"));
    let uid = pods.get("crashy").await.unwrap().metadata.uid.unwrap();
    let expected = |delay: &str| format!("back-off {delay} restarting failed container=app pod=crashy_default({uid})");
    assert!(messages.contains(&expected("400ms")), "{messages:?}");
    assert!(messages.contains(&expected("800ms")), "the back-off doubles: {messages:?}");
    let last = status.last_state.unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    let backoff = events_with(&c.client, "BackOff").await;
    assert!(backoff.iter().any(|e| e.note.as_deref()
        == Some(&format!("Back-off restarting failed container app in pod crashy_default({uid})"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn termination_messages_and_downward_api_files() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = json!({"restartPolicy": "Never", "containers": [{"name": "job", "image": "busybox:1.36",
        "terminationMessagePath": "/tmp/result",
        "volumeMounts": [{"name": "info", "mountPath": "/etc/podinfo"}]}],
        "volumes": [{"name": "info", "downwardAPI": {"items": [
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]});
    let mut job = pod("job", spec);
    job.metadata.labels = Some([("app".to_string(), "batch".to_string())].into());
    pods.create(&PostParams::default(), &job).await.unwrap();
    let running = running(&pods, "job").await;
    let id = runtime_id(container_status(&running, "job").unwrap());
    let config = c.runtime.config_of(&id).unwrap();
    let info = config.mounts.iter().find(|m| m.container_path == "/etc/podinfo").unwrap();
    let info = std::path::Path::new(&info.host_path);
    assert_eq!(std::fs::read_to_string(info.join("name")).unwrap(), "job");
    assert_eq!(std::fs::read_to_string(info.join("labels")).unwrap(), "app=\"batch\"");

    // The container writes its message to the host file behind /tmp/result, and fails.
    let log = config.mounts.iter().find(|m| m.container_path == "/tmp/result").unwrap();
    std::fs::write(&log.host_path, "3 records rejected").unwrap();
    c.runtime.exit_container(&id, 2).unwrap();
    let terminated = eventually("a failed pod", || async {
        let pod = pods.get("job").await.ok()?;
        (pod.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(pod)
    })
    .await;
    let state = container_status(&terminated, "job").unwrap().state.clone().unwrap().terminated.unwrap();
    assert_eq!((state.exit_code, state.reason.as_deref()), (2, Some("Error")));
    assert_eq!(state.message.as_deref(), Some("3 records rejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_pull_secret_is_reported_and_the_pull_goes_on() {
    let c = cluster().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let spec = json!({"imagePullSecrets": [{"name": "registry-key"}],
        "containers": [{"name": "app", "image": "registry.example.com/app:1", "imagePullPolicy": "Always"}]});
    pods.create(&PostParams::default(), &pod("private", spec)).await.unwrap();
    running(&pods, "private").await;
    let failed = eventually("a FailedToRetrieveImagePullSecret event", || async {
        let events = events_with(&c.client, "FailedToRetrieveImagePullSecret").await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(
        failed[0].note.as_deref(),
        Some("Unable to retrieve some image pull secrets (\"registry-key\"); attempting to pull the image may not succeed.")
    );
}
