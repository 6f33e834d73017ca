//! What an exec actually runs, as opposed to what its `argv[0]` says.
//!
//! Exec rules that read `argv[0]` are fooled by `exec -a ls id`, by a copy of `/usr/bin/id`
//! under another name, by a symlink to it, and by `execv("/usr/bin/id", ["true"])`. The
//! identity of an exec is read from the file the kernel is asked to execute, inside the
//! caller's root:
//!
//! - its canonical path: the path with every symlink resolved as the caller would resolve it
//!   (relative to the caller's root, never escaping it);
//! - whether it lies on a mount the agent can write (the workdir, `/tmp`, a writable path): a
//!   file there can be anything;
//! - for such a file, the system executable it is a byte-for-byte copy of, if any, looked up by
//!   size first and then by content among the executables of the read-only system directories
//!   (the index is built once per session, at the first exec of a writable file);
//! - whether it is anonymous: a memfd or a deleted file, run through a descriptor
//!   (`fexecve`, `execveat(AT_EMPTY_PATH)`, `/proc/self/fd/N`), which no path names.
//!
//! Hard links of system executables cannot be made in a writable place: every such place is a
//! mount of its own, and `link(2)` does not cross mounts.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// The most symlinks followed in one path, as the kernel's own limit.
const MAX_LINKS: usize = 40;
/// Files larger than this are not compared byte for byte (no system executable is this big in
/// practice; a copy that large is reported as a writable executable).
const MAX_COMPARE: u64 = 256 << 20;

/// The program an exec runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Program {
    /// The canonical path inside the sandbox (for an anonymous program, what the descriptor
    /// shows, such as `/memfd:x (deleted)`).
    pub path: String,
    /// It lies on a mount the agent can write.
    pub writable: bool,
    /// The system executable it is a byte-for-byte copy of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_of: Option<String>,
    /// Run through a descriptor to a file no path names (a memfd, a deleted file).
    pub anonymous: bool,
}

/// A file's (device, inode, change time in seconds and nanoseconds, size): a rewrite changes it.
type FileVersion = (u64, u64, i64, u64, u64);

/// Identifies programs for one session.
#[derive(Debug)]
pub struct Identifier {
    /// The host's read-only system directories, whose executables copies are compared with.
    system: Vec<PathBuf>,
    /// Size to the system executables of that size, built at the first writable exec.
    index: OnceLock<HashMap<u64, Vec<PathBuf>>>,
    /// Paths under the system directories whose resolution never left them, with what they
    /// run: nothing there can change inside the sandbox (read-only binds, and no `mount`), so
    /// the shell's thousandth `/bin/true` costs a lookup.
    known: Mutex<HashMap<String, Program>>,
    /// Copies already compared, by (device, inode, change time, size): a file the agent
    /// rewrites gets a new change time.
    copies: Mutex<HashMap<FileVersion, Option<String>>>,
}

impl Identifier {
    /// An identifier comparing with the executables under `system` (host paths, which the
    /// sandbox shows at the same places).
    pub fn new(system: Vec<PathBuf>) -> Self {
        Identifier {
            system,
            index: OnceLock::new(),
            known: Mutex::new(HashMap::new()),
            copies: Mutex::new(HashMap::new()),
        }
    }

