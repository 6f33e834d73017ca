//! DNS messages, as far as the resolver needs them: a query's header and single question read
//! from the wire, and answers (A/AAAA), refusals and errors written back.
//!
//! The parser takes untrusted bytes from the sandbox: every length is checked, compression
//! pointers are followed a bounded number of times and only backwards, and a name is at most
//! 255 bytes. Anything it cannot read is an error, answered `FORMERR` when the header was read.

use std::net::IpAddr;

/// `A`: an IPv4 address.
pub const TYPE_A: u16 = 1;
/// `AAAA`: an IPv6 address.
pub const TYPE_AAAA: u16 = 28;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// Response codes the resolver sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rcode {
    /// An answer (possibly empty).
    NoError = 0,
    /// The query could not be read.
    FormErr = 1,
    /// The name could not be resolved for a reason other than its absence.
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// The opcode is not a standard query.
    NotImp = 4,
    /// Refused by policy.
    Refused = 5,
}

/// Why a message could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// Shorter than its header says.
    #[error("the message is truncated")]
    Truncated,
    /// A name with a bad label, a loop of pointers, or longer than 255 bytes.
    #[error("a name in the message is malformed")]
    BadName,
    /// Not exactly one question, or a response instead of a query.
    #[error("the message is not a query with one question")]
    NotAQuery,
}

/// A query: its header fields and its one question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The transaction id.
    pub id: u16,
    /// The header's second 16 bits (opcode, RD and the rest).
    pub flags: u16,
    /// The question's labels, as sent (case and bytes kept: a tunnel hides data in them).
    pub labels: Vec<Vec<u8>>,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
    /// The question's wire bytes (name, type and class), copied into the answer.
    question: Vec<u8>,
    /// The EDNS payload size the client offered, if it sent an OPT record.
    pub edns_size: Option<u16>,
}

impl Query {
    /// The opcode (0 is a standard query).
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    /// The name as text: labels joined by dots, bytes outside printable ASCII as `\DDD` (the
    /// presentation format), without a trailing dot; `.` for the root.
    pub fn name(&self) -> String {
        if self.labels.is_empty() {
            return ".".to_owned();
        }
        let mut out = String::new();
        for (i, label) in self.labels.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            for &b in label {
                match b {
                    b'.' | b'\\' => {
                        out.push('\\');
                        out.push(b as char);
                    }
                    0x21..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\{b:03}")),
                }
            }
        }
        out
    }

    /// The largest response the client accepts over UDP.
    pub fn udp_limit(&self) -> usize {
        self.edns_size.map_or(512, |s| usize::from(s).clamp(512, 4096))
    }
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, DnsError> {
    msg.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(DnsError::Truncated)
}

/// Reads the name at `at`; returns its labels and the offset just past it (past the first
/// pointer when the name is compressed).
fn read_name(msg: &[u8], mut at: usize) -> Result<(Vec<Vec<u8>>, usize), DnsError> {
    let mut labels = Vec::new();
    let mut end = None;
    let mut total = 0usize;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at).ok_or(DnsError::Truncated)?;
        match len {
            0 => {
                return Ok((labels, end.unwrap_or(at + 1)));
            }
            1..=63 => {
                let label = msg.get(at + 1..at + 1 + usize::from(len)).ok_or(DnsError::Truncated)?;
                total += usize::from(len) + 1;
                if total > 255 {
                    return Err(DnsError::BadName);
                }
                labels.push(label.to_vec());
                at += 1 + usize::from(len);
            }
            0xc0..=0xff => {
                let target = usize::from(u16_at(msg, at)? & 0x3fff);
                // Only backwards, and a bounded number of times: no loops.
                jumps += 1;
                if target >= at || jumps > 16 {
                    return Err(DnsError::BadName);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(DnsError::BadName),
        }
    }
}

/// Reads a query. Only a header with the QR bit clear and exactly one question is a query.
pub fn parse_query(msg: &[u8]) -> Result<Query, DnsError> {
    if msg.len() < 12 {
        return Err(DnsError::Truncated);
    }
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    let (qd, an, ns, ar) = (u16_at(msg, 4)?, u16_at(msg, 6)?, u16_at(msg, 8)?, u16_at(msg, 10)?);
    if flags & 0x8000 != 0 || qd != 1 {
        return Err(DnsError::NotAQuery);
    }
    let (labels, after_name) = read_name(msg, 12)?;
    let qtype = u16_at(msg, after_name)?;
    let qclass = u16_at(msg, after_name + 2)?;
    let question = msg[12..after_name + 4].to_vec();
    // An OPT record among the additional records carries the client's UDP payload size. Answer
    // and authority records do not belong in a query; they are skipped like any other.
    let mut at = after_name + 4;
    let mut edns_size = None;
    for _ in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)).min(64) {
        let (_, after) = read_name(msg, at)?;
        let rtype = u16_at(msg, after)?;
        let class = u16_at(msg, after + 2)?;
        let rdlen = usize::from(u16_at(msg, after + 8)?);
        if rtype == TYPE_OPT {
            edns_size = Some(class);
        }
        at = after + 10 + rdlen;
        if at > msg.len() {
            return Err(DnsError::Truncated);
        }
    }
    Ok(Query { id, flags, labels, qtype, qclass, question, edns_size })
}

