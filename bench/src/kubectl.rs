//! `kubectl`: what a kubectl user waits for. `kubectl get pods -A` over many pods (wall
//! time, and the bytes of the Table pages kubectl fetches), and `kubectl apply -f` of a
//! large manifest (creating, then unchanged).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use crate::client::{self, Http};
use crate::load::{ms, Summary};
use crate::report::{emit, megabytes, number, Check, Table};
use crate::servers::{Skiff, Store};
use crate::Env;

#[derive(clap::Args, Clone, Debug)]
pub struct KubectlArgs {
    /// Pods to create before `kubectl get pods -A`.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Objects in the applied manifest.
    #[arg(long, default_value_t = 500)]
    pub manifest_objects: usize,
    /// Timed runs of each command (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub kubectl_runs: usize,
}

/// The Accept header kubectl sends for `get`.
const TABLE_ACCEPT: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

pub async fn run(env: &Env, args: &KubectlArgs) -> Result<Vec<Check>> {
    let dir = env.scratch.dir("skiff-kubectl")?;
    let server = Skiff::start(&env.skiff, &dir, Store::Sqlite, &env.scratch.log("skiff-kubectl")).await?;
    let kubeconfig = dir.join("kubeconfig.yaml");
    eprintln!("kubectl: creating {} pods in 10 namespaces…", args.pods);
    create_pods(&server, args.pods, env.clients).await?;

    let get = time_command(&kubeconfig, &["get", "pods", "-A", "--no-headers"], args.kubectl_runs, Some(args.pods))?;
    let fetch_started = Instant::now();
    let (pages, bytes) = table_pages(&server).await?;
    let fetch = fetch_started.elapsed();

    let manifest = dir.join("manifest.yaml");
    std::fs::write(&manifest, manifest_of(args.manifest_objects))?;
    let path = manifest.to_string_lossy().to_string();
    let create = time_command(&kubeconfig, &["apply", "-f", &path], 1, None)?;
    let unchanged = time_command(&kubeconfig, &["apply", "-f", &path], args.kubectl_runs, None)?;
    server.child.stop().await?;

    let mut table =
        Table::new("kubectl against skiff", &["command", "objects", "median ms", "min ms", "max ms", "note"]);
    let row = |name: &str, objects: usize, s: &Summary, note: String| {
        vec![name.to_string(), objects.to_string(), number(ms(s.p50)), number(ms(s.min)), number(ms(s.max)), note]
    };
    let wire = format!(
        "{pages} Table pages, {} MB on the wire, fetched in {} ms without kubectl",
        number(megabytes(bytes)),
        number(ms(fetch))
    );
    table.row(row("get pods -A", args.pods, &get, wire));
    table.row(row("apply -f (create)", args.manifest_objects, &create, String::new()));
    table.row(row("apply -f (unchanged)", args.manifest_objects, &unchanged, String::new()));
    table.print();
    emit(
        "kubectl_get_pods",
        json!({"pods": args.pods, "latency_ms": get.json(), "pages": pages, "bytes": bytes, "fetch_ms": ms(fetch)}),
    );
    emit(
        "kubectl_apply",
        json!({"objects": args.manifest_objects, "create_ms": create.json(), "unchanged_ms": unchanged.json()}),
    );
    Ok(Vec::new())
}

/// Creates `count` small pods spread over ten namespaces, `clients` at a time.
async fn create_pods(server: &Skiff, count: usize, clients: usize) -> Result<()> {
    let client = client::skiff(&server.tls_dir, Http::H2)?;
    for ns in 0..10 {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("bench-{ns}")}});
        client
            .post(format!("{}/api/v1/namespaces", server.url))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
    }
    stream::iter(0..count)
        .map(|i| {
            let (client, url) = (client.clone(), format!("{}/api/v1/namespaces/bench-{}/pods", server.url, i % 10));
            async move {
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("pod-{i}"), "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]}});
                // Read the answer to its end: a dropped HTTP/2 response is a stream reset, and
                // the client gives up its connection after too many of those.
                client.post(url).json(&pod).send().await?.error_for_status()?.bytes().await.map(drop)
            }
        })
        .buffer_unordered(clients)
        .try_collect::<()>()
        .await
        .context("creating pods")
}

/// Fetches every page of the all-namespaces pod Table as `kubectl get` does (500 per
/// page) and returns the page count and the bytes received.
async fn table_pages(server: &Skiff) -> Result<(usize, u64)> {
    let client = client::skiff(&server.tls_dir, Http::H2)?;
    let (mut pages, mut bytes, mut next) = (0, 0u64, String::new());
    loop {
        let url = format!("{}/api/v1/pods?limit=500&continue={next}", server.url);
        let body = client.get(url).header("accept", TABLE_ACCEPT).send().await?.error_for_status()?.bytes().await?;
        pages += 1;
        bytes += body.len() as u64;
        let page: Value = serde_json::from_slice(&body)?;
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => next = token.to_string(),
            _ => return Ok((pages, bytes)),
        }
    }
}

/// Runs kubectl `runs` times; checks the line count of its output when asked.
fn time_command(kubeconfig: &Path, args: &[&str], runs: usize, lines: Option<usize>) -> Result<Summary> {
    let mut samples: Vec<Duration> = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let output =
            Command::new("kubectl").args(args).env("KUBECONFIG", kubeconfig).output().context("running kubectl")?;
        samples.push(started.elapsed());
        ensure!(output.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
        if let Some(expected) = lines {
            let got = output.stdout.iter().filter(|b| **b == b'\n').count();
            ensure!(got == expected, "kubectl {} printed {got} lines, expected {expected}", args.join(" "));
        }
    }
    Ok(Summary::of(samples))
}

/// A multi-document manifest: ConfigMaps, Services and Deployments in equal parts.
fn manifest_of(objects: usize) -> String {
    (0..objects)
        .map(|i| match i % 3 {
            0 => format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m-{i}\ndata:\n  key: value-{i}\n"),
            1 => format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: m-{i}\nspec:\n  selector: {{app: m-{i}}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
            ),
            _ => format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: m-{i}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {{app: m-{i}}}\n  template:\n    metadata:\n      labels: {{app: m-{i}}}\n    spec:\n      containers:\n      - name: main\n        image: busybox:1.36\n"
            ),
        })
        .collect::<Vec<_>>()
        .join("---\n")
}
