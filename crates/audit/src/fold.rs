//! Repeated identical refusals, folded: a flood of one refused call is a few records, not a
//! record per attempt, and a real retry says that it is one.
//!
//! Two refusals are identical when their kind, event, tool, decision (with its rules and
//! reason) and input are, leaving out what differs between attempts at the same call: an exec's
//! `pid`, and the `path` a shell tried while it searched `PATH` (the program that path resolves
//! to is kept). Each repeat carries `data.attempt` (2, 3, …: how many identical refusals this
//! session has seen so far). In each interval (`window`, from the first refusal of it) the
//! first `whole` are written as they come; later ones are held, and only the last of them is
//! written, when the interval is over (or at the session's end), with `data.folded`, the count
//! of identical refusals that it stands for and that were not written, and
//! `data.folded_since_ms`, when the first of them happened. So a sustained flood of one refusal
//! costs `whole + 1` records an interval, and no attempt goes uncounted.
//!
//! Only refusals (`deny` and `ask`) are folded: an allowed call must be on the record before it
//! happens. Floods of distinct calls cannot be folded; the session's record budget bounds them.

use std::collections::HashMap;

use portcullis_policy::Decision;
use serde_json::Value;

use crate::record::{Kind, Record};

/// The folding state of one session.
#[derive(Debug)]
pub struct Folder {
    window_ms: u64,
    whole: u32,
    max_keys: usize,
    runs: HashMap<Vec<u8>, Run>,
    /// Runs holding a record back, and the earliest time one of them is due.
    held: usize,
    due_ms: u64,
}

#[derive(Debug)]
struct Run {
    attempts: u64,
    window_start_ms: u64,
    in_window: u32,
    folded: u64,
    folded_since_ms: u64,
    pending: Option<Record>,
}

impl Default for Folder {
    fn default() -> Self {
        Folder::new(1000, 2)
    }
}

impl Folder {
    /// Intervals of `window_ms`, each writing its first `whole` refusals as they come.
    pub fn new(window_ms: u64, whole: u32) -> Self {
        Folder { window_ms, whole, max_keys: 4096, runs: HashMap::new(), held: 0, due_ms: u64::MAX }
    }

    /// Takes `record`; pushes onto `out` what is to be written now, in order: records held
    /// back whose interval is over, then `record` unless it is held. True when `record` was
    /// pushed (it is then the last of `out`).
    pub fn offer(&mut self, mut record: Record, out: &mut Vec<Record>) -> bool {
        let now = record.ts_ms;
        if self.held > 0 && now >= self.due_ms {
            self.release(out, Some(now));
        }
        let Some(key) = fold_key(&record) else {
            out.push(record);
            return true;
        };
        if self.runs.len() >= self.max_keys && !self.runs.contains_key(&key) {
            // Memory stays bounded under a flood of distinct refusals: what is held is written,
            // and counting starts over.
            self.release(out, None);
            self.runs.clear();
        }
        let run = self.runs.entry(key).or_insert(Run {
            attempts: 0,
            window_start_ms: now,
            in_window: 0,
            folded: 0,
            folded_since_ms: 0,
            pending: None,
        });
        if now.saturating_sub(run.window_start_ms) >= self.window_ms {
            if let Some(last) = Self::finish(run) {
                self.held -= 1;
                out.push(last);
            }
            run.window_start_ms = now;
            run.in_window = 0;
        }
        run.attempts += 1;
        run.in_window = run.in_window.saturating_add(1);
        if run.attempts > 1 {
            record.data.insert("attempt".into(), Value::from(run.attempts));
        }
        if run.in_window <= self.whole {
            out.push(record);
            return true;
        }
        match run.pending.replace(record) {
            Some(before) => {
                if run.folded == 0 {
                    run.folded_since_ms = before.ts_ms;
                }
                run.folded += 1;
            }
            None => {
                self.held += 1;
                self.due_ms = self.due_ms.min(run.window_start_ms + self.window_ms);
            }
        }
        false
    }

    /// Pushes onto `out` every record held back: for the session's end.
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        self.release(out, None);
    }

    /// Writes the held records whose interval is over at `now` (all, with `None`), oldest first.
    fn release(&mut self, out: &mut Vec<Record>, now: Option<u64>) {
        let window = self.window_ms;
        let start = out.len();
        let mut due = u64::MAX;
        for run in self.runs.values_mut().filter(|r| r.pending.is_some()) {
            let ends = run.window_start_ms + window;
            if now.is_none_or(|now| now >= ends) {
                out.extend(Self::finish(run));
            } else {
                due = due.min(ends);
            }
        }
        self.held -= out.len() - start;
        self.due_ms = due;
        out[start..].sort_by_key(|r| r.ts_ms);
    }

    /// The held record of `run`'s interval, with the count it stands for.
    fn finish(run: &mut Run) -> Option<Record> {
        let mut last = run.pending.take()?;
        if run.folded > 0 {
            last.data.insert("folded".into(), Value::from(run.folded));
            last.data.insert("folded_since_ms".into(), Value::from(run.folded_since_ms));
        }
        run.folded = 0;
        Some(last)
    }
}

