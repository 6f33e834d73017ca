//! The record schema and its canonical encoding.
//!
//! A stored record is one line of JSON whose fields come in a fixed order, with object keys
//! sorted and no whitespace, so the same record always has the same bytes and the same hash:
//!
//! ```text
//! {"seq":7,"prev":"<64 hex>","kind":"exec","event":"exec","ts_ms":…,"session":"…",
//!  "agent":…,"uid":…,"tool":…,"input":…,"decision":…,"outcome":…,"latency_us":…,
//!  "cost":…,"provenance":…,"data":{…}}
//! ```
//! Absent fields are left out. `seq` and `prev` lead so that verification reads them without
//! parsing the rest; `kind` follows them so that checkpoints are found the same way.

use std::io::Write;

use portcullis_policy::Decision;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A harness tool call (Bash, Read, an MCP tool, …).
    ToolCall,
    /// A program started in a sandbox.
    Exec,
    /// A connection or request through the egress proxy.
    Connect,
    /// A name looked up through the sandbox's resolver.
    Dns,
    /// A hook run for a tool call.
    Hook,
    /// A limit reached or approached.
    Limit,
    /// An alert raised on the live stream.
    Alert,
    /// A session's start or end, and the store's own events (a repaired tail, a prune).
    Lifecycle,
    /// A signed checkpoint, written by the store.
    Checkpoint,
}

impl Kind {
    /// Every kind, in the order above.
    pub const ALL: [Kind; 9] = [
        Kind::ToolCall,
        Kind::Exec,
        Kind::Connect,
        Kind::Dns,
        Kind::Hook,
        Kind::Limit,
        Kind::Alert,
        Kind::Lifecycle,
        Kind::Checkpoint,
    ];

    /// The kind's name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ToolCall => "tool_call",
            Kind::Exec => "exec",
            Kind::Connect => "connect",
            Kind::Dns => "dns",
            Kind::Hook => "hook",
            Kind::Limit => "limit",
            Kind::Alert => "alert",
            Kind::Lifecycle => "lifecycle",
            Kind::Checkpoint => "checkpoint",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            format!("`{s}` is not a record kind (one of {})", names.join(", "))
        })
    }
}

/// Where a record's content came from, for readers weighing how far to trust it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Typed by the user.
    User,
    /// Written by the model.
    Model,
    /// Returned by a tool.
    ToolOutput,
    /// Fetched from the web: untrusted.
    Web,
}

/// A decision with what decided it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The decision.
    pub decision: Decision,
    /// The ids of the deciding rules (`tools.deny[0]`, `guard.path`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// The explanation shown to people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What a call cost, where known.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Tokens in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    /// Tokens out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    /// Money, in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
}

/// One audit record, as the writer gives it (the store adds `seq` and `prev`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// What the record is about.
    pub kind: Kind,
    /// The kind's own name for the event (`session_start`, `request`, `tunnel`, …).
    pub event: String,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The session's id.
    pub session: String,
    /// The agent the session acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The host uid the session's supervisor runs as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The tool, for tool calls and hooks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// What was asked (argv, a tool's input, a host and port), redacted before it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// The decision, when one was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionRecord>,
    /// What happened (exit status, bytes, error, an output hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Value>,
    /// How long the call took, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// What it cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
    /// Where the content came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Anything else the event carries.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
}

impl Record {
    /// A record of `kind`/`event` for `session`, now, with nothing else set.
    pub fn new(kind: Kind, event: &str, session: &str) -> Self {
        Record {
            kind,
            event: event.to_owned(),
            ts_ms: now_ms(),
            session: session.to_owned(),
            agent: None,
            uid: None,
            tool: None,
            input: None,
            decision: None,
            outcome: None,
            latency_us: None,
            cost: None,
            provenance: None,
            data: Map::new(),
        }
    }

