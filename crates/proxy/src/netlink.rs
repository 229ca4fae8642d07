//! Map and set element changes sent straight to the kernel over one long-lived nfnetlink
//! socket: the fast path for partial syncs that change elements only (an endpoint added,
//! removed or replaced in a Service without session affinity), and for the elements of a
//! full sync, where nft would spend most of its time parsing them. The same socket
//! deletes the conntrack entries of UDP endpoints that went away (see [`StaleFlow`]).
//!
//! Why not `nft`: every `nft` process lists the table's chains and sets before applying,
//! and, when it closes its netlink socket after a commit that deleted anything, waits in
//! the kernel for the deleted objects to be freed (an RCU grace period, 10–25 ms here).
//! A socket that stays open never waits, and an element batch is tiny to encode: one
//! endpoint change costs well under a millisecond instead of ~15 ms.
//!
//! A batch is one nftables transaction (`BATCH_BEGIN` … `BATCH_END`): it applies entirely
//! or not at all, as an `nft -f` script does. Every message asks for an acknowledgement;
//! the batch succeeded when each one came back with error 0.
//!
//! Elements are given as the same text the nft scripts use (`10.43.0.1 . tcp . 80`,
//! `goto spread-tcp-2`), encoded by the layout of their map. Whatever this module cannot
//! encode is reported as such, and the caller uses `nft` instead.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;

use crate::ruleset::Map;
use crate::transaction::TABLE;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening the nfnetlink socket: {0}")]
    Open(String),
    #[error("nfnetlink: {0}")]
    Io(#[from] nix::Error),
    #[error("the kernel rejected the element batch: {0}")]
    Rejected(nix::Error),
    #[error("no answer from the kernel within {0:?}")]
    Timeout(Duration),
}

/// Whether an element is added or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Delete,
}

/// One element change: verb, map, key and (for additions to maps) value, as nft text.
pub type ElementChange<'a> = (Verb, Map, &'a str, &'a str);

/// UDP conntrack entries to delete: those sent to `destination` (None: any address) on
/// `port` and answered by `endpoint`. UDP has no connection end, so without this a client
/// keeps sending to an endpoint that is gone until its entry times out (kube-proxy does
/// the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaleFlow {
    pub destination: Option<Ipv4Addr>,
    pub port: u16,
    pub endpoint: Ipv4Addr,
}

/// The send buffer asked for: a full sync's elements (15,000 take ~0.8 MB) in one batch.
const SEND_BUFFER_BYTES: usize = 16 << 20;
/// Elements per message stay under this: an attribute's length is 16 bits.
const MAX_ELEMENTS_BYTES: usize = 60 * 1024;
/// How long to wait for the kernel's acknowledgements.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

// Netlink and nftables constants (linux/netlink.h, linux/netfilter/nfnetlink.h,
// linux/netfilter/nf_tables.h).
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_IPV4: u8 = 2;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;
const NF_DROP: i32 = 0;
const NFT_GOTO: i32 = -4;
// Conntrack (linux/netfilter/nfnetlink_conntrack.h; the filter flags from
// net/netfilter/nf_internals.h). A delete with CTA_FILTER removes every matching entry.
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
const CTA_FILTER_REPLY_FLAGS: u16 = 2;
const FILTER_IP_SRC: u32 = 1 << 0;
const FILTER_IP_DST: u32 = 1 << 1;
const FILTER_PROTO_NUM: u32 = 1 << 3;
const FILTER_PROTO_DST_PORT: u32 = 1 << 5;
const IPPROTO_UDP: u8 = 17;

/// One part of a concatenated key or value; each takes a multiple of 4 bytes.
#[derive(Clone, Copy)]
enum Field {
    Ipv4,
    Protocol,
    Port,
    /// A `numgen` result: a 32-bit integer in host byte order.
    Index,
}

