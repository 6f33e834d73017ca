//! Landlock in a real process: writes outside the writable trees, reads outside the readable
//! ones, and TCP connects to unlisted ports all fail.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use portcullis_sandbox::landlock::LandlockRules;
use portcullis_sandbox::probe::Probe;
use portcullis_sandbox::{Walls, seccomp};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dirs(name: &str) -> (Dir, PathBuf, PathBuf) {
    let base = std::env::temp_dir().join(format!("pc-landlock-{name}-{}", std::process::id()));
    let work = base.join("work");
    let secret = base.join("secret");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("token"), "SECRET").unwrap();
    (Dir(base), work, secret)
}

/// The kernel's ABI, or `None` (and a message) where Landlock is missing and not required.
fn abi() -> Option<u32> {
    let abi = Probe::run().landlock_abi;
    if abi.is_none() {
        assert_ne!(
            std::env::var("PORTCULLIS_REQUIRE_SANDBOX").as_deref(),
            Ok("1"),
            "Landlock is required here but missing"
        );
        eprintln!("skipping: Landlock is not available");
    }
    abi
}

/// Runs python code behind Landlock (system dirs read-only, `work` writable, `ports` open).
fn python(work: &Path, ports: &[u16], code: &str) -> String {
    python_with(work, &[], ports, code)
}

/// As [`python`], with `no_exec` writable but not executable.
fn python_with(work: &Path, no_exec: &[PathBuf], ports: &[u16], code: &str) -> String {
    let abi = abi().unwrap_or(0);
    let rules = LandlockRules {
        read_only: ["/usr", "/lib", "/lib64", "/bin", "/etc", "/proc", "/dev"]
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect(),
        writable: vec![work.to_path_buf()],
        read_only_no_exec: Vec::new(),
        writable_no_exec: no_exec.to_vec(),
        list_only: Vec::new(),
        connect_ports: ports.to_vec(),
        bind_ports: Vec::new(),
    };
    let walls = Walls {
        landlock: Some(rules.prepare(abi).unwrap()),
        seccomp: Some(seccomp::compile(false).unwrap()),
        ..Walls::default()
    };
    let (status, out, err) = super::python_behind(walls, code);
    assert!(status.success(), "{status:?}: {err}");
    out
}

fn attempt(action: &str) -> String {
    format!("import os, socket\ntry:\n    {action}\n    print('ok')\nexcept OSError as e:\n    print(e.strerror)")
}

#[test]
fn write_outside_the_writable_tree_fails() {
    if abi().is_none() {
        return;
    }
    let (_d, work, _) = dirs("write");
    let inside = work.join("ok.txt");
    assert_eq!(
        python(&work, &[], &attempt(&format!("open({:?}, 'w').write('x')", inside.display().to_string()))),
        "ok"
    );
    assert_eq!(python(&work, &[], &attempt("open('/etc/portcullis-escape', 'w').write('x')")), "Permission denied");
    let tmp = std::env::temp_dir().join("portcullis-landlock-escape");
    assert_eq!(
        python(&work, &[], &attempt(&format!("open({:?}, 'w').write('x')", tmp.display().to_string()))),
        "Permission denied"
    );
    assert!(!tmp.exists());
}

#[test]
fn read_outside_the_readable_trees_fails() {
    if abi().is_none() {
        return;
    }
    let (_d, work, secret) = dirs("read");
    let token = secret.join("token");
    assert_eq!(
        python(&work, &[], &attempt(&format!("open({:?}).read()", token.display().to_string()))),
        "Permission denied"
    );
}

#[test]
fn tcp_connect_only_reaches_listed_ports() {
    if abi().is_none() {
        return;
    }
    let (_d, work, _) = dirs("tcp");
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let (open_port, closed_port) = (open.local_addr().unwrap().port(), closed.local_addr().unwrap().port());
    let connect = |port: u16| attempt(&format!("socket.create_connection(('127.0.0.1', {port}), timeout=5).close()"));
    assert_eq!(python(&work, &[open_port], &connect(open_port)), "ok");
    assert_eq!(python(&work, &[open_port], &connect(closed_port)), "Permission denied");
}

#[test]
fn signals_to_processes_outside_are_refused() {
    if abi().is_none() {
        return;
    }
    let (_d, work, _) = dirs("signal");
    // Signal 0 only checks permission; the parent test process is outside the domain.
    let code = attempt(&format!("os.kill({}, 0)", std::process::id()));
    assert_eq!(python(&work, &[], &code), "Operation not permitted");
}

// `cp /usr/bin/id /tmp/x; /tmp/x -u`: a program the agent writes in a place that is not
// executable cannot run, whatever name it has. (A memfd lies beneath no path: Landlock does not
// cover it; the exec monitor's `anonymous_exec` guard refuses it.)
#[test]
fn a_program_written_where_execution_is_not_allowed_cannot_run() {
    if abi().is_none() {
        return;
    }
    let (_d, work, secret) = dirs("noexec");
    let tmp = secret.parent().unwrap().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let code = format!(
        "import os, shutil, subprocess\nfor d in [{:?}, {:?}]:\n    p = shutil.copy('/bin/true', os.path.join(d, 'x'))\n    try:\n        subprocess.run([p], check=True)\n        print('ok')\n    except OSError as e:\n        print(e.strerror)\n",
        work.display().to_string(),
        tmp.display().to_string()
    );
    assert_eq!(python_with(&work, &[tmp], &[], &code), "ok\nPermission denied");
}
