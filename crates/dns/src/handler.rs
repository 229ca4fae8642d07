//! The request handler hickory-server calls: names in the cluster zone are answered from
//! the [`Cache`], everything else goes to the [`Forwarder`].

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};

use crate::cache::Cache;
use crate::forward::Forwarder;
use crate::names::ZoneName;
use crate::records::Answerer;

/// The EDNS payload size this server offers (the DNS flag day's 1232 bytes).
const SERVER_PAYLOAD: u16 = 1232;
/// What a UDP client without EDNS accepts (RFC 1035).
const MIN_UDP_PAYLOAD: u16 = 512;

#[derive(Clone)]
pub struct ClusterDns {
    pub cache: Cache,
    pub answerer: Arc<Answerer>,
    pub forwarder: Arc<Forwarder>,
}

/// A complete answer, whatever produced it.
struct Reply {
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn error(code: ResponseCode) -> Self {
        Reply { code, authoritative: false, answers: vec![], authority: vec![], additionals: vec![] }
    }
}

impl ClusterDns {
    async fn answer(&self, query: &Query) -> Reply {
        if self.answerer.zone.classify(&query.name().to_ascii()) == ZoneName::Outside {
            return self.forward(query).await;
        }
        if !self.cache.is_synced() {
            // Not knowing the cluster yet is not the same as a name not existing.
            return Reply::error(ResponseCode::ServFail);
        }
        let (resolution, serial) =
            self.cache.read(|index| (self.answerer.resolve(index, query.name(), query.query_type()), index.serial));
        let mut reply = Reply {
            code: if resolution.nxdomain { ResponseCode::NXDomain } else { ResponseCode::NoError },
            authoritative: true,
            answers: resolution.answers,
            authority: vec![],
            additionals: resolution.additionals,
        };
        if let Some(target) = resolution.chase {
            // An ExternalName: the CNAME, then what the zone or upstream says of its target.
            if self.answerer.zone.classify(&target.to_ascii()) == ZoneName::Outside {
                let chased = Query::query(target, query.query_type());
                if let Ok(upstream) = self.forwarder.resolve(&chased).await {
                    reply.answers.extend(upstream.answers().iter().cloned());
                }
            } else {
                let inside = self.cache.read(|index| self.answerer.resolve(index, &target, query.query_type()));
                reply.answers.extend(inside.answers);
            }
        }
        if reply.answers.is_empty() {
            reply.authority.push(self.answerer.soa(serial));
        }
        reply
    }

