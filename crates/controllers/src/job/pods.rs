//! The Job's pods: how they are sorted (active, terminating, finished), and how a new one
//! is made from the template (tracking finalizer, owner, completion index).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

/// Kept on every pod until the controller has counted it in the Job's status.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// The completion index of an Indexed Job's pod (annotation and label).
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// Running or about to: neither finished nor being deleted.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

pub fn is_terminating(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_some()
}

pub fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// The pod's completion index, when it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    pod.annotations().get(INDEX_KEY)?.parse().ok().filter(|i| *i >= 0)
}

/// Whether the pod ran for `job` (its controller owner reference).
pub fn owned_by(pod: &Pod, job: &Job) -> bool {
    pod.owner_references().iter().any(|o| o.controller == Some(true) && Some(&o.uid) == job.metadata.uid.as_ref())
}

/// A new pod for `job` from its template; `index` for Indexed Jobs.
pub fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    let generate_name = match index {
        Some(index) => {
            labels.insert(INDEX_KEY.into(), index.to_string());
            annotations.insert(INDEX_KEY.into(), index.to_string());
            spec.hostname.get_or_insert_with(|| format!("{name}-{index}"));
            // The downward API gives each container its index, as Kubernetes does.
            let env = EnvVar {
                name: INDEX_ENV.into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!("metadata.annotations['{INDEX_KEY}']"),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            };
            let containers = spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut());
            for container in containers {
                let envs = container.env.get_or_insert_with(Vec::new);
                if !envs.iter().any(|e| e.name == INDEX_ENV) {
                    envs.push(env.clone());
                }
            }
            format!("{name}-{index}-")
        }
        None => format!("{name}-"),
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name),
            namespace: job.namespace(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            owner_references: Some(vec![controller_reference(job)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn controller_reference(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: Job::api_version(&()).into_owned(),
        kind: Job::kind(&()).into_owned(),
        name: job.name_any(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}
