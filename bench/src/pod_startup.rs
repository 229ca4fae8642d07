//! `pod-startup`: pod startup latency on one real node. `skiff server --disable-agent`
//! and `skiff agent` as its own process (its private containerd under the scratch
//! directory, the busybox test image imported at start), so that the agent's memory is
//! its own: resident memory idle, then with `--pods` (100) running.
//!
//! `--pods` pods bound to the node are created through the API at once; each is timed
//! from its create to Running as a watch sees it (p50, p99, pods/s). In the same run,
//! containerd's own cost for the same work is measured straight over CRI (the agent's pod
//! worker without the API, the pods arriving as their creates did): the floor any agent
//! stands on. The target is a p99 at most 1.5× that floor's p99, and at most 20 MB idle.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};
use skiff_agent::dns::ClusterDns;
use skiff_agent::podworker::{remove_logs, remove_sandbox_logs, NodeServices, PodWorker, POD_LOG_ROOT};
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::{ContainerState, Runtime};
use skiff_agent::volumes::VolumeHost;

use crate::load::{ms, Summary};
use crate::process::{cpu_time_of, free_port, poll, Child, Memory};
use crate::report::{emit, megabytes, number, Check, Table};
use crate::schedule::{create, fan_out, Server, Watch, NAMESPACE};
use crate::Env;

/// The image the pods run, built from busybox-static and imported by the agent at start.
const IMAGE: &str = "skiff.local/busybox:1";
const NODE: &str = "bench-node";
/// The whole run (all pods Running; all gone) may take no longer than this.
const PHASE_TIMEOUT: Duration = Duration::from_secs(600);
/// The targets.
const RATIO_TARGET: f64 = 1.5;
const IDLE_RSS_TARGET_MB: f64 = 20.0;

#[derive(clap::Args, Clone, Debug)]
pub struct PodStartupArgs {
    /// Pods started at once on the node.
    #[arg(long, default_value_t = 100)]
    pub pods: usize,
}

struct Figures {
    latency: Summary,
    per_second: f64,
}

impl Figures {
    fn of(latencies: Vec<Duration>, wall: Duration) -> Self {
        let per_second = latencies.len() as f64 / wall.as_secs_f64();
        Figures { latency: Summary::of(latencies), per_second }
    }
}

pub async fn run(env: &Env, args: &PodStartupArgs) -> Result<Vec<Check>> {
    let server = Server::start(env, "sqlite", &[]).await?;
    let http = server.client()?;
    create(&http, &server.url, "/api/v1/namespaces", &json!({"metadata": {"name": NAMESPACE}})).await?;
    let agent_data = env.scratch.dir("skiff-agent")?;
    skiff_testkit::images::write_busybox(&agent_data.join("agent/images"), IMAGE)
        .context("building the test image (apt-get install busybox-static)")?;
    eprintln!("pod-startup: starting skiff agent with its containerd…");
    let mut agent = start_agent(env, &server, &agent_data)?;
    let measured = measure(env, args, &server, &mut agent, &agent_data).await;
    // SIGINT, also after a failure: the agent stops its containerd (SIGKILL would leave it running).
    agent.stop().await?;
    server.child.stop().await?;
    let (api, cri, idle, busy) = measured?;

    let ratio = api.latency.p99.as_secs_f64() / cri.latency.p99.as_secs_f64();
    print(args.pods, &api, &cri, ratio, idle, busy);
    emit(
        "pod-startup",
        json!({
            "pods": args.pods,
            "api_latency_ms": api.latency.json(),
            "api_pods_per_second": api.per_second,
            "cri_latency_ms": cri.latency.json(),
            "cri_pods_per_second": cri.per_second,
            "p99_ratio": ratio,
            "agent_idle_rss_bytes": idle.rss,
            "agent_busy_rss_bytes": busy.rss,
        }),
    );
    Ok(vec![
        Check::at_most(&format!("pod startup p99 ÷ raw CRI p99, {} pods", args.pods), ratio, RATIO_TARGET, "×"),
        Check::at_most("agent RSS idle", megabytes(idle.rss), IDLE_RSS_TARGET_MB, "MB"),
    ])
}

/// Idle memory, the pods through the API (and the memory with them), then over CRI.
async fn measure(
    env: &Env,
    args: &PodStartupArgs,
    server: &Server,
    agent: &mut Child,
    agent_data: &Path,
) -> Result<(Figures, Figures, Memory, Memory)> {
    wait_node_ready(server, agent).await?;
    tokio::time::sleep(env.settle).await;
    let idle = agent.memory()?;

    eprintln!("pod-startup: {} pods through the API…", args.pods);
    let (api, arrivals, busy) = through_the_api(env, server, args.pods, agent).await?;
    let socket = agent_data.join("agent/containerd/containerd.sock");
    let runtime: Arc<dyn Runtime> = Arc::new(CriRuntime::new(&socket.to_string_lossy())?);
    delete_all(server, agent, runtime.as_ref()).await?;
    // The rest of the teardown (shims exiting, containerd's garbage collection) would
    // otherwise slow the baseline down.
    wait_containerd_idle(agent).await?;

    eprintln!("pod-startup: the same {} pods straight over CRI, arriving as they did…", args.pods);
    let cri = straight_over_cri(runtime, agent_data.join("raw-pods"), &arrivals).await?;
    Ok((api, cri, idle, busy))
}

