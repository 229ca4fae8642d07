//! A multi-node cluster on one machine for network tests: a bridge in the root network
//! namespace with an address from 10.213.N.0/24, one network namespace per node joined to
//! it by a veth pair (the node's `eth0`, default route via the bridge), the real `skiff
//! server --disable-agent` on the host advertising the bridge IP, and one `nsenter
//! --net=/run/netns/NS skiff agent --server … --token …` per node, each with its own data
//! dir and so its own containerd, cni0, routes and nftables tables.
//!
//! Why nsenter and not `ip netns exec`: the latter also gives the command a private mount
//! namespace with a fresh /sys, which has no /sys/fs/cgroup, and runc then fails with "no
//! cgroup mount found in mountinfo". nsenter switches only the network namespace.
//!
//! Everything is removed on drop, also when a test fails: pods (through each node's CRI
//! socket), the agents, the server, the namespaces, the bridge. Tests using a cluster hold
//! [`serial`] so that two clusters (four containerds) do not share the 2-core machine.
//!
//! Used by the network tests and by `skiff-bench pod-network`.
//!
//! Use: `let cluster = Cluster::start(2);` then `cluster.run_pod("web", 1, script)`,
//! `cluster.exec(pod, &[...])`, `cluster.kubectl_ok(&[...])`, `cluster.nodes[i]`
//! (name, netns, ip), `cluster.in_netns(i, &[...])`, `cluster.stop_agent(i)` /
//! `cluster.start_agent(i)`.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{images, kubectl, ok};
use skiff_agent::runtime::cri::CriRuntime;
use skiff_agent::runtime::Runtime;

/// The busybox image every node has imported.
pub const IMAGE: &str = "skiff.local/busybox:1";
/// The cluster's pod range. Not the default 10.42.0.0/16: the bridge's traffic passes the
/// root namespace's iptables (br_netfilter), where the CNI masquerade rules of pods other
/// tests ran on the host's own cni0 (10.42.0.x) would rewrite our pods' packets.
pub const CLUSTER_CIDR: &str = "10.212.0.0/16";
/// The API server's port on the bridge IP.
pub const API_PORT: u16 = 6443;

static SERIAL: Mutex<()> = Mutex::new(());
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// One cluster at a time in this test binary (a failed test does not block the next).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a command, failing the test with its stderr when it fails.
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A child process stopped like Ctrl-C (SIGINT, then SIGKILL after 30 s) when dropped.
pub struct Process(Child);

impl Process {
    pub fn interrupt(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// The bridge and namespaces; removed on drop (deleting a namespace deletes its veth).
struct Network {
    bridge: String,
    namespaces: Vec<String>,
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            // Whatever still runs in the namespace was started by this cluster.
            for pid in crate::hostnet::pids_in(ns).unwrap_or_default() {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).status();
    }
}

/// One node: its name, namespace, address and agent.
pub struct Node {
    pub name: String,
    /// The network namespace the agent (and its containerd, cni0, routes) lives in.
    pub netns: String,
    /// The node's address on the bridge (its InternalIP).
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    agent: Option<Process>,
}

impl Node {
    fn socket(&self) -> PathBuf {
        self.data_dir.join("agent/containerd/containerd.sock")
    }
}

pub struct Cluster {
    /// Kept first so that they drop first: pods, agents, server, then the network.
    pub nodes: Vec<Node>,
    server: Option<Process>,
    #[expect(dead_code, reason = "held for its Drop, which removes the namespaces and the bridge")]
    network: Network,
    pub kubeconfig: PathBuf,
    pub token: String,
    /// The bridge's address: the API server's, outside the cluster CIDR.
    pub server_ip: Ipv4Addr,
    pub bridge: String,
    pub dir: tempfile::TempDir,
    /// The skiff binary the server and agents run.
    binary: PathBuf,
}

/// A 10.213.N.0/24 no route in the root namespace uses yet.
fn free_subnet(seed: u32) -> u8 {
    (0..250u32)
        .map(|i| ((seed + i) % 250 + 1) as u8)
        .find(|n| sh("ip", &["-4", "route", "show", &format!("10.213.{n}.0/24")]).trim().is_empty())
        .expect("a free 10.213.N.0/24")
}

impl Cluster {
    /// A server and `count` nodes (node-a, node-b, …), all Ready, running the debug build.
    pub fn start(count: usize) -> Cluster {
        Cluster::start_with(&crate::skiff_binary().expect("the skiff binary"), count)
    }

