//! The node IPAM controller through the API: nodes registered without a pod CIDR get the
//! lowest free subnet of the cluster CIDR, subnets nodes bring count as taken, a deleted
//! node's subnet is reused, an exhausted range is reported as CIDRNotAvailable, and a pod
//! CIDR cannot be changed once set.

mod support;

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, PostParams};
use skiff_controllers::nodeipam::ClusterCidr;
use skiff_testkit::fails;
use support::{eventually, json, Cluster, PATIENCE};

async fn create_node(nodes: &Api<Node>, name: &str, pod_cidr: Option<&str>) {
    let spec = match pod_cidr {
        Some(cidr) => json!({"podCIDR": cidr, "podCIDRs": [cidr]}),
        None => json!({}),
    };
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

async fn assigned(nodes: &Api<Node>, name: &str) -> (String, Vec<String>) {
    eventually(&format!("{name} gets a pod CIDR"), PATIENCE, || async {
        let spec = nodes.get(name).await.ok()?.spec?;
        Some((spec.pod_cidr?, spec.pod_cidrs?))
    })
    .await
}

#[tokio::test]
async fn nodes_get_the_lowest_free_subnet_and_deleted_nodes_free_theirs() {
    let cluster = Cluster::start(0).await;
    let nodes = Api::<Node>::all(cluster.client.clone());
    // A node that chose its own subnet (as simulated nodes do) holds it.
    create_node(&nodes, "own", Some("10.42.0.0/24")).await;
    create_node(&nodes, "a", None).await;
    assert_eq!(assigned(&nodes, "a").await, ("10.42.1.0/24".to_string(), vec!["10.42.1.0/24".to_string()]));
    create_node(&nodes, "b", None).await;
    assert_eq!(assigned(&nodes, "b").await.0, "10.42.2.0/24");

    // A pod CIDR is set once: kubectl cannot change it.
    let output = cluster
        .kubectl(&["patch", "node", "a", "--type=merge", "-p", r#"{"spec":{"podCIDRs":["10.42.9.0/24"]}}"#])
        .await;
    let error = fails(&output);
    assert!(error.contains("node updates may not change podCIDR except from \"\" to valid"), "{error}");

    nodes.delete("own", &DeleteParams::default()).await.unwrap();
    eventually("own is gone", PATIENCE, || async { nodes.get_opt("own").await.ok()?.is_none().then_some(()) }).await;
    create_node(&nodes, "c", None).await;
    assert_eq!(assigned(&nodes, "c").await.0, "10.42.0.0/24");
    let out =
        cluster.kubectl_ok(&["get", "nodes", "-o", "custom-columns=NAME:.metadata.name,CIDR:.spec.podCIDR"]).await;
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, [["a", "10.42.1.0/24"], ["b", "10.42.2.0/24"], ["c", "10.42.0.0/24"]], "{out}");
}

#[tokio::test]
async fn an_exhausted_range_is_reported_until_a_subnet_is_freed() {
    let small = ClusterCidr { cidr: "10.99.0.0/23".parse().unwrap(), node_mask_size: 24 };
    let cluster = Cluster::start_configured(0, |config| config.cluster_cidr = Some(small)).await;
    let nodes = Api::<Node>::all(cluster.client.clone());
    create_node(&nodes, "n1", None).await;
    create_node(&nodes, "n2", None).await;
    assigned(&nodes, "n1").await;
    assigned(&nodes, "n2").await;
    create_node(&nodes, "n3", None).await;

    let events = Api::<Event>::namespaced(cluster.client.clone(), "default");
    let event = eventually("CIDRNotAvailable for n3", PATIENCE, || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("CIDRNotAvailable") && e.involved_object.name.as_deref() == Some("n3")
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.message.as_deref(), Some("Node n3 status is now: CIDRNotAvailable"));
    assert_eq!(event.involved_object.kind.as_deref(), Some("Node"));
    let n3 = nodes.get("n3").await.unwrap();
    assert!(n3.spec.and_then(|s| s.pod_cidr).is_none());

    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    assert_eq!(assigned(&nodes, "n3").await.0, "10.99.0.0/24");
}
