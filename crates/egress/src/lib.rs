//! Portcullis egress: the default-deny forward proxy (HTTP/1.1, `CONNECT`, SOCKS5) and the
//! filtering resolver, both run by the supervisor.
//!
//! Every destination is decided by the policy with the key (agent, tool when known, normalised
//! host, port). A name is resolved once, by the host's own resolution; the addresses in the
//! special ranges (loopback, private, link-local, metadata, …) are dropped unless
//! `network.allow_cidrs` lists them, and only the remaining addresses are dialled, so nothing can
//! rebind between the check and the connect. Client-to-upstream bytes count against the
//! session's ceiling. Every request, tunnel and refused lookup becomes a record.
//!
//! Inside `portcullis run` the proxy's and the resolver's listening sockets are made in the
//! sandbox's own network namespace (`127.0.0.1:3128` and `127.0.0.1:53`) and handed to the
//! supervisor, which serves them here: the agent's connections arrive in the supervisor
//! without a relay process in between. `portcullis proxy` serves the same on a host port.

pub mod dns;
mod gate;
mod http;
mod meter;
mod proxy;
mod resolve;
mod resolver_server;
mod socks;
mod splice;
pub mod tunnel;

use std::sync::Arc;
use std::time::Duration;

pub use gate::{Gate, Identity, PolicyGate, Verdict};
pub use http::inspect_request_head;
pub use meter::{DestinationTotals, Meter};
pub use resolve::{HostResolver, ResolveError};
pub use resolver_server::Plan;

/// Where records go: the session's event log. A failed write makes every later connection a
/// denial (no audit, no action).
pub trait Recorder: Send + Sync {
    /// Records an event of `kind` with `fields`; false when it could not be written.
    fn record(&self, kind: &str, fields: serde_json::Map<String, serde_json::Value>) -> bool;

    /// False once the trail takes no more from this session for any reason (a record of
    /// another part of it failed, or the session passed its record budget): the egress then
    /// denies everything, as after a failure of its own.
    fn accepting(&self) -> bool {
        true
    }
}

/// How the proxy authenticates and whom it serves.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The agent connections act for when their credentials name none.
    pub agent: Option<String>,
    /// Credentials may not name another agent (a sandbox session's proxy).
    pub agent_locked: bool,
    /// The password every client must give (`Proxy-Authorization: Basic`, or the SOCKS5
    /// username/password method); `None` for a proxy only the sandbox can reach.
    pub password: Option<String>,
}

/// Timeouts.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// For a client to send a whole request head (slow-header clients are cut off).
    pub head: Duration,
    /// For a TCP connection to a destination.
    pub connect: Duration,
    /// For a tunnel or a response with no bytes either way.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { head: Duration::from_secs(10), connect: Duration::from_secs(10), idle: Duration::from_secs(300) }
    }
}

/// The DNS side's settings.
#[derive(Clone, Copy, Debug)]
pub struct DnsOptions {
    /// Deny tunnel-shaped names even under an allowed parent (otherwise they are recorded).
    pub strict: bool,
    /// Label length past which a name is tunnel-shaped.
    pub max_label_length: u32,
    /// Entropy (bits a byte) past which a label is tunnel-shaped.
    pub max_label_entropy: f64,
    /// Distinct subdomains under one parent past which names are tunnel-shaped.
    pub max_unique_subdomains: u32,
}

/// One session's egress: the proxy, the resolver and their shared state.
pub struct Egress {
    gate: Arc<dyn Gate>,
    resolver: HostResolver,
    meter: Meter,
    recorder: Arc<dyn Recorder>,
    access: Access,
    timeouts: Timeouts,
    dns: DnsOptions,
    tunnels: tunnel::TunnelDetector,
    /// A record could not be written: everything is denied from then on.
    failed: std::sync::atomic::AtomicBool,
    /// Names looked up so far (their first lookup is recorded).
    looked_up: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Allowed DNS answers, for repeated queries.
    answers: resolver_server::Answers,
}

impl std::fmt::Debug for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Egress").field("access", &self.access).field("meter", &self.meter).finish_non_exhaustive()
    }
}

/// What an [`Egress`] is set up with.
#[derive(Clone, Debug)]
pub struct Options {
    /// Who is served and how they authenticate.
    pub access: Access,
    /// The session's ceiling on client-to-upstream bytes.
    pub ceiling: Option<u64>,
    /// The resolver's settings.
    pub dns: DnsOptions,
    /// Timeouts.
    pub timeouts: Timeouts,
}

impl Egress {
    /// An egress deciding with `gate` and recording to `recorder`.
    pub fn new(gate: Arc<dyn Gate>, recorder: Arc<dyn Recorder>, options: Options) -> Arc<Self> {
        let dns = options.dns;
        Arc::new(Egress {
            gate,
            resolver: HostResolver::new(),
            meter: Meter::new(options.ceiling),
            recorder,
            access: options.access,
            timeouts: options.timeouts,
            tunnels: tunnel::TunnelDetector::new(
                dns.max_label_length,
                dns.max_label_entropy,
                dns.max_unique_subdomains,
            ),
            dns,
            failed: std::sync::atomic::AtomicBool::new(false),
            looked_up: std::sync::Mutex::new(std::collections::HashSet::new()),
            answers: resolver_server::Answers::default(),
        })
    }

    /// The byte meter (totals and per destination, for the session summary).
    pub fn meter(&self) -> &Meter {
        &self.meter
    }

    /// Serves proxy clients (HTTP, `CONNECT` and SOCKS5 on one port) from `listener` until the
    /// runtime stops.
    pub async fn serve_proxy(self: Arc<Self>, listener: std::net::TcpListener) -> std::io::Result<()> {
        proxy::serve(self, listener).await
    }

    /// Serves DNS over UDP from `socket`.
    pub async fn serve_dns_udp(self: Arc<Self>, socket: std::net::UdpSocket) -> std::io::Result<()> {
        resolver_server::serve_udp(self, socket).await
    }

    /// Serves DNS over TCP from `listener`.
    pub async fn serve_dns_tcp(self: Arc<Self>, listener: std::net::TcpListener) -> std::io::Result<()> {
        resolver_server::serve_tcp(self, listener).await
    }

    /// Records an event; a failure denies everything afterwards.
    fn record(&self, kind: &str, fields: serde_json::Map<String, serde_json::Value>) {
        if !self.recorder.record(kind, fields) {
            self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// False once a record could not be written.
    fn recording(&self) -> bool {
        !self.failed.load(std::sync::atomic::Ordering::SeqCst) && self.recorder.accepting()
    }
}
