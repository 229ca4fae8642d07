//! The Endpoints and EndpointSlice controllers: Services with selectors, pods on
//! simulated nodes, readiness (through a readiness gate the test flips), named ports,
//! headless Services, Services without selectors; and what kubectl shows.

mod support;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::Value;
use support::{eventually, json, Cluster, PATIENCE};

const GATE: &str = "example.com/ready";

async fn create<K>(api: &Api<K>, object: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap()
}

/// A pod labelled `app`, with a container port named `http`, held not ready by a
/// readiness gate until [`set_gate`] says otherwise when `gated`.
async fn pod(pods: &Api<Pod>, name: &str, app: &str, http_port: i32, gated: bool, extra: Value) -> Pod {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox",
        "ports": [{"name": "http", "containerPort": http_port}]}]});
    if gated {
        spec["readinessGates"] = json!([{"conditionType": GATE}]);
    }
    spec.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    create(pods, json!({"metadata": {"name": name, "labels": {"app": app}}, "spec": spec})).await
}

async fn set_gate(pods: &Api<Pod>, name: &str, ready: bool) {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"conditions": [{"type": GATE, "status": status}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)).await.unwrap();
}

async fn running_ip(pods: &Api<Pod>, name: &str) -> String {
    eventually(&format!("{name} has an IP"), PATIENCE, || async {
        pods.get(name).await.ok()?.status?.pod_ip.filter(|ip| !ip.is_empty())
    })
    .await
}

/// An address and the port it is listed with.
type Address = (String, i32);

