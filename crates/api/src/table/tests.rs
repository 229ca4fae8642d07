//! The printers, kind by kind: columns as kubectl v1.32 shows them against a real
//! cluster, and the cells that take computing.

use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::*;
use crate::builtins::builtin_resources;

fn now() -> Timestamp {
    "2024-06-01T12:00:00Z".parse().unwrap()
}

/// A timestamp `seconds` before [`now`], as stored.
fn ago(seconds: i64) -> String {
    (now() - SignedDuration::from_secs(seconds)).to_string()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "creationTimestamp": ago(200)})
}

/// The column names, with `*` after the wide ones.
fn columns(group: &str, kind: &str) -> Vec<String> {
    let definitions = Printer::for_kind(group, kind).column_definitions();
    definitions
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            if c["priority"] == 1 {
                format!("{name}*")
            } else {
                name
            }
        })
        .collect()
}

fn cells(group: &str, kind: &str, object: Value) -> Vec<Value> {
    let table = table(group, kind, &[&object], now(), IncludeObject::None);
    let cells = table["rows"][0]["cells"].as_array().unwrap().clone();
    assert_eq!(cells.len(), table["columnDefinitions"].as_array().unwrap().len(), "{kind}: one cell per column");
    cells
}

fn pod_cells(pod: Value) -> Vec<Value> {
    cells("", "Pod", pod)
}

/// A pod's READY, STATUS and RESTARTS.
fn pod_summary(pod: Value) -> (String, String, String) {
    let c = pod_cells(pod);
    (c[1].as_str().unwrap().into(), c[2].as_str().unwrap().into(), c[3].as_str().unwrap().into())
}

fn s(value: &str) -> String {
    value.to_string()
}

// ---------------------------------------------------------------------------------------
// Ages
// ---------------------------------------------------------------------------------------

#[test]
fn ages_are_human_durations() {
    let cases: &[(i64, &str)] = &[
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (8 * 3600 + 59 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (8 * 86400 + 5 * 3600, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (740 * 86400, "2y10d"),
        (8 * 365 * 86400 + 86400, "8y"),
        (-1, "0s"),
    ];
    for &(seconds, want) in cases {
        assert_eq!(human_duration(SignedDuration::from_secs(seconds)), want, "{seconds}s");
    }
    assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
    assert_eq!(human_duration(SignedDuration::from_secs(-2)), "<invalid>");
}

#[test]
fn ages_of_objects() {
    let age = |metadata: Value| cells("", "ConfigMap", json!({"metadata": metadata}))[2].clone();
    assert_eq!(age(json!({"name": "a", "creationTimestamp": ago(5)})), "5s");
    assert_eq!(age(json!({"name": "a", "creationTimestamp": ago(200)})), "3m20s");
    assert_eq!(age(json!({"name": "a", "creationTimestamp": ago(-60)})), "<invalid>");
    assert_eq!(age(json!({"name": "a"})), "<unknown>");
    assert_eq!(age(json!({"name": "a", "creationTimestamp": null})), "<unknown>");
}

// ---------------------------------------------------------------------------------------
// The table itself
// ---------------------------------------------------------------------------------------

#[test]
fn table_shape_and_included_objects() {
    let cm = json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta("cm"), "data": {"a": "1"}});
    let t = table("", "ConfigMap", &[&cm], now(), IncludeObject::Metadata);
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({}));
    assert_eq!(
        t["columnDefinitions"][0],
        json!({"name": "Name", "type": "string", "format": "name", "description": t["columnDefinitions"][0]["description"], "priority": 0})
    );
    assert_eq!(t["columnDefinitions"][1]["format"], "");
    assert_eq!(t["rows"][0]["cells"], json!(["cm", 1, "3m20s"]));
    assert_eq!(
        t["rows"][0]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta("cm")})
    );
    assert!(t["rows"][0].get("conditions").is_none());

    let t = table("", "ConfigMap", &[&cm], now(), IncludeObject::Object);
    assert_eq!(t["rows"][0]["object"], cm);
    let t = table("", "ConfigMap", &[&cm], now(), IncludeObject::None);
    assert_eq!(t["rows"][0]["object"], Value::Null);
    assert!(t["rows"][0].as_object().unwrap().contains_key("object"));

    let empty = table("", "ConfigMap", &[], now(), IncludeObject::Metadata);
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["columnDefinitions"].as_array().unwrap().len(), 3);
}

#[test]
fn watch_events_carry_headers_once() {
    let cm = json!({"metadata": meta("cm")});
    let first = watch_table("", "ConfigMap", &cm, now(), IncludeObject::Metadata, true);
    let later = watch_table("", "ConfigMap", &cm, now(), IncludeObject::Metadata, false);
    assert_eq!(first["columnDefinitions"].as_array().unwrap().len(), 3);
    assert_eq!(later["columnDefinitions"], Value::Null);
    assert_eq!(first["rows"], later["rows"]);
    assert_eq!(later["rows"].as_array().unwrap().len(), 1);
}

