//! The nftables objects that serve a [`Model`]: the per-service chains, the affinity sets
//! and the elements of the table's maps. Pure and deterministic, so a sync can compare
//! the ruleset it wants with the one it last programmed and write only the difference
//! (see [`crate::transaction`]). The fixed part of the table (base chains, maps, the
//! masquerade and reject chains) is in [`crate::transaction::BASE`]; the layout and the
//! measurements behind it are in docs/adr (service proxy).
//!
//! Cluster-IP traffic of a service port without session affinity needs no object of its
//! own besides map elements: `service-ips` sends it to the shared chain
//! `spread-PROTO-N` (one per protocol and endpoint count N), which masquerades sources
//! outside the cluster CIDR and translates with one lookup of `ip daddr . PROTO dport .
//! numgen random mod N` in the map `cluster-ip-endpoints-PROTO`, whose elements list the
//! port's endpoints as 0..N. Loading a map element costs nft and the kernel far less
//! than a chain, a rule or an anonymous set.
//!
//! Chains per service port `K` = `NAMESPACE/NAME/PROTO/pPORT`, where they are needed:
//! - `svc-K`: cluster-IP traffic with ClientIP affinity: masquerades sources outside the
//!   cluster CIDR, then spreads over the endpoints internalTrafficPolicy allows.
//! - `ext-K`: NodePort, externalIPs and LoadBalancer IPs. Cluster policy masquerades
//!   and spreads over every endpoint; Local policy keeps the client address and spreads
//!   over this node's endpoints, except traffic from pods or the node itself, which goes
//!   to `clu-K` (every endpoint) as kube-proxy does.
//! - with ClientIP affinity, `ep-K__IP/PORT` per endpoint, which records the client in
//!   the dynamic set `aff-K__IP/PORT-tSECONDS` before translating; the spreading chain
//!   first sends clients found in a set to that endpoint.
//!
//! `ext-K` and `clu-K` spread without affinity with one `dnat ... numgen random mod N
//! map { ... }` rule.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::{Endpoint, Ipv4Cidr, Model, PortKey, Protocol, ServicePort};

/// The maps and sets of the base table whose elements follow the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Map {
    /// `ip . proto . port : verdict` for cluster, external and LoadBalancer IPs.
    ServiceIps,
    /// `proto . port : verdict` for node ports on the node's own addresses.
    ServiceNodePorts,
    /// Like ServiceIps, for ports without usable endpoints: reject or drop.
    NoEndpointServices,
    /// Like ServiceNodePorts, for ports without usable endpoints.
    NoEndpointNodePorts,
    /// `endpoint . endpoint`: a pod on this node reaching itself through a Service is
    /// masqueraded.
    Hairpin,
    /// `cluster ip . port . index : endpoint ip . port` for one protocol, indexes 0..N,
    /// for the shared `spread-PROTO-N` chains. (One map per protocol: nft 1.0.6 cannot
    /// add a rule that uses an existing map whose key has the protocol-less `th dport`.)
    ClusterIpEndpoints(Protocol),
}

impl Map {
    pub const ALL: [Map; 8] = [
        Map::ServiceIps,
        Map::ServiceNodePorts,
        Map::NoEndpointServices,
        Map::NoEndpointNodePorts,
        Map::Hairpin,
        Map::ClusterIpEndpoints(Protocol::Tcp),
        Map::ClusterIpEndpoints(Protocol::Udp),
        Map::ClusterIpEndpoints(Protocol::Sctp),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Map::ServiceIps => "service-ips",
            Map::ServiceNodePorts => "service-nodeports",
            Map::NoEndpointServices => "no-endpoint-services",
            Map::NoEndpointNodePorts => "no-endpoint-nodeports",
            Map::Hairpin => "hairpin",
            Map::ClusterIpEndpoints(Protocol::Tcp) => "cluster-ip-endpoints-tcp",
            Map::ClusterIpEndpoints(Protocol::Udp) => "cluster-ip-endpoints-udp",
            Map::ClusterIpEndpoints(Protocol::Sctp) => "cluster-ip-endpoints-sctp",
        }
    }
}

/// The verdict for a port whose endpoints exist, but none this traffic may use.
const DROP: &str = "drop";
/// The verdict for a port with no endpoint at all: refused at once.
const REJECT: &str = "goto reject-chain";

