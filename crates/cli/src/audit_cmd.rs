//! `portcullis audit`: verify the store, show a session, tail and query the records.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use portcullis_audit::read::{self, Filter};
use portcullis_audit::{Kind, PublicKey, Stored};
use portcullis_policy::Decision;
use serde_json::Value;

use crate::sessions;

#[derive(Debug, Args)]
#[command(after_help = "The store holds every session's records in one hash chain (BLAKE3), with \
Ed25519-signed checkpoints. It lives in STATE/audit (STATE: /var/lib/portcullis as root, else \
$XDG_STATE_HOME/portcullis or ~/.local/state/portcullis), or where the policy's [audit] dir says; \
--store names it.

Examples:
  portcullis audit verify
  portcullis audit show 20261124-101500-3fa2c1
  portcullis audit tail -f
  portcullis audit query --kind exec --decision deny --since 1h
  portcullis audit query --agent reviewer --grep api.github.com --json")]
pub(crate) struct AuditArgs {
    /// The store's directory (default: STATE/audit).
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every record's hash, order and checkpoint signature; name the first bad record.
    #[command(after_help = "Exits 0 when the store is intact, 1 when it is not (the first bad record is named by \
segment, line, byte offset and record number), 2 when it cannot be read. A partial last record \
(a write cut off by a crash) is reported, not an error: the next writer cuts it off.

