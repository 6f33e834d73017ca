//! The agent's view of the filesystem, built in its own mount namespace: an empty root with
//! the system directories bound read-only, the workdir bound read-write, an empty home (so every
//! credential file, including one created later, is out of sight), a private size-capped `/tmp`
//! and a minimal `/dev`. The plan is computed before the fork; the child only makes system calls.
//!
//! New filesystems are made only where a size cap or a kernel view needs one (the scratch space,
//! the root, `/tmp`, `/dev/shm`, `devpts`, `/proc`, the overlay): the home and `/dev` are
//! directories of the root's own tmpfs, or of `/tmp`'s when the home lies there, made read-only.
//! Each tmpfs costs its superblock's set-up and teardown on every start and exit.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What to build.
#[derive(Clone, Debug)]
pub struct RootOptions {
    /// An existing host directory the init can reach, whose contents the plan never needs. In
    /// the init's own mount namespace a tmpfs covers it (the host's directory is untouched, and
    /// nothing is left behind if the session is killed); the new root is assembled in `root`
    /// there, and the tmpfs holds the overlay's upper layer and the empty file that masks hidden
    /// files. It is out of the agent's view afterwards.
    pub base: PathBuf,
    /// The workdir, bound read-write at the same path.
    pub workdir: PathBuf,
    /// The home directory, shown empty and read-only.
    pub home: PathBuf,
    /// Size of the private `/tmp`, in bytes.
    pub tmp_size: u64,
    /// `Some(size)`: the workdir is an overlay whose writes land in the base's tmpfs, capped at
    /// `size` bytes. `None`: the workdir is bound read-write.
    pub ephemeral: Option<u64>,
    /// Mount a fresh `/proc` (the caller must be the first process of a new PID namespace).
    pub proc: bool,
    /// Host paths to mask: a directory gets an empty read-only tmpfs, a file an empty read-only
    /// file. Paths the root does not show anyway (under the home, outside every bind) need none.
    pub hidden: Vec<PathBuf>,
    /// Extra host trees (directories or single files) bound read-only at the same path.
    pub read_only: Vec<PathBuf>,
    /// Extra host trees (directories or single files) bound read-write at the same path
    /// (outside the workdir).
    pub writable: Vec<PathBuf>,
    /// The workdir comes as a detached, idmapped tree from the supervisor (see
    /// [`crate::session`]) instead of a bind of the host path, and so do the `read_only` trees
    /// (not idmapped) and the `writable` ones (idmapped). For a supervisor that is root: the
    /// init, which runs as an unprivileged host uid, may not reach them (a path under root's
    /// 0700 home), while the supervisor copies them whole.
    pub idmapped_workdir: bool,
    /// Paths inside the workdir made read-only on top of it (git hooks and config: what would
    /// run on the host later). Only existing paths can be covered.
    pub protected: Vec<PathBuf>,
    /// Directories inside the workdir bound on themselves, still writable: a mount point
    /// cannot be renamed or removed (`EBUSY`), so the read-only binds under it (a `.git`'s
    /// hooks and config) cannot be moved aside and replaced. Only existing ones are pinned.
    pub pinned: Vec<PathBuf>,
    /// `Some(paths)`: the workdir is read-only but for these paths inside it (existing
    /// directories or files, bound on themselves before the workdir's mount is made read-only,
    /// so they keep their own writable mounts). `None`: all of the workdir is writable.
    pub writable_inside: Option<Vec<PathBuf>>,
    /// Files of `/etc` the agent sees with the given content instead of the host's (each bound
    /// read-only over the host's, or over where it points when it is a symlink): the sandbox's
    /// own `resolv.conf`, `hosts` and `nsswitch.conf`. One the host lacks is left out.
    pub etc_files: Vec<(String, String)>,
}

/// Directories bound read-only when they exist (symlinks, as on merged-/usr systems, are
/// recreated as symlinks).
pub(crate) const SYSTEM_DIRS: &[&str] =
    &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];
/// Device nodes bound from the host.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];
/// Symlinks in `/dev` into the sandbox's `/proc` (made only with one).
const DEV_LINKS: &[(&str, &str)] = &[
    ("/dev/fd", "/proc/self/fd"),
    ("/dev/stdin", "/proc/self/fd/0"),
    ("/dev/stdout", "/proc/self/fd/1"),
    ("/dev/stderr", "/proc/self/fd/2"),
];

