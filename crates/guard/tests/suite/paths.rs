//! Path confinement against real files, symlinks, hard links and races. Escape tests: each
//! names the technique it stops.

use std::io::{Read, Write};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use portcullis_guard::path::{OpenMode, PathError, PathSettings, Workdir};

struct Fixture {
    base: PathBuf,
    work: PathBuf,
    home: PathBuf,
    wd: Workdir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn fixture(name: &str) -> Fixture {
    let base = std::env::temp_dir().join(format!("pc-paths-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let work = base.join("work");
    let home = base.join("home");
    std::fs::create_dir_all(work.join("src")).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "PRIVATE KEY").unwrap();
    std::fs::write(base.join("outside.txt"), "outside").unwrap();
    std::fs::write(work.join("src/main.rs"), "fn main() {}").unwrap();
    let wd = Workdir::open_dir(&work, &home, PathSettings::default()).unwrap();
    Fixture { base, work, home, wd }
}

fn read(f: &Fixture, p: &str) -> Result<String, PathError> {
    let mut s = String::new();
    f.wd.open(p, OpenMode::Read)?.read_to_string(&mut s).unwrap();
    Ok(s)
}

#[test]
fn files_inside_the_workdir_open_for_read_and_write() {
    let f = fixture("inside");
    assert_eq!(read(&f, "src/main.rs").unwrap(), "fn main() {}");
    assert_eq!(read(&f, &f.work.join("src/main.rs").display().to_string()).unwrap(), "fn main() {}");
    f.wd.open("src/new.rs", OpenMode::Create).unwrap().write_all(b"x").unwrap();
    assert_eq!(std::fs::read_to_string(f.work.join("src/new.rs")).unwrap(), "x");
    assert!(matches!(read(&f, "src/missing.rs"), Err(e) if !e.is_refusal()));
}

#[test]
fn symlink_in_workdir_to_etc_passwd_is_refused() {
    let f = fixture("etc");
    symlink("/etc/passwd", f.work.join("passwd")).unwrap();
    assert!(matches!(read(&f, "passwd"), Err(PathError::Escapes(_))));
}

#[test]
fn symlink_in_workdir_to_home_ssh_is_refused() {
    let f = fixture("ssh");
    std::fs::write(f.home.join(".ssh/known_hosts"), "hosts").unwrap();
    symlink(f.home.join(".ssh"), f.work.join("keys")).unwrap();
    assert!(matches!(read(&f, "keys/known_hosts"), Err(PathError::Escapes(_))));
    assert!(read(&f, "keys/id_ed25519").unwrap_err().is_refusal());
    symlink("../home/.ssh/id_ed25519", f.work.join("relative")).unwrap();
    assert!(matches!(read(&f, "relative"), Err(PathError::Escapes(_))));
}

#[test]
fn symlink_to_proc_magic_link_is_refused() {
    let f = fixture("magic");
    symlink("/proc/self/root/etc/passwd", f.work.join("magic")).unwrap();
    assert!(read(&f, "magic").unwrap_err().is_refusal());
}

#[test]
fn directory_swapped_for_symlink_during_open_never_yields_outside_file() {
    let f = fixture("race");
    let dir = f.work.join("swap");
    let outside_dir = f.base.join("outside_dir");
    std::fs::create_dir_all(&outside_dir).unwrap();
    std::fs::write(outside_dir.join("file"), "SECRET").unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file"), "inside").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir, outside_dir, staging) =
            (stop.clone(), dir.clone(), outside_dir.clone(), f.work.join("staging"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Swap the real directory for a symlink to the outside one, and back.
                let _ = std::fs::rename(&dir, &staging);
                let _ = symlink(&outside_dir, &dir);
                let _ = std::fs::remove_file(&dir);
                let _ = std::fs::rename(&staging, &dir);
            }
        })
    };
    let (mut inside, mut refused) = (0, 0);
    for _ in 0..20_000 {
        match read(&f, "swap/file") {
            Ok(text) => {
                assert_eq!(text, "inside", "an open through the swapped symlink reached outside");
                inside += 1;
            }
            Err(e) => refused += usize::from(e.is_refusal()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(inside > 0, "the race never let the real file be read ({refused} refusals)");
}

#[test]
fn hard_link_to_file_outside_workdir_is_refused() {
    let f = fixture("hardlink");
    let target = f.base.join("outside.txt");
    match std::fs::hard_link(&target, f.work.join("linked.txt")) {
        Ok(()) => assert!(matches!(read(&f, "linked.txt"), Err(PathError::HardLink(_, 2)))),
        // Some filesystems and sysctls (fs.protected_hardlinks) refuse the link itself.
        Err(e) => eprintln!("hard link not possible here ({e}); the filesystem already stops this attack"),
    }
}

#[test]
fn credential_and_startup_files_inside_the_workdir_are_refused() {
    let f = fixture("names");
    std::fs::create_dir_all(f.work.join(".git/hooks")).unwrap();
    std::fs::create_dir_all(f.work.join(".ssh")).unwrap();
    std::fs::write(f.work.join(".ssh/id_rsa"), "k").unwrap();
    assert!(matches!(read(&f, ".ssh/id_rsa"), Err(PathError::Credential(_))));
    for p in [".git/hooks/pre-commit", ".git/config", ".bashrc", ".mcp.json", ".claude/settings.json", "lib/site.pth"] {
        assert!(matches!(f.wd.open(p, OpenMode::Create), Err(PathError::StartupFile(_))), "{p}");
    }
    assert!(!f.work.join(".git/hooks/pre-commit").exists());
    // Reading them is fine; only writes plant code.
    std::fs::write(f.work.join(".bashrc"), "x").unwrap();
    assert!(read(&f, ".bashrc").is_ok());
    // A symlink with an innocent name still lands on the hook.
    symlink(".git/hooks/pre-commit", f.work.join("notes.txt")).unwrap();
    std::fs::write(f.work.join(".git/hooks/pre-commit"), "").unwrap();
    assert!(matches!(f.wd.open("notes.txt", OpenMode::Write), Err(PathError::StartupFile(_))));
    // The checks can be switched off by policy.
    let off = Workdir::open_dir(
        &f.work,
        &f.home,
        PathSettings { credential_paths: false, startup_files: false, hard_links: true },
    )
    .unwrap();
    assert!(off.open(".git/config", OpenMode::Create).is_ok());
}

/// Decodes a payload the way a careless server would (every percent form, `%u`, look-alikes
/// and backslashes), to decide independently whether it climbs out of `depth` directories.
fn leaves(payload: &str, depth: usize) -> bool {
    let mut s = payload.to_string();
    for _ in 0..4 {
        s = s.replace("%%", "%");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else if b[i] == b'%' && (b.get(i + 1) == Some(&b'u')) && i + 5 < b.len() {
                out.push(b'.');
                i += 6;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        s = String::from_utf8_lossy(&out).into_owned();
    }
    // An absolute path leaves the workdir; a leading backslash is a file name on Linux.
    let mut escaped = s.starts_with('/');
    let s = s.replace(['\\', '\u{ff0e}'], "/").replace("\u{fffd}\u{fffd}", "..").replace('\u{2025}', "..");
    let mut level: i64 = depth as i64;
    for part in s.split('/') {
        match part {
            ".." => {
                level -= 1;
                escaped |= level < 0;
            }
            "" | "." => {}
            _ => level += 1,
        }
    }
    escaped
}

#[test]
fn every_traversal_payload_that_leaves_the_workdir_is_refused() {
    let f = fixture("corpus");
    let mut checked = 0;
    for list in [
        include_str!("../data/traversal/deep_traversal.txt"),
        include_str!("../data/traversal/directory_traversal.txt"),
    ] {
        for payload in list.lines().filter(|l| !l.trim().is_empty()) {
            let payload = payload.replace("{FILE}", "etc/passwd");
            if !leaves(&payload, 0) {
                continue;
            }
            checked += 1;
            match f.wd.open(&payload, OpenMode::Read) {
                Ok(_) => panic!("{payload:?} opened a file"),
                Err(e) => assert!(e.is_refusal(), "{payload:?} was not refused by a check: {e}"),
            }
        }
    }
    assert!(checked > 600, "only {checked} payloads leave the workdir");
}

#[test]
fn very_long_and_deep_paths_get_a_quick_answer() {
    let f = fixture("long");
    let deep = "a/".repeat(100_000);
    assert!(matches!(f.wd.open(&deep, OpenMode::Read), Err(PathError::TooLong(_))));
}
