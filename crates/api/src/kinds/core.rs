//! The core (`v1`) kinds other than pods and services.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, LimitRange, LimitRangeItem, Namespace, NamespaceSpec, NamespaceStatus, Node,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimStatus,
    PersistentVolumeSpec, PersistentVolumeStatus, ResourceQuota, Secret, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;

use super::pod::taint_effect;
use super::quantity::{self, Quantity};
use super::{
    default_str, immutable, invalid_each, ip_errors, json, label_selector, one_of, optional_one_of, port_number,
    protocol, pruned, same,
};
use crate::error::FieldError;
use crate::strategy::{KindRules, SelectableField};
use crate::validation;

/// The most bytes a ConfigMap's or Secret's data may hold.
const MAX_DATA_SIZE: usize = 1024 * 1024;
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";
const ACCESS_MODES: &[&str] = &["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
const RECLAIM_POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
const POSITIVE: &str = "must be greater than zero";
/// The finalizer namespaces get on creation, removed once their content is gone.
const NAMESPACE_FINALIZER: &str = "kubernetes";
/// The members of a PersistentVolume's spec that are not its volume source.
const PV_NON_SOURCE_FIELDS: &[&str] = &[
    "accessModes",
    "capacity",
    "claimRef",
    "mountOptions",
    "nodeAffinity",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "volumeAttributesClassName",
    "volumeMode",
];

/// Kubernetes' `IsConfigMapKey` messages: the keys of ConfigMaps and Secrets (and the
/// keys pods reference in them).
pub(super) fn config_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if key.len() > 253 {
        errors.push(validation::max_len_error(253));
    }
    let valid = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        errors.push(validation::regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match key {
        "." => errors.push("must not be '.'".into()),
        ".." => errors.push("must not be '..'".into()),
        _ if key.starts_with("..") => errors.push("must not start with '..'".into()),
        _ => {}
    }
    errors
}

fn config_keys<'a>(keys: impl Iterator<Item = &'a String>, path: &str) -> Vec<FieldError> {
    keys.flat_map(|key| invalid_each(&format!("{path}[{key}]"), key, config_key_errors(key))).collect()
}

/// Once `immutable` is true, it and the data stay as they are.
fn immutable_data(new: Option<bool>, old: Option<bool>, data: &[(&str, bool)]) -> Vec<FieldError> {
    if old != Some(true) {
        return Vec::new();
    }
    let mut errors = Vec::new();
    if new != Some(true) {
        errors.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    for &(field, unchanged) in data {
        if !unchanged {
            errors.push(FieldError::forbidden(field, IMMUTABLE_WHEN_SET));
        }
    }
    errors
}

// ---------------------------------------------------------------------------------------
// Namespace
// ---------------------------------------------------------------------------------------

impl KindRules for Namespace {
    fn default(&mut self) {
        // Every namespace carries its own name as a label (a generateName has none yet).
        if let Some(name) = self.metadata.name.clone().filter(|n| !n.is_empty()) {
            self.metadata.labels.get_or_insert_with(BTreeMap::new).insert("kubernetes.io/metadata.name".into(), name);
        }
    }

    fn prepare_create(&mut self) {
        self.status = Some(NamespaceStatus { phase: Some("Active".into()), ..Default::default() });
        let finalizers = self.spec.get_or_insert_with(NamespaceSpec::default).finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
            finalizers.push(NAMESPACE_FINALIZER.into());
        }
    }

    fn prepare_update(&mut self, old: &Self) {
        // Finalizers change through the finalize subresource only.
        let finalizers = old.spec.as_ref().and_then(|s| s.finalizers.clone());
        self.spec.get_or_insert_with(NamespaceSpec::default).finalizers = finalizers;
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for finalizer in self.spec.iter().flat_map(|s| s.finalizers.iter().flatten()) {
            let field = "spec.finalizers";
            errors.extend(invalid_each(field, finalizer, validation::qualified_name(finalizer)));
            let standard = matches!(finalizer.as_str(), NAMESPACE_FINALIZER | "orphan" | "foregroundDeletion");
            if !finalizer.contains('/') && !standard {
                errors.push(FieldError::invalid(
                    field,
                    finalizer.as_str(),
                    "name is neither a standard finalizer name nor is it fully qualified",
                ));
            }
        }
        errors
    }

    const FIELDS: &'static [SelectableField] = &[SelectableField::text("status.phase")];
}

// ---------------------------------------------------------------------------------------
// ConfigMap and Secret
// ---------------------------------------------------------------------------------------

