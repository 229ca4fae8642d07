//! `schedule`: scheduling throughput end to end through the API server, after
//! kube-scheduler's scheduler_perf workloads (SchedulingBasic, SchedulingPodAntiAffinity,
//! TopologySpreading): nodes are registered, then pods are created by `--clients`
//! clients as fast as the server takes them, and each pod counts when the benchmark sees
//! it bound through a watch. The scheduler runs as its own process (`skiff scheduler`,
//! with `skiff server --disable-scheduler`) so that its memory and CPU are its own.
//!
//! Nodes come from the API directly (scheduler_perf's node template: 4 CPUs, 32 GiB,
//! 110 pods), or with `--agent` from `skiff agent --simulate N`, which also runs the pods
//! (they turn Running) and renews the nodes' Leases.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::StreamExt;
use serde_json::{json, Value};

use crate::client::{self, Http};
use crate::load::{ms, Summary};
use crate::machine::CpuTimes;
use crate::process::{free_port, poll, wait_for_port, Child, Memory};
use crate::report::{emit, megabytes, number, Check, Table};
use crate::Env;

/// No workload may take longer than this, from the first create to the last pod bound.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
pub(crate) const NAMESPACE: &str = "bench";
/// How often a pod watch may be resumed before the run counts as failed.
const MAX_WATCH_RESUMES: usize = 100;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Pods of scheduler_perf's default template (100m CPU, 500Mi) on plain nodes.
    Basic,
    /// Every pod has required anti-affinity to the others on kubernetes.io/hostname.
    AntiAffinity,
    /// Every pod spreads over 3 zones (maxSkew 5, DoNotSchedule).
    Spread,
    /// scheduler_perf's Preemption workloads: the nodes are first filled with
    /// low-priority pods (4 of 900m CPU per node), then high-priority pods of 3 CPUs are
    /// measured, each of which fits only by preempting 3 of them.
    Preemption,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Basic => "basic",
            Workload::AntiAffinity => "anti-affinity",
            Workload::Spread => "spread",
            Workload::Preemption => "preemption",
        }
    }

    /// The target of the issue, pods/s.
    fn target(self) -> f64 {
        match self {
            Workload::Basic => 3000.0,
            Workload::AntiAffinity | Workload::Spread => 1000.0,
            // No target in the issue: kube-scheduler's own PreemptionAsync threshold.
            Workload::Preemption => 160.0,
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct ScheduleArgs {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods created and scheduled (anti-affinity: at most one per node fits, so it uses
    /// min(pods, nodes - 1000); preemption: min(pods, nodes), one preemptor per node).
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Which workloads to run (repeatable) [default: basic, anti-affinity, spread].
    #[arg(long = "workload", value_enum)]
    pub workloads: Vec<Workload>,
    /// Simulated nodes from `skiff agent --simulate N` (pods then also run) instead of
    /// Node objects created through the API. Only with the basic workload.
    #[arg(long)]
    pub agent: bool,
    /// The store of the server: durable SQLite (default) or memory.
    #[arg(long, default_value = "sqlite")]
    pub store: String,
    /// Create every pod first, then start the scheduler: pods/s is then its drain rate
    /// (first binding to last), without pod creates competing for the cores.
    #[arg(long)]
    pub precreate: bool,
    /// Also run the controller manager in the server. Off by default, as in kube-scheduler's
    /// scheduler_perf (API server and scheduler only): every controller watches every pod.
    #[arg(long)]
    pub controllers: bool,
}

/// One started skiff server (without its scheduler, or whatever `disable` says).
pub(crate) struct Server {
    pub child: Child,
    pub url: String,
    data_dir: PathBuf,
}

impl Server {
    /// `disable`: the server's `--disable-*` flags (the components that run apart).
    pub async fn start(env: &Env, store: &str, disable: &[&str]) -> Result<Self> {
        let data_dir = env.scratch.dir("skiff-schedule")?;
        let port = free_port()?;
        let mut command = Command::new(&env.skiff);
        command.arg("server").arg("--data-dir").arg(&data_dir);
        command.args(["--https-listen-port", &port.to_string(), "--bind-address", "127.0.0.1"]);
        // The API server alone (with the flags given): no containerd node, and no cluster
        // DNS, which nothing here resolves and whose port 53 another cluster may hold.
        command.args(["--store", store, "--disable-agent", "--disable-dns"]).args(disable);
        let mut child = Child::spawn("skiff server", command, &env.scratch.log("skiff-server"))?;
        wait_for_port(&mut child, port).await?;
        let http = client::skiff(&data_dir.join("tls"), Http::H2)?;
        let url = format!("https://127.0.0.1:{port}");
        let readyz = format!("{url}/readyz");
        poll(&mut child, "skiff /readyz", || async {
            http.get(&readyz).send().await.ok()?.status().is_success().then_some(())
        })
        .await?;
        Ok(Server { child, url, data_dir })
    }

    pub fn client(&self) -> Result<reqwest::Client> {
        client::skiff(&self.data_dir.join("tls"), Http::H2)
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig.yaml")
    }
}

/// What one workload measured.
struct Outcome {
    workload: Workload,
    nodes: usize,
    pods: usize,
    /// First create sent to last pod seen bound.
    wall: Duration,
    /// How long the creates alone took (they run concurrently with scheduling).
    creating: Duration,
    /// Per pod: create sent to bound seen.
    latency: Summary,
    scheduler_memory: Memory,
    scheduler_cpu: Duration,
    server_cpu: Duration,
    /// The pods existed before the scheduler started (wall is first to last binding).
    precreated: bool,
    /// With --agent: first create to last pod seen Running, and the agent's memory.
    running: Option<Duration>,
    agent_memory: Option<Memory>,
    /// Percent of the machine's CPU time the hypervisor took during the run.
    steal_percent: f64,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.pods as f64 / self.wall.as_secs_f64()
    }

    fn json(&self) -> Value {
        json!({
            "workload": self.workload.name(),
            "precreated": self.precreated,
            "nodes": self.nodes,
            "pods": self.pods,
            "seconds": self.wall.as_secs_f64(),
            "pods_per_second": self.per_second(),
            "creates_per_second": self.pods as f64 / self.creating.as_secs_f64(),
            "latency_ms": self.latency.json(),
            "scheduler_rss_bytes": self.scheduler_memory.rss,
            "scheduler_peak_rss_bytes": self.scheduler_memory.peak,
            "scheduler_cpu_us_per_pod": self.scheduler_cpu.as_secs_f64() * 1e6 / self.pods as f64,
            "server_cpu_us_per_pod": self.server_cpu.as_secs_f64() * 1e6 / self.pods as f64,
            "running_seconds": self.running.map(|d| d.as_secs_f64()),
            "agent_rss_bytes": self.agent_memory.map(|m| m.rss),
            "steal_percent": self.steal_percent,
        })
    }
}

pub async fn run(env: &Env, args: &ScheduleArgs) -> Result<Vec<Check>> {
    let workloads = if args.workloads.is_empty() {
        vec![Workload::Basic, Workload::AntiAffinity, Workload::Spread]
    } else {
        args.workloads.clone()
    };
    ensure!(!args.agent || workloads == [Workload::Basic], "--agent runs only the basic workload (--workload basic)");
    let mut outcomes = Vec::new();
    for workload in workloads {
        outcomes.push(run_workload(env, args, workload).await?);
    }
    print(&outcomes);
    Ok(outcomes
        .iter()
        .map(|o| {
            let how = if o.precreated { ", pre-created" } else { "" };
            Check::at_least(
                &format!("scheduling {}{how}, {} nodes / {} pods", o.workload.name(), o.nodes, o.pods),
                o.per_second(),
                o.workload.target(),
                "pods/s",
            )
        })
        .collect())
}

async fn run_workload(env: &Env, args: &ScheduleArgs, workload: Workload) -> Result<Outcome> {
    let pods = match workload {
        Workload::AntiAffinity => args.pods.min(args.nodes.saturating_sub(1000).max(1)),
        Workload::Preemption => args.pods.min(args.nodes),
        _ => args.pods,
    };
    ensure!(workload != Workload::Preemption || !args.precreate, "the preemption workload does not pre-create");
    let disabled: &[&str] =
        if args.controllers { &["--disable-scheduler"] } else { &["--disable-scheduler", "--disable-controllers"] };
    let server = Server::start(env, &args.store, disabled).await?;
    let http = server.client()?;
    create(&http, &server.url, "/api/v1/namespaces", &json!({"metadata": {"name": NAMESPACE}})).await?;

    let spawn_scheduler = || {
        let mut command = Command::new(&env.skiff);
        command.arg("scheduler").arg("--kubeconfig").arg(server.kubeconfig());
        Child::spawn("skiff scheduler", command, &env.scratch.log("skiff-scheduler"))
    };
    let early = if args.precreate { None } else { Some(spawn_scheduler()?) };

    eprintln!("schedule {}: registering {} nodes…", workload.name(), args.nodes);
    let agent = if args.agent {
        Some(start_agent(env, &server, args.nodes).await?)
    } else {
        create_nodes(env, &server, args.nodes).await?;
        None
    };
    if early.is_some() {
        wait_until_scheduling(&server, &http).await?;
    }
    if workload == Workload::Preemption {
        fill_with_low_priority_pods(env, &server, &http, args.nodes).await?;
    }

    eprintln!("schedule {}: creating {pods} pods with {} clients…", workload.name(), env.clients);
    let watch = Watch::open(&server, "pod-", pods, args.agent).await?;
    let cpu_times = CpuTimes::now();
    let (scheduler, started, created, creating, cpu_before) = match early {
        Some(scheduler) => {
            let cpu_before = (scheduler.cpu_time()?, server.child.cpu_time()?);
            let started = Instant::now();
            let created = create_pods(env, &server, workload, pods).await?;
            (scheduler, started, created, started.elapsed(), cpu_before)
        }
        None => {
            let creating_started = Instant::now();
            let created = create_pods(env, &server, workload, pods).await?;
            let creating = creating_started.elapsed();
            eprintln!("schedule {}: starting the scheduler on {pods} pending pods…", workload.name());
            let cpu_before = (Duration::ZERO, server.child.cpu_time()?);
            let started = Instant::now();
            (spawn_scheduler()?, started, created, creating, cpu_before)
        }
    };
    let mut server = server;
    let mut scheduler = scheduler;
    let mut agent = agent;
    let mut children: Vec<&mut Child> = vec![&mut server.child, &mut scheduler];
    if let Some(agent) = agent.as_mut() {
        children.push(agent);
    }
    let seen = watch.wait(started + RUN_TIMEOUT, &mut children).await?;
    let steal_percent = CpuTimes::now().steal_percent_since(cpu_times);
    let cpu_after = (scheduler.cpu_time()?, server.child.cpu_time()?);
    let scheduler_memory = scheduler.memory()?;
    let agent_memory = agent.as_ref().map(Child::memory).transpose()?;

    let mut latencies = Vec::with_capacity(pods);
    let (mut first, mut last) = (Duration::MAX, Duration::ZERO);
    for (name, sent) in &created {
        let bound = seen.bound.get(name).with_context(|| format!("{name} was never seen bound"))?;
        // Pre-created pods wait for the scheduler: count from its start.
        latencies.push(bound.saturating_duration_since((*sent).max(started)));
        first = first.min(bound.saturating_duration_since(started));
        last = last.max(bound.saturating_duration_since(started));
    }
    let wall = if args.precreate { last.saturating_sub(first) } else { last };
    let last_running = seen.running_at.values().max().copied().unwrap_or(started);
    let running = seen.running.then(|| last_running.duration_since(started));
    Ok(Outcome {
        workload,
        nodes: args.nodes,
        pods,
        wall,
        creating,
        precreated: args.precreate,
        latency: Summary::of(latencies),
        scheduler_memory,
        scheduler_cpu: cpu_after.0 - cpu_before.0,
        server_cpu: cpu_after.1 - cpu_before.1,
        running,
        agent_memory,
        steal_percent,
    })
}

pub(crate) async fn create(http: &reqwest::Client, url: &str, path: &str, body: &Value) -> Result<()> {
    let response = http.post(format!("{url}{path}")).json(body).send().await?;
    let status = response.status();
    if !status.is_success() {
        bail!("POST {path}: {status}: {}", response.text().await.unwrap_or_default());
    }
    Ok(())
}

/// Runs `count` jobs on `env.clients` connections, `job(client, index)` each.
pub(crate) async fn fan_out<F, Fut>(env: &Env, server: &Server, count: usize, job: F) -> Result<()>
where
    F: Fn(reqwest::Client, usize) -> Fut + Clone,
    Fut: std::future::Future<Output = Result<()>>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..env.clients.min(count).max(1)).map(|_| {
        let (next, job) = (next.clone(), job.clone());
        let client = server.client();
        async move {
            let client = client?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                job(client.clone(), i).await?;
            }
        }
    });
    futures::future::try_join_all(workers).await?;
    Ok(())
}

