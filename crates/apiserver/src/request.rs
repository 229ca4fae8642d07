//! Parsing a request URL into what it addresses and the options it carries.

use std::collections::HashMap;

use skiff_api::ApiError;

/// What a resource URL names: `/api/v1/namespaces/ns/pods/name/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub plural: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/watch/` path form.
    pub watch_path: bool,
    /// What follows `.../NAME/proxy/` (nodes/proxy), without the leading slash.
    pub proxy_path: Option<String>,
}

/// What a request URL addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/GROUP`
    Group(String),
    /// `/api/v1` or `/apis/GROUP/VERSION`
    Resources {
        group: String,
        version: String,
    },
    Resource(ResourcePath),
    Other,
}

pub fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", group] => return Route::Group(group.to_string()),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Other,
    };
    if rest.is_empty() {
        return Route::Resources { group: group.into(), version: version.into() };
    }
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] if !rest.is_empty() => (true, rest),
        _ => (false, rest),
    };
    let mut path = ResourcePath { group: group.into(), version: version.into(), watch_path, ..Default::default() };
    let own = |s: &&str| Some(s.to_string());
    match rest {
        // namespaces/NAME/status and namespaces/NAME/finalize are subresources of a namespace.
        ["namespaces", name, sub @ ("status" | "finalize")] => {
            path.plural = "namespaces".into();
            path.name = own(name);
            path.subresource = own(sub);
        }
        // nodes/NAME/proxy/PATH...: the rest of the path goes to the node.
        [plural, name, "proxy", tail @ ..] if !tail.is_empty() && *plural != "namespaces" => {
            path.plural = plural.to_string();
            path.name = own(name);
            path.subresource = Some("proxy".into());
            path.proxy_path = Some(tail.join("/"));
        }
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => {
            path.namespace = own(ns);
            path.plural = plural.to_string();
            path.name = tail.first().map(|s| s.to_string());
            path.subresource = tail.get(1).map(|s| s.to_string());
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            path.plural = plural.to_string();
            path.name = tail.first().map(|s| s.to_string());
            path.subresource = tail.get(1).map(|s| s.to_string());
        }
        _ => return Route::Other,
    }
    Route::Resource(path)
}

/// Query parameters, decoded.
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Query(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A boolean parameter, spelled as Go's strconv.ParseBool accepts (the Python
    /// client sends `True`); None when absent or not a boolean.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
            _ => None,
        }
    }

    pub fn flag(&self, key: &str) -> bool {
        self.bool(key) == Some(true)
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| v.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid value for {key}: {v:?}"))))
            .transpose()
    }

    /// `dryRun=All` (the only value Kubernetes accepts).
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => {
                Err(ApiError::BadRequest(format!("Invalid dry run value: {other:?}; supported values: \"All\"")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourcePath {
        match route(path) {
            Route::Resource(p) => p,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn routes_namespaced_and_cluster_paths() {
        let p = resource("/api/v1/namespaces/default/pods/web/status");
        assert_eq!((p.group.as_str(), p.namespace.as_deref(), p.plural.as_str()), ("", Some("default"), "pods"));
        assert_eq!((p.name.as_deref(), p.subresource.as_deref()), (Some("web"), Some("status")));
        let p = resource("/apis/apps/v1/deployments");
        assert_eq!((p.group.as_str(), p.namespace, p.plural.as_str()), ("apps", None, "deployments"));
        let p = resource("/api/v1/namespaces/kube-system");
        assert_eq!((p.plural.as_str(), p.name.as_deref(), p.namespace), ("namespaces", Some("kube-system"), None));
        let p = resource("/api/v1/namespaces/x/finalize");
        assert_eq!((p.plural.as_str(), p.subresource.as_deref()), ("namespaces", Some("finalize")));
        let p = resource("/api/v1/watch/namespaces/x/configmaps");
        assert!(p.watch_path);
        assert_eq!(p.namespace.as_deref(), Some("x"));
        assert_eq!(route("/apis/apps"), Route::Group("apps".into()));
        assert_eq!(route("/api/v1/namespaces/a/pods/b/c/d"), Route::Other);
        let p = resource("/api/v1/nodes/n1/proxy/stats/summary");
        assert_eq!(
            (p.plural.as_str(), p.name.as_deref(), p.subresource.as_deref()),
            ("nodes", Some("n1"), Some("proxy"))
        );
        assert_eq!(p.proxy_path.as_deref(), Some("stats/summary"));
        assert_eq!(resource("/api/v1/nodes/n1/proxy").proxy_path, None);
    }
}
