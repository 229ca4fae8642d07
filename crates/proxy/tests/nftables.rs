//! The rendered ruleset applied with the real `nft` inside network namespaces this test
//! creates, exercised with real connections (busybox wget to busybox httpd endpoints).
//! The proxy runs on node "n1"; endpoints on "n2" are remote (they live in the same
//! pods namespace, which only their nodeName tells apart).

mod lab;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use lab::{Lab, CLIENT_IP, NODE_IP};
use serde_json::{json, Value};
use skiff_proxy::{Model, NodeInfo, RenderOptions, SyncKind, Syncer};

const NODE: &str = "n1";

fn service(name: &str, cluster_ip: &str, extra: Value) -> Service {
    let mut value = json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]},
    });
    for (k, v) in extra.as_object().expect("object") {
        value["spec"][k] = v.clone();
    }
    serde_json::from_value(value).expect("service")
}

/// A slice of `service` with endpoints (ip, node) on port 8080, all ready.
fn slice(service: &str, endpoints: &[(&str, &str)]) -> EndpointSlice {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, node)| json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": node}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": format!("{service}-x"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

fn model(services: &[Service], slices: &[EndpointSlice]) -> Model {
    Model::build(services, slices, &NodeInfo::named(NODE))
}

fn syncer(lab: &Lab) -> Syncer {
    Syncer::new(lab.nft(), RenderOptions { cluster_cidr: Some("10.42.0.0/16".parse().expect("cidr")) })
}

/// Three endpoints: a (10.42.0.5, on n1), b (10.42.0.6, n2), c (10.42.0.7, n2).
fn lab_with_endpoints() -> Lab {
    let mut lab = Lab::new().expect("namespaces (run as root with ip and nft installed)");
    for (name, ip) in [("a", "10.42.0.5"), ("b", "10.42.0.6"), ("c", "10.42.0.7")] {
        lab.serve(name, ip).expect("endpoint");
    }
    lab
}

const ENDPOINTS: &[(&str, &str)] = &[("10.42.0.5", "n1"), ("10.42.0.6", "n2"), ("10.42.0.7", "n2")];

#[tokio::test]
async fn cluster_ip_reaches_every_endpoint_and_no_endpoints_is_refused_at_once() {
    let lab = lab_with_endpoints();
    let services = [
        service("web", "10.43.0.20", json!({})),
        service("empty", "10.43.0.21", json!({})),
        service("self", "10.43.0.24", json!({})),
    ];
    let slices = [slice("web", ENDPOINTS), slice("empty", &[]), slice("self", &ENDPOINTS[..1])];
    let mut syncer = syncer(&lab);
    assert_eq!(syncer.sync(&model(&services, &slices)).await.expect("sync"), SyncKind::Full);

    let seen = lab.spread(&lab.node, "10.43.0.20:80", 60).expect("cluster IP answers");
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "b", "c"], "every endpoint answers: {seen:?}");
    // From the node the source is not in the cluster CIDR: masqueraded to the node's address.
    let answer = lab.get(&lab.node, "10.43.0.20:80").expect("answer");
    assert!(answer.ends_with(" 10.42.0.1"), "{answer}");
    // Hairpin: a pod (10.42.0.5 is the pods namespace's first address) reaching itself
    // through a Service is masqueraded, or its own reply would bypass the translation.
    let answer = lab.get(&lab.pods, "10.43.0.24:80").expect("hairpin answer");
    assert_eq!(answer, "a 10.42.0.1");

    let started = Instant::now();
    let refused = lab.get(&lab.node, "10.43.0.21:80").expect_err("no endpoints");
    assert!(refused.contains("refused"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(3), "rejected at once, took {:?}", started.elapsed());
}

#[tokio::test]
async fn node_port_answers_on_the_node_address_and_masquerades_with_cluster_policy() {
    let lab = lab_with_endpoints();
    let nodeport =
        json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]});
    let services = [service("web", "10.43.0.20", nodeport)];
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&services, &[slice("web", ENDPOINTS)])).await.expect("sync");

    let seen = lab.spread(&lab.client, &format!("{NODE_IP}:30080"), 45).expect("node port answers");
    assert_eq!(seen.len(), 3, "{seen:?}");
    let answer = lab.get(&lab.client, &format!("{NODE_IP}:30080")).expect("answer");
    assert!(!answer.ends_with(CLIENT_IP), "Cluster policy masquerades: {answer}");
    // The node's own processes reach the node port too.
    lab.get(&lab.node, &format!("{NODE_IP}:30080")).expect("node port from the node");
    // Other ports of the node are untouched.
    assert!(lab.get(&lab.client, &format!("{NODE_IP}:30081")).is_err());
}

