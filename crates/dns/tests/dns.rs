//! The DNS server against a real API server: objects created over HTTPS, names asked over
//! real UDP and TCP sockets, names outside the zone forwarded to a second DNS server
//! started here on loopback.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;
use skiff_testkit::{eventually, json, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

const WAIT: Duration = Duration::from_secs(30);

/// The upstream: `example.test` A 192.0.2.7, `big.example.test` 40 TXT records, NXDOMAIN else.
struct Upstream;

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut handle: R) -> ResponseInfo {
        let query = request.request_info().expect("one query").query.original().clone();
        let name = query.name().clone();
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let answers: Vec<Record> = match name.to_ascii().to_ascii_lowercase().as_str() {
            "example.test." => vec![Record::from_rdata(name.clone(), 60, RData::A(A::new(192, 0, 2, 7)))],
            "big.example.test." => (0..40)
                .map(|i| Record::from_rdata(name.clone(), 60, RData::TXT(TXT::new(vec![format!("{i:0>60}")]))))
                .collect(),
            _ => {
                header.set_response_code(ResponseCode::NXDomain);
                vec![]
            }
        };
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if request.edns().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            builder.edns(edns);
        }
        let response = builder.build(header, answers.iter(), [], [], []);
        handle.send_response(response).await.expect("upstream answers")
    }
}

async fn start_upstream() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    // A free UDP port whose TCP twin may be taken by another test: try a few.
    let mut attempts = 0;
    let (udp, tcp, addr) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, tcp, addr),
            Err(error) if attempts < 20 => {
                attempts += 1;
                eprintln!("upstream port {addr} taken over TCP ({error}); another");
            }
            Err(error) => panic!("no port free over both UDP and TCP: {error}"),
        }
    };
    let mut server = ServerFuture::new(Upstream);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    (addr, tokio::spawn(async move { server.block_until_done().await.unwrap() }))
}

fn query_bytes(name: &str, qtype: RecordType, edns: bool) -> (u16, Vec<u8>) {
    let id = rand::random();
    let mut message = Message::new();
    message.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        message.set_edns(e);
    }
    (id, message.to_bytes().unwrap())
}

/// Asks over UDP without EDNS (512-byte answers), as a plain stub resolver does.
async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let (id, bytes) = query_bytes(name, qtype, false);
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&bytes, server).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buffer)).await.expect("UDP answer").unwrap();
    assert!(n <= 512, "a UDP answer without EDNS fits 512 bytes, got {n}");
    let message = Message::from_bytes(&buffer[..n]).unwrap();
    assert_eq!(message.id(), id);
    message
}

async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let (id, bytes) = query_bytes(name, qtype, true);
    let mut stream = TcpStream::connect(server).await.unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let length = stream.read_u16().await.unwrap();
    let mut buffer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut buffer).await.unwrap();
    let message = Message::from_bytes(&buffer).unwrap();
    assert_eq!(message.id(), id);
    message
}

fn ips(message: &Message) -> BTreeSet<IpAddr> {
    message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn set(addresses: &[&str]) -> BTreeSet<IpAddr> {
    addresses.iter().map(|a| a.parse().unwrap()).collect()
}

/// SRV answers as (port, target), sorted.
fn srv(message: &Message) -> Vec<(u16, String)> {
    let mut targets: Vec<_> = message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some((s.port(), s.target().to_ascii())),
            _ => None,
        })
        .collect();
    targets.sort();
    targets
}

fn assert_soa_authority(message: &Message) {
    let soa = message.name_servers().iter().find(|r| r.record_type() == RecordType::SOA).expect("SOA in authority");
    assert_eq!(soa.name().to_ascii(), "cluster.local.");
    let RData::SOA(soa) = soa.data() else { unreachable!() };
    assert_eq!(soa.mname().to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(soa.minimum(), 5);
}

struct Cluster {
    api: TestServer,
    dns: skiff_dns::DnsServer,
    _upstream: tokio::task::JoinHandle<()>,
}

async fn cluster() -> Cluster {
    let api = TestServer::start().await;
    let client = skiff_client::connect(api.kubeconfig(), None).await.unwrap();
    let (upstream, task) = start_upstream().await;
    let mut config = skiff_dns::Config::new("127.0.0.1:0".parse().unwrap());
    config.upstreams = vec![upstream];
    let dns = skiff_dns::start(client, config).await.unwrap();
    tokio::time::timeout(WAIT, dns.cache.wait_synced()).await.expect("DNS cache synced");
    Cluster { api, dns, _upstream: task }
}

fn slice(name: &str, service: &str, endpoints: serde_json::Value, ports: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": { "name": name, "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
    })
}

