//! A real node's pod network, flannel host-gw style: the node's pod CIDR comes from the
//! server ([`podcidr`]: register, then wait for node-ipam-controller's assignment), each
//! other node's pod CIDR is routed via that node's InternalIP ([`routes`]), and pod
//! traffic leaving the cluster CIDR is masqueraded in the agent's own nftables table
//! ([`masquerade`]). [`nodeip`] picks the node's address. Everything is programmed with
//! the `ip` and `nft` commands (ADR 0014) in the agent's network namespace, run by
//! skiff-proxy's command runner (one place for both).

pub mod masquerade;
pub mod nodeip;
pub mod podcidr;
pub mod routes;

use skiff_proxy::command::{self, CommandError};
use skiff_proxy::NftError;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error("reading the output of {command}: {message}")]
    Output { command: String, message: String },
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("registering the node: {0}")]
    Register(#[from] Box<crate::Error>),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// Runs an `ip -json …` query and parses its answer.
pub(crate) async fn ip_json(args: &[&str]) -> Result<serde_json::Value, NetworkError> {
    let mut full = vec!["ip", "-json"];
    full.extend_from_slice(args);
    let text = command::run(&full, None).await?;
    if text.trim().is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_str(&text).map_err(|e| NetworkError::Output { command: full.join(" "), message: e.to_string() })
}
