//! Integration tests for `portcullis-policy`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test panics to fail")]

mod suite;

/// `.ci/run` proves that a failing test fails CI: it runs the suite with this switch set and
/// expects the run to fail. Without the switch the test passes.
#[test]
fn ci_self_check_fails_when_asked_to() {
    assert!(
        std::env::var_os("PORTCULLIS_CI_SELF_CHECK_FAIL").is_none(),
        "PORTCULLIS_CI_SELF_CHECK_FAIL is set: this test fails on purpose"
    );
}
