//! Session events: what happened in a session, one record per event, written by the supervisor
//! outside the sandbox. [`EventSink`] is the one interface every writer goes through, so the
//! audit store (hash chain, signed checkpoints) replaces [`JsonlFile`] without touching callers.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

/// One event: when, which session, what.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The session's id.
    pub session: String,
    /// The event's kind (`session_start`, `exec`, `limit`, `session_end`, …).
    pub event: String,
    /// The kind's fields.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

impl Event {
    /// An event of `kind` now, with `fields` (a JSON object; anything else is stored under `data`).
    pub fn now(session: &str, kind: &str, fields: Value) -> Self {
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let fields = match fields {
            Value::Object(map) => map,
            other => [("data".to_owned(), other)].into_iter().collect(),
        };
        Event { ts_ms, session: session.to_owned(), event: kind.to_owned(), fields }
    }
}

/// Where events go. A failed write is reported to the caller, which must treat the action the
/// event describes as not allowed.
pub trait EventSink: Send {
    /// Records one event.
    fn record(&mut self, event: &Event) -> io::Result<()>;
    /// Makes everything recorded so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Where the events can be read, for people.
    fn location(&self) -> String;
}

/// Events as JSON Lines in one append-only file.
#[derive(Debug)]
pub struct JsonlFile {
    path: PathBuf,
    file: File,
}

impl JsonlFile {
    /// Creates `path` (which must not exist) with mode 0600.
    pub fn create(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = OpenOptions::new().append(true).create_new(true).mode(0o600).open(path)?;
        Ok(JsonlFile { path: path.to_path_buf(), file })
    }
}

impl EventSink for JsonlFile {
    fn record(&mut self, event: &Event) -> io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
        line.push(b'\n');
        // One write per record: O_APPEND keeps records whole even with several writers.
        self.file.write_all(&line)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_one_json_object_a_line_with_flattened_fields() {
        let dir = std::env::temp_dir().join(format!("portcullis-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut sink = JsonlFile::create(&path).unwrap();
        sink.record(&Event::now("s1", "exec", serde_json::json!({"argv": ["ls", "-l"]}))).unwrap();
        sink.record(&Event::now("s1", "session_end", serde_json::json!(3))).unwrap();
        sink.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "exec");
        assert_eq!(lines[0]["argv"][1], "-l");
        assert_eq!(lines[1]["data"], 3);
        // The file is never replaced: a second create fails.
        assert!(JsonlFile::create(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
