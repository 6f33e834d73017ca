//! The filtering resolver: A and AAAA answers for names the policy allows, from the host's own
//! resolution; `REFUSED` for every other name and type, which therefore never leaves the
//! machine; tunnel-shaped names flagged, and refused with `[network.dns] strict`.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{Map, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::time::timeout;

use crate::Egress;
use crate::dns::{self, Query, Rcode, TYPE_A, TYPE_AAAA};
use crate::gate::Identity;
use crate::resolve::{ANSWER_TTL, ResolveError};

/// What the policy and the detector say about a query, before any lookup.
#[derive(Debug)]
pub enum Plan {
    /// Answer now with this message (a refusal, an error, or a cached answer).
    Answer(Vec<u8>),
    /// Allowed: look the name up, then answer.
    Lookup(Query, String),
}

impl Egress {
    /// Screens one DNS message as the resolver does (policy, types, tunnel signs; the refusals
    /// recorded), without looking anything up: `None` when it gets no answer at all (a
    /// response, or bytes that are not DNS). `udp` limits the answer's size as over UDP.
    pub fn screen(&self, msg: &[u8], udp: bool) -> Option<Plan> {
        self.plan(msg, udp.then_some(512))
    }

    fn plan(&self, msg: &[u8], udp: Option<usize>) -> Option<Plan> {
        if let Some(reply) = self.answered_before(msg, udp) {
            return Some(Plan::Answer(reply));
        }
        let q = match dns::parse_query(msg) {
            Ok(q) => q,
            Err(_) => return dns::format_error(msg).map(Plan::Answer),
        };
        // Over UDP what the client offered (512 without EDNS); over TCP what fits the frame.
        let limit = if udp.is_some() { q.udp_limit() } else { 65_535 };
        let refuse = |q: &Query, rcode: Rcode| Some(Plan::Answer(dns::response(q, rcode, &[], 0, limit)));
        if q.opcode() != 0 {
            return refuse(&q, Rcode::NotImp);
        }
        let who = Identity { agent: self.access.agent.clone(), tool: None };
        let shown = q.name();
        let sign = self.tunnels.check(&q.labels);
        let name = ldh_name(&q.labels);
        let denial = |rule: &str, reason: String| {
            let mut f = Map::new();
            f.insert("name".into(), json!(shown));
            f.insert("qtype".into(), json!(type_name(q.qtype)));
            f.insert("decision".into(), json!("deny"));
            f.insert("rule".into(), json!(rule));
            f.insert("reason".into(), json!(reason));
            if let Some(s) = &sign {
                f.insert("tunnel".into(), json!(s.to_string()));
            }
            f
        };
        if !self.recording() {
            return refuse(&q, Rcode::Refused);
        }
        if q.qclass != 1 || (q.qtype != TYPE_A && q.qtype != TYPE_AAAA) {
            self.record(
                "dns",
                denial(
                    "builtin dns types",
                    format!("only A and AAAA lookups are answered, not {}", type_name(q.qtype)),
                ),
            );
            return refuse(&q, Rcode::Refused);
        }
        let Some(name) = name else {
            self.record("dns", denial("builtin invalid host", "the name is not a host name".into()));
            return refuse(&q, Rcode::Refused);
        };
        let v = self.gate.resolve(&who, &name);
        if !v.allow {
            self.record("dns", denial(&v.rule, v.reason));
            return refuse(&q, Rcode::Refused);
        }
        if let Some(sign) = &sign {
            if self.dns.strict {
                self.record("dns", denial("network.dns.strict", format!("tunnel-shaped: {sign}")));
                return refuse(&q, Rcode::Refused);
            }
            let mut f = Map::new();
            f.insert("name".into(), json!(shown));
            f.insert("decision".into(), json!("allow"));
            f.insert("flag".into(), json!(format!("tunnel-shaped: {sign}")));
            self.record("dns", f);
        } else if self.first_lookup(&name) {
            let mut f = Map::new();
            f.insert("name".into(), json!(name));
            f.insert("qtype".into(), json!(type_name(q.qtype)));
            f.insert("decision".into(), json!("allow"));
            f.insert("rule".into(), json!(v.rule));
            self.record("dns", f);
        }
        match self.resolver.cached(&name) {
            Some(answer) => {
                let reply = self.answer(&q, &who, answer, limit);
                self.remember(msg, udp, &reply);
                Some(Plan::Answer(reply))
            }
            None => Some(Plan::Lookup(q, name)),
        }
    }

    fn answer(&self, q: &Query, who: &Identity, answer: Result<Arc<[IpAddr]>, ResolveError>, limit: usize) -> Vec<u8> {
        match answer {
            Ok(addrs) => {
                // Addresses the proxy would not dial are not handed out either.
                let shown: Vec<IpAddr> =
                    addrs.iter().copied().filter(|ip| self.gate.address_allowed(who, *ip)).collect();
                dns::response(q, Rcode::NoError, &shown, ANSWER_TTL.as_secs() as u32, limit)
            }
            Err(ResolveError::NoAddress(_)) => dns::response(q, Rcode::NxDomain, &[], 0, limit),
            Err(ResolveError::Failed(..)) => dns::response(q, Rcode::ServFail, &[], 0, limit),
        }
    }