    /// The program that `pid`'s exec of `path` (absolute, inside its root) runs; `fd` is the
    /// caller's descriptor when the exec names one (`execveat` with an empty path, or a path
    /// `/proc/self/fd/N` or `/dev/fd/N`).
    pub fn identify(&self, pid: u32, path: &str, fd: Option<i32>) -> io::Result<Program> {
        if let Some(fd) = fd.or_else(|| fd_path(path)) {
            return self.by_descriptor(pid, fd);
        }
        if let Some(known) = lock(&self.known).get(path) {
            return Ok(known.clone());
        }
        let root = rustix::fs::open(
            format!("/proc/{pid}/root").as_str(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let (canonical, stayed_in_system) = resolve_in_root(&root, path)?;
        // One descriptor for everything below: the mount, the version and the bytes compared
        // are all of the same file, whatever the agent renames meanwhile.
        let beneath = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS;
        let file = match rustix::fs::openat2(
            &root,
            canonical.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            beneath,
        ) {
            Ok(fd) => fd,
            // Execute-only: it can be run but not read, so not compared.
            Err(rustix::io::Errno::ACCESS) => {
                rustix::fs::openat2(&root, canonical.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), beneath)?
            }
            Err(e) => return Err(e.into()),
        };
        let writable = on_writable_mount(&file)?;
        let mut program = Program { path: canonical, writable, copy_of: None, anonymous: false };
        if writable {
            program.copy_of = self.cached_copy_of(file)?;
        } else if stayed_in_system && in_system(path) {
            lock(&self.known).insert(path.to_owned(), program.clone());
        }
        Ok(program)
    }

    /// What `path` runs, when the session has identified it already (see `known`).
    pub fn known(&self, path: &str) -> Option<Program> {
        lock(&self.known).get(path).cloned()
    }

    fn by_descriptor(&self, pid: u32, fd: i32) -> io::Result<Program> {
        let link = format!("/proc/{pid}/fd/{fd}");
        let shown = std::fs::read_link(&link).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let file = match rustix::fs::open(link.as_str(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(_) => rustix::fs::open(link.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?,
        };
        let st = rustix::fs::fstat(&file)?;
        let anonymous = st.st_nlink == 0 || shown.starts_with("/memfd:") || shown.ends_with(" (deleted)");
        let writable = on_writable_mount(&file).unwrap_or(true);
        let copy_of = if writable && !anonymous { self.cached_copy_of(file)? } else { None };
        Ok(Program { path: shown, writable, copy_of, anonymous })
    }

    /// [`Identifier::copy_of`], remembered by the file's version: a rewrite changes its ctime.
    fn cached_copy_of(&self, file: OwnedFd) -> io::Result<Option<String>> {
        let st = rustix::fs::fstat(&file)?;
        let key = (st.st_dev, st.st_ino, st.st_ctime, st.st_ctime_nsec, st.st_size as u64);
        if let Some(copy) = lock(&self.copies).get(&key).cloned() {
            return Ok(copy);
        }
        let copy = self.copy_of(file)?;
        lock(&self.copies).insert(key, copy.clone());
        Ok(copy)
    }

    /// The system executable whose bytes `file` has, if any (`None` for a file that cannot be
    /// read: an `O_PATH` descriptor of an execute-only file).
    fn copy_of(&self, file: OwnedFd) -> io::Result<Option<String>> {
        let mut file = std::fs::File::from(file);
        let size = file.metadata()?.len();
        if size > MAX_COMPARE {
            return Ok(None);
        }
        let index = self.index.get_or_init(|| index(&self.system));
        let Some(candidates) = index.get(&size) else { return Ok(None) };
        let mut bytes = Vec::with_capacity(size as usize);
        if file.read_to_end(&mut bytes).is_err() {
            return Ok(None);
        }
        for candidate in candidates {
            if std::fs::read(candidate).is_ok_and(|other| other == bytes) {
                return Ok(Some(candidate.to_string_lossy().into_owned()));
            }
        }
        Ok(None)
    }
}

/// `N` when `path` is `/proc/self/fd/N`, `/proc/thread-self/fd/N` or `/dev/fd/N`: the
/// caller's descriptor, which resolving the path here would take for the supervisor's own.
pub(crate) fn fd_path(path: &str) -> Option<i32> {
    ["/proc/self/fd/", "/proc/thread-self/fd/", "/dev/fd/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))
        .and_then(|n| n.parse().ok())
}

/// True when the mount holding `file` is writable.
fn on_writable_mount(file: &OwnedFd) -> io::Result<bool> {
    let st = rustix::fs::fstatvfs(file.as_fd())?;
    Ok(!st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Size to executables: the dynamic loaders wherever the system keeps them, and the regular
/// files with an execute bit in each system directory and its `bin`, `sbin`, `libexec`,
/// `local/bin` and `local/sbin` (symlinks not followed: their targets are found where they
/// lie). Helpers kept elsewhere (`/usr/lib/git-core`) are not indexed: a copy of one is judged
/// as a writable program of its own.
fn index(dirs: &[PathBuf]) -> HashMap<u64, Vec<PathBuf>> {
    let mut out: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    let mut add = |path: PathBuf, meta: &std::fs::Metadata| {
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 && meta.size() > 0 {
            let same = out.entry(meta.size()).or_default();
            if !same.contains(&path) {
                same.push(path);
            }
        }
    };
    // The dynamic loaders, wherever the system keeps them: a copy of one runs any file.
    for dir in ["/lib64", "/lib", "/usr/lib64", "/usr/lib"] {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let candidates: Vec<PathBuf> = if path.is_dir() {
                std::fs::read_dir(&path).map(|e| e.flatten().map(|e| e.path()).collect()).unwrap_or_default()
            } else {
                vec![path]
            };
            for c in
                candidates.into_iter().filter(|c| c.file_name().and_then(|n| n.to_str()).is_some_and(is_loader_name))
            {
                if let Ok(meta) = std::fs::metadata(&c) {
                    add(c.canonicalize().unwrap_or(c), &meta);
                }
            }
        }
    }
    for dir in dirs {
        for sub in ["bin", "sbin", "libexec", "local/bin", "local/sbin", ""] {
            let at = dir.join(sub);
            let Ok(entries) = std::fs::read_dir(&at) else { continue };
            for entry in entries.flatten() {
                if let Ok(meta) = entry.metadata() {
                    add(entry.path(), &meta);
                }
            }
        }
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// True when `path` lies under one of the sandbox's system directories.
fn in_system(path: &str) -> bool {
    crate::mounts::SYSTEM_DIRS
        .iter()
        .any(|d| path.strip_prefix(d).is_some_and(|rest| rest.is_empty() || rest.starts_with('/')))
}

/// `path` (absolute) with every symlink resolved inside `root`, as the kernel would for the
/// caller: `..` stops at the root, an absolute link target starts again at the root. Also
/// whether every step of the way lay under the system directories.
pub fn resolve_in_root(root: &OwnedFd, path: &str) -> io::Result<(String, bool)> {
    // The common case first: no symlink on the way, one call.
    let plain = ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS;
    if rustix::fs::openat2(root, path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), plain).is_ok() {
        let path = normal(path);
        let system = in_system(&path);
        return Ok((path, system));
    }
    let mut system = true;
    let mut done: Vec<String> = Vec::new();
    let mut todo: Vec<String> = parts(path).into_iter().rev().collect();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let at = format!("/{}", done.iter().chain([&part]).cloned().collect::<Vec<_>>().join("/"));
        system &= in_system(&at);
        let fd = rustix::fs::openat2(
            root,
            at.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Symlink {
            done.push(part);
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = rustix::fs::readlinkat(&fd, "", Vec::new())?;
        let target = target.to_string_lossy().into_owned();
        if target.starts_with('/') {
            done.clear();
        }
        todo.extend(parts(&target).into_iter().rev());
    }
    Ok((format!("/{}", done.join("/")), system))
}

fn parts(path: &str) -> Vec<String> {
    path.split('/').map(str::to_owned).collect()
}

/// `path` with `.` and `..` taken lexically and no repeated `/`.
fn normal(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    format!("/{}", out.join("/"))
}

/// The system directories of the host that the sandbox shows read-only at the same places.
pub fn system_dirs() -> Vec<PathBuf> {
    crate::mounts::SYSTEM_DIRS.iter().map(PathBuf::from).filter(|p| p.is_dir() && !p.is_symlink()).collect()
}

/// Whether `path`'s file name is a dynamic loader (`ld-linux-x86-64.so.2`, `ld.so`) or a
/// multi-call binary (`busybox`, `toybox`): a program that runs another named by its arguments.
pub fn runs_another(path: &str) -> bool {
    let name = Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or_default();
    is_loader_name(name) || matches!(name, "busybox" | "toybox")
}

/// A dynamic loader's file name (`ld-linux-x86-64.so.2`, `ld.so`, `ld-musl-x86_64.so.1`).
pub fn is_loader_name(name: &str) -> bool {
    name.starts_with("ld-linux") || name.starts_with("ld.so") || name.starts_with("ld-musl")
}

/// The loader options that take a value (glibc's `ld.so --help`); the others stand alone.
const LOADER_OPTIONS_WITH_VALUE: &[&str] = &[
    "--library-path",
    "--preload",
    "--audit",
    "--argv0",
    "--inhibit-rpath",
    "--glibc-hwcaps-prepend",
    "--glibc-hwcaps-mask",
];

/// The index in `argv` of the program a loader run as a command loads: the first argument
/// after the loader's own options (and their values).
pub fn loader_target(argv: &[String]) -> Option<usize> {
    let mut i = 1;
    while let Some(arg) = argv.get(i) {
        if LOADER_OPTIONS_WITH_VALUE.contains(&arg.as_str()) {
            i += 2;
        } else if arg.starts_with("--") {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> OwnedFd {
        rustix::fs::open("/", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap()
    }

    #[test]
    fn symlinks_resolve_inside_the_root_as_the_kernel_would() {
        let dir = std::env::temp_dir().join(format!("portcullis-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/b/prog"), "").unwrap();
        std::os::unix::fs::symlink("b/prog", dir.join("a/rel")).unwrap();
        std::os::unix::fs::symlink(dir.join("a/rel"), dir.join("abs")).unwrap();
        std::os::unix::fs::symlink(".", dir.join("a/b/dot")).unwrap();
        let d = dir.display();
        let r = root();
        let resolve = |p: String| resolve_in_root(&r, &p).unwrap().0;
        assert_eq!(resolve(format!("{d}/abs")), format!("{d}/a/b/prog"));
        assert_eq!(resolve(format!("{d}/a/b/dot/dot/../b/prog")), format!("{d}/a/b/prog"));
        assert_eq!(resolve(format!("{d}/a/./b//prog")), format!("{d}/a/b/prog"));
        assert_eq!(resolve_in_root(&r, "/usr/bin/env").unwrap(), ("/usr/bin/env".to_owned(), true));
        assert!(!resolve_in_root(&r, &format!("{d}/abs")).unwrap().1);
        std::os::unix::fs::symlink("loop", dir.join("loop")).unwrap();
        assert!(resolve_in_root(&r, &format!("{d}/loop")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn descriptor_paths_and_programs_that_run_another_are_recognised() {
        assert_eq!(fd_path("/proc/self/fd/3"), Some(3));
        assert_eq!(fd_path("/dev/fd/10"), Some(10));
        assert_eq!(fd_path("/proc/self/fdx/3"), None);
        assert!(runs_another("/lib64/ld-linux-x86-64.so.2"));
        assert!(runs_another("/bin/busybox") && runs_another("toybox"));
        assert!(!runs_another("/usr/bin/id"));
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(loader_target(&argv(&["ld.so", "--library-path", "/usr/lib", "/tmp/x"])), Some(3));
        assert_eq!(loader_target(&argv(&["ld.so", "--verify", "/tmp/x"])), Some(2));
        assert_eq!(loader_target(&argv(&["ld.so", "--preload"])), None);
    }
}
