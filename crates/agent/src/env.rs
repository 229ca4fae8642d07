//! A container's environment as the kubelet builds it: `envFrom` sources first (with
//! their prefix), then `env` in order (literal values with `$(VAR)` expansion, or
//! `valueFrom` a ConfigMap key, Secret key, pod field or resource), then the service-link
//! variables of the namespace's Services that no declared variable overrides. Command and
//! args are expanded against the result.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, Pod, Service};

use crate::downward::{self, PodFacts};
use crate::sources::Sources;

/// Why a container's configuration cannot be made: the kubelet's
/// `CreateContainerConfigError`, with its message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Expands `$(NAME)` references in `input` as Kubernetes does: `$$` is a literal `$`,
/// a reference to an unknown name (or an unterminated one) is left as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match after.as_bytes().first() {
            Some(b'$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some(b'(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            // A `$` before anything else stays, with the character after it.
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether `name` is a valid environment variable name (C identifiers, dots and dashes,
/// not starting with a digit), as `IsEnvVarName` checks for envFrom keys.
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The docker-link style variables of Services: `NAME_SERVICE_HOST`, `NAME_SERVICE_PORT`,
/// `NAME_SERVICE_PORT_<PORTNAME>`, `NAME_PORT`, `NAME_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`.
pub fn service_links(services: &[Service]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let prefix = service.metadata.name.as_deref().unwrap_or_default().to_uppercase().replace('-', "_");
        let ports = spec.ports.as_deref().unwrap_or_default();
        env.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
        let Some(first) = ports.first() else { continue };
        env.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        let url_ip = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{ip}]"),
            _ => ip.to_string(),
        };
        for port in ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                env.insert(
                    format!("{prefix}_SERVICE_PORT_{}", name.to_uppercase().replace('-', "_")),
                    port.port.to_string(),
                );
            }
        }
        let protocol = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.clone().unwrap_or_else(|| "TCP".into());
        env.insert(format!("{prefix}_PORT"), format!("{}://{url_ip}:{}", protocol(first).to_lowercase(), first.port));
        for port in ports {
            let proto = protocol(port);
            let base = format!("{prefix}_PORT_{}_{}", port.port, proto.to_uppercase());
            env.insert(base.clone(), format!("{}://{url_ip}:{}", proto.to_lowercase(), port.port));
            env.insert(format!("{base}_PROTO"), proto.to_lowercase());
            env.insert(format!("{base}_PORT"), port.port.to_string());
            env.insert(format!("{base}_ADDR"), ip.to_string());
        }
    }
    env
}

