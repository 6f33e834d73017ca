//! The seccomp filter in a real process: each escape technique it removes, one test each.
//! The probe programs are small Python scripts calling the syscall directly.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use portcullis_sandbox::{Walls, seccomp};

/// Runs `code` in python3 under the filter; returns (exit status, stdout).
fn python(code: &str) -> (std::process::ExitStatus, String) {
    let walls = Walls { seccomp: Some(seccomp::compile(false).unwrap()), ..Walls::default() };
    let (status, out, _) = super::python_behind(walls, code);
    (status, out)
}

/// The errno a direct syscall gets.
fn errno_of(call: &str) -> String {
    let code = format!(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nr = {call}\nprint(os.strerror(ctypes.get_errno()) if r < 0 else 'ok')"
    );
    let (status, out) = python(&code);
    assert!(status.success(), "the probe died: {status:?}");
    out
}

const EPERM: &str = "Operation not permitted";

#[test]
fn ordinary_work_still_runs_under_the_filter() {
    let (status, out) = python("import socket; s = socket.socket(); s.close(); print(sum(range(10)))");
    assert!(status.success());
    assert_eq!(out, "45");
}

#[test]
fn new_user_namespace_via_unshare_is_refused() {
    assert_eq!(errno_of("libc.unshare(0x10000000)"), EPERM);
}

#[test]
fn mount_is_refused() {
    assert_eq!(errno_of("libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)"), EPERM);
}

#[test]
fn bpf_is_refused() {
    assert_eq!(errno_of(&format!("libc.syscall({}, 0, 0, 0)", libc::SYS_bpf)), EPERM);
}

#[test]
fn ptrace_attach_is_refused() {
    assert_eq!(errno_of("libc.ptrace(16, 1, 0, 0)"), EPERM);
}

#[test]
fn tiocsti_injection_is_refused() {
    // Without the filter this fails with ENOTTY (no terminal here); with it, EPERM first.
    assert_eq!(errno_of("libc.ioctl(0, 0x5412, ctypes.c_char_p(b'x'))"), EPERM);
}

#[test]
fn packet_sockets_and_non_routing_netlink_are_refused() {
    // AF_PACKET (17): raw frames.
    assert_eq!(errno_of("libc.socket(17, 3, 0)"), "Address family not supported by protocol");
    // AF_NETLINK (16) with NETLINK_KOBJECT_UEVENT (15); routing netlink (0) is allowed for `ip link`.
    assert_eq!(errno_of("libc.socket(16, 3, 15)"), "Protocol not supported");
}

#[test]
fn setuid_and_setgid_bits_cannot_be_given() {
    let dir = std::env::temp_dir().join(format!("portcullis-setid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("f");
    let code = format!(
        "import os\np = {f:?}\nopen(p, 'w').close()\n\
         def attempt(fn):\n    try:\n        fn(); print('ok')\n    except OSError as e:\n        print(e.strerror)\n\
         attempt(lambda: os.chmod(p, 0o4755))\n\
         attempt(lambda: os.chmod(p, 0o2755))\n\
         attempt(lambda: os.close(os.open(p + '2', os.O_CREAT | os.O_WRONLY, 0o4755)))\n\
         attempt(lambda: os.chmod(p, 0o755))\n\
         print(oct(os.stat(p).st_mode & 0o7777))",
        f = f.display().to_string()
    );
    let (status, out) = python(&code);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(out, [EPERM, EPERM, EPERM, "ok", "0o755"].join("\n"));
}

#[test]
fn x32_syscall_numbers_kill_the_process() {
    let (status, _) = python("import ctypes; ctypes.CDLL(None).syscall(0x40000000 + 39)");
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status:?}");
}

#[test]
fn no_new_privs_is_set() {
    let (_, out) = python("print([l for l in open('/proc/self/status') if l.startswith('NoNewPrivs')][0].split()[1])");
    assert_eq!(out, "1");
}

/// The same probes without the filter get other answers, so the tests above measure the filter.
#[test]
fn without_the_filter_the_probes_behave_differently() {
    let code = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nr = libc.ioctl(0, 0x5412, ctypes.c_char_p(b'x'))\nprint(os.strerror(ctypes.get_errno()) if r < 0 else 'ok')";
    let out = Command::new("python3").args(["-S", "-c", code]).stdin(std::process::Stdio::null()).output().unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout).trim(), EPERM);
}
