//! Pods: READY, the STATUS kubectl shows (a phase, a container's reason, `Init:1/3`,
//! `Terminating`...), and RESTARTS with how long ago the last one was.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::common::{
    age, at, col, condition, condition_true, flag, has, int, list, name, since, text, time, wide, NAME,
};
use super::{Builtin, Column};

pub(super) static POD: Builtin = Builtin { columns: COLUMNS, cells, conditions };

const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready containers out of all containers (sidecars included)."),
    col("Status", "string", "The pod's state, summarized from its phase and its containers' states."),
    col("Restarts", "string", "Container restarts, and how long ago the latest one was."),
    super::common::AGE,
    wide("IP", "string", "The pod's first IP address (status.podIPs)."),
    wide("Node", "string", "The node the pod is bound to (spec.nodeName)."),
    wide("Nominated Node", "string", "The node the scheduler nominated for a preempting pod."),
    wide("Readiness Gates", "string", "Readiness gates that hold out of those the pod declares."),
];

/// A finished pod's row is marked `Completed`.
fn conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match text(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// The latest of two optional times.
fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    a.max(b)
}

/// When a container last terminated before its current run.
fn last_termination(status: &Value) -> Option<Timestamp> {
    if has(status, &["lastState", "terminated"]) {
        time(status, &["lastState", "terminated", "finishedAt"])
    } else {
        None
    }
}

/// A terminated container's reason, or its signal or exit code when it gave none.
fn terminated_reason(terminated: &Value, prefix: &str) -> String {
    match text(terminated, &["reason"]) {
        "" => match int(terminated, &["signal"]) {
            0 => format!("{prefix}ExitCode:{}", int(terminated, &["exitCode"])),
            signal => format!("{prefix}Signal:{signal}"),
        },
        reason => format!("{prefix}{reason}"),
    }
}

fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(pod, &["spec"]);
    let status = at(pod, &["status"]);
    let init_specs = list(spec, &["initContainers"]);
    let is_sidecar = |container: &str| {
        init_specs.iter().any(|c| text(c, &["name"]) == container && text(c, &["restartPolicy"]) == "Always")
    };
    let sidecars = init_specs.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").count();
    let total = list(spec, &["containers"]).len() + sidecars;
    let conditions = list(status, &["conditions"]);

    let phase = text(status, &["phase"]);
    let mut reason = match text(status, &["reason"]) {
        "" => phase.to_string(),
        reason => reason.to_string(),
    };
    if conditions.iter().any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }

    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    for (i, container) in list(status, &["initContainerStatuses"]).iter().enumerate() {
        let count = int(container, &["restartCount"]);
        restarts += count;
        last_restart = later(last_restart, last_termination(container));
        let sidecar = is_sidecar(text(container, &["name"]));
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, last_termination(container));
        }
        let terminated = at(container, &["state", "terminated"]);
        let waiting_reason = text(container, &["state", "waiting", "reason"]);
        if !terminated.is_null() && int(terminated, &["exitCode"]) == 0 {
            continue;
        }
        if sidecar && flag(container, &["started"]) {
            if flag(container, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if !terminated.is_null() {
            terminated_reason(terminated, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(conditions, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for container in list(status, &["containerStatuses"]).iter().rev() {
            restarts += int(container, &["restartCount"]);
            last_restart = later(last_restart, last_termination(container));
            let terminated = at(container, &["state", "terminated"]);
            let waiting_reason = text(container, &["state", "waiting", "reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if !terminated.is_null() {
                reason = terminated_reason(terminated, "");
            } else if flag(container, &["ready"]) && has(container, &["state", "running"]) {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container to finish completed, while another still runs.
        if reason == "Completed" && has_running {
            reason = if condition_true(conditions, "Ready") { "Running" } else { "NotReady" }.into();
        }
    }

    if has(pod, &["metadata", "deletionTimestamp"]) {
        if text(status, &["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Failed" && phase != "Succeeded" {
            reason = "Terminating".into();
        }
    }

    let restarts = match last_restart {
        Some(when) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(when), now)),
        _ => restarts.to_string(),
    };

    let ip = list(status, &["podIPs"])
        .first()
        .map(|ip| text(ip, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| text(status, &["podIP"]));
    let gates = list(spec, &["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let holding = gates
            .iter()
            .filter(|gate| {
                condition(conditions, text(gate, &["conditionType"])).is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{holding}/{}", gates.len())
    };
    let or_none = |s: &str| super::common::or_none(s);

    vec![
        name(pod),
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts.into(),
        age(pod, now),
        or_none(ip).into(),
        or_none(text(spec, &["nodeName"])).into(),
        or_none(text(status, &["nominatedNodeName"])).into(),
        readiness_gates.into(),
    ]
}
