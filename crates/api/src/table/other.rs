//! The smaller API groups: networking (ingresses, ingress classes, network policies),
//! discovery (endpoint slices), policy (disruption budgets), autoscaling (horizontal pod
//! autoscalers), RBAC bindings, storage classes, priority classes and leases.

use jiff::Timestamp;
use serde_json::Value;

use super::common::{
    age, at, col, flag, format_label_selector, int, int_or_string, list, list_with_more, load_balancer_ingress, name,
    opt_int, opt_text, text, wide, AGE, NAME,
};
use super::{no_conditions, Builtin};

// ---------------------------------------------------------------------------------------
// networking.k8s.io
// ---------------------------------------------------------------------------------------

pub(super) static INGRESS: Builtin = Builtin {
    columns: &[
        NAME,
        col("Class", "string", "The IngressClass that implements the ingress."),
        col("Hosts", "string", "The hosts the ingress's rules match."),
        col("Address", "string", "The load balancer's addresses for the ingress."),
        col("Ports", "string", "80, and 443 when the ingress has TLS."),
        AGE,
    ],
    cells: ingress,
    conditions: no_conditions,
};

fn ingress(ing: &Value, now: Timestamp) -> Vec<Value> {
    let spec = at(ing, &["spec"]);
    let ports = if list(spec, &["tls"]).is_empty() { "80" } else { "80, 443" };
    vec![
        name(ing),
        opt_text(spec, &["ingressClassName"]).unwrap_or("<none>").into(),
        ingress_hosts(list(spec, &["rules"])).into(),
        load_balancer_ingress(at(ing, &["status", "loadBalancer"])).into(),
        ports.into(),
        age(ing, now),
    ]
}

/// The hosts of the rules (`*` when none names one): three at most, then how many
/// rules are left once three hosts are shown.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= hosts.len() == MAX;
        let host = text(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".into();
    }
    let joined = hosts.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

pub(super) static INGRESS_CLASS: Builtin = Builtin {
    columns: &[
        NAME,
        col("Controller", "string", "The controller that implements the class."),
        col("Parameters", "string", "The resource holding the class's parameters, as Kind.group/name."),
        AGE,
    ],
    cells: ingress_class,
    conditions: no_conditions,
};

fn ingress_class(class: &Value, now: Timestamp) -> Vec<Value> {
    let parameters = at(class, &["spec", "parameters"]);
    let parameters = if parameters.is_null() {
        "<none>".to_string()
    } else {
        let group = opt_text(parameters, &["apiGroup"]).map(|g| format!(".{g}")).unwrap_or_default();
        format!("{}{group}/{}", text(parameters, &["kind"]), text(parameters, &["name"]))
    };
    vec![name(class), text(class, &["spec", "controller"]).into(), parameters.into(), age(class, now)]
}

pub(super) static NETWORK_POLICY: Builtin = Builtin {
    columns: &[NAME, col("Pod-Selector", "string", "The pods the policy applies to."), AGE],
    cells: network_policy,
    conditions: no_conditions,
};

fn network_policy(policy: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(policy), format_label_selector(at(policy, &["spec", "podSelector"])).into(), age(policy, now)]
}

// ---------------------------------------------------------------------------------------
// discovery.k8s.io
// ---------------------------------------------------------------------------------------

pub(super) static ENDPOINT_SLICE: Builtin = Builtin {
    columns: &[
        NAME,
        col("AddressType", "string", "IPv4, IPv6 or FQDN."),
        col("Ports", "string", "The slice's port numbers (or names)."),
        col("Endpoints", "string", "The slice's endpoint addresses."),
        AGE,
    ],
    cells: endpoint_slice,
    conditions: no_conditions,
};

fn endpoint_slice(slice: &Value, now: Timestamp) -> Vec<Value> {
    let ports = list(slice, &["ports"]).iter().map(|p| match (opt_int(p, &["port"]), opt_text(p, &["name"])) {
        (Some(port), _) => port.to_string(),
        (None, Some(name)) => name.to_string(),
        (None, None) => "*".into(),
    });
    let addresses = list(slice, &["endpoints"])
        .iter()
        .flat_map(|e| list(e, &["addresses"]).iter().map(|a| a.as_str().unwrap_or("").to_string()));
    vec![
        name(slice),
        text(slice, &["addressType"]).into(),
        list_with_more(ports, 3).into(),
        list_with_more(addresses, 3).into(),
        age(slice, now),
    ]
}

