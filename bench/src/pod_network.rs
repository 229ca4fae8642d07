//! `pod-network`: TCP throughput across nodes with iperf3, on a real server and two real
//! agents, each in its own network namespace joined to a bridge by a veth pair
//! (`skiff_testkit::netlab`). Three paths, alternating, `--rounds` times each:
//! - host to host: iperf3 in node A's namespace to node B's address (veth, bridge, veth);
//! - pod to pod: a pod on A to a pod on B by pod IP (plus each node's cni0 bridge, the
//!   pods' veths, and a route through the node);
//! - pod to Service: the same through a ClusterIP Service (plus A's proxy DNAT).
//!
//! Pods run the host's iperf3 (the test image is busybox only): the host's root is mounted
//! read-only at /host and iperf3 is started through the host's dynamic loader. Needs root,
//! iperf3 (scripts/install-deps.sh installs it) and what the agent needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use skiff_testkit::netlab::{Cluster, IMAGE};

use crate::report::{emit, Check, Table};
use crate::Env;

#[derive(clap::Args, Clone, Debug)]
pub struct PodNetworkArgs {
    /// Seconds each iperf3 run sends for.
    #[arg(long, default_value_t = 5)]
    pub seconds: u32,
    /// Runs of each path.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

const POD_PORT: u16 = 5201;
const HOST_PORT: u16 = 5202;

/// The host's iperf3 and its loader, as a pod sees them under /host.
struct HostIperf {
    loader: String,
    library_path: String,
    binary: String,
}

impl HostIperf {
    fn find() -> Result<Self> {
        let real = |path: &str| -> Result<String> {
            let resolved = std::fs::canonicalize(path).with_context(|| format!("{path} (install iperf3)"))?;
            Ok(format!("/host{}", resolved.display()))
        };
        let binary = real(&which("iperf3")?)?;
        let loader = real("/lib64/ld-linux-x86-64.so.2")?;
        let library_path = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"]
            .iter()
            .map(|dir| real(dir))
            .collect::<Result<Vec<_>>>()?
            .join(":");
        Ok(HostIperf { loader, library_path, binary })
    }

    /// The command line that runs iperf3 with `args` inside a pod.
    fn command(&self, args: &[&str]) -> Vec<String> {
        let mut command =
            vec![self.loader.clone(), "--library-path".into(), self.library_path.clone(), self.binary.clone()];
        command.extend(args.iter().map(|a| a.to_string()));
        command
    }
}

fn which(program: &str) -> Result<String> {
    let output = Command::new("sh").args(["-c", &format!("command -v {program}")]).output()?;
    ensure!(output.status.success(), "{program} not found: run scripts/install-deps.sh");
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A pod on `node` running `command`, with the host's root at /host (read-only).
fn pod(name: &str, node: &str, command: Vec<String>) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "iperf", "image": IMAGE, "command": command,
                "env": [{"name": "TMPDIR", "value": "/"}],
                "volumeMounts": [{"name": "host", "mountPath": "/host", "readOnly": true}],
            }],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        },
    })
}

/// Received bits per second from iperf3's JSON report.
fn bits_per_second(report: &[u8]) -> Result<f64> {
    let report: Value = serde_json::from_slice(report).context("iperf3's JSON report")?;
    if let Some(error) = report["error"].as_str() {
        bail!("iperf3: {error}");
    }
    report["end"]["sum_received"]["bits_per_second"].as_f64().context("no end.sum_received in iperf3's report")
}

/// One iperf3 client run from the pod `client` to `address:port`.
fn from_pod(cluster: &Cluster, iperf: &HostIperf, address: &str, seconds: &str) -> Result<f64> {
    let command = iperf.command(&["-c", address, "-p", &POD_PORT.to_string(), "-t", seconds, "-J"]);
    let mut args = vec!["exec", "client", "--"];
    args.extend(command.iter().map(String::as_str));
    let output = cluster.kubectl(&args);
    ensure!(output.status.success(), "iperf3 in the client pod: {}", String::from_utf8_lossy(&output.stderr));
    bits_per_second(&output.stdout)
}