/// The header of a response to a message that could not be read as a query, when at least its
/// id could be: `FORMERR` with no question.
pub fn format_error(msg: &[u8]) -> Option<Vec<u8>> {
    let id = u16_at(msg, 0).ok()?;
    let flags = u16_at(msg, 2).ok()?;
    if flags & 0x8000 != 0 {
        // Never answer a response: that is how reflection loops start.
        return None;
    }
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&(0x8000 | (flags & 0x7900) | 0x0080 | Rcode::FormErr as u16).to_be_bytes());
    out.extend_from_slice(&[0; 8]);
    Some(out)
}

/// A response to `query`: `rcode`, and for `NoError` an answer record per address of the
/// question's family, with `ttl`. Over UDP (`limit`), answers that do not fit are left out and
/// the TC bit is set, so the client retries over TCP.
pub fn response(query: &Query, rcode: Rcode, addrs: &[IpAddr], ttl: u32, limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + addrs.len() * 28);
    out.extend_from_slice(&query.id.to_be_bytes());
    // QR, the query's opcode and RD, RA; AA stays clear: the answers come from the host's resolution.
    let flags = 0x8000 | (query.flags & 0x7900) | 0x0080 | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&u16::from(query.edns_size.is_some()).to_be_bytes());
    out.extend_from_slice(&query.question);
    let opt_len = if query.edns_size.is_some() { 11 } else { 0 };
    let mut count: u16 = 0;
    let mut truncated = false;
    if rcode == Rcode::NoError {
        for addr in addrs {
            let rdata: Vec<u8> = match (addr, query.qtype) {
                (IpAddr::V4(v4), TYPE_A) => v4.octets().to_vec(),
                (IpAddr::V6(v6), TYPE_AAAA) => v6.octets().to_vec(),
                _ => continue,
            };
            if out.len() + 12 + rdata.len() + opt_len > limit {
                truncated = true;
                break;
            }
            // The name is a pointer to the question's (offset 12).
            out.extend_from_slice(&[0xc0, 0x0c]);
            out.extend_from_slice(&query.qtype.to_be_bytes());
            out.extend_from_slice(&CLASS_IN.to_be_bytes());
            out.extend_from_slice(&ttl.to_be_bytes());
            out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            out.extend_from_slice(&rdata);
            count += 1;
        }
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    if truncated {
        out[2] |= 0x02;
    }
    if query.edns_size.is_some() {
        // OPT: root name, type 41, our payload size, no extended rcode or flags, no options.
        out.extend_from_slice(&[0]);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&1232u16.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of `qtype`, as a stub resolver sends it.
    pub(crate) fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&0x0100u16.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        m
    }

    #[test]
    fn a_query_is_read_and_answered() {
        let q = parse_query(&query(7, "Api.GitHub.com", TYPE_A, true)).unwrap();
        assert_eq!((q.id, q.qtype, q.opcode(), q.edns_size), (7, TYPE_A, 0, Some(1232)));
        assert_eq!(q.name(), "Api.GitHub.com");
        let addrs = ["140.82.112.5".parse().unwrap(), "::1".parse().unwrap()];
        let r = response(&q, Rcode::NoError, &addrs, 30, 512);
        assert_eq!(&r[0..2], &[0, 7]);
        assert_eq!(r[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "only the A record answers an A query");
        assert!(r.windows(4).any(|w| w == [140, 82, 112, 5]));
    }

    #[test]
    fn refusals_carry_no_answer() {
        let q = parse_query(&query(9, "evil.example", TYPE_A, false)).unwrap();
        let r = response(&q, Rcode::Refused, &["1.2.3.4".parse().unwrap()], 30, 512);
        assert_eq!(r[3] & 0x0f, 5);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(parse_query(&[0; 5]), Err(DnsError::Truncated));
        let mut m = query(1, "a.b", TYPE_A, false);
        m[2] |= 0x80;
        assert_eq!(parse_query(&m), Err(DnsError::NotAQuery));
        assert!(format_error(&m).is_none(), "a response is never answered");
        // A pointer to itself.
        let mut m = query(1, "", TYPE_A, false);
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m), Err(DnsError::BadName));
        // A label running past the end.
        let mut m = query(1, "", TYPE_A, false);
        m.truncate(12);
        m.extend_from_slice(&[10, b'a']);
        assert_eq!(parse_query(&m), Err(DnsError::Truncated));
    }

    #[test]
    fn presentation_escapes_odd_bytes() {
        let mut m = query(1, "", TYPE_A, false);
        m.truncate(12);
        m.extend_from_slice(&[3, b'a', 0xc3, b'.', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1]);
        assert_eq!(parse_query(&m).unwrap().name(), "a\\195\\..org");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(q) = parse_query(&bytes) {
                let r = response(&q, Rcode::NoError, &["1.2.3.4".parse().unwrap()], 1, 512);
                proptest::prop_assert!(r.len() >= 12);
            }
            let _ = format_error(&bytes);
        }
    }
}
