//! Sessions on disk: the state directory, session ids, and `portcullis diff` / `apply`.
//!
//! ```text
//! STATE/sessions/ID/session.json   written at the end of a session that changed something in
//!                                  its workdir's overlay: the workdir and the changes
//!                  /changes/       the changed files themselves
//! STATE/audit/                     the audit store (every session's records; see `audit`)
//! ```
//! STATE is `/var/lib/portcullis` for root, else `$XDG_STATE_HOME/portcullis` or
//! `~/.local/state/portcullis`. The sandbox never shows it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use portcullis_sandbox::changes::{self, Change, ChangeKind, EntryType};
use serde_json::{Value, json};

/// The state directory.
pub(crate) fn state_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PORTCULLIS_STATE_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if rustix::process::geteuid().is_root() {
        return Ok(PathBuf::from("/var/lib/portcullis"));
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|x| Path::new(x).is_absolute()) {
        return Ok(PathBuf::from(xdg).join("portcullis"));
    }
    let home = std::env::home_dir().context("cannot tell the home directory: set HOME")?;
    Ok(home.join(".local/state/portcullis"))
}

/// A new session id: UTC time to the second and a random suffix, sortable by start.
pub(crate) fn new_id() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rest = secs % 86_400;
    let mut random = [0u8; 3];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random)).is_err() {
        random = (now.subsec_nanos() ^ std::process::id()).to_le_bytes()[..3].try_into().unwrap_or_default();
    }
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{:02x}{:02x}{:02x}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        random[0],
        random[1],
        random[2]
    )
}

/// A (year, month, day) date to days since 1970-01-01 (the inverse of [`civil_from_days`]).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's civil calendar method).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Creates `path` with `mode` (and, with `parents`, its missing parents with the same mode).
fn make_dir(path: &Path, mode: u32, parents: bool, what: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(parents)
        .mode(mode)
        .create(path)
        .with_context(|| format!("cannot create {what} `{}`", path.display()))
}

/// The state directory, created (mode 0700) if missing.
pub(crate) fn make_state_root(state: &Path) -> Result<PathBuf> {
    make_dir(state, 0o700, true, "the state directory")?;
    Ok(state.to_path_buf())
}

/// The directory sessions' own directories go in (`STATE/sessions`), made if missing.
pub(crate) fn sessions_root(state: &Path) -> Result<PathBuf> {
    let sessions = state.join("sessions");
    make_dir(&sessions, 0o700, true, "the state directory")?;
    Ok(sessions)
}

/// Creates a session's directory in `root` (from [`sessions_root`]), mode 0700.
pub(crate) fn create_dir(root: &Path, id: &str) -> Result<PathBuf> {
    let dir = root.join(id);
    make_dir(&dir, 0o700, false, "the session directory")?;
    Ok(dir)
}

/// `/run/portcullis`: the directory a session started as root covers with its own tmpfs, in its
/// own mount namespace, to build the agent's root (see `RootOptions::base`). It must be
/// traversable by the agent's id range; it stays empty on the host and listable by root only.
pub(crate) fn mount_base() -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let base = PathBuf::from("/run/portcullis");
    make_dir(&base, 0o711, true, "the runtime directory")?;
    let mode = std::fs::metadata(&base).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0);
    if mode != 0o711 {
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("cannot set the mode of `{}`", base.display()))?;
    }
    Ok(base)
}

/// A written-through session's claim on its workdir, released (and its file removed) on drop.
#[derive(Debug)]
pub(crate) struct WriteThrough {
    _file: std::fs::File,
    path: PathBuf,
}

