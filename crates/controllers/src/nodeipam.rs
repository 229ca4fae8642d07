//! Node IPAM controller: gives every Node without a pod CIDR the lowest free subnet of the
//! cluster CIDR, in spec.podCIDR and spec.podCIDRs (kube-controller-manager's
//! node-ipam-controller with the RangeAllocator, `--allocate-node-cidrs`).
//!
//! Subnets already on nodes count as taken, whoever set them (simulated nodes choose
//! their own); a deleted node frees its subnet. When the range is exhausted the node gets
//! a Warning event `CIDRNotAvailable` and waits until a subnet is freed. The API server
//! forbids changing a pod CIDR once set, so an assignment is final.
//!
//! All state lives in one task that follows a Node watch: a re-list (watch restart)
//! rebuilds the taken set from scratch, so a deletion missed meanwhile is not leaked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;
use serde_json::json;
use skiff_client::events::{reference, Recorder};
use skiff_client::is_status;
use tracing::{debug, info, warn};

use crate::Context;

pub const NAME: &str = "node-ipam-controller";
/// The component kube-controller-manager's range allocator reports events as.
const REPORTER: &str = "cidrAllocator";
/// How soon a failed assignment is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The range node pod CIDRs are cut from (`--cluster-cidr`, `--node-cidr-mask-size`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterCidr {
    pub cidr: Ipv4Net,
    pub node_mask_size: u8,
}

impl ClusterCidr {
    /// The range from its flags' text (`--cluster-cidr 10.42.0.0/16 --node-cidr-mask-size 24`),
    /// checked as the allocator will use it.
    pub fn parse(cidr: &str, node_mask_size: u8) -> Result<Self, CidrError> {
        let cidr: Ipv4Net = cidr.parse().map_err(|_| CidrError::Invalid(cidr.to_string()))?;
        let range = ClusterCidr { cidr, node_mask_size };
        CidrSet::new(range)?;
        Ok(range)
    }
}

impl Default for ClusterCidr {
    /// k3s' defaults: 10.42.0.0/16, a /24 per node.
    fn default() -> Self {
        ClusterCidr { cidr: "10.42.0.0/16".parse().expect("valid literal"), node_mask_size: 24 }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("{0:?} is not an IPv4 CIDR (a.b.c.d/n)")]
    Invalid(String),
    #[error("node CIDR mask size /{mask} must be at least the cluster CIDR's /{cluster} and at most /32")]
    MaskOutsideRange { mask: u8, cluster: u8 },
    #[error("node CIDR mask size /{mask} cuts {cluster} into more than 2^16 subnets")]
    TooManySubnets { mask: u8, cluster: Ipv4Net },
    #[error("{cidr} is not inside the cluster CIDR {cluster}")]
    OutsideCluster { cidr: Ipv4Net, cluster: Ipv4Net },
}

/// Which node subnets of the cluster CIDR are taken: one bit per subnet (at most 2^16).
#[derive(Clone, Debug)]
pub struct CidrSet {
    range: ClusterCidr,
    used: Vec<bool>,
}

impl CidrSet {
    pub fn new(range: ClusterCidr) -> Result<Self, CidrError> {
        let (cluster, mask) = (range.cidr.prefix_len(), range.node_mask_size);
        if mask < cluster || mask > 32 {
            return Err(CidrError::MaskOutsideRange { mask, cluster });
        }
        if mask - cluster > 16 {
            return Err(CidrError::TooManySubnets { mask, cluster: range.cidr });
        }
        let range = ClusterCidr { cidr: range.cidr.trunc(), node_mask_size: mask };
        Ok(CidrSet { range, used: vec![false; 1usize << (mask - cluster)] })
    }

    fn subnet(&self, index: usize) -> Ipv4Net {
        let step = 1u64 << (32 - u32::from(self.range.node_mask_size));
        let base = u64::from(u32::from(self.range.cidr.network())) + index as u64 * step;
        Ipv4Net::new((base as u32).into(), self.range.node_mask_size).expect("mask checked in new")
    }

    /// The subnet indices `cidr` overlaps (a node CIDR of another size covers several or
    /// part of one).
    fn indices(&self, cidr: Ipv4Net) -> Result<std::ops::Range<usize>, CidrError> {
        let cluster = self.range.cidr;
        if !(cluster.contains(&cidr) || cidr.contains(&cluster)) {
            return Err(CidrError::OutsideCluster { cidr, cluster });
        }
        let shift = 32 - u32::from(self.range.node_mask_size);
        let offset = |addr: std::net::Ipv4Addr| {
            (u32::from(addr).max(u32::from(cluster.network())).min(u32::from(cluster.broadcast()))
                - u32::from(cluster.network()))
                >> shift
        };
        Ok(offset(cidr.network()) as usize..offset(cidr.broadcast()) as usize + 1)
    }

    /// Takes the lowest free subnet, or None when all are taken.
    pub fn allocate_next(&mut self) -> Option<Ipv4Net> {
        let index = self.used.iter().position(|used| !used)?;
        self.used[index] = true;
        Some(self.subnet(index))
    }

