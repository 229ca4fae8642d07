//! Answers for names inside the cluster zone, built from the [`Index`]: what CoreDNS's
//! kubernetes plugin answers (A/AAAA, SRV, CNAME, pod records, NXDOMAIN/NODATA).

use std::collections::HashSet;
use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::index::{EndpointEntry, Index, ServiceEntry, ServiceKind};
use crate::names::{dashed_ip, Zone, ZoneName};

/// The version of the Kubernetes DNS specification served at `dns-version.ZONE`.
pub const SPEC_VERSION: &str = "1.1.0";

/// What the zone says about a name.
#[derive(Debug, Default, PartialEq)]
pub struct Resolution {
    /// The name does not exist (NXDOMAIN); otherwise NOERROR, NODATA when `answers` is empty.
    pub nxdomain: bool,
    pub answers: Vec<Record>,
    pub additionals: Vec<Record>,
    /// An ExternalName's target outside the zone, to look up upstream after the CNAME.
    pub chase: Option<Name>,
}

impl Resolution {
    fn nxdomain() -> Self {
        Resolution { nxdomain: true, ..Default::default() }
    }

    fn records(answers: Vec<Record>) -> Self {
        Resolution { answers, ..Default::default() }
    }
}

/// Builds answers for names in one zone with one TTL.
pub struct Answerer {
    pub zone: Zone,
    pub zone_name: Name,
    pub ttl: u32,
}

impl Answerer {
    pub fn new(zone: Zone, ttl: u32) -> Self {
        let zone_name = Name::from_ascii(format!("{}.", zone.domain())).unwrap_or_else(|_| Name::root());
        Answerer { zone, zone_name, ttl }
    }

    /// The zone's SOA record (in the authority section of NXDOMAIN and NODATA answers).
    pub fn soa(&self, serial: u32) -> Record {
        let under = |label: &str| Name::from_ascii(label).and_then(|n| n.append_domain(&self.zone_name));
        let mname = under("ns.dns").unwrap_or_else(|_| self.zone_name.clone());
        let rname = under("hostmaster").unwrap_or_else(|_| self.zone_name.clone());
        let soa = SOA::new(mname, rname, serial, 7200, 1800, 86400, self.ttl);
        Record::from_rdata(self.zone_name.clone(), self.ttl, RData::SOA(soa))
    }

    fn name(&self, relative: &str) -> Option<Name> {
        Name::from_ascii(relative).ok()?.append_domain(&self.zone_name).ok()
    }

    fn record(&self, name: &Name, rdata: RData) -> Record {
        Record::from_rdata(name.clone(), self.ttl, rdata)
    }

