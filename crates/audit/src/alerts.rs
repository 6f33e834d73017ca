//! Alerts on the live stream. Each record a session stores passes through an [`Alerter`], which
//! raises an alert for:
//!
//! - `first_tool_use`: an agent uses a tool (for execs, a program) it never used before;
//! - `new_destination`: an agent reaches a host and port it never reached before;
//! - `call_volume`: an agent's calls in one minute pass its historical p99 per minute;
//! - `off_hours`: a call outside `[alerts] working_hours` (local time);
//! - `outbound_ceiling`: the session sent 80% of its outbound byte ceiling;
//! - `repeated_denials`: `[alerts] repeated_denials` denials in one minute (an agent probing
//!   its walls).
//!
//! "Never before" is the [`Baseline`]: what each agent did in earlier sessions, kept beside the
//! store and updated at each session's end. The clock is a parameter, so tests set the hour.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use portcullis_policy::{AlertSettings, Decision};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::record::{Kind, Record};

/// One alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    /// The trigger's name (`first_tool_use`, …).
    pub trigger: &'static str,
    /// The agent (`default` when the session names none).
    pub agent: String,
    /// The session.
    pub session: String,
    /// What happened, for people.
    pub message: String,
    /// The trigger's figures.
    pub details: Value,
    /// When (ms since the epoch).
    pub ts_ms: u64,
}

/// Time, for the alerter: now, and the local time of day.
pub trait Clock: Send + Sync {
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> u64;
    /// Minutes after local midnight at `ms`.
    fn local_minutes(&self, ms: u64) -> u16;
}

/// The system clock, with the local zone from `TZ` or `/etc/localtime` (TZif files; UTC when
/// neither can be read). The zone is read the first time local time is asked for: only the
/// off-hours alert needs it, and a session's start should not pay for a file it may never use.
#[derive(Debug)]
pub struct SystemClock {
    zone: Option<std::path::PathBuf>,
    transitions: std::sync::OnceLock<Vec<(i64, i32)>>,
}

impl SystemClock {
    /// The clock, with the local zone's file found (not yet read).
    pub fn new() -> Self {
        let tz = std::env::var("TZ").ok().map(|t| t.trim_start_matches(':').to_owned());
        let zone = match tz.as_deref() {
            Some("" | "UTC" | "UTC0" | "GMT" | "GMT0") => None,
            Some(name) if name.starts_with('/') => Some(std::path::PathBuf::from(name)),
            Some(name) => Some(Path::new("/usr/share/zoneinfo").join(name)),
            None => Some(std::path::PathBuf::from("/etc/localtime")),
        };
        SystemClock { zone, transitions: std::sync::OnceLock::new() }
    }

