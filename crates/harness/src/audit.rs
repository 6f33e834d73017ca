//! A session's side of the audit store: records stamped with the session, agent and uid, the
//! egress' records mapped onto the schema, and what happens when the store fails (the call is
//! denied, and the session is ended).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

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
    Options { durability, ..Options::default() }
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

/// One session's records, in the shared store.
pub struct SessionLog {
    store: Arc<Store>,
    session: String,
    agent: Option<String>,
    uid: u32,
    failure: OnceLock<String>,
    on_failure: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

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
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs `f` once, at the first record that cannot be stored (to end the session).
    pub fn on_failure(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.on_failure.set(Box::new(f));
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
        self.store.append(record).map(|_| ()).map_err(|e| self.failed(&e))
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
        self.store.commit(record).map_err(|e| self.failed(&e))
    }
}

/// The egress' records: requests and tunnels are `connect`, lookups `dns`, the ceiling's
/// warning a `limit`. They describe what already happened, so they are queued, not waited on;
/// the first that cannot be stored makes the egress deny everything after it.
impl portcullis_egress::Recorder for SessionLog {
    fn record(&self, kind: &str, mut fields: Map<String, Value>) -> bool {
        let (kind, event) = match kind {
            "connect" => {
                let via = fields.remove("via").and_then(|v| v.as_str().map(str::to_owned));
                (Kind::Connect, via.unwrap_or_else(|| "connect".into()))
            }
            "dns" => (Kind::Dns, "query".to_owned()),
            "egress_warning" => (Kind::Limit, "outbound_bytes_80_percent".to_owned()),
            other => (Kind::Lifecycle, other.to_owned()),
        };
        let mut r = Trail::record(self, kind, &event);
        if let Some(Value::String(a)) = fields.remove("agent") {
            r.agent = Some(a);
        }
        if let Some(Value::String(t)) = fields.remove("tool") {
            r.tool = Some(t);
        }
        let decision = fields.remove("decision").and_then(|d| serde_json::from_value::<Decision>(d).ok());
        let rule = fields.remove("rule").and_then(|v| v.as_str().map(str::to_owned));
        let reason = fields.remove("reason").and_then(|v| v.as_str().map(str::to_owned));
        if let Some(decision) = decision {
            r.decision = Some(DecisionRecord {
                decision,
                rules: rule.into_iter().collect(),
                reason: reason.unwrap_or_default(),
            });
        }
        if let Some(ms) = fields.remove("duration_ms").and_then(|v| v.as_u64()) {
            r.latency_us = Some(ms * 1000);
        }
        let mut outcome = Map::new();
        for key in ["status", "error", "bytes_up", "bytes_down", "address", "outbound_bytes", "ceiling", "message"] {
            if let Some(v) = fields.remove(key) {
                outcome.insert(key.to_owned(), v);
            }
        }
        if !outcome.is_empty() {
            r.outcome = Some(Value::Object(outcome));
        }
        if !fields.is_empty() {
            r.input = Some(Value::Object(fields));
        }
        self.append(r).is_ok()
    }
}
