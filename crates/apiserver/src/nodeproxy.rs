//! The subresources served by a node's agent: pods/log, pods/exec, pods/attach,
//! pods/portforward and nodes/proxy. The API server checks the request as
//! kube-apiserver does (the pod exists, the container is valid, the pod is bound), finds
//! the node's agent (its InternalIP and `status.daemonEndpoints.kubeletEndpoint.Port`),
//! connects over TLS with its kubelet-client certificate, verifies the agent's serving
//! certificate against the cluster CA, and forwards the request — upgrades included —
//! with `skiff_client::proxy`.

use std::sync::Arc;

use axum::body::Body;
use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};
use skiff_api::ApiError;
use tokio_rustls::TlsConnector;

use crate::http::App;
use crate::pki::Pki;
use crate::request::{Query, ResourcePath};
use crate::rest::Addr;

/// The port a node's agent serves on when its Node does not say (the kubelet's).
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// How much of an agent's error answer is read into the Status message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The subresources this module serves, by resource.
pub fn serves(plural: &str, subresource: &str) -> bool {
    matches!((plural, subresource), ("pods", "log" | "exec" | "attach" | "portforward") | ("nodes", "proxy"))
}

/// TLS towards node agents: the API server's kubelet-client certificate, and the
/// cluster CA to verify the agents' serving certificates.
#[derive(Clone)]
pub struct KubeletClient {
    connector: TlsConnector,
}

impl KubeletClient {
    pub fn new(pki: &Pki) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pki.ca_cert_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let certs =
            CertificateDer::pem_slice_iter(pki.kubelet_client_cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(pki.kubelet_client_key_pem.as_bytes())?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)?;
        // Upgrades are HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { connector: TlsConnector::from(Arc::new(config)) })
    }

    /// A TLS connection to the agent at `endpoint`; `target` names the request in errors.
    async fn connect(
        &self,
        endpoint: &Endpoint,
        target: &str,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ApiError> {
        let fail = |e: &dyn std::fmt::Display| upstream_failure(&endpoint.url(target), e);
        let tcp = skiff_client::proxy::connect_tcp(&endpoint.authority()).await.map_err(|e| fail(&e))?;
        let name = ServerName::try_from(endpoint.host.clone()).map_err(|e| fail(&e))?;
        self.connector.connect(name, tcp).await.map_err(|e| fail(&e))
    }
}

/// Where a node's agent listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn url(&self, target: &str) -> String {
        format!("https://{}{target}", self.authority())
    }

    /// From a Node object: its InternalIP (else ExternalIP, else Hostname) and the port
    /// its agent reports.
    pub fn of_node(node: &Value) -> Option<Self> {
        let addresses = node["status"]["addresses"].as_array()?;
        let host = ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|kind| {
            addresses.iter().find(|a| a["type"] == *kind).and_then(|a| a["address"].as_str()).filter(|a| !a.is_empty())
        })?;
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Some(Endpoint { host: host.to_string(), port })
    }
}

/// A Status of `code` whose message is `message`, as kube-apiserver builds one from an
/// agent's error answer.
fn status_error(code: u16, message: &str) -> ApiError {
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        _ => "InternalError",
    };
    ApiError::Status(
        code,
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code }),
    )
}

/// The agent could not be reached: kube-apiserver answers 500 with the transport error.
fn upstream_failure(url: &str, error: &dyn std::fmt::Display) -> ApiError {
    status_error(500, &format!("Get {url:?}: {error}"))
}