/// `skiff agent` for one real node on the server, data under `data_dir`.
fn start_agent(env: &Env, server: &Server, data_dir: &Path) -> Result<Child> {
    let mut command = Command::new(&env.skiff);
    command.arg("agent").arg("--kubeconfig").arg(server.kubeconfig()).arg("--data-dir").arg(data_dir);
    command.args(["--node-name", NODE, "--kubelet-port", &free_port()?.to_string()]);
    // No image garbage collection: on a nearly full disk it would remove the test image
    // between the phases (it is unused after the pods are deleted).
    command.args(["--image-gc-high-threshold", "100"]);
    Child::spawn("skiff agent", command, &env.scratch.log("skiff-agent"))
}

async fn wait_node_ready(server: &Server, agent: &mut Child) -> Result<()> {
    let url = format!("{}/api/v1/nodes/{NODE}", server.url);
    let http = server.client()?;
    poll(agent, "the node Ready", || async {
        let node: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
        let conditions = node["status"]["conditions"].as_array()?;
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True").then_some(())
    })
    .await
}

fn pod(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "nodeName": NODE,
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "sleep", "image": IMAGE, "command": ["sleep", "3600"]}]
        }
    })
}

/// Creates the pods at once, each timed from its create to Running seen by a watch;
/// returns the figures, when each create was sent (from the first), and the agent's
/// memory with them all running.
async fn through_the_api(
    env: &Env,
    server: &Server,
    pods: usize,
    agent: &mut Child,
) -> Result<(Figures, Vec<Duration>, Memory)> {
    let watch = Watch::open(server, "startup-", pods, true).await?;
    let sent = Arc::new(Mutex::new(Vec::with_capacity(pods)));
    let record = sent.clone();
    let url = server.url.clone();
    let started = Instant::now();
    fan_out(env, server, pods, move |http, i| {
        let (url, record) = (url.clone(), record.clone());
        async move {
            let name = format!("startup-{i}");
            let at = Instant::now();
            create(&http, &url, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), &pod(&name)).await?;
            record.lock().expect("not poisoned").push((name, at));
            Ok(())
        }
    })
    .await?;
    let seen = watch.wait(started + PHASE_TIMEOUT, &mut [&mut *agent]).await.context("watching the pods start")?;
    let busy = agent.memory()?;
    let sent = std::mem::take(&mut *sent.lock().expect("not poisoned"));
    let mut latencies = Vec::with_capacity(pods);
    for (name, at) in &sent {
        let running = seen.running_at.get(name).with_context(|| format!("{name} was never seen Running"))?;
        latencies.push(running.saturating_duration_since(*at));
    }
    let last = seen.running_at.values().max().copied().unwrap_or(started);
    let arrivals = sent.iter().map(|(_, at)| at.duration_since(started)).collect();
    Ok((Figures::of(latencies, last.duration_since(started)), arrivals, busy))
}

