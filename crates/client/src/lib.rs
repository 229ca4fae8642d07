//! skiff-client: what the scheduler, the controllers and the agent share as clients of
//! the API server — [`connect`] (a kube-rs client from a kubeconfig), [`leader`]
//! (leader election through a Lease), [`events`] (recording events.k8s.io Events
//! without holding up the caller), [`token`] (join tokens) and [`proxy`] (forwarding
//! requests and upgraded streams: API server to agent, agent to runtime) and [`synced`]
//! (waiting for a cache's first list from many tasks).

pub mod connect;
pub mod events;
pub mod leader;
pub mod proxy;
pub mod synced;
pub mod token;

pub use connect::{connect, connect_with_token};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("API client: {0}")]
    Client(#[from] kube::Error),
    #[error("{0}")]
    Config(String),
    #[error("the CA certificate served by {server} (sha256 {found}) is not the one the join token names")]
    CaMismatch { server: String, found: String },
}

/// Whether `error` is an API error response with one of these HTTP status codes.
pub fn is_status(error: &kube::Error, codes: &[u16]) -> bool {
    matches!(error, kube::Error::Api(status) if codes.contains(&status.code))
}