/// scheduler_perf's node template, with a hostname label and one of three zones.
fn node(i: usize) -> Value {
    let name = format!("node-{i}");
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{}", i % 3)
        }},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    })
}

async fn create_nodes(env: &Env, server: &Server, count: usize) -> Result<()> {
    let url = server.url.clone();
    fan_out(env, server, count, move |http, i| {
        let url = url.clone();
        async move { create(&http, &url, "/api/v1/nodes", &node(i)).await }
    })
    .await
}

pub(crate) async fn start_agent(env: &Env, server: &Server, count: usize) -> Result<Child> {
    let mut command = Command::new(&env.skiff);
    command.arg("agent").arg("--kubeconfig").arg(server.kubeconfig());
    command.args(["--simulate", &count.to_string(), "--node-name", "node", "--capacity", "cpu=4,memory=32Gi,pods=110"]);
    command.args(["--cluster-cidr", "10.64.0.0/10"]);
    let mut child = Child::spawn("skiff agent", command, &env.scratch.log("skiff-agent"))?;
    let http = server.client()?;
    let url = format!("{}/api/v1/nodes", server.url);
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        child.ensure_running()?;
        // Metadata only: a few hundred bytes per node instead of the whole object.
        let list: Value = http
            .get(&url)
            .header("accept", "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")
            .send()
            .await?
            .json()
            .await?;
        let total = list["items"].as_array().map_or(0, Vec::len);
        if total >= count {
            return Ok(child);
        }
        ensure!(Instant::now() < deadline, "only {total} of {count} simulated nodes registered");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the scheduler leads and places a pod (so that it has listed the nodes).
async fn wait_until_scheduling(server: &Server, http: &reqwest::Client) -> Result<()> {
    let probe = json!({"metadata": {"name": "probe"}, "spec": {"containers": [{"name": "c", "image": "pause"}]}});
    create(http, &server.url, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), &probe).await?;
    let url = format!("{}/api/v1/namespaces/{NAMESPACE}/pods/probe", server.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod: Value = http.get(&url).send().await?.json().await?;
        if pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) {
            break;
        }
        ensure!(Instant::now() < deadline, "the scheduler placed no pod within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    http.delete(&url).query(&[("gracePeriodSeconds", "0")]).send().await?.error_for_status()?;
    // Let the node events that followed the list settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

fn pod(workload: Workload, i: usize) -> Value {
    let container = json!({
        "name": "pause", "image": "registry.k8s.io/pause:3.10", "ports": [{"containerPort": 80}],
        "resources": {"requests": {"cpu": "100m", "memory": "500Mi"}, "limits": {"cpu": "100m", "memory": "500Mi"}}
    });
    let mut pod = json!({"metadata": {"name": format!("pod-{i}")}, "spec": {"containers": [container]}});
    match workload {
        Workload::Basic => {}
        Workload::AntiAffinity => {
            pod["metadata"]["labels"] = json!({"color": "green"});
            pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"color": "green"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}});
        }
        Workload::Preemption => {
            pod["spec"]["priorityClassName"] = json!("bench-high");
            pod["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "3", "memory": "500Mi"}});
        }
        Workload::Spread => {
            pod["metadata"]["labels"] = json!({"color": "blue"});
            pod["spec"]["topologySpreadConstraints"] = json!([{
                "maxSkew": 5, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"color": "blue"}}
            }]);
        }
    }
    pod
}

