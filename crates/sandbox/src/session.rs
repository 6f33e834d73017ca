//! One sandboxed session: the agent under a small init, PID 1 of new user, mount, PID, network,
//! IPC and UTS namespaces, with every wall applied before the agent's first instruction.
//!
//! ```text
//! supervisor (outside)           init (PID 1 inside)                agent
//!   clone3(NEW*) ──────────────▶ starts a helper making the network namespace; waits for "go"
//!   uid/gid maps, "go" ────────▶ root plan (mounts, /proc, masks),
//!   (caller: cgroup v1, files)   hostname, not dumpable; enters the network namespace,
//!                                detaches the host's root (see `RootPlan`)
//!   "cgroup" (+ v1 files) ─────▶ joins the cgroup (v1); vfork ──────▶ setsid,
//!                                                                    rlimits, caps dropped,
//!                                                                    no_new_privs, Landlock, seccomp
//!   ◀──────────────────────── "ready" + listener + program and cwd ─ exec (trapped: the monitor's
//!   exec monitor, wait loop     reaps, forwards signals; once the     first record)
//!   ◀──────────────────────── "exited" + status ─ agent is gone, kills and reaps the rest,
//!   end record, closing         reports, exits (the kernel tears the
//!   (the init's exit meanwhile) namespaces down)
//! ```
//!
//! Starting is split in two ([`start`], then [`Starting::finish`]) so the caller's own set-up
//! (the cgroup, the session's files) runs while the init builds the agent's root, on another
//! core. For the same reason the network namespace (the costliest of the six, about 0.6 ms) is
//! made by a helper of the init's, which shares its memory, while the init builds the root.
//! And the agent's process shares the init's memory until its exec (`CLONE_VM | CLONE_VFORK`,
//! as `posix_spawn` does) instead of a copy of it: copying the page tables of a process that is
//! itself a copy of the supervisor, and the faults that follow, cost about 0.5 ms. Since the
//! init is not dumpable, that process reports its exec's program and working directory itself
//! (the monitor's `FirstExec`).
//!
//! On cgroup v2 the init is born in the session's cgroup (`CLONE_INTO_CGROUP`). On v1 it moves
//! its own single thread there, before it starts the agent, through `tasks` files the supervisor
//! opened: moving another process would take the kernel's global migration lock and wait for an
//! RCU grace period (5–25 ms, more than the rest of a session's start).
//!
//! The supervisor must be single-threaded when it starts a session: the init continues from a
//! copy of the supervisor's one thread and allocates. [`start`] checks this. The init and the
//! agent die with the supervisor (`PR_SET_PDEATHSIG`), and when the init exits the kernel kills
//! everything left in the PID namespace, so no process outlives the session.
//!
//! A session ends in two steps. The init reports the agent's status once the agent has exited
//! and every other process in the namespace has been killed and reaped, then exits; the kernel
//! then tears down the namespaces the init held (its mounts above all) and its copy of the
//! supervisor's memory, about 0.25 ms. [`Running::wait`] returns at the report, so the
//! supervisor writes the session's end while that teardown runs on another core;
//! [`Running::reap`] waits for the init itself, which must be gone before its cgroup can be
//! removed. An init that dies without a report (killed) is waited for as before.

use std::ffi::OsString;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage,
    SendFlags, SocketFlags, SocketType,
};

use crate::cgroup::Cgroup;
use crate::landlock::LandlockRules;
use crate::monitor::{FirstExec, Monitor};
use crate::mounts::{RootOptions, RootPlan};
use crate::rlimit::Resource;
use crate::sys::{self, process};

/// What to run and how to wall it in.
#[derive(Debug)]
pub struct Spec {
    /// The program (looked up on the `PATH` given in `env` when it has no slash).
    pub program: OsString,
    /// Its arguments, without the program.
    pub args: Vec<OsString>,
    /// The whole environment the agent starts with.
    pub env: Vec<(OsString, OsString)>,
    /// The agent's root.
    pub root: RootOptions,
    /// Landlock rules (paths as the agent sees them) and the ABI to build them at; `None` only
    /// for a run the user allowed to be degraded.
    pub landlock: Option<(LandlockRules, u32)>,
    /// Install the seccomp filter; `false` only for a degraded run.
    pub seccomp: bool,
    /// Trap `execve`/`execveat` for the exec monitor (needs `seccomp`).
    pub monitor_exec: bool,
    /// Resource limits.
    pub rlimits: Vec<(Resource, u64)>,
    /// The host name inside.
    pub hostname: String,
    /// The agent's identity: its user namespace's map and its uid and gid inside.
    pub ids: IdMap,
    /// Give the agent a terminal of the sandbox's own as its controlling terminal and stdio
    /// (see [`crate::terminal`]); for runs started from a terminal.
    pub terminal: bool,
    /// Serve the sandbox's egress: bring `lo` up and make the listening sockets of the proxy
    /// (`127.0.0.1:3128`) and the resolver (`127.0.0.1:53`, UDP and TCP) in the sandbox's
    /// network namespace, for the supervisor to serve ([`Running::take_egress`]).
    pub egress: bool,
}

