//! HTTP clients. Every benchmark client is its own `reqwest::Client`, hence its own
//! connection: HTTP/2 (one connection, requests in turn) or HTTP/1.1 keep-alive.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

/// No single request may take longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// HTTP/2: ALPN "h2" over TLS, prior knowledge (h2c) over plain TCP.
    H2,
    Http1,
}

/// An HTTPS client for a skiff server: trusts `DIR/tls/ca.crt` and authenticates as the
/// admin with `DIR/tls/admin.{crt,key}`.
pub fn skiff(tls_dir: &Path, http: Http) -> Result<reqwest::Client> {
    let read = |name: &str| {
        let path = tls_dir.join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read("ca.crt")?) {
        roots.add(cert?)?;
    }
    let certs = CertificateDer::pem_slice_iter(&read("admin.crt")?).collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(&read("admin.key")?)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = match http {
        Http::H2 => vec![b"h2".to_vec()],
        Http::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(builder().use_preconfigured_tls(config).build()?)
}

/// A plain-HTTP client (etcd's client port).
pub fn plain(http: Http) -> Result<reqwest::Client> {
    // reqwest wants a process-wide rustls provider even when it never speaks TLS;
    // only the first call installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = match http {
        Http::H2 => builder().http2_prior_knowledge(),
        Http::Http1 => builder().http1_only(),
    };
    Ok(builder.build()?)
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().no_proxy().tcp_nodelay(true).http2_adaptive_window(true).timeout(REQUEST_TIMEOUT)
}
