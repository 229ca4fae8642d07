//! Root CA publisher (kube-controller-manager's root-ca-cert-publisher): every namespace
//! has a ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA, so that pods can
//! verify the API server; it is recreated when deleted and put back when edited.
//! Runs only when [`crate::Config::root_ca`] holds a CA.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::Kubeconfig;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use skiff_client::is_status;
use tracing::info;

use crate::{pernamespace, Context};

pub const NAME: &str = "root-ca-certificate-publisher-controller";
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
pub const KEY: &str = "ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal \
endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across \
distributions of Kubernetes clusters.";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("the kubeconfig names no cluster for its current context")]
    NoCluster,
    #[error("the kubeconfig's certificate-authority-data is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("reading the certificate authority file: {0}")]
    File(#[from] std::io::Error),
}

/// The CA (PEM) a kubeconfig trusts for its current cluster: certificate-authority-data,
/// or the certificate-authority file. Empty when it names none.
pub fn ca_from_kubeconfig(path: &Path) -> Result<String, Error> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let context_name = kubeconfig.current_context.clone().unwrap_or_default();
    let cluster_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .or_else(|| kubeconfig.clusters.first().map(|c| c.name.clone()))
        .ok_or(Error::NoCluster)?;
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .ok_or(Error::NoCluster)?;
    if let Some(data) = &cluster.certificate_authority_data {
        let pem = base64::engine::general_purpose::STANDARD.decode(data.trim())?;
        return Ok(String::from_utf8_lossy(&pem).into_owned());
    }
    match &cluster.certificate_authority {
        Some(file) => Ok(std::fs::read_to_string(file)?),
        None => Ok(String::new()),
    }
}

pub async fn run(context: Arc<Context>) {
    if context.root_ca.is_empty() {
        info!("no cluster CA configured; root CA publisher not running");
        return;
    }
    pernamespace::run::<ConfigMap, _, _>(context, NAME, CONFIG_MAP, |namespace, context| async move {
        publish(&namespace, &context).await
    })
    .await;
}

/// Writes or puts back the namespace's `kube-root-ca.crt`.
async fn publish(namespace: &str, context: &Context) -> Result<Action, kube::Error> {
    let api = Api::<ConfigMap>::namespaced(context.client.clone(), namespace);
    let data = BTreeMap::from([(KEY.to_string(), context.root_ca.to_string())]);
    let result = match api.get_opt(CONFIG_MAP).await? {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(CONFIG_MAP.into()),
                    annotations: Some(BTreeMap::from([(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into())])),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..ConfigMap::default()
            };
            api.create(&PostParams::default(), &cm).await
        }
        Some(cm)
            if cm.data.as_ref() == Some(&data)
                && cm.binary_data.is_none()
                && cm.annotations().get(DESCRIPTION_ANNOTATION).is_some_and(|d| !d.is_empty()) =>
        {
            return Ok(Action::await_change());
        }
        Some(mut cm) => {
            // Edited: put the CA back, keeping whatever else was added to the object.
            cm.data = Some(data);
            cm.binary_data = None;
            cm.annotations_mut().insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
            api.replace(CONFIG_MAP, &PostParams::default(), &cm).await
        }
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // Created or changed meanwhile: look again.
        Err(e) if is_status(&e, &[409]) => Ok(Action::requeue(Duration::from_secs(1))),
        // The namespace began terminating.
        Err(e) if is_status(&e, &[403]) => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}
