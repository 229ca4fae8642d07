//! Services: defaults, the IP-family fields, validation and the update rules around
//! allocated values (cluster IPs and node ports the client may leave out).
//!
//! Allocating cluster IPs and node ports needs the cluster's state and is the server's
//! job; this module keeps what a client omitted on update and checks what it sent.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{ClientIPConfig, Service, ServiceSpec, ServiceStatus, SessionAffinityConfig};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

use super::{
    default_str, invalid_each, ip_errors, json, map_json, one_of, optional_one_of, port_number, port_number_or_name,
    protocol,
};
use crate::error::FieldError;
use crate::strategy::{KindRules, SelectableField};
use crate::validation;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
const IP_FAMILIES: &[&str] = &["IPv4", "IPv6"];
const IP_FAMILY_POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
const NODE_PORTS: std::ops::RangeInclusive<i32> = 30000..=32767;
/// How long ClientIP affinity lasts unless the service says (3 hours).
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;
const NONE: &str = "None";

fn service_type(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("")
}

/// Types that get a cluster IP (or "None"): all but ExternalName.
fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    service_type(spec) != "ExternalName"
}

fn needs_node_port(spec: &ServiceSpec) -> bool {
    matches!(service_type(spec), "NodePort" | "LoadBalancer")
}

/// NodePort and LoadBalancer services, and ClusterIP ones with external IPs.
fn externally_accessible(spec: &ServiceSpec) -> bool {
    needs_node_port(spec)
        || service_type(spec) == "ClusterIP" && spec.external_ips.as_ref().is_some_and(|ips| !ips.is_empty())
}

fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some(NONE) || spec.cluster_ips.as_deref().is_some_and(|ips| ips == [NONE])
}

fn cluster_ips(spec: &ServiceSpec) -> &[String] {
    spec.cluster_ips.as_deref().unwrap_or_default()
}

impl KindRules for Service {
    fn default(&mut self) {
        let spec = self.spec.get_or_insert_with(ServiceSpec::default);
        default_str(&mut spec.session_affinity, "None");
        match spec.session_affinity.as_deref() {
            Some("None") => spec.session_affinity_config = None,
            Some("ClientIP") => {
                let config = spec.session_affinity_config.get_or_insert_with(SessionAffinityConfig::default);
                let client_ip = config.client_ip.get_or_insert_with(ClientIPConfig::default);
                client_ip.timeout_seconds.get_or_insert(DEFAULT_AFFINITY_SECONDS);
            }
            _ => {}
        }
        default_str(&mut spec.type_, "ClusterIP");
        for port in spec.ports.iter_mut().flatten() {
            default_str(&mut port.protocol, "TCP");
            let unset = match &port.target_port {
                None => true,
                Some(IntOrString::Int(number)) => *number == 0,
                Some(IntOrString::String(name)) => name.is_empty(),
            };
            if unset {
                port.target_port = Some(IntOrString::Int(port.port));
            }
        }
        if externally_accessible(spec) {
            default_str(&mut spec.external_traffic_policy, "Cluster");
        }
        if matches!(service_type(spec), "ClusterIP" | "NodePort" | "LoadBalancer") {
            spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
        }
        if service_type(spec) == "LoadBalancer" {
            spec.allocate_load_balancer_node_ports.get_or_insert(true);
            let ingresses =
                self.status.iter_mut().flat_map(|s| s.load_balancer.iter_mut()).flat_map(|l| l.ingress.iter_mut());
            for ingress in ingresses.flatten().filter(|i| i.ip.as_deref().is_some_and(|ip| !ip.is_empty())) {
                ingress.ip_mode.get_or_insert_with(|| "VIP".into());
            }
        }
        default_ip_families(spec);
    }

    fn prepare_create(&mut self) {
        self.status = Some(ServiceStatus { load_balancer: Some(Default::default()), ..Default::default() });
        let spec = self.spec.get_or_insert_with(ServiceSpec::default);
        // Clients that only know the singular field get the plural filled in.
        if let Some(ip) = spec.cluster_ip.clone().filter(|ip| !ip.is_empty()) {
            if cluster_ips(spec).is_empty() {
                spec.cluster_ips = Some(vec![ip]);
            }
        }
    }

    fn prepare_update(&mut self, old: &Self) {
        let empty = ServiceSpec::default();
        let old = old.spec.as_ref().unwrap_or(&empty);
        let new = self.spec.get_or_insert_with(ServiceSpec::default);
        keep_allocated_values(new, old);
        normalize_cluster_ips(new, old);
        drop_type_dependent_fields(new, old);
    }

