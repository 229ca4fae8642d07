//! `list`: a full LIST of many ConfigMaps (served from the watch cache), the server's
//! memory before and after, and a restart with all of them on disk.

use std::time::Instant;

use anyhow::{ensure, Result};
use serde_json::{json, Value};

use crate::client::{self, Http};
use crate::load::{self, ms, Load, Outcome, Summary};
use crate::process::Memory;
use crate::report::{emit, megabytes, number, Check, Table};
use crate::servers::{Skiff, Store};
use crate::startup::{cold_starts, settled_memory, STARTUP_HEADER};
use crate::target::Target;
use crate::Env;

#[derive(clap::Args, Clone, Debug)]
pub struct ListArgs {
    /// ConfigMaps to create before listing.
    #[arg(long, default_value_t = 10_000)]
    pub list_objects: usize,
    /// Full LISTs to time (the median is reported); also the restarts timed afterwards.
    #[arg(long, default_value_t = 5)]
    pub list_runs: usize,
}

/// Timed LISTs: latency, and the size of the last answer.
struct Lists {
    latency: Summary,
    bytes: usize,
    items: usize,
}

pub async fn run(env: &Env, args: &ListArgs) -> Result<Vec<Check>> {
    let objects = args.list_objects;
    let dir = env.scratch.dir("skiff-list")?;
    let server = Skiff::start(&env.skiff, &dir, Store::Sqlite, &env.scratch.log("skiff")).await?;
    tokio::time::sleep(env.settle).await;
    let mut memory = vec![("idle, empty cluster".to_string(), server.child.memory()?)];
    eprintln!("list: creating {objects} ConfigMaps with {} clients…", env.clients);
    let target = Target::Skiff { url: server.url.clone(), tls_dir: server.tls_dir.clone(), http: Http::H2 };
    let fill = load::run(
        &server.child,
        &target,
        &Load { clients: env.clients, creates: objects, warmup: 0, prefix: "list".into() },
    )
    .await?;
    memory.push((format!("after creating {objects}"), server.child.memory()?));
    eprintln!("list: {} full LISTs…", args.list_runs);
    let lists = time_lists(&server, objects, args.list_runs).await?;
    memory.push((format!("after {} LISTs", args.list_runs), server.child.memory()?));
    server.child.stop().await?;
    eprintln!("list: {} restarts with {objects} ConfigMaps on disk…", args.list_runs);
    let restarts = cold_starts(env, args.list_runs, Some(&dir)).await?;
    memory.push((format!("restarted with {objects}, settled"), settled_memory(env, &dir).await?));

    print_lists(objects, &fill, &lists);
    print_memory(&memory);
    let case = format!("restart with {objects} ConfigMaps");
    let mut table = Table::new("Cold start to /readyz 200 with data", &STARTUP_HEADER);
    table.row(restarts.row(&case));
    table.print();
    restarts.emit(&case);
    Ok(vec![Check::at_most(&format!("{case} (median)"), ms(restarts.observed.p50), 300.0, "ms")])
}

/// `runs` GETs of the whole collection over one HTTP/2 connection, each read to the end.
async fn time_lists(server: &Skiff, objects: usize, runs: usize) -> Result<Lists> {
    let client = client::skiff(&server.tls_dir, Http::H2)?;
    let url = format!("{}/api/v1/namespaces/default/configmaps", server.url);
    let (mut latencies, mut bytes, mut items) = (Vec::new(), 0, 0);
    for _ in 0..runs {
        let started = Instant::now();
        let body = client.get(&url).send().await?.error_for_status()?.bytes().await?;
        latencies.push(started.elapsed());
        let list: Value = serde_json::from_slice(&body)?;
        items = list["items"].as_array().map_or(0, Vec::len);
        ensure!(items >= objects, "LIST returned {items} items, expected at least {objects}");
        bytes = body.len();
    }
    Ok(Lists { latency: Summary::of(latencies), bytes, items })
}

fn print_lists(objects: usize, fill: &Outcome, lists: &Lists) {
    let mut table = Table::new(
        &format!("{objects} ConfigMaps: filling, then full LISTs (watch cache, HTTP/2)"),
        &["step", "count", "median ms", "min ms", "max ms", "note"],
    );
    let fill_note = format!(
        "{:.0} creates/s over {} clients, p99 {} ms",
        fill.per_second(),
        fill.clients,
        number(ms(fill.latency.p99))
    );
    table.row(vec![
        "create".into(),
        objects.to_string(),
        number(ms(fill.latency.p50)),
        number(ms(fill.latency.min)),
        number(ms(fill.latency.max)),
        fill_note,
    ]);
    let list_note = format!("{} items, {} MB of JSON", lists.items, number(megabytes(lists.bytes as u64)));
    let latency = &lists.latency;
    table.row(vec![
        "full LIST".into(),
        latency.count.to_string(),
        number(ms(latency.p50)),
        number(ms(latency.min)),
        number(ms(latency.max)),
        list_note,
    ]);
    table.print();
    emit("list_fill", fill.json());
    emit(
        "list",
        json!({"objects": objects, "items": lists.items, "bytes": lists.bytes, "latency_ms": lists.latency.json()}),
    );
}

fn print_memory(memory: &[(String, Memory)]) {
    let mut table = Table::new("Server memory (sqlite store)", &["when", "RSS MB", "peak RSS MB"]);
    for (when, m) in memory {
        table.row(vec![when.clone(), number(megabytes(m.rss)), number(megabytes(m.peak))]);
        emit("list_memory", json!({"when": when, "rss_bytes": m.rss, "peak_rss_bytes": m.peak}));
    }
    table.print();
}
