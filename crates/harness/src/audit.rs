//! A session's side of the audit store: records stamped with the session, agent and uid, the
//! egress' records mapped onto the schema, and what happens when the store fails (the call is
//! denied, and the session is ended).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_audit::alerts::{Alert, Alerter};
use portcullis_audit::{AuditError, DecisionRecord, HostKey, Kind, Options, Record, Store};
use portcullis_policy::{AuditSettings, Decision};
use serde_json::{Map, Value};

/// Where a session's records go. [`SessionLog`] is the store's; tests keep records in memory.
pub trait Trail: Send + Sync {
    /// A record of `kind`/`event` for this session, now.
    fn record(&self, kind: Kind, event: &str) -> Record;
    /// Stores `record` before returning; an error means the call it describes must not happen.
    fn commit(&self, record: Record) -> Result<(), String>;
}

/// The store directory a policy's `[audit]` names, or `STATE/audit`.
pub fn store_dir(settings: &AuditSettings, state: &Path) -> PathBuf {
    settings.dir.clone().unwrap_or_else(|| state.join("audit"))
}

/// The store options a policy's `[audit]` asks for.
pub fn store_options(settings: &AuditSettings) -> Options {
    let durability = match settings.durability {
        portcullis_policy::Durability::Sync => portcullis_audit::Durability::Sync,
        portcullis_policy::Durability::Group => portcullis_audit::Durability::Group,
    };
    Options { durability, min_free: settings.min_free.0, ..Options::default() }
}

/// Opens the store at `dir` with the host key beside it (made at first use).
pub fn open_store(dir: &Path, options: Options) -> Result<Store, AuditError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| AuditError::Open { path: dir.to_path_buf(), source })?;
    let key = HostKey::load_or_create(&portcullis_audit::key::default_key_path(dir))?;
    Store::open(dir, key, options)
}

/// How long an alert command may run before it is killed.
const ALERT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// One session's records, in the shared store.
pub struct SessionLog {
    store: Arc<Store>,
    session: String,
    agent: Option<String>,
    uid: u32,
    failure: OnceLock<String>,
    on_failure: OnceLock<Box<dyn Fn() + Send + Sync>>,
    alerter: Option<Alerter>,
    /// The `[alerts] command`, resolved at the start.
    alert_program: Option<crate::host_program::HostProgram>,
    /// The `[alerts] command` runs, to wait for at the end.
    commands: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Alert lines held back while the agent owns the terminal (`None`: printed at once).
    held: Mutex<Option<Vec<String>>>,
    /// No alert lines at all (`run -q`).
    muted: std::sync::atomic::AtomicBool,
    /// Repeated refusals folded, and the session's record budget; held while a record and
    /// what the folding lets out with it are queued, so they go to the store in order.
    writing: Mutex<Writing>,
    /// The budget the session passed, once it has.
    volume: OnceLock<String>,
}

/// What decides which records a session writes, and whether it may write more.
struct Writing {
    folder: portcullis_audit::fold::Folder,
    /// Reused for what the folder lets out.
    out: Vec<Record>,
    budget: Option<Budget>,
}

/// A session's record budget: a rate (a token bucket holding ten seconds' worth) and a total.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Records a second, on average.
    pub per_second: u64,
    /// Bytes in all.
    pub bytes: u64,
    tokens: f64,
    refilled: Option<Instant>,
}

impl Budget {
    /// `per_second` records a second (bursts of ten seconds' worth) and `bytes` in all.
    pub fn new(per_second: u64, bytes: u64) -> Self {
        Budget { per_second, bytes, tokens: per_second.saturating_mul(BUDGET_BURST_SECONDS) as f64, refilled: None }
    }

    /// Takes `n` records; `Err` names what was passed.
    fn spend(&mut self, n: usize, bytes_so_far: u64) -> Result<(), String> {
        let now = Instant::now();
        let rate = self.per_second as f64;
        let cap = rate * BUDGET_BURST_SECONDS as f64;
        if let Some(then) = self.refilled {
            self.tokens = (self.tokens + now.duration_since(then).as_secs_f64() * rate).min(cap);
        }
        self.refilled = Some(now);
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            return Err(format!(
                "audit volume (more than {} records a second, sustained: [audit] session_records_per_second)",
                self.per_second
            ));
        }
        if bytes_so_far > self.bytes {
            return Err(format!(
                "audit volume ({} bytes of records: [audit] session_bytes)",
                portcullis_policy::ByteSize(self.bytes)
            ));
        }
        Ok(())
    }
}

/// The seconds of records at the budget's rate that a session may write at once.
const BUDGET_BURST_SECONDS: u64 = 10;

impl std::fmt::Debug for SessionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLog").field("session", &self.session).finish_non_exhaustive()
    }
}

