//! The DNS server's view of the cluster: Services, EndpointSlices and Namespaces reduced
//! to what answers need, keyed for lookups by name (a query touches one Service and its
//! slices, never the whole list).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// (namespace, name).
pub type Key = (String, String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    /// Answers with its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// clusterIP None: answers with the ready endpoints' addresses.
    Headless,
    /// Answers with a CNAME to this name.
    ExternalName(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortEntry {
    /// The port's name ("" when unnamed: no SRV name of its own).
    pub name: String,
    /// Lower case: tcp, udp, sctp.
    pub protocol: String,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub kind: ServiceKind,
    pub ports: Vec<PortEntry>,
    /// spec.publishNotReadyAddresses: endpoints are published whether ready or not.
    pub publish_not_ready: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointEntry {
    pub ip: IpAddr,
    /// The pod's hostname when it set one with a subdomain matching the Service.
    pub hostname: Option<String>,
    pub ready: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceEntry {
    pub endpoints: Vec<EndpointEntry>,
    pub ports: Vec<PortEntry>,
}

#[derive(Debug, Default)]
pub struct Index {
    pub services: HashMap<Key, ServiceEntry>,
    /// (namespace, service) → slice name → slice.
    pub slices: HashMap<Key, HashMap<String, SliceEntry>>,
    /// (namespace, slice name) → the service it belongs to (to move or drop it).
    slice_owners: HashMap<Key, String>,
    pub namespaces: HashSet<String>,
    /// Bumped on every change: the SOA serial.
    pub serial: u32,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// A Service as DNS sees it.
pub fn service_entry(service: &Service) -> ServiceEntry {
    let spec = service.spec.clone().unwrap_or_default();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        ServiceKind::ExternalName(spec.external_name.clone().unwrap_or_default().trim_end_matches('.').to_string())
    } else if spec.cluster_ip.as_deref() == Some("None") {
        ServiceKind::Headless
    } else {
        let ips = spec.cluster_ips.clone().filter(|ips| !ips.is_empty()).or(spec.cluster_ip.clone().map(|ip| vec![ip]));
        ServiceKind::ClusterIp(ips.unwrap_or_default().iter().filter_map(|ip| ip.parse().ok()).collect())
    };
    let ports = spec.ports.iter().flatten().filter_map(|p| port_entry(&p.name, &p.protocol, Some(p.port))).collect();
    ServiceEntry { kind, ports, publish_not_ready: spec.publish_not_ready_addresses.unwrap_or(false) }
}

/// A Service's or slice's port as SRV records name it (protocol lowercased, TCP if unset).
fn port_entry(name: &Option<String>, protocol: &Option<String>, port: Option<i32>) -> Option<PortEntry> {
    Some(PortEntry {
        name: name.clone().unwrap_or_default(),
        protocol: protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
        port: u16::try_from(port?).ok()?,
    })
}

/// An EndpointSlice as DNS sees it; a nil ready condition counts as ready (as the API
/// documents it).
pub fn slice_entry(slice: &EndpointSlice) -> SliceEntry {
    let endpoints = slice
        .endpoints
        .iter()
        .flat_map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            let hostname = e.hostname.clone().filter(|h| !h.is_empty()).map(|h| h.to_ascii_lowercase());
            e.addresses
                .iter()
                .filter_map(move |a| Some(EndpointEntry { ip: a.parse().ok()?, hostname: hostname.clone(), ready }))
        })
        .collect();
    let ports = slice.ports.iter().flatten().filter_map(|p| port_entry(&p.name, &p.protocol, p.port)).collect();
    SliceEntry { endpoints, ports }
}

/// The kinds of objects the index follows.
pub trait Indexed {
    fn apply(&self, index: &mut Index);
    fn delete(&self, index: &mut Index);
    /// Replaces every object of this kind with `all` (after a relist).
    fn replace_all(all: &[Self], index: &mut Index)
    where
        Self: Sized;
}

impl Indexed for Service {
    fn apply(&self, index: &mut Index) {
        index.services.insert(key_of(&self.metadata), service_entry(self));
    }

    fn delete(&self, index: &mut Index) {
        index.services.remove(&key_of(&self.metadata));
    }

    fn replace_all(all: &[Self], index: &mut Index) {
        index.services.clear();
        all.iter().for_each(|s| s.apply(index));
    }
}

impl Indexed for EndpointSlice {
    fn apply(&self, index: &mut Index) {
        self.delete(index);
        let (namespace, name) = key_of(&self.metadata);
        let Some(service) = self.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
            return;
        };
        index.slice_owners.insert((namespace.clone(), name.clone()), service.clone());
        index.slices.entry((namespace, service.clone())).or_default().insert(name, slice_entry(self));
    }

    fn delete(&self, index: &mut Index) {
        let (namespace, name) = key_of(&self.metadata);
        if let Some(service) = index.slice_owners.remove(&(namespace.clone(), name.clone())) {
            let key = (namespace, service);
            if let Some(slices) = index.slices.get_mut(&key) {
                slices.remove(&name);
                if slices.is_empty() {
                    index.slices.remove(&key);
                }
            }
        }
    }

    fn replace_all(all: &[Self], index: &mut Index) {
        index.slices.clear();
        index.slice_owners.clear();
        all.iter().for_each(|s| s.apply(index));
    }
}

impl Indexed for Namespace {
    fn apply(&self, index: &mut Index) {
        index.namespaces.insert(self.metadata.name.clone().unwrap_or_default());
    }

    fn delete(&self, index: &mut Index) {
        index.namespaces.remove(self.metadata.name.as_deref().unwrap_or_default());
    }

    fn replace_all(all: &[Self], index: &mut Index) {
        index.namespaces.clear();
        all.iter().for_each(|n| n.apply(index));
    }
}

impl Index {
    /// The endpoints of a Service that DNS publishes: the ready ones, or all of them
    /// with publishNotReadyAddresses.
    pub fn published_endpoints<'a>(
        &'a self,
        namespace: &str,
        service: &str,
        entry: &'a ServiceEntry,
    ) -> impl Iterator<Item = (&'a SliceEntry, &'a EndpointEntry)> + 'a {
        let key = (namespace.to_string(), service.to_string());
        self.slices
            .get(&key)
            .into_iter()
            .flat_map(|slices| slices.values())
            .flat_map(|slice| slice.endpoints.iter().map(move |e| (slice, e)))
            .filter(move |(_, e)| e.ready || entry.publish_not_ready)
    }
}
