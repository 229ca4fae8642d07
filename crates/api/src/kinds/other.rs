//! Kinds of the smaller API groups: leases, endpoint slices, events.k8s.io events,
//! disruption budgets, horizontal pod autoscalers, priority classes and storage classes.

use std::net::IpAddr;

use k8s_openapi::api::{
    authentication::v1::SelfSubjectReview,
    autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec, MetricTarget, ResourceMetricSource},
    coordination::v1::Lease,
    discovery::v1::EndpointSlice,
    events::v1::Event,
    policy::v1::PodDisruptionBudget,
    scheduling::v1::PriorityClass,
    storage::v1::StorageClass,
};

use super::{
    default_nonzero, default_str, immutable, invalid_each, json, label_selector, not_more_than_100_percent, one_of,
    optional_one_of, port_number, positive_int_or_percent, protocol, same, NEGATIVE,
};
use crate::error::FieldError;
use crate::strategy::KindRules;
use crate::validation;

// SelfSubjectReview: the server fills in status; nothing to check.
impl KindRules for SelfSubjectReview {}

// ---------------------------------------------------------------------------------------
// Lease
// ---------------------------------------------------------------------------------------

impl KindRules for Lease {
    fn validate(&self) -> Vec<FieldError> {
        let Some(spec) = &self.spec else { return Vec::new() };
        let mut errors = Vec::new();
        if let Some(duration) = spec.lease_duration_seconds.filter(|&d| d <= 0) {
            errors.push(FieldError::invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"));
        }
        if let Some(transitions) = spec.lease_transitions.filter(|&t| t < 0) {
            errors.push(FieldError::invalid("spec.leaseTransitions", transitions, NEGATIVE));
        }
        let has_strategy = spec.strategy.as_deref().is_some_and(|s| !s.is_empty());
        if spec.preferred_holder.as_deref().is_some_and(|h| !h.is_empty()) && !has_strategy {
            errors
                .push(FieldError::forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"));
        }
        errors
    }
}

// ---------------------------------------------------------------------------------------
// EndpointSlice
// ---------------------------------------------------------------------------------------

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];

impl KindRules for EndpointSlice {
    fn default(&mut self) {
        for port in self.ports.iter_mut().flatten() {
            port.name.get_or_insert_with(String::new);
            default_str(&mut port.protocol, "TCP");
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors: Vec<FieldError> =
            one_of(Some(&self.address_type), ADDRESS_TYPES, "addressType").into_iter().collect();
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let path = format!("endpoints[{i}].addresses");
            if endpoint.addresses.is_empty() {
                errors.push(FieldError::required(&path, "must contain at least 1 address"));
            }
            for (j, address) in endpoint.addresses.iter().enumerate() {
                let field = format!("{path}[{j}]");
                let message = match (self.address_type.as_str(), address.parse::<IpAddr>()) {
                    ("IPv4", Ok(IpAddr::V4(_))) | ("IPv6", Ok(IpAddr::V6(_))) => continue,
                    ("IPv4", _) => "must be a valid IPv4 address".to_string(),
                    ("IPv6", _) => "must be a valid IPv6 address".to_string(),
                    ("FQDN", _) => match validation::dns1123_subdomain(address).into_iter().next() {
                        Some(message) => message,
                        None => continue,
                    },
                    _ => continue,
                };
                errors.push(FieldError::invalid(field, address.as_str(), &message));
            }
        }
        for (i, port) in self.ports.iter().flatten().enumerate() {
            let path = format!("ports[{i}]");
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                errors.extend(invalid_each(&format!("{path}.name"), name, validation::dns1123_label(name)));
            }
            if let Some(number) = port.port {
                errors.extend(port_number(number, &format!("{path}.port")));
            }
            errors.extend(protocol(port.protocol.as_deref(), &format!("{path}.protocol")));
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        immutable(&self.address_type, &old.address_type, "addressType").into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------
// events.k8s.io Event
// ---------------------------------------------------------------------------------------

impl KindRules for Event {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let namespace = self.metadata.namespace.as_deref().unwrap_or("");
        let regarding = self.regarding.as_ref().and_then(|r| r.namespace.as_deref()).unwrap_or("");
        if regarding.is_empty() && !matches!(namespace, "default" | "kube-system") {
            errors.push(FieldError::invalid("regarding.namespace", regarding, "does not match event.namespace"));
        }
        if self.event_time.is_none() {
            errors.push(FieldError::required("eventTime", ""));
        }
        let kind = self.type_.as_deref().unwrap_or("");
        if !matches!(kind, "Normal" | "Warning") {
            errors.push(FieldError::invalid("type", "", &format!("has invalid value: {kind}")));
        }
        let controller = self.reporting_controller.as_deref().unwrap_or("");
        if controller.is_empty() {
            errors.push(FieldError::required("reportingController", ""));
        }
        errors.extend(invalid_each("reportingController", controller, validation::qualified_name(controller)));
        let limits = [
            ("reportingInstance", &self.reporting_instance, 128),
            ("action", &self.action, 128),
            ("reason", &self.reason, 128),
        ];
        for (field, value, limit) in limits {
            let value = value.as_deref().unwrap_or("");
            if value.is_empty() {
                errors.push(FieldError::required(field, ""));
            } else if value.len() > limit {
                errors.push(FieldError::invalid(field, "", &format!("can have at most {limit} characters")));
            }
        }
        if self.note.as_deref().is_some_and(|n| n.len() > 1024) {
            errors.push(FieldError::invalid("note", "", "can have at most 1024 characters"));
        }
        errors
    }
}

// ---------------------------------------------------------------------------------------
// PodDisruptionBudget
// ---------------------------------------------------------------------------------------

impl KindRules for PodDisruptionBudget {
    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    fn validate(&self) -> Vec<FieldError> {
        let Some(spec) = &self.spec else { return Vec::new() };
        let mut errors = Vec::new();
        if spec.min_available.is_some() && spec.max_unavailable.is_some() {
            errors.push(FieldError::invalid("spec", json(spec), "minAvailable and maxUnavailable cannot be both set"));
        }
        for (field, value) in [("minAvailable", &spec.min_available), ("maxUnavailable", &spec.max_unavailable)] {
            if let Some(value) = value {
                let path = format!("spec.{field}");
                errors.extend(positive_int_or_percent(value, &path));
                errors.extend(not_more_than_100_percent(value, &path));
            }
        }
        if let Some(selector) = &spec.selector {
            errors.extend(label_selector(selector, "spec.selector"));
        }
        errors.extend(optional_one_of(
            spec.unhealthy_pod_eviction_policy.as_deref(),
            &["AlwaysAllow", "IfHealthyBudget"],
            "spec.unhealthyPodEvictionPolicy",
        ));
        errors
    }
}

// ---------------------------------------------------------------------------------------
// HorizontalPodAutoscaler (autoscaling/v2)
// ---------------------------------------------------------------------------------------

impl KindRules for HorizontalPodAutoscaler {
    fn prepare_create(&mut self) {
        self.status = Some(Default::default());
    }

