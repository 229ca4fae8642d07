//! TTL-after-finished controller: deletes a finished Job (Complete or Failed) once
//! spec.ttlSecondsAfterFinished has passed since it finished, with background propagation
//! so that the garbage collector removes its pods.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::ResourceExt;
use skiff_client::is_status;
use tracing::debug;

use crate::Context;

pub const NAME: &str = "ttl-after-finished-controller";

pub async fn run(context: Arc<Context>) {
    let jobs = Api::<Job>::all(context.client.clone());
    Controller::new(jobs, watcher::Config::default())
        .run(reconcile, |_, error, _| retry(error), context)
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "ttl-after-finished reconcile failed");
            }
        })
        .await;
}

fn retry(error: &kube::Error) -> Action {
    debug!(%error, "retrying");
    Action::requeue(Duration::from_secs(1))
}

/// When the Job finished: its completionTime, else its terminal condition's transition.
fn finished_at(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let terminal = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    status.completion_time.as_ref().or(terminal.last_transition_time.as_ref()).map(|t| t.0)
}

async fn reconcile(job: Arc<Job>, context: Arc<Context>) -> Result<Action, kube::Error> {
    let ttl = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished);
    let (Some(ttl), Some(finished)) = (ttl, finished_at(&job)) else { return Ok(Action::await_change()) };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let expires = finished.checked_add(SignedDuration::from_secs(ttl.into())).unwrap_or(Timestamp::MAX);
    let wait = context.timing.clock.until(expires);
    if !wait.is_zero() {
        return Ok(Action::requeue(wait));
    }
    let api = Api::<Job>::namespaced(context.client.clone(), &job.namespace().unwrap_or_default());
    let params = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => debug!(job = job.name_any(), "deleted a finished job after its TTL"),
        Err(e) if is_status(&e, &[404, 409]) => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}
