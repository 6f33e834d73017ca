//! Integration tests of the proxy and the resolver, served in-process from real sockets and
//! spoken to by real clients' bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test panics to fail")]

mod suite;
