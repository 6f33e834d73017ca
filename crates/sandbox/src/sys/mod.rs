//! The few operations no safe wrapper offers. One operation per `unsafe` block, each with the
//! precondition it relies on.
#![allow(unsafe_code, reason = "raw system calls the sandbox needs and no safe crate wraps")]

pub(crate) mod idmap;
pub(crate) mod net;
pub(crate) mod notify;
pub(crate) mod process;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// `landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`: the kernel's Landlock
/// ABI version, or the error that says why there is none.
pub(crate) fn landlock_abi() -> io::Result<i64> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0 the kernel reads and writes no memory of
    // ours; the call only returns the ABI version or sets errno.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Whether seccomp offers user notification (`SECCOMP_GET_ACTION_AVAIL`): `Ok(false)` when the
/// kernel has seccomp without it, an error (`EINVAL`, `ENOSYS`) when it has no seccomp at all.
pub(crate) fn seccomp_user_notif_available() -> io::Result<bool> {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_ulong = 2;
    const SECCOMP_RET_USER_NOTIF: u32 = 0x7fc0_0000;
    let action = SECCOMP_RET_USER_NOTIF;
    // SAFETY: the kernel reads one u32 at the pointer, which outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &raw const action) };
    if ret == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) { Ok(false) } else { Err(err) }
}

/// Starts `/bin/true` in new user, mount, PID, network, IPC and UTS namespaces, to learn
/// whether this user may create them here.
pub(crate) fn try_namespaces() -> io::Result<()> {
    let mut command = Command::new("/bin/true");
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS;
    // SAFETY: the closure runs in the forked child before exec and makes one async-signal-safe
    // system call (`unshare`); it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(move || if libc::unshare(flags) == 0 { Ok(()) } else { Err(io::Error::last_os_error()) });
    }
    let status = command.status()?;
    if status.success() { Ok(()) } else { Err(io::Error::other(format!("the probe child exited with {status}"))) }
}

/// A seccomp program in the kernel's layout, built before any fork.
#[derive(Debug)]
pub(crate) struct Filter {
    filters: Vec<libc::sock_filter>,
}

impl Filter {
    pub(crate) fn new(prog: &[crate::seccomp::Insn]) -> io::Result<Self> {
        if prog.len() > usize::from(u16::MAX) {
            return Err(io::Error::other("the seccomp program is too long"));
        }
        Ok(Filter {
            filters: prog.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect(),
        })
    }

    /// `prctl(PR_SET_NO_NEW_PRIVS)` then `seccomp(SECCOMP_SET_MODE_FILTER)`. Makes only those two
    /// system calls and allocates nothing, so it may run between fork and exec.
    pub(crate) fn install(&self) -> io::Result<()> {
        self.install_with(0).map(drop)
    }

