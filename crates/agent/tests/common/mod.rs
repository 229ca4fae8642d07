//! What the real-container tests share: the test image, a node on a private containerd
//! (started, and cleaned up whatever the test did), an agent for it with short back-offs,
//! and polling.
#![allow(dead_code)]

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use skiff_agent::backoff::BackoffPolicy;
use skiff_agent::config::Timing;
use skiff_agent::imagegc::ImageGc;
use skiff_agent::machine::{self, Machine, Options};
use skiff_agent::podworker::PodTiming;
use skiff_agent::runtime::{labels, Runtime};
use skiff_agent::volumes::VolumeHost;
use skiff_agent::{Agent, NodeHandle};
use skiff_testkit::{images, json, TestServer};

pub const IMAGE: &str = "skiff.local/busybox:1";
pub const NODE: &str = "node-1";

/// Polls `check` every 200 ms for up to `seconds`.
pub async fn eventually<T, F, Fut>(what: &str, seconds: u64, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn pod(name: &str, container: serde_json::Value, restart_policy: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": restart_policy,
            "terminationGracePeriodSeconds": 2,
            "containers": [container]
        }
    }))
    .unwrap()
}

/// An agent for `machine` with short back-offs, its pods' volumes under `pods_dir`, and
/// `image_gc` if given.
pub fn agent(client: kube::Client, machine: &Machine, pods_dir: &std::path::Path, image_gc: Option<ImageGc>) -> Agent {
    let mut node = NodeHandle::new(machine.identity.clone(), machine.runtime.clone() as Arc<dyn Runtime>);
    if let Some(gc) = image_gc {
        node = node.with_image_gc(gc);
    }
    let template = machine::template(std::path::Path::new("/"));
    let short = BackoffPolicy { initial: Duration::from_millis(500), max: Duration::from_secs(2) };
    let pod_timing = PodTiming {
        backoff: short,
        pull_backoff: short,
        relist: Duration::from_millis(500),
        volume_resync: Duration::from_secs(1),
    };
    let timing = Timing { renew_interval: Duration::from_secs(2), ..Timing::default() };
    let volumes = VolumeHost { pods_dir: pods_dir.to_path_buf(), tmpfs: true };
    Agent::new(client, template, timing, vec![node], 16).with_pod_timing(pod_timing).with_volumes(volumes)
}

/// The API server and a real node: a private containerd on a temp data directory with the
/// test image imported. Only one at a time on a machine: the node owns the `cni0` bridge.
pub struct RealNode {
    pub server: TestServer,
    pub machine: Machine,
    dir: tempfile::TempDir,
    /// The agents started by [`RealNode::start_agent`], stopped before the cleanup.
    agents: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl RealNode {
    pub async fn start() -> RealNode {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        skiff_testkit::hostnet::remove_leaked_pod_networks();
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let agent_dir = dir.path().join("agent");
        images::write_busybox(&agent_dir.join("images"), IMAGE).unwrap();
        let options = Options::new(agent_dir, NODE.into(), "127.0.0.1".parse().unwrap());
        let machine = Machine::start(&options)
            .await
            .expect("containerd starts (apt-get install containerd runc containernetworking-plugins)");
        RealNode { server, machine, dir, agents: Default::default() }
    }

    /// Runs an agent for this node (see [`agent`]) until aborted, or until [`RealNode::finish`].
    pub fn start_agent(&self, client: kube::Client) -> tokio::task::JoinHandle<skiff_agent::Result<()>> {
        self.start_agent_with(client, None)
    }

    /// [`RealNode::start_agent`] with an image garbage collector.
    pub fn start_agent_with(
        &self,
        client: kube::Client,
        image_gc: Option<ImageGc>,
    ) -> tokio::task::JoinHandle<skiff_agent::Result<()>> {
        let running = tokio::spawn(agent(client, &self.machine, &self.dir.path().join("agent/pods"), image_gc).run());
        self.agents.lock().unwrap().push(running.abort_handle());
        running
    }

    /// DATA/agent of the node (containerd's files, its registry config directory).
    pub fn agent_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("agent")
    }

    pub async fn client(&self) -> kube::Client {
        skiff_client::connect(self.server.kubeconfig(), None).await.unwrap()
    }

    /// Leaves no containers, shims or mounts behind, then fails as the test did (the
    /// outcome of `catch_unwind` around it).
    pub async fn finish(self, outcome: Result<(), Box<dyn Any + Send>>) {
        // No agent may start containers again while they are removed.
        for agent in self.agents.lock().unwrap().drain(..) {
            agent.abort();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Err(e) = self.machine.remove_all_pods().await {
            eprintln!("cleaning up pods: {e}");
        }
        self.machine.shutdown().await;
        if std::env::var_os("SKIFF_KEEP_TEST_DIR").is_some() {
            eprintln!("kept {}", self.dir.keep().display());
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

pub fn condition(pod: &Pod, kind: &str) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == kind).map(|c| c.status.clone())
}

pub async fn running_and_ready(pods: &Api<Pod>, name: &str, seconds: u64) -> Pod {
    eventually(&format!("{name} Running and Ready"), seconds, || async {
        let pod = pods.get(name).await.ok()?;
        let phase = pod.status.as_ref()?.phase.clone();
        (phase.as_deref() == Some("Running") && condition(&pod, "Ready").as_deref() == Some("True")).then_some(pod)
    })
    .await
}

/// CRI label filter for everything of one pod.
pub fn uid_filter(uid: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::POD_UID.to_string(), uid.to_string())])
}

/// The waiting reasons (with their messages) of pod `name`'s first container, in the order
/// its status showed them from `version` on, until `last` shows. Watched, not polled: a
/// reason may last less than a poll (ErrImagePull turns into ImagePullBackOff at the pod's
/// next sync, a second later).
pub async fn waiting_reasons_until(
    pods: &Api<Pod>,
    name: &str,
    version: &str,
    last: &str,
    seconds: u64,
) -> Vec<(String, String)> {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{WatchEvent, WatchParams};
    let params = WatchParams::default().fields(&format!("metadata.name={name}"));
    let mut events = pods.watch(&params, version).await.unwrap().boxed();
    let mut seen: Vec<(String, String)> = Vec::new();
    let watching = async {
        while let Some(event) = events.try_next().await.unwrap() {
            let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else { continue };
            let waiting = pod.status.and_then(|s| s.container_statuses?.first()?.state.clone()?.waiting);
            let Some(waiting) = waiting else { continue };
            let reason = (waiting.reason.unwrap_or_default(), waiting.message.unwrap_or_default());
            if seen.last() != Some(&reason) {
                seen.push(reason);
            }
            if seen.last().is_some_and(|(reason, _)| reason == last) {
                return;
            }
        }
        panic!("the watch of {name} ended before {last}: {seen:?}");
    };
    if tokio::time::timeout(Duration::from_secs(seconds), watching).await.is_err() {
        panic!("timed out waiting for {last} on {name}");
    }
    seen
}

/// The message of the first `reason` in `reasons`, which must be there.
pub fn message_of<'a>(reasons: &'a [(String, String)], reason: &str) -> &'a str {
    let found = reasons.iter().find(|(r, _)| r == reason);
    &found.unwrap_or_else(|| panic!("no {reason} among {reasons:?}")).1
}
