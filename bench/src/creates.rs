//! `creates`: durable ConfigMap creates, 1 and C concurrent clients, skiff against etcd.

use anyhow::Result;
use clap::ValueEnum;
use serde_json::json;

use crate::client::Http;
use crate::load::{self, ms, Load, Outcome};
use crate::process::Child;
use crate::report::{emit, number, Check, Table};
use crate::servers::{Etcd, Skiff, Store};
use crate::target::Target;
use crate::Env;

#[derive(clap::Args, Clone, Debug)]
pub struct CreatesArgs {
    /// What to measure, in order (ratios are taken against `skiff`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "skiff,etcd,etcd-gateway")]
    pub targets: Vec<Kind>,
    /// Creates made by a single client.
    #[arg(long, default_value_t = 1_000)]
    pub single_creates: usize,
    /// Creates made by --clients concurrent clients together.
    #[arg(long, default_value_t = 5_000)]
    pub concurrent_creates: usize,
}

/// A server configuration to create against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// skiff, sqlite store (durable), HTTP/2
    Skiff,
    /// skiff, memory store (nothing written to disk), HTTP/2
    SkiffMemory,
    /// skiff, sqlite store, HTTP/1.1
    SkiffHttp1,
    /// skiff, memory store, HTTP/1.1
    SkiffMemoryHttp1,
    /// etcd, native gRPC KV/Txn over h2c
    Etcd,
    /// etcd, HTTP/JSON gateway /v3/kv/txn over HTTP/1.1
    EtcdGateway,
}

impl Kind {
    fn name(self) -> String {
        self.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default()
    }

    /// The store and protocol of a skiff configuration; None for etcd.
    fn skiff(self) -> Option<(Store, Http)> {
        match self {
            Kind::Skiff => Some((Store::Sqlite, Http::H2)),
            Kind::SkiffMemory => Some((Store::Memory, Http::H2)),
            Kind::SkiffHttp1 => Some((Store::Sqlite, Http::Http1)),
            Kind::SkiffMemoryHttp1 => Some((Store::Memory, Http::Http1)),
            Kind::Etcd | Kind::EtcdGateway => None,
        }
    }
}

/// Creates each client makes before the clock starts.
const WARMUP: usize = 3;

struct Row {
    kind: Kind,
    outcome: Outcome,
}

pub async fn run(env: &Env, args: &CreatesArgs) -> Result<Vec<Check>> {
    let mut rows = Vec::new();
    for &kind in &args.targets {
        let (server, target) = start(env, kind).await?;
        for (clients, creates) in [(1, args.single_creates), (env.clients, args.concurrent_creates)] {
            eprintln!("creates: {} × {creates} with {clients} client(s)…", kind.name());
            let load = Load { clients, creates, warmup: WARMUP, prefix: format!("bench-{clients}") };
            rows.push(Row { kind, outcome: load::run(&server, &target, &load).await? });
        }
        server.stop().await?;
    }
    print(&rows);
    Ok(checks(&rows, env.clients))
}

/// A fresh server of that kind on a new data directory, and how to create on it.
async fn start(env: &Env, kind: Kind) -> Result<(Child, Target)> {
    let dir = env.scratch.dir(&kind.name())?;
    let log = env.scratch.log(&kind.name());
    Ok(match kind.skiff() {
        Some((store, http)) => {
            let server = Skiff::start(&env.skiff, &dir, store, &log).await?;
            (server.child, Target::Skiff { url: server.url, tls_dir: server.tls_dir, http })
        }
        None => {
            let etcd = Etcd::start(&env.etcd, &dir, &log).await?;
            let target = if kind == Kind::Etcd {
                Target::EtcdGrpc { url: etcd.url }
            } else {
                Target::EtcdGateway { url: etcd.url }
            };
            (etcd.child, target)
        }
    })
}

fn print(rows: &[Row]) {
    let header = [
        "target",
        "clients",
        "creates",
        "creates/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "protocol",
        "skiff ÷ this",
        "CPU µs/create: server",
        "bench",
    ];
    let mut table = Table::new("Durable creates (small ConfigMaps, unique names; one connection per client)", &header);
    for row in rows {
        let (outcome, ratio) = (&row.outcome, skiff_ratio(rows, row));
        let latency = &outcome.latency;
        table.row(vec![
            row.kind.name(),
            outcome.clients.to_string(),
            latency.count.to_string(),
            format!("{:.0}", outcome.per_second()),
            number(ms(latency.p50)),
            number(ms(latency.p99)),
            number(ms(latency.max)),
            outcome.protocol.clone(),
            ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}")),
            format!("{:.0}", outcome.cpu_per_create().0),
            format!("{:.0}", outcome.cpu_per_create().1),
        ]);
        let mut fields = outcome.json();
        fields["target"] = json!(row.kind.name());
        fields["skiff_throughput_ratio"] = json!(ratio);
        emit("creates", fields);
    }
    table.print();
}

/// skiff's throughput divided by this row's, at the same number of clients.
fn skiff_ratio(rows: &[Row], row: &Row) -> Option<f64> {
    let skiff = find(rows, Kind::Skiff, row.outcome.clients)?;
    Some(skiff.per_second() / row.outcome.per_second())
}

fn find(rows: &[Row], kind: Kind, clients: usize) -> Option<&Outcome> {
    rows.iter().find(|r| r.kind == kind && r.outcome.clients == clients).map(|r| &r.outcome)
}

fn checks(rows: &[Row], clients: usize) -> Vec<Check> {
    let mut checks = Vec::new();
    if let Some(many) = find(rows, Kind::Skiff, clients) {
        checks.push(Check::at_least(&format!("durable creates/s, {clients} clients"), many.per_second(), 5000.0, "/s"));
        checks.push(Check::at_most(&format!("create p99, {clients} clients"), ms(many.latency.p99), 50.0, "ms"));
    }
    if let Some(one) = find(rows, Kind::Skiff, 1) {
        checks.push(Check::at_most("create p50, 1 client", ms(one.latency.p50), 2.0, "ms"));
    }
    checks
}
