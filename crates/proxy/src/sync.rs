//! Programming the kernel: [`Syncer`] remembers the model it last applied and turns each
//! new model into the smallest transaction that reaches it: a full one the first time and
//! after any failure (the kernel's state is then unknown), a partial one otherwise.
//!
//! A partial sync renders only the service ports whose model changed — before and after —
//! and writes the difference between those two fragments, so one endpoint change costs
//! the same with 10 Services as with 10,000. Two kinds of object are shared by several
//! ports. Hairpin set members (Services may share an endpoint address) are counted: added
//! when first needed, deleted when no port needs them any more. The `spread-PROTO-N`
//! chains are created when first needed and then kept until the next full sync, even
//! without users: a Service that scales by one moves between such chains, and when both
//! exist the change is map elements only ([`SyncKind::Elements`], no nft run). There is
//! at most one per protocol and endpoint count.
//!
//! After a partial sync, the conntrack entries of UDP endpoints a port no longer uses are
//! deleted, as kube-proxy does: UDP flows have no end, and an entry would keep a client
//! talking to a gone endpoint until it times out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Instant;

use tracing::{debug, warn};

use crate::model::Model;
use crate::model::{Endpoint, Protocol, ServicePort};
use crate::netlink::{NetfilterSocket, StaleFlow};
use crate::nft::{Nft, NftError};
use crate::ruleset::{hairpin_keys, Map, RenderOptions, Ruleset};
use crate::transaction;

/// What one sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// The table was recreated.
    Full,
    /// Only the changes were written, with nft.
    Partial,
    /// Only map elements changed; they were written over netlink (crate::netlink).
    Elements,
    /// Nothing had changed; nft was not run.
    Unchanged,
}

/// What the kernel holds after a successful sync.
struct Programmed {
    model: Model,
    users: SharedObjects,
}

/// The shared objects in the kernel.
#[derive(Debug, Default, PartialEq, Eq)]
struct SharedObjects {
    /// Hairpin set member → how many service ports need it.
    hairpin: BTreeMap<String, usize>,
    /// The shared chains that exist, used or not.
    chains: BTreeSet<String>,
}

impl SharedObjects {
    fn of(model: &Model, ruleset: &Ruleset) -> Self {
        let mut hairpin = BTreeMap::new();
        for port in model.ports.values() {
            for key in hairpin_keys(port) {
                *hairpin.entry(key).or_insert(0) += 1;
            }
        }
        SharedObjects { hairpin, chains: ruleset.shared_chains.keys().cloned().collect() }
    }
}

/// Counts before and after one partial sync: object → (users before, users after).
type Transitions = BTreeMap<String, (usize, usize)>;

/// Applies `delta` users of `key` to `counts`, remembering its first count in `transitions`.
fn count(counts: &mut BTreeMap<String, usize>, transitions: &mut Transitions, key: &str, delta: isize) {
    let current = counts.get(key).copied().unwrap_or(0);
    let entry = transitions.entry(key.to_string()).or_insert((current, current));
    entry.1 = entry.1.saturating_add_signed(delta);
    if entry.1 == 0 {
        counts.remove(key);
    } else {
        counts.insert(key.to_string(), entry.1);
    }
}

/// The conntrack entries to delete after `previous` (a UDP port as it was programmed)
/// changed into its state in `now`: those of each endpoint it no longer uses, for each
/// address and port it was reached on (cluster IP, external IPs, node port).
fn stale_udp_flows(previous: &ServicePort, now: &Model) -> Vec<StaleFlow> {
    if previous.key.protocol != Protocol::Udp {
        return Vec::new();
    }
    let current = now.ports.get(&previous.key);
    let still_used = |endpoint: &Endpoint| {
        current.is_some_and(|p| p.cluster_endpoints.contains(endpoint) || p.local_endpoints.contains(endpoint))
    };
    let gone: BTreeSet<Ipv4Addr> = previous
        .cluster_endpoints
        .iter()
        .chain(&previous.local_endpoints)
        .filter(|endpoint| !still_used(endpoint))
        .map(|endpoint| endpoint.ip)
        .collect();
    let mut destinations: Vec<(Option<Ipv4Addr>, u16)> = vec![(Some(previous.cluster_ip), previous.key.port)];
    destinations.extend(previous.external_ips.iter().map(|ip| (Some(*ip), previous.key.port)));
    destinations.extend(previous.node_port.map(|port| (None, port)));
    gone.iter()
        .flat_map(|endpoint| {
            destinations.iter().map(|(destination, port)| StaleFlow {
                destination: *destination,
                port: *port,
                endpoint: *endpoint,
            })
        })
        .collect()
}

