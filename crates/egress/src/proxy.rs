//! The forward proxy: HTTP/1.1 (absolute-form requests, kept alive), `CONNECT` and SOCKS5 on
//! one port, told apart by the first byte.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::gate::{Identity, Verdict};
use crate::http::{self, Conn, Framing, HeadError, MAX_HEAD, Reject};
use crate::meter::Outbound;
use crate::splice::Dir;
use crate::{Egress, socks};

/// A destination after normalisation.
#[derive(Clone, Debug)]
pub(crate) struct Dest {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Dest {
    pub(crate) fn key(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a destination was not reached.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The policy (or a built-in protection) said no.
    Denied(Verdict),
    /// Resolution or the connection failed.
    Failed(String),
}

/// The error a copy stops with when the outbound ceiling is reached.
#[derive(Debug)]
struct CeilingReached;

impl std::fmt::Display for CeilingReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the session's outbound byte ceiling is reached")
    }
}

impl std::error::Error for CeilingReached {}

fn is_ceiling(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<CeilingReached>())
}

fn ceiling_verdict() -> Verdict {
    Verdict::deny("network.outbound_bytes", CeilingReached.to_string())
}

pub(crate) async fn serve(eg: Arc<Egress>, listener: std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => {
                // Out of descriptors or memory: back off rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(client(eg.clone(), stream));
    }
}

