//! Endpoints controller (kube-controller-manager's endpoints-controller): every Service
//! with a selector has an Endpoints object of the same name listing the pods it selects —
//! ready pods under `addresses`, others under `notReadyAddresses` (all under `addresses`
//! with publishNotReadyAddresses) — grouped into subsets by the ports each pod resolves.
//! Services without a selector are left to whoever manages their Endpoints (the API
//! server writes the `kubernetes` Service's); a deleted Service's Endpoints are deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use skiff_client::events::reference;
use skiff_client::is_status;
use tracing::debug;

use crate::servicepods::{self, Cache, ServiceKey};
use crate::Context;

pub const NAME: &str = "endpoints-controller";

/// At most this many addresses in one Endpoints object; beyond, it is truncated and
/// annotated (EndpointSlices have no such limit).
pub const MAX_ADDRESSES: usize = 1000;
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// When the change the Endpoints reflect happened.
pub const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
pub const MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpoint-controller";

pub async fn run(context: Arc<Context>) {
    let repair = deleted_endpoints(&context);
    servicepods::run_per_service(
        context,
        repair,
        |cache, context, key| async move { sync(&cache, &context, &key).await },
    )
    .await;
}

/// An Endpoints object deleted by someone else is written again: its Service's key.
fn deleted_endpoints(context: &Context) -> impl Stream<Item = ServiceKey> + Send {
    let api = Api::<Endpoints>::all(context.client.clone());
    watcher::watcher(api, watcher::Config::default()).default_backoff().filter_map(|event| {
        future::ready(match event {
            Ok(Event::Delete(endpoints)) => Some((endpoints.namespace().unwrap_or_default(), endpoints.name_any())),
            _ => None,
        })
    })
}

async fn sync(cache: &Cache, context: &Context, key: &ServiceKey) -> Result<(), kube::Error> {
    let (namespace, name) = key;
    let api = Api::<Endpoints>::namespaced(context.client.clone(), namespace);
    let Some(service) = cache.service(key) else {
        // The Service is gone: so are its Endpoints.
        return match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, &[404]) => Ok(()),
            Err(e) => Err(e),
        };
    };
    if servicepods::selector(&service).is_none() {
        return Ok(());
    }
    let pods = cache.selected_pods(&service);
    let (subsets, truncated) = subsets(&service, &pods);
    let mut labels = servicepods::endpoint_labels(&service);
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let current = api.get_opt(name).await?;
    let mut desired = current.clone().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..ObjectMeta::default() },
        ..Endpoints::default()
    });
    desired.subsets = (!subsets.is_empty()).then_some(subsets);
    desired.metadata.labels = (!labels.is_empty()).then_some(labels);
    let annotations = desired.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if let Some(current) = &current {
        if unchanged(current, &desired) {
            return Ok(());
        }
    }
    if let Some(time) = last_change(&service, &pods) {
        let annotations = desired.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(TRIGGER_TIME.into(), time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    if desired.metadata.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
        desired.metadata.annotations = None;
    }
    let events = context.events.reporting_as(NAME);
    let result = match &current {
        Some(_) => api.replace(name, &PostParams::default(), &desired).await.map_err(|e| ("FailedToUpdateEndpoint", e)),
        None => api.create(&PostParams::default(), &desired).await.map_err(|e| ("FailedToCreateEndpoint", e)),
    };
    match result {
        Ok(_) => Ok(()),
        // The namespace is terminating, or the object changed meanwhile: try again later.
        Err((_, e)) if is_status(&e, &[403, 409]) => {
            debug!(service = ?key, error = %e, "endpoints write refused");
            Err(e)
        }
        Err((reason, e)) => {
            let verb = if current.is_some() { "update" } else { "create" };
            let note = format!("Failed to {verb} endpoint {namespace}/{name}: {e}");
            events.warning(reference(&desired), "Update", reason, note);
            Err(e)
        }
    }
}

/// Whether `current` already says what `desired` says (the trigger time aside).
fn unchanged(current: &Endpoints, desired: &Endpoints) -> bool {
    let json = |e: &Endpoints| serde_json::to_value(&e.subsets).ok();
    let annotations = |e: &Endpoints| {
        let mut a = e.metadata.annotations.clone().unwrap_or_default();
        a.remove(TRIGGER_TIME);
        a
    };
    json(current) == json(desired)
        && current.metadata.labels == desired.metadata.labels
        && annotations(current) == annotations(desired)
}

/// When what the Endpoints reflect last changed: the Service's creation or a selected
/// pod's last readiness transition, whichever is latest.
fn last_change(service: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
    let ready_transitions = pods.iter().filter_map(|pod| {
        let conditions = pod.status.as_ref()?.conditions.as_ref()?;
        Some(conditions.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref()?.0)
    });
    let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created.into_iter().chain(ready_transitions).max()
}

/// Addresses sharing one set of ports.
#[derive(Default)]
struct Subset {
    ports: Vec<EndpointPort>,
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
}

