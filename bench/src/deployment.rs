//! `deployment`: a Deployment of `--replicas` (1,000) pods on `--nodes` (100) simulated
//! nodes, end to end: the time from creating it to Available=True with every replica
//! available, then the time a rolling update of its image takes to complete. The
//! controller manager runs as its own process (`skiff controller-manager`, with
//! `skiff server --disable-controllers`) so that its memory and CPU are its own; the
//! scheduler runs inside the server, and the nodes are `skiff agent --simulate N`.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::process::{Child, Memory};
use crate::report::{emit, megabytes, number, Check, Table};
use crate::schedule::{create, start_agent, Server};
use crate::Env;

const NAMESPACE: &str = "bench";
const NAME: &str = "web";
/// No phase may take longer than this.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);
/// The target for each phase.
const TARGET_SECONDS: f64 = 5.0;

#[derive(clap::Args, Clone, Debug)]
pub struct DeploymentArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1000)]
    pub replicas: usize,
    /// The store of the server: durable SQLite (default) or memory.
    #[arg(long, default_value = "sqlite")]
    pub store: String,
}

/// One phase: how long it took, and what the processes used meanwhile.
struct Phase {
    name: &'static str,
    wall: Duration,
    manager_cpu: Duration,
    server_cpu: Duration,
    agent_cpu: Duration,
    manager_memory: Memory,
}

pub async fn run(env: &Env, args: &DeploymentArgs) -> Result<Vec<Check>> {
    let mut server = Server::start(env, &args.store, &["--disable-controllers"]).await?;
    let http = server.client()?;
    create(&http, &server.url, "/api/v1/namespaces", &json!({"metadata": {"name": NAMESPACE}})).await?;
    eprintln!("deployment: registering {} simulated nodes…", args.nodes);
    let mut agent = start_agent(env, &server, args.nodes).await?;
    let mut command = Command::new(&env.skiff);
    command.arg("controller-manager").arg("--kubeconfig").arg(server.kubeconfig());
    let mut manager = Child::spawn("skiff controller-manager", command, &env.scratch.log("skiff-controller-manager"))?;
    wait_for_leader(&server, &http, &mut manager).await?;

    let deployments = format!("{}/apis/apps/v1/namespaces/{NAMESPACE}/deployments", server.url);
    let mut children = [&mut server.child, &mut agent, &mut manager];
    let mut phases = Vec::new();

    eprintln!("deployment: creating {NAME} with {} replicas…", args.replicas);
    let before = usage(&children)?;
    let started = Instant::now();
    create(
        &http,
        &server.url,
        &format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments"),
        &deployment(args.replicas, "pause:1"),
    )
    .await?;
    wait_rolled_out(&http, &deployments, args.replicas, &mut children).await?;
    phases.push(phase("create → all available", started.elapsed(), &before, &children)?);

    eprintln!("deployment: rolling update of the image…");
    let before = usage(&children)?;
    let started = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "pause:2"}]}}}});
    let response = http
        .patch(format!("{deployments}/{NAME}"))
        .header("content-type", "application/strategic-merge-patch+json")
        .json(&patch)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("PATCH {NAME}: {}: {}", response.status(), response.text().await.unwrap_or_default());
    }
    wait_rolled_out(&http, &deployments, args.replicas, &mut children).await?;
    phases.push(phase("rolling update → complete", started.elapsed(), &before, &children)?);

    print(args, &phases);
    Ok(phases
        .iter()
        .map(|p| {
            let metric = format!("deployment {}, {} replicas / {} nodes", p.name, args.replicas, args.nodes);
            Check::at_most(&metric, p.wall.as_secs_f64(), TARGET_SECONDS, "s")
        })
        .collect())
}

fn deployment(replicas: usize, image: &str) -> Value {
    json!({
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

/// Waits until the controller manager holds its Lease (it has started its controllers).
async fn wait_for_leader(server: &Server, http: &reqwest::Client, manager: &mut Child) -> Result<()> {
    let url =
        format!("{}/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager", server.url);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        manager.ensure_running()?;
        let lease: Value = http.get(&url).send().await?.json().await?;
        if lease["spec"]["holderIdentity"].as_str().is_some_and(|h| !h.is_empty()) {
            // Let its caches fill (an empty namespace: a few lists).
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the controller manager took no Lease within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the Deployment until this generation is observed and complete: every replica
/// updated and available, none old, Available=True.
async fn wait_rolled_out(
    http: &reqwest::Client,
    deployments: &str,
    replicas: usize,
    children: &mut [&mut Child],
) -> Result<()> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut reported = Instant::now();
    let url = format!("{deployments}/{NAME}");
    loop {
        let d: Value = http.get(&url).send().await?.json().await?;
        let status = &d["status"];
        let count = |field: &str| status[field].as_u64().unwrap_or(0) as usize;
        let available = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Available" && c["status"] == "True");
        let observed = status["observedGeneration"] == d["metadata"]["generation"];
        if observed
            && available
            && count("replicas") == replicas
            && count("updatedReplicas") == replicas
            && count("availableReplicas") == replicas
        {
            return Ok(());
        }
        for child in children.iter_mut() {
            child.ensure_running()?;
        }
        if Instant::now() > deadline {
            bail!("not rolled out within {PHASE_TIMEOUT:?}: {}", status);
        }
        if reported.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "  … replicas {}, updated {}, available {}",
                count("replicas"),
                count("updatedReplicas"),
                count("availableReplicas")
            );
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU time so far of server, agent and controller manager.
fn usage(children: &[&mut Child]) -> Result<[Duration; 3]> {
    Ok([children[0].cpu_time()?, children[1].cpu_time()?, children[2].cpu_time()?])
}

fn phase(name: &'static str, wall: Duration, before: &[Duration; 3], children: &[&mut Child]) -> Result<Phase> {
    let after = usage(children)?;
    Ok(Phase {
        name,
        wall,
        server_cpu: after[0] - before[0],
        agent_cpu: after[1] - before[1],
        manager_cpu: after[2] - before[2],
        manager_memory: children[2].memory().context("controller manager memory")?,
    })
}

fn print(args: &DeploymentArgs, phases: &[Phase]) {
    let mut table = Table::new(
        &format!("Deployment of {} replicas on {} simulated nodes (store: {})", args.replicas, args.nodes, args.store),
        &["phase", "seconds", "controller-manager RSS MB (peak)", "CPU s: controller-manager", "server", "agent"],
    );
    for p in phases {
        table.row(vec![
            p.name.to_string(),
            number(p.wall.as_secs_f64()),
            format!("{} ({})", number(megabytes(p.manager_memory.rss)), number(megabytes(p.manager_memory.peak))),
            number(p.manager_cpu.as_secs_f64()),
            number(p.server_cpu.as_secs_f64()),
            number(p.agent_cpu.as_secs_f64()),
        ]);
        emit(
            "deployment",
            json!({
                "phase": p.name, "replicas": args.replicas, "nodes": args.nodes, "store": args.store,
                "seconds": p.wall.as_secs_f64(),
                "controller_manager_rss_bytes": p.manager_memory.rss,
                "controller_manager_peak_rss_bytes": p.manager_memory.peak,
                "controller_manager_cpu_seconds": p.manager_cpu.as_secs_f64(),
                "server_cpu_seconds": p.server_cpu.as_secs_f64(),
                "agent_cpu_seconds": p.agent_cpu.as_secs_f64(),
            }),
        );
    }
    table.print();
}
