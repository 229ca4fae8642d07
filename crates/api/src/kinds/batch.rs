//! The `batch` group: Jobs (with their generated selector) and CronJobs.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::cron::schedule_error;
use super::pod::{default_template, validate_template};
use super::{default_str, immutable, json, label_selector, map_json, nonnegative, one_of, same, selects};
use crate::error::FieldError;
use crate::strategy::{KindRules, SelectableField};

/// The labels that tie a Job's pods to it when the selector is generated: each with
/// the job's name or uid, under its current and its legacy key.
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
const CONTROLLER_UID_LABELS: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];
/// The label the generated selector matches.
const SELECTOR_LABEL: &str = "batch.kubernetes.io/controller-uid";

// ---------------------------------------------------------------------------------------
// Job
// ---------------------------------------------------------------------------------------

/// The defaults of a job's spec, as Kubernetes' `SetDefaults_Job` sets them (the pod
/// template's included).
fn default_job_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    let backoff = if spec.backoff_limit_per_index.is_some() { i32::MAX } else { 6 };
    spec.backoff_limit.get_or_insert(backoff);
    spec.completion_mode.get_or_insert_with(|| "NonIndexed".into());
    spec.suspend.get_or_insert(false);
    if let Some(policy) = &mut spec.pod_failure_policy {
        for pattern in policy.rules.iter_mut().flat_map(|r| r.on_pod_conditions.iter_mut().flatten()) {
            if pattern.status.is_empty() {
                pattern.status = "True".into();
            }
        }
    }
    let replacement = if spec.pod_failure_policy.is_some() { "Failed" } else { "TerminatingOrFailed" };
    spec.pod_replacement_policy.get_or_insert_with(|| replacement.into());
    spec.manual_selector.get_or_insert(false);
    default_template(&mut spec.template);
}

/// A job without labels of its own wears its pod template's.
fn labels_from_template(job: &mut Job) {
    let template_labels = job.spec.as_ref().and_then(|s| s.template.metadata.as_ref()?.labels.clone());
    if job.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty) {
        if let Some(labels) = template_labels {
            job.metadata.labels = Some(labels);
        }
    }
}

fn manual_selector(spec: &JobSpec) -> bool {
    spec.manual_selector == Some(true)
}

/// Labels the pod template with the job's name and uid, and selects that uid (kept
/// where the user already set them: validation then reports any conflict).
fn generate_selector(spec: &mut JobSpec, meta: &ObjectMeta) {
    let name = meta.name.clone().unwrap_or_default();
    let uid = meta.uid.clone().unwrap_or_default();
    let labels = spec.template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new);
    for (keys, value) in [(JOB_NAME_LABELS, &name), (CONTROLLER_UID_LABELS, &uid)] {
        for key in keys {
            labels.entry(key.into()).or_insert_with(|| value.clone());
        }
    }
    let match_labels =
        spec.selector.get_or_insert_with(LabelSelector::default).match_labels.get_or_insert_with(BTreeMap::new);
    match_labels.entry(SELECTOR_LABEL.into()).or_insert(uid);
}

