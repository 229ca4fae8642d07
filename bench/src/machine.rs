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

/// The machine's CPU time counters (/proc/stat, in ticks), to tell how much of a run the
/// hypervisor took away: on a shared VM, steal is what makes one run slower than the next.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    steal: u64,
    total: u64,
}

impl CpuTimes {
    /// Now; zero where /proc/stat cannot be read.
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .map(|l| l.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect())
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let total = ticks.iter().take(8).sum();
        CpuTimes { steal: ticks.get(7).copied().unwrap_or(0), total }
    }

    /// Percent of the machine's CPU time stolen between `earlier` and `self`.
    pub fn steal_percent_since(&self, earlier: CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        100.0 * self.steal.saturating_sub(earlier.steal) as f64 / total as f64
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_stolen_share_of_the_ticks_between_two_readings() {
        let before = CpuTimes { steal: 100, total: 1_000 };
        assert_eq!(CpuTimes { steal: 150, total: 1_200 }.steal_percent_since(before), 25.0);
        assert_eq!(before.steal_percent_since(before), 0.0, "no ticks between: nothing stolen");
        let now = CpuTimes::now();
        assert!(now.total > 0 && now.steal <= now.total, "{now:?}");
    }
}