impl Drop for WriteThrough {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Claims `workdir` for a session written through (`--no-ephemeral`).
///
/// SECURITY: such a session's end sweeps the workdir for persistence and rewrites or moves
/// what it finds, after every process of the session is gone. A second session writing through
/// the same tree (or one inside it, or around it) would still be running, and could swap a
/// directory for a symlink under the sweep. So one claim a tree: each session holds a lock on
/// a file naming its workdir, and a new one is refused while a live claim overlaps its own.
pub(crate) fn write_through_lock(state: &Path, workdir: &Path, id: &str) -> Result<WriteThrough> {
    use rustix::fs::{FlockOperation, flock};
    use std::os::fd::AsFd;
    let state = make_state_root(state)?;
    let dir = state.join("write-through");
    make_dir(&dir, 0o700, true, "the write-through claims directory")?;
    let open = |p: &Path| std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(p);
    let global = open(&state.join("write-through.lock")).context("cannot open the write-through lock")?;
    flock(global.as_fd(), FlockOperation::LockExclusive).context("cannot lock the write-through claims")?;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list `{}`", dir.display()))?.flatten() {
        let Ok(file) = std::fs::File::open(entry.path()) else { continue };
        if flock(file.as_fd(), FlockOperation::NonBlockingLockShared).is_ok() {
            // Nobody holds it: a claim left by a session that died.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let other = PathBuf::from(std::fs::read_to_string(entry.path()).unwrap_or_default());
        if other.starts_with(workdir) || workdir.starts_with(&other) {
            bail!(
                "session {} writes through `{}`, which overlaps this workdir `{}`; wait for it to end, or run this \
                 session on an overlay (without --no-ephemeral)",
                entry.file_name().to_string_lossy(),
                other.display(),
                workdir.display()
            );
        }
    }
    let path = dir.join(id);
    let file = open(&path).with_context(|| format!("cannot create `{}`", path.display()))?;
    flock(file.as_fd(), FlockOperation::LockExclusive).context("cannot lock the write-through claim")?;
    std::fs::write(&path, workdir.as_os_str().as_encoded_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(WriteThrough { _file: file, path })
}

/// The id-range slot of agent `name` (`""` for a session that names none), among `slots`.
///
/// SECURITY: two agents must never share a range, or one turned agent holds the other's
/// authority on the host (their files, their processes). A name keeps the slot it was first
/// given, recorded in `STATE/agent-slots.json` under a lock; a new name takes the slot its name
/// hashes to (FNV-1a, so ranges are stable and spread), or the next free one when another name
/// holds it. All slots taken is an error, never a shared range.
pub(crate) fn agent_slot(state: &Path, name: &str, slots: u32) -> Result<u32> {
    use std::os::fd::AsFd;
    let state = make_state_root(state)?;
    let lock_path = state.join("agent-slots.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open `{}`", lock_path.display()))?;
    rustix::fs::flock(lock.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .with_context(|| format!("cannot lock `{}`", lock_path.display()))?;
    let path = state.join("agent-slots.json");
    let mut table: std::collections::BTreeMap<String, u32> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("`{}` is not a valid agent slot table; fix or remove it", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    if let Some(slot) = table.get(name) {
        if *slot >= slots {
            bail!("`{}` gives agent `{name}` slot {slot}, past the last ({})", path.display(), slots - 1);
        }
        return Ok(*slot);
    }
    let taken: std::collections::BTreeSet<u32> = table.values().copied().collect();
    let hash = name.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    let slot = (0..slots)
        .map(|i| (hash % slots + i) % slots)
        .find(|s| !taken.contains(s))
        .with_context(|| format!("all {slots} agent id ranges are taken (see `{}`)", path.display()))?;
    table.insert(name.to_owned(), slot);
    let tmp = state.join("agent-slots.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&table)?)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(slot)
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  portcullis diff                  the last session's changes, as a patch
  portcullis diff --stat           one line per changed path
  portcullis diff 20261124-101500-3fa2c1 --json")]
pub(crate) struct DiffArgs {
    /// The session id (default: the latest session with changes in this directory's project).
    session: Option<String>,
    /// One line per changed path instead of a patch.
    #[arg(long)]
    stat: bool,
    /// Print the changes as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Copies the changed files into the real workdir and removes the deleted ones, \
opening every path beneath the workdir without following a symlink. Changes that would make the host run \
code later (git hooks and config, .envrc, editor tasks, agent settings: docs/sandbox.md lists them) are held \
back and named, and so is a new symlink that may point out of the workdir (both applied with --force), and a \
symlink that would replace a directory (never). Without an id, the latest session of the current \
directory's project is taken. Nothing is applied when a file the session changed was also changed in the \
workdir since the session started (outside the sandbox): `apply` lists those files, and --overwrite replaces \
them with the session's version.

Examples:
  portcullis apply
  portcullis apply 20261124-101500-3fa2c1")]
pub(crate) struct ApplyArgs {
    /// The session id (default: the latest session with changes in this directory's project).
    session: Option<String>,
    /// Apply new symlinks even when they point outside the workdir, and changes to git hooks,
    /// git config and auto-run files.
    #[arg(long)]
    force: bool,
    /// Replace files that also changed in the workdir since the session started.
    #[arg(long)]
    overwrite: bool,
}

struct Saved {
    id: String,
    dir: PathBuf,
    workdir: PathBuf,
    changes: Vec<Change>,
    /// Paths of this session's own that are persistence (the policy file, inside the workdir).
    extra: Vec<PathBuf>,
    /// When the session started (`None` in a session saved without it).
    started: Option<SystemTime>,
}

fn load(session: Option<&str>) -> Result<Saved> {
    let sessions = state_root()?.join("sessions");
    let (id, saved) = match session {
        Some(id) => {
            if id.contains('/') || id.starts_with('.') {
                bail!("`{id}` is not a session id");
            }
            let dir = sessions.join(id);
            if !dir.exists() {
                bail!(
                    "no saved changes for session `{id}` in `{}`: a session keeps them only when it changed \
                     something in its workdir's overlay (not with --no-ephemeral)",
                    sessions.display()
                );
            }
            let saved = read_saved(&dir).with_context(|| format!("session `{id}` has not finished"))?;
            (id.to_owned(), saved)
        }
        None => {
            // SECURITY: the latest session of this directory's project, never another's: `apply`
            // run in one project must not write another project's unreviewed changes.
            let cwd = std::env::current_dir().context("cannot read the current directory")?;
            let cwd = cwd.canonicalize().unwrap_or(cwd);
            // The session that ended last (its state is written at its end: ids, to the second,
            // do not order two sessions of the same second) among those that changed something.
            let mut ended: Vec<(SystemTime, String)> = std::fs::read_dir(&sessions)
                .with_context(|| format!("no sessions in `{}`", sessions.display()))?
                .filter_map(|e| {
                    let e = e.ok()?;
                    let at = e.path().join("session.json").symlink_metadata().ok()?.modified().ok()?;
                    Some((at, e.file_name().into_string().ok()?))
                })
                .collect();
            ended.sort();
            // Among the sessions whose workdir holds this directory, the deepest workdir's (a
            // project nested in another is its own project), and of those the latest.
            let mine: Vec<(String, Value, usize)> = ended
                .into_iter()
                .rev()
                .filter_map(|(_, id)| {
                    let saved = read_saved(&sessions.join(&id)).ok()?;
                    let depth = saved["workdir"]
                        .as_str()
                        .filter(|w| cwd.starts_with(w))
                        .map(|w| Path::new(w).components().count())?;
                    saved["changed"].as_array().is_some_and(|c| !c.is_empty()).then_some((id, saved, depth))
                })
                .collect();
            let deepest = mine.iter().map(|(_, _, d)| *d).max().unwrap_or(0);
            mine.into_iter().find(|(_, _, d)| *d == deepest).map(|(id, saved, _)| (id, saved)).with_context(|| {
                format!(
                    "no finished session with changes for `{}` in `{}`; name a session id to pick one of \
                         another project",
                    cwd.display(),
                    sessions.display()
                )
            })?
        }
    };
    let workdir = saved["workdir"]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("session `{id}` has no workdir in its saved state"))?;
    let changes: Vec<Change> = serde_json::from_value(saved["changed"].clone())
        .with_context(|| format!("cannot read the changes of session `{id}`"))?;
    let started = saved["started_ns"].as_u64().map(|ns| UNIX_EPOCH + std::time::Duration::from_nanos(ns));
    let extra: Vec<PathBuf> = serde_json::from_value(saved["persistence"].clone()).unwrap_or_default();
    eprintln!("session {id} (workdir {})", workdir.display());
    Ok(Saved { dir: sessions.join(&id), id, workdir, changes, extra, started })
}

/// Writes `session.json` in the session's directory: what `diff` and `apply` read. `extra`:
/// the session's own persistence paths, relative to the workdir (see [`changes::is_persistence`]).
pub(crate) fn save(
    dir: &Path,
    workdir: &Path,
    changed: &[Change],
    started: SystemTime,
    extra: &[PathBuf],
) -> std::io::Result<()> {
    let started_ns = started.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let text = serde_json::to_vec(
        &json!({"workdir": workdir, "changed": changed, "started_ns": started_ns, "persistence": extra}),
    )
    .map_err(std::io::Error::other)?;
    std::fs::write(dir.join("session.json"), text)
}

fn read_saved(dir: &Path) -> Result<Value> {
    let path = dir.join("session.json");
    let text = std::fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("`{}` is not valid JSON", path.display()))
}

pub(crate) fn diff(args: &DiffArgs) -> Result<ExitCode> {
    let saved = load(args.session.as_deref())?;
    if args.json {
        println!("{}", json!({"session": saved.id, "workdir": saved.workdir, "changes": saved.changes}));
        return Ok(ExitCode::SUCCESS);
    }
    if saved.changes.is_empty() {
        eprintln!("session {}: no changes", saved.id);
        return Ok(ExitCode::SUCCESS);
    }
    if args.stat {
        for c in &saved.changes {
            let note =
                if changes::is_persistence(c, &saved.extra) { "  (runs on the host: apply needs --force)" } else { "" };
            println!("{} {}{note}", c.kind.letter(), crate::run_cmd::shown(&c.path.to_string_lossy()));
        }
        return Ok(ExitCode::SUCCESS);
    }
    for c in &saved.changes {
        patch(&saved, c)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One change as a unified diff (through `diff -u`), or a line saying what it is.
fn patch(saved: &Saved, c: &Change) -> Result<()> {
    let rel = crate::run_cmd::shown(&c.path.to_string_lossy()).into_owned();
    let (old, new) = (saved.workdir.join(&c.path), saved.dir.join("changes").join(&c.path));
    let (old_arg, new_arg) = match (c.kind, c.entry) {
        (_, EntryType::Dir) => {
            println!("{} {rel}/ (directory)", c.kind.letter());
            return Ok(());
        }
        (_, EntryType::Symlink) => {
            let target = std::fs::read_link(&new).map(|t| t.display().to_string()).unwrap_or_default();
            let target = crate::run_cmd::shown(&target);
            println!("{} {rel} -> {target} (symlink)", c.kind.letter());
            return Ok(());
        }
        (ChangeKind::Deleted, _) => (old, PathBuf::from("/dev/null")),
        (ChangeKind::Added, _) => (PathBuf::from("/dev/null"), new),
        (ChangeKind::Modified, _) => (old, new),
    };
    // The files' lines are the agent's: printed with their control characters escaped, so
    // an escape sequence in a changed file cannot redraw the terminal its reviewer reads.
    let out = Command::new("diff")
        .args(["-u", "--label", &format!("a/{rel}"), "--label", &format!("b/{rel}")])
        .arg(&old_arg)
        .arg(&new_arg)
        .output()
        .context("cannot run `diff` (install diffutils, or use --stat)")?;
    if out.status.code().is_none_or(|c| c > 1) {
        bail!("`diff` failed on `{rel}`");
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(portcullis_guard::terminal::printable_lines(&text).as_bytes())?;
    Ok(())
}

pub(crate) fn apply(args: &ApplyArgs) -> Result<ExitCode> {
    let saved = load(args.session.as_deref())?;
    let marker = saved.dir.join("applied");
    if marker.exists() {
        bail!("session {} was already applied", saved.id);
    }
    if !args.overwrite {
        let Some(started) = saved.started else {
            bail!(
                "session {} was saved without its start time, so changes made in the workdir since then cannot be \
                 told apart; nothing was applied (--overwrite applies it anyway)",
                saved.id
            );
        };
        let clashes = changes::changed_since(&saved.changes, &saved.workdir, started);
        if !clashes.is_empty() {
            let list: Vec<String> =
                clashes.iter().map(|p| format!("  {}", crate::run_cmd::shown(&p.to_string_lossy()))).collect();
            bail!(
                "{} of the session's changes would overwrite files changed in `{}` since session {} started:\n{}\n\
                 nothing was applied; `portcullis diff {}` shows the session's version, and --overwrite replaces them",
                clashes.len(),
                saved.workdir.display(),
                saved.id,
                list.join("\n"),
                saved.id
            );
        }
    }
    let done = changes::apply(&saved.changes, &saved.dir.join("changes"), &saved.workdir, args.force, &saved.extra)
        .with_context(|| format!("cannot apply session {}", saved.id))?;
    std::fs::write(&marker, b"").ok();
    let n = done.applied;
    eprintln!(
        "applied {n} change{} from session {} to {}",
        if n == 1 { "" } else { "s" },
        saved.id,
        saved.workdir.display()
    );
    if !done.held.is_empty() {
        eprintln!("held back {} (review them with `portcullis diff {}`):", done.held.len(), saved.id);
        for (path, why) in &done.held {
            eprintln!(
                "  {}: {}",
                crate::run_cmd::shown(&path.to_string_lossy()),
                crate::run_cmd::shown(&why.to_string())
            );
        }
        let forced = done.held.iter().any(|(_, why)| *why != changes::Held::SymlinkOverDirectory);
        if forced {
            eprintln!(
                "they stay in `{}`; copy them by hand, or apply the session with --force (a symlink over a \
                 directory is never applied)",
                saved.dir.join("changes").display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_agent_names_never_share_an_id_range() {
        let state = std::env::temp_dir().join(format!("portcullis-slots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        // Names whose hashes collide in 8 slots, and more names than slots.
        let names = ["", "a", "b", "c", "d", "e", "f", "g"];
        let slots: Vec<u32> = names.iter().map(|n| agent_slot(&state, n, 8).unwrap()).collect();
        let distinct: std::collections::BTreeSet<u32> = slots.iter().copied().collect();
        assert_eq!(distinct.len(), names.len(), "{slots:?}");
        // A name keeps its slot; a ninth name finds none free.
        assert_eq!(agent_slot(&state, "c", 8).unwrap(), slots[3]);
        let full = agent_slot(&state, "h", 8).unwrap_err().to_string();
        assert!(full.contains("all 8 agent id ranges are taken"), "{full}");
        std::fs::remove_dir_all(&state).unwrap();
    }

    #[test]
    fn dates_come_out_right_across_leap_years() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_781), (2026, 11, 24));
        let id = new_id();
        assert_eq!(id.len(), "20261124-101500-3fa2c1".len(), "{id}");
    }
}
