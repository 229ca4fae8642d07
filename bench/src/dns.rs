//! `dns`: the cluster DNS server under load. A server (`--store memory`, no agent) gets
//! `--dns-services` Services; then `--dns-sockets` UDP sockets, each with one query in
//! flight (closed loop), ask for random ones of them for `--dns-seconds`. Queries and
//! answers are encoded here by hand (a dozen lines): the bench links no DNS crate.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::StreamExt;
use serde_json::json;
use tokio::net::UdpSocket;

use crate::client::{self, Http};
use crate::load::{ms, Summary};
use crate::process::free_port;
use crate::report::{emit, number, Check, Table};
use crate::servers::{Skiff, Store};
use crate::Env;

#[derive(clap::Args, Clone, Debug)]
pub struct DnsArgs {
    /// Services the server holds (each a ClusterIP name to ask for).
    #[arg(long, default_value_t = 1_000)]
    pub dns_services: usize,
    /// Concurrent UDP sockets, each with one query in flight.
    #[arg(long, default_value_t = 16)]
    pub dns_sockets: usize,
    /// How long the load runs.
    #[arg(long, default_value_t = 10)]
    pub dns_seconds: u64,
}

/// A query that is not answered within this counts as lost.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// A standard query (RD set) for `name`, type A, class IN.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    packet
}

/// (id, response code, answer count) of an answer.
fn answer_header(packet: &[u8]) -> Option<(u16, u8, u16)> {
    let header = packet.get(..12)?;
    let id = u16::from_be_bytes([header[0], header[1]]);
    Some((id, header[3] & 0x0f, u16::from_be_bytes([header[6], header[7]])))
}

fn service_name(i: usize) -> String {
    format!("svc-{i}.default.svc.cluster.local")
}

/// Asks once; Some(answer count) when answered NOERROR in time.
async fn ask(socket: &UdpSocket, id: u16, name: &str) -> Result<Option<u16>> {
    socket.send(&query(id, name)).await?;
    let mut buffer = [0u8; 1500];
    let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
    loop {
        let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buffer)).await else {
            return Ok(None);
        };
        let n = received?;
        match answer_header(&buffer[..n]) {
            // An answer to an earlier query that timed out: not this one.
            Some((got, _, _)) if got != id => continue,
            Some((_, 0, answers)) => return Ok(Some(answers)),
            _ => return Ok(None),
        }
    }
}

struct Outcome {
    wall: Duration,
    latency: Summary,
    lost: usize,
}

async fn load(server: SocketAddr, services: usize, sockets: usize, seconds: u64) -> Result<Outcome> {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers = (0..sockets).map(|w| async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        socket.connect(server).await?;
        let mut latencies = Vec::new();
        let mut lost = 0usize;
        let mut id = (w as u16).wrapping_mul(4099);
        let mut pick = w.wrapping_mul(7919) + 1;
        while Instant::now() < stop {
            id = id.wrapping_add(1);
            // A cheap spread over the names (a linear congruential step).
            pick = pick.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let name = service_name((pick >> 33) % services);
            let sent = Instant::now();
            match ask(&socket, id, &name).await? {
                Some(answers) if answers > 0 => latencies.push(sent.elapsed()),
                _ => lost += 1,
            }
        }
        anyhow::Ok((latencies, lost))
    });
    let results = futures::future::try_join_all(workers).await?;
    let wall = started.elapsed();
    let lost = results.iter().map(|(_, lost)| lost).sum();
    let latency = Summary::of(results.into_iter().flat_map(|(l, _)| l).collect());
    Ok(Outcome { wall, latency, lost })
}

