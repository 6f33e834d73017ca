//! Sessions in progress, and sessions whose supervisor was lost.
//!
//! ```text
//! AUDIT/live/ID      one a session: its agent, supervisor pid, start and cgroup, as JSON;
//!                    the supervisor holds an exclusive `flock` on it for the session's life
//! ```
//!
//! A supervisor killed with SIGKILL (or a host that stops) writes no `session_end`, and leaves
//! its cgroup behind. Its file stays, unlocked: the kernel drops a dead process's locks. So a
//! session is alive exactly while its file is locked. The next command that writes to the
//! store ([`close_lost`]: `run`, `proxy`) records the end of each lost session
//! (`session_end` with `supervisor_lost`), kills what is left in its cgroup and removes it.
//! Commands that only read ([`open_sessions`]: `audit verify`, `audit show`) write nothing and
//! report such sessions as open.
//!
//! The files live in the store's directory, which the sandbox never shows: an agent cannot
//! hold a lock on one, nor plant one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use portcullis_audit::{Kind, Record, Store};
use portcullis_sandbox::cgroup::Cgroup;
use portcullis_sandbox::probe::CgroupBackend;
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What a session's file says of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The session id (also the file's name).
    pub session: String,
    /// The agent it ran for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The supervisor's pid.
    pub pid: u32,
    /// The uid records are stamped with.
    pub uid: u32,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// Its cgroup's directories, once made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroup: Vec<PathBuf>,
    /// Whether they are v1 hierarchies' (one per controller).
    #[serde(default)]
    pub cgroup_v1: bool,
}

/// Whether an open session's supervisor is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its supervisor holds the lock.
    Running,
    /// Nobody holds it: the supervisor was killed, or the host stopped.
    Lost,
}

/// A running session's claim, held by its supervisor. Once the session's start is recorded
/// ([`Live::started`]) only [`Live::finish`], called when its end is stored, removes the file:
/// a supervisor that returns early on an error, or unwinds, leaves it for the next command to
/// close with an end. Before, dropping it removes it (nothing of the session is on record).
#[derive(Debug)]
pub struct Live {
    file: File,
    path: PathBuf,
    entry: Entry,
    started: bool,
}

fn live_dir(audit_dir: &Path) -> PathBuf {
    audit_dir.join("live")
}

impl Live {
    /// Claims `session` in the store at `audit_dir`.
    pub fn begin(audit_dir: &Path, session: &str, agent: Option<&str>) -> std::io::Result<Live> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = live_dir(audit_dir);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        // Made, locked and written under a dot name, then renamed: a file under its real name
        // is always either locked or the trace of a lost session.
        let path = dir.join(session);
        let new = dir.join(format!(".{session}.new"));
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&new)?;
        flock(file.as_fd(), FlockOperation::LockExclusive)?;
        let entry = Entry {
            session: session.to_owned(),
            agent: agent.map(str::to_owned),
            pid: std::process::id(),
            uid: rustix::process::getuid().as_raw(),
            started_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            ..Entry::default()
        };
        let live = Live { file, path, entry, started: false };
        live.write()?;
        std::fs::rename(&new, &live.path)?;
        Ok(live)
    }

    /// Names the session's cgroup, for whoever closes the session if its supervisor is lost.
    pub fn set_cgroup(&mut self, cgroup: &Cgroup) -> std::io::Result<()> {
        self.entry.cgroup = cgroup.dirs().to_vec();
        self.entry.cgroup_v1 = *cgroup.backend() == CgroupBackend::V1;
        self.write()
    }

    fn write(&self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut text = serde_json::to_vec(&self.entry).map_err(std::io::Error::other)?;
        text.push(b'\n');
        self.file.write_all_at(&text, 0)?;
        self.file.set_len(text.len() as u64)?;
        (&self.file).flush()
    }
}

impl Live {
    /// The session's start is on record: from now on its file goes only with its end.
    pub fn started(&mut self) {
        self.started = true;
    }