    fn validate(&self) -> Vec<FieldError> {
        validate_spec(self.spec.as_ref().unwrap_or(&ServiceSpec::default()))
    }

    fn validate_update(&self, old: &Self) -> Vec<FieldError> {
        let empty = ServiceSpec::default();
        let new = self.spec.as_ref().unwrap_or(&empty);
        let old = old.spec.as_ref().unwrap_or(&empty);
        let mut errors = cluster_ip_update(new, old);
        if service_type(new) == "LoadBalancer"
            && service_type(old) == "LoadBalancer"
            && new.load_balancer_class != old.load_balancer_class
        {
            errors.push(FieldError::invalid(
                "spec.loadBalancerClass",
                json(&new.load_balancer_class),
                "may not change once set",
            ));
        }
        errors
    }

    const FIELDS: &'static [SelectableField] =
        &[SelectableField::text("spec.clusterIP"), SelectableField::text("spec.type")];
}

/// The IP family fields for a single-stack IPv4 cluster: single-stack IPv4, except that
/// a headless service without a selector asks for both families (Kubernetes allows
/// that even where only one is configured).
fn default_ip_families(spec: &mut ServiceSpec) {
    if !needs_cluster_ip(spec) {
        return;
    }
    let headless_selectorless = is_headless(spec) && spec.selector.as_ref().is_none_or(BTreeMap::is_empty);
    let policy = if headless_selectorless { "RequireDualStack" } else { "SingleStack" };
    default_str(&mut spec.ip_family_policy, policy);
    let families = spec.ip_families.get_or_insert_with(Vec::new);
    if families.is_empty() {
        // Families follow the cluster IPs the client chose, else the cluster's default.
        let chosen = spec.cluster_ips.iter().flatten().filter(|ip| ip.as_str() != NONE);
        families.extend(chosen.map(|ip| if ip.contains(':') { "IPv6" } else { "IPv4" }.to_string()));
        if families.is_empty() {
            families.push("IPv4".into());
        }
    }
    if headless_selectorless && spec.ip_family_policy.as_deref() != Some("SingleStack") && families.len() < 2 {
        let other = if families[0] == "IPv6" { "IPv4" } else { "IPv6" };
        families.push(other.into());
    }
}

/// What the client left out on update keeps its allocated value (Kubernetes'
/// `patchAllocatedValues`): cluster IPs, node ports (matched by port name), the health
/// check node port.
fn keep_allocated_values(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if new.cluster_ip.as_deref().is_none_or(str::is_empty) {
            new.cluster_ip.clone_from(&old.cluster_ip);
        }
        if cluster_ips(new).is_empty() && !cluster_ips(old).is_empty() {
            new.cluster_ips.clone_from(&old.cluster_ips);
        }
    }
    if needs_node_port(old) && needs_node_port(new) {
        let used = |spec: &ServiceSpec| -> HashSet<i32> {
            spec.ports.iter().flatten().filter_map(|p| p.node_port).filter(|&p| p != 0).collect()
        };
        let taken: HashSet<i32> = used(old).intersection(&used(new)).copied().collect();
        let by_name: BTreeMap<&str, i32> =
            old.ports.iter().flatten().filter_map(|p| Some((p.name.as_deref().unwrap_or(""), p.node_port?))).collect();
        for port in new.ports.iter_mut().flatten().filter(|p| p.node_port.is_none_or(|n| n == 0)) {
            if let Some(&node_port) = by_name.get(port.name.as_deref().unwrap_or("")) {
                if !taken.contains(&node_port) {
                    port.node_port = Some(node_port);
                }
            }
        }
    }
    if service_type(new) == "LoadBalancer" && new.health_check_node_port.is_none_or(|p| p == 0) {
        new.health_check_node_port = old.health_check_node_port;
    }
}

/// Keeps `clusterIP` and `clusterIPs` in step when a client sets only one of them.
fn normalize_cluster_ips(new: &mut ServiceSpec, old: &ServiceSpec) {
    let new_ip = new.cluster_ip.clone().unwrap_or_default();
    let old_ip = old.cluster_ip.clone().unwrap_or_default();
    let plural_unchanged = cluster_ips(new) == cluster_ips(old);
    if !new_ip.is_empty() && cluster_ips(new).is_empty() {
        new.cluster_ips = Some(vec![new_ip]);
    } else if !old_ip.is_empty() && new_ip.is_empty() && plural_unchanged {
        new.cluster_ips = None;
    } else if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip && plural_unchanged {
        if let Some(first) = new.cluster_ips.as_mut().and_then(|ips| ips.first_mut()) {
            *first = new_ip;
        }
    }
}

