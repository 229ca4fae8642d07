//! The `networking.k8s.io` group: Ingresses, IngressClasses and NetworkPolicies.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, Ingress, IngressBackend, IngressClass, IngressRule, IngressSpec, IngressStatus, NetworkPolicy,
    NetworkPolicyPort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{default_str, immutable, invalid_each, json, label_selector, port_name_errors, port_number};
use crate::error::FieldError;
use crate::strategy::KindRules;
use crate::validation;

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

// ---------------------------------------------------------------------------------------
// Ingress
// ---------------------------------------------------------------------------------------

impl KindRules for Ingress {
    fn prepare_create(&mut self) {
        self.status = Some(IngressStatus { load_balancer: Some(Default::default()) });
    }

    fn validate(&self) -> Vec<FieldError> {
        let empty = IngressSpec::default();
        let spec = self.spec.as_ref().unwrap_or(&empty);
        let rules = spec.rules.as_deref().unwrap_or_default();
        let mut errors = Vec::new();
        if rules.is_empty() && spec.default_backend.is_none() {
            errors.push(FieldError::invalid(
                "spec",
                json(&spec.rules),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(backend) = &spec.default_backend {
            errors.extend(validate_backend(backend, "spec.defaultBackend"));
        }
        for (i, rule) in rules.iter().enumerate() {
            errors.extend(validate_rule(rule, &format!("spec.rules[{i}]")));
        }
        if let Some(class) = &spec.ingress_class_name {
            errors.extend(invalid_each("spec.ingressClassName", class, validation::dns1123_subdomain(class)));
        }
        errors
    }
}

fn validate_rule(rule: &IngressRule, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
        let host_path = format!("{path}.host");
        if host.parse::<std::net::IpAddr>().is_ok() {
            errors.push(FieldError::invalid(&host_path, host, "must be a DNS name, not an IP address"));
        }
        let messages =
            if host.contains('*') { wildcard_subdomain_errors(host) } else { validation::dns1123_subdomain(host) };
        errors.extend(invalid_each(&host_path, host, messages));
    }
    if let Some(http) = &rule.http {
        let path = format!("{path}.http");
        if http.paths.is_empty() {
            errors.push(FieldError::required(format!("{path}.paths"), ""));
        }
        for (i, http_path) in http.paths.iter().enumerate() {
            errors.extend(validate_http_path(http_path, &format!("{path}.paths[{i}]")));
        }
    }
    errors
}

/// `*.example.com`: a wildcard then a DNS subdomain.
fn wildcard_subdomain_errors(host: &str) -> Vec<String> {
    let valid = host.strip_prefix("*.").is_some_and(|rest| validation::dns1123_subdomain(rest).is_empty());
    let mut errors = Vec::new();
    if host.len() > 253 {
        errors.push(validation::max_len_error(253));
    }
    if !valid {
        errors.push(validation::regex_error(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character",
            r"\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            &["*.example.com"],
        ));
    }
    errors
}

fn validate_http_path(http_path: &HTTPIngressPath, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let value = http_path.path.as_deref().unwrap_or("");
    let path_field = format!("{path}.path");
    match http_path.path_type.as_str() {
        "" => return vec![FieldError::required(format!("{path}.pathType"), "pathType must be specified")],
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errors.push(FieldError::invalid(&path_field, value, "must be an absolute path"));
            }
            for sequence in INVALID_PATH_SEQUENCES.iter().filter(|s| value.contains(*s)) {
                errors.push(FieldError::invalid(&path_field, value, &format!("must not contain '{sequence}'")));
            }
            for suffix in INVALID_PATH_SUFFIXES.iter().filter(|s| value.ends_with(*s)) {
                errors.push(FieldError::invalid(&path_field, value, &format!("cannot end with '{suffix}'")));
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errors.push(FieldError::invalid(&path_field, value, "must be an absolute path"));
            }
        }
        other => errors.push(FieldError::not_supported(format!("{path}.pathType"), other, PATH_TYPES)),
    }
    errors.extend(validate_backend(&http_path.backend, &format!("{path}.backend")));
    errors
}

