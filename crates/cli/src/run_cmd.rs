//! `portcullis run`: the agent's whole process tree in a sandbox, every exec checked and
//! recorded, and a summary at the end.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use portcullis_audit::Kind;
use portcullis_harness::Decider;
use portcullis_harness::audit::{SessionLog, Trail};
use portcullis_harness::exec_gate::{ExecGate, Tally};
use portcullis_harness::host_program::HostProgram;
use portcullis_harness::live::Live;
use portcullis_policy::{Policy, env_name_matches};
use portcullis_sandbox::cgroup::{Cgroup, CgroupError, CgroupLimits};
use portcullis_sandbox::changes::{self, Change, ChangeKind, EntryType};
use portcullis_sandbox::landlock::LandlockRules;
use portcullis_sandbox::monitor::Monitor;
use portcullis_sandbox::mounts::RootOptions;
use portcullis_sandbox::probe::{CgroupBackend, Feature, Probe};
use portcullis_sandbox::session::{self, DNS_PORT, IdMap, PROXY_PORT, Spec};
use serde_json::{Value, json};

use crate::sessions;

/// Text the agent controls, safe for the terminal (`portcullis_guard::terminal`).
pub(crate) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    portcullis_guard::terminal::printable(text)
}

#[derive(Debug, Args)]
#[command(after_help = "The agent and everything it starts run as PID 1's children in new user, mount, PID, \
network, IPC and UTS namespaces: system directories read-only, the workdir as an overlay (or \
written through with --no-ephemeral), home empty, credentials invisible, no network but loopback, \
Landlock, seccomp, cgroup and rlimit limits. Every exec is checked against the policy and recorded. Started from a \
terminal, the agent gets a terminal of the sandbox's own.

Only TERM, LANG, LC_*, TZ, PATH and the like, plus the names in the policy's [environment] pass \
list, reach the agent. Every exec, connection and lookup is recorded in the audit store \
(STATE/audit, or the policy's [audit] dir; read it with `portcullis audit`); the overlay's changes go \
to STATE/sessions/ID (STATE: /var/lib/portcullis as root, else $XDG_STATE_HOME/portcullis or \
~/.local/state/portcullis; PORTCULLIS_STATE_DIR overrides). A record that cannot be stored refuses \
the call it describes and ends the session.

Exit status: the agent's own (128 + N when signal N ended it); 2 when the sandbox cannot be set up.

Examples:
  portcullis run -- claude
  portcullis run --policy portcullis.toml --agent reviewer -- codex
  portcullis run --no-ephemeral --workdir ~/src/app -- python agent.py
  portcullis diff && portcullis apply      show, then keep, what the last session changed")]
pub(crate) struct RunArgs {
    /// The policy file (default: the built-in policy).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The agent profile in the policy (`[agents.NAME]`).
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// The agent's working directory (default: the current directory).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Write through to the workdir instead of an overlay kept for `portcullis apply`.
    #[arg(long)]
    no_ephemeral: bool,
    /// Run even when these layers are missing (comma-separated: namespaces, overlayfs,
    /// landlock, seccomp, cgroups). Any other missing layer still refuses. The session is
    /// recorded as degraded.
    #[arg(long, value_name = "LAYERS", value_delimiter = ',', num_args = 1, require_equals = true, action = clap::ArgAction::Append)]
    dangerously_allow_partial_sandbox: Vec<Layer>,
    /// With --no-ephemeral: leave git hooks, code-running git config keys and auto-run files
    /// the session created or changed where they are, instead of moving them to quarantine.
    #[arg(long, requires = "no_ephemeral")]
    keep_persistence: bool,
    /// Print the session summary to stderr as one JSON object.
    #[arg(long)]
    json: bool,
    /// Print no start line, no alert lines and no summary (alerts are still recorded and sent
    /// to the alert command).
    #[arg(short, long)]
    quiet: bool,
    /// Marks the session as the replay of another (set by `audit replay`).
    #[arg(long, hide = true, value_name = "SESSION")]
    replay_of: Option<String>,
    /// The command to run, after `--`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// A layer of the sandbox that `--dangerously-allow-partial-sandbox` may let a session run
/// without.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Layer {
    Namespaces,
    Overlayfs,
    Landlock,
    Seccomp,
    #[value(alias = "cgroup")]
    Cgroups,
}

impl Layer {
    /// The name the flag takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Layer::Namespaces => "namespaces",
            Layer::Overlayfs => "overlayfs",
            Layer::Landlock => "landlock",
            Layer::Seccomp => "seccomp",
            Layer::Cgroups => "cgroups",
        }
    }

    fn feature(self) -> Feature {
        match self {
            Layer::Namespaces => Feature::Namespaces,
            Layer::Overlayfs => Feature::Overlayfs,
            Layer::Landlock => Feature::Landlock,
            Layer::Seccomp => Feature::Seccomp,
            Layer::Cgroups => Feature::Cgroups,
        }
    }
}

/// Environment variables always passed (terminal and locale).
const ALWAYS_PASSED: &[&str] =
    &["TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "LANG", "LANGUAGE", "LC_*", "TZ", "PATH"];
/// Read-only trees the sandbox shows (those that exist).
const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];
/// Grace between SIGTERM and SIGKILL when the wall clock runs out.
const GRACE: Duration = Duration::from_secs(2);

