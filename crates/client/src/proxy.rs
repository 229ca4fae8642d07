//! Forwarding one HTTP request to an upstream server, upgrades included: the API server
//! forwards pods/log, exec, attach and port-forward to the node agent, and the agent
//! forwards exec, attach and port-forward to the runtime's streaming server.
//!
//! The upstream answers over HTTP/1.1. A plain response (logs) is streamed back as it
//! arrives. When the upstream switches protocols (101: SPDY/3.1 or WebSocket), the same
//! 101 goes back to the client and, once both sides have upgraded, the two connections
//! are spliced byte for byte: the proxy never reads the streaming protocol, so whatever
//! the client and the upstream agree on (SPDY, WebSocket v4 or v5) passes through, and a
//! refused upgrade (e.g. a WebSocket subprotocol the upstream does not speak) reaches
//! the client as the upstream's error, which is what makes kubectl fall back to SPDY.

use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("HTTP exchange with the upstream failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid upstream URL {0:?}")]
    Url(String),
}

/// Headers that describe the client's connection to this server, not to the upstream.
/// `Connection` and `Upgrade` are hop-by-hop too, but an upgrade needs them forwarded.
const DROPPED: &[header::HeaderName] = &[header::HOST, header::AUTHORIZATION, header::PROXY_AUTHORIZATION];

/// Whether the request asks to switch protocols.
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

/// Sends `request` to `target` (origin-form path and query; `authority` for the Host
/// header) over `upstream`, and returns the upstream's response. On a 101, the client's
/// connection and the upstream's are joined in the background until either side closes.
pub async fn forward<IO>(
    mut request: Request<Incoming>,
    upstream: IO,
    authority: &str,
    target: &str,
) -> Result<Response<Incoming>, ProxyError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrade = is_upgrade(&request);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = target.parse::<Uri>().map_err(|_| ProxyError::Url(target.to_string()))?;
    for (name, value) in &parts.headers {
        if !DROPPED.contains(name) {
            outgoing.headers_mut().append(name, value.clone());
        }
    }
    let host = HeaderValue::from_str(authority).map_err(|_| ProxyError::Url(authority.to_string()))?;
    outgoing.headers_mut().insert(header::HOST, host);

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    let mut response = sender.send_request(outgoing).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match futures::future::try_join(client_upgrade, upstream_upgrade).await {
                    Ok((client, upstream)) => {
                        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
                        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                            tracing::debug!(%error, "upgraded stream ended with an error");
                        }
                    }
                    Err(error) => tracing::debug!(%error, "upgrade failed"),
                }
            });
        }
    }
    Ok(response)
}

/// How long connecting may take: an unreachable node must not hold a request for the
/// system's TCP timeout (minutes).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Connects a TCP socket to `authority` (`host:port`), with Nagle off: streams carry
/// keystrokes.
pub async fn connect_tcp(authority: &str) -> Result<tokio::net::TcpStream, ProxyError> {
    let fail = |e| ProxyError::Connect(authority.to_string(), e);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| fail(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")))?
        .map_err(fail)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
