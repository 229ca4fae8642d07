//! nft scripts that move the kernel's `table ip skiff-proxy` to a [`Ruleset`], each one
//! transaction for `nft -f -`: a full script that recreates the table, and a partial one
//! that rewrites only what changed since the ruleset last programmed.
//!
//! A full sync normally goes in three steps, each leaving a coherent table: [`refresh`]
//! (nft) brings chains, rules, maps and sets to the ruleset and leaves elements alone;
//! the elements are replaced over netlink in one batch ([`all_elements`]); then
//! [`remove_stale`] deletes what no element points at any more. Parsing 15,000 elements
//! took nft most of a full sync. The recreating script is the fallback.
//!
//! A partial script orders its commands so that nothing is deleted while still referenced:
//! new sets and chains are created first; changed and removed chains are flushed (which
//! drops their references); stale map elements are deleted; new rules and elements are
//! added; removed chains and sets go last. An affinity set's timeout is part of its name,
//! so a set is only ever added or removed, never changed in place.

use std::fmt::Write as _;

use crate::netlink::{ElementChange, Verb};
use crate::ruleset::{Map, Ruleset};

pub const FAMILY: &str = "ip";
pub const TABLE: &str = "skiff-proxy";

/// The fixed part of the table, as `nft` commands after `add table ip skiff-proxy`.
///
/// Base chains run at kube-proxy's priorities: the no-endpoint check in filter hooks
/// before DNAT (-110, reject is not allowed in nat chains), service DNAT at dstnat for
/// traffic arriving and for the node's own traffic, masquerade at srcnat. Masquerading
/// is decided by mark bit 0x4000, set by `mark-for-masquerade` (kube-proxy's bit), or by
/// the hairpin set for a pod that reached itself through a Service.
pub const BASE: &[&str] = &[
    "add map ip skiff-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }",
    "add map ip skiff-proxy service-nodeports { type inet_proto . inet_service : verdict ; }",
    "add map ip skiff-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }",
    "add map ip skiff-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; }",
    "add set ip skiff-proxy hairpin { type ipv4_addr . ipv4_addr ; }",
    "add map ip skiff-proxy cluster-ip-endpoints-tcp { typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport ; }",
    "add map ip skiff-proxy cluster-ip-endpoints-udp { typeof ip daddr . udp dport . numgen random mod 1 : ip daddr . udp dport ; }",
    "add map ip skiff-proxy cluster-ip-endpoints-sctp { typeof ip daddr . sctp dport . numgen random mod 1 : ip daddr . sctp dport ; }",
    "add chain ip skiff-proxy mark-for-masquerade",
    "add rule ip skiff-proxy mark-for-masquerade meta mark set meta mark or 0x4000",
    "add chain ip skiff-proxy masquerading",
    "add rule ip skiff-proxy masquerading ct status dnat ip saddr . ip daddr @hairpin masquerade fully-random",
    "add rule ip skiff-proxy masquerading meta mark & 0x4000 == 0 return",
    "add rule ip skiff-proxy masquerading meta mark set meta mark xor 0x4000",
    "add rule ip skiff-proxy masquerading masquerade fully-random",
    "add chain ip skiff-proxy reject-chain",
    "add rule ip skiff-proxy reject-chain reject",
    "add chain ip skiff-proxy endpoints-check",
    "add rule ip skiff-proxy endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    "add rule ip skiff-proxy endpoints-check fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports",
    "add chain ip skiff-proxy services",
    "add rule ip skiff-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
    "add rule ip skiff-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
    "add chain ip skiff-proxy filter-input { type filter hook input priority -110 ; }",
    "add rule ip skiff-proxy filter-input ct state new jump endpoints-check",
    "add chain ip skiff-proxy filter-forward { type filter hook forward priority -110 ; }",
    "add rule ip skiff-proxy filter-forward ct state new jump endpoints-check",
    "add chain ip skiff-proxy filter-output { type filter hook output priority -110 ; }",
    "add rule ip skiff-proxy filter-output ct state new jump endpoints-check",
    "add chain ip skiff-proxy nat-prerouting { type nat hook prerouting priority dstnat ; }",
    "add rule ip skiff-proxy nat-prerouting jump services",
    "add chain ip skiff-proxy nat-output { type nat hook output priority -100 ; }",
    "add rule ip skiff-proxy nat-output jump services",
    "add chain ip skiff-proxy nat-postrouting { type nat hook postrouting priority srcnat ; }",
    "add rule ip skiff-proxy nat-postrouting jump masquerading",
];

