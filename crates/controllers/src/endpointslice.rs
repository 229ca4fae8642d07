//! EndpointSlice controller (kube-controller-manager's endpointslice-controller): the
//! pods a Service selects, as discovery.k8s.io/v1 EndpointSlices of at most
//! [`MAX_ENDPOINTS`] endpoints, one set of slices per distinct set of resolved ports.
//! Each endpoint carries the conditions ready, serving and terminating, its pod as
//! targetRef, node name and hostname. The slices are labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`, and owned by
//! their Service (the garbage collector removes them with it).
//!
//! Changes are made with little churn, as Kubernetes makes them: endpoints stay in the
//! slice that holds them, new ones fill free room in slices being changed anyway before
//! new slices are made, and only slices whose content changes are written. A Service
//! with no endpoints keeps one empty placeholder slice.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use skiff_client::events::reference;
use skiff_client::is_status;
use tracing::debug;

use crate::servicepods::{self, Cache, ServiceKey};
use crate::Context;

pub const NAME: &str = "endpointslice-controller";

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// kube-controller-manager's --max-endpoints-per-slice default.
pub const MAX_ENDPOINTS: usize = 100;

pub async fn run(context: Arc<Context>) {
    let repair = changed_slices(&context);
    servicepods::run_per_service(
        context,
        repair,
        |cache, context, key| async move { sync(&cache, &context, &key).await },
    )
    .await;
}

/// A managed slice changed or deleted by someone else is put right (our own writes come
/// back here too, and find nothing to do): its Service's key.
fn changed_slices(context: &Context) -> impl Stream<Item = ServiceKey> + Send {
    let api = Api::<EndpointSlice>::all(context.client.clone());
    let managed = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    watcher::watcher(api, managed).default_backoff().filter_map(|event| {
        future::ready(match event {
            Ok(Event::Apply(slice) | Event::Delete(slice)) => {
                let service = slice.labels().get(SERVICE_NAME_LABEL).cloned();
                service.map(|service| (slice.namespace().unwrap_or_default(), service))
            }
            _ => None,
        })
    })
}

async fn sync(cache: &Cache, context: &Context, key: &ServiceKey) -> Result<(), kube::Error> {
    // A deleted Service's slices go with it (ownerReferences); one without a selector
    // has its slices managed by someone else.
    let Some(service) = cache.service(key) else { return Ok(()) };
    if servicepods::selector(&service).is_none() {
        return Ok(());
    }
    let (namespace, name) = key;
    let api = Api::<EndpointSlice>::namespaced(context.client.clone(), namespace);
    let mine = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let existing = api.list(&mine).await?.items;
    let pods = cache.selected_pods(&service);
    let plan = plan(&service, desired(&service, &pods), existing);
    let events = context.events.reporting_as(NAME);
    let failed = |e: &kube::Error| {
        if !is_status(e, &[403, 409]) {
            let note = format!("Error updating Endpoint Slices for Service {namespace}/{name}: {e}");
            events.warning(reference(service.as_ref()), "Update", "FailedToUpdateEndpointSlices", note);
        }
    };
    for slice in plan.create {
        api.create(&PostParams::default(), &slice).await.inspect_err(failed)?;
    }
    for slice in plan.update {
        api.replace(&slice.name_any(), &PostParams::default(), &slice).await.inspect_err(failed)?;
    }
    for slice in plan.delete {
        match api.delete(&slice, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, &[404]) => {}
            Err(e) => {
                failed(&e);
                return Err(e);
            }
        }
    }
    debug!(service = ?key, "endpoint slices in sync");
    Ok(())
}

/// Endpoints grouped by the ports they resolve to (ports in Service order).
type Desired = BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)>;