#[tokio::test]
async fn local_external_policy_keeps_the_client_address_and_uses_only_local_endpoints() {
    let lab = lab_with_endpoints();
    let local = json!({
        "type": "NodePort", "externalTrafficPolicy": "Local", "externalIPs": ["192.0.2.10"],
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
    });
    let services = [
        service("web", "10.43.0.20", local),
        service(
            "remote",
            "10.43.0.22",
            json!({"type": "NodePort", "externalTrafficPolicy": "Local", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30082}]}),
        ),
    ];
    let slices = [slice("web", ENDPOINTS), slice("remote", &[("10.42.0.6", "n2")])];
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&services, &slices)).await.expect("sync");

    let seen = lab.spread(&lab.client, &format!("{NODE_IP}:30080"), 20).expect("node port answers");
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"], "only the local endpoint: {seen:?}");
    let answer = lab.get(&lab.client, &format!("{NODE_IP}:30080")).expect("answer");
    assert_eq!(answer, format!("a {CLIENT_IP}"), "the client address is kept");
    // An external IP routed to the node is served the same way.
    lab::run(&["ip", "netns", "exec", &lab.client, "ip", "route", "add", "192.0.2.10", "via", NODE_IP]).expect("route");
    assert_eq!(lab.get(&lab.client, "192.0.2.10:80").expect("external IP"), format!("a {CLIENT_IP}"));
    // The cluster IP still spreads over every endpoint.
    assert_eq!(lab.spread(&lab.node, "10.43.0.20:80", 45).expect("cluster IP").len(), 3);
    // No local endpoint: dropped (not refused), so the client times out.
    let dropped = lab.get(&lab.client, &format!("{NODE_IP}:30082")).expect_err("no local endpoint");
    assert!(!dropped.contains("refused"), "{dropped}");
}

#[tokio::test]
async fn internal_local_policy_uses_only_local_endpoints() {
    let lab = lab_with_endpoints();
    let services = [service("web", "10.43.0.20", json!({"internalTrafficPolicy": "Local"}))];
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&services, &[slice("web", ENDPOINTS)])).await.expect("sync");
    let seen = lab.spread(&lab.node, "10.43.0.20:80", 20).expect("cluster IP");
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"], "{seen:?}");
}

#[tokio::test]
async fn client_ip_affinity_pins_each_client_to_one_endpoint() {
    let lab = lab_with_endpoints();
    let sticky = json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}}});
    let services = [service("web", "10.43.0.20", sticky)];
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&services, &[slice("web", ENDPOINTS)])).await.expect("sync");
    let seen = lab.spread(&lab.node, "10.43.0.20:80", 20).expect("cluster IP");
    assert_eq!(seen.len(), 1, "one client, one endpoint: {seen:?}");
}

