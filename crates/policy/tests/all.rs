//! Integration tests for `portcullis-policy`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test panics to fail")]

mod suite;