    /// The zone's UTC offset, in seconds, at `secs` since the epoch.
    fn offset(&self, secs: i64) -> i32 {
        let transitions = self.transitions.get_or_init(|| {
            self.zone.as_ref().and_then(|p| std::fs::read(p).ok()).and_then(|b| tzif_offsets(&b)).unwrap_or_default()
        });
        let i = transitions.partition_point(|(t, _)| *t <= secs);
        match i {
            0 => transitions.first().map_or(0, |(_, o)| *o),
            i => transitions[i - 1].1,
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::record::now_ms()
    }

    fn local_minutes(&self, ms: u64) -> u16 {
        let secs = (ms / 1000) as i64 + i64::from(self.offset((ms / 1000) as i64));
        (secs.rem_euclid(86_400) / 60) as u16
    }
}

/// A TZif file's transitions as (time, UTC offset) pairs, oldest first; the first type's offset
/// at time `i64::MIN` stands for "before every transition". Reads the 64-bit block of version 2+
/// files. Past the last transition, its offset stays (the POSIX footer rule is not read).
fn tzif_offsets(bytes: &[u8]) -> Option<Vec<(i64, i32)>> {
    fn counts(b: &[u8]) -> Option<[usize; 6]> {
        if b.get(..4)? != b"TZif" {
            return None;
        }
        let mut c = [0usize; 6];
        for (i, v) in c.iter_mut().enumerate() {
            *v = u32::from_be_bytes(b.get(20 + 4 * i..24 + 4 * i)?.try_into().ok()?) as usize;
        }
        Some(c)
    }
    let [isut, isstd, leap, time, typ, chars] = counts(bytes)?;
    let v1_len = 44 + time * 5 + typ * 6 + chars + leap * 8 + isstd + isut;
    let (b, width) = if bytes.get(4).is_some_and(|v| *v >= b'2') { (bytes.get(v1_len..)?, 8) } else { (bytes, 4) };
    let [_, _, _, time, typ, _] = counts(b)?;
    let times = b.get(44..44 + time * width)?;
    let idx = b.get(44 + time * width..44 + time * (width + 1))?;
    let types = b.get(44 + time * (width + 1)..44 + time * (width + 1) + typ * 6)?;
    let offset = |t: usize| -> Option<i32> { Some(i32::from_be_bytes(types.get(t * 6..t * 6 + 4)?.try_into().ok()?)) };
    let mut out = vec![(i64::MIN, offset(0)?)];
    for i in 0..time {
        let t = if width == 8 {
            i64::from_be_bytes(times[i * 8..i * 8 + 8].try_into().ok()?)
        } else {
            i64::from(i32::from_be_bytes(times[i * 4..i * 4 + 4].try_into().ok()?))
        };
        out.push((t, offset(usize::from(idx[i]))?));
    }
    Some(out)
}

/// What each agent did in earlier sessions.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Baseline {
    /// Per agent.
    pub agents: BTreeMap<String, AgentHistory>,
}

/// One agent's history.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AgentHistory {
    /// Tools (and programs) used.
    pub tools: BTreeSet<String>,
    /// Destinations reached (`host:port`).
    pub destinations: BTreeSet<String>,
    /// How many active minutes had each number of calls (calls → minutes): every minute ever
    /// seen, in a size bounded by the distinct counts.
    pub minutes: BTreeMap<u32, u64>,
}

/// The volume alert needs this many minutes of history.
pub const MINUTES_NEEDED: u64 = 30;
/// Fewer calls than this in a minute never raise the volume alert: at low rates a p99 is noise.
pub const VOLUME_FLOOR: u32 = 20;

impl Baseline {
    /// The baseline in `path`; empty when there is none yet.
    pub fn load(path: &Path) -> std::io::Result<Baseline> {
        use std::io::Read;
        let mut f = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Baseline::default()),
            Err(e) => return Err(e),
        };
        // Never read while another session writes it (see `save`).
        f.lock_shared()?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// Writes the baseline to `path` (mode 0600), in place.
    ///
    /// Not through a new file renamed over the old one, nor by truncating to nothing first:
    /// ext4 starts writing the data out at once for either (its `auto_da_alloc` heuristic),
    /// which made this the slowest step of a session's end. A crash mid-write can leave a file
    /// that does not parse; [`Baseline::load`] then fails and the caller starts afresh, which
    /// costs only the unusual-volume and first-seen alerts their history.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let f = std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path)?;
        // Concurrent sessions take turns: each write is whole, and the last one stands.
        f.lock()?;
        f.write_all_at(&bytes, 0)?;
        f.set_len(bytes.len() as u64)
    }

    fn p99(&self, agent: &str) -> Option<u32> {
        let minutes = &self.agents.get(agent)?.minutes;
        let total: u64 = minutes.values().sum();
        if total < MINUTES_NEEDED {
            return None;
        }
        // The smallest count at or below which 99% of the minutes fall.
        let rank = (total * 99).div_ceil(100);
        let mut seen = 0;
        minutes.iter().find_map(|(calls, n)| {
            seen += n;
            (seen >= rank).then_some(*calls)
        })
    }
}

/// Where the baseline for the store at `store` lives: beside it.
pub fn baseline_path(store: &Path) -> std::path::PathBuf {
    store.parent().unwrap_or(store).join("alert-baseline.json")
}

