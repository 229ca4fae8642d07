//! Writing a set of files into a volume directory so that readers always see one whole
//! version, as the kubelet's AtomicWriter does: the files go into a fresh hidden
//! timestamped directory, a `..data` symlink is swapped to it with one rename, and each
//! visible top-level name is a symlink through `..data`. A process reading `key` in the
//! container sees the old or the new content, never a mix; updates reach running pods.
//!
//! ```text
//! volume/
//!   ..2026_11_22_01_02_03.123456789/   the current version's files
//!   ..data -> ..2026_11_22_01_02_03.123456789
//!   key -> ..data/key
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path};

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// One file of a volume's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Files by relative path (`a/b.txt`).
pub type Payload = BTreeMap<String, File>;

/// Whether `path` is a relative path that stays inside the volume (no `..`, not
/// absolute, not starting with `..` which the writer keeps for itself).
pub fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with("..")
        && Path::new(path).components().all(|c| matches!(c, Component::Normal(_)))
}

/// Every file below `dir`, by path relative to `base`.
fn read_tree(base: &Path, dir: &Path, out: &mut Payload) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            read_tree(base, &path, out)?;
        } else {
            let relative = path.strip_prefix(base).map_err(io::Error::other)?.to_string_lossy().into_owned();
            out.insert(relative, File { data: fs::read(&path)?, mode: meta.permissions().mode() & 0o7777 });
        }
    }
    Ok(())
}

/// A name for a new version directory, unique and ordered in time.
fn version_name() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    let stamp = now.strftime("%Y_%m_%d_%H_%M_%S");
    format!("..{stamp}.{:09}{:04x}", now.subsec_nanosecond(), rand::random::<u16>())
}

/// Makes `dir` hold exactly `payload`. Returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        if !valid_path(path) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid path {path:?}")));
        }
    }
    fs::create_dir_all(dir)?;
    let data_link = dir.join(DATA);
    let old = fs::read_link(&data_link).ok();
    if let Some(old) = &old {
        let mut current = Payload::new();
        if read_tree(&dir.join(old), &dir.join(old), &mut current).is_ok() && &current == payload {
            return Ok(false);
        }
    }

    let version = version_name();
    let version_dir = dir.join(&version);
    fs::create_dir(&version_dir)?;
    fs::set_permissions(&version_dir, fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let target = version_dir.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&target, &file.data)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(file.mode))?;
    }

    // The swap: a new link beside the old one, renamed over it.
    let tmp = dir.join(DATA_TMP);
    let _ = fs::remove_file(&tmp);
    symlink(&version, &tmp)?;
    fs::rename(&tmp, &data_link)?;

    // Visible names: one link per top-level entry, stale ones removed.
    let top: BTreeSet<&str> = payload.keys().filter_map(|p| p.split('/').next()).collect();
    for name in &top {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(name), &link)?;
        }
    }
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !top.contains(name.as_str()) {
            fs::remove_file(dir.join(&name))?;
        }
    }
    if let Some(old) = old {
        fs::remove_dir_all(dir.join(old))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files.iter().map(|(p, d, m)| (p.to_string(), File { data: d.as_bytes().to_vec(), mode: *m })).collect()
    }

    #[test]
    fn writes_swaps_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let volume = dir.path().join("vol");
        assert!(write(&volume, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)])).unwrap());
        assert_eq!(fs::read_to_string(volume.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(volume.join("sub/b")).unwrap(), "2");
        assert_eq!(fs::read_link(volume.join("a")).unwrap(), Path::new("..data/a"), "visible names go through ..data");
        let first = fs::read_link(volume.join(DATA)).unwrap();
        assert_eq!(fs::metadata(volume.join("sub/b")).unwrap().permissions().mode() & 0o777, 0o400);

        assert!(!write(&volume, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)])).unwrap(), "unchanged");
        assert_eq!(fs::read_link(volume.join(DATA)).unwrap(), first);

        assert!(write(&volume, &payload(&[("a", "changed", 0o644), ("c", "3", 0o644)])).unwrap());
        assert_eq!(fs::read_to_string(volume.join("a")).unwrap(), "changed");
        assert_eq!(fs::read_to_string(volume.join("c")).unwrap(), "3");
        assert!(fs::symlink_metadata(volume.join("sub")).is_err(), "a removed key disappears");
        assert!(!volume.join(&first).exists(), "the old version is gone");
        let entries: Vec<String> =
            fs::read_dir(&volume).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(entries.len(), 4, "a, c, ..data and one version: {entries:?}");
    }

    #[test]
    fn refuses_paths_outside_the_volume() {
        for bad in ["../x", "/etc/passwd", "a/../../b", "..data", ""] {
            assert!(!valid_path(bad), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(write(dir.path(), &payload(&[("../escape", "x", 0o644)])).is_err());
        assert!(valid_path("a/b.txt"));
    }
}