async fn client(eg: Arc<Egress>, stream: TcpStream) {
    let mut conn = Conn::new(stream);
    match timeout(eg.timeouts.head, conn.fill(MAX_HEAD)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
    if conn.buffered()[0] == 5 {
        socks::serve(eg, conn).await;
    } else {
        http_client(eg, conn).await;
    }
}

impl Egress {
    /// The destination `host:port` decided for `who`.
    pub(crate) fn decide(&self, who: &Identity, host: &str, port: u16) -> Result<Dest, (Dest, Verdict)> {
        let raw = Dest { host: host.to_owned(), port };
        // The policy's own normal form: the gate compares in it, and the resolver looks it up.
        let host = match portcullis_policy::normalize_host(host.trim_start_matches('[').trim_end_matches(']')) {
            Ok(h) => h.into_owned(),
            Err(e) => return Err((raw, Verdict::deny("builtin invalid host", e.to_string()))),
        };
        let dest = Dest { host, port };
        if !self.recording() {
            return Err((
                dest,
                Verdict::deny("audit", "the session's event log cannot be written, so nothing is let through"),
            ));
        }
        if self.meter.exhausted() {
            return Err((dest, ceiling_verdict()));
        }
        let v = self.gate.connect(who, &dest.host, port);
        if v.allow { Ok(dest) } else { Err((dest, v)) }
    }

    /// Resolves `dest` once, drops the addresses in special ranges the policy does not list, and
    /// connects to the first remaining address that answers.
    pub(crate) async fn dial(&self, who: &Identity, dest: &Dest) -> Result<(TcpStream, SocketAddr), Refusal> {
        let addrs = self.resolver.lookup(&dest.host).await.map_err(|e| Refusal::Failed(e.to_string()))?;
        let allowed: Vec<IpAddr> = addrs.iter().copied().filter(|ip| self.gate.address_allowed(who, *ip)).collect();
        if allowed.is_empty() {
            let list: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
            return Err(Refusal::Denied(Verdict::deny(
                "builtin special ranges",
                format!(
                    "{} resolves only to special-range addresses ({}) that [network] allow_cidrs does not list",
                    dest.host,
                    list.join(", ")
                ),
            )));
        }
        let mut last = String::new();
        for ip in allowed {
            let addr = SocketAddr::new(ip, dest.port);
            match timeout(self.timeouts.connect, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr));
                }
                Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
                Err(_) => last = format!("cannot connect to {addr}: timed out"),
            }
        }
        Err(Refusal::Failed(last))
    }

    /// Counts `n` client-to-upstream bytes before they are sent.
    pub(crate) fn account_up(&self, n: usize) -> io::Result<()> {
        match self.meter.reserve(n as u64) {
            Outbound::Ok => Ok(()),
            Outbound::Warn => {
                let mut f = Map::new();
                f.insert("outbound_bytes".into(), json!(self.meter.outbound()));
                f.insert("ceiling".into(), json!(self.meter.ceiling()));
                f.insert("message".into(), json!("the session has sent 80% of its outbound byte ceiling"));
                self.record("egress_warning", f);
                Ok(())
            }
            Outbound::Exceeded => Err(io::Error::other(CeilingReached)),
        }
    }

    /// Records one request or tunnel and adds it to its destination's totals.
    pub(crate) fn record_connection(&self, c: &Connection<'_>) {
        let allowed = c.verdict.as_ref().is_none_or(|v| v.allow);
        self.meter.finish(&c.dest.as_ref().map(Dest::key).unwrap_or_default(), c.up, c.down, allowed);
        let mut f = Self::connection_fields(c);
        if c.via != "http" {
            f.insert("phase".into(), json!("close"));
        }
        self.record("connect", f);
    }

    /// Records a tunnel while it runs (`phase`: `open` once it is allowed and dialled, then
    /// `progress`), with what it has moved so far. Its destination's totals are counted at
    /// its close.
    pub(crate) fn record_tunnel(&self, c: &Connection<'_>, phase: &str) {
        let mut f = Self::connection_fields(c);
        f.insert("phase".into(), json!(phase));
        self.record("connect", f);
    }

    fn connection_fields(c: &Connection<'_>) -> Map<String, serde_json::Value> {
        let allowed = c.verdict.as_ref().is_none_or(|v| v.allow);
        let mut f = Map::new();
        f.insert("via".into(), json!(c.via));
        f.insert("agent".into(), json!(c.who.agent));
        if let Some(tool) = &c.who.tool {
            f.insert("tool".into(), json!(tool));
        }
        if let Some(d) = &c.dest {
            f.insert("host".into(), json!(d.host));
            f.insert("port".into(), json!(d.port));
        }
        if let Some(m) = c.method {
            f.insert("method".into(), json!(m));
        }
        if let Some(p) = &c.path {
            f.insert("path".into(), json!(p));
        }
        f.insert("decision".into(), json!(if allowed { "allow" } else { "deny" }));
        if let Some(v) = &c.verdict {
            f.insert("rule".into(), json!(v.rule));
            f.insert("reason".into(), json!(v.reason));
        }
        if let Some(a) = c.address {
            f.insert("address".into(), json!(a.to_string()));
        }
        if let Some(s) = c.status {
            f.insert("status".into(), json!(s));
        }
        if let Some(e) = &c.error {
            f.insert("error".into(), json!(e));
        }
        f.insert("bytes_up".into(), json!(c.up));
        f.insert("bytes_down".into(), json!(c.down));
        f.insert("duration_ms".into(), json!(c.started.elapsed().as_millis() as u64));
        f
    }

    /// Who a request acts for, from `Proxy-Authorization` (`Basic`, user `agent`, `agent/tool`
    /// or `/tool`). `Err` carries the status and message to answer with.
    pub(crate) fn identify(&self, user_pass: Option<(&str, &str)>) -> Result<Identity, (u16, String)> {
        let (user, pass) = match (user_pass, &self.access.password) {
            (None, Some(_)) => return Err((407, "this proxy needs credentials".into())),
            (None, None) => return Ok(Identity { agent: self.access.agent.clone(), tool: None }),
            (Some(up), _) => up,
        };
        if let Some(want) = &self.access.password
            && !constant_time_eq(pass.as_bytes(), want.as_bytes())
        {
            return Err((407, "wrong proxy credentials".into()));
        }
        let (agent, tool) = match user.split_once('/') {
            Some((a, t)) => (a, Some(t)),
            None => (user, None),
        };
        let agent = if agent.is_empty() { self.access.agent.clone() } else { Some(agent.to_owned()) };
        if self.access.agent_locked && agent != self.access.agent {
            return Err((
                403,
                format!(
                    "this session's proxy acts for agent {:?} only",
                    self.access.agent.as_deref().unwrap_or("(default)")
                ),
            ));
        }
        if let Some(a) = &agent
            && !self.gate.knows_agent(a)
        {
            return Err((403, format!("the policy has no agent `{a}`")));
        }
        Ok(Identity { agent, tool: tool.filter(|t| !t.is_empty()).map(str::to_owned) })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What is recorded about one request or tunnel.
pub(crate) struct Connection<'a> {
    pub(crate) via: &'static str,
    pub(crate) who: &'a Identity,
    pub(crate) dest: Option<Dest>,
    pub(crate) method: Option<&'a str>,
    pub(crate) path: Option<String>,
    pub(crate) verdict: Option<Verdict>,
    pub(crate) address: Option<SocketAddr>,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) up: u64,
    pub(crate) down: u64,
    pub(crate) started: Instant,
}

