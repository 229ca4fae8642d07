//! Closed-loop load: C clients, each on its own connection, issue creates back to back
//! until N have been issued between them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::process::{own_cpu_time, Child};
use crate::target::Target;

/// A load that has not finished by then stops issuing requests and fails.
const LOAD_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Load {
    pub clients: usize,
    pub creates: usize,
    /// Creates each client makes (not measured) before the clock starts, so connection
    /// setup and first-request costs stay out of the numbers.
    pub warmup: usize,
    /// Names are PREFIX-N, unique within one server's lifetime.
    pub prefix: String,
}

pub struct Outcome {
    pub clients: usize,
    pub wall: Duration,
    pub latency: Summary,
    /// The HTTP version the answers came over ("HTTP/2.0").
    pub protocol: String,
    /// CPU time the server and this program used during the measured creates.
    pub server_cpu: Duration,
    pub bench_cpu: Duration,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.latency.count as f64 / self.wall.as_secs_f64()
    }

    /// Microseconds of CPU per create of the server and of the benchmark client.
    pub fn cpu_per_create(&self) -> (f64, f64) {
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / self.latency.count.max(1) as f64;
        (per(self.server_cpu), per(self.bench_cpu))
    }

    pub fn json(&self) -> Value {
        let (server_cpu, bench_cpu) = self.cpu_per_create();
        json!({
            "clients": self.clients,
            "creates": self.latency.count,
            "seconds": self.wall.as_secs_f64(),
            "creates_per_second": self.per_second(),
            "latency_ms": self.latency.json(),
            "protocol": self.protocol,
            "server_cpu_us_per_create": server_cpu,
            "bench_cpu_us_per_create": bench_cpu,
        })
    }
}

/// Runs `load` against `target`, served by `server`; fails on the first failed create.
pub async fn run(server: &Child, target: &Target, load: &Load) -> Result<Outcome> {
    let target = Arc::new(target.clone());
    let clients = connect(&target, load).await?;
    let protocol = clients[0].1.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = (server.cpu_time()?, own_cpu_time()?);
    let started = Instant::now();
    let workers: Vec<_> = clients
        .into_iter()
        .map(|(client, _)| {
            let worker = Worker {
                target: target.clone(),
                client,
                next: next.clone(),
                total: load.creates,
                prefix: load.prefix.clone(),
            };
            tokio::spawn(worker.run(started + LOAD_TIMEOUT))
        })
        .collect();
    let mut latencies = Vec::with_capacity(load.creates);
    for worker in futures::future::join_all(workers).await {
        latencies.extend(worker.context("benchmark client panicked")??);
    }
    let wall = started.elapsed();
    let (server_cpu, bench_cpu) = (server.cpu_time()? - cpu_before.0, own_cpu_time()? - cpu_before.1);
    if latencies.len() < load.creates {
        bail!("only {} of {} creates within {LOAD_TIMEOUT:?}", latencies.len(), load.creates);
    }
    Ok(Outcome { clients: load.clients, wall, latency: Summary::of(latencies), protocol, server_cpu, bench_cpu })
}

/// Opens one client per simulated client, each warmed up by `load.warmup` creates.
async fn connect(target: &Target, load: &Load) -> Result<Vec<(reqwest::Client, String)>> {
    let warmups = (0..load.clients).map(|c| async move {
        let client = target.client()?;
        let mut version = None;
        for i in 0..load.warmup {
            version = Some(target.create(&client, &format!("{}-warmup-{c}-{i}", load.prefix)).await?);
        }
        anyhow::Ok((client, version.map(|v| format!("{v:?}")).unwrap_or_default()))
    });
    futures::future::try_join_all(warmups).await.context("warming up")
}

struct Worker {
    target: Arc<Target>,
    client: reqwest::Client,
    next: Arc<AtomicUsize>,
    total: usize,
    prefix: String,
}

impl Worker {
    /// Takes the next create until all are taken or the deadline passes; returns latencies.
    async fn run(self, deadline: Instant) -> Result<Vec<Duration>> {
        let mut latencies = Vec::new();
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.total || Instant::now() > deadline {
                return Ok(latencies);
            }
            let name = format!("{}-{n}", self.prefix);
            let sent = Instant::now();
            self.target.create(&self.client, &name).await.with_context(|| format!("creating {name}"))?;
            latencies.push(sent.elapsed());
        }
    }
}

/// Latency distribution of a set of operations.
#[derive(Clone, Debug)]
pub struct Summary {
    pub count: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            samples.get(((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default()
        };
        Summary { count: samples.len(), min: at(0.0), p50: at(0.50), p99: at(0.99), max: at(1.0) }
    }

    pub fn json(&self) -> Value {
        json!({"min": ms(self.min), "p50": ms(self.p50), "p99": ms(self.p99), "max": ms(self.max), "count": self.count})
    }
}

/// Milliseconds, as a float.
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let summary = Summary::of((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(
            (summary.p50, summary.p99, summary.max),
            (Duration::from_millis(50), Duration::from_millis(99), Duration::from_millis(100))
        );
        assert_eq!(Summary::of(vec![]).count, 0);
    }
}