/// What a job spec holds besides its selector, under `path` (a Job's `spec`, or a
/// CronJob's `spec.jobTemplate.spec`).
fn validate_job_spec(spec: &JobSpec, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    errors.extend(nonnegative(spec.parallelism, &format!("{path}.parallelism")));
    errors.extend(nonnegative(spec.completions, &format!("{path}.completions")));
    errors.extend(nonnegative(spec.active_deadline_seconds, &format!("{path}.activeDeadlineSeconds")));
    errors.extend(nonnegative(spec.backoff_limit, &format!("{path}.backoffLimit")));
    errors.extend(nonnegative(spec.ttl_seconds_after_finished, &format!("{path}.ttlSecondsAfterFinished")));
    match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => {}
        Some("Indexed") if spec.completions.is_none() => {
            errors.push(FieldError::required(format!("{path}.completions"), "when completion mode is Indexed"));
        }
        Some("Indexed") => {}
        Some(other) => {
            errors.push(FieldError::not_supported(format!("{path}.completionMode"), other, &["NonIndexed", "Indexed"]))
        }
    }
    let template_path = format!("{path}.template");
    errors.extend(validate_template(&spec.template, &template_path));
    let restart_path = format!("{template_path}.spec.restartPolicy");
    match spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("") {
        "" | "Always" => errors.push(FieldError::required(restart_path, r#"valid values: "OnFailure", "Never""#)),
        "OnFailure" | "Never" => {}
        other => errors.push(FieldError::not_supported(restart_path, other, &["OnFailure", "Never"])),
    }
    errors
}

/// A generated selector relies on the template carrying the job's name and uid.
fn validate_generated_labels(job: &Job, template: &PodTemplateSpec) -> Vec<FieldError> {
    let uid = job.metadata.uid.as_deref().unwrap_or("");
    let name = job.metadata.name.as_deref().unwrap_or("");
    let mut errors = Vec::new();
    if uid.is_empty() {
        errors.push(FieldError::required("metadata.uid", ""));
    }
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    let expected = CONTROLLER_UID_LABELS.iter().map(|k| (*k, uid)).chain(JOB_NAME_LABELS.iter().map(|k| (*k, name)));
    for (key, value) in expected {
        let field = format!("spec.template.metadata.labels[{key}]");
        match labels.and_then(|l| l.get(key)) {
            None => errors.push(FieldError::required(field, value)),
            Some(actual) if actual != value => {
                errors.push(FieldError::invalid(field, map_json(labels), &format!("must be '{value}'")));
            }
            Some(_) => {}
        }
    }
    errors
}

impl KindRules for Job {
    fn default(&mut self) {
        default_job_spec(self.spec.get_or_insert_with(JobSpec::default));
        labels_from_template(self);
    }

    fn prepare_create(&mut self) {
        let spec = self.spec.get_or_insert_with(JobSpec::default);
        if !manual_selector(spec) {
            generate_selector(spec, &self.metadata);
        }
        // Kubernetes copies the template's labels on every read; the generated ones
        // included, so a new job shows them.
        labels_from_template(self);
        self.status = Some(Default::default());
    }

    fn prepare_update(&mut self, old: &Self) {
        let (Some(new), Some(old)) = (self.spec.as_mut(), old.spec.as_ref()) else { return };
        if manual_selector(new) {
            return;
        }
        // A client that resends the job as first written keeps what was generated.
        if new.selector.is_none() {
            new.selector.clone_from(&old.selector);
        }
        let old_labels = old.template.metadata.as_ref().and_then(|m| m.labels.as_ref());
        let labels =
            new.template.metadata.get_or_insert_with(Default::default).labels.get_or_insert_with(BTreeMap::new);
        for key in JOB_NAME_LABELS.iter().chain(&CONTROLLER_UID_LABELS) {
            if let Some(value) = old_labels.and_then(|l| l.get(*key)) {
                labels.entry((*key).into()).or_insert_with(|| value.clone());
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let spec = self.spec.clone().unwrap_or_default();
        let mut errors = validate_job_spec(&spec, "spec");
        let labels = spec.template.metadata.as_ref().and_then(|m| m.labels.as_ref());
        match &spec.selector {
            None => errors.push(FieldError::required("spec.selector", "")),
            Some(selector) => {
                errors.extend(label_selector(selector, "spec.selector"));
                if selects(selector, labels) == Some(false) {
                    errors.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        map_json(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        if !manual_selector(&spec) {
            errors.extend(validate_generated_labels(self, &spec.template));
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let new = self.spec.clone().unwrap_or_default();
        let old_status_started = old.status.as_ref().is_some_and(|s| s.start_time.is_some());
        let old = old.spec.clone().unwrap_or_default();
        let mut errors = Vec::new();
        let indexed = new.completion_mode.as_deref() == Some("Indexed");
        if !indexed {
            errors.extend(immutable(&new.completions, &old.completions, "spec.completions"));
        } else if new.completions.is_some() && new.completions != old.completions && new.completions != new.parallelism
        {
            errors.push(FieldError::invalid(
                "spec.completions",
                json(&new.completions),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
        errors.extend(immutable(&new.selector, &old.selector, "spec.selector"));
        // A suspended job that never ran may still be told where to run.
        let mut old_template = old.template.clone();
        if old.suspend == Some(true) && !old_status_started {
            allow_scheduling_changes(&mut old_template, &new.template);
        }
        if !same(&new.template, &old_template) {
            errors.push(FieldError::invalid("spec.template", json(&new.template), super::IMMUTABLE));
        }
        errors.extend(immutable(&new.completion_mode, &old.completion_mode, "spec.completionMode"));
        errors.extend(immutable(&new.pod_failure_policy, &old.pod_failure_policy, "spec.podFailurePolicy"));
        errors.extend(immutable(
            &new.backoff_limit_per_index,
            &old.backoff_limit_per_index,
            "spec.backoffLimitPerIndex",
        ));
        errors.extend(immutable(&new.managed_by, &old.managed_by, "spec.managedBy"));
        errors.extend(immutable(&new.success_policy, &old.success_policy, "spec.successPolicy"));
        errors
    }

    const FIELDS: &'static [SelectableField] =
        &[SelectableField::count("status.successful").from(&["status.succeeded"])];
}

/// Takes the scheduling directives (and labels and annotations) of `new` into `old`.
fn allow_scheduling_changes(old: &mut PodTemplateSpec, new: &PodTemplateSpec) {
    let new_meta = new.metadata.clone().unwrap_or_default();
    let meta = old.metadata.get_or_insert_with(Default::default);
    meta.labels = new_meta.labels;
    meta.annotations = new_meta.annotations;
    if let (Some(old_spec), Some(new_spec)) = (old.spec.as_mut(), new.spec.as_ref()) {
        old_spec.node_selector.clone_from(&new_spec.node_selector);
        old_spec.affinity.clone_from(&new_spec.affinity);
        old_spec.tolerations.clone_from(&new_spec.tolerations);
        old_spec.scheduling_gates.clone_from(&new_spec.scheduling_gates);
    }
}

// ---------------------------------------------------------------------------------------
// CronJob
// ---------------------------------------------------------------------------------------

impl KindRules for CronJob {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(CronJobSpec::default);
        default_str(&mut spec.concurrency_policy, "Allow");
        spec.suspend.get_or_insert(false);
        spec.successful_jobs_history_limit.get_or_insert(3);
        spec.failed_jobs_history_limit.get_or_insert(1);
        // A job template gets only its pod template's defaults: the Job's own come when
        // the job is made from it.
        if let Some(job) = &mut spec.job_template.spec {
            default_template(&mut job.template);
            for pattern in job
                .pod_failure_policy
                .iter_mut()
                .flat_map(|p| p.rules.iter_mut())
                .flat_map(|r| r.on_pod_conditions.iter_mut().flatten())
            {
                if pattern.status.is_empty() {
                    pattern.status = "True".into();
                }
            }
        }
    }

    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let spec = self.spec.clone().unwrap_or_default();
        let mut errors = Vec::new();
        if spec.schedule.is_empty() {
            errors.push(FieldError::required("spec.schedule", ""));
        } else {
            if let Some(message) = schedule_error(&spec.schedule) {
                errors.push(FieldError::invalid("spec.schedule", spec.schedule.as_str(), &message));
            }
            if spec.schedule.contains("TZ") {
                errors.push(FieldError::invalid(
                    "spec.schedule",
                    spec.schedule.as_str(),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            }
        }
        match spec.time_zone.as_deref() {
            Some("") => {
                errors.push(FieldError::invalid("spec.timeZone", "", "timeZone must be nil or non-empty string"))
            }
            Some(zone) if zone.eq_ignore_ascii_case("local") => errors.push(FieldError::invalid(
                "spec.timeZone",
                zone,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            )),
            _ => {}
        }
        errors.extend(nonnegative(spec.starting_deadline_seconds, "spec.startingDeadlineSeconds"));
        errors.extend(one_of(
            spec.concurrency_policy.as_deref(),
            &["Allow", "Forbid", "Replace"],
            "spec.concurrencyPolicy",
        ));
        let job = spec.job_template.spec.unwrap_or_default();
        errors.extend(validate_job_spec(&job, "spec.jobTemplate.spec"));
        if let Some(selector) = &job.selector {
            errors.push(FieldError::invalid(
                "spec.jobTemplate.spec.selector",
                json(selector),
                "`selector` will be auto-generated",
            ));
        }
        if manual_selector(&job) {
            errors.push(FieldError::not_supported("spec.jobTemplate.spec.manualSelector", true, &["nil", "false"]));
        }
        errors.extend(nonnegative(spec.successful_jobs_history_limit, "spec.successfulJobsHistoryLimit"));
        errors.extend(nonnegative(spec.failed_jobs_history_limit, "spec.failedJobsHistoryLimit"));
        errors
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::JobStatus;
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::messages;

    fn job(spec: serde_json::Value) -> Job {
        let mut job: Job =
            serde_json::from_value(json!({"metadata": {"name": "pi", "namespace": "d", "uid": "u-1"}, "spec": spec}))
                .unwrap();
        job.default();
        job
    }

    fn pi() -> Job {
        job(json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}))
    }

    fn created(mut job: Job) -> Job {
        job.prepare_create();
        job
    }

    #[test]
    fn job_defaults() {
        let job = pi();
        let spec = job.spec.as_ref().unwrap();
        assert_eq!((spec.parallelism, spec.completions), (Some(1), Some(1)));
        assert_eq!(spec.backoff_limit, Some(6));
        assert_eq!(spec.completion_mode.as_deref(), Some("NonIndexed"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!(spec.manual_selector, Some(false));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("TerminatingOrFailed"));
        assert_eq!(spec.template.spec.as_ref().unwrap().dns_policy.as_deref(), Some("ClusterFirst"));

        let parallel = job_with(json!({"parallelism": 3, "backoffLimitPerIndex": 1}));
        let spec = parallel.spec.as_ref().unwrap();
        assert_eq!((spec.parallelism, spec.completions), (Some(3), None));
        assert_eq!(spec.backoff_limit, Some(i32::MAX));
    }

    fn job_with(fields: serde_json::Value) -> Job {
        let mut spec =
            json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}});
        for (key, value) in fields.as_object().unwrap() {
            spec[key] = value.clone();
        }
        job(spec)
    }

    #[test]
    fn create_generates_the_selector() {
        let job = created(pi());
        let spec = job.spec.as_ref().unwrap();
        let labels = spec.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], "u-1");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["job-name"], "pi");
        let selector = spec.selector.as_ref().unwrap().match_labels.as_ref().unwrap();
        assert_eq!(selector, &BTreeMap::from([("batch.kubernetes.io/controller-uid".to_string(), "u-1".to_string())]));
        assert_eq!(job.metadata.labels.as_ref(), Some(labels));
        assert_eq!(job.status, Some(JobStatus::default()));
        assert!(job.validate().is_empty());
        assert_eq!(crate::strategy::fields_of(&job), vec![("status.successful", "0".to_string())]);
    }

    #[test]
    fn manual_selector_is_left_alone() {
        let job = created(job_with(json!({
            "manualSelector": true,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}},
        })));
        assert_eq!(
            messages(&job.validate()),
            vec![
                r#"spec.template.metadata.labels: Invalid value: {"app":"y"}: `selector` does not match template `labels`"#
            ]
        );
    }

    #[test]
    fn restart_policy_must_be_on_failure_or_never() {
        let always = created(job(json!({"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}})));
        assert_eq!(
            messages(&always.validate()),
            vec![r#"spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#]
        );
    }

    #[test]
    fn conflicting_generated_labels_are_reported() {
        let job = created(job_with(json!({
            "template": {"metadata": {"labels": {"job-name": "other"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}},
        })));
        let errors = messages(&job.validate());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("spec.template.metadata.labels[job-name]: Invalid value: {"));
        assert!(errors[0].ends_with("must be 'pi'"));
    }

    #[test]
    fn job_field_rules() {
        let job = created(job_with(json!({"parallelism": -1, "completionMode": "Sometimes", "backoffLimit": -2})));
        assert_eq!(
            messages(&job.validate()),
            vec![
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0",
                r#"spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", "Indexed""#,
            ]
        );
    }

    #[test]
    fn job_updates() {
        let old = created(pi());
        let mut new = pi();
        new.prepare_update(&old);
        assert_eq!(new.spec.as_ref().unwrap().selector, old.spec.as_ref().unwrap().selector);
        assert!(new.validate_update(&old).is_empty());

        let mut changed = old.clone();
        changed.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image = Some("perl:2".into());
        let errors = changed.validate_update(&old);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.template");
        assert!(errors[0].message.ends_with("field is immutable"));

        let mut reselected = old.clone();
        reselected.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
        assert_eq!(reselected.validate_update(&old)[0].field, "spec.selector");

        let mut more = old.clone();
        more.spec.as_mut().unwrap().completions = Some(5);
        assert_eq!(
            messages(&more.validate_update(&old)),
            vec!["spec.completions: Invalid value: 5: field is immutable"]
        );
        let mut parallel = old.clone();
        parallel.spec.as_mut().unwrap().parallelism = Some(4);
        assert!(parallel.validate_update(&old).is_empty());
    }

    #[test]
    fn suspended_job_may_be_rescheduled() {
        let old = created(job_with(json!({"suspend": true})));
        let mut new = old.clone();
        new.spec.as_mut().unwrap().template.spec.as_mut().unwrap().node_selector =
            Some(BTreeMap::from([("zone".to_string(), "a".to_string())]));
        assert!(new.validate_update(&old).is_empty());
    }

    fn cron_job(spec: serde_json::Value) -> CronJob {
        let mut cron: CronJob =
            serde_json::from_value(json!({"metadata": {"name": "c", "namespace": "d"}, "spec": spec})).unwrap();
        cron.default();
        cron
    }

    fn hello(schedule: &str) -> CronJob {
        cron_job(json!({"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure", "containers": [{"name": "hello", "image": "busybox"}],
        }}}}}))
    }

    #[test]
    fn cron_job_defaults() {
        let cron = hello("*/1 * * * *");
        let spec = cron.spec.as_ref().unwrap();
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Allow"));
        assert_eq!(spec.suspend, Some(false));
        assert_eq!((spec.successful_jobs_history_limit, spec.failed_jobs_history_limit), (Some(3), Some(1)));
        let job = spec.job_template.spec.as_ref().unwrap();
        assert_eq!(job.backoff_limit, None);
        let pod = job.template.spec.as_ref().unwrap();
        assert_eq!(pod.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(pod.containers[0].image_pull_policy.as_deref(), Some("Always"));
        assert!(cron.validate().is_empty());
    }

    #[test]
    fn cron_job_rules() {
        assert_eq!(messages(&hello("").validate()), vec!["spec.schedule: Required value"]);
        assert_eq!(
            messages(&hello("* * *").validate()),
            vec![r#"spec.schedule: Invalid value: "* * *": expected exactly 5 fields, found 3: [* * *]"#]
        );
        assert!(hello("@daily").validate().is_empty());
        let mut bad = hello("0 * * * *");
        let spec = bad.spec.as_mut().unwrap();
        spec.concurrency_policy = Some("Sometimes".into());
        let job = spec.job_template.spec.as_mut().unwrap();
        job.selector = Some(LabelSelector::default());
        job.manual_selector = Some(true);
        job.template.spec.as_mut().unwrap().restart_policy = Some("Always".into());
        assert_eq!(
            messages(&bad.validate()),
            vec![
                r#"spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#,
                r#"spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#,
                "spec.jobTemplate.spec.selector: Invalid value: {}: `selector` will be auto-generated",
                r#"spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: "nil", "false""#,
            ]
        );
    }
}
