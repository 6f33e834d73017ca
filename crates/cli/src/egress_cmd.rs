//! `portcullis proxy`, and the egress plumbing `run` shares with it: the runtime that serves
//! the proxy and resolver, and the summary lines.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use portcullis_audit::Kind;
use portcullis_egress::{Access, DnsOptions, Egress, Options, PolicyGate, Timeouts};
use portcullis_harness::audit::{SessionLog, Trail};
use portcullis_policy::{Policy, Settings};
use serde_json::{Value, json};

use crate::sessions;

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
decided by the policy's [network] rules, with every request recorded in the audit store (read it with \
`portcullis audit`). For benchmarks, and for hosts that send several machines' agents through one egress box.

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
    let audit_dir = portcullis_harness::audit::store_dir(policy.audit(), &state);
    let mut live = portcullis_harness::live::Live::begin(&audit_dir, &id, args.agent.as_deref())
        .with_context(|| format!("cannot register the proxy's session in `{}`", audit_dir.display()))?;
    let store =
        portcullis_harness::audit::open_store(&audit_dir, portcullis_harness::audit::store_options(policy.audit()))
            .context("the proxy's records cannot be stored, so it does not start")?;
    crate::run_cmd::report_closed(&portcullis_harness::live::close_lost(&audit_dir, &store, &id), false);
    let log = Arc::new(SessionLog::new(Arc::new(store), &id, args.agent.as_deref()));
    let mut start = log.record(Kind::Lifecycle, "session_start");
    start.data = crate::run_cmd::object(
        json!({"proxy": args.listen.to_string(), "dns": args.dns.map(|d| d.to_string()), "policy": args.policy}),
    );
    log.commit(start).map_err(|e| anyhow::anyhow!("{e}")).context("the proxy's records cannot be stored")?;
    live.started();
    let access = Access { agent: args.agent.clone(), agent_locked: false, password };
    let mut options = options(&settings, access);
    options.timeouts.head = args.head_timeout;
    let egress = Egress::new(Arc::new(PolicyGate::new(Arc::new(policy))), log.clone(), options);
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
        "portcullis: proxy on {}{}; session {id} recorded in {}",
        args.listen,
        args.dns.map(|d| format!(", resolver on {d}")).unwrap_or_default(),
        audit_dir.display()
    );
    // Until SIGINT or SIGTERM.
    portcullis_sandbox::wait_for_termination().context("cannot wait for a signal")?;
    let egress = served.stop();
    let _ = log.flush_folded();
    let mut end = log.record(Kind::Lifecycle, "session_end");
    end.data = crate::run_cmd::object(json!({"egress": summary(&egress)}));
    let ended = log.commit(end).and_then(|()| log.store().close().map_err(|e| e.to_string()));
    if ended.is_ok() {
        live.finish();
    }
    eprintln!("portcullis: proxy stopped: {} bytes out, {} in", egress.meter().outbound(), egress.meter().inbound());
    if let Some(e) = log.failure() {
        bail!("some records could not be stored ({e}); the proxy refused everything after the first");
    }
    ended.map_err(|e| anyhow::anyhow!("cannot record the end of the proxy's session: {e}"))?;
    Ok(ExitCode::SUCCESS)
}
