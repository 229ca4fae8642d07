//! glibc's allocator, tuned for the processes that take API objects in bursts (`skiff
//! server`, `skiff controller-manager`): see docs/adr/0019-glibc-malloc-tunables.md.
//!
//! Tunables are read by glibc when a process starts, so the process sets them and runs
//! itself again (same PID, same arguments) before doing anything else. A GLIBC_TUNABLES
//! the user set is left alone, which also ends the loop.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// More freed chunks kept per thread and size (fewer trips into `_int_malloc`), and no
/// heap trimming or mmap for buffers under 4 MiB (a burst's list bodies and batches are
/// allocated and freed again at once).
pub const TUNABLES: &str =
    "glibc.malloc.tcache_count=256:glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=4194304";

/// Runs this process again with [`TUNABLES`], unless GLIBC_TUNABLES is already set.
/// Returns only when it does not (or cannot) re-run; then the defaults stay.
pub fn tune() {
    if std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
    let error = Command::new(&exe).arg0(arg0).args(args).env("GLIBC_TUNABLES", TUNABLES).exec();
    tracing::debug!(%error, "running with glibc's default allocator settings");
}