    /// As Kubernetes: at least one replica, and 80% CPU utilisation when no metric is given.
    fn default(&mut self) {
        let Some(spec) = &mut self.spec else { return };
        default_nonzero(&mut spec.min_replicas, 1);
        if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
            spec.metrics = Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(80),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let Some(spec) = &self.spec else { return vec![FieldError::required("spec", "")] };
        let mut errors = Vec::new();
        let target = &spec.scale_target_ref;
        if target.kind.is_empty() {
            errors.push(FieldError::required("spec.scaleTargetRef.kind", ""));
        }
        if target.name.is_empty() {
            errors.push(FieldError::required("spec.scaleTargetRef.name", ""));
        }
        let min = spec.min_replicas.unwrap_or(1);
        if min < 1 {
            errors.push(FieldError::invalid("spec.minReplicas", min, "must be greater than or equal to 1"));
        }
        if spec.max_replicas < 1 {
            errors.push(FieldError::invalid("spec.maxReplicas", spec.max_replicas, "must be greater than 0"));
        } else if spec.max_replicas < min {
            errors.push(FieldError::invalid(
                "spec.maxReplicas",
                spec.max_replicas,
                "must be greater than or equal to `minReplicas`",
            ));
        }
        for (i, metric) in spec.metrics.iter().flatten().enumerate() {
            errors.extend(one_of(
                Some(metric.type_.as_str()),
                &["ContainerResource", "External", "Object", "Pods", "Resource"],
                &format!("spec.metrics[{i}].type"),
            ));
        }
        errors
    }
}

// ---------------------------------------------------------------------------------------
// PriorityClass
// ---------------------------------------------------------------------------------------

/// The most a user-defined class may be worth; above it are the system classes.
const HIGHEST_USER_PRIORITY: i32 = 1_000_000_000;
const SYSTEM_CLASSES: [(&str, i32); 2] =
    [("system-cluster-critical", 2_000_000_000), ("system-node-critical", 2_000_001_000)];

impl KindRules for PriorityClass {
    fn default(&mut self) {
        default_str(&mut self.preemption_policy, "PreemptLowerPriority");
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let name = self.metadata.name.as_deref().unwrap_or("");
        if name.starts_with("system-") {
            let problem = match SYSTEM_CLASSES.iter().find(|(known, _)| *known == name) {
                None => Some(format!("{name} is not a known system priority class")),
                Some((_, value)) if *value != self.value => {
                    Some(format!("value of {name} PriorityClass must be {value}"))
                }
                Some(_) if self.global_default == Some(true) => {
                    Some(format!("globalDefault of {name} PriorityClass must be false"))
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                errors.push(FieldError::forbidden(
                    "metadata.name",
                    &format!(
                        "priority class names with 'system-' prefix are reserved for system use only. error: {problem}"
                    ),
                ));
            }
        } else if self.value > HIGHEST_USER_PRIORITY {
            errors.push(FieldError::forbidden(
                "value",
                &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
            ));
        }
        errors.extend(optional_one_of(
            self.preemption_policy.as_deref(),
            &["PreemptLowerPriority", "Never"],
            "preemptionPolicy",
        ));
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.value != old.value {
            errors.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
        errors.extend(immutable(&self.preemption_policy, &old.preemption_policy, "preemptionPolicy"));
        errors
    }
}

// ---------------------------------------------------------------------------------------
// StorageClass
// ---------------------------------------------------------------------------------------

impl KindRules for StorageClass {
    fn default(&mut self) {
        default_str(&mut self.reclaim_policy, "Delete");
        default_str(&mut self.volume_binding_mode, "Immediate");
    }

    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.provisioner.is_empty() {
            errors.push(FieldError::required("provisioner", ""));
        } else {
            let lower = self.provisioner.to_lowercase();
            errors.extend(invalid_each("provisioner", &self.provisioner, validation::qualified_name(&lower)));
        }
        errors.extend(optional_one_of(self.reclaim_policy.as_deref(), &["Delete", "Retain"], "reclaimPolicy"));
        errors.extend(optional_one_of(
            self.volume_binding_mode.as_deref(),
            &["Immediate", "WaitForFirstConsumer"],
            "volumeBindingMode",
        ));
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if !same(&self.parameters, &old.parameters) {
            errors.push(FieldError::forbidden("parameters", "updates to parameters are forbidden."));
        }
        if self.provisioner != old.provisioner {
            errors.push(FieldError::forbidden("provisioner", "updates to provisioner are forbidden."));
        }
        if self.reclaim_policy != old.reclaim_policy {
            errors.push(FieldError::forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."));
        }
        errors.extend(immutable(&self.volume_binding_mode, &old.volume_binding_mode, "volumeBindingMode"));
        errors
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{from, messages};

    #[test]
    fn lease_rules() {
        let lease: Lease = from(
            json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "a"}}),
        );
        assert_eq!(
            messages(&lease.validate()),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
                "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
            ]
        );
        let ok: Lease =
            from(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}));
        assert!(ok.validate().is_empty());
    }

    #[test]
    fn endpoint_slice_rules() {
        let mut slice: EndpointSlice = from(json!({"metadata": {"name": "s"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1", "fe80::1"]}, {"addresses": []}], "ports": [{"port": 80}]}));
        slice.default();
        let port = &slice.ports.as_ref().unwrap()[0];
        assert_eq!((port.name.as_deref(), port.protocol.as_deref()), (Some(""), Some("TCP")));
        assert_eq!(
            messages(&slice.validate()),
            vec![
                r#"endpoints[0].addresses[1]: Invalid value: "fe80::1": must be a valid IPv4 address"#,
                "endpoints[1].addresses: Required value: must contain at least 1 address",
            ]
        );
        let mut changed = slice.clone();
        changed.address_type = "IPv6".into();
        assert_eq!(
            messages(&changed.validate_update(&slice)),
            vec![r#"addressType: Invalid value: "IPv6": field is immutable"#]
        );
    }

    #[test]
    fn events_v1_rules() {
        let event: Event = from(json!({"metadata": {"name": "e", "namespace": "default"}, "type": "Odd"}));
        assert_eq!(
            messages(&event.validate()),
            vec![
                "eventTime: Required value",
                r#"type: Invalid value: "": has invalid value: Odd"#,
                "reportingController: Required value",
                r#"reportingController: Invalid value: "": name part must be non-empty"#,
                r#"reportingController: Invalid value: "": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#,
                "reportingInstance: Required value",
                "action: Required value",
                "reason: Required value",
            ]
        );
    }

    #[test]
    fn disruption_budget_rules() {
        let mut pdb: PodDisruptionBudget = from(
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "120%", "maxUnavailable": 1, "unhealthyPodEvictionPolicy": "Never"}}),
        );
        let errors = messages(&pdb.validate());
        assert!(errors[0].starts_with("spec: Invalid value: {"));
        assert!(errors[0].ends_with("minAvailable and maxUnavailable cannot be both set"));
        assert_eq!(
            errors[1..].to_vec(),
            vec![
                r#"spec.minAvailable: Invalid value: "120%": must not be greater than 100%"#,
                r#"spec.unhealthyPodEvictionPolicy: Unsupported value: "Never": supported values: "AlwaysAllow", "IfHealthyBudget""#,
            ]
        );
        pdb.prepare_create();
        assert_eq!(pdb.status, Some(Default::default()));
    }

    #[test]
    fn priority_class_rules() {
        let mut class: PriorityClass = from(json!({"metadata": {"name": "high"}, "value": 1000}));
        class.default();
        assert_eq!(class.preemption_policy.as_deref(), Some("PreemptLowerPriority"));
        assert!(class.validate().is_empty());
        let system: PriorityClass = from(json!({"metadata": {"name": "system-mine"}, "value": 5}));
        assert_eq!(
            messages(&system.validate()),
            vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]
        );
        let huge: PriorityClass = from(json!({"metadata": {"name": "huge"}, "value": 1_000_000_001}));
        assert_eq!(
            messages(&huge.validate()),
            vec!["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        let mut changed = class.clone();
        changed.value = 2000;
        assert_eq!(
            messages(&changed.validate_update(&class)),
            vec!["value: Forbidden: may not be changed in an update."]
        );
    }

    #[test]
    fn storage_class_rules() {
        let mut class: StorageClass = from(json!({"metadata": {"name": "fast"}, "provisioner": "example.com/disk"}));
        class.default();
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(class.volume_binding_mode.as_deref(), Some("Immediate"));
        assert!(class.validate().is_empty());
        let mut changed = class.clone();
        changed.provisioner = "other.com/disk".into();
        changed.volume_binding_mode = Some("WaitForFirstConsumer".into());
        assert_eq!(
            messages(&changed.validate_update(&class)),
            vec![
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                r#"volumeBindingMode: Invalid value: "WaitForFirstConsumer": field is immutable"#,
            ]
        );
        let missing: StorageClass = from(json!({"metadata": {"name": "x"}}));
        assert_eq!(messages(&missing.validate()), vec!["provisioner: Required value"]);
    }
}