/// The alerter's state while a session runs.
#[derive(Debug, Default)]
struct Live {
    seen_tools: HashMap<String, BTreeSet<String>>,
    seen_destinations: HashMap<String, BTreeSet<String>>,
    /// Per agent: the current minute, calls and denials in it, and whether it alerted.
    minute: HashMap<String, Minute>,
    /// Per agent: the session's per-minute call counts, closed minutes only.
    minutes: HashMap<String, Vec<u32>>,
    /// When the last off-hours alert was raised, per agent.
    off_hours_at: HashMap<String, u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Minute {
    index: u64,
    calls: u32,
    denials: u32,
    volume_alerted: bool,
    denials_alerted: bool,
}

/// Raises alerts from records.
pub struct Alerter {
    settings: AlertSettings,
    baseline: Baseline,
    clock: Box<dyn Clock>,
    live: Mutex<Live>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// Off-hours alerts for one agent are at least this far apart.
const OFF_HOURS_EVERY_MS: u64 = 3_600_000;

impl Alerter {
    /// An alerter with `settings`, judging "new" against `baseline`, on `clock`.
    pub fn new(settings: AlertSettings, baseline: Baseline, clock: Box<dyn Clock>) -> Self {
        Alerter { settings, baseline, clock, live: Mutex::new(Live::default()) }
    }

    /// The settings.
    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    /// The alerts `record` raises.
    pub fn observe(&self, record: &Record) -> Vec<Alert> {
        let agent = record.agent.clone().unwrap_or_else(|| "default".into());
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        let alert = |trigger: &'static str, message: String, details: Value| Alert {
            trigger,
            agent: agent.clone(),
            session: record.session.clone(),
            message,
            details,
            ts_ms: now,
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let history = self.baseline.agents.get(&agent);
        let denied = record.decision.as_ref().is_some_and(|d| d.decision == Decision::Deny);
        let call = matches!(record.kind, Kind::ToolCall | Kind::Exec);
        // The minute's counters.
        let index = now / 60_000;
        let minute = live.minute.entry(agent.clone()).or_default();
        if minute.index != index {
            let closed = *minute;
            *minute = Minute { index, ..Minute::default() };
            if closed.calls > 0 {
                live.minutes.entry(agent.clone()).or_default().push(closed.calls);
            }
        }
        let minute = live.minute.entry(agent.clone()).or_default();
        if call {
            minute.calls += 1;
        }
        if denied {
            minute.denials += 1;
        }
        let (calls, denials) = (minute.calls, minute.denials);
        if call
            && !minute.volume_alerted
            && let Some(p99) = self.baseline.p99(&agent)
            && calls > p99.max(VOLUME_FLOOR)
        {
            minute.volume_alerted = true;
            out.push(alert(
                "call_volume",
                format!("agent {agent} made {calls} calls this minute, past its p99 of {p99} per minute"),
                json!({"calls": calls, "p99": p99}),
            ));
        }
        let threshold = self.settings.repeated_denials;
        if denied && threshold > 0 && denials >= threshold && !minute.denials_alerted {
            minute.denials_alerted = true;
            out.push(alert(
                "repeated_denials",
                format!("agent {agent} was denied {denials} times this minute: it may be probing its walls"),
                json!({"denials": denials, "threshold": threshold}),
            ));
        }
        // The command `run` was given is the user's, not a tool the agent chose.
        let users_own = record.decision.as_ref().is_some_and(|d| d.rules.iter().any(|r| r == "builtin.run_command"));
        if call
            && !users_own
            && let Some(tool) = tool_name(record)
        {
            let known = history.is_some_and(|h| h.tools.contains(&tool));
            if !known && live.seen_tools.entry(agent.clone()).or_default().insert(tool.clone()) {
                out.push(alert(
                    "first_tool_use",
                    format!("agent {agent} used `{tool}` for the first time"),
                    json!({"tool": tool}),
                ));
            }
        }
        if record.kind == Kind::Connect
            && !denied
            && let Some(dest) = destination(record)
        {
            let known = history.is_some_and(|h| h.destinations.contains(&dest));
            if !known && live.seen_destinations.entry(agent.clone()).or_default().insert(dest.clone()) {
                out.push(alert(
                    "new_destination",
                    format!("agent {agent} reached {dest} for the first time"),
                    json!({"destination": dest}),
                ));
            }
        }
        if call && let Some((start, end)) = self.settings.working_hours {
            let at = self.clock.local_minutes(record.ts_ms.max(1));
            let inside = if start <= end { (start..end).contains(&at) } else { at >= start || at < end };
            let last = live.off_hours_at.get(&agent).copied();
            if !inside && last.is_none_or(|l| now.saturating_sub(l) >= OFF_HOURS_EVERY_MS) {
                live.off_hours_at.insert(agent.clone(), now);
                out.push(alert(
                    "off_hours",
                    format!(
                        "agent {agent} made a call at {:02}:{:02}, outside working hours {:02}:{:02}-{:02}:{:02}",
                        at / 60,
                        at % 60,
                        start / 60,
                        start % 60,
                        end / 60,
                        end % 60
                    ),
                    json!({"local_minutes": at}),
                ));
            }
        }
        if record.kind == Kind::Limit && record.event == "outbound_bytes_80_percent" {
            out.push(alert(
                "outbound_ceiling",
                format!("agent {agent}'s session has sent 80% of its outbound byte ceiling"),
                record.outcome.clone().unwrap_or(Value::Null),
            ));
        }
        out
    }

