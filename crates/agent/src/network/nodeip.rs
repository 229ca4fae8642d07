//! The node's IP, chosen predictably (k3s' `--flannel-iface` guesswork avoided): the
//! first global IPv4 address of the interface the default route (lowest metric) leaves
//! by; with no default route, the first global IPv4 address of the lowest-index
//! interface that is up. `--node-ip` overrides both.

use std::net::Ipv4Addr;

use serde_json::Value;

use super::{ip_json, NetworkError};

/// The node IP as described in the module docs, None when the machine has no global
/// IPv4 address at all.
pub async fn detect() -> Result<Option<Ipv4Addr>, NetworkError> {
    let routes = ip_json(&["-4", "route", "show", "default"]).await?;
    let addresses = ip_json(&["-4", "address", "show", "up"]).await?;
    Ok(choose(&routes, &addresses))
}

/// The choice from `ip -json -4 route show default` and `ip -json -4 address show up`.
pub fn choose(default_routes: &Value, addresses: &Value) -> Option<Ipv4Addr> {
    let interfaces = interfaces(addresses);
    if let Some(device) = default_route_device(default_routes) {
        if let Some((_, _, address)) = interfaces.iter().find(|(_, name, _)| *name == device) {
            return Some(*address);
        }
    }
    interfaces.iter().min_by_key(|(index, _, _)| *index).map(|(_, _, address)| *address)
}

/// The device of the default route with the lowest metric.
fn default_route_device(routes: &Value) -> Option<String> {
    let routes = routes.as_array()?;
    let best = routes.iter().filter(|r| r["dev"].is_string()).min_by_key(|r| r["metric"].as_u64().unwrap_or(0))?;
    best["dev"].as_str().map(str::to_string)
}

/// (index, name, first global IPv4) of each up, non-loopback interface that has one.
fn interfaces(addresses: &Value) -> Vec<(u64, &str, Ipv4Addr)> {
    let Some(list) = addresses.as_array() else { return Vec::new() };
    list.iter()
        .filter(|link| {
            let flags = link["flags"].as_array().map(Vec::as_slice).unwrap_or_default();
            !flags.iter().any(|f| f == "LOOPBACK")
        })
        .filter_map(|link| {
            let infos = link["addr_info"].as_array()?;
            let address = infos.iter().find_map(|info| {
                (info["family"] == "inet" && info["scope"] == "global").then(|| info["local"].as_str()?.parse().ok())?
            })?;
            Some((link["ifindex"].as_u64()?, link["ifname"].as_str()?, address))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn link(index: u64, name: &str, address: &str, scope: &str) -> Value {
        json!({"ifindex": index, "ifname": name, "flags": ["BROADCAST", "UP"], "operstate": "UP",
               "addr_info": [{"family": "inet", "local": address, "prefixlen": 24, "scope": scope}]})
    }

    #[test]
    fn prefers_the_default_route_interface() {
        let addresses = json!([
            {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP"],
             "addr_info": [{"family": "inet", "local": "127.0.0.1", "scope": "host"}]},
            link(2, "eth0", "192.168.1.5", "global"),
            link(3, "eth1", "10.0.0.7", "global"),
        ]);
        let routes = json!([
            {"dst": "default", "gateway": "10.0.0.1", "dev": "eth1", "metric": 100},
            {"dst": "default", "gateway": "192.168.1.1", "dev": "eth0", "metric": 600},
        ]);
        assert_eq!(choose(&routes, &addresses), Some(Ipv4Addr::new(10, 0, 0, 7)));
    }

    #[test]
    fn without_a_default_route_takes_the_lowest_index_interface() {
        let addresses = json!([
            link(5, "cni0", "10.42.0.1", "global"),
            link(3, "eth1", "10.0.0.7", "link"),
            link(4, "veth", "10.213.0.2", "global")
        ]);
        assert_eq!(choose(&json!([]), &addresses), Some(Ipv4Addr::new(10, 213, 0, 2)));
        assert_eq!(choose(&json!([]), &json!([])), None);
    }
}
