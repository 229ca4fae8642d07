//! What the numbers were measured on: CPU, memory, OS, and how long the scratch
//! disk takes to make a small write durable (the floor under a durable create).

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use crate::load::{ms, Summary};
use crate::report::{emit, number, Table};
use crate::Env;

/// Appends of 4 KiB, each followed by fdatasync, for the fsync probe.
const FSYNC_PROBES: usize = 200;

pub fn describe(env: &Env) -> Result<()> {
    let fsync = fsync_latency(env.scratch.path())?;
    let facts = [
        ("cpu", first_field("/proc/cpuinfo", "model name").unwrap_or_default()),
        ("cores", std::thread::available_parallelism().map_or(0, |n| n.get()).to_string()),
        ("memory", memory_total()),
        ("os", os_name()),
        ("kernel", first_line(Command::new("uname").arg("-r"))),
        ("skiff", env.skiff.display().to_string()),
        ("etcd", first_line(Command::new(&env.etcd).arg("--version"))),
        ("load average", load_average()),
        ("scratch dir", env.scratch.path().display().to_string()),
        (
            "fsync p50 / p99",
            format!("{} / {} ms (4 KiB append + fdatasync)", number(ms(fsync.p50)), number(ms(fsync.p99))),
        ),
    ];
    let mut table = Table::new("Machine", &["", ""]);
    for (name, value) in &facts {
        table.row(vec![name.to_string(), value.clone()]);
    }
    table.print();
    let mut fields: serde_json::Map<_, _> = facts.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    fields.insert("fsync_ms".into(), fsync.json());
    emit("machine", fields.into());
    Ok(())
}

/// Latency of making a 4 KiB append durable in `dir`.
fn fsync_latency(dir: &Path) -> Result<Summary> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let samples = (0..FSYNC_PROBES)
        .map(|_| {
            let started = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            Ok(started.elapsed())
        })
        .collect::<Result<Vec<_>>>()?;
    std::fs::remove_file(&path)?;
    Ok(Summary::of(samples))
}

/// The value of the first "KEY : value" line of a /proc file.
fn first_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

fn memory_total() -> String {
    let kib =
        first_field("/proc/meminfo", "MemTotal").and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok());
    kib.map_or_else(|| "unknown".into(), |kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews the numbers.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn os_name() -> String {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let name = release.lines().find_map(|l| l.strip_prefix("PRETTY_NAME="));
    name.unwrap_or("unknown").trim_matches('"').to_string()
}

/// The first line a command prints, or why it printed nothing.
fn first_line(command: &mut Command) -> String {
    match command.output() {
        Ok(output) => String::from_utf8_lossy(&output.stdout).lines().next().unwrap_or("").to_string(),
        Err(error) => format!("not runnable: {error}"),
    }
}