#[test]
fn include_object_parameter() {
    assert_eq!(IncludeObject::from_query(None), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::from_query(Some("")), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::from_query(Some("Metadata")), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::from_query(Some("None")), Ok(IncludeObject::None));
    assert_eq!(IncludeObject::from_query(Some("Object")), Ok(IncludeObject::Object));
    assert_eq!(
        IncludeObject::from_query(Some("all")),
        Err("Unable to convert to Table as requested: includeObject: Unsupported value: \"all\": \
             supported values: \"Metadata\", \"None\", \"Object\""
            .into())
    );
}

#[test]
fn every_builtin_kind_has_its_printer() {
    // Kinds that can be read; create-only reviews are never listed.
    for def in builtin_resources().into_iter().filter(|d| d.allows("get") || d.allows("list")) {
        assert!(builtin(def.group, def.kind).is_some(), "{}/{} has no printer", def.group, def.kind);
        // Bare objects print without panicking and fill every column.
        cells(def.group, def.kind, json!({}));
        cells(def.group, def.kind, json!({"metadata": {"name": "x"}, "spec": null, "status": {}}));
    }
}

// ---------------------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------------------

#[test]
fn pod_columns() {
    assert_eq!(
        columns("", "Pod"),
        ["Name", "Ready", "Status", "Restarts", "Age", "IP*", "Node*", "Nominated Node*", "Readiness Gates*"]
    );
}

fn pod(spec: Value, status: Value) -> Value {
    json!({"metadata": meta("web"), "spec": spec, "status": status})
}

fn one_container() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx"}]})
}

#[test]
fn pod_status_pending_and_creating() {
    assert_eq!(pod_summary(pod(one_container(), json!({"phase": "Pending"}))), (s("0/1"), s("Pending"), s("0")));
    let creating = json!({"phase": "Pending", "containerStatuses": [
        {"name": "app", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
    ]});
    assert_eq!(pod_summary(pod(one_container(), creating)), (s("0/1"), s("ContainerCreating"), s("0")));
    let gated = json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}
    ]});
    assert_eq!(pod_summary(pod(one_container(), gated)).1, "SchedulingGated");
}

#[test]
fn pod_status_running_and_restarts() {
    let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
    let running = json!({"phase": "Running", "containerStatuses": [
        {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": ago(100)}}},
        {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {"startedAt": ago(100)}}},
    ]});
    assert_eq!(pod_summary(pod(spec.clone(), running)), (s("1/2"), s("Running"), s("0")));

    let crashing = json!({"phase": "Running", "containerStatuses": [
        {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(3600)}}},
        {"name": "b", "ready": false, "restartCount": 3,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}},
    ]});
    assert_eq!(pod_summary(pod(spec.clone(), crashing)), (s("1/2"), s("CrashLoopBackOff"), s("5 (5m ago)")));

    // Restarts without a recorded termination time show no age.
    let no_time = json!({"phase": "Running", "containerStatuses": [
        {"name": "a", "ready": true, "restartCount": 4, "state": {"running": {}}},
    ]});
    assert_eq!(pod_summary(pod(one_container(), no_time)).2, "4");
}

#[test]
fn pod_status_completed_and_failed() {
    let done = pod(
        one_container(),
        json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "app", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]}),
    );
    assert_eq!(pod_summary(done.clone()), (s("0/1"), s("Completed"), s("0")));
    let t = table("", "Pod", &[&done], now(), IncludeObject::None);
    assert_eq!(
        t["rows"][0]["conditions"],
        json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}])
    );

    let failed = pod(
        one_container(),
        json!({"phase": "Failed", "containerStatuses": [
            {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}
        ]}),
    );
    assert_eq!(pod_summary(failed.clone()).1, "Signal:9");
    let t = table("", "Pod", &[&failed], now(), IncludeObject::None);
    assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Failed");

    let exit = pod(
        one_container(),
        json!({"phase": "Failed", "containerStatuses": [
            {"name": "app", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}
        ]}),
    );
    assert_eq!(pod_summary(exit).1, "ExitCode:2");
    let evicted = pod(one_container(), json!({"phase": "Failed", "reason": "Evicted"}));
    assert_eq!(pod_summary(evicted).1, "Evicted");
}

#[test]
fn pod_status_completed_container_beside_a_running_one() {
    let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
    let status = |ready: &str| {
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}], "containerStatuses": [
            {"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "b", "ready": true, "state": {"running": {}}},
        ]})
    };
    // The first container is looked at last, so its reason would win.
    assert_eq!(pod_summary(pod(spec.clone(), status("True"))).1, "Running");
    assert_eq!(pod_summary(pod(spec, status("False"))).1, "NotReady");
}

