//! Services across nodes, on a real server and two real agents in their own network
//! namespaces (`skiff_testkit::netlab`): each agent's service proxy programs its namespace's
//! nftables, so a client pod on node A reaches a Deployment's replicas on both nodes
//! through the ClusterIP and by DNS name, the NodePort answers on both node IPs from outside, the
//! `kubernetes` Service reaches the API server, and a Service scaled to zero refuses
//! connections at once instead of letting them time out.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use skiff_testkit::netlab::{serial, Cluster, IMAGE};

/// Two replicas, one per node (required anti-affinity), each answering its own name.
fn web(image: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {{matchLabels: {{app: web}}}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: web
        image: {image}
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: http}}]
"#
    )
}

/// `count` GETs of `/` on ADDRESS:PORT from `pod`, in one exec; the bodies that came back.
fn bodies_from_pod(cluster: &Cluster, pod: &str, address: &str, port: u16, count: usize) -> Vec<String> {
    let script = format!(
        "for i in $(seq {count}); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {address} {port} | tail -n 1; done"
    );
    let output = cluster.exec(pod, &["sh", "-c", &script]);
    String::from_utf8_lossy(&output.stdout).lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
}

/// One GET of `/` on ADDRESS:PORT from the test process (the host, outside the cluster).
fn body_from_host(address: &str, port: u16) -> Option<String> {
    let mut stream =
        TcpStream::connect_timeout(&format!("{address}:{port}").parse().ok()?, Duration::from_secs(3)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.lines().last().map(|l| l.trim().to_string())
}

#[test]
fn services_reach_pods_on_every_node_and_refuse_at_once_without_endpoints() {
    let _serial = serial();
    let cluster = Cluster::start(2);
    cluster.apply(&web(IMAGE));
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    let placement = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    ]);
    let replicas: BTreeMap<String, String> = placement
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(pod, node)| (pod.to_string(), node.to_string()))
        .collect();
    let nodes: std::collections::BTreeSet<_> = replicas.values().collect();
    assert_eq!((replicas.len(), nodes.len()), (2, 2), "one replica per node: {placement}");
    let cluster_ip = cluster.kubectl_ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port: u16 = cluster
        .kubectl_ok(&["get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"])
        .parse()
        .expect("a node port");

    // Through the ClusterIP, from node A: both replicas answer, the one on node B too.
    cluster.run_pod("client", 0, "exec sleep 3600");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answers = bodies_from_pod(&cluster, "client", &cluster_ip, 80, 20);
        if replicas.keys().all(|pod| answers.contains(pod)) {
            assert!(answers.iter().all(|a| replicas.contains_key(a)), "only the replicas answer: {answers:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{cluster_ip}:80 from node A reached only {answers:?} of {replicas:?}");
        std::thread::sleep(Duration::from_millis(500));
    }

    // By name through the cluster DNS (kube-dns at 10.43.0.10, reached through the proxy):
    // the short name with the pod's search path, then the address it gives is served.
    let deadline = Instant::now() + Duration::from_secs(60);
    let resolved = loop {
        let output = cluster.exec("client", &["busybox", "nslookup", "web"]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        // busybox tries every search domain and fails when any is NXDOMAIN: read the answer.
        if text.contains("Name:\tweb.default.svc.cluster.local") {
            break text;
        }
        assert!(Instant::now() < deadline, "nslookup web: {text}{}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(resolved.contains(&format!("Address: {cluster_ip}")), "{resolved}");
    let by_name = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | \
        nc -w 3 $(busybox nslookup web.default.svc.cluster.local | sed -n 's/^Address: //p' | tail -n 1) 80 | tail -n 1";
    let answer = cluster.exec("client", &["sh", "-c", by_name]);
    let answer = String::from_utf8_lossy(&answer.stdout).trim().to_string();
    assert!(replicas.contains_key(&answer), "web.default.svc.cluster.local:80 answered {answer:?}");

    // The NodePort answers from outside the cluster on both nodes' addresses.
    for node in &cluster.nodes {
        let address = node.ip.to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match body_from_host(&address, node_port) {
                Some(body) if replicas.contains_key(&body) => break,
                other => assert!(Instant::now() < deadline, "NodePort {address}:{node_port} answered {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // The kubernetes Service (the first service IP) reaches the API server's TLS port.
    let kubernetes_ip = cluster.kubectl_ok(&["get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"]);
    let probe = format!("printf '' | nc -w 5 {kubernetes_ip} 443");
    let reached = cluster.exec("client", &["sh", "-c", &probe]);
    assert!(reached.status.success(), "{kubernetes_ip}:443: {}", String::from_utf8_lossy(&reached.stderr));

    // Scaled to zero: once the proxy knows, a connection is refused, not left to time out.
    cluster.kubectl_ok(&["scale", "deployment/web", "--replicas=0"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let attempt = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 20 {cluster_ip} 80");
    loop {
        let started = Instant::now();
        let output = cluster.exec("client", &["sh", "-c", &attempt]);
        let took = started.elapsed();
        let refused = !output.status.success() && output.stdout.is_empty();
        // While the replicas go, a connection may still be sent to one and wait; the
        // proxy's rules then change and the next attempt is refused at once.
        if refused && took < Duration::from_secs(5) {
            break;
        }
        assert!(Instant::now() < deadline, "{cluster_ip}:80 after scaling to zero: refused {refused} in {took:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