    /// Marks a subnet found on a node as taken.
    pub fn occupy(&mut self, cidr: Ipv4Net) -> Result<(), CidrError> {
        let indices = self.indices(cidr)?;
        self.used[indices].fill(true);
        Ok(())
    }

    /// Frees a node's subnet (nothing happens for one outside the cluster CIDR).
    pub fn release(&mut self, cidr: Ipv4Net) {
        if let Ok(indices) = self.indices(cidr) {
            self.used[indices].fill(false);
        }
    }
}

/// The IPv4 pod CIDRs a node carries (podCIDRs, or the older podCIDR alone).
pub fn node_cidrs(node: &Node) -> Vec<Ipv4Net> {
    let spec = node.spec.as_ref();
    let listed = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    let texts = if listed.is_empty() { spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect() } else { listed };
    texts.iter().filter_map(|t| t.parse().ok()).collect()
}

/// The controller's view: the subnets taken and by whom, and the nodes still waiting.
struct Allocator {
    set: CidrSet,
    /// Subnets counted as taken, by node name.
    taken: HashMap<String, Vec<Ipv4Net>>,
    /// Nodes without a pod CIDR, by name (the latest object seen).
    waiting: BTreeMap<String, Node>,
    /// Waiting nodes already told CIDRNotAvailable (told once until a subnet is freed).
    told_exhausted: BTreeSet<String>,
}

impl Allocator {
    fn new(set: CidrSet) -> Self {
        Allocator { set, taken: HashMap::new(), waiting: BTreeMap::new(), told_exhausted: BTreeSet::new() }
    }

    /// Follows a node as it is now: counts its subnets, or queues it for one.
    fn observe(&mut self, node: &Node) {
        let name = node.name_any();
        let cidrs = node_cidrs(node);
        if cidrs.is_empty() {
            self.waiting.insert(name, node.clone());
            return;
        }
        self.waiting.remove(&name);
        self.told_exhausted.remove(&name);
        if self.taken.get(&name) == Some(&cidrs) {
            return;
        }
        self.forget(&name);
        let mut counted = Vec::new();
        for cidr in cidrs {
            match self.set.occupy(cidr) {
                Ok(()) => counted.push(cidr),
                // As kube-controller-manager: a subnet outside the range is the node's own business.
                Err(e) => debug!(node = %name, error = %e, "pod CIDR not counted"),
            }
        }
        self.taken.insert(name, counted);
    }

    /// Releases a node's subnets.
    fn forget(&mut self, name: &str) {
        for cidr in self.taken.remove(name).unwrap_or_default() {
            self.set.release(cidr);
        }
    }

    /// Forgets a deleted node; true when that freed a subnet.
    fn deleted(&mut self, name: &str) -> bool {
        let freed = self.taken.get(name).is_some_and(|cidrs| !cidrs.is_empty());
        self.forget(name);
        self.waiting.remove(name);
        self.told_exhausted.remove(name);
        freed
    }
}

pub async fn run(context: Arc<Context>) {
    let Some(range) = context.cluster_cidr else {
        info!("no cluster CIDR: node pod CIDRs are not allocated");
        return;
    };
    let set = match CidrSet::new(range) {
        Ok(set) => set,
        Err(e) => {
            warn!(error = %e, "node IPAM disabled");
            return;
        }
    };
    let nodes = Api::<Node>::all(context.client.clone());
    let events = context.events.reporting_as(REPORTER);
    let mut allocator = Allocator::new(set.clone());
    let mut listing: Vec<Node> = Vec::new();
    let mut stream = std::pin::pin!(watcher(nodes.clone(), watcher::Config::default()).default_backoff());
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = stream.next() => match event {
                None => return,
                Some(Err(e)) => debug!(error = %e, "node watch failed"),
                Some(Ok(Event::Init)) => listing.clear(),
                Some(Ok(Event::InitApply(node))) => listing.push(node),
                Some(Ok(Event::InitDone)) => {
                    // Everything taken is known before anything new is handed out.
                    allocator = Allocator::new(set.clone());
                    for node in listing.drain(..) {
                        allocator.observe(&node);
                    }
                }
                Some(Ok(Event::Apply(node))) => allocator.observe(&node),
                Some(Ok(Event::Delete(node))) => {
                    if allocator.deleted(&node.name_any()) {
                        // The freed subnet may serve a node that was told there was none.
                        allocator.told_exhausted.clear();
                    }
                }
            },
            () = retry => retry_at = None,
        }
        if !assign_waiting(&mut allocator, &nodes, &events).await && retry_at.is_none() {
            retry_at = Some(tokio::time::Instant::now() + RETRY);
        }
    }
}

