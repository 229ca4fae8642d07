//! A pod's volumes, prepared on the host and handed to the runtime as bind mounts, laid
//! out as the kubelet lays them out under its root directory:
//!
//! ```text
//! ROOT/pods/UID/volumes/kubernetes.io~empty-dir/NAME      emptyDir (tmpfs for medium Memory)
//! ROOT/pods/UID/volumes/kubernetes.io~configmap/NAME      configMap, via the atomic writer
//! ROOT/pods/UID/volumes/kubernetes.io~secret/NAME         secret, same
//! ROOT/pods/UID/volumes/kubernetes.io~downward-api/NAME   downwardAPI, same
//! ROOT/pods/UID/volumes/kubernetes.io~projected/NAME      projected, same
//! ROOT/pods/UID/containers/CONTAINER/ID                   termination message files
//! ```
//!
//! hostPath and persistentVolumeClaim volumes (bound to hostPath or local
//! PersistentVolumes) are the host's own directories. Preparing is idempotent: each sync
//! writes what changed, which is how ConfigMap and Secret updates reach running pods.
//! projected serviceAccountToken sources are skipped until the agent mints tokens.

pub mod atomic;
mod hostpath;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, KeyToPath, Pod, Volume, VolumeProjection};

use crate::downward::{self, PodFacts};
use crate::runtime::Mount;
use crate::sources::Sources;
use atomic::{File, Payload};

const DEFAULT_MODE: i32 = 0o644;

/// Why a volume could not be set up: shown as the kubelet's FailedMount event,
/// `MountVolume.SetUp failed for volume "NAME" : CAUSE`.
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {cause}")]
pub struct VolumeError {
    pub volume: String,
    pub cause: String,
}

/// A volume ready on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    pub host_path: PathBuf,
    /// Mounted read-only whatever the volumeMount says (configMap, secret, downwardAPI,
    /// projected, read-only claims).
    pub read_only: bool,
}

/// Where the agent keeps pods' files, and what it may do there.
#[derive(Clone, Debug)]
pub struct VolumeHost {
    /// The pods directory (`ROOT/pods`).
    pub pods_dir: PathBuf,
    /// Whether emptyDir volumes with medium Memory are mounted as tmpfs (needs the right
    /// to mount; simulated nodes keep them on disk).
    pub tmpfs: bool,
}

