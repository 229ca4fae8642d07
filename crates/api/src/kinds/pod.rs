//! Pods, and the pod spec that every pod template (Deployment, ReplicaSet, StatefulSet,
//! DaemonSet, Job, CronJob) shares: one defaulting and one validation for all of them.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, ObjectFieldSelector, Pod, PodCondition, PodSpec, PodStatus,
    PodTemplateSpec, Probe, ResourceFieldSelector, ResourceRequirements, SleepAction, TCPSocketAction, Toleration,
    Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::core::default_claim_spec;
use super::quantity::{self, Quantity};
use super::{
    default_nonzero, default_str, inclusive_range, invalid_each, json, map_json, nonnegative, one_of, optional_one_of,
    port_name_errors, port_number, port_number_or_name, protocol, pruned, same,
};
use crate::error::FieldError;
use crate::strategy::{KindRules, SelectableField};
use crate::validation;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const HOST_PATH_TYPES: &[&str] =
    &["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
/// The fields a container's environment may read from the pod (`fieldRef.fieldPath`).
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
/// Mode bits of projected files (0644), as Kubernetes defaults them.
const DEFAULT_FILE_MODE: i32 = 0o644;
/// The tolerations the DefaultTolerationSeconds admission plugin adds to every pod.
const DEFAULT_TOLERATED_TAINTS: [&str; 2] = ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"];
const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,\
`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),\
`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

// ---------------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------------

/// The defaults of a container, for `Container` and `EphemeralContainer` alike (they
/// share these fields but no type).
macro_rules! default_container {
    ($container:expr) => {{
        let c = $container;
        if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
            c.image_pull_policy = Some(pull_policy(c.image.as_deref().unwrap_or("")).to_string());
        }
        default_str(&mut c.termination_message_path, "/dev/termination-log");
        default_str(&mut c.termination_message_policy, "File");
        for port in c.ports.iter_mut().flatten() {
            default_str(&mut port.protocol, "TCP");
        }
        for env in c.env.iter_mut().flatten() {
            if let Some(source) = &mut env.value_from {
                default_field_refs(source.field_ref.as_mut(), source.resource_field_ref.as_mut());
            }
        }
        for probe in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
            default_probe(probe);
        }
        if let Some(lifecycle) = &mut c.lifecycle {
            for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop].into_iter().flatten() {
                if let Some(http) = &mut handler.http_get {
                    default_http_get(http);
                }
            }
        }
    }};
}

/// The defaults of every pod spec, in pods and templates alike (Kubernetes'
/// `SetDefaults_PodSpec` and the defaults of what a spec holds).
pub(super) fn default_pod_spec(spec: &mut PodSpec) {
    default_str(&mut spec.dns_policy, "ClusterFirst");
    default_str(&mut spec.restart_policy, "Always");
    spec.security_context.get_or_insert_with(Default::default);
    spec.termination_grace_period_seconds.get_or_insert(30);
    default_str(&mut spec.scheduler_name, "default-scheduler");
    // `serviceAccount` is the deprecated alias of `serviceAccountName`: either is read,
    // the new one wins, and both are written.
    if spec.service_account_name.as_deref().is_none_or(str::is_empty) {
        spec.service_account_name = spec.service_account.clone().filter(|name| !name.is_empty());
    }
    spec.service_account.clone_from(&spec.service_account_name);
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
    for container in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        default_container!(container);
    }
    for container in spec.ephemeral_containers.iter_mut().flatten() {
        default_container!(container);
    }
}

/// The defaults of a pod template (a spec is created if missing, as Go's value type is).
pub(super) fn default_template(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// What only pods (not templates) get: Kubernetes' `SetDefaults_Pod`, and what the
/// default admission plugins ServiceAccount and DefaultTolerationSeconds set (Priority is
/// the API server's: it reads PriorityClasses).
fn default_pod_only(spec: &mut PodSpec) {
    for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        if let Some(resources) = &mut container.resources {
            requests_from_limits(resources);
        }
    }
    spec.enable_service_links.get_or_insert(true);
    if spec.host_network == Some(true) {
        for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            for port in container.ports.iter_mut().flatten() {
                default_nonzero(&mut port.host_port, port.container_port);
            }
        }
    }
    if spec.service_account_name.as_deref().is_none_or(str::is_empty) {
        spec.service_account_name = Some("default".into());
        spec.service_account = Some("default".into());
    }
    // spec.priority and preemptionPolicy come from the PriorityClass, which the API
    // server's Priority admission looks up (it needs the store).
    default_toleration_seconds(spec.tolerations.get_or_insert_with(Vec::new));
}

/// Tolerates not-ready and unreachable nodes for 300s unless the pod already says how.
fn default_toleration_seconds(tolerations: &mut Vec<Toleration>) {
    for taint in DEFAULT_TOLERATED_TAINTS {
        let tolerated = tolerations.iter().any(|t| {
            t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint)
                && t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "NoExecute")
        });
        if !tolerated {
            tolerations.push(Toleration {
                key: Some(taint.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                value: None,
            });
        }
    }
}

/// Requests default to limits where only the limit is given.
fn requests_from_limits(resources: &mut ResourceRequirements) {
    if let Some(limits) = &resources.limits {
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, limit) in limits {
            requests.entry(name.clone()).or_insert_with(|| limit.clone());
        }
    }
}

