//! `proxy`: how fast the service proxy programs nftables, in-process through skiff-proxy's
//! `Syncer` with the real `nft` in a fresh network namespace (so the host's rules are never
//! touched). The workload is the issue's: `--services` (1,000) Services × `--endpoints`
//! (10) ready endpoints. Measured: a full sync (the table recreated, as at start or after
//! an error), a sync after one endpoint of one Service was replaced (map elements only,
//! written over netlink), and after one was added or removed (the Service changes its
//! shared spread chain, created or deleted with nft when no other Service has that count);
//! each from the objects to the kernel's answer, so model, rendering, diff and nft are inside
//! (for a change, the changed Service's model is rebuilt, as the proxy's sync loop does).
//! The compute part alone (model → ruleset → script) is reported beside it.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_proxy::{transaction, Model, Nft, NodeInfo, RenderOptions, Ruleset, SyncKind, Syncer};

use crate::load::{ms, Summary};
use crate::report::{emit, Check, Table};
use crate::Env;

#[derive(clap::Args, Clone, Debug)]
pub struct ProxyArgs {
    /// Services in the table.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Ready endpoints per Service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Full syncs measured.
    #[arg(long, default_value_t = 10)]
    full_rounds: usize,
    /// Single-endpoint changes measured.
    #[arg(long, default_value_t = 100)]
    change_rounds: usize,
    /// Endpoint additions and removals measured (half each).
    #[arg(long, default_value_t = 40)]
    resize_rounds: usize,
    /// Also write the full sync's nft script here, to time `nft -f` on it alone.
    #[arg(long)]
    dump_script: Option<std::path::PathBuf>,
}

/// A network namespace of the benchmark's own, deleted on drop.
struct Namespace(String);

impl Namespace {
    fn create() -> Result<Self> {
        let name = format!("skiff-bench-proxy-{}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status().context("running ip netns add")?;
        ensure!(status.success(), "ip netns add {name} failed (the proxy benchmark needs root)");
        Ok(Namespace(name))
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn service(i: usize) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": format!("10.43.{}.{}", i / 250, i % 250 + 1),
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
    }))?)
}

/// Service `i`'s slice; `generation` shifts the first endpoint's address.
fn slice(i: usize, endpoints: usize, generation: usize) -> Result<EndpointSlice> {
    let addresses: Vec<_> = (0..endpoints)
        .map(|e| {
            let n = i * endpoints + e + if e == 0 { generation * 1_000_000 } else { 0 };
            json!({"addresses": [format!("10.{}.{}.{}", 42 + n / 65_536 % 200, n / 256 % 256, n % 256)],
                "conditions": {"ready": true}, "nodeName": format!("node-{}", e % 3)})
        })
        .collect();
    Ok(serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}-1"), "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": addresses,
    }))?)
}