impl KindRules for ConfigMap {
    fn validate(&self) -> Vec<FieldError> {
        let data = self.data.as_ref();
        let binary = self.binary_data.as_ref();
        let mut errors = config_keys(data.into_iter().flat_map(BTreeMap::keys), "data");
        for key in data.into_iter().flat_map(BTreeMap::keys).filter(|k| binary.is_some_and(|b| b.contains_key(*k))) {
            errors.push(FieldError::invalid(
                format!("data[{key}]"),
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        errors.extend(config_keys(binary.into_iter().flat_map(BTreeMap::keys), "binaryData"));
        let size: usize = data.into_iter().flatten().map(|(_, v)| v.len()).sum::<usize>()
            + binary.into_iter().flatten().map(|(_, v)| v.0.len()).sum::<usize>();
        if size > MAX_DATA_SIZE {
            errors.push(FieldError::too_long("", MAX_DATA_SIZE));
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        immutable_data(
            self.immutable,
            old.immutable,
            &[("data", same(&self.data, &old.data)), ("binaryData", same(&self.binary_data, &old.binary_data))],
        )
    }
}

impl KindRules for Secret {
    fn default(&mut self) {
        default_str(&mut self.type_, "Opaque");
        // stringData is write-only: it is merged into data and never stored.
        if let Some(strings) = self.string_data.take() {
            let data = self.data.get_or_insert_with(BTreeMap::new);
            for (key, value) in strings {
                data.insert(key, ByteString(value.into_bytes()));
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let data = self.data.as_ref();
        let mut errors = config_keys(data.into_iter().flat_map(BTreeMap::keys), "data");
        let size: usize = data.into_iter().flatten().map(|(_, v)| v.0.len()).sum();
        if size > MAX_DATA_SIZE {
            errors.push(FieldError::too_long("data", MAX_DATA_SIZE));
        }
        let has = |key: &str| data.is_some_and(|d| d.contains_key(key));
        let required = |key: &str| FieldError::required(format!("data[{key}]"), "");
        let json_object = |key: &str| {
            let bytes = data.and_then(|d| d.get(key)).map_or(&[][..], |v| v.0.as_slice());
            serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
                .err()
                .map(|e| FieldError::invalid(format!("data[{key}]"), "<secret contents redacted>", &e.to_string()))
        };
        match self.type_.as_deref().unwrap_or("") {
            "kubernetes.io/service-account-token" => {
                let annotation = "kubernetes.io/service-account.name";
                let annotations = self.metadata.annotations.as_ref();
                if annotations.and_then(|a| a.get(annotation)).is_none_or(String::is_empty) {
                    errors.push(FieldError::required(format!("metadata.annotations[{annotation}]"), ""));
                }
            }
            kind @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
                let key = if kind == "kubernetes.io/dockercfg" { ".dockercfg" } else { ".dockerconfigjson" };
                if has(key) {
                    errors.extend(json_object(key));
                } else {
                    errors.push(required(key));
                }
            }
            "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
                errors.extend([required("username"), required("password")]);
            }
            "kubernetes.io/ssh-auth" if data.and_then(|d| d.get("ssh-privatekey")).is_none_or(|v| v.0.is_empty()) => {
                errors.push(required("ssh-privatekey"));
            }
            "kubernetes.io/tls" => {
                errors.extend(["tls.crt", "tls.key"].into_iter().filter(|k| !has(k)).map(required));
            }
            _ => {}
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> = immutable(&self.type_, &old.type_, "type").into_iter().collect();
        errors.extend(immutable_data(self.immutable, old.immutable, &[("data", same(&self.data, &old.data))]));
        errors
    }

    const FIELDS: &'static [SelectableField] = &[SelectableField::text("type")];
}

impl KindRules for ServiceAccount {}

// ---------------------------------------------------------------------------------------
// Endpoints and Event
// ---------------------------------------------------------------------------------------

impl KindRules for Endpoints {
    fn default(&mut self) {
        for port in self.subsets.iter_mut().flatten().flat_map(|s| s.ports.iter_mut().flatten()) {
            default_str(&mut port.protocol, "TCP");
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (i, subset) in self.subsets.iter().flatten().enumerate() {
            let path = format!("subsets[{i}]");
            let addresses = subset.addresses.as_deref().unwrap_or_default();
            let not_ready = subset.not_ready_addresses.as_deref().unwrap_or_default();
            if addresses.is_empty() && not_ready.is_empty() {
                errors.push(FieldError::required(&path, "must specify `addresses` or `notReadyAddresses`"));
            }
            for (member, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
                for (j, address) in list.iter().enumerate() {
                    let path = format!("{path}.{member}[{j}]");
                    errors.extend(invalid_each(&format!("{path}.ip"), &address.ip, ip_errors(&address.ip)));
                    if let Some(host) = address.hostname.as_deref().filter(|h| !h.is_empty()) {
                        errors.extend(invalid_each(&format!("{path}.hostname"), host, validation::dns1123_label(host)));
                    }
                    if let Some(node) = address.node_name.as_deref().filter(|n| !n.is_empty()) {
                        errors.extend(invalid_each(
                            &format!("{path}.nodeName"),
                            node,
                            validation::dns1123_subdomain(node),
                        ));
                    }
                }
            }
            let ports = subset.ports.as_deref().unwrap_or_default();
            for (j, port) in ports.iter().enumerate() {
                let path = format!("{path}.ports[{j}]");
                match port.name.as_deref().filter(|n| !n.is_empty()) {
                    None if ports.len() > 1 => errors.push(FieldError::required(format!("{path}.name"), "")),
                    None => {}
                    Some(name) => {
                        errors.extend(invalid_each(&format!("{path}.name"), name, validation::dns1123_label(name)));
                    }
                }
                errors.extend(port_number(port.port, &format!("{path}.port")));
                errors.extend(protocol(port.protocol.as_deref(), &format!("{path}.protocol")));
            }
        }
        errors
    }
}

impl KindRules for Event {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let namespace = self.metadata.namespace.as_deref().unwrap_or("");
        let involved = self.involved_object.namespace.as_deref().unwrap_or("");
        let mismatch = if self.event_time.is_none() {
            // Old-style events: the involved object's namespace is the event's.
            if involved.is_empty() {
                !matches!(namespace, "" | "default")
            } else {
                involved != namespace
            }
        } else {
            involved.is_empty() && !matches!(namespace, "default" | "kube-system")
        };
        if mismatch {
            errors.push(FieldError::invalid("involvedObject.namespace", involved, "does not match event.namespace"));
        }
        if self.event_time.is_some() {
            for (field, value) in [
                ("reportingComponent", &self.reporting_component),
                ("reportingInstance", &self.reporting_instance),
                ("action", &self.action),
                ("reason", &self.reason),
            ] {
                if value.as_deref().is_none_or(str::is_empty) {
                    errors.push(FieldError::required(field, ""));
                }
            }
        }
        errors
    }

    const FIELDS: &'static [SelectableField] = &[
        SelectableField::text("involvedObject.kind"),
        SelectableField::text("involvedObject.namespace"),
        SelectableField::text("involvedObject.name"),
        SelectableField::text("involvedObject.uid"),
        SelectableField::text("involvedObject.apiVersion"),
        SelectableField::text("involvedObject.resourceVersion"),
        SelectableField::text("involvedObject.fieldPath"),
        SelectableField::text("reason"),
        SelectableField::text("reportingComponent"),
        SelectableField::text("source").from(&["source.component", "reportingComponent"]),
        SelectableField::text("type"),
    ];
}

// ---------------------------------------------------------------------------------------
// Node
// ---------------------------------------------------------------------------------------

impl KindRules for Node {
    fn default(&mut self) {
        if let Some(status) = &mut self.status {
            if status.allocatable.is_none() {
                status.allocatable.clone_from(&status.capacity);
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut seen = HashSet::new();
        for (i, taint) in self.spec.iter().flat_map(|s| s.taints.iter().flatten()).enumerate() {
            let path = format!("spec.taints[{i}]");
            errors.extend(invalid_each(&format!("{path}.key"), &taint.key, validation::qualified_name(&taint.key)));
            let value = taint.value.as_deref().unwrap_or("");
            let messages = validation::label_value(value);
            if !messages.is_empty() {
                errors.push(FieldError::invalid(format!("{path}.value"), value, &messages.join(";")));
            }
            if taint.effect.is_empty() {
                errors.push(FieldError::required(format!("{path}.effect"), ""));
            } else {
                errors.extend(taint_effect(&taint.effect, &format!("{path}.effect")));
            }
            if !seen.insert((taint.key.as_str(), taint.effect.as_str())) {
                let mut duplicate = FieldError::duplicate(&path, json(taint));
                duplicate.message.push_str(": taints must be unique by key and effect pair");
                errors.push(duplicate);
            }
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let (new, old) = (self.spec.clone().unwrap_or_default(), old.spec.clone().unwrap_or_default());
        let mut errors = Vec::new();
        // Set once: from nothing to a value, never changed after.
        let old_cidrs = old.pod_cidrs.unwrap_or_default();
        if !old_cidrs.is_empty() && old_cidrs != new.pod_cidrs.unwrap_or_default() {
            errors.push(FieldError::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = old.provider_id.unwrap_or_default();
        if !old_provider.is_empty() && old_provider != new.provider_id.unwrap_or_default() {
            errors.push(FieldError::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        errors
    }

    const FIELDS: &'static [SelectableField] = &[SelectableField::flag("spec.unschedulable")];
}

// ---------------------------------------------------------------------------------------
// PersistentVolume and PersistentVolumeClaim
// ---------------------------------------------------------------------------------------

/// The defaults of a claim's spec, in claims, ephemeral volumes and StatefulSet claim
/// templates.
pub(super) fn default_claim_spec(spec: &mut PersistentVolumeClaimSpec) {
    default_str(&mut spec.volume_mode, "Filesystem");
}

fn access_modes(modes: &[String], path: &str, required_detail: &str) -> Vec<FieldError> {
    if modes.is_empty() {
        return vec![FieldError::required(path, required_detail)];
    }
    modes
        .iter()
        .filter(|m| !ACCESS_MODES.contains(&m.as_str()))
        .map(|m| FieldError::not_supported(path, m.as_str(), ACCESS_MODES))
        .collect()
}

/// A quantity that must be above zero (storage sizes).
fn positive_quantity(value: &ApiQuantity, field: &str) -> Result<Quantity, FieldError> {
    match quantity::parse_field(value, field)? {
        parsed if parsed.is_positive() => Ok(parsed),
        _ => Err(FieldError::invalid(field, value.0.as_str(), POSITIVE)),
    }
}

/// Kubernetes' `ValidatePersistentVolumeClaimSpec` (errors under `path`).
pub(super) fn validate_claim_spec(spec: &PersistentVolumeClaimSpec, path: &str) -> Vec<FieldError> {
    let mut errors = access_modes(
        spec.access_modes.as_deref().unwrap_or_default(),
        &format!("{path}.accessModes"),
        "at least 1 access mode is required",
    );
    if let Some(selector) = &spec.selector {
        errors.extend(label_selector(selector, &format!("{path}.selector")));
    }
    let storage_path = format!("{path}.resources[storage]");
    match spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")) {
        None => errors.push(FieldError::required(storage_path, "")),
        Some(storage) => errors.extend(positive_quantity(storage, &storage_path).err()),
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
        errors.extend(invalid_each(&format!("{path}.storageClassName"), class, validation::dns1123_subdomain(class)));
    }
    errors.extend(optional_one_of(spec.volume_mode.as_deref(), VOLUME_MODES, &format!("{path}.volumeMode")));
    errors
}

impl KindRules for PersistentVolume {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(PersistentVolumeSpec::default);
        default_str(&mut spec.persistent_volume_reclaim_policy, "Retain");
        default_str(&mut spec.volume_mode, "Filesystem");
        if let Some(host_path) = &mut spec.host_path {
            host_path.type_.get_or_insert_with(String::new);
        }
        default_str(&mut self.status.get_or_insert_with(Default::default).phase, "Pending");
    }

    fn prepare_create(&mut self) {
        self.status = Some(PersistentVolumeStatus {
            phase: Some("Pending".into()),
            last_phase_transition_time: now(),
            ..Default::default()
        });
    }

    fn validate(&self) -> Vec<FieldError> {
        let empty = PersistentVolumeSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&empty);
        let mut errors = access_modes(spec.access_modes.as_deref().unwrap_or_default(), "spec.accessModes", "");
        let capacity = spec.capacity.clone().unwrap_or_default();
        if capacity.is_empty() {
            errors.push(FieldError::required("spec.capacity", ""));
        }
        if !capacity.contains_key("storage") || capacity.len() > 1 {
            errors.push(FieldError::not_supported("spec.capacity", json(&capacity), &["storage"]));
        }
        for (name, value) in &capacity {
            errors.extend(positive_quantity(value, &format!("spec.capacity[{name}]")).err());
        }
        if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
            errors.extend(invalid_each("spec.storageClassName", class, validation::dns1123_subdomain(class)));
        }
        errors.extend(optional_one_of(spec.volume_mode.as_deref(), VOLUME_MODES, "spec.volumeMode"));
        errors.extend(optional_one_of(
            spec.persistent_volume_reclaim_policy.as_deref(),
            RECLAIM_POLICIES,
            "spec.persistentVolumeReclaimPolicy",
        ));
        let sources = pv_source(spec);
        match sources.as_object().map(|s| s.keys().collect::<Vec<_>>()).unwrap_or_default().as_slice() {
            [] => errors.push(FieldError::required("spec", "must specify a volume type")),
            [_, extra @ ..] => errors.extend(
                extra
                    .iter()
                    .map(|key| FieldError::forbidden(format!("spec.{key}"), "may not specify more than 1 volume type")),
            ),
        }
        if let Some(host_path) = &spec.host_path {
            if host_path.path.is_empty() {
                errors.push(FieldError::required("spec.hostPath.path", ""));
            }
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let empty = PersistentVolumeSpec::default();
        let new_spec = self.spec.as_ref().unwrap_or(&empty);
        let old_spec = old.spec.as_ref().unwrap_or(&empty);
        let mut errors = Vec::new();
        let (new_source, old_source) = (pv_source(new_spec), pv_source(old_spec));
        if new_source != old_source {
            errors.push(FieldError::forbidden(
                "spec.persistentvolumesource",
                &format!("spec.persistentvolumesource is immutable after creation\n- {old_source}\n+ {new_source}"),
            ));
        }
        errors.extend(immutable(&new_spec.volume_mode, &old_spec.volume_mode, "volumeMode"));
        if old_spec.node_affinity.is_some() {
            errors.extend(immutable(&new_spec.node_affinity, &old_spec.node_affinity, "nodeAffinity"));
        }
        errors
    }
}

/// The current time, as Kubernetes stamps a transition.
fn now() -> Option<Time> {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let seconds = i64::try_from(since_epoch.as_secs()).ok()?;
    let nanos = i32::try_from(since_epoch.subsec_nanos()).ok()?;
    Timestamp::new(seconds, nanos).ok().map(Time)
}

/// The volume source part of a PersistentVolume's spec, as JSON.
fn pv_source(spec: &PersistentVolumeSpec) -> serde_json::Value {
    let mut source = pruned(json(spec));
    if let Some(map) = source.as_object_mut() {
        map.retain(|key, _| !PV_NON_SOURCE_FIELDS.contains(&key.as_str()));
    }
    source
}

impl KindRules for PersistentVolumeClaim {
    fn default(&mut self) {
        default_claim_spec(self.spec.get_or_insert_with(Default::default));
        default_str(&mut self.status.get_or_insert_with(Default::default).phase, "Pending");
    }

    fn prepare_create(&mut self) {
        self.status = Some(PersistentVolumeClaimStatus { phase: Some("Pending".into()), ..Default::default() });
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_claim_spec(&self.spec.clone().unwrap_or_default(), "spec")
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let new_spec = self.spec.clone().unwrap_or_default();
        let old_spec = old.spec.clone().unwrap_or_default();
        let storage = |spec: &PersistentVolumeClaimSpec| {
            spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")).cloned()
        };
        let bound = old.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let (mut munged, mut old_munged) = (new_spec.clone(), old_spec.clone());
        // The volume name is set once, by the binder.
        if old_spec.volume_name.as_deref().is_none_or(str::is_empty) {
            old_munged.volume_name.clone_from(&new_spec.volume_name);
        }
        // A bound claim may grow.
        if bound {
            if let Some(requests) = munged.resources.as_mut().and_then(|r| r.requests.as_mut()) {
                match storage(&old_spec) {
                    Some(old_storage) => requests.insert("storage".into(), old_storage),
                    None => requests.remove("storage"),
                };
            }
        }
        let mut errors = Vec::new();
        if !same(&munged, &old_munged) {
            errors.push(FieldError::forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
        }
        let parse = |value: Option<ApiQuantity>| value.and_then(|v| Quantity::parse(&v.0).ok());
        if let (Some(new_size), Some(old_size)) = (parse(storage(&new_spec)), parse(storage(&old_spec))) {
            let capacity = parse(old.status.as_ref().and_then(|s| s.capacity.as_ref()?.get("storage").cloned()));
            // Without a capacity yet, the spec check above already refuses the change.
            let below_capacity = capacity.is_some_and(|c| new_size.compare(c).is_some_and(Ordering::is_le));
            if new_size.compare(old_size) == Some(Ordering::Less) && below_capacity {
                errors.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                ));
            }
        }
        errors.extend(immutable(&new_spec.volume_mode, &old_spec.volume_mode, "volumeMode"));
        errors
    }
}

// ---------------------------------------------------------------------------------------
// LimitRange and ResourceQuota
// ---------------------------------------------------------------------------------------

impl KindRules for LimitRange {
    fn default(&mut self) {
        for item in self.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
            if item.type_ != "Container" {
                continue;
            }
            // A default limit falls back to the max; a default request to the default
            // limit, then to the min.
            let defaults = item.default.get_or_insert_with(BTreeMap::new);
            for (name, value) in item.max.iter().flatten() {
                defaults.entry(name.clone()).or_insert_with(|| value.clone());
            }
            let requests = item.default_request.get_or_insert_with(BTreeMap::new);
            for (name, value) in defaults.iter().chain(item.min.iter().flatten()) {
                requests.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut types = HashSet::new();
        for (i, item) in self.spec.iter().flat_map(|s| s.limits.iter()).enumerate() {
            let path = format!("spec.limits[{i}]");
            let type_path = format!("{path}.type");
            errors.extend(invalid_each(&type_path, &item.type_, validation::qualified_name(&item.type_)));
            let standard = matches!(item.type_.as_str(), "Pod" | "Container" | "PersistentVolumeClaim");
            if !item.type_.contains('/') && !standard {
                errors.push(FieldError::invalid(
                    &type_path,
                    item.type_.as_str(),
                    "must be a standard limit type or fully qualified",
                ));
            }
            if !types.insert(item.type_.as_str()) {
                errors.push(FieldError::duplicate(&type_path, item.type_.as_str()));
            }
            validate_limit_bounds(item, &path, &mut errors);
        }
        errors
    }
}

/// min ≤ defaultRequest ≤ default ≤ max, resource by resource.
fn validate_limit_bounds(item: &LimitRangeItem, path: &str, errors: &mut Vec<FieldError>) {
    let mut parse =
        |member: &str, list: &Option<BTreeMap<String, ApiQuantity>>| -> BTreeMap<String, (Quantity, String)> {
            let mut parsed = BTreeMap::new();
            for (name, value) in list.iter().flatten() {
                match quantity::nonnegative_field(value, &format!("{path}.{member}[{name}]")) {
                    Ok(q) => {
                        parsed.insert(name.clone(), (q, value.0.clone()));
                    }
                    Err(error) => errors.push(error),
                }
            }
            parsed
        };
    let min = parse("min", &item.min);
    let max = parse("max", &item.max);
    let default = parse("default", &item.default);
    let request = parse("defaultRequest", &item.default_request);
    // (lower, lower's name, upper, upper's name, member reported, report the upper value)
    let pairs = [
        (&min, "min value", &max, "max value", "min", false),
        (&min, "min value", &request, "default request value", "defaultRequest", true),
        (&request, "default request value", &max, "max value", "defaultRequest", false),
        (&request, "default request value", &default, "default limit value", "defaultRequest", false),
        (&min, "min value", &default, "default value", "default", false),
        (&default, "default value", &max, "max value", "default", true),
    ];
    for (lower, lower_name, upper, upper_name, member, show_upper) in pairs {
        for (name, (low, low_text)) in lower {
            let Some((high, high_text)) = upper.get(name) else { continue };
            if low.compare(*high) == Some(Ordering::Greater) {
                let shown = if show_upper { high_text } else { low_text };
                errors.push(FieldError::invalid(
                    format!("{path}.{member}[{name}]"),
                    shown.as_str(),
                    &format!("{lower_name} {low_text} is greater than {upper_name} {high_text}"),
                ));
            }
        }
    }
}

impl KindRules for ResourceQuota {
    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let spec = self.spec.as_ref();
        for (name, value) in spec.and_then(|s| s.hard.as_ref()).into_iter().flatten() {
            let field = format!("spec.hard[{name}]");
            errors.extend(invalid_each(&field, name, validation::qualified_name(name)));
            errors.extend(quantity::nonnegative_field(value, &field).err());
        }
        const SCOPES: &[&str] = &[
            "BestEffort",
            "CrossNamespacePodAffinity",
            "NotBestEffort",
            "NotTerminating",
            "PriorityClass",
            "Terminating",
        ];
        for scope in spec.and_then(|s| s.scopes.as_ref()).into_iter().flatten() {
            errors.extend(one_of(Some(scope), SCOPES, "spec.scopes"));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{from, messages};

    #[test]
    fn namespace_lifecycle() {
        let mut ns: Namespace = from(json!({"metadata": {"name": "team"}}));
        ns.default();
        assert_eq!(ns.metadata.labels.as_ref().unwrap()["kubernetes.io/metadata.name"], "team");
        ns.prepare_create();
        assert_eq!(ns.status.as_ref().unwrap().phase.as_deref(), Some("Active"));
        assert_eq!(ns.spec.as_ref().unwrap().finalizers, Some(vec!["kubernetes".to_string()]));
        assert_eq!(crate::strategy::fields_of(&ns), vec![("status.phase", "Active".to_string())]);
        let mut update: Namespace = from(json!({"metadata": {"name": "team"}, "spec": {"finalizers": []}}));
        update.prepare_update(&ns);
        assert_eq!(update.spec.unwrap().finalizers, Some(vec!["kubernetes".to_string()]));
        let bad: Namespace = from(json!({"metadata": {"name": "x"}, "spec": {"finalizers": ["custom"]}}));
        assert_eq!(
            messages(&bad.validate()),
            vec![
                r#"spec.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified"#
            ]
        );
    }

    #[test]
    fn config_map_keys_and_size() {
        let cm: ConfigMap = from(
            json!({"metadata": {"name": "c"}, "data": {"ok.key": "v", "bad key": "v", "..x": "v"}, "binaryData": {"ok.key": ""}}),
        );
        assert_eq!(
            messages(&cm.validate()),
            vec![
                r#"data[..x]: Invalid value: "..x": must not start with '..'"#,
                r#"data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"#,
                r#"data[ok.key]: Invalid value: "ok.key": duplicate of key present in binaryData"#,
            ]
        );
        let big: ConfigMap = from(json!({"metadata": {"name": "c"}, "data": {"a": "x".repeat(MAX_DATA_SIZE + 1)}}));
        assert_eq!(messages(&big.validate()), vec![": Too long: may not be more than 1048576 bytes"]);
    }

    #[test]
    fn immutable_config_map() {
        let old: ConfigMap = from(json!({"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": true}));
        let mut new = old.clone();
        new.data = Some(BTreeMap::from([("a".to_string(), "2".to_string())]));
        new.immutable = Some(false);
        assert_eq!(
            messages(&new.validate_update(&old)),
            vec![
                "immutable: Forbidden: field is immutable when `immutable` is set",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
        let mutable: ConfigMap = from(json!({"metadata": {"name": "c"}, "data": {"a": "1"}}));
        assert!(new.validate_update(&mutable).is_empty());
    }

    #[test]
    fn secret_defaults_and_rules() {
        let mut secret: Secret =
            from(json!({"metadata": {"name": "s"}, "stringData": {"user": "admin"}, "data": {"pw": "c2VjcmV0"}}));
        secret.default();
        assert_eq!(secret.type_.as_deref(), Some("Opaque"));
        assert_eq!(secret.string_data, None);
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["user"].0, b"admin");
        assert_eq!(data["pw"].0, b"secret");
        assert!(secret.validate().is_empty());
        assert_eq!(crate::strategy::fields_of(&secret), vec![("type", "Opaque".to_string())]);

        let tls: Secret =
            from(json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}));
        assert_eq!(messages(&tls.validate()), vec!["data[tls.key]: Required value"]);
        let docker: Secret = from(
            json!({"metadata": {"name": "s"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "bm90IGpzb24="}}),
        );
        let errors = messages(&docker.validate());
        assert!(errors[0].starts_with(r#"data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": "#));
        let token: Secret = from(json!({"metadata": {"name": "s"}, "type": "kubernetes.io/service-account-token"}));
        assert_eq!(
            messages(&token.validate()),
            vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value"]
        );
    }

    #[test]
    fn secret_updates() {
        let old: Secret =
            from(json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}, "immutable": true}));
        let mut new = old.clone();
        new.type_ = Some("kubernetes.io/tls".into());
        new.data = None;
        assert_eq!(
            messages(&new.validate_update(&old)),
            vec![
                r#"type: Invalid value: "kubernetes.io/tls": field is immutable"#,
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
    }

    #[test]
    fn endpoints_defaults_and_rules() {
        let mut ep: Endpoints = from(json!({"metadata": {"name": "e"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "nope"}], "ports": [{"port": 80}, {"port": 0, "name": "b"}]},
            {"ports": [{"port": 80}]},
        ]}));
        ep.default();
        assert_eq!(ep.subsets.as_ref().unwrap()[0].ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(
            messages(&ep.validate()),
            vec![
                r#"subsets[0].addresses[1].ip: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#,
                "subsets[0].ports[0].name: Required value",
                "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
            ]
        );
    }

    #[test]
    fn event_namespace_and_fields() {
        let event = Event {
            metadata: from(json!({"name": "e", "namespace": "default"})),
            involved_object: ObjectReference {
                kind: Some("Pod".into()),
                name: Some("web".into()),
                namespace: Some("other".into()),
                ..Default::default()
            },
            reason: Some("Started".into()),
            type_: Some("Normal".into()),
            source: Some(EventSource { component: Some("kubelet".into()), host: None }),
            ..Default::default()
        };
        assert_eq!(
            messages(&event.validate()),
            vec![r#"involvedObject.namespace: Invalid value: "other": does not match event.namespace"#]
        );
        let fields = crate::strategy::fields_of(&event);
        assert!(fields.contains(&("involvedObject.kind", "Pod".into())));
        assert!(fields.contains(&("source", "kubelet".into())));
        assert!(fields.contains(&("type", "Normal".into())));
        assert_eq!(fields.len(), 11);
    }

    #[test]
    fn node_rules() {
        let mut node: Node = from(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "k", "effect": "NoSchedule"}, {"key": "k", "effect": "NoSchedule"}, {"key": "j", "effect": "Sometimes"},
        ]}, "status": {"capacity": {"cpu": "4"}}}));
        node.default();
        assert_eq!(node.status.as_ref().unwrap().allocatable.as_ref().unwrap()["cpu"].0, "4");
        let errors = messages(&node.validate());
        assert!(errors[0].starts_with("spec.taints[1]: Duplicate value: {"));
        assert!(errors[0].ends_with("taints must be unique by key and effect pair"));
        assert_eq!(
            errors[1],
            r#"spec.taints[2].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", "PreferNoSchedule", "NoExecute""#
        );
        assert_eq!(crate::strategy::fields_of(&node), vec![("spec.unschedulable", "false".to_string())]);
        let old: Node =
            from(json!({"metadata": {"name": "n"}, "spec": {"providerID": "a", "podCIDRs": ["10.0.0.0/24"]}}));
        let new: Node =
            from(json!({"metadata": {"name": "n"}, "spec": {"providerID": "b", "podCIDRs": ["10.0.1.0/24"]}}));
        assert_eq!(new.validate_update(&old).len(), 2);
        assert!(old.validate_update(&from(json!({"metadata": {"name": "n"}}))).is_empty());
    }

    #[test]
    fn persistent_volume_defaults_and_rules() {
        let mut pv: PersistentVolume = from(json!({"metadata": {"name": "pv"}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"},
        }}));
        pv.default();
        pv.prepare_create();
        let spec = pv.spec.as_ref().unwrap();
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
        assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
        let status = pv.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert!(status.last_phase_transition_time.is_some());
        assert!(pv.validate().is_empty());

        let bad: PersistentVolume =
            from(json!({"metadata": {"name": "pv"}, "spec": {"accessModes": ["ReadWriteSometimes"]}}));
        assert_eq!(
            messages(&bad.validate()),
            vec![
                r#"spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod""#,
                "spec.capacity: Required value",
                r#"spec.capacity: Unsupported value: {}: supported values: "storage""#,
                "spec: Required value: must specify a volume type",
            ]
        );
        let mut moved = pv.clone();
        moved.spec.as_mut().unwrap().host_path.as_mut().unwrap().path = "/elsewhere".into();
        let errors = moved.validate_update(&pv);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.persistentvolumesource");
        let mut resized = pv.clone();
        resized.spec.as_mut().unwrap().capacity = Some(BTreeMap::from([("storage".into(), ApiQuantity("2Gi".into()))]));
        assert!(resized.validate_update(&pv).is_empty());
    }

    fn claim(storage: &str) -> PersistentVolumeClaim {
        let mut pvc: PersistentVolumeClaim = from(json!({"metadata": {"name": "c"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}},
        }}));
        pvc.default();
        pvc
    }

