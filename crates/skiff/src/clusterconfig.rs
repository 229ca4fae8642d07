//! Cluster-wide settings an agent would otherwise have to be given again: `skiff server`
//! publishes them in the ConfigMap `kube-system/skiff-cluster`, and `skiff agent` reads
//! them for the flags it was not given. Today that is the pod range (`--cluster-cidr`),
//! which a node needs to masquerade traffic leaving it; a server started with another
//! range than the default no longer needs every agent told the same.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "skiff-cluster";
const CLUSTER_CIDR: &str = "cluster-cidr";
/// The pod range when neither the flag nor the server says otherwise.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// Writes the server's settings (server-side apply, so a restart with other flags wins).
pub async fn publish(client: kube::Client, cluster_cidr: &str) -> Result<()> {
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "data": {CLUSTER_CIDR: cluster_cidr},
    });
    Api::<ConfigMap>::namespaced(client, NAMESPACE)
        .patch(NAME, &PatchParams::apply("skiff-server").force(), &Patch::Apply(&config))
        .await
        .with_context(|| format!("publishing {NAMESPACE}/{NAME}"))?;
    Ok(())
}

/// The pod range: the flag's, else the server's, else the default (a server that
/// publishes nothing, e.g. an older one).
pub async fn cluster_cidr(client: &kube::Client, flag: Option<&str>) -> Result<String> {
    if let Some(cidr) = flag {
        return Ok(cidr.to_string());
    }
    let published = Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE)
        .get_opt(NAME)
        .await
        .with_context(|| format!("reading {NAMESPACE}/{NAME}"))?
        .and_then(|config| config.data?.remove(CLUSTER_CIDR));
    Ok(match published {
        Some(cidr) => {
            tracing::info!(%cidr, "cluster CIDR from the server ({NAMESPACE}/{NAME})");
            cidr
        }
        None => DEFAULT_CLUSTER_CIDR.to_string(),
    })
}