/// One step of the plan.
#[derive(Debug)]
pub(crate) enum Op {
    Mkdir(CString),
    Touch(CString),
    /// Create (or truncate) a file with these contents.
    Write {
        path: CString,
        content: Vec<u8>,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// Make `new_root` the root; the old one stays attached at [`OLD_ROOT`] until `DetachOldRoot`.
    PivotRoot {
        new_root: CString,
    },
    /// Detach the old root (and everything under it) and remove its mount point.
    DetachOldRoot,
    Chdir(CString),
    /// Open a directory and keep the descriptor (the overlay's upper layer, for the supervisor).
    Keep(CString),
    /// Attach the detached tree the supervisor passed for `RootPlan::trees[tree]`.
    AttachTree {
        tree: usize,
        target: CString,
    },
}

/// A root plan that cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A path contains a NUL byte or is not absolute.
    #[error("`{0}` cannot be used as a mount path")]
    BadPath(PathBuf),
    /// The policy shows more host trees than one session can pass.
    #[error("more than {0} read-only and writable paths")]
    TooManyTrees(usize),
    /// The flags of a host mount cannot be read.
    #[error("cannot read the mount flags of `{path}`")]
    Flags {
        /// The host path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Where the host's root stays attached between the `pivot_root` and its detachment.
pub(crate) const OLD_ROOT: &str = "/.old-root";

/// A plan ready to run in the child, in two parts.
///
/// `ops` builds the root and moves into it, with the host's root still attached at
/// [`OLD_ROOT`]; `finish` detaches that, makes the root read-only and enters the workdir. The
/// session's init runs `finish` only once its network namespace is made: detaching a mount
/// tree waits for an expedited RCU grace period, which every CPU must pass, and the helper
/// that makes the namespace spends about 0.45 ms in the kernel without passing one (on a
/// kernel without preemption). Detached at once, the init's `umount2` took 0.75 ms, waiting
/// for the helper on one CPU while the other stood idle (BENCHMARKS.md, "Sandbox start-up").
#[derive(Debug)]
pub struct RootPlan {
    pub(crate) ops: Vec<Op>,
    pub(crate) finish: Vec<Op>,
    /// The host trees the supervisor copies (`open_tree`) and passes, in order.
    pub(crate) trees: Vec<Tree>,
}

/// A host tree the supervisor copies for the plan (see `RootOptions::idmapped_workdir`).
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) host: CString,
    /// Made read-only, every mount in it.
    pub(crate) read_only: bool,
    /// Files appear owned as the sandbox's user namespace maps their owners (the workdir's).
    pub(crate) idmapped: bool,
}

/// What the scratch tmpfs holds beyond the overlay's upper layer (the mask file, the overlay's
/// work directory), on top of `RootOptions::ephemeral`.
pub(crate) const SCRATCH_SLACK: u64 = 1 << 20;

/// The most trees a plan may pass (the workdir and the policy's extra paths).
pub(crate) const MAX_TREES: usize = 32;

fn c(path: &Path) -> Result<CString, PlanError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| PlanError::BadPath(path.to_path_buf()))
}

fn cs(text: &str) -> Option<CString> {
    CString::new(text).ok()
}

