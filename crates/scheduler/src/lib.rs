//! skiff-scheduler: places pending pods on nodes as kube-scheduler does — the same
//! filters, scores, weights and messages — over a cache fed by watches.
//!
//! Layout: [`model`] (what is kept of pods and nodes), [`cache`] (nodes and the pods on
//! them), [`plugins`] (one module per kube-scheduler plugin), [`algorithm`] (one
//! decision), [`preemption`] (what to evict when a pod fits nowhere), [`queue`] (active,
//! backoff, unschedulable), and the I/O around them.

pub mod algorithm;
pub mod cache;
pub mod framework;
pub mod groups;
pub mod model;
pub mod objects;
pub mod plugins;
pub mod preemption;
pub mod quantity;
pub mod queue;
pub mod resources;
pub mod scheduler;
pub mod selector;
pub mod watch;
pub mod writer;

pub use scheduler::{run, Config, Error};