/// Deletes the benchmark's pods and waits until the agent has removed them from the API
/// and their sandboxes from the runtime (a pod deleted at once leaves the API first).
async fn delete_all(server: &Server, agent: &mut Child, runtime: &dyn Runtime) -> Result<()> {
    let url = format!("{}/api/v1/namespaces/{NAMESPACE}/pods", server.url);
    let http = server.client()?;
    let response = http.delete(&url).send().await?;
    if !response.status().is_success() {
        bail!("DELETE {url}: {}: {}", response.status(), response.text().await.unwrap_or_default());
    }
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut reported = Instant::now();
    loop {
        agent.ensure_running()?;
        // A slow answer on a loaded machine is asked again, on a new connection.
        let list: Result<Value> = async { Ok(server.client()?.get(&url).send().await?.json().await?) }.await;
        let left = list.as_ref().ok().and_then(|l| l["items"].as_array().map(Vec::len));
        let sandboxes = runtime.list_pod_sandbox(&Default::default()).await.map(|s| s.len()).ok();
        if left == Some(0) && sandboxes == Some(0) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the pods were not removed within {PHASE_TIMEOUT:?} (left: {left:?}, sandboxes: {sandboxes:?}, \
                 last list: {:?})",
                list.err()
            );
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("  … {left:?} pods, {sandboxes:?} sandboxes left {:?}", list.as_ref().err());
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The same pods started straight over CRI by the agent's own pod worker, without the
/// API server, the watch or status writes: the same containerd work per pod as skiff
/// (ListPodSandbox to adopt, RunPodSandbox with the pod's labels, cluster DNS and log
/// directory, PodSandboxStatus, ImageStatus, CreateContainer with the termination-log
/// mount and cgroup settings, StartContainer, ContainerStatus). Concurrency as the
/// agent's: a worker per pod as soon as the pod arrives, and no bound on runtime calls
/// (only its API writes are bounded). The pods arrive as their creates were sent through
/// the API (`arrivals`, from the first): all at once in one burst would time containerd
/// under a load skiff never gives it, every pod queued behind the whole hundred. Each is
/// timed from its arrival to its container running; then everything is removed as the
/// agent removes a deleted pod.
async fn straight_over_cri(runtime: Arc<dyn Runtime>, pods_dir: PathBuf, arrivals: &[Duration]) -> Result<Figures> {
    let mut node = NodeServices::detached(NODE, IpAddr::from([127, 0, 0, 1]))?;
    node.volumes = Some(VolumeHost { pods_dir, tmpfs: true });
    node.dns = Some(Arc::new(ClusterDns {
        servers: vec![skiff_dns::kubedns::DEFAULT_CLUSTER_DNS.parse()?],
        domain: skiff_dns::DEFAULT_CLUSTER_DOMAIN.into(),
        host: skiff_dns::resolvconf::ResolvConf::host(),
    }));
    let node = Arc::new(node);
    let started = Instant::now();
    let results: Vec<Result<(Duration, PodWorker, Pod)>> = futures::stream::iter(arrivals.iter().enumerate())
        .map(|(i, arrival)| {
            let mut worker = PodWorker::new(runtime.clone(), node.clone());
            async move {
                // Names and uids of no API pod: the agent removes such sandboxes only when it
                // lists its pods again (at start, or after losing its watch).
                let name = format!("raw-{i}");
                let mut pod: Pod = serde_json::from_value(pod(&name))?;
                pod.metadata.namespace = Some(NAMESPACE.into());
                pod.metadata.uid = Some(name.clone());
                let at = started + *arrival;
                tokio::time::sleep_until(at.into()).await;
                let observed = worker.sync(&pod).await?.observed;
                let running = observed
                    .containers
                    .iter()
                    .all(|c| c.current.as_ref().is_some_and(|s| s.state == ContainerState::Running));
                if !running {
                    bail!("{name}: not running after one sync: {observed:?}");
                }
                Ok((at.elapsed(), worker, pod))
            }
        })
        .buffer_unordered(arrivals.len())
        .collect()
        .await;
    let wall = started.elapsed();
    let mut latencies = Vec::with_capacity(arrivals.len());
    let mut failure = None;
    for result in results {
        match result {
            Ok((latency, mut worker, pod)) => {
                latencies.push(latency);
                worker.terminate(Some(&pod), Duration::ZERO).await?;
                remove_logs(Path::new(POD_LOG_ROOT), &pod).await;
            }
            Err(e) => failure = Some(e),
        }
    }
    // What a failed sync left behind (its worker is gone with it).
    for sandbox in
        runtime.list_pod_sandbox(&Default::default()).await?.iter().filter(|s| s.metadata.name.starts_with("raw-"))
    {
        runtime.stop_pod_sandbox(&sandbox.id).await?;
        runtime.remove_pod_sandbox(&sandbox.id).await?;
        remove_sandbox_logs(Path::new(POD_LOG_ROOT), &sandbox.metadata).await;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(Figures::of(latencies, wall)),
    }
}

/// Waits until the agent's containerd uses at most a tenth of a core over a second (for
/// a minute at most).
async fn wait_containerd_idle(agent: &Child) -> Result<()> {
    let pids = agent.children_named("containerd")?;
    let busy = || pids.iter().map(|&pid| cpu_time_of(pid)).sum::<Result<Duration>>();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = busy()?;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = busy()?;
        if now - before <= Duration::from_millis(100) {
            return Ok(());
        }
        before = now;
    }
    eprintln!("pod-startup: containerd still busy after a minute; going on");
    Ok(())
}

fn print(pods: usize, api: &Figures, cri: &Figures, ratio: f64, idle: Memory, busy: Memory) {
    let mut table = Table::new(
        &format!("Pod startup, {pods} pods on one node (image present)"),
        &["path", "p50 ms", "p99 ms", "pods/s"],
    );
    for (what, f) in [("skiff: create → Running (watch)", api), ("containerd over CRI: sandbox + create + start", cri)]
    {
        table.row(vec![what.into(), number(ms(f.latency.p50)), number(ms(f.latency.p99)), number(f.per_second)]);
    }
    table.print();
    println!("p99 ratio skiff ÷ CRI: {ratio:.2}× (target ≤ {RATIO_TARGET}×)");
    println!(
        "agent RSS: {:.1} MB idle, {:.1} MB with {pods} pods (peak {:.1} MB)",
        megabytes(idle.rss),
        megabytes(busy.rss),
        megabytes(busy.peak)
    );
}
