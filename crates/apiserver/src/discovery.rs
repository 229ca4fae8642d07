//! Legacy discovery documents (/api, /apis, /apis/GROUP, and the resource lists) and
//! /version, built from the registry.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use skiff_api::Registry;

/// The Kubernetes minor whose API skiff serves (the pinned k8s-openapi feature).
pub const KUBE_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBE_MINOR,
        "gitVersion": format!("v1.{KUBE_MINOR}.0+skiff-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// The architecture as Kubernetes names it.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

/// Groups (other than core) in registration order, with their versions.
fn groups(registry: &Registry) -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut groups: BTreeMap<&'static str, Vec<&'static str>> = BTreeMap::new();
    for def in registry.all() {
        if def.group.is_empty() {
            continue;
        }
        let versions = groups.entry(def.group).or_default();
        if !versions.contains(&def.version) {
            versions.push(def.version);
        }
    }
    groups
}

fn group_doc(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v })).collect();
    json!({ "name": name, "versions": versions, "preferredVersion": versions[0] })
}

pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = groups(registry).iter().map(|(name, versions)| group_doc(name, versions)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let groups = groups(registry);
    let versions = groups.get(name)?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let defs: Vec<_> = registry.all().into_iter().filter(|d| d.group == group && d.version == version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for def in defs {
        let mut entry = json!({
            "name": def.plural,
            "singularName": def.singular,
            "namespaced": def.namespaced,
            "kind": def.kind,
            "verbs": def.verbs,
        });
        if !def.short_names.is_empty() {
            entry["shortNames"] = json!(def.short_names);
        }
        if !def.categories.is_empty() {
            entry["categories"] = json!(def.categories);
        }
        resources.push(entry);
        let sub = |name: &str, kind: &str, group: &str, verbs: &[&str]| {
            let mut e = json!({
                "name": format!("{}/{name}", def.plural), "singularName": "", "namespaced": def.namespaced,
                "kind": kind, "verbs": verbs,
            });
            if !group.is_empty() {
                e["group"] = json!(group);
                e["version"] = json!("v1");
            }
            e
        };
        if def.subresources.status {
            resources.push(sub("status", def.kind, "", &["get", "patch", "update"]));
        }
        if def.subresources.scale {
            resources.push(sub("scale", "Scale", "autoscaling", &["get", "patch", "update"]));
        }
        if def.subresources.binding {
            resources.push(sub("binding", "Binding", "", &["create"]));
        }
        if def.subresources.eviction {
            resources.push(sub("eviction", "Eviction", "policy", &["create"]));
        }
        if def.group.is_empty() && def.plural == "namespaces" {
            resources.push(sub("finalize", "Namespace", "", &["update"]));
        }
        for (name, kind, verbs) in proxied_subresources(&def) {
            resources.push(sub(name, kind, "", verbs));
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    )
}

/// The subresources served by node agents (see `nodeproxy`): name, kind, verbs, as
/// Kubernetes' discovery lists them.
fn proxied_subresources(
    def: &skiff_api::ResourceDef,
) -> &'static [(&'static str, &'static str, &'static [&'static str])] {
    match (def.group, def.plural) {
        ("", "pods") => &[
            ("attach", "PodAttachOptions", &["create", "get"]),
            ("exec", "PodExecOptions", &["create", "get"]),
            ("log", "Pod", &["get"]),
            ("portforward", "PodPortForwardOptions", &["create", "get"]),
        ],
        ("", "nodes") => &[("proxy", "NodeProxyOptions", &["create", "delete", "get", "patch", "update"])],
        _ => &[],
    }
}

/// The media type of aggregated discovery (required for conformance since 1.30).
pub const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery (v2) before anything else.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        let params: Vec<&str> = first.split(';').map(str::trim).collect();
        params.first() == Some(&"application/json")
            && params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"v=v2")
            && params.contains(&"as=APIGroupDiscoveryList")
    })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

fn resource_discovery(def: &skiff_api::ResourceDef) -> Value {
    let scope = if def.namespaced { "Namespaced" } else { "Cluster" };
    let mut subresources = Vec::new();
    let sub =
        |name: &str, kind: Value, verbs: &[&str]| json!({ "subresource": name, "responseKind": kind, "verbs": verbs });
    let own = gvk(def.group, def.version, def.kind);
    if def.subresources.status {
        subresources.push(sub("status", own.clone(), &["get", "patch", "update"]));
    }
    if def.subresources.scale {
        subresources.push(sub("scale", gvk("autoscaling", "v1", "Scale"), &["get", "patch", "update"]));
    }
    if def.subresources.binding {
        subresources.push(sub("binding", gvk("", "v1", "Binding"), &["create"]));
    }
    if def.subresources.eviction {
        subresources.push(sub("eviction", gvk("policy", "v1", "Eviction"), &["create"]));
    }
    if def.group.is_empty() && def.plural == "namespaces" {
        subresources.push(sub("finalize", own.clone(), &["update"]));
    }
    for (name, kind, verbs) in proxied_subresources(def) {
        subresources.push(sub(name, gvk("", "v1", kind), verbs));
    }
    let mut entry = json!({
        "resource": def.plural,
        "responseKind": own,
        "scope": scope,
        "singularResource": def.singular,
        "verbs": def.verbs,
    });
    if !def.short_names.is_empty() {
        entry["shortNames"] = json!(def.short_names);
    }
    if !def.categories.is_empty() {
        entry["categories"] = json!(def.categories);
    }
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

/// One version of a group and its resources' discovery entries.
type VersionResources = (&'static str, Vec<Value>);

/// `/api` (core = true) or `/apis` as an APIGroupDiscoveryList.
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    // Groups in registration order, each with its versions in order.
    let mut groups: Vec<(&'static str, Vec<VersionResources>)> = Vec::new();
    for def in registry.all().iter().filter(|d| d.group.is_empty() == core) {
        let group = match groups.iter_mut().find(|(g, _)| *g == def.group) {
            Some(group) => group,
            None => {
                groups.push((def.group, Vec::new()));
                groups.last_mut().expect("just pushed")
            }
        };
        let version = match group.1.iter_mut().find(|(v, _)| *v == def.version) {
            Some(version) => version,
            None => {
                group.1.push((def.version, Vec::new()));
                group.1.last_mut().expect("just pushed")
            }
        };
        version.1.push(resource_discovery(def));
    }
    let items: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|(version, resources)| json!({ "version": version, "resources": resources, "freshness": "Current" }))
                .collect();
            let mut metadata = json!({ "creationTimestamp": null });
            if !name.is_empty() {
                metadata["name"] = json!(name);
            }
            json!({ "metadata": metadata, "versions": versions })
        })
        .collect();
    json!({ "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items })
}