impl VolumeHost {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir.join(uid)
    }

    fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join(format!("kubernetes.io~{plugin}")).join(name)
    }

    /// The host file mounted at a container's terminationMessagePath.
    pub fn termination_log(&self, uid: &str, container: &str, id: &str) -> PathBuf {
        self.pod_dir(uid).join("containers").join(container).join(id)
    }

    /// Sets up every volume of `pod`; volumes are set up in order and the first failure is returned.
    pub fn prepare(
        &self,
        pod: &Pod,
        sources: &Sources,
        facts: &PodFacts,
    ) -> Result<BTreeMap<String, Prepared>, VolumeError> {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let mut prepared = BTreeMap::new();
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let fail = |cause: String| VolumeError { volume: volume.name.clone(), cause };
            let ready = self.prepare_one(uid, pod, volume, sources, facts).map_err(fail)?;
            if let Some(ready) = ready {
                prepared.insert(volume.name.clone(), ready);
            }
        }
        Ok(prepared)
    }

    fn prepare_one(
        &self,
        uid: &str,
        pod: &Pod,
        volume: &Volume,
        sources: &Sources,
        facts: &PodFacts,
    ) -> Result<Option<Prepared>, String> {
        let io = |e: io::Error| e.to_string();
        let name = &volume.name;
        let fs_group = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()).and_then(|s| s.fs_group);
        let fs_group = fs_group.and_then(|g| u32::try_from(g).ok());
        let written = |plugin: &str, payload: Option<Payload>| -> Result<Option<Prepared>, String> {
            let dir = self.volume_dir(uid, plugin, name);
            let mut payload = payload.unwrap_or_default();
            if fs_group.is_some() {
                // Group-readable from the start, so that an unchanged payload compares equal.
                payload.values_mut().for_each(|file| file.mode |= 0o040);
            }
            let changed = atomic::write(&dir, &payload).map_err(io)?;
            if let (true, Some(gid)) = (changed, fs_group) {
                give_to_group(&dir, gid, false).map_err(io)?;
            }
            Ok(Some(Prepared { host_path: dir, read_only: true }))
        };
        if let Some(empty) = &volume.empty_dir {
            let dir = self.volume_dir(uid, "empty-dir", name);
            fs::create_dir_all(&dir).map_err(io)?;
            if empty.medium.as_deref() == Some("Memory") && self.tmpfs && !is_mount_point(&dir) {
                mount_tmpfs(&dir, empty.size_limit.as_ref().map(|q| q.0.as_str()))?;
            }
            // Writable by whatever user the containers run as, as the kubelet makes it.
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).map_err(io)?;
            if let Some(gid) = fs_group {
                give_to_group(&dir, gid, true).map_err(io)?;
            }
            return Ok(Some(Prepared { host_path: dir, read_only: false }));
        }
        if let Some(host) = &volume.host_path {
            hostpath::check(Path::new(&host.path), host.type_.as_deref().unwrap_or(""))?;
            return Ok(Some(Prepared { host_path: PathBuf::from(&host.path), read_only: false }));
        }
        if let Some(cm) = &volume.config_map {
            let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
            return written(
                "configmap",
                config_map_payload(&cm.name, cm.items.as_deref(), cm.optional, mode, sources)?,
            );
        }
        if let Some(secret) = &volume.secret {
            let secret_name = secret.secret_name.clone().unwrap_or_default();
            let mode = secret.default_mode.unwrap_or(DEFAULT_MODE);
            return written(
                "secret",
                secret_payload(&secret_name, secret.items.as_deref(), secret.optional, mode, sources)?,
            );
        }
        if let Some(api) = &volume.downward_api {
            let mode = api.default_mode.unwrap_or(DEFAULT_MODE);
            return written(
                "downward-api",
                Some(downward_payload(api.items.as_deref().unwrap_or_default(), mode, pod, facts)?),
            );
        }
        if let Some(projected) = &volume.projected {
            let mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
            let sources_list = projected.sources.as_deref().unwrap_or_default();
            return written("projected", Some(projected_payload(sources_list, mode, pod, sources, facts)?));
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            let path = claim_path(&claim.claim_name, sources)?;
            return Ok(Some(Prepared { host_path: path, read_only: claim.read_only == Some(true) }));
        }
        // Other sources (cloud disks, NFS, CSI, ...) are not supported by this agent.
        Err("unsupported volume type".into())
    }

    /// Removes a pod's directory, unmounting any tmpfs in it first.
    pub fn cleanup(&self, uid: &str) -> io::Result<()> {
        let dir = self.pod_dir(uid);
        if !dir.exists() {
            return Ok(());
        }
        for mount in mounts_below(&dir) {
            let _ = std::process::Command::new("umount").arg(&mount).status();
        }
        fs::remove_dir_all(&dir)
    }
}

/// The mounts of `container`: its volumeMounts (with subPath) over the prepared volumes.
pub fn container_mounts(container: &Container, prepared: &BTreeMap<String, Prepared>) -> Result<Vec<Mount>, String> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        // Volumes this node does not prepare (no data directory) are left out.
        let Some(volume) = prepared.get(&mount.name) else { continue };
        let mut host_path = volume.host_path.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if !atomic::valid_path(sub) {
                return Err(format!("subPath {sub:?} must be a relative path that stays in the volume"));
            }
            host_path = host_path.join(sub);
            if !host_path.exists() {
                fs::create_dir_all(&host_path).map_err(|e| format!("failed to create subPath directory: {e}"))?;
            }
        }
        mounts.push(Mount {
            container_path: mount.mount_path.clone(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: volume.read_only || mount.read_only == Some(true),
            selinux_relabel: false,
        });
    }
    Ok(mounts)
}

fn key_payload(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    kind: &str,
) -> Result<Payload, String> {
    let file = |bytes: &Vec<u8>, mode: i32| File { data: bytes.clone(), mode: mode as u32 & 0o7777 };
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(data.iter().map(|(k, v)| (k.clone(), file(v, mode))).collect());
    };
    let mut payload = Payload::new();
    for item in items {
        let bytes =
            data.get(&item.key).ok_or_else(|| format!("{kind} references non-existent config key: {}", item.key))?;
        payload.insert(item.path.clone(), file(bytes, item.mode.unwrap_or(mode)));
    }
    Ok(payload)
}

