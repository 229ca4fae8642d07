//! Starting the servers under test: skiff (the release binary) and etcd, on loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::client::{self, Http};
use crate::process::{free_port, poll, wait_for_port, Child};

/// Which store `skiff server --store` runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Memory,
}

impl Store {
    fn flag(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Memory => "memory",
        }
    }
}

pub struct Skiff {
    pub child: Child,
    pub url: String,
    pub tls_dir: PathBuf,
    /// From spawning the process to the first 200 from /readyz.
    pub startup: Duration,
}

impl Skiff {
    /// Runs `skiff server` on `data_dir` and waits for /readyz to answer 200.
    pub async fn start(bin: &Path, data_dir: &Path, store: Store, log: &Path) -> Result<Self> {
        // The API server alone: its start time and memory, not a node's nor the DNS's.
        Self::start_with(bin, data_dir, store, log, &["--disable-agent", "--disable-dns"]).await
    }

    /// [`Skiff::start`] with `extra` flags instead of `--disable-agent --disable-dns`.
    pub async fn start_with(bin: &Path, data_dir: &Path, store: Store, log: &Path, extra: &[&str]) -> Result<Self> {
        let port = free_port()?;
        let mut command = Command::new(bin);
        command.arg("server").arg("--data-dir").arg(data_dir);
        command.args([
            "--https-listen-port",
            &port.to_string(),
            "--bind-address",
            "127.0.0.1",
            "--store",
            store.flag(),
        ]);
        command.args(extra);
        let started = Instant::now();
        let mut child = Child::spawn("skiff", command, log)?;
        // The certificates are on disk before the port is bound.
        wait_for_port(&mut child, port).await?;
        let tls_dir = data_dir.join("tls");
        let client = client::skiff(&tls_dir, Http::H2)?;
        let url = format!("https://127.0.0.1:{port}");
        let readyz = format!("{url}/readyz");
        poll(&mut child, "skiff /readyz", || async {
            let response = client.get(&readyz).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await?;
        Ok(Skiff { child, url, tls_dir, startup: started.elapsed() })
    }
}

/// What a skiff server logged as its own startup time ("ready on … in N ms").
pub fn reported_startup_ms(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("skiff server ready on"))?;
    line.rsplit_once(" in ")?.1.trim_end_matches(" ms").trim().parse().ok()
}

pub struct Etcd {
    pub child: Child,
    pub url: String,
}

impl Etcd {
    /// Runs a single-member etcd on loopback and waits for /health.
    pub async fn start(bin: &Path, data_dir: &Path, log: &Path) -> Result<Self> {
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let url = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let mut command = Command::new(bin);
        command.args(["--name", "bench"]).arg("--data-dir").arg(data_dir);
        command.args(["--listen-client-urls", &url, "--advertise-client-urls", &url]);
        command.args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer]);
        command.args(["--initial-cluster", &format!("bench={peer}"), "--logger", "zap", "--log-level", "warn"]);
        let mut child = Child::spawn("etcd", command, log)?;
        let client = client::plain(Http::Http1)?;
        let health = format!("{url}/health");
        poll(&mut child, "etcd /health", || async {
            let body = client.get(&health).send().await.ok()?.text().await.ok()?;
            body.contains("\"health\":\"true\"").then_some(())
        })
        .await?;
        Ok(Etcd { child, url })
    }
}