impl<'a> Connection<'a> {
    pub(crate) fn new(via: &'static str, who: &'a Identity) -> Self {
        Connection {
            via,
            who,
            dest: None,
            method: None,
            path: None,
            verdict: None,
            address: None,
            status: None,
            error: None,
            up: 0,
            down: 0,
            started: Instant::now(),
        }
    }
}

/// The 403 a denial answers with: a JSON body and `x-portcullis-denied`, both naming the rule
/// and saying how to allow the destination.
pub(crate) fn denial(dest: &Dest, v: &Verdict, close: bool) -> Vec<u8> {
    let how = if v.rule.starts_with("network.outbound_bytes") {
        "raise [network] outbound_bytes in the policy".to_owned()
    } else if v.rule.starts_with("builtin special ranges") {
        "add the address's range to [network] allow_cidrs in the policy".to_owned()
    } else if v.rule.starts_with("audit") {
        "free space for the session's event log".to_owned()
    } else {
        format!("add \"{}\" to [network] allow in the policy", dest.key())
    };
    let body = json!({
        "error": "portcullis denied this connection",
        "destination": dest.key(),
        "rule": v.rule,
        "reason": v.reason,
        "how_to_allow": how,
    })
    .to_string();
    let header = format!("{} ({}); to allow: {how}", v.rule, v.reason);
    http::simple_response(403, "Forbidden", &[("x-portcullis-denied", header)], &body, close)
}

fn error_response(status: u16, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        _ => "Error",
    };
    let extra: Vec<(&str, String)> =
        if status == 407 { vec![("Proxy-Authenticate", "Basic realm=\"portcullis\"".to_owned())] } else { Vec::new() };
    http::simple_response(status, reason, &extra, &json!({"error": message}).to_string(), true)
}