pub(crate) fn run(args: RunArgs) -> Result<ExitCode> {
    let started = Instant::now();
    // For `apply`: what changed in the workdir after this, outside the sandbox, is not
    // overwritten unasked.
    let started_at = std::time::SystemTime::now();
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let workdir = cwd.join(args.workdir.as_deref().unwrap_or(Path::new(".")));
    let workdir = workdir.canonicalize().with_context(|| format!("cannot open the workdir `{}`", workdir.display()))?;
    let home = std::env::home_dir().context("cannot tell the home directory: set HOME")?;
    let home = home.canonicalize().unwrap_or(home);
    let env = portcullis_policy::Environment::new(workdir.clone(), home.clone())?;
    // Read once: the text recorded with the session is the text enforced, whatever happens to
    // the file meanwhile.
    let policy_text = match &args.policy {
        Some(file) => {
            Some(std::fs::read_to_string(file).with_context(|| format!("cannot read policy `{}`", file.display()))?)
        }
        None => None,
    };
    let policy = Arc::new(match (&args.policy, &policy_text) {
        (Some(file), Some(text)) => match crate::policy_cmd::load_text(text, file, &env, false)? {
            Ok(p) => p,
            Err(code) => return Ok(code),
        },
        _ => Policy::builtin(&env),
    });
    let profile = policy.profile(args.agent.as_deref())?;
    let settings = profile.settings();
    let state = sessions::state_root()?;
    let audit_dir = portcullis_harness::audit::store_dir(policy.audit(), &state);
    let homes = user_homes(&home);
    check_workdir(&workdir, &home, &state)?;
    check_workdir(&workdir, &home, &audit_dir)?;
    check_not_a_home(&workdir, &homes)?;

    let probe = Probe::without_trials();
    let missing = probe.missing();
    // SECURITY: the flag names each layer it may drop; any other missing layer refuses.
    let allowed: Vec<Feature> = args.dangerously_allow_partial_sandbox.iter().map(|l| l.feature()).collect();
    let refused: Vec<Feature> = missing.iter().copied().filter(|f| !allowed.contains(f)).collect();
    if !refused.is_empty() {
        let list: Vec<String> = probe
            .checks
            .iter()
            .filter(|c| refused.contains(&c.feature))
            .map(|c| format!("  {}: {}", c.feature, c.detail))
            .collect();
        let names: Vec<&str> = missing.iter().map(|f| f.as_str()).collect();
        bail!(
            "the sandbox cannot be applied in full; missing:\n{}\nrun `portcullis check` for details, or pass \
             --dangerously-allow-partial-sandbox={} to run without {} (the session is recorded as degraded)",
            list.join("\n"),
            names.join(","),
            if names.len() == 1 { "it" } else { "them" }
        );
    }
    let mut degraded: Vec<String> = missing.iter().map(|f| f.as_str().to_owned()).collect();

    let id = sessions::new_id();
    // Alive while this supervisor holds it: if it is killed, the next session records the end
    // and removes the cgroup (`live`).
    let mut live = Live::begin(&audit_dir, &id, args.agent.as_deref())
        .with_context(|| format!("cannot register the session in `{}`", audit_dir.display()))?;
    // Written through, the workdir is this session's alone until its persistence sweep is done.
    let ephemeral_setting = (settings.filesystem.ephemeral && !args.no_ephemeral) || args.replay_of.is_some();
    let _write_through =
        if ephemeral_setting { None } else { Some(sessions::write_through_lock(&state, &workdir, &id)?) };
    let limits = &settings.limits;
    // `PORTCULLIS_CGROUP=v1|v2` picks the hierarchy (for tests and diagnosis); it cannot
    // weaken anything: a hierarchy that cannot hold the policy's limits fails to set them up.
    let backend = match std::env::var("PORTCULLIS_CGROUP").as_deref() {
        Ok("v2") => Some(CgroupBackend::V2),
        Ok("v1") => Some(CgroupBackend::V1),
        _ => probe.cgroups.clone(),
    };
    let cgroup_limits = CgroupLimits { memory: limits.memory.map(|m| m.0), pids: limits.processes, cpu_quota_us: None };
    let cgroup_name = format!("portcullis-{id}");
    let allow_partial = allowed.contains(&Feature::Cgroups);
    // Created as late as possible: on v2 before the init is born in it, on v1 while the init
    // builds the agent's root (`session::start`'s docs), once it is known it can be.
    let (born_in, v1) = match backend.filter(|_| !missing.contains(&Feature::Cgroups)) {
        Some(CgroupBackend::V2) => {
            let created = Cgroup::create(CgroupBackend::V2, &cgroup_name, cgroup_limits);
            let created =
                created.map(Some).or_else(|e| cgroup_refused(e, allow_partial, &mut degraded).map(|()| None))?;
            if let Some(c) = &created {
                live.set_cgroup(c).context("cannot register the session's cgroup")?;
            }
            (created, false)
        }
        Some(CgroupBackend::V1) => (
            None,
            Cgroup::check_v1(cgroup_limits)
                .map(|()| true)
                .or_else(|e| cgroup_refused(e, allow_partial, &mut degraded).map(|()| false))?,
        ),
        None => (None, false),
    };

    // A replay never writes through: it must not change the workdir it re-runs in.
    let ephemeral = (settings.filesystem.ephemeral && !args.no_ephemeral) || args.replay_of.is_some();
    let disk = limits.disk.map_or(2 << 30, |d| d.0);
    let disk_limit = disk;
    let as_root = rustix::process::getuid().is_root();
    let ids = if as_root {
        let slot = sessions::agent_slot(&state, args.agent.as_deref().unwrap_or_default(), AGENT_SLOTS)?;
        agent_range(slot, &workdir)
    } else {
        IdMap::own()
    };
    let mut hidden: Vec<PathBuf> = settings.filesystem.hidden.iter().map(|h| expand(h, &home, &workdir)).collect();
    hidden.push(state.clone());
    if !audit_dir.starts_with(&state) {
        // SECURITY: the store, and the key beside it, are never in the agent's view.
        hidden.push(audit_dir.clone());
        hidden.push(portcullis_audit::key::default_key_path(&audit_dir));
    }
    // The session's own persistence paths: the policy file when it lies in the workdir (`run`
    // reads it before the start; the agent must not rewrite the next session's policy), and
    // what the repository's own config runs (`core.hooksPath`, hooks linked to scripts).
    let mut persistence: Vec<PathBuf> = configured_persistence(&workdir);
    if let Some(file) = &args.policy {
        let file = cwd.join(file).canonicalize().unwrap_or_else(|_| cwd.join(file));
        if let Ok(rel) = file.strip_prefix(&workdir) {
            persistence.push(rel.to_path_buf());
        }
        hidden.push(file);
    }
    let inside = inside_workdir(&settings.filesystem, &home, &workdir)?;
    let read_only = outside_paths(&settings.filesystem.read_only, &home, &workdir);
    check_writable_outside(&settings.filesystem.writable, &home, &workdir)?;
    let writable = outside_paths(&settings.filesystem.writable, &home, &workdir);
    // SECURITY: the built-in credential paths of every home a tree the sandbox shows holds
    // (another user's home listed in `read_only`), and of the project itself (a `.ssh` in the
    // workdir); and every hidden path also as its symlinks resolve, since the trees are shown
    // by their real paths.
    let shown_roots: Vec<&PathBuf> = read_only.iter().chain(&writable).filter(|r| r.is_dir()).collect();
    // A home the tree holds, or a home the tree lies in (`read_only = ["/home/alice/.config"]`).
    let homes_shown = homes.iter().filter(|h| shown_roots.iter().any(|r| h.starts_with(r) || r.starts_with(h)));
    for (root, in_workdir) in homes_shown.map(|h| (h, false)).chain([(&workdir, true)]) {
        // Only entries whose first part is there: a mask needs something to cover, and the
        // workdir is not shown as a snapshot (`RootOptions::hidden`).
        let mut present: Vec<(&str, bool)> = Vec::new();
        for entry in portcullis_policy::BUILTIN_HIDDEN.iter().filter_map(|e| e.strip_prefix("~/")) {
            if in_workdir && PROJECT_CONFIG.contains(&entry) {
                continue;
            }
            let first = entry.split('/').next().unwrap_or(entry);
            let there = match present.iter().find(|(f, _)| *f == first) {
                Some((_, there)) => *there,
                None => {
                    let there = root.join(first).symlink_metadata().is_ok();
                    present.push((first, there));
                    there
                }
            };
            if there || !in_workdir {
                hidden.push(root.join(entry));
            }
        }
    }
    // A link can lead a hidden path into a shown tree (`~/.config -> ~/dotfiles/config`, with
    // `~/dotfiles` the workdir): each is masked where it really is too. Ancestors resolve once.
    let canonical_roots = [&home, &workdir];
    let mut resolved_dirs: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    let resolved: Vec<PathBuf> =
        hidden.iter().filter_map(|h| resolved_variant(h, &canonical_roots, &mut resolved_dirs)).collect();
    hidden.extend(resolved);
    // SECURITY: a program the policy runs on the host is fixed now, and refused where the agent
    // could rewrite it (`host_program`).
    let agent_writable: Vec<PathBuf> = std::iter::once(workdir.clone()).chain(writable.iter().cloned()).collect();
    let alert_program = match &policy.alerts().command {
        Some(argv) => Some(HostProgram::resolve(
            "[alerts] command",
            argv,
            &home,
            &cwd,
            &std::env::var_os("PATH").unwrap_or_default(),
            &agent_writable,
        )?),
        None => None,
    };
    // The init builds the root as the range's root when started as root, so the directory its
    // mounts cover must be reachable by that uid; otherwise the state directory serves.
    let base = if as_root { sessions::mount_base()? } else { sessions::make_state_root(&state)? };
    let root = RootOptions {
        base,
        workdir: workdir.clone(),
        home: home.clone(),
        tmp_size: disk / 2,
        ephemeral: ephemeral.then_some(disk),
        proc: true,
        hidden,
        read_only: read_only.clone(),
        writable: writable.clone(),
        idmapped_workdir: as_root,
        protected: protected_paths(&workdir, &persistence)
            .into_iter()
            .chain(inside.read_only.iter().cloned())
            .collect(),
        // A read-only workdir needs no pin: nothing in it can be renamed.
        pinned: if inside.writable.is_none() { vec![workdir.join(".git")] } else { Vec::new() },
        writable_inside: inside.writable.clone(),
        // SECURITY: names resolve only through the sandbox's filtering resolver. The host's
        // `/etc/hosts` (internal names and addresses) is not shown, and no name service but
        // files and DNS is consulted (an LDAP or mDNS module would reach past the resolver).
        etc_files: vec![
            ("resolv.conf".into(), "# The sandbox's resolver (portcullis)\nnameserver 127.0.0.1\n".into()),
            (
                "hosts".into(),
                format!(
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{SANDBOX_HOSTNAME}\n"
                ),
            ),
            ("nsswitch.conf".into(), NSSWITCH.into()),
        ],
    };
    let landlock = match probe.landlock_abi {
        Some(abi) if !missing.contains(&Feature::Landlock) => {
            Some((landlock_rules(&workdir, &home, &read_only, &writable, &settings.network.local_ports), abi))
        }
        _ => None,
    };
    let seccomp = !missing.contains(&Feature::Seccomp);
    let mut rlimits = portcullis_sandbox::rlimit::for_session(Some(disk), limits.memory.map(|m| m.0));
    // Without a cgroup, the process count falls back to RLIMIT_NPROC (per uid in the agent's
    // own user namespace); with one, the cgroup's pids limit is the limit and is reported.
    if let Some(p) = limits.processes.filter(|_| born_in.is_none() && !v1) {
        rlimits.push((portcullis_sandbox::rlimit::Resource::Processes, p));
    }
    let (program, program_args) = args.command.split_first().context("give a command after `--`")?;
    let spec = Spec {
        program: program.clone(),
        args: program_args.to_vec(),
        env: scrub_env(&settings.environment, &home, &workdir, &id),
        root,
        landlock,
        seccomp,
        monitor_exec: seccomp,
        rlimits,
        hostname: SANDBOX_HOSTNAME.into(),
        ids,
        terminal: portcullis_sandbox::terminal::interactive(),
        egress: true,
    };
    let starting = session::start(&spec, born_in.as_ref());
    // Written through, the persistence paths as they are before the agent runs (it is forked
    // only in `finish`), to find at the end what the session made or changed.
    let before = (!ephemeral).then(|| portcullis_harness::persistence::snapshot(&workdir, &persistence));
    // From here on, while the init builds the agent's root.
    // Only an overlay's changes are kept (for `diff` and `apply`).
    // Its own directory is made when the session ends, with what it saves; the place for it is
    // checked now.
    let sessions_root = if ephemeral { Some(sessions::sessions_root(&state)?) } else { None };
    let store =
        portcullis_harness::audit::open_store(&audit_dir, portcullis_harness::audit::store_options(policy.audit()))
            .context("the session cannot be recorded, so it does not start")?;
    report_closed(&portcullis_harness::live::close_lost(&audit_dir, &store, &id), args.quiet);
    let baseline_path = portcullis_audit::alerts::baseline_path(&audit_dir);
    let baseline = portcullis_audit::alerts::Baseline::load(&baseline_path).unwrap_or_else(|e| {
        eprintln!("portcullis: the alert baseline `{}` cannot be read ({e}); starting afresh", baseline_path.display());
        portcullis_audit::alerts::Baseline::default()
    });
    let alerter = portcullis_audit::alerts::Alerter::new(
        policy.alerts().clone(),
        baseline,
        Box::new(portcullis_audit::alerts::SystemClock::new()),
    );
    let budget = portcullis_harness::audit::Budget::new(
        policy.audit().session_records_per_second,
        policy.audit().session_bytes.0,
    );
    let log = Arc::new(
        SessionLog::new(Arc::new(store), &id, args.agent.as_deref())
            .with_alerts(alerter, alert_program)
            .with_budget(budget),
    );
    if args.quiet {
        log.mute_alert_lines();
    } else if spec.terminal {
        log.hold_alert_lines();
    }
    let starting = starting.map_err(|e| start_failed(&log, &e))?;
    // The check above makes a failure here rare; the
    // agent's rlimits are set by now, so a degraded run then has no process limit at all.
    let cgroup = match born_in {
        Some(c) => Some(c),
        None if v1 => match Cgroup::create(CgroupBackend::V1, &cgroup_name, cgroup_limits) {
            Ok(c) => {
                live.set_cgroup(&c).context("cannot register the session's cgroup")?;
                Some(c)
            }
            Err(e) => {
                cgroup_refused(e, allow_partial, &mut degraded)?;
                degraded.push("processes (no cgroup and no RLIMIT_NPROC)".into());
                None
            }
        },
        None => None,
    };
    let enforced = enforced_list(&spec, cgroup.as_ref(), ephemeral, limits);
    // No key is silently ignored: what `run` loads but does not enforce is named.
    let not_enforced = policy.not_enforced_by_run();
    let argv: Vec<String> = args.command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut start = log.record(Kind::Lifecycle, "session_start");
    start.data = object(json!({
        "argv": argv, "workdir": workdir, "policy": args.policy, "policy_text": policy_text,
        "replay_of": args.replay_of,
        "ephemeral": ephemeral, "enforced": enforced, "degraded": degraded, "not_enforced": not_enforced,
        "uid_inside": ids.agent, "uid_outside": ids.first_outside + (ids.agent - ids.first_inside),
    }));
    log.commit(start)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the session cannot be recorded, so it does not start")?;
    live.started();
    if !args.quiet {
        eprintln!("portcullis: session {id}: {}", enforced.join(", "));
        if !degraded.is_empty() {
            eprintln!("portcullis: DEGRADED, not enforced: {}", degraded.join(", "));
        }
        if !not_enforced.is_empty() {
            eprintln!("portcullis: the policy sets what `run` does not enforce: {}", not_enforced.join(", "));
        }
    }

    // Ready before the sockets arrive, while the init works.
    let served = if spec.egress { Some(serve_egress(&policy, args.agent.as_deref(), settings, &log)?) } else { None };
    let decider = Decider::for_sandbox(&policy);
    let join = cgroup.as_ref().filter(|c| *c.backend() == CgroupBackend::V1);
    let tally = Mutex::new(Tally::default());
    let monitor_error: Mutex<Option<String>> = Mutex::new(None);
    let cap = limits.execs;
    let gate = ExecGate {
        command: &argv,
        profile,
        decider: &decider,
        cap,
        trail: &*log,
        tally: &tally,
        profile_guards: policy.guards(),
    };
    let (running, exit, relay, served) = std::thread::scope(|scope| -> Result<_> {
        // The monitor's thread is started while the init works; it gets the monitor below.
        let (give_monitor, monitor) = std::sync::mpsc::sync_channel::<Monitor>(1);
        if spec.monitor_exec {
            let (gate, log, monitor_error) = (&gate, &log, &monitor_error);
            scope.spawn(move || {
                let Ok(monitor) = monitor.recv() else { return };
                let stopped = monitor_fault().map_or_else(|| monitor.run(|req| gate.decide(req)), Err);
                // SECURITY: no exec may run unchecked: a monitor that stops ends the session,
                // recorded (the kernel then fails every trapped exec with ENOSYS meanwhile).
                if let Err(e) = stopped {
                    let why = e.to_string();
                    log.end_session("monitor_failed", &why);
                    *monitor_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
            });
        }
        let mut running = starting.finish(join).map_err(|e| start_failed(&log, &e))?;
        // No audit, no action: a record that cannot be stored ends the session.
        let killer = running.killer().context("cannot hold the session's init")?;
        log.on_failure(move || killer.kill());
        if let Some(monitor) = running.take_monitor() {
            give_monitor.send(monitor).context("cannot start the exec monitor")?;
        }
        drop(give_monitor);
        if let (Some(sockets), Some(served)) = (running.take_egress(), &served) {
            served.serve(Some(sockets.proxy), Some((sockets.dns_udp, sockets.dns_tcp)));
        }
        let relay = match running.take_terminal() {
            Some(master) => {
                Some(portcullis_sandbox::terminal::Relay::start(master).context("cannot relay the agent's terminal")?)
            }
            None => None,
        };
        let exit = running.wait(limits.wall_clock, GRACE).context("cannot wait for the session")?;
        Ok((running, exit, relay, served))
    })?;
    // The user's terminal back to how it was, before anything else is printed.
    drop(relay);
    for line in log.release_alert_lines() {
        eprintln!("{line}");
    }
    let egress = served.map(crate::egress_cmd::Served::stop);
    // Nothing records any more: the refusals the folding still holds go out (a failure shows
    // in `log.failure()`).
    let _ = log.flush_folded();
    let tally = tally.into_inner().unwrap_or_else(|e| e.into_inner());
    // The command was not found inside (nothing was executed): say so when the host has it
    // where the sandbox does not look.
    if exit.code == 127 && tally.execs == 0 && !args.quiet {
        let path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(hint) = hidden_program_hint(program, &path, &home, &workdir, &[&read_only, &writable]) {
            eprintln!("portcullis: {hint}");
        }
    }
    let mut limits_hit: Vec<String> = Vec::new();
    if exit.timed_out {
        limits_hit.push(format!("wall clock ({})", fmt_duration(limits.wall_clock.unwrap_or_default())));
    }
    if let Some(c) = &cgroup {
        if c.oom_killed() {
            limits_hit.push(format!("memory ({}; the kernel killed a process)", fmt_limit(limits.memory)));
        }
        if c.pids_limit_hit() {
            limits_hit.push(format!("processes ({} at once; forks failed)", limits.processes.unwrap_or_default()));
        }
    }
    if tally.cap_hit {
        limits_hit.push(format!("execs ({})", cap.unwrap_or_default()));
    }
    if let Some(e) = &egress
        && e.meter().exhausted()
    {
        limits_hit
            .push(format!("outbound bytes ({}; connections were cut)", fmt_limit(settings.network.outbound_bytes)));
    }
    let disk = running.disk();
    for d in disk.iter().filter(|d| d.full()) {
        limits_hit.push(format!("disk ({} full at {}; writes failed)", d.place, fmt_bytes(d.size)));
    }
    for l in &limits_hit {
        let mut r = log.record(Kind::Limit, "limit_reached");
        r.data = object(json!({"limit": l}));
        let _ = log.append(r);
    }
    // Recorded when it was passed.
    if let Some(v) = log.volume_hit() {
        limits_hit.push(v.to_owned());
    }
    // Failures from here on (a full disk) are reported with the summary and end `run` with 2:
    // the overlay goes with the session, and the trail must be known to be incomplete.
    let mut problems: Vec<String> = Vec::new();
    if let Some(e) = monitor_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        problems.push(format!("the exec monitor stopped ({e}); the session was ended"));
    }
    if let Some(e) = log.failure() {
        problems.push(format!(
            "the audit store could not be written ({e}); the call it would have recorded was refused and the \
             session was ended"
        ));
    }
    // A session that changed nothing keeps no directory: it has nothing for `diff` or `apply`,
    // and the directory would be made on every start's critical path.
    let upper = running.upper().filter(|u| !changes::untouched(u));
    let dir = match (&sessions_root, &upper) {
        (Some(root), Some(_)) => match sessions::create_dir(root, &id) {
            Ok(dir) => Some(dir),
            Err(e) => {
                problems.push(format!("{e:#}; the overlay's changes are lost"));
                None
            }
        },
        _ => None,
    };
    let changed: Vec<Change> = match (upper, &dir) {
        (Some(upper), Some(dir)) => changes::collect(&upper, &workdir, &dir.join("changes"), disk_limit)
            .unwrap_or_else(|e| {
                if let Some(over) = e.get_ref().and_then(|e| e.downcast_ref::<changes::OverLimit>()) {
                    let l = format!(
                        "disk (the changes hold {}, past {}; not saved)",
                        fmt_bytes(over.data),
                        fmt_bytes(over.limit)
                    );
                    let mut r = log.record(Kind::Limit, "limit_reached");
                    r.data = object(json!({"limit": l}));
                    let _ = log.append(r);
                    limits_hit.push(l);
                }
                problems.push(format!(
                    "cannot save the session's changes to `{}`: {e}; the overlay's changes are lost",
                    dir.display()
                ));
                Vec::new()
            }),
        _ => Vec::new(),
    };
    if let Some(dir) = &dir
        && let Err(e) = sessions::save(dir, &workdir, &changed, started_at, &persistence)
    {
        problems.push(format!("cannot save the session's state in `{}`: {e}", dir.display()));
    }
    // Written through: persistence the session made or changed goes to quarantine now that no
    // process of the session is left (`persistence`).
    let mut quarantined: Vec<portcullis_harness::persistence::Found> = Vec::new();
    if let Some(before) = &before {
        match quarantine(&state, &id, &workdir, before, &persistence, args.keep_persistence) {
            Ok(found) => quarantined = found,
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    let mut summary = json!({
        "session": id, "exit_code": exit.code, "duration_ms": started.elapsed().as_millis() as u64,
        "execs": tally.execs,
        "denials": tally.denials.iter().map(|(c, r)| json!({"command": c, "reason": r})).collect::<Vec<_>>(),
        "denied": tally.denied,
        "guards_deferred": portcullis_harness::deferred_guards(&policy)
            .into_iter()
            .map(|g| json!({"guard": g, "to": portcullis_harness::walled_by(g)}))
            .collect::<Vec<_>>(),
        // The summary (and the end record) stays bounded however much the agent did; the
        // session's directory keeps every change for `diff` and `apply`.
        "changed": changed.iter().take(CHANGES_LISTED).collect::<Vec<_>>(),
        "changed_total": changed.len(),
        // What the next agent session reads as instructions: a prompt injection that outlives
        // this session would be written there.
        "agent_instructions": changed
            .iter()
            .filter(|c| c.kind != ChangeKind::Deleted && changes::is_agent_instructions(&c.path))
            .map(|c| &c.path)
            .take(CHANGES_LISTED)
            .collect::<Vec<_>>(),
        "limits_hit": limits_hit, "degraded": degraded, "not_enforced": not_enforced, "audit": log.store().dir(),
        "disk": disk.iter().map(|d| json!({"place": d.place, "used": d.used, "size": d.size})).collect::<Vec<_>>(),
    });
    if let Some(e) = &egress {
        summary["egress"] = crate::egress_cmd::summary(e);
    }
    if !quarantined.is_empty() {
        summary["persistence"] = json!(quarantined);
    }
    log.finish_alerts(Duration::from_secs(10));
    summary["problems"] = json!(problems);
    // The end record goes out with the store's closing checkpoint, which the commit thread
    // signs, writes and syncs while this one removes the cgroup and saves the alert baseline.
    let mut end = log.record(Kind::Lifecycle, "session_end");
    end.data = object(summary.clone());
    let ended = log.append(end).and_then(|()| {
        let (saved, closed) = log.store().close_with(|| {
            let saved = log.alerter().map(|a| a.updated_baseline().save(&baseline_path));
            // The init reported the agent's end and may still be tearing its namespaces down:
            // its cgroup can go once it is gone.
            let reaped = running.reap();
            drop(running);
            drop(cgroup);
            (saved, reaped)
        });
        let (saved, reaped) = saved;
        if let Err(e) = reaped {
            problems.push(format!("cannot wait for the session's init: {e}"));
        }
        if let Some(Err(e)) = saved {
            problems.push(format!("cannot save the alert baseline `{}`: {e}", baseline_path.display()));
        }
        closed.map_err(|e| e.to_string())
    });
    match ended {
        Ok(()) => live.finish(),
        // Left open: the next session records an end for it.
        Err(e) => problems.push(format!("cannot record the end of the session: {e}")),
    }
    summary["problems"] = json!(problems);
    if args.json {
        eprintln!("{summary}");
    } else if !args.quiet {
        print_summary(&summary, &changed, &persistence, ephemeral);
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(ExitCode::from(u8::try_from(exit.code).unwrap_or(125)))
}

/// The host name inside the sandbox.
const SANDBOX_HOSTNAME: &str = "portcullis";

/// The sandbox's name-service switch: files and DNS (the sandbox's resolver) only.
const NSSWITCH: &str = "# The sandbox's name services (portcullis): files, and DNS through its resolver
passwd: files
group: files
shadow: files
gshadow: files
hosts: files dns
networks: files
protocols: files
services: files
ethers: files
rpc: files
netgroup: files
";

/// How many changed paths the summary and the end record list; past them they count.
const CHANGES_LISTED: usize = 1000;

/// First host uid of the per-agent ranges used when `run` starts as root: 65,536 ids per agent
/// (one user namespace's worth), 1,024 slots, from 2^30 up: far above the ranges `/etc/subuid`
/// hands out and below 2^31.
const AGENT_RANGES_BASE: u32 = 1 << 30;
const AGENT_RANGE_SIZE: u32 = 1 << 16;
const AGENT_SLOTS: u32 = 1 << 10;

/// Where `program` lies on this host when that is under the home directory, which the sandbox
/// shows empty (outside the workdir and the policy's `shown` paths): the hint for a command
/// that was not found inside, naming the policy line that shows it.
fn hidden_program_hint(
    program: &OsStr,
    path: &OsStr,
    home: &Path,
    workdir: &Path,
    shown: &[&[PathBuf]],
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let program = Path::new(program);
    let executable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let found = if program.components().count() > 1 || program.is_absolute() {
        Some(program.to_path_buf()).filter(|p| p.is_absolute() && executable(p))
    } else {
        std::env::split_paths(path).map(|dir| dir.join(program)).find(|p| p.is_absolute() && executable(p))
    }?;
    let rel = found.strip_prefix(home).ok()?;
    if found.starts_with(workdir) || shown.iter().flat_map(|s| s.iter()).any(|s| found.starts_with(s)) {
        return None;
    }
    let top = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let mut dirs = vec![format!("\"~/{top}\"")];
    // rustup's proxies in ~/.cargo/bin run the toolchains in ~/.rustup.
    if top == ".cargo" && home.join(".rustup").is_dir() {
        dirs.push("\"~/.rustup\"".into());
    }
    Some(format!(
        "`{}` is `{}` on this host, under the home directory, which the sandbox shows empty; to show \
         it read-only, add to the policy:\n  [filesystem]\n  read_only = [{}]",
        program.display(),
        found.display(),
        dirs.join(", ")
    ))
}

/// The runtime that will serve the sandbox's egress sockets: the proxy and the resolver under
/// the session's policy and agent, recording to the session's log.
fn serve_egress(
    policy: &Arc<Policy>,
    agent: Option<&str>,
    settings: &portcullis_policy::Settings,
    log: &Arc<SessionLog>,
) -> Result<crate::egress_cmd::Served> {
    let access = portcullis_egress::Access { agent: agent.map(str::to_owned), agent_locked: true, password: None };
    let egress = portcullis_egress::Egress::new(
        Arc::new(portcullis_egress::PolicyGate::new(policy.clone())),
        log.clone(),
        crate::egress_cmd::options(settings, access),
    );
    // One thread: an agent's traffic is one client's, and a session's start should not wait
    // for more threads than it needs.
    crate::egress_cmd::Served::new(egress, 1)
}

/// Finds what a session written through made or changed among the persistence paths and,
/// unless `keep`, moves it to `STATE/sessions/ID/changes`, saved as that session's changes so
/// that `apply --force ID` puts it back.
fn quarantine(
    state: &Path,
    id: &str,
    workdir: &Path,
    before: &portcullis_harness::persistence::Snapshot,
    extra: &[PathBuf],
    keep: bool,
) -> Result<Vec<portcullis_harness::persistence::Found>> {
    use portcullis_harness::persistence;
    let dir = sessions::sessions_root(state)?.join(id);
    let place = dir.join("changes");
    let found = persistence::sweep(workdir, before, extra, &place, keep).with_context(|| {
        format!("cannot move the session's persistence files out of `{}` into `{}`", workdir.display(), place.display())
    })?;
    let moved = persistence::as_changes(&found, &place);
    if !moved.is_empty() {
        // Saved after the moves: `apply` must not take them for edits made meanwhile.
        sessions::save(&dir, workdir, &moved, std::time::SystemTime::now(), extra)
            .with_context(|| format!("cannot save the quarantine's list in `{}`", dir.display()))?;
    }
    Ok(found)
}

/// Says which lost sessions (their supervisor killed) a new one closed, and what failed.
pub(crate) fn report_closed(closed: &[portcullis_harness::live::Closed], quiet: bool) {
    for c in closed {
        match &c.error {
            Some(e) => eprintln!(
                "portcullis: session {} lost its supervisor, and its end cannot be recorded: {e}",
                c.entry.session
            ),
            None if !quiet => eprintln!(
                "portcullis: session {} lost its supervisor (pid {}) before it ended; its end is now recorded{}",
                c.entry.session,
                c.entry.pid,
                if c.cgroup_removed.is_empty() { String::new() } else { " and its cgroup removed".to_owned() }
            ),
            None => {}
        }
    }
}

/// A fault to inject in the exec monitor, for the test that it ends the session: debug builds
/// only, through `PORTCULLIS_FAULT_MONITOR`. Release builds never fail on purpose.
fn monitor_fault() -> Option<std::io::Error> {
    if cfg!(debug_assertions) && std::env::var_os("PORTCULLIS_FAULT_MONITOR").is_some() {
        Some(std::io::Error::other("a fault injected for a test"))
    } else {
        None
    }
}

/// Handles a cgroup that cannot be set up: an error, or with `allow_partial` a degraded run.
fn cgroup_refused(e: CgroupError, allow_partial: bool, degraded: &mut Vec<String>) -> Result<()> {
    if allow_partial {
        degraded.push(format!("cgroups ({e})"));
        return Ok(());
    }
    let cause = std::error::Error::source(&e).map(|s| format!(": {s}")).unwrap_or_default();
    bail!(
        "cgroups: {e}{cause}\npass --dangerously-allow-partial-sandbox=cgroups to run with rlimits only (the session is \
         recorded as degraded)"
    )
}

/// Records a session that could not start, and the error to return.
fn start_failed(log: &SessionLog, e: &session::StartError) -> anyhow::Error {
    let cause = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
    let mut end = log.record(Kind::Lifecycle, "session_end");
    end.data = object(json!({"error": format!("{e}{cause}")}));
    let _ = log.commit(end);
    let _ = log.store().close();
    anyhow::anyhow!("{e}{cause}")
}

/// A JSON object's map (anything else is stored under `data`).
pub(crate) fn object(value: Value) -> serde_json::Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => [("data".to_owned(), other)].into_iter().collect(),
    }
}

/// The identity of an agent started as root: the range of 65,536 host ids of its `slot` (see
/// `sessions::agent_slot`: one slot per agent name, never shared), with the agent as the
/// workdir owner's uid inside it, so the idmapped workdir shows the owner's files as the
/// agent's own.
fn agent_range(slot: u32, workdir: &Path) -> IdMap {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(workdir).map(|m| m.uid()).unwrap_or(0);
    IdMap {
        first_inside: 0,
        first_outside: AGENT_RANGES_BASE + slot * AGENT_RANGE_SIZE,
        count: AGENT_RANGE_SIZE,
        agent: if owner < AGENT_RANGE_SIZE { owner } else { 0 },
    }
}

/// Refuses workdirs that would show the agent what it must not see.
fn check_workdir(workdir: &Path, home: &Path, state: &Path) -> Result<()> {
    if !workdir.is_dir() {
        bail!("the workdir `{}` is not a directory", workdir.display());
    }
    if home == Path::new("/") || SYSTEM_DIRS.iter().any(|d| Path::new(d).starts_with(home)) {
        bail!(
            "the home directory is `{}`, which holds the system directories; set HOME to your home directory",
            home.display()
        );
    }
    if workdir == Path::new("/") {
        bail!("the workdir is `/`; run from a project directory or pass --workdir");
    }
    if home.starts_with(workdir) {
        bail!(
            "the workdir `{}` contains your home directory `{}`, and with it your credentials; run from a project \
             directory or pass --workdir",
            workdir.display(),
            home.display()
        );
    }
    if state.starts_with(workdir) {
        bail!(
            "the workdir `{}` contains Portcullis' state directory `{}`; run from a project directory",
            workdir.display(),
            state.display()
        );
    }
    Ok(())
}

/// What the policy's `[filesystem]` lists make of the workdir, enforced by mounts: the
/// writable subset (`None`: all of it) and the read-only carve-outs.
#[derive(Debug, Default, PartialEq, Eq)]
struct InsideWorkdir {
    writable: Option<Vec<PathBuf>>,
    read_only: Vec<PathBuf>,
}

/// Reads the `writable` and `read_only` entries that lie in the workdir. Mounts cannot follow
/// a wildcard or cover a path that does not exist, so such an entry is refused, naming it,
/// rather than enforced differently from what `policy explain` says.
fn inside_workdir(fs: &portcullis_policy::FilesystemSettings, home: &Path, workdir: &Path) -> Result<InsideWorkdir> {
    let paths = |key: &str, list: &[String]| -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for text in list {
            let trimmed = text.strip_suffix("/**").unwrap_or(text);
            let expanded = expand(trimmed, home, workdir);
            let path = portcullis_policy::lexical_normalize(&expanded).unwrap_or(expanded);
            if !path.starts_with(workdir) {
                continue;
            }
            if trimmed.contains(['*', '?', '[']) {
                bail!(
                    "`[filesystem] {key}` has `{text}`, a pattern inside the workdir, which `run` cannot enforce with \
                     mounts; name directories or files (a trailing `/**` is fine)"
                );
            }
            match path.symlink_metadata() {
                Err(_) => bail!(
                    "`[filesystem] {key}` has `{text}`, which does not exist in the workdir `{}`, so `run` cannot \
                     enforce it; create it first or remove the entry",
                    workdir.display()
                ),
                // SECURITY: a mount would land on the link's target, and the link itself stay
                // writable: the agent would unlink it and write a real file under that name.
                Ok(m) if m.file_type().is_symlink() => bail!(
                    "`[filesystem] {key}` has `{text}`, a symlink in the workdir, which `run` cannot enforce (the \
                     agent could replace the link); name the directory it points to"
                ),
                Ok(_) => {}
            }
            out.push(path);
        }
        Ok(out)
    };
    let writable = paths("writable", &fs.writable)?;
    let read_only = paths("read_only", &fs.read_only)?;
    let whole = writable.iter().any(|p| p == workdir);
    Ok(InsideWorkdir { writable: (!whole).then_some(writable), read_only })
}

