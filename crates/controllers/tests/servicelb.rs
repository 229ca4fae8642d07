//! The ServiceLB controller through the API: LoadBalancer Services get the nodes' addresses.

mod support;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, ListParams, PostParams};
use support::{eventually, json, Cluster, PATIENCE};

fn ingress(service: &Service) -> Vec<String> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    ingress.into_iter().flatten().filter_map(|i| i.ip.clone()).collect()
}

#[tokio::test]
async fn load_balancer_services_get_the_ready_nodes_addresses() {
    let cluster = Cluster::start(2).await;
    let nodes = Api::<Node>::all(cluster.client.clone());
    let mut addresses: Vec<String> = eventually("two ready nodes", PATIENCE, || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        let ready = skiff_controllers::servicelb::ingress_addresses(&list.items);
        (ready.len() == 2).then_some(ready)
    })
    .await;
    addresses.sort();

    let services: Api<Service> = cluster.api("default");
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &web).await.unwrap();
    let other: Service = serde_json::from_value(json!({
        "metadata": {"name": "other"},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/lb", "ports": [{"port": 80}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &other).await.unwrap();

    eventually("the ingress of web", PATIENCE, || async {
        let service = services.get("web").await.ok()?;
        (ingress(&service) == addresses).then_some(())
    })
    .await;
    let table = cluster.kubectl_ok(&["get", "service", "web", "--no-headers"]).await;
    assert!(table.contains(&addresses.join(",")), "EXTERNAL-IP lists the node addresses: {table}");
    let event = cluster.kubectl_ok(&["get", "events", "--field-selector", "involvedObject.name=web"]).await;
    assert!(event.contains("EnsuredLoadBalancer"), "{event}");
    // Another implementation's class is left alone.
    assert!(ingress(&services.get("other").await.unwrap()).is_empty());
}
