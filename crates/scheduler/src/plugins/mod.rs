//! kube-scheduler's default plugins, each a module of plain functions over the cache:
//! filters say why a node cannot take a pod, scores rank the nodes that can. The order
//! and weights are the default profile's; a node reports the reasons of the first filter
//! that rejects it, as kube-scheduler's framework does.

pub mod balanced_allocation;
pub mod default_spread;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_unschedulable;
pub mod resources_fit;
pub mod taint_toleration;
pub mod topology_spread;

#[cfg(test)]
pub(crate) mod testing;

/// Score weights of the default profile.
pub mod weights {
    pub const TAINT_TOLERATION: i64 = 3;
    pub const NODE_AFFINITY: i64 = 2;
    pub const RESOURCES_FIT: i64 = 1;
    pub const POD_TOPOLOGY_SPREAD: i64 = 2;
    pub const INTER_POD_AFFINITY: i64 = 2;
    pub const BALANCED_ALLOCATION: i64 = 1;
    pub const IMAGE_LOCALITY: i64 = 1;
}