/// Files the workdir's repository is configured to run, relative to the workdir: the
/// `core.hooksPath` directory, and the scripts its hooks are symlinks to. A script the agent
/// rewrites there runs on the host's next commit as surely as a hook.
fn configured_persistence(workdir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let inside = |p: &Path| p.canonicalize().ok().and_then(|c| c.strip_prefix(workdir).ok().map(Path::to_path_buf));
    let config = std::fs::read_to_string(workdir.join(".git/config")).unwrap_or_default();
    for value in portcullis_guard::gitconfig::values(&config, "core.hookspath") {
        let path = if let Some(rest) = value.strip_prefix("~/") {
            std::env::home_dir().unwrap_or_default().join(rest)
        } else {
            workdir.join(&value)
        };
        out.extend(inside(&path));
    }
    if let Ok(hooks) = std::fs::read_dir(workdir.join(".git/hooks")) {
        for hook in hooks.flatten().filter(|h| h.file_type().is_ok_and(|t| t.is_symlink())) {
            out.extend(inside(&hook.path()));
        }
    }
    out.retain(|p| !p.as_os_str().is_empty());
    out
}

/// Built-in credential entries that are also a project's own configuration, left visible in the
/// workdir: a project's `.npmrc` or `.yarnrc.yml` names its registries, and its build needs it.
const PROJECT_CONFIG: &[&str] =
    &[".npmrc", ".yarnrc.yml", ".m2/settings.xml", ".gradle/gradle.properties", ".terraformrc"];