    fn address_records<'a>(
        &self,
        name: &Name,
        ips: impl IntoIterator<Item = &'a IpAddr>,
        qtype: RecordType,
    ) -> Vec<Record> {
        let mut seen = HashSet::new();
        ips.into_iter()
            .filter(|ip| seen.insert(**ip))
            .filter_map(|ip| match (ip, qtype) {
                (IpAddr::V4(v4), RecordType::A) => Some(self.record(name, RData::A(A(*v4)))),
                (IpAddr::V6(v6), RecordType::AAAA) => Some(self.record(name, RData::AAAA(AAAA(*v6)))),
                _ => None,
            })
            .collect()
    }

    /// Every address record (A and AAAA) of `name`, for the additional section.
    fn all_address_records<'a>(&self, name: &Name, ips: impl IntoIterator<Item = &'a IpAddr> + Clone) -> Vec<Record> {
        let mut records = self.address_records(name, ips.clone(), RecordType::A);
        records.extend(self.address_records(name, ips, RecordType::AAAA));
        records
    }

    /// SRV records sharing one priority split a weight of 100 between them, as CoreDNS does.
    fn srv_records(&self, name: &Name, targets: Vec<(u16, Name)>) -> Vec<Record> {
        let weight = u16::try_from(100 / targets.len().max(1)).unwrap_or(1).max(1);
        targets
            .into_iter()
            .map(|(port, target)| self.record(name, RData::SRV(SRV::new(0, weight, port, target))))
            .collect()
    }

    /// Answers `qtype` for `qname` (a name inside the zone) from `index`.
    pub fn resolve(&self, index: &Index, qname: &Name, qtype: RecordType) -> Resolution {
        match self.zone.classify(&qname.to_ascii()) {
            ZoneName::Outside | ZoneName::Unknown => Resolution::nxdomain(),
            ZoneName::Apex => match qtype {
                RecordType::SOA => Resolution::records(vec![self.soa(index.serial)]),
                RecordType::NS => {
                    let ns = self.name("ns.dns").unwrap_or_else(|| self.zone_name.clone());
                    Resolution::records(vec![self.record(qname, RData::NS(NS(ns)))])
                }
                _ => Resolution::default(),
            },
            ZoneName::DnsVersion if qtype == RecordType::TXT => {
                Resolution::records(vec![self.record(qname, RData::TXT(TXT::new(vec![SPEC_VERSION.to_string()])))])
            }
            ZoneName::DnsVersion | ZoneName::Branch => Resolution::default(),
            ZoneName::Namespace { namespace } => {
                if index.namespaces.contains(&namespace) {
                    Resolution::default()
                } else {
                    Resolution::nxdomain()
                }
            }
            ZoneName::Pod { ip, .. } => Resolution::records(self.address_records(qname, [&ip], qtype)),
            ZoneName::Service { namespace, service } => match index.services.get(&(namespace.clone(), service.clone()))
            {
                Some(entry) => self.service(index, qname, qtype, &namespace, &service, entry),
                None => Resolution::nxdomain(),
            },
            ZoneName::Endpoint { namespace, service, endpoint } => {
                let Some(entry) = index.services.get(&(namespace.clone(), service.clone())) else {
                    return Resolution::nxdomain();
                };
                let ips: Vec<IpAddr> = index
                    .published_endpoints(&namespace, &service, entry)
                    .filter(|(_, e)| endpoint_label(e) == endpoint)
                    .map(|(_, e)| e.ip)
                    .collect();
                if ips.is_empty() {
                    return Resolution::nxdomain();
                }
                Resolution::records(self.address_records(qname, &ips, qtype))
            }
            ZoneName::ServiceProtocol { namespace, service, protocol } => {
                match index.services.get(&(namespace, service)) {
                    Some(entry) if entry.ports.iter().any(|p| p.protocol == protocol) => Resolution::default(),
                    _ => Resolution::nxdomain(),
                }
            }
            ZoneName::Port { namespace, service, protocol, port } => {
                let Some(entry) = index.services.get(&(namespace.clone(), service.clone())) else {
                    return Resolution::nxdomain();
                };
                if !entry.ports.iter().any(|p| p.protocol == protocol && p.name.eq_ignore_ascii_case(&port)) {
                    return Resolution::nxdomain();
                }
                if qtype != RecordType::SRV {
                    return Resolution::default();
                }
                self.port_srv(index, qname, &namespace, &service, entry, &protocol, &port)
            }
        }
    }

    fn service(
        &self,
        index: &Index,
        qname: &Name,
        qtype: RecordType,
        namespace: &str,
        service: &str,
        entry: &ServiceEntry,
    ) -> Resolution {
        match (&entry.kind, qtype) {
            (ServiceKind::ExternalName(target), _) => {
                let Ok(target) = Name::from_ascii(format!("{target}.")) else {
                    return Resolution::default();
                };
                let chase = (qtype != RecordType::CNAME).then(|| target.clone());
                let cname = self.record(qname, RData::CNAME(CNAME(target)));
                Resolution { answers: vec![cname], chase, ..Default::default() }
            }
            (ServiceKind::ClusterIp(ips), RecordType::A | RecordType::AAAA) => {
                Resolution::records(self.address_records(qname, ips, qtype))
            }
            (ServiceKind::ClusterIp(ips), RecordType::SRV) => {
                let targets = entry.ports.iter().map(|p| (p.port, qname.clone())).collect();
                Resolution {
                    answers: self.srv_records(qname, targets),
                    additionals: self.all_address_records(qname, ips),
                    ..Default::default()
                }
            }
            (ServiceKind::Headless, RecordType::A | RecordType::AAAA) => {
                let ips: Vec<IpAddr> =
                    index.published_endpoints(namespace, service, entry).map(|(_, e)| e.ip).collect();
                Resolution::records(self.address_records(qname, &ips, qtype))
            }
            (ServiceKind::Headless, RecordType::SRV) => {
                let mut targets = Vec::new();
                let mut additionals = Vec::new();
                for (slice, endpoint) in index.published_endpoints(namespace, service, entry) {
                    let Some(target) = self.endpoint_name(endpoint, qname) else { continue };
                    targets.extend(slice.ports.iter().map(|p| (p.port, target.clone())));
                    additionals.extend(self.all_address_records(&target, [&endpoint.ip]));
                }
                Resolution { answers: self.srv_records(qname, targets), additionals, ..Default::default() }
            }
            _ => Resolution::default(),
        }
    }

    /// SRV records of one named port: the Service's name and port for a ClusterIP
    /// Service, each published endpoint's name and port for a headless one.
    #[allow(clippy::too_many_arguments)]
    fn port_srv(
        &self,
        index: &Index,
        qname: &Name,
        namespace: &str,
        service: &str,
        entry: &ServiceEntry,
        protocol: &str,
        port: &str,
    ) -> Resolution {
        let matches = |p: &&crate::index::PortEntry| p.protocol == protocol && p.name.eq_ignore_ascii_case(port);
        let service_name = self.name(&format!("{service}.{namespace}.svc"));
        match (&entry.kind, service_name) {
            (ServiceKind::ClusterIp(ips), Some(service_name)) => {
                let targets = entry.ports.iter().filter(matches).map(|p| (p.port, service_name.clone())).collect();
                Resolution {
                    answers: self.srv_records(qname, targets),
                    additionals: self.all_address_records(&service_name, ips),
                    ..Default::default()
                }
            }
            (ServiceKind::Headless, Some(service_name)) => {
                let mut targets = Vec::new();
                let mut additionals = Vec::new();
                for (slice, endpoint) in index.published_endpoints(namespace, service, entry) {
                    let Some(target) = self.endpoint_name(endpoint, &service_name) else { continue };
                    let ports: Vec<_> = slice.ports.iter().filter(matches).collect();
                    if ports.is_empty() {
                        continue;
                    }
                    targets.extend(ports.iter().map(|p| (p.port, target.clone())));
                    additionals.extend(self.all_address_records(&target, [&endpoint.ip]));
                }
                Resolution { answers: self.srv_records(qname, targets), additionals, ..Default::default() }
            }
            _ => Resolution::default(),
        }
    }

    /// `HOST.SVC.NS.svc.ZONE` for an endpoint under the Service name `service_name`.
    fn endpoint_name(&self, endpoint: &EndpointEntry, service_name: &Name) -> Option<Name> {
        Name::from_ascii(endpoint_label(endpoint)).ok()?.append_domain(service_name).ok()
    }
}

