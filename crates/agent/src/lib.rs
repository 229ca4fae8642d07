//! skiff-agent: the node agent. It registers Nodes, keeps their Leases and conditions
//! fresh, and runs the pods bound to them through a [`runtime::Runtime`]: CRI's shape,
//! implemented by containerd (for real nodes) and by [`runtime::simulated`] (for
//! `skiff agent --simulate N`, which puts thousands of nodes in one process for tests and
//! benchmarks). Everything above the runtime — pod workers, status, leases — is the same
//! code for both.
//!
//! Layout: [`config`] (what a node looks like), [`node`] (Node and Lease objects),
//! [`podworker`] (one pod against the runtime), [`podstatus`] (the status the kubelet
//! would report), [`agent`] (registration, heartbeats, the pod watch and the workers),
//! [`ipam`] (pod addresses from the node's CIDR). What a pod worker builds on, one
//! concern each: [`sources`] (the ConfigMaps, Secrets, claims and Services a pod reads),
//! [`env`] (environment and `$(VAR)` expansion), [`downward`] (pod fields and resources),
//! [`volumes`] (volumes on the host, atomic writes), [`resources`] (cgroup settings,
//! QoS, security context), [`probes`], [`lifecycle`] (hooks), [`backoff`] (crash loops
//! and image pulls). A real node: [`machine`] (capacity, starting its runtime),
//! [`containerd`] (the private containerd and image import), [`cni`] (pod networking
//! config), [`imagegc`] (removing unused images when the disk fills), [`network`] (pod CIDR, host-gw routes, masquerade, node IP), [`oci`] (images built without a registry), [`runtime::cri`] (the runtime
//! over CRI gRPC). Serving the node: [`server`] (the node's HTTPS server: logs, exec,
//! attach, port-forward).

pub mod agent;
pub mod backoff;
pub mod cni;
pub mod config;
pub mod containerd;
pub mod dns;
pub mod downward;
pub mod env;
pub mod error;
pub mod imagegc;
pub mod ipam;
pub mod lifecycle;
pub mod machine;
pub mod network;
pub mod node;
pub mod oci;
pub mod podstatus;
pub mod podworker;
pub mod probes;
pub mod pullsecrets;
pub mod resources;
pub mod runtime;
pub mod server;
pub mod sources;
pub mod volumes;

pub use agent::{Agent, NodeHandle};
pub use error::{Error, Result};
