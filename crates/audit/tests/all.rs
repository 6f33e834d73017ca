//! The audit store's integration tests: real files, real processes.

mod suite;