/// `path` with its deepest existing ancestor's symlinks resolved, when that differs: a hidden
/// path reached through a link (`~/.config -> dotfiles/config`) is masked where the tree that
/// shows it really is.
/// `canonical`: directories known to be canonical already (no need to resolve them again);
/// `seen`: ancestors resolved so far.
fn resolved_variant(
    path: &Path,
    canonical: &[&PathBuf],
    seen: &mut Vec<(PathBuf, Option<PathBuf>)>,
) -> Option<PathBuf> {
    let ancestor = path.ancestors().find(|a| a.symlink_metadata().is_ok())?;
    if canonical.iter().any(|c| c.as_path() == ancestor) {
        return None;
    }
    let real = match seen.iter().find(|(a, _)| a == ancestor) {
        Some((_, real)) => real.clone()?,
        None => {
            let real = ancestor.canonicalize().ok();
            seen.push((ancestor.to_path_buf(), real.clone()));
            real?
        }
    };
    let real = real.join(path.strip_prefix(ancestor).ok()?);
    (real != path).then_some(real)
}

/// The persistence paths `run` makes read-only at the top of the workdir: every
/// [`changes::PERSISTENCE`] pattern without a wildcard, and the session's own.
fn protected_paths(workdir: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    changes::PERSISTENCE
        .iter()
        .filter(|p| !p.contains('*'))
        .map(PathBuf::from)
        .chain(extra.iter().cloned())
        .map(|p| workdir.join(p))
        .collect()
}

