//! Namespace controller (kube-controller-manager's namespace-controller): a namespace
//! being deleted (the API server has set its deletionTimestamp and phase Terminating and
//! keeps it while spec.finalizers holds `kubernetes`) has all its content deleted; while
//! content remains, the namespace's conditions say what is left and why; once nothing
//! remains, the `kubernetes` finalizer is removed through namespaces/NAME/finalize and
//! the API server removes the namespace.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::verbs;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use skiff_client::is_status;
use tracing::{debug, info};

use crate::discovery::{self, Served};
use crate::Context;

pub const NAME: &str = "namespace-controller";

/// The finalizer (spec.finalizers) this controller owns.
const FINALIZER: &str = "kubernetes";
/// How long Kubernetes assumes an object's finalizers take, when estimating.
const FINALIZER_ESTIMATE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] kube::Error),
}

pub async fn run(context: Arc<Context>) {
    let namespaces = Api::<Namespace>::all(context.client.clone());
    Controller::new(namespaces, watcher::Config::default())
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "namespace reconcile failed");
            }
        })
        .await;
}

fn retry(error: &Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

/// The condition types the controller maintains while a namespace terminates, each with
/// the reason and message Kubernetes gives it when all is well.
const CONDITIONS: [(&str, &str, &str); 5] = [
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
];

/// What one pass over the namespace's content found.
#[derive(Default)]
struct Progress {
    /// Failures as conditions: type → (reason, message).
    failures: BTreeMap<&'static str, (&'static str, String)>,
    /// How long the remaining content should take to go.
    estimate: Duration,
    done: bool,
}

async fn reconcile(namespace: Arc<Namespace>, context: Arc<Context>) -> Result<Action, Error> {
    let holds =
        namespace.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|f| f == FINALIZER));
    if namespace.metadata.deletion_timestamp.is_none() || !holds {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let progress = delete_content(&context.client, &name).await;
    update_conditions(&context.client, &namespace, &progress).await?;
    if !progress.done {
        let wait = progress.estimate.clamp(Duration::from_millis(100), context.timing.namespace_recheck_period);
        debug!(namespace = %name, ?wait, "content remains");
        return Ok(Action::requeue(wait));
    }
    info!(namespace = %name, "namespace content removed; finalizing");
    finalize(&context.client, &namespace).await?;
    Ok(Action::await_change())
}

/// Deletes everything in the namespace (every served namespaced kind that can be
/// deleted) and counts what is still there.
async fn delete_content(client: &kube::Client, namespace: &str) -> Progress {
    let mut progress = Progress::default();
    let served = match discovery::served(client).await {
        Ok(served) => served,
        Err(error) => {
            progress.failures.insert(CONDITIONS[0].0, ("DiscoveryFailed", error.to_string()));
            return progress;
        }
    };
    let deletable: Vec<Served> =
        served.into_iter().filter(|s| s.namespaced() && s.supports(&[verbs::DELETE, verbs::LIST])).collect();
    let mut errors = Vec::new();
    let mut remaining: Vec<String> = Vec::new();
    let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
    for served in &deletable {
        match delete_kind(client, namespace, served).await {
            Ok(left) => {
                if !left.is_empty() {
                    remaining.push(format!("{} has {} resource instances", served.qualified_name(), left.len()));
                }
                for object in &left {
                    for finalizer in object.finalizers() {
                        *finalizers.entry(finalizer.clone()).or_default() += 1;
                    }
                    let grace = object.metadata.deletion_grace_period_seconds.unwrap_or(0);
                    let estimate = if object.finalizers().is_empty() {
                        Duration::from_secs(u64::try_from(grace).unwrap_or(0))
                    } else {
                        FINALIZER_ESTIMATE
                    };
                    progress.estimate = progress.estimate.max(estimate);
                }
            }
            Err(error) => errors.push(error.to_string()),
        }
    }
    if !errors.is_empty() {
        // Several errors read as a list, as Kubernetes' aggregated errors do.
        let listed = if errors.len() == 1 { errors[0].clone() } else { format!("[{}]", errors.join(", ")) };
        let message = format!("Failed to delete all resource types, {} remaining: {listed}", errors.len());
        progress.failures.insert(CONDITIONS[2].0, ("ContentDeletionFailed", message));
    }
    if !remaining.is_empty() {
        remaining.sort();
        let message = format!("Some resources are remaining: {}", remaining.join(", "));
        progress.failures.insert(CONDITIONS[3].0, ("SomeResourcesRemain", message));
    }
    if !finalizers.is_empty() {
        let mut by_finalizer: Vec<String> =
            finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        by_finalizer.sort();
        let message = format!("Some content in the namespace has finalizers remaining: {}", by_finalizer.join(", "));
        progress.failures.insert(CONDITIONS[4].0, ("SomeFinalizersRemain", message));
    }
    progress.done = progress.failures.is_empty();
    progress
}

