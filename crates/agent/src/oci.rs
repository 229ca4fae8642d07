//! OCI images written without a registry: an image-layout tarball (`oci-layout`,
//! `index.json`, `blobs/sha256/…`) with uncompressed layers, named by the index annotation
//! containerd's importer reads (`io.containerd.image.name`). The agent builds its pause
//! image this way (see docs/adr/0008-pause-image-built-by-the-agent.md) and the tests
//! build their busybox images with the same code.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The pause image the agent builds and gives containerd as `sandbox_image`. Fully
/// qualified: CRI normalises names (`pause:1` would be looked up as
/// `docker.io/library/pause:1`) and tries a pull when the exact name is missing.
pub const PAUSE_IMAGE: &str = "skiff.local/pause:1";

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A file of a layer.
pub enum Entry {
    File { path: String, mode: u32, contents: Vec<u8> },
    Directory { path: String },
    Symlink { path: String, target: String },
}

/// The runtime config of an image (the `config` object of the OCI image config).
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
}

/// The OCI architecture name of this machine.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn header(kind: tar::EntryType, path: &str, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    // Paths are short and ASCII here; a bad one would be a bug in the caller's list.
    let _ = header.set_path(path);
    header
}

/// An uncompressed layer tarball of `entries`.
pub fn layer(entries: &[Entry]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        match entry {
            Entry::File { path, mode, contents } => {
                let mut h = header(tar::EntryType::Regular, path, *mode, contents.len() as u64);
                h.set_cksum();
                builder.append(&h, contents.as_slice())?;
            }
            Entry::Directory { path } => {
                let mut h = header(tar::EntryType::Directory, path, 0o755, 0);
                h.set_cksum();
                builder.append(&h, std::io::empty())?;
            }
            Entry::Symlink { path, target } => {
                let mut h = header(tar::EntryType::Symlink, path, 0o777, 0);
                h.set_link_name(target)?;
                h.set_cksum();
                builder.append(&h, std::io::empty())?;
            }
        }
    }
    builder.into_inner()
}

/// An OCI image-layout tarball of one image called `name` (fully qualified, e.g.
/// `skiff.local/busybox:1`) with `layers` (uncompressed tarballs) and `config`.
pub fn image_tarball(name: &str, layers: &[Vec<u8>], config: &ImageConfig) -> std::io::Result<Vec<u8>> {
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let mut runtime = serde_json::Map::new();
    let mut put = |key: &str, value: Value| {
        runtime.insert(key.to_string(), value);
    };
    if !config.entrypoint.is_empty() {
        put("Entrypoint", json!(config.entrypoint));
    }
    if !config.cmd.is_empty() {
        put("Cmd", json!(config.cmd));
    }
    if !config.env.is_empty() {
        put("Env", json!(config.env));
    }
    if !config.working_dir.is_empty() {
        put("WorkingDir", json!(config.working_dir));
    }
    let image_config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": architecture(),
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "skiff"}],
    })
    .to_string()
    .into_bytes();
    let descriptor =
        |media: &str, bytes: &[u8]| json!({"mediaType": media, "digest": digest(bytes), "size": bytes.len()});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": descriptor(MEDIA_CONFIG, &image_config),
        "layers": layers.iter().map(|l| descriptor(MEDIA_LAYER, l)).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    let tag = name.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or("latest", |(_, t)| t);
    let mut manifest_descriptor = descriptor(MEDIA_MANIFEST, &manifest);
    manifest_descriptor["annotations"] =
        json!({"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag});
    manifest_descriptor["platform"] = json!({"architecture": architecture(), "os": "linux"});
    let index = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_descriptor]})
        .to_string()
        .into_bytes();

    let mut entries = vec![
        Entry::File { path: "oci-layout".into(), mode: 0o644, contents: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec() },
        Entry::File { path: "index.json".into(), mode: 0o644, contents: index },
        Entry::Directory { path: "blobs".into() },
        Entry::Directory { path: "blobs/sha256".into() },
    ];
    let mut blob = |bytes: Vec<u8>| {
        let hex = digest(&bytes).trim_start_matches("sha256:").to_string();
        entries.push(Entry::File { path: format!("blobs/sha256/{hex}"), mode: 0o644, contents: bytes });
    };
    blob(image_config);
    blob(manifest);
    for l in layers {
        blob(l.clone());
    }
    // Two layers with the same content would be one blob; the tar would carry it twice,
    // harmlessly.
    layer(&entries)
}

