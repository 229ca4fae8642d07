//! A pod's status as the kubelet reports it, computed from what the runtime says: phase,
//! the five conditions, container and init-container statuses, IPs, start time. Pure
//! functions of their inputs, so each rule is tested with plain values.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{
    ContainerState as ApiContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus as ApiContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::runtime::{ContainerState, ContainerStatus};

/// What the pod worker knows of one container of the spec.
#[derive(Clone, Debug, Default)]
pub struct ContainerView {
    /// The latest instance (None: not created yet).
    pub current: Option<ContainerStatus>,
    /// The instance before it, terminated (lastState).
    pub last: Option<ContainerStatus>,
    pub restarts: i32,
    /// Why it is not running, when the worker knows better than "not created yet":
    /// (reason, message), e.g. CrashLoopBackOff, CreateContainerConfigError.
    pub waiting: Option<(&'static str, String)>,
    /// The readiness probe's verdict (true without a readiness probe).
    pub ready: bool,
    /// The startup probe's verdict (true without a startup probe).
    pub started: bool,
}

impl From<Option<ContainerStatus>> for ContainerView {
    /// A container without probes or history.
    fn from(current: Option<ContainerStatus>) -> Self {
        ContainerView { current, ready: true, started: true, ..Default::default() }
    }
}

/// What the pod worker observed in the runtime for one pod.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Whether the pod's sandbox exists and is ready.
    pub sandbox_ready: bool,
    pub pod_ips: Vec<IpAddr>,
    /// Each init container, in spec order.
    pub init: Vec<ContainerView>,
    /// Each regular container, in spec order.
    pub containers: Vec<ContainerView>,
}

/// The node-side inputs that are not about containers.
pub struct Context<'a> {
    pub host_ip: IpAddr,
    /// Scheme of container IDs (`containerd`, `simulated`).
    pub runtime_name: &'a str,
    /// When the agent first started working on the pod (status.startTime).
    pub start_time: Timestamp,
    pub now: Timestamp,
}

/// `at` without its fraction of a second. API times travel with second precision, so a
/// status computed with the fraction would never equal the one read back, and would be
/// written again.
pub fn whole_seconds(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second()).unwrap_or(at)
}

fn time(nanos: i64) -> Option<Time> {
    (nanos > 0)
        .then(|| Time(whole_seconds(Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH))))
}

fn terminated(c: &ContainerStatus, runtime_name: &str) -> ApiContainerState {
    ApiContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("{runtime_name}://{}", c.id)),
            exit_code: c.exit_code,
            reason: (!c.reason.is_empty()).then(|| c.reason.clone()),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            started_at: time(c.started_at),
            finished_at: time(c.finished_at),
            signal: None,
        }),
        ..Default::default()
    }
}

fn api_status(
    name: &str,
    image: &str,
    view: &ContainerView,
    ctx: &Context<'_>,
    waiting_reason: &str,
) -> ApiContainerStatus {
    let observed = view.current.as_ref();
    let container_id = observed.map(|c| format!("{}://{}", ctx.runtime_name, c.id));
    let waiting = |reason: &str, message: Option<String>| ApiContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
        ..Default::default()
    };
    let mut last = view.last.as_ref().map(|c| terminated(c, ctx.runtime_name));
    let (state, ready, started) = match (observed, &view.waiting) {
        // A worker's reason (back-off, config error) wins over the exited instance, which
        // then shows as the last state.
        (Some(c), Some((reason, message))) if c.state == ContainerState::Exited => {
            last = Some(terminated(c, ctx.runtime_name));
            (waiting(reason, Some(message.clone())), false, false)
        }
        (Some(c), _) if c.state == ContainerState::Running => (
            ApiContainerState {
                running: Some(ContainerStateRunning { started_at: time(c.started_at) }),
                ..Default::default()
            },
            view.ready && view.started,
            view.started,
        ),
        (Some(c), _) if c.state == ContainerState::Exited => (terminated(c, ctx.runtime_name), false, false),
        (_, Some((reason, message))) => (waiting(reason, Some(message.clone())), false, false),
        _ => (waiting(waiting_reason, None), false, false),
    };
    ApiContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: observed.map(|c| c.image_ref.clone()).unwrap_or_default(),
        container_id,
        state: Some(state),
        last_state: last,
        ready,
        started: Some(started),
        restart_count: view.restarts,
        ..Default::default()
    }
}