    async fn lookup_and_answer(&self, q: Query, name: String, limit: usize) -> Vec<u8> {
        let who = Identity { agent: self.access.agent.clone(), tool: None };
        let answer = self.resolver.lookup(&name).await;
        self.answer(&q, &who, answer, limit)
    }
}

/// Allowed answers kept for repeats of the same query: a message identical but for its id gets
/// the same answer without the policy, the detector or the cache of addresses being consulted
/// again (none of them could answer differently before the addresses expire). Only answers
/// with addresses are kept; refusals are decided, and recorded, every time.
#[derive(Debug, Default)]
pub(crate) struct Answers(std::sync::Mutex<[AnswerMap; 2]>);

/// Answers by the query without its id (looked up without copying it); one map for answers
/// sized for UDP, one for TCP.
type AnswerMap = std::collections::HashMap<Vec<u8>, (std::time::Instant, Vec<u8>)>;

fn by_transport(limit: Option<usize>) -> usize {
    usize::from(limit.is_none())
}

const MAX_ANSWERS: usize = 4096;

impl Egress {
    fn answered_before(&self, msg: &[u8], limit: Option<usize>) -> Option<Vec<u8>> {
        if msg.len() < 12 || !self.recording() {
            return None;
        }
        let answers = self.answers.0.lock().unwrap_or_else(|e| e.into_inner());
        let (expires, reply) = answers[by_transport(limit)].get(&msg[2..])?;
        if *expires < std::time::Instant::now() {
            return None;
        }
        let mut reply = reply.clone();
        reply[..2].copy_from_slice(&msg[..2]);
        Some(reply)
    }

    fn remember(&self, msg: &[u8], limit: Option<usize>, reply: &[u8]) {
        // Only a NOERROR answer with at least one record.
        if msg.len() < 12 || reply.len() < 12 || reply[3] & 0x0f != 0 || reply[6..8] == [0, 0] {
            return;
        }
        let mut answers = self.answers.0.lock().unwrap_or_else(|e| e.into_inner());
        let map = &mut answers[by_transport(limit)];
        if map.len() >= MAX_ANSWERS {
            map.clear();
        }
        map.insert(msg[2..].to_vec(), (std::time::Instant::now() + ANSWER_TTL, reply.to_vec()));
    }

    /// True the first time `name` is looked up in this session (bounded: past 10,000 names,
    /// no more first lookups are recorded).
    fn first_lookup(&self, name: &str) -> bool {
        let mut seen = self.looked_up.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= 10_000 {
            return false;
        }
        seen.insert(name.to_owned())
    }
}

/// The name in lower case when every label is a host-name label (letters, digits, `-`, `_`).
fn ldh_name(labels: &[Vec<u8>]) -> Option<String> {
    if labels.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (i, l) in labels.iter().enumerate() {
        if l.is_empty() || !l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return None;
        }
        if i > 0 {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(l).to_ascii_lowercase());
    }
    Some(out)
}

fn type_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        28 => "AAAA".into(),
        16 => "TXT".into(),
        15 => "MX".into(),
        5 => "CNAME".into(),
        12 => "PTR".into(),
        33 => "SRV".into(),
        255 => "ANY".into(),
        65 => "HTTPS".into(),
        other => format!("TYPE{other}"),
    }
}

pub(crate) async fn serve_udp(eg: Arc<Egress>, socket: std::net::UdpSocket) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let socket = Arc::new(UdpSocket::from_std(socket)?);
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(_) => continue,
        };
        match eg.plan(&buf[..n], Some(512)) {
            None => {}
            Some(Plan::Answer(reply)) => {
                let _ = socket.send_to(&reply, peer).await;
            }
            Some(Plan::Lookup(q, name)) => {
                // A lookup waits on the host's resolver: off the receive loop.
                let (eg, socket) = (eg.clone(), socket.clone());
                tokio::spawn(async move {
                    let limit = q.udp_limit();
                    let reply = eg.lookup_and_answer(q, name, limit).await;
                    let _ = socket.send_to(&reply, peer).await;
                });
            }
        }
    }
}

pub(crate) async fn serve_tcp(eg: Arc<Egress>, listener: std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let eg = eg.clone();
        tokio::spawn(async move {
            let mut len = [0u8; 2];
            let mut msg = vec![0u8; 65_535];
            while let Ok(Ok(_)) = timeout(eg.timeouts.head, stream.read_exact(&mut len)).await {
                let n = usize::from(u16::from_be_bytes(len));
                if !matches!(timeout(eg.timeouts.head, stream.read_exact(&mut msg[..n])).await, Ok(Ok(_))) {
                    return;
                }
                let reply = match eg.plan(&msg[..n], None) {
                    None => return,
                    Some(Plan::Answer(r)) => r,
                    Some(Plan::Lookup(q, name)) => eg.lookup_and_answer(q, name, 65_535).await,
                };
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}
