//! hostPath type checks, with the kubelet's messages: `Directory`, `File`, `Socket`,
//! `CharDevice`, `BlockDevice` must exist as that type; `DirectoryOrCreate` and
//! `FileOrCreate` create what is missing; an empty type checks nothing.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

pub fn check(path: &Path, kind: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path);
    let fail = |what: &str| Err(format!("hostPath type check failed: {shown} is not {what}"));
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => fail("a directory"),
            Err(_) => {
                fs::create_dir_all(path).map_err(|e| format!("create {shown}: {e}"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
            }
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => fail("a file"),
            Err(_) => {
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("create {shown}: {e}"))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())
            }
        },
        "Directory" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            _ => fail("a directory"),
        },
        "File" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            _ => fail("a file"),
        },
        "Socket" => match meta {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => fail("a socket file"),
        },
        "CharDevice" => match meta {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => fail("a character device"),
        },
        "BlockDevice" => match meta {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => fail("a block device"),
        },
        other => Err(format!("invalid hostPath type {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_and_creates() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("made/deep");
        check(&sub, "DirectoryOrCreate").unwrap();
        assert!(sub.is_dir());
        let file = dir.path().join("file");
        check(&file, "FileOrCreate").unwrap();
        assert!(file.is_file());
        check(&file, "File").unwrap();
        assert_eq!(
            check(&file, "Directory").unwrap_err(),
            format!("hostPath type check failed: {} is not a directory", file.display())
        );
        assert!(check(&sub, "File").is_err());
        assert!(check(&file, "Socket").unwrap_err().ends_with("is not a socket file"));
        assert!(check(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(check(&dir.path().join("absent"), "Directory").is_err());
        assert!(check(&dir.path().join("absent"), "").is_ok());
    }
}
