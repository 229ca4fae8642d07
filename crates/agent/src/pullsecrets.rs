//! Registry credentials for image pulls, from the Secrets a pod names in
//! imagePullSecrets (and its ServiceAccount's, which Kubernetes' admission copies into the
//! pod): `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`, `{"auths": {KEY: ...}}`)
//! and `kubernetes.io/dockercfg` (`.dockercfg`, `{KEY: ...}`).
//!
//! Keys match images as the kubelet's credential keyring matches them: a key is a registry
//! host (with optional port, `*` globs per host label) and an optional path prefix;
//! `https://` and a trailing `/` are ignored, and Docker Hub's legacy keys
//! (`https://index.docker.io/v1/`) mean `docker.io`. Every matching credential is tried,
//! the most specific key first.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::runtime::RegistryAuth;

const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, Default, Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// The (key, credential) pairs of one Secret; other Secret types, and data that does not
/// parse, give none (the kubelet skips them too).
pub fn credentials_of(secret: &Secret) -> Vec<(String, RegistryAuth)> {
    let data = secret.data.as_ref();
    let entries: BTreeMap<String, Entry> = match secret.type_.as_deref() {
        Some("kubernetes.io/dockerconfigjson") => data
            .and_then(|d| d.get(".dockerconfigjson"))
            .and_then(|raw| serde_json::from_slice::<DockerConfigJson>(&raw.0).ok())
            .map(|config| config.auths)
            .unwrap_or_default(),
        Some("kubernetes.io/dockercfg") => data
            .and_then(|d| d.get(".dockercfg"))
            .and_then(|raw| serde_json::from_slice(&raw.0).ok())
            .unwrap_or_default(),
        _ => BTreeMap::new(),
    };
    entries
        .into_iter()
        .map(|(key, entry)| {
            let (mut username, mut password) = (entry.username, entry.password);
            // `auth` is base64 of user:password, and what Docker writes; fill the fields from it.
            if username.is_empty() && !entry.auth.is_empty() {
                let decoded = base64::engine::general_purpose::STANDARD.decode(entry.auth.trim()).unwrap_or_default();
                if let Some((user, pass)) = String::from_utf8_lossy(&decoded).split_once(':') {
                    (username, password) = (user.to_string(), pass.to_string());
                }
            }
            let server_address = normalize_key(&key);
            (server_address.clone(), RegistryAuth { username, password, auth: entry.auth, server_address })
        })
        .collect()
}

/// `https://host:5000/path/` → `host:5000/path`; Docker Hub's legacy keys → `docker.io`.
fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    let key = key.trim_end_matches('/');
    match key {
        "index.docker.io/v1" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        _ => key.to_string(),
    }
}

/// The registry host of an image reference and its repository path: `busybox` →
/// (`docker.io`, `library/busybox`), `host:5000/team/app:1` → (`host:5000`, `team/app`).
fn split_image(image: &str) -> (String, String) {
    let name = image.split('@').next().unwrap_or(image);
    let (first, rest) = name.split_once('/').unwrap_or(("", name));
    let has_host = first.contains('.') || first.contains(':') || first == "localhost";
    let (host, path) = if has_host { (first.to_string(), rest) } else { (DOCKER_HUB.to_string(), name) };
    // The tag is after the last ':' of the last path segment.
    let path = match path.rfind(':') {
        Some(colon) if !path[colon..].contains('/') => &path[..colon],
        _ => path,
    };
    let path = if host == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
    (host, path)
}

/// Whether `pattern` (a host, possibly with `*` labels) matches `host`; ports must be equal.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (pattern_name, pattern_port) = pattern.split_once(':').unwrap_or((pattern, ""));
    let (name, port) = host.split_once(':').unwrap_or((host, ""));
    if pattern_port != port {
        return false;
    }
    let pattern_labels: Vec<&str> = pattern_name.split('.').collect();
    let labels: Vec<&str> = name.split('.').collect();
    pattern_labels.len() == labels.len() && pattern_labels.iter().zip(&labels).all(|(p, l)| glob(p, l))
}

/// `*` matching any run of characters within one label.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            text.starts_with(prefix)
                && (prefix.len()..=text.len()).any(|i| text.is_char_boundary(i) && glob(rest, &text[i..]))
        }
    }
}