/// The port of the proxy inside the sandbox.
pub const PROXY_PORT: u16 = 3128;
/// The port of the resolver inside the sandbox.
pub const DNS_PORT: u16 = 53;

/// The sandbox's egress sockets, listening in its network namespace, served by the supervisor:
/// a connection the agent makes to them arrives in the supervisor, with no relay in between.
#[derive(Debug)]
pub struct EgressSockets {
    /// `127.0.0.1:3128`: HTTP, `CONNECT` and SOCKS5.
    pub proxy: std::net::TcpListener,
    /// `127.0.0.1:53` over UDP.
    pub dns_udp: std::net::UdpSocket,
    /// `127.0.0.1:53` over TCP.
    pub dns_tcp: std::net::TcpListener,
}

/// A user namespace's uid and gid map (one range, the same for both) and the agent's id in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdMap {
    /// The first id inside.
    pub first_inside: u32,
    /// The host id it maps to.
    pub first_outside: u32,
    /// How many ids the range holds.
    pub count: u32,
    /// The agent's uid and gid inside (within the range).
    pub agent: u32,
}

impl IdMap {
    /// The caller's own uid and gid, one to one: what an unprivileged user may map.
    pub fn own() -> IdMap {
        let uid = rustix::process::getuid().as_raw();
        IdMap { first_inside: uid, first_outside: uid, count: 1, agent: uid }
    }
}

