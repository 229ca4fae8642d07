//! What the proxy must program, computed from Services, EndpointSlices and the node: one
//! [`ServicePort`] per port of every proxied Service, with the endpoints each kind of
//! traffic may use. Pure: no I/O, unit-tested with plain values.
//!
//! Endpoint choice follows kube-proxy: an endpoint is usable when it is ready; when a set
//! has no ready endpoint, its serving-and-terminating ones are used instead (so a rolling
//! update that leaves only terminating pods keeps answering). Conditions missing from an
//! EndpointSlice mean ready = true, serving = ready, terminating = false. Topology hints
//! narrow the cluster-wide set to the node's zone when every endpoint carries hints and one
//! names that zone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Node, Service, ServicePort as SpecPort};
use k8s_openapi::api::discovery::v1::{Endpoint as SliceEndpoint, EndpointSlice};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The node label topology hints are matched against.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// sessionAffinityConfig.clientIP.timeoutSeconds when unset (3 hours, as Kubernetes).
pub const DEFAULT_AFFINITY_SECONDS: i32 = 10_800;

/// An IPv4 network such as the cluster CIDR `10.42.0.0/16`.
pub type Ipv4Cidr = ipnet::Ipv4Net;

/// The node the proxy runs on, as far as endpoint choice needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// Its `topology.kubernetes.io/zone` label.
    pub zone: Option<String>,
}

impl NodeInfo {
    pub fn named(name: &str) -> Self {
        NodeInfo { name: name.to_string(), zone: None }
    }

    /// The proxy's view of its Node object (None while the Node is not known yet).
    pub fn from_node(name: &str, node: Option<&Node>) -> Self {
        let zone = node.and_then(|n| n.metadata.labels.as_ref()).and_then(|l| l.get(ZONE_LABEL)).cloned();
        NodeInfo { name: name.to_string(), zone }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Self> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name nftables uses (`meta l4proto tcp`).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One backend address of a service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// A Service port, identified as kube-proxy does by namespace, name, protocol and port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    pub namespace: String,
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}/p{}", self.namespace, self.name, self.protocol.nft(), self.port)
    }
}

/// Everything the rules of one Service port depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub key: PortKey,
    pub cluster_ip: Ipv4Addr,
    /// spec.externalIPs and the LoadBalancer ingress IPs: served like the cluster IP but
    /// as external traffic.
    pub external_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    /// externalTrafficPolicy: Local (only for services reachable from outside).
    pub external_local: bool,
    /// internalTrafficPolicy: Local.
    pub internal_local: bool,
    /// sessionAffinity: ClientIP, with its timeout in seconds.
    pub affinity_seconds: Option<u32>,
    /// Usable endpoints anywhere in the cluster.
    pub cluster_endpoints: Vec<Endpoint>,
    /// Usable endpoints on this node.
    pub local_endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// Whether the port is reachable from outside (NodePort, external or LoadBalancer IPs).
    pub fn is_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }

    /// The endpoints cluster-IP traffic goes to.
    pub fn internal_endpoints(&self) -> &[Endpoint] {
        if self.internal_local {
            &self.local_endpoints
        } else {
            &self.cluster_endpoints
        }
    }

    /// The endpoints traffic from outside the node goes to.
    pub fn external_endpoints(&self) -> &[Endpoint] {
        if self.external_local {
            &self.local_endpoints
        } else {
            &self.cluster_endpoints
        }
    }
}

/// The whole desired state: every proxied service port, in a stable order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    pub ports: BTreeMap<PortKey, ServicePort>,
}

impl Model {
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        node: &NodeInfo,
    ) -> Model {
        let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for slice in slices {
            let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
            if let (Some(namespace), Some(service)) = (&slice.metadata.namespace, service) {
                by_service.entry((namespace.clone(), service.clone())).or_default().push(slice);
            }
        }
        let mut ports = BTreeMap::new();
        for service in services {
            let namespace = service.metadata.namespace.clone().unwrap_or_default();
            let name = service.metadata.name.clone().unwrap_or_default();
            let slices = by_service.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
            for port in service_ports(service, slices, node) {
                ports.insert(port.key.clone(), port);
            }
        }
        Model { ports }
    }
}