/// The model-dependent part of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Chain name → its rules, in order: the chains of one service port.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Chains several service ports use (`spread-PROTO-N`): name → rules. A name always
    /// has the same rules.
    pub shared_chains: BTreeMap<String, Vec<String>>,
    /// Affinity set name → its definition.
    pub sets: BTreeMap<String, String>,
    /// Map → key → value (empty for the members of a plain set).
    pub elements: BTreeMap<Map, BTreeMap<String, String>>,
}

/// What rendering needs besides the model.
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Cluster-IP traffic from outside this range is masqueraded (kube-proxy's --cluster-cidr).
    pub cluster_cidr: Option<Ipv4Cidr>,
}

impl Ruleset {
    pub fn render(model: &Model, options: &RenderOptions) -> Ruleset {
        let mut ruleset = Ruleset::default();
        for port in model.ports.values() {
            ruleset.add_port(port, options);
        }
        ruleset
    }

    fn element(&mut self, map: Map, key: String, value: &str) {
        self.elements.entry(map).or_default().insert(key, value.to_string());
    }

    /// Adds the objects of one service port (what a partial sync renders for a changed port).
    pub fn add_port(&mut self, port: &ServicePort, options: &RenderOptions) {
        let key = &port.key;
        let proto = key.protocol.nft();
        let service_key = |ip| format!("{ip} . {proto} . {}", key.port);

        let internal = port.internal_endpoints();
        if internal.is_empty() {
            let verdict = if port.internal_local && !port.cluster_endpoints.is_empty() { DROP } else { REJECT };
            self.element(Map::NoEndpointServices, service_key(port.cluster_ip), verdict);
        } else if port.affinity_seconds.is_none() {
            let chain = self.shared_spread(key.protocol, internal.len(), options);
            for (index, endpoint) in internal.iter().enumerate() {
                let element = format!("{} . {} . {index}", port.cluster_ip, key.port);
                self.element(
                    Map::ClusterIpEndpoints(key.protocol),
                    element,
                    &format!("{} . {}", endpoint.ip, endpoint.port),
                );
            }
            self.element(Map::ServiceIps, service_key(port.cluster_ip), &format!("goto {chain}"));
        } else {
            let chain = chain_name("svc", key);
            let mut rules = Vec::new();
            if let Some(cidr) = options.cluster_cidr.map(|cidr| cidr.trunc()) {
                rules.push(format!("ip daddr {} ip saddr != {cidr} jump mark-for-masquerade", port.cluster_ip));
            }
            rules.extend(self.spread(port, internal));
            self.chains.insert(chain.clone(), rules);
            self.element(Map::ServiceIps, service_key(port.cluster_ip), &format!("goto {chain}"));
        }

        if port.is_external() {
            let external = port.external_endpoints();
            let verdict = if external.is_empty() {
                if port.external_local && !port.cluster_endpoints.is_empty() {
                    DROP.to_string()
                } else {
                    REJECT.to_string()
                }
            } else {
                let chain = chain_name("ext", key);
                let rules = self.external_rules(port, options);
                self.chains.insert(chain.clone(), rules);
                format!("goto {chain}")
            };
            let (ip_map, port_map) = if external.is_empty() {
                (Map::NoEndpointServices, Map::NoEndpointNodePorts)
            } else {
                (Map::ServiceIps, Map::ServiceNodePorts)
            };
            for ip in &port.external_ips {
                self.element(ip_map, service_key(*ip), &verdict);
            }
            if let Some(node_port) = port.node_port {
                self.element(port_map, format!("{proto} . {node_port}"), &verdict);
            }
        }

        for key in hairpin_keys(port) {
            self.element(Map::Hairpin, key, "");
        }
    }

    /// Adds the shared chain that spreads cluster-IP traffic of `protocol` over `count`
    /// endpoints listed in `cluster-ip-endpoints-PROTO`; returns its name.
    fn shared_spread(&mut self, protocol: Protocol, count: usize, options: &RenderOptions) -> String {
        let proto = protocol.nft();
        let name = format!("spread-{proto}-{count}");
        let mut rules = Vec::new();
        if let Some(cidr) = options.cluster_cidr.map(|cidr| cidr.trunc()) {
            rules.push(format!("ip saddr != {cidr} jump mark-for-masquerade"));
        }
        rules.push(format!(
            "meta l4proto {proto} dnat ip to ip daddr . {proto} dport . numgen random mod {count} map @{}",
            Map::ClusterIpEndpoints(protocol).name()
        ));
        self.shared_chains.insert(name.clone(), rules);
        name
    }

