//! The core group's kinds other than pods and events: services, endpoints, config maps,
//! secrets, service accounts, namespaces, nodes, volumes and claims, resource quotas.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use super::common::{
    access_modes, age, at, col, format_labels, has, int, join_host_port, list, load_balancer_ingress, map_len, name,
    opt_text, or_none, text, wide, AGE, NAME,
};
use super::{no_conditions, Builtin};

// ---------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------

pub(super) static SERVICE: Builtin = Builtin {
    columns: &[
        NAME,
        col("Type", "string", "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName."),
        col("Cluster-IP", "string", "The service's virtual IP (its first cluster IP)."),
        col("External-IP", "string", "Addresses the service is reachable at from outside the cluster."),
        col("Port(s)", "string", "The ports the service exposes, as port[:nodePort]/protocol."),
        AGE,
        wide("Selector", "string", "The labels of the pods the service routes to."),
    ],
    cells: service,
    conditions: no_conditions,
};

fn service(svc: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(svc, &["spec"]);
    let type_ = opt_text(spec, &["type"]).unwrap_or("ClusterIP");
    let cluster_ip = list(spec, &["clusterIPs"])
        .first()
        .and_then(Value::as_str)
        .or_else(|| opt_text(spec, &["clusterIP"]).filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    vec![
        name(svc),
        type_.into(),
        cluster_ip.into(),
        external_ip(svc, type_).into(),
        or_none(service_ports(list(spec, &["ports"]))).into(),
        age(svc, now),
        format_labels(at(spec, &["selector"])).into(),
    ]
}

/// `getServiceExternalIP`: external IPs; for a load balancer its ingress points too,
/// `<pending>` until it has some.
fn external_ip(svc: &Value, type_: &str) -> String {
    let external: Vec<&str> = list(svc, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match type_ {
        "ClusterIP" | "NodePort" => or_none(external.join(",")),
        "LoadBalancer" => {
            let ingress = load_balancer_ingress(at(svc, &["status", "loadBalancer"]));
            match (ingress.is_empty(), external.is_empty()) {
                (true, true) => "<pending>".into(),
                (false, true) => ingress,
                (true, false) => external.join(","),
                (false, false) => format!("{ingress},{}", external.join(",")),
            }
        }
        "ExternalName" => text(svc, &["spec", "externalName"]).into(),
        _ => "<unknown>".into(),
    }
}

/// `80/TCP,443:30443/TCP`.
fn service_ports(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = int(p, &["port"]);
            let protocol = opt_text(p, &["protocol"]).unwrap_or("TCP");
            match int(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

// ---------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------

pub(super) static ENDPOINTS: Builtin = Builtin {
    columns: &[NAME, col("Endpoints", "string", "Ready addresses, as ip:port for each port."), AGE],
    cells: endpoints,
    conditions: no_conditions,
};

fn endpoints(ep: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(ep), format_endpoints(list(ep, &["subsets"])).into(), age(ep, now)]
}

/// The first three ready addresses (with each port) and how many more there are.
fn format_endpoints(subsets: &[Value]) -> String {
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut shown = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses = list(subset, &["addresses"]);
        let ports = list(subset, &["ports"]);
        if ports.is_empty() {
            // A headless service may have no ports.
            count += addresses.len();
            shown.extend(addresses.iter().map(|a| text(a, &["ip"]).to_string()).take(MAX - shown.len()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            let number = int(port, &["port"]);
            let room = MAX - shown.len();
            shown.extend(addresses.iter().take(room).map(|a| join_host_port(text(a, &["ip"]), number)));
        }
    }
    let joined = shown.join(",");
    if count > shown.len() {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

// ---------------------------------------------------------------------------------------
// ConfigMap, Secret, ServiceAccount, Namespace
// ---------------------------------------------------------------------------------------

pub(super) static CONFIG_MAP: Builtin = Builtin {
    columns: &[NAME, col("Data", "string", "The number of keys (data and binaryData)."), AGE],
    cells: config_map,
    conditions: no_conditions,
};

fn config_map(cm: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(cm), (map_len(cm, &["data"]) + map_len(cm, &["binaryData"])).into(), age(cm, now)]
}

pub(super) static SECRET: Builtin = Builtin {
    columns: &[
        NAME,
        col("Type", "string", "The secret's type, which says what its data holds."),
        col("Data", "string", "The number of keys in data."),
        AGE,
    ],
    cells: secret,
    conditions: no_conditions,
};

fn secret(secret: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(secret),
        opt_text(secret, &["type"]).unwrap_or("Opaque").into(),
        map_len(secret, &["data"]).into(),
        age(secret, now),
    ]
}

pub(super) static SERVICE_ACCOUNT: Builtin = Builtin {
    columns: &[NAME, col("Secrets", "string", "The number of secrets listed for the account."), AGE],
    cells: service_account,
    conditions: no_conditions,
};

fn service_account(sa: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(sa), (list(sa, &["secrets"]).len() as i64).into(), age(sa, now)]
}

pub(super) static NAMESPACE: Builtin = Builtin {
    columns: &[NAME, col("Status", "string", "The namespace's phase: Active or Terminating."), AGE],
    cells: namespace,
    conditions: no_conditions,
};

fn namespace(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(ns), text(ns, &["status", "phase"]).into(), age(ns, now)]
}

// ---------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------

pub(super) static NODE: Builtin = Builtin {
    columns: &[
        NAME,
        col("Status", "string", "Ready or NotReady, and SchedulingDisabled when cordoned."),
        col("Roles", "string", "The node's roles, from its node-role.kubernetes.io/* labels."),
        AGE,
        col("Version", "string", "The kubelet's version."),
        wide("Internal-IP", "string", "The node's first internal IP."),
        wide("External-IP", "string", "The node's first external IP."),
        wide("OS-Image", "string", "The operating system the node reports."),
        wide("Kernel-Version", "string", "The kernel version the node reports."),
        wide("Container-Runtime", "string", "The container runtime and its version."),
    ],
    cells: node,
    conditions: no_conditions,
};

fn node(node: &Value, now: Timestamp) -> Vec<Value> {
    // The last Ready condition wins, as Go's map of conditions by type keeps it.
    let ready = list(node, &["status", "conditions"]).iter().rev().find(|c| text(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(node, &["spec", "unschedulable"]).as_bool() == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = at(node, &["status", "nodeInfo"]);
    let info_or_unknown = |field: &str| -> Value {
        match text(info, &[field]) {
            "" => "<unknown>".into(),
            value => value.into(),
        }
    };
    vec![
        name(node),
        status.join(",").into(),
        or_none(node_roles(at(node, &["metadata", "labels"])).join(",")).into(),
        age(node, now),
        text(info, &["kubeletVersion"]).into(),
        node_address(node, "InternalIP").into(),
        node_address(node, "ExternalIP").into(),
        info_or_unknown("osImage"),
        info_or_unknown("kernelVersion"),
        info_or_unknown("containerRuntimeVersion"),
    ]
}

/// Roles from `node-role.kubernetes.io/<role>` label keys and the value of a
/// `kubernetes.io/role` label, sorted and deduplicated.
pub(super) fn node_roles(labels: &Value) -> Vec<String> {
    let mut roles = BTreeSet::new();
    for (key, value) in labels.as_object().into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if key == "kubernetes.io/role" {
            match value.as_str() {
                Some(role) if !role.is_empty() => {
                    roles.insert(role.to_string());
                }
                _ => {}
            }
        }
    }
    roles.into_iter().collect()
}

/// The node's first address of this type, or `<none>`.
fn node_address(node: &Value, type_: &str) -> String {
    list(node, &["status", "addresses"])
        .iter()
        .find(|a| text(a, &["type"]) == type_)
        .map_or_else(|| "<none>".into(), |a| text(a, &["address"]).to_string())
}

// ---------------------------------------------------------------------------------------
// PersistentVolume, PersistentVolumeClaim
// ---------------------------------------------------------------------------------------

const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The storage class: the deprecated annotation when present, else spec.storageClassName.
fn storage_class(object: &Value) -> &str {
    opt_text(object, &["metadata", "annotations", STORAGE_CLASS_ANNOTATION])
        .unwrap_or_else(|| text(object, &["spec", "storageClassName"]))
}

/// The phase, or `Terminating` once deletion has begun.
fn phase(object: &Value) -> &str {
    if has(object, &["metadata", "deletionTimestamp"]) {
        "Terminating"
    } else {
        text(object, &["status", "phase"])
    }
}

fn or_unset(value: Option<&str>) -> Value {
    value.unwrap_or("<unset>").into()
}

pub(super) static PERSISTENT_VOLUME: Builtin = Builtin {
    columns: &[
        NAME,
        col("Capacity", "string", "The volume's storage capacity."),
        col("Access Modes", "string", "How the volume can be mounted: RWO, ROX, RWX, RWOP."),
        col("Reclaim Policy", "string", "What happens to the volume when its claim is released."),
        col("Status", "string", "The volume's phase."),
        col("Claim", "string", "The claim bound to the volume, as namespace/name."),
        col("StorageClass", "string", "The storage class of the volume."),
        col("VolumeAttributesClass", "string", "The volume attributes class of the volume."),
        col("Reason", "string", "Why the volume is in its phase, when it failed."),
        AGE,
        wide("VolumeMode", "string", "Filesystem or Block."),
    ],
    cells: persistent_volume,
    conditions: no_conditions,
};

fn persistent_volume(pv: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(pv, &["spec"]);
    let claim = if has(spec, &["claimRef"]) {
        format!("{}/{}", text(spec, &["claimRef", "namespace"]), text(spec, &["claimRef", "name"]))
    } else {
        String::new()
    };
    vec![
        name(pv),
        opt_text(spec, &["capacity", "storage"]).unwrap_or("0").into(),
        access_modes(list(spec, &["accessModes"])).into(),
        text(spec, &["persistentVolumeReclaimPolicy"]).into(),
        phase(pv).into(),
        claim.into(),
        storage_class(pv).into(),
        or_unset(opt_text(spec, &["volumeAttributesClassName"])),
        text(pv, &["status", "reason"]).into(),
        age(pv, now),
        or_unset(opt_text(spec, &["volumeMode"])),
    ]
}

pub(super) static PERSISTENT_VOLUME_CLAIM: Builtin = Builtin {
    columns: &[
        NAME,
        col("Status", "string", "The claim's phase."),
        col("Volume", "string", "The volume bound to the claim."),
        col("Capacity", "string", "The bound volume's capacity."),
        col("Access Modes", "string", "The bound volume's access modes."),
        col("StorageClass", "string", "The storage class the claim asks for."),
        col("VolumeAttributesClass", "string", "The volume attributes class the claim asks for."),
        AGE,
        wide("VolumeMode", "string", "Filesystem or Block."),
    ],
    cells: persistent_volume_claim,
    conditions: no_conditions,
};

fn persistent_volume_claim(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(pvc, &["spec"]);
    let volume = text(spec, &["volumeName"]);
    // Capacity and modes are the bound volume's, shown once the claim names one.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        let status = at(pvc, &["status"]);
        (
            opt_text(status, &["capacity", "storage"]).unwrap_or("0").to_string(),
            access_modes(list(status, &["accessModes"])),
        )
    };
    vec![
        name(pvc),
        phase(pvc).into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        or_unset(opt_text(spec, &["volumeAttributesClassName"])),
        age(pvc, now),
        or_unset(opt_text(spec, &["volumeMode"])),
    ]
}

// ---------------------------------------------------------------------------------------
// ResourceQuota
// ---------------------------------------------------------------------------------------

/// Kubernetes 1.32 puts AGE second here (1.33 moved it last).
pub(super) static RESOURCE_QUOTA: Builtin = Builtin {
    columns: &[
        NAME,
        AGE,
        col("Request", "string", "Used out of hard limits, for every resource but limits.*."),
        col("Limit", "string", "Used out of hard limits, for the limits.* resources."),
    ],
    cells: resource_quota,
    conditions: no_conditions,
};

fn resource_quota(quota: &Value, now: Timestamp) -> Vec<Value> {
    let hard = at(quota, &["status", "hard"]).as_object();
    let mut resources: Vec<&String> = hard.into_iter().flat_map(|m| m.keys()).collect();
    resources.sort_unstable();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for resource in resources {
        let used = opt_text(quota, &["status", "used", resource]).unwrap_or("0");
        let limit = opt_text(quota, &["status", "hard", resource]).unwrap_or("0");
        let entry = format!("{resource}: {used}/{limit}");
        match resource.split_once('.') {
            Some(("limits", _)) => limits.push(entry),
            _ => requests.push(entry),
        }
    }
    vec![name(quota), age(quota, now), requests.join(", ").into(), limits.join(", ").into()]
}
