//! Masquerade for pod traffic leaving the cluster: pods keep their own address towards
//! every other pod (so a pod on another node sees the real source), and traffic from the
//! cluster CIDR to anywhere else leaves with the node's address. The rules live in the
//! agent's own nftables table, `ip skiff-nat`, replaced in one `nft -f -` transaction;
//! no other table is touched. Forwarding is switched on in the agent's network namespace.
//!
//! A forward `accept` here would not help against a DROP policy elsewhere (docker's
//! iptables FORWARD chain): in nftables an accept only ends its own base chain, and every
//! other base chain on the hook still sees the packet. So the table has no forward chain;
//! see ADR 0014.

use std::path::Path;

use tracing::info;

use skiff_proxy::Nft;

use super::NetworkError;
use crate::ipam::Ipv4Cidr;

/// The agent's table.
pub const TABLE: &str = "skiff-nat";

/// The `nft -f -` script that (re)creates the table: declaring it first makes the delete
/// valid when it does not exist yet, so the whole script is one idempotent transaction.
pub fn ruleset(cluster_cidr: Ipv4Cidr) -> String {
    format!(
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {cluster_cidr} ip daddr {cluster_cidr} return\n\
         \t\tip saddr {cluster_cidr} ip daddr 224.0.0.0/4 return\n\
         \t\tip saddr {cluster_cidr} masquerade fully-random\n\
         \t}}\n\
         }}\n"
    )
}

/// Switches IPv4 forwarding on (in this network namespace) and installs the table.
pub async fn apply(cluster_cidr: Ipv4Cidr) -> Result<(), NetworkError> {
    let forward = Path::new("/proc/sys/net/ipv4/ip_forward");
    if std::fs::read_to_string(forward).map(|v| v.trim() != "1").unwrap_or(true) {
        std::fs::write(forward, "1")
            .map_err(|source| NetworkError::Io { what: "enabling ip_forward".into(), source })?;
    }
    Nft::default().apply(&ruleset(cluster_cidr)).await?;
    info!(table = TABLE, %cluster_cidr, "pod traffic leaving the cluster CIDR is masqueraded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masquerades_only_traffic_leaving_the_cluster_cidr() {
        let text = ruleset("10.42.0.0/16".parse().unwrap());
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        assert_eq!(&lines[..3], ["table ip skiff-nat", "delete table ip skiff-nat", "table ip skiff-nat {"]);
        assert!(lines.contains(&"type nat hook postrouting priority srcnat; policy accept;"), "{text}");
        let rules: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("ip saddr")).collect();
        assert_eq!(
            rules,
            [
                "ip saddr 10.42.0.0/16 ip daddr 10.42.0.0/16 return",
                "ip saddr 10.42.0.0/16 ip daddr 224.0.0.0/4 return",
                "ip saddr 10.42.0.0/16 masquerade fully-random",
            ]
        );
    }
}
