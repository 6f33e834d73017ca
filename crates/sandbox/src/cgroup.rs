//! Resource limits for the whole process tree: cgroup v2 where its controllers are enabled,
//! otherwise the v1 memory, pids and cpu hierarchies. The cgroup is created under the
//! supervisor's own (so the host's limits still apply), joined by the child itself (between
//! fork and exec, or by the sandbox's init before it forks the agent; on v2 the init is born in
//! it), and removed when the session ends.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::probe::CgroupBackend;

/// The limits to apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Bytes of memory for the tree (OOM kill past it).
    pub memory: Option<u64>,
    /// Processes and threads in the tree.
    pub pids: Option<u64>,
    /// CPU bandwidth: microseconds per 100 ms period.
    pub cpu_quota_us: Option<u64>,
}

/// A failure to set up a cgroup, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No hierarchy offers the controllers.
    #[error("no cgroup hierarchy offers memory, pids and cpu")]
    Unavailable,
    /// The v2 hierarchy lacks a controller a limit needs.
    #[error("cgroup v2 at `{root}` offers no `{controller}` controller")]
    Missing {
        /// The hierarchy's root.
        root: PathBuf,
        /// The controller.
        controller: &'static str,
    },
    /// A cgroup file could not be read, created or written.
    #[error("cannot set up the cgroup at `{path}`")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io { path: path.to_path_buf(), source }
}

