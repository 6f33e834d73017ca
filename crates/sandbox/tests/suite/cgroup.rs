//! cgroup limits on real process trees: a fork bomb and a memory bomb.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use portcullis_sandbox::cgroup::{Cgroup, CgroupLimits};
use portcullis_sandbox::probe::Probe;

/// A fresh cgroup with `limits`, or `None` (with a message) where this user cannot create one
/// and the sandbox is not required.
fn cgroup(name: &str, limits: CgroupLimits) -> Option<Cgroup> {
    let backend = Probe::run().cgroups;
    let required = std::env::var("PORTCULLIS_REQUIRE_SANDBOX").as_deref() == Ok("1");
    let name = format!("portcullis-test-{name}-{}", std::process::id());
    match backend.map(|b| Cgroup::create(b, &name, limits)) {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) if !required => {
            eprintln!("skipping: cannot create a cgroup here ({e})");
            None
        }
        None if !required => {
            eprintln!("skipping: no cgroup backend");
            None
        }
        other => panic!("cgroups are required here: {other:?}"),
    }
}

#[test]
fn fork_bomb_is_contained_by_the_pids_limit() {
    let Some(cg) = cgroup("forks", CgroupLimits { pids: Some(24), ..CgroupLimits::default() }) else { return };
    let code = "import os, time\nn = 0\ntry:\n    for _ in range(500):\n        if os.fork() == 0:\n            os.close(1)\n            os.close(2)\n            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n, flush=True)\nos._exit(0)";
    let mut command = Command::new("python3");
    command.args(["-S", "-c", code]);
    cg.join_on_exec(&mut command).unwrap();
    let out = command.output().unwrap();
    let forked: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(forked < 24, "{forked} processes escaped the limit");
    assert!(forked > 5, "the bomb barely started ({forked})");
    cg.kill_all();
    assert!(cg.pids().is_empty(), "processes survived the kill");
}

#[test]
fn memory_bomb_is_killed_and_reported() {
    let Some(cg) = cgroup("memory", CgroupLimits { memory: Some(64 << 20), ..CgroupLimits::default() }) else { return };
    let code = "b = bytearray(512 << 20)\nfor i in range(0, len(b), 4096):\n    b[i] = 1\nprint('survived')";
    let mut command = Command::new("python3");
    command.args(["-S", "-c", code]);
    cg.join_on_exec(&mut command).unwrap();
    let out = command.output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{:?} {}", out.status, String::from_utf8_lossy(&out.stdout));
    assert!(cg.oom_killed(), "the OOM kill was not recorded");
}