pub struct Syncer {
    nft: Nft,
    options: RenderOptions,
    /// None when unknown: the next sync is full.
    programmed: Option<Programmed>,
    /// For map elements and UDP conntrack cleanup; opened at the first sync.
    netlink: NetlinkPath,
}

enum NetlinkPath {
    NotOpened,
    Open(NetfilterSocket),
    /// Opening failed (logged once): everything goes through nft.
    Unavailable,
}

impl Syncer {
    pub fn new(nft: Nft, options: RenderOptions) -> Self {
        Syncer { nft, options, programmed: None, netlink: NetlinkPath::NotOpened }
    }

    /// Makes the next sync a full one.
    pub fn invalidate(&mut self) {
        self.programmed = None;
    }

    /// Programs `model`.
    pub async fn sync(&mut self, model: &Model) -> Result<SyncKind, NftError> {
        let started = Instant::now();
        // Taken: if applying fails, the kernel's state is unknown and stays so.
        let (kind, bytes, programmed) = match self.programmed.take() {
            None => {
                let ruleset = Ruleset::render(model, &self.options);
                let bytes = match self.full_with_netlink(&ruleset).await {
                    Ok(Some(bytes)) => bytes,
                    outcome => {
                        if let Err(error) = outcome {
                            warn!(%error, "full sync with netlink failed; recreating the table with nft");
                        }
                        let script = transaction::full(&ruleset);
                        self.nft.apply(&script).await?;
                        script.len()
                    }
                };
                let users = SharedObjects::of(model, &ruleset);
                (SyncKind::Full, bytes, Programmed { model: model.clone(), users })
            }
            Some(Programmed { model: mut old, mut users }) => {
                let (before, after) = self.partial_fragments(&old, model, &mut users);
                let script = transaction::partial(&before, &after);
                if script.is_empty() {
                    self.programmed = Some(Programmed { model: old, users });
                    return Ok(SyncKind::Unchanged);
                }
                let elements_only = before.chains == after.chains && before.sets == after.sets;
                let kind = if elements_only && self.apply_elements(&before, &after).await? {
                    SyncKind::Elements
                } else {
                    self.nft.apply(&script).await?;
                    SyncKind::Partial
                };
                // Only the changed ports are copied: a change costs the same whatever the
                // number of Services.
                let mut stale_ports = Vec::new();
                for (key, port) in &model.ports {
                    if old.ports.get(key) != Some(port) {
                        if let Some(previous) = old.ports.insert(key.clone(), port.clone()) {
                            stale_ports.push(previous);
                        }
                    }
                }
                let removed = old.ports.iter().filter(|(key, _)| !model.ports.contains_key(*key)).map(|(_, p)| p);
                let stale: Vec<StaleFlow> =
                    stale_ports.iter().chain(removed).flat_map(|previous| stale_udp_flows(previous, model)).collect();
                old.ports.retain(|key, _| model.ports.contains_key(key));
                if !stale.is_empty() {
                    if let Some(socket) = self.socket() {
                        if let Err(error) = socket.delete_conntrack(stale).await {
                            warn!(%error, "deleting conntrack entries of removed UDP endpoints failed");
                        }
                    }
                }
                (kind, script.len(), Programmed { model: old, users })
            }
        };
        self.programmed = Some(programmed);
        debug!(?kind, ports = model.ports.len(), bytes, took = ?started.elapsed(), "proxy rules synced");
        Ok(kind)
    }

    /// The netlink socket, opened at the first call; None if it cannot be opened.
    fn socket(&mut self) -> Option<NetfilterSocket> {
        if let NetlinkPath::NotOpened = self.netlink {
            self.netlink = match NetfilterSocket::open(self.nft.namespace()) {
                Ok(socket) => NetlinkPath::Open(socket),
                Err(error) => {
                    warn!(%error, "no netfilter netlink socket: every sync runs nft, UDP conntrack is left to time out");
                    NetlinkPath::Unavailable
                }
            };
        }
        match &self.netlink {
            NetlinkPath::Open(socket) => Some(socket.clone()),
            _ => None,
        }
    }

    /// Applies the element changes from `before` to `after` over netlink; false when that
    /// path is unavailable or cannot express them (nft must apply them).
    async fn apply_elements(&mut self, before: &Ruleset, after: &Ruleset) -> Result<bool, NftError> {
        let Some(socket) = self.socket() else {
            return Ok(false);
        };
        Ok(socket.apply(&[], &transaction::element_changes(before, after)).await?)
    }

