//! Process creation and signals for the session: `clone3` into new namespaces, the init's
//! signal mask and wait, and signals to a whole namespace.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `CLONE_PIDFD`: the kernel returns a pidfd for the child.
const CLONE_PIDFD: u64 = 0x1000;

/// The parent's view of a cloned child.
#[derive(Debug)]
pub(crate) struct Child {
    /// The child's pid in the parent's PID namespace.
    pub(crate) pid: i32,
    /// A pidfd for the child, for signals and waits that cannot hit a recycled pid.
    pub(crate) pidfd: OwnedFd,
}

/// `clone3` with `flags` (namespace flags) and `SIGCHLD` as the exit signal, like `fork`.
/// Returns `None` in the child.
///
/// The caller must be single-threaded: the child continues with a copy of this one thread and
/// uses the allocator and the standard library, which is sound only when no other thread held
/// a lock at the moment of the clone. [`crate::session`] checks this before calling.
/// With `cgroup` (a cgroup v2 directory), the child starts in that cgroup (`CLONE_INTO_CGROUP`).
pub(crate) fn clone_into(flags: u64, cgroup: Option<&OwnedFd>) -> io::Result<Option<Child>> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone_args is plain data; zero is a valid value of every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags | CLONE_PIDFD;
    args.pidfd = (&raw mut pidfd) as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = std::os::fd::AsRawFd::as_raw_fd(fd) as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size passed; `pidfd` outlives the call; with
    // no stack given the child runs on a copy of ours, as after fork. Single-threadedness is the
    // caller's documented obligation.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &raw mut args, std::mem::size_of::<libc::clone_args>()) };
    match ret {
        r if r < 0 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => {
            // SAFETY: the kernel stored a fresh pidfd that nothing else owns.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            Ok(Some(Child { pid: i32::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?, pidfd }))
        }
    }
}

/// Runs `child` in a new process that shares this process's memory until it execs or exits
/// (`clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does), on a stack of its own; returns the
/// child's pid once it has done either. `SIGCHLD` is its exit signal.
///
/// Nothing of this process's memory is copied: a `fork` copies the page tables and then takes a
/// fault for every page either side writes, which for the init (itself a copy of the
/// supervisor) is most of what starting the agent cost.
///
/// The caller must be single-threaded: this thread is suspended while the child runs, and the
/// child uses the allocator and the standard library as this thread would (it shares its
/// thread-local storage too). The child must not change what is shared with the caller and
/// would outlive the exec: memory the caller reads afterwards, and the memory image's own
/// flags (`PR_SET_DUMPABLE` is one). Its descriptor table, signal handlers, credentials, limits
/// and session are its own (none of `CLONE_FILES`, `CLONE_SIGHAND`, `CLONE_THREAD`).
pub(crate) fn spawn_sharing_memory(child: &mut dyn FnMut() -> i32) -> io::Result<libc::pid_t> {
    extern "C" fn trampoline(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `&mut dyn FnMut` below, which outlives the child: the caller is
        // suspended until the child has exec'd or exited.
        let child = unsafe { &mut *arg.cast::<&mut dyn FnMut() -> i32>() };
        child()
    }
    // Enough for the walls and the exec.
    let stack = ChildStack::new(512 * 1024)?;
    let mut child = child;
    let arg = (&raw mut child).cast::<libc::c_void>();
    // SAFETY: the child runs `trampoline` on its own stack, with `arg` valid while this thread
    // is suspended (CLONE_VFORK: until the child execs or exits), and the stack is unmapped only
    // after that. The caller is single-threaded, as documented, so the child's use of the shared
    // allocator and thread-local storage cannot meet another thread's.
    let pid = unsafe { libc::clone(trampoline, stack.top(), libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD, arg) };
    if pid < 0 { Err(io::Error::last_os_error()) } else { Ok(pid) }
}

