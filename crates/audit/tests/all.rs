//! The audit store's integration tests: real files, real processes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test panics to fail")]

mod suite;
