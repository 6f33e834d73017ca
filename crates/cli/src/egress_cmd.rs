//! `portcullis proxy`, and the egress plumbing `run` shares with it: the session log's
//! recorder for the proxy and resolver, the runtime that serves them, and the summary lines.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use portcullis_egress::{Access, DnsOptions, Egress, Options, PolicyGate, Recorder, Timeouts};
use portcullis_harness::events::Event;
use portcullis_policy::{Policy, Settings};
use serde_json::{Map, Value, json};

use crate::sessions;

/// Records from the proxy and the resolver, written to the session's log by a thread of their
/// own: records gather in a buffer, which the thread writes every few milliseconds (or at once
/// when it grows large), so a busy proxy costs one `write` per batch and no wake-up per record.
/// The file is opened for appending beside the session's other writer; each `write` holds
/// whole lines, so records never interleave.
pub(crate) struct LogRecorder {
    session: String,
    shared: Arc<LogShared>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct LogShared {
    buffer: std::sync::Mutex<Vec<u8>>,
    wake: std::sync::Condvar,
    failed: AtomicBool,
    closed: AtomicBool,
}

/// How long a record may wait in the buffer.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(5);
/// A buffer this large is written at once.
const FLUSH_AT: usize = 256 * 1024;

impl LogRecorder {
    /// A recorder appending to `path` (which exists) for `session`.
    pub(crate) fn open(path: &Path, session: &str) -> Result<Arc<Self>> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the session's event log `{}`", path.display()))?;
        let shared = Arc::new(LogShared {
            buffer: std::sync::Mutex::new(Vec::with_capacity(FLUSH_AT)),
            wake: std::sync::Condvar::new(),
            failed: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("egress-log".into())
            .spawn(move || write_batches(file, &for_writer))
            .context("cannot start the egress log's writer")?;
        Ok(Arc::new(LogRecorder { session: session.to_owned(), shared, writer: std::sync::Mutex::new(Some(writer)) }))
    }

    /// Writes what is buffered and stops the writer; false when a record was lost.
    pub(crate) fn finish(&self) -> bool {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(w) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = w.join();
        }
        !self.shared.failed.load(Ordering::SeqCst)
    }
}

fn write_batches(mut file: std::fs::File, shared: &LogShared) {
    let mut batch = Vec::with_capacity(FLUSH_AT);
    loop {
        {
            let mut buffer = shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            // Records gather for up to FLUSH_EVERY; `finish` (or a full buffer) wakes us early.
            if !shared.closed.load(Ordering::SeqCst) {
                buffer =
                    shared.wake.wait_timeout(buffer, FLUSH_EVERY).map(|(b, _)| b).unwrap_or_else(|e| e.into_inner().0);
            }
            std::mem::swap(&mut *buffer, &mut batch);
        }
        if !batch.is_empty() {
            if file.write_all(&batch).is_err() {
                shared.failed.store(true, Ordering::SeqCst);
            }
            batch.clear();
        } else if shared.closed.load(Ordering::SeqCst) {
            return;
        }
    }
}

impl Recorder for LogRecorder {
    fn record(&self, kind: &str, fields: Map<String, Value>) -> bool {
        if self.shared.failed.load(Ordering::Relaxed) || self.shared.closed.load(Ordering::Relaxed) {
            return false;
        }
        // Serialised before the lock, which other threads' records wait on.
        let event = Event::now(&self.session, kind, Value::Object(fields));
        let Ok(mut line) = serde_json::to_vec(&event) else { return false };
        line.push(b'\n');
        let mut buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.extend_from_slice(&line);
        if buffer.len() >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
        true
    }
}

/// The egress options a profile's settings give.
pub(crate) fn options(settings: &Settings, access: Access) -> Options {
    let dns = &settings.network.dns;
    Options {
        access,
        ceiling: settings.network.outbound_bytes.map(|b| b.0),
        dns: DnsOptions {
            strict: dns.strict,
            max_label_length: dns.max_label_length,
            max_label_entropy: dns.max_label_entropy,
            max_unique_subdomains: dns.max_unique_subdomains,
        },
        timeouts: Timeouts::default(),
    }
}

/// A runtime serving one egress: the proxy on `proxy`, the resolver on `dns` (UDP and TCP).
pub(crate) struct Served {
    runtime: tokio::runtime::Runtime,
    pub(crate) egress: Arc<Egress>,
}

impl Served {
    /// A runtime for `egress` on `workers` threads, serving nothing yet.
    pub(crate) fn new(egress: Arc<Egress>, workers: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("egress")
            .on_thread_start(|| {
                let _ = portcullis_sandbox::block_sigpipe();
            })
            .enable_io()
            .enable_time()
            .build()
            .context("cannot start the egress runtime")?;
        Ok(Served { runtime, egress })
    }

    /// Serves the proxy on `proxy` and the resolver on `dns` (UDP and TCP).
    pub(crate) fn serve(
        &self,
        proxy: Option<std::net::TcpListener>,
        dns: Option<(std::net::UdpSocket, std::net::TcpListener)>,
    ) {
        let _guard = self.runtime.enter();
        if let Some(l) = proxy {
            self.runtime.spawn(self.egress.clone().serve_proxy(l));
        }
        if let Some((udp, tcp)) = dns {
            self.runtime.spawn(self.egress.clone().serve_dns_udp(udp));
            self.runtime.spawn(self.egress.clone().serve_dns_tcp(tcp));
        }
    }

