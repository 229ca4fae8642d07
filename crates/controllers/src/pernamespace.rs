//! What the controllers that keep one named object in every namespace share (the
//! ServiceAccount controller's `default`, the root CA publisher's `kube-root-ca.crt`):
//! a reconcile per namespace, triggered by the namespace and by any change of the object
//! of that name in it (deleted or edited by someone else), skipping terminating
//! namespaces (they refuse new objects), retried a second after a failure.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::Context;

/// Runs `ensure(namespace, context)` for every namespace that is not terminating, again
/// whenever the object `object_name` of kind `K` in it changes or goes. `controller`
/// names the controller in logs.
pub async fn run<K, Ensure, Fut>(context: Arc<Context>, controller: &'static str, object_name: &str, ensure: Ensure)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    Ensure: Fn(String, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, kube::Error>> + Send + 'static,
{
    let namespaces = Api::<Namespace>::all(context.client.clone());
    let objects = Api::<K>::all(context.client.clone());
    let named = watcher::Config::default().fields(&format!("metadata.name={object_name}"));
    let ensure = Arc::new(ensure);
    let reconcile = move |namespace: Arc<Namespace>, context: Arc<Context>| {
        let ensure = ensure.clone();
        async move {
            if namespace.metadata.deletion_timestamp.is_some() {
                return Ok(Action::await_change());
            }
            ensure(namespace.name_any(), context).await
        }
    };
    Controller::new(namespaces, watcher::Config::default())
        .watches(objects, named, |object| object.namespace().map(|ns| ObjectRef::new(&ns)))
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(error) = result {
                debug!(%controller, %error, "reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}