/// Credentials from `Proxy-Authorization: Basic …`.
fn basic_credentials(h: &http::RequestHead) -> Option<(String, String)> {
    let value = http::header(&h.headers, "proxy-authorization")?;
    let text = std::str::from_utf8(value).ok()?;
    let (scheme, data) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(data.trim())?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// An upstream connection kept for the next request to the same destination.
struct Upstream {
    key: String,
    conn: Conn,
    address: SocketAddr,
    /// The host as the client wrote it and the port, whose decision (an allow) still holds:
    /// the policy does not change during a session, and neither does the client's identity.
    asked: (String, u16),
    dest: Dest,
}

async fn http_client(eg: Arc<Egress>, mut conn: Conn) {
    let mut upstream: Option<Upstream> = None;
    loop {
        let len = match timeout(eg.timeouts.head, conn.head(MAX_HEAD)).await {
            Err(_) => {
                // A slow client: cut it off so it holds nothing.
                if !conn.buffered().is_empty() {
                    let _ = conn.io.write_all(&error_response(408, "the request head took too long")).await;
                }
                return;
            }
            Ok(Err(HeadError::TooLarge)) => {
                let _ = conn.io.write_all(&error_response(431, "the request head is too large")).await;
                return;
            }
            Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
        };
        let head = match http::parse_request(&conn.buffered()[..len]) {
            Ok(h) => h,
            Err(Reject(status, message)) => {
                let _ = conn.io.write_all(&error_response(status, message)).await;
                return;
            }
        };
        conn.consume(len);
        let creds = basic_credentials(&head);
        let who = match eg.identify(creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))) {
            Ok(w) => w,
            Err((status, message)) => {
                let _ = conn.io.write_all(&error_response(status, &message)).await;
                return;
            }
        };
        if head.method.eq_ignore_ascii_case("CONNECT") {
            connect_tunnel(&eg, conn, &head, &who).await;
            return;
        }
        if !forward(&eg, &mut conn, &head, &who, &mut upstream).await {
            return;
        }
    }
}

/// `CONNECT host:port`: decide, dial, then relay bytes both ways.
async fn connect_tunnel(eg: &Arc<Egress>, mut conn: Conn, head: &http::RequestHead, who: &Identity) {
    let mut rec = Connection::new("connect", who);
    rec.method = Some("CONNECT");
    let Ok((host, port)) = portcullis_policy::parse_host_port(&head.target) else {
        let _ = conn.io.write_all(&error_response(400, "CONNECT needs host:port")).await;
        return;
    };
    let dest = match eg.decide(who, &host, port) {
        Ok(d) => d,
        Err((dest, v)) => {
            let _ = conn.io.write_all(&denial(&dest, &v, true)).await;
            rec.dest = Some(dest);
            rec.verdict = Some(v);
            rec.status = Some(403);
            eg.record_connection(&rec);
            return;
        }
    };
    rec.dest = Some(dest.clone());
    let (upstream, address) = match eg.dial(who, &dest).await {
        Ok(u) => u,
        Err(refusal) => {
            refuse(eg, &mut conn, &dest, refusal, &mut rec).await;
            return;
        }
    };
    rec.address = Some(address);
    rec.status = Some(200);
    if conn.io.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
        eg.record_connection(&rec);
        return;
    }
    let (client, early) = conn.into_parts();
    // SECURITY: the allowed tunnel is on the record from its start, not only at its end: a
    // long exfiltration, or one whose supervisor is killed, is never without a record.
    eg.record_tunnel(&rec, "open");
    let end = tunnel(eg, client, early, upstream, &mut rec).await;
    rec.error = end;
    eg.record_connection(&rec);
}

/// Answers a refusal (403 for a denial, 502 for a failure) and records it.
async fn refuse(eg: &Egress, conn: &mut Conn, dest: &Dest, refusal: Refusal, rec: &mut Connection<'_>) {
    match refusal {
        Refusal::Denied(v) => {
            let _ = conn.io.write_all(&denial(dest, &v, true)).await;
            rec.status = Some(403);
            rec.verdict = Some(v);
        }
        Refusal::Failed(e) => {
            let _ = conn.io.write_all(&error_response(502, &e)).await;
            rec.status = Some(502);
            rec.error = Some(e);
        }
    }
    eg.record_connection(rec);
}

/// How often a running tunnel is recorded, at the least.
const PROGRESS_EVERY: Duration = Duration::from_secs(60);
/// How many bytes a running tunnel moves between two progress records, at the most.
const PROGRESS_BYTES: u64 = 10 << 20;