/// `Always` for `:latest` or an untagged name without a digest, `IfNotPresent` else.
fn pull_policy(image: &str) -> &'static str {
    if image_tag(image) == Some("latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// The tag of an image reference, `latest` when neither a tag nor a digest is given.
fn image_tag(image: &str) -> Option<&str> {
    if image.is_empty() {
        return None;
    }
    let (name, has_digest) = image.split_once('@').map_or((image, false), |(name, _)| (name, true));
    // A ':' before the last '/' belongs to a registry's port, not to a tag.
    let last = name.rsplit_once('/').map_or(name, |(_, last)| last);
    match last.rsplit_once(':') {
        Some((_, tag)) => Some(tag),
        None if has_digest => None,
        None => Some("latest"),
    }
}

fn default_probe(probe: &mut Probe) {
    default_nonzero(&mut probe.timeout_seconds, 1);
    default_nonzero(&mut probe.period_seconds, 10);
    default_nonzero(&mut probe.success_threshold, 1);
    default_nonzero(&mut probe.failure_threshold, 3);
    if let Some(http) = &mut probe.http_get {
        default_http_get(http);
    }
    if let Some(grpc) = &mut probe.grpc {
        grpc.service.get_or_insert_with(String::new);
    }
}

fn default_http_get(http: &mut HTTPGetAction) {
    default_str(&mut http.path, "/");
    default_str(&mut http.scheme, "HTTP");
}

/// A downward-API reference: `fieldRef.apiVersion` is v1, a resource's divisor "0"
/// (Go always writes its zero quantity).
fn default_field_refs(field: Option<&mut ObjectFieldSelector>, resource: Option<&mut ResourceFieldSelector>) {
    if let Some(field) = field {
        default_str(&mut field.api_version, "v1");
    }
    if let Some(resource) = resource {
        resource.divisor.get_or_insert_with(|| ApiQuantity("0".into()));
    }
}

fn default_volume(volume: &mut Volume) {
    if volume_sources(volume).is_empty() {
        volume.empty_dir = Some(Default::default());
    }
    if let Some(host_path) = &mut volume.host_path {
        host_path.type_.get_or_insert_with(String::new);
    }
    if let Some(secret) = &mut volume.secret {
        secret.default_mode.get_or_insert(DEFAULT_FILE_MODE);
    }
    if let Some(config_map) = &mut volume.config_map {
        config_map.default_mode.get_or_insert(DEFAULT_FILE_MODE);
    }
    if let Some(downward) = &mut volume.downward_api {
        downward.default_mode.get_or_insert(DEFAULT_FILE_MODE);
        for item in downward.items.iter_mut().flatten() {
            default_field_refs(item.field_ref.as_mut(), item.resource_field_ref.as_mut());
        }
    }
    if let Some(projected) = &mut volume.projected {
        projected.default_mode.get_or_insert(DEFAULT_FILE_MODE);
        for source in projected.sources.iter_mut().flatten() {
            for item in source.downward_api.iter_mut().flat_map(|d| d.items.iter_mut().flatten()) {
                default_field_refs(item.field_ref.as_mut(), item.resource_field_ref.as_mut());
            }
            if let Some(token) = &mut source.service_account_token {
                token.expiration_seconds.get_or_insert(3600);
            }
        }
    }
    if let Some(claim) = volume.ephemeral.as_mut().and_then(|e| e.volume_claim_template.as_mut()) {
        default_claim_spec(&mut claim.spec);
    }
}

/// The volume source members a volume sets (`emptyDir`, `secret`, ...); an empty
/// source such as `emptyDir: {}` counts.
fn volume_sources(volume: &Volume) -> Vec<String> {
    match json(volume) {
        serde_json::Value::Object(map) => map.into_iter().map(|(k, _)| k).filter(|k| k != "name").collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------

/// The QoS class of a pod as Kubernetes computes it from cpu and memory.
fn qos_class(spec: &PodSpec) -> &'static str {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let resources = container.resources.as_ref();
        for (name, value) in qos_quantities(resources.and_then(|r| r.requests.as_ref())) {
            accumulate(&mut requests, name, value);
        }
        let mut found = HashSet::new();
        for (name, value) in qos_quantities(resources.and_then(|r| r.limits.as_ref())) {
            found.insert(name);
            accumulate(&mut limits, name, value);
        }
        if !(found.contains("cpu") && found.contains("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    let all_equal = requests
        .iter()
        .all(|(name, request)| limits.get(name).is_some_and(|limit| limit.compare(*request) == Some(Ordering::Equal)));
    if guaranteed && all_equal && requests.len() == limits.len() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The positive cpu and memory amounts of a resource list.
fn qos_quantities(list: Option<&BTreeMap<String, ApiQuantity>>) -> impl Iterator<Item = (&str, Quantity)> {
    list.into_iter()
        .flatten()
        .filter(|(name, _)| matches!(name.as_str(), "cpu" | "memory"))
        .filter_map(|(name, value)| Some((name.as_str(), Quantity::parse(&value.0).ok()?)))
        .filter(|(_, value)| value.is_positive())
}

fn accumulate<'a>(totals: &mut BTreeMap<&'a str, Quantity>, name: &'a str, value: Quantity) {
    let total = totals.entry(name).or_insert(Quantity::ZERO);
    if let Some(sum) = total.add(value) {
        *total = sum;
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// A pod template's labels, annotations and spec, as Kubernetes' `ValidatePodTemplateSpec`
/// (errors under `path`, e.g. `spec.template`).
pub(super) fn validate_template(template: &PodTemplateSpec, path: &str) -> Vec<FieldError> {
    let meta = template.metadata.as_ref();
    let mut errors = validation::labels(&map_json(meta.and_then(|m| m.labels.as_ref())), &format!("{path}.labels"));
    errors.extend(validation::annotations(
        &map_json(meta.and_then(|m| m.annotations.as_ref())),
        &format!("{path}.annotations"),
    ));
    let empty = PodSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&empty);
    errors.extend(validate_pod_spec(spec, &format!("{path}.spec")));
    if spec.ephemeral_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        errors.push(FieldError::forbidden(
            format!("{path}.spec.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errors
}

/// A pod spec, as Kubernetes' `ValidatePodSpec` (errors under `path`, e.g. `spec`).
pub(super) fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let volumes =
        validate_volumes(spec.volumes.as_deref().unwrap_or_default(), &format!("{path}.volumes"), &mut errors);
    validate_containers(spec, path, &volumes, &mut errors);
    validate_init_containers(spec, path, &volumes, &mut errors);
    validate_ephemeral_names(spec, path, &mut errors);
    validate_host_network(spec, path, &mut errors);
    errors.extend(one_of(spec.restart_policy.as_deref(), RESTART_POLICIES, &format!("{path}.restartPolicy")));
    errors.extend(one_of(spec.dns_policy.as_deref(), DNS_POLICIES, &format!("{path}.dnsPolicy")));
    errors.extend(validation::labels(&map_json(spec.node_selector.as_ref()), &format!("{path}.nodeSelector")));
    if spec.dns_policy.as_deref() == Some("None") {
        match &spec.dns_config {
            None => errors.push(FieldError::required(
                format!("{path}.dnsConfig"),
                "must provide `dnsConfig` when `dnsPolicy` is None",
            )),
            Some(config) if config.nameservers.as_ref().is_none_or(Vec::is_empty) => errors.push(FieldError::required(
                format!("{path}.dnsConfig.nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            )),
            Some(_) => {}
        }
    }
    for (field, value) in [("serviceAccountName", &spec.service_account_name), ("nodeName", &spec.node_name)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errors.extend(invalid_each(&format!("{path}.{field}"), value, validation::dns1123_subdomain(value)));
        }
    }
    if let Some(seconds) = spec.active_deadline_seconds {
        if !(1..=i64::from(i32::MAX)).contains(&seconds) {
            errors.push(FieldError::invalid(
                format!("{path}.activeDeadlineSeconds"),
                seconds,
                &inclusive_range(1, i64::from(i32::MAX)),
            ));
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errors.extend(invalid_each(&format!("{path}.{field}"), value, validation::dns1123_label(value)));
        }
    }
    errors
        .extend(validate_tolerations(spec.tolerations.as_deref().unwrap_or_default(), &format!("{path}.tolerations")));
    errors
}

fn validate_volumes<'a>(volumes: &'a [Volume], path: &str, errors: &mut Vec<FieldError>) -> HashSet<&'a str> {
    let mut names = HashSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let name_path = format!("{path}.name");
        let mut volume_errors = validate_volume_source(volume, &path);
        if volume.name.is_empty() {
            volume_errors.push(FieldError::required(&name_path, ""));
        } else {
            volume_errors.extend(invalid_each(&name_path, &volume.name, validation::dns1123_label(&volume.name)));
        }
        if names.contains(volume.name.as_str()) {
            volume_errors.push(FieldError::duplicate(&name_path, volume.name.as_str()));
        }
        if volume_errors.is_empty() {
            names.insert(volume.name.as_str());
        }
        errors.extend(volume_errors);
    }
    names
}

fn file_mode(mode: Option<i32>, field: &str) -> Option<FieldError> {
    mode.filter(|m| !(0..=0o777).contains(m)).map(|m| FieldError::invalid(field, m, FILE_MODE_ERROR))
}

fn validate_volume_source(volume: &Volume, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let sources = volume_sources(volume);
    if sources.is_empty() {
        errors.push(FieldError::required(path, "must specify a volume type"));
    }
    for extra in sources.iter().skip(1) {
        errors.push(FieldError::forbidden(format!("{path}.{extra}"), "may not specify more than 1 volume type"));
    }
    if let Some(config_map) = &volume.config_map {
        if config_map.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.configMap.name"), ""));
        }
        errors.extend(file_mode(config_map.default_mode, &format!("{path}.configMap.defaultMode")));
    }
    if let Some(secret) = &volume.secret {
        if secret.secret_name.as_deref().is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("{path}.secret.secretName"), ""));
        }
        errors.extend(file_mode(secret.default_mode, &format!("{path}.secret.defaultMode")));
    }
    if let Some(host_path) = &volume.host_path {
        if host_path.path.is_empty() {
            errors.push(FieldError::required(format!("{path}.hostPath.path"), ""));
        }
        if let Some(kind) = host_path.type_.as_deref().filter(|k| !HOST_PATH_TYPES.contains(k)) {
            errors.push(FieldError::not_supported(format!("{path}.hostPath.type"), kind, HOST_PATH_TYPES));
        }
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        if claim.claim_name.is_empty() {
            errors.push(FieldError::required(format!("{path}.persistentVolumeClaim.claimName"), ""));
        }
    }
    if let Some(downward) = &volume.downward_api {
        errors.extend(file_mode(downward.default_mode, &format!("{path}.downwardAPI.defaultMode")));
    }
    if let Some(projected) = &volume.projected {
        errors.extend(file_mode(projected.default_mode, &format!("{path}.projected.defaultMode")));
    }
    errors
}

/// What every container (regular or init) is checked for.
fn validate_container_common(container: &Container, path: &str, volumes: &HashSet<&str>, errors: &mut Vec<FieldError>) {
    let name_path = format!("{path}.name");
    if container.name.is_empty() {
        errors.push(FieldError::required(name_path, ""));
    } else {
        errors.extend(invalid_each(&name_path, &container.name, validation::dns1123_label(&container.name)));
    }
    if container.image.as_deref().is_none_or(str::is_empty) {
        errors.push(FieldError::required(format!("{path}.image"), ""));
    }
    errors.extend(one_of(
        container.termination_message_policy.as_deref(),
        TERMINATION_MESSAGE_POLICIES,
        &format!("{path}.terminationMessagePolicy"),
    ));
    validate_container_ports(container, path, errors);
    validate_env(container, path, errors);
    validate_volume_mounts(container, path, volumes, errors);
    errors.extend(one_of(container.image_pull_policy.as_deref(), PULL_POLICIES, &format!("{path}.imagePullPolicy")));
    if let Some(resources) = &container.resources {
        validate_resources(resources, &format!("{path}.resources"), errors);
    }
}

fn validate_containers(spec: &PodSpec, path: &str, volumes: &HashSet<&str>, errors: &mut Vec<FieldError>) {
    let base = format!("{path}.containers");
    if spec.containers.is_empty() {
        errors.push(FieldError::required(base, ""));
        return;
    }
    let mut names = HashSet::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let path = format!("{base}[{i}]");
        validate_container_common(container, &path, volumes, errors);
        if !names.insert(container.name.as_str()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), container.name.as_str()));
        }
        validate_probes_and_lifecycle(container, &path, errors);
        if container.restart_policy.is_some() {
            errors
                .push(FieldError::forbidden(format!("{path}.restartPolicy"), "may not be set for non-init containers"));
        }
    }
    host_port_conflicts(spec.containers.iter().enumerate(), &base, errors);
}