/// The homes of the people on this host: root's, each login user's (uid 1000 and up in
/// `/etc/passwd`, as `useradd` gives them) and `home`, canonical where they exist.
fn user_homes(home: &Path) -> Vec<PathBuf> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut homes: Vec<PathBuf> = passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let uid: u32 = fields.get(2)?.parse().ok()?;
            let dir = Path::new(fields.get(5)?);
            ((uid == 0 || (1000..65534).contains(&uid)) && dir.is_absolute() && dir != Path::new("/"))
                .then(|| dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()))
        })
        .chain([home.to_path_buf(), PathBuf::from("/root")])
        .collect();
    homes.sort();
    homes.dedup();
    homes
}

/// Refuses a workdir that is, or holds, a person's home, or `/home`: the agent would see their
/// keys and dotfiles. Started with `sudo` in another user's home, `HOME=/root` was not that home.
fn check_not_a_home(workdir: &Path, homes: &[PathBuf]) -> Result<()> {
    if workdir == Path::new("/home") {
        bail!("the workdir is `/home`, which holds the users' homes; run from a project directory or pass --workdir");
    }
    if let Some(h) = homes.iter().find(|h| h.starts_with(workdir)) {
        bail!(
            "the workdir `{}` is or holds the home directory `{}`, and with it that user's credentials; run from a \
             project directory or pass --workdir",
            workdir.display(),
            h.display()
        );
    }
    Ok(())
}

