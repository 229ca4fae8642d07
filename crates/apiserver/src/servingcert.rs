//! `POST /v1-skiff/serving-cert`: a node agent asks for the certificate its HTTPS server
//! (logs, exec, port-forward) presents, signed by the cluster CA for the node's names and
//! addresses. k3s serves the same need at `/v1-k3s/serving-kubelet.crt`; kube-apiserver
//! clusters use CSRs approved by a controller. See docs/adr/0009.
//!
//! Request: `{"nodeName": "n1", "addresses": ["10.0.0.5", "n1.example"]}`.
//! Answer: `{"certificate": PEM, "key": PEM, "ca": PEM}` (the CA the agent verifies the
//! API server's client certificate against).

use std::net::IpAddr;

use axum::body::Body;
use http::{Method, Request, Response};
use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::http::{read_body, value_response, App};
use crate::pki::{ServingNames, UserInfo};

pub const PATH: &str = "/v1-skiff/serving-cert";

/// Who may ask: node agents (join token) and cluster admins (e.g. an agent run with the
/// admin kubeconfig).
fn allowed(user: &UserInfo) -> bool {
    user.groups.iter().any(|g| g == crate::token::NODES_GROUP || g == "system:masters")
}

pub async fn serve(
    app: &App,
    user: Option<&UserInfo>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    if !user.is_some_and(allowed) {
        return Err(ApiError::Forbidden("only nodes may ask for a serving certificate".into()));
    }
    let (_, body) = read_body(request).await?;
    let asked: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("invalid request: {e}")))?;
    let node = asked["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest("nodeName is required".into()))?;
    let mut names = ServingNames { dns: vec![node.to_string()], ips: Vec::new() };
    for address in asked["addresses"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        match address.parse::<IpAddr>() {
            Ok(ip) => names.ips.push(ip),
            Err(_) => names.dns.push(address.to_string()),
        }
    }
    let issued = app.pki.issue_node_serving_cert(node, &names).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(value_response(
        200,
        &json!({ "certificate": issued.cert_pem, "key": issued.key_pem, "ca": app.pki.ca_cert_pem }),
    ))
}