impl Model {
    /// Replaces the ports of the Service `namespace/name` after it or one of its slices
    /// changed (`service` None: deleted), leaving every other Service's ports as they are.
    pub fn update_service(
        &mut self,
        namespace: &str,
        name: &str,
        service: Option<&Service>,
        slices: &[&EndpointSlice],
        node: &NodeInfo,
    ) {
        let key = |protocol, port| PortKey { namespace: namespace.into(), name: name.into(), protocol, port };
        let stale: Vec<PortKey> =
            self.ports.range(key(Protocol::Tcp, 0)..=key(Protocol::Sctp, u16::MAX)).map(|(k, _)| k.clone()).collect();
        for key in stale {
            self.ports.remove(&key);
        }
        for port in service.map(|s| service_ports(s, slices, node)).unwrap_or_default() {
            self.ports.insert(port.key.clone(), port);
        }
    }
}

/// The proxied ports of one Service (none for headless and ExternalName Services).
fn service_ports(service: &Service, slices: &[&EndpointSlice], node: &NodeInfo) -> Vec<ServicePort> {
    let (Some(spec), Some(namespace), Some(name)) =
        (&service.spec, &service.metadata.namespace, &service.metadata.name)
    else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
        return Vec::new(); // headless ("None"), unallocated or IPv6
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let mut external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
    if kind == "LoadBalancer" {
        let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
        external_ips
            .extend(ingress.iter().copied().flatten().filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok()));
    }
    external_ips.sort();
    external_ips.dedup();
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let config = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref());
        let seconds = config.and_then(|c| c.timeout_seconds).unwrap_or(DEFAULT_AFFINITY_SECONDS);
        u32::try_from(seconds.max(1)).unwrap_or(1)
    });
    let use_hints = zone_hints_apply(slices, node);
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref())?;
            let node_port = match kind {
                "NodePort" | "LoadBalancer" => port.node_port.and_then(|p| u16::try_from(p).ok()),
                _ => None,
            };
            let mut model = ServicePort {
                key: PortKey {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    protocol,
                    port: u16::try_from(port.port).ok()?,
                },
                cluster_ip,
                external_ips: external_ips.clone(),
                node_port,
                external_local: false,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                affinity_seconds,
                cluster_endpoints: Vec::new(),
                local_endpoints: Vec::new(),
            };
            model.external_local = model.is_external() && spec.external_traffic_policy.as_deref() == Some("Local");
            let candidates = port_endpoints(slices, port, protocol);
            let in_zone = |e: &&Candidate| !use_hints || e.zones.iter().any(|z| Some(z) == node.zone.as_ref());
            model.cluster_endpoints = usable(candidates.iter().filter(in_zone));
            model.local_endpoints = usable(candidates.iter().filter(|e| e.node.as_deref() == Some(node.name.as_str())));
            Some(model)
        })
        .collect()
}

/// An endpoint of a port with the conditions and placement its choice depends on.
struct Candidate {
    endpoint: Endpoint,
    ready: bool,
    serving: bool,
    terminating: bool,
    node: Option<String>,
    zones: Vec<String>,
}

/// The IPv4 endpoints of the slices for one service port (matched by port name and
/// protocol), each address once.
fn port_endpoints(slices: &[&EndpointSlice], port: &SpecPort, protocol: Protocol) -> Vec<Candidate> {
    let wanted_name = port.name.as_deref().unwrap_or("");
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let matching = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == wanted_name && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(target) = matching.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        for endpoint in &slice.endpoints {
            for address in endpoint.addresses.iter().filter_map(|a| a.parse::<Ipv4Addr>().ok()) {
                let candidate = Endpoint { ip: address, port: target };
                if seen.insert(candidate) {
                    out.push(candidate_of(candidate, endpoint));
                }
            }
        }
    }
    out
}

fn candidate_of(endpoint: Endpoint, from: &SliceEndpoint) -> Candidate {
    let conditions = from.conditions.as_ref();
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let zones = from.hints.as_ref().and_then(|h| h.for_zones.as_ref());
    Candidate {
        endpoint,
        ready,
        serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
        terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
        node: from.node_name.clone(),
        zones: zones.iter().copied().flatten().map(|z| z.name.clone()).collect(),
    }
}