/// Why a session could not start. Each names the step.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The supervisor has other threads, so the init could not safely continue from it.
    #[error("the supervisor has {0} threads; a session must be started before any other thread")]
    Threads(usize),
    /// The kernel refused the namespaces.
    #[error("cannot create user, mount, PID, network, IPC and UTS namespaces")]
    Namespaces(#[source] io::Error),
    /// The root plan could not be computed.
    #[error("cannot plan the agent's root")]
    Plan(#[from] crate::mounts::PlanError),
    /// The seccomp program could not be built.
    #[error("cannot build the seccomp filter")]
    Seccomp(#[from] crate::seccomp::TooLong),
    /// A step in the supervisor failed.
    #[error("cannot {step}")]
    Supervisor {
        /// What was being done.
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The init or the agent reported a failed step.
    #[error("the sandbox could not be set up: {0}")]
    Inside(String),
    /// A host tree the sandbox shows could not be copied for it (started as root).
    #[error("cannot copy `{}` to show it in the sandbox", path.display())]
    Tree {
        /// The host path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A tree the sandbox shows could not be idmapped (started as root).
    #[error(
        "cannot idmap `{}`: its filesystem ({fs}) does not support idmapped mounts. Started as root, \
         the workdir and the policy's writable paths must be on one that does (ext4, xfs, btrfs, \
         tmpfs, ...; a container's own overlay root does not), or run portcullis as an \
         unprivileged user",
        path.display()
    )]
    Idmap {
        /// The host path.
        path: PathBuf,
        /// Its filesystem's name, or its magic number.
        fs: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn sup(step: &'static str) -> impl FnOnce(io::Error) -> StartError {
    move |source| StartError::Supervisor { step, source }
}

/// A session that has started.
#[derive(Debug)]
pub struct Running {
    child: process::Child,
    /// The command as given (program and arguments), for the exec monitor's first record.
    command: Vec<String>,
    monitor: Option<Monitor>,
    upper: Option<OwnedFd>,
    /// The sandbox's `/tmp`, for its use at the end.
    tmp: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
    egress: Option<EgressSockets>,
    /// A second handle on the terminal's master side, for window-size changes.
    winsize: Option<OwnedFd>,
    signals: OwnedFd,
    /// The setup socket, kept for the init's report of the agent's exit (`None` until the start
    /// is finished, and once the init has hung up).
    report: Option<OwnedFd>,
}

/// How much of one of the session's filesystems is used ([`Running::disk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUse {
    /// Which one: `workdir overlay` or `/tmp`.
    pub place: &'static str,
    /// Bytes used.
    pub used: u64,
    /// Bytes still free.
    pub free: u64,
    /// Its size (the cap).
    pub size: u64,
}

impl DiskUse {
    /// Full, or near enough that a write of any size failed: less than 2 MiB or 2% free. (A
    /// single file stops at the same cap through `RLIMIT_FSIZE`, a little short of the overlay's
    /// size.)
    pub fn full(&self) -> bool {
        self.free < (2 << 20).max(self.size / 50)
    }
}

/// How a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The agent's exit code, or 128 + the signal that ended it (the shell's convention).
    pub code: i32,
    /// The wall clock ran out and the namespace was terminated.
    pub timed_out: bool,
}

/// The init's command line and name, as the agent sees them.
const INIT_NAME: &str = "portcullis-init";
const GO: &[u8] = b"go";
const IN_CGROUP: &[u8] = b"cgroup";
const READY: &[u8] = b"ready";
/// The bytes after "ready" that say which descriptors follow.
const READY_FLAGS: usize = 5;
/// The init's report that the agent and every other process in the namespace are gone,
/// followed by the agent's status (a little-endian `i32`).
const EXITED: &[u8] = b"exited";
const FAILED: &[u8] = b"failed:";
/// The longest program path or working directory the agent reports (the kernel's own limit).
const MAX_PATH: usize = libc::PATH_MAX as usize;

/// Starts `spec`: the init is born (in `born_in`, a cgroup v2 cgroup, when given) and builds
/// the agent's root while the caller goes on; [`Starting::finish`] completes the start.
pub fn start(spec: &Spec, born_in: Option<&Cgroup>) -> Result<Starting, StartError> {
    let threads = thread_count();
    if threads != 1 {
        return Err(StartError::Threads(threads));
    }
    let plan = RootPlan::new(&spec.root)?;
    let filter = if spec.seccomp {
        Some(sys::Filter::new(&crate::seccomp::compile(spec.monitor_exec)?).map_err(sup("load the seccomp filter"))?)
    } else {
        None
    };
    let (ours, theirs) =
        rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)
            .map_err(|e| StartError::Supervisor { step: "create the setup socket", source: e.into() })?;
    // Blocked before the clone: the init waits for them with sigwaitinfo, the supervisor through
    // a signalfd; the agent unblocks them before it execs.
    let mut blocked = process::FORWARDED.to_vec();
    blocked.push(libc::SIGCHLD);
    process::block(&blocked).map_err(sup("block signals"))?;
    // The network namespace comes from the init (see the module's docs).
    let flags =
        (libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64;
    let into = match born_in {
        Some(cgroup) => Some(cgroup.clone_target().ok_or_else(|| StartError::Supervisor {
            step: "open the session's cgroup",
            source: io::Error::other("only a cgroup v2 cgroup can be born in"),
        })?),
        None => None,
    };
    let child = match process::clone_into(flags, into.as_ref()).map_err(StartError::Namespaces)? {
        None => {
            drop(ours);
            init_main(spec, &plan, filter.as_ref(), theirs)
        }
        Some(child) => child,
    };
    drop(theirs);
    // The kernel queues a new child on its parent's CPU, behind the parent, and the other CPU
    // may not pull it for a scheduler tick or more: let the init go first (it starts the
    // helper that makes the network namespace, then waits for the maps below), so that it and
    // its helper are under way while this process writes the maps and goes on.
    std::thread::yield_now();
    let signals = process::signalfd(process::FORWARDED).map_err(sup("create a signalfd"))?;
    let command = std::iter::once(&spec.program).chain(&spec.args).map(|a| a.to_string_lossy().into_owned()).collect();
    let running = Running {
        child,
        command,
        monitor: None,
        upper: None,
        tmp: None,
        terminal: None,
        egress: None,
        winsize: None,
        signals,
        report: None,
    };
    let proc_dir = format!("/proc/{}", running.child.pid);
    let ids = spec.ids;
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    // One to one for an unprivileged caller (its own ids); a range for root.
    let (out_uid, out_gid) = if ids.count == 1 { (uid, gid) } else { (ids.first_outside, ids.first_outside) };
    for (file, data) in [
        ("setgroups", "deny".to_owned()),
        ("uid_map", format!("{} {out_uid} {}", ids.first_inside, ids.count)),
        ("gid_map", format!("{} {out_gid} {}", ids.first_inside, ids.count)),
    ] {
        std::fs::write(format!("{proc_dir}/{file}"), data).map_err(sup("write the user namespace's id maps"))?;
    }
    // The trees the plan attaches, copied here (root only: see `RootOptions::idmapped_workdir`):
    // the workdir seen through the agent's map, so files owned by the workdir's owner are the
    // agent's own (idmapped mounts need CAP_SYS_ADMIN on the host), and the policy's paths.
    let userns = if plan.trees.iter().any(|t| t.idmapped) {
        let file = std::fs::File::open(format!("{proc_dir}/ns/user")).map_err(sup("open the user namespace"))?;
        Some(OwnedFd::from(file))
    } else {
        None
    };
    let mut trees = Vec::with_capacity(plan.trees.len());
    for t in &plan.trees {
        let path = || PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(t.host.to_bytes()));
        let tree = sys::idmap::clone_tree(&t.host).map_err(|source| StartError::Tree { path: path(), source })?;
        let idmap = userns.as_ref().filter(|_| t.idmapped);
        sys::idmap::set_attributes(&tree, t.read_only, idmap).map_err(|source| match idmap {
            Some(_) if source.raw_os_error() == Some(libc::EINVAL) => {
                StartError::Idmap { fs: filesystem_name(&path()), path: path(), source }
            }
            _ => StartError::Tree { path: path(), source },
        })?;
        trees.push(tree);
    }
    let fds: Vec<BorrowedFd<'_>> = trees.iter().map(AsFd::as_fd).collect();
    send_with_fds(&ours, GO, &fds).map_err(sup("start the init"))?;
    Ok(Starting { running, sock: ours })
}

/// A session whose init is building the agent's root. Dropping it kills the init.
#[derive(Debug)]
#[must_use = "a session only runs once `finish` is called"]
pub struct Starting {
    running: Running,
    sock: OwnedFd,
}

impl Starting {
    /// Puts the init in `join` (a cgroup it was not born in) before it forks the agent, and
    /// returns once the agent's walls are all up and its exec is about to run (trapped by the
    /// exec monitor when one was asked for).
    pub fn finish(self, join: Option<&Cgroup>) -> Result<Running, StartError> {
        let files = match join {
            Some(cgroup) => cgroup.join_files().map_err(|e| StartError::Supervisor {
                step: "open the session's cgroup",
                source: io::Error::other(e.to_string()),
            })?,
            None => Vec::new(),
        };
        let fds: Vec<BorrowedFd<'_>> = files.iter().map(AsFd::as_fd).collect();
        // An init that already failed has closed its end: its report says why, so it is read
        // rather than the send's broken pipe returned.
        let sent = send_with_fds(&self.sock, IN_CGROUP, &fds);
        drop(files);
        if let Err(e) = sent
            && e.raw_os_error() != Some(libc::EPIPE)
        {
            return Err(sup("start the init")(e));
        }
        let mut running = finish_start(self.running, &self.sock)?;
        running.report = Some(self.sock);
        Ok(running)
    }
}

fn finish_start(mut running: Running, ours: &OwnedFd) -> Result<Running, StartError> {
    let mut buf = [0u8; READY.len() + READY_FLAGS + 2 * (MAX_PATH + 1)];
    let (len, fds) = recv_with_fds(ours, &mut buf).map_err(sup("read the init's report"))?;
    let text = &buf[..len];
    if let Some(rest) = text.strip_prefix(READY) {
        // "ready", one byte per descriptor kind (listener, upper layer, terminal, egress, /tmp), then
        // the first exec's program and working directory, each ended by a NUL.
        let mut fds = fds.into_iter();
        if rest.first() == Some(&b'1') {
            let mut parts = rest.get(READY_FLAGS..).unwrap_or_default().split(|&b| b == 0).map(String::from_utf8_lossy);
            let (Some(path), Some(cwd)) = (parts.next(), parts.next()) else {
                return Err(StartError::Inside("the agent's report names no program".into()));
            };
            let first = FirstExec { path: path.into_owned(), argv: running.command.clone(), cwd: cwd.into_owned() };
            let Some(listener) = fds.next() else {
                return Err(StartError::Inside("the exec monitor's listener did not arrive".into()));
            };
            running.monitor = Some(Monitor::new(listener, Some(first)));
        }
        if rest.get(1) == Some(&b'1') {
            running.upper = fds.next();
        }
        if rest.get(2) == Some(&b'1') {
            running.terminal = fds.next();
            running.winsize = running.terminal.as_ref().and_then(|t| t.try_clone().ok());
        }
        if rest.get(3) == Some(&b'1') {
            let (Some(proxy), Some(udp), Some(tcp)) = (fds.next(), fds.next(), fds.next()) else {
                return Err(StartError::Inside("the egress sockets did not arrive".into()));
            };
            running.egress = Some(EgressSockets { proxy: proxy.into(), dns_udp: udp.into(), dns_tcp: tcp.into() });
        }
        if rest.get(4) == Some(&b'1') {
            running.tmp = fds.next();
        }
        return Ok(running);
    }
    let message = match text.strip_prefix(FAILED) {
        Some(m) => String::from_utf8_lossy(m).into_owned(),
        None => {
            let code = running.wait_exit().map(|e| e.code).unwrap_or(-1);
            format!("the init exited during setup (status {code}) without a report")
        }
    };
    let _ = rustix::process::pidfd_send_signal(&running.child.pidfd, rustix::process::Signal::KILL);
    let _ = running.wait_exit();
    Err(StartError::Inside(message))
}

/// Most descriptors one setup message carries: the trees with "go"; the listener, upper layer,
/// terminal and three egress sockets with "ready".
const MAX_FDS: usize = crate::mounts::MAX_TREES;

/// Sends `bytes` with `fds` attached (`SCM_RIGHTS`) as one message.
fn send_with_fds(sock: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, SendFlags::empty())?;
    Ok(())
}