/// The environment of `container`, in the order the kubelet passes it: envFrom and env
/// variables in declaration order, then service links not overridden.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    sources: &Sources,
    facts: &PodFacts,
) -> Result<Vec<(String, String)>, ConfigError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    // Declaration order, first appearance wins the position, last value wins.
    fn set(names: &mut Vec<String>, values: &mut BTreeMap<String, String>, name: String, value: String) {
        if values.insert(name.clone(), value).is_none() {
            names.push(name);
        }
    }
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let data: Vec<(String, String)> = if let Some(reference) = &from.config_map_ref {
            match sources.config_maps.get(&reference.name).and_then(Option::as_ref) {
                Some(cm) => cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect(),
                None if reference.optional == Some(true) => continue,
                None => return Err(ConfigError(format!("configmap \"{}\" not found", reference.name))),
            }
        } else if let Some(reference) = &from.secret_ref {
            match sources.secrets.get(&reference.name).and_then(Option::as_ref) {
                Some(secret) => secret
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                None if reference.optional == Some(true) => continue,
                None => return Err(ConfigError(format!("secret \"{}\" not found", reference.name))),
            }
        } else {
            continue;
        };
        for (key, value) in data {
            let name = format!("{prefix}{key}");
            // Invalid names are skipped, as the kubelet does (it also records an event).
            if is_env_var_name(&name) {
                set(&mut names, &mut values, name, value);
            }
        }
    }

    let mut links = service_links(&sources.services);
    for var in container.env.iter().flatten() {
        let literal = var.value.clone().unwrap_or_default();
        let value = if !literal.is_empty() {
            expand(&literal, |name| values.get(name).or_else(|| links.get(name)).cloned())
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                downward::field_value(field, pod, facts).map_err(ConfigError)?
            } else if let Some(resource) = &from.resource_field_ref {
                downward::resource_value(resource, pod, container, facts).map_err(ConfigError)?
            } else if let Some(key) = &from.config_map_key_ref {
                let optional = key.optional == Some(true);
                match sources.config_maps.get(&key.name).and_then(Option::as_ref) {
                    None if optional => continue,
                    None => return Err(ConfigError(format!("configmap \"{}\" not found", key.name))),
                    Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&key.key)) {
                        Some(value) => value.clone(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                key.key, key.name
                            )))
                        }
                    },
                }
            } else if let Some(key) = &from.secret_key_ref {
                let optional = key.optional == Some(true);
                match sources.secrets.get(&key.name).and_then(Option::as_ref) {
                    None if optional => continue,
                    None => return Err(ConfigError(format!("secret \"{}\" not found", key.name))),
                    Some(secret) => match secret.data.as_ref().and_then(|d| d.get(&key.key)) {
                        Some(value) => String::from_utf8_lossy(&value.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                key.key, key.name
                            )))
                        }
                    },
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        links.remove(&var.name);
        set(&mut names, &mut values, var.name.clone(), value);
    }

    let mut env: Vec<(String, String)> = names
        .into_iter()
        .map(|name| {
            let value = values.remove(&name).unwrap_or_default();
            (name, value)
        })
        .collect();
    let declared: std::collections::HashSet<String> = env.iter().map(|(n, _)| n.clone()).collect();
    env.extend(links.into_iter().filter(|(name, _)| !declared.contains(name)));
    Ok(env)
}

