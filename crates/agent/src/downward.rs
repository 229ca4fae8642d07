//! The downward API: a pod's own fields (`fieldRef`) and a container's resources
//! (`resourceFieldRef`) as strings, for env variables and downwardAPI volume files.
//! Values follow the kubelet: labels and annotations as `key="value"` lines, resource
//! values rounded up to the divisor, limits defaulting to the node's allocatable.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use skiff_api::Quantity;

/// What the downward API needs beyond the pod: the node's address and allocatable
/// resources, and the pod's IPs (known once the sandbox is up).
#[derive(Clone, Debug, Default)]
pub struct PodFacts {
    pub host_ip: Option<IpAddr>,
    pub pod_ips: Vec<IpAddr>,
    pub allocatable: BTreeMap<String, ApiQuantity>,
}

/// `key="value"` lines, sorted by key, as the kubelet writes labels and annotations.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> = map.into_iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect();
    lines.join("\n")
}

/// `metadata.labels['app']` → `("metadata.labels", "app")`.
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (head, rest) = path.split_once('[')?;
    let key = rest.strip_suffix(']')?.strip_prefix('\'')?.strip_suffix('\'')?;
    Some((head, key))
}

/// The value of a `fieldRef`.
pub fn field_value(selector: &ObjectFieldSelector, pod: &Pod, facts: &PodFacts) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = selector.field_path.as_str();
    if let Some((head, key)) = subscript(path) {
        let map = match head {
            "metadata.labels" => meta.labels.as_ref(),
            "metadata.annotations" => meta.annotations.as_ref(),
            _ => return Err(format!("unsupported fieldPath: {path}")),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let ips = |ips: &[IpAddr]| ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(",");
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "status.podIP" => facts.pod_ips.first().map(IpAddr::to_string).unwrap_or_default(),
        "status.podIPs" => ips(&facts.pod_ips),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// The value of a `resourceFieldRef` for `container` (or the container it names).
pub fn resource_value(
    selector: &ResourceFieldSelector,
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
) -> Result<String, String> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name)
            .ok_or_else(|| format!("container {name} not found"))?,
        None => container,
    };
    let resources = container.resources.as_ref();
    let (kind, name) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    let value = match kind {
        "limits" => resources
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get(name))
            .or_else(|| facts.allocatable.get(name))
            .map(|q| q.0.clone()),
        "requests" => resources.and_then(|r| r.requests.as_ref()).and_then(|l| l.get(name)).map(|q| q.0.clone()),
        _ => return Err(format!("unsupported container resource : {}", selector.resource)),
    };
    let value = Quantity::parse(value.as_deref().unwrap_or("0"))?;
    let divisor = selector.divisor.as_ref().map_or("1", |d| d.0.as_str());
    let divisor = Quantity::parse(if divisor == "0" { "1" } else { divisor })?;
    let rounded = value.ceil_div(divisor).ok_or_else(|| format!("invalid divisor for {}", selector.resource))?;
    Ok(rounded.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"}, "annotations": {"note": "say \"hi\""}},
            "spec": {"nodeName": "n1", "serviceAccountName": "robot", "containers": [
                {"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}}
            ]}
        }))
        .unwrap()
    }

    fn facts() -> PodFacts {
        PodFacts {
            host_ip: Some("198.18.0.1".parse().unwrap()),
            pod_ips: vec!["10.42.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            allocatable: BTreeMap::from([("cpu".to_string(), ApiQuantity("4".into()))]),
        }
    }

    fn field(path: &str) -> String {
        let selector = ObjectFieldSelector { field_path: path.into(), api_version: None };
        field_value(&selector, &pod(), &facts()).unwrap()
    }

    fn resource(name: &str, divisor: Option<&str>) -> String {
        let pod = pod();
        let selector = ResourceFieldSelector {
            resource: name.into(),
            divisor: divisor.map(|d| ApiQuantity(d.into())),
            container_name: None,
        };
        resource_value(&selector, &pod, &pod.spec.as_ref().unwrap().containers[0], &facts()).unwrap()
    }

    #[test]
    fn pod_fields() {
        assert_eq!(field("metadata.name"), "web");
        assert_eq!(field("metadata.namespace"), "shop");
        assert_eq!(field("metadata.uid"), "u-1");
        assert_eq!(field("metadata.labels['tier']"), "front");
        assert_eq!(field("metadata.labels['missing']"), "");
        assert_eq!(field("metadata.labels"), "app=\"web\"\ntier=\"front\"");
        assert_eq!(field("metadata.annotations"), "note=\"say \\\"hi\\\"\"");
        assert_eq!(field("spec.nodeName"), "n1");
        assert_eq!(field("spec.serviceAccountName"), "robot");
        assert_eq!(field("status.podIP"), "10.42.0.5");
        assert_eq!(field("status.podIPs"), "10.42.0.5,fd00::5");
        assert_eq!(field("status.hostIP"), "198.18.0.1");
        let bad = ObjectFieldSelector { field_path: "spec.containers".into(), api_version: None };
        assert!(field_value(&bad, &pod(), &facts()).is_err());
    }

    #[test]
    fn resource_fields_round_up_and_default_to_allocatable() {
        assert_eq!(resource("requests.cpu", None), "1", "250m rounds up to one cpu");
        assert_eq!(resource("requests.cpu", Some("1m")), "250");
        assert_eq!(resource("limits.cpu", None), "4", "no limit: the node's allocatable");
        assert_eq!(resource("limits.memory", Some("1Mi")), "128");
        assert_eq!(resource("requests.memory", None), "67108864");
    }
}