/// A script that replaces whatever table exists with exactly `ruleset`.
pub fn full(ruleset: &Ruleset) -> String {
    // `add` first so that `delete` cannot fail on a missing table.
    let mut script = format!("add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n");
    script.push_str(&refresh(ruleset));
    // Elements after the rules: a map's elements are checked once per rule that uses
    // it when the rule comes later, while an element added later is checked only
    // against the few rules using its map.
    write_elements(&mut script, &all_elements(ruleset));
    script
}

/// A script that brings the table's maps, sets, chains and rules to `ruleset` whatever
/// the kernel holds (creating the table if need be) and leaves map elements as they are.
/// Chains and sets the ruleset no longer has stay: old elements may still point at them.
pub fn refresh(ruleset: &Ruleset) -> String {
    let mut script = String::with_capacity(4096 + ruleset.chains.len() * 256);
    let _ = writeln!(script, "add table {FAMILY} {TABLE}");
    for line in BASE {
        script.push_str(line);
        script.push('\n');
        // Adding an existing chain keeps its rules: they are written again after.
        if let Some(("chain", name)) = declared(line) {
            let _ = writeln!(script, "flush chain {FAMILY} {TABLE} {name}");
        }
    }
    for (name, definition) in &ruleset.sets {
        let _ = writeln!(script, "add set {FAMILY} {TABLE} {name} {definition}");
    }
    let chains = || ruleset.shared_chains.iter().chain(&ruleset.chains);
    for (name, _) in chains() {
        let _ = writeln!(script, "add chain {FAMILY} {TABLE} {name}\nflush chain {FAMILY} {TABLE} {name}");
    }
    for (name, rules) in chains() {
        add_rules(&mut script, name, rules);
    }
    script
}

/// Every element of `ruleset`, as additions.
pub fn all_elements(ruleset: &Ruleset) -> Vec<ElementChange<'_>> {
    ruleset
        .elements
        .iter()
        .flat_map(|(map, elements)| elements.iter().map(|(k, v)| (Verb::Add, *map, k.as_str(), v.as_str())))
        .collect()
}

/// The kind (`chain`, `map` or `set`) and name of the object a [`BASE`] line adds.
fn declared(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("add ")?;
    let (kind, rest) = rest.split_once(' ')?;
    let name = rest.strip_prefix(&format!("{FAMILY} {TABLE} "))?.split(' ').next()?;
    matches!(kind, "chain" | "map" | "set").then_some((kind, name))
}

/// The nft commands whose output [`remove_stale`] reads: the table's sets (maps are all
/// in [`BASE`]) and the chains of its family, without elements.
pub fn list_objects() -> String {
    format!("list sets table {FAMILY} {TABLE}\nlist chains {FAMILY}\n")
}