/// Receives one message into `buf`: its length and the descriptors it carried (close-on-exec).
fn recv_with_fds(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let fds = control
        .drain()
        .flat_map(|m| match m {
            RecvAncillaryMessage::ScmRights(fds) => fds.collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    Ok((got.bytes, fds))
}

/// The name of the filesystem `path` is on, for messages (its magic number if not a common one).
fn filesystem_name(path: &std::path::Path) -> String {
    let Ok(st) = rustix::fs::statfs(path) else { return "unknown".into() };
    let magic = st.f_type as u64;
    let name = match magic {
        0x794c_7630 => "overlay",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0xff53_4d42 | 0xfe53_4d42 => "smb",
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x0102_1994 => "tmpfs",
        _ => return format!("magic {magic:#x}"),
    };
    name.to_owned()
}

fn thread_count() -> usize {
    crate::read_kernel_file("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|n| n.trim().parse().ok())))
        .unwrap_or(0)
}

/// Reports a failed step to the supervisor and ends this process.
fn fail(sock: &OwnedFd, step: &str, err: &dyn std::fmt::Display) -> ! {
    let text = format!("{}{step}: {err}", String::from_utf8_lossy(FAILED));
    let _ = rustix::net::send(sock, text.as_bytes(), SendFlags::empty());
    process::exit_now(125)
}

/// True when the supervisor's end of the setup socket has closed.
fn supervisor_gone(sock: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(sock, PollFlags::IN)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    poll(&mut fds, Some(&zero)).is_err() || fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}

/// The init: PID 1 of the new namespaces. Never returns.
fn init_main(spec: &Spec, plan: &RootPlan, filter: Option<&sys::Filter>, sock: OwnedFd) -> ! {
    // The init dies with the supervisor; if the supervisor is already gone, "go" never comes.
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).is_err() {
        process::exit_now(125);
    }
    // Owned by the new user namespace; made by a helper while the init builds the root.
    // With the egress, the helper also brings `lo` up and binds the proxy's and the resolver's
    // sockets there, all off the init's path.
    let netns = match process::start_network_namespace(spec.egress) {
        Ok(n) => n,
        Err(e) => fail(&sock, "create the network namespace", &e),
    };
    // What the agent's `ps` shows as PID 1, instead of the supervisor's command line.
    if let Err(e) = process::rename(INIT_NAME) {
        fail(&sock, "rename the init", &e);
    }
    let mut buf = [0u8; 8];
    let trees = match recv_with_fds(&sock, &mut buf) {
        Ok((len, fds)) if &buf[..len] == GO => fds,
        _ => process::exit_now(125),
    };
    // The maps are written: become the range's first id (root inside), keeping every
    // capability in the new namespace, so what the init creates is owned inside the range.
    if let Err(e) = process::become_ids(spec.ids.first_inside) {
        fail(&sock, "take the namespace's root identity", &e);
    }
    // A change of credentials clears the parent-death signal: set it again, then make sure the
    // supervisor did not die in between (its end of the socket would have hung up).
    if rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL)).is_err()
        || supervisor_gone(&sock)
    {
        process::exit_now(125);
    }
    let mut upper = None;
    if let Err(e) = sys::run_root_plan(&plan.ops, &trees, &mut |fd| upper = Some(fd)) {
        fail(&sock, "build the agent's root (mounts)", &e);
    }
    if let Err(e) = rustix::system::sethostname(spec.hostname.as_bytes()) {
        fail(&sock, "set the host name", &e);
    }
    // SECURITY: the agent runs as the same uid; a dumpable init's memory would be writable
    // through /proc/1/mem by anything that gets past the other walls.
    if let Err(e) = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable) {
        fail(&sock, "make the init non-dumpable", &e);
    }
    let terminal = if spec.terminal {
        match open_terminal() {
            Ok(pair) => Some(pair),
            Err(e) => fail(&sock, "open the agent's terminal", &e),
        }
    } else {
        None
    };
    // The agent's Landlock ruleset, built here in the root the agent will see, while the helper
    // may still be making the network namespace; the agent only enforces it.
    let landlock = match &spec.landlock {
        Some((rules, abi)) => match rules.prepare(*abi) {
            Ok(prepared) => Some(prepared),
            Err(e) => fail(&sock, "build the Landlock rules", &crate::landlock::describe(&e)),
        },
        None => None,
    };
    let egress = match netns.enter() {
        Ok(sockets) => sockets,
        Err(e) => fail(
            &sock,
            "create the network namespace (with lo up and the egress sockets on 127.0.0.1:3128 and :53)",
            &e,
        ),
    };
    // The host's root is detached only now that the helper is done (see `RootPlan`).
    if let Err(e) = sys::run_root_plan(&plan.finish, &[], &mut |_| ()) {
        fail(&sock, "build the agent's root (detach the host's root)", &e);
    }
    // For the supervisor: how full `/tmp` ended (the summary's disk use).
    use rustix::fs::{Mode, OFlags};
    let tmp = rustix::fs::open("/tmp", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok();
    // Nothing runs as the agent before the init is in the session's cgroup.
    let mut cgroup_buf = [0u8; 16];
    match recv_with_fds(&sock, &mut cgroup_buf) {
        Ok((n, files)) if &cgroup_buf[..n] == IN_CGROUP => {
            if let Err(e) = crate::cgroup::join(&files) {
                fail(&sock, "join the session's cgroup", &e);
            }
        }
        _ => process::exit_now(125),
    }
    let agent = match process::spawn_sharing_memory(&mut || {
        let walls = AgentWalls { filter, landlock: landlock.as_ref() };
        let kept =
            Kept { upper: upper.as_ref(), tmp: tmp.as_ref(), terminal: terminal.as_ref(), egress: egress.as_ref() };
        agent_main(spec, &walls, &sock, &kept)
    }) {
        Err(e) => fail(&sock, "start the agent", &e),
        Ok(pid) => pid,
    };
    // SECURITY: the agent's change of identity reset the dumpable flag of the memory it shared
    // with this process (to `fs.suid_dumpable`, which a host may set to 1): set it again. The
    // agent's own program runs in a memory image of its own.
    if rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable).is_err() {
        process::exit_now(125);
    }
    drop(upper);
    drop(tmp);
    drop(terminal);
    drop(egress);
    drop(landlock);
    drop(trees);
    init_loop(agent, &sock)
}