pub async fn run(env: &Env, args: &DnsArgs) -> Result<Vec<Check>> {
    ensure!(args.dns_services > 0 && args.dns_sockets > 0, "--dns-services and --dns-sockets must be at least 1");
    let port = free_port()?;
    let dir = env.scratch.dir("skiff-dns")?;
    let extra =
        ["--disable-agent", "--disable-scheduler", "--node-ip", "127.0.0.1", "--cluster-dns-port", &port.to_string()];
    let server = Skiff::start_with(&env.skiff, &dir, Store::Memory, &env.scratch.log("skiff"), &extra).await?;
    let dns: SocketAddr = ([127, 0, 0, 1], port).into();
    let api = client::skiff(&server.tls_dir, Http::H2)?;
    eprintln!("dns: creating {} Services…", args.dns_services);
    let url = format!("{}/api/v1/namespaces/default/services", server.url);
    let creates = futures::stream::iter(0..args.dns_services)
        .map(|i| {
            let (api, url) = (api.clone(), url.clone());
            async move {
                let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{i}")},
                    "spec": {"ports": [{"name": "http", "port": 80}]}});
                let response = api.post(&url).json(&body).send().await?;
                ensure!(response.status().as_u16() == 201, "creating svc-{i}: {}", response.status());
                anyhow::Ok(())
            }
        })
        .buffer_unordered(env.clients);
    creates.collect::<Vec<_>>().await.into_iter().collect::<Result<Vec<_>>>()?;

    // The last Service created answers once the DNS server's cache has caught up.
    let probe = UdpSocket::bind("127.0.0.1:0").await?;
    probe.connect(dns).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut id = 0u16;
    loop {
        id = id.wrapping_add(1);
        let all_there = futures::future::join_all([0, args.dns_services - 1].map(|i| {
            let probe = &probe;
            async move { ask(probe, id.wrapping_add(i as u16), &service_name(i)).await }
        }))
        .await;
        if all_there.iter().all(|a| matches!(a, Ok(Some(n)) if *n > 0)) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the DNS server at {dns} did not answer for the Services within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(probe);

    eprintln!("dns: {} sockets for {} s…", args.dns_sockets, args.dns_seconds);
    let cpu_before = server.child.cpu_time()?;
    let outcome = load(dns, args.dns_services, args.dns_sockets, args.dns_seconds).await.context("DNS load")?;
    let server_cpu = server.child.cpu_time()? - cpu_before;
    server.child.stop().await?;

    let qps = outcome.latency.count as f64 / outcome.wall.as_secs_f64();
    let cpu_us = server_cpu.as_secs_f64() * 1e6 / outcome.latency.count.max(1) as f64;
    let mut table = Table::new(
        &format!("Cluster DNS: A queries over UDP, {} Services, {} sockets", args.dns_services, args.dns_sockets),
        &["queries", "lost", "queries/s", "p50 ms", "p99 ms", "max ms", "server CPU µs/query"],
    );
    table.row(vec![
        outcome.latency.count.to_string(),
        outcome.lost.to_string(),
        number(qps),
        number(ms(outcome.latency.p50)),
        number(ms(outcome.latency.p99)),
        number(ms(outcome.latency.max)),
        number(cpu_us),
    ]);
    table.print();
    emit(
        "dns",
        json!({"services": args.dns_services, "sockets": args.dns_sockets, "queries": outcome.latency.count,
            "lost": outcome.lost, "queries_per_second": qps, "latency_ms": outcome.latency.json(),
            "server_cpu_us_per_query": cpu_us}),
    );
    Ok(vec![
        Check::at_least("cluster DNS queries/s", qps, 20_000.0, "q/s"),
        Check::at_most("cluster DNS p99 latency", ms(outcome.latency.p99), 5.0, "ms"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_encoding() {
        let packet = query(0x1234, "a.bc.");
        assert_eq!(packet, [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0, 1]);
        assert_eq!(answer_header(&[0x12, 0x34, 0x85, 0x83, 0, 1, 0, 2, 0, 0, 0, 0]), Some((0x1234, 3, 2)));
        assert_eq!(answer_header(&[0; 5]), None);
    }
}