// ---------------------------------------------------------------------------------------
// policy
// ---------------------------------------------------------------------------------------

pub(super) static POD_DISRUPTION_BUDGET: Builtin = Builtin {
    columns: &[
        NAME,
        col("Min Available", "string", "Pods that must stay available."),
        col("Max Unavailable", "string", "Pods that may be unavailable."),
        col("Allowed Disruptions", "integer", "Pods that may be disrupted now."),
        AGE,
    ],
    cells: pod_disruption_budget,
    conditions: no_conditions,
};

fn pod_disruption_budget(pdb: &Value, now: Timestamp) -> Vec<Value> {
    let bound = |field: &str| match at(pdb, &["spec", field]) {
        Value::Null => "N/A".to_string(),
        value => int_or_string(value),
    };
    vec![
        name(pdb),
        bound("minAvailable").into(),
        bound("maxUnavailable").into(),
        int(pdb, &["status", "disruptionsAllowed"]).into(),
        age(pdb, now),
    ]
}

pub(super) static HORIZONTAL_POD_AUTOSCALER: Builtin = Builtin {
    columns: &[
        NAME,
        col("Reference", "string", "Reference to target resource"),
        col("Targets", "string", "Current and target metrics"),
        col("MinPods", "string", "Minimum number of replicas"),
        col("MaxPods", "integer", "Maximum number of replicas"),
        col("Replicas", "integer", "Current replicas"),
        AGE,
    ],
    cells: horizontal_pod_autoscaler,
    conditions: no_conditions,
};

fn horizontal_pod_autoscaler(hpa: &Value, now: Timestamp) -> Vec<Value> {
    let target = at(hpa, &["spec", "scaleTargetRef"]);
    let reference = format!("{}/{}", text(target, &["kind"]), text(target, &["name"]));
    let current = at(hpa, &["status", "currentMetrics"]).as_array().cloned().unwrap_or_default();
    let metrics: Vec<String> = at(hpa, &["spec", "metrics"])
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, metric)| metric_target(metric, current.get(i)))
        .collect();
    let min = opt_int(hpa, &["spec", "minReplicas"]).map_or("<unset>".to_string(), |m| m.to_string());
    vec![
        name(hpa),
        reference.into(),
        if metrics.is_empty() { "<none>".to_string() } else { metrics.join(", ") }.into(),
        min.into(),
        int(hpa, &["spec", "maxReplicas"]).into(),
        int(hpa, &["status", "currentReplicas"]).into(),
        age(hpa, now),
    ]
}

/// `cpu: 40%/80%` (or `<unknown>/80%` before the first measurement), as kubectl prints
/// resource metrics; other metric types show their target value.
fn metric_target(metric: &Value, current: Option<&Value>) -> String {
    let kind = text(metric, &["type"]);
    let source = match kind {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => return "<unknown>".into(),
    };
    let target = at(metric, &[source, "target"]);
    let (wanted, now) = match at(target, &["averageUtilization"]) {
        Value::Null => {
            let value = [&["averageValue"][..], &["value"][..]]
                .iter()
                .map(|path| at(target, path))
                .find(|v| !v.is_null())
                .map(int_or_string)
                .unwrap_or_default();
            let now = current.map(|c| at(c, &[source, "current", "averageValue"])).filter(|v| !v.is_null());
            (value, now.map(int_or_string))
        }
        percent => {
            let now = current.map(|c| at(c, &[source, "current", "averageUtilization"])).filter(|v| !v.is_null());
            (format!("{percent}%"), now.map(|v| format!("{v}%")))
        }
    };
    let now = now.unwrap_or_else(|| "<unknown>".into());
    match kind {
        "Resource" | "ContainerResource" => format!("{}: {now}/{wanted}", text(metric, &[source, "name"])),
        _ => format!("{now}/{wanted}"),
    }
}

