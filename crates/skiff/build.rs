//! Link settings of the skiff binary: see docs/adr/0020-agent-memory.md.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // A position-dependent executable, as Go links the kubelet: no table of relative
        // relocations for the loader to read (1.8 MB) and no relocated read-only data to
        // copy (1.6 MB), in every skiff process, the node agent's idle memory above all.
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