/// The preemption workload's setup: PriorityClasses `bench-low` and `bench-high`, and 4
/// low-priority pods of 900m CPU per node, all bound before the measured pods come. They
/// have terminationGracePeriodSeconds 0 because the nodes run no agent: a preempted pod
/// is then removed at once instead of waiting for a kubelet.
async fn fill_with_low_priority_pods(env: &Env, server: &Server, http: &reqwest::Client, nodes: usize) -> Result<()> {
    for (name, value) in [("bench-low", 1), ("bench-high", 1000)] {
        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name}, "value": value});
        create(http, &server.url, "/apis/scheduling.k8s.io/v1/priorityclasses", &class).await?;
    }
    let count = nodes * 4;
    eprintln!("schedule preemption: filling the nodes with {count} low-priority pods…");
    let watch = Watch::open(server, "low-", count, false).await?;
    let url = server.url.clone();
    fan_out(env, server, count, move |http, i| {
        let url = url.clone();
        async move {
            let pod = json!({"metadata": {"name": format!("low-{i}")}, "spec": {
                "priorityClassName": "bench-low", "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "900m", "memory": "500Mi"}}}]}});
            create(&http, &url, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), &pod).await
        }
    })
    .await?;
    watch.wait(Instant::now() + RUN_TIMEOUT, &mut []).await?;
    Ok(())
}

/// Creates the pods; returns when each create was sent, by name.
async fn create_pods(env: &Env, server: &Server, workload: Workload, count: usize) -> Result<Vec<(String, Instant)>> {
    let sent = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let url = server.url.clone();
    let record = sent.clone();
    fan_out(env, server, count, move |http, i| {
        let (url, record) = (url.clone(), record.clone());
        async move {
            let at = Instant::now();
            create(&http, &url, &format!("/api/v1/namespaces/{NAMESPACE}/pods"), &pod(workload, i)).await?;
            record.lock().expect("not poisoned").push((format!("pod-{i}"), at));
            Ok(())
        }
    })
    .await?;
    let sent = std::mem::take(&mut *sent.lock().expect("not poisoned"));
    Ok(sent)
}

/// What the watch saw: when each pod was first seen bound, and Running.
pub(crate) struct Seen {
    pub bound: HashMap<String, Instant>,
    pub running: bool,
    /// When each pod was first seen Running (if `running`).
    pub running_at: HashMap<String, Instant>,
}

/// A watch on the benchmark's bound pods, read by a task until it has seen every pod
/// bound (and Running, when asked).
pub(crate) struct Watch {
    task: tokio::task::JoinHandle<Result<Seen>>,
    progress: Arc<AtomicUsize>,
    expected: usize,
}

impl Watch {
    /// Opens the watch before any pod exists.
    /// Counts pods whose names start with `prefix`.
    pub async fn open(server: &Server, prefix: &'static str, pods: usize, running: bool) -> Result<Self> {
        let http = server.client()?;
        // Only bound pods match: a pod's first event is its binding.
        let pods_url = format!("{}/api/v1/namespaces/{NAMESPACE}/pods", server.url);
        let list: Value = http.get(format!("{pods_url}?limit=1")).send().await?.error_for_status()?.json().await?;
        let mut from =
            list["metadata"]["resourceVersion"].as_str().context("a list without resourceVersion")?.to_string();
        let watch_url = format!("{pods_url}?watch=true&fieldSelector=spec.nodeName%21%3D&resourceVersion=");
        // A watch lasts the whole run, beyond the client's per-request timeout.
        let open = move |from: String| http.get(format!("{watch_url}{from}")).timeout(RUN_TIMEOUT).send();
        let mut response = open(from.clone()).await?.error_for_status()?;
        let progress = Arc::new(AtomicUsize::new(0));
        let counter = progress.clone();
        let expected = if running { 2 * pods } else { pods };
        let task = tokio::spawn(async move {
            let mut seen = Seen { bound: HashMap::with_capacity(pods), running, running_at: HashMap::new() };
            for _ in 0..MAX_WATCH_RESUMES {
                let mut buffer = Vec::new();
                let mut stream = response.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let now = Instant::now();
                    buffer.extend_from_slice(&chunk?);
                    let mut parsed = 0;
                    while let Some(length) = buffer[parsed..].iter().position(|b| *b == b'\n') {
                        let line = &buffer[parsed..=parsed + length];
                        let event: PodEvent = serde_json::from_slice(line).map_err(|e| watch_error(line, e))?;
                        parsed += length + 1;
                        let PodFields { metadata: PodMeta { name, resource_version }, status } = event.object;
                        from = resource_version;
                        if name.starts_with(prefix) {
                            if event.kind != "DELETED" && !seen.bound.contains_key(&name) {
                                seen.bound.insert(name.clone(), now);
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            if running && status.phase == "Running" && !seen.running_at.contains_key(&name) {
                                seen.running_at.insert(name, now);
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    buffer.drain(..parsed);
                    if counter.load(Ordering::Relaxed) >= expected {
                        return Ok(seen);
                    }
                }
                // The server closes a watcher that falls too far behind (the preemption
                // workload's deletions come in bursts); like an informer, resume after the
                // last event seen.
                eprintln!("  the pod watch closed; resuming from resourceVersion {from}");
                response = open(from.clone()).await?.error_for_status()?;
            }
            bail!(
                "the watch closed {MAX_WATCH_RESUMES} times; {} of {expected} events seen",
                counter.load(Ordering::Relaxed)
            )
        });
        Ok(Watch { task, progress, expected })
    }

    /// Waits for the watch to see everything, checking that `children` keep running.
    pub async fn wait(self, deadline: Instant, children: &mut [&mut Child]) -> Result<Seen> {
        let mut reported = Instant::now();
        while !self.task.is_finished() {
            for child in children.iter_mut() {
                child.ensure_running()?;
            }
            let done = self.progress.load(Ordering::Relaxed);
            if Instant::now() > deadline {
                self.task.abort();
                bail!("only {done} of {} pod events within {RUN_TIMEOUT:?}", self.expected);
            }
            if reported.elapsed() > Duration::from_secs(5) {
                eprintln!("  … {done} of {} pod events seen", self.expected);
                reported = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.task.await.context("the watch task panicked")?
    }
}

/// Why a watch line is not a pod event: an ERROR event (its object is a Status, which the
/// pod fields do not fit), with the server's message, or else the parse error.
fn watch_error(line: &[u8], parse_error: serde_json::Error) -> anyhow::Error {
    let event: Value = serde_json::from_slice(line).unwrap_or_default();
    if event["type"] == "ERROR" {
        anyhow::anyhow!("the watch failed: {}", event["object"]["message"])
    } else {
        parse_error.into()
    }
}

/// The fields of a pod watch event the benchmark reads: the rest is skipped unparsed, so
/// that the benchmark's own CPU per pod stays small beside the server's.
#[derive(serde::Deserialize)]
struct PodEvent {
    #[serde(rename = "type")]
    kind: String,
    object: PodFields,
}

#[derive(serde::Deserialize)]
struct PodFields {
    metadata: PodMeta,
    #[serde(default)]
    status: PodPhase,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_version: String,
}

#[derive(serde::Deserialize, Default)]
struct PodPhase {
    #[serde(default)]
    phase: String,
}

fn print(outcomes: &[Outcome]) {
    let mut table = Table::new(
        "Scheduling throughput, end to end (pods created, bound, seen bound through a watch)",
        &[
            "workload",
            "nodes",
            "pods",
            "pods/s",
            "creates/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "sched RSS MB (peak)",
            "sched CPU µs/pod",
            "server CPU µs/pod",
            "steal %",
        ],
    );
    for o in outcomes {
        table.row(vec![
            if o.precreated { format!("{} (pre-created)", o.workload.name()) } else { o.workload.name().into() },
            o.nodes.to_string(),
            o.pods.to_string(),
            number(o.per_second()),
            number(o.pods as f64 / o.creating.as_secs_f64()),
            number(ms(o.latency.p50)),
            number(ms(o.latency.p99)),
            number(ms(o.latency.max)),
            format!("{} ({})", number(megabytes(o.scheduler_memory.rss)), number(megabytes(o.scheduler_memory.peak))),
            number(o.scheduler_cpu.as_secs_f64() * 1e6 / o.pods as f64),
            number(o.server_cpu.as_secs_f64() * 1e6 / o.pods as f64),
            format!("{:.0}", o.steal_percent),
        ]);
        emit("schedule", o.json());
    }
    table.print();
    for o in outcomes.iter().filter(|o| o.running.is_some()) {
        let running = o.running.unwrap_or_default();
        let agent = o.agent_memory.map_or(0, |m| m.rss);
        eprintln!(
            "with simulated nodes: all {} pods Running after {} s; agent RSS {} MB",
            o.pods,
            number(running.as_secs_f64()),
            number(megabytes(agent))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_event_fails_the_watch_with_the_servers_message() {
        let line = br#"{"type":"ERROR","object":{"kind":"Status","status":"Failure","message":"too old resource version: 5 (9)","code":410}}
"#;
        let parse_error = serde_json::from_slice::<PodEvent>(line).err().expect("a Status is not a pod");
        let error = watch_error(line, parse_error).to_string();
        assert_eq!(error, r#"the watch failed: "too old resource version: 5 (9)""#);
        let garbage = b"{not json\n";
        let parse_error = serde_json::from_slice::<PodEvent>(garbage).err().expect("not JSON");
        assert!(!watch_error(garbage, parse_error).to_string().contains("the watch failed"));
    }
}