/// Relays bytes both ways until the upstream closes, either side fails, the outbound ceiling
/// is reached (the tunnel is cut), or nothing moves for the idle timeout. Returns why it ended
/// when that was not a normal close. The bytes go through pipes (`splice`), not our memory.
pub(crate) async fn tunnel(
    eg: &Egress,
    client: TcpStream,
    early: Vec<u8>,
    mut upstream: TcpStream,
    rec: &mut Connection<'_>,
) -> Option<String> {
    if !early.is_empty() {
        if let Err(e) = eg.account_up(early.len()) {
            return Some(e.to_string());
        }
        if upstream.write_all(&early).await.is_err() {
            return Some("the destination closed".into());
        }
        rec.up += early.len() as u64;
    }
    let (up_pipe, down_pipe) = match (crate::splice::Pipe::new(Dir::Up), crate::splice::Pipe::new(Dir::Down)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Some(format!("cannot make a pipe: {e}")),
    };
    let idle = eg.timeouts.idle;
    // Counted as they go, so a direction cut short still reports what it moved.
    let (sent_up, sent_down) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut count_up = |n: usize| {
        eg.account_up(n)?;
        sent_up.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    };
    let mut count_down = |n: usize| {
        eg.meter.add_down(n as u64);
        sent_down.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    };
    let up_pump = async {
        let r = crate::splice::relay(&up_pipe, &client, &upstream, None, idle, &mut count_up).await;
        crate::splice::shutdown_write(&upstream);
        r
    };
    let down_pump = async {
        let r = crate::splice::relay(&down_pipe, &upstream, &client, None, idle, &mut count_down).await;
        crate::splice::shutdown_write(&client);
        r
    };
    tokio::pin!(up_pump, down_pump);
    let mut up_done = false;
    // Progress: a record every minute, or every 10 MiB moved, whichever comes first.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (base_up, base_down) = (rec.up, rec.down);
    let (mut last_at, mut last_bytes) = (Instant::now(), 0u64);
    let result = loop {
        tokio::select! {
            r = &mut up_pump, if !up_done => match r {
                // The client finished sending; the answer may still be coming.
                Ok(_) => up_done = true,
                Err(e) => break Some(e),
            },
            r = &mut down_pump => break r.err(),
            _ = tick.tick() => {
                let (up, down) = (sent_up.load(Ordering::Relaxed), sent_down.load(Ordering::Relaxed));
                if last_at.elapsed() >= PROGRESS_EVERY || up + down >= last_bytes + PROGRESS_BYTES {
                    rec.up = base_up + up;
                    rec.down = base_down + down;
                    eg.record_tunnel(rec, "progress");
                    (last_at, last_bytes) = (Instant::now(), up + down);
                }
            }
        }
    };
    rec.up = base_up + sent_up.load(Ordering::Relaxed);
    rec.down = base_down + sent_down.load(Ordering::Relaxed);
    if result.as_ref().is_some_and(is_ceiling) {
        rec.verdict = Some(ceiling_verdict());
    }
    result.map(|e| e.to_string())
}