/// The flags of the mount holding `path`, as `MS_*` bits, to keep when remounting: a mount
/// copied into a user namespace has its flags locked, and a remount that changes them fails.
fn locked_flags(path: &Path) -> Result<libc::c_ulong, PlanError> {
    use rustix::fs::StatVfsMountFlags as F;
    let st = rustix::fs::statvfs(path).map_err(|e| PlanError::Flags { path: path.to_path_buf(), source: e.into() })?;
    let pairs = [
        (F::NOSUID, libc::MS_NOSUID),
        (F::NODEV, libc::MS_NODEV),
        (F::NOEXEC, libc::MS_NOEXEC),
        (F::NOATIME, libc::MS_NOATIME),
        (F::NODIRATIME, libc::MS_NODIRATIME),
        (F::RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs.iter().filter(|(f, _)| st.f_flag.contains(*f)).fold(0, |acc, (_, ms)| acc | ms))
}

impl RootPlan {
    /// Computes the plan for `opts`.
    pub fn new(opts: &RootOptions) -> Result<Self, PlanError> {
        let (scratch, staging) = (&opts.base, opts.base.join("root"));
        let staged = |p: &Path| -> Result<CString, PlanError> {
            let rel: PathBuf = p.components().filter(|c| matches!(c, Component::Normal(_))).collect();
            c(&staging.join(rel))
        };
        let mut ops = Vec::new();
        let mut made: Vec<PathBuf> = Vec::new();
        let mut mkdir_all = |ops: &mut Vec<Op>, p: &Path| -> Result<(), PlanError> {
            let mut at = PathBuf::from("/");
            for comp in p.components().filter(|c| matches!(c, Component::Normal(_))) {
                at.push(comp);
                if !made.contains(&at) {
                    made.push(at.clone());
                    ops.push(Op::Mkdir(staged(&at)?));
                }
            }
            Ok(())
        };
        // Nothing mounted here may leak back to the host.
        ops.push(Op::Mount {
            source: None,
            target: c(Path::new("/"))?,
            fstype: None,
            flags: libc::MS_REC | libc::MS_PRIVATE,
            data: None,
        });
        let scratch_size = opts.ephemeral.unwrap_or(0).saturating_add(SCRATCH_SLACK);
        ops.push(fresh(
            "tmpfs",
            c(scratch)?,
            libc::MS_NOSUID | libc::MS_NODEV,
            &format!("mode=0700,size={scratch_size}"),
        ));
        let empty_file = scratch.join("empty");
        ops.push(Op::Touch(c(&empty_file)?));
        ops.push(Op::Mkdir(c(&staging)?));
        ops.push(fresh("tmpfs", c(&staging)?, libc::MS_NOSUID | libc::MS_NODEV, "mode=0755,size=1m"));
        for dir in SYSTEM_DIRS {
            let host = Path::new(dir);
            let Ok(meta) = std::fs::symlink_metadata(host) else { continue };
            if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(host).map_err(|e| PlanError::Flags { path: host.to_path_buf(), source: e })?;
                ops.push(Op::Symlink { target: c(&target)?, link: staged(host)? });
            } else if meta.is_dir() {
                mkdir_all(&mut ops, host)?;
                bind(&mut ops, host, staged(host)?, true)?;
            }
        }
        // Parents before children: `/tmp` and `/dev` first, then home, then the workdir, so a
        // later mount never hides an earlier one (the workdir is often under `/tmp` or home).
        mkdir_all(&mut ops, Path::new("/tmp"))?;
        ops.push(fresh(
            "tmpfs",
            staged(Path::new("/tmp"))?,
            libc::MS_NOSUID | libc::MS_NODEV,
            &format!("mode=1777,size={}", opts.tmp_size),
        ));
        // `/dev` is a directory of the root's tmpfs (read-only at the end): its nodes are binds
        // of the host's, which keep their own mounts' flags.
        mkdir_all(&mut ops, Path::new("/dev"))?;
        for dev in DEVICES {
            let host = Path::new("/dev").join(dev);
            if host.exists() {
                ops.push(Op::Touch(staged(&host)?));
                ops.push(Op::Mount {
                    source: Some(c(&host)?),
                    target: staged(&host)?,
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                });
            }
        }
        mkdir_all(&mut ops, Path::new("/dev/pts"))?;
        ops.push(fresh(
            "devpts",
            staged(Path::new("/dev/pts"))?,
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        ));
        ops.push(Op::Symlink { target: c(Path::new("pts/ptmx"))?, link: staged(Path::new("/dev/ptmx"))? });
        mkdir_all(&mut ops, Path::new("/dev/shm"))?;
        ops.push(fresh(
            "tmpfs",
            staged(Path::new("/dev/shm"))?,
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777,size=64m",
        ));
        if opts.proc {
            mkdir_all(&mut ops, Path::new("/proc"))?;
            ops.push(fresh(
                "proc",
                staged(Path::new("/proc"))?,
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                "",
            ));
            // What shells and scripts expect: process substitution opens `/dev/fd/N`.
            for (link, target) in DEV_LINKS {
                ops.push(Op::Symlink { target: c(Path::new(target))?, link: staged(Path::new(link))? });
            }
        }
        // Home as a new, empty directory bound on itself, so a workdir inside it is bound on
        // top; that mount is made read-only once the mount points in it are made.
        mkdir_all(&mut ops, &opts.home)?;
        ops.push(Op::Mount {
            source: Some(staged(&opts.home)?),
            target: staged(&opts.home)?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
        });
        let mut trees = Vec::new();
        let mut attach = |ops: &mut Vec<Op>, host: &Path, target: CString, read_only: bool, idmapped: bool| {
            trees.push(Tree { host: c(host)?, read_only, idmapped });
            if trees.len() > MAX_TREES {
                return Err(PlanError::TooManyTrees(MAX_TREES - 1));
            }
            ops.push(Op::AttachTree { tree: trees.len() - 1, target });
            Ok(())
        };
        for (extras, read_only) in [(&opts.read_only, true), (&opts.writable, false)] {
            for extra in extras {
                // A directory, or a single file (`~/.claude.json`) on an empty file made for it.
                match std::fs::metadata(extra) {
                    Ok(m) if m.is_dir() => mkdir_all(&mut ops, extra)?,
                    Ok(m) if m.is_file() => {
                        if let Some(parent) = extra.parent() {
                            mkdir_all(&mut ops, parent)?;
                        }
                        ops.push(Op::Touch(staged(extra)?));
                    }
                    _ => continue,
                }
                if opts.idmapped_workdir {
                    // A writable tree is the agent's as the workdir is (idmapped); in a
                    // read-only one, what only its owner may read stays unreadable.
                    attach(&mut ops, extra, staged(extra)?, read_only, !read_only)?;
                } else {
                    bind(&mut ops, extra, staged(extra)?, read_only)?;
                }
            }
        }
        mkdir_all(&mut ops, &opts.workdir)?;
        match opts.ephemeral {
            None if opts.idmapped_workdir => attach(&mut ops, &opts.workdir, staged(&opts.workdir)?, false, true)?,
            None => bind(&mut ops, &opts.workdir, staged(&opts.workdir)?, false)?,
            Some(_) => {
                let (upper, work) = (scratch.join("upper"), scratch.join("work"));
                ops.push(Op::Mkdir(c(&upper)?));
                ops.push(Op::Mkdir(c(&work)?));
                let lower = if opts.idmapped_workdir {
                    let lower = scratch.join("lower");
                    ops.push(Op::Mkdir(c(&lower)?));
                    attach(&mut ops, &opts.workdir, c(&lower)?, false, true)?;
                    lower
                } else {
                    opts.workdir.clone()
                };
                let data = format!(
                    "lowerdir={},upperdir={},workdir={},userxattr",
                    overlay_path(&lower)?,
                    overlay_path(&upper)?,
                    overlay_path(&work)?
                );
                ops.push(fresh("overlay", staged(&opts.workdir)?, libc::MS_NOSUID | libc::MS_NODEV, &data));
                ops.push(Op::Keep(c(&upper)?));
            }
        }
        // The bind's own flag: the filesystem under it (the root's, or `/tmp`'s) stays as it is.
        ops.push(Op::Mount {
            source: None,
            target: staged(&opts.home)?,
            fstype: None,
            flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            data: None,
        });
        // The policy's writable subset of the workdir: each its own mount, then the workdir's own
        // mount read-only (a bind copies its source's flags, so the order matters).
        if let Some(inside) = &opts.writable_inside {
            for path in inside.iter().filter(|p| p.starts_with(&opts.workdir) && p.exists()) {
                ops.push(rec_bind(staged(path)?, staged(path)?));
            }
            ops.push(read_only_again(staged(&opts.workdir)?, libc::MS_BIND));
        }
        // Pinned before the read-only binds under them: those are made on the pinned mount.
        for path in opts.pinned.iter().filter(|p| p.starts_with(&opts.workdir) && p.is_dir() && !p.is_symlink()) {
            ops.push(rec_bind(staged(path)?, staged(path)?));
        }
        for path in opts.protected.iter().filter(|p| p.starts_with(&opts.workdir) && p.exists()) {
            let target = staged(path)?;
            ops.push(Op::Mount {
                source: Some(target.clone()),
                target: target.clone(),
                fstype: None,
                flags: libc::MS_BIND | libc::MS_REC,
                data: None,
            });
            ops.push(Op::Mount {
                source: None,
                target,
                fstype: None,
                flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                data: None,
            });
        }
        // Masks last, over whatever the binds above show.
        let shown: Vec<PathBuf> = SYSTEM_DIRS
            .iter()
            .map(PathBuf::from)
            .chain(opts.read_only.iter().cloned())
            .chain(opts.writable.iter().cloned())
            .chain([opts.workdir.clone()])
            .collect();
        for path in &opts.hidden {
            if !shown.iter().any(|s| path.starts_with(s)) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(path) else { continue };
            if meta.is_dir() {
                ops.push(fresh(
                    "tmpfs",
                    staged(path)?,
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY,
                    "mode=0000,size=4k",
                ));
            } else if !meta.file_type().is_symlink() {
                ops.push(Op::Mount {
                    source: Some(c(&empty_file)?),
                    target: staged(path)?,
                    fstype: None,
                    flags: libc::MS_BIND,
                    data: None,
                });
                ops.push(Op::Mount {
                    source: None,
                    target: staged(path)?,
                    fstype: None,
                    flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                    data: None,
                });
            }
        }
        // SECURITY: a hidden path that does not exist yet, under a read-only tree the sandbox
        // shows, must stay hidden when the host creates it during the session (`gh auth login`
        // writes `~/.config/gh/hosts.yml`). A mask needs something to cover, so its deepest
        // existing ancestor is shown as a snapshot instead: a read-only tmpfs holding binds of
        // the entries it had at the start, and nothing made after.
        let mut snapshots: Vec<PathBuf> = Vec::new();
        for path in &opts.hidden {
            let Some(tree) = opts.read_only.iter().find(|t| path.starts_with(t) && t.is_dir()) else { continue };
            if std::fs::symlink_metadata(path).is_ok() {
                continue;
            }
            let Some(ancestor) = path.ancestors().skip(1).find(|a| a.starts_with(tree) && a.is_dir()) else {
                continue;
            };
            if !snapshots.iter().any(|s| s == ancestor) {
                snapshots.push(ancestor.to_path_buf());
            }
        }
        for (i, dir) in snapshots.iter().enumerate() {
            snapshot_dir(&mut ops, &scratch.join(format!("snapshot{i}")), staged(dir)?, dir)?;
        }
        for (i, (name, content)) in opts.etc_files.iter().enumerate() {
            if name.contains('/') || name.starts_with('.') || name.is_empty() {
                return Err(PlanError::BadPath(PathBuf::from(name)));
            }
            let host = Path::new("/etc").join(name);
            etc_file(&mut ops, &scratch.join(format!("etc{i}")), &host, &staged, &mut mkdir_all, content)?;
        }
        ops.push(Op::Mkdir(staged(Path::new(OLD_ROOT))?));
        ops.push(Op::PivotRoot { new_root: c(&staging)? });
        let mut finish = vec![Op::DetachOldRoot];
        // The root itself holds only mount points: make it read-only.
        finish.push(Op::Mount {
            source: None,
            target: c(Path::new("/"))?,
            fstype: None,
            flags: libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
            data: None,
        });
        finish.push(Op::Chdir(c(&opts.workdir)?));
        Ok(RootPlan { ops, finish, trees })
    }
}