/// Waits for the agent, reaping every other child, forwarding signals. Once the agent has
/// exited, kills and reaps what is left in the namespace, reports the agent's status on `sock`
/// and exits with it.
///
/// It allocates nothing: the agent ran in this process's memory until its exec, and had it been
/// killed inside the allocator, the allocator's state would be torn.
fn init_loop(agent: i32, sock: &OwnedFd) -> ! {
    let mut waited = [libc::SIGCHLD; process::FORWARDED.len() + 1];
    waited[..process::FORWARDED.len()].copy_from_slice(process::FORWARDED);
    let agent_pid = rustix::process::Pid::from_raw(agent);
    loop {
        let sig = match process::wait_signal(&waited) {
            Ok(s) => s,
            Err(_) => process::exit_now(125),
        };
        if sig == libc::SIGCHLD {
            while let Ok(Some((pid, status))) = rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                if Some(pid) == agent_pid {
                    let code =
                        status.exit_status().or_else(|| status.terminating_signal().map(|s| 128 + s)).unwrap_or(125);
                    end_namespace(code, sock);
                }
            }
        } else if sig == libc::SIGTERM || sig == libc::SIGHUP {
            // Termination is for the whole tree.
            process::signal_namespace(sig);
        } else if let (Some(pid), Some(signal)) = (agent_pid, rustix::process::Signal::from_named_raw(sig)) {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }
}