    async fn forward(&self, query: &Query) -> Reply {
        match self.forwarder.resolve(query).await {
            Ok(upstream) => Reply {
                code: upstream.response_code(),
                authoritative: false,
                answers: upstream.answers().to_vec(),
                authority: upstream.name_servers().to_vec(),
                additionals: upstream.additionals().to_vec(),
            },
            Err(error) => {
                tracing::debug!(name = %query.name(), %error, "forwarding failed");
                Reply::error(ResponseCode::ServFail)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for ClusterDns {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response_handle: R) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let refuse = |code| {
            let mut header = Header::response_from_request(request.header());
            header.set_response_code(code);
            header
        };
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            let response = builder.build_no_records(refuse(ResponseCode::NotImp));
            return send(&mut response_handle, response, request.header()).await;
        }
        let query = match request.request_info() {
            Ok(info) => info.query.original().clone(),
            Err(_) => {
                let response = builder.build_no_records(refuse(ResponseCode::FormErr));
                return send(&mut response_handle, response, request.header()).await;
            }
        };
        let reply = if query.query_type() == RecordType::AXFR || query.query_type() == RecordType::IXFR {
            Reply::error(ResponseCode::Refused)
        } else {
            self.answer(&query).await
        };
        let mut header = Header::response_from_request(request.header());
        header.set_response_code(reply.code);
        header.set_authoritative(reply.authoritative);
        header.set_recursion_available(true);
        let mut builder = builder;
        let mut edns = None;
        if request.edns().is_some() {
            let mut ours = Edns::new();
            ours.set_max_payload(SERVER_PAYLOAD).set_version(0);
            builder.edns(ours.clone());
            edns = Some(ours);
        }
        let mut reply = reply;
        if request.protocol() == Protocol::Udp {
            let limit =
                request.edns().map_or(MIN_UDP_PAYLOAD, |e| e.max_payload().clamp(MIN_UDP_PAYLOAD, SERVER_PAYLOAD));
            if fit_to(limit, &mut header, &query, &mut reply, edns) {
                header.set_truncated(true);
            }
        }
        let response =
            builder.build(header, reply.answers.iter(), reply.authority.iter(), [], reply.additionals.iter());
        send(&mut response_handle, response, request.header()).await
    }
}

/// Trims `reply` to what fits in `limit` bytes (a UDP answer: 512 bytes, or the client's
/// EDNS size); true when answers had to go, so the client must ask again over TCP.
/// hickory-server itself would send up to 4096 bytes to a client that did not offer EDNS.
fn fit_to(limit: u16, header: &mut Header, query: &Query, reply: &mut Reply, edns: Option<Edns>) -> bool {
    let message = |reply: &Reply| {
        let mut message = Message::new();
        message.set_header(*header);
        message.add_query(query.clone());
        message.insert_answers(reply.answers.clone());
        message.insert_name_servers(reply.authority.clone());
        message.insert_additionals(reply.additionals.clone());
        if let Some(edns) = edns.clone() {
            message.set_edns(edns);
        }
        message
    };
    // Most answers are a few short records: a bound on their size without compression
    // spares encoding them twice.
    let records = reply.answers.iter().chain(&reply.authority).chain(&reply.additionals);
    let bound = records.map(size_bound).try_fold(12 + query.name().len() + 6 + 11, usize::checked_add);
    if bound.is_some_and(|bound| bound <= usize::from(limit)) {
        return false;
    }
    let full = message(reply);
    // hickory-server copies the question as received, so answers cannot point back to its
    // name: the first one spells it out where this encoding has a 2-byte pointer.
    let spelled_out = query.name().to_bytes().map_or(255, |b| b.len()).saturating_sub(2);
    if full.to_vec().is_ok_and(|bytes| bytes.len() + spelled_out <= usize::from(limit)) {
        return false;
    }
    let limit = limit.saturating_sub(u16::try_from(spelled_out).unwrap_or(u16::MAX));
    let mut buffer = Vec::with_capacity(usize::from(limit));
    let mut encoder = BinEncoder::new(&mut buffer);
    encoder.set_max_size(limit);
    if full.emit(&mut encoder).is_err() || buffer.len() < 12 {
        reply.answers.clear();
        reply.authority.clear();
        reply.additionals.clear();
        return true;
    }
    // What the size-limited encoding kept: the header's counts.
    let count = |at: usize| usize::from(u16::from_be_bytes([buffer[at], buffer[at + 1]]));
    let (answers, authority) = (count(6), count(8));
    let cut = answers < reply.answers.len() || authority < reply.authority.len();
    reply.answers.truncate(answers);
    reply.authority.truncate(authority);
    // Additional records may go without truncation (RFC 2181 9); keep none rather than
    // count the OPT record among them.
    reply.additionals.clear();
    cut
}

/// At least the bytes `record` takes uncompressed (usize::MAX for types not reckoned here).
fn size_bound(record: &Record) -> usize {
    let name = |n: &hickory_proto::rr::Name| n.len() + 2;
    let rdata = match record.data() {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(srv) => 6 + name(srv.target()),
        RData::CNAME(cname) => name(&cname.0),
        RData::NS(ns) => name(&ns.0),
        RData::SOA(soa) => name(soa.mname()) + name(soa.rname()) + 20,
        _ => return usize::MAX,
    };
    name(record.name()) + 10 + rdata
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Header,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "sending a DNS response failed");
            let mut header = Header::response_from_request(request);
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}
