//! A pod's resolver configuration (its /etc/resolv.conf, written by the runtime from the
//! CRI sandbox config) per dnsPolicy, as the kubelet forms it: ClusterFirst points at the
//! cluster DNS with the namespace's search path and `ndots:5`; Default copies the host's;
//! None starts empty; `dnsConfig` is merged into every policy; the result is cut to the
//! resolver's limits.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{PodDNSConfig, PodSpec};
use skiff_dns::resolvconf::ResolvConf;

use crate::runtime::DnsConfig;

/// At most this many nameservers are used (the C library's MAXNS).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains are kept.
pub const MAX_SEARCH_PATHS: usize = 32;
/// At most this many characters on the search line.
pub const MAX_SEARCH_LINE_CHARS: usize = 2048;
/// Longer search domains make some C libraries abort; they are dropped.
const MAX_DOMAIN_LENGTH: usize = 253;
/// The options ClusterFirst pods get.
pub const CLUSTER_FIRST_OPTIONS: &[&str] = &["ndots:5"];

/// What a node knows to form pods' DNS: the cluster DNS, the cluster domain and the
/// host's own resolver configuration.
#[derive(Clone, Debug, Default)]
pub struct ClusterDns {
    /// The cluster DNS servers (`--cluster-dns`); empty: ClusterFirst falls back to Default.
    pub servers: Vec<IpAddr>,
    /// `--cluster-domain` (cluster.local).
    pub domain: String,
    /// The host's resolv.conf.
    pub host: ResolvConf,
}

/// A pod's DNS configuration and what had to be cut or fell back on the way: warning
/// events as the kubelet records them (reason, message).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodDns {
    pub config: DnsConfig,
    pub warnings: Vec<(&'static str, String)>,
}

/// Which resolver configuration a pod starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Cluster,
    Host,
    None,
}

fn kind(spec: &PodSpec) -> Kind {
    let host_network = spec.host_network.unwrap_or(false);
    match spec.dns_policy.as_deref().unwrap_or("ClusterFirst") {
        "None" => Kind::None,
        "ClusterFirstWithHostNet" => Kind::Cluster,
        "Default" => Kind::Host,
        // ClusterFirst (and anything the API server let through): host-network pods fall
        // back to the host's configuration.
        _ if host_network => Kind::Host,
        _ => Kind::Cluster,
    }
}

/// The DNS configuration of a pod in `namespace` with `spec` on a node with `cluster`.
pub fn pod_dns(spec: &PodSpec, namespace: &str, cluster: &ClusterDns) -> PodDns {
    let mut warnings = Vec::new();
    let host = || DnsConfig {
        servers: cluster.host.nameservers.iter().map(IpAddr::to_string).collect(),
        searches: cluster.host.searches.clone(),
        options: cluster.host.options.clone(),
    };
    let mut config = match kind(spec) {
        Kind::None => DnsConfig::default(),
        Kind::Host => host(),
        Kind::Cluster if cluster.servers.is_empty() => {
            warnings.push((
                "MissingClusterDNS",
                "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. \
                 Falling back to \"Default\" policy."
                    .to_string(),
            ));
            host()
        }
        Kind::Cluster => {
            let mut searches = Vec::new();
            if !cluster.domain.is_empty() {
                let domain = &cluster.domain;
                searches = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()];
            }
            searches.extend(cluster.host.searches.iter().cloned());
            DnsConfig {
                servers: cluster.servers.iter().map(IpAddr::to_string).collect(),
                searches: without_duplicates(searches),
                options: CLUSTER_FIRST_OPTIONS.iter().map(|o| o.to_string()).collect(),
            }
        }
    };
    if let Some(extra) = &spec.dns_config {
        merge(&mut config, extra);
    }
    fit_limits(&mut config, &mut warnings);
    PodDns { config, warnings }
}

/// Adds the pod's own dnsConfig: nameservers and searches after the policy's (without
/// repeats), options by name (the pod's value wins).
fn merge(config: &mut DnsConfig, extra: &PodDNSConfig) {
    config.servers.extend(extra.nameservers.iter().flatten().cloned());
    config.servers = without_duplicates(std::mem::take(&mut config.servers));
    config.searches.extend(extra.searches.iter().flatten().cloned());
    config.searches = without_duplicates(std::mem::take(&mut config.searches));
    let mut options: Vec<(String, String)> = config
        .options
        .iter()
        .map(|o| match o.split_once(':') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (o.clone(), String::new()),
        })
        .collect();
    for option in extra.options.iter().flatten() {
        let name = option.name.clone().unwrap_or_default();
        let value = option.value.clone().unwrap_or_default();
        match options.iter_mut().find(|(n, _)| *n == name) {
            Some(existing) => existing.1 = value,
            None => options.push((name, value)),
        }
    }
    config.options = options
        .into_iter()
        .map(|(name, value)| if value.is_empty() { name } else { format!("{name}:{value}") })
        .collect();
}