fn bad_request(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// The container a request names, checked against the pod as kube-apiserver checks it.
fn validate_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let names = |kind: &str| -> Vec<String> {
        pod["spec"][kind]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (containers, init, ephemeral) = (names("containers"), names("initContainers"), names("ephemeralContainers"));
    match requested {
        Some(container) => {
            if containers.iter().chain(&init).chain(&ephemeral).any(|c| c == container) {
                Ok(container.to_string())
            } else {
                Err(bad_request(format!("container {container} is not valid for pod {name}")))
            }
        }
        None => match containers.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(bad_request(format!("a container name must be specified for pod {name}"))),
            _ => {
                // Go prints a []string as [a b c]; init containers come first, as VisitContainers visits them.
                let all: Vec<&str> = init.iter().chain(&containers).chain(&ephemeral).map(String::as_str).collect();
                Err(bad_request(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        },
    }
}

/// The query string without `container` (the agent's path names it).
fn forwarded_query(raw: Option<&str>) -> String {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().filter(|(k, _)| k != "container").collect();
    if pairs.is_empty() {
        return String::new();
    }
    format!("?{}", form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish())
}

/// Path segments are names (DNS labels or subdomains), but a proxy path may carry anything.
fn escape(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn get_object(app: &App, plural: &str, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
    let def =
        app.api.registry.get("", "v1", plural).ok_or_else(|| ApiError::Internal(format!("no {plural} resource")))?;
    Ok(app.api.get(&Addr { def: &def, namespace, name }, &Query::default()).await?.body)
}

async fn node_endpoint(app: &App, node: &str) -> Result<Endpoint, ApiError> {
    let object = get_object(app, "nodes", None, node).await?;
    Endpoint::of_node(&object).ok_or_else(|| bad_request(format!("node {node} has no address")))
}

/// Serves one of the subresources `serves` accepts.
pub async fn serve(app: &App, target: &ResourcePath, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    let subresource = target.subresource.as_deref().unwrap_or_default();
    let query = Query::parse(request.uri().query());
    let raw_query = request.uri().query().map(str::to_string);
    let method = request.method().clone();
    let allowed = match subresource {
        "log" => method == Method::GET,
        "proxy" => true,
        _ => matches!(method, Method::GET | Method::POST),
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed);
    }
    if target.plural == "nodes" {
        let endpoint = node_endpoint(app, name).await?;
        let path = format!("/{}", target.proxy_path.as_deref().unwrap_or_default());
        let target = format!("{path}{}", raw_query.map(|q| format!("?{q}")).unwrap_or_default());
        return forward(app, &endpoint, request, &target).await;
    }
    let namespace = target.namespace.as_deref().unwrap_or_default();
    let pod = get_object(app, "pods", Some(namespace), name).await?;
    let container = match subresource {
        "portforward" => None,
        _ => Some(validate_container(&pod, query.get("container"))?),
    };
    let node = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty());
    let Some(node) = node else {
        if subresource == "log" {
            // kube-apiserver answers an unbound pod's log with an empty stream.
            return Ok(text_response(Body::empty()));
        }
        return Err(bad_request(format!("pod {name} does not have a host assigned")));
    };
    let endpoint = node_endpoint(app, node).await?;
    let (ns, pod_name) = (escape(namespace), escape(name));
    let path = match (subresource, &container) {
        ("log", Some(c)) => format!("/containerLogs/{ns}/{pod_name}/{}", escape(c)),
        ("exec", Some(c)) => format!("/exec/{ns}/{pod_name}/{}", escape(c)),
        ("attach", Some(c)) => format!("/attach/{ns}/{pod_name}/{}", escape(c)),
        _ => format!("/portForward/{ns}/{pod_name}"),
    };
    let target_path = format!("{path}{}", forwarded_query(raw_query.as_deref()));
    if subresource != "log" {
        return forward(app, &endpoint, request, &target_path).await;
    }
    let response = forward(app, &endpoint, request, &target_path).await?;
    if !response.status().is_success() {
        // The agent's plain-text reason becomes the Status message, as kube-apiserver's
        // response checker does (kubectl prints "Error from server (BadRequest): ...").
        let code = response.status().as_u16();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY).collect().await;
        let text = body.map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string()).unwrap_or_default();
        return Err(status_error(code, &text));
    }
    Ok(text_response(response.into_body()))
}

fn text_response(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

async fn forward(
    app: &App,
    endpoint: &Endpoint,
    request: Request<Incoming>,
    target: &str,
) -> Result<Response<Body>, ApiError> {
    let stream = app.kubelet.connect(endpoint, target).await?;
    let response = skiff_client::proxy::forward(request, stream, &endpoint.authority(), target)
        .await
        .map_err(|e| upstream_failure(&endpoint.url(target), &e))?;
    Ok(response.map(Body::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_checked_as_kubernetes_does() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {
            "initContainers": [{"name": "setup"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        let err = validate_container(&pod, None).unwrap_err();
        assert_eq!(err.message(), "a container name must be specified for pod web, choose one of: [setup a b]");
        assert_eq!(err.code(), 400);
        assert_eq!(validate_container(&pod, Some("setup")).unwrap(), "setup");
        assert_eq!(validate_container(&pod, Some("c")).unwrap_err().message(), "container c is not valid for pod web");
        let single = json!({"metadata": {"name": "one"}, "spec": {"containers": [{"name": "only"}]}});
        assert_eq!(validate_container(&single, None).unwrap(), "only");
    }

    #[test]
    fn endpoint_from_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 41000}}}});
        assert_eq!(Endpoint::of_node(&node), Some(Endpoint { host: "10.0.0.5".into(), port: 41000 }));
        let bare = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(Endpoint::of_node(&bare).unwrap().port, 10250);
        assert_eq!(Endpoint::of_node(&json!({})), None);
    }

    #[test]
    fn container_is_dropped_from_the_forwarded_query() {
        assert_eq!(forwarded_query(Some("container=a&follow=true&tailLines=2")), "?follow=true&tailLines=2");
        assert_eq!(forwarded_query(Some("command=sh&command=-c&container=x")), "?command=sh&command=-c");
        assert_eq!(forwarded_query(None), "");
    }
}