#[test]
fn pod_status_terminating() {
    let mut p = pod(
        one_container(),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}]}),
    );
    p["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(pod_summary(p.clone()), (s("1/1"), s("Terminating"), s("0")));
    p["status"]["reason"] = json!("NodeLost");
    assert_eq!(pod_summary(p.clone()).1, "Unknown");
    // A finished pod being deleted keeps its status.
    let mut done = pod(one_container(), json!({"phase": "Succeeded"}));
    done["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(pod_summary(done).1, "Succeeded");
}

#[test]
fn pod_status_init_containers() {
    let spec = json!({
        "initContainers": [{"name": "one"}, {"name": "two"}],
        "containers": [{"name": "app"}],
    });
    let status = |init: Value| json!({"phase": "Pending", "initContainerStatuses": init});
    let running = json!([
        {"name": "one", "restartCount": 0, "state": {"running": {}}},
        {"name": "two", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}},
    ]);
    assert_eq!(pod_summary(pod(spec.clone(), status(running))), (s("0/1"), s("Init:0/2"), s("0")));
    let second = json!([
        {"name": "one", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "two", "restartCount": 0, "state": {"running": {}}},
    ]);
    assert_eq!(pod_summary(pod(spec.clone(), status(second))).1, "Init:1/2");
    let crashing = json!([
        {"name": "one", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}},
    ]);
    assert_eq!(
        pod_summary(pod(spec.clone(), status(crashing))),
        (s("0/1"), s("Init:CrashLoopBackOff"), s("3 (30s ago)"))
    );
    let failed =
        json!([{"name": "one", "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]);
    assert_eq!(pod_summary(pod(spec.clone(), status(failed))).1, "Init:Error");
    let bare = json!([{"name": "one", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]);
    assert_eq!(pod_summary(pod(spec.clone(), status(bare))).1, "Init:ExitCode:3");
    let signal = json!([{"name": "one", "restartCount": 0, "state": {"terminated": {"exitCode": 137, "signal": 9}}}]);
    assert_eq!(pod_summary(pod(spec, status(signal))).1, "Init:Signal:9");
}

#[test]
fn pod_sidecars_count_as_containers() {
    let spec = json!({
        "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
        "containers": [{"name": "app"}],
    });
    let status = json!({
        "phase": "Running",
        "conditions": [{"type": "Initialized", "status": "True"}],
        "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true, "restartCount": 1,
            "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}],
        "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
    });
    assert_eq!(pod_summary(pod(spec, status)), (s("2/2"), s("Running"), s("1 (2m ago)")));
}

#[test]
fn pod_wide_cells() {
    let p = pod(
        json!({"nodeName": "node-1", "containers": [], "readinessGates": [
            {"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}
        ]}),
        json!({"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}]}),
    );
    assert_eq!(pod_cells(p)[5..], [json!("10.0.0.5"), json!("node-1"), json!("<none>"), json!("1/2")]);
    let bare = pod(one_container(), json!({"phase": "Pending", "nominatedNodeName": "node-2"}));
    assert_eq!(pod_cells(bare)[5..], [json!("<none>"), json!("<none>"), json!("node-2"), json!("<none>")]);
}

// ---------------------------------------------------------------------------------------
// apps
// ---------------------------------------------------------------------------------------

fn template() -> Value {
    json!({"spec": {"containers": [{"name": "app", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}})
}

#[test]
fn deployments() {
    assert_eq!(
        columns("apps", "Deployment"),
        ["Name", "Ready", "Up-to-date", "Available", "Age", "Containers*", "Images*", "Selector*"]
    );
    let d = json!({
        "metadata": meta("web"),
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}, "template": template()},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    assert_eq!(
        cells("apps", "Deployment", d),
        [
            json!("web"),
            json!("2/3"),
            json!(3),
            json!(2),
            json!("3m20s"),
            json!("app,log"),
            json!("nginx:1,busybox"),
            json!("app=web,env in (dev,prod),tier=fe")
        ]
    );
    let empty = json!({"metadata": meta("x"), "spec": {"selector": {}}});
    let c = cells("apps", "Deployment", empty);
    assert_eq!((c[1].clone(), c[7].clone()), (json!("0/1"), json!("")));
    let bad = json!({"metadata": meta("x"), "spec": {"selector": {"matchLabels": {"bad key!": "x"}}}});
    assert_eq!(cells("apps", "Deployment", bad)[7], "<invalid>");
}

#[test]
fn replica_sets_stateful_sets_daemon_sets() {
    assert_eq!(
        columns("apps", "ReplicaSet"),
        ["Name", "Desired", "Current", "Ready", "Age", "Containers*", "Images*", "Selector*"]
    );
    let rs = json!({"metadata": meta("web-1"), "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
        "status": {"replicas": 2, "readyReplicas": 1}});
    assert_eq!(
        cells("apps", "ReplicaSet", rs),
        [
            json!("web-1"),
            json!(2),
            json!(2),
            json!(1),
            json!("3m20s"),
            json!("app,log"),
            json!("nginx:1,busybox"),
            json!("app=web")
        ]
    );

    assert_eq!(columns("apps", "StatefulSet"), ["Name", "Ready", "Age", "Containers*", "Images*"]);
    let sts = json!({"metadata": meta("db"), "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 3}});
    assert_eq!(cells("apps", "StatefulSet", sts)[..3], [json!("db"), json!("3/3"), json!("3m20s")]);

    assert_eq!(
        columns("apps", "DaemonSet"),
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
            "Containers*",
            "Images*",
            "Selector*"
        ]
    );
    let ds = json!({"metadata": meta("agent"),
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"spec": {
            "nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "agent:2"}]}}},
        "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}});
    assert_eq!(
        cells("apps", "DaemonSet", ds),
        [
            json!("agent"),
            json!(3),
            json!(3),
            json!(2),
            json!(3),
            json!(2),
            json!("kubernetes.io/os=linux"),
            json!("3m20s"),
            json!("a"),
            json!("agent:2"),
            json!("app=agent")
        ]
    );
    let bare = cells("apps", "DaemonSet", json!({"metadata": meta("x")}));
    assert_eq!((bare[6].clone(), bare[10].clone()), (json!("<none>"), json!("<none>")));
}

#[test]
fn controller_revisions() {
    assert_eq!(columns("apps", "ControllerRevision"), ["Name", "Controller", "Revision", "Age"]);
    let mut cr = json!({"metadata": meta("web-7d9"), "revision": 2});
    cr["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "Pod", "name": "other"},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true},
    ]);
    assert_eq!(
        cells("apps", "ControllerRevision", cr),
        [json!("web-7d9"), json!("statefulset.apps/web"), json!(2), json!("3m20s")]
    );
    let orphan = json!({"metadata": meta("x"), "revision": 1});
    assert_eq!(cells("apps", "ControllerRevision", orphan)[1], "<none>");
}

// ---------------------------------------------------------------------------------------
// batch
// ---------------------------------------------------------------------------------------

#[test]
fn jobs() {
    assert_eq!(
        columns("batch", "Job"),
        ["Name", "Status", "Completions", "Duration", "Age", "Containers*", "Images*", "Selector*"]
    );
    let job = |spec: Value, status: Value| json!({"metadata": meta("pi"), "spec": spec, "status": status});
    let running = job(json!({"completions": 1, "parallelism": 1}), json!({"startTime": ago(90), "active": 1}));
    let c = cells("batch", "Job", running);
    assert_eq!(c[..5], [json!("pi"), json!("Running"), json!("0/1"), json!("90s"), json!("3m20s")]);

    let complete = job(
        json!({"completions": 3}),
        json!({"succeeded": 3, "startTime": ago(600), "completionTime": ago(400),
            "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
    );
    assert_eq!(cells("batch", "Job", complete)[1..4], [json!("Complete"), json!("3/3"), json!("3m20s")]);

    let parallel = job(json!({"parallelism": 4}), json!({"succeeded": 1}));
    assert_eq!(cells("batch", "Job", parallel)[1..4], [json!("Running"), json!("1/1 of 4"), json!("")]);
    let single = job(json!({}), json!({}));
    assert_eq!(cells("batch", "Job", single)[2], "0/1");

    let status = |conditions: Value| {
        cells("batch", "Job", job(json!({"completions": 1}), json!({"conditions": conditions})))[1].clone()
    };
    assert_eq!(status(json!([{"type": "Failed", "status": "True"}])), "Failed");
    assert_eq!(status(json!([{"type": "Suspended", "status": "True"}])), "Suspended");
    assert_eq!(status(json!([{"type": "Suspended", "status": "False"}])), "Running");
    assert_eq!(status(json!([{"type": "FailureTarget", "status": "True"}])), "FailureTarget");
    let mut deleting = job(json!({}), json!({"conditions": [{"type": "Suspended", "status": "True"}]}));
    deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
    assert_eq!(cells("batch", "Job", deleting)[1], "Terminating");
}

#[test]
fn cron_jobs() {
    assert_eq!(
        columns("batch", "CronJob"),
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age",
            "Containers*",
            "Images*",
            "Selector*"
        ]
    );
    let cj = json!({"metadata": meta("backup"),
        "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": template()}}},
        "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(65)}});
    assert_eq!(
        cells("batch", "CronJob", cj),
        [
            json!("backup"),
            json!("*/5 * * * *"),
            json!("<none>"),
            json!("False"),
            json!(1),
            json!("65s"),
            json!("3m20s"),
            json!("app,log"),
            json!("nginx:1,busybox"),
            json!("<none>")
        ]
    );
    let bare = json!({"metadata": meta("x"), "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
    assert_eq!(cells("batch", "CronJob", bare)[2..6], [json!("Etc/UTC"), json!("<unset>"), json!(0), json!("<none>")]);
}

// ---------------------------------------------------------------------------------------
// core
// ---------------------------------------------------------------------------------------

#[test]
fn services() {
    assert_eq!(columns("", "Service"), ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector*"]);
    let svc = |spec: Value, status: Value| {
        cells("", "Service", json!({"metadata": meta("web"), "spec": spec, "status": status}))
    };
    let cluster_ip = svc(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "selector": {"app": "web", "a.b": "c"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}),
        json!({}),
    );
    assert_eq!(
        cluster_ip,
        [
            json!("web"),
            json!("ClusterIP"),
            json!("10.96.0.10"),
            json!("<none>"),
            json!("80/TCP,53/UDP"),
            json!("3m20s"),
            json!("a.b=c,app=web")
        ]
    );
    let node_port = svc(
        json!({"type": "NodePort", "clusterIPs": ["10.96.0.11"], "externalIPs": ["1.2.3.4", "5.6.7.8"],
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP", "nodePort": 30443}]}),
        json!({}),
    );
    assert_eq!(node_port[3..5], [json!("1.2.3.4,5.6.7.8"), json!("80/TCP,443:30443/TCP")]);
    assert_eq!(node_port[6], "<none>");

    let pending = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 80, "nodePort": 31000}]}),
        json!({}),
    );
    assert_eq!(pending[3..5], [json!("<pending>"), json!("80:31000/TCP")]);
    let balanced = svc(
        json!({"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]}),
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example.com"}, {"ip": "203.0.113.9"}]}}),
    );
    assert_eq!(balanced[2..5], [json!("<none>"), json!("203.0.113.9,lb.example.com,9.9.9.9"), json!("<none>")]);
    let external = svc(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({}));
    assert_eq!(external[1..4], [json!("ExternalName"), json!("<none>"), json!("db.example.com")]);
    let headless = svc(json!({"clusterIP": "None", "clusterIPs": ["None"]}), json!({}));
    assert_eq!(headless[1..4], [json!("ClusterIP"), json!("None"), json!("<none>")]);
}

#[test]
fn endpoints() {
    assert_eq!(columns("", "Endpoints"), ["Name", "Endpoints", "Age"]);
    let ep = |subsets: Value| cells("", "Endpoints", json!({"metadata": meta("web"), "subsets": subsets}))[1].clone();
    assert_eq!(ep(json!(null)), "<none>");
    assert_eq!(
        ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 8080}]}])),
        "10.0.0.1:8080,10.0.0.2:8080"
    );
    assert_eq!(
        ep(json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}])),
        "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
    );
    assert_eq!(ep(json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}])), "[fd00::1]:80");
    assert_eq!(ep(json!([{"addresses": [{"ip": "10.0.0.1"}]}])), "10.0.0.1");
    assert_eq!(ep(json!([{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}])), "");
}

