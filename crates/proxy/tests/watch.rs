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
    let kubernetes = eventually("the kubernetes service chain", PATIENCE, || async {
        chain(&lab, "svc-default/kubernetes/tcp/p443").await
    })
    .await;
    let port = server.server.addr.port();
    assert!(kubernetes.contains(&format!("dnat to 127.0.0.1:{port}")), "{kubernetes}");

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
        let maps = lab::run(&[
            "ip",
            "netns",
            "exec",
            &lab.node,
            "nft",
            "list",
            "map",
            "ip",
            "skiff-proxy",
            "no-endpoint-services",
        ]);
        maps.ok().filter(|m| m.contains(&reject))
    })
    .await;

    slices.create(&PostParams::default(), &slice(&["10.42.1.5", "10.42.2.5"])).await.expect("create slice");
    let rules = eventually("the service chain", PATIENCE, || async {
        chain(&lab, "svc-default/web/tcp/p80").await.filter(|c| c.contains("numgen random mod 2"))
    })
    .await;
    assert!(rules.contains("10.42.1.5 . 8080") && rules.contains("10.42.2.5 . 8080"), "{rules}");
    assert!(
        rules.contains(&format!("ip daddr {cluster_ip} ip saddr != 10.42.0.0/16 jump mark-for-masquerade")),
        "{rules}"
    );
    let external = chain(&lab, "ext-default/web/tcp/p80").await.expect("the NodePort chain");
    assert!(external.contains("jump mark-for-masquerade"), "{external}");

    // An endpoint change reaches the rules.
    let mut changed = slices.get("web-1").await.expect("slice");
    changed.endpoints = slice(&["10.42.3.5"]).endpoints;
    slices.replace("web-1", &PostParams::default(), &changed).await.expect("replace slice");
    eventually("the changed endpoint", PATIENCE, || async {
        chain(&lab, "svc-default/web/tcp/p80").await.filter(|c| c.contains("dnat to 10.42.3.5:8080"))
    })
    .await;

    // Deleting the Service removes its chains.
    services.delete("web", &DeleteParams::default()).await.expect("delete service");
    eventually("the chains gone", PATIENCE, || async {
        let gone = chain(&lab, "svc-default/web/tcp/p80").await.is_none()
            && chain(&lab, "ext-default/web/tcp/p80").await.is_none();
        gone.then_some(())
    })
    .await;
    proxy.abort();
}
