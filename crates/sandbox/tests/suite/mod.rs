mod cgroup;
mod landlock;
mod mounts;
mod namespaces;
mod seccomp;
mod walls;

use std::process::{Command, ExitStatus};

use portcullis_sandbox::Walls;

/// The system interpreter: it lives under `/usr` (which the agent's root shows) and is not a
/// wrapper script (a wrapper's first fork would become PID 1 of a new PID namespace).
pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// Runs `code` in [`PYTHON`] behind `walls`; returns the exit status, the trimmed stdout and
/// the stderr.
pub(crate) fn python_behind(walls: Walls, code: &str) -> (ExitStatus, String, String) {
    let mut command = Command::new(PYTHON);
    command.args(["-S", "-c", code]);
    walls.apply_on_exec(&mut command).unwrap();
    let out = command.output().expect("python3 runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