/// A script that deletes the chains and sets of the table, as `listing` (the output of
/// `nft -t -f -` given [`list_objects`]) shows them, that neither [`BASE`] nor `ruleset`
/// has; empty when there are none. Chains are flushed before any is deleted, since
/// they may jump to each other, and sets go last, since only their rules use them.
pub fn remove_stale(listing: &str, ruleset: &Ruleset) -> String {
    let base: Vec<(&str, &str)> = BASE.iter().filter_map(|line| declared(line)).collect();
    let known_chain = |name: &str| {
        base.iter().any(|(kind, n)| *kind == "chain" && *n == name)
            || ruleset.chains.contains_key(name)
            || ruleset.shared_chains.contains_key(name)
    };
    let known_set =
        |name: &str| base.iter().any(|(kind, n)| *kind != "chain" && *n == name) || ruleset.sets.contains_key(name);
    let (mut chains, mut sets) = (Vec::new(), Vec::new());
    let mut in_table = false;
    for line in listing.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["table", family, name, "{"] => in_table = *family == FAMILY && *name == TABLE,
            ["chain", name, "{"] if in_table && !known_chain(name) => chains.push(*name),
            ["set" | "map", name, "{"] if in_table && !known_set(name) => sets.push(*name),
            _ => {}
        }
    }
    let mut script = String::new();
    for name in &chains {
        let _ = writeln!(script, "flush chain {FAMILY} {TABLE} {name}");
    }
    for name in &chains {
        let _ = writeln!(script, "delete chain {FAMILY} {TABLE} {name}");
    }
    for name in &sets {
        let _ = writeln!(script, "delete set {FAMILY} {TABLE} {name}");
    }
    script
}

/// A script that changes the table programmed for `old` into one for `new`; empty when
/// nothing changed. Shared chains are not compared (the caller, which counts their
/// users, moves those to create or delete into `chains`).
pub fn partial(old: &Ruleset, new: &Ruleset) -> String {
    let mut script = String::new();
    for (name, definition) in new.sets.iter().filter(|(name, _)| !old.sets.contains_key(*name)) {
        let _ = writeln!(script, "add set {FAMILY} {TABLE} {name} {definition}");
    }
    for name in new.chains.keys().filter(|name| !old.chains.contains_key(*name)) {
        let _ = writeln!(script, "add chain {FAMILY} {TABLE} {name}");
    }
    let changed: Vec<&String> = new
        .chains
        .iter()
        .filter(|(name, rules)| old.chains.get(*name).is_some_and(|o| o != *rules))
        .map(|(n, _)| n)
        .collect();
    let removed: Vec<&String> = old.chains.keys().filter(|name| !new.chains.contains_key(*name)).collect();
    for name in changed.iter().chain(&removed) {
        let _ = writeln!(script, "flush chain {FAMILY} {TABLE} {name}");
    }
    let elements = element_changes(old, new);
    let (stale, fresh) = elements.split_at(elements.partition_point(|change| change.0 == Verb::Delete));
    write_elements(&mut script, stale);
    for (name, rules) in &new.chains {
        if old.chains.get(name) != Some(rules) {
            add_rules(&mut script, name, rules);
        }
    }
    write_elements(&mut script, fresh);
    for name in removed {
        let _ = writeln!(script, "delete chain {FAMILY} {TABLE} {name}");
    }
    for name in old.sets.keys().filter(|name| !new.sets.contains_key(*name)) {
        let _ = writeln!(script, "delete set {FAMILY} {TABLE} {name}");
    }
    script
}

fn add_rules(script: &mut String, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(script, "add rule {FAMILY} {TABLE} {chain} {rule}");
    }
}

/// The element changes from `old` to `new`: every stale element deleted (a changed value
/// is deleted and added again), then every new one added, map by map.
pub fn element_changes<'a>(old: &'a Ruleset, new: &'a Ruleset) -> Vec<ElementChange<'a>> {
    let mut changes = Vec::new();
    for (verb, from, to) in [(Verb::Delete, old, new), (Verb::Add, new, old)] {
        for map in Map::ALL {
            let Some(these) = from.elements.get(&map) else { continue };
            let others = to.elements.get(&map);
            for (key, value) in these {
                if others.and_then(|o| o.get(key)) != Some(value) {
                    changes.push((verb, map, key.as_str(), value.as_str()));
                }
            }
        }
    }
    changes
}