Examples:
  portcullis audit verify
  portcullis audit verify --key 6523e5e6…   check against a key kept elsewhere
  portcullis audit verify --json")]
    Verify {
        /// The public key checkpoints must be signed with (64 hex digits; default: this host's).
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// A session's timeline, denials highlighted.
    Show {
        /// The session id (default: the newest session).
        session: Option<String>,
        /// Print the records as JSON Lines.
        #[arg(long)]
        json: bool,
    },
    /// The newest records, and with -f every record as it is written.
    Tail {
        /// Keep printing records as they are written.
        #[arg(short, long)]
        follow: bool,
        /// How many records to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Print JSON Lines even on a terminal (the default elsewhere).
        #[arg(long)]
        json: bool,
    },
    /// Records that match every filter given.
    Query(QueryArgs),
    /// Remove segments older than the retention period, leaving a signed marker.
    #[command(after_help = "Whole segments go, oldest first, once every record in them is older than the \
retention period; the newest segment always stays. A marker signed with this host's key names where \
their chain ended, so `audit verify` still passes on what remains, and a `store_pruned` record says \
what went.

Examples:
  portcullis audit prune                   the default retention, 90 days
  portcullis audit prune --retention 30d --dry-run")]
    Prune {
        /// Keep records younger than this.
        #[arg(long, default_value = "90d", value_parser = parse_age)]
        retention: Duration,
        /// Report what would go, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Latency per hook: p50, p99 and the slowest, from the hook records.
    Hooks {
        /// Only this session's.
        #[arg(long)]
        session: Option<String>,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export records for a SIEM.
    #[command(after_help = "OCSF 1.1 classes: execs as Process Activity (1007), HTTP requests as HTTP \
Activity (4002), tunnels as Network Activity (4001), lookups as DNS Activity (4003), tool calls and \
hooks as API Activity (6003), sessions as Application Lifecycle (6002), alerts and limits as \
Detection Finding (2004). Denials carry disposition Blocked. The original record rides along in \
`unmapped`.

Examples:
  portcullis audit export --format ocsf > events.jsonl
  portcullis audit export --format ocsf --session 20261124-101500-3fa2c1")]
    Export {
        /// The format: `ocsf` (JSON Lines) or `jsonl` (the records as stored).
        #[arg(long, default_value = "ocsf")]
        format: String,
        /// Only this session's.
        #[arg(long)]
        session: Option<String>,
        /// From this time.
        #[arg(long, value_parser = parse_time)]
        since: Option<u64>,
    },
    /// Re-run a recorded session, or re-decide it under another policy.
    Replay(crate::replay_cmd::ReplayArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Times: RFC 3339 (2026-11-24T08:00:00Z), a date (2026-11-24, UTC), or an age \
(90s, 30m, 1h, 7d). --grep matches the stored JSON text.

Examples:
  portcullis audit query --kind exec --decision deny
  portcullis audit query --tool curl --since 2026-11-24 --until 2026-11-25
  portcullis audit query --kind connect --grep '\"host\":\"api.github.com\"' --json")]
struct QueryArgs {
    /// A session id.
    #[arg(long)]
    session: Option<String>,
    /// An agent's name.
    #[arg(long)]
    agent: Option<String>,
    /// A tool (for execs: the program's name).
    #[arg(long)]
    tool: Option<String>,
    /// A kind: tool_call, exec, connect, dns, hook, limit, alert, lifecycle, checkpoint.
    #[arg(long, value_parser = parse_kind)]
    kind: Vec<Kind>,
    /// A decision: allow, ask or deny.
    #[arg(long, value_parser = parse_decision)]
    decision: Option<Decision>,
    /// From this time.
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// To this time.
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
    /// Text the stored record contains.
    #[arg(long)]
    grep: Option<String>,
    /// Print the records as JSON Lines.
    #[arg(long)]
    json: bool,
}

fn parse_age(text: &str) -> Result<Duration, String> {
    portcullis_policy::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    text.parse()
}

fn parse_decision(text: &str) -> Result<Decision, String> {
    serde_json::from_value(Value::String(text.to_owned()))
        .map_err(|_| format!("`{text}` is not a decision (allow, ask or deny)"))
}

/// A time as milliseconds since the epoch: RFC 3339 in UTC, a date, or an age before now.
pub(crate) fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(age) = portcullis_policy::parse_duration(text) {
        return Ok(portcullis_audit::record::now_ms().saturating_sub(age.as_millis() as u64));
    }
    let bad = || format!("`{text}` is not a time (2026-11-24T08:00:00Z, 2026-11-24, or an age such as 1h)");
    let (date, time) = text.split_once(['T', ' ']).unwrap_or((text, "00:00:00Z"));
    let d: Vec<i64> = date.split('-').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [y, m, day] = d[..] else { return Err(bad()) };
    let time = time.strip_suffix('Z').ok_or_else(bad)?;
    let t: Vec<f64> = time.split(':').map(|p| p.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [h, min, s] = t[..] else { return Err(bad()) };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h >= 24.0 || min >= 60.0 || s >= 61.0 {
        return Err(bad());
    }
    let days = sessions::days_from_civil(y, m as u32, day as u32);
    let ms = days * 86_400_000 + (h * 3_600_000.0 + min * 60_000.0 + s * 1000.0) as i64;
    u64::try_from(ms).map_err(|_| bad())
}

fn store_dir(args: &AuditArgs) -> Result<PathBuf> {
    match &args.store {
        Some(dir) => Ok(dir.clone()),
        None => Ok(sessions::state_root()?.join("audit")),
    }
}

pub(crate) fn run(args: &AuditArgs) -> Result<ExitCode> {
    let dir = store_dir(args)?;
    if !dir.is_dir() {
        bail!("no audit store at `{}` (pass --store DIR, or run a session first)", dir.display());
    }
    match &args.command {
        AuditCommand::Verify { key, json } => verify(&dir, key.as_deref(), *json),
        AuditCommand::Show { session, json } => show(&dir, session.as_deref(), *json),
        AuditCommand::Tail { follow, lines, json } => tail(&dir, *follow, *lines, *json),
        AuditCommand::Query(q) => query(&dir, q),
        AuditCommand::Prune { retention, dry_run, json } => prune(&dir, *retention, *dry_run, *json),
        AuditCommand::Hooks { session, json } => hooks(&dir, session.as_deref(), *json),
        AuditCommand::Export { format, session, since } => export(&dir, format, session.as_deref(), *since),
        AuditCommand::Replay(r) => crate::replay_cmd::replay(&dir, r),
    }
}

fn verify(dir: &std::path::Path, key: Option<&str>, json: bool) -> Result<ExitCode> {
    let key: PublicKey = match key {
        Some(hex) => hex.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        None => {
            let path = portcullis_audit::key::default_key_path(dir);
            portcullis_audit::HostKey::load(&path)
                .with_context(|| "cannot read this host's key; pass --key with the public key".to_string())?
                .public()
        }
    };
    let report = portcullis_audit::verify::verify(dir, &key)
        .with_context(|| format!("cannot read the audit store `{}`", dir.display()))?;
    // Read only: sessions still running, and sessions whose supervisor was lost (the next
    // `run` or `proxy` records their end), are reported, not closed.
    let open = portcullis_harness::live::open_sessions(dir);
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["open_sessions"] = open
            .iter()
            .map(|(e, state)| serde_json::json!({"session": e.session, "pid": e.pid, "state": state}))
            .collect();
        println!("{value}");
    } else {
        let verdict = if report.ok() { "intact" } else { "TAMPERED" };
        println!("audit store {}: {verdict}", dir.display());
        println!(
            "  {} segments, {} records ({} to {}), {} checkpoints; signed through record {}",
            report.segments,
            report.records,
            report.first_seq,
            report.last_seq,
            report.checkpoints,
            report.signed_through
        );
        if report.last_seq > report.signed_through {
            println!(
                "  records {} to {} are chained but not yet signed (the next checkpoint signs them)",
                report.signed_through + 1,
                report.last_seq
            );
        }
        if let Some(p) = &report.pruned {
            println!("  segments 1 to {} were pruned (signed marker verified)", p.segment);
        }
        if let Some(t) = &report.torn {
            println!(
                "  note: {} ends with {} bytes of a partial record at byte {}: a write cut off by a crash; the \
                 next writer cuts it off",
                t.segment.display(),
                t.bytes,
                t.offset
            );
        }
        for (e, state) in &open {
            println!("  {}", open_note(e, *state));
        }
        println!("  key {}", report.key);
        if let Some(p) = &report.problem {
            println!("  first bad record: {p}");
        }
    }
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn show(dir: &std::path::Path, session: Option<&str>, json: bool) -> Result<ExitCode> {
    let session = match session {
        Some(s) => s.to_owned(),
        None => newest_session(dir)?.context("the store has no sessions")?,
    };
    let filter = Filter { session: Some(session.clone()), hide_checkpoints: true, ..Filter::default() };
    let records = read::query(dir, &filter).context("cannot read the audit store")?;
    if records.is_empty() {
        bail!("no records of session `{session}` in `{}`", dir.display());
    }
    let colour = !json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    if !json {
        let first = &records[0].record;
        writeln!(
            out,
            "session {session}{}{}, started {}",
            first.agent.as_ref().map(|a| format!(", agent {a}")).unwrap_or_default(),
            first.uid.map(|u| format!(", uid {u}")).unwrap_or_default(),
            clock(first.ts_ms)
        )?;
    }
    let mut denials = 0;
    for r in &records {
        denials += usize::from(denied(r));
        print_record_at(&mut out, r, json, colour, true)?;
    }
    if !json {
        writeln!(out, "{} records, {denials} denied", records.len())?;
        if let Some((e, state)) =
            portcullis_harness::live::open_sessions(dir).into_iter().find(|(e, _)| e.session == session)
        {
            writeln!(out, "{}", open_note(&e, state))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A line on a session without an end.
fn open_note(e: &portcullis_harness::live::Entry, state: portcullis_harness::live::State) -> String {
    match state {
        portcullis_harness::live::State::Running => {
            format!("session {} is open: running (supervisor pid {})", e.session, e.pid)
        }
        portcullis_harness::live::State::Lost => format!(
            "session {} is open: its supervisor (pid {}) was lost before the session ended; the next `run` or \
             `proxy` records its end and removes its cgroup",
            e.session, e.pid
        ),
    }
}

/// The session of the newest lifecycle record.
fn newest_session(dir: &std::path::Path) -> Result<Option<String>> {
    let mut newest = None;
    read::each_line(dir, |line| {
        if portcullis_audit::store::parse_prefix(line).is_some_and(|p| p.event == b"session_start")
            && let Some(s) = read::parse(line)
            && s.record.event == "session_start"
        {
            newest = Some(s.record.session);
        }
        ControlFlow::Continue(())
    })?;
    Ok(newest)
}

fn tail(dir: &std::path::Path, follow: bool, lines: usize, json: bool) -> Result<ExitCode> {
    let terminal = std::io::stdout().is_terminal();
    let json = json || !terminal;
    let colour = !json && std::env::var_os("NO_COLOR").is_none();
    let mut last: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::with_capacity(lines + 1);
    read::each_line(dir, |line| {
        last.push_back(line.to_vec());
        if last.len() > lines {
            last.pop_front();
        }
        ControlFlow::Continue(())
    })?;
    let mut out = std::io::stdout().lock();
    for line in &last {
        print_line(&mut out, line, json, colour)?;
    }
    out.flush()?;
    if follow {
        let mut writing = Writing::default();
        read::follow(dir, false, Duration::from_millis(100), |line| {
            writing.step(print_line(&mut out, line, json, colour).and_then(|()| out.flush()))
        })?;
        writing.finish()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn query(dir: &std::path::Path, q: &QueryArgs) -> Result<ExitCode> {
    let filter = Filter {
        session: q.session.clone(),
        agent: q.agent.clone(),
        tool: q.tool.clone(),
        kinds: q.kind.clone(),
        decision: q.decision,
        since_ms: q.since,
        until_ms: q.until,
        grep: q.grep.clone(),
        hide_checkpoints: q.kind.is_empty(),
    };
    let colour = !q.json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut out = std::io::stdout().lock();
    let mut count = 0usize;
    let mut writing = Writing::default();
    read::each_line(dir, |line| match filter.select(line) {
        Some(r) => {
            count += 1;
            writing.step(print_record(&mut out, &r, q.json, colour))
        }
        None => ControlFlow::Continue(()),
    })?;
    writing.finish()?;
    if !q.json && std::io::stderr().is_terminal() {
        eprintln!("{count} records");
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(dir: &std::path::Path, retention: Duration, dry_run: bool, json: bool) -> Result<ExitCode> {
    let key = portcullis_audit::HostKey::load(&portcullis_audit::key::default_key_path(dir))
        .context("pruning signs a marker with this host's key")?;
    let cutoff = portcullis_audit::record::now_ms().saturating_sub(retention.as_millis() as u64);
    let pruned = portcullis_audit::prune::prune(dir, key, cutoff, dry_run)?;
    if json {
        println!("{}", serde_json::to_string(&pruned)?);
    } else if pruned.segments.is_empty() {
        println!("nothing is older than {}", age(retention));
    } else {
        let verb = if dry_run { "would remove" } else { "removed" };
        println!(
            "{verb} {} segments ({} records, through record {}): every record in them is older than {}",
            pruned.segments.len(),
            pruned.records,
            pruned.through_seq.unwrap_or_default(),
            age(retention)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `90d`, or the run summary's form when not whole days.
fn age(d: Duration) -> String {
    if d.as_secs().is_multiple_of(86_400) && d.as_secs() > 0 {
        format!("{}d", d.as_secs() / 86_400)
    } else {
        crate::run_cmd::fmt_duration(d)
    }
}

fn hooks(dir: &std::path::Path, session: Option<&str>, json: bool) -> Result<ExitCode> {
    let filter = Filter { session: session.map(str::to_owned), kinds: vec![Kind::Hook], ..Filter::default() };
    let mut by_hook: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
    for r in read::query(dir, &filter)? {
        let name = r.record.data.get("hook").and_then(Value::as_str).map(str::to_owned);
        let name = name.or(r.record.tool.clone()).unwrap_or_else(|| r.record.event.clone());
        if let Some(us) = r.record.latency_us {
            by_hook.entry(name).or_default().push(us);
        }
    }
    let rows: Vec<Value> = by_hook
        .into_iter()
        .map(|(hook, mut us)| {
            us.sort_unstable();
            let pct = |p: usize| us[(us.len() * p).div_ceil(100).max(1) - 1];
            serde_json::json!({"hook": hook, "runs": us.len(), "p50_us": pct(50), "p99_us": pct(99), "max_us": us[us.len() - 1]})
        })
        .collect();
    if json {
        println!("{}", Value::Array(rows));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no hook runs recorded");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<40} {:>7} {:>10} {:>10} {:>10}", "hook", "runs", "p50", "p99", "max");
    for r in rows {
        let ms = |k: &str| format!("{:.1} ms", r[k].as_u64().unwrap_or(0) as f64 / 1000.0);
        println!(
            "{:<40} {:>7} {:>10} {:>10} {:>10}",
            r["hook"].as_str().unwrap_or_default(),
            r["runs"],
            ms("p50_us"),
            ms("p99_us"),
            ms("max_us")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn export(dir: &std::path::Path, format: &str, session: Option<&str>, since: Option<u64>) -> Result<ExitCode> {
    let ocsf = match format {
        "ocsf" => true,
        "jsonl" => false,
        other => bail!("`{other}` is not an export format (ocsf or jsonl)"),
    };
    let filter = Filter { session: session.map(str::to_owned), since_ms: since, ..Filter::default() };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut writing = Writing::default();
    read::each_line(dir, |line| {
        let Some(r) = filter.select(line) else {
            return ControlFlow::Continue(());
        };
        let written = if ocsf {
            match portcullis_audit::ocsf::event(&r) {
                Some(e) => serde_json::to_writer(&mut out, &e)
                    .map_err(std::io::Error::other)
                    .and_then(|()| out.write_all(b"\n")),
                None => Ok(()),
            }
        } else {
            out.write_all(line).and_then(|()| out.write_all(b"\n"))
        };
        writing.step(written)
    })?;
    let _ = writing.step(out.flush());
    writing.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// Records written to stdout during a walk over the store: the first error stops the walk, and
/// a reader that went away (a closed pipe, as `| head` leaves) ends it quietly.
#[derive(Default)]
struct Writing {
    failed: Option<std::io::Error>,
}

impl Writing {
    fn step(&mut self, written: std::io::Result<()>) -> ControlFlow<()> {
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                self.failed.get_or_insert(e);
                ControlFlow::Break(())
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self.failed {
            Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
            _ => Ok(()),
        }
    }
}

fn denied(r: &Stored) -> bool {
    r.record.decision.as_ref().is_some_and(|d| d.decision != Decision::Allow)
}

fn print_line(out: &mut impl Write, line: &[u8], json: bool, colour: bool) -> std::io::Result<()> {
    if json {
        out.write_all(line)?;
        return out.write_all(b"\n");
    }
    match read::parse(line) {
        Some(r) => print_record(out, &r, false, colour),
        None => writeln!(out, "(unreadable record) {}", String::from_utf8_lossy(line)),
    }
}

/// One record: its stored JSON, or a line for people.
fn print_record(out: &mut impl Write, r: &Stored, json: bool, colour: bool) -> std::io::Result<()> {
    print_record_at(out, r, json, colour, false)
}

/// As [`print_record`]; with `time_only`, the time of day without the date.
fn print_record_at(out: &mut impl Write, r: &Stored, json: bool, colour: bool, time_only: bool) -> std::io::Result<()> {
    if json {
        out.write_all(&r.to_line())?;
        return out.write_all(b"\n");
    }
    let rec = &r.record;
    let (decision, paint) = match rec.decision.as_ref().map(|d| d.decision) {
        Some(Decision::Deny) => ("DENY ", "\x1b[1;31m"),
        Some(Decision::Ask) => ("ASK  ", "\x1b[1;33m"),
        Some(Decision::Allow) => ("allow", ""),
        None => ("     ", ""),
    };
    // What the agent named (argv, hosts, paths, tools) is escaped for the terminal.
    let what = describe(r);
    let what = portcullis_guard::terminal::printable(&what);
    let reason = rec
        .decision
        .as_ref()
        .filter(|d| d.decision != Decision::Allow && !d.reason.is_empty())
        .map(|d| format!(" — {}", portcullis_guard::terminal::printable(&d.reason)))
        .unwrap_or_default();
    let latency = rec.latency_us.map(|u| format!(" ({u} µs)")).unwrap_or_default();
    let repeat = repeat_note(r);
    let when = clock(rec.ts_ms);
    let when = if time_only { when.split_once(' ').map_or(when.as_str(), |(_, t)| t) } else { &when };
    let text = format!("{when} #{:<6} {:<9} {decision} {what}{repeat}{reason}{latency}", r.seq, rec.kind.as_str());
    if colour && !paint.is_empty() { writeln!(out, "{paint}{text}\x1b[0m") } else { writeln!(out, "{text}") }
}

/// ` [attempt 2]` on a refusal that repeats the ones before it, with the identical refusals
/// folded into it (`fold`): ` [attempt 57; 53 more since 09:07:47.569Z folded into this record]`.
/// An exec retried under another name (a shell searching `PATH`) names the path it tried.
fn repeat_note(r: &Stored) -> String {
    let rec = &r.record;
    let Some(attempt) = rec.data.get("attempt").and_then(Value::as_u64) else { return String::new() };
    let mut note = format!(" [attempt {attempt}");
    if rec.kind == Kind::Exec
        && let Some(tried) = rec.input.as_ref().and_then(|i| i.get("path")).and_then(Value::as_str)
    {
        note.push_str(&format!(", as {tried}"));
    }
    if let Some(folded) = rec.data.get("folded").and_then(Value::as_u64) {
        let since = rec.data.get("folded_since_ms").and_then(Value::as_u64).unwrap_or(rec.ts_ms);
        let since = clock(since);
        let since = since.split_once(' ').map_or(since.as_str(), |(_, t)| t);
        note.push_str(&format!("; {folded} more identical since {since} folded into this record"));
    }
    note.push(']');
    note
}

/// ` (ran /usr/bin/id)` when what an exec ran is not what its `argv[0]` names: another file,
/// a copy of a system program, or an anonymous one.
fn ran_note(argv0: Option<&str>, program: Option<&Value>) -> String {
    let Some(p) = program else { return String::new() };
    let path = p["path"].as_str().unwrap_or_default();
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    if p["anonymous"] == true {
        return format!(" (ran an anonymous program: {path})");
    }
    if let Some(copy) = p["copy_of"].as_str() {
        return format!(" (ran {path}, a copy of {copy})");
    }
    match argv0 {
        Some(a) if base(a) != base(path) => format!(" (ran {path})"),
        _ => String::new(),
    }
}

/// What a record is about, in a few words.
fn describe(r: &Stored) -> String {
    let rec = &r.record;
    let input = rec.input.as_ref();
    let field = |k: &str| input.and_then(|i| i.get(k));
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    };
    match rec.kind {
        Kind::Exec => {
            let argv: Vec<String> = field("argv")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| text(Some(v))).collect())
                .unwrap_or_default();
            let mut s = argv.join(" ");
            s.push_str(&ran_note(argv.first().map(String::as_str), field("program")));
            s
        }
        Kind::Connect => {
            let mut s = format!("{} {}:{}", rec.event, text(field("host")), text(field("port")));
            // A tunnel is recorded as it opens and runs, then with its totals at its close.
            if let Some(phase) = field("phase").and_then(Value::as_str).filter(|p| *p != "close") {
                s.push_str(&format!(" ({phase})"));
            }
            if let Some(m) = field("method") {
                s.push_str(&format!(" {} {}", text(Some(m)), text(field("path"))));
            }
            if let Some(o) = &rec.outcome {
                s.push_str(&format!(" [{}↑ {}↓]", text(o.get("bytes_up")), text(o.get("bytes_down"))));
            }
            s
        }
        Kind::Dns => format!("{} {}", text(field("qtype")), text(field("name"))),
        Kind::ToolCall | Kind::Hook => format!("{} {}", rec.tool.as_deref().unwrap_or("?"), text(input)),
        Kind::Checkpoint => format!("{} over record {}", rec.event, text(rec.data.get("covers"))),
        _ => {
            let mut s = rec.event.clone();
            for k in ["argv", "workdir", "exit_code", "limit", "error", "message"] {
                if let Some(v) = rec.data.get(k) {
                    s.push_str(&format!(" {k}={}", text(Some(v))));
                }
            }
            s
        }
    }
}

/// `2026-11-24 08:39:34.123Z`.
fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = sessions::civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}Z", rest / 3600, rest % 3600 / 60, rest % 60, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc_dates_instants_and_ages() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_time("2026-11-24T08:39:34Z").unwrap(), 1_795_509_574_000);
        assert_eq!(clock(1_795_509_574_123), "2026-11-24 08:39:34.123Z");
        let hour_ago = parse_time("1h").unwrap();
        let now = portcullis_audit::record::now_ms();
        assert!((now - hour_ago).abs_diff(3_600_000) < 5_000);
        assert!(parse_time("2026-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }
}