    /// The baseline with this session's activity added: for the next session.
    pub fn updated_baseline(&self) -> Baseline {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut baseline = self.baseline.clone();
        for (agent, tools) in &live.seen_tools {
            baseline.agents.entry(agent.clone()).or_default().tools.extend(tools.iter().cloned());
        }
        for (agent, dests) in &live.seen_destinations {
            baseline.agents.entry(agent.clone()).or_default().destinations.extend(dests.iter().cloned());
        }
        let mut minutes = live.minutes.clone();
        for (agent, m) in &live.minute {
            if m.calls > 0 {
                minutes.entry(agent.clone()).or_default().push(m.calls);
            }
        }
        for (agent, counts) in minutes {
            let kept = &mut baseline.agents.entry(agent).or_default().minutes;
            for c in counts {
                *kept.entry(c).or_default() += 1;
            }
        }
        baseline
    }
}

/// A call's tool: the tool's name, or for an exec its program's file name.
fn tool_name(record: &Record) -> Option<String> {
    if let Some(t) = &record.tool {
        return Some(t.clone());
    }
    let argv0 = record.input.as_ref()?.get("argv")?.get(0)?.as_str()?;
    Some(argv0.rsplit('/').next().unwrap_or(argv0).to_owned())
}

/// A connection's `host:port`.
fn destination(record: &Record) -> Option<String> {
    let input = record.input.as_ref()?;
    let host = input.get("host")?.as_str()?;
    let port = input.get("port")?.as_u64()?;
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::DecisionRecord;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A clock the test moves; local time is UTC.
    #[derive(Clone)]
    struct TestClock(Arc<AtomicU64>);

    impl Clock for TestClock {
        fn now_ms(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }
        fn local_minutes(&self, ms: u64) -> u16 {
            ((ms / 60_000) % 1440) as u16
        }
    }

    /// 2026-11-24 at `hh:mm` UTC.
    fn at(hh: u64, mm: u64) -> u64 {
        1_795_478_400_000 + (hh * 60 + mm) * 60_000
    }

    fn alerter(settings: AlertSettings, baseline: Baseline, hh: u64) -> (Alerter, TestClock) {
        let clock = TestClock(Arc::new(AtomicU64::new(at(hh, 0))));
        (Alerter::new(settings, baseline, Box::new(clock.clone())), clock)
    }

    fn exec(agent: &str, program: &str, clock: &TestClock, decision: Decision) -> Record {
        let mut r = Record::new(Kind::Exec, "exec", "s");
        r.ts_ms = clock.now_ms();
        r.agent = Some(agent.into());
        r.input = Some(json!({"argv": [format!("/usr/bin/{program}")]}));
        r.decision = Some(DecisionRecord { decision, rules: vec![], reason: String::new() });
        r
    }

    fn triggers(alerts: &[Alert]) -> Vec<&'static str> {
        alerts.iter().map(|a| a.trigger).collect()
    }

