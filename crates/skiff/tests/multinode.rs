//! The pod network across nodes, on a real server and two real agents, each agent in its
//! own network namespace with its own containerd (`skiff_testkit::netlab`): nodes get pod
//! CIDRs from the server and InternalIPs from their default route, and agents read the
//! cluster CIDR from the server untold; a pod reaches a pod on the other node by IP and is
//! seen with its own address; traffic leaving the cluster CIDR is masqueraded; a pod's
//! hostPort answers on its node's address; a deleted node's route goes away.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use skiff_testkit::netlab::{serial, Cluster, CLUSTER_CIDR, IMAGE};

/// busybox httpd on :8080 with a CGI script answering the client's address as it sees it.
const REMOTE_ADDR_SERVER: &str = "mkdir -p /www/cgi-bin && \
     printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/addr && \
     busybox chmod +x /www/cgi-bin/addr && exec httpd -f -p 8080 -h /www";

#[test]
fn a_pod_reaches_a_pod_on_another_node_with_its_own_address() {
    let _serial = serial();
    let cluster = Cluster::start(2);
    // The server assigned distinct pod CIDRs; the InternalIPs are the namespaces' eth0.
    let (cidr_a, cidr_b) = (cluster.pod_cidr(0), cluster.pod_cidr(1));
    let prefix = CLUSTER_CIDR.trim_end_matches("0.0/16");
    assert!(cidr_a.starts_with(prefix) && cidr_b.starts_with(prefix) && cidr_a != cidr_b, "{cidr_a} {cidr_b}");
    for (i, node) in cluster.nodes.iter().enumerate() {
        let ip = cluster.kubectl_ok(&[
            "get",
            "node",
            &node.name,
            "-o",
            "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
        ]);
        assert_eq!(ip, node.ip.to_string(), "node {i}");
    }
    // The agent waited for the assignment and wrote its CNI config for that subnet, without
    // the bridge's own masquerade.
    assert!(cluster.log("node-a").contains("waiting for the server to assign the node's pod CIDR"));
    let conflist =
        std::fs::read_to_string(cluster.nodes[0].data_dir.join("agent/cni/net.d/10-skiff.conflist")).unwrap();
    let conflist: serde_json::Value = serde_json::from_str(&conflist).unwrap();
    assert_eq!(conflist["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], cidr_a.as_str());
    assert_eq!(conflist["plugins"][0]["ipMasq"], false);
    // Each agent routes the other node's pod CIDR via its InternalIP, marked as its own.
    let route_b = format!("{cidr_b} via {}", cluster.nodes[1].ip);
    cluster.routes_until(0, |routes| routes.contains(&route_b));
    let route_a = format!("{cidr_a} via {}", cluster.nodes[0].ip);
    cluster.routes_until(1, |routes| routes.contains(&route_a));

    let server_ip = cluster.run_pod("web", 1, REMOTE_ADDR_SERVER);
    let client_ip = cluster.run_pod("client", 0, "exec sleep 3600");
    assert!(server_ip.starts_with(cidr_b.trim_end_matches("0/24")), "{server_ip} in {cidr_b}");
    assert!(client_ip.starts_with(cidr_a.trim_end_matches("0/24")), "{client_ip} in {cidr_a}");

    let seen = cluster.http_get("client", &server_ip, 8080, "/cgi-bin/addr");
    // httpd listens on IPv6 too, so it reports IPv4 peers as mapped addresses.
    let seen = seen.trim().trim_start_matches("[::ffff:").trim_end_matches(']');
    assert_eq!(seen, client_ip, "node B must see the client pod's address, not node A's");
    let page = cluster.http_get("client", &server_ip, 8080, "/");
    assert_eq!(page, "hello from skiff\n");
}

#[test]
fn traffic_leaving_the_cluster_cidr_is_masqueraded() {
    let _serial = serial();
    let cluster = Cluster::start(2);
    // A server outside the cluster CIDR: on the bridge address, in the root namespace.
    let listener = TcpListener::bind((cluster.server_ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let _ = stream.read(&mut request);
        let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\noutside\n");
        peer.ip()
    });
    cluster.run_pod("client", 0, "exec sleep 3600");
    let body = cluster.http_get("client", &cluster.server_ip.to_string(), port, "/");
    assert_eq!(body, "outside\n");
    let peer = accepted.join().unwrap();
    assert_eq!(peer.to_string(), cluster.nodes[0].ip.to_string(), "the pod's traffic leaves with node A's address");

    // The agent was not told the cluster CIDR: it read the server's.
    let table = cluster.in_netns(0, &["nft", "list", "table", "ip", "skiff-nat"]);
    assert!(table.contains("masquerade") && table.contains(CLUSTER_CIDR), "{table}");
    assert!(cluster.log("node-a").contains("cluster CIDR from the server"));
}

#[test]
fn a_host_port_answers_on_the_address_of_its_node() {
    let _serial = serial();
    let cluster = Cluster::start(2);
    let node_b = &cluster.nodes[1];
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "published"},
        "spec": {"nodeName": node_b.name, "containers": [{
            "name": "web", "image": IMAGE,
            "command": ["sh", "-c", "mkdir -p /www && echo published > /www/index.html && exec httpd -f -p 8080 -h /www"],
            "ports": [{"containerPort": 8080, "hostPort": 18080}],
        }]},
    });
    cluster.apply(&pod.to_string());
    cluster.wait_running("published");
    // From the host, outside the cluster: node B's address, the host port.
    let address = (node_b.ip, 18080).into();
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        let attempt = TcpStream::connect_timeout(&address, Duration::from_secs(3)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok(answer)
        });
        match attempt {
            Ok(answer) if answer.ends_with("published\n") => break answer,
            other => assert!(Instant::now() < deadline, "{address}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"), "{answer}");
    // Node A's address does not publish it.
    let elsewhere = (cluster.nodes[0].ip, 18080).into();
    assert!(TcpStream::connect_timeout(&elsewhere, Duration::from_secs(3)).is_err());
}

#[test]
fn deleting_a_node_removes_its_route() {
    let _serial = serial();
    let mut cluster = Cluster::start(2);
    let cidr_b = cluster.pod_cidr(1);
    cluster.routes_until(0, |routes| routes.contains(&cidr_b));
    // A route someone else made is never touched by the agent.
    cluster.in_netns(0, &["ip", "route", "add", "192.0.2.0/24", "via", &cluster.nodes[1].ip.to_string()]);

    cluster.stop_agent(1);
    let name_b = cluster.nodes[1].name.clone();
    cluster.kubectl_ok(&["delete", "node", &name_b]);
    cluster.routes_until(0, |routes| !routes.contains(&cidr_b));
    let all = cluster.in_netns(0, &["ip", "-4", "route", "show"]);
    assert!(all.contains("192.0.2.0/24"), "{all}");
}
