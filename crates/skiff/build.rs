//! Link settings of the skiff binary.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        // Relative relocations packed (DT_RELR; glibc 2.36 and binutils 2.38 or later, as
        // Debian 12 has): the loader reads a table of kilobytes instead of megabytes of RELA
        // entries at every start, pages that would stay resident in every skiff process
        // (the node agent's idle memory above all).
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