// ---------------------------------------------------------------------------------------
// rbac.authorization.k8s.io
// ---------------------------------------------------------------------------------------

pub(super) static ROLE_BINDING: Builtin = Builtin {
    columns: &[
        NAME,
        col("Role", "string", "The role granted, as Kind/name."),
        AGE,
        wide("Users", "string", "Users in the roleBinding"),
        wide("Groups", "string", "Groups in the roleBinding"),
        wide("ServiceAccounts", "string", "ServiceAccounts in the roleBinding"),
    ],
    cells: binding,
    conditions: no_conditions,
};

pub(super) static CLUSTER_ROLE_BINDING: Builtin = Builtin {
    columns: &[
        NAME,
        col("Role", "string", "The cluster role granted, as Kind/name."),
        AGE,
        wide("Users", "string", "Users in the clusterRoleBinding"),
        wide("Groups", "string", "Groups in the clusterRoleBinding"),
        wide("ServiceAccounts", "string", "ServiceAccounts in the clusterRoleBinding"),
    ],
    cells: binding,
    conditions: no_conditions,
};

fn binding(binding: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!("{}/{}", text(binding, &["roleRef", "kind"]), text(binding, &["roleRef", "name"]));
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in list(binding, &["subjects"]) {
        let subject_name = text(subject, &["name"]);
        match text(subject, &["kind"]) {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => accounts.push(format!("{}/{subject_name}", text(subject, &["namespace"]))),
            _ => {}
        }
    }
    vec![
        name(binding),
        role.into(),
        age(binding, now),
        users.join(", ").into(),
        groups.join(", ").into(),
        accounts.join(", ").into(),
    ]
}

// ---------------------------------------------------------------------------------------
// storage.k8s.io, scheduling.k8s.io, coordination.k8s.io
// ---------------------------------------------------------------------------------------

pub(super) static STORAGE_CLASS: Builtin = Builtin {
    columns: &[
        NAME,
        col("Provisioner", "string", "The volume plugin that provisions the class's volumes."),
        col("ReclaimPolicy", "string", "What happens to a released volume: Delete or Retain."),
        col("VolumeBindingMode", "string", "When volumes are bound: Immediate or WaitForFirstConsumer."),
        col("AllowVolumeExpansion", "string", "Whether claims of the class may grow."),
        AGE,
    ],
    cells: storage_class,
    conditions: no_conditions,
};

fn storage_class(class: &Value, now: Timestamp) -> Vec<Value> {
    let annotation = |key: &str| opt_text(class, &["metadata", "annotations", key]) == Some("true");
    let is_default = annotation("storageclass.kubernetes.io/is-default-class")
        || annotation("storageclass.beta.kubernetes.io/is-default-class");
    let class_name = text(class, &["metadata", "name"]);
    let class_name = if is_default { format!("{class_name} (default)") } else { class_name.to_string() };
    vec![
        class_name.into(),
        text(class, &["provisioner"]).into(),
        opt_text(class, &["reclaimPolicy"]).unwrap_or("Delete").into(),
        opt_text(class, &["volumeBindingMode"]).unwrap_or("Immediate").into(),
        flag(class, &["allowVolumeExpansion"]).into(),
        age(class, now),
    ]
}

pub(super) static PRIORITY_CLASS: Builtin = Builtin {
    columns: &[
        NAME,
        col("Value", "integer", "The priority pods of the class get."),
        col("Global-Default", "boolean", "Whether pods without a class get this one."),
        AGE,
        col("PreemptionPolicy", "string", "Whether pods of the class may preempt lower-priority ones."),
    ],
    cells: priority_class,
    conditions: no_conditions,
};

fn priority_class(class: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(class),
        int(class, &["value"]).into(),
        flag(class, &["globalDefault"]).into(),
        age(class, now),
        text(class, &["preemptionPolicy"]).into(),
    ]
}

pub(super) static LEASE: Builtin = Builtin {
    columns: &[NAME, col("Holder", "string", "Who holds the lease (spec.holderIdentity)."), AGE],
    cells: lease,
    conditions: no_conditions,
};

fn lease(lease: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(lease), text(lease, &["spec", "holderIdentity"]).into(), age(lease, now)]
}