#[test]
fn config_maps_secrets_service_accounts_namespaces() {
    assert_eq!(columns("", "ConfigMap"), ["Name", "Data", "Age"]);
    let cm = json!({"metadata": meta("cm"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(cells("", "ConfigMap", cm), [json!("cm"), json!(3), json!("3m20s")]);

    assert_eq!(columns("", "Secret"), ["Name", "Type", "Data", "Age"]);
    let secret = json!({"metadata": meta("tls"), "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(cells("", "Secret", secret), [json!("tls"), json!("kubernetes.io/tls"), json!(2), json!("3m20s")]);
    assert_eq!(cells("", "Secret", json!({"metadata": meta("s")}))[1..3], [json!("Opaque"), json!(0)]);

    assert_eq!(columns("", "ServiceAccount"), ["Name", "Secrets", "Age"]);
    assert_eq!(
        cells("", "ServiceAccount", json!({"metadata": meta("default")})),
        [json!("default"), json!(0), json!("3m20s")]
    );

    assert_eq!(columns("", "Namespace"), ["Name", "Status", "Age"]);
    let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(3 * 86400)}, "status": {"phase": "Active"}});
    assert_eq!(cells("", "Namespace", ns), [json!("kube-system"), json!("Active"), json!("3d")]);
}

#[test]
fn nodes() {
    assert_eq!(
        columns("", "Node"),
        [
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            "Internal-IP*",
            "External-IP*",
            "OS-Image*",
            "Kernel-Version*",
            "Container-Runtime*"
        ]
    );
    let node = json!({
        "metadata": {"name": "cp-1", "creationTimestamp": ago(5 * 3600 + 120), "labels": {
            "node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": "true",
            "node-role.kubernetes.io/": "", "kubernetes.io/role": "master", "kubernetes.io/hostname": "cp-1"}},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "False"}],
            "addresses": [{"type": "Hostname", "address": "cp-1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0", "containerRuntimeVersion": "containerd://1.7.0"},
        },
    });
    assert_eq!(
        cells("", "Node", node),
        [
            json!("cp-1"),
            json!("NotReady,SchedulingDisabled"),
            json!("control-plane,etcd,master"),
            json!("5h2m"),
            json!("v1.32.0"),
            json!("192.168.1.10"),
            json!("<none>"),
            json!("Debian GNU/Linux 12 (bookworm)"),
            json!("6.1.0"),
            json!("containerd://1.7.0")
        ]
    );
    let bare = cells("", "Node", json!({"metadata": {"name": "n"}}));
    assert_eq!(bare[1..3], [json!("Unknown"), json!("<none>")]);
    assert_eq!(bare[7..], [json!("<unknown>"), json!("<unknown>"), json!("<unknown>")]);
    let ready = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    assert_eq!(cells("", "Node", ready)[1], "Ready");
}