fn is_running(c: &ContainerView) -> bool {
    c.current.as_ref().is_some_and(|c| c.state == ContainerState::Running)
}

fn exited(c: &ContainerView) -> Option<i32> {
    c.current.as_ref().filter(|c| c.state == ContainerState::Exited).map(|c| c.exit_code)
}

/// Whether every init container has completed successfully.
pub fn initialized(observed: &Observed, init_count: usize) -> bool {
    (0..init_count).all(|i| observed.init.get(i).and_then(exited) == Some(0))
}

/// The pod phase, by the kubelet's rules.
pub fn phase(pod: &Pod, observed: &Observed) -> &'static str {
    let spec = pod.spec.as_ref();
    let init_count = spec.and_then(|s| s.init_containers.as_ref()).map_or(0, Vec::len);
    let restart_policy = spec.and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    if !initialized(observed, init_count) {
        // A failed init container with restartPolicy Never fails the pod.
        let failed = observed.init.iter().any(|c| exited(c).is_some_and(|code| code != 0));
        return if failed && restart_policy == "Never" { "Failed" } else { "Pending" };
    }
    let (mut running, mut waiting, mut failed) = (0, 0, 0);
    for container in &observed.containers {
        match (is_running(container), exited(container)) {
            (true, _) => running += 1,
            (_, Some(0)) => {}
            (_, Some(_)) => failed += 1,
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if restart_policy == "Always" {
        // All stopped, about to be restarted.
        "Running"
    } else if failed == 0 {
        "Succeeded"
    } else if restart_policy == "Never" {
        "Failed"
    } else {
        "Running"
    }
}

/// A condition, keeping the transition time of `previous` when the status is unchanged.
fn condition(
    previous: &[PodCondition],
    kind: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: None,
    }
}

fn names_where(names: &[&str], flags: impl Iterator<Item = bool>) -> String {
    let picked: Vec<&str> = names.iter().zip(flags).filter(|(_, f)| *f).map(|(n, _)| *n).collect();
    format!("[{}]", picked.join(" "))
}