/// One `add element` / `delete element` command per run of changes to one map.
/// Deletion names keys only.
fn write_elements(script: &mut String, changes: &[ElementChange]) {
    for group in changes.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
        let (verb, map) = (group[0].0, group[0].1);
        let verb_text = if verb == Verb::Add { "add" } else { "delete" };
        let _ = write!(script, "{verb_text} element {FAMILY} {TABLE} {} {{ ", map.name());
        for (i, (_, _, key, value)) in group.iter().enumerate() {
            if i > 0 {
                script.push_str(", ");
            }
            script.push_str(key);
            if verb == Verb::Add && !value.is_empty() {
                let _ = write!(script, " : {value}");
            }
        }
        script.push_str(" }\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruleset(chains: &[(&str, &[&str])], elements: &[(Map, &str, &str)], sets: &[&str]) -> Ruleset {
        let mut out = Ruleset::default();
        for (name, rules) in chains {
            out.chains.insert(name.to_string(), rules.iter().map(|r| r.to_string()).collect());
        }
        for (map, key, value) in elements {
            out.elements.entry(*map).or_default().insert(key.to_string(), value.to_string());
        }
        for set in sets {
            out.sets.insert(set.to_string(), "{ type ipv4_addr ; }".into());
        }
        out
    }

    #[test]
    fn full_recreates_the_table_with_everything() {
        let wanted = ruleset(
            &[("svc-a", &["meta l4proto tcp dnat ip to 10.42.0.5:80"])],
            &[(Map::ServiceIps, "10.43.0.1 . tcp . 80", "goto svc-a"), (Map::Hairpin, "10.42.0.5 . 10.42.0.5", "")],
            &["aff-x"],
        );
        let script = full(&wanted);
        assert!(script.starts_with("add table ip skiff-proxy\ndelete table ip skiff-proxy\nadd table ip skiff-proxy\n"));
        assert!(script.contains("add set ip skiff-proxy aff-x { type ipv4_addr ; }\n"));
        assert!(script.contains("add chain ip skiff-proxy svc-a\n"));
        assert!(script.contains("add rule ip skiff-proxy svc-a meta l4proto tcp dnat ip to 10.42.0.5:80\n"));
        assert!(script.contains("add element ip skiff-proxy service-ips { 10.43.0.1 . tcp . 80 : goto svc-a }\n"));
        assert!(script.contains("add element ip skiff-proxy hairpin { 10.42.0.5 . 10.42.0.5 }\n"));
    }

    #[test]
    fn refresh_rewrites_every_chain_and_leaves_elements_alone() {
        let wanted =
            ruleset(&[("svc-a", &["a1"])], &[(Map::ServiceIps, "10.43.0.1 . tcp . 80", "goto svc-a")], &["aff-x"]);
        let script = refresh(&wanted);
        assert!(script.starts_with("add table ip skiff-proxy\n"));
        assert!(!script.contains("delete"), "nothing is deleted: old elements may point at it");
        assert!(!script.contains("element"));
        assert!(script.contains("add chain ip skiff-proxy svc-a\nflush chain ip skiff-proxy svc-a\n"));
        assert!(script.contains("add chain ip skiff-proxy services\nflush chain ip skiff-proxy services\n"));
        assert!(script.contains(
            "add chain ip skiff-proxy filter-input { type filter hook input priority -110 ; }\nflush chain ip skiff-proxy filter-input\n"
        ));
        // Every chain exists before the first rule, which may jump to any of them.
        let last_chain = script.rfind("add chain").expect("chains");
        assert!(script.find("add rule ip skiff-proxy svc-a a1").expect("rule") > last_chain);
        assert_eq!(all_elements(&wanted), [(Verb::Add, Map::ServiceIps, "10.43.0.1 . tcp . 80", "goto svc-a")]);
    }

    #[test]
    fn remove_stale_deletes_only_what_neither_the_base_nor_the_ruleset_has() {
        let wanted = ruleset(&[("svc-a", &["a1"])], &[], &["aff-a"]);
        // As `nft -t -f -` prints list_objects(), with another table of the family.
        let listing = "table ip skiff-proxy {\n\tset hairpin {\n\t\ttype ipv4_addr . ipv4_addr\n\t}\n\tset aff-a {\n\t}\n\tset aff-old {\n\t}\n}\n\
            table ip skiff-proxy {\n\tchain services {\n\t}\n\tchain filter-input {\n\t\ttype filter hook input priority -110; policy accept;\n\t}\n\
            \tchain svc-a {\n\t}\n\tchain svc-old {\n\t}\n\tchain ep-old {\n\t}\n\tchain spread-tcp-4 {\n\t}\n}\n\
            table ip filter {\n\tchain svc-elsewhere {\n\t}\n}\n";
        assert_eq!(
            remove_stale(listing, &wanted).lines().collect::<Vec<_>>(),
            [
                "flush chain ip skiff-proxy svc-old",
                "flush chain ip skiff-proxy ep-old",
                "flush chain ip skiff-proxy spread-tcp-4",
                "delete chain ip skiff-proxy svc-old",
                "delete chain ip skiff-proxy ep-old",
                "delete chain ip skiff-proxy spread-tcp-4",
                "delete set ip skiff-proxy aff-old",
            ]
        );
        let current = "table ip skiff-proxy {\n\tset aff-a {\n\t}\n\tchain svc-a {\n\t}\n}\n";
        assert_eq!(remove_stale(current, &wanted), "");
    }

    #[test]
    fn partial_of_identical_rulesets_is_empty() {
        let same = ruleset(&[("svc-a", &["r"])], &[(Map::ServiceIps, "k", "goto svc-a")], &[]);
        assert_eq!(partial(&same, &same), "");
    }

    #[test]
    fn partial_rewrites_only_changed_chains_and_elements_in_a_safe_order() {
        let old = ruleset(
            &[("svc-a", &["a1"]), ("svc-b", &["b1"]), ("svc-gone", &["g1"])],
            &[
                (Map::ServiceIps, "ka", "goto svc-a"),
                (Map::ServiceIps, "kb", "goto svc-b"),
                (Map::ServiceIps, "kg", "goto svc-gone"),
                (Map::Hairpin, "h1", ""),
            ],
            &["aff-old"],
        );
        let new = ruleset(
            &[("svc-a", &["a1"]), ("svc-b", &["b2"]), ("svc-new", &["n1"])],
            &[
                (Map::ServiceIps, "ka", "goto svc-a"),
                (Map::ServiceIps, "kb", "goto svc-b"),
                (Map::ServiceIps, "kn", "goto svc-new"),
                (Map::Hairpin, "h2", ""),
            ],
            &["aff-new"],
        );
        let script = partial(&old, &new);
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(
            lines,
            [
                "add set ip skiff-proxy aff-new { type ipv4_addr ; }",
                "add chain ip skiff-proxy svc-new",
                "flush chain ip skiff-proxy svc-b",
                "flush chain ip skiff-proxy svc-gone",
                "delete element ip skiff-proxy service-ips { kg }",
                "delete element ip skiff-proxy hairpin { h1 }",
                "add rule ip skiff-proxy svc-b b2",
                "add rule ip skiff-proxy svc-new n1",
                "add element ip skiff-proxy service-ips { kn : goto svc-new }",
                "add element ip skiff-proxy hairpin { h2 }",
                "delete chain ip skiff-proxy svc-gone",
                "delete set ip skiff-proxy aff-old",
            ]
        );
        assert!(!script.contains("svc-a"), "an unchanged chain is not touched");
    }

    #[test]
    fn a_changed_verdict_is_deleted_then_added() {
        let old = ruleset(&[], &[(Map::NoEndpointServices, "k", "goto reject-chain")], &[]);
        let new = ruleset(&[], &[(Map::NoEndpointServices, "k", "drop")], &[]);
        assert_eq!(
            partial(&old, &new),
            "delete element ip skiff-proxy no-endpoint-services { k }\nadd element ip skiff-proxy no-endpoint-services { k : drop }\n"
        );
    }
}