    #[test]
    fn a_tool_is_new_once_per_agent_and_not_when_the_baseline_knows_it() {
        let mut baseline = Baseline::default();
        baseline.agents.entry("claude".into()).or_default().tools.insert("git".into());
        let (a, clock) = alerter(AlertSettings::default(), baseline, 10);
        assert!(a.observe(&exec("claude", "git", &clock, Decision::Allow)).is_empty());
        let first = a.observe(&exec("claude", "curl", &clock, Decision::Allow));
        assert_eq!(triggers(&first), ["first_tool_use"]);
        assert!(first[0].message.contains("`curl`"));
        assert!(a.observe(&exec("claude", "curl", &clock, Decision::Allow)).is_empty());
        assert_eq!(triggers(&a.observe(&exec("codex", "curl", &clock, Decision::Allow))), ["first_tool_use"]);
        // The next session knows it.
        let (b, clock) = alerter(AlertSettings::default(), a.updated_baseline(), 10);
        assert!(b.observe(&exec("claude", "curl", &clock, Decision::Allow)).is_empty());
    }

    #[test]
    fn a_new_destination_alerts_once_and_a_denied_one_never() {
        let (a, _) = alerter(AlertSettings::default(), Baseline::default(), 10);
        let connect = |host: &str, decision| {
            let mut r = Record::new(Kind::Connect, "connect", "s");
            r.input = Some(json!({"host": host, "port": 443}));
            r.decision = Some(DecisionRecord { decision, rules: vec![], reason: String::new() });
            r
        };
        assert_eq!(triggers(&a.observe(&connect("api.github.com", Decision::Allow))), ["new_destination"]);
        assert!(a.observe(&connect("api.github.com", Decision::Allow)).is_empty());
        assert!(a.observe(&connect("evil.example", Decision::Deny)).is_empty());
    }

    #[test]
    fn call_volume_past_the_agents_p99_alerts_once_a_minute() {
        let mut baseline = Baseline::default();
        baseline.agents.entry("claude".into()).or_default().minutes = (25..30).map(|c| (c, 20)).collect();
        baseline.agents.entry("claude".into()).or_default().tools.insert("ls".into());
        let (a, clock) = alerter(AlertSettings::default(), baseline, 10);
        let mut raised = Vec::new();
        for _ in 0..60 {
            raised.extend(a.observe(&exec("claude", "ls", &clock, Decision::Allow)));
        }
        assert_eq!(triggers(&raised), ["call_volume"]);
        assert_eq!(raised[0].details["p99"], 29);
        assert_eq!(raised[0].details["calls"], 30);
        // A new minute starts counting again.
        clock.0.fetch_add(60_000, Ordering::SeqCst);
        for _ in 0..29 {
            assert!(a.observe(&exec("claude", "ls", &clock, Decision::Allow)).is_empty());
        }
        // Low rates never alert, whatever the history.
        let mut quiet = Baseline::default();
        quiet.agents.entry("q".into()).or_default().minutes = [(1, 100)].into_iter().collect();
        quiet.agents.entry("q".into()).or_default().tools.insert("ls".into());
        let (q, clock) = alerter(AlertSettings::default(), quiet, 10);
        let all: Vec<Alert> = (0..20).flat_map(|_| q.observe(&exec("q", "ls", &clock, Decision::Allow))).collect();
        assert!(all.is_empty(), "{all:?}");
        // Without enough history there is no volume alert.
        let (b, clock) = alerter(AlertSettings::default(), Baseline::default(), 10);
        let all: Vec<Alert> = (0..500).flat_map(|_| b.observe(&exec("x", "ls", &clock, Decision::Allow))).collect();
        assert_eq!(triggers(&all), ["first_tool_use"]);
    }

