//! The agent's filesystem view in a real process. Escape tests: each names the technique.

use std::path::{Path, PathBuf};

use portcullis_sandbox::mounts::{RootOptions, RootPlan};
use portcullis_sandbox::{Namespaces, Walls, seccomp};

struct Fixture {
    base: PathBuf,
    work: PathBuf,
    home: PathBuf,
    mounts: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn fixture(name: &str) -> Fixture {
    let base = std::env::temp_dir().join(format!("pc-mounts-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (work, home, mounts) = (base.join("work"), base.join("home"), base.join("mounts"));
    for d in [&work, &home.join(".ssh"), &home.join(".aws"), &mounts] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    std::fs::write(home.join(".aws/credentials"), "[default]\nkey = SECRET").unwrap();
    std::fs::write(work.join("notes.txt"), "hello").unwrap();
    Fixture { base, work, home, mounts }
}

/// Runs python inside the new root; returns its stdout.
fn python(f: &Fixture, code: &str) -> String {
    let plan = RootPlan::new(&RootOptions {
        base: f.mounts.clone(),
        workdir: f.work.clone(),
        home: f.home.clone(),
        tmp_size: 1 << 20,
        ephemeral: None,
        proc: false,
        hidden: Vec::new(),
        read_only: Vec::new(),
        writable: Vec::new(),
        idmapped_workdir: false,
        protected: Vec::new(),
        pinned: Vec::new(),
        writable_inside: None,
        etc_files: Vec::new(),
    })
    .unwrap();
    let walls = Walls {
        namespaces: Some(Namespaces { pid: false, inside_id: 0 }),
        root: Some(plan),
        seccomp: Some(seccomp::compile(false).unwrap()),
        ..Walls::default()
    };
    let (status, out, err) = super::python_behind(walls, code);
    assert!(status.success(), "{status:?}: {err}");
    out
}

fn try_to(action: &str) -> String {
    format!("import os\ntry:\n    {action}\n    print('ok')\nexcept OSError as e:\n    print(e.strerror)")
}

fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[test]
fn planted_ssh_and_aws_credentials_cannot_be_read() {
    let f = fixture("creds");
    let key = f.home.join(".ssh/id_ed25519");
    let aws = f.home.join(".aws/credentials");
    assert_eq!(python(&f, &try_to(&format!("open({}).read()", q(&key)))), "No such file or directory");
    assert_eq!(python(&f, &try_to(&format!("open({}).read()", q(&aws)))), "No such file or directory");
    assert_eq!(python(&f, &format!("print(os.listdir({}))", q(&f.home)).replace("print(", "import os; print(")), "[]");
}

#[test]
fn credential_file_created_after_the_start_is_invisible() {
    let f = fixture("later");
    let late = f.home.join(".ssh/id_late");
    // The agent waits; the host writes a new key meanwhile; the agent looks.
    let code = format!("import time, os\ntime.sleep(0.5)\nprint(os.path.exists({}))", q(&late));
    let handle = {
        let late = late.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::fs::write(late, "NEW KEY").unwrap();
        })
    };
    assert_eq!(python(&f, &code), "False");
    handle.join().unwrap();
}

#[test]
fn writes_to_etc_home_and_var_tmp_fail() {
    let f = fixture("writes");
    assert_eq!(python(&f, &try_to("open('/etc/portcullis-escape', 'w')")), "Read-only file system");
    assert_eq!(python(&f, &try_to("open('/var/tmp/escape', 'w')")), "No such file or directory");
    assert_eq!(python(&f, &try_to("open('/escape', 'w')")), "Read-only file system");
    // Home is a new, empty, read-only directory: a write there fails and never reaches the
    // real home. (The fixture's home lies under `/tmp`, whose own tmpfs stays writable.)
    let bashrc = f.home.join(".bashrc");
    assert_eq!(python(&f, &try_to(&format!("open({}, 'w').write('evil')", q(&bashrc)))), "Read-only file system");
    assert!(!bashrc.exists());
    assert_eq!(python(&f, &format!("import os\nprint(os.listdir({}))", q(&f.home))), "[]");
    assert_eq!(python(&f, &try_to("open('/tmp/scratch', 'w').write('x')")), "ok");
    assert_eq!(python(&f, &try_to("os.mkdir('/dev/escape')")), "Read-only file system");
}

#[test]
fn workdir_writes_land_in_the_real_workdir() {
    let f = fixture("work");
    let out = python(
        &f,
        &format!(
            "import os\nos.chdir({})\nopen('made.txt', 'w').write('x')\nprint(open('notes.txt').read())",
            q(&f.work)
        ),
    );
    assert_eq!(out, "hello");
    assert_eq!(std::fs::read_to_string(f.work.join("made.txt")).unwrap(), "x");
}

#[test]
fn filling_tmp_hits_enospc_at_the_cap() {
    let f = fixture("tmp");
    let out = python(&f, &try_to("open('/tmp/fill', 'wb').write(b'x' * (4 << 20))"));
    assert_eq!(out, "No space left on device");
}

// The host's root is detached in the plan's second part: nothing of it, nor the directory it
// was moved to, is left in the root.
#[test]
fn the_root_holds_only_what_the_plan_made() {
    let f = fixture("root");
    let out = python(&f, "import os\nprint(sorted(n for n in os.listdir('/') if n.startswith('.')))");
    assert_eq!(out, "[]");
    let out = python(&f, &try_to("os.stat('/var/lib')"));
    assert_eq!(out, "No such file or directory");
}

#[test]
fn dev_has_only_the_minimal_nodes() {
    let f = fixture("dev");
    let out = python(&f, "import os\nprint(sorted(os.listdir('/dev')))");
    assert_eq!(out, "['full', 'null', 'ptmx', 'pts', 'random', 'shm', 'tty', 'urandom', 'zero']");
}
