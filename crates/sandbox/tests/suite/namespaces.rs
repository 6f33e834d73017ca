//! Namespaces in a real process: only loopback, a private identity, a private PID space.

use portcullis_sandbox::{Namespaces, Walls, seccomp};

fn python(code: &str) -> String {
    let walls = Walls {
        namespaces: Some(Namespaces::default()),
        seccomp: Some(seccomp::compile(false).unwrap()),
        ..Walls::default()
    };
    let (status, out, err) = super::python_behind(walls, code);
    assert!(status.success(), "{status:?}: {err}");
    out
}

#[test]
fn only_loopback_exists_and_outside_addresses_are_unreachable() {
    let out = python(
        "import socket\nifaces = sorted(l.split(':')[0].strip() for l in open('/proc/net/dev').readlines()[2:])\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=5)\n    r = 'connected'\nexcept OSError as e:\n    r = e.strerror\nprint(ifaces, r)",
    );
    assert_eq!(out, "['lo'] Network is unreachable");
}

#[test]
fn the_agent_has_its_own_identity_mapped_to_the_caller() {
    let outer = rustix::process::getuid().as_raw();
    let out = python("import os\nprint(os.getuid(), open('/proc/self/uid_map').read().split())");
    assert_eq!(out, format!("0 ['0', '{outer}', '1']"));
}

#[test]
fn the_first_child_is_pid_1_of_a_private_pid_space() {
    let out = python(
        "import os\npid = os.fork()\nif pid == 0:\n    print(os.getpid(), flush=True)\n    os._exit(0)\nos.waitpid(pid, 0)",
    );
    assert_eq!(out, "1");
}

#[test]
fn hostname_changes_stay_inside() {
    let before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = python("import socket\nsocket.sethostname('agent-box')\nprint(socket.gethostname())");
    assert_eq!(out, "agent-box");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), before);
}
