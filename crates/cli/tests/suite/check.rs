//! `portcullis check`: the live capability probe.

use serde_json::Value;

use super::{TempDir, portcullis};

#[test]
fn check_reports_every_feature_and_passes_where_the_sandbox_is_required() {
    let dir = TempDir::new();
    let run = portcullis(&["check", "--json"], dir.path(), None);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["feature"].as_str().unwrap()).collect();
    assert_eq!(names, ["namespaces", "overlayfs", "landlock", "seccomp", "cgroups"]);
    if std::env::var("PORTCULLIS_REQUIRE_SANDBOX").as_deref() == Ok("1") {
        assert_eq!(run.code, 0, "{}", run.stdout);
        assert_eq!(v["ok"], true);
    }
}

#[test]
fn missing_landlock_is_named_and_refused() {
    let dir = TempDir::new();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
    let out =
        command.arg("check").env("PORTCULLIS_SIMULATE_MISSING", "landlock").current_dir(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("MISSING  Landlock"), "{stdout}");
    assert!(stderr.contains("missing Landlock"), "{stderr}");
}