/// The init's last step: SIGKILL to every other process in the namespace, each reaped (orphans
/// are re-parented to the init, so no children left means no processes left), then the report
/// and the exit. Exiting alone would kill them too, but the supervisor could then learn of the
/// end only after the kernel's teardown of the namespaces.
fn end_namespace(code: i32, sock: &OwnedFd) -> ! {
    process::signal_namespace(libc::SIGKILL);
    while let Ok(_) | Err(rustix::io::Errno::INTR) = rustix::process::wait(rustix::process::WaitOptions::empty()) {}
    let mut report = [0u8; EXITED.len() + 4];
    report[..EXITED.len()].copy_from_slice(EXITED);
    report[EXITED.len()..].copy_from_slice(&code.to_le_bytes());
    // A supervisor that is gone has nothing to learn.
    let _ = rustix::net::send(sock, &report, SendFlags::empty());
    process::exit_now(code)
}

/// A new pseudo-terminal in the sandbox's `devpts`: (master, slave).
fn open_terminal() -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::{OpenptFlags, ioctl_tiocgptpeer, openpt, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    unlockpt(&master)?;
    let slave = ioctl_tiocgptpeer(&master, OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    Ok((master, slave))
}

/// The agent's last steps before exec: the walls that apply to it alone. Never returns.
/// The walls the init prepared for the agent to put up.
struct AgentWalls<'a> {
    filter: Option<&'a sys::Filter>,
    landlock: Option<&'a crate::landlock::Prepared>,
}

/// What the init holds for the supervisor, sent up with "ready".
struct Kept<'a> {
    upper: Option<&'a OwnedFd>,
    tmp: Option<&'a OwnedFd>,
    terminal: Option<&'a (OwnedFd, OwnedFd)>,
    egress: Option<&'a [OwnedFd; 3]>,
}

