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
//! [`ipam`] (pod addresses from the node's CIDR), [`server`] (the node's HTTPS server:
//! logs, exec, attach, port-forward).

pub mod agent;
pub mod config;
pub mod error;
pub mod ipam;
pub mod node;
pub mod podstatus;
pub mod podworker;
pub mod runtime;
pub mod server;

pub use agent::{Agent, NodeHandle};
pub use error::{Error, Result};