/// Clears what a type change made meaningless, when the client left it as it was.
fn drop_type_dependent_fields(new: &mut ServiceSpec, old: &ServiceSpec) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if new.cluster_ip == old.cluster_ip && cluster_ips(new) == cluster_ips(old) {
            new.cluster_ip = None;
            new.cluster_ips = None;
        }
        if new.ip_families == old.ip_families {
            new.ip_families = None;
        }
        if new.ip_family_policy == old.ip_family_policy {
            new.ip_family_policy = None;
        }
    }
    let node_ports =
        |spec: &ServiceSpec| spec.ports.iter().flatten().map(|p| p.node_port.unwrap_or(0)).collect::<Vec<_>>();
    if needs_node_port(old) && !needs_node_port(new) && node_ports(new) == node_ports(old) {
        for port in new.ports.iter_mut().flatten() {
            port.node_port = None;
        }
    }
    if service_type(old) == "LoadBalancer" && service_type(new) != "LoadBalancer" {
        if new.health_check_node_port == old.health_check_node_port {
            new.health_check_node_port = None;
        }
        if new.allocate_load_balancer_node_ports.is_some()
            && new.allocate_load_balancer_node_ports == old.allocate_load_balancer_node_ports
        {
            new.allocate_load_balancer_node_ports = None;
        }
        if new.load_balancer_class == old.load_balancer_class {
            new.load_balancer_class = None;
        }
    }
    if externally_accessible(old)
        && !externally_accessible(new)
        && new.external_traffic_policy == old.external_traffic_policy
    {
        new.external_traffic_policy = None;
    }
}

fn validate_spec(spec: &ServiceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let kind = service_type(spec);
    errors.extend(one_of(Some(kind), TYPES, "spec.type"));
    let headless = is_headless(spec);
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && !headless && kind != "ExternalName" {
        errors.push(FieldError::required("spec.ports", ""));
    }
    if kind == "ExternalName" {
        for (field, set) in [
            ("spec.clusterIPs", !cluster_ips(spec).is_empty()),
            ("spec.ipFamilies", spec.ip_families.as_ref().is_some_and(|f| !f.is_empty())),
            ("spec.ipFamilyPolicy", spec.ip_family_policy.is_some()),
        ] {
            if set {
                errors.push(FieldError::forbidden(field, "may not be set for ExternalName services"));
            }
        }
        let name = spec.external_name.as_deref().unwrap_or("");
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            errors.push(FieldError::required("spec.externalName", ""));
        } else {
            errors.extend(invalid_each("spec.externalName", name, validation::dns1123_subdomain(name)));
        }
    }
    let mut names = HashSet::new();
    let mut pairs = HashSet::new();
    let mut node_ports = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errors.push(FieldError::required(format!("{path}.name"), "")),
            None => {}
            Some(name) => {
                errors.extend(invalid_each(&format!("{path}.name"), name, validation::dns1123_label(name)));
                if !names.insert(name) {
                    errors.push(FieldError::duplicate(format!("{path}.name"), name));
                }
            }
        }
        errors.extend(port_number(port.port, &format!("{path}.port")));
        errors.extend(protocol(port.protocol.as_deref(), &format!("{path}.protocol")));
        if let Some(target) = &port.target_port {
            errors.extend(port_number_or_name(target, &format!("{path}.targetPort")));
        }
        if let Some(app_protocol) = port.app_protocol.as_deref() {
            errors.extend(invalid_each(
                &format!("{path}.appProtocol"),
                app_protocol,
                validation::qualified_name(app_protocol),
            ));
        }
        let protocol = port.protocol.as_deref().unwrap_or("");
        if !pairs.insert((port.port, protocol)) {
            errors.push(FieldError::duplicate(&path, json!({"port": port.port, "protocol": protocol})));
        }
        if let Some(node_port) = port.node_port.filter(|&p| p != 0) {
            let field = format!("{path}.nodePort");
            if kind == "ClusterIP" {
                errors.push(FieldError::forbidden(&field, "may not be used when `type` is 'ClusterIP'"));
            } else if !NODE_PORTS.contains(&node_port) {
                errors.push(FieldError::invalid(
                    &field,
                    node_port,
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            }
            if !node_ports.insert((node_port, protocol)) {
                errors.push(FieldError::duplicate(&field, node_port));
            }
        }
    }
    errors.extend(validation::labels(&map_json(spec.selector.as_ref()), "spec.selector"));
    errors.extend(one_of(spec.session_affinity.as_deref(), &["ClientIP", "None"], "spec.sessionAffinity"));
    if headless && needs_node_port(spec) {
        errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            NONE,
            &format!("may not be set to 'None' for {kind} services"),
        ));
    }
    let traffic_policy = spec.external_traffic_policy.as_deref().filter(|p| !p.is_empty());
    match traffic_policy {
        Some(policy) if !externally_accessible(spec) => errors.push(FieldError::invalid(
            "spec.externalTrafficPolicy",
            policy,
            "may only be set for externally-accessible services",
        )),
        _ if externally_accessible(spec) => {
            errors.extend(one_of(traffic_policy, TRAFFIC_POLICIES, "spec.externalTrafficPolicy"));
        }
        _ => {}
    }
    match spec.internal_traffic_policy.as_deref() {
        None if matches!(kind, "ClusterIP" | "NodePort" | "LoadBalancer") => {
            errors.push(FieldError::required("spec.internalTrafficPolicy", ""));
        }
        policy => errors.extend(optional_one_of(policy, TRAFFIC_POLICIES, "spec.internalTrafficPolicy")),
    }
    if spec.load_balancer_class.is_some() && kind != "LoadBalancer" {
        errors.push(FieldError::forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"));
    }
    if needs_cluster_ip(spec) {
        errors.extend(cluster_ip_fields(spec));
    }
    errors
}