    /// The rules of `ext-K` (its endpoints are not empty).
    fn external_rules(&mut self, port: &ServicePort, options: &RenderOptions) -> Vec<String> {
        if !port.external_local {
            let mut rules = vec!["jump mark-for-masquerade".to_string()];
            rules.extend(self.spread(port, &port.cluster_endpoints));
            return rules;
        }
        // Local: the client address is kept for traffic from outside. Pods and the node
        // itself may use every endpoint (a node has no "local client address" to keep).
        let mut rules = Vec::new();
        if !port.cluster_endpoints.is_empty() {
            let everywhere = chain_name("clu", &port.key);
            let spread = self.spread(port, &port.cluster_endpoints);
            self.chains.insert(everywhere.clone(), spread);
            if let Some(cidr) = options.cluster_cidr.map(|cidr| cidr.trunc()) {
                rules.push(format!("ip saddr {cidr} goto {everywhere}"));
            }
            rules.push("fib saddr type local jump mark-for-masquerade".to_string());
            rules.push(format!("fib saddr type local goto {everywhere}"));
        }
        rules.extend(self.spread(port, &port.local_endpoints));
        rules
    }

    /// Rules that send a new connection to one of `endpoints` (not empty), evenly at
    /// random, or to the endpoint a client is pinned to by session affinity.
    fn spread(&mut self, port: &ServicePort, endpoints: &[Endpoint]) -> Vec<String> {
        let proto = port.key.protocol.nft();
        let Some(seconds) = port.affinity_seconds else {
            return vec![match endpoints {
                [only] => format!("meta l4proto {proto} dnat ip to {}:{}", only.ip, only.port),
                _ => {
                    let choices = numbered(endpoints.iter().map(|e| format!("{} . {}", e.ip, e.port)));
                    format!("meta l4proto {proto} dnat ip to numgen random mod {} map {{ {choices} }}", endpoints.len())
                }
            }];
        };
        let mut rules = Vec::new();
        let mut targets = Vec::new();
        for endpoint in endpoints {
            let chain = format!("ep-{}__{}/{}", port.key, endpoint.ip, endpoint.port);
            let set = format!("aff-{}__{}/{}-t{seconds}", port.key, endpoint.ip, endpoint.port);
            self.sets
                .insert(set.clone(), format!("{{ type ipv4_addr ; flags dynamic,timeout ; timeout {seconds}s ; }}"));
            self.chains.insert(
                chain.clone(),
                vec![
                    format!("update @{set} {{ ip saddr }}"),
                    format!("meta l4proto {proto} dnat ip to {}:{}", endpoint.ip, endpoint.port),
                ],
            );
            rules.push(format!("ip saddr @{set} goto {chain}"));
            targets.push(chain);
        }
        rules.push(match targets.as_slice() {
            [only] => format!("goto {only}"),
            _ => {
                let choices = numbered(targets.iter().map(|c| format!("goto {c}")));
                format!("numgen random mod {} vmap {{ {choices} }}", targets.len())
            }
        });
        rules
    }
}

/// The hairpin set members one port needs: each address of its endpoints on this node,
/// once. Only a pod on this node can reach itself through this node's rules (a pod's
/// traffic is translated on its own node), so remote endpoints need no member.
/// Several ports may need the same member; [`crate::sync`] counts them.
pub fn hairpin_keys(port: &ServicePort) -> std::collections::BTreeSet<String> {
    port.local_endpoints.iter().map(|e| format!("{} . {}", e.ip, e.ip)).collect()
}

pub fn chain_name(kind: &str, key: &PortKey) -> String {
    format!("{kind}-{key}")
}