/// A stack for a child cloned with `CLONE_VM`, above a guard page (an overflow faults instead
/// of writing over the memory it shares); unmapped when dropped, which must not happen while
/// the child still runs on it.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    const GUARD: usize = 4096;

    fn new(size: usize) -> io::Result<Self> {
        let len = size + Self::GUARD;
        // SAFETY: a fresh private anonymous mapping; no memory of ours is involved.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: `base` is the start of the mapping just made, and GUARD is within it.
        if unsafe { libc::mprotect(base, Self::GUARD, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Where the stack starts: it grows down from the mapping's end (page-aligned, so 16-byte
    /// aligned).
    fn top(&self) -> *mut libc::c_void {
        self.base.cast::<u8>().wrapping_add(self.len).cast()
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and its owner keeps it until no child runs on it.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// An `execve` prepared in full before it is made: the path, the arguments and the
/// environment as C strings, and the pointer arrays the kernel reads.
pub(crate) struct ExecImage {
    path: CString,
    /// Owns what `argv` and `envp` point at.
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl ExecImage {
    /// `argv` in order (`argv[0]` first) and `env` as `NAME=value` strings. A NUL byte in any
    /// of them is an error, since the kernel would cut the string there.
    pub(crate) fn new<'a>(
        path: &Path,
        argv: impl Iterator<Item = &'a OsStr>,
        env: impl Iterator<Item = (&'a OsStr, &'a OsStr)>,
    ) -> io::Result<Self> {
        let c = |bytes: Vec<u8>| {
            CString::new(bytes).map_err(|_| io::Error::other("a NUL byte in the command or its environment"))
        };
        let path = c(path.as_os_str().as_bytes().to_vec())?;
        let mut strings = Vec::new();
        for arg in argv {
            strings.push(c(arg.as_bytes().to_vec())?);
        }
        let args = strings.len();
        for (name, value) in env {
            strings.push(c([name.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
        let pointers = |list: &[CString]| list.iter().map(|s| s.as_ptr()).chain([std::ptr::null()]).collect();
        let (argv, envp) = (pointers(&strings[..args]), pointers(&strings[args..]));
        Ok(ExecImage { path, _strings: strings, argv, envp })
    }

    /// Makes the `execve`; returns only its error.
    pub(crate) fn run(&self) -> io::Error {
        // SAFETY: the path and every pointer in `argv` and `envp` point at NUL-terminated
        // strings owned by `self`, and both arrays end with a null pointer.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// The signals the init forwards, and `SIGCHLD`, which it waits for.
pub(crate) const FORWARDED: &[libc::c_int] =
    &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGWINCH];

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t we own.
    unsafe { libc::sigemptyset(&raw mut set) };
    for &s in signals {
        // SAFETY: as above; `s` is a valid signal number.
        unsafe { libc::sigaddset(&raw mut set, s) };
    }
    set
}

/// Blocks `signals` in the calling thread (so they queue for [`wait_signal`] or a signalfd).
pub(crate) fn block(signals: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is a valid sigset_t; the old mask is not asked for.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
    if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) }
}

/// Unblocks every signal and restores the default action of the forwarded ones, for a child
/// about to exec.
pub(crate) fn reset_signals() -> io::Result<()> {
    let empty = sigset(&[]);
    // SAFETY: `empty` is a valid sigset_t.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &raw const empty, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    for &s in FORWARDED.iter().chain(&[libc::SIGCHLD, libc::SIGPIPE]) {
        // SAFETY: installing SIG_DFL runs no handler of ours.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
    Ok(())
}

/// Waits for one of `signals` (which must be blocked) and returns it.
pub(crate) fn wait_signal(signals: &[libc::c_int]) -> io::Result<libc::c_int> {
    let set = sigset(signals);
    loop {
        // SAFETY: `set` is a valid sigset_t; no siginfo is asked for.
        let sig = unsafe { libc::sigwaitinfo(&raw const set, std::ptr::null_mut()) };
        if sig >= 0 {
            return Ok(sig);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A signalfd for `signals` (which must be blocked), so a poll loop can wait for them.
pub(crate) fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &raw const set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one signal number from a signalfd, if one is pending.
pub(crate) fn read_signalfd(fd: &OwnedFd) -> Option<libc::c_int> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    // SAFETY: the buffer is one signalfd_siginfo, which is what the kernel writes.
    let n = unsafe {
        libc::read(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            (&raw mut info).cast(),
            std::mem::size_of::<libc::signalfd_siginfo>(),
        )
    };
    (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize).then_some(info.ssi_signo as libc::c_int)
}

/// Shows `name` as this process's command line (`/proc/PID/cmdline`, what `ps` prints) and as
/// its command name: the argument area the kernel set up at exec is overwritten in place, the
/// rest of it filled with NULs (`name` is cut to fit a shorter area). For the init, a copy of
/// the supervisor, whose arguments would otherwise show the supervisor's command line (the
/// binary's host path, the policy's path) to everything in the sandbox.
pub(crate) fn rename(name: &str) -> io::Result<()> {
    let stat = crate::read_kernel_file("/proc/self/stat")?;
    // The fields after the command name's closing parenthesis start with the 3rd; the
    // argument area's bounds are the 48th and 49th, the environment's the 50th and 51st.
    let bounds = |first: usize| {
        stat.rfind(')')
            .and_then(|i| {
                let mut fields = stat[i + 1..].split_ascii_whitespace().skip(first - 3);
                Some((fields.next()?.parse::<usize>().ok()?, fields.next()?.parse::<usize>().ok()?))
            })
            .filter(|(start, end)| start < end)
    };
    // SECURITY: the init is a copy of the supervisor, and its environment area holds the
    // supervisor's whole host environment (tokens, proxies, paths). Nothing in the init reads
    // its environment (the agent gets its own, scrubbed, at its exec): the area is cleared, so
    // `/proc/1/environ` holds nothing even to a reader past the init's non-dumpable flag.
    if let Some((start, end)) = bounds(50) {
        // SAFETY: [start, end) is this process's own environment area, mapped and writable
        // since its exec; std and libc keep pointers into it, which now point at empty strings.
        unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start).fill(0) };
    }
    let (start, end) = bounds(48).ok_or_else(|| io::Error::other("no argument area to rename the process in"))?;
    let shown = &name.as_bytes()[..name.len().min(end - start - 1)];
    // SAFETY: [start, end) is this process's own argument area, mapped and writable since its
    // exec; nothing in this process reads its arguments after the start (std's copy of argv
    // points here, and only the supervisor uses it, in its own memory). `shown` is shorter
    // than the area, so the area keeps a NUL at its end.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        area[..shown.len()].copy_from_slice(shown);
    }
    rustix::thread::set_name(&std::ffi::CString::new(name).map_err(io::Error::other)?)?;
    Ok(())
}

/// `kill(-1, sig)` from a namespace's init: every other process in the namespace.
pub(crate) fn signal_namespace(sig: libc::c_int) {
    // SAFETY: kill takes integers only.
    unsafe { libc::kill(-1, sig) };
}

/// Sets the real, effective and saved uid and gid to `id` (in the caller's user namespace).
pub(crate) fn become_ids(id: u32) -> io::Result<()> {
    // SAFETY: setresgid and setresuid take integers; the process is single-threaded here, so
    // glibc's cross-thread broadcast has nothing to do.
    if unsafe { libc::setresgid(id, id, id) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(id, id, id) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops every capability: the bounding set (so an exec of a set-uid or root-owned file gains
/// nothing), the ambient set, then, after taking the agent's uid and gid (`id`), the
/// inheritable, permitted and effective sets, with the securebits that keep uid 0 from
/// regaining them.
pub(crate) fn drop_capabilities(id: u32) -> io::Result<()> {
    // Capabilities are numbered from 0 up to the kernel's last without gaps: drop until the
    // kernel says EINVAL (past its last), which spares reading `cap_last_cap`.
    for cap in 0..=63u32 {
        // SAFETY: PR_CAPBSET_DROP takes integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                break;
            }
            return Err(err);
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP | its lock | SECBIT_KEEP_CAPS_LOCKED
    // | SECBIT_NO_CAP_AMBIENT_RAISE | its lock.
    const SECURE: libc::c_ulong = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80;
    // SAFETY: PR_SET_SECUREBITS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, SECURE, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    become_ids(id)?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: `header` and `data` have the layout capset(2) reads for version 3 (two data
    // elements); the kernel only reads them.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) };
    if ret != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Makes `fd` the process's stdin, stdout and stderr.
pub(crate) fn stdio_from(fd: &OwnedFd) -> io::Result<()> {
    for target in 0..=2 {
        // SAFETY: dup2 takes two descriptor numbers; `fd` is open and owned by the caller, and
        // 0, 1 and 2 are the standard streams this process is about to hand over.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(fd), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Ends the process at once with `code`, running no destructors or exit handlers (for a
/// cloned child whose parent's state it shares).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns.
    unsafe { libc::_exit(code) }
}

/// A network namespace being made, on another core, by a helper process that shares this
/// process's memory and descriptor table: the kernel takes about 0.6 ms to set one up, which
/// the init spends building the agent's root instead. [`NetnsMaker::enter`] waits for it.
pub(crate) struct NetnsMaker {
    pid: libc::pid_t,
    shared: Box<NetnsShared>,
    /// The helper's stack; it must outlive the helper.
    _stack: ChildStack,
    waited: bool,
}

struct NetnsShared {
    /// `/proc` as the caller sees it now, so the helper finds its own namespace even if the
    /// caller's root changes meanwhile.
    proc_dir: OwnedFd,
    /// Also bring `lo` up and make the egress sockets there.
    egress: bool,
    /// The namespace's descriptor, or minus the errno of the failed step; `i32::MIN` until set.
    result: std::sync::atomic::AtomicI32,
    /// The egress sockets' descriptors (proxy, DNS over UDP, DNS over TCP), or -1.
    sockets: [std::sync::atomic::AtomicI32; 3],
}

/// A listening (TCP) or bound (UDP) socket on 127.0.0.1:`port`, by system calls only.
fn loopback_socket(kind: libc::c_int, port: u16) -> Result<libc::c_int, libc::c_int> {
    let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain system calls on a descriptor this function owns until it returns it, with a
    // sockaddr_in and an int built on the stack.
    unsafe {
        let fd = libc::socket(libc::AF_INET, kind | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno());
        }
        let one: libc::c_int = 1;
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = port.to_be();
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let ok = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
            && libc::bind(fd, (&raw const addr).cast(), std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
                == 0
            && (kind != libc::SOCK_STREAM || libc::listen(fd, 1024) == 0);
        if !ok {
            let e = errno();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

const HELPER_STACK: usize = 64 * 1024;

/// The helper: a new network namespace (owned by the caller's user namespace), opened into the
/// shared descriptor table. Makes system calls only: it shares memory with a process that runs
/// on, so it must not touch the allocator or any lock.
extern "C" fn make_network_namespace(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `NetnsShared` that `NetnsMaker` keeps alive until the helper has
    // been reaped.
    let shared = unsafe { &*arg.cast::<NetnsShared>() };
    let errno = || -io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain system calls on a static string and a descriptor `shared` keeps open.
    let mut result = unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            errno()
        } else {
            let dir = std::os::fd::AsRawFd::as_raw_fd(&shared.proc_dir);
            let fd = libc::openat(dir, c"thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 { errno() } else { fd }
        }
    };
    if result >= 0 && shared.egress {
        let made = crate::sys::net::loopback_up().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO)).and_then(|()| {
            let specs = [(libc::SOCK_STREAM, PROXY_PORT), (libc::SOCK_DGRAM, DNS_PORT), (libc::SOCK_STREAM, DNS_PORT)];
            for (slot, (kind, port)) in shared.sockets.iter().zip(specs) {
                slot.store(loopback_socket(kind, port)?, std::sync::atomic::Ordering::SeqCst);
            }
            Ok(())
        });
        if let Err(e) = made {
            result = -e;
        }
    }
    shared.result.store(result, std::sync::atomic::Ordering::SeqCst);
    0
}

/// The egress sockets' ports (see `crate::session`).
const PROXY_PORT: u16 = crate::session::PROXY_PORT;
const DNS_PORT: u16 = crate::session::DNS_PORT;

/// Starts making a network namespace for the calling process (see [`NetnsMaker`]); with
/// `egress`, with `lo` up and the egress sockets bound in it.
pub(crate) fn start_network_namespace(egress: bool) -> io::Result<NetnsMaker> {
    use rustix::fs::{Mode, OFlags, open};
    let proc_dir = open("/proc", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let shared = Box::new(NetnsShared {
        proc_dir,
        egress,
        result: std::sync::atomic::AtomicI32::new(i32::MIN),
        sockets: [(); 3].map(|()| std::sync::atomic::AtomicI32::new(-1)),
    });
    let stack = ChildStack::new(HELPER_STACK)?;
    let arg = (&raw const *shared).cast_mut().cast::<libc::c_void>();
    // SAFETY: the helper runs `make_network_namespace` on `stack`, which with `shared` lives in
    // the returned `NetnsMaker` until the helper is reaped (`enter` or drop); the helper makes
    // system calls only, so sharing memory with this process is sound.
    let pid = unsafe {
        libc::clone(make_network_namespace, stack.top(), libc::CLONE_VM | libc::CLONE_FILES | libc::SIGCHLD, arg)
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(NetnsMaker { pid, shared, _stack: stack, waited: false })
}

impl NetnsMaker {
    fn reap(&mut self) -> io::Result<()> {
        if self.waited {
            return Ok(());
        }
        let mut status = 0;
        loop {
            // SAFETY: waits for our own child; `status` is a valid out pointer.
            if unsafe { libc::waitpid(self.pid, &raw mut status, 0) } >= 0 {
                self.waited = true;
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Waits for the helper and moves the calling process into the namespace it made; returns
    /// the egress sockets when they were asked for.
    pub(crate) fn enter(mut self) -> io::Result<Option<[OwnedFd; 3]>> {
        self.reap()?;
        let result = self.shared.result.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: each non-negative value is a descriptor the helper opened in our shared table
        // and handed over; nothing else owns it.
        let sockets: Vec<OwnedFd> = self
            .shared
            .sockets
            .iter()
            .map(|s| s.load(std::sync::atomic::Ordering::SeqCst))
            .filter(|&fd| fd >= 0)
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        if result < 0 {
            return Err(if result == i32::MIN {
                io::Error::other("the helper ended without a result")
            } else {
                io::Error::from_raw_os_error(-result)
            });
        }
        // SAFETY: the helper opened this descriptor in our shared table and handed it over.
        let fd = unsafe { OwnedFd::from_raw_fd(result) };
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&fd),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .map_err(io::Error::from)?;
        if !self.shared.egress {
            return Ok(None);
        }
        <[OwnedFd; 3]>::try_from(sockets).map(Some).map_err(|_| io::Error::other("the egress sockets were not made"))
    }
}

impl Drop for NetnsMaker {
    fn drop(&mut self) {
        // The stack and the shared block must outlive the helper.
        let _ = self.reap();
    }
}
