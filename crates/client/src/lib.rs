//! skiff-client: what the scheduler, the controllers and the agent share as clients of
//! the API server — [`connect`] (a kube-rs client from a kubeconfig), [`leader`]
//! (leader election through a Lease) and [`events`] (recording events.k8s.io Events
//! without holding up the caller).

pub mod connect;
pub mod events;
pub mod leader;

pub use connect::connect;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("API client: {0}")]
    Client(#[from] kube::Error),
    #[error("{0}")]
    Config(String),
}

/// Whether `error` is an API error response with one of these HTTP status codes.
pub fn is_status(error: &kube::Error, codes: &[u16]) -> bool {
    matches!(error, kube::Error::Api(status) if codes.contains(&status.code))
}