/// The label an endpoint is known by under its Service: its hostname, else its dashed IP.
fn endpoint_label(endpoint: &EndpointEntry) -> String {
    endpoint.hostname.clone().unwrap_or_else(|| dashed_ip(endpoint.ip))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    use super::*;
    use crate::index::Indexed;

    fn answerer() -> Answerer {
        Answerer::new(Zone::new("cluster.local"), 5)
    }

    fn index() -> Index {
        let mut index = Index::default();
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": "ns"}})).unwrap();
        namespace.apply(&mut index);
        let services = [
            json!({"metadata": {"name": "dual", "namespace": "ns"}, "spec": {"clusterIP": "10.43.0.20",
                "clusterIPs": ["10.43.0.20", "fd00::20"], "ports": [{"name": "http", "port": 80}]}}),
            json!({"metadata": {"name": "head", "namespace": "ns"}, "spec": {"clusterIP": "None",
                "ports": [{"name": "http", "port": 80}]}}),
            json!({"metadata": {"name": "ext", "namespace": "ns"}, "spec": {"type": "ExternalName",
                "externalName": "db.example.com."}}),
        ];
        for service in services {
            serde_json::from_value::<Service>(service).unwrap().apply(&mut index);
        }
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "head-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "head"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.42.0.7"], "hostname": "h0"}, {"addresses": ["10.42.0.8"]}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))
        .unwrap();
        slice.apply(&mut index);
        index
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn rdata(resolution: &Resolution) -> Vec<String> {
        let mut all: Vec<String> = resolution.answers.iter().map(|r| r.data().to_string()).collect();
        all.sort();
        all
    }

    #[test]
    fn dual_stack_services_answer_each_family() {
        let (a, index) = (answerer(), index());
        let v4 = a.resolve(&index, &name("dual.ns.svc.cluster.local."), RecordType::A);
        assert_eq!(rdata(&v4), vec!["10.43.0.20"]);
        assert_eq!(v4.answers[0].ttl(), 5);
        let v6 = a.resolve(&index, &name("dual.ns.svc.cluster.local."), RecordType::AAAA);
        assert_eq!(rdata(&v6), vec!["fd00::20"]);
        let txt = a.resolve(&index, &name("dual.ns.svc.cluster.local."), RecordType::TXT);
        assert!(!txt.nxdomain && txt.answers.is_empty(), "NODATA for other types");
    }

    #[test]
    fn headless_srv_names_each_endpoint_with_its_target_port() {
        let (a, index) = (answerer(), index());
        let srv = a.resolve(&index, &name("_http._tcp.head.ns.svc.cluster.local."), RecordType::SRV);
        assert_eq!(
            rdata(&srv),
            vec!["0 50 8080 10-42-0-8.head.ns.svc.cluster.local.", "0 50 8080 h0.head.ns.svc.cluster.local."]
        );
        assert_eq!(srv.additionals.len(), 2);
        let missing = a.resolve(&index, &name("_grpc._tcp.head.ns.svc.cluster.local."), RecordType::SRV);
        assert!(missing.nxdomain);
    }

    #[test]
    fn external_names_are_cnames_to_chase() {
        let (a, index) = (answerer(), index());
        let ext = a.resolve(&index, &name("ext.ns.svc.cluster.local."), RecordType::A);
        assert_eq!(rdata(&ext), vec!["db.example.com."]);
        assert_eq!(ext.chase, Some(name("db.example.com.")));
        let cname = a.resolve(&index, &name("ext.ns.svc.cluster.local."), RecordType::CNAME);
        assert_eq!(cname.chase, None);
    }

    #[test]
    fn unknown_names_and_namespaces() {
        let (a, index) = (answerer(), index());
        assert!(a.resolve(&index, &name("nope.ns.svc.cluster.local."), RecordType::A).nxdomain);
        assert!(a.resolve(&index, &name("other.svc.cluster.local."), RecordType::A).nxdomain);
        assert!(!a.resolve(&index, &name("ns.svc.cluster.local."), RecordType::A).nxdomain);
        assert!(!a.resolve(&index, &name("ns.pod.cluster.local."), RecordType::A).nxdomain);
        let soa = a.resolve(&index, &name("cluster.local."), RecordType::SOA);
        assert_eq!(rdata(&soa).len(), 1);
        let RData::SOA(soa) = a.soa(42).data().clone() else { panic!("SOA") };
        assert_eq!((soa.serial(), soa.minimum()), (42, 5));
        assert_eq!(soa.rname().to_ascii(), "hostmaster.cluster.local.");
    }

    #[test]
    fn deleting_a_slice_forgets_its_endpoints() {
        let (a, mut index) = (answerer(), index());
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "head-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "head"}},
            "addressType": "IPv4", "endpoints": [],
        }))
        .unwrap();
        slice.delete(&mut index);
        let head = a.resolve(&index, &name("head.ns.svc.cluster.local."), RecordType::A);
        assert!(!head.nxdomain && head.answers.is_empty());
        assert!(index.slices.is_empty());
    }
}
