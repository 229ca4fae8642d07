//! exec, attach and port-forward: the runtime opens a session on its streaming server
//! (CRI's Exec/Attach/PortForward answer with a URL) and the client's connection is
//! forwarded there unchanged, upgrade included, as the kubelet proxies to containerd's
//! streaming server. The streaming protocols (SPDY/3.1, WebSocket channel protocols) are
//! spoken end to end by the client and the runtime.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::{find_container, query_pairs, runtime_error, text, Body};
use crate::runtime::{labels, ContainerState, Runtime, SandboxFilter, SandboxState, StreamRequest};

fn flag(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// The stream options of an exec or attach request (the kubelet's query parameters).
pub fn stream_request(container_id: &str, exec: bool, query: &[(String, String)]) -> StreamRequest {
    let mut request = StreamRequest { container_id: container_id.to_string(), ..StreamRequest::default() };
    for (key, value) in query {
        match key.as_str() {
            "command" if exec => request.cmd.push(value.clone()),
            "stdin" => request.stdin = flag(value),
            "stdout" => request.stdout = flag(value),
            "stderr" => request.stderr = flag(value),
            "tty" => request.tty = flag(value),
            _ => {}
        }
    }
    request
}

/// The ports named by a port-forward request (`port=80,443`, repeated, or the API's
/// `ports`); SPDY clients name them per stream instead, and may send none here.
pub fn ports(query: &[(String, String)]) -> Result<Vec<i32>, String> {
    query
        .iter()
        .filter(|(k, _)| k == "port" || k == "ports")
        .flat_map(|(_, v)| v.split(','))
        .filter(|p| !p.is_empty())
        .map(|p| p.trim().parse::<u16>().map(i32::from).map_err(|_| format!("invalid port {p:?}")))
        .collect()
}

pub async fn exec_or_attach(
    runtime: &Arc<dyn Runtime>,
    exec: bool,
    namespace: &str,
    pod: &str,
    container: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let found = match find_container(runtime.as_ref(), namespace, pod, container).await {
        Ok(Some(found)) if found.state == ContainerState::Running => found,
        Ok(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container {container} is not running in pod {namespace}/{pod}"),
            )
        }
        Err(error) => return runtime_error(&error),
    };
    let options = stream_request(&found.id, exec, &query_pairs(&request));
    if exec && options.cmd.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify at least one command for the container");
    }
    let url = if exec { runtime.exec(&options).await } else { runtime.attach(&options).await };
    match url {
        Ok(url) => proxy_to(&url, request).await,
        Err(error) => runtime_error(&error),
    }
}

pub async fn port_forward(
    runtime: &Arc<dyn Runtime>,
    namespace: &str,
    pod: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let ports = match ports(&query_pairs(&request)) {
        Ok(ports) => ports,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let filter = SandboxFilter {
        state: Some(SandboxState::Ready),
        labels: [
            (labels::POD_NAMESPACE.to_string(), namespace.to_string()),
            (labels::POD_NAME.to_string(), pod.to_string()),
        ]
        .into(),
        ..SandboxFilter::default()
    };
    let sandbox = match runtime.list_pod_sandbox(&filter).await {
        Ok(found) => found.into_iter().max_by_key(|s| s.created_at),
        Err(error) => return runtime_error(&error),
    };
    let Some(sandbox) = sandbox else {
        return text(StatusCode::NOT_FOUND, format!("pod {namespace}/{pod} has no running sandbox on this node"));
    };
    match runtime.port_forward(&sandbox.id, &ports).await {
        Ok(url) => proxy_to(&url, request).await,
        Err(error) => runtime_error(&error),
    }
}

/// Forwards `request` to the streaming server's `url` (plain HTTP, as containerd's
/// listens on loopback), keeping the client's query as the kubelet does.
async fn proxy_to(url: &str, request: Request<Incoming>) -> Response<Body> {
    let uri: http::Uri = match url.parse() {
        Ok(uri) => uri,
        Err(_) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("the runtime answered an invalid URL {url:?}"))
        }
    };
    let Some(authority) = uri.authority().map(|a| a.to_string()).filter(|_| uri.scheme_str() == Some("http")) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("unsupported streaming URL {url:?}"));
    };
    let mut target = uri.path().to_string();
    if let Some(query) = request.uri().query() {
        target.push('?');
        target.push_str(query);
    }
    let upstream = match skiff_client::proxy::connect_tcp(&authority).await {
        Ok(stream) => stream,
        Err(error) => return text(StatusCode::BAD_GATEWAY, error.to_string()),
    };
    match skiff_client::proxy::forward(request, upstream, &authority, &target).await {
        Ok(response) => response
            .map(|body| http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(body, std::io::Error::other))),
        Err(error) => text(StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn exec_options_from_the_query() {
        let q = query(&[("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("stdin", "true"), ("tty", "1")]);
        let request = stream_request("c1", true, &q);
        assert_eq!(request.cmd, ["sh", "-c", "echo hi"]);
        assert!(request.stdin && request.tty && !request.stdout);
        assert!(stream_request("c1", false, &q).cmd.is_empty(), "attach runs no command");
    }

    #[test]
    fn ports_from_the_query() {
        assert_eq!(ports(&query(&[("port", "80,443"), ("port", "8080")])).unwrap(), [80, 443, 8080]);
        assert!(ports(&query(&[])).unwrap().is_empty());
        assert!(ports(&query(&[("port", "http")])).is_err());
    }
}
