//! ServiceAccount controller: every namespace has a `default` ServiceAccount, recreated
//! when deleted (kube-controller-manager's serviceaccount-controller).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use skiff_client::is_status;
use tracing::debug;

use crate::Context;

pub const NAME: &str = "serviceaccount-controller";

const DEFAULT: &str = "default";

pub async fn run(context: Arc<Context>) {
    let namespaces = Api::<Namespace>::all(context.client.clone());
    let accounts = Api::<ServiceAccount>::all(context.client.clone());
    let only_default = watcher::Config::default().fields(&format!("metadata.name={DEFAULT}"));
    Controller::new(namespaces, watcher::Config::default())
        // A deleted `default` ServiceAccount triggers its namespace.
        .watches(accounts, only_default, |account| {
            account.namespace().map(|ns| kube::runtime::reflector::ObjectRef::new(&ns))
        })
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "serviceaccount reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action, kube::Error> {
    // A terminating namespace refuses new objects; nothing to do there.
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let api = Api::<ServiceAccount>::namespaced(context.client.clone(), &name);
    if api.get_metadata_opt(DEFAULT).await?.is_none() {
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some(DEFAULT.into()), ..ObjectMeta::default() },
            ..ServiceAccount::default()
        };
        match api.create(&PostParams::default(), &account).await {
            Ok(_) => {}
            // Created meanwhile, or the namespace began terminating.
            Err(e) if is_status(&e, &[403, 409]) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Action::await_change())
}