    /// Stops serving: open connections are dropped, and the runtime's threads end on their own
    /// (nothing they still do can change the meters' totals by then, or be recorded).
    pub(crate) fn stop(self) -> Arc<Egress> {
        self.runtime.shutdown_background();
        self.egress
    }
}

/// The egress part of a session summary: totals and the busiest destinations.
pub(crate) fn summary(egress: &Egress) -> Value {
    let meter = egress.meter();
    let destinations: Vec<Value> = meter
        .destinations()
        .into_iter()
        .map(|(d, t)| json!({"destination": d, "up": t.up, "down": t.down, "allowed": t.allowed, "denied": t.denied}))
        .collect();
    json!({
        "outbound_bytes": meter.outbound(),
        "inbound_bytes": meter.inbound(),
        "ceiling": meter.ceiling(),
        "ceiling_reached": meter.exhausted(),
        "destinations": destinations,
    })
}

#[derive(Debug, Args)]
#[command(after_help = "Serves the egress proxy alone: HTTP/1.1 forward, CONNECT and SOCKS5 on one port, \
decided by the policy's [network] rules, with every request recorded in a session log under the state \
directory. For benchmarks, and for hosts that send several machines' agents through one egress box.

Proxy credentials carry the identity: user `AGENT`, `AGENT/TOOL` or `/TOOL`, in Proxy-Authorization \
(Basic) or the SOCKS5 username. A listen address other than loopback needs --dangerously-listen-public \
and a password (--password-env).

Examples:
  portcullis proxy --policy portcullis.toml --listen 127.0.0.1:3128
  portcullis proxy --policy p.toml --listen 127.0.0.1:3128 --dns 127.0.0.1:5353
  curl -x http://127.0.0.1:3128 http://example.com/")]
pub(crate) struct ProxyArgs {
    /// The policy file.
    #[arg(long)]
    policy: PathBuf,
    /// Where to listen for proxy clients.
    #[arg(long, default_value = "127.0.0.1:3128")]
    listen: SocketAddr,
    /// Also serve the filtering resolver here (UDP and TCP).
    #[arg(long)]
    dns: Option<SocketAddr>,
    /// The agent whose profile applies when credentials name none.
    #[arg(long)]
    agent: Option<String>,
    /// The environment variable holding the password clients must give.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Allow a listen address other than loopback (needs --password-env).
    #[arg(long)]
    dangerously_listen_public: bool,
    /// How long a client may take to send a request head (slow clients are cut off).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    head_timeout: std::time::Duration,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    portcullis_policy::parse_duration(text).map_err(|e| e.to_string())
}

pub(crate) fn proxy(args: &ProxyArgs) -> Result<ExitCode> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let home = std::env::home_dir().context("cannot tell the home directory: set HOME")?;
    let env = portcullis_policy::Environment::new(cwd, home)?;
    let policy: Policy = match crate::policy_cmd::load_file(&args.policy, &env, false)? {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let password = match &args.password_env {
        Some(var) => Some(std::env::var(var).with_context(|| format!("the environment variable {var} is not set"))?)
            .filter(|p| !p.is_empty()),
        None => None,
    };
    let public = |a: &SocketAddr| !a.ip().is_loopback();
    if public(&args.listen) || args.dns.as_ref().is_some_and(public) {
        if !args.dangerously_listen_public {
            bail!(
                "{} is not a loopback address: anyone who can reach it could use this proxy; pass \
                 --dangerously-listen-public and --password-env to serve it with credentials",
                args.listen
            );
        }
        if password.is_none() {
            bail!("a proxy listening beyond loopback needs a password: pass --password-env VAR");
        }
    }
    let settings = policy.profile(args.agent.as_deref())?.settings().clone();
    let state = sessions::state_root()?;
    let id = sessions::new_id();
    let dir = sessions::create_dir(&state, &id)?;
    let log_path = dir.join("events.jsonl");
    let mut sink = portcullis_harness::events::JsonlFile::create(&log_path)
        .with_context(|| format!("cannot create the event log in `{}`", dir.display()))?;
    use portcullis_harness::events::EventSink;
    sink.record(&Event::now(
        &id,
        "session_start",
        json!({"proxy": args.listen.to_string(), "dns": args.dns.map(|d| d.to_string()), "agent": args.agent, "policy": args.policy}),
    ))
    .context("cannot write the event log")?;
    let recorder = LogRecorder::open(&log_path, &id)?;
    let access = Access { agent: args.agent.clone(), agent_locked: false, password };
    let mut options = options(&settings, access);
    options.timeouts.head = args.head_timeout;
    let egress = Egress::new(Arc::new(PolicyGate::new(Arc::new(policy))), recorder.clone(), options);
    let listener =
        std::net::TcpListener::bind(args.listen).with_context(|| format!("cannot listen on {}", args.listen))?;
    let dns = match args.dns {
        Some(addr) => Some((
            std::net::UdpSocket::bind(addr).with_context(|| format!("cannot listen on {addr} (UDP)"))?,
            std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} (TCP)"))?,
        )),
        None => None,
    };
    portcullis_sandbox::block_termination().context("cannot block termination signals")?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let served = Served::new(egress, workers)?;
    served.serve(Some(listener), dns);
    eprintln!(
        "portcullis: proxy on {}{}; records in {}",
        args.listen,
        args.dns.map(|d| format!(", resolver on {d}")).unwrap_or_default(),
        log_path.display()
    );
    // Until SIGINT or SIGTERM.
    portcullis_sandbox::wait_for_termination().context("cannot wait for a signal")?;
    let egress = served.stop();
    let complete = recorder.finish();
    let summary = summary(&egress);
    let _ = sink.record(&Event::now(&id, "session_end", json!({"egress": summary})));
    let _ = sink.sync();
    eprintln!("portcullis: proxy stopped: {} bytes out, {} in", egress.meter().outbound(), egress.meter().inbound());
    if !complete {
        bail!("some records could not be written to {}", log_path.display());
    }
    Ok(ExitCode::SUCCESS)
}