/// A configMap's files; `None` for a missing optional one (an empty volume).
fn config_map_payload(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
    sources: &Sources,
) -> Result<Option<Payload>, String> {
    match sources.config_maps.get(name).and_then(Option::as_ref) {
        None if optional == Some(true) => Ok(None),
        None => Err(format!("configmap \"{name}\" not found")),
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> =
                cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
            data.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
            key_payload(data, items, mode, "configmap").map(Some)
        }
    }
}

fn secret_payload(
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
    mode: i32,
    sources: &Sources,
) -> Result<Option<Payload>, String> {
    match sources.secrets.get(name).and_then(Option::as_ref) {
        None if optional == Some(true) => Ok(None),
        None => Err(format!("secret \"{name}\" not found")),
        Some(secret) => {
            let data = secret.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
            key_payload(data, items, mode, "secret").map(Some)
        }
    }
}

fn downward_payload(
    items: &[DownwardAPIVolumeFile],
    mode: i32,
    pod: &Pod,
    facts: &PodFacts,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            downward::field_value(field, pod, facts)?
        } else if let Some(resource) = &item.resource_field_ref {
            let container_name = resource.container_name.as_deref().unwrap_or_default();
            let container = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| c.name == container_name)
                .ok_or_else(|| format!("container {container_name} not found"))?;
            downward::resource_value(resource, pod, container, facts)?
        } else {
            continue;
        };
        payload.insert(item.path.clone(), File { data: value.into_bytes(), mode: item.mode.unwrap_or(mode) as u32 });
    }
    Ok(payload)
}

fn projected_payload(
    projections: &[VolumeProjection],
    mode: i32,
    pod: &Pod,
    sources: &Sources,
    facts: &PodFacts,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for projection in projections {
        let part = if let Some(cm) = &projection.config_map {
            config_map_payload(&cm.name, cm.items.as_deref(), cm.optional, mode, sources)?
        } else if let Some(secret) = &projection.secret {
            secret_payload(&secret.name, secret.items.as_deref(), secret.optional, mode, sources)?
        } else if let Some(api) = &projection.downward_api {
            Some(downward_payload(api.items.as_deref().unwrap_or_default(), mode, pod, facts)?)
        } else {
            // serviceAccountToken and clusterTrustBundle: not provided yet.
            None
        };
        payload.extend(part.unwrap_or_default());
    }
    Ok(payload)
}

/// The host directory of a claim's PersistentVolume (hostPath or local).
fn claim_path(claim: &str, sources: &Sources) -> Result<PathBuf, String> {
    let found = sources.claims.get(claim).and_then(Option::as_ref);
    let found = found.ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    let volume_name = found.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty());
    let volume_name = volume_name.ok_or_else(|| format!("PVC {claim} is not bound"))?;
    let volume = sources.volumes.get(&volume_name).and_then(Option::as_ref);
    let spec = volume.and_then(|v| v.spec.as_ref());
    let spec = spec.ok_or_else(|| format!("persistentvolume \"{volume_name}\" not found"))?;
    if let Some(host) = &spec.host_path {
        hostpath::check(Path::new(&host.path), host.type_.as_deref().unwrap_or(""))?;
        return Ok(PathBuf::from(&host.path));
    }
    if let Some(local) = &spec.local {
        return Ok(PathBuf::from(&local.path));
    }
    Err(format!("persistentvolume \"{volume_name}\" is neither hostPath nor local"))
}

