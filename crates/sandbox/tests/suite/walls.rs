//! The rest of the walls in a real process: a new session, rlimits, no inherited descriptors.

use std::process::Command;

use portcullis_sandbox::{Walls, rlimit};

fn python(walls: Walls, code: &str) -> (std::process::ExitStatus, String) {
    let (status, out, _) = super::python_behind(walls, code);
    (status, out)
}

#[test]
fn the_agent_runs_in_its_own_session_without_a_terminal() {
    let (status, out) = python(Walls::default(), "import os; print(os.getsid(0) == os.getpid())");
    assert!(status.success());
    assert_eq!(out, "True");
}

#[test]
fn file_size_limit_stops_a_disk_filler() {
    let dir = std::env::temp_dir().join(format!("pc-walls-fsize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("big");
    let walls = Walls { rlimits: rlimit::for_session(Some(1 << 20), None), ..Walls::default() };
    let code = format!(
        "import signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\ntry:\n    open({:?}, 'wb').write(b'x' * (4 << 20))\n    print('wrote')\nexcept OSError as e:\n    print(e.strerror)",
        file.display().to_string()
    );
    let (_, out) = python(walls, &code);
    assert_eq!(out, "File too large");
    assert!(std::fs::metadata(&file).unwrap().len() <= 1 << 20);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn core_dumps_are_off() {
    let walls = Walls { rlimits: rlimit::for_session(None, None), ..Walls::default() };
    let (status, out) = python(walls, "import resource; print(resource.getrlimit(resource.RLIMIT_CORE)[0])");
    assert!(status.success(), "{status:?}");
    assert_eq!(out, "0");
}

#[test]
fn supervisor_descriptors_do_not_reach_the_agent() {
    // A descriptor the supervisor holds without close-on-exec, as a careless library might.
    let file = std::fs::File::open("/proc/self/status").unwrap();
    rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::empty()).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let probe = format!("import os\ntry:\n    os.fstat({fd})\n    print('open')\nexcept OSError:\n    print('closed')");
    let (_, without) = python_plain(&probe);
    assert_eq!(without, "open", "the control leaks the descriptor");
    let (_, with) = python(Walls::default(), &probe);
    assert_eq!(with, "closed");
    drop(file);
}

fn python_plain(code: &str) -> (std::process::ExitStatus, String) {
    let out = Command::new("python3").args(["-S", "-c", code]).output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