#[tokio::test]
async fn a_partial_sync_changes_only_the_changed_service() {
    let lab = lab_with_endpoints();
    let services = [service("web", "10.43.0.20", json!({})), service("other", "10.43.0.23", json!({}))];
    let before = [slice("web", &ENDPOINTS[..2]), slice("other", &ENDPOINTS[..1])];
    let mut syncer = syncer(&lab);
    assert_eq!(syncer.sync(&model(&services, &before)).await.expect("full"), SyncKind::Full);
    // "other" (one endpoint) is served by the shared chain spread-tcp-1, web by spread-tcp-2.
    let other_before = lab.list_chain("spread-tcp-1").expect("other's chain");
    assert!(lab.list_chain("spread-tcp-2").is_ok());
    assert_eq!(lab.spread(&lab.node, "10.43.0.20:80", 30).expect("web").len(), 2);

    let after = [slice("web", ENDPOINTS), slice("other", &ENDPOINTS[..1])];
    let started = Instant::now();
    assert_eq!(syncer.sync(&model(&services, &after)).await.expect("partial"), SyncKind::Partial);
    eprintln!("partial sync of one endpoint change took {:?}", started.elapsed());
    assert_eq!(lab.spread(&lab.node, "10.43.0.20:80", 45).expect("web").len(), 3, "the new endpoint is used");
    assert_eq!(lab.get(&lab.node, "10.43.0.23:80").expect("other still answers"), "a 10.42.0.1");
    // Rule handles change when a chain is rewritten: the one other uses was not.
    assert_eq!(lab.list_chain("spread-tcp-1").expect("other's chain"), other_before);
    assert!(lab.list_chain("spread-tcp-2").is_ok(), "kept without users, for the next Service with 2");
    assert_eq!(syncer.sync(&model(&services, &after)).await.expect("again"), SyncKind::Unchanged);

    // Removing every endpoint turns the service into a rejected one (map elements only).
    let none = [slice("web", &[]), slice("other", &ENDPOINTS[..1])];
    assert_eq!(syncer.sync(&model(&services, &none)).await.expect("elements"), SyncKind::Elements);
    assert!(lab.get(&lab.node, "10.43.0.20:80").expect_err("no endpoints").contains("refused"));
    assert_eq!(lab.get(&lab.node, "10.43.0.23:80").expect("other still answers"), "a 10.42.0.1");

    // Back to two endpoints: the kept chain serves web again without nft.
    assert_eq!(syncer.sync(&model(&services, &before)).await.expect("elements"), SyncKind::Elements);
    assert_eq!(lab.spread(&lab.node, "10.43.0.20:80", 30).expect("web").len(), 2);
}

#[tokio::test]
async fn an_endpoint_replaced_in_place_changes_map_elements_only_over_netlink() {
    let lab = lab_with_endpoints();
    let services = [service("web", "10.43.0.20", json!({}))];
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&services, &[slice("web", &ENDPOINTS[..2])])).await.expect("full");
    assert_eq!(lab.spread(&lab.node, "10.43.0.20:80", 30).expect("web").keys().collect::<Vec<_>>(), ["a", "b"]);

    // b is replaced by c: as many endpoints as before, so only map elements change.
    let replaced = [slice("web", &[ENDPOINTS[0], ENDPOINTS[2]])];
    let started = Instant::now();
    assert_eq!(syncer.sync(&model(&services, &replaced)).await.expect("elements"), SyncKind::Elements);
    eprintln!("an element-only sync took {:?}", started.elapsed());
    let seen = lab.spread(&lab.node, "10.43.0.20:80", 45).expect("web");
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "c"], "{seen:?}");

    // A batch the kernel refuses fails the sync as nft would, and the next one is full.
    lab::run(&["ip", "netns", "exec", &lab.node, "nft", "delete", "table", "ip", "skiff-proxy"]).expect("delete");
    let back = [slice("web", &ENDPOINTS[..2])];
    syncer.sync(&model(&services, &back)).await.expect_err("the table is gone");
    assert_eq!(syncer.sync(&model(&services, &back)).await.expect("full"), SyncKind::Full);
    assert_eq!(lab.spread(&lab.node, "10.43.0.20:80", 30).expect("web").keys().collect::<Vec<_>>(), ["a", "b"]);
}

/// The node namespace's UDP conntrack entries to `service` answered by `endpoint`.
fn udp_flows(lab: &Lab, service: &str, endpoint: &str) -> usize {
    let table = lab::run(&["ip", "netns", "exec", &lab.node, "cat", "/proc/net/nf_conntrack"]).expect("conntrack");
    let (to, from) = (format!("dst={service} "), format!("[UNREPLIED] src={endpoint} "));
    table.lines().filter(|l| l.contains(" udp ") && l.contains(&to) && l.contains(&from)).count()
}