/// Replaces the staged `target` (showing the host's `dir`) by a read-only tmpfs that holds its
/// entries as they are now: each bound from the original, kept at `keep` in the scratch tmpfs
/// (with everything mounted under it), symlinks copied. An entry made later in `dir` is not
/// shown, and nothing can be made in its place.
fn snapshot_dir(ops: &mut Vec<Op>, keep: &Path, target: CString, dir: &Path) -> Result<(), PlanError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PlanError::Flags { path: dir.to_path_buf(), source: e })?;
    ops.push(Op::Mkdir(c(keep)?));
    ops.push(rec_bind(target.clone(), c(keep)?));
    ops.push(fresh("tmpfs", target.clone(), libc::MS_NOSUID | libc::MS_NODEV, "mode=0755,size=64k"));
    let base = Path::new(std::ffi::OsStr::from_bytes(target.to_bytes())).to_path_buf();
    for entry in entries.flatten() {
        let (name, Ok(meta)) = (entry.file_name(), entry.metadata()) else { continue };
        let (from, to) = (keep.join(&name), base.join(&name));
        if meta.file_type().is_symlink() {
            let link =
                std::fs::read_link(entry.path()).map_err(|e| PlanError::Flags { path: entry.path(), source: e })?;
            ops.push(Op::Symlink { target: c(&link)?, link: c(&to)? });
            continue;
        }
        if meta.is_dir() {
            ops.push(Op::Mkdir(c(&to)?));
        } else if meta.is_file() {
            ops.push(Op::Touch(c(&to)?));
        } else {
            continue;
        }
        ops.push(rec_bind(c(&from)?, c(&to)?));
    }
    ops.push(read_only_again(target, 0));
    Ok(())
}