fn validate_backend(backend: &IngressBackend, path: &str) -> Vec<FieldError> {
    let service = match (&backend.resource, &backend.service) {
        (Some(_), Some(_)) => {
            return vec![FieldError::invalid(path, "", "cannot set both resource and service backends")]
        }
        (Some(resource), None) => {
            let mut errors = Vec::new();
            for (field, value) in [("kind", &resource.kind), ("name", &resource.name)] {
                if value.is_empty() {
                    errors.push(FieldError::required(format!("{path}.resource.{field}"), ""));
                }
            }
            return errors;
        }
        (None, Some(service)) => service,
        (None, None) => return vec![FieldError::invalid(path, "", "resource or service backend is required")],
    };
    let mut errors = Vec::new();
    let name_path = format!("{path}.service.name");
    if service.name.is_empty() {
        errors.push(FieldError::required(name_path, ""));
    } else {
        errors.extend(invalid_each(&name_path, &service.name, validation::dns1035_label(&service.name)));
    }
    let port = service.port.clone().unwrap_or_default();
    let name = port.name.as_deref().unwrap_or("");
    let number = port.number.unwrap_or(0);
    match (name.is_empty(), number == 0) {
        (false, false) => errors.push(FieldError::invalid(path, "", "cannot set both port name & port number")),
        (false, true) => {
            errors.extend(invalid_each(&format!("{path}.service.port.name"), name, port_name_errors(name)))
        }
        (true, false) => errors.extend(port_number(number, &format!("{path}.service.port.number"))),
        (true, true) => errors.push(FieldError::required(path, "port name or number is required")),
    }
    errors
}

// ---------------------------------------------------------------------------------------
// IngressClass
// ---------------------------------------------------------------------------------------