/// The literal (glob-free) paths of a policy list that name directories or files outside the workdir:
/// what the root binds besides it.
fn outside_paths(list: &[String], home: &Path, workdir: &Path) -> Vec<PathBuf> {
    list.iter()
        .filter(|p| !p.contains(['*', '?', '[']))
        .map(|p| expand(p, home, workdir))
        .filter(|p| !p.starts_with(workdir) && (p.is_dir() || p.is_file()))
        .collect()
}

/// Refuses a `writable` entry outside the workdir that `run` cannot bind: a pattern, or a path
/// that does not exist. Such an entry was once skipped silently, and the agent's writes there
/// failed with nothing to say why (`~/.claude.json` before its first login). A `read_only`
/// entry that does not exist shows nothing, and is passed over.
fn check_writable_outside(list: &[String], home: &Path, workdir: &Path) -> Result<()> {
    for text in list {
        let path = expand(text.strip_suffix("/**").unwrap_or(text), home, workdir);
        let path = portcullis_policy::lexical_normalize(&path).unwrap_or(path);
        if path.starts_with(workdir) {
            continue;
        }
        if text.strip_suffix("/**").unwrap_or(text).contains(['*', '?', '[']) {
            bail!(
                "`[filesystem] writable` has `{text}`, a pattern, which `run` cannot bind; name directories or files \
                 (a trailing `/**` is fine)"
            );
        }
        if !(path.is_dir() || path.is_file()) {
            bail!(
                "`[filesystem] writable` has `{text}`, and `{}` does not exist (or is not a file or directory), so \
                 `run` cannot make it writable; create it first (a directory with `mkdir -p`, a file with `touch`) \
                 or remove the entry",
                path.display()
            );
        }
    }
    Ok(())
}

/// `~/x` in home, `./x` or `x` in the workdir, `/x` as is.
fn expand(path: &str, home: &Path, workdir: &Path) -> PathBuf {
    if let Some(rest) = path.strip_prefix("~/") {
        home.join(rest)
    } else if path == "~" {
        home.to_path_buf()
    } else if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        workdir.join(path.trim_start_matches("./"))
    }
}

fn landlock_rules(
    workdir: &Path,
    home: &Path,
    read_only: &[PathBuf],
    writable: &[PathBuf],
    local_ports: &[u16],
) -> LandlockRules {
    let existing = |p: &str| Path::new(p).exists().then(|| PathBuf::from(p));
    // SECURITY: files may be executed only from the system directories, the workdir and the
    // policy's own paths (tools it lists); not from `/tmp`, `/dev/shm`, the home or `/proc`.
    let mut ro: Vec<PathBuf> = SYSTEM_DIRS.iter().filter_map(|d| existing(d)).collect();
    ro.extend(read_only.iter().filter(|p| p.exists()).cloned());
    let mut ro_no_exec: Vec<PathBuf> = ["/proc", "/dev"].iter().filter_map(|d| existing(d)).collect();
    ro_no_exec.push(home.to_path_buf());
    let mut rw = vec![workdir.to_path_buf()];
    rw.extend(writable.iter().cloned());
    let mut rw_no_exec = vec![PathBuf::from("/tmp")];
    rw_no_exec.extend(
        ["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/pts", "/dev/shm"].iter().filter_map(|d| existing(d)),
    );
    LandlockRules {
        read_only: ro,
        writable: rw,
        read_only_no_exec: ro_no_exec,
        writable_no_exec: rw_no_exec,
        list_only: vec![PathBuf::from("/")],
        // TCP out only to the proxy, the resolver and the agent's own listed services; binds only
        // to those services' ports. A second wall behind the namespace, which has no route out.
        connect_ports: [PROXY_PORT, DNS_PORT].into_iter().chain(local_ports.iter().copied()).collect(),
        bind_ports: local_ports.to_vec(),
    }
}

