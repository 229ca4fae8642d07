//! What the real-container tests share: the test image, a node on a private containerd,
//! an agent for it with short back-offs, and polling.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use skiff_agent::backoff::BackoffPolicy;
use skiff_agent::config::Timing;
use skiff_agent::machine::{self, Machine};
use skiff_agent::podworker::PodTiming;
use skiff_agent::runtime::Runtime;
use skiff_agent::{Agent, NodeHandle};
use skiff_testkit::json;

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

pub fn agent(client: kube::Client, machine: &Machine) -> Agent {
    let node = NodeHandle::new(machine.identity.clone(), machine.runtime.clone() as Arc<dyn Runtime>);
    let template = machine::template(std::path::Path::new("/"));
    let short = BackoffPolicy { initial: Duration::from_millis(500), max: Duration::from_secs(2) };
    let pod_timing =
        PodTiming { backoff: short, pull_backoff: short, relist: Duration::from_millis(500), ..PodTiming::default() };
    let timing = Timing { renew_interval: Duration::from_secs(2), ..Timing::default() };
    Agent::new(client, template, timing, vec![node], 16).with_pod_timing(pod_timing)
}
