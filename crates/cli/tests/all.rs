//! Tests of the real `portcullis` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test panics to fail")]

mod suite;
