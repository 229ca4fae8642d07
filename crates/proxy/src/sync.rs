//! Programming the kernel: [`Syncer`] remembers the model it last applied and turns each
//! new model into the smallest transaction that reaches it: a full one the first time and
//! after any failure (the kernel's state is then unknown), a partial one otherwise.
//!
//! A partial sync renders only the service ports whose model changed — before and after —
//! and writes the difference between those two fragments, so one endpoint change costs
//! the same with 10 Services as with 10,000. The one shared object is the hairpin set
//! (several Services may share an endpoint address): its members are reference-counted,
//! added when first needed and deleted when no port needs them any more.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::debug;

use crate::model::Model;
use crate::nft::{Nft, NftError};
use crate::ruleset::{hairpin_keys, Map, RenderOptions, Ruleset};
use crate::transaction;

/// What one sync did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// The table was recreated.
    Full,
    /// Only the changes were written.
    Partial,
    /// Nothing had changed; nft was not run.
    Unchanged,
}

/// What the kernel holds after a successful sync.
struct Programmed {
    model: Model,
    /// Hairpin set member → how many service ports need it.
    hairpin: BTreeMap<String, usize>,
}

pub struct Syncer {
    nft: Nft,
    options: RenderOptions,
    /// None when unknown: the next sync is full.
    programmed: Option<Programmed>,
}

impl Syncer {
    pub fn new(nft: Nft, options: RenderOptions) -> Self {
        Syncer { nft, options, programmed: None }
    }

    /// Makes the next sync a full one.
    pub fn invalidate(&mut self) {
        self.programmed = None;
    }

    /// Programs `model`.
    pub async fn sync(&mut self, model: &Model) -> Result<SyncKind, NftError> {
        let started = Instant::now();
        // Taken: if applying fails, the kernel's state is unknown and stays so.
        let (kind, script, hairpin) = match self.programmed.take() {
            None => {
                let script = transaction::full(&Ruleset::render(model, &self.options));
                let mut hairpin = BTreeMap::new();
                for port in model.ports.values() {
                    for key in hairpin_keys(port) {
                        *hairpin.entry(key).or_insert(0) += 1;
                    }
                }
                (SyncKind::Full, script, hairpin)
            }
            Some(Programmed { model: old, mut hairpin }) => {
                let script = self.partial_script(&old, model, &mut hairpin);
                if script.is_empty() {
                    self.programmed = Some(Programmed { model: old, hairpin });
                    return Ok(SyncKind::Unchanged);
                }
                (SyncKind::Partial, script, hairpin)
            }
        };
        self.nft.apply(&script).await?;
        self.programmed = Some(Programmed { model: model.clone(), hairpin });
        debug!(?kind, ports = model.ports.len(), bytes = script.len(), took = ?started.elapsed(), "proxy rules synced");
        Ok(kind)
    }

    /// The transaction from `old` to `new`, rendering only the ports that differ; updates
    /// the hairpin counts.
    fn partial_script(&self, old: &Model, new: &Model, hairpin: &mut BTreeMap<String, usize>) -> String {
        let (mut before, mut after) = (Ruleset::default(), Ruleset::default());
        let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new(); // key → (was, is)
        let mut track = |port, delta: i64| {
            for key in hairpin_keys(port) {
                let current = hairpin.get(&key).copied().unwrap_or(0);
                let entry = counts.entry(key.clone()).or_insert((current, current));
                entry.1 = entry.1.saturating_add_signed(delta as isize);
                hairpin.insert(key, entry.1);
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
        // Only members that appear or disappear are written.
        before.elements.remove(&Map::Hairpin);
        after.elements.remove(&Map::Hairpin);
        for (key, (was, is)) in counts {
            if is == 0 {
                hairpin.remove(&key);
            }
            match (was, is) {
                (0, 1..) => after.elements.entry(Map::Hairpin).or_default().insert(key, String::new()),
                (1.., 0) => before.elements.entry(Map::Hairpin).or_default().insert(key, String::new()),
                _ => None,
            };
        }
        transaction::partial(&before, &after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, PortKey, Protocol, ServicePort};
    use std::net::Ipv4Addr;

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
            cluster_endpoints: endpoints,
            local_endpoints: Vec::new(),
        }
    }

    fn model(ports: &[ServicePort]) -> Model {
        Model { ports: ports.iter().map(|p| (p.key.clone(), p.clone())).collect() }
    }

    fn counts(model: &Model) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for port in model.ports.values() {
            for key in hairpin_keys(port) {
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        counts
    }

    #[test]
    fn only_changed_ports_are_rendered_and_shared_hairpin_members_are_counted() {
        let syncer = Syncer::new(Nft::default(), RenderOptions::default());
        let a = port("a", 1, &["10.42.0.5"]);
        let b = port("b", 2, &["10.42.0.5", "10.42.0.6"]);
        let old = model(&[a.clone(), b.clone()]);
        let mut hairpin = counts(&old);

        // b loses 10.42.0.5 (still needed by a) and 10.42.0.6 (needed by nobody).
        let b2 = port("b", 2, &["10.42.0.5"]);
        let new = model(&[a.clone(), b2]);
        let script = syncer.partial_script(&old, &new, &mut hairpin);
        assert!(!script.contains("svc-default/a/"), "a did not change: {script}");
        assert!(script.contains("flush chain ip skiff-proxy svc-default/b/tcp/p80"), "{script}");
        assert!(script.contains("delete element ip skiff-proxy hairpin { 10.42.0.6 . 10.42.0.6 }"), "{script}");
        assert!(!script.contains("10.42.0.5 . 10.42.0.5"), "still used by both: {script}");
        assert_eq!(hairpin, counts(&new));

        // a goes: 10.42.0.5 is still b's.
        let newer = model(&[port("b", 2, &["10.42.0.5"])]);
        let script = syncer.partial_script(&new, &newer, &mut hairpin);
        assert!(script.contains("delete chain ip skiff-proxy svc-default/a/tcp/p80"), "{script}");
        assert!(script.contains("delete element ip skiff-proxy service-ips { 10.43.0.1 . tcp . 80 }"), "{script}");
        assert!(!script.contains("hairpin"), "{script}");
        assert_eq!(hairpin, counts(&newer));

        assert_eq!(syncer.partial_script(&newer, &newer, &mut hairpin), "", "nothing changed");
    }
}