/// The Endpoints subsets for `service` from the pods it selects, and whether they were
/// truncated to [`MAX_ADDRESSES`].
pub fn subsets(service: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let publish_not_ready = servicepods::publishes_not_ready(service);
    let service_ports = servicepods::ports(service);
    // Pods with the same resolved ports share a subset (keyed by those ports).
    let mut groups: BTreeMap<String, Subset> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = servicepods::endpoint_ip(pod) else { continue };
        // Terminating pods are endpoints only of Services that publish everything.
        if servicepods::is_terminating(pod) && !publish_not_ready {
            continue;
        }
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: port.name.clone().filter(|n| !n.is_empty()),
                    port: servicepods::target_port(pod, port)?,
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        // A pod offering none of the Service's ports is no endpoint, unless the Service
        // is headless without ports (DNS records only).
        if ports.is_empty() && !(service_ports.is_empty() && servicepods::is_headless(service)) {
            continue;
        }
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: servicepods::hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(servicepods::pod_reference(pod)),
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let group = groups.entry(key).or_insert_with(|| Subset { ports, ..Subset::default() });
        if publish_not_ready || servicepods::is_ready(pod) {
            group.ready.push(address);
        } else {
            group.not_ready.push(address);
        }
    }
    let mut budget = MAX_ADDRESSES;
    let mut truncated = false;
    let mut subsets = Vec::new();
    // Ready addresses are kept before not-ready ones when truncating.
    let mut groups: Vec<_> = groups.into_values().collect();
    for group in &mut groups {
        group.ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        truncated |= take_within(&mut group.ready, &mut budget);
    }
    for Subset { ports, ready, mut not_ready } in groups {
        not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
        truncated |= take_within(&mut not_ready, &mut budget);
        if ready.is_empty() && not_ready.is_empty() {
            continue;
        }
        subsets.push(EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then_some(ports),
        });
    }
    (subsets, truncated)
}

/// Keeps at most `budget` addresses, lowering it; true when some were dropped.
fn take_within(addresses: &mut Vec<EndpointAddress>, budget: &mut usize) -> bool {
    let dropped = addresses.len() > *budget;
    addresses.truncate(*budget);
    *budget -= addresses.len();
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, ready: bool, port: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "n", "uid": format!("uid-{name}")},
                "spec": {"nodeName": "node-0", "containers": [{"name": "c", "image": "i",
                    "ports": [{"name": "http", "containerPort": port}]}]},
                "status": {"phase": "Running", "podIP": ip,
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    fn service(extra: serde_json::Value) -> Service {
        let mut spec =
            json!({"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "n"}, "spec": spec})).unwrap()
    }

    #[test]
    fn pods_are_grouped_by_resolved_port_with_ready_and_not_ready_addresses() {
        let pods =
            [pod("a", "10.0.0.2", true, 8080), pod("b", "10.0.0.1", false, 8080), pod("c", "10.0.0.3", true, 9090)];
        let (subsets, truncated) = subsets(&service(json!({})), &pods);
        assert!(!truncated);
        assert_eq!(subsets.len(), 2);
        let on_8080 = subsets.iter().find(|s| s.ports.as_ref().unwrap()[0].port == 8080).unwrap();
        assert_eq!(on_8080.addresses.as_ref().unwrap()[0].ip, "10.0.0.2");
        assert_eq!(on_8080.not_ready_addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
        assert_eq!(on_8080.ports.as_ref().unwrap()[0].name.as_deref(), Some("web"));
        let target = on_8080.addresses.as_ref().unwrap()[0].target_ref.clone().unwrap();
        assert_eq!((target.kind.as_deref(), target.name.as_deref()), (Some("Pod"), Some("a")));
    }

    #[test]
    fn publish_not_ready_addresses_lists_every_pod_as_ready() {
        let pods = [pod("a", "10.0.0.1", false, 8080)];
        let (subsets, _) = subsets(&service(json!({"publishNotReadyAddresses": true})), &pods);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 1);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_services_without_ports_list_addresses_only() {
        let pods = [pod("a", "10.0.0.1", true, 8080)];
        let (headless, _) = subsets(&service(json!({"clusterIP": "None", "ports": null})), &pods);
        assert_eq!(headless.len(), 1);
        assert!(headless[0].ports.is_none());
        assert_eq!(headless[0].addresses.as_ref().unwrap()[0].ip, "10.0.0.1");
        // A Service with a cluster IP and no ports has no endpoints.
        let (portless, _) = subsets(&service(json!({"ports": null})), &pods);
        assert!(portless.is_empty());
    }

    #[test]
    fn more_than_a_thousand_addresses_are_truncated_keeping_ready_ones() {
        let pods: Vec<_> = (0..1100)
            .map(|i| pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 250, i % 250), i >= 100, 8080))
            .collect();
        let (subsets, truncated) = subsets(&service(json!({})), &pods);
        assert!(truncated);
        assert_eq!(subsets[0].addresses.as_ref().unwrap().len(), 1000);
        assert!(subsets[0].not_ready_addresses.is_none());
    }
}
