//! OCI images for tests, built on the spot without a registry: busybox-static (the
//! Debian package) as `/bin/busybox` with the applets tests use linked beside it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use skiff_agent::oci::{self, Entry, ImageConfig};

/// Where Debian's busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// The applets linked into the image's /bin.
pub const APPLETS: &[&str] = &[
    "sh", "sleep", "httpd", "wget", "nc", "cat", "echo", "ls", "true", "false", "env", "printenv", "hostname", "id",
    "ps", "kill", "mkdir", "rm", "touch", "test", "date", "grep", "head", "tail", "wc", "uname",
];

/// An OCI image tarball called `name` (e.g. `skiff.local/busybox:1`) whose one layer is
/// busybox-static with its applets; the default command is `sh`.
pub fn busybox(name: &str) -> Result<Vec<u8>> {
    busybox_variant(name, "")
}

/// [`busybox`] made distinct by `variant` (non-empty: a file /variant holding it and an
/// env var SKIFF_VARIANT): another image ID, for tests that need several images.
pub fn busybox_variant(name: &str, variant: &str) -> Result<Vec<u8>> {
    let binary = std::fs::read(BUSYBOX)
        .with_context(|| format!("reading {BUSYBOX}: install the Debian package busybox-static"))?;
    let mut entries = vec![
        Entry::Directory { path: "bin".into() },
        Entry::Directory { path: "tmp".into() },
        Entry::Directory { path: "www".into() },
        Entry::File { path: "bin/busybox".into(), mode: 0o755, contents: binary },
        Entry::File { path: "www/index.html".into(), mode: 0o644, contents: b"hello from skiff\n".to_vec() },
    ];
    entries.extend(
        APPLETS.iter().map(|applet| Entry::Symlink { path: format!("bin/{applet}"), target: "busybox".into() }),
    );
    let mut env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
    if !variant.is_empty() {
        entries.push(Entry::File { path: "variant".into(), mode: 0o644, contents: variant.as_bytes().to_vec() });
        env.push(format!("SKIFF_VARIANT={variant}"));
    }
    let layer = oci::layer(&entries)?;
    let config = ImageConfig { cmd: vec!["sh".into()], env, ..ImageConfig::default() };
    Ok(oci::image_tarball(name, &[layer], &config)?)
}

/// Writes [`busybox`] as `dir/FILE.tar` and returns the path.
pub fn write_busybox(dir: &Path, name: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let file = name.rsplit('/').next().unwrap_or(name).replace(':', "_");
    let path = dir.join(format!("{file}.tar"));
    std::fs::write(&path, busybox(name)?)?;
    Ok(path)
}