    /// The session's end is stored: its file goes.
    pub fn finish(mut self) {
        self.started = false;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if !self.started {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An open session's file, and whether its supervisor is there.
fn scan(audit_dir: &Path) -> Vec<(PathBuf, File, State)> {
    let Ok(entries) = std::fs::read_dir(live_dir(audit_dir)) else { return Vec::new() };
    let mut found: Vec<(PathBuf, File, State)> = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let path = e.path();
            let file = File::open(&path).ok()?;
            let state = if flock(file.as_fd(), FlockOperation::NonBlockingLockShared).is_ok() {
                let _ = flock(file.as_fd(), FlockOperation::Unlock);
                State::Lost
            } else {
                State::Running
            };
            Some((path, file, state))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn read_entry(path: &Path, file: &File) -> Entry {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &*file, &mut text);
    // A supervisor killed while it rewrote its file leaves it unreadable: the name still says
    // which session it was.
    serde_json::from_slice::<Entry>(&text)
        .ok()
        .filter(|e| e.session == name)
        .unwrap_or(Entry { session: name, ..Entry::default() })
}

/// The sessions without an end: running, or lost. Reads only.
pub fn open_sessions(audit_dir: &Path) -> Vec<(Entry, State)> {
    scan(audit_dir).into_iter().map(|(path, file, state)| (read_entry(&path, &file), state)).collect()
}

/// A lost session, closed.
#[derive(Clone, Debug, Serialize)]
pub struct Closed {
    /// What its file said.
    pub entry: Entry,
    /// The cgroup directories removed.
    pub cgroup_removed: Vec<PathBuf>,
    /// What went wrong closing it, if anything (its file is then left for the next try).
    pub error: Option<String>,
}

/// Closes every lost session: its `session_end` (with `supervisor_lost`, naming `by`, the
/// session closing it) is stored, what is left in its cgroup is killed and the cgroup removed,
/// and its file goes. A session another command is closing at the same time is left to it.
pub fn close_lost(audit_dir: &Path, store: &Store, by: &str) -> Vec<Closed> {
    let mut closed = Vec::new();
    for (path, file, state) in scan(audit_dir) {
        if state != State::Lost {
            continue;
        }
        // Exclusive, so two commands starting together close it once: the second either fails
        // to lock, or locks a file already unlinked (another inode than the path's now).
        if flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive).is_err() {
            continue;
        }
        let same = match (file.metadata(), std::fs::symlink_metadata(&path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            continue;
        }
        let entry = read_entry(&path, &file);
        let backend = if entry.cgroup_v1 { CgroupBackend::V1 } else { CgroupBackend::V2 };
        let cgroup = Cgroup::adopt(backend, &format!("portcullis-{}", entry.session), entry.cgroup.clone());
        let left = cgroup.pids().len();
        let dirs = cgroup.dirs().to_vec();
        drop(cgroup);
        let cgroup_removed: Vec<PathBuf> = dirs.into_iter().filter(|d| !d.exists()).collect();
        let mut record = Record::new(Kind::Lifecycle, "session_end", &entry.session);
        record.agent.clone_from(&entry.agent);
        record.uid = Some(entry.uid);
        let why = format!(
            "the supervisor (pid {}) was lost before the session ended: killed, or the host stopped; session {by} \
             recorded this end",
            entry.pid
        );
        record.data = serde_json::Map::from_iter([
            ("error".to_owned(), json!(why)),
            ("supervisor_lost".to_owned(), json!(true)),
            ("closed_by".to_owned(), json!(by)),
            ("processes_killed".to_owned(), json!(left)),
            ("cgroup_removed".to_owned(), json!(cgroup_removed)),
        ]);
        let error = match store.commit(record) {
            Ok(()) => std::fs::remove_file(&path).err().map(|e| format!("cannot remove `{}`: {e}", path.display())),
            Err(e) => Some(e.to_string()),
        };
        closed.push(Closed { entry, cgroup_removed, error });
    }
    closed
}