/// Deletes every object of one kind in the namespace; returns those still there.
async fn delete_kind(
    client: &kube::Client,
    namespace: &str,
    served: &Served,
) -> Result<Vec<PartialObjectMeta<DynamicObject>>, kube::Error> {
    let api = Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &served.resource);
    let metadata =
        Api::<PartialObjectMeta<DynamicObject>>::namespaced_with(client.clone(), namespace, &served.resource);
    let background = DeleteParams::background();
    let before = metadata.list(&ListParams::default()).await?.items;
    if before.is_empty() {
        return Ok(before);
    }
    if served.supports(&[verbs::DELETE_COLLECTION]) {
        api.delete_collection(&background, &ListParams::default()).await?;
    } else {
        for object in before.iter().filter(|o| o.metadata.deletion_timestamp.is_none()) {
            match api.delete(&object.name_any(), &background).await {
                Ok(_) => {}
                Err(e) if is_status(&e, &[404, 409]) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(metadata.list(&ListParams::default()).await?.items)
}

/// Writes the five deletion conditions (failures as found, the rest as fine).
async fn update_conditions(client: &kube::Client, namespace: &Namespace, progress: &Progress) -> Result<(), Error> {
    let current = namespace.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let now = Time(Timestamp::now());
    let conditions: Vec<NamespaceCondition> = CONDITIONS
        .iter()
        .map(|(type_, ok_reason, ok_message)| {
            let (status, reason, message) = match progress.failures.get(type_) {
                Some((reason, message)) => ("True", *reason, message.clone()),
                None => ("False", *ok_reason, ok_message.to_string()),
            };
            let previous = current.iter().find(|c| c.type_ == *type_);
            let since = previous.filter(|c| c.status == status).and_then(|c| c.last_transition_time.clone());
            NamespaceCondition {
                type_: type_.to_string(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(since.unwrap_or_else(|| now.clone())),
            }
        })
        .collect();
    let same = conditions.len() == current.len()
        && conditions.iter().all(|c| {
            current
                .iter()
                .any(|o| o.type_ == c.type_ && o.status == c.status && o.reason == c.reason && o.message == c.message)
        });
    let terminating = namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if same && terminating {
        return Ok(());
    }
    let api = Api::<Namespace>::all(client.clone());
    let patch = json!({"status": {"phase": "Terminating", "conditions": conditions}});
    match api.patch_status(&namespace.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, &[404]) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the `kubernetes` finalizer through namespaces/NAME/finalize.
async fn finalize(client: &kube::Client, namespace: &Namespace) -> Result<(), Error> {
    let mut finalized = namespace.clone();
    if let Some(spec) = finalized.spec.as_mut() {
        spec.finalizers =
            Some(spec.finalizers.take().unwrap_or_default().into_iter().filter(|f| f != FINALIZER).collect());
    }
    finalized.metadata.managed_fields = None;
    let api = Api::<Namespace>::all(client.clone());
    match api.replace_subresource("finalize", &namespace.name_any(), &PostParams::default(), &finalized).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, &[404]) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