/// (ready, not ready) addresses of an Endpoints object.
fn addresses(endpoints: &Endpoints) -> (Vec<Address>, Vec<Address>) {
    let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
    for subset in endpoints.subsets.iter().flatten() {
        let port = subset.ports.as_ref().and_then(|p| p.first()).map(|p| p.port).unwrap_or(0);
        ready.extend(subset.addresses.iter().flatten().map(|a| (a.ip.clone(), port)));
        not_ready.extend(subset.not_ready_addresses.iter().flatten().map(|a| (a.ip.clone(), port)));
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

/// (ip, port, ready, serving, terminating) of every endpoint in the Service's slices.
async fn slice_endpoints(slices: &Api<EndpointSlice>, service: &str) -> Vec<(String, i32, bool, bool, bool)> {
    let list = slices.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await;
    let mut out = Vec::new();
    for slice in list.map(|l| l.items).unwrap_or_default() {
        let port = slice.ports.as_ref().and_then(|p| p.first()).and_then(|p| p.port).unwrap_or(0);
        for endpoint in &slice.endpoints {
            let c = endpoint.conditions.clone().unwrap_or_default();
            out.push((
                endpoint.addresses[0].clone(),
                port,
                c.ready.unwrap_or(false),
                c.serving.unwrap_or(false),
                c.terminating.unwrap_or(false),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn endpoints_and_slices_follow_pod_readiness_named_ports_and_deletion() {
    let cluster = Cluster::start(2).await;
    let pods: Api<Pod> = cluster.api("default");
    let services: Api<Service> = cluster.api("default");
    let endpoints: Api<Endpoints> = cluster.api("default");
    let slices: Api<EndpointSlice> = cluster.api("default");
    create(
        &services,
        json!({"metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    pod(&pods, "web-0", "web", 8080, false, json!({})).await;
    pod(&pods, "web-1", "web", 8080, true, json!({})).await;
    // The same port name on another number: its own subset and slice.
    pod(&pods, "web-2", "web", 9090, false, json!({})).await;
    pod(&pods, "other", "other", 8080, false, json!({})).await;
    let ip0 = running_ip(&pods, "web-0").await;
    let ip1 = running_ip(&pods, "web-1").await;
    let ip2 = running_ip(&pods, "web-2").await;

    let expected = (vec![(ip0.clone(), 8080), (ip2.clone(), 9090)], vec![(ip1.clone(), 8080)]);
    let expected = {
        let mut e = expected;
        e.0.sort();
        e
    };
    eventually("endpoints: web-0, web-2 ready; web-1 not ready", PATIENCE, || async {
        (addresses(&endpoints.get("web").await.ok()?) == expected).then_some(())
    })
    .await;
    let ep = endpoints.get("web").await.unwrap();
    assert_eq!(ep.labels().get("tier").map(String::as_str), Some("front"));
    assert_eq!(ep.labels()["endpoints.kubernetes.io/managed-by"], "endpoint-controller");
    assert!(ep.annotations().contains_key("endpoints.kubernetes.io/last-change-trigger-time"));
    let address = ep.subsets.iter().flatten().flat_map(|s| s.addresses.iter().flatten()).find(|a| a.ip == ip0).unwrap();
    let target = address.target_ref.clone().unwrap();
    assert_eq!((target.kind.as_deref(), target.name.as_deref()), (Some("Pod"), Some("web-0")));
    assert!(address.node_name.as_deref().is_some_and(|n| n.starts_with("node-")));
    let port = &ep.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.protocol.as_deref()), (Some("http"), Some("TCP")));

    let mut expected_slices = vec![
        (ip0.clone(), 8080, true, true, false),
        (ip1.clone(), 8080, false, false, false),
        (ip2.clone(), 9090, true, true, false),
    ];
    expected_slices.sort();
    eventually("slices list the three pods", PATIENCE, || async {
        (slice_endpoints(&slices, "web").await == expected_slices).then_some(())
    })
    .await;
    for slice in slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap() {
        assert_eq!(slice.labels()["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
        assert_eq!(slice.address_type, "IPv4");
        let owner = &slice.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Service", "web", Some(true)));
        assert!(slice.endpoints.iter().all(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()).is_some()));
        assert!(slice.endpoints.iter().all(|e| e.node_name.is_some()));
    }

    let slice_names = || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap();
        let mut names: Vec<String> = list.items.iter().map(|s| s.name_any()).collect();
        names.sort();
        names
    };
    let names_before = slice_names().await;

    // web-1 becomes ready, then web-0 is deleted.
    set_gate(&pods, "web-1", true).await;
    let mut all_ready = vec![(ip0.clone(), 8080), (ip1.clone(), 8080), (ip2.clone(), 9090)];
    all_ready.sort();
    eventually("web-1 ready", PATIENCE, || async {
        (addresses(&endpoints.get("web").await.ok()?) == (all_ready.clone(), vec![])).then_some(())
    })
    .await;
    set_gate(&pods, "web-1", false).await;
    eventually("web-1 not ready again", PATIENCE, || async {
        let (_, not_ready) = addresses(&endpoints.get("web").await.ok()?);
        (not_ready == vec![(ip1.clone(), 8080)]).then_some(())
    })
    .await;
    eventually("web-1 not ready in its slice", PATIENCE, || async {
        slice_endpoints(&slices, "web").await.contains(&(ip1.clone(), 8080, false, false, false)).then_some(())
    })
    .await;

    assert_eq!(slice_names().await, names_before, "readiness changes rewrite slices in place");

    pods.delete("web-0", &DeleteParams::default()).await.unwrap();
    eventually("web-0 gone from endpoints and slices", PATIENCE, || async {
        let (ready, _) = addresses(&endpoints.get("web").await.ok()?);
        let in_slices = slice_endpoints(&slices, "web").await.iter().any(|e| e.0 == ip0);
        (!ready.iter().any(|(ip, _)| *ip == ip0) && !in_slices).then_some(())
    })
    .await;

    // The Service goes: its Endpoints go, and its slices with it (garbage collector).
    services.delete("web", &DeleteParams::default()).await.unwrap();
    eventually("endpoints and slices of web gone", PATIENCE, || async {
        let gone = endpoints.get_opt("web").await.ok()?.is_none() && slice_endpoints(&slices, "web").await.is_empty();
        let left = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.ok()?.items;
        (gone && left.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn headless_services_publishing_not_ready_addresses_get_hostnames() {
    let cluster = Cluster::start(1).await;
    let pods: Api<Pod> = cluster.api("default");
    let services: Api<Service> = cluster.api("default");
    create(
        &services,
        json!({"metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": true, "selector": {"app": "db"},
                "ports": [{"port": 5432}]}}),
    )
    .await;
    pod(&pods, "db-0", "db", 5432, true, json!({"hostname": "db-0", "subdomain": "db"})).await;
    let ip = running_ip(&pods, "db-0").await;

    let endpoints: Api<Endpoints> = cluster.api("default");
    let ep = eventually("db endpoints", PATIENCE, || async {
        let ep = endpoints.get("db").await.ok()?;
        (addresses(&ep).0 == vec![(ip.clone(), 5432)]).then_some(ep)
    })
    .await;
    let address = &ep.subsets.as_ref().unwrap()[0].addresses.as_ref().unwrap()[0];
    assert_eq!(address.hostname.as_deref(), Some("db-0"));
    assert_eq!(ep.labels().get("service.kubernetes.io/headless").map(String::as_str), Some(""));

    let slices: Api<EndpointSlice> = cluster.api("default");
    let slice = eventually("db slice", PATIENCE, || async {
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=db")).await.ok()?;
        list.items.into_iter().find(|s| !s.endpoints.is_empty())
    })
    .await;
    let endpoint = &slice.endpoints[0];
    assert_eq!(endpoint.hostname.as_deref(), Some("db-0"));
    // Published although not ready: ready, but not serving.
    let conditions = endpoint.conditions.clone().unwrap();
    assert_eq!((conditions.ready, conditions.serving), (Some(true), Some(false)));
    assert_eq!(slice.labels().get("service.kubernetes.io/headless").map(String::as_str), Some(""));
}

#[tokio::test]
async fn services_without_selectors_are_left_to_their_owners() {
    let cluster = Cluster::start(1).await;
    let services: Api<Service> = cluster.api("default");
    let endpoints: Api<Endpoints> = cluster.api("default");
    let slices: Api<EndpointSlice> = cluster.api("default");
    create(&services, json!({"metadata": {"name": "external"}, "spec": {"ports": [{"port": 443}]}})).await;
    let manual = create(
        &endpoints,
        json!({"metadata": {"name": "external"},
            "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 443}]}]}),
    )
    .await;
    let kubernetes = endpoints.get("kubernetes").await.unwrap();

    // A Service with a selector, handled after the others: once its objects exist, the
    // controllers have looked at everything.
    create(
        &services,
        json!({"metadata": {"name": "witness"}, "spec": {"selector": {"app": "w"}, "ports": [{"port": 1}]}}),
    )
    .await;
    eventually("witness endpoints and placeholder slice", PATIENCE, || async {
        endpoints.get_opt("witness").await.ok()??;
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=witness")).await.ok()?;
        (!list.items.is_empty()).then_some(())
    })
    .await;
    let after = endpoints.get("external").await.unwrap();
    assert_eq!(after.resource_version(), manual.resource_version());
    assert_eq!(endpoints.get("kubernetes").await.unwrap().resource_version(), kubernetes.resource_version());
    for service in ["external", "kubernetes"] {
        let list = slices.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}"))).await;
        let managed: Vec<_> = list
            .unwrap()
            .items
            .into_iter()
            .filter(|s| {
                s.labels()
                    .get("endpointslice.kubernetes.io/managed-by")
                    .is_some_and(|m| m.starts_with("endpointslice-controller"))
            })
            .collect();
        assert!(managed.is_empty(), "{service}: {managed:?}");
    }
}

// kubectl blocks its thread: the server needs another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_endpoints() {
    let cluster = Cluster::start(1).await;
    let pods: Api<Pod> = cluster.api("default");
    let services: Api<Service> = cluster.api("default");
    create(
        &services,
        json!({"metadata": {"name": "api"},
            "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    pod(&pods, "api-0", "api", 8080, false, json!({})).await;
    let ip = running_ip(&pods, "api-0").await;
    let endpoint = format!("{ip}:8080");
    let endpoints: Api<Endpoints> = cluster.api("default");
    eventually("api endpoints", PATIENCE, || async {
        (addresses(&endpoints.get("api").await.ok()?).0 == vec![(ip.clone(), 8080)]).then_some(())
    })
    .await;
    let slices: Api<EndpointSlice> = cluster.api("default");
    eventually("api slice", PATIENCE, || async { (slice_endpoints(&slices, "api").await.len() == 1).then_some(()) })
        .await;

    let stdout = |args: &[&str]| {
        let out = cluster.server.kubectl(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let get = stdout(&["get", "endpoints", "api"]);
    assert!(get.lines().nth(1).is_some_and(|l| l.starts_with("api") && l.contains(&endpoint)), "{get}");
    let get = stdout(&["get", "endpointslices", "-l", "kubernetes.io/service-name=api"]);
    let row = get.lines().nth(1).unwrap_or_default().to_string();
    assert!(row.starts_with("api-") && row.contains("IPv4") && row.contains("8080") && row.contains(&ip), "{get}");
    let describe = stdout(&["describe", "service", "api"]);
    let line = describe.lines().find(|l| l.starts_with("Endpoints:")).unwrap_or_default();
    assert!(line.contains(&endpoint), "{describe}");

    // Deleted by hand: written again.
    let slice = row.split_whitespace().next().unwrap().to_string();
    stdout(&["delete", "endpoints", "api"]);
    stdout(&["delete", "endpointslice", &slice]);
    eventually("api endpoints and slice recreated", PATIENCE, || async {
        let ready = addresses(&endpoints.get_opt("api").await.ok()??).0;
        let list = slices.list(&ListParams::default().labels("kubernetes.io/service-name=api")).await.ok()?;
        let recreated = list.items.iter().any(|s| s.name_any() != slice && s.endpoints.len() == 1);
        (ready == vec![(ip.clone(), 8080)] && recreated).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_relabelled_pod_leaves_the_endpoints_and_slices_of_its_old_service() {
    let cluster = Cluster::start(1).await;
    let pods: Api<Pod> = cluster.api("default");
    let services: Api<Service> = cluster.api("default");
    let endpoints: Api<Endpoints> = cluster.api("default");
    let slices: Api<EndpointSlice> = cluster.api("default");
    for (name, app) in [("api", "api"), ("admin", "admin")] {
        create(
            &services,
            json!({"metadata": {"name": name}, "spec": {"selector": {"app": app}, "ports": [{"port": 80}]}}),
        )
        .await;
    }
    pod(&pods, "moving", "api", 8080, false, json!({})).await;
    let ip = running_ip(&pods, "moving").await;
    let listed = |service: &'static str| {
        let (endpoints, slices, ip) = (endpoints.clone(), slices.clone(), ip.clone());
        async move {
            let in_endpoints =
                endpoints.get(service).await.ok().is_some_and(|ep| addresses(&ep).0.iter().any(|a| a.0 == ip));
            let in_slices = slice_endpoints(&slices, service).await.iter().any(|e| e.0 == ip);
            (in_endpoints, in_slices)
        }
    };
    eventually("the pod listed for api", PATIENCE, || async { (listed("api").await == (true, true)).then_some(()) })
        .await;

    let relabel = Patch::Merge(json!({"metadata": {"labels": {"app": "admin"}}}));
    pods.patch("moving", &PatchParams::default(), &relabel).await.unwrap();
    eventually("the pod moved from api to admin", PATIENCE, || async {
        (listed("api").await == (false, false) && listed("admin").await == (true, true)).then_some(())
    })
    .await;
}
