//! `startup`: cold start to /readyz 200 on a fresh and on an existing data directory,
//! and the idle memory of a server with an empty cluster.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::load::{ms, Summary};
use crate::process::Memory;
use crate::report::{emit, megabytes, number, Check, Table};
use crate::servers::{reported_startup_ms, Skiff, Store};
use crate::Env;

#[derive(clap::Args, Clone, Debug)]
pub struct StartupArgs {
    /// Cold starts per case (the median is reported).
    #[arg(long, default_value_t = 7)]
    pub startup_runs: usize,
}

/// Startup times of several runs of one case.
pub struct Starts {
    /// Spawn to the first 200 from /readyz, as a client sees it.
    pub observed: Summary,
    /// What the server logged as its own startup time (median), when it did.
    pub reported_ms: Option<u64>,
}

impl Starts {
    pub fn row(&self, case: &str) -> Vec<String> {
        let observed = &self.observed;
        let reported = self.reported_ms.map_or_else(|| "-".into(), |r| r.to_string());
        vec![
            case.into(),
            observed.count.to_string(),
            number(ms(observed.p50)),
            number(ms(observed.min)),
            number(ms(observed.max)),
            reported,
        ]
    }

    pub fn emit(&self, case: &str) {
        emit(
            "startup",
            json!({"case": case, "to_readyz_ms": self.observed.json(), "server_reported_ms": self.reported_ms}),
        );
    }
}

pub const STARTUP_HEADER: [&str; 6] = ["case", "runs", "median ms", "min ms", "max ms", "server-logged ms"];

pub async fn run(env: &Env, args: &StartupArgs) -> Result<Vec<Check>> {
    let runs = args.startup_runs;
    eprintln!("startup: {runs} cold starts on fresh data directories…");
    let fresh = cold_starts(env, runs, None).await?;
    let existing_dir = env.scratch.dir("skiff-existing")?;
    start_once(env, &existing_dir).await?; // initialize it
    eprintln!("startup: {runs} restarts on an existing data directory…");
    let existing = cold_starts(env, runs, Some(&existing_dir)).await?;
    eprintln!("startup: idle memory after {:?}…", env.settle);
    let idle = settled_memory(env, &env.scratch.dir("skiff-idle")?).await?;

    let mut table = Table::new("Cold start to /readyz 200 (sqlite store)", &STARTUP_HEADER);
    for (case, starts) in [("fresh data dir", &fresh), ("existing data dir", &existing)] {
        table.row(starts.row(case));
        starts.emit(case);
    }
    table.print();
    print_idle(env, &idle);
    Ok(vec![
        Check::at_most("cold start, fresh data dir (median)", ms(fresh.observed.p50), 300.0, "ms"),
        Check::at_most("cold start, existing data dir (median)", ms(existing.observed.p50), 300.0, "ms"),
        Check::at_most("idle RSS, empty cluster", megabytes(idle.rss), 30.0, "MB"),
    ])
}

/// `runs` start/stop cycles, on `dir` or each on a new directory.
pub async fn cold_starts(env: &Env, runs: usize, dir: Option<&Path>) -> Result<Starts> {
    let mut observed = Vec::new();
    let mut reported = Vec::new();
    for _ in 0..runs {
        let dir = match dir {
            Some(dir) => dir.to_path_buf(),
            None => env.scratch.dir("skiff-fresh")?,
        };
        let (startup, log) = start_once(env, &dir).await?;
        observed.push(startup);
        reported.extend(reported_startup_ms(&log));
    }
    reported.sort_unstable();
    Ok(Starts { observed: Summary::of(observed), reported_ms: reported.get(reported.len() / 2).copied() })
}

/// Starts a server on `dir`, stops it; returns its startup time and its log.
async fn start_once(env: &Env, dir: &Path) -> Result<(Duration, String)> {
    let server = Skiff::start(&env.skiff, dir, Store::Sqlite, &env.scratch.log("skiff")).await?;
    Ok((server.startup, server.child.stop().await?))
}

/// The memory of a server on `dir` once it has been up for `--settle-secs`.
pub async fn settled_memory(env: &Env, dir: &Path) -> Result<Memory> {
    let server = Skiff::start(&env.skiff, dir, Store::Sqlite, &env.scratch.log("skiff")).await?;
    tokio::time::sleep(env.settle).await;
    let memory = server.child.memory()?;
    server.child.stop().await?;
    Ok(memory)
}

fn print_idle(env: &Env, idle: &Memory) {
    let mut table = Table::new("Idle memory, empty cluster (sqlite store)", &["settled for", "RSS MB", "peak RSS MB"]);
    table.row(vec![format!("{:?}", env.settle), number(megabytes(idle.rss)), number(megabytes(idle.peak))]);
    table.print();
    emit(
        "idle_memory",
        json!({"settle_seconds": env.settle.as_secs_f64(), "rss_bytes": idle.rss, "peak_rss_bytes": idle.peak}),
    );
}
