//! Resource limits every sandboxed process starts with: the floor under the cgroup limits, and
//! the only limits where cgroups cannot be used.

/// A resource `setrlimit` limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// Core dump size: 0, so a crash writes no memory image.
    Core,
    /// The largest file a process may write.
    FileSize,
    /// Open descriptors.
    Files,
    /// Address space.
    AddressSpace,
    /// Processes of the agent's uid in its user namespace: the floor under the cgroup's pids
    /// limit.
    Processes,
}

impl Resource {
    pub(crate) fn raw(self) -> libc::__rlimit_resource_t {
        match self {
            Resource::Core => libc::RLIMIT_CORE,
            Resource::FileSize => libc::RLIMIT_FSIZE,
            Resource::Files => libc::RLIMIT_NOFILE,
            Resource::AddressSpace => libc::RLIMIT_AS,
            Resource::Processes => libc::RLIMIT_NPROC,
        }
    }

    pub(crate) fn rustix(self) -> rustix::process::Resource {
        use rustix::process::Resource as R;
        match self {
            Resource::Core => R::Core,
            Resource::FileSize => R::Fsize,
            Resource::Files => R::Nofile,
            Resource::AddressSpace => R::As,
            Resource::Processes => R::Nproc,
        }
    }
}

/// The rlimits for a session: no core dumps, and the file-size and memory caps when given.
pub fn for_session(max_file: Option<u64>, memory: Option<u64>) -> Vec<(Resource, u64)> {
    let mut limits = vec![(Resource::Core, 0), (Resource::Files, 4096)];
    if let Some(size) = max_file {
        limits.push((Resource::FileSize, size));
    }
    if let Some(bytes) = memory {
        // Address space is a coarse bound (it counts reservations, not use), so it sits well
        // above the cgroup's memory limit, which is the real one.
        limits.push((Resource::AddressSpace, bytes.saturating_mul(4).max(1 << 30)));
    }
    limits
}