/// A recursive bind of `source` at `target`.
fn rec_bind(source: CString, target: CString) -> Op {
    Op::Mount { source: Some(source), target, fstype: None, flags: libc::MS_BIND | libc::MS_REC, data: None }
}

/// `target`'s mount made read-only (`bind`: `MS_BIND` to change the mount's own flags, or 0
/// for the filesystem's), without set-id files or devices.
fn read_only_again(target: CString, bind: libc::c_ulong) -> Op {
    let flags = libc::MS_REMOUNT | bind | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    Op::Mount { source: None, target, fstype: None, flags, data: None }
}

/// Adds the steps that make a directory and its missing parents in the staged root.
type MkdirAll<'a> = dyn FnMut(&mut Vec<Op>, &Path) -> Result<(), PlanError> + 'a;

/// Shows `content` at `host` (a file of `/etc`): `file`, in the scratch tmpfs, bound read-only
/// over it, or over where it points when it is a symlink
/// (`/run/systemd/resolve/stub-resolv.conf`), creating that place on the root's tmpfs when no
/// bind shows it.
fn etc_file(
    ops: &mut Vec<Op>,
    file: &Path,
    host: &Path,
    staged: &dyn Fn(&Path) -> Result<CString, PlanError>,
    mkdir_all: &mut MkdirAll<'_>,
    content: &str,
) -> Result<(), PlanError> {
    let Ok(meta) = std::fs::symlink_metadata(host) else {
        // No file: the C library's defaults (for `resolv.conf`, a resolver on 127.0.0.1, which
        // is ours).
        return Ok(());
    };
    let target = if meta.file_type().is_symlink() {
        let link = std::fs::read_link(host).map_err(|e| PlanError::Flags { path: host.to_path_buf(), source: e })?;
        let full = Path::new("/etc").join(link);
        let full = lexical(&full);
        let shown = SYSTEM_DIRS.iter().any(|d| full.starts_with(d));
        if !shown {
            if let Some(parent) = full.parent() {
                mkdir_all(ops, parent)?;
            }
            ops.push(Op::Touch(staged(&full)?));
        } else if !full.exists() {
            return Ok(());
        }
        full
    } else {
        host.to_path_buf()
    };
    ops.push(Op::Write { path: c(file)?, content: content.as_bytes().to_vec() });
    ops.push(Op::Mount {
        source: Some(c(file)?),
        target: staged(&target)?,
        fstype: None,
        flags: libc::MS_BIND,
        data: None,
    });
    ops.push(Op::Mount {
        source: None,
        target: staged(&target)?,
        fstype: None,
        flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        data: None,
    });
    Ok(())
}

