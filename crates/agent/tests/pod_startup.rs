//! Pod startup latency on one real node (a benchmark, run on demand:
//! `cargo test --release -p skiff-agent --test pod_startup -- --ignored --nocapture`):
//! 100 pods created through the API, each timed from its create to Running as seen by a
//! watch; then the same work driven straight over CRI (sandbox, create, start), 100 at
//! once, against the same containerd. Prints p50, p99, throughput and the ratio.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, watcher, Event};
use skiff_agent::machine::{Machine, Options};
use skiff_agent::runtime::{labels, ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata, Runtime};
use skiff_testkit::{images, json, TestServer};

mod common;
use common::{agent, eventually, pod, IMAGE, NODE};

const PODS: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

fn figures(mut latencies: Vec<Duration>, wall: Duration) -> Figures {
    latencies.sort();
    Figures {
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        per_second: latencies.len() as f64 / wall.as_secs_f64(),
    }
}

async fn through_the_api(server: &TestServer, machine: &Machine) -> Figures {
    let client = skiff_client::connect(server.kubeconfig(), None).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let agent = tokio::spawn(agent(client.clone(), machine).run());
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = {
        let (pods, running) = (pods.clone(), running.clone());
        tokio::spawn(async move {
            let mut stream = pin!(watcher(pods, watcher::Config::default()));
            while let Ok(Some(event)) = stream.try_next().await {
                if let Event::Apply(pod) | Event::InitApply(pod) = event {
                    if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                        let name = pod.metadata.name.unwrap_or_default();
                        running.lock().unwrap().entry(name).or_insert_with(Instant::now);
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let created: Vec<(String, Instant)> = futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let name = format!("startup-{i}");
                let spec = pod(&name, json!({"name": "sleep", "image": IMAGE, "command": ["sleep", "3600"]}), "Always");
                let at = Instant::now();
                pods.create(&PostParams::default(), &spec).await.unwrap();
                (name, at)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    eventually("every pod Running", 600, || async { (running.lock().unwrap().len() >= PODS).then_some(()) }).await;
    let running = running.lock().unwrap().clone();
    let wall = running.values().max().unwrap().duration_since(started);
    let latencies = created.iter().map(|(name, at)| running[name].duration_since(*at)).collect();
    watch.abort();

    pods.delete_collection(&DeleteParams::default(), &ListParams::default()).await.unwrap();
    eventually("every pod gone", 600, || async {
        pods.list(&ListParams::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
    agent.abort();
    figures(latencies, wall)
}

async fn straight_over_cri(machine: &Machine) -> Figures {
    let runtime = machine.runtime.clone();
    let started = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(0..PODS)
        .map(|i| {
            let runtime = runtime.clone();
            async move {
                let at = Instant::now();
                let uid = format!("raw-{i}");
                let sandbox = PodSandboxConfig {
                    metadata: PodSandboxMetadata {
                        name: uid.clone(),
                        uid: uid.clone(),
                        namespace: "bench".into(),
                        attempt: 0,
                    },
                    hostname: uid.clone(),
                    log_directory: format!("/var/log/pods/bench_{uid}_{uid}"),
                    labels: [(labels::POD_UID.to_string(), uid.clone())].into(),
                    ..Default::default()
                };
                let id = runtime.run_pod_sandbox(&sandbox).await.unwrap();
                let container = ContainerConfig {
                    metadata: ContainerMetadata { name: "sleep".into(), attempt: 0 },
                    image: IMAGE.into(),
                    command: vec!["sleep".into(), "3600".into()],
                    log_path: "sleep/0.log".into(),
                    ..Default::default()
                };
                let container = runtime.create_container(&id, &container, &sandbox).await.unwrap();
                runtime.start_container(&container).await.unwrap();
                at.elapsed()
            }
        })
        .buffer_unordered(PODS)
        .collect()
        .await;
    let wall = started.elapsed();
    machine.remove_all_pods().await.unwrap();
    figures(latencies, wall)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture"]
async fn pod_startup_latency() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = dir.path().join("agent");
    images::write_busybox(&agent_dir.join("images"), IMAGE).unwrap();
    let machine = Machine::start(&Options::new(agent_dir, NODE.into(), "127.0.0.1".parse().unwrap())).await.unwrap();
    let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
        let api = through_the_api(&server, &machine).await;
        let cri = straight_over_cri(&machine).await;
        (api, cri)
    }))
    .await;
    let _ = machine.remove_all_pods().await;
    machine.shutdown().await;
    let (api, cri) = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    println!("| {PODS} pods on one node | p50 | p99 | pods/s |");
    println!("|---|---|---|---|");
    for (what, f) in
        [("skiff: create → Running (watch)", &api), ("containerd over CRI: sandbox + create + start", &cri)]
    {
        println!(
            "| {what} | {:.0} ms | {:.0} ms | {:.1} |",
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.per_second
        );
    }
    println!("p99 ratio skiff ÷ CRI: {:.2}×", api.p99.as_secs_f64() / cri.p99.as_secs_f64());
}
