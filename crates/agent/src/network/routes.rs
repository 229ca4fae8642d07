//! host-gw routes: every other node's pod CIDR is routed via that node's InternalIP, kept
//! in step with the Nodes (added, changed and removed as they come, change and go).
//!
//! The routes the agent makes carry their own routing protocol number
//! ([`ROUTE_PROTOCOL`]), and only routes with that number are ever listed, changed or
//! removed: routes others made (DHCP, docker, an operator) are never touched, even one
//! to a pod CIDR (adding ours then fails and is reported instead).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::reflector::{self, reflector, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tracing::{debug, info, warn};

use super::podcidr::pod_cidr_of;
use super::{ip_json, NetworkError};

/// The `proto` of the agent's routes (`ip route show proto 147`); unassigned in
/// iproute2's rt_protos.
pub const ROUTE_PROTOCOL: &str = "147";

/// Routes by destination (a pod CIDR, as text) to their gateway.
pub type Routes = BTreeMap<String, Ipv4Addr>;

/// One change to the routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A route the agent does not have yet.
    Add { dst: String, via: Ipv4Addr },
    /// One of the agent's routes whose gateway moved.
    Replace { dst: String, via: Ipv4Addr },
    /// One of the agent's routes to a pod CIDR no node has any more.
    Delete { dst: String },
}

/// The routes this node needs: each other node's IPv4 pod CIDR via its IPv4 InternalIP
/// (nodes lacking either are skipped, as is a pod CIDR equal to this node's own).
pub fn desired(nodes: &[Node], own_name: &str) -> Routes {
    let own_cidr = nodes.iter().find(|n| n.name_any() == own_name).and_then(pod_cidr_of).map(|c| c.to_string());
    nodes
        .iter()
        .filter(|node| node.name_any() != own_name)
        .filter_map(|node| {
            let cidr = pod_cidr_of(node)?.to_string();
            let addresses = node.status.as_ref()?.addresses.as_ref()?;
            let via = addresses.iter().find(|a| a.type_ == "InternalIP").and_then(|a| a.address.parse().ok())?;
            Some((cidr, via))
        })
        .filter(|(cidr, _)| Some(cidr) != own_cidr.as_ref())
        .collect()
}

/// The agent's routes as `ip -json -4 route show proto 147` lists them.
pub fn parse_current(listing: &Value) -> Routes {
    let Some(routes) = listing.as_array() else { return Routes::new() };
    routes
        .iter()
        .filter_map(|r| {
            let dst = r["dst"].as_str()?.parse::<crate::ipam::Ipv4Cidr>().ok()?.to_string();
            Some((dst, r["gateway"].as_str()?.parse().ok()?))
        })
        .collect()
}

/// What turns `current` into `desired`.
pub fn plan(desired: &Routes, current: &Routes) -> Vec<Change> {
    let mut changes = Vec::new();
    for (dst, via) in desired {
        match current.get(dst) {
            None => changes.push(Change::Add { dst: dst.clone(), via: *via }),
            Some(now) if now != via => changes.push(Change::Replace { dst: dst.clone(), via: *via }),
            Some(_) => {}
        }
    }
    changes.extend(
        current.keys().filter(|dst| !desired.contains_key(*dst)).map(|dst| Change::Delete { dst: dst.clone() }),
    );
    changes
}

/// The `ip` arguments of a change.
pub fn command(change: &Change) -> Vec<String> {
    let words: Vec<&str> = match change {
        Change::Add { dst, .. } => vec!["route", "add", dst],
        Change::Replace { dst, .. } => vec!["route", "replace", dst],
        Change::Delete { dst } => vec!["route", "del", dst],
    };
    let mut args: Vec<String> = words.into_iter().map(str::to_string).collect();
    if let Change::Add { via, .. } | Change::Replace { via, .. } = change {
        args.extend(["via".to_string(), via.to_string()]);
    }
    args.extend(["proto".to_string(), ROUTE_PROTOCOL.to_string()]);
    args
}

/// Brings the agent's routes in line with `wanted`; true when every change was made.
pub async fn apply(wanted: &Routes) -> Result<bool, NetworkError> {
    let current = parse_current(&ip_json(&["-4", "route", "show", "proto", ROUTE_PROTOCOL]).await?);
    let mut all_made = true;
    for change in plan(wanted, &current) {
        let args = command(&change);
        let argv: Vec<&str> = ["ip"].into_iter().chain(args.iter().map(String::as_str)).collect();
        match skiff_proxy::command::run(&argv, None).await {
            Ok(_) => info!(?change, "pod network route"),
            Err(e) => {
                warn!(?change, error = %e, "changing a pod network route failed");
                all_made = false;
            }
        }
    }
    Ok(all_made)
}