    /// The record's canonical body: every field after `prev`, closing brace included.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        field(out, "kind", false);
        string(out, self.kind.as_str());
        field(out, "event", true);
        string(out, &self.event);
        field(out, "ts_ms", true);
        let _ = write!(out, "{}", self.ts_ms);
        field(out, "session", true);
        string(out, &self.session);
        if let Some(a) = &self.agent {
            field(out, "agent", true);
            string(out, a);
        }
        if let Some(u) = self.uid {
            field(out, "uid", true);
            let _ = write!(out, "{u}");
        }
        if let Some(t) = &self.tool {
            field(out, "tool", true);
            string(out, t);
        }
        if let Some(v) = &self.input {
            field(out, "input", true);
            canonical(out, v);
        }
        if let Some(d) = &self.decision {
            field(out, "decision", true);
            canonical(out, &serde_json::to_value(d).unwrap_or(Value::Null));
        }
        if let Some(v) = &self.outcome {
            field(out, "outcome", true);
            canonical(out, v);
        }
        if let Some(l) = self.latency_us {
            field(out, "latency_us", true);
            let _ = write!(out, "{l}");
        }
        if let Some(c) = &self.cost {
            field(out, "cost", true);
            canonical(out, &serde_json::to_value(c).unwrap_or(Value::Null));
        }
        if let Some(p) = self.provenance {
            field(out, "provenance", true);
            canonical(out, &serde_json::to_value(p).unwrap_or(Value::Null));
        }
        if !self.data.is_empty() {
            field(out, "data", true);
            object(out, &self.data);
        }
        out.push(b'}');
    }
}

/// A record read back from the store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    /// Its place in the store's one chain, from 1.
    pub seq: u64,
    /// The hash of the line before it (hex), zeros for the first.
    pub prev: String,
    /// The record.
    #[serde(flatten)]
    pub record: Record,
}

impl Stored {
    /// The record's line as the store holds it (the encoding is canonical, so this is the
    /// same bytes, and hashes the same).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = format!("{{\"seq\":{},\"prev\":", self.seq).into_bytes();
        string(&mut line, &self.prev);
        line.push(b',');
        self.record.encode_body(&mut line);
        line
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn field(out: &mut Vec<u8>, name: &str, comma: bool) {
    if comma {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn string(out: &mut Vec<u8>, s: &str) {
    // serde_json's escaping: the shortest form, `\uXXXX` only for control characters.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, k);
        out.push(b':');
        canonical(out, v);
    }
    out.push(b'}');
}

/// Writes `value` canonically: object keys sorted by their bytes, no whitespace.
pub fn canonical(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(map) => object(out, map),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(out, v);
            }
            out.push(b']');
        }
        Value::String(s) => string(out, s),
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_encoding_is_canonical_whatever_the_key_order() {
        let mut a = Record::new(Kind::Exec, "exec", "s1");
        a.ts_ms = 5;
        a.input = Some(json!({"b": 1, "a": {"z": [1, "x\n"], "c": null}}));
        let mut b = a.clone();
        let mut reversed = Map::new();
        reversed.insert("a".into(), json!({"c": null, "z": [1, "x\n"]}));
        reversed.insert("b".into(), json!(1));
        b.input = Some(Value::Object(reversed));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.encode_body(&mut x);
        b.encode_body(&mut y);
        assert_eq!(x, y);
        assert_eq!(
            String::from_utf8(x).unwrap(),
            r#""kind":"exec","event":"exec","ts_ms":5,"session":"s1","input":{"a":{"c":null,"z":[1,"x\n"]},"b":1}}"#
        );
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut r = Record::new(Kind::Connect, "request", "s1");
        r.agent = Some("claude".into());
        r.uid = Some(1000);
        r.decision = Some(DecisionRecord {
            decision: Decision::Deny,
            rules: vec!["network.deny[0]".into()],
            reason: "no".into(),
        });
        r.outcome = Some(json!({"bytes_up": 3}));
        r.cost = Some(Cost { tokens_in: Some(10), tokens_out: None, usd: Some(0.25) });
        r.provenance = Some(Provenance::Web);
        r.data.insert("note".into(), json!("x"));
        let mut line = br#"{"seq":1,"prev":"00","#.to_vec();
        r.encode_body(&mut line);
        let back: Stored = serde_json::from_slice(&line).unwrap();
        assert_eq!(back.seq, 1);
        assert_eq!(back.record, r);
        assert_eq!(back.to_line(), line, "read back and encoded again, a record has the same bytes");
    }
}