/// The agent's environment: the terminal and locale variables, the policy's list, and what the
/// sandbox sets. Nothing that changes how programs load passes, whatever the list says.
fn scrub_env(pass: &[String], home: &Path, workdir: &Path, id: &str) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| {
            let Some(name) = k.to_str() else { return false };
            let listed = ALWAYS_PASSED.iter().any(|p| env_name_matches(p, name))
                || pass.iter().any(|p| env_name_matches(p, name));
            listed && !portcullis_policy::NEVER_PASSED_ENV.iter().any(|p| env_name_matches(p, name))
        })
        .collect();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    }
    let user = std::env::var_os("USER").unwrap_or_else(|| "agent".into());
    for (k, v) in [
        ("HOME", home.as_os_str().to_owned()),
        ("PWD", workdir.as_os_str().to_owned()),
        ("TMPDIR", "/tmp".into()),
        ("USER", user.clone()),
        ("LOGNAME", user),
        ("SHELL", "/bin/sh".into()),
        ("PORTCULLIS_SESSION", id.into()),
    ] {
        env.retain(|(key, _)| key != k);
        env.push((k.into(), v));
    }
    // Defaults, kept when the policy passes a value. Home is read-only and empty: caches go to
    // the session's private `/tmp`, for the tools that follow XDG (pip, go's build cache, …)
    // and for npm, which has a variable of its own, and so does `git config --global`. Commits
    // made in the session are the user's: their git identity, out of sight with the rest of the
    // home, is passed as the variables git reads.
    let defaults = [
        ("XDG_CACHE_HOME", "/tmp/.cache"),
        ("npm_config_cache", "/tmp/.npm"),
        ("GIT_CONFIG_GLOBAL", "/tmp/.gitconfig"),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    for (k, v) in defaults.into_iter().chain(git_identity(home)) {
        if !env.iter().any(|(key, _)| key == k) {
            env.push((k.into(), v.into()));
        }
    }
    // The proxy, for every client that reads the usual variables (curl reads only the
    // lower-case `http_proxy`; npm its own `npm_config_*`). One that ignores them has no route.
    let http = format!("http://127.0.0.1:{PROXY_PORT}");
    let socks = format!("socks5h://127.0.0.1:{PROXY_PORT}");
    let local = "localhost,127.0.0.1,::1".to_owned();
    for (k, v) in [
        ("http_proxy", &http),
        ("HTTP_PROXY", &http),
        ("https_proxy", &http),
        ("HTTPS_PROXY", &http),
        ("all_proxy", &socks),
        ("ALL_PROXY", &socks),
        ("no_proxy", &local),
        ("NO_PROXY", &local),
        ("npm_config_proxy", &http),
        ("npm_config_https_proxy", &http),
    ] {
        env.retain(|(key, _)| key != k);
        env.push((k.into(), v.into()));
    }
    env
}

/// The `name` and `email` of the `[user]` section of the user's global git config
/// (`~/.gitconfig`, else `$XDG_CONFIG_HOME/git/config`), as the author and committer variables
/// git reads. Nothing else of that file reaches the sandbox (it may hold credential helpers or
/// tokens in URLs), and its includes are not followed.
fn git_identity(home: &Path) -> Vec<(&'static str, String)> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map_or_else(|| home.join(".config"), PathBuf::from);
    let text = [home.join(".gitconfig"), xdg.join("git/config")]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let (name, email) = user_section(&text);
    let mut vars = Vec::new();
    if let Some(name) = name {
        vars.extend([("GIT_AUTHOR_NAME", name.clone()), ("GIT_COMMITTER_NAME", name)]);
    }
    if let Some(email) = email {
        vars.extend([("GIT_AUTHOR_EMAIL", email.clone()), ("GIT_COMMITTER_EMAIL", email)]);
    }
    vars
}

/// `name` and `email` from a git config's `[user]` section: `key = value` lines, a value in
/// double quotes or cut at a `#` or `;` comment. The last of each wins, as in git.
fn user_section(text: &str) -> (Option<String>, Option<String>) {
    let (mut name, mut email, mut in_user) = (None, None, false);
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            in_user = header.split(']').next().is_some_and(|h| h.trim().eq_ignore_ascii_case("user"));
            continue;
        }
        let Some((key, value)) = line.split_once('=').filter(|_| in_user) else { continue };
        let value = value.trim();
        let value = match value.strip_prefix('"').and_then(|v| v.split_once('"')) {
            Some((quoted, _)) => quoted,
            None => value.split(['#', ';']).next().unwrap_or_default().trim(),
        };
        if value.is_empty() || value.chars().any(char::is_control) {
            continue;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "name" => name = Some(value.to_owned()),
            "email" => email = Some(value.to_owned()),
            _ => {}
        }
    }
    (name, email)
}

fn enforced_list(
    spec: &Spec,
    cgroup: Option<&Cgroup>,
    ephemeral: bool,
    limits: &portcullis_policy::Limits,
) -> Vec<String> {
    let mut out = vec!["namespaces (user, mount, pid, net, ipc, uts)".to_owned()];
    out.push(if ephemeral { "workdir overlay".into() } else { "workdir written through".into() });
    if let Some((_, abi)) = &spec.landlock {
        out.push(format!("Landlock ABI {abi}"));
    }
    if spec.seccomp {
        out.push("seccomp + exec monitor".into());
    }
    if spec.egress {
        out.push(format!("egress proxy and resolver (127.0.0.1:{PROXY_PORT}, :{DNS_PORT})"));
    }
    if let Some(c) = cgroup {
        let backend = match c.backend() {
            CgroupBackend::V2 => "v2",
            CgroupBackend::V1 => "v1",
        };
        out.push(format!(
            "cgroup {backend} (memory {}, processes {})",
            fmt_limit(limits.memory),
            limits.processes.map_or("unlimited".into(), |p| p.to_string())
        ));
    } else {
        // Without a cgroup the rlimit floor holds: address space (a coarse bound, four times
        // the memory limit) and processes per uid.
        let space = spec.rlimits.iter().find(|(r, _)| *r == portcullis_sandbox::rlimit::Resource::AddressSpace);
        let procs = spec.rlimits.iter().find(|(r, _)| *r == portcullis_sandbox::rlimit::Resource::Processes);
        out.push(format!(
            "rlimits (address space {}, processes {})",
            space.map_or("unlimited".into(), |(_, b)| fmt_bytes(*b)),
            procs.map_or("unlimited".into(), |(_, p)| p.to_string())
        ));
    }
    if let Some(w) = limits.wall_clock {
        out.push(format!("wall clock {}", fmt_duration(w)));
    }
    out
}

