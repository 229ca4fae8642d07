//! The host's pod network between tests. Each real-container test starts a fresh
//! containerd whose IPAM hands out 10.42.0.2 onwards again, on the one host `cni0`. A pod
//! network namespace left by an earlier run (a test killed before its cleanup) keeps its
//! veth on that bridge with the same address, and then answers ARP for the new pod's IP:
//! connections to the pod time out. [`remove_leaked_pod_networks`] clears those first.
//! Tests that run such a node hold the bridge alone (one at a time on a machine), so no
//! sandbox is being set up (its namespace still empty) while they sweep.

use std::process::Command;

/// Where containerd pins its sandboxes' network namespaces (`cni-<uuid>`).
const NETNS_DIR: &str = "/run/netns";

/// Removes every sandbox network namespace that no process is in any more (each live
/// sandbox keeps its pause process there), with its veth. Returns their names.
pub fn remove_leaked_pod_networks() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("cni-") || has_processes(&name) {
            continue;
        }
        // Deleting the namespace's end of the veth pair takes the bridge's end with it,
        // even when the namespace itself is still mounted elsewhere and cannot go.
        let _ = Command::new("ip").args(["-n", &name, "link", "delete", "eth0"]).output();
        let _ = Command::new("ip").args(["netns", "delete", &name]).output();
        removed.push(name);
    }
    removed
}

/// The processes in the pinned network namespace `netns`; None when `ip` cannot tell.
pub(crate) fn pids_in(netns: &str) -> Option<Vec<String>> {
    let output = Command::new("ip").args(["netns", "pids", netns]).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).split_whitespace().map(String::from).collect())
}

fn has_processes(netns: &str) -> bool {
    // Cannot tell: keep it.
    pids_in(netns).is_none_or(|pids| !pids.is_empty())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn ip(args: &[&str]) {
        let status = Command::new("ip").args(args).status().unwrap();
        assert!(status.success(), "ip {}", args.join(" "));
    }

    #[test]
    fn only_namespaces_without_processes_are_removed() {
        let leaked = format!("cni-sweep-test-{}-leaked", std::process::id());
        let live = format!("cni-sweep-test-{}-live", std::process::id());
        let host_end = format!("swp{}", std::process::id());
        ip(&["netns", "add", &leaked]);
        ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &leaked]);
        ip(&["netns", "add", &live]);
        let mut sleeper = Command::new("ip").args(["netns", "exec", &live, "sleep", "30"]).spawn().unwrap();
        while !has_processes(&live) {
            std::thread::sleep(Duration::from_millis(20));
        }

        let removed = remove_leaked_pod_networks();
        let live_kept = Path::new(NETNS_DIR).join(&live).exists();
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let _ = Command::new("ip").args(["netns", "delete", &live]).status();

        assert!(removed.contains(&leaked), "{removed:?}");
        assert!(!Path::new(NETNS_DIR).join(&leaked).exists());
        let host_link = Command::new("ip").args(["link", "show", &host_end]).output().unwrap();
        assert!(!host_link.status.success(), "the veth's host end is gone with it");
        assert!(!removed.contains(&live) && live_kept, "{removed:?}");
    }
}