/// A session's cgroup (one directory on v2, one per controller on v1).
#[derive(Debug)]
pub struct Cgroup {
    backend: CgroupBackend,
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// Creates `name` and writes the limits: on v1 under the current process's cgroup in each
    /// hierarchy; on v2 under the current process's cgroup for an unprivileged user (who may
    /// only use a delegated subtree), and under `/portcullis` at the hierarchy's root for root
    /// (a systemd host's own cgroup for a login is a leaf with processes, where no controller
    /// can be enabled for children).
    pub fn create(backend: CgroupBackend, name: &str, limits: CgroupLimits) -> Result<Self, CgroupError> {
        let own = crate::read_kernel_file("/proc/self/cgroup").map_err(io_err(Path::new("/proc/self/cgroup")))?;
        let mut cgroup = Cgroup { backend: backend.clone(), dirs: Vec::new() };
        match backend {
            CgroupBackend::V2 => {
                let dir = v2_parent(&own, limits)?.join(name);
                fs::create_dir(&dir).map_err(io_err(&dir))?;
                cgroup.dirs.push(dir.clone());
                if let Some(m) = limits.memory {
                    write(&dir.join("memory.max"), &m.to_string())?;
                    write(&dir.join("memory.swap.max"), "0").ok();
                }
                if let Some(p) = limits.pids {
                    write(&dir.join("pids.max"), &p.to_string())?;
                }
                if let Some(q) = limits.cpu_quota_us {
                    write(&dir.join("cpu.max"), &format!("{q} 100000"))?;
                }
            }
            CgroupBackend::V1 => {
                // One hierarchy per controller: only those a limit needs (a cgroup costs about
                // 0.1 ms to make and as much to remove).
                for (controller, parent) in v1_parents(&own, limits)? {
                    let dir = parent.join(name);
                    fs::create_dir(&dir).map_err(io_err(&dir))?;
                    cgroup.dirs.push(dir.clone());
                    match controller {
                        "memory" => {
                            if let Some(m) = limits.memory {
                                write(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                                // Without swap accounting this file is absent; the limit above still holds.
                                write(&dir.join("memory.memsw.limit_in_bytes"), &m.to_string()).ok();
                            }
                        }
                        "pids" => {
                            if let Some(p) = limits.pids {
                                write(&dir.join("pids.max"), &p.to_string())?;
                            }
                        }
                        _ => {
                            if let Some(q) = limits.cpu_quota_us {
                                write(&dir.join("cpu.cfs_period_us"), "100000")?;
                                write(&dir.join("cpu.cfs_quota_us"), &q.to_string())?;
                            }
                        }
                    }
                }
            }
        }
        Ok(cgroup)
    }

    /// Checks, without creating anything, that [`Cgroup::create`] on v1 would find its parent
    /// cgroups and may create cgroups in them (an unprivileged user on a host without
    /// delegation may not). For v2, whose parent is set up by `create` itself, this is `Ok`.
    pub fn check_v1(limits: CgroupLimits) -> Result<(), CgroupError> {
        let own = crate::read_kernel_file("/proc/self/cgroup").map_err(io_err(Path::new("/proc/self/cgroup")))?;
        for (_, parent) in v1_parents(&own, limits)? {
            rustix::fs::access(&parent, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
                .map_err(|e| io_err(&parent)(e.into()))?;
        }
        Ok(())
    }

    /// Takes charge of the cgroup `dirs` that a session named `name` left behind (its
    /// supervisor was lost): dropping it kills what is left in them and removes them. Only
    /// plain paths under `/sys/fs/cgroup` whose last part is `name` are taken.
    pub fn adopt(backend: CgroupBackend, name: &str, dirs: Vec<PathBuf>) -> Self {
        use std::path::Component;
        let dirs = dirs
            .into_iter()
            .filter(|d| {
                d.starts_with("/sys/fs/cgroup")
                    && d.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
                    && d.file_name().is_some_and(|n| n == name)
            })
            .collect();
        Cgroup { backend, dirs }
    }

    /// The cgroup's directories (one on v2, one per controller on v1).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The backend in force.
    pub fn backend(&self) -> &CgroupBackend {
        &self.backend
    }

    /// Makes `command`'s child join the cgroup before it execs, so nothing it runs escapes it.
    pub fn join_on_exec(&self, command: &mut Command) -> Result<(), CgroupError> {
        crate::sys::join_on_exec(command, Arc::new(self.join_files()?));
        Ok(())
    }

    /// Files that move the single-threaded process writing "0" to them into the cgroup (see
    /// [`join`]). Opened here, by the supervisor, so that a child in a new user namespace, which
    /// could not open them itself, can still join: the kernel checks the opener's credentials.
    ///
    /// On v1 these are the `tasks` files. A process moving its one thread that way skips the
    /// kernel's global cgroup migration lock, whose write side waits for an RCU grace period
    /// (5–25 ms, measured), where writing a pid to `cgroup.procs` takes it every time.
    pub(crate) fn join_files(&self) -> Result<Vec<OwnedFd>, CgroupError> {
        let file = if self.backend == CgroupBackend::V1 { "tasks" } else { "cgroup.procs" };
        self.dirs
            .iter()
            .map(|d| {
                let path = d.join(file);
                OpenOptions::new().write(true).open(&path).map(OwnedFd::from).map_err(io_err(&path))
            })
            .collect()
    }

    /// On v2, the cgroup's directory, for `clone3(CLONE_INTO_CGROUP)`; `None` on v1.
    pub(crate) fn clone_target(&self) -> Option<std::os::fd::OwnedFd> {
        if self.backend != CgroupBackend::V2 {
            return None;
        }
        let dir = self.dirs.first()?;
        File::open(dir).ok().map(std::os::fd::OwnedFd::from)
    }

    /// The process ids in the cgroup.
    pub fn pids(&self) -> Vec<u32> {
        let Some(dir) = self.dirs.first() else { return Vec::new() };
        crate::read_kernel_file(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    }

    /// True when the memory limit killed something.
    pub fn oom_killed(&self) -> bool {
        let file = if self.backend == CgroupBackend::V1 { "memory.oom_control" } else { "memory.events" };
        self.read_first(file)
            .lines()
            .any(|l| (l.starts_with("oom_kill ") || l.starts_with("oom_kill\t")) && !l.ends_with(" 0"))
    }

    /// True when a fork failed at the pids limit.
    pub fn pids_limit_hit(&self) -> bool {
        self.read_first("pids.events").lines().any(|l| l.strip_prefix("max ").is_some_and(|n| n.trim() != "0"))
    }

    /// `file` from the first of the cgroup's directories that has it (on v1 a controller's
    /// files are in its own hierarchy's directory only); empty when none has.
    fn read_first(&self, file: &str) -> String {
        self.dirs.iter().find_map(|d| crate::read_kernel_file(d.join(file)).ok()).unwrap_or_default()
    }

    /// Kills every process in the cgroup with SIGKILL, repeating until it is empty.
    pub fn kill_all(&self) {
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        for dir in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// The v1 cgroups of the current process, where its sessions' go, for the controllers `limits`
/// need (memory, pids, cpu).
fn v1_parents(own: &str, limits: CgroupLimits) -> Result<Vec<(&'static str, PathBuf)>, CgroupError> {
    [("memory", limits.memory.is_some()), ("pids", limits.pids.is_some()), ("cpu", limits.cpu_quota_us.is_some())]
        .into_iter()
        .filter(|(_, needed)| *needed)
        .map(|(controller, _)| {
            let rel = own
                .lines()
                .find_map(|l| {
                    let mut parts = l.splitn(3, ':');
                    let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                    list.split(',').any(|c| c == controller).then_some(path)
                })
                .ok_or(CgroupError::Unavailable)?;
            Ok((controller, Path::new("/sys/fs/cgroup").join(controller).join(rel.trim_start_matches('/'))))
        })
        .collect()
}

/// Moves the calling process, which must be single-threaded, into the cgroup whose
/// [`Cgroup::join_files`] these are. Makes only `write` system calls, so it may run between
/// fork and exec.
pub(crate) fn join(files: &[OwnedFd]) -> io::Result<()> {
    for file in files {
        rustix::io::write(file, b"0")?;
    }
    Ok(())
}

/// The v2 parent for session cgroups, with the controllers the limits need enabled for its
/// children.
fn v2_parent(own: &str, limits: CgroupLimits) -> Result<PathBuf, CgroupError> {
    let mounts = crate::read_kernel_file("/proc/self/mounts").map_err(io_err(Path::new("/proc/self/mounts")))?;
    let root = mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .and_then(|f| f.get(1).map(PathBuf::from))
        .ok_or(CgroupError::Unavailable)?;
    if !rustix::process::geteuid().is_root() {
        let rel = own.lines().find_map(|l| l.strip_prefix("0::")).ok_or(CgroupError::Unavailable)?;
        return Ok(root.join(rel.trim_start_matches('/')));
    }
    let parent = root.join("portcullis");
    match fs::create_dir(&parent) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_err(&parent)(e)),
        _ => {}
    }
    let needed =
        [("memory", limits.memory.is_some()), ("pids", limits.pids.is_some()), ("cpu", limits.cpu_quota_us.is_some())];
    let offered = crate::read_kernel_file(root.join("cgroup.controllers")).unwrap_or_default();
    if let Some((controller, _)) = needed.iter().find(|(c, used)| *used && !offered.split_whitespace().any(|o| o == *c))
    {
        return Err(CgroupError::Missing { root, controller });
    }
    // Down from the root: a controller reaches a cgroup only through every parent's subtree_control.
    for dir in [&root, &parent] {
        let control = dir.join("cgroup.subtree_control");
        let enabled = crate::read_kernel_file(&control).unwrap_or_default();
        for (controller, _) in needed.iter().filter(|(c, used)| *used && !enabled.split_whitespace().any(|e| e == *c)) {
            write(&control, &format!("+{controller}"))?;
        }
    }
    Ok(parent)
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(value.as_bytes())).map_err(io_err(path))
}