fn agent_main(spec: &Spec, walls: &AgentWalls<'_>, sock: &OwnedFd, kept: &Kept<'_>) -> ! {
    let Kept { upper, tmp, terminal, egress } = *kept;
    // SECURITY: a new session has no controlling terminal to inject keystrokes into; with a
    // terminal, it gets the sandbox's own.
    if let Err(e) = rustix::process::setsid() {
        fail(sock, "start a new session", &e);
    }
    if let Some((_, slave)) = terminal {
        if let Err(e) = rustix::process::ioctl_tiocsctty(slave) {
            fail(sock, "take the agent's terminal", &e);
        }
        if let Err(e) = sys::process::stdio_from(slave) {
            fail(sock, "connect the agent's terminal", &e);
        }
    }
    for (resource, limit) in &spec.rlimits {
        let limit = rustix::process::Rlimit { current: Some(*limit), maximum: Some(*limit) };
        if let Err(e) = rustix::process::setrlimit(resource.rustix(), limit) {
            fail(sock, "set resource limits", &e);
        }
    }
    if let Err(e) = process::drop_capabilities(spec.ids.agent) {
        fail(sock, "drop capabilities", &e);
    }
    if let Err(e) = rustix::thread::set_no_new_privs(true) {
        fail(sock, "set no_new_privs", &e);
    }
    if let Some(prepared) = walls.landlock
        && let Err(e) = sys::landlock_restrict(&prepared.fd)
    {
        fail(sock, "enforce Landlock", &e);
    }
    let listener = match walls.filter {
        None => None,
        Some(f) if spec.monitor_exec => match f.install_with_listener() {
            Ok(fd) => Some(fd),
            Err(e) => fail(sock, "install the seccomp filter", &e),
        },
        Some(f) => match f.install() {
            Ok(()) => None,
            Err(e) => fail(sock, "install the seccomp filter", &e),
        },
    };
    // The first exec is this one: the supervisor learns its program and working directory
    // here, since it cannot read them from this process's memory (the init's, not dumpable).
    let program = find_program(spec);
    let cwd = std::env::current_dir().unwrap_or_default();
    let program = if program.is_absolute() { program } else { cwd.join(program) };
    let argv = std::iter::once(&spec.program).chain(&spec.args).map(OsString::as_os_str);
    let env = spec.env.iter().map(|(k, v)| (k.as_os_str(), v.as_os_str()));
    let exec = match process::ExecImage::new(&program, argv, env) {
        Ok(image) => image,
        Err(e) => fail(sock, "prepare the exec", &e),
    };
    let mut header = READY.to_vec();
    header.push(if listener.is_some() { b'1' } else { b'0' });
    header.push(if upper.is_some() { b'1' } else { b'0' });
    header.push(if terminal.is_some() { b'1' } else { b'0' });
    header.push(if egress.is_some() { b'1' } else { b'0' });
    header.push(if tmp.is_some() { b'1' } else { b'0' });
    for part in [program.as_os_str(), cwd.as_os_str()] {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(part);
        if bytes.len() > MAX_PATH || bytes.contains(&0) {
            fail(sock, "report the program's path", &format!("`{}` is not a path", part.to_string_lossy()));
        }
        header.extend_from_slice(bytes);
        header.push(0);
    }
    let fds: Vec<BorrowedFd<'_>> = listener
        .iter()
        .map(AsFd::as_fd)
        .chain(upper.map(AsFd::as_fd))
        .chain(terminal.map(|(master, _)| master.as_fd()))
        .chain(egress.into_iter().flatten().map(AsFd::as_fd))
        .chain(tmp.map(AsFd::as_fd))
        .collect();
    if let Err(e) = send_with_fds(sock, &header, &fds) {
        fail(sock, "report to the supervisor", &e);
    }
    drop(listener);
    // SECURITY: nothing the supervisor or the init holds reaches the agent.
    if let Err(e) = sys::close_on_exec_from(3) {
        fail(sock, "close inherited descriptors", &e);
    }
    if let Err(e) = process::reset_signals() {
        fail(sock, "reset signals", &e);
    }
    // One exec, of the program reported above: no search along PATH (done already) and no
    // second try through /bin/sh for a file without a `#!` line, as execvp would make.
    let err = if rustix::fs::access(&program, rustix::fs::Access::EXISTS).is_err() {
        io::Error::from_raw_os_error(libc::ENOENT)
    } else {
        exec.run()
    };
    eprintln!("portcullis: cannot run `{}` in the sandbox: {err}", spec.program.to_string_lossy());
    process::exit_now(if err.kind() == io::ErrorKind::NotFound { 127 } else { 126 })
}

/// The program's path inside the sandbox: as given when it has a slash, else the first
/// executable file of that name on the agent's `PATH` (so the first exec is the only one).
fn find_program(spec: &Spec) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let program = std::path::Path::new(&spec.program);
    if spec.program.as_bytes().contains(&b'/') {
        return program.to_path_buf();
    }
    let path = spec.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate.is_file() && rustix::fs::access(candidate.as_path(), rustix::fs::Access::EXEC_OK).is_ok()
        })
        .unwrap_or_else(|| program.to_path_buf())
}

impl Drop for Running {
    /// A session dropped before its end (a setup step failed) takes its whole namespace with it.
    fn drop(&mut self) {
        self.signal(rustix::process::Signal::KILL);
    }
}

/// Ends a session: SIGKILL to its init, PID 1 of the agent's PID namespace, so every process
/// in it dies. Holds the init's pidfd, so it never signals a recycled pid.
#[derive(Debug)]
pub struct Killer(OwnedFd);

impl Killer {
    /// Kills the session.
    pub fn kill(&self) {
        let _ = rustix::process::pidfd_send_signal(&self.0, rustix::process::Signal::KILL);
    }
}

impl Running {
    /// The init's pid, as the supervisor sees it.
    pub fn pid(&self) -> i32 {
        self.child.pid
    }

    /// The exec monitor, once (`None` without one): run it on a thread of its own.
    pub fn take_monitor(&mut self) -> Option<Monitor> {
        self.monitor.take()
    }