#[test]
fn events() {
    let expected =
        ["Last Seen", "Type", "Reason", "Object", "Subobject*", "Source*", "Message", "First Seen*", "Count*", "Name*"];
    assert_eq!(columns("", "Event"), expected);
    assert_eq!(columns("events.k8s.io", "Event"), expected);
    let name_column = &Printer::for_kind("", "Event").column_definitions()[9];
    assert_eq!((name_column["format"].clone(), name_column["priority"].clone()), (json!("name"), json!(1)));

    let core = json!({
        "metadata": meta("web.17a"),
        "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff", "type": "Warning", "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600), "lastTimestamp": ago(30), "count": 7,
    });
    assert_eq!(
        cells("", "Event", core),
        [
            json!("30s"),
            json!("Warning"),
            json!("BackOff"),
            json!("pod/web"),
            json!("spec.containers{app}"),
            json!("kubelet, node-1"),
            json!("Back-off restarting failed container"),
            json!("10m"),
            json!(7),
            json!("web.17a")
        ]
    );

    let new_style = json!({
        "metadata": meta("web.17b"),
        "regarding": {"kind": "Deployment", "name": "web"},
        "reason": "ScalingReplicaSet", "type": "Normal", "note": "Scaled up replica set web-1 to 3",
        "reportingController": "deployment-controller", "reportingInstance": "",
        "eventTime": "2024-06-01T11:58:00.123456Z",
    });
    assert_eq!(
        cells("events.k8s.io", "Event", new_style),
        [
            json!("119s"),
            json!("Normal"),
            json!("ScalingReplicaSet"),
            json!("deployment/web"),
            json!(""),
            json!("deployment-controller"),
            json!("Scaled up replica set web-1 to 3"),
            json!("119s"),
            json!(1),
            json!("web.17b")
        ]
    );

    let series = json!({
        "metadata": meta("e"), "involvedObject": {"kind": "Node"},
        "eventTime": ago(3600), "series": {"count": 4, "lastObservedTime": ago(10)},
    });
    let c = cells("", "Event", series);
    assert_eq!(
        (c[0].clone(), c[3].clone(), c[7].clone(), c[8].clone()),
        (json!("10s"), json!("node"), json!("60m"), json!(4))
    );
    let unknown = cells("", "Event", json!({"metadata": meta("e")}));
    assert_eq!((unknown[0].clone(), unknown[7].clone()), (json!("<unknown>"), json!("<unknown>")));
}

