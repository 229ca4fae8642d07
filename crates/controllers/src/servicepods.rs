//! What the Endpoints and EndpointSlice controllers share: their run loop
//! ([`run_per_service`]: a queue of Services fed by the shared Service and Pod caches,
//! queueing a Service whenever it, or a pod it selects (or selected before a label
//! change), changes); and the rules deciding how a pod appears as an endpoint of a
//! Service (readiness, named target ports, hostnames), as Kubernetes decides them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::{future, Stream, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use skiff_client::synced::Synced;

use crate::informer::Change;
use crate::queue::WorkQueue;
use crate::Context;

/// A Service by namespace and name.
pub type ServiceKey = (String, String);

pub fn key_of(service: &Service) -> ServiceKey {
    (service.namespace().unwrap_or_default(), service.name_any())
}

/// Workers per controller syncing Services.
const WORKERS: usize = 4;

/// Runs a controller that keeps objects per Service (the Endpoints and EndpointSlice
/// controllers): the Service is queued whenever it, a pod it selects (or selected), or a
/// key from `repair` (a watch of the controller's own objects, which someone else may
/// change) says so; `sync` is called for each queued Service once the caches are full.
pub async fn run_per_service<Sync, Fut>(
    context: Arc<Context>,
    repair: impl Stream<Item = ServiceKey> + Send,
    sync: Sync,
) where
    Sync: Fn(Cache, Arc<Context>, ServiceKey) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), kube::Error>> + Send,
{
    let queue = WorkQueue::new();
    let (cache, follow) = Cache::start(&context, queue.clone());
    let repair = repair.for_each(|key| {
        queue.add(key);
        future::ready(())
    });
    let work = async {
        cache.ready().await;
        queue
            .clone()
            .run(WORKERS, move |key| {
                let (cache, context) = (cache.clone(), context.clone());
                sync(cache, context, key)
            })
            .await;
    };
    // One future: everything stops together when the manager drops it.
    futures::join!(follow, repair, work);
}

/// Services and pods, from the shared informers.
#[derive(Clone)]
pub struct Cache {
    services: Store<Service>,
    pods: Store<Pod>,
    synced: [Synced; 2],
}

impl Cache {
    /// The caches, and the task that queues Services on their changes.
    pub fn start(context: &Context, queue: Arc<WorkQueue<ServiceKey>>) -> (Cache, impl Future<Output = ()>) {
        let (services, pods) = (context.informers.services(), context.informers.pods());
        let cache =
            Cache { services: services.store(), pods: pods.store(), synced: [services.synced(), pods.synced()] };
        let follow_services = {
            let queue = queue.clone();
            services.touched().for_each(move |service| {
                queue.add(key_of(&service));
                future::ready(())
            })
        };
        let follow_pods = {
            let cache = cache.clone();
            pods.subscribe().for_each(move |change| {
                match change {
                    // A pod whose labels changed also leaves the Services that selected it.
                    Change::Applied { old, new } => {
                        let before = old.map(|old| cache.services_selecting(&old)).unwrap_or_default();
                        cache.services_selecting(&new).into_iter().chain(before).for_each(|k| queue.add(k));
                    }
                    Change::Deleted(pod) => cache.services_selecting(&pod).into_iter().for_each(|k| queue.add(k)),
                    // After a (re)list, look at everything.
                    Change::Synced => cache.services.state().iter().for_each(|s| queue.add(key_of(s))),
                }
                future::ready(())
            })
        };
        let run = async move {
            futures::join!(follow_services, follow_pods);
        };
        (cache, run)
    }

    /// Waits until both caches have listed.
    pub async fn ready(&self) {
        for synced in &self.synced {
            let _ = synced.wait().await;
        }
    }