    /// A full sync in three transactions, each leaving a coherent table (see
    /// [`transaction`]): the objects with nft, every map's elements replaced in one
    /// netlink batch, then stale objects deleted. Returns the bytes sent to nft, or None
    /// when netlink cannot carry the elements (the caller recreates the table with nft).
    async fn full_with_netlink(&mut self, ruleset: &Ruleset) -> Result<Option<usize>, NftError> {
        let Some(socket) = self.socket() else {
            return Ok(None);
        };
        let script = transaction::refresh(ruleset);
        self.nft.apply(&script).await?;
        if !socket.apply(&Map::ALL, &transaction::all_elements(ruleset)).await? {
            return Ok(None);
        }
        let listing = self.nft.run(&["-t", "-f", "-"], Some(&transaction::list_objects())).await?;
        let stale = transaction::remove_stale(&listing, ruleset);
        if !stale.is_empty() {
            self.nft.apply(&stale).await?;
        }
        Ok(Some(script.len() + stale.len()))
    }

    /// The objects that change from `old` to `new` — before and after — rendering only
    /// the ports that differ; updates the users of shared objects. Shared objects appear
    /// only when they are created or deleted.
    fn partial_fragments(&self, old: &Model, new: &Model, users: &mut SharedObjects) -> (Ruleset, Ruleset) {
        let (mut before, mut after) = (Ruleset::default(), Ruleset::default());
        let mut hairpin = Transitions::new();
        let mut track = |port, delta| {
            for key in hairpin_keys(port) {
                count(&mut users.hairpin, &mut hairpin, &key, delta);
            }
        };
        for (key, port) in &new.ports {
            match old.ports.get(key) {
                Some(previous) if previous == port => {}
                previous => {
                    if let Some(previous) = previous {
                        before.add_port(previous, &self.options);
                        track(previous, -1);
                    }
                    after.add_port(port, &self.options);
                    track(port, 1);
                }
            }
        }
        for (key, previous) in &old.ports {
            if !new.ports.contains_key(key) {
                before.add_port(previous, &self.options);
                track(previous, -1);
            }
        }
        // Only shared objects that appear or disappear are written.
        let (mut before_hairpin, mut after_hairpin) = (BTreeMap::new(), BTreeMap::new());
        for (key, (was, is)) in hairpin {
            match (was, is) {
                (0, 1..) => after_hairpin.insert(key, String::new()),
                (1.., 0) => before_hairpin.insert(key, String::new()),
                _ => None,
            };
        }
        before.elements.insert(Map::Hairpin, before_hairpin);
        after.elements.insert(Map::Hairpin, after_hairpin);
        // Shared chains are only ever created here.
        before.shared_chains.clear();
        for (name, rules) in std::mem::take(&mut after.shared_chains) {
            if users.chains.insert(name.clone()) {
                after.chains.insert(name, rules);
            }
        }
        (before, after)
    }

