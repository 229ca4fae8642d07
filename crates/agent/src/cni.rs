//! Pod networking through CNI: the conflist the agent writes for containerd's CRI plugin
//! (a `cni0` bridge that is the pods' gateway, host-local
//! addresses from the node's pod CIDR, hostPorts through portmap). containerd sets up
//! each sandbox's loopback interface itself, so the chain does not list `loopback`.
//! The bridge does not masquerade (`ipMasq: false`): it would hide a pod's address from
//! pods on other nodes; [`crate::network::masquerade`] masquerades only traffic leaving
//! the cluster CIDR.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::ipam::Ipv4Cidr;

/// Debian's containernetworking-plugins put the plugins here.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/cni";
/// The network's name (host-local keeps its leases per network name).
pub const NETWORK_NAME: &str = "skiff";
/// The bridge the pods' veths are attached to.
pub const BRIDGE: &str = "cni0";

/// The node's CNI network configuration list.
pub fn conflist(pod_cidr: Ipv4Cidr, ipam_dir: &Path) -> serde_json::Value {
    json!({
        "cniVersion": "0.4.0",
        "name": NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir.to_string_lossy(),
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
        ]
    })
}

/// Writes the conflist into `conf_dir` (replacing any other skiff wrote before) and
/// returns its path.
pub fn write_conflist(conf_dir: &Path, ipam_dir: &Path, pod_cidr: Ipv4Cidr) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(conf_dir)?;
    std::fs::create_dir_all(ipam_dir)?;
    let path = conf_dir.join("10-skiff.conflist");
    let text = serde_json::to_string_pretty(&conflist(pod_cidr, ipam_dir)).unwrap_or_default();
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Whether the plugins the conflist names are installed in `bin_dir`.
pub fn missing_plugins(bin_dir: &Path) -> Vec<&'static str> {
    ["bridge", "host-local", "portmap", "loopback"].into_iter().filter(|p| !bin_dir.join(p).exists()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflist_has_bridge_gateway_host_local_and_portmap() {
        let list = conflist("10.42.0.0/24".parse().unwrap(), Path::new("/data/agent/cni/ipam"));
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], "cni0");
        assert_eq!((bridge["isGateway"].as_bool(), bridge["ipMasq"].as_bool()), (Some(true), Some(false)));
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.0.0/24");
        assert_eq!(bridge["ipam"]["dataDir"], "/data/agent/cni/ipam");
        let portmap = &list["plugins"][1];
        assert_eq!(portmap["type"], "portmap");
        assert_eq!(portmap["capabilities"]["portMappings"], true);

        let dir = tempfile::tempdir().unwrap();
        let path = write_conflist(&dir.path().join("net.d"), &dir.path().join("ipam"), "10.1.2.0/24".parse().unwrap())
            .unwrap();
        let written: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(written["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.1.2.0/24");
        assert_eq!(missing_plugins(dir.path()).len(), 4);
    }
}