fn mount_tmpfs(dir: &Path, size: Option<&str>) -> Result<(), String> {
    let mut command = std::process::Command::new("mount");
    command.args(["-t", "tmpfs"]);
    if let Some(size) = size {
        // tmpfs takes k/m/g suffixes; give it bytes.
        if let Some(bytes) =
            skiff_api::Quantity::parse(size).ok().and_then(|q| q.ceil_div(skiff_api::Quantity::parse("1").ok()?))
        {
            command.args(["-o", &format!("size={bytes}")]);
        }
    }
    let status = command.arg("tmpfs").arg(dir).status().map_err(|e| format!("mount tmpfs: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("mount tmpfs on {} failed: {status}", dir.display()))
    }
}

/// Hands a volume to the pod's fsGroup, as the kubelet's volume ownership does: group
/// ownership of everything in it, group read (and write, for writable volumes) on files,
/// and setgid directories so that new files join the group.
fn give_to_group(dir: &Path, gid: u32, writable: bool) -> io::Result<()> {
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    let meta = fs::symlink_metadata(dir)?;
    let mode = meta.permissions().mode();
    if meta.is_dir() {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o2000 | 0o050 | if writable { 0o020 } else { 0 }))?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            if !fs::symlink_metadata(&path)?.file_type().is_symlink() {
                give_to_group(&path, gid, writable)?;
            }
        }
    } else {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o040 | if writable { 0o020 } else { 0 }))?;
    }
    Ok(())
}

/// Mount points at or below `dir`, deepest first (from /proc/self/mountinfo).
fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