fn validate_init_containers(spec: &PodSpec, path: &str, volumes: &HashSet<&str>, errors: &mut Vec<FieldError>) {
    let base = format!("{path}.initContainers");
    let mut names: HashSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        let path = format!("{base}[{i}]");
        validate_container_common(container, &path, volumes, errors);
        let restart_always = match container.restart_policy.as_deref() {
            None => false,
            Some("Always") => true,
            Some(other) => {
                errors.push(FieldError::not_supported(format!("{path}.restartPolicy"), other, &["Always"]));
                false
            }
        };
        if names.contains(container.name.as_str()) {
            errors.push(FieldError::duplicate(format!("{path}.name"), container.name.as_str()));
        } else if !container.name.is_empty() {
            names.insert(container.name.as_str());
        }
        // Init containers run one by one, so only a container's own ports can conflict.
        host_port_conflicts(std::iter::once((i, container)), &base, errors);
        if restart_always {
            validate_probes_and_lifecycle(container, &path, errors);
        } else {
            let set = [
                ("lifecycle", container.lifecycle.is_some()),
                ("livenessProbe", container.liveness_probe.is_some()),
                ("readinessProbe", container.readiness_probe.is_some()),
                ("startupProbe", container.startup_probe.is_some()),
            ];
            for (field, _) in set.into_iter().filter(|(_, is_set)| *is_set) {
                errors.push(FieldError::forbidden(
                    format!("{path}.{field}"),
                    "may not be set for init containers without restartPolicy=Always",
                ));
            }
        }
    }
}

/// Ephemeral container names must not repeat any container's.
fn validate_ephemeral_names(spec: &PodSpec, path: &str, errors: &mut Vec<FieldError>) {
    let mut names: HashSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    names.extend(spec.init_containers.iter().flatten().map(|c| c.name.as_str()));
    for (i, container) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let name_path = format!("{path}.ephemeralContainers[{i}].name");
        if container.name.is_empty() {
            errors.push(FieldError::required(name_path, ""));
        } else if !names.insert(container.name.as_str()) {
            errors.push(FieldError::duplicate(name_path, container.name.as_str()));
        }
    }
}