/// The identity of a refusal, or `None` for a record that is never folded: the fields that
/// make it the same refusal, in canonical JSON, compared whole (a hash of them could be made to
/// collide by an agent choosing names, folding one refusal into another's count).
fn fold_key(record: &Record) -> Option<Vec<u8>> {
    let decision = record.decision.as_ref()?;
    if decision.decision == Decision::Allow
        || !matches!(record.kind, Kind::Exec | Kind::Connect | Kind::Dns | Kind::ToolCall | Kind::Hook)
    {
        return None;
    }
    // A refusal after traffic moved (a tunnel cut at the outbound ceiling) carries figures of
    // its own: never folded.
    if let Some(o) = &record.outcome
        && ["bytes_up", "bytes_down"].iter().any(|k| o.get(*k).and_then(Value::as_u64).unwrap_or(0) > 0)
    {
        return None;
    }
    let input = match &record.input {
        // What differs between attempts at one exec: the process, the name tried.
        Some(Value::Object(map)) if record.kind == Kind::Exec => Value::Object(
            map.iter().filter(|(k, _)| *k != "pid" && *k != "path").map(|(k, v)| (k.clone(), v.clone())).collect(),
        ),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    let key = serde_json::json!([
        record.kind.as_str(),
        record.event,
        record.tool,
        record.agent,
        decision.decision.as_str(),
        decision.rules,
        decision.reason,
        input,
    ]);
    serde_json::to_vec(&key).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::record::DecisionRecord;

    fn refused(name: &str, at: u64) -> Record {
        let mut r = Record::new(Kind::Dns, "query", "s");
        r.ts_ms = at;
        r.input = Some(json!({"name": name, "qtype": "A"}));
        r.decision = Some(DecisionRecord { decision: Decision::Deny, rules: vec!["r".into()], reason: "no".into() });
        r
    }

    fn run(folder: &mut Folder, records: Vec<Record>) -> Vec<Record> {
        let mut out = Vec::new();
        for r in records {
            folder.offer(r, &mut out);
        }
        out
    }

    #[test]
    fn a_retry_is_written_whole_and_says_it_is_the_second_attempt() {
        let mut f = Folder::default();
        let out = run(&mut f, vec![refused("a.example", 10), refused("a.example", 11)]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].data.get("attempt"), None);
        assert_eq!(out[1].data["attempt"], 2);
    }

    #[test]
    fn a_flood_of_one_refusal_is_the_first_the_last_and_a_count_per_interval() {
        let mut f = Folder::default();
        // 10,000 refusals over 5 seconds.
        let out = run(&mut f, (0..10_000u64).map(|i| refused("x.example", 1_000 + i / 2)).collect());
        let mut out = out;
        f.flush(&mut out);
        assert!(out.len() <= 3 * 6, "{} records", out.len());
        let counted: u64 = out.iter().map(|r| 1 + r.data.get("folded").and_then(Value::as_u64).unwrap_or(0)).sum();
        assert_eq!(counted, 10_000, "every attempt is counted");
        assert_eq!(out.last().unwrap().data["attempt"], 10_000);
        assert_eq!(out.last().unwrap().ts_ms, 1_000 + 9_999 / 2, "the last is kept whole");
    }

    #[test]
    fn distinct_refusals_and_allowed_calls_are_never_folded() {
        let mut f = Folder::default();
        let mut records: Vec<Record> = (0..100).map(|i| refused(&format!("n{i}.example"), 5)).collect();
        for _ in 0..5 {
            let mut allowed = refused("ok.example", 5);
            allowed.decision.as_mut().unwrap().decision = Decision::Allow;
            records.push(allowed);
        }
        let out = run(&mut f, records);
        assert_eq!(out.len(), 105);
        assert!(out.iter().all(|r| !r.data.contains_key("folded")));
    }

    #[test]
    fn a_refusal_after_traffic_moved_keeps_its_own_figures() {
        let cut = |up: u64| {
            let mut r = refused("cdn.example", 5);
            r.kind = Kind::Connect;
            r.outcome = Some(json!({"bytes_up": up, "bytes_down": 0}));
            r
        };
        let mut f = Folder::default();
        let out = run(&mut f, (1..=5).map(|i| cut(i << 20)).collect());
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|r| !r.data.contains_key("attempt")));
    }

    #[test]
    fn an_exec_retried_under_another_path_is_the_same_attempt() {
        let exec = |path: &str, pid: u32| {
            let mut r = Record::new(Kind::Exec, "exec", "s");
            r.input =
                Some(json!({"argv": ["head", "k"], "path": path, "pid": pid, "program": {"path": "/usr/bin/head"}}));
            r.decision = Some(DecisionRecord { decision: Decision::Deny, rules: vec![], reason: "no".into() });
            r
        };
        let mut f = Folder::default();
        let out = run(&mut f, vec![exec("/usr/bin/head", 7), exec("/bin/head", 7)]);
        assert_eq!(out[1].data["attempt"], 2);
    }

    #[test]
    fn a_held_record_is_written_once_its_interval_is_over() {
        let mut f = Folder::new(1000, 1);
        let mut out = run(&mut f, vec![refused("a", 0), refused("a", 10), refused("a", 20)]);
        assert_eq!(out.len(), 1);
        // Any later record past the interval lets the held one out, before it.
        f.offer(refused("other", 1500), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].ts_ms, 20);
        assert_eq!(out[1].data["folded"], 1);
        assert_eq!(out[1].data["folded_since_ms"], 10);
    }
}
