//! Reading the store back: every record in order, filtered, or followed as it grows.

use std::io::{Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use portcullis_policy::Decision;

use crate::record::{Kind, Stored};
use crate::store::{segment_name, segments};

/// Calls `f` with each whole line of every segment, oldest first, until it breaks.
pub fn each_line(dir: &Path, mut f: impl FnMut(&[u8]) -> ControlFlow<()>) -> std::io::Result<()> {
    for (_, path) in segments(dir)? {
        let bytes = std::fs::read(&path)?;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            // A torn last line is not a record yet.
            let Some(line) = line.strip_suffix(b"\n") else { break };
            if f(line).is_break() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A line as a record; `None` for a line that is not one.
pub fn parse(line: &[u8]) -> Option<Stored> {
    serde_json::from_slice(line).ok()
}

/// Which records a query keeps. Empty fields keep everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// This session's records only.
    pub session: Option<String>,
    /// This agent's.
    pub agent: Option<String>,
    /// This tool's (for execs: the program's file name).
    pub tool: Option<String>,
    /// These kinds.
    pub kinds: Vec<Kind>,
    /// Records with this decision.
    pub decision: Option<Decision>,
    /// From this time (ms since the epoch) …
    pub since_ms: Option<u64>,
    /// … to this one.
    pub until_ms: Option<u64>,
    /// Records whose stored line contains this text.
    pub grep: Option<String>,
    /// Leave the store's own checkpoints out.
    pub hide_checkpoints: bool,
}

impl Filter {
    /// True when the raw line may match: a cheap test before parsing.
    pub fn may_match(&self, line: &[u8]) -> bool {
        let has = |needle: &[u8]| memchr::memmem::find(line, needle).is_some();
        if let Some(s) = &self.session
            && !has(format!("\"session\":{}", serde_json::Value::from(s.as_str())).as_bytes())
        {
            return false;
        }
        if let Some(g) = &self.grep
            && !has(g.as_bytes())
        {
            return false;
        }
        true
    }

    /// The record on `line` when it is kept: the cheap test on the raw line first, so that most
    /// lines a narrow filter leaves out are never parsed.
    pub fn select(&self, line: &[u8]) -> Option<Stored> {
        if !self.may_match(line) {
            return None;
        }
        parse(line).filter(|s| self.matches(s))
    }

    /// True when `record` is kept.
    pub fn matches(&self, stored: &Stored) -> bool {
        let r = &stored.record;
        if self.hide_checkpoints && r.kind == Kind::Checkpoint {
            return false;
        }
        if self.session.as_ref().is_some_and(|s| *s != r.session)
            || self.agent.as_ref().is_some_and(|a| r.agent.as_ref() != Some(a))
            || !self.kinds.is_empty() && !self.kinds.contains(&r.kind)
            || self.decision.is_some_and(|d| r.decision.as_ref().map(|x| x.decision) != Some(d))
            || self.since_ms.is_some_and(|t| r.ts_ms < t)
            || self.until_ms.is_some_and(|t| r.ts_ms > t)
        {
            return false;
        }
        if let Some(tool) = &self.tool {
            return r.tool.as_ref() == Some(tool) || exec_program(stored).is_some_and(|p| p == *tool);
        }
        true
    }
}

/// An exec record's program name (its `argv[0]`'s file name).
pub fn exec_program(stored: &Stored) -> Option<String> {
    if stored.record.kind != Kind::Exec {
        return None;
    }
    let argv0 = stored.record.input.as_ref()?.get("argv")?.get(0)?.as_str()?;
    Some(argv0.rsplit('/').next().unwrap_or(argv0).to_owned())
}

/// The records `filter` keeps, oldest first.
pub fn query(dir: &Path, filter: &Filter) -> std::io::Result<Vec<Stored>> {
    let mut out = Vec::new();
    each_line(dir, |line| {
        out.extend(filter.select(line));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Follows the store as it grows, from its end (or from its start with `from_start`), calling
/// `f` with each new whole line, polling every `every`, across segments, until `f` breaks.
pub fn follow(
    dir: &Path,
    from_start: bool,
    every: Duration,
    mut f: impl FnMut(&[u8]) -> ControlFlow<()>,
) -> std::io::Result<()> {
    let found = segments(dir)?;
    let (mut number, mut offset) = match (found.first(), found.last()) {
        (Some((first, _)), _) if from_start => (*first, 0),
        (_, Some((last, path))) => (*last, std::fs::metadata(path)?.len()),
        _ => (1, 0),
    };
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let path = dir.join(segment_name(number));
        let mut grew = false;
        if let Ok(mut file) = std::fs::File::open(&path) {
            file.seek(SeekFrom::Start(offset))?;
            let mut chunk = Vec::new();
            file.read_to_end(&mut chunk)?;
            offset += chunk.len() as u64;
            grew = !chunk.is_empty();
            partial.extend_from_slice(&chunk);
            let mut used = 0;
            while let Some(nl) = memchr::memchr(b'\n', &partial[used..]) {
                if f(&partial[used..used + nl]).is_break() {
                    return Ok(());
                }
                used += nl + 1;
            }
            partial.drain(..used);
        }
        if !grew {
            // A sealed segment is followed by the next one.
            if partial.is_empty() && dir.join(segment_name(number + 1)).exists() {
                number += 1;
                offset = 0;
                continue;
            }
            std::thread::sleep(every);
        }
    }
}
