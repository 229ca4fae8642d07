//! A small network for proxy tests, made of network namespaces this test owns:
//!
//! ```text
//!  client ns 192.168.77.2 ── 192.168.77.1  node ns  10.42.0.1 ── 10.42.0.5,6,7…  pods ns
//!  (outside the cluster)     (the proxy's rules,     (endpoints: busybox httpd, one
//!                             ip_forward, default     address each, CGI answering
//!                             route to client)        "NAME CLIENT_ADDRESS")
//! ```
//!
//! Everything is removed on drop, also when a test fails.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skiff_proxy::Nft;

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    pub node: String,
    pub pods: String,
    pub client: String,
    servers: Vec<Child>,
    dir: tempfile::TempDir,
}

/// The node's address on the client side (NodePort, external IPs).
pub const NODE_IP: &str = "192.168.77.1";
pub const CLIENT_IP: &str = "192.168.77.2";

pub fn run(args: &[&str]) -> Result<String> {
    let output = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {args:?}"))?;
    if !output.status.success() {
        bail!("{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn in_ns(ns: &str, command: &str) -> Result<String> {
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend(command.split_whitespace());
    run(&args)
}

impl Lab {
    pub fn new() -> Result<Lab> {
        let id = format!("skp{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let lab = Lab {
            node: format!("{id}-node"),
            pods: format!("{id}-pods"),
            client: format!("{id}-client"),
            servers: Vec::new(),
            dir: tempfile::tempdir()?,
        };
        for ns in [&lab.node, &lab.pods, &lab.client] {
            run(&["ip", "netns", "add", ns])?;
            in_ns(ns, "ip link set lo up")?;
        }
        let (node, pods, client) = (&lab.node, &lab.pods, &lab.client);
        in_ns(node, &format!("ip link add vpods type veth peer name eth0 netns {pods}"))?;
        in_ns(node, &format!("ip link add vclient type veth peer name eth0 netns {client}"))?;
        for command in [
            "ip addr add 10.42.0.1/24 dev vpods",
            "ip link set vpods up",
            &format!("ip addr add {NODE_IP}/24 dev vclient"),
            "ip link set vclient up",
            &format!("ip route add default via {CLIENT_IP}"),
            "sysctl -qw net.ipv4.ip_forward=1",
        ] {
            in_ns(node, command)?;
        }
        in_ns(pods, "ip link set eth0 up")?;
        in_ns(client, &format!("ip addr add {CLIENT_IP}/24 dev eth0"))?;
        in_ns(client, "ip link set eth0 up")?;
        in_ns(client, &format!("ip route add default via {NODE_IP}"))?;
        Ok(lab)
    }

    /// nft inside the node namespace.
    pub fn nft(&self) -> Nft {
        Nft::in_namespace(&self.node)
    }

    /// Starts an endpoint called `name` at `ip`:8080 in the pods namespace: an HTTP server
    /// whose /cgi-bin/who answers `NAME CLIENT_ADDRESS`. Returns once it answers.
    pub fn serve(&mut self, name: &str, ip: &str) -> Result<()> {
        let first = self.servers.is_empty();
        in_ns(&self.pods, &format!("ip addr add {ip}/24 dev eth0"))?;
        if first {
            in_ns(&self.pods, "ip route add default via 10.42.0.1")?;
        }
        let root: PathBuf = self.dir.path().join(name);
        std::fs::create_dir_all(root.join("cgi-bin"))?;
        let script = root.join("cgi-bin/who");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n{name} %s\\n' \"$REMOTE_ADDR\"\n"),
        )?;
        run(&["chmod", "755", script.to_str().context("path")?])?;
        let root = root.to_str().context("path")?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.pods, "busybox", "httpd", "-f", "-p", &format!("{ip}:8080"), "-h", root])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.servers.push(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.get(&self.pods, &format!("{ip}:8080")) {
                Ok(answer) if answer.starts_with(name) => return Ok(()),
                result if Instant::now() > deadline => bail!("endpoint {name} does not answer: {result:?}"),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// GET http://ADDRESS/cgi-bin/who from namespace `ns`: the answering endpoint's name
    /// and the client address it saw, or wget's error.
    pub fn get(&self, ns: &str, address: &str) -> Result<String, String> {
        let url = format!("http://{address}/cgi-bin/who");
        let output = Command::new("ip")
            // busybox 1.35's `wget -T` crashes; `timeout` bounds a dropped connection instead.
            .args(["netns", "exec", ns, "busybox", "timeout", "10", "busybox", "wget", "-q", "-O", "-", &url])
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// The names of the endpoints answering `tries` requests, with how often each did.
    pub fn spread(&self, ns: &str, address: &str, tries: usize) -> Result<std::collections::BTreeMap<String, usize>> {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..tries {
            let answer = self.get(ns, address).map_err(anyhow::Error::msg)?;
            let name = answer.split_whitespace().next().unwrap_or_default().to_string();
            *seen.entry(name).or_insert(0) += 1;
        }
        Ok(seen)
    }

    /// `nft -a list chain` in the node namespace (rule handles included).
    pub fn list_chain(&self, chain: &str) -> Result<String> {
        in_ns(&self.node, &format!("nft -a list chain ip skiff-proxy {chain}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.node, &self.pods, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