    #[cfg(test)]
    fn partial_script(&self, old: &Model, new: &Model, users: &mut SharedObjects) -> String {
        let (before, after) = self.partial_fragments(old, new, users);
        transaction::partial(&before, &after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, PortKey, Protocol, ServicePort};
    use std::net::Ipv4Addr;

    /// A port whose endpoints are all on this node.
    fn port(name: &str, last_octet: u8, endpoints: &[&str]) -> ServicePort {
        let endpoints: Vec<Endpoint> =
            endpoints.iter().map(|ip| Endpoint { ip: ip.parse().expect("ip"), port: 8080 }).collect();
        ServicePort {
            key: PortKey { namespace: "default".into(), name: name.into(), protocol: Protocol::Tcp, port: 80 },
            cluster_ip: Ipv4Addr::new(10, 43, 0, last_octet),
            external_ips: Vec::new(),
            node_port: None,
            external_local: false,
            internal_local: false,
            affinity_seconds: None,
            cluster_endpoints: endpoints.clone(),
            local_endpoints: endpoints,
        }
    }

    fn model(ports: &[ServicePort]) -> Model {
        Model { ports: ports.iter().map(|p| (p.key.clone(), p.clone())).collect() }
    }

    fn newer_two() -> Model {
        model(&[port("b", 2, &["10.42.0.5", "10.42.0.6"])])
    }

    fn users(model: &Model) -> SharedObjects {
        SharedObjects::of(model, &Ruleset::render(model, &RenderOptions::default()))
    }

    #[test]
    fn only_changed_ports_are_rendered_and_shared_objects_are_counted() {
        let syncer = Syncer::new(Nft::default(), RenderOptions::default());
        let a = port("a", 1, &["10.42.0.5"]);
        let b = port("b", 2, &["10.42.0.5", "10.42.0.6"]);
        let old = model(&[a.clone(), b.clone()]);
        let mut counts = users(&old);

        // b loses 10.42.0.5 (still needed by a) and 10.42.0.6 (needed by nobody); it now
        // shares spread-tcp-1 with a; spread-tcp-2 has no user left but stays.
        let b2 = port("b", 2, &["10.42.0.5"]);
        let new = model(&[a.clone(), b2]);
        let script = syncer.partial_script(&old, &new, &mut counts);
        assert!(!script.contains("10.43.0.1 "), "a did not change: {script}");
        assert!(script.contains("delete element ip skiff-proxy hairpin { 10.42.0.6 . 10.42.0.6 }"), "{script}");
        assert!(!script.contains("10.42.0.5 . 10.42.0.5"), "still used by both: {script}");
        assert!(script.contains("add element ip skiff-proxy service-ips { 10.43.0.2 . tcp . 80 : goto spread-tcp-1 }"));
        assert!(!script.contains("chain"), "spread-tcp-1 exists, spread-tcp-2 is kept: {script}");
        assert_eq!(counts.hairpin, users(&new).hairpin);
        assert_eq!(counts.chains.iter().collect::<Vec<_>>(), ["spread-tcp-1", "spread-tcp-2"]);

        // a goes: 10.42.0.5 is still b's.
        let newer = model(&[port("b", 2, &["10.42.0.5"])]);
        let script = syncer.partial_script(&new, &newer, &mut counts);
        assert!(script.contains("delete element ip skiff-proxy service-ips { 10.43.0.1 . tcp . 80 }"), "{script}");
        assert!(script.contains("delete element ip skiff-proxy cluster-ip-endpoints-tcp { 10.43.0.1 . 80 . 0 }"));
        assert!(!script.contains("hairpin") && !script.contains("chain"), "{script}");
        assert_eq!(counts.hairpin, users(&newer).hairpin);

        // A third endpoint needs a new shared chain, created before the element naming it.
        let three = model(&[port("b", 2, &["10.42.0.5", "10.42.0.6", "10.42.0.7"])]);
        let script = syncer.partial_script(&newer, &three, &mut counts);
        let created = script.find("add chain ip skiff-proxy spread-tcp-3").expect("chain created");
        assert!(created < script.find("goto spread-tcp-3").expect("element"), "{script}");
        assert!(!script.contains("delete chain"), "{script}");
        assert_eq!(counts.hairpin, users(&three).hairpin);

        // Back to two endpoints: spread-tcp-2 is still there, so elements only.
        let (before, after) = syncer.partial_fragments(&three, &newer_two(), &mut counts);
        assert!(before.chains.is_empty() && after.chains.is_empty(), "{after:?}");
        assert_eq!(counts.hairpin, users(&newer_two()).hairpin);

        assert_eq!(syncer.partial_script(&three, &three, &mut counts), "", "nothing changed");
        assert_eq!(counts.chains.len(), 3, "kept until the next full sync");
    }

    #[test]
    fn udp_endpoints_that_go_leave_stale_flows_on_every_address_of_the_port() {
        let mut dns = port("dns", 10, &["10.42.0.5", "10.42.0.6"]);
        dns.key.protocol = Protocol::Udp;
        dns.key.port = 53;
        dns.node_port = Some(30053);
        let mut now = dns.clone();
        now.cluster_endpoints.truncate(1);
        now.local_endpoints.truncate(1);
        let gone: Ipv4Addr = "10.42.0.6".parse().expect("ip");
        assert_eq!(
            stale_udp_flows(&dns, &model(&[now])),
            [
                StaleFlow { destination: Some(Ipv4Addr::new(10, 43, 0, 10)), port: 53, endpoint: gone },
                StaleFlow { destination: None, port: 30053, endpoint: gone },
            ]
        );
        assert_eq!(stale_udp_flows(&dns, &model(&[])).len(), 4, "the Service went: both endpoints");
        assert!(stale_udp_flows(&port("web", 1, &["10.42.0.5"]), &model(&[])).is_empty(), "TCP ends by itself");
    }
}
