//! What a node looks like: the template shared by every node of an agent (capacity,
//! labels, taints; one copy even for thousands of simulated nodes) and the few values
//! each node has of its own (name, address, pod CIDR). Parsers for the command-line forms
//! the kubelet uses (`--node-labels`, `--register-with-taints`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::ipam::Ipv4Cidr;
use crate::podworker::Backoffs;

/// What every node of this agent shares.
#[derive(Clone, Debug)]
pub struct NodeTemplate {
    /// Capacity by resource name (cpu, memory, pods, ephemeral-storage, extended
    /// resources such as nvidia.com/gpu).
    pub capacity: BTreeMap<String, Quantity>,
    /// What pods may use; the capacity when None (a real node subtracts system-reserved).
    pub allocatable: Option<BTreeMap<String, Quantity>>,
    /// Labels beyond the kubernetes.io/hostname|os|arch ones the agent always sets.
    pub labels: BTreeMap<String, String>,
    /// Taints the node registers with (the kubelet's `--register-with-taints`).
    pub taints: Vec<Taint>,
    pub os: String,
    pub arch: String,
    /// Reported as nodeInfo.kubeletVersion (kubectl's VERSION column).
    pub version: String,
}

impl NodeTemplate {
    /// A simulated node as KWOK's default: 32 CPUs, 256 GiB, 110 pods.
    pub fn simulated() -> Self {
        NodeTemplate {
            capacity: parse_resources("cpu=32,memory=256Gi,pods=110,ephemeral-storage=1Ti").expect("valid literal"),
            allocatable: None,
            labels: BTreeMap::from([("type".to_string(), "simulated".to_string())]),
            taints: Vec::new(),
            os: "linux".into(),
            arch: std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
            version: format!("v1.33.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// One node's own values.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub name: String,
    pub address: IpAddr,
    pub pod_cidr: Ipv4Cidr,
}

/// How often the agent reports, as the kubelet's flags of the same meaning.
#[derive(Clone, Debug)]
pub struct Timing {
    /// The Lease's leaseDurationSeconds (kubelet: 40).
    pub lease_duration_seconds: i32,
    /// How often each Lease is renewed (kubelet: 10 s, a quarter of the duration).
    pub renew_interval: Duration,
    /// How often the Node's conditions are re-posted when nothing changed (kubelet's
    /// nodeStatusReportFrequency: 5 min). The Lease, not this, says the node is alive.
    pub status_report_interval: Duration,
    /// Back-off of image pulls and container restarts (the kubelet's: 10 s to 5 min).
    pub backoffs: Backoffs,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            lease_duration_seconds: 40,
            renew_interval: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            backoffs: Backoffs::default(),
        }
    }
}

/// Names, addresses and pod CIDRs for `count` simulated nodes: `PREFIX-0` … with
/// addresses from 198.18.0.0/15 (the benchmarking range, never routed) and the i-th
/// subnet of `cluster_cidr` as pod CIDR.
pub fn simulated_identities(
    prefix: &str,
    count: usize,
    cluster_cidr: Ipv4Cidr,
    node_mask: u8,
) -> Result<Vec<NodeIdentity>, String> {
    let subnets = cluster_cidr.subnet_count(node_mask);
    if (count as u64) > subnets {
        return Err(format!(
            "{count} nodes need {count} /{node_mask} pod subnets but {cluster_cidr} has {subnets}: \
             pass a larger --cluster-cidr or a longer --node-cidr-mask-size"
        ));
    }
    let addresses: Ipv4Cidr = "198.18.0.0/15".parse().expect("valid literal");
    if count as u64 > addresses.size() - 2 {
        return Err(format!("at most {} simulated nodes", addresses.size() - 2));
    }
    Ok((0..count)
        .map(|i| NodeIdentity {
            name: format!("{prefix}-{i}"),
            address: IpAddr::V4(addresses.nth(i as u64 + 1).unwrap_or(Ipv4Addr::UNSPECIFIED)),
            pod_cidr: cluster_cidr.subnet(node_mask, i as u64).expect("counted above"),
        })
        .collect())
}

/// `a=b,c=d` as a map. Keys must be non-empty.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| format!("label {pair:?} is not key=value"))?;
        if key.is_empty() {
            return Err(format!("label {pair:?} has an empty key"));
        }
        labels.insert(key.to_string(), value.to_string());
    }
    Ok(labels)
}

/// `cpu=32,memory=256Gi,nvidia.com/gpu=4` as a resource list.
pub fn parse_resources(text: &str) -> Result<BTreeMap<String, Quantity>, String> {
    parse_labels(text)?
        .into_iter()
        .map(|(name, value)| {
            if value.is_empty() || !value.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                Err(format!("resource {name}={value:?}: not a quantity"))
            } else {
                Ok((name, Quantity(value)))
            }
        })
        .collect()
}

/// `key=value:Effect,key:Effect` as taints (the kubelet's `--register-with-taints`).
pub fn parse_taints(text: &str) -> Result<Vec<Taint>, String> {
    let mut taints = Vec::new();
    for spec in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key_value, effect) =
            spec.rsplit_once(':').ok_or_else(|| format!("taint {spec:?} is not key[=value]:Effect"))?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(format!("taint {spec:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"));
        }
        let (key, value) = match key_value.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (key_value, None),
        };
        if key.is_empty() {
            return Err(format!("taint {spec:?} has an empty key"));
        }
        taints.push(Taint { key: key.into(), value, effect: effect.into(), time_added: None });
    }
    Ok(taints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubelet_flag_forms() {
        assert_eq!(parse_labels("a=b, zone=z1,,").unwrap().len(), 2);
        assert!(parse_labels("novalue").is_err());
        let resources = parse_resources("cpu=4,nvidia.com/gpu=2").unwrap();
        assert_eq!(resources["nvidia.com/gpu"].0, "2");
        assert!(parse_resources("cpu=lots").is_err());
        let taints = parse_taints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule").unwrap();
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[0].value.as_deref(), Some("gpu"));
        assert_eq!(taints[1].value, None);
        assert_eq!(taints[1].effect, "PreferNoSchedule");
        assert!(parse_taints("a=b:Sometimes").is_err());
        assert!(parse_taints("a=b").is_err());
    }

    #[test]
    fn simulated_nodes_get_distinct_addresses_and_subnets() {
        let ids = simulated_identities("sim", 3, "10.42.0.0/16".parse().unwrap(), 24).unwrap();
        assert_eq!(ids[2].name, "sim-2");
        assert_eq!(ids[0].address.to_string(), "198.18.0.1");
        assert_eq!(ids[2].pod_cidr.to_string(), "10.42.2.0/24");
        let err = simulated_identities("sim", 300, "10.42.0.0/16".parse().unwrap(), 24).unwrap_err();
        assert!(err.contains("--cluster-cidr"), "{err}");
    }
}