/// Keeps the routes in step with the Nodes until dropped: whenever the routes the Nodes
/// call for change, and every `resync` (to repair routes removed behind the agent's back).
pub async fn run(client: Client, own_name: String, resync: Duration) {
    let (store, writer) = reflector::store();
    let events = reflector(writer, watcher(Api::<Node>::all(client), watcher::Config::default())).default_backoff();
    let mut events = std::pin::pin!(events);
    // The first listing must be in the store before routes are computed from it.
    loop {
        match events.next().await {
            None => return,
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => debug!(error = %e, "node watch failed"),
        }
    }
    let mut tick = tokio::time::interval(resync);
    // What the table was last brought to; Node updates that change no route (heartbeats)
    // then cost nothing.
    let mut applied: Option<Routes> = None;
    loop {
        let forced = tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Err(e)) => { debug!(error = %e, "node watch failed"); continue; }
                Some(Ok(_)) => false,
            },
            _ = tick.tick() => true,
        };
        let wanted = desired_in(&store, &own_name);
        if !forced && applied.as_ref() == Some(&wanted) {
            continue;
        }
        applied = match apply(&wanted).await {
            Ok(true) => Some(wanted),
            Ok(false) => None,
            Err(e) => {
                warn!(error = %e, "syncing pod network routes failed");
                None
            }
        };
    }
}

fn desired_in(store: &Store<Node>, own_name: &str) -> Routes {
    let nodes: Vec<Node> = store.state().iter().map(|n| (**n).clone()).collect();
    desired(&nodes, own_name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]},
        }))
        .unwrap()
    }

    fn routes(pairs: &[(&str, &str)]) -> Routes {
        pairs.iter().map(|(d, v)| (d.to_string(), v.parse().unwrap())).collect()
    }

    #[test]
    fn routes_every_other_node_with_a_pod_cidr_via_its_internal_ip() {
        let nodes = [
            node("a", Some("10.42.0.0/24"), "10.213.0.2"),
            node("b", Some("10.42.1.0/24"), "10.213.0.3"),
            node("waiting", None, "10.213.0.4"),
            node("clash", Some("10.42.0.0/24"), "10.213.0.5"),
            node("v6", Some("fd00::/64"), "10.213.0.6"),
        ];
        assert_eq!(desired(&nodes, "a"), routes(&[("10.42.1.0/24", "10.213.0.3")]));
    }

    #[test]
    fn plans_adds_replacements_and_deletions_of_its_own_routes_only() {
        let listing = json!([
            {"dst": "10.42.1.0/24", "gateway": "10.213.0.3", "dev": "eth0", "protocol": "147", "flags": []},
            {"dst": "10.42.2.0/24", "gateway": "10.213.0.9", "dev": "eth0", "protocol": "147", "flags": []},
            {"dst": "10.42.3.0/24", "gateway": "10.213.0.4", "dev": "eth0", "protocol": "147", "flags": []},
        ]);
        let current = parse_current(&listing);
        let wanted =
            routes(&[("10.42.1.0/24", "10.213.0.3"), ("10.42.2.0/24", "10.213.0.5"), ("10.42.4.0/24", "10.213.0.6")]);
        assert_eq!(
            plan(&wanted, &current),
            vec![
                Change::Replace { dst: "10.42.2.0/24".into(), via: "10.213.0.5".parse().unwrap() },
                Change::Add { dst: "10.42.4.0/24".into(), via: "10.213.0.6".parse().unwrap() },
                Change::Delete { dst: "10.42.3.0/24".into() },
            ]
        );
        assert!(plan(&current, &current).is_empty());
        assert_eq!(
            command(&Change::Add { dst: "10.42.4.0/24".into(), via: "10.213.0.6".parse().unwrap() }).join(" "),
            "route add 10.42.4.0/24 via 10.213.0.6 proto 147"
        );
        assert_eq!(
            command(&Change::Delete { dst: "10.42.3.0/24".into() }).join(" "),
            "route del 10.42.3.0/24 proto 147"
        );
    }
}