/// The status to report for `pod`.
pub fn pod_status(pod: &Pod, observed: &Observed, ctx: &Context<'_>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let current = pod.status.clone().unwrap_or_default();
    let previous = current.conditions.clone().unwrap_or_default();
    let init_specs = spec.init_containers.unwrap_or_default();
    let is_initialized = initialized(observed, init_specs.len());

    let init_statuses: Vec<ApiContainerStatus> = init_specs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let view = observed.init.get(i).cloned().unwrap_or_default();
            let mut status = api_status(&c.name, c.image.as_deref().unwrap_or_default(), &view, ctx, "PodInitializing");
            // A completed init container counts as ready (the Initialized condition's view).
            if exited(&view) == Some(0) {
                status.ready = true;
            }
            status
        })
        .collect();
    let waiting_reason = if is_initialized { "ContainerCreating" } else { "PodInitializing" };
    let statuses: Vec<ApiContainerStatus> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let view = observed.containers.get(i).cloned().unwrap_or_default();
            api_status(&c.name, c.image.as_deref().unwrap_or_default(), &view, ctx, waiting_reason)
        })
        .collect();

    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    let unready = names_where(&names, statuses.iter().map(|s| !s.ready));
    let containers_ready = statuses.iter().all(|s| s.ready);
    let init_names: Vec<&str> = init_specs.iter().map(|c| c.name.as_str()).collect();
    let incomplete = names_where(&init_names, init_statuses.iter().map(|s| !s.ready));

    // Readiness gates: Ready needs each gate's condition to be True.
    let mut gate_problem = None;
    for gate in spec.readiness_gates.iter().flatten() {
        match previous.iter().find(|c| c.type_ == gate.condition_type) {
            None => {
                gate_problem = Some(format!(
                    "corresponding condition of pod readiness gate \"{}\" does not exist.",
                    gate.condition_type
                ));
                break;
            }
            Some(c) if c.status != "True" => {
                gate_problem = Some(format!(
                    "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                    gate.condition_type, c.status
                ));
                break;
            }
            _ => {}
        }
    }
    let (ready, ready_reason, ready_message) = match (containers_ready, &gate_problem) {
        (false, _) => (false, "ContainersNotReady", format!("containers with unready status: {unready}")),
        (true, Some(problem)) => (false, "ReadinessGatesNotReady", problem.clone()),
        (true, None) => (true, "", String::new()),
    };

    let now = ctx.now;
    let ours = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"];
    let mut conditions = vec![
        condition(&previous, "PodReadyToStartContainers", observed.sandbox_ready, None, None, now),
        condition(
            &previous,
            "Initialized",
            is_initialized,
            Some("ContainersNotInitialized".into()),
            Some(format!("containers with incomplete status: {incomplete}")),
            now,
        ),
        condition(&previous, "Ready", ready, Some(ready_reason.into()), Some(ready_message), now),
        condition(
            &previous,
            "ContainersReady",
            containers_ready,
            Some("ContainersNotReady".into()),
            Some(format!("containers with unready status: {unready}")),
            now,
        ),
    ];
    // Conditions owned by others (PodScheduled, readiness gates, DisruptionTarget) stay.
    conditions.extend(previous.iter().filter(|c| !ours.contains(&c.type_.as_str())).cloned());

    let host = ctx.host_ip.to_string();
    let pod_ips: Vec<String> = if spec.host_network == Some(true) {
        vec![host.clone()]
    } else {
        observed.pod_ips.iter().map(IpAddr::to_string).collect()
    };
    PodStatus {
        phase: Some(phase(pod, observed).into()),
        conditions: Some(conditions),
        host_ip: Some(host.clone()),
        host_ips: Some(vec![HostIP { ip: host }]),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty()).then(|| pod_ips.into_iter().map(|ip| PodIP { ip }).collect()),
        start_time: current.start_time.or(Some(Time(ctx.start_time))),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        qos_class: Some(crate::resources::qos_class(pod).as_str().to_string()),
        ..PodStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ContainerMetadata;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
            ]}
        }))
        .unwrap()
    }

    fn container(name: &str, state: ContainerState, exit_code: i32) -> ContainerView {
        ContainerView::from(Some(ContainerStatus {
            id: format!("id-{name}"),
            metadata: ContainerMetadata { name: name.into(), attempt: 0 },
            state,
            created_at: 1_700_000_000_000_000_000,
            started_at: 1_700_000_001_000_000_000,
            finished_at: if state == ContainerState::Exited { 1_700_000_002_000_000_000 } else { 0 },
            exit_code,
            image: "busybox".into(),
            image_ref: "sha256:abc".into(),
            reason: if state == ContainerState::Exited { "Completed".into() } else { String::new() },
            message: String::new(),
            labels: Default::default(),
            log_path: String::new(),
        }))
    }

    fn ctx() -> Context<'static> {
        Context {
            host_ip: "198.18.0.1".parse().unwrap(),
            runtime_name: "simulated",
            start_time: Timestamp::from_second(1_700_000_000).unwrap(),
            now: Timestamp::from_second(1_700_000_100).unwrap(),
        }
    }

    fn condition_of<'a>(status: &'a PodStatus, kind: &str) -> &'a PodCondition {
        status.conditions.as_ref().unwrap().iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn running_pod_is_ready_with_ips_and_container_ids() {
        let pod = pod(json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx"}]}));
        let observed = Observed {
            sandbox_ready: true,
            pod_ips: vec!["10.42.0.2".parse().unwrap()],
            containers: vec![
                container("a", ContainerState::Running, 0),
                ContainerView { restarts: 2, ..container("b", ContainerState::Running, 0) },
            ],
            ..Default::default()
        };
        let status = pod_status(&pod, &observed, &ctx());
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.42.0.2"));
        assert_eq!(status.host_ip.as_deref(), Some("198.18.0.1"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        for kind in ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"] {
            assert_eq!(condition_of(&status, kind).status, "True", "{kind}");
        }
        let statuses = status.container_statuses.unwrap();
        assert_eq!(statuses[0].container_id.as_deref(), Some("simulated://id-a"));
        assert_eq!(statuses[1].restart_count, 2);
        assert!(statuses[0].ready);
        assert!(statuses[0].state.as_ref().unwrap().running.is_some());
        // The scheduler's condition keeps its own transition time.
        let scheduled = condition_of(&pod_status(&pod, &observed, &ctx()), "PodScheduled").clone();
        assert_eq!(scheduled.last_transition_time.unwrap().0.to_string(), "2024-01-01T00:00:00Z");
    }

    #[test]
    fn waiting_containers_keep_the_pod_pending() {
        let pod = pod(json!({"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}));
        let observed = Observed {
            sandbox_ready: true,
            containers: vec![container("a", ContainerState::Running, 0), ContainerView::default()],
            ..Default::default()
        };
        let status = pod_status(&pod, &observed, &ctx());
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let ready = condition_of(&status, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        assert_eq!(ready.message.as_deref(), Some("containers with unready status: [b]"));
        let b = &status.container_statuses.unwrap()[1];
        assert_eq!(b.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(), Some("ContainerCreating"));
    }

    #[test]
    fn init_containers_gate_initialization() {
        let pod = pod(
            json!({"initContainers": [{"name": "setup", "image": "busybox"}], "containers": [{"name": "a", "image": "busybox"}]}),
        );
        let pending = Observed {
            sandbox_ready: true,
            init: vec![ContainerView::default()],
            containers: vec![ContainerView::default()],
            ..Default::default()
        };
        let status = pod_status(&pod, &pending, &ctx());
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        let initialized = condition_of(&status, "Initialized");
        assert_eq!(
            (initialized.status.as_str(), initialized.reason.as_deref()),
            ("False", Some("ContainersNotInitialized"))
        );
        assert_eq!(initialized.message.as_deref(), Some("containers with incomplete status: [setup]"));
        assert_eq!(
            status.container_statuses.unwrap()[0].state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
            Some("PodInitializing")
        );

        let done = Observed {
            sandbox_ready: true,
            init: vec![container("setup", ContainerState::Exited, 0)],
            containers: vec![container("a", ContainerState::Running, 0)],
            ..Default::default()
        };
        let status = pod_status(&pod, &done, &ctx());
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition_of(&status, "Initialized").status, "True");
        let init = &status.init_container_statuses.unwrap()[0];
        assert_eq!(init.state.as_ref().unwrap().terminated.as_ref().unwrap().reason.as_deref(), Some("Completed"));
    }

    #[test]
    fn phases_after_containers_exit() {
        let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}]}));
        let ok = Observed { containers: vec![container("a", ContainerState::Exited, 0)], ..Default::default() };
        let bad = Observed { containers: vec![container("a", ContainerState::Exited, 1)], ..Default::default() };
        assert_eq!(phase(&never, &ok), "Succeeded");
        assert_eq!(phase(&never, &bad), "Failed");
        let always = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        assert_eq!(phase(&always, &bad), "Running");
        let on_failure = pod(json!({"restartPolicy": "OnFailure", "containers": [{"name": "a", "image": "i"}]}));
        assert_eq!(phase(&on_failure, &ok), "Succeeded");
        assert_eq!(phase(&on_failure, &bad), "Running");
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let pod = pod(
            json!({"readinessGates": [{"conditionType": "example.com/lb"}], "containers": [{"name": "a", "image": "i"}]}),
        );
        let observed = Observed {
            sandbox_ready: true,
            containers: vec![container("a", ContainerState::Running, 0)],
            ..Default::default()
        };
        let status = pod_status(&pod, &observed, &ctx());
        let ready = condition_of(&status, "Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("ReadinessGatesNotReady")));
        assert_eq!(condition_of(&status, "ContainersReady").status, "True");
    }

    #[test]
    fn host_network_pods_take_the_node_address() {
        let pod = pod(json!({"hostNetwork": true, "containers": [{"name": "a", "image": "i"}]}));
        let observed = Observed {
            sandbox_ready: true,
            containers: vec![container("a", ContainerState::Running, 0)],
            ..Default::default()
        };
        assert_eq!(pod_status(&pod, &observed, &ctx()).pod_ip.as_deref(), Some("198.18.0.1"));
    }
}
