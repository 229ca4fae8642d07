//! What a name inside the cluster zone asks for, per the Kubernetes DNS specification:
//! `SVC.NS.svc.ZONE`, `HOST.SVC.NS.svc.ZONE`, `_PORT._PROTO.SVC.NS.svc.ZONE`,
//! `A-B-C-D.NS.pod.ZONE` and the names between them and the zone apex.

use std::net::IpAddr;

/// A query name classified against the cluster zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZoneName {
    /// Not inside the zone: forwarded upstream.
    Outside,
    /// The zone apex itself (`cluster.local`).
    Apex,
    /// `dns-version.ZONE`: the TXT record naming the specification's version.
    DnsVersion,
    /// `svc.ZONE` or `pod.ZONE`: names that exist without records of their own.
    Branch,
    /// `NS.svc.ZONE` or `NS.pod.ZONE`: exists when the namespace does.
    Namespace { namespace: String },
    /// `SVC.NS.svc.ZONE`.
    Service { namespace: String, service: String },
    /// `HOST.SVC.NS.svc.ZONE`: one endpoint of a Service, by hostname or dashed IP.
    Endpoint { namespace: String, service: String, endpoint: String },
    /// `_PROTO.SVC.NS.svc.ZONE`: exists when the Service has a port of that protocol.
    ServiceProtocol { namespace: String, service: String, protocol: String },
    /// `_PORT._PROTO.SVC.NS.svc.ZONE`: a named port's SRV records.
    Port { namespace: String, service: String, protocol: String, port: String },
    /// `A-B-C-D.NS.pod.ZONE` (or an IPv6 address with `-` for `:`).
    Pod { namespace: String, ip: IpAddr },
    /// Inside the zone but naming nothing the specification defines.
    Unknown,
}

/// The cluster's zone (`cluster.local`), lower case and without the trailing dot.
#[derive(Clone, Debug)]
pub struct Zone {
    domain: String,
}

impl Zone {
    pub fn new(domain: &str) -> Self {
        Zone { domain: domain.trim_end_matches('.').to_ascii_lowercase() }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Classifies `name` (any case, with or without the trailing dot).
    pub fn classify(&self, name: &str) -> ZoneName {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let relative = if name == self.domain {
            ""
        } else {
            match name.strip_suffix(&self.domain).and_then(|rest| rest.strip_suffix('.')) {
                Some(rest) if !rest.is_empty() => rest,
                _ => return ZoneName::Outside,
            }
        };
        // Labels from the zone outwards: `web.default.svc` → ["svc", "default", "web"].
        let labels: Vec<&str> = if relative.is_empty() { Vec::new() } else { relative.rsplit('.').collect() };
        let owned = |s: &str| s.to_string();
        match labels.as_slice() {
            [] => ZoneName::Apex,
            ["dns-version"] => ZoneName::DnsVersion,
            ["svc"] | ["pod"] => ZoneName::Branch,
            ["svc" | "pod", namespace] => ZoneName::Namespace { namespace: owned(namespace) },
            ["svc", namespace, service] => ZoneName::Service { namespace: owned(namespace), service: owned(service) },
            ["svc", namespace, service, protocol] if protocol.starts_with('_') => ZoneName::ServiceProtocol {
                namespace: owned(namespace),
                service: owned(service),
                protocol: owned(&protocol[1..]),
            },
            ["svc", namespace, service, endpoint] => {
                ZoneName::Endpoint { namespace: owned(namespace), service: owned(service), endpoint: owned(endpoint) }
            }
            ["svc", namespace, service, protocol, port] if protocol.starts_with('_') && port.starts_with('_') => {
                ZoneName::Port {
                    namespace: owned(namespace),
                    service: owned(service),
                    protocol: owned(&protocol[1..]),
                    port: owned(&port[1..]),
                }
            }
            ["pod", namespace, address] => match parse_dashed_ip(address) {
                Some(ip) => ZoneName::Pod { namespace: owned(namespace), ip },
                None => ZoneName::Unknown,
            },
            _ => ZoneName::Unknown,
        }
    }
}

/// `10-42-0-5` → 10.42.0.5; `fd00--1` → fd00::1.
pub fn parse_dashed_ip(label: &str) -> Option<IpAddr> {
    let dotted = label.replace('-', ".");
    if let Ok(ip @ IpAddr::V4(_)) = dotted.parse() {
        return Some(ip);
    }
    match label.replace('-', ":").parse() {
        Ok(ip @ IpAddr::V6(_)) => Some(ip),
        _ => None,
    }
}

/// The label an endpoint without a hostname is known by: its address with dashes.
pub fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        Zone::new("cluster.local.")
    }

    #[test]
    fn service_endpoint_and_port_names() {
        let z = zone();
        assert_eq!(
            z.classify("Web.Default.svc.cluster.local."),
            ZoneName::Service { namespace: "default".into(), service: "web".into() }
        );
        assert_eq!(
            z.classify("web-0.web.default.svc.cluster.local"),
            ZoneName::Endpoint { namespace: "default".into(), service: "web".into(), endpoint: "web-0".into() }
        );
        assert_eq!(
            z.classify("_http._tcp.web.default.svc.cluster.local."),
            ZoneName::Port {
                namespace: "default".into(),
                service: "web".into(),
                protocol: "tcp".into(),
                port: "http".into()
            }
        );
        assert_eq!(
            z.classify("_tcp.web.default.svc.cluster.local."),
            ZoneName::ServiceProtocol { namespace: "default".into(), service: "web".into(), protocol: "tcp".into() }
        );
    }

    #[test]
    fn apex_branches_namespaces_and_outside() {
        let z = zone();
        assert_eq!(z.classify("cluster.local."), ZoneName::Apex);
        assert_eq!(z.classify("svc.cluster.local."), ZoneName::Branch);
        assert_eq!(
            z.classify("kube-system.svc.cluster.local."),
            ZoneName::Namespace { namespace: "kube-system".into() }
        );
        assert_eq!(z.classify("dns-version.cluster.local."), ZoneName::DnsVersion);
        assert_eq!(z.classify("example.com."), ZoneName::Outside);
        assert_eq!(z.classify("notcluster.local."), ZoneName::Outside);
        assert_eq!(z.classify("a.b.c.d.e.svc.cluster.local."), ZoneName::Unknown);
        assert_eq!(z.classify("x.cluster.local."), ZoneName::Unknown);
    }

    #[test]
    fn pod_names_carry_dashed_addresses() {
        let z = zone();
        assert_eq!(
            z.classify("10-42-0-5.default.pod.cluster.local."),
            ZoneName::Pod { namespace: "default".into(), ip: "10.42.0.5".parse().unwrap() }
        );
        assert_eq!(
            z.classify("fd00--1.default.pod.cluster.local."),
            ZoneName::Pod { namespace: "default".into(), ip: "fd00::1".parse().unwrap() }
        );
        assert_eq!(z.classify("10-42-0.default.pod.cluster.local."), ZoneName::Unknown);
        assert_eq!(dashed_ip("10.42.0.5".parse().unwrap()), "10-42-0-5");
        assert_eq!(dashed_ip("fd00::1".parse().unwrap()), "fd00--1");
    }
}
