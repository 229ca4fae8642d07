//! Which resources the API server serves, for controllers that act on every kind (the
//! garbage collector, the namespace controller): kube's aggregated discovery, one
//! version per group (the preferred one).

use std::collections::HashMap;

use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};
use kube::Client;

#[derive(Clone, Debug)]
pub struct Served {
    pub resource: ApiResource,
    pub capabilities: ApiCapabilities,
}

impl Served {
    pub fn namespaced(&self) -> bool {
        self.capabilities.scope == Scope::Namespaced
    }

    pub fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|verb| self.capabilities.supports_operation(verb))
    }

    /// `plural.group`, as Kubernetes names a resource in messages (`pods.` for core ones).
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.resource.plural, self.resource.group)
    }
}

/// Every served resource (not subresources), in the preferred version of its group.
pub async fn served(client: &Client) -> Result<Vec<Served>, kube::Error> {
    let discovery = Discovery::new(client.clone()).run_aggregated().await?;
    Ok(discovery
        .groups()
        .flat_map(|group| group.recommended_resources())
        .map(|(resource, capabilities)| Served { resource, capabilities })
        .collect())
}

/// Finds served resources by group and kind (any version: an ownerReference may name a
/// version other than the preferred one; the object is the same).
#[derive(Clone, Debug, Default)]
pub struct KindIndex {
    by_kind: HashMap<(String, String), Served>,
}

impl KindIndex {
    pub fn new(served: &[Served]) -> Self {
        let by_kind = served.iter().map(|s| ((s.resource.group.clone(), s.resource.kind.clone()), s.clone())).collect();
        KindIndex { by_kind }
    }

    /// The resource serving `kind` of `api_version` (`apps/v1`, `v1`).
    pub fn find(&self, api_version: &str, kind: &str) -> Option<&Served> {
        let group = api_version.rsplit_once('/').map(|(group, _)| group).unwrap_or("");
        self.by_kind.get(&(group.to_string(), kind.to_string()))
    }
}
