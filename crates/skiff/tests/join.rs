//! `skiff agent --server URL --token TOKEN` joins the cluster whose server wrote the
//! token, and refuses a server whose CA the token does not name.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `skiff server` on a memory store; returns once DATA/token and the kubeconfig exist.
fn server(data: &Path, port: u16) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--store", "memory", "--disable-scheduler", "--disable-agent", "--bind-address", "127.0.0.1"])
        .args(["--https-listen-port", &port.to_string(), "--disable-dns"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skiff starts");
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(data.join("token").exists() && data.join("kubeconfig.yaml").exists()) {
        assert!(Instant::now() < deadline, "the server wrote no token");
        std::thread::sleep(Duration::from_millis(20));
    }
    process
}

fn agent(url: &str, token: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
    command
        .args(["agent", "--server", url, "--token", token, "--simulate", "1", "--node-name", "joined"])
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg("/nonexistent/kubeconfig.yaml");
    command
}

#[test]
fn an_agent_joins_with_the_servers_token() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = server(dir.path(), port);
    let token = std::fs::read_to_string(dir.path().join("token")).unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let _agent = Process(agent(&url, token.trim()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());

    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new("kubectl")
            .args(["get", "node", "joined-0", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        if out.status.success() && out.stdout == b"True" {
            break;
        }
        assert!(Instant::now() < deadline, "the agent's node never became Ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_agent_refuses_a_server_with_another_ca() {
    let (one, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port, other_port) = (free_port(), free_port());
    let _server = server(one.path(), port);
    let _other = server(other.path(), other_port);
    let token_of_other = std::fs::read_to_string(other.path().join("token")).unwrap();
    let out = agent(&format!("https://127.0.0.1:{port}"), token_of_other.trim()).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not the one the join token names"), "{stderr}");
}
