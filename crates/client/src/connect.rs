//! Connecting to the API server through a kubeconfig (the server writes an admin one
//! under its data directory).

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

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
