//! The node server's TLS identity: a serving certificate for the node's names and
//! addresses, issued by the API server (`POST /v1-skiff/serving-cert`, see
//! docs/adr/0009), and the cluster CA that client certificates must chain to.

use kube::Client;
use serde_json::{json, Value};

/// PEM certificate and key the node serves with, and the CA it trusts for clients.
#[derive(Clone)]
pub struct ServingIdentity {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for ServingIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingIdentity").finish_non_exhaustive()
    }
}

/// Asks the API server for a serving certificate for `node`, valid for `addresses`
/// (IPs or DNS names; the node name is always included).
pub async fn request(client: &Client, node: &str, addresses: &[String]) -> Result<ServingIdentity, kube::Error> {
    let body =
        serde_json::to_vec(&json!({ "nodeName": node, "addresses": addresses })).map_err(kube::Error::SerdeError)?;
    let request = http::Request::post("/v1-skiff/serving-cert")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    let answer: Value = client.request(request).await?;
    let field = |name: &str| answer[name].as_str().unwrap_or_default().to_string();
    Ok(ServingIdentity { cert_pem: field("certificate"), key_pem: field("key"), ca_pem: field("ca") })
}