/// The ready endpoints, or when there is none the serving terminating ones; sorted.
fn usable<'a>(candidates: impl Iterator<Item = &'a Candidate> + Clone) -> Vec<Endpoint> {
    let mut ready: Vec<Endpoint> = candidates.clone().filter(|c| c.ready).map(|c| c.endpoint).collect();
    if ready.is_empty() {
        ready = candidates.filter(|c| c.serving && c.terminating).map(|c| c.endpoint).collect();
    }
    ready.sort();
    ready
}

/// Topology hints apply when the node has a zone, every ready endpoint has hints, and at
/// least one hints for the node's zone (otherwise kube-proxy ignores them).
fn zone_hints_apply(slices: &[&EndpointSlice], node: &NodeInfo) -> bool {
    let Some(zone) = &node.zone else { return false };
    let mut ready = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .peekable();
    if ready.peek().is_none() {
        return false;
    }
    let mut any_for_zone = false;
    for endpoint in ready {
        let zones = endpoint.hints.as_ref().and_then(|h| h.for_zones.as_ref());
        match zones {
            Some(zones) if !zones.is_empty() => any_for_zone |= zones.iter().any(|z| &z.name == zone),
            _ => return false,
        }
    }
    any_for_zone
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).expect("service")
    }

    pub(crate) fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).expect("slice")
    }

    fn web(spec: serde_json::Value) -> Service {
        let mut base = json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}
        });
        for (k, v) in spec.as_object().expect("object") {
            base["spec"][k] = v.clone();
        }
        service(base)
    }

    fn endpoints(list: serde_json::Value) -> EndpointSlice {
        slice(json!({
            "metadata": {"namespace": "default", "name": "web-abc", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": list,
        }))
    }

    fn only_port(model: &Model) -> &ServicePort {
        assert_eq!(model.ports.len(), 1, "{model:?}");
        model.ports.values().next().expect("one port")
    }

    fn ep(ip: &str) -> Endpoint {
        Endpoint { ip: ip.parse().expect("ip"), port: 8080 }
    }

    #[test]
    fn ready_endpoints_are_used_and_not_ready_ones_are_not() {
        let slices = [endpoints(json!([
            {"addresses": ["10.42.1.5"], "nodeName": "a"},
            {"addresses": ["10.42.0.5"], "conditions": {"ready": true}, "nodeName": "b"},
            {"addresses": ["10.42.0.6"], "conditions": {"ready": false, "serving": false}, "nodeName": "b"},
        ]))];
        let model = Model::build(&[web(json!({}))], &slices, &NodeInfo::named("b"));
        let port = only_port(&model);
        assert_eq!(port.key.to_string(), "default/web/tcp/p80");
        assert_eq!(port.cluster_endpoints, vec![ep("10.42.0.5"), ep("10.42.1.5")]);
        assert_eq!(port.local_endpoints, vec![ep("10.42.0.5")]);
        assert_eq!(port.internal_endpoints(), port.cluster_endpoints.as_slice());
    }

    #[test]
    fn serving_terminating_endpoints_stand_in_only_when_none_is_ready() {
        let terminating = json!({"ready": false, "serving": true, "terminating": true});
        let only_terminating = [endpoints(json!([{"addresses": ["10.42.0.7"], "conditions": terminating}]))];
        let model = Model::build(&[web(json!({}))], &only_terminating, &NodeInfo::named("b"));
        assert_eq!(only_port(&model).cluster_endpoints, vec![ep("10.42.0.7")]);

        let mixed = [endpoints(json!([
            {"addresses": ["10.42.0.7"], "conditions": terminating},
            {"addresses": ["10.42.0.8"], "conditions": {"ready": true}},
        ]))];
        let model = Model::build(&[web(json!({}))], &mixed, &NodeInfo::named("b"));
        assert_eq!(only_port(&model).cluster_endpoints, vec![ep("10.42.0.8")]);
    }

    #[test]
    fn headless_and_external_name_services_are_not_proxied() {
        let headless = web(json!({"clusterIP": "None"}));
        let external = web(json!({"type": "ExternalName", "externalName": "example.com", "clusterIP": null}));
        let slices = [endpoints(json!([{"addresses": ["10.42.0.5"]}]))];
        assert!(Model::build(&[headless, external], &slices, &NodeInfo::named("b")).ports.is_empty());
    }

    #[test]
    fn ports_match_slices_by_name_and_protocol() {
        let svc = web(json!({"ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]}));
        let slices = [endpoints(json!([{"addresses": ["10.42.0.5"]}]))];
        let model = Model::build(&[svc], &slices, &NodeInfo::named("b"));
        let keys: Vec<String> = model.ports.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["default/web/tcp/p80", "default/web/udp/p53"]);
        let dns = model.ports.values().find(|p| p.key.protocol == Protocol::Udp).expect("dns");
        assert!(dns.cluster_endpoints.is_empty(), "the slice has no port named dns");
    }

    #[test]
    fn policies_node_ports_external_and_load_balancer_ips() {
        let mut svc = web(json!({
            "type": "LoadBalancer", "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
            "externalIPs": ["192.0.2.10"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
            "sessionAffinity": "ClientIP",
        }));
        svc.status =
            Some(serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}})).expect("status"));
        let slices = [endpoints(json!([{"addresses": ["10.42.0.5"], "nodeName": "a"}]))];
        let model = Model::build(&[svc], &slices, &NodeInfo::named("b"));
        let port = only_port(&model);
        assert_eq!(port.node_port, Some(30080));
        assert_eq!(port.external_ips, vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 10)]);
        assert!(port.external_local && port.internal_local);
        assert_eq!(port.affinity_seconds, Some(DEFAULT_AFFINITY_SECONDS as u32));
        assert!(port.internal_endpoints().is_empty() && port.external_endpoints().is_empty(), "no endpoint on b");
        assert_eq!(port.cluster_endpoints, vec![ep("10.42.0.5")]);
    }

    #[test]
    fn a_cluster_ip_service_ignores_external_traffic_policy() {
        let svc = web(json!({"externalTrafficPolicy": "Local"}));
        let model = Model::build(&[svc], &[], &NodeInfo::named("b"));
        assert!(!only_port(&model).external_local);
    }

    #[test]
    fn zone_hints_narrow_cluster_endpoints_when_complete() {
        let hinted = [endpoints(json!([
            {"addresses": ["10.42.0.5"], "hints": {"forZones": [{"name": "z1"}]}},
            {"addresses": ["10.42.1.5"], "hints": {"forZones": [{"name": "z2"}]}},
        ]))];
        let in_z1 = NodeInfo { name: "b".into(), zone: Some("z1".into()) };
        let model = Model::build(&[web(json!({}))], &hinted, &in_z1);
        assert_eq!(only_port(&model).cluster_endpoints, vec![ep("10.42.0.5")]);

        let partial = [endpoints(json!([
            {"addresses": ["10.42.0.5"], "hints": {"forZones": [{"name": "z1"}]}},
            {"addresses": ["10.42.1.5"]},
        ]))];
        let model = Model::build(&[web(json!({}))], &partial, &in_z1);
        assert_eq!(only_port(&model).cluster_endpoints.len(), 2, "hints ignored unless on every endpoint");
    }

    #[test]
    fn updating_one_service_leaves_the_others() {
        let other = service(json!({
            "metadata": {"namespace": "default", "name": "webz"},
            "spec": {"clusterIP": "10.43.0.30", "ports": [{"port": 80}]},
        }));
        let node = NodeInfo::named("b");
        let mut model = Model::build(&[web(json!({})), other.clone()], &[], &node);
        let slices = [endpoints(json!([{"addresses": ["10.42.0.5"]}]))];
        let refs: Vec<&EndpointSlice> = slices.iter().collect();
        model.update_service("default", "web", Some(&web(json!({}))), &refs, &node);
        assert_eq!(model, Model::build(&[web(json!({})), other.clone()], &slices, &node));
        model.update_service("default", "web", None, &[], &node);
        assert_eq!(model, Model::build(&[other], &[], &node));
    }
}