/// Whether a normalized key applies to `image`: its host matches and its path, if any, is
/// a prefix of the image's repository path (at a `/` boundary).
fn key_matches(key: &str, host: &str, path: &str) -> bool {
    let (key_host, key_path) = key.split_once('/').unwrap_or((key, ""));
    let path_matches = key_path.is_empty()
        || path == key_path
        || path.strip_prefix(key_path).is_some_and(|rest| rest.starts_with('/'));
    host_matches(key_host, host) && path_matches
}

/// The credentials to try for `image`, most specific key first (longer keys before
/// shorter, as the kubelet's keyring orders them); duplicates removed.
pub fn for_image(image: &str, credentials: &[(String, RegistryAuth)]) -> Vec<RegistryAuth> {
    let (host, path) = split_image(image);
    let mut matching: Vec<&(String, RegistryAuth)> =
        credentials.iter().filter(|(key, _)| key_matches(key, &host, &path)).collect();
    matching.sort_by_key(|(key, _)| std::cmp::Reverse(key.len()));
    let mut found: Vec<RegistryAuth> = Vec::new();
    for (_, auth) in matching {
        if !found.contains(auth) {
            found.push(auth.clone());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(kind: &str, key: &str, value: serde_json::Value) -> Secret {
        Secret {
            type_: Some(kind.into()),
            data: Some(BTreeMap::from([(key.to_string(), ByteString(value.to_string().into_bytes()))])),
            ..Secret::default()
        }
    }

    fn keys(credentials: &[RegistryAuth]) -> Vec<&str> {
        credentials.iter().map(|c| c.server_address.as_str()).collect()
    }

    #[test]
    fn both_secret_types_parse_and_auth_fills_user_and_password() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let json = secret(
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            serde_json::json!({"auths": {"https://registry.example.com/": {"auth": auth}}}),
        );
        let parsed = credentials_of(&json);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, "registry.example.com");
        assert_eq!((parsed[0].1.username.as_str(), parsed[0].1.password.as_str()), ("alice", "s3cret"));

        let cfg = secret(
            "kubernetes.io/dockercfg",
            ".dockercfg",
            serde_json::json!({"https://index.docker.io/v1/": {"username": "bob", "password": "pw"}}),
        );
        let parsed = credentials_of(&cfg);
        assert_eq!((parsed[0].0.as_str(), parsed[0].1.username.as_str()), ("docker.io", "bob"));

        let opaque = secret("Opaque", ".dockerconfigjson", serde_json::json!({"auths": {"x": {}}}));
        assert!(credentials_of(&opaque).is_empty());
        let broken = secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", serde_json::json!("nope"));
        assert!(credentials_of(&broken).is_empty());
    }

    #[test]
    fn images_split_into_registry_and_repository() {
        assert_eq!(split_image("busybox"), ("docker.io".into(), "library/busybox".into()));
        assert_eq!(split_image("busybox:1.36"), ("docker.io".into(), "library/busybox".into()));
        assert_eq!(split_image("team/app:1"), ("docker.io".into(), "team/app".into()));
        assert_eq!(split_image("127.0.0.1:5000/team/app:1"), ("127.0.0.1:5000".into(), "team/app".into()));
        assert_eq!(split_image("localhost/app@sha256:abc"), ("localhost".into(), "app".into()));
    }

    #[test]
    fn keys_match_hosts_ports_globs_and_path_prefixes_most_specific_first() {
        let auth =
            |key: &str| (key.to_string(), RegistryAuth { server_address: key.into(), ..RegistryAuth::default() });
        let credentials = [
            auth("registry.example.com"),
            auth("registry.example.com/team"),
            auth("registry.example.com/team/app"),
            auth("*.example.com"),
            auth("registry.example.com:5000"),
            auth("docker.io"),
            auth("other.org"),
        ];
        let found = for_image("registry.example.com/team/app:1", &credentials);
        assert_eq!(
            keys(&found),
            ["registry.example.com/team/app", "registry.example.com/team", "registry.example.com", "*.example.com"]
        );
        // A path key matches at a `/` boundary only; a port must be the same.
        assert_eq!(
            keys(&for_image("registry.example.com/teams/x", &credentials)),
            ["registry.example.com", "*.example.com"]
        );
        assert_eq!(keys(&for_image("registry.example.com:5000/x", &credentials)), ["registry.example.com:5000"]);
        // A glob stays within one label.
        assert!(for_image("a.b.example.com/x", &credentials).iter().all(|c| c.server_address != "*.example.com"));
        assert_eq!(keys(&for_image("nginx", &credentials)), ["docker.io"]);
        assert!(for_image("quay.io/x", &credentials).is_empty());
    }
}