/// A size for people: one decimal in the largest unit it reaches (`64.0 MiB`).
fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn fmt_limit(size: Option<portcullis_policy::ByteSize>) -> String {
    size.map_or("unlimited".into(), |s| s.to_string())
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// The summary's lines for `changed` (sorted by path): a directory the session added is one line
/// with the number of paths under it, as `git status` shows a new directory, so a virtualenv or
/// a new repository does not fill the list.
fn change_lines(changed: &[Change], extra: &[PathBuf]) -> Vec<String> {
    const HOST: &str = "  (runs on the host: apply needs --force)";
    let mut lines = Vec::new();
    let mut rest = changed;
    while let Some((c, after)) = rest.split_first() {
        let inside = if c.kind == ChangeKind::Added && c.entry == EntryType::Dir {
            after.iter().take_while(|d| d.path.starts_with(&c.path)).count()
        } else {
            0
        };
        let (folded, skipped) = after.split_at(inside);
        let protected = std::iter::once(c).chain(folded).any(|d| changes::is_persistence(d, extra));
        let instructs = std::iter::once(c).chain(folded).any(|d| changes::is_agent_instructions(&d.path));
        let note = if protected {
            HOST
        } else if instructs {
            "  (instructions the next agent reads: review before apply)"
        } else {
            ""
        };
        lines.push(match inside {
            0 => format!("{} {}{note}", c.kind.letter(), shown(&c.path.to_string_lossy())),
            n => format!("{} {}/ ({n} inside){note}", c.kind.letter(), shown(&c.path.to_string_lossy())),
        });
        rest = skipped;
    }
    lines
}

fn print_summary(summary: &Value, changed: &[Change], extra: &[PathBuf], ephemeral: bool) {
    let id = summary["session"].as_str().unwrap_or_default();
    let ms = summary["duration_ms"].as_u64().unwrap_or_default();
    let took = if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) };
    eprintln!("portcullis: session {id} ended: exit {} after {took}", summary["exit_code"]);
    let denials = summary["denied"].as_u64().unwrap_or_default();
    eprintln!("  execs: {} ({denials} denied)", summary["execs"]);
    let deferred: Vec<String> = summary["guards_deferred"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| format!("{} ({})", g["guard"].as_str().unwrap_or_default(), g["to"].as_str().unwrap_or_default()))
        .collect();
    if !deferred.is_empty() {
        eprintln!("    guards deferred to the walls: {}", deferred.join(", "));
    }
    for d in summary["denials"].as_array().into_iter().flatten().take(20) {
        eprintln!(
            "    denied: {}: {}",
            shown(d["command"].as_str().unwrap_or_default()),
            shown(d["reason"].as_str().unwrap_or_default())
        );
    }
    if ephemeral {
        eprintln!("  files changed: {} (in the overlay; the workdir is unchanged)", changed.len());
        let lines = change_lines(changed, extra);
        for line in lines.iter().take(20) {
            eprintln!("    {line}");
        }
        if lines.len() > 20 {
            eprintln!("    … and {} more", lines.len() - 20);
        }
        if !changed.is_empty() {
            eprintln!("    `portcullis diff {id}` shows them; `portcullis apply {id}` keeps them");
        }
    } else {
        eprintln!("  files: written through to the workdir (--no-ephemeral)");
    }
    if let Some(found) = summary["persistence"].as_array() {
        let moved = found.iter().filter(|f| f["quarantined"] == true).count();
        eprintln!(
            "  persistence: {} created or changed (git hooks or config, auto-run files), {moved} quarantined",
            found.len()
        );
        for f in found.iter().take(20) {
            let keys = f["keys"].as_array().filter(|k| !k.is_empty()).map(|k| {
                let k: Vec<&str> = k.iter().filter_map(Value::as_str).collect();
                format!(" (keys {})", k.join(", "))
            });
            let mark = if f["quarantined"] == true { "quarantined" } else { "KEPT" };
            eprintln!(
                "    {mark} {}{}",
                shown(f["path"].as_str().unwrap_or_default()),
                shown(&keys.unwrap_or_default())
            );
        }
        if moved > 0 {
            eprintln!("    `portcullis apply --force {id}` puts them back");
        }
    }
    if let Some(e) = summary.get("egress") {
        let dests = e["destinations"].as_array().cloned().unwrap_or_default();
        let allowed: u64 = dests.iter().filter_map(|d| d["allowed"].as_u64()).sum();
        let denied: u64 = dests.iter().filter_map(|d| d["denied"].as_u64()).sum();
        let ceiling =
            e["ceiling"].as_u64().map(|c| format!(" of {}", portcullis_policy::ByteSize(c))).unwrap_or_default();
        eprintln!(
            "  network: {allowed} connections allowed, {denied} denied; {} sent{ceiling}, {} received",
            fmt_bytes(e["outbound_bytes"].as_u64().unwrap_or_default()),
            fmt_bytes(e["inbound_bytes"].as_u64().unwrap_or_default()),
        );
        let mut dests = dests;
        dests.sort_by_key(|d| {
            std::cmp::Reverse(d["up"].as_u64().unwrap_or_default() + d["down"].as_u64().unwrap_or_default())
        });
        for d in dests.iter().take(10) {
            let mark = if d["allowed"].as_u64() == Some(0) { "denied " } else { "" };
            eprintln!(
                "    {mark}{}: {} up, {} down",
                shown(d["destination"].as_str().unwrap_or_default()),
                fmt_bytes(d["up"].as_u64().unwrap_or_default()),
                fmt_bytes(d["down"].as_u64().unwrap_or_default()),
            );
        }
    }
    let disk: Vec<String> = summary["disk"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let size = |k: &str| fmt_bytes(d[k].as_u64().unwrap_or_default());
            format!("{} {} of {}", d["place"].as_str().unwrap_or_default(), size("used"), size("size"))
        })
        .collect();
    if !disk.is_empty() {
        eprintln!("  disk: {}", disk.join(", "));
    }
    let limits: Vec<&str> = summary["limits_hit"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    eprintln!("  limits hit: {}", if limits.is_empty() { "none".into() } else { limits.join("; ") });
    if let Some(d) = summary["degraded"].as_array().filter(|d| !d.is_empty()) {
        eprintln!("  DEGRADED: {}", d.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
    }
    if let Some(n) = summary["not_enforced"].as_array().filter(|n| !n.is_empty()) {
        eprintln!("  NOT ENFORCED by `run`: {}", n.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
    }
    eprintln!(
        "  audit: {} (portcullis audit show {})",
        summary["audit"].as_str().unwrap_or_default(),
        summary["session"].as_str().unwrap_or_default()
    );
    for p in summary["problems"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        eprintln!("  PROBLEM: {p}");
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Change, ChangeKind, EntryType, OsStr, Path, PathBuf, change_lines, fmt_bytes, hidden_program_hint, user_section,
    };

    #[test]
    fn what_the_repository_is_configured_to_run_is_persistence() {
        let work = std::env::temp_dir().join(format!("portcullis-hookspath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join(".git/hooks")).unwrap();
        std::fs::create_dir_all(work.join(".githooks")).unwrap();
        std::fs::create_dir_all(work.join("scripts")).unwrap();
        std::fs::write(work.join("scripts/pre-commit"), "#!/bin/sh\n").unwrap();
        std::fs::write(work.join(".git/config"), "[core]\n\thooksPath = .githooks\n").unwrap();
        std::os::unix::fs::symlink("../../scripts/pre-commit", work.join(".git/hooks/pre-commit")).unwrap();
        std::os::unix::fs::symlink("/bin/true", work.join(".git/hooks/post-checkout")).unwrap();
        let work = work.canonicalize().unwrap();
        let mut found = super::configured_persistence(&work);
        found.sort();
        assert_eq!(found, [PathBuf::from(".githooks"), PathBuf::from("scripts/pre-commit")]);
        std::fs::remove_dir_all(&work).unwrap();
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(4096), "4.0 KiB");
        assert_eq!(fmt_bytes(64 << 20), "64.0 MiB");
        assert_eq!(fmt_bytes((2 << 30) + (512 << 20)), "2.5 GiB");
    }

    #[test]
    fn a_new_directory_is_one_line_in_the_summary() {
        let c = |path: &str, kind, entry| Change { path: PathBuf::from(path), kind, entry };
        let changed = [
            c(".git/hooks/pre-commit", ChangeKind::Added, EntryType::File),
            c("a.txt", ChangeKind::Modified, EntryType::File),
            c("env", ChangeKind::Added, EntryType::Dir),
            c("env/bin", ChangeKind::Added, EntryType::Dir),
            c("env/bin/python", ChangeKind::Added, EntryType::Symlink),
            c("env2", ChangeKind::Added, EntryType::File),
            c("old", ChangeKind::Deleted, EntryType::None),
            c("src", ChangeKind::Modified, EntryType::Dir),
            c("src/new.rs", ChangeKind::Added, EntryType::File),
        ];
        assert_eq!(
            change_lines(&changed, &[]),
            [
                "A .git/hooks/pre-commit  (runs on the host: apply needs --force)",
                "M a.txt",
                "A env/ (2 inside)",
                "A env2",
                "D old",
                "M src",
                "A src/new.rs",
            ]
        );
    }

    #[test]
    fn a_program_under_the_home_gets_a_hint_naming_the_policy_line() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("portcullis-hint-{}", std::process::id()));
        let (home, work) = (base.join("home"), base.join("home/project"));
        let bin = home.join(".tool/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(bin.join("tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        let path = std::env::join_paths([Path::new("/usr/bin"), &bin]).unwrap();
        let hint =
            |program: &str, shown: &[PathBuf]| hidden_program_hint(OsStr::new(program), &path, &home, &work, &[shown]);
        let text = hint("tool", &[]).unwrap();
        assert!(text.contains(&format!("`{}`", bin.join("tool").display())), "{text}");
        assert!(text.contains("read_only = [\"~/.tool\"]"), "{text}");
        // By its path too; not when the policy shows it, nor for what is not executable, nor
        // for what is found outside the home.
        assert!(hint(&bin.join("tool").display().to_string(), &[]).is_some());
        assert_eq!(hint("tool", &[home.join(".tool")]), None);
        assert_eq!(hint("data", &[]), None);
        assert_eq!(hint("sh", &[]), None);
        assert_eq!(hint("no-such-program", &[]), None);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_git_identity_is_read_from_the_user_section_alone() {
        let config = "[core]\n\tname = not-this\n[user]\n\tname = \"Ada Lovelace\" # quoted\n\temail = ada@example.org ; comment\n\
                      [url \"https://token@example.org/\"]\n\temail = not@this\n";
        assert_eq!(user_section(config), (Some("Ada Lovelace".into()), Some("ada@example.org".into())));
        assert_eq!(user_section("[user]\nname=\n[User]\nemail = b@c\n"), (None, Some("b@c".into())));
        assert_eq!(user_section(""), (None, None));
    }
}