    pub fn service(&self, (namespace, name): &ServiceKey) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    fn services_selecting(&self, pod: &Pod) -> Vec<ServiceKey> {
        let namespace = pod.namespace();
        self.services
            .state()
            .iter()
            .filter(|s| s.namespace() == namespace)
            .filter(|s| selector(s).is_some_and(|sel| selects(sel, pod.labels())))
            .map(|s| key_of(s))
            .collect()
    }

    /// The pods `service` selects (none without a selector).
    pub fn selected_pods(&self, service: &Service) -> Vec<Arc<Pod>> {
        let Some(selector) = selector(service) else { return Vec::new() };
        let namespace = service.namespace();
        let mut pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.namespace() == namespace && selects(selector, p.labels()))
            .collect();
        pods.sort_by_key(|p| p.name_any());
        pods
    }
}

/// A Service's selector; None (no endpoints managed by controllers) when it has none.
pub fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

pub fn ports(service: &Service) -> &[ServicePort] {
    service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default()
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's IP, when it may be an endpoint at all: it has one and has not finished.
pub fn endpoint_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.pod_ip.as_deref().filter(|ip| !ip.is_empty())
}

/// The port on `pod` a Service port targets: a number as is, a name resolved against
/// the pod's container ports of the same protocol (None when the pod has no such port).
pub fn target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => {
            if let Ok(number) = name.parse() {
                return Some(number);
            }
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The DNS hostname of the pod's endpoint: its spec.hostname when its subdomain is this
/// Service (in the same namespace).
pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(service.name_any().as_str()) && pod.namespace() == service.namespace())
        .then(|| hostname.to_string())
}

pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..ObjectReference::default()
    }
}

/// Labels for the objects a controller writes for `service`: the Service's own, plus
/// `service.kubernetes.io/headless` for headless Services.
pub fn endpoint_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    labels.remove(HEADLESS_LABEL);
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn service_port(value: serde_json::Value) -> ServicePort {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_protocol() {
        let web = pod(json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]}}));
        let other = pod(json!({"spec": {"containers": [{"name": "c", "image": "i", "ports": [
            {"name": "http", "containerPort": 9090}]}]}}));
        let http = service_port(json!({"port": 80, "targetPort": "http"}));
        assert_eq!(target_port(&web, &http), Some(8080));
        assert_eq!(target_port(&other, &http), Some(9090));
        let dns_tcp = service_port(json!({"port": 53, "targetPort": "dns"}));
        assert_eq!(target_port(&web, &dns_tcp), None, "dns is a UDP port");
        let dns_udp = service_port(json!({"port": 53, "targetPort": "dns", "protocol": "UDP"}));
        assert_eq!(target_port(&web, &dns_udp), Some(53));
        assert_eq!(target_port(&web, &service_port(json!({"port": 80, "targetPort": 81}))), Some(81));
        assert_eq!(target_port(&web, &service_port(json!({"port": 80}))), Some(80));
    }

    #[test]
    fn finished_pods_and_pods_without_ips_are_not_endpoints() {
        assert_eq!(endpoint_ip(&pod(json!({"status": {"phase": "Running", "podIP": "10.0.0.1"}}))), Some("10.0.0.1"));
        assert_eq!(endpoint_ip(&pod(json!({"status": {"phase": "Pending"}}))), None);
        assert_eq!(endpoint_ip(&pod(json!({"status": {"phase": "Succeeded", "podIP": "10.0.0.1"}}))), None);
    }

    #[test]
    fn hostnames_only_for_pods_in_the_service_subdomain() {
        let service: Service = serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "n"}})).unwrap();
        let member = pod(json!({"metadata": {"namespace": "n"},
            "spec": {"hostname": "db-0", "subdomain": "db", "containers": []}}));
        let outsider = pod(json!({"metadata": {"namespace": "n"},
            "spec": {"hostname": "web-0", "subdomain": "web", "containers": []}}));
        assert_eq!(hostname(&member, &service).as_deref(), Some("db-0"));
        assert_eq!(hostname(&outsider, &service), None);
    }
}
