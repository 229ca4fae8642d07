//! logs, exec, attach and port-forward with real containers: `skiff server` (with its
//! in-process agent on containerd) and the real kubectl. kubectl 1.32 tries WebSocket
//! (v5.channel.k8s.io) first and falls back to SPDY/3.1 when the upgrade is refused;
//! both paths run here (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` forces SPDY).
//!
//! Needs containerd, runc, the CNI plugins and busybox-static installed
//! (scripts/install-deps.sh); the busybox test image is built here and imported by the
//! agent at start.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// The test image, written where the agent imports images from at start.
const IMAGE: &str = "skiff.local/busybox:1";

fn kubectl(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Starts `skiff server` (API server, scheduler and the in-process agent) and waits for
/// a Ready node. Returns the process and the admin kubeconfig.
fn server(data: &Path) -> (Process, PathBuf) {
    skiff_testkit::images::write_busybox(&data.join("agent/images"), IMAGE).unwrap();
    let (port, kubelet_port) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
        .args(["--kubelet-port", &kubelet_port.to_string(), "--disable-dns"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("skiff starts");
    let process = Process(child);
    let kubeconfig = data.join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if kubeconfig.exists() {
            let out =
                kubectl(&kubeconfig, &["wait", "--for=condition=Ready", "node", "--all", "--timeout=5s"], &[], None);
            if out.status.success() && !out.stdout.is_empty() {
                return (process, kubeconfig);
            }
        }
        assert!(Instant::now() < deadline, "no Ready node");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP/1.0 GET on loopback; the whole answer, headers included.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn logs_exec_attach_and_port_forward_with_real_containers() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, kc) = server(dir.path());
    let image = IMAGE.to_string();
    // httpd serves /etc: GET /hostname answers the pod's hostname.
    ok(&kubectl(
        &kc,
        &[
            "run",
            "web",
            "--image",
            &image,
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "echo started; exec httpd -f -p 8080 -h /etc",
        ],
        &[],
        None,
    ));
    ok(&kubectl(&kc, &["wait", "--for=condition=Ready", "pod/web", "--timeout=120s"], &[], None));

    assert_eq!(ok(&kubectl(&kc, &["logs", "web"], &[], None)), "started\n");

    // WebSocket first (refused by containerd's streaming server, which predates v5),
    // then SPDY; and SPDY alone.
    for env in [&[][..], &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")][..]] {
        assert_eq!(ok(&kubectl(&kc, &["exec", "web", "--", "echo", "hi"], env, None)), "hi\n");
        assert_eq!(ok(&kubectl(&kc, &["exec", "-i", "web", "--", "cat"], env, Some("piped\n"))), "piped\n");
        let failed = kubectl(&kc, &["exec", "web", "--", "sh", "-c", "exit 3"], env, None);
        assert_eq!(failed.status.code(), Some(3), "the command's exit code comes back");
    }

    // port-forward: a local port reaches the pod's 8080.
    let local = free_port();
    let mut forward = Process(
        Command::new("kubectl")
            .args(["port-forward", "pod/web", &format!("{local}:8080")])
            .env("KUBECONFIG", &kc)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut ready = String::new();
    BufReader::new(forward.0.stdout.as_mut().unwrap()).read_line(&mut ready).unwrap();
    assert!(ready.contains("Forwarding from"), "{ready}");
    let body = http_get(local, "/hostname");
    assert!(body.ends_with("\r\n\r\nweb\n"), "{body}");
    drop(forward);

    // logs -f follows a container until it exits.
    ok(&kubectl(
        &kc,
        &[
            "run",
            "counter",
            "--image",
            &image,
            "--restart=Never",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3; do echo $i; sleep 1; done",
        ],
        &[],
        None,
    ));
    ok(&kubectl(&kc, &["wait", "--for=condition=Ready", "pod/counter", "--timeout=120s"], &[], None));
    assert_eq!(ok(&kubectl(&kc, &["logs", "-f", "counter"], &[], None)), "1\n2\n3\n");

    // attach to a container reading its stdin.
    ok(&kubectl(
        &kc,
        &[
            "run",
            "reader",
            "--image",
            &image,
            "--restart=Never",
            "-i",
            "--attach=false",
            "--",
            "sh",
            "-c",
            "read line; echo got $line",
        ],
        &[],
        None,
    ));
    ok(&kubectl(&kc, &["wait", "--for=condition=Ready", "pod/reader", "--timeout=120s"], &[], None));
    let attached = kubectl(&kc, &["attach", "-i", "reader"], &[], Some("x\n"));
    assert!(String::from_utf8_lossy(&attached.stdout).contains("got x"), "{attached:?}");
}
