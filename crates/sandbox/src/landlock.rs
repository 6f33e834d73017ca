//! Landlock rules that mirror the mounts: read-only places, writable places, and the TCP ports
//! the agent may connect to. Built at the best ABI the kernel offers, as a hard requirement: if
//! the kernel cannot enforce a rule, building fails rather than running with less.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use ::landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr,
    Scope, path_beneath_rules,
};

/// What the agent may touch, for Landlock.
#[derive(Clone, Debug, Default)]
pub struct LandlockRules {
    /// Readable (and executable) trees.
    pub read_only: Vec<PathBuf>,
    /// Trees the agent may change (and execute in).
    pub writable: Vec<PathBuf>,
    /// Readable trees whose files may not be executed (home, `/proc`, `/dev`).
    pub read_only_no_exec: Vec<PathBuf>,
    /// Writable trees whose files may not be executed (`/tmp`, `/dev/shm`): a program the
    /// agent writes there cannot be run. Nor can a memfd, which lies beneath no rule.
    pub writable_no_exec: Vec<PathBuf>,
    /// Directories the agent may list but not read files in (the root, which holds only the
    /// mount points the other rules cover).
    pub list_only: Vec<PathBuf>,
    /// TCP ports the agent may connect to (the relay's, and the agent's own listed services).
    pub connect_ports: Vec<u16>,
    /// TCP ports the agent may bind.
    pub bind_ports: Vec<u16>,
}

/// A ruleset ready to enforce, built before any fork.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) fd: OwnedFd,
    /// The ABI the rules were built for.
    pub abi: u32,
}

/// Why the rules cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// The kernel has no usable Landlock.
    #[error("Landlock is not available on this kernel")]
    Unavailable,
    /// The kernel cannot enforce part of the rules at this ABI.
    #[error("cannot build the Landlock rules")]
    Build(#[source] ::landlock::RulesetError),
}

impl LandlockRules {
    /// Builds the ruleset for the kernel's ABI (`abi`, from the probe).
    pub fn prepare(&self, abi: u32) -> Result<Prepared, LandlockError> {
        let level = ABI::from(i32::try_from(abi).unwrap_or(i32::MAX));
        if level == ABI::Unsupported {
            return Err(LandlockError::Unavailable);
        }
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(level))
            .map_err(LandlockError::Build)?;
        if level >= ABI::V4 {
            ruleset =
                ruleset.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp).map_err(LandlockError::Build)?;
        }
        if level >= ABI::V6 {
            ruleset = ruleset.scope(Scope::Signal | Scope::AbstractUnixSocket).map_err(LandlockError::Build)?;
        }
        let mut created = ruleset.create().map_err(LandlockError::Build)?;
        created = created
            .add_rules(path_beneath_rules(&self.read_only, AccessFs::from_read(level)))
            .map_err(LandlockError::Build)?;
        created = created
            .add_rules(path_beneath_rules(&self.writable, AccessFs::from_all(level)))
            .map_err(LandlockError::Build)?;
        let no_exec = |access: ::landlock::BitFlags<AccessFs>| access & !AccessFs::Execute;
        created = created
            .add_rules(path_beneath_rules(&self.read_only_no_exec, no_exec(AccessFs::from_read(level))))
            .map_err(LandlockError::Build)?;
        created = created
            .add_rules(path_beneath_rules(&self.writable_no_exec, no_exec(AccessFs::from_all(level))))
            .map_err(LandlockError::Build)?;
        created =
            created.add_rules(path_beneath_rules(&self.list_only, AccessFs::ReadDir)).map_err(LandlockError::Build)?;
        if level >= ABI::V4 {
            created = created
                .add_rules(self.connect_ports.iter().map(|p| Ok(NetPort::new(*p, AccessNet::ConnectTcp))))
                .map_err(LandlockError::Build)?;
            created = created
                .add_rules(self.bind_ports.iter().map(|p| Ok(NetPort::new(*p, AccessNet::BindTcp))))
                .map_err(LandlockError::Build)?;
        }
        let fd: Option<OwnedFd> = created.into();
        fd.map(|fd| Prepared { fd, abi }).ok_or(LandlockError::Unavailable)
    }
}

/// The error with its cause, for a one-line report.
pub(crate) fn describe(e: &LandlockError) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