#[tokio::test]
async fn conntrack_entries_of_a_removed_udp_endpoint_are_deleted() {
    let lab = lab_with_endpoints();
    let udp = json!({"ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353}]});
    let services = [service("dns", "10.43.0.30", udp)];
    let slice = |endpoints: &[&str]| -> EndpointSlice {
        let endpoints: Vec<Value> = endpoints
            .iter()
            .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}, "nodeName": "n2"}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "dns-x", "labels": {"kubernetes.io/service-name": "dns"}},
            "addressType": "IPv4",
            "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": endpoints,
        }))
        .expect("slice")
    };
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&services, &[slice(&["10.42.0.6", "10.42.0.7"])])).await.expect("full");
    // Datagrams from 40 source ports: flows to both endpoints (nothing listens; the
    // entries stay unreplied for 30 s).
    let send = "for i in $(seq 40); do echo x > /dev/udp/10.43.0.30/53; done";
    lab::run(&["ip", "netns", "exec", &lab.node, "bash", "-c", send]).expect("datagrams");
    assert!(udp_flows(&lab, "10.43.0.30", "10.42.0.6") > 0 && udp_flows(&lab, "10.43.0.30", "10.42.0.7") > 0);

    let kind = syncer.sync(&model(&services, &[slice(&["10.42.0.7"])])).await.expect("partial");
    assert_ne!(kind, SyncKind::Full);
    assert_eq!(udp_flows(&lab, "10.43.0.30", "10.42.0.6"), 0, "the removed endpoint's flows are gone");
    assert!(udp_flows(&lab, "10.43.0.30", "10.42.0.7") > 0, "the remaining endpoint's flows stay");
}

#[tokio::test]
async fn a_failed_sync_is_followed_by_a_full_one() {
    let lab = lab_with_endpoints();
    let services = [service("web", "10.43.0.20", json!({}))];
    let slices = [slice("web", ENDPOINTS)];
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&services, &slices)).await.expect("full");
    // Someone deletes the table behind the proxy's back: the partial sync fails...
    lab::run(&["ip", "netns", "exec", &lab.node, "nft", "delete", "table", "ip", "skiff-proxy"]).expect("delete");
    let changed = [slice("web", &ENDPOINTS[..1])];
    syncer.sync(&model(&services, &changed)).await.expect_err("the table is gone");
    // ... and the next one recreates everything.
    assert_eq!(syncer.sync(&model(&services, &changed)).await.expect("full"), SyncKind::Full);
    assert_eq!(lab.spread(&lab.node, "10.43.0.20:80", 5).expect("web").keys().collect::<Vec<_>>(), ["a"]);
}

/// The table as `nft list table` prints it, as a sorted list of words, so that two tables
/// holding the same objects and elements in another order compare equal.
fn table_words(lab: &Lab) -> Vec<String> {
    let listing =
        lab::run(&["ip", "netns", "exec", &lab.node, "nft", "list", "table", "ip", "skiff-proxy"]).expect("list");
    let mut words: Vec<String> =
        listing.split([',', '\n']).map(|w| w.trim().to_string()).filter(|w| !w.is_empty()).collect();
    words.sort();
    words
}

#[tokio::test]
async fn a_full_sync_over_an_old_table_leaves_what_recreating_it_would() {
    let lab = lab_with_endpoints();
    let affinity = json!({"sessionAffinity": "ClientIP"});
    let old = [service("web", "10.43.0.20", affinity), service("other", "10.43.0.23", json!({}))];
    let mut syncer = syncer(&lab);
    syncer.sync(&model(&old, &[slice("web", ENDPOINTS), slice("other", &ENDPOINTS[..1])])).await.expect("first");
    assert!(lab.list_chain("svc-default/web/tcp/p80").is_ok(), "affinity has chains of its own");

    // web is gone and other has two endpoints: a full sync over the old table.
    let services = [service("other", "10.43.0.23", json!({}))];
    let slices = [slice("other", &ENDPOINTS[..2])];
    syncer.invalidate();
    assert_eq!(syncer.sync(&model(&services, &slices)).await.expect("full"), SyncKind::Full);
    assert!(lab.list_chain("svc-default/web/tcp/p80").is_err(), "stale chains are deleted");
    assert_eq!(lab.spread(&lab.node, "10.43.0.23:80", 30).expect("other").len(), 2);
    assert!(lab.get(&lab.node, "10.43.0.20:80").is_err(), "web is not served any more");
    let synced = table_words(&lab);

    // The same model through the recreating script: the same table.
    let options = RenderOptions { cluster_cidr: Some("10.42.0.0/16".parse().expect("cidr")) };
    let script = skiff_proxy::transaction::full(&skiff_proxy::Ruleset::render(&model(&services, &slices), &options));
    lab.nft().apply(&script).await.expect("recreate");
    assert_eq!(synced, table_words(&lab));
}