/// Gives each waiting node a subnet. False when a write failed (try again later).
async fn assign_waiting(allocator: &mut Allocator, nodes: &Api<Node>, events: &Recorder) -> bool {
    let mut all_written = true;
    let waiting: Vec<Node> = allocator.waiting.values().cloned().collect();
    for node in waiting {
        let name = node.name_any();
        if allocator.told_exhausted.contains(&name) {
            continue;
        }
        let Some(cidr) = allocator.set.allocate_next() else {
            warn!(node = %name, "no pod CIDR left in the cluster CIDR");
            let note = format!("Node {name} status is now: CIDRNotAvailable");
            events.warning(reference(&node), "CIDRAssignment", "CIDRNotAvailable", note);
            allocator.told_exhausted.insert(name);
            continue;
        };
        let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
        match nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(updated) => {
                info!(node = %name, %cidr, "set node pod CIDR");
                allocator.observe(&updated);
            }
            Err(e) => {
                allocator.set.release(cidr);
                if is_status(&e, &[404]) {
                    allocator.waiting.remove(&name);
                } else {
                    // 422: the node got a pod CIDR meanwhile; its watch event counts it.
                    debug!(node = %name, error = %e, "setting the node's pod CIDR failed");
                    all_written = false;
                }
            }
        }
    }
    all_written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(cidr: &str, mask: u8) -> ClusterCidr {
        ClusterCidr { cidr: cidr.parse().unwrap(), node_mask_size: mask }
    }

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn allocates_the_lowest_free_subnet() {
        let mut set = CidrSet::new(ClusterCidr::default()).unwrap();
        set.occupy(net("10.42.1.0/24")).unwrap();
        assert_eq!(set.allocate_next(), Some(net("10.42.0.0/24")));
        assert_eq!(set.allocate_next(), Some(net("10.42.2.0/24")));
        set.release(net("10.42.0.0/24"));
        assert_eq!(set.allocate_next(), Some(net("10.42.0.0/24")));
    }

    #[test]
    fn exhausts_and_reuses_freed_subnets() {
        let mut set = CidrSet::new(range("10.99.0.0/23", 24)).unwrap();
        assert_eq!(set.allocate_next(), Some(net("10.99.0.0/24")));
        assert_eq!(set.allocate_next(), Some(net("10.99.1.0/24")));
        assert_eq!(set.allocate_next(), None);
        set.release(net("10.99.1.0/24"));
        assert_eq!(set.allocate_next(), Some(net("10.99.1.0/24")));
    }

    #[test]
    fn occupies_subnets_of_other_sizes_and_refuses_outside_ones() {
        let mut set = CidrSet::new(range("10.42.0.0/16", 24)).unwrap();
        set.occupy(net("10.42.0.0/23")).unwrap();
        set.occupy(net("10.42.2.128/25")).unwrap();
        assert_eq!(set.allocate_next(), Some(net("10.42.3.0/24")));
        assert!(matches!(set.occupy(net("10.43.0.0/24")), Err(CidrError::OutsideCluster { .. })));
        set.release(net("10.43.0.0/24"));
        assert_eq!(set.allocate_next(), Some(net("10.42.4.0/24")));
    }

    #[test]
    fn refuses_impossible_mask_sizes() {
        assert!(matches!(CidrSet::new(range("10.42.0.0/16", 8)), Err(CidrError::MaskOutsideRange { .. })));
        assert!(matches!(CidrSet::new(range("10.0.0.0/8", 25)), Err(CidrError::TooManySubnets { .. })));
        assert!(CidrSet::new(range("10.0.0.0/8", 24)).is_ok());
        assert_eq!(ClusterCidr::parse("10.42.0.0/16", 24), Ok(ClusterCidr::default()));
        assert!(matches!(ClusterCidr::parse("fd00::/48", 64), Err(CidrError::Invalid(_))));
    }

    #[test]
    fn reads_pod_cidrs_or_the_single_field() {
        let node = |spec: serde_json::Value| -> Node {
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": spec})).unwrap()
        };
        assert_eq!(node_cidrs(&node(json!({"podCIDR": "10.42.3.0/24"}))), vec![net("10.42.3.0/24")]);
        let both = node(json!({"podCIDR": "10.42.3.0/24", "podCIDRs": ["10.42.3.0/24", "fd00::/64"]}));
        assert_eq!(node_cidrs(&both), vec![net("10.42.3.0/24")]);
        assert!(node_cidrs(&node(json!({}))).is_empty());
    }

    #[test]
    fn allocator_counts_nodes_and_frees_deleted_ones() {
        let node = |name: &str, cidr: Option<&str>| -> Node {
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"podCIDR": cidr}})).unwrap()
        };
        let mut allocator = Allocator::new(CidrSet::new(range("10.42.0.0/23", 24)).unwrap());
        allocator.observe(&node("sim", Some("10.42.0.0/24")));
        allocator.observe(&node("new", None));
        assert!(allocator.waiting.contains_key("new"));
        assert_eq!(allocator.set.allocate_next(), Some(net("10.42.1.0/24")));
        allocator.observe(&node("new", Some("10.42.1.0/24")));
        assert!(allocator.waiting.is_empty());
        assert_eq!(allocator.set.allocate_next(), None);
        assert!(allocator.deleted("sim"));
        assert_eq!(allocator.set.allocate_next(), Some(net("10.42.0.0/24")));
    }
}
