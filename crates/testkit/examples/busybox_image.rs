//! Writes the tests' busybox image (busybox-static, Debian's package) as an OCI tarball,
//! for machines without a registry: `busybox_image DIR [NAME]` writes DIR/busybox_1.tar
//! named `skiff.local/busybox:1`. scripts/up.sh puts it in DATA/agent/images, which the
//! agent imports at start.

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| anyhow::anyhow!("usage: busybox_image DIR [NAME]"))?;
    let name = args.next().unwrap_or_else(|| "skiff.local/busybox:1".to_string());
    let path = skiff_testkit::images::write_busybox(std::path::Path::new(&dir), &name)?;
    println!("{}", path.display());
    Ok(())
}