/// A static x86-64 Linux executable that does nothing but wait for signals, forever:
/// `pause()` in a loop. 129 bytes: an ELF header, one loadable segment, nine bytes of code.
pub fn pause_executable_x86_64() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADER: u64 = 64 + 56;
    // loop: mov eax, 34 (SYS_pause); syscall; jmp loop
    let code: [u8; 9] = [0xb8, 34, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7];
    let size = HEADER + code.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // e_type: executable
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // e_machine: x86-64
    elf.extend_from_slice(&1u32.to_le_bytes()); // e_version
    elf.extend_from_slice(&(BASE + HEADER).to_le_bytes()); // e_entry: the code after the headers
    elf.extend_from_slice(&64u64.to_le_bytes()); // e_phoff: program header right after this one
    elf.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    elf.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
                                    // Program header: the whole file loaded read+execute at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R+X
    elf.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_vaddr
    elf.extend_from_slice(&BASE.to_le_bytes()); // p_paddr
    elf.extend_from_slice(&size.to_le_bytes()); // p_filesz
    elf.extend_from_slice(&size.to_le_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    elf.extend_from_slice(&code);
    elf
}

/// The pause image ([`PAUSE_IMAGE`]) as an OCI tarball, or None on an architecture it
/// has no executable for.
pub fn pause_image() -> Option<std::io::Result<Vec<u8>>> {
    if std::env::consts::ARCH != "x86_64" {
        return None;
    }
    let layer = layer(&[Entry::File { path: "pause".into(), mode: 0o755, contents: pause_executable_x86_64() }]);
    let config = ImageConfig { entrypoint: vec!["/pause".into()], ..ImageConfig::default() };
    Some(layer.and_then(|layer| image_tarball(PAUSE_IMAGE, &[layer], &config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn files(tarball: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(tarball);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mut bytes = Vec::new();
                e.read_to_end(&mut bytes).unwrap();
                (path, bytes)
            })
            .collect()
    }

    #[test]
    fn image_layout_is_consistent() {
        let layer = layer(&[
            Entry::Directory { path: "bin".into() },
            Entry::File { path: "bin/tool".into(), mode: 0o755, contents: b"x".to_vec() },
            Entry::Symlink { path: "bin/alias".into(), target: "tool".into() },
        ])
        .unwrap();
        let config = ImageConfig { cmd: vec!["sh".into()], ..Default::default() };
        let tarball = image_tarball("skiff.local/test:2", std::slice::from_ref(&layer), &config).unwrap();
        let files = files(&tarball);
        let get = |path: &str| files.iter().find(|(p, _)| p == path).map(|(_, b)| b.clone()).unwrap();
        let index: Value = serde_json::from_slice(&get("index.json")).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["annotations"]["io.containerd.image.name"], "skiff.local/test:2");
        assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "2");
        // Every descriptor points at a blob with that digest and size.
        let blob = |descriptor: &Value| {
            let digest = descriptor["digest"].as_str().unwrap();
            let bytes = get(&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")));
            assert_eq!(bytes.len() as u64, descriptor["size"].as_u64().unwrap());
            assert_eq!(super::digest(&bytes), digest);
            bytes
        };
        let manifest: Value = serde_json::from_slice(&blob(entry)).unwrap();
        let config: Value = serde_json::from_slice(&blob(&manifest["config"])).unwrap();
        assert_eq!(blob(&manifest["layers"][0]), layer);
        assert_eq!(config["rootfs"]["diff_ids"][0], super::digest(&layer));
        assert_eq!(config["config"]["Cmd"][0], "sh");
        assert!(config["config"].get("Entrypoint").is_none());
    }

    #[test]
    fn pause_executable_runs_until_killed() {
        if std::env::consts::ARCH != "x86_64" {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pause");
        std::fs::write(&path, pause_executable_x86_64()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(child.try_wait().unwrap().is_none(), "pause exited on its own");
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let image = pause_image().unwrap().unwrap();
        assert!(files(&image).iter().any(|(p, _)| p == "index.json"));
    }
}