    #[test]
    fn claim_defaults_and_rules() {
        let mut pvc = claim("1Gi");
        assert_eq!(pvc.spec.as_ref().unwrap().volume_mode.as_deref(), Some("Filesystem"));
        pvc.prepare_create();
        assert_eq!(pvc.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
        assert!(pvc.validate().is_empty());
        let bad: PersistentVolumeClaim =
            from(json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "0"}}}}));
        assert_eq!(
            messages(&bad.validate()),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                r#"spec.resources[storage]: Invalid value: "0": must be greater than zero"#,
            ]
        );
    }

    #[test]
    fn claim_updates() {
        let pending = claim("1Gi");
        let grown = claim("2Gi");
        assert_eq!(
            messages(&grown.validate_update(&pending)),
            vec!["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"]
        );
        let mut bound = pending.clone();
        bound.status = Some(PersistentVolumeClaimStatus {
            phase: Some("Bound".into()),
            capacity: Some(BTreeMap::from([("storage".into(), ApiQuantity("1Gi".into()))])),
            ..Default::default()
        });
        assert!(grown.validate_update(&bound).is_empty());
        let shrunk = claim("512Mi");
        assert_eq!(
            messages(&shrunk.validate_update(&bound)),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
        let mut named = pending.clone();
        named.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
        assert!(named.validate_update(&pending).is_empty());
    }

    #[test]
    fn limit_range_defaults_and_bounds() {
        let mut lr: LimitRange = from(json!({"metadata": {"name": "l"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}},
        ]}}));
        lr.default();
        let item = &lr.spec.as_ref().unwrap().limits[0];
        assert_eq!(item.default.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "2");
        assert_eq!(item.default_request.as_ref().unwrap()["memory"].0, "64Mi");
        assert!(lr.validate().is_empty());
        let bad: LimitRange = from(json!({"metadata": {"name": "l"}, "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "1"}, "min": {"cpu": "2"}}, {"type": "Node"},
        ]}}));
        assert_eq!(
            messages(&bad.validate()),
            vec![
                r#"spec.limits[0].min[cpu]: Invalid value: "2": min value 2 is greater than max value 1"#,
                r#"spec.limits[1].type: Invalid value: "Node": must be a standard limit type or fully qualified"#,
            ]
        );
    }

    #[test]
    fn resource_quota_rules() {
        let mut quota: ResourceQuota = from(
            json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "-1", "cpu": "x"}}, "status": {"used": {"pods": "3"}}}),
        );
        quota.prepare_create();
        assert_eq!(quota.status, Some(Default::default()));
        assert_eq!(
            messages(&quota.validate()),
            vec![
                r#"spec.hard[cpu]: Invalid value: "x": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"#,
                r#"spec.hard[pods]: Invalid value: "-1": must be greater than or equal to 0"#,
            ]
        );
    }
}
