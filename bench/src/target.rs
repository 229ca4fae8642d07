//! The create operation under test, against skiff or etcd.

use std::path::PathBuf;

use anyhow::{bail, ensure, Result};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine};
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::client::{self, Http};
use crate::proto;

/// Where creates go. Each benchmark client calls [`Target::client`] for its own connection.
#[derive(Clone, Debug)]
pub enum Target {
    /// `POST /api/v1/namespaces/default/configmaps` over HTTPS with the admin certificate.
    Skiff { url: String, tls_dir: PathBuf, http: Http },
    /// etcd's native gRPC `KV/Txn` (put-if-absent), over h2c.
    EtcdGrpc { url: String },
    /// The same transaction through etcd's HTTP/JSON gRPC gateway (`POST /v3/kv/txn`), HTTP/1.1.
    EtcdGateway { url: String },
}

impl Target {
    pub fn client(&self) -> Result<reqwest::Client> {
        match self {
            Target::Skiff { tls_dir, http, .. } => client::skiff(tls_dir, *http),
            Target::EtcdGrpc { .. } => client::plain(Http::H2),
            Target::EtcdGateway { .. } => client::plain(Http::Http1),
        }
    }

    /// Creates the ConfigMap `name` in namespace default (or its etcd key); fails when it
    /// was not created. Returns the HTTP version the answer came over.
    pub async fn create(&self, client: &reqwest::Client, name: &str) -> Result<reqwest::Version> {
        let body = serde_json::to_vec(&configmap(name))?;
        match self {
            Target::Skiff { url, .. } => skiff_create(client, url, body).await,
            Target::EtcdGrpc { url } => etcd_grpc_put_if_absent(client, url, &etcd_key(name), &body).await,
            Target::EtcdGateway { url } => etcd_gateway_put_if_absent(client, url, &etcd_key(name), &body).await,
        }
    }
}

/// A small ConfigMap (about 200 bytes of JSON).
pub fn configmap(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "skiff-bench"}},
        "data": {"settings.conf": "log_level = info\nworkers = 4\ntimeout_seconds = 30\n"},
    })
}

/// Where the kube-apiserver keeps that ConfigMap in etcd.
fn etcd_key(name: &str) -> String {
    format!("/registry/configmaps/default/{name}")
}

async fn skiff_create(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<reqwest::Version> {
    let response = client
        .post(format!("{url}/api/v1/namespaces/default/configmaps"))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await?;
    let (version, status) = (response.version(), response.status());
    let answer = response.bytes().await?;
    ensure!(status == StatusCode::CREATED, "skiff answered {status}: {}", String::from_utf8_lossy(&answer));
    Ok(version)
}

async fn etcd_grpc_put_if_absent(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    value: &[u8],
) -> Result<reqwest::Version> {
    let response = client
        .post(format!("{url}/etcdserverpb.KV/Txn"))
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(proto::grpc_frame(&proto::put_if_absent(key.as_bytes(), value)))
        .send()
        .await?;
    let version = response.version();
    // A call that fails before any message carries its status in the headers.
    if let Some(code) = response.headers().get("grpc-status").filter(|code| *code != "0") {
        let message = response.headers().get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default();
        bail!("etcd gRPC status {code:?}: {message}");
    }
    let frame = response.error_for_status()?.bytes().await?;
    ensure!(proto::txn_succeeded(proto::grpc_message(&frame)?)?, "etcd key {key} already exists");
    Ok(version)
}

async fn etcd_gateway_put_if_absent(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    value: &[u8],
) -> Result<reqwest::Version> {
    let key = BASE64.encode(key);
    let request = json!({
        "compare": [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
        "success": [{"request_put": {"key": key, "value": BASE64.encode(value)}}],
    });
    let response = client.post(format!("{url}/v3/kv/txn")).json(&request).send().await?;
    let version = response.version();
    let answer: Value = response.error_for_status()?.json().await?;
    ensure!(answer["succeeded"] == json!(true), "etcd gateway: transaction failed: {answer}");
    Ok(version)
}
