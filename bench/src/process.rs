//! Child processes (the servers under test), their scratch directories, and polling.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a server may take to become ready before the benchmark gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGINT before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// A child process with its output in a log file. Dropping it kills it, so a
/// benchmark that fails, panics or is interrupted leaves no server behind.
pub struct Child {
    name: String,
    process: std::process::Child,
    log: PathBuf,
}

impl Child {
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Self> {
        let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let process = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name} ({})", command.get_program().to_string_lossy()))?;
        Ok(Child { name: name.to_string(), process, log: log.to_path_buf() })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails, quoting the end of the log, when the process has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.process.try_wait()? {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("{} exited ({status}); end of {}:\n{}", self.name, self.log.display(), tail.join("\n"));
        }
        Ok(())
    }

    /// Resident memory now (VmRSS) and at its peak (VmHWM), in bytes.
    pub fn memory(&self) -> Result<Memory> {
        let path = format!("/proc/{}/status", self.process.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Ok(Memory { rss: status_bytes(&status, "VmRSS:")?, peak: status_bytes(&status, "VmHWM:")? })
    }

    /// CPU time (user + system, all threads) the process has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        cpu_time_of(self.process.id())
    }

    /// The process IDs of its children named `comm` (as /proc/PID/comm has it).
    pub fn children_named(&self, comm: &str) -> Result<Vec<u32>> {
        let parent = self.process.id().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc")? {
            let name = entry?.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // "PID (COMM) STATE PPID …"; COMM may hold spaces and parentheses.
            let (Some((head, tail)), Some(open)) = (stat.rsplit_once(')'), stat.find('(')) else { continue };
            if &head[open + 1..] == comm && tail.split_whitespace().nth(1) == Some(parent.as_str()) {
                found.push(pid);
            }
        }
        Ok(found)
    }

    /// Stops the process as Ctrl-C would (SIGINT), waits for it to exit, and returns its log.
    pub async fn stop(mut self) -> Result<String> {
        let pid = self.process.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().context("running kill")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.process.try_wait()?.is_some() {
                return Ok(self.log());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bail!("{} did not exit within {STOP_TIMEOUT:?} of SIGINT", self.name) // dropping kills it
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.process.try_wait() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// Resident memory of a process, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub rss: u64,
    pub peak: u64,
}

/// CPU time (user + system, all threads) this program has used so far.
pub fn own_cpu_time() -> Result<Duration> {
    cpu_time("/proc/self/stat")
}

/// CPU time (user + system, all threads) process `pid` has used so far.
pub fn cpu_time_of(pid: u32) -> Result<Duration> {
    cpu_time(&format!("/proc/{pid}/stat"))
}

/// utime + stime of a /proc/PID/stat file.
fn cpu_time(path: &str) -> Result<Duration> {
    /// USER_HZ, the unit of those fields: 100 on every Linux architecture.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().collect();
    let ticks = |n: usize| -> Result<u64> { Ok(fields.get(n - 3).context("short stat")?.parse()?) };
    Ok(Duration::from_millis((ticks(14)? + ticks(15)?) * 1000 / TICKS_PER_SECOND))
}

/// A "Field:   1234 kB" line of /proc/PID/status, in bytes.
fn status_bytes(status: &str, field: &str) -> Result<u64> {
    let line = status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field} in /proc status"))?;
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

/// Retries `attempt` every millisecond until it yields a value, the child exits, or
/// [`READY_TIMEOUT`] passes.
pub async fn poll<T, F, Fut>(child: &mut Child, what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        child.ensure_running()?;
        if let Some(value) = attempt().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{what}: not ready after {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub async fn wait_for_port(child: &mut Child, port: u16) -> Result<()> {
    poll(child, &format!("port {port}"), || async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
    })
    .await
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One temporary directory for a whole benchmark run, removed on drop (after the
/// children, which the subcommands own and drop first).
pub struct Scratch {
    root: tempfile::TempDir,
    next: AtomicU32,
}

impl Scratch {
    pub fn new(parent: Option<&Path>) -> Result<Self> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("skiff-bench-");
        let root = match parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .context("creating the scratch directory")?;
        Ok(Scratch { root, next: AtomicU32::new(0) })
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// Leaves the directory behind when this is dropped, and returns its path.
    pub fn keep(&mut self) -> &Path {
        self.root.disable_cleanup(true);
        self.root.path()
    }

    /// A new, empty directory `NAME-N`.
    pub fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.unique(name);
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// A new log file name `NAME-N.log`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.unique(&format!("{name}.log"))
    }

    fn unique(&self, name: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.root.path().join(format!("{n:02}-{name}"))
    }
}
