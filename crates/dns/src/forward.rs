//! Forwarding names outside the cluster zone to upstream resolvers: over UDP, again over
//! TCP when the answer comes back truncated, trying each upstream in turn.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The EDNS payload size offered to upstreams (the DNS flag day's 1232 bytes).
const UPSTREAM_PAYLOAD: u16 = 1232;

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolvers are configured")]
    NoUpstreams,
    #[error("upstream {upstream}: {error}")]
    Upstream { upstream: SocketAddr, error: String },
}

#[derive(Clone, Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Forwarder { upstreams, timeout }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Asks the upstreams for `query`; the first answer (of any response code) wins.
    pub async fn resolve(&self, query: &Query) -> Result<Message, ForwardError> {
        let mut last = ForwardError::NoUpstreams;
        for upstream in &self.upstreams {
            match self.ask(*upstream, query).await {
                Ok(message) => return Ok(message),
                Err(error) => {
                    tracing::debug!(%upstream, %error, "upstream failed");
                    last = ForwardError::Upstream { upstream: *upstream, error };
                }
            }
        }
        Err(last)
    }

    async fn ask(&self, upstream: SocketAddr, query: &Query) -> Result<Message, String> {
        let id: u16 = rand::random();
        let mut request = Message::new();
        request.set_id(id).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
        request.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(UPSTREAM_PAYLOAD).set_version(0);
        request.set_edns(edns);
        let bytes = request.to_bytes().map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(self.timeout, udp_exchange(upstream, &bytes, id))
            .await
            .map_err(|_| format!("no answer over UDP within {:?}", self.timeout))??;
        if !answer.truncated() {
            return Ok(answer);
        }
        tokio::time::timeout(self.timeout, tcp_exchange(upstream, &bytes))
            .await
            .map_err(|_| format!("no answer over TCP within {:?}", self.timeout))?
    }
}

async fn udp_exchange(upstream: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, String> {
    let local: SocketAddr = if upstream.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    socket.connect(upstream).await.map_err(|e| e.to_string())?;
    socket.send(bytes).await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buffer).await.map_err(|e| e.to_string())?;
        // A stray or spoofed datagram with another id is not our answer: keep waiting.
        if let Ok(message) = Message::from_bytes(&buffer[..n]) {
            if message.id() == id {
                return Ok(message);
            }
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, bytes: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(upstream).await.map_err(|e| e.to_string())?;
    let length = u16::try_from(bytes.len()).map_err(|_| "query too large".to_string())?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(|e| e.to_string())?;
    let length = stream.read_u16().await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut buffer).await.map_err(|e| e.to_string())?;
    Message::from_bytes(&buffer).map_err(|e| e.to_string())
}