/// One iperf3 run from node A's namespace to node B's address, the server started for it.
fn host_to_host(cluster: &Cluster, seconds: &str) -> Result<f64> {
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let in_netns = |netns: &str| {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/run/netns/{netns}")).arg("--").arg("iperf3");
        command
    };
    let mut server =
        in_netns(&b.netns).args(["-s", "-1", "-p", &HOST_PORT.to_string()]).stdout(Stdio::null()).spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    let output =
        in_netns(&a.netns).args(["-c", &b.ip.to_string(), "-p", &HOST_PORT.to_string(), "-t", seconds, "-J"]).output();
    let _ = server.kill();
    let _ = server.wait();
    let output = output?;
    ensure!(output.status.success(), "iperf3 host to host: {}", String::from_utf8_lossy(&output.stdout));
    bits_per_second(&output.stdout)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn measure(skiff: &Path, args: &PodNetworkArgs) -> Result<[Vec<f64>; 3]> {
    let iperf = HostIperf::find()?;
    eprintln!("pod-network: starting a server and two agents in network namespaces…");
    let cluster = Cluster::start_with(skiff, 2);
    let (a, b) = (cluster.nodes[0].name.clone(), cluster.nodes[1].name.clone());
    cluster.apply(&pod("server", &b, iperf.command(&["-s", "-p", &POD_PORT.to_string()])).to_string());
    cluster.apply(&pod("client", &a, vec!["sleep".into(), "3600".into()]).to_string());
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "iperf"},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": POD_PORT, "protocol": "TCP"}]},
    });
    cluster.apply(&service.to_string());
    let server_ip = cluster.wait_running("server");
    cluster.wait_running("client");
    let cluster_ip = cluster.kubectl_ok(&["get", "service", "iperf", "-o", "jsonpath={.spec.clusterIP}"]);
    cluster.kubectl_until(
        &["get", "endpointslices", "-l", "kubernetes.io/service-name=iperf", "-o", "jsonpath={..addresses}"],
        Duration::from_secs(120),
        |s| s.contains(&server_ip),
    );
    let seconds = args.seconds.to_string();
    // Routes and proxy rules arrive asynchronously: the first run of each path may retry.
    let retry = |run: &dyn Fn() -> Result<f64>| -> Result<f64> {
        let mut last = None;
        for _ in 0..10 {
            match run() {
                Ok(value) => return Ok(value),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no run")))
    };
    let mut results: [Vec<f64>; 3] = Default::default();
    for round in 0..args.rounds.max(1) {
        eprintln!("pod-network: round {} of {}", round + 1, args.rounds);
        results[0].push(retry(&|| host_to_host(&cluster, &seconds))?);
        results[1].push(retry(&|| from_pod(&cluster, &iperf, &server_ip, &seconds))?);
        results[2].push(retry(&|| from_pod(&cluster, &iperf, &cluster_ip, &seconds))?);
    }
    Ok(results)
}

pub async fn run(env: &Env, args: &PodNetworkArgs) -> Result<Vec<Check>> {
    let (skiff, job_args): (PathBuf, PodNetworkArgs) = (env.skiff.clone(), args.clone());
    let mut results = tokio::task::spawn_blocking(move || measure(&skiff, &job_args)).await??;
    let gbits = |v: f64| v / 1e9;
    let host = median(&mut results[0]);
    let mut table = Table::new(
        &format!("TCP throughput across two nodes, iperf3 -t {} ({} runs each, median)", args.seconds, args.rounds),
        &["path", "Gbit/s (median)", "runs (Gbit/s)", "÷ host to host"],
    );
    let names = ["host to host (node veth, bridge)", "pod to pod (by pod IP)", "pod to Service (ClusterIP)"];
    let mut fields = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        let runs: Vec<String> = results[i].iter().map(|v| format!("{:.2}", gbits(*v))).collect();
        let value = median(&mut results[i]);
        table.row(vec![
            name.to_string(),
            format!("{:.2}", gbits(value)),
            runs.join(" · "),
            format!("{:.2}", value / host),
        ]);
        fields.insert(["host_gbps", "pod_gbps", "service_gbps"][i].into(), json!(gbits(value)));
    }
    table.print();
    emit("pod-network", Value::Object(fields));
    // The issue asks for the ratio, not a target: report it.
    Ok(Vec::new())
}