fn desired(service: &Service, pods: &[Arc<Pod>]) -> Desired {
    let publish_not_ready = servicepods::publishes_not_ready(service);
    let service_ports = servicepods::ports(service);
    let mut groups = Desired::new();
    for pod in pods {
        let Some(ip) = servicepods::endpoint_ip(pod) else { continue };
        let ports: Vec<EndpointPort> = service_ports
            .iter()
            .filter_map(|port| {
                Some(EndpointPort {
                    name: Some(port.name.clone().unwrap_or_default()),
                    port: Some(servicepods::target_port(pod, port)?),
                    protocol: Some(port.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        let serving = servicepods::is_ready(pod);
        let terminating = servicepods::is_terminating(pod);
        // A terminating pod is never ready, unless the Service publishes every address.
        let ready = publish_not_ready || (serving && !terminating);
        let endpoint = Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(ready),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: servicepods::hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(servicepods::pod_reference(pod)),
            ..Endpoint::default()
        };
        let key = serde_json::to_string(&ports).unwrap_or_default();
        groups.entry(key).or_insert_with(|| (ports, Vec::new())).1.push(endpoint);
    }
    groups
}

/// The writes that bring `existing` slices to `desired`.
#[derive(Debug, Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

fn ports_key(slice: &EndpointSlice) -> String {
    serde_json::to_string(slice.ports.as_deref().unwrap_or_default()).unwrap_or_default()
}

fn endpoint_key(endpoint: &Endpoint) -> Option<&String> {
    endpoint.addresses.first()
}

fn plan(service: &Service, mut desired: Desired, mut existing: Vec<EndpointSlice>) -> Plan {
    let mut plan = Plan::default();
    existing.sort_by_key(|s| s.name_any());
    let template = template(service);
    let address_type = address_type(service);
    let needs_relabel = |slice: &EndpointSlice| {
        slice.metadata.labels != template.labels || slice.metadata.owner_references != template.owner_references
    };

    if desired.is_empty() {
        // One empty placeholder slice, kept if there is one already.
        let placeholder = existing.iter().position(|s| s.endpoints.is_empty() && s.ports.is_none());
        let mut keep = placeholder.map(|i| existing.remove(i));
        plan.delete.extend(existing.iter().map(|s| s.name_any()));
        match keep.take() {
            Some(slice) if !needs_relabel(&slice) => {}
            Some(slice) => plan.update.push(relabelled(slice, &template)),
            None => plan.create.push(EndpointSlice {
                metadata: template.clone(),
                address_type,
                endpoints: Vec::new(),
                ports: None,
            }),
        }
        return plan;
    }

    // Slices whose ports no pod resolves to any more go.
    let (kept, gone): (Vec<_>, Vec<_>) = existing.into_iter().partition(|s| desired.contains_key(&ports_key(s)));
    plan.delete.extend(gone.iter().map(|s| s.name_any()));

    for (key, (ports, endpoints)) in std::mem::take(&mut desired) {
        let mut wanted: BTreeMap<String, Endpoint> =
            endpoints.into_iter().filter_map(|e| Some((endpoint_key(&e)?.clone(), e))).collect();
        // Existing slices keep the endpoints they hold (updated), and lose the others.
        let mut slices: Vec<(EndpointSlice, bool)> = Vec::new();
        for mut slice in kept.iter().filter(|s| ports_key(s) == key).cloned() {
            let before = serde_json::to_value(&slice.endpoints).ok();
            slice.endpoints =
                slice.endpoints.iter().filter_map(|e| wanted.remove(endpoint_key(e)?)).collect::<Vec<_>>();
            let changed = serde_json::to_value(&slice.endpoints).ok() != before || needs_relabel(&slice);
            slices.push((slice, changed));
        }
        // New endpoints fill slices that change anyway first, then any with room.
        let mut fresh = wanted.into_values();
        slices.sort_by_key(|(_, changed)| !changed);
        for (slice, changed) in &mut slices {
            while slice.endpoints.len() < MAX_ENDPOINTS {
                let Some(endpoint) = fresh.next() else { break };
                slice.endpoints.push(endpoint);
                *changed = true;
            }
        }
        for (slice, changed) in slices {
            if slice.endpoints.is_empty() {
                plan.delete.push(slice.name_any());
            } else if changed {
                plan.update.push(relabelled(slice, &template));
            }
        }
        let rest: Vec<Endpoint> = fresh.collect();
        for chunk in rest.chunks(MAX_ENDPOINTS) {
            plan.create.push(EndpointSlice {
                metadata: template.clone(),
                address_type: address_type.clone(),
                endpoints: chunk.to_vec(),
                ports: Some(ports.clone()),
            });
        }
    }
    plan
}

/// Metadata of a new slice for `service`.
fn template(service: &Service) -> ObjectMeta {
    let mut labels = servicepods::endpoint_labels(service);
    labels.insert(SERVICE_NAME_LABEL.into(), service.name_any());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    ObjectMeta {
        generate_name: Some(format!("{}-", service.name_any())),
        namespace: service.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Service".into(),
            name: service.name_any(),
            uid: service.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

fn relabelled(mut slice: EndpointSlice, template: &ObjectMeta) -> EndpointSlice {
    slice.metadata.labels = template.labels.clone();
    slice.metadata.owner_references = template.owner_references.clone();
    slice
}

/// IPv4 unless the Service is IPv6 only.
fn address_type(service: &Service) -> String {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_ref());
    match families.and_then(|f| f.first()) {
        Some(family) if family == "IPv6" => "IPv6".into(),
        _ => "IPv4".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "n", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .unwrap()
    }

    fn pod(i: usize, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": format!("p{i}"), "namespace": "n", "uid": format!("uid-{i}")},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": "Running", "podIP": format!("10.0.{}.{}", i / 200, i % 200),
                    "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    /// Applies a plan as the API server would (names for created slices).
    fn apply(existing: Vec<EndpointSlice>, plan: Plan) -> Vec<EndpointSlice> {
        let mut slices: Vec<EndpointSlice> = existing
            .into_iter()
            .filter(|s| !plan.delete.contains(&s.name_any()))
            .map(|s| plan.update.iter().find(|u| u.name_any() == s.name_any()).cloned().unwrap_or(s))
            .collect();
        for (i, mut slice) in plan.create.into_iter().enumerate() {
            slice.metadata.name = Some(format!("web-{}{i}", slices.len()));
            slices.push(slice);
        }
        slices
    }

    #[test]
    fn endpoints_are_split_into_slices_of_at_most_a_hundred() {
        let svc = service();
        let pods: Vec<_> = (0..250).map(|i| pod(i, true)).collect();
        let plan = plan(&svc, desired(&svc, &pods), Vec::new());
        let sizes: Vec<usize> = plan.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let labels = plan.create[0].metadata.labels.clone().unwrap();
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    }

    #[test]
    fn one_changed_pod_rewrites_only_its_slice() {
        let svc = service();
        let mut pods: Vec<_> = (0..250).map(|i| pod(i, true)).collect();
        let slices = apply(Vec::new(), plan(&svc, desired(&svc, &pods), Vec::new()));
        pods[7] = pod(7, false);
        let changes = plan(&svc, desired(&svc, &pods), slices.clone());
        assert!(changes.create.is_empty() && changes.delete.is_empty());
        assert_eq!(changes.update.len(), 1);
        let endpoint = changes.update[0].endpoints.iter().find(|e| e.addresses[0] == "10.0.0.7").unwrap();
        assert_eq!(endpoint.conditions.as_ref().unwrap().ready, Some(false));
        // Nothing changed: nothing written.
        let settled = apply(slices, changes);
        let again = plan(&svc, desired(&svc, &pods), settled);
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty(), "{again:?}");
    }

    #[test]
    fn new_endpoints_fill_free_room_before_new_slices_are_made() {
        let svc = service();
        let mut pods: Vec<_> = (0..150).map(|i| pod(i, true)).collect();
        let slices = apply(Vec::new(), plan(&svc, desired(&svc, &pods), Vec::new()));
        pods.extend((150..190).map(|i| pod(i, true)));
        let changes = plan(&svc, desired(&svc, &pods), slices);
        assert!(changes.create.is_empty(), "{:?}", changes.create.len());
        assert_eq!(changes.update.len(), 1);
        assert_eq!(changes.update[0].endpoints.len(), 90);
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_placeholder() {
        let svc = service();
        let pods: Vec<_> = (0..3).map(|i| pod(i, true)).collect();
        let slices = apply(Vec::new(), plan(&svc, desired(&svc, &pods), Vec::new()));
        let emptied = plan(&svc, desired(&svc, &[]), slices.clone());
        assert_eq!(emptied.delete.len(), 1);
        assert_eq!(emptied.create.len(), 1);
        assert!(emptied.create[0].endpoints.is_empty());
        let placeholder = apply(slices, emptied);
        let again = plan(&svc, desired(&svc, &[]), placeholder);
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
    }
}
