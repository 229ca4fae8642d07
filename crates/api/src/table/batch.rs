//! batch/v1: jobs (STATUS, COMPLETIONS, DURATION) and cron jobs.

use jiff::Timestamp;
use serde_json::Value;

use super::common::{
    age, at, bool_ptr, col, condition_true, containers_and_images, format_label_selector, has, human_duration, int,
    list, name, opt_int, since, time, AGE, CONTAINERS, IMAGES, NAME, SELECTOR,
};
use super::{no_conditions, Builtin};

pub(super) static JOB: Builtin = Builtin {
    columns: &[
        NAME,
        col("Status", "string", "The job's state: Running, Complete, Failed, Suspended, Terminating..."),
        col("Completions", "string", "Succeeded pods out of those wanted."),
        col("Duration", "string", "How long the job ran, or has been running."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: job,
    conditions: no_conditions,
};

fn job(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(job, &["status", "succeeded"]);
    let completions = match opt_int(job, &["spec", "completions"]) {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match int(job, &["spec", "parallelism"]) {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = time(job, &["status", "startTime"]);
    let duration = match (start, time(job, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => human_duration(end.duration_since(start)),
    };
    let conditions = list(job, &["status", "conditions"]);
    let status = if condition_true(conditions, "Complete") {
        "Complete"
    } else if condition_true(conditions, "Failed") {
        "Failed"
    } else if has(job, &["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else if condition_true(conditions, "Suspended") {
        "Suspended"
    } else if condition_true(conditions, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (containers, images) = containers_and_images(at(job, &["spec", "template", "spec"]));
    vec![
        name(job),
        status.into(),
        completions.into(),
        duration.into(),
        age(job, now),
        containers.into(),
        images.into(),
        format_label_selector(at(job, &["spec", "selector"])).into(),
    ]
}

pub(super) static CRON_JOB: Builtin = Builtin {
    columns: &[
        NAME,
        col("Schedule", "string", "The cron schedule (spec.schedule)."),
        col("Timezone", "string", "The time zone the schedule is read in (spec.timeZone)."),
        col("Suspend", "boolean", "Whether new runs are suspended (spec.suspend)."),
        col("Active", "integer", "The number of jobs running now."),
        col("Last Schedule", "string", "How long ago a job was last scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: cron_job,
    conditions: no_conditions,
};

fn cron_job(cj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match time(cj, &["status", "lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None => "<none>".into(),
    };
    let job_spec = at(cj, &["spec", "jobTemplate", "spec"]);
    let (containers, images) = containers_and_images(at(job_spec, &["template", "spec"]));
    vec![
        name(cj),
        super::common::text(cj, &["spec", "schedule"]).into(),
        super::common::opt_text(cj, &["spec", "timeZone"]).unwrap_or("<none>").into(),
        bool_ptr(at(cj, &["spec", "suspend"])).into(),
        (list(cj, &["status", "active"]).len() as i64).into(),
        last_schedule.into(),
        age(cj, now),
        containers.into(),
        images.into(),
        format_label_selector(at(job_spec, &["selector"])).into(),
    ]
}
