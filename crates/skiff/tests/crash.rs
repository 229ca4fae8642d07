//! `kill -9` of the real server process during a stream of writes: after a restart every
//! acknowledged write is there and the revision never goes backwards.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_testkit::{json, reqwest, tls_client};

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(data: &Path, port: u16) -> (ServerProcess, reqwest::Client) {
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["server", "--store", "sqlite", "--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
        .args(["--disable-agent", "--disable-dns"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("skiff starts");
    let process = ServerProcess(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tls = data.join("tls");
        if let (Ok(ca), Ok(cert), Ok(key)) = (
            std::fs::read_to_string(tls.join("ca.crt")),
            std::fs::read_to_string(tls.join("admin.crt")),
            std::fs::read_to_string(tls.join("admin.key")),
        ) {
            let client = tls_client(&ca, Some((&cert, &key))).unwrap();
            let ready = client.get(format!("https://127.0.0.1:{port}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return (process, client);
            }
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (process, client) = start(dir.path(), port).await;
    let url = format!("https://127.0.0.1:{port}/api/v1/namespaces/default/configmaps");

    // Writers record every create the server acknowledged, with its resourceVersion.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{writer}-{i}");
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                let Ok(response) = client.post(&url).json(&body).send().await else { break };
                if response.status() != 201 {
                    break;
                }
                let Ok(created) = response.json::<serde_json::Value>().await else { break };
                let rv = created["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
                acked.lock().unwrap().push((name, rv));
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut child = process;
    // SIGKILL: no chance to flush anything.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} writes were acknowledged", acked.len());
    let max_rv = acked.iter().map(|(_, rv)| *rv).max().unwrap();

    let (_restarted, client) = start(dir.path(), port).await;
    let list: serde_json::Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    let stored: std::collections::HashMap<String, i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["metadata"]["name"].as_str().unwrap().to_string(),
                i["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    for (name, rv) in &acked {
        assert_eq!(stored.get(name), Some(rv), "acknowledged write {name} at {rv} is missing after restart");
    }
    let list_rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(list_rv >= max_rv, "revision went backwards: {list_rv} < {max_rv}");
    let after = client
        .post(&url)
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after-restart"}}))
        .send()
        .await
        .unwrap();
    let after: serde_json::Value = after.json().await.unwrap();
    let after_rv: i64 = after["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(after_rv > list_rv, "new writes continue the revision: {after_rv} <= {list_rv}");
}