/// What a map's elements map to.
enum Value {
    None,
    Verdict,
    Fields(&'static [Field]),
}

fn layout(map: Map) -> (&'static [Field], Value) {
    use Field::*;
    match map {
        Map::ServiceIps | Map::NoEndpointServices => (&[Ipv4, Protocol, Port], Value::Verdict),
        Map::ServiceNodePorts | Map::NoEndpointNodePorts => (&[Protocol, Port], Value::Verdict),
        Map::Hairpin => (&[Ipv4, Ipv4], Value::None),
        Map::ClusterIpEndpoints(_) => (&[Ipv4, Port, Index], Value::Fields(&[Ipv4, Port])),
    }
}

/// `a . b . c` as the kernel stores it, or None if the text does not fit `fields`.
fn encode_fields(text: &str, fields: &[Field]) -> Option<Vec<u8>> {
    let parts: Vec<&str> = text.split(" . ").collect();
    if parts.len() != fields.len() {
        return None;
    }
    let mut out = Vec::with_capacity(4 * fields.len());
    for (part, field) in parts.iter().zip(fields) {
        match field {
            Field::Ipv4 => out.extend(part.parse::<Ipv4Addr>().ok()?.octets()),
            Field::Protocol => {
                let number: u8 = match *part {
                    "tcp" => 6,
                    "udp" => 17,
                    "sctp" => 132,
                    _ => return None,
                };
                out.extend([number, 0, 0, 0]);
            }
            Field::Port => {
                out.extend(part.parse::<u16>().ok()?.to_be_bytes());
                out.extend([0, 0]);
            }
            Field::Index => out.extend(part.parse::<u32>().ok()?.to_ne_bytes()),
        }
    }
    Some(out)
}

/// A netlink attribute, padded to 4 bytes.
fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend((len as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(payload);
    out.resize(out.len() + (4 - len % 4) % 4, 0);
}

/// A nested attribute whose content `fill` writes.
fn nested(out: &mut Vec<u8>, kind: u16, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    fill(&mut inner);
    attr(out, kind | NLA_F_NESTED, &inner);
}

fn c_string(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// The element attribute (`NFTA_LIST_ELEM`) for one change, or None if it cannot be encoded.
fn encode_element(verb: Verb, map: Map, key: &str, value: &str) -> Option<Vec<u8>> {
    let (key_fields, value_layout) = layout(map);
    let key = encode_fields(key, key_fields)?;
    let data = match (verb, value_layout) {
        (Verb::Delete, _) | (Verb::Add, Value::None) => None,
        (Verb::Add, Value::Fields(fields)) => {
            let bytes = encode_fields(value, fields)?;
            let mut data = Vec::new();
            attr(&mut data, NFTA_DATA_VALUE, &bytes);
            Some(data)
        }
        (Verb::Add, Value::Verdict) => {
            let mut verdict = Vec::new();
            match value.split_once(' ') {
                None if value == "drop" => attr(&mut verdict, NFTA_VERDICT_CODE, &NF_DROP.to_be_bytes()),
                Some(("goto", chain)) => {
                    attr(&mut verdict, NFTA_VERDICT_CODE, &NFT_GOTO.to_be_bytes());
                    attr(&mut verdict, NFTA_VERDICT_CHAIN, &c_string(chain));
                }
                _ => return None,
            }
            let mut data = Vec::new();
            attr(&mut data, NFTA_DATA_VERDICT | NLA_F_NESTED, &verdict);
            Some(data)
        }
    };
    let mut element = Vec::new();
    nested(&mut element, NFTA_LIST_ELEM, |out| {
        nested(out, NFTA_SET_ELEM_KEY, |out| attr(out, NFTA_DATA_VALUE, &key));
        if let Some(data) = data {
            attr(out, NFTA_SET_ELEM_DATA | NLA_F_NESTED, &data);
        }
    });
    Some(element)
}

/// Appends one netlink message (header, nfgenmsg, `body`).
fn message(out: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, body: &[u8]) {
    let len = 16 + 4 + body.len();
    out.extend((len as u32).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(seq.to_ne_bytes());
    out.extend(0u32.to_ne_bytes()); // port id: the kernel's
    out.extend([family, 0]);
    out.extend(res_id.to_be_bytes());
    out.extend(body);
}

/// The batch that empties the `flushed` maps, then makes `changes`, and how many
/// acknowledgements it asks for; None if some change cannot be encoded. Consecutive
/// changes of one verb and map share a message, as far as an attribute holds them.
pub fn encode_batch(flushed: &[Map], changes: &[ElementChange], first_seq: u32) -> Option<(Vec<u8>, u32)> {
    let mut batch = Batch { out: Vec::new(), seq: first_seq, acks: 0 };
    message(&mut batch.out, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, first_seq, 0, NFNL_SUBSYS_NFTABLES, &[]);
    for map in flushed {
        // A DELSETELEM without elements deletes them all.
        batch.elements(Verb::Delete, *map, None);
    }
    for group in changes.chunk_by(|a, b| a.0 == b.0 && a.1 == b.1) {
        let (verb, map) = (group[0].0, group[0].1);
        let mut elements = Vec::new();
        for (_, _, key, value) in group {
            let element = encode_element(verb, map, key, value)?;
            if elements.len() + element.len() > MAX_ELEMENTS_BYTES {
                batch.elements(verb, map, Some(&elements));
                elements.clear();
            }
            elements.extend(element);
        }
        batch.elements(verb, map, Some(&elements));
    }
    let end = batch.seq.wrapping_add(1);
    message(&mut batch.out, NFNL_MSG_BATCH_END, NLM_F_REQUEST, end, 0, NFNL_SUBSYS_NFTABLES, &[]);
    Some((batch.out, batch.acks))
}

/// A batch being encoded: its bytes, the last sequence number used, the answers it asks for.
struct Batch {
    out: Vec<u8>,
    seq: u32,
    acks: u32,
}

impl Batch {
    /// One message adding or deleting encoded `elements` of `map` (None: all of them).
    fn elements(&mut self, verb: Verb, map: Map, elements: Option<&[u8]>) {
        let mut body = Vec::new();
        attr(&mut body, NFTA_SET_ELEM_LIST_TABLE, &c_string(TABLE));
        attr(&mut body, NFTA_SET_ELEM_LIST_SET, &c_string(map.name()));
        if let Some(elements) = elements {
            attr(&mut body, NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED, elements);
        }
        let (kind, flags) = match verb {
            Verb::Add => (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE),
            Verb::Delete => (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        };
        self.seq = self.seq.wrapping_add(1);
        message(&mut self.out, (NFNL_SUBSYS_NFTABLES << 8) | kind, flags, self.seq, NFPROTO_IPV4, 0, &body);
        self.acks += 1;
    }
}

/// The message that deletes the conntrack entries of `flow`.
fn encode_conntrack_delete(flow: &StaleFlow, seq: u32) -> Vec<u8> {
    let mut body = Vec::new();
    nested(&mut body, CTA_TUPLE_ORIG, |out| {
        if let Some(destination) = flow.destination {
            nested(out, CTA_TUPLE_IP, |out| attr(out, CTA_IP_V4_DST, &destination.octets()));
        }
        nested(out, CTA_TUPLE_PROTO, |out| {
            attr(out, CTA_PROTO_NUM, &[IPPROTO_UDP]);
            attr(out, CTA_PROTO_DST_PORT, &flow.port.to_be_bytes());
        });
    });
    nested(&mut body, CTA_TUPLE_REPLY, |out| {
        nested(out, CTA_TUPLE_IP, |out| attr(out, CTA_IP_V4_SRC, &flow.endpoint.octets()));
        nested(out, CTA_TUPLE_PROTO, |out| attr(out, CTA_PROTO_NUM, &[IPPROTO_UDP]));
    });
    let destination = if flow.destination.is_some() { FILTER_IP_DST } else { 0 };
    nested(&mut body, CTA_FILTER, |out| {
        let orig = destination | FILTER_PROTO_NUM | FILTER_PROTO_DST_PORT;
        attr(out, CTA_FILTER_ORIG_FLAGS, &orig.to_ne_bytes());
        attr(out, CTA_FILTER_REPLY_FLAGS, &(FILTER_IP_SRC | FILTER_PROTO_NUM).to_ne_bytes());
    });
    let mut out = Vec::new();
    let kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
    message(&mut out, kind, NLM_F_REQUEST | NLM_F_ACK, seq, NFPROTO_IPV4, 0, &body);
    out
}

/// An open nfnetlink socket in the proxy's network namespace. Cloning shares it.
#[derive(Clone)]
pub struct NetfilterSocket {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    fd: OwnedFd,
    next_seq: u32,
    /// The largest batch the socket sends at once.
    max_batch: usize,
}

impl NetfilterSocket {
    /// Opens the socket in the current network namespace, or in the named one
    /// (/run/netns/NAME, as `ip netns` keeps them).
    pub fn open(namespace: Option<&str>) -> Result<Self, NetlinkError> {
        let fd = match namespace {
            None => new_socket()?,
            Some(name) => {
                // A thread of its own enters the namespace; the socket stays bound to
                // that namespace after the thread ends.
                let path = PathBuf::from("/run/netns").join(name);
                std::thread::spawn(move || {
                    let file = std::fs::File::open(&path)
                        .map_err(|e| NetlinkError::Open(format!("{}: {e}", path.display())))?;
                    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
                    new_socket()
                })
                .join()
                .map_err(|_| NetlinkError::Open("the namespace thread panicked".into()))??
            }
        };
        // Root may pass the system's limit (as nft does); otherwise it caps the request.
        if socket::setsockopt(&fd, sockopt::SndBufForce, &SEND_BUFFER_BYTES).is_err() {
            let _ = socket::setsockopt(&fd, sockopt::SndBuf, &SEND_BUFFER_BYTES);
        }
        // The kernel reports twice what it grants (half is bookkeeping).
        let max_batch = socket::getsockopt(&fd, sockopt::SndBuf)? / 2;
        Ok(NetfilterSocket { inner: Arc::new(Mutex::new(Inner { fd, next_seq: 1, max_batch })) })
    }

    /// Empties the `flushed` maps and applies `changes`, as one transaction. `Ok(false)`:
    /// they cannot be encoded or do not fit one batch (use nft).
    pub async fn apply(&self, flushed: &[Map], changes: &[ElementChange<'_>]) -> Result<bool, NetlinkError> {
        let (batch, first_seq, acks) = {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let first_seq = inner.next_seq;
            let Some((batch, acks)) =
                encode_batch(flushed, changes, first_seq).filter(|(b, _)| b.len() <= inner.max_batch)
            else {
                return Ok(false);
            };
            inner.next_seq = first_seq.wrapping_add(acks + 2);
            (batch, first_seq, acks)
        };
        // Sending and the kernel's answer take well under a millisecond, but the answer
        // is a blocking read: keep it off the runtime's threads.
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            exchange(&inner.fd, &batch, first_seq, acks)
        })
        .await
        .map_err(|e| NetlinkError::Open(e.to_string()))??;
        Ok(true)
    }
}

impl NetfilterSocket {
    /// Deletes the conntrack entries of each flow (one request each).
    pub async fn delete_conntrack(&self, flows: Vec<StaleFlow>) -> Result<(), NetlinkError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            for flow in &flows {
                let seq = inner.next_seq;
                inner.next_seq = seq.wrapping_add(1);
                // The answer is matched as the batch's single acknowledgement.
                exchange(&inner.fd, &encode_conntrack_delete(flow, seq), seq.wrapping_sub(1), 1)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| NetlinkError::Open(e.to_string()))?
    }
}

fn new_socket() -> Result<OwnedFd, NetlinkError> {
    let fd =
        socket::socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)?;
    socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
    let timeout = TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
    Ok(fd)
}

/// Sends `batch` and reads one acknowledgement per message (sequence numbers after
/// `first_seq`); answers to earlier batches (after a timeout) are skipped.
fn exchange(fd: &OwnedFd, batch: &[u8], first_seq: u32, acks: u32) -> Result<(), NetlinkError> {
    socket::send(fd.as_raw_fd(), batch, MsgFlags::empty())?;
    let mut buffer = vec![0u8; 64 * 1024];
    let (mut answered, mut failure) = (0, None);
    while answered < acks {
        let len = match socket::recv(fd.as_raw_fd(), &mut buffer, MsgFlags::empty()) {
            Ok(len) => len,
            Err(nix::Error::EAGAIN) => return Err(NetlinkError::Timeout(ANSWER_TIMEOUT)),
            Err(e) => return Err(e.into()),
        };
        let mut offset = 0;
        while offset + 20 <= len {
            let word = |at: usize| u32::from_ne_bytes([buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]]);
            let size = word(offset) as usize;
            let kind = u16::from_ne_bytes([buffer[offset + 4], buffer[offset + 5]]);
            let seq = word(offset + 8);
            if kind == NLMSG_ERROR && seq.wrapping_sub(first_seq).wrapping_sub(1) < acks {
                answered += 1;
                let errno = word(offset + 16) as i32;
                if errno != 0 && failure.is_none() {
                    failure = Some(nix::Error::from_raw(-errno));
                }
            }
            if size < 16 {
                break;
            }
            offset += (size + 3) & !3;
        }
    }
    match failure {
        None => Ok(()),
        Some(errno) => Err(NetlinkError::Rejected(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_encoded_by_their_map_layout() {
        let key = encode_fields("10.43.0.1 . tcp . 80", &[Field::Ipv4, Field::Protocol, Field::Port]);
        assert_eq!(key, Some(vec![10, 43, 0, 1, 6, 0, 0, 0, 0, 80, 0, 0]));
        let index = encode_fields("10.43.0.1 . 53 . 2", &[Field::Ipv4, Field::Port, Field::Index]);
        let mut expected = vec![10, 43, 0, 1, 0, 53, 0, 0];
        expected.extend(2u32.to_ne_bytes());
        assert_eq!(index, Some(expected));
        assert_eq!(encode_fields("10.43.0.1 . 80", &[Field::Ipv4]), None, "too many parts");
        assert_eq!(encode_fields("10.43.0.1 . icmp", &[Field::Ipv4, Field::Protocol]), None);
    }

    #[test]
    fn a_batch_groups_changes_and_refuses_what_it_cannot_encode() {
        let changes = [
            (Verb::Delete, Map::Hairpin, "10.42.0.5 . 10.42.0.5", ""),
            (Verb::Add, Map::Hairpin, "10.42.0.6 . 10.42.0.6", ""),
            (Verb::Add, Map::Hairpin, "10.42.0.7 . 10.42.0.7", ""),
            (Verb::Add, Map::ServiceIps, "10.43.0.1 . tcp . 80", "goto spread-tcp-2"),
        ];
        let (batch, acks) = encode_batch(&[], &changes, 100).expect("encodable");
        assert_eq!(acks, 3, "delete hairpin, add hairpin, add service-ips");
        assert_eq!(u32::from_ne_bytes(batch[8..12].try_into().expect("seq")), 100, "begin");
        assert!(batch.windows(b"spread-tcp-2\0".len()).any(|w| w == b"spread-tcp-2\0"));
        let unknown = [(Verb::Add, Map::ServiceIps, "10.43.0.1 . tcp . 80", "jump elsewhere")];
        assert!(encode_batch(&[], &unknown, 1).is_none());
    }

    #[test]
    fn flushes_come_first_and_long_runs_of_elements_are_split_into_messages() {
        let keys: Vec<String> = (0..10_000).map(|i| format!("10.42.{}.{} . 10.42.0.1", i / 256, i % 256)).collect();
        let changes: Vec<ElementChange> = keys.iter().map(|k| (Verb::Add, Map::Hairpin, k.as_str(), "")).collect();
        let (batch, acks) = encode_batch(&[Map::Hairpin, Map::ServiceIps], &changes, 1).expect("encodable");
        // A hairpin element takes 20 bytes: 10,000 need four messages of at most 60 KiB.
        assert_eq!(acks, 2 + 4);
        let messages = messages(&batch);
        assert_eq!(messages.len(), 2 + 4 + 2, "begin, two flushes, four additions, end");
        let flush = &messages[1];
        assert_eq!(u16::from_ne_bytes([flush[4], flush[5]]), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM);
        assert!(flush.len() < 64, "a flush names the table and the map only");
        assert!(messages.iter().all(|m| m.len() <= MAX_ELEMENTS_BYTES + 128));
    }

    /// The messages of a batch, split by their length fields.
    fn messages(batch: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = batch;
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[..4].try_into().expect("length")) as usize;
            out.push(&rest[..len]);
            rest = &rest[len..];
        }
        out
    }
}