pub async fn run(_env: &Env, args: &ProxyArgs) -> Result<Vec<Check>> {
    ensure!(args.services > 0 && args.endpoints > 0, "--services and --endpoints must be at least 1");
    let namespace = Namespace::create()?;
    let node = NodeInfo::named("node-0");
    let options = RenderOptions { cluster_cidr: Some("10.42.0.0/16".parse().map_err(anyhow::Error::msg)?) };
    let services: Vec<Service> = (0..args.services).map(service).collect::<Result<_>>()?;
    let mut slices: Vec<EndpointSlice> =
        (0..args.services).map(|i| slice(i, args.endpoints, 0)).collect::<Result<_>>()?;
    let mut syncer = Syncer::new(Nft::in_namespace(&namespace.0), options.clone());

    eprintln!("proxy: {} full syncs of {} services × {} endpoints", args.full_rounds, args.services, args.endpoints);
    let mut full = Vec::new();
    let mut compute = Vec::new();
    let mut script_bytes = 0;
    for _ in 0..args.full_rounds.max(1) {
        syncer.invalidate();
        let started = Instant::now();
        let model = Model::build(&services, &slices, &node);
        let kind = syncer.sync(&model).await?;
        full.push(started.elapsed());
        ensure!(kind == SyncKind::Full, "expected a full sync, got {kind:?}");
        let started = Instant::now();
        let script = transaction::full(&Ruleset::render(&Model::build(&services, &slices, &node), &options));
        compute.push(started.elapsed());
        script_bytes = script.len();
        if let Some(path) = &args.dump_script {
            std::fs::write(path, &script).with_context(|| format!("writing {}", path.display()))?;
        }
    }

    eprintln!("proxy: {} single-endpoint changes", args.change_rounds);
    // As the proxy's sync loop: the changed Service's model is rebuilt, then synced.
    let mut model = Model::build(&services, &slices, &node);
    let mut change = Vec::new();
    let mut generation = vec![0; args.services];
    for round in 0..args.change_rounds.max(1) {
        let i = round * 7919 % args.services;
        generation[i] = round + 1;
        slices[i] = slice(i, args.endpoints, generation[i])?;
        let started = Instant::now();
        model.update_service("bench", &format!("svc-{i}"), Some(&services[i]), &[&slices[i]], &node);
        let kind = syncer.sync(&model).await?;
        change.push(started.elapsed());
        ensure!(kind == SyncKind::Elements, "expected an element-only sync, got {kind:?}");
    }

    // The endpoint count changes: the Service moves to another shared spread chain, which
    // is created (nft) unless some other Service already has that count.
    eprintln!("proxy: {} endpoint additions and removals", args.resize_rounds);
    let mut resize = Vec::new();
    let mut through_nft = 0;
    for round in 0..args.resize_rounds.max(2) {
        let i = (round / 2) * 7919 % args.services;
        let count = if round % 2 == 0 { args.endpoints + 1 } else { args.endpoints };
        slices[i] = slice(i, count, generation[i])?;
        let started = Instant::now();
        model.update_service("bench", &format!("svc-{i}"), Some(&services[i]), &[&slices[i]], &node);
        let kind = syncer.sync(&model).await?;
        resize.push(started.elapsed());
        match kind {
            SyncKind::Partial => through_nft += 1,
            SyncKind::Elements => {}
            other => anyhow::bail!("expected a partial sync, got {other:?}"),
        }
    }
    let full = Summary::of(full);
    let compute = Summary::of(compute);
    let change = Summary::of(change);
    let resize_runs = resize.len();
    let resize = Summary::of(resize);

    let title = format!(
        "Service proxy sync, {} Services × {} endpoints (real nft, own namespace)",
        args.services, args.endpoints
    );
    let mut table = Table::new(&title, &["sync", "runs", "p50", "p99", "max"]);
    let cell = |d: Duration| format!("{:.1} ms", ms(d));
    let row =
        |name: &str, s: &Summary| vec![name.to_string(), s.count.to_string(), cell(s.p50), cell(s.p99), cell(s.max)];
    table.row(row("full (table recreated)", &full));
    table.row(row("  of which model + render (no nft)", &compute));
    table.row(row("one endpoint replaced (map elements, netlink)", &change));
    let resized = format!("one endpoint added or removed ({through_nft} of {resize_runs} via nft)");
    table.row(row(&resized, &resize));
    table.print();
    emit(
        "proxy",
        json!({"services": args.services, "endpoints": args.endpoints, "full_script_bytes": script_bytes,
            "full_p50_ms": ms(full.p50), "full_p99_ms": ms(full.p99), "compute_p50_ms": ms(compute.p50),
            "change_p50_ms": ms(change.p50), "change_p99_ms": ms(change.p99),
            "resize_p50_ms": ms(resize.p50), "resize_p99_ms": ms(resize.p99), "resize_via_nft": through_nft}),
    );
    Ok(vec![
        Check::at_most("proxy full sync p50, 1,000 × 10 (ms)", ms(full.p50), 200.0, "ms"),
        Check::at_most("proxy one endpoint change p50 (ms)", ms(change.p50), 10.0, "ms"),
    ])
}