fn is_mount_point(dir: &Path) -> bool {
    mounts_below(dir).iter().any(|m| m == dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
    use serde_json::json;

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"volumes": volumes, "containers": [{"name": "app",
                "resources": {"limits": {"memory": "64Mi"}},
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/config"},
                    {"name": "scratch", "mountPath": "/data", "subPath": "logs/app"},
                    {"name": "scratch", "mountPath": "/ro", "readOnly": true}
                ]}]}
        }))
        .unwrap()
    }

    fn sources(data: &str) -> Sources {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"app.conf": data, "other": "x"}}))
                .unwrap();
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"token": "c2VjcmV0"}})).unwrap();
        let claim: PersistentVolumeClaim =
            serde_json::from_value(json!({"metadata": {"name": "claim"}, "spec": {"volumeName": "pv1"}})).unwrap();
        let pv: PersistentVolume =
            serde_json::from_value(json!({"metadata": {"name": "pv1"}, "spec": {"local": {"path": "/srv/pv1"}}}))
                .unwrap();
        Sources {
            config_maps: BTreeMap::from([("cfg".into(), Some(cm))]),
            secrets: BTreeMap::from([("s".into(), Some(secret))]),
            claims: BTreeMap::from([("claim".into(), Some(claim))]),
            volumes: BTreeMap::from([("pv1".into(), Some(pv))]),
            ..Default::default()
        }
    }

    fn host(dir: &Path) -> VolumeHost {
        VolumeHost { pods_dir: dir.join("pods"), tmpfs: false }
    }

    #[test]
    fn prepares_files_mounts_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let pod = pod(json!([
            {"name": "config", "configMap": {"name": "cfg", "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 0o600}]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "secret", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}]}},
            {"name": "all", "projected": {"sources": [{"configMap": {"name": "cfg", "items": [{"key": "other", "path": "other"}]}},
                {"secret": {"name": "s"}}, {"serviceAccountToken": {"path": "token-sa"}}]}},
            {"name": "maybe", "configMap": {"name": "absent", "optional": true}},
            {"name": "claim", "persistentVolumeClaim": {"claimName": "claim"}}
        ]));
        let facts = PodFacts::default();
        let prepared = host.prepare(&pod, &sources("v1"), &facts).unwrap();
        let config = &prepared["config"].host_path;
        assert!(config.ends_with("pods/u-1/volumes/kubernetes.io~configmap/config"));
        assert_eq!(fs::read_to_string(config.join("conf/app.conf")).unwrap(), "v1");
        assert_eq!(fs::metadata(config.join("conf/app.conf")).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!config.join("other").exists(), "items pick keys");
        let secret = &prepared["secret"].host_path;
        assert_eq!(fs::read_to_string(secret.join("token")).unwrap(), "secret");
        assert_eq!(fs::metadata(secret.join("token")).unwrap().permissions().mode() & 0o777, 0o400);
        let info = &prepared["info"].host_path;
        assert_eq!(fs::read_to_string(info.join("labels")).unwrap(), "app=\"web\"");
        assert_eq!(fs::read_to_string(info.join("mem")).unwrap(), "64");
        let all = &prepared["all"].host_path;
        assert_eq!(fs::read_to_string(all.join("other")).unwrap(), "x");
        assert_eq!(fs::read_to_string(all.join("token")).unwrap(), "secret");
        assert!(fs::read_dir(&prepared["maybe"].host_path).unwrap().any(|e| e.unwrap().file_name() == "..data"));
        assert_eq!(prepared["claim"].host_path, PathBuf::from("/srv/pv1"));

        let mounts = container_mounts(&pod.spec.as_ref().unwrap().containers[0], &prepared).unwrap();
        assert_eq!(mounts.len(), 3);
        assert!(mounts[0].readonly, "configMap volumes are read-only");
        assert!(mounts[1].host_path.ends_with("kubernetes.io~empty-dir/scratch/logs/app"));
        assert!(Path::new(&mounts[1].host_path).is_dir(), "the subPath directory is created");
        assert!(!mounts[1].readonly);
        assert!(mounts[2].readonly, "readOnly volumeMount");

        // An update of the ConfigMap reaches the volume.
        host.prepare(&pod, &sources("v2"), &facts).unwrap();
        assert_eq!(fs::read_to_string(config.join("conf/app.conf")).unwrap(), "v2");

        host.cleanup("u-1").unwrap();
        assert!(!host.pod_dir("u-1").exists());
    }

    /// Needs the right to mount (root, as on the project's machines).
    #[test]
    fn memory_empty_dirs_are_tmpfs_and_unmounted_on_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let host = VolumeHost { pods_dir: dir.path().join("pods"), tmpfs: true };
        let pod = pod(json!([{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]));
        let prepared = host.prepare(&pod, &Sources::default(), &PodFacts::default()).unwrap();
        let path = &prepared["scratch"].host_path;
        assert!(is_mount_point(path), "a tmpfs is mounted on {}", path.display());
        // Preparing again does not stack a second mount.
        host.prepare(&pod, &Sources::default(), &PodFacts::default()).unwrap();
        assert_eq!(mounts_below(path).len(), 1);
        host.cleanup("u-1").unwrap();
        assert!(!is_mount_point(path));
        assert!(!host.pod_dir("u-1").exists());
    }

    #[test]
    fn fs_group_owns_the_volumes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let mut pod = pod(json!([{"name": "scratch", "emptyDir": {}},
            {"name": "config", "configMap": {"name": "cfg", "defaultMode": 0o400}}]));
        pod.spec.as_mut().unwrap().security_context = serde_json::from_value(json!({"fsGroup": 2000})).unwrap();
        let prepared = host.prepare(&pod, &sources("v1"), &PodFacts::default()).unwrap();
        let scratch = fs::metadata(&prepared["scratch"].host_path).unwrap();
        assert_eq!(scratch.gid(), 2000);
        assert_eq!(scratch.permissions().mode() & 0o7777, 0o2777, "world-writable, setgid");
        let file = fs::metadata(prepared["config"].host_path.join("app.conf")).unwrap();
        assert_eq!(file.gid(), 2000);
        assert_eq!(file.permissions().mode() & 0o777, 0o440, "the group may read");
        let version = fs::read_link(prepared["config"].host_path.join("..data")).unwrap();
        host.prepare(&pod, &sources("v1"), &PodFacts::default()).unwrap();
        let again = fs::read_link(prepared["config"].host_path.join("..data")).unwrap();
        assert_eq!(version, again, "nothing changed, nothing rewritten");
    }

    #[test]
    fn failures_name_the_volume_and_cause() {
        let dir = tempfile::tempdir().unwrap();
        let host = host(dir.path());
        let missing = pod(json!([{"name": "config", "configMap": {"name": "nope"}}]));
        let err = host.prepare(&missing, &sources("v"), &PodFacts::default()).unwrap_err();
        assert_eq!(err.to_string(), "MountVolume.SetUp failed for volume \"config\" : configmap \"nope\" not found");
        let bad_key =
            pod(json!([{"name": "config", "configMap": {"name": "cfg", "items": [{"key": "k", "path": "k"}]}}]));
        let err = host.prepare(&bad_key, &sources("v"), &PodFacts::default()).unwrap_err();
        assert!(err.to_string().ends_with("configmap references non-existent config key: k"), "{err}");
        let unbound = pod(json!([{"name": "c", "persistentVolumeClaim": {"claimName": "other"}}]));
        assert!(host.prepare(&unbound, &sources("v"), &PodFacts::default()).is_err());
    }
}