    /// As [`Filter::install`], asking for a user-notification listener, which is returned.
    pub(crate) fn install_with_listener(&self) -> io::Result<OwnedFd> {
        let fd = self.install_with(libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
        // SAFETY: with NEW_LISTENER the kernel returned a fresh descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
    }

    fn install_with(&self, flags: libc::c_ulong) -> io::Result<libc::c_long> {
        const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
        // INVARIANT: `new` checked that the length fits in u16.
        let fprog = libc::sock_fprog { len: self.filters.len() as u16, filter: self.filters.as_ptr().cast_mut() };
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fprog` points at `self.filters`, which outlives the call; the kernel copies
        // the program and keeps no pointer to our memory.
        let ret = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &raw const fprog) };
        if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
    }
}

/// New namespaces and the identity maps for the new user namespace, formatted before the fork.
#[derive(Debug)]
pub(crate) struct NamespaceSetup {
    pub(crate) flags: libc::c_int,
    pub(crate) uid_map: Vec<u8>,
    pub(crate) gid_map: Vec<u8>,
}

impl NamespaceSetup {
    /// `unshare`, then `setgroups` denied and the uid and gid maps written. Makes only system
    /// calls on constant paths and pre-built buffers.
    fn enter(&self) -> io::Result<()> {
        use rustix::fs::{Mode, OFlags, open};
        // SAFETY: unshare takes a flag word only.
        if unsafe { libc::unshare(self.flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if self.flags & libc::CLONE_NEWUSER != 0 {
            for (path, data) in [
                (c"/proc/self/setgroups", &b"deny"[..]),
                (c"/proc/self/uid_map", &self.uid_map),
                (c"/proc/self/gid_map", &self.gid_map),
            ] {
                let fd = open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()).map_err(io::Error::from)?;
                rustix::io::write(&fd, data).map_err(io::Error::from)?;
            }
        }
        Ok(())
    }
}

/// What a child applies to itself between fork and exec, in order.
#[derive(Debug)]
pub(crate) struct ChildWalls {
    pub(crate) namespaces: Option<NamespaceSetup>,
    pub(crate) root: Option<crate::mounts::RootPlan>,
    pub(crate) landlock: Option<std::os::fd::OwnedFd>,
    pub(crate) filter: Option<Filter>,
    /// `(resource, limit)` pairs, soft and hard alike.
    pub(crate) rlimits: Vec<(crate::rlimit::Resource, u64)>,
}

impl ChildWalls {
    /// A new session, rlimits, every inherited descriptor marked close-on-exec,
    /// `no_new_privs`, then Landlock, then seccomp. Seccomp last: the filter may refuse calls the
    /// steps before it make. Makes only system calls and allocates nothing.
    fn apply(&self) -> io::Result<()> {
        // Namespaces first: the seccomp filter installed last refuses `unshare`.
        if let Some(ns) = &self.namespaces {
            ns.enter()?;
        }
        // The new root needs the mount namespace entered above.
        if let Some(root) = &self.root {
            run_root_plan(&root.ops, &[], &mut |_| ())?;
            run_root_plan(&root.finish, &[], &mut |_| ())?;
        }
        // SECURITY: a new session has no controlling terminal to inject keystrokes into.
        // SAFETY: setsid takes no arguments.
        if unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        for (resource, limit) in &self.rlimits {
            let value = libc::rlimit { rlim_cur: *limit, rlim_max: *limit };
            // SAFETY: `value` is a valid rlimit the kernel only reads.
            if unsafe { libc::setrlimit(resource.raw(), &raw const value) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SECURITY: descriptors the supervisor holds must not reach the agent; marking them
        // close-on-exec (rather than closing) keeps std's exec-error pipe working.
        close_on_exec_from(3)?;
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(fd) = &self.landlock {
            landlock_restrict(fd)?;
        }
        if let Some(filter) = &self.filter {
            filter.install()?;
        }
        Ok(())
    }
}

/// `landlock_restrict_self(fd, 0)`: enforces a prepared ruleset on the calling thread.
pub(crate) fn landlock_restrict(fd: &OwnedFd) -> io::Result<()> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
    // SAFETY: `landlock_restrict_self(fd, 0)` takes a ruleset descriptor we own and a flag word;
    // it reads no memory of ours.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, raw, 0u32) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks every descriptor from `first` up close-on-exec.
pub(crate) fn close_on_exec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range takes integer arguments only.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the child `command` starts apply `walls` before it execs.
pub(crate) fn walls_on_exec(command: &mut Command, walls: std::sync::Arc<ChildWalls>) {
    // SAFETY: the closure only calls `ChildWalls::apply`, which makes system calls and neither
    // allocates nor takes locks, so it is safe after fork in a threaded parent.
    unsafe {
        command.pre_exec(move || walls.apply());
    }
}

/// Makes the child `command` starts join a cgroup (`crate::cgroup::join`) before it execs.
pub(crate) fn join_on_exec(command: &mut Command, files: std::sync::Arc<Vec<OwnedFd>>) {
    // SAFETY: `join` only makes `write` system calls on descriptors opened before the fork; it
    // neither allocates nor takes locks.
    unsafe {
        command.pre_exec(move || crate::cgroup::join(&files));
    }
}

/// Restores the default action for SIGPIPE, which Rust's runtime ignores: a command line tool
/// whose reader went away (`| head`) should end quietly, not report a write error.
pub(crate) fn default_sigpipe() {
    // SAFETY: installing SIG_DFL for SIGPIPE touches no memory of ours and runs no handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// [`crate::mounts::OLD_ROOT`]: relative to the new root for `pivot_root` (the host's root is
/// still `/` when it runs), absolute once the new root is `/`.
const OLD_ROOT_REL: &std::ffi::CStr = c".old-root";
const OLD_ROOT_ABS: &std::ffi::CStr = c"/.old-root";

/// Runs a root plan: mkdirs, binds, tmpfs mounts and `pivot_root`, with pre-built paths only.
/// Directories the plan keeps open are handed to `keep` (which must not allocate when the plan
/// runs between fork and exec).
/// `trees` are the detached trees the plan attaches (`RootPlan::trees`, copied by the supervisor).
pub(crate) fn run_root_plan(
    ops: &[crate::mounts::Op],
    trees: &[OwnedFd],
    keep: &mut dyn FnMut(OwnedFd),
) -> io::Result<()> {
    use crate::mounts::Op;
    let check = |ret: libc::c_int| if ret == 0 { Ok(()) } else { Err(io::Error::last_os_error()) };
    let ptr = |s: &Option<std::ffi::CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    for op in ops {
        match op {
            Op::Mkdir(path) => {
                // SAFETY: `path` is a NUL-terminated string we own.
                if unsafe { libc::mkdir(path.as_ptr(), 0o755) } != 0
                    && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(io::Error::last_os_error());
                }
            }
            Op::Touch(path) => {
                // SAFETY: `path` is a NUL-terminated string we own; the descriptor is closed below.
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` was just opened and is not used again.
                unsafe { libc::close(fd) };
            }
            Op::Write { path, content } => {
                // SAFETY: `path` is a NUL-terminated string we own; the descriptor is closed below.
                let fd = unsafe {
                    libc::open(path.as_ptr(), libc::O_CREAT | libc::O_TRUNC | libc::O_WRONLY | libc::O_CLOEXEC, 0o644)
                };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` was just opened and is not used again.
                let file = unsafe { OwnedFd::from_raw_fd(fd) };
                rustix::io::write(&file, content).map_err(io::Error::from)?;
            }
            Op::Symlink { target, link } => {
                // SAFETY: both are NUL-terminated strings we own.
                check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })?;
            }
            Op::Mount { source, target, fstype, flags, data } => {
                // SAFETY: every pointer is null or a NUL-terminated string we own for the call.
                check(unsafe { libc::mount(ptr(source), target.as_ptr(), ptr(fstype), *flags, ptr(data).cast()) })?;
            }
            Op::PivotRoot { new_root } => {
                // SAFETY: `new_root` is a NUL-terminated string we own.
                check(unsafe { libc::chdir(new_root.as_ptr()) })?;
                // SAFETY: both arguments are NUL-terminated static strings.
                let moved = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), OLD_ROOT_REL.as_ptr()) };
                check(moved as libc::c_int)?;
                // SAFETY: "/" is a static string.
                check(unsafe { libc::chdir(c"/".as_ptr()) })?;
            }
            Op::DetachOldRoot => {
                // SAFETY: OLD_ROOT_ABS is a NUL-terminated static string.
                check(unsafe { libc::umount2(OLD_ROOT_ABS.as_ptr(), libc::MNT_DETACH) })?;
                // SAFETY: as above.
                check(unsafe { libc::rmdir(OLD_ROOT_ABS.as_ptr()) })?;
            }
            Op::Chdir(path) => {
                // SAFETY: `path` is a NUL-terminated string we own.
                check(unsafe { libc::chdir(path.as_ptr()) })?;
            }
            Op::AttachTree { tree, target } => {
                let tree = trees.get(*tree).ok_or_else(|| io::Error::other("a host tree to attach was not passed"))?;
                idmap::attach_tree(tree, target)?;
            }
            Op::Keep(path) => {
                use rustix::fs::{Mode, OFlags, open};
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                keep(open(path.as_c_str(), flags, Mode::empty()).map_err(io::Error::from)?);
            }
        }
    }
    Ok(())
}