    /// The overlay's upper layer (the session's changes), while the session lives and after.
    pub fn upper(&self) -> Option<PathBuf> {
        self.upper.as_ref().map(|fd| PathBuf::from(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd))))
    }

    /// How full the session's own filesystems are: the overlay's (which holds the workdir's
    /// changes) and `/tmp`'s. Read at the end, they show a disk limit that was hit.
    pub fn disk(&self) -> Vec<DiskUse> {
        // The overlay's tmpfs is its cap plus a little for the sandbox's own files.
        [("workdir overlay", &self.upper, crate::mounts::SCRATCH_SLACK), ("/tmp", &self.tmp, 0)]
            .into_iter()
            .filter_map(|(place, fd, slack)| {
                let st = rustix::fs::fstatfs(fd.as_ref()?).ok()?;
                let block = st.f_bsize as u64;
                let total = st.f_blocks * block;
                let used = total.saturating_sub(st.f_bfree * block);
                Some(DiskUse { place, used, free: st.f_bavail * block, size: total.saturating_sub(slack) })
            })
            .collect()
    }

    /// The master side of the agent's terminal, once (`None` without one): hand it to
    /// [`crate::terminal::Relay::start`].
    pub fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.terminal.take()
    }

    /// The egress sockets, once (`None` unless [`Spec::egress`] asked for them).
    pub fn take_egress(&mut self) -> Option<EgressSockets> {
        self.egress.take()
    }

    /// A handle that ends the session from any thread.
    pub fn killer(&self) -> io::Result<Killer> {
        Ok(Killer(self.child.pidfd.try_clone()?))
    }

    /// Sends `signal` to the init (which forwards it).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let _ = rustix::process::pidfd_send_signal(&self.child.pidfd, signal);
    }

    /// Waits for the session to end, forwarding the supervisor's signals to the init. When
    /// `wall_clock` runs out, the whole namespace gets SIGTERM, then SIGKILL after `grace`.
    ///
    /// Returns when the init reports that the agent and every other process in the namespace
    /// are gone, or when the init has exited without a report (killed); [`Running::reap`] then
    /// waits for the init itself.
    pub fn wait(&mut self, wall_clock: Option<Duration>, grace: Duration) -> io::Result<Exit> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let started = Instant::now();
        let mut deadline = wall_clock.map(|w| started + w);
        let mut timed_out = false;
        loop {
            let timeout = deadline.map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) }
            });
            let (exited, signalled, reported) = {
                let mut fds = [
                    PollFd::new(&self.child.pidfd, PollFlags::IN),
                    PollFd::new(&self.signals, PollFlags::IN),
                    // Without the socket, a placeholder left out of the poll below.
                    PollFd::new(self.report.as_ref().unwrap_or(&self.signals), PollFlags::IN),
                ];
                let watched = if self.report.is_some() { 3 } else { 2 };
                match poll(&mut fds[..watched], timeout.as_ref()) {
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                let ready = |i: usize| i < watched && !fds[i].revents().is_empty();
                (ready(0), ready(1), ready(2))
            };
            if reported && let Some(code) = self.read_report() {
                return Ok(Exit { code, timed_out });
            }
            if exited {
                let exit = self.wait_exit()?;
                return Ok(Exit { timed_out, ..exit });
            }
            if signalled {
                while let Some(sig) = process::read_signalfd(&self.signals) {
                    match (&self.winsize, rustix::process::Signal::from_named_raw(sig)) {
                        // The user's window changed: resize the agent's terminal.
                        (Some(master), _) if sig == libc::SIGWINCH => crate::terminal::copy_window_size(master.as_fd()),
                        (_, Some(signal)) => self.signal(signal),
                        (_, None) => {}
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if timed_out {
                    self.signal(rustix::process::Signal::KILL);
                    deadline = None;
                } else {
                    timed_out = true;
                    self.signal(rustix::process::Signal::TERM);
                    deadline = Some(Instant::now() + grace);
                }
            }
        }
    }

    /// The agent's status from the init's report, once one has arrived. Anything else on the
    /// socket (the init hung up, killed or failing) retires it: the init's exit decides then.
    fn read_report(&mut self) -> Option<i32> {
        let sock = self.report.take()?;
        let mut buf = [0u8; EXITED.len() + 4];
        match rustix::net::recv(&sock, &mut buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) if n == buf.len() && buf.starts_with(EXITED) => {
                let mut code = [0u8; 4];
                code.copy_from_slice(&buf[EXITED.len()..]);
                Some(i32::from_le_bytes(code))
            }
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {
                self.report = Some(sock);
                None
            }
            _ => None,
        }
    }

    /// Waits for the init to be gone after [`Running::wait`]: the teardown of its namespaces
    /// may still be running when the report arrives. Its cgroup can be removed after this.
    pub fn reap(&self) -> io::Result<()> {
        match self.wait_exit() {
            Ok(_) => Ok(()),
            // Already reaped by `wait`.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn wait_exit(&self) -> io::Result<Exit> {
        let status = rustix::process::waitid(
            rustix::process::WaitId::PidFd(self.child.pidfd.as_fd()),
            rustix::process::WaitIdOptions::EXITED,
        )?
        .ok_or_else(|| io::Error::other("the init has not exited"))?;
        let code = status.exit_status().or_else(|| status.terminating_signal().map(|s| 128 + s)).unwrap_or(125);
        Ok(Exit { code, timed_out: false })
    }
}