/// One absolute-form request: decided, sent upstream (over a kept connection when it goes to
/// the same destination), its response relayed. Returns whether the client connection stays.
async fn forward(
    eg: &Arc<Egress>,
    conn: &mut Conn,
    head: &http::RequestHead,
    who: &Identity,
    upstream: &mut Option<Upstream>,
) -> bool {
    let mut rec = Connection::new("http", who);
    rec.method = Some(&head.method);
    let url = match url::Url::parse(&head.target) {
        Ok(u) if u.scheme() == "http" => u,
        Ok(_) => {
            let _ =
                conn.io.write_all(&error_response(400, "only http:// URLs are forwarded; use CONNECT for https")).await;
            return false;
        }
        Err(_) => {
            let _ = conn.io.write_all(&error_response(400, "a proxy request needs an absolute http:// URL")).await;
            return false;
        }
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        let _ = conn.io.write_all(&error_response(400, "the URL names no host")).await;
        return false;
    };
    let mut path = url.path().to_owned();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    rec.path = Some(path.clone());
    let framing = match http::request_framing(head) {
        Ok(f) => f,
        Err(Reject(status, message)) => {
            let _ = conn.io.write_all(&error_response(status, message)).await;
            return false;
        }
    };
    let keep = http::client_keeps_alive(head) && framing == Framing::None;
    let raw_host = host.trim_start_matches('[').trim_end_matches(']');
    // The same destination as the kept connection's: its allow stands (the ceiling and the
    // log are checked again all the same).
    let known = upstream
        .as_ref()
        .filter(|u| u.asked.1 == port && u.asked.0 == raw_host && eg.recording() && !eg.meter.exhausted())
        .map(|u| u.dest.clone());
    let decided = match known {
        Some(d) => Ok(d),
        None => eg.decide(who, raw_host, port),
    };
    let dest = match decided {
        Ok(d) => d,
        Err((dest, v)) => {
            // A body we will not read means the connection cannot carry another request.
            let _ = conn.io.write_all(&denial(&dest, &v, !keep)).await;
            rec.dest = Some(dest);
            rec.verdict = Some(v);
            rec.status = Some(403);
            eg.record_connection(&rec);
            return keep;
        }
    };
    rec.dest = Some(dest.clone());
    let key = dest.key();
    let authority = if url.port().is_some() {
        format!("{}:{}", url.host_str().unwrap_or_default(), port)
    } else {
        url.host_str().unwrap_or_default().to_owned()
    };
    let out_head = http::upstream_head(head, &path, &authority, framing);
    // A kept connection may have been closed by the server meanwhile: one retry on a new one
    // when nothing of the request needed to be re-sent but the head.
    for attempt in 0..2 {
        let reused = upstream.as_ref().is_some_and(|u| u.key == key);
        if !reused {
            *upstream = None;
            match eg.dial(who, &dest).await {
                Ok((stream, address)) => {
                    *upstream = Some(Upstream {
                        key: key.clone(),
                        conn: Conn::new(stream),
                        address,
                        asked: (raw_host.to_owned(), port),
                        dest: dest.clone(),
                    })
                }
                Err(refusal) => {
                    refuse(eg, conn, &dest, refusal, &mut rec).await;
                    return false;
                }
            }
        }
        let Some(up) = upstream.as_mut() else { return false };
        rec.address = Some(up.address);
        match exchange(eg, conn, up, head, &out_head, framing, &mut rec).await {
            Exchange::Done { keep: both } => {
                eg.record_connection(&rec);
                // SECURITY: a destination that answered more than the one request (it read a
                // body as a request of its own: CL.0) is not asked again on this connection,
                // or its extra answer would come back as the answer to the next request. After
                // a request with a body the connection is not kept either: the extra answer
                // may still be on its way.
                let unsolicited = upstream.as_ref().is_some_and(|u| !u.conn.buffered().is_empty());
                if !both || unsolicited || framing != Framing::None {
                    *upstream = None;
                }
                return both && http::client_keeps_alive(head);
            }
            Exchange::StaleUpstream if reused && attempt == 0 && framing == Framing::None => {
                *upstream = None;
                rec.up = 0;
                continue;
            }
            Exchange::StaleUpstream | Exchange::Failed => {
                let message = "the destination closed the connection without a response";
                let e = rec.error.take().unwrap_or_else(|| message.to_owned());
                if rec.status.is_none() {
                    let _ = conn.io.write_all(&error_response(502, &e)).await;
                    rec.status = Some(502);
                }
                rec.error = Some(e);
                eg.record_connection(&rec);
                *upstream = None;
                return false;
            }
            Exchange::Ceiling => {
                let v = ceiling_verdict();
                let _ = conn.io.write_all(&denial(&dest, &v, true)).await;
                rec.status = Some(403);
                rec.verdict = Some(v);
                eg.record_connection(&rec);
                *upstream = None;
                return false;
            }
        }
    }
    false
}