#[test]
fn persistent_volumes_and_claims() {
    assert_eq!(
        columns("", "PersistentVolume"),
        [
            "Name",
            "Capacity",
            "Access Modes",
            "Reclaim Policy",
            "Status",
            "Claim",
            "StorageClass",
            "VolumeAttributesClass",
            "Reason",
            "Age",
            "VolumeMode*"
        ]
    );
    let pv = json!({"metadata": meta("pv-1"), "spec": {"capacity": {"storage": "10Gi"},
        "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Retain",
        "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "fast", "volumeMode": "Filesystem"},
        "status": {"phase": "Bound"}});
    assert_eq!(
        cells("", "PersistentVolume", pv),
        [
            json!("pv-1"),
            json!("10Gi"),
            json!("RWO,RWX"),
            json!("Retain"),
            json!("Bound"),
            json!("default/data"),
            json!("fast"),
            json!("<unset>"),
            json!(""),
            json!("3m20s"),
            json!("Filesystem")
        ]
    );
    let mut annotated = json!({"metadata": meta("pv-2"), "spec": {"storageClassName": "fast"}});
    annotated["metadata"]["annotations"] = json!({"volume.beta.kubernetes.io/storage-class": "slow"});
    annotated["metadata"]["deletionTimestamp"] = json!(ago(1));
    let c = cells("", "PersistentVolume", annotated);
    assert_eq!(
        (c[1].clone(), c[4].clone(), c[6].clone(), c[10].clone()),
        (json!("0"), json!("Terminating"), json!("slow"), json!("<unset>"))
    );

    assert_eq!(
        columns("", "PersistentVolumeClaim"),
        [
            "Name",
            "Status",
            "Volume",
            "Capacity",
            "Access Modes",
            "StorageClass",
            "VolumeAttributesClass",
            "Age",
            "VolumeMode*"
        ]
    );
    let bound = json!({"metadata": meta("data"), "spec": {"volumeName": "pv-1", "storageClassName": "fast",
        "resources": {"requests": {"storage": "5Gi"}}, "volumeMode": "Filesystem", "volumeAttributesClassName": "gold"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]}});
    assert_eq!(
        cells("", "PersistentVolumeClaim", bound),
        [
            json!("data"),
            json!("Bound"),
            json!("pv-1"),
            json!("10Gi"),
            json!("RWOP"),
            json!("fast"),
            json!("gold"),
            json!("3m20s"),
            json!("Filesystem")
        ]
    );
    let pending = json!({"metadata": meta("data"), "spec": {"resources": {"requests": {"storage": "5Gi"}}}, "status": {"phase": "Pending"}});
    assert_eq!(
        cells("", "PersistentVolumeClaim", pending)[1..6],
        [json!("Pending"), json!(""), json!(""), json!(""), json!("")]
    );
}