/// With the host's network a port is the host's port.
fn validate_host_network(spec: &PodSpec, path: &str, errors: &mut Vec<FieldError>) {
    if spec.host_network != Some(true) {
        return;
    }
    for (i, container) in spec.containers.iter().enumerate() {
        for (j, port) in container.ports.iter().flatten().enumerate() {
            if let Some(host_port) = port.host_port.filter(|&p| p != 0 && p != port.container_port) {
                errors.push(FieldError::invalid(
                    format!("{path}.containers[{i}].ports[{j}].hostPort"),
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

/// Two ports may not claim the same host port, protocol and address.
fn host_port_conflicts<'a>(
    containers: impl Iterator<Item = (usize, &'a Container)>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let mut seen = HashSet::new();
    for (i, container) in containers {
        for (j, port) in container.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|&p| p != 0) else { continue };
            let key = format!(
                "{}/{}/{host_port}",
                port.host_ip.as_deref().unwrap_or(""),
                port.protocol.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errors.push(FieldError::duplicate(format!("{path}[{i}].ports[{j}].hostPort"), key));
            }
        }
    }
}

fn validate_container_ports(container: &Container, path: &str, errors: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    for (i, port) in container.ports.iter().flatten().enumerate() {
        let path = format!("{path}.ports[{i}]");
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let name_path = format!("{path}.name");
            let messages = port_name_errors(name);
            if !messages.is_empty() {
                errors.extend(invalid_each(&name_path, name, messages));
            } else if !names.insert(name) {
                errors.push(FieldError::duplicate(name_path, name));
            }
        }
        if port.container_port == 0 {
            errors.push(FieldError::required(format!("{path}.containerPort"), ""));
        } else {
            errors.extend(port_number(port.container_port, &format!("{path}.containerPort")));
        }
        if let Some(host_port) = port.host_port.filter(|&p| p != 0) {
            errors.extend(port_number(host_port, &format!("{path}.hostPort")));
        }
        errors.extend(protocol(port.protocol.as_deref(), &format!("{path}.protocol")));
    }
}

fn validate_env(container: &Container, path: &str, errors: &mut Vec<FieldError>) {
    for (i, var) in container.env.iter().flatten().enumerate() {
        let path = format!("{path}.env[{i}]");
        let name_path = format!("{path}.name");
        if var.name.is_empty() {
            errors.push(FieldError::required(&name_path, ""));
            errors.push(FieldError::invalid(&name_path, "", "environment variable name must be non-empty"));
        } else if var.name.chars().any(|c| (!c.is_ascii_graphic() && c != ' ') || c == '=') {
            errors.push(FieldError::invalid(
                &name_path,
                var.name.as_str(),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
        let Some(source) = &var.value_from else { continue };
        let path = format!("{path}.valueFrom");
        let mut sources = 0;
        if let Some(field) = &source.field_ref {
            sources += 1;
            validate_env_field_ref(field, &format!("{path}.fieldRef"), errors);
        }
        if source.resource_field_ref.is_some() {
            sources += 1;
        }
        for (member, reference) in [
            ("configMapKeyRef", source.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key))),
            ("secretKeyRef", source.secret_key_ref.as_ref().map(|r| (&r.name, &r.key))),
        ] {
            let Some((name, key)) = reference else { continue };
            sources += 1;
            let path = format!("{path}.{member}");
            errors.extend(invalid_each(&format!("{path}.name"), name, validation::dns1123_subdomain(name)));
            if key.is_empty() {
                errors.push(FieldError::required(format!("{path}.key"), ""));
            } else {
                errors.extend(invalid_each(&format!("{path}.key"), key, super::core::config_key_errors(key)));
            }
        }
        let detail = if sources == 0 {
            "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
        } else if var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            "may not be specified when `value` is not empty"
        } else if sources > 1 {
            "may not have more than one field specified at a time"
        } else {
            continue;
        };
        errors.push(FieldError::invalid(path, "", detail));
    }
}

fn validate_env_field_ref(field: &ObjectFieldSelector, path: &str, errors: &mut Vec<FieldError>) {
    if field.api_version.as_deref().is_none_or(str::is_empty) {
        errors.push(FieldError::required(format!("{path}.apiVersion"), ""));
    }
    let field_path = field.field_path.as_str();
    let subscripted = ["metadata.labels['", "metadata.annotations['"].iter().any(|prefix| {
        field_path.starts_with(prefix) && field_path.ends_with("']") && field_path.len() > prefix.len() + 2
    });
    if field_path.is_empty() {
        errors.push(FieldError::required(format!("{path}.fieldPath"), ""));
    } else if !subscripted && !ENV_FIELD_PATHS.contains(&field_path) {
        errors.push(FieldError::not_supported(format!("{path}.fieldPath"), field_path, ENV_FIELD_PATHS));
    }
}

fn validate_volume_mounts(container: &Container, path: &str, volumes: &HashSet<&str>, errors: &mut Vec<FieldError>) {
    let mut mount_paths = HashSet::new();
    for (i, mount) in container.volume_mounts.iter().flatten().enumerate() {
        let path = format!("{path}.volumeMounts[{i}]");
        if mount.name.is_empty() {
            errors.push(FieldError::required(format!("{path}.name"), ""));
        }
        if !volumes.contains(mount.name.as_str()) {
            errors.push(FieldError::not_found(format!("{path}.name"), mount.name.as_str()));
        }
        if mount.mount_path.is_empty() {
            errors.push(FieldError::required(format!("{path}.mountPath"), ""));
        }
        if !mount_paths.insert(mount.mount_path.as_str()) {
            errors.push(FieldError::invalid(format!("{path}.mountPath"), mount.mount_path.as_str(), "must be unique"));
        }
    }
}

/// Requests and limits: known resource names, valid non-negative quantities, and
/// requests within limits.
fn validate_resources(resources: &ResourceRequirements, path: &str, errors: &mut Vec<FieldError>) {
    let limits_path = format!("{path}.limits");
    let requests_path = format!("{path}.requests");
    let mut limits = BTreeMap::new();
    for (name, value) in resources.limits.iter().flatten() {
        let field = format!("{limits_path}[{name}]");
        errors.extend(container_resource_name(name, &field));
        if let Some(parsed) = resource_quantity(name, value, &field, errors) {
            limits.insert(name.as_str(), (parsed, value.0.as_str()));
        }
    }
    for (name, value) in resources.requests.iter().flatten() {
        let field = format!("{requests_path}[{name}]");
        errors.extend(container_resource_name(name, &field));
        let Some(request) = resource_quantity(name, value, &field, errors) else { continue };
        match limits.get(name.as_str()) {
            Some((limit, shown)) => {
                let order = request.compare(*limit);
                if !overcommit_allowed(name) && order.is_some_and(Ordering::is_ne) {
                    let detail = format!("must be equal to {name} limit of {shown}");
                    errors.push(FieldError::invalid(&requests_path, value.0.as_str(), &detail));
                } else if order == Some(Ordering::Greater) {
                    let detail = format!("must be less than or equal to {name} limit of {shown}");
                    errors.push(FieldError::invalid(&requests_path, value.0.as_str(), &detail));
                }
            }
            None if !overcommit_allowed(name) => {
                errors.push(FieldError::required(&limits_path, "Limit must be set for non overcommitable resources"))
            }
            None => {}
        }
    }
}

/// A quantity that parses, is not negative, and is whole where the resource must be.
fn resource_quantity(name: &str, value: &ApiQuantity, field: &str, errors: &mut Vec<FieldError>) -> Option<Quantity> {
    let parsed = match quantity::nonnegative_field(value, field) {
        Ok(parsed) => parsed,
        Err(error) => {
            errors.push(error);
            return None;
        }
    };
    if !is_native_resource(name) && !parsed.is_integer() {
        errors.push(FieldError::invalid(field, value.0.as_str(), "must be an integer"));
    }
    Some(parsed)
}

/// Resources Kubernetes defines (no domain, or a `kubernetes.io/` one).
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

fn container_resource_name(name: &str, field: &str) -> Vec<FieldError> {
    let mut errors = invalid_each(field, name, validation::qualified_name(name));
    let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
    if !name.contains('/') && !standard {
        errors.push(FieldError::invalid(field, name, "must be a standard resource for containers"));
    }
    errors
}

/// The handlers of a probe or a lifecycle hook: exactly one must be given.
struct Handler<'a> {
    exec: Option<&'a ExecAction>,
    http_get: Option<&'a HTTPGetAction>,
    tcp_socket: Option<&'a TCPSocketAction>,
    grpc: Option<&'a GRPCAction>,
    sleep: Option<&'a SleepAction>,
}

fn validate_handler(handler: &Handler, path: &str, errors: &mut Vec<FieldError>) {
    let given: Vec<&str> = [
        ("exec", handler.exec.is_some()),
        ("httpGet", handler.http_get.is_some()),
        ("tcpSocket", handler.tcp_socket.is_some()),
        ("grpc", handler.grpc.is_some()),
        ("sleep", handler.sleep.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if given.is_empty() {
        errors.push(FieldError::required(path, "must specify a handler type"));
    }
    for extra in given.iter().skip(1) {
        errors.push(FieldError::forbidden(format!("{path}.{extra}"), "may not specify more than 1 handler type"));
    }
    if let Some(exec) = handler.exec {
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            errors.push(FieldError::required(format!("{path}.exec.command"), ""));
        }
    }
    if let Some(http) = handler.http_get {
        errors.extend(port_number_or_name(&http.port, &format!("{path}.httpGet.port")));
        errors.extend(optional_one_of(http.scheme.as_deref(), &["HTTP", "HTTPS"], &format!("{path}.httpGet.scheme")));
    }
    if let Some(tcp) = handler.tcp_socket {
        errors.extend(port_number_or_name(&tcp.port, &format!("{path}.tcpSocket.port")));
    }
    if let Some(grpc) = handler.grpc {
        errors.extend(port_number(grpc.port, &format!("{path}.grpc.port")));
    }
    if let Some(sleep) = handler.sleep {
        errors.extend(nonnegative(Some(sleep.seconds), &format!("{path}.sleep.seconds")));
    }
}

#[derive(Clone, Copy, PartialEq)]
enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

fn validate_probe(probe: &Probe, kind: ProbeKind, path: &str, errors: &mut Vec<FieldError>) {
    let handler = Handler {
        exec: probe.exec.as_ref(),
        http_get: probe.http_get.as_ref(),
        tcp_socket: probe.tcp_socket.as_ref(),
        grpc: probe.grpc.as_ref(),
        sleep: None,
    };
    validate_handler(&handler, path, errors);
    for (field, value) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        errors.extend(nonnegative(value, &format!("{path}.{field}")));
    }
    let grace_path = format!("{path}.terminationGracePeriodSeconds");
    match probe.termination_grace_period_seconds {
        Some(seconds) if kind == ProbeKind::Readiness => {
            errors.push(FieldError::invalid(grace_path, seconds, "must not be set for readinessProbes"));
        }
        Some(seconds) if seconds <= 0 => {
            errors.push(FieldError::invalid(grace_path, seconds, "must be greater than 0"))
        }
        _ => {}
    }
    if kind != ProbeKind::Readiness {
        if let Some(threshold) = probe.success_threshold.filter(|&t| t != 1) {
            errors.push(FieldError::invalid(format!("{path}.successThreshold"), threshold, "must be 1"));
        }
    }
}

fn validate_probes_and_lifecycle(container: &Container, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(lifecycle) = &container.lifecycle {
        for (hook, handler) in [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)] {
            let Some(handler) = handler else { continue };
            let handler = Handler {
                exec: handler.exec.as_ref(),
                http_get: handler.http_get.as_ref(),
                tcp_socket: handler.tcp_socket.as_ref(),
                grpc: None,
                sleep: handler.sleep.as_ref(),
            };
            validate_handler(&handler, &format!("{path}.lifecycle.{hook}"), errors);
        }
    }
    for (field, probe, kind) in [
        ("livenessProbe", &container.liveness_probe, ProbeKind::Liveness),
        ("readinessProbe", &container.readiness_probe, ProbeKind::Readiness),
        ("startupProbe", &container.startup_probe, ProbeKind::Startup),
    ] {
        if let Some(probe) = probe {
            validate_probe(probe, kind, &format!("{path}.{field}"), errors);
        }
    }
}

/// A taint's (or toleration's) effect.
pub(super) fn taint_effect(effect: &str, field: &str) -> Option<FieldError> {
    (!TAINT_EFFECTS.contains(&effect)).then(|| FieldError::not_supported(field, effect, TAINT_EFFECTS))
}

fn validate_tolerations(tolerations: &[Toleration], path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (i, toleration) in tolerations.iter().enumerate() {
        let path = format!("{path}[{i}]");
        let key = toleration.key.as_deref().unwrap_or("");
        let operator = toleration.operator.as_deref().unwrap_or("");
        let effect = toleration.effect.as_deref().unwrap_or("");
        let value = toleration.value.as_deref().unwrap_or("");
        if !key.is_empty() {
            errors.extend(invalid_each(&format!("{path}.key"), key, validation::qualified_name(key)));
        } else if operator != "Exists" {
            errors.push(FieldError::invalid(
                format!("{path}.operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            errors.push(FieldError::invalid(
                format!("{path}.effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let messages = validation::label_value(value);
                if !messages.is_empty() {
                    errors.push(FieldError::invalid(format!("{path}.operator"), value, &messages.join(";")));
                }
            }
            "Exists" if !value.is_empty() => errors.push(FieldError::invalid(
                format!("{path}.operator"),
                json(toleration),
                "value must be empty when `operator` is 'Exists'",
            )),
            "Exists" => {}
            other => errors.push(FieldError::not_supported(format!("{path}.operator"), other, &["Equal", "Exists"])),
        }
        if !effect.is_empty() {
            errors.extend(taint_effect(effect, &format!("{path}.effect")));
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------
// Updates
// ---------------------------------------------------------------------------------------

/// Kubernetes' `ValidatePodUpdate`: only images, activeDeadlineSeconds, added
/// tolerations, removed scheduling gates and a negative grace period set to 1 may change.
fn validate_pod_update(new: &PodSpec, old: &PodSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let pairs = [
        ("spec.containers", new.containers.as_slice(), old.containers.as_slice()),
        (
            "spec.initContainers",
            new.init_containers.as_deref().unwrap_or_default(),
            old.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (path, new_containers, old_containers) in pairs {
        if new_containers.len() != old_containers.len() {
            errors.push(FieldError::forbidden(path, "pod updates may not add or remove containers"));
            return errors;
        }
        for (i, container) in new_containers.iter().enumerate() {
            let image = container.image.as_deref().unwrap_or("");
            if image.trim() != image {
                errors.push(FieldError::invalid(
                    format!("{path}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    errors.extend(active_deadline_update(new.active_deadline_seconds, old.active_deadline_seconds));
    let new_tolerations = new.tolerations.as_deref().unwrap_or_default();
    let old_tolerations = old.tolerations.as_deref().unwrap_or_default();
    if let Some(error) = only_added_tolerations(new_tolerations, old_tolerations) {
        errors.push(error);
    }
    errors.extend(only_removed_scheduling_gates(new, old));

    let mut munged = new.clone();
    for (container, old) in munged.containers.iter_mut().zip(&old.containers) {
        container.image.clone_from(&old.image);
    }
    for (container, old) in munged.init_containers.iter_mut().flatten().zip(old.init_containers.iter().flatten()) {
        container.image.clone_from(&old.image);
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;
    munged.tolerations.clone_from(&old.tolerations);
    munged.scheduling_gates.clone_from(&old.scheduling_gates);
    if old.termination_grace_period_seconds.is_some_and(|s| s < 0) && new.termination_grace_period_seconds == Some(1) {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    if !same(&munged, old) {
        let detail =
            format!("pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}", spec_diff(old, &munged));
        errors.push(FieldError::forbidden("spec", &detail));
    }
    errors
}

/// The top-level spec fields that differ, one `-`/`+` pair each (Kubernetes prints a Go
/// diff here; this is its gist).
fn spec_diff(old: &PodSpec, new: &PodSpec) -> String {
    let (serde_json::Value::Object(old), serde_json::Value::Object(new)) = (pruned(json(old)), pruned(json(new)))
    else {
        return String::new();
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut lines = Vec::new();
    for key in keys {
        let (before, after) = (old.get(key), new.get(key));
        if before != after {
            lines.extend(before.map(|v| format!("- {key}: {v}")));
            lines.extend(after.map(|v| format!("+ {key}: {v}")));
        }
    }
    lines.join("\n")
}

fn active_deadline_update(new: Option<i64>, old: Option<i64>) -> Option<FieldError> {
    const FIELD: &str = "spec.activeDeadlineSeconds";
    match (new, old) {
        (Some(new), Some(old)) if new > old && (0..=i64::from(i32::MAX)).contains(&new) => {
            Some(FieldError::invalid(FIELD, new, "must be less than or equal to previous value"))
        }
        (None, Some(_)) => Some(FieldError::invalid(
            FIELD,
            serde_json::Value::Null,
            "must not update from a positive integer to nil value",
        )),
        _ => None,
    }
}

fn only_added_tolerations(new: &[Toleration], old: &[Toleration]) -> Option<FieldError> {
    let kept = |old: &Toleration| {
        new.iter().any(|new| {
            let mut old = old.clone();
            old.toleration_seconds = new.toleration_seconds;
            same(&old, new)
        })
    };
    (!old.iter().all(kept)).then(|| {
        FieldError::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        )
    })
}

fn only_removed_scheduling_gates(new: &PodSpec, old: &PodSpec) -> Vec<FieldError> {
    let old_gates: HashSet<&str> = old.scheduling_gates.iter().flatten().map(|g| g.name.as_str()).collect();
    new.scheduling_gates
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, gate)| !old_gates.contains(gate.name.as_str()))
        .map(|(i, gate)| {
            FieldError::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                &format!("only deletion is allowed, but found new scheduling gate '{}'", gate.name),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The Pod kind
// ---------------------------------------------------------------------------------------

impl KindRules for Pod {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        default_pod_spec(spec);
        default_pod_only(spec);
    }

    fn prepare_create(&mut self) {
        let spec = self.spec.as_ref();
        let mut status = PodStatus {
            phase: Some("Pending".into()),
            qos_class: spec.map(|s| qos_class(s).to_string()),
            ..Default::default()
        };
        if spec.is_some_and(|s| s.scheduling_gates.as_ref().is_some_and(|g| !g.is_empty())) {
            status.conditions = Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("SchedulingGated".into()),
                message: Some("Scheduling is blocked due to non-empty scheduling gates".into()),
                ..Default::default()
            }]);
        }
        self.status = Some(status);
    }

    /// The Priority admission set spec.priority and preemptionPolicy at creation; an
    /// update that leaves them out keeps them (as Kubernetes' admission does on update).
    fn prepare_update(&mut self, old: &Self) {
        let (Some(spec), Some(old)) = (self.spec.as_mut(), old.spec.as_ref()) else { return };
        if spec.priority.is_none() {
            spec.priority = old.priority;
        }
        if spec.preemption_policy.is_none() {
            spec.preemption_policy.clone_from(&old.preemption_policy);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let empty = PodSpec::default();
        validate_pod_spec(self.spec.as_ref().unwrap_or(&empty), "spec")
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let empty = PodSpec::default();
        validate_pod_update(self.spec.as_ref().unwrap_or(&empty), old.spec.as_ref().unwrap_or(&empty))
    }

    const FIELDS: &'static [SelectableField] = &[
        SelectableField::text("spec.nodeName"),
        SelectableField::text("spec.restartPolicy"),
        SelectableField::text("spec.schedulerName"),
        SelectableField::text("spec.serviceAccountName"),
        SelectableField::flag("spec.hostNetwork"),
        SelectableField::text("status.phase"),
        SelectableField::text("status.podIP").from(&["status.podIPs.0.ip", "status.podIP"]),
        SelectableField::text("status.nominatedNodeName"),
    ];
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, EnvVarSource, PodSchedulingGate};
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::messages;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec})).unwrap()
    }

    fn web() -> Pod {
        pod(json!({"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}))
    }

    fn defaulted(mut pod: Pod) -> Pod {
        pod.default();
        pod
    }

    fn spec(pod: &Pod) -> &PodSpec {
        pod.spec.as_ref().unwrap()
    }

    #[test]
    fn pod_spec_defaults() {
        let pod = defaulted(web());
        let spec = spec(&pod);
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.security_context, Some(Default::default()));
        assert_eq!(spec.enable_service_links, Some(true));
        let container = &spec.containers[0];
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(container.termination_message_path.as_deref(), Some("/dev/termination-log"));
        assert_eq!(container.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(container.ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn pod_admission_defaults() {
        let pod = defaulted(web());
        let spec = spec(&pod);
        assert_eq!(spec.service_account_name.as_deref(), Some("default"));
        assert_eq!(spec.service_account.as_deref(), Some("default"));
        assert_eq!(spec.priority, None, "the API server's Priority admission sets it");
        let tolerations = spec.tolerations.as_ref().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0].key.as_deref(), Some("node.kubernetes.io/not-ready"));
        assert_eq!(tolerations[1].key.as_deref(), Some("node.kubernetes.io/unreachable"));
        assert!(tolerations.iter().all(|t| t.toleration_seconds == Some(300)
            && t.effect.as_deref() == Some("NoExecute")
            && t.operator.as_deref() == Some("Exists")));
        // Defaulting twice changes nothing.
        assert_eq!(defaulted(pod.clone()), pod);
    }

    #[test]
    fn existing_tolerations_are_kept() {
        let pod = defaulted(pod(json!({
            "containers": [{"name": "c", "image": "i"}],
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}],
        })));
        let tolerations = spec(&pod).tolerations.as_ref().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0].toleration_seconds, Some(5));
        let match_all = defaulted(pod_with_toleration(json!({"operator": "Exists"})));
        assert_eq!(spec(&match_all).tolerations.as_ref().unwrap().len(), 1);
    }

    fn pod_with_toleration(toleration: serde_json::Value) -> Pod {
        pod(json!({"containers": [{"name": "c", "image": "i"}], "tolerations": [toleration]}))
    }

    #[test]
    fn updates_keep_the_admitted_priority() {
        let old: Pod = serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "i"}],
            "priority": 7, "preemptionPolicy": "Never"}}))
        .unwrap();
        let mut new = pod(json!({"containers": [{"name": "c", "image": "i"}]}));
        new.prepare_update(&old);
        assert_eq!((spec(&new).priority, spec(&new).preemption_policy.as_deref()), (Some(7), Some("Never")));
    }

    #[test]
    fn image_pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(pull_policy("localhost:5000/nginx:v1"), "IfNotPresent");
        assert_eq!(pull_policy("nginx@sha256:abc"), "IfNotPresent");
        assert_eq!(pull_policy("nginx:latest@sha256:abc"), "Always");
        assert_eq!(pull_policy(""), "IfNotPresent");
    }

    #[test]
    fn probe_and_volume_defaults() {
        let pod = defaulted(pod(json!({
            "containers": [{
                "name": "c", "image": "i",
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"grpc": {"port": 9000}},
                "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            }],
            "volumes": [
                {"name": "a"},
                {"name": "b", "secret": {"secretName": "s"}},
                {"name": "c", "configMap": {"name": "m"}},
                {"name": "d", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
                {"name": "e", "hostPath": {"path": "/x"}},
            ],
        })));
        let container = &spec(&pod).containers[0];
        let probe = container.liveness_probe.as_ref().unwrap();
        assert_eq!(
            (probe.timeout_seconds, probe.period_seconds, probe.success_threshold, probe.failure_threshold),
            (Some(1), Some(10), Some(1), Some(3))
        );
        let http = probe.http_get.as_ref().unwrap();
        assert_eq!((http.path.as_deref(), http.scheme.as_deref()), (Some("/"), Some("HTTP")));
        let grpc = container.readiness_probe.as_ref().unwrap().grpc.as_ref().unwrap();
        assert_eq!(grpc.service.as_deref(), Some(""));
        let field_ref = container.env.as_ref().unwrap()[0].value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field_ref.api_version.as_deref(), Some("v1"));
        let volumes = spec(&pod).volumes.as_ref().unwrap();
        assert_eq!(volumes[0].empty_dir, Some(Default::default()));
        assert_eq!(volumes[1].secret.as_ref().unwrap().default_mode, Some(420));
        assert_eq!(volumes[2].config_map.as_ref().unwrap().default_mode, Some(420));
        let projected = volumes[3].projected.as_ref().unwrap();
        assert_eq!(projected.default_mode, Some(420));
        let token = projected.sources.as_ref().unwrap()[0].service_account_token.as_ref().unwrap();
        assert_eq!(token.expiration_seconds, Some(3600));
        assert_eq!(volumes[4].host_path.as_ref().unwrap().type_.as_deref(), Some(""));
    }

    #[test]
    fn requests_default_to_limits_and_host_ports_to_container_ports() {
        let pod = defaulted(pod(json!({
            "hostNetwork": true,
            "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}],
        })));
        let container = &spec(&pod).containers[0];
        let requests = container.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["cpu"].0, "500m");
        assert_eq!(requests["memory"].0, "1Gi");
        assert_eq!(container.ports.as_ref().unwrap()[0].host_port, Some(8080));
    }

    #[test]
    fn templates_get_spec_defaults_but_not_pod_ones() {
        let mut template: PodTemplateSpec = serde_json::from_value(
            json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}}}]}}),
        )
        .unwrap();
        default_template(&mut template);
        let spec = template.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.enable_service_links, None);
        assert_eq!(spec.service_account_name, None);
        assert_eq!(spec.tolerations, None);
        assert_eq!(spec.priority, None);
        assert!(spec.containers[0].resources.as_ref().unwrap().requests.is_none());
    }

    #[test]
    fn deprecated_service_account_is_an_alias() {
        let mut template: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"serviceAccount": "robot", "containers": []}})).unwrap();
        default_template(&mut template);
        let spec = template.spec.as_ref().unwrap();
        assert_eq!(spec.service_account_name.as_deref(), Some("robot"));
        assert_eq!(spec.service_account.as_deref(), Some("robot"));
    }

    #[test]
    fn qos_classes() {
        let qos = |resources: serde_json::Value| {
            let mut pod = defaulted(pod(json!({"containers": [{"name": "c", "image": "i", "resources": resources}]})));
            pod.prepare_create();
            pod.status.unwrap().qos_class.unwrap()
        };
        assert_eq!(qos(json!({})), "BestEffort");
        assert_eq!(qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}})), "Guaranteed");
        assert_eq!(qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}})), "Guaranteed");
        assert_eq!(qos(json!({"requests": {"cpu": "100m"}})), "Burstable");
        assert_eq!(qos(json!({"limits": {"cpu": "1"}})), "Burstable");
        assert_eq!(qos(json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}})), "Burstable");
    }

    #[test]
    fn prepare_create_resets_status() {
        let mut pod = defaulted(web());
        pod.status =
            Some(PodStatus { phase: Some("Running".into()), pod_ip: Some("10.0.0.1".into()), ..Default::default() });
        pod.prepare_create();
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(status.pod_ip, None);
        assert_eq!(status.conditions, None);

        let mut gated = web();
        gated.spec.as_mut().unwrap().scheduling_gates = Some(vec![PodSchedulingGate { name: "g".into() }]);
        gated.prepare_create();
        let conditions = gated.status.unwrap().conditions.unwrap();
        assert_eq!(conditions[0].reason.as_deref(), Some("SchedulingGated"));
    }

    #[test]
    fn valid_pod_passes() {
        assert!(defaulted(web()).validate().is_empty());
    }

    #[test]
    fn containers_are_required() {
        let pod = defaulted(pod(json!({"containers": []})));
        assert_eq!(messages(&pod.validate()), vec!["spec.containers: Required value"]);
    }

    #[test]
    fn container_name_and_image_rules() {
        let pod = defaulted(pod(json!({"containers": [
            {"name": "Web", "image": "i"},
            {"name": "db"},
            {"name": "db", "image": "i"},
            {"image": "i"},
        ]})));
        let errors = messages(&pod.validate());
        assert!(errors[0].starts_with(r#"spec.containers[0].name: Invalid value: "Web": a lowercase RFC 1123 label"#));
        assert_eq!(
            errors[1..].to_vec(),
            vec![
                "spec.containers[1].image: Required value",
                r#"spec.containers[2].name: Duplicate value: "db""#,
                "spec.containers[3].name: Required value",
            ]
        );
    }

    #[test]
    fn init_container_names_must_differ_from_containers() {
        let pod = defaulted(pod(json!({
            "initContainers": [{"name": "web", "image": "i"}],
            "containers": [{"name": "web", "image": "i"}],
        })));
        assert_eq!(messages(&pod.validate()), vec![r#"spec.initContainers[0].name: Duplicate value: "web""#]);
    }

    #[test]
    fn port_rules() {
        let pod = defaulted(pod(json!({"containers": [{"name": "c", "image": "i", "ports": [
            {"containerPort": 70000},
            {"containerPort": 80, "protocol": "HTTP"},
            {"containerPort": 0},
            {"containerPort": 81, "name": "http"},
            {"containerPort": 82, "name": "http"},
        ]}]})));
        assert_eq!(
            messages(&pod.validate()),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                r#"spec.containers[0].ports[1].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP""#,
                "spec.containers[0].ports[2].containerPort: Required value",
                r#"spec.containers[0].ports[4].name: Duplicate value: "http""#,
            ]
        );
    }

    #[test]
    fn host_port_conflicts_are_duplicates() {
        let pod = defaulted(pod(json!({"containers": [
            {"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]},
            {"name": "b", "image": "i", "ports": [{"containerPort": 81, "hostPort": 8080}]},
        ]})));
        assert_eq!(
            messages(&pod.validate()),
            vec![r#"spec.containers[1].ports[0].hostPort: Duplicate value: "/TCP/8080""#]
        );
    }

    #[test]
    fn policy_enums() {
        let pod = defaulted(pod(json!({
            "restartPolicy": "Sometimes", "dnsPolicy": "Google",
            "containers": [{"name": "c", "image": "i", "imagePullPolicy": "Maybe", "terminationMessagePolicy": "Log"}],
        })));
        assert_eq!(
            messages(&pod.validate()),
            vec![
                r#"spec.containers[0].terminationMessagePolicy: Unsupported value: "Log": supported values: "File", "FallbackToLogsOnError""#,
                r#"spec.containers[0].imagePullPolicy: Unsupported value: "Maybe": supported values: "Always", "IfNotPresent", "Never""#,
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
                r#"spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#,
            ]
        );
    }

    #[test]
    fn resource_rules() {
        let limited = defaulted(pod(json!({"containers": [{"name": "c", "image": "i", "resources": {
            "limits": {"cpu": "500m", "memory": "lots", "gpu": "1"},
            "requests": {"cpu": "1", "example.com/dongle": "1500m"},
        }}]})));
        assert_eq!(
            messages(&limited.validate()),
            vec![
                r#"spec.containers[0].resources.limits[gpu]: Invalid value: "gpu": must be a standard resource for containers"#,
                r#"spec.containers[0].resources.limits[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
                r#"spec.containers[0].resources.requests: Invalid value: "1": must be less than or equal to cpu limit of 500m"#,
                r#"spec.containers[0].resources.requests[example.com/dongle]: Invalid value: "1500m": must be an integer"#,
                "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources",
                // Requests were defaulted from the limits, so they repeat the limits' errors.
                r#"spec.containers[0].resources.requests[gpu]: Invalid value: "gpu": must be a standard resource for containers"#,
                r#"spec.containers[0].resources.requests[memory]: Invalid value: "lots": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
            ]
        );
        let negative = defaulted(pod(
            json!({"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "-1"}}}]}),
        ));
        assert_eq!(
            messages(&negative.validate()),
            vec![
                r#"spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0"#
            ]
        );
    }

    #[test]
    fn volume_and_mount_rules() {
        let pod = defaulted(pod(json!({
            "volumes": [
                {"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "cfg", "configMap": {"name": "settings"}},
                {"name": "cfg"},
                {"name": "bad", "configMap": {}},
            ],
            "containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "missing", "mountPath": "/a"},
                {"name": "cfg", "mountPath": ""},
                {"name": "bad", "mountPath": "/b"},
            ]}],
        })));
        assert_eq!(
            messages(&pod.validate()),
            vec![
                "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                r#"spec.volumes[2].name: Duplicate value: "cfg""#,
                "spec.volumes[3].configMap.name: Required value",
                r#"spec.containers[0].volumeMounts[0].name: Not found: "missing""#,
                "spec.containers[0].volumeMounts[1].mountPath: Required value",
                // An invalid volume is not one a container may mount.
                r#"spec.containers[0].volumeMounts[2].name: Not found: "bad""#,
            ]
        );
    }

    #[test]
    fn probe_rules() {
        let pod = defaulted(pod(json!({"containers": [{"name": "c", "image": "i",
            "livenessProbe": {"successThreshold": 2},
            "readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}},
        }]})));
        assert_eq!(
            messages(&pod.validate()),
            vec![
                "spec.containers[0].livenessProbe: Required value: must specify a handler type",
                "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            ]
        );
        let init = defaulted(pod_with_init_probe());
        assert_eq!(
            messages(&init.validate()),
            vec!["spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"]
        );
    }

    fn pod_with_init_probe() -> Pod {
        pod(json!({
            "initContainers": [{"name": "i", "image": "i", "livenessProbe": {"exec": {"command": ["true"]}}}],
            "containers": [{"name": "c", "image": "i"}],
        }))
    }

    #[test]
    fn env_rules() {
        let mut pod = defaulted(web());
        pod.spec.as_mut().unwrap().containers[0].env = Some(vec![
            EnvVar { name: "A=B".into(), value: Some("x".into()), value_from: None },
            EnvVar { name: "B".into(), value: None, value_from: Some(EnvVarSource::default()) },
        ]);
        assert_eq!(
            messages(&pod.validate()),
            vec![
                r#"spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
                r#"spec.containers[0].env[1].valueFrom: Invalid value: "": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"#,
            ]
        );
    }

    #[test]
    fn toleration_rules() {
        let pod = defaulted(pod(json!({"containers": [{"name": "c", "image": "i"}], "tolerations": [
            {"key": "k", "operator": "Exists", "value": "v"},
            {"key": "k", "operator": "Like"},
            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5},
        ]})));
        let errors = messages(&pod.validate());
        assert!(errors[0].starts_with("spec.tolerations[0].operator: Invalid value: {"));
        assert!(errors[0].ends_with("value must be empty when `operator` is 'Exists'"));
        assert_eq!(
            errors[1..].to_vec(),
            vec![
                r#"spec.tolerations[1].operator: Unsupported value: "Like": supported values: "Equal", "Exists""#,
                r#"spec.tolerations[2].effect: Invalid value: "NoSchedule": effect must be 'NoExecute' when `tolerationSeconds` is set"#,
            ]
        );
    }

    #[test]
    fn pod_spec_scalars() {
        let pod = defaulted(pod(json!({
            "containers": [{"name": "c", "image": "i"}],
            "activeDeadlineSeconds": 0, "hostname": "a.b", "dnsPolicy": "None",
        })));
        assert_eq!(
            messages(&pod.validate()),
            vec![
                "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
                "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
                r#"spec.hostname: Invalid value: "a.b": must not contain dots"#,
            ]
        );
    }

    #[test]
    fn update_may_change_images_and_add_tolerations() {
        let old = defaulted(web());
        let mut new = old.clone();
        let spec = new.spec.as_mut().unwrap();
        spec.containers[0].image = Some("nginx:1.28".into());
        spec.active_deadline_seconds = Some(60);
        spec.tolerations.as_mut().unwrap().push(Toleration {
            key: Some("k".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        });
        assert!(new.validate_update(&old).is_empty());
    }

    #[test]
    fn update_may_not_change_other_fields() {
        let old = defaulted(web());
        let mut new = old.clone();
        new.spec.as_mut().unwrap().containers[0].ports =
            Some(vec![ContainerPort { container_port: 81, protocol: Some("TCP".into()), ..Default::default() }]);
        let errors = new.validate_update(&old);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec");
        assert!(errors[0].message.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
        ));
        assert!(errors[0].message.contains("containers"));
    }

    #[test]
    fn update_container_count_and_tolerations() {
        let old = defaulted(web());
        let mut added = old.clone();
        added.spec.as_mut().unwrap().containers.push(Container {
            name: "b".into(),
            image: Some("i".into()),
            ..Default::default()
        });
        assert_eq!(
            messages(&added.validate_update(&old)),
            vec!["spec.containers: Forbidden: pod updates may not add or remove containers"]
        );
        let mut removed = old.clone();
        removed.spec.as_mut().unwrap().tolerations.as_mut().unwrap().pop();
        assert_eq!(
            messages(&removed.validate_update(&old)),
            vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]
        );
        let mut seconds = old.clone();
        seconds.spec.as_mut().unwrap().tolerations.as_mut().unwrap()[0].toleration_seconds = Some(10);
        assert!(seconds.validate_update(&old).is_empty());
    }

    #[test]
    fn update_active_deadline() {
        let mut old = defaulted(web());
        old.spec.as_mut().unwrap().active_deadline_seconds = Some(30);
        let mut longer = old.clone();
        longer.spec.as_mut().unwrap().active_deadline_seconds = Some(60);
        assert_eq!(
            messages(&longer.validate_update(&old)),
            vec!["spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"]
        );
        let mut cleared = old.clone();
        cleared.spec.as_mut().unwrap().active_deadline_seconds = None;
        assert_eq!(
            messages(&cleared.validate_update(&old)),
            vec![
                "spec.activeDeadlineSeconds: Invalid value: null: must not update from a positive integer to nil value"
            ]
        );
    }

    #[test]
    fn update_scheduling_gates_only_removed() {
        let mut old = defaulted(web());
        old.spec.as_mut().unwrap().scheduling_gates = Some(vec![PodSchedulingGate { name: "a".into() }]);
        let mut removed = old.clone();
        removed.spec.as_mut().unwrap().scheduling_gates = None;
        assert!(removed.validate_update(&old).is_empty());
        let mut added = old.clone();
        added.spec.as_mut().unwrap().scheduling_gates = Some(vec![PodSchedulingGate { name: "b".into() }]);
        assert_eq!(
            messages(&added.validate_update(&old)),
            vec![
                "spec.schedulingGates[0].name: Forbidden: only deletion is allowed, but found new scheduling gate 'b'"
            ]
        );
    }

    #[test]
    fn selectable_fields() {
        let mut pod = defaulted(web());
        pod.spec.as_mut().unwrap().node_name = Some("n1".into());
        pod.prepare_create();
        let fields = crate::strategy::fields_of(&pod);
        let get = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("spec.nodeName"), Some("n1"));
        assert_eq!(get("spec.restartPolicy"), Some("Always"));
        assert_eq!(get("spec.hostNetwork"), Some("false"));
        assert_eq!(get("spec.serviceAccountName"), Some("default"));
        assert_eq!(get("status.phase"), Some("Pending"));
        assert_eq!(get("status.podIP"), Some(""));
    }

    #[test]
    fn hostile_input_does_not_panic() {
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {}, "spec": {"containers": [{"name": "", "image": " é ",
            "resources": {"limits": {"": "9".repeat(100), "cpu": "1e999999"}},
            "ports": [{"containerPort": -1, "hostPort": -5, "name": "-"}]}]}}))
            .unwrap();
        let mut pod = defaulted(pod);
        pod.prepare_create();
        assert!(!pod.validate().is_empty());
        let _ = pod.validate_update(&web());
        let _ = crate::strategy::fields_of(&pod);
    }
}