impl SessionLog {
    /// Records for `session`, acting for `agent`, in `store`.
    pub fn new(store: Arc<Store>, session: &str, agent: Option<&str>) -> Self {
        SessionLog {
            store,
            session: session.to_owned(),
            agent: agent.map(str::to_owned),
            uid: rustix::process::getuid().as_raw(),
            failure: OnceLock::new(),
            on_failure: OnceLock::new(),
            alerter: None,
            alert_program: None,
            commands: Mutex::new(Vec::new()),
            held: Mutex::new(None),
            muted: std::sync::atomic::AtomicBool::new(false),
            writing: Mutex::new(Writing {
                folder: portcullis_audit::fold::Folder::default(),
                out: Vec::with_capacity(4),
                budget: None,
            }),
            volume: OnceLock::new(),
        }
    }

    /// Holds the session to `budget`: past it, the record and the call it describes are
    /// refused, and the session is ended (through what [`SessionLog::on_failure`] set).
    pub fn with_budget(self, budget: Budget) -> Self {
        self.writing.lock().unwrap_or_else(|e| e.into_inner()).budget = Some(budget);
        self
    }

    /// The budget the session passed (`audit volume (…)`), if it has.
    pub fn volume_hit(&self) -> Option<&str> {
        self.volume.get().map(String::as_str)
    }