#[test]
fn resource_quotas_put_age_second() {
    assert_eq!(columns("", "ResourceQuota"), ["Name", "Age", "Request", "Limit"]);
    let quota = json!({"metadata": meta("compute"), "status": {
        "hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "8Gi", "limits.cpu": "8", "limitsfoo": "1"},
        "used": {"pods": "3", "requests.cpu": "500m", "limits.cpu": "1"}}});
    assert_eq!(
        cells("", "ResourceQuota", quota),
        [
            json!("compute"),
            json!("3m20s"),
            json!("limitsfoo: 0/1, pods: 3/10, requests.cpu: 500m/4"),
            json!("limits.cpu: 1/8, limits.memory: 0/8Gi")
        ]
    );
}

#[test]
fn kinds_without_a_printer_show_creation_time() {
    for (group, kind) in
        [("", "LimitRange"), ("rbac.authorization.k8s.io", "Role"), ("rbac.authorization.k8s.io", "ClusterRole")]
    {
        assert_eq!(columns(group, kind), ["Name", "Created At"]);
        let definitions = Printer::for_kind(group, kind).column_definitions();
        assert_eq!(definitions[1]["type"], "date");
        let object = json!({"metadata": {"name": "view", "creationTimestamp": "2024-05-01T10:00:00Z"}});
        assert_eq!(cells(group, kind, object), [json!("view"), json!("2024-05-01T10:00:00Z")]);
    }
    assert_eq!(cells("", "LimitRange", json!({"metadata": {"name": "x"}}))[1], "0001-01-01T00:00:00Z");
}

// ---------------------------------------------------------------------------------------
// The smaller groups
// ---------------------------------------------------------------------------------------

