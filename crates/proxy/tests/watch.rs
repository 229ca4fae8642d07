//! The proxy following a real (in-process) API server: Services and EndpointSlices created,
//! changed and deleted through the API show up in the nft table of a namespace this test
//! owns, without polling on the proxy's side.

mod lab;

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use lab::Lab;
use serde_json::json;
use skiff_proxy::ProxyConfig;
use skiff_testkit::{eventually, TestServer};

const PATIENCE: Duration = Duration::from_secs(30);

async fn chain(lab: &Lab, name: &str) -> Option<String> {
    lab.list_chain(name).ok()
}

/// `nft list map` of one of the table's maps in the node namespace.
fn map(lab: &Lab, name: &str) -> String {
    lab::run(&["ip", "netns", "exec", &lab.node, "nft", "list", "map", "ip", "skiff-proxy", name]).unwrap_or_default()
}

/// The cluster-IP endpoints programmed for `ip`:`port` (TCP), in index order.
fn endpoints_of(lab: &Lab, ip: &str, port: u16) -> Vec<String> {
    let text = map(lab, "cluster-ip-endpoints-tcp").split_whitespace().collect::<Vec<_>>().join(" ");
    let prefix = format!("{ip} . {port} . ");
    let mut found: Vec<(u32, String)> = text
        .split([',', '{', '}'])
        .filter_map(|element| {
            let (key, value) = element.trim().split_once(" : ")?;
            Some((key.strip_prefix(&prefix)?.parse().ok()?, value.trim().replace(" . ", ":")))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, endpoint)| endpoint).collect()
}

#[tokio::test]
async fn api_objects_become_rules_and_changes_follow() {
    let server = TestServer::start().await;
    let client = skiff_client::connect(server.kubeconfig(), None).await.expect("client");
    let lab = Lab::new().expect("namespaces");
    let mut config = ProxyConfig::new("n1");
    config.nft = lab.nft();
    config.cluster_cidr = Some("10.42.0.0/16".parse().expect("cidr"));
    let proxy = tokio::spawn(skiff_proxy::run(client.clone(), config));

    // The API server's own Service, through the EndpointSlice it keeps for it.
    let kubernetes: Service = Api::namespaced(client.clone(), "default").get("kubernetes").await.expect("kubernetes");
    let kubernetes_ip = kubernetes.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
    let port = server.server.addr.port();
    eventually("the kubernetes service's endpoint", PATIENCE, || async {
        (endpoints_of(&lab, &kubernetes_ip, 443) == [format!("127.0.0.1:{port}")]).then_some(())
    })
    .await;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "NodePort", "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]},
    }))
    .expect("service");
    let service = services.create(&PostParams::default(), &service).await.expect("create service");
    let cluster_ip = service.spec.and_then(|s| s.cluster_ip).expect("cluster IP");
    let slice = |addresses: &[&str]| -> EndpointSlice {
        let endpoints: Vec<_> = addresses.iter().map(|a| json!({"addresses": [a], "nodeName": "n2"})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .expect("slice")
    };

    // No slice yet: the cluster IP is rejected.
    let reject = format!("{cluster_ip} . tcp . 80 : goto reject-chain");
    eventually("the service rejected without endpoints", PATIENCE, || async {
        Some(map(&lab, "no-endpoint-services")).filter(|m| m.contains(&reject))
    })
    .await;

    slices.create(&PostParams::default(), &slice(&["10.42.1.5", "10.42.2.5"])).await.expect("create slice");
    eventually("the service's endpoints", PATIENCE, || async {
        (endpoints_of(&lab, &cluster_ip, 80) == ["10.42.1.5:8080", "10.42.2.5:8080"]).then_some(())
    })
    .await;
    let dispatch = map(&lab, "service-ips");
    assert!(dispatch.contains(&format!("{cluster_ip} . tcp . 80 : goto spread-tcp-2")), "{dispatch}");
    let spread = chain(&lab, "spread-tcp-2").await.expect("the shared chain for two endpoints");
    assert!(spread.contains("ip saddr != 10.42.0.0/16 jump mark-for-masquerade"), "{spread}");
    assert!(spread.contains("numgen random mod 2 map @cluster-ip-endpoints-tcp"), "{spread}");
    let external = chain(&lab, "ext-default/web/tcp/p80").await.expect("the NodePort chain");
    assert!(external.contains("jump mark-for-masquerade"), "{external}");

    // An endpoint change reaches the rules.
    let mut changed = slices.get("web-1").await.expect("slice");
    changed.endpoints = slice(&["10.42.3.5"]).endpoints;
    slices.replace("web-1", &PostParams::default(), &changed).await.expect("replace slice");
    eventually("the changed endpoint", PATIENCE, || async {
        (endpoints_of(&lab, &cluster_ip, 80) == ["10.42.3.5:8080"]).then_some(())
    })
    .await;
    let external = chain(&lab, "ext-default/web/tcp/p80").await.expect("the NodePort chain");
    assert!(external.contains("dnat to 10.42.3.5:8080"), "{external}");

    // Deleting the Service removes its chains and elements.
    services.delete("web", &DeleteParams::default()).await.expect("delete service");
    eventually("the service gone", PATIENCE, || async {
        let gone = chain(&lab, "ext-default/web/tcp/p80").await.is_none()
            && endpoints_of(&lab, &cluster_ip, 80).is_empty()
            && !map(&lab, "service-ips").contains(&format!("{cluster_ip} . tcp . 80"));
        gone.then_some(())
    })
    .await;
    proxy.abort();
}