/// Cuts nameservers and search domains to what resolvers accept.
fn fit_limits(config: &mut DnsConfig, warnings: &mut Vec<(&'static str, String)>) {
    if config.servers.len() > MAX_NAMESERVERS {
        config.servers.truncate(MAX_NAMESERVERS);
        warnings.push((
            "DNSConfigForming",
            format!(
            "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: {}",
            config.servers.join(" ")
        ),
        ));
    }
    let mut exceeded = false;
    if config.searches.len() > MAX_SEARCH_PATHS {
        config.searches.truncate(MAX_SEARCH_PATHS);
        exceeded = true;
    }
    let before = config.searches.len();
    config.searches.retain(|s| s.len() <= MAX_DOMAIN_LENGTH);
    exceeded |= config.searches.len() != before;
    while config.searches.join(" ").len() > MAX_SEARCH_LINE_CHARS {
        config.searches.pop();
        exceeded = true;
    }
    if exceeded {
        warnings.push((
            "DNSConfigForming",
            format!(
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
                config.searches.join(" ")
            ),
        ));
    }
}

fn without_duplicates(items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().filter(|item| seen.insert(item.clone())).collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    use super::*;

    fn node() -> ClusterDns {
        ClusterDns {
            servers: vec!["10.43.0.10".parse().unwrap()],
            domain: "cluster.local".into(),
            host: ResolvConf {
                nameservers: vec!["192.168.1.1".parse().unwrap()],
                searches: vec!["lan.example".into()],
                options: vec!["timeout:2".into()],
            },
        }
    }

    fn spec(policy: Option<&str>, host_network: bool) -> PodSpec {
        PodSpec { dns_policy: policy.map(str::to_string), host_network: Some(host_network), ..Default::default() }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cluster_first_points_at_the_cluster_dns_with_namespace_searches() {
        for policy in [None, Some("ClusterFirst")] {
            let dns = pod_dns(&spec(policy, false), "shop", &node());
            assert_eq!(dns.config.servers, strings(&["10.43.0.10"]));
            assert_eq!(
                dns.config.searches,
                strings(&["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan.example"])
            );
            assert_eq!(dns.config.options, strings(&["ndots:5"]));
            assert!(dns.warnings.is_empty());
        }
    }

    #[test]
    fn host_network_pods_use_the_host_unless_cluster_first_with_host_net() {
        let host = DnsConfig {
            servers: strings(&["192.168.1.1"]),
            searches: strings(&["lan.example"]),
            options: strings(&["timeout:2"]),
        };
        assert_eq!(pod_dns(&spec(Some("ClusterFirst"), true), "shop", &node()).config, host);
        assert_eq!(pod_dns(&spec(Some("Default"), false), "shop", &node()).config, host);
        let with_host_net = pod_dns(&spec(Some("ClusterFirstWithHostNet"), true), "shop", &node());
        assert_eq!(with_host_net.config.servers, strings(&["10.43.0.10"]));
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_the_host_with_a_warning() {
        let mut cluster = node();
        cluster.servers.clear();
        let dns = pod_dns(&spec(None, false), "shop", &cluster);
        assert_eq!(dns.config.servers, strings(&["192.168.1.1"]));
        assert_eq!(dns.warnings.len(), 1);
    }

    #[test]
    fn none_takes_only_the_pods_dns_config_and_every_policy_merges_it() {
        let mut pod = spec(Some("None"), false);
        pod.dns_config = Some(PodDNSConfig {
            nameservers: Some(strings(&["1.1.1.1"])),
            searches: Some(strings(&["my.example"])),
            options: Some(vec![
                PodDNSConfigOption { name: Some("ndots".into()), value: Some("2".into()) },
                PodDNSConfigOption { name: Some("edns0".into()), value: None },
            ]),
        });
        let none = pod_dns(&pod, "shop", &node()).config;
        assert_eq!(none.servers, strings(&["1.1.1.1"]));
        assert_eq!(none.searches, strings(&["my.example"]));
        assert_eq!(none.options, strings(&["ndots:2", "edns0"]));

        pod.dns_policy = Some("ClusterFirst".into());
        let cluster = pod_dns(&pod, "shop", &node()).config;
        assert_eq!(cluster.servers, strings(&["10.43.0.10", "1.1.1.1"]));
        assert_eq!(cluster.searches.last().map(String::as_str), Some("my.example"));
        assert_eq!(cluster.options, strings(&["ndots:2", "edns0"]), "the pod's ndots replaces the default");

        assert_eq!(pod_dns(&spec(Some("None"), false), "shop", &node()).config, DnsConfig::default());
    }

    #[test]
    fn limits_cut_nameservers_and_search_paths() {
        let mut pod = spec(Some("None"), false);
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.{}", "x".repeat(60))).collect();
        pod.dns_config = Some(PodDNSConfig {
            nameservers: Some(strings(&["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"])),
            searches: Some(many),
            options: None,
        });
        let dns = pod_dns(&pod, "shop", &node());
        assert_eq!(dns.config.servers.len(), MAX_NAMESERVERS);
        assert!(dns.config.searches.len() <= MAX_SEARCH_PATHS);
        assert!(dns.config.searches.join(" ").len() <= MAX_SEARCH_LINE_CHARS);
        assert_eq!(dns.warnings.len(), 2);
    }
}
