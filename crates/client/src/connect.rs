//! Connecting to the API server: through a kubeconfig (the server writes an admin one
//! under its data directory), or with a join token (`skiff agent --token`).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use rustls::pki_types::pem::PemObject;

use crate::Error;

/// A client from the kubeconfig at `path`, talking to `server` instead of the
/// kubeconfig's URL when given.
pub async fn connect(path: &Path, server: Option<&str>) -> Result<Client, Error> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    if let Some(server) = server {
        config.cluster_url = server.parse().map_err(|e| Error::Config(format!("--server {server:?}: {e}")))?;
    }
    Ok(Client::try_from(config)?)
}

/// A client for the API server at `server` (`https://host:port`) that joins with a
/// token (see [`crate::token`]): the cluster CA is fetched from `/cacerts` without
/// verification and must hash to the token's pin before the secret is ever sent.
pub async fn connect_with_token(server: &str, token: &str) -> Result<Client, Error> {
    let token = crate::token::JoinToken::parse(token).map_err(|e| Error::Config(e.to_string()))?;
    let url: http::Uri = server.parse().map_err(|e| Error::Config(format!("--server {server:?}: {e}")))?;
    let ca_pem = fetch_cacerts(&url).await?;
    if !token.matches_ca(&ca_pem) {
        return Err(Error::CaMismatch { server: server.to_string(), found: crate::token::ca_hash(&ca_pem) });
    }
    let roots = rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("the CA served by {server} is not PEM: {e}")))?;
    let mut config = kube::Config::new(url);
    config.root_cert = Some(roots);
    // AuthInfo's token is a secrecy::SecretString; going through serde avoids a direct dependency.
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token.secret }))
        .map_err(|e| Error::Config(format!("bearer token: {e}")))?;
    Ok(Client::try_from(config)?)
}

/// GET `/cacerts` over TLS without verifying the server (the caller checks what it gets).
async fn fetch_cacerts(url: &http::Uri) -> Result<Vec<u8>, Error> {
    use http_body_util::{BodyExt, Empty};
    let fail = |what: &str, e: &dyn std::fmt::Display| Error::Config(format!("fetching {url}cacerts: {what}: {e}"));
    let host = url.host().ok_or_else(|| Error::Config(format!("--server {url}: no host")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_u16().unwrap_or(443);
    let tcp = crate::proxy::connect_tcp(&format!(
        "{}:{port}",
        if host.contains(':') { format!("[{host}]") } else { host.clone() }
    ))
    .await
    .map_err(|e| fail("connecting", &e))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail("TLS", &e))?
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyServer(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| fail("server name", &e))?;
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| fail("TLS handshake", &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| fail("HTTP", &e))?;
    tokio::spawn(connection);
    let request = http::Request::get("/cacerts")
        .header(http::header::HOST, url.authority().map(|a| a.as_str()).unwrap_or_default())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| fail("request", &e))?;
    let response = sender.send_request(request).await.map_err(|e| fail("HTTP", &e))?;
    if !response.status().is_success() {
        return Err(fail("status", &response.status()));
    }
    Ok(response.into_body().collect().await.map_err(|e| fail("body", &e))?.to_bytes().to_vec())
}

/// Accepts any server certificate (handshake signatures are still checked). For fetching
/// the CA, whose hash the token pins, and for what Kubernetes does not verify either
/// (the kubelet's HTTPS probes).
#[derive(Debug)]
pub struct AnyServer(pub std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