async fn create(api: &TestServer, path: &str, body: serde_json::Value) -> serde_json::Value {
    let answer = api.post(path, &body).await;
    assert_eq!(answer.code(), 201, "{path}: {}", answer.body);
    answer.body
}

const SERVICES: &str = "/api/v1/namespaces/default/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ip_services_answer_a_srv_and_nodata() {
    let c = cluster().await;
    let web = create(
        &c.api,
        SERVICES,
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}]}}),
    )
    .await;
    let cluster_ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    let name = "web.default.svc.cluster.local.";
    let answer = eventually("web's A record", WAIT, || async {
        let m = udp(c.dns.addr, name, RecordType::A).await;
        (m.response_code() == ResponseCode::NoError && !m.answers().is_empty()).then_some(m)
    })
    .await;
    assert_eq!(ips(&answer), set(&[&cluster_ip]));
    assert!(answer.authoritative());
    assert_eq!(answer.answers()[0].ttl(), 5, "CoreDNS's default TTL");
    assert_eq!(answer.answers()[0].name().to_ascii(), name);

    // The same over TCP, and in any letter case.
    assert_eq!(ips(&tcp(c.dns.addr, "WEB.Default.SVC.cluster.local.", RecordType::A).await), set(&[&cluster_ip]));

    // No IPv6 address: the name exists, so NOERROR with no answers and the SOA.
    let aaaa = udp(c.dns.addr, name, RecordType::AAAA).await;
    assert_eq!(aaaa.response_code(), ResponseCode::NoError);
    assert!(aaaa.answers().is_empty());
    assert_soa_authority(&aaaa);

    // SRV for named ports point at the Service's name, with its address alongside.
    let http = udp(c.dns.addr, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(srv(&http), vec![(80, name.to_string())]);
    let additional: BTreeSet<IpAddr> = http
        .additionals()
        .iter()
        .filter_map(|r| if let RData::A(a) = r.data() { Some(IpAddr::V4(a.0)) } else { None })
        .collect();
    assert_eq!(additional, set(&[&cluster_ip]));
    let dns = udp(c.dns.addr, "_dns._udp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(srv(&dns), vec![(53, name.to_string())]);
    // A port name with the wrong protocol does not exist.
    let wrong = udp(c.dns.addr, "_http._udp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(wrong.response_code(), ResponseCode::NXDomain);

    // Unknown names inside the zone: NXDOMAIN with the zone's SOA.
    for missing in ["nosuch.default.svc.cluster.local.", "web.nosuchns.svc.cluster.local.", "x.y.cluster.local."] {
        let m = udp(c.dns.addr, missing, RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain, "{missing}");
        assert_soa_authority(&m);
    }
    // The namespace exists: NODATA, not NXDOMAIN.
    assert_eq!(
        udp(c.dns.addr, "default.svc.cluster.local.", RecordType::A).await.response_code(),
        ResponseCode::NoError
    );

    // Deleting the Service takes its name away.
    assert_eq!(c.api.delete(&format!("{SERVICES}/web")).await.code(), 200);
    eventually("web gone from DNS", WAIT, || async {
        (udp(c.dns.addr, name, RecordType::A).await.response_code() == ResponseCode::NXDomain).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_services_answer_ready_endpoints_and_hostnames() {
    let c = cluster().await;
    create(
        &c.api,
        SERVICES,
        json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "selector": {"app": "db"},
            "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await;
    create(
        &c.api,
        SLICES,
        slice(
            "db-abc",
            "db",
            json!([
                {"addresses": ["10.42.0.10"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.11"], "conditions": {"ready": true}},
                {"addresses": ["10.42.0.12"], "hostname": "db-2", "conditions": {"ready": false}},
            ]),
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ),
    )
    .await;
    let name = "db.default.svc.cluster.local.";
    let answer = eventually("db's ready endpoints", WAIT, || async {
        let m = udp(c.dns.addr, name, RecordType::A).await;
        (m.answers().len() == 2).then_some(m)
    })
    .await;
    assert_eq!(ips(&answer), set(&["10.42.0.10", "10.42.0.11"]), "the not-ready endpoint is left out");

    // Per-pod names: the hostname, or the dashed address for an endpoint without one.
    assert_eq!(ips(&udp(c.dns.addr, "db-0.db.default.svc.cluster.local.", RecordType::A).await), set(&["10.42.0.10"]));
    assert_eq!(
        ips(&udp(c.dns.addr, "10-42-0-11.db.default.svc.cluster.local.", RecordType::A).await),
        set(&["10.42.0.11"])
    );
    let not_ready = udp(c.dns.addr, "db-2.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(not_ready.response_code(), ResponseCode::NXDomain);

    // SRV: one record per ready endpoint, each naming the endpoint.
    let pg = udp(c.dns.addr, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(
        srv(&pg),
        vec![
            (5432, "10-42-0-11.db.default.svc.cluster.local.".to_string()),
            (5432, "db-0.db.default.svc.cluster.local.".to_string())
        ]
    );
    assert_eq!(pg.additionals().len(), 2, "the targets' addresses: {:?}", pg.additionals());

    // publishNotReadyAddresses publishes the not-ready endpoint too.
    let patch = json!({"spec": {"publishNotReadyAddresses": true}});
    let answer = c.api.patch(&format!("{SERVICES}/db"), "application/merge-patch+json", &patch).await;
    assert_eq!(answer.code(), 200, "{}", answer.body);
    eventually("db-2 published", WAIT, || async {
        let m = udp(c.dns.addr, "db-2.db.default.svc.cluster.local.", RecordType::A).await;
        (ips(&m) == set(&["10.42.0.12"])).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_set_tc_over_udp_and_come_whole_over_tcp() {
    let c = cluster().await;
    create(
        &c.api,
        SERVICES,
        json!({"metadata": {"name": "many"}, "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}}),
    )
    .await;
    let endpoints: Vec<_> = (0..100).map(|i| json!({"addresses": [format!("10.42.1.{i}")]})).collect();
    create(&c.api, SLICES, slice("many-1", "many", json!(endpoints), json!([{"name": "http", "port": 80}]))).await;
    let name = "many.default.svc.cluster.local.";
    let whole = eventually("100 endpoints over TCP", WAIT, || async {
        let m = tcp(c.dns.addr, name, RecordType::A).await;
        (m.answers().len() == 100).then_some(m)
    })
    .await;
    assert!(!whole.truncated());
    let truncated = udp(c.dns.addr, name, RecordType::A).await;
    assert!(truncated.truncated(), "100 A records do not fit 512 bytes");
    assert!(truncated.answers().len() < 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_names_pods_and_forwarding() {
    let c = cluster().await;
    create(
        &c.api,
        SERVICES,
        json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.test"}}),
    )
    .await;
    let name = "ext.default.svc.cluster.local.";
    let answer = eventually("ext's CNAME", WAIT, || async {
        let m = udp(c.dns.addr, name, RecordType::A).await;
        (!m.answers().is_empty()).then_some(m)
    })
    .await;
    let RData::CNAME(cname) = answer.answers()[0].data() else { panic!("a CNAME first: {:?}", answer.answers()) };
    assert_eq!(cname.0.to_ascii(), "example.test.");
    assert_eq!(ips(&answer), set(&["192.0.2.7"]), "the CNAME's target, looked up upstream");
    let only_cname = udp(c.dns.addr, name, RecordType::CNAME).await;
    assert_eq!(only_cname.answers().len(), 1);
    // A target inside the zone is answered from the cluster itself.
    let web = create(&c.api, SERVICES, json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}})).await;
    let alias = json!({"metadata": {"name": "alias"}, "spec": {"type": "ExternalName",
        "externalName": "web.default.svc.cluster.local"}});
    create(&c.api, SERVICES, alias).await;
    let web_ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    eventually("alias → web", WAIT, || async {
        let m = udp(c.dns.addr, "alias.default.svc.cluster.local.", RecordType::A).await;
        (ips(&m) == set(&[&web_ip])).then_some(())
    })
    .await;

    // Pod names carry their address.
    let pod = udp(c.dns.addr, "10-42-0-5.default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&pod), set(&["10.42.0.5"]));

    // The specification's version.
    let version = udp(c.dns.addr, "dns-version.cluster.local.", RecordType::TXT).await;
    let RData::TXT(txt) = version.answers()[0].data() else { panic!("TXT") };
    assert_eq!(txt.to_string(), "1.1.0");

    // Names outside the zone go upstream, over UDP and TCP, answers and errors alike.
    let forwarded = udp(c.dns.addr, "example.test.", RecordType::A).await;
    assert_eq!(ips(&forwarded), set(&["192.0.2.7"]));
    assert!(!forwarded.authoritative());
    assert!(forwarded.recursion_available());
    assert_eq!(ips(&tcp(c.dns.addr, "example.test.", RecordType::A).await), set(&["192.0.2.7"]));
    let missing = udp(c.dns.addr, "nowhere.test.", RecordType::A).await;
    assert_eq!(missing.response_code(), ResponseCode::NXDomain);
    // An upstream answer too large for UDP is fetched again over TCP and sent whole over TCP.
    let big = tcp(c.dns.addr, "big.example.test.", RecordType::TXT).await;
    assert_eq!(big.answers().len(), 40);
    let big_udp = udp(c.dns.addr, "big.example.test.", RecordType::TXT).await;
    assert!(big_udp.truncated());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_dns_service_points_at_the_server() {
    let c = cluster().await;
    let client = skiff_client::connect(c.api.kubeconfig(), None).await.unwrap();
    let cluster_ip: IpAddr = skiff_dns::kubedns::DEFAULT_CLUSTER_DNS.parse().unwrap();
    skiff_dns::kubedns::ensure(&client, cluster_ip, c.dns.addr).await.unwrap();
    // Again, as every server start does: nothing changes, nothing fails.
    skiff_dns::kubedns::ensure(&client, cluster_ip, c.dns.addr).await.unwrap();

    let service = c.api.get("/api/v1/namespaces/kube-system/services/kube-dns").await.body;
    assert_eq!(service["spec"]["clusterIP"], "10.43.0.10");
    assert_eq!(service["metadata"]["labels"]["k8s-app"], "kube-dns");
    assert!(service["spec"].get("selector").is_none_or(|s| s.is_null()));
    let ports: Vec<_> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].clone(), p["protocol"].clone()))
        .collect();
    assert_eq!(ports, vec![(json!("dns"), json!("UDP")), (json!("dns-tcp"), json!("TCP"))]);
    let port = c.dns.addr.port();
    let endpoints = c.api.get("/api/v1/namespaces/kube-system/endpoints/kube-dns").await.body;
    assert_eq!(endpoints["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    assert_eq!(endpoints["subsets"][0]["ports"][0]["port"], port);
    let slice = c.api.get("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/kube-dns").await.body;
    assert_eq!(slice["endpoints"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(slice["metadata"]["labels"]["kubernetes.io/service-name"], "kube-dns");

    // The server answers for itself.
    let answer = eventually("kube-dns in DNS", WAIT, || async {
        let m = udp(c.dns.addr, "kube-dns.kube-system.svc.cluster.local.", RecordType::A).await;
        (!m.answers().is_empty()).then_some(m)
    })
    .await;
    assert_eq!(ips(&answer), set(&["10.43.0.10"]));
    let srv_answer = udp(c.dns.addr, "_dns-tcp._tcp.kube-dns.kube-system.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(srv(&srv_answer), vec![(53, "kube-dns.kube-system.svc.cluster.local.".to_string())]);
}
