//! The resource registry: which resources exist, how they are named and addressed, and
//! which strategy handles their writes. Data, not code paths, so that custom resources
//! can be added at run time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::strategy::Strategy;

/// Every verb of a stored resource.
pub const ALL_VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// How an object's name is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain (most kinds).
    DnsSubdomain,
    /// RFC 1123 label (namespaces, services).
    DnsLabel,
    /// RFC 1035 label (services: must start with a letter).
    Dns1035Label,
    /// Anything but "." "..", or containing "/" or "%" (RBAC kinds).
    PathSegment,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Subresources {
    pub status: bool,
    pub scale: bool,
    /// pods/binding
    pub binding: bool,
    /// pods/eviction
    pub eviction: bool,
}

/// Where a resource is stored when it shares another resource's storage.
#[derive(Clone, Copy)]
pub struct StoredAs {
    /// The storing resource's group and plural (its key prefix).
    pub group: &'static str,
    pub plural: &'static str,
    /// Served form to stored form.
    pub to_storage: fn(Value) -> Value,
    /// Stored form to served form.
    pub from_storage: fn(Value) -> Value,
}

/// One served resource: group/version/kind and its REST names.
pub struct ResourceDef {
    /// API group, "" for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The URL segment: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub subresources: Subresources,
    pub name_rule: NameRule,
    /// Whether metadata.generation is kept (bumped when the spec changes).
    pub tracks_generation: bool,
    /// Whether an update with no resourceVersion is allowed (an unconditional write).
    pub allow_unconditional_update: bool,
    /// The verbs served and advertised.
    pub verbs: &'static [&'static str],
    /// A create is answered, not stored (the review kinds, e.g. SelfSubjectReview).
    pub ephemeral: bool,
    /// Set when objects live in another resource's storage, in its form.
    pub stored_as: Option<StoredAs>,
    pub strategy: Arc<dyn Strategy>,
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store key prefix for all objects of this resource, ending in `/`.
    pub fn key_prefix(&self) -> String {
        let (group, plural) = self.stored_as.map_or((self.group, self.plural), |s| (s.group, s.plural));
        let group = if group.is_empty() { "core" } else { group };
        format!("/registry/{group}/{plural}/")
    }

    /// An object as stored.
    pub fn to_storage(&self, object: Value) -> Value {
        match self.stored_as {
            Some(stored) => (stored.to_storage)(object),
            None => object,
        }
    }

    /// A stored object as this resource serves it.
    pub fn from_storage(&self, object: Value) -> Value {
        match self.stored_as {
            Some(stored) => (stored.from_storage)(object),
            None => object,
        }
    }

    /// The prefix for one namespace (or all of the resource when `namespace` is None or
    /// the resource is cluster-scoped).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.list_prefix(namespace))
    }

    pub fn allows(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }
}

/// All served resources, looked up by group/version/plural or by kind.
#[derive(Default)]
pub struct Registry {
    resources: RwLock<Vec<Arc<ResourceDef>>>,
    by_path: RwLock<HashMap<(String, String, String), Arc<ResourceDef>>>,
}

impl Registry {
    pub fn new(defs: impl IntoIterator<Item = ResourceDef>) -> Self {
        let registry = Self::default();
        for def in defs {
            registry.add(def);
        }
        registry
    }

    /// Adds (or replaces) a resource.
    pub fn add(&self, def: ResourceDef) {
        let def = Arc::new(def);
        let path = (def.group.to_string(), def.version.to_string(), def.plural.to_string());
        let mut resources = self.resources.write().unwrap_or_else(|e| e.into_inner());
        resources.retain(|r| (r.group, r.version, r.plural) != (def.group, def.version, def.plural));
        resources.push(def.clone());
        self.by_path.write().unwrap_or_else(|e| e.into_inner()).insert(path, def);
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        let key = (group.to_string(), version.to_string(), plural.to_string());
        self.by_path.read().unwrap_or_else(|e| e.into_inner()).get(&key).cloned()
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<Arc<ResourceDef>> {
        self.find(|r| r.group == group && r.kind == kind)
    }

    /// The first resource (in registration order) that `matches`.
    pub fn find(&self, matches: impl Fn(&ResourceDef) -> bool) -> Option<Arc<ResourceDef>> {
        self.resources.read().unwrap_or_else(|e| e.into_inner()).iter().find(|r| matches(r)).cloned()
    }

    /// Every resource, in registration order.
    pub fn all(&self) -> Vec<Arc<ResourceDef>> {
        self.resources.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