impl KindRules for IngressClass {
    fn default(&mut self) {
        if let Some(parameters) = self.spec.as_mut().and_then(|s| s.parameters.as_mut()) {
            default_str(&mut parameters.scope, "Cluster");
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let controller = self.spec.as_ref().and_then(|s| s.controller.as_deref()).unwrap_or("");
        let mut errors = Vec::new();
        if controller.len() > 250 {
            errors.push(FieldError::too_long("spec.controller", 250));
        }
        // A domain-prefixed path: `example.com/ingress-controller`.
        let domain_prefixed = controller
            .split_once('/')
            .is_some_and(|(domain, path)| validation::dns1123_subdomain(domain).is_empty() && !path.is_empty());
        if !domain_prefixed {
            errors.push(FieldError::invalid(
                "spec.controller",
                controller,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            ));
        }
        if let Some(parameters) = self.spec.as_ref().and_then(|s| s.parameters.as_ref()) {
            let scope = parameters.scope.as_deref().unwrap_or("");
            let namespace = parameters.namespace.as_deref().unwrap_or("");
            match scope {
                "Namespace" if namespace.is_empty() => errors.push(FieldError::required(
                    "spec.parameters.namespace",
                    "`parameters.scope` is set to 'Namespace'",
                )),
                "Cluster" if !namespace.is_empty() => errors
                    .push(FieldError::forbidden("spec.parameters.namespace", "`parameters.scope` is set to 'Cluster'")),
                "Namespace" | "Cluster" => {}
                other => {
                    errors.push(FieldError::not_supported("spec.parameters.scope", other, &["Cluster", "Namespace"]))
                }
            }
        }
        errors
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let controller = |class: &Self| class.spec.as_ref().and_then(|s| s.controller.clone());
        immutable(&controller(self), &controller(old), "spec.controller").into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------
// NetworkPolicy
// ---------------------------------------------------------------------------------------

impl KindRules for NetworkPolicy {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(Default::default);
        let ingress_ports = spec.ingress.iter_mut().flatten().flat_map(|r| r.ports.iter_mut().flatten());
        let egress_ports = spec.egress.iter_mut().flatten().flat_map(|r| r.ports.iter_mut().flatten());
        for port in ingress_ports.chain(egress_ports) {
            default_str(&mut port.protocol, "TCP");
        }
        if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
            // A policy without types is about ingress, and egress too if it has rules for it.
            let mut types = vec!["Ingress".to_string()];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                types.push("Egress".into());
            }
            spec.policy_types = Some(types);
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        let spec = self.spec.clone().unwrap_or_default();
        let mut errors = spec.pod_selector.as_ref().map(|s| label_selector(s, "spec.podSelector")).unwrap_or_default();
        for (direction, rules) in [
            ("ingress", spec.ingress.iter().flatten().map(|r| r.ports.as_deref()).collect::<Vec<_>>()),
            ("egress", spec.egress.iter().flatten().map(|r| r.ports.as_deref()).collect::<Vec<_>>()),
        ] {
            for (i, ports) in rules.into_iter().enumerate() {
                for (j, port) in ports.unwrap_or_default().iter().enumerate() {
                    errors.extend(validate_policy_port(port, &format!("spec.{direction}[{i}].ports[{j}]")));
                }
            }
        }
        let types = spec.policy_types.unwrap_or_default();
        for (i, kind) in types.iter().enumerate() {
            if !matches!(kind.as_str(), "Ingress" | "Egress") {
                errors.push(FieldError::not_supported(
                    format!("spec.policyTypes[{i}]"),
                    kind.as_str(),
                    &["Ingress", "Egress"],
                ));
            }
        }
        if types.len() > 2 {
            errors.push(FieldError::invalid(
                "spec.policyTypes",
                json(&types),
                "may not specify more than two policyTypes",
            ));
        }
        errors
    }
}

fn validate_policy_port(port: &NetworkPolicyPort, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if let Some(protocol) = port.protocol.as_deref().filter(|p| !matches!(*p, "TCP" | "UDP" | "SCTP")) {
        errors.push(FieldError::not_supported(format!("{path}.protocol"), protocol, &["TCP", "UDP", "SCTP"]));
    }
    let end_path = format!("{path}.endPort");
    match (&port.port, port.end_port) {
        (Some(IntOrString::Int(number)), end) => {
            errors.extend(port_number(*number, &format!("{path}.port")));
            if let Some(end) = end {
                if end < *number {
                    errors.push(FieldError::invalid(&end_path, *number, "must be greater than or equal to `port`"));
                }
                errors.extend(port_number(end, &end_path));
            }
        }
        (Some(IntOrString::String(name)), end) => {
            if let Some(end) = end {
                errors.push(FieldError::invalid(&end_path, end, "may not be specified when `port` is non-numeric"));
            }
            errors.extend(invalid_each(&format!("{path}.port"), name, port_name_errors(name)));
        }
        (None, Some(end)) => {
            errors.push(FieldError::invalid(&end_path, end, "may not be specified when `port` is not specified"));
        }
        (None, None) => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kinds::testing::{from, messages};

    #[test]
    fn ingress_rules() {
        let mut ingress: Ingress =
            from(json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            ]}}]}}));
        assert!(ingress.validate().is_empty());
        ingress.prepare_create();
        assert_eq!(ingress.status.unwrap().load_balancer, Some(Default::default()));

        let bad: Ingress =
            from(json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "10.0.0.1", "http": {"paths": [
                {"path": "api", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                {"path": "api", "pathType": "Exact", "backend": {"service": {"name": "web"}}},
                {"path": "/a", "pathType": "Regex", "backend": {}},
            ]}}]}}));
        assert_eq!(
            messages(&bad.validate()),
            vec![
                r#"spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address"#,
                "spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified",
                r#"spec.rules[0].http.paths[1].path: Invalid value: "api": must be an absolute path"#,
                "spec.rules[0].http.paths[1].backend: Required value: port name or number is required",
                r#"spec.rules[0].http.paths[2].pathType: Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix""#,
                r#"spec.rules[0].http.paths[2].backend: Invalid value: "": resource or service backend is required"#,
            ]
        );
        let empty: Ingress = from(json!({"metadata": {"name": "i"}, "spec": {}}));
        assert_eq!(
            messages(&empty.validate()),
            vec!["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
        );
        let wildcard: Ingress = from(
            json!({"metadata": {"name": "i"}, "spec": {"rules": [{"host": "*.example.com"}, {"host": "a.*.com"}]}}),
        );
        assert_eq!(wildcard.validate().len(), 1);
    }

    #[test]
    fn ingress_class_rules() {
        let mut class: IngressClass = from(
            json!({"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx", "parameters": {"kind": "Config", "name": "c"}}}),
        );
        class.default();
        assert_eq!(class.spec.as_ref().unwrap().parameters.as_ref().unwrap().scope.as_deref(), Some("Cluster"));
        assert!(class.validate().is_empty());
        let bad: IngressClass = from(json!({"metadata": {"name": "x"}, "spec": {"controller": "nginx"}}));
        assert_eq!(
            messages(&bad.validate()),
            vec![r#"spec.controller: Invalid value: "nginx": must be a domain-prefixed path (such as "acme.io/foo")"#]
        );
        assert_eq!(
            messages(&bad.validate_update(&class)),
            vec![r#"spec.controller: Invalid value: "nginx": field is immutable"#]
        );
    }

    #[test]
    fn network_policy_defaults_and_rules() {
        let mut policy: NetworkPolicy = from(json!({"metadata": {"name": "p"}, "spec": {
            "podSelector": {},
            "ingress": [{"ports": [{"port": 80}]}],
            "egress": [{"ports": [{"port": "dns", "endPort": 60}]}],
        }}));
        policy.default();
        let spec = policy.spec.as_ref().unwrap();
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string(), "Egress".to_string()]));
        assert_eq!(spec.ingress.as_ref().unwrap()[0].ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
        assert_eq!(
            messages(&policy.validate()),
            vec!["spec.egress[0].ports[0].endPort: Invalid value: 60: may not be specified when `port` is non-numeric"]
        );
        let mut ingress_only: NetworkPolicy = from(json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}}}));
        ingress_only.default();
        assert_eq!(ingress_only.spec.unwrap().policy_types, Some(vec!["Ingress".to_string()]));
    }
}
