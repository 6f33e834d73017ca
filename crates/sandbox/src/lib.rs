//! The host layer: what a turned agent can reach. Namespaces, mounts, Landlock, seccomp,
//! cgroups and limits, applied in full or refused (see `docs/sandbox.md`).
//!
//! This crate alone contains `unsafe`, in `sys`, one operation per block.

pub mod probe;
pub mod seccomp;
mod sys;