    /// Writes the refusals still held back by the folding: at the session's end, before its
    /// last records.
    pub fn flush_folded(&self) -> Result<(), String> {
        let mut w = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let Writing { folder, out, .. } = &mut *w;
        folder.flush(out);
        // Each held refusal stands for attempts no other record counts: every one is tried,
        // below the free-space floor too (there are at most as many as the folder keeps keys).
        let mut first = Ok(());
        for r in out.drain(..) {
            if let Err(e) = self.store.append_closing(r) {
                let e = self.failed(&e);
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Stores `record` through the folding and the budget; with `wait`, returns once it is
    /// stored as the store's durability asks (a held refusal is not waited for: the call it
    /// describes does not happen).
    fn write(&self, record: Record, wait: bool) -> Result<(), String> {
        let alerts = self.observe(&record);
        let ticket = {
            let mut w = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            let Writing { folder, out, budget } = &mut *w;
            let mut this = folder.offer(record, out);
            // What is written counts (a folded refusal does not); the records that end a
            // session are never refused for volume.
            let cost = out.iter().filter(|r| !matches!(r.kind, Kind::Lifecycle | Kind::Limit)).count();
            let mut result = Ok(());
            if cost > 0
                && let Some(b) = budget
                && let Err(why) = b.spend(cost, self.store.bytes_appended())
            {
                result = Err(self.over_budget(why));
                // A call gated on its record (`commit`) is refused, and its record goes with
                // it. A record of what already happened is written all the same: it is the
                // only trace of it. The held ones let out are of calls already refused.
                if wait && this {
                    out.pop();
                    this = false;
                }
            }
            let mut ticket = None;
            for r in out.drain(..) {
                ticket = Some(self.store.append(r).map_err(|e| self.failed(&e))?);
            }
            result?;
            ticket.filter(|_| this)
        };
        if wait && let Some(t) = ticket {
            self.store.wait(t).map_err(|e| self.failed(&e))?;
        }
        self.emit(alerts);
        Ok(())
    }

    /// Notes the budget passed (once) and ends the session; the text for the refused call.
    fn over_budget(&self, why: String) -> String {
        if self.volume.set(why.clone()).is_ok() {
            // On the record when it happens, not only at the end.
            let mut r = Trail::record(self, Kind::Limit, "limit_reached");
            r.data.insert("limit".into(), Value::String(why.clone()));
            let _ = self.store.append(r).map_err(|e| self.failed(&e));
            if let Some(f) = self.on_failure.get() {
                f();
            }
        }
        format!("the session passed its {why}; it is being ended")
    }

    /// Holds alert lines back instead of printing them: for a session whose agent draws on the
    /// user's terminal, where a line from the supervisor would land in the middle of its screen.
    /// The alerts are still stored, and handed to the alert command, at once.
    pub fn hold_alert_lines(&self) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// Prints no alert lines (for `run -q`). The alerts are still stored, and handed to the
    /// alert command.
    pub fn mute_alert_lines(&self) {
        self.muted.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The alert lines held back so far; printing goes back to immediate.
    pub fn release_alert_lines(&self) -> Vec<String> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
    }

    /// Raises alerts with `alerter` on every record stored from now on, handing each to
    /// `program` (the policy's `[alerts] command`, resolved and checked at the start).
    pub fn with_alerts(mut self, alerter: Alerter, program: Option<crate::host_program::HostProgram>) -> Self {
        self.alerter = Some(alerter);
        self.alert_program = program;
        self
    }

    /// The alerter, if alerts are on.
    pub fn alerter(&self) -> Option<&Alerter> {
        self.alerter.as_ref()
    }

    /// Waits (up to `limit`) for the alert commands still running.
    pub fn finish_alerts(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let handles: Vec<_> = std::mem::take(&mut *self.commands.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }

    /// The alerts `record` raises.
    fn observe(&self, record: &Record) -> Vec<Alert> {
        self.alerter.as_ref().map(|a| a.observe(record)).unwrap_or_default()
    }

    /// Each alert stored (after the record that raised it), printed, and handed to the alert
    /// command.
    fn emit(&self, alerts: Vec<Alert>) {
        if self.alerter.is_none() {
            return;
        }
        for alert in alerts {
            if !self.muted.load(std::sync::atomic::Ordering::Relaxed) {
                // The message quotes what the agent named (a tool, a host): escaped for the terminal.
                let line = format!(
                    "portcullis: ALERT {}: {}",
                    alert.trigger,
                    portcullis_guard::terminal::printable(&alert.message)
                );
                match self.held.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                    Some(held) => held.push(line),
                    None => eprintln!("{line}"),
                }
            }
            let json = serde_json::to_value(&alert).unwrap_or_default();
            let mut r = Trail::record(self, Kind::Alert, alert.trigger);
            if let serde_json::Value::Object(map) = json.clone() {
                r.data = map;
            }
            let _ = self.store.append(r).map_err(|e| self.failed(&e));
            if let Some(program) = &self.alert_program {
                self.run_alert_command(program, &alert);
            }
        }
    }

    /// Runs the alert program with the alert as JSON on stdin: the agent's strings in it are
    /// data, never arguments or shell text.
    fn run_alert_command(&self, program: &crate::host_program::HostProgram, alert: &Alert) {
        let mut text = serde_json::to_vec(alert).unwrap_or_default();
        text.push(b'\n');
        let mut cmd = program.command();
        let command = program.path().display().to_string();
        let handle = std::thread::spawn(move || {
            use std::io::Write;
            let child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn();
            match child {
                Ok(mut child) => {
                    if let Some(mut stdin) = child.stdin.take() {
                        let _ = stdin.write_all(&text);
                    }
                    let deadline = Instant::now() + ALERT_COMMAND_TIMEOUT;
                    loop {
                        match child.try_wait() {
                            Ok(Some(status)) if !status.success() => {
                                eprintln!("portcullis: the alert command `{command}` failed: {status}");
                                break;
                            }
                            Ok(Some(_)) => break,
                            Ok(None) if Instant::now() >= deadline => {
                                let _ = child.kill();
                                let _ = child.wait();
                                eprintln!("portcullis: the alert command `{command}` timed out and was killed");
                                break;
                            }
                            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                            Err(_) => break,
                        }
                    }
                }
                Err(e) => eprintln!("portcullis: cannot run the alert command `{command}`: {e}"),
            }
        });
        self.commands.lock().unwrap_or_else(|e| e.into_inner()).push(handle);
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs `f` once, at the first record that cannot be stored (to end the session).
    pub fn on_failure(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_failure.set(Box::new(f));
    }

    /// Ends the session (through what [`SessionLog::on_failure`] set) after recording why:
    /// for a part of the session that stopped, without which it must not go on.
    pub fn end_session(&self, event: &str, why: &str) {
        let mut r = Trail::record(self, Kind::Lifecycle, event);
        r.data.insert("error".into(), Value::String(why.to_owned()));
        let _ = self.store.commit(r);
        if let Some(f) = self.on_failure.get() {
            f();
        }
    }

    /// The first failure to store a record, if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    fn failed(&self, e: &AuditError) -> String {
        let text = e.to_string();
        if self.failure.set(text.clone()).is_ok()
            && let Some(f) = self.on_failure.get()
        {
            f();
        }
        text
    }

    /// Queues `record`: for records that describe what already happened.
    pub fn append(&self, record: Record) -> Result<(), String> {
        self.write(record, false)
    }
}

impl Trail for SessionLog {
    fn record(&self, kind: Kind, event: &str) -> Record {
        let mut r = Record::new(kind, event, &self.session);
        r.agent.clone_from(&self.agent);
        r.uid = Some(self.uid);
        r
    }

    fn commit(&self, record: Record) -> Result<(), String> {
        self.write(record, true)
    }
}

/// The egress' records: requests and tunnels are `connect`, lookups `dns`, the ceiling's
/// warning a `limit`. They describe what already happened, so they are queued, not waited on;
/// the first that cannot be stored makes the egress deny everything after it.
impl portcullis_egress::Recorder for SessionLog {
    fn accepting(&self) -> bool {
        self.failure.get().is_none() && self.volume.get().is_none()
    }

    fn record(&self, kind: &str, fields: Map<String, Value>) -> bool {
        // One pass, moving each field (key and value) where it belongs: the proxy records every
        // request, and this runs on its path.
        let (mut via, mut agent, mut tool, mut decision, mut rule, mut reason, mut duration_ms) =
            (None, None, None, None, None, None, None);
        let (mut outcome, mut input) = (Map::new(), Map::new());
        for (key, value) in fields {
            match key.as_str() {
                "via" => via = value.as_str().map(str::to_owned),
                "agent" => agent = value.as_str().map(str::to_owned),
                "tool" => tool = value.as_str().map(str::to_owned),
                "decision" => decision = serde_json::from_value::<Decision>(value).ok(),
                "rule" => rule = value.as_str().map(str::to_owned),
                "reason" => reason = value.as_str().map(str::to_owned),
                "duration_ms" => duration_ms = value.as_u64(),
                "status" | "error" | "bytes_up" | "bytes_down" | "address" | "outbound_bytes" | "ceiling"
                | "message" => {
                    outcome.insert(key, value);
                }
                _ => {
                    input.insert(key, value);
                }
            }
        }
        let (kind, event) = match kind {
            "connect" => (Kind::Connect, via.unwrap_or_else(|| "connect".into())),
            "dns" => (Kind::Dns, "query".to_owned()),
            "egress_warning" => (Kind::Limit, "outbound_bytes_80_percent".to_owned()),
            other => (Kind::Lifecycle, other.to_owned()),
        };
        let mut r = Trail::record(self, kind, &event);
        r.agent = agent.or(r.agent);
        r.tool = tool.or(r.tool);
        if let Some(decision) = decision {
            r.decision = Some(DecisionRecord {
                decision,
                rules: rule.into_iter().collect(),
                reason: reason.unwrap_or_default(),
            });
        }
        if let Some(ms) = duration_ms {
            r.latency_us = Some(ms * 1000);
        }
        if !outcome.is_empty() {
            r.outcome = Some(Value::Object(outcome));
        }
        if !input.is_empty() {
            r.input = Some(Value::Object(input));
        }
        self.append(r).is_ok()
    }
}

/// A trail that keeps records in memory: for re-deciding recorded calls (`audit replay`).
#[derive(Debug, Default)]
pub struct Collected {
    records: Mutex<Vec<Record>>,
}

impl Collected {
    /// The records kept so far, taken.
    pub fn take(&self) -> Vec<Record> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Trail for Collected {
    fn record(&self, kind: Kind, event: &str) -> Record {
        Record::new(kind, event, "replay")
    }

    fn commit(&self, record: Record) -> Result<(), String> {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).push(record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_egress::Recorder;

    fn log(name: &str) -> (SessionLog, PathBuf) {
        let dir = std::env::temp_dir().join(format!("portcullis-trail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = open_store(&dir.join("audit"), Options::default()).unwrap();
        (SessionLog::new(Arc::new(store), "s", None).with_budget(Budget::new(1, u64::MAX)), dir)
    }

    fn exec(log: &SessionLog, i: usize) -> Record {
        let mut r = Trail::record(log, Kind::Exec, "exec");
        r.input = Some(serde_json::json!({"argv": ["true", i]}));
        r.decision = Some(DecisionRecord { decision: Decision::Allow, rules: vec![], reason: String::new() });
        r
    }

    /// Past the budget an exec gated on its record is refused, but a record of what already
    /// happened is still written (its only trace), and the egress stops taking connections: a
    /// budget passed by execs once left the proxy allowing, unrecorded.
    #[test]
    fn past_the_budget_gated_calls_are_refused_what_happened_is_kept_and_the_egress_stops() {
        let (log, dir) = log("budget");
        assert!(log.accepting());
        // One a second, ten seconds' worth at once.
        for i in 0..10 {
            log.commit(exec(&log, i)).unwrap();
        }
        let refused = log.commit(exec(&log, 10)).unwrap_err();
        assert!(refused.contains("audit volume"), "{refused}");
        assert!(log.volume_hit().is_some());
        assert!(!log.accepting(), "the egress must refuse from now on");
        let mut fields = Map::new();
        fields.insert("host".into(), Value::String("example.com".into()));
        fields.insert("decision".into(), Value::String("allow".into()));
        assert!(!Recorder::record(&log, "connect", fields), "the record reports the budget passed");
        log.store().close().unwrap();
        let text: String = portcullis_audit::store::segments(&dir.join("audit"))
            .unwrap()
            .iter()
            .map(|(_, p)| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(text.contains("example.com"), "the finished request's record was dropped");
        assert!(text.contains("limit_reached"), "the budget passed is on the record");
        assert_eq!(text.matches("\"kind\":\"exec\"").count(), 10, "the refused exec's record went with it");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