/// `0 : a, 1 : b, ...`
fn numbered(values: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for (i, value) in values.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{i} : {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn port(endpoints: &[(&str, bool)]) -> ServicePort {
        let ep = |ip: &str| Endpoint { ip: ip.parse().expect("ip"), port: 8080 };
        ServicePort {
            key: PortKey { namespace: "default".into(), name: "web".into(), protocol: Protocol::Tcp, port: 80 },
            cluster_ip: Ipv4Addr::new(10, 43, 0, 20),
            external_ips: Vec::new(),
            node_port: None,
            external_local: false,
            internal_local: false,
            affinity_seconds: None,
            cluster_endpoints: endpoints.iter().map(|(ip, _)| ep(ip)).collect(),
            local_endpoints: endpoints.iter().filter(|(_, local)| *local).map(|(ip, _)| ep(ip)).collect(),
        }
    }

    fn render(ports: Vec<ServicePort>) -> Ruleset {
        let model = Model { ports: ports.into_iter().map(|p| (p.key.clone(), p)).collect() };
        let options = RenderOptions { cluster_cidr: Some("10.42.0.0/16".parse().expect("cidr")) };
        Ruleset::render(&model, &options)
    }

    fn element<'a>(ruleset: &'a Ruleset, map: Map, key: &str) -> Option<&'a str> {
        ruleset.elements.get(&map)?.get(key).map(String::as_str)
    }

    #[test]
    fn cluster_ip_spreads_evenly_over_ready_endpoints_through_shared_objects() {
        let ruleset = render(vec![port(&[("10.42.0.5", true), ("10.42.1.5", false), ("10.42.2.5", false)])]);
        assert!(ruleset.chains.is_empty(), "no chain of its own without affinity: {:?}", ruleset.chains);
        assert_eq!(element(&ruleset, Map::ServiceIps, "10.43.0.20 . tcp . 80"), Some("goto spread-tcp-3"));
        assert_eq!(
            ruleset.shared_chains["spread-tcp-3"],
            [
                "ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
                "meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 3 map @cluster-ip-endpoints-tcp",
            ]
        );
        let endpoints = &ruleset.elements[&Map::ClusterIpEndpoints(Protocol::Tcp)];
        assert_eq!(
            endpoints.iter().map(|(k, v)| format!("{k} : {v}")).collect::<Vec<_>>(),
            [
                "10.43.0.20 . 80 . 0 : 10.42.0.5 . 8080",
                "10.43.0.20 . 80 . 1 : 10.42.1.5 . 8080",
                "10.43.0.20 . 80 . 2 : 10.42.2.5 . 8080",
            ]
        );
        // Only the endpoint on this node can be a pod reaching itself here.
        assert_eq!(ruleset.elements[&Map::Hairpin].keys().collect::<Vec<_>>(), ["10.42.0.5 . 10.42.0.5"]);
    }

    #[test]
    fn ports_with_as_many_endpoints_share_one_spread_chain() {
        let mut other = port(&[("10.42.0.7", false)]);
        other.key.name = "other".into();
        other.cluster_ip = Ipv4Addr::new(10, 43, 0, 21);
        let ruleset = render(vec![port(&[("10.42.0.5", true)]), other]);
        assert_eq!(ruleset.shared_chains.keys().collect::<Vec<_>>(), ["spread-tcp-1"]);
        assert_eq!(element(&ruleset, Map::ServiceIps, "10.43.0.21 . tcp . 80"), Some("goto spread-tcp-1"));
        assert_eq!(
            element(&ruleset, Map::ClusterIpEndpoints(Protocol::Tcp), "10.43.0.21 . 80 . 0"),
            Some("10.42.0.7 . 8080")
        );
    }

    #[test]
    fn no_endpoints_rejects_and_no_local_endpoints_drops() {
        let mut none = port(&[]);
        none.node_port = Some(30080);
        let ruleset = render(vec![none]);
        assert!(ruleset.chains.is_empty());
        assert_eq!(element(&ruleset, Map::NoEndpointServices, "10.43.0.20 . tcp . 80"), Some("goto reject-chain"));
        assert_eq!(element(&ruleset, Map::NoEndpointNodePorts, "tcp . 30080"), Some("goto reject-chain"));
        assert!(!ruleset.elements.contains_key(&Map::ServiceIps));

        let mut remote_only = port(&[("10.42.1.5", false)]);
        remote_only.internal_local = true;
        let ruleset = render(vec![remote_only]);
        assert_eq!(element(&ruleset, Map::NoEndpointServices, "10.43.0.20 . tcp . 80"), Some("drop"));
    }

    #[test]
    fn internal_local_uses_only_local_endpoints() {
        let mut local = port(&[("10.42.0.5", true), ("10.42.1.5", false)]);
        local.internal_local = true;
        let ruleset = render(vec![local]);
        assert_eq!(element(&ruleset, Map::ServiceIps, "10.43.0.20 . tcp . 80"), Some("goto spread-tcp-1"));
        assert_eq!(
            ruleset.elements[&Map::ClusterIpEndpoints(Protocol::Tcp)].values().collect::<Vec<_>>(),
            ["10.42.0.5 . 8080"]
        );
    }

    #[test]
    fn node_port_and_external_ips_with_cluster_policy_masquerade() {
        let mut external = port(&[("10.42.0.5", true), ("10.42.1.5", false)]);
        external.node_port = Some(30080);
        external.external_ips = vec![Ipv4Addr::new(192, 0, 2, 1)];
        let ruleset = render(vec![external]);
        let chain = &ruleset.chains["ext-default/web/tcp/p80"];
        assert_eq!(chain[0], "jump mark-for-masquerade");
        assert!(chain[1].contains("numgen random mod 2"), "{chain:?}");
        assert_eq!(element(&ruleset, Map::ServiceNodePorts, "tcp . 30080"), Some("goto ext-default/web/tcp/p80"));
        assert_eq!(element(&ruleset, Map::ServiceIps, "192.0.2.1 . tcp . 80"), Some("goto ext-default/web/tcp/p80"));
    }

    #[test]
    fn external_local_keeps_the_client_address_and_uses_local_endpoints() {
        let mut local = port(&[("10.42.0.5", true), ("10.42.1.5", false)]);
        local.node_port = Some(30080);
        local.external_local = true;
        let ruleset = render(vec![local.clone()]);
        assert_eq!(
            ruleset.chains["ext-default/web/tcp/p80"],
            [
                "ip saddr 10.42.0.0/16 goto clu-default/web/tcp/p80",
                "fib saddr type local jump mark-for-masquerade",
                "fib saddr type local goto clu-default/web/tcp/p80",
                "meta l4proto tcp dnat ip to 10.42.0.5:8080",
            ]
        );
        assert!(ruleset.chains["clu-default/web/tcp/p80"][0].contains("numgen random mod 2"));

        local.local_endpoints.clear();
        let ruleset = render(vec![local]);
        assert_eq!(element(&ruleset, Map::NoEndpointNodePorts, "tcp . 30080"), Some("drop"));
        assert!(!ruleset.chains.contains_key("ext-default/web/tcp/p80"));
    }

    #[test]
    fn client_ip_affinity_pins_through_per_endpoint_sets() {
        let mut sticky = port(&[("10.42.0.5", true), ("10.42.1.5", false)]);
        sticky.affinity_seconds = Some(60);
        let ruleset = render(vec![sticky]);
        let set = "aff-default/web/tcp/p80__10.42.0.5/8080-t60";
        assert_eq!(ruleset.sets[set], "{ type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }");
        let endpoint = "ep-default/web/tcp/p80__10.42.0.5/8080";
        assert_eq!(
            ruleset.chains[endpoint],
            [format!("update @{set} {{ ip saddr }}"), "meta l4proto tcp dnat ip to 10.42.0.5:8080".into()]
        );
        let service = &ruleset.chains["svc-default/web/tcp/p80"];
        assert_eq!(service[1], format!("ip saddr @{set} goto {endpoint}"));
        assert!(service[3].starts_with("numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/p80__10.42.0.5/8080"));
    }

    #[test]
    fn without_cluster_cidr_nothing_is_masqueraded_for_cluster_ips() {
        let model = Model { ports: [port(&[("10.42.0.5", true)])].into_iter().map(|p| (p.key.clone(), p)).collect() };
        let ruleset = Ruleset::render(&model, &RenderOptions::default());
        assert_eq!(
            ruleset.shared_chains["spread-tcp-1"],
            ["meta l4proto tcp dnat ip to ip daddr . tcp dport . numgen random mod 1 map @cluster-ip-endpoints-tcp"]
        );
    }
}