/// Kubernetes' `ValidateServiceClusterIPsRelatedFields`.
fn cluster_ip_fields(spec: &ServiceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let ips = cluster_ips(spec);
    let ips_json = json(ips);
    match spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
        Some(_) if ips.is_empty() => errors.push(FieldError::required("spec.clusterIPs", "")),
        Some(ip) if ips[0] != ip => {
            errors.push(FieldError::invalid("spec.clusterIPs", ips_json.clone(), "first value must match `clusterIP`"));
        }
        None if !ips.is_empty() => errors.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_json.clone(),
            "must be empty when `clusterIP` is not specified",
        )),
        _ => {}
    }
    let mut seen = HashSet::new();
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        if !IP_FAMILIES.contains(&family.as_str()) {
            errors.push(FieldError::not_supported(&field, family.as_str(), IP_FAMILIES));
        }
        if !seen.insert(family.as_str()) {
            errors.push(FieldError::duplicate(&field, family.as_str()));
        }
    }
    if let Some(policy) = spec.ip_family_policy.as_deref().filter(|p| !IP_FAMILY_POLICIES.contains(p)) {
        errors.push(FieldError::not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES));
    }
    let mut bad_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == NONE {
            if ips.len() > 1 {
                bad_ips = true;
                errors.push(FieldError::invalid(
                    "spec.clusterIPs",
                    ips_json.clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let messages = ip_errors(ip);
        bad_ips |= !messages.is_empty();
        errors.extend(invalid_each(&format!("spec.clusterIPs[{i}]"), ip, messages));
    }
    if ips.len() > 2 {
        errors.push(FieldError::invalid("spec.clusterIPs", ips_json.clone(), "may only hold up to 2 values"));
    }
    if bad_ips {
        return errors;
    }
    if ips.len() == 2 && ips[0].contains(':') == ips[1].contains(':') {
        errors.push(FieldError::invalid(
            "spec.clusterIPs",
            ips_json,
            "may specify no more than one IP for each IP family",
        ));
    }
    if !is_headless(spec) {
        for (i, (ip, family)) in ips.iter().zip(spec.ip_families.iter().flatten()).enumerate() {
            let expected = match (family.as_str(), ip.contains(':')) {
                ("IPv4", true) => "IPv4",
                ("IPv6", false) => "IPv6",
                _ => continue,
            };
            errors.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                ip.as_str(),
                &format!("expected an {expected} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
    errors
}

/// Cluster IPs are set once: a secondary one may be added or released, the primary
/// never changes (Kubernetes' `validateUpgradeDowngradeClusterIPs`).
fn cluster_ip_update(new: &ServiceSpec, old: &ServiceSpec) -> Vec<FieldError> {
    if !needs_cluster_ip(new) || !needs_cluster_ip(old) || (is_headless(new) && is_headless(old)) {
        return Vec::new();
    }
    let (new_ips, old_ips) = (cluster_ips(new), cluster_ips(old));
    let value = json(new_ips);
    let changed =
        |i: usize| FieldError::invalid(format!("spec.clusterIPs[{i}]"), value.clone(), "may not change once set");
    let mut errors = Vec::new();
    if new_ips.len() == old_ips.len() {
        errors.extend((0..old_ips.len()).filter(|&i| old_ips[i] != new_ips[i]).map(changed));
    } else if new_ips.is_empty() {
        errors.push(FieldError::invalid("spec.clusterIPs[0]", value.clone(), "primary clusterIP can not be unset"));
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errors.push(changed(0));
    }
    if new_ips.len() == 1 && old_ips.len() > 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
        errors.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            json(&new.ip_family_policy),
            "must be set to 'SingleStack' when releasing the secondary clusterIP",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::testing::messages;

    fn service(spec: serde_json::Value) -> Service {
        let mut service: Service =
            serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "d"}, "spec": spec})).unwrap();
        service.default();
        service
    }

    fn spec(service: &Service) -> &ServiceSpec {
        service.spec.as_ref().unwrap()
    }

    fn web() -> Service {
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}))
    }

    #[test]
    fn cluster_ip_defaults() {
        let svc = web();
        let spec = spec(&svc);
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.external_traffic_policy, None);
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(spec.ip_families, Some(vec!["IPv4".to_string()]));
        let port = &spec.ports.as_ref().unwrap()[0];
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        assert_eq!(port.target_port, Some(IntOrString::Int(80)));
        assert!(svc.validate().is_empty());
    }

    #[test]
    fn node_port_and_load_balancer_defaults() {
        let svc = service(
            json!({"type": "LoadBalancer", "ports": [{"port": 80, "targetPort": "http"}], "sessionAffinity": "ClientIP"}),
        );
        let spec = spec(&svc);
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.allocate_load_balancer_node_ports, Some(true));
        assert_eq!(spec.ports.as_ref().unwrap()[0].target_port, Some(IntOrString::String("http".into())));
        let timeout = spec.session_affinity_config.as_ref().unwrap().client_ip.as_ref().unwrap().timeout_seconds;
        assert_eq!(timeout, Some(10800));
        let node_port = service(json!({"type": "NodePort", "ports": [{"port": 80}]}));
        assert_eq!(node_port.spec.unwrap().external_traffic_policy.as_deref(), Some("Cluster"));
    }

    #[test]
    fn headless_and_external_name_families() {
        let headless = service(json!({"clusterIP": "None"}));
        assert_eq!(spec(&headless).ip_family_policy.as_deref(), Some("RequireDualStack"));
        assert_eq!(spec(&headless).ip_families, Some(vec!["IPv4".to_string(), "IPv6".to_string()]));
        let selected = service(json!({"clusterIP": "None", "selector": {"a": "b"}}));
        assert_eq!(spec(&selected).ip_family_policy.as_deref(), Some("SingleStack"));
        assert_eq!(spec(&selected).ip_families, Some(vec!["IPv4".to_string()]));
        let external = service(json!({"type": "ExternalName", "externalName": "example.com."}));
        assert_eq!(spec(&external).ip_family_policy, None);
        assert_eq!(spec(&external).ip_families, None);
        assert_eq!(spec(&external).internal_traffic_policy, None);
        assert!(external.validate().is_empty());
        let mut created = headless.clone();
        created.prepare_create();
        assert!(created.validate().is_empty());
    }

    #[test]
    fn create_fills_cluster_ips_and_resets_status() {
        let mut svc = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}));
        svc.status = Some(ServiceStatus { conditions: Some(vec![]), ..Default::default() });
        svc.prepare_create();
        assert_eq!(spec(&svc).cluster_ips, Some(vec!["10.96.0.10".to_string()]));
        assert_eq!(svc.status, Some(ServiceStatus { load_balancer: Some(Default::default()), ..Default::default() }));
        assert!(svc.validate().is_empty());
    }

    #[test]
    fn port_rules() {
        let svc = service(json!({"type": "NodePort", "ports": [
            {"port": 0, "name": "a"},
            {"port": 80, "protocol": "ICMP", "name": "b"},
            {"port": 81, "nodePort": 80, "name": "b"},
            {"port": 82},
        ]}));
        assert_eq!(
            messages(&svc.validate()),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
                r#"spec.ports[1].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP""#,
                r#"spec.ports[2].name: Duplicate value: "b""#,
                "spec.ports[2].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767",
                "spec.ports[3].name: Required value",
            ]
        );
    }

    #[test]
    fn ports_required_and_type_enum() {
        let svc = service(json!({"type": "Magic"}));
        assert_eq!(
            messages(&svc.validate()),
            vec![
                r#"spec.type: Unsupported value: "Magic": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort""#,
                "spec.ports: Required value",
            ]
        );
        let cluster_ip_node_port = service(json!({"ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(
            messages(&cluster_ip_node_port.validate()),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
        );
        let bad_selector = service(json!({"ports": [{"port": 80}], "selector": {"app": "-x-"}}));
        assert_eq!(bad_selector.validate().len(), 1);
        let no_name = service(json!({"type": "ExternalName"}));
        assert_eq!(messages(&no_name.validate()), vec!["spec.externalName: Required value"]);
    }

    #[test]
    fn cluster_ip_may_not_change() {
        let mut old = service(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
        old.prepare_create();
        let mut new = service(json!({"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}));
        new.prepare_update(&old);
        assert_eq!(
            messages(&new.validate_update(&old)),
            vec![r#"spec.clusterIPs[0]: Invalid value: ["10.96.0.11"]: may not change once set"#]
        );
    }

    #[test]
    fn update_keeps_allocated_values() {
        let mut old = service(
            json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "name": "http", "nodePort": 30080}]}),
        );
        old.prepare_create();
        let mut new = service(json!({"type": "NodePort", "ports": [{"port": 80, "name": "http"}]}));
        new.prepare_update(&old);
        let spec = spec(&new);
        assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
        assert_eq!(spec.cluster_ips, Some(vec!["10.96.0.10".to_string()]));
        assert_eq!(spec.ports.as_ref().unwrap()[0].node_port, Some(30080));
        assert!(new.validate().is_empty());
        assert!(new.validate_update(&old).is_empty());
    }

    #[test]
    fn type_change_drops_dependent_fields() {
        let mut old =
            service(json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30080}]}));
        old.prepare_create();
        let mut to_cluster_ip = old.clone();
        to_cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        to_cluster_ip.default();
        to_cluster_ip.prepare_update(&old);
        let cluster_ip_spec = spec(&to_cluster_ip);
        assert_eq!(cluster_ip_spec.ports.as_ref().unwrap()[0].node_port, None);
        assert_eq!(cluster_ip_spec.external_traffic_policy, None);
        assert!(to_cluster_ip.validate().is_empty());

        let mut to_external = old.clone();
        let changes = to_external.spec.as_mut().unwrap();
        changes.type_ = Some("ExternalName".into());
        changes.external_name = Some("db.example.com".into());
        to_external.default();
        to_external.prepare_update(&old);
        let external_spec = spec(&to_external);
        assert_eq!((external_spec.cluster_ip.as_ref(), external_spec.cluster_ips.as_ref()), (None, None));
        assert_eq!((external_spec.ip_families.as_ref(), external_spec.ip_family_policy.as_ref()), (None, None));
        assert!(to_external.validate().is_empty());
        assert!(to_external.validate_update(&old).is_empty());
    }

    #[test]
    fn cluster_ip_field_rules() {
        let mut svc = service(json!({"clusterIP": "300.1.1.1", "ports": [{"port": 80}]}));
        svc.prepare_create();
        assert_eq!(
            messages(&svc.validate()),
            vec![
                r#"spec.clusterIPs[0]: Invalid value: "300.1.1.1": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#
            ]
        );
        let headless_lb = service(json!({"type": "LoadBalancer", "clusterIP": "None", "ports": [{"port": 80}]}));
        assert!(messages(&headless_lb.validate()).contains(
            &r#"spec.clusterIPs[0]: Invalid value: "None": may not be set to 'None' for LoadBalancer services"#
                .to_string()
        ));
        let policy = service(json!({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"}));
        assert_eq!(
            messages(&policy.validate()),
            vec![
                r#"spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services"#
            ]
        );
    }

    #[test]
    fn selectable_fields() {
        let mut svc = service(json!({"clusterIP": "10.96.0.1", "ports": [{"port": 443}]}));
        svc.prepare_create();
        assert_eq!(
            crate::strategy::fields_of(&svc),
            vec![("spec.clusterIP", "10.96.0.1".to_string()), ("spec.type", "ClusterIP".to_string())]
        );
    }
}
