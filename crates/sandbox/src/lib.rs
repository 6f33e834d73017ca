//! The host layer: what a turned agent can reach. Namespaces, mounts, Landlock, seccomp,
//! cgroups and limits, applied in full or refused (see `docs/sandbox.md`).
//!
//! This crate alone contains `unsafe`, in `sys`, one operation per block.

pub mod cgroup;
pub mod changes;
pub mod identity;
pub mod landlock;
pub mod monitor;
pub mod mounts;
pub mod probe;
pub mod rlimit;
pub mod seccomp;
pub mod session;
mod sys;
pub mod terminal;

/// The walls a child puts up on itself before it execs: a new session, rlimits, inherited
/// descriptors closed on exec, `no_new_privs`, Landlock, then seccomp. All of it is inherited
/// by everything the child runs.
#[derive(Debug, Default)]
pub struct Walls {
    /// New namespaces, entered first.
    pub namespaces: Option<Namespaces>,
    /// The agent's root, built in the new mount namespace.
    pub root: Option<mounts::RootPlan>,
    /// Landlock rules, prepared before the fork.
    pub landlock: Option<landlock::Prepared>,
    /// The seccomp program.
    pub seccomp: Option<Vec<seccomp::Insn>>,
    /// Resource limits (see [`rlimit::for_session`]).
    pub rlimits: Vec<(rlimit::Resource, u64)>,
}

impl Walls {
    /// Makes `command`'s child apply the walls between fork and exec; the spawn fails if any
    /// step fails.
    pub fn apply_on_exec(self, command: &mut std::process::Command) -> std::io::Result<()> {
        let filter = self.seccomp.as_deref().map(sys::Filter::new).transpose()?;
        let namespaces = self.namespaces.map(|ns| ns.setup());
        let walls = sys::ChildWalls {
            namespaces,
            root: self.root,
            landlock: self.landlock.map(|p| p.fd),
            filter,
            rlimits: self.rlimits,
        };
        sys::walls_on_exec(command, std::sync::Arc::new(walls));
        Ok(())
    }
}

/// The namespaces a sandboxed child gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespaces {
    /// A new PID namespace: the child's first child is its PID 1.
    pub pid: bool,
    /// The uid and gid the child has inside (mapped to the caller's own).
    pub inside_id: u32,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces { pid: true, inside_id: 0 }
    }
}

impl Namespaces {
    fn setup(self) -> sys::NamespaceSetup {
        let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
        let mut flags =
            libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
        if self.pid {
            flags |= libc::CLONE_NEWPID;
        }
        sys::NamespaceSetup {
            flags,
            uid_map: format!("{} {uid} 1", self.inside_id).into_bytes(),
            gid_map: format!("{} {gid} 1", self.inside_id).into_bytes(),
        }
    }
}

/// For command-line front ends: restores the default SIGPIPE action, so `portcullis … | head`
/// ends quietly when the reader goes away. Call it first thing in `main`.
pub fn restore_default_sigpipe() {
    sys::default_sigpipe();
}

/// Blocks SIGPIPE in the calling thread: a write to a peer that went away then fails with
/// `EPIPE` instead of ending the process (`splice` has no `MSG_NOSIGNAL`). For threads that
/// serve network peers, in a process that keeps SIGPIPE's default for its own output.
pub fn block_sigpipe() -> std::io::Result<()> {
    sys::process::block(&[libc::SIGPIPE])
}

const TERMINATION: &[libc::c_int] = &[libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// For long-running commands: blocks SIGINT, SIGTERM and SIGHUP in this thread and the threads
/// it starts afterwards, so that [`wait_for_termination`] receives them. Call it before
/// starting any thread.
pub fn block_termination() -> std::io::Result<()> {
    sys::process::block(TERMINATION)
}

/// Waits for SIGINT, SIGTERM or SIGHUP (blocked first with [`block_termination`]); returns it.
pub fn wait_for_termination() -> std::io::Result<i32> {
    sys::process::wait_signal(TERMINATION)
}

/// Reads a small file the kernel generates (`/proc`, cgroup files) in one `read` where it fits:
/// such files report a size of 0, so `std::fs::read_to_string` asks for the size (a `statx`),
/// then starts with a 32-byte probe and doubles, making a dozen system calls for a few kilobytes.
pub(crate) fn read_kernel_file(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        if len == bytes.len() {
            bytes.resize(2 * len, 0);
        }
    }
    bytes.truncate(len);
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