#[test]
fn endpoint_slices() {
    assert_eq!(columns("discovery.k8s.io", "EndpointSlice"), ["Name", "AddressType", "Ports", "Endpoints", "Age"]);
    let slice = json!({"metadata": meta("web-abc"), "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "metrics"}, {}, {"port": 9000}],
        "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}]});
    assert_eq!(
        cells("discovery.k8s.io", "EndpointSlice", slice),
        [
            json!("web-abc"),
            json!("IPv4"),
            json!("80,metrics,* + 1 more..."),
            json!("10.0.0.1,10.0.0.2,10.0.0.3"),
            json!("3m20s")
        ]
    );
    let empty = json!({"metadata": meta("x"), "addressType": "IPv6"});
    assert_eq!(cells("discovery.k8s.io", "EndpointSlice", empty)[2..4], [json!("<unset>"), json!("<unset>")]);
}

#[test]
fn ingresses_and_classes() {
    assert_eq!(columns("networking.k8s.io", "Ingress"), ["Name", "Class", "Hosts", "Address", "Ports", "Age"]);
    let ing = json!({"metadata": meta("web"), "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["a.example.com"]}],
        "rules": [{"host": "a.example.com"}, {}, {"host": "b.example.com"}, {"host": "c.example.com"}, {"host": "d.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.1.1.1"}, {"hostname": "a-very-long-load-balancer.example.com"}]}}});
    assert_eq!(
        cells("networking.k8s.io", "Ingress", ing),
        [
            json!("web"),
            json!("nginx"),
            json!("a.example.com,b.example.com,c.example.com + 2 more..."),
            json!("10.1.1.1,a-very-long-load-balancer.example.com"),
            json!("80, 443"),
            json!("3m20s")
        ]
    );
    let bare = json!({"metadata": meta("x"), "spec": {"rules": [{"http": {}}]}});
    assert_eq!(
        cells("networking.k8s.io", "Ingress", bare)[1..5],
        [json!("<none>"), json!("*"), json!(""), json!("80")]
    );

    assert_eq!(columns("networking.k8s.io", "IngressClass"), ["Name", "Controller", "Parameters", "Age"]);
    let class = json!({"metadata": meta("nginx"), "spec": {"controller": "k8s.io/ingress-nginx",
        "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "external"}}});
    assert_eq!(
        cells("networking.k8s.io", "IngressClass", class)[1..3],
        [json!("k8s.io/ingress-nginx"), json!("IngressParameters.k8s.example.com/external")]
    );
    let plain = json!({"metadata": meta("x"), "spec": {"controller": "c"}});
    assert_eq!(cells("networking.k8s.io", "IngressClass", plain)[2], "<none>");
}

#[test]
fn network_policies() {
    assert_eq!(columns("networking.k8s.io", "NetworkPolicy"), ["Name", "Pod-Selector", "Age"]);
    let all = json!({"metadata": meta("deny"), "spec": {"podSelector": {}}});
    assert_eq!(cells("networking.k8s.io", "NetworkPolicy", all)[1], "<none>");
    let some = json!({"metadata": meta("db"), "spec": {"podSelector": {"matchExpressions": [
        {"key": "role", "operator": "NotIn", "values": ["web"]}, {"key": "debug", "operator": "DoesNotExist"},
        {"key": "app", "operator": "Exists"}]}}});
    assert_eq!(cells("networking.k8s.io", "NetworkPolicy", some)[1], "app,!debug,role notin (web)");
}

#[test]
fn disruption_budgets_and_leases() {
    assert_eq!(
        columns("policy", "PodDisruptionBudget"),
        ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"]
    );
    let pdb = json!({"metadata": meta("web"), "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
    assert_eq!(
        cells("policy", "PodDisruptionBudget", pdb),
        [json!("web"), json!("2"), json!("N/A"), json!(1), json!("3m20s")]
    );
    let pct = json!({"metadata": meta("web"), "spec": {"maxUnavailable": "25%"}});
    assert_eq!(cells("policy", "PodDisruptionBudget", pct)[1..4], [json!("N/A"), json!("25%"), json!(0)]);

    assert_eq!(columns("coordination.k8s.io", "Lease"), ["Name", "Holder", "Age"]);
    let lease = json!({"metadata": meta("kube-scheduler"), "spec": {"holderIdentity": "cp-1_abc"}});
    assert_eq!(
        cells("coordination.k8s.io", "Lease", lease),
        [json!("kube-scheduler"), json!("cp-1_abc"), json!("3m20s")]
    );
}

#[test]
fn role_bindings() {
    for kind in ["RoleBinding", "ClusterRoleBinding"] {
        assert_eq!(
            columns("rbac.authorization.k8s.io", kind),
            ["Name", "Role", "Age", "Users*", "Groups*", "ServiceAccounts*"]
        );
    }
    let binding = json!({"metadata": meta("admins"), "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "ops"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"}]});
    assert_eq!(
        cells("rbac.authorization.k8s.io", "RoleBinding", binding),
        [
            json!("admins"),
            json!("ClusterRole/admin"),
            json!("3m20s"),
            json!("alice, bob"),
            json!("ops"),
            json!("ci/deployer")
        ]
    );
}

#[test]
fn storage_and_priority_classes() {
    assert_eq!(
        columns("storage.k8s.io", "StorageClass"),
        ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion", "Age"]
    );
    let mut default = json!({"metadata": meta("standard"), "provisioner": "rancher.io/local-path"});
    default["metadata"]["annotations"] = json!({"storageclass.kubernetes.io/is-default-class": "true"});
    assert_eq!(
        cells("storage.k8s.io", "StorageClass", default),
        [
            json!("standard (default)"),
            json!("rancher.io/local-path"),
            json!("Delete"),
            json!("Immediate"),
            json!(false),
            json!("3m20s")
        ]
    );
    let other = json!({"metadata": meta("slow"), "provisioner": "p", "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": true});
    assert_eq!(
        cells("storage.k8s.io", "StorageClass", other)[..5],
        [json!("slow"), json!("p"), json!("Retain"), json!("WaitForFirstConsumer"), json!(true)]
    );

    assert_eq!(
        columns("scheduling.k8s.io", "PriorityClass"),
        ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
    );
    let pc = json!({"metadata": meta("system-node-critical"), "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"});
    assert_eq!(
        cells("scheduling.k8s.io", "PriorityClass", pc),
        [json!("system-node-critical"), json!(2000001000), json!(false), json!("3m20s"), json!("PreemptLowerPriority")]
    );
}

// ---------------------------------------------------------------------------------------
// Custom resources
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_kinds_print_name_and_age() {
    assert_eq!(columns("example.com", "Widget"), ["Name", "Age"]);
    let definitions = Printer::for_kind("example.com", "Widget").column_definitions();
    assert_eq!(definitions[1]["type"], "date");
    let widget = json!({"metadata": meta("w")});
    assert_eq!(cells("example.com", "Widget", widget), [json!("w"), json!("3m20s")]);
    assert_eq!(cells("example.com", "Widget", json!({"metadata": {"name": "w"}})), [json!("w"), Value::Null]);
}

#[test]
fn custom_printer_columns() {
    let column = |name: &str, type_: &str, path: &str, priority: i32| PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        json_path: path.into(),
        priority,
        ..PrinterColumn::default()
    };
    let printer = Printer::custom(&[
        column("Replicas", "integer", ".spec.replicas", 0),
        column("Ready", "string", r#".status.conditions[?(@.type=="Ready")].status"#, 0),
        column("Age", "date", ".metadata.creationTimestamp", 0),
        column("Selector", "string", ".spec.selector", 1),
        column("Broken", "string", ".spec..x", 0),
    ]);
    let definitions = printer.column_definitions();
    assert_eq!(definitions[1]["description"], "Custom resource definition column (in JSONPath format): .spec.replicas");
    assert_eq!(definitions[4]["priority"], 1);
    let widget = json!({"metadata": meta("w"), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "w"}}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let t = printer.table(&[&widget], now(), IncludeObject::Metadata);
    assert_eq!(t["rows"][0]["cells"], json!(["w", 3, "True", "3m20s", r#"{"matchLabels":{"app":"w"}}"#, null]));
}