    /// A server and `count` nodes running `binary`.
    pub fn start_with(binary: &Path, count: usize) -> Cluster {
        let binary = binary.to_path_buf();
        let id = format!("{}{}", std::process::id() % 10000, CLUSTERS.fetch_add(1, Ordering::SeqCst));
        let subnet = free_subnet(std::process::id() + id.len() as u32 * 7);
        let server_ip = Ipv4Addr::new(10, 213, subnet, 1);
        let bridge = format!("skbr{id}");
        let mut network = Network { bridge: bridge.clone(), namespaces: Vec::new() };
        sh("ip", &["link", "add", &bridge, "type", "bridge"]);
        sh("ip", &["addr", "add", &format!("{server_ip}/24"), "dev", &bridge]);
        sh("ip", &["link", "set", &bridge, "up"]);
        let mut nodes = Vec::new();
        let dir = tempfile::tempdir().unwrap();
        for i in 0..count {
            let netns = format!("sk{id}n{i}");
            let veth = format!("sk{id}h{i}");
            let ip = Ipv4Addr::new(10, 213, subnet, 10 + i as u8);
            sh("ip", &["netns", "add", &netns]);
            network.namespaces.push(netns.clone());
            sh("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
            sh("ip", &["link", "set", &veth, "master", &bridge, "up"]);
            sh("ip", &["-n", &netns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
            sh("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
            sh("ip", &["-n", &netns, "link", "set", "lo", "up"]);
            sh("ip", &["-n", &netns, "route", "add", "default", "via", &server_ip.to_string()]);
            let name = format!("node-{}", (b'a' + i as u8) as char);
            let data_dir = dir.path().join(&name);
            images::write_busybox(&data_dir.join("agent/images"), IMAGE).unwrap();
            nodes.push(Node { name, netns, ip, data_dir, agent: None });
        }

        let server_dir = dir.path().join("server");
        std::fs::create_dir_all(&server_dir).unwrap();
        let log = File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(&binary)
            .args(["server", "--store", "memory", "--disable-agent"])
            .args(["--bind-address", &server_ip.to_string(), "--https-listen-port", &API_PORT.to_string()])
            .args(["--node-ip", &server_ip.to_string(), "--tls-san", &server_ip.to_string()])
            .args(["--cluster-cidr", CLUSTER_CIDR])
            .arg("--data-dir")
            .arg(&server_dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("skiff server starts");
        let server = Process(child);
        let kubeconfig = server_dir.join("kubeconfig.yaml");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(server_dir.join("token").exists() && kubeconfig.exists()) {
            assert!(Instant::now() < deadline, "the server wrote no token");
            std::thread::sleep(Duration::from_millis(50));
        }
        let token = std::fs::read_to_string(server_dir.join("token")).unwrap().trim().to_string();
        let mut cluster =
            Cluster { nodes, server: Some(server), network, kubeconfig, token, server_ip, bridge, dir, binary };
        for i in 0..count {
            cluster.start_agent(i);
        }
        for i in 0..count {
            let name = cluster.nodes[i].name.clone();
            cluster.kubectl_until(
                &["get", "node", &name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"],
                Duration::from_secs(120),
                |s| s == "True",
            );
        }
        cluster
    }

    /// Starts node `i`'s agent in its namespace (again, after [`Cluster::stop_agent`]).
    pub fn start_agent(&mut self, i: usize) {
        let url = format!("https://{}:{API_PORT}", self.server_ip);
        let node = &mut self.nodes[i];
        let log = File::options().create(true).append(true).open(self.dir.path().join(format!("{}.log", node.name)));
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", node.netns))
            .arg("--")
            .arg(&self.binary)
            // No --cluster-cidr: the agent reads the server's (kube-system/skiff-cluster).
            .args(["agent", "--server", &url, "--token", &self.token, "--node-name", &node.name])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .env_remove("KUBECONFIG")
            .args(["--kubeconfig", "/nonexistent/kubeconfig.yaml"])
            .stdout(Stdio::null())
            .stderr(log.unwrap())
            .spawn()
            .expect("skiff agent starts");
        node.agent = Some(Process(child));
    }

    /// Stops node `i`'s agent as Ctrl-C does (its containerd stops; containers keep running).
    pub fn stop_agent(&mut self, i: usize) {
        if let Some(mut agent) = self.nodes[i].agent.take() {
            agent.interrupt();
        }
    }

    /// The log of node `name`'s agent (or "server").
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&self.kubeconfig, args, None)
    }

    /// kubectl's stdout, failing the test when kubectl fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        ok(&self.kubectl(args))
    }

    /// Runs kubectl until `check` accepts its stdout, for up to `timeout`.
    pub fn kubectl_until(&self, args: &[&str], timeout: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.kubectl(args);
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() && check(&stdout) {
                return stdout;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?}: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs a busybox pod on node `i` with `sh -c script`; returns its IP once Running.
    pub fn run_pod(&self, name: &str, i: usize, script: &str) -> String {
        let overrides = format!(r#"{{"spec":{{"nodeName":"{}"}}}}"#, self.nodes[i].name);
        self.kubectl_ok(&[
            "run",
            name,
            "--image",
            IMAGE,
            "--overrides",
            &overrides,
            "--command",
            "--",
            "sh",
            "-c",
            script,
        ]);
        self.wait_running(name)
    }

    /// `kubectl apply -f -` of `manifest` (YAML or JSON), failing the test when it fails.
    pub fn apply(&self, manifest: &str) -> String {
        ok(&kubectl(&self.kubeconfig, &["apply", "-f", "-"], Some(manifest)))
    }

    /// Waits up to two minutes for pod `name` to run with an IP; returns the IP.
    pub fn wait_running(&self, name: &str) -> String {
        let running = |s: &str| s.starts_with("Running ") && s.len() > "Running ".len();
        let out = self.kubectl_until(
            &["get", "pod", name, "-o", "jsonpath={.status.phase} {.status.podIP}"],
            Duration::from_secs(120),
            running,
        );
        out.split_whitespace().nth(1).unwrap_or_default().to_string()
    }

    /// GETs `http://ADDRESS:PORT/PATH` from `pod` with busybox nc (busybox-static's wget
    /// crashes in a rootfs without glibc's NSS libraries), retrying for up to a minute (routes
    /// arrive asynchronously); returns the body of the 200 answer.
    pub fn http_get(&self, pod: &str, address: &str, port: u16, path: &str) -> String {
        let script = format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {address} {port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let output = self.exec(pod, &["sh", "-c", &script]);
            // CGI answers end their headers with bare newlines.
            let answer = String::from_utf8_lossy(&output.stdout).replace("\r\n", "\n");
            if let (true, Some((head, body))) = (output.status.success(), answer.split_once("\n\n")) {
                assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "{answer}");
                return body.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "GET {address}:{port}{path} from {pod}: {answer}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `kubectl exec POD -- command…`.
    pub fn exec(&self, pod: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(command);
        self.kubectl(&args)
    }

    /// Runs a command in node `i`'s network namespace.
    pub fn in_netns(&self, i: usize, command: &[&str]) -> String {
        let mut args = vec!["netns", "exec", self.nodes[i].netns.as_str()];
        args.extend_from_slice(command);
        sh("ip", &args)
    }

    /// The routes node `i`'s agent made (`ip route show proto 147` in its namespace).
    pub fn agent_routes(&self, i: usize) -> String {
        self.in_netns(i, &["ip", "-4", "route", "show", "proto", "147"])
    }

    /// Waits up to a minute until node `i`'s agent routes satisfy `check`; returns them.
    pub fn routes_until(&self, i: usize, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let routes = self.agent_routes(i);
            if check(&routes) {
                return routes;
            }
            assert!(Instant::now() < deadline, "routes of {}: {routes}", self.nodes[i].name);
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The pod CIDR the server assigned to node `i`.
    pub fn pod_cidr(&self, i: usize) -> String {
        self.kubectl_ok(&["get", "node", &self.nodes[i].name, "-o", "jsonpath={.spec.podCIDR}"])
    }
}

/// Stops and removes every pod sandbox of a node through its CRI socket (containers
/// outlive the agent by design).
fn remove_pods(socket: &Path) {
    let Some(socket) = socket.exists().then(|| socket.to_string_lossy().into_owned()) else { return };
    let work = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            let Ok(cri) = CriRuntime::new(&socket) else { return };
            for sandbox in cri.list_pod_sandbox(&Default::default()).await.unwrap_or_default() {
                let _ = cri.stop_pod_sandbox(&sandbox.id).await;
                let _ = cri.remove_pod_sandbox(&sandbox.id).await;
            }
        });
    });
    let _ = work.join();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in self.nodes.iter().map(|n| n.name.clone()).chain(["server".to_string()]) {
                let log = self.log(&name);
                let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
                eprintln!("---- {name} log (last 40 lines) ----\n{}", tail.join("\n"));
            }
        }
        for node in &mut self.nodes {
            if node.agent.is_some() {
                remove_pods(&node.socket());
            }
            node.agent.take();
        }
        self.server.take();
        // `network` drops next: leftover processes in the namespaces, the namespaces, the bridge.
    }
}