    #[test]
    fn calls_outside_working_hours_alert_with_the_clock_injected() {
        let settings = AlertSettings { working_hours: Some((8 * 60, 19 * 60)), ..AlertSettings::default() };
        let mut baseline = Baseline::default();
        baseline.agents.entry("claude".into()).or_default().tools.insert("ls".into());
        let (a, clock) = alerter(settings.clone(), baseline.clone(), 10);
        assert!(a.observe(&exec("claude", "ls", &clock, Decision::Allow)).is_empty(), "10:00 is inside");
        let (a, clock) = alerter(settings.clone(), baseline.clone(), 23);
        let off = a.observe(&exec("claude", "ls", &clock, Decision::Allow));
        assert_eq!(triggers(&off), ["off_hours"]);
        assert!(off[0].message.contains("23:00"), "{}", off[0].message);
        assert!(a.observe(&exec("claude", "ls", &clock, Decision::Allow)).is_empty(), "once an hour");
        clock.0.fetch_add(3_600_000, Ordering::SeqCst);
        assert_eq!(triggers(&a.observe(&exec("claude", "ls", &clock, Decision::Allow))), ["off_hours"]);
        // Hours that wrap midnight.
        let night = AlertSettings { working_hours: Some((22 * 60, 6 * 60)), ..AlertSettings::default() };
        let (a, clock) = alerter(night, baseline, 23);
        assert!(a.observe(&exec("claude", "ls", &clock, Decision::Allow)).is_empty());
    }

    #[test]
    fn repeated_denials_and_the_ceiling_warning_alert() {
        let settings = AlertSettings { repeated_denials: 5, ..AlertSettings::default() };
        let (a, clock) = alerter(settings, Baseline::default(), 10);
        let mut raised = Vec::new();
        for _ in 0..12 {
            raised.extend(a.observe(&exec("claude", "id", &clock, Decision::Deny)));
        }
        assert_eq!(triggers(&raised), ["first_tool_use", "repeated_denials"]);
        assert_eq!(raised[1].details["denials"], 5);
        let mut warning = Record::new(Kind::Limit, "outbound_bytes_80_percent", "s");
        warning.outcome = Some(json!({"outbound_bytes": 800, "ceiling": 1000}));
        let raised = a.observe(&warning);
        assert_eq!(triggers(&raised), ["outbound_ceiling"]);
        assert_eq!(raised[0].details["ceiling"], 1000);
    }

    #[test]
    fn tzif_offsets_are_read() {
        // UTC from the system's zone files when present; a hand-made v1 file otherwise.
        let mut file = b"TZif\0".to_vec();
        file.extend([0u8; 15]);
        for c in [0u32, 0, 0, 1, 2, 4] {
            file.extend(c.to_be_bytes());
        }
        file.extend(1_000_000i32.to_be_bytes());
        file.push(1);
        file.extend(3600i32.to_be_bytes());
        file.extend([0, 0]);
        file.extend(7200i32.to_be_bytes());
        file.extend([1, 0]);
        file.extend(b"X\0Y\0");
        let clock = SystemClock { zone: None, transitions: tzif_offsets(&file).unwrap().into() };
        assert_eq!(clock.offset(0), 3600);
        assert_eq!(clock.offset(2_000_000), 7200);
        assert_eq!(clock.local_minutes(2_000_000_000), ((2_000_000 + 7200) % 86_400 / 60) as u16);
        // The zone's file is read when local time is first asked for.
        let path = std::env::temp_dir().join(format!("portcullis-tzif-{}", std::process::id()));
        let lazy = SystemClock { zone: Some(path.clone()), transitions: std::sync::OnceLock::new() };
        std::fs::write(&path, &file).unwrap();
        assert_eq!(lazy.offset(2_000_000), 7200);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(lazy.offset(0), 3600, "read once, kept");
        let missing = SystemClock { zone: Some(path), transitions: std::sync::OnceLock::new() };
        assert_eq!(missing.offset(2_000_000), 0, "UTC when the zone cannot be read");
    }
}