enum Exchange {
    /// The response was relayed; `keep` when both sides may carry another request.
    Done { keep: bool },
    /// A kept upstream connection closed before answering.
    StaleUpstream,
    /// The outbound ceiling stopped the request body.
    Ceiling,
    /// Something else failed (`rec.error` says what; `rec.status` is set once the client got
    /// any of the response).
    Failed,
}

async fn exchange(
    eg: &Egress,
    conn: &mut Conn,
    up: &mut Upstream,
    head: &http::RequestHead,
    out_head: &[u8],
    framing: Framing,
    rec: &mut Connection<'_>,
) -> Exchange {
    if eg.account_up(out_head.len()).is_err() {
        return Exchange::Ceiling;
    }
    if up.conn.io.write_all(out_head).await.is_err() {
        return Exchange::StaleUpstream;
    }
    rec.up += out_head.len() as u64;
    if http::lists(&head.headers, "expect", "100-continue") && framing != Framing::None {
        // The proxy answers for the destination, so the client sends its body at once.
        if conn.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
            rec.error = Some("the client closed".into());
            return Exchange::Failed;
        }
    }
    let mut sent = 0u64;
    let body = http::copy_body(conn, &mut up.conn.io, framing, Dir::Up, &mut |n| {
        eg.account_up(n)?;
        sent += n as u64;
        Ok(())
    })
    .await;
    rec.up += sent;
    if let Err(e) = body {
        if is_ceiling(&e) {
            return Exchange::Ceiling;
        }
        rec.error = Some(format!("the request body could not be relayed: {e}"));
        return Exchange::Failed;
    }
    // The response, after any interim (1xx) ones.
    loop {
        let len = match timeout(eg.timeouts.idle, up.conn.head(MAX_HEAD)).await {
            Ok(Ok(n)) => n,
            Ok(Err(HeadError::Closed)) if rec.down == 0 => return Exchange::StaleUpstream,
            Ok(Err(_)) => {
                rec.error = Some("the destination sent no valid response head".into());
                return Exchange::Failed;
            }
            Err(_) => {
                rec.error = Some("the destination did not answer in time".into());
                return Exchange::Failed;
            }
        };
        let Some(res) = http::parse_response(&up.conn.buffered()[..len]) else {
            rec.error = Some("the destination's response head is malformed".into());
            return Exchange::Failed;
        };
        rec.status = Some(res.status);
        let interim = (100..200).contains(&res.status) && res.status != 101;
        let framing = if interim { Some(Framing::None) } else { http::response_framing(&head.method, &res) };
        let Some(mut framing) = framing else {
            rec.error = Some("the destination's response has a bad Content-Length".into());
            return Exchange::Failed;
        };
        // The head, and as much of a sized body as has already arrived, in one write.
        let early = match framing {
            Framing::Length(n) => (up.conn.buffered().len() - len).min(usize::try_from(n).unwrap_or(usize::MAX)),
            _ => 0,
        };
        if conn.io.write_all(&up.conn.buffered()[..len + early]).await.is_err() {
            rec.error = Some("the client closed".into());
            return Exchange::Failed;
        }
        up.conn.consume(len + early);
        eg.meter.add_down((len + early) as u64);
        rec.down += (len + early) as u64;
        if let Framing::Length(n) = framing {
            framing = Framing::Length(n - early as u64);
        }
        if interim {
            continue;
        }
        let mut got = 0u64;
        let body = http::copy_body(&mut up.conn, &mut conn.io, framing, Dir::Down, &mut |n| {
            eg.meter.add_down(n as u64);
            got += n as u64;
            Ok(())
        })
        .await;
        rec.down += got;
        if let Err(e) = body {
            rec.error = Some(format!("the response body could not be relayed: {e}"));
            return Exchange::Failed;
        }
        let keep = framing != Framing::Close && http::server_keeps_alive(&res) && res.status != 101;
        return Exchange::Done { keep };
    }
}