/// `path` with `.` and `..` resolved without looking at the filesystem.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// A path as an overlay mount option, which cannot carry the option separators.
fn overlay_path(path: &Path) -> Result<String, PlanError> {
    let text = path.to_str().ok_or_else(|| PlanError::BadPath(path.to_path_buf()))?;
    if text.contains([',', ':', '\\', '=']) {
        return Err(PlanError::BadPath(path.to_path_buf()));
    }
    Ok(text.to_owned())
}

/// A new filesystem of `fstype` (tmpfs, devpts) at `target`.
fn fresh(fstype: &str, target: CString, flags: libc::c_ulong, data: &str) -> Op {
    Op::Mount { source: cs(fstype), target, fstype: cs(fstype), flags, data: cs(data) }
}

/// A recursive bind of `host` at `target`, then (for read-only) a remount keeping its locked flags.
fn bind(ops: &mut Vec<Op>, host: &Path, target: CString, read_only: bool) -> Result<(), PlanError> {
    ops.push(Op::Mount {
        source: Some(c(host)?),
        target: target.clone(),
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
    });
    if read_only {
        let keep = locked_flags(host)?;
        ops.push(Op::Mount {
            source: None,
            target,
            fstype: None,
            flags: libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep,
            data: None,
        });
    }
    Ok(())
}