/// The container's command and args with `$(VAR)` references to its environment expanded.
pub fn expand_command(container: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let expand_all = |list: &Option<Vec<String>>| list.iter().flatten().map(|s| expand(s, lookup)).collect();
    (expand_all(&container.command), expand_all(&container.args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use serde_json::json;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubernetes() {
        assert_eq!(expand("$(A)-$(A)", lookup), "alpha-alpha");
        assert_eq!(expand("x$(EMPTY)y", lookup), "xy");
        assert_eq!(expand("$$(A)", lookup), "$(A)", "$$ escapes");
        assert_eq!(expand("$(UNKNOWN)", lookup), "$(UNKNOWN)", "unknown references stay");
        assert_eq!(expand("$(A", lookup), "$(A", "unterminated");
        assert_eq!(expand("cost: $5 $", lookup), "cost: $5 $");
        assert_eq!(expand("$$$$", lookup), "$$");
        assert_eq!(expand("héllo $(A)", lookup), "héllo alpha");
    }

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1"},
            "spec": {"nodeName": "n1", "containers": containers}
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "settings"},
            "data": {"MODE": "fast", "LEVEL": "3", "1bad": "x"}}))
        .unwrap();
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": "creds"}, "data": {"password": "aHVudGVyMg=="}}))
                .unwrap();
        let service: Service = serde_json::from_value(json!({"metadata": {"name": "redis-primary", "namespace": "shop"},
            "spec": {"clusterIP": "10.43.0.7", "ports": [{"name": "db", "port": 6379}, {"port": 9121, "protocol": "UDP"}]}}))
        .unwrap();
        let headless: Service = serde_json::from_value(
            json!({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
        )
        .unwrap();
        Sources {
            config_maps: BTreeMap::from([("settings".into(), Some(cm)), ("gone".into(), None)]),
            secrets: BTreeMap::from([("creds".into(), Some(secret))]),
            services: vec![service, headless],
            ..Default::default()
        }
    }

    fn env_of(containers: serde_json::Value) -> Result<Vec<(String, String)>, ConfigError> {
        let pod = pod(containers);
        let facts = PodFacts { pod_ips: vec!["10.42.0.9".parse().unwrap()], ..Default::default() };
        container_env(&pod, &pod.spec.as_ref().unwrap().containers[0], &sources(), &facts)
    }

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn env_from_sources_and_references() {
        let env = env_of(json!([{"name": "app",
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}, {"configMapRef": {"name": "gone", "optional": true}}],
            "env": [
                {"name": "CFG_MODE", "value": "slow"},
                {"name": "GREETING", "value": "mode=$(CFG_MODE) level=$(CFG_LEVEL) $$(CFG_MODE) $(NOPE)"},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
                {"name": "SKIPPED", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": true}}},
                {"name": "REDIS", "value": "$(REDIS_PRIMARY_SERVICE_HOST):$(REDIS_PRIMARY_SERVICE_PORT)"}
            ]}]))
        .unwrap();
        assert_eq!(get(&env, "CFG_MODE"), Some("slow"), "env overrides envFrom");
        assert_eq!(get(&env, "CFG_1bad"), Some("x"), "a prefix can make a key valid");
        assert_eq!(get(&env, "GREETING"), Some("mode=slow level=3 $(CFG_MODE) $(NOPE)"));
        assert_eq!(get(&env, "PASSWORD"), Some("hunter2"));
        assert_eq!(get(&env, "POD"), Some("web"));
        assert_eq!(get(&env, "IP"), Some("10.42.0.9"));
        assert_eq!(get(&env, "LEVEL"), Some("3"));
        assert_eq!(get(&env, "SKIPPED"), None);
        assert_eq!(get(&env, "REDIS"), Some("10.43.0.7:6379"));
        assert_eq!(env[0].0, "CFG_1bad", "declaration order: envFrom keys first");
        // Service links.
        assert_eq!(get(&env, "REDIS_PRIMARY_SERVICE_PORT_DB"), Some("6379"));
        assert_eq!(get(&env, "REDIS_PRIMARY_PORT"), Some("tcp://10.43.0.7:6379"));
        assert_eq!(get(&env, "REDIS_PRIMARY_PORT_9121_UDP"), Some("udp://10.43.0.7:9121"));
        assert_eq!(get(&env, "REDIS_PRIMARY_PORT_9121_UDP_PROTO"), Some("udp"));
        assert_eq!(get(&env, "REDIS_PRIMARY_PORT_6379_TCP_ADDR"), Some("10.43.0.7"));
        assert!(get(&env, "HEADLESS_SERVICE_HOST").is_none(), "headless services have no links");

        let without_bad =
            env_of(json!([{"name": "app", "envFrom": [{"configMapRef": {"name": "settings"}}]}])).unwrap();
        assert!(get(&without_bad, "1bad").is_none(), "invalid names are skipped");
    }

    #[test]
    fn missing_sources_are_config_errors() {
        let err = env_of(json!([{"name": "a", "envFrom": [{"configMapRef": {"name": "absent"}}]}])).unwrap_err();
        assert_eq!(err.0, "configmap \"absent\" not found");
        let err = env_of(
            json!([{"name": "a", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}]),
        )
        .unwrap_err();
        assert_eq!(err.0, "secret \"nope\" not found");
        let err = env_of(
            json!([{"name": "a", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}]),
        )
        .unwrap_err();
        assert_eq!(err.0, "couldn't find key k in ConfigMap shop/settings");
        assert!(env_of(json!([{"name": "a", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}}]}]))
            .is_ok());
    }

    #[test]
    fn command_and_args_expand_against_the_environment() {
        let container: Container = serde_json::from_value(json!({"name": "a",
            "command": ["sh", "-c", "echo $(MSG)"], "args": ["$(MISSING)", "$$(MSG)"]}))
        .unwrap();
        let (command, args) = expand_command(&container, &[("MSG".into(), "hi".into())]);
        assert_eq!(command, vec!["sh", "-c", "echo hi"]);
        assert_eq!(args, vec!["$(MISSING)", "$(MSG)"]);
    }
}
