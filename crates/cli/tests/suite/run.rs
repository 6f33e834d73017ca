//! `portcullis run`: the escape suite. Each test is one technique a turned agent would try,
//! run against the real binary, once as root and once as an unprivileged user. The agent is a
//! script file, so the guards (which read command lines) do not stop it before the walls do:
//! these tests measure the kernel's walls.
//!
//! On this kind of host an unprivileged user cannot create cgroups (v1 without delegation), so
//! the unprivileged runs pass `--dangerously-allow-partial-sandbox=cgroups` and assert that cgroups are
//! the only thing missing; the rlimit floor holds the limits there.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::TempDir;

pub(super) const NOBODY: u32 = 65534;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum User {
    Root,
    Unprivileged,
}

pub(super) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `true` when the test can run as `user` here; fails instead of skipping where the sandbox is
/// required.
pub(super) fn available(user: User) -> bool {
    let required = std::env::var("PORTCULLIS_REQUIRE_SANDBOX").as_deref() == Ok("1");
    let ok = match user {
        User::Root => is_root(),
        User::Unprivileged => true,
    };
    if !ok {
        assert!(!required, "this test must run as root where the sandbox is required");
        eprintln!("skipping: needs root");
    }
    ok
}

/// One session's directories: the project, a home with planted credentials, and a state dir.
pub(super) struct Case {
    _dir: TempDir,
    pub(super) user: User,
    pub(super) work: PathBuf,
    pub(super) home: PathBuf,
    pub(super) state: PathBuf,
    pub(super) bin: PathBuf,
}

impl Case {
    pub(super) fn new(user: User) -> Case {
        let dir = TempDir::new();
        let (work, home, state) = (dir.path().join("work"), dir.path().join("home"), dir.path().join("state"));
        for d in [&work, &home.join(".ssh"), &home.join(".aws"), &state] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(home.join(".ssh/id_ed25519"), "-----BEGIN OPENSSH PRIVATE KEY-----\nplanted\n").unwrap();
        std::fs::write(home.join(".aws/credentials"), "[default]\naws_secret_access_key = planted\n").unwrap();
        std::fs::write(work.join("f"), "hello\n").unwrap();
        let mut bin = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
        if user == User::Unprivileged && is_root() {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for entry in walk(dir.path()) {
                std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
            }
            if !reachable_by_others(&bin) {
                let copy = dir.path().join("portcullis");
                std::fs::copy(&bin, &copy).unwrap();
                bin = copy;
            }
        }
        Case { user, work, home, state, bin, _dir: dir }
    }

    /// Runs `portcullis run [args] -- CMD…` in the workdir; returns the output and the summary,
    /// checked to show every wall enforced (for the unprivileged user, all but cgroups).
    pub(super) fn run(&self, args: &[&str], command: &[&str]) -> Session {
        let s = self.run_with(args, command, |_| {});
        s.check_enforced(self.user);
        s
    }

    /// `portcullis run --json ARGS -- CMD…` as the case's user, in the workdir, with the
    /// dangerous flag for the unprivileged user (see the module's note).
    /// Runs `portcullis ARGS` (not `run`) as the case's user, on its state.
    pub(super) fn subcommand(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).current_dir(&self.work).env("PORTCULLIS_STATE_DIR", &self.state).env("HOME", &self.home);
        if self.user == User::Unprivileged && is_root() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd.output().unwrap()
    }

    pub(super) fn command(&self, args: &[&str], command: &[&str]) -> Command {
        // No session outlives its test, whatever happens to the test: the supervisor gets
        // SIGKILL when the test's thread ends, and the sandbox dies with the supervisor.
        let mut cmd = Command::new("/usr/bin/setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(&self.bin);
        cmd.arg("run").arg("--json").args(args);
        if self.user == User::Unprivileged {
            cmd.arg("--dangerously-allow-partial-sandbox=cgroups");
        }
        cmd.arg("--").args(command);
        cmd.current_dir(&self.work)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("PORTCULLIS_STATE_DIR", &self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if self.user == User::Unprivileged && is_root() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd
    }

    pub(super) fn run_with(&self, args: &[&str], command: &[&str], tweak: impl FnOnce(&mut Command)) -> Session {
        let mut cmd = self.command(args, command);
        tweak(&mut cmd);
        Session::from(cmd.output().unwrap())
    }

    /// Runs a python program (written to the workdir) as the agent.
    pub(super) fn python(&self, args: &[&str], code: &str) -> Session {
        self.script("agent.py", code);
        self.run(args, &["/usr/bin/python3", "agent.py"])
    }

    /// Runs a shell script (written to the workdir) as the agent.
    pub(super) fn sh(&self, args: &[&str], code: &str) -> Session {
        self.script("agent.sh", code);
        self.run(args, &["/bin/sh", "agent.sh"])
    }

    pub(super) fn script(&self, name: &str, code: &str) {
        let path = self.work.join(name);
        std::fs::write(&path, code).unwrap();
        if self.user == User::Unprivileged && is_root() {
            std::os::unix::fs::lchown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }

    pub(super) fn policy(&self, text: &str) -> String {
        let path = self.work.parent().unwrap().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        path.display().to_string()
    }

    /// The session's records in the audit store, as stored.
    pub(super) fn events(&self, session: &Session) -> Vec<Value> {
        self.events_of(session.summary["session"].as_str().unwrap())
    }

    /// Session `id`'s records in the audit store, as stored.
    pub(super) fn events_of(&self, id: &str) -> Vec<Value> {
        let mut segments: Vec<PathBuf> = std::fs::read_dir(self.state.join("audit"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        segments.sort();
        segments
            .iter()
            .flat_map(|p| std::fs::read_to_string(p).unwrap().lines().map(str::to_owned).collect::<Vec<_>>())
            .map(|l| serde_json::from_str::<Value>(&l).unwrap())
            .filter(|r| r["session"] == id)
            .collect()
    }
}

pub(super) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn reachable_by_others(path: &Path) -> bool {
    path.ancestors().skip(1).all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        && std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o005 == 0o005)
}

pub(super) struct Session {
    pub(super) code: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) summary: Value,
}

impl Session {
    pub(super) fn from(out: Output) -> Session {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        // The summary is the last JSON object on stderr; an agent killed mid-line may have left
        // text before it on the same line.
        let summary = stderr
            .lines()
            .rev()
            .find_map(|l| l.match_indices("{\"").find_map(|(i, _)| serde_json::from_str::<Value>(&l[i..]).ok()))
            .unwrap_or(Value::Null);
        Session { code: out.status.code().unwrap_or(-1), stdout, stderr, summary }
    }

    /// Only cgroups may be missing, and only for the unprivileged user.
    pub(super) fn check_enforced(&self, user: User) {
        assert!(self.summary.is_object(), "no summary: {self:?}");
        let degraded: Vec<&str> =
            self.summary["degraded"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
        match user {
            User::Root => assert!(degraded.is_empty(), "degraded as root: {degraded:?}"),
            User::Unprivileged => assert!(degraded.iter().all(|d| d.starts_with("cgroups")), "degraded: {degraded:?}"),
        }
    }

    pub(super) fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    pub(super) fn limits_hit(&self) -> String {
        self.summary["limits_hit"].to_string()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Defines `NAME_as_root` and `NAME_as_unprivileged` from one body taking a [`User`].
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn as_root() {
                if available(User::Root) {
                    ($body)(User::Root);
                }
            }
            #[test]
            fn as_unprivileged() {
                if available(User::Unprivileged) {
                    ($body)(User::Unprivileged);
                }
            }
        }
    };
}

pub(super) use both;

/// A python prelude: `attempt(expr)` prints `ok` or the error's strerror.
pub(super) const PRELUDE: &str = "import ctypes, os, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def attempt(f):
    try:
        r = f()
        print('ok' if r is None or not isinstance(r, int) or r >= 0 else os.strerror(ctypes.get_errno()))
    except OSError as e:
        print(e.strerror)
";

// ---------------------------------------------------------------- credentials

both!(planted_credentials_cannot_be_read, |user| {
    let case = Case::new(user);
    let code = format!(
        "{PRELUDE}attempt(lambda: open({:?}).read())\nattempt(lambda: open({:?}).read())\nprint(sorted(os.listdir({:?})))\n",
        case.home.join(".ssh/id_ed25519"),
        case.home.join(".aws/credentials"),
        case.home
    );
    let s = case.python(&[], &code);
    assert_eq!(s.lines(), ["No such file or directory", "No such file or directory", "[]"], "{s:?}");
    assert_eq!(s.code, 0, "{s:?}");
});

both!(a_credential_file_created_after_the_start_is_invisible, |user| {
    let case = Case::new(user);
    let late = case.home.join(".aws/late-credentials");
    let code = format!("{PRELUDE}time.sleep(1.5)\nattempt(lambda: open({late:?}).read())\n");
    case.script("agent.py", &code);
    let late_for_thread = late.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&late_for_thread, "aws_secret_access_key = late").unwrap();
    });
    let s = case.run(&[], &["/usr/bin/python3", "agent.py"]);
    writer.join().unwrap();
    assert!(late.exists());
    assert_eq!(s.lines(), ["No such file or directory"], "{s:?}");
});

both!(the_state_directory_and_the_policy_file_are_invisible, |user| {
    let case = Case::new(user);
    // A policy file inside the workdir, where the agent would look first.
    let policy = case.work.join("portcullis.toml");
    std::fs::write(&policy, "[limits]\nwall_clock = \"1m\"\n").unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let code = format!(
        "{PRELUDE}attempt(lambda: os.listdir({:?}))\nprint(repr(open('portcullis.toml').read()))\n",
        case.state
    );
    let s = case.python(&["--policy", "portcullis.toml"], &code);
    assert_eq!(s.lines(), ["No such file or directory", "''"], "{s:?}");
});

// ---------------------------------------------------------------- writes

both!(writes_to_etc_home_and_var_tmp_fail, |user| {
    let case = Case::new(user);
    let code = format!(
        "{PRELUDE}attempt(lambda: open('/etc/escape', 'w'))\nattempt(lambda: open({:?}, 'w'))\nattempt(lambda: open('/var/tmp/escape', 'w'))\n",
        case.home.join(".bashrc")
    );
    let s = case.python(&[], &code);
    assert_eq!(s.lines(), ["Read-only file system", "Read-only file system", "No such file or directory"], "{s:?}");
    assert!(!case.home.join(".bashrc").exists());
});

both!(workdir_writes_land_in_the_overlay_until_apply, |user| {
    let case = Case::new(user);
    let s = case.sh(&[], "echo changed > f\necho new > g\ncat f g\n");
    assert_eq!(s.lines(), ["changed", "new"], "{s:?}");
    // The real workdir is unchanged, and the summary lists the changes.
    assert_eq!(std::fs::read_to_string(case.work.join("f")).unwrap(), "hello\n");
    assert!(!case.work.join("g").exists());
    let changed: Vec<String> = s.summary["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["kind"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    assert!(changed.contains(&"modified f".to_owned()) && changed.contains(&"added g".to_owned()), "{changed:?}");
    let id = s.summary["session"].as_str().unwrap().to_owned();
    let out = case.subcommand(&["apply", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(case.work.join("f")).unwrap(), "changed\n");
    assert_eq!(std::fs::read_to_string(case.work.join("g")).unwrap(), "new\n");
});

// Edits made in the real workdir after the session started (an editor, another tool) are not
// overwritten unasked: nothing is applied, and the clashing paths are named.
both!(apply_refuses_to_overwrite_what_changed_in_the_workdir_meanwhile, |user| {
    let case = Case::new(user);
    let s = case.sh(&[], "echo agent > f\necho new > g\necho fresh > h\n");
    assert_eq!(s.code, 0, "{s:?}");
    // File times lag a precise clock by up to a tick.
    std::thread::sleep(Duration::from_millis(20));
    for (name, text) in [("f", "host edit\n"), ("g", "host file\n")] {
        let path = case.work.join(name);
        std::fs::write(&path, text).unwrap();
        if user == User::Unprivileged && is_root() {
            std::os::unix::fs::lchown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let id = s.summary["session"].as_str().unwrap().to_owned();
    let out = case.subcommand(&["apply", &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("\n  f\n") && err.contains("\n  g\n") && !err.contains("\n  h\n"), "{err}");
    assert_eq!(std::fs::read_to_string(case.work.join("f")).unwrap(), "host edit\n");
    assert!(!case.work.join("h").exists(), "nothing may be applied");
    let out = case.subcommand(&["apply", "--overwrite", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(case.work.join("f")).unwrap(), "agent\n");
    assert_eq!(std::fs::read_to_string(case.work.join("g")).unwrap(), "new\n");
    assert_eq!(std::fs::read_to_string(case.work.join("h")).unwrap(), "fresh\n");
});

// Without an id, `diff` and `apply` take the session that ended last among those with changes.
both!(diff_without_an_id_shows_the_last_session_with_changes, |user| {
    let case = Case::new(user);
    let first = case.sh(&[], "echo one > one\n");
    let second = case.sh(&[], "echo two > two\n");
    let unchanged = case.sh(&[], "true\n");
    assert!([&first, &second, &unchanged].iter().all(|s| s.code == 0));
    let out = case.subcommand(&["diff", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["session"], second.summary["session"], "{shown}");
    // A session that changed nothing keeps no directory, and `diff` says why it has none.
    let id = unchanged.summary["session"].as_str().unwrap();
    assert!(!case.state.join("sessions").join(id).exists());
    assert!(case.state.join("sessions").join(second.summary["session"].as_str().unwrap()).exists());
    let out = case.subcommand(&["diff", id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("changed something"), "{err}");
});

// A tool under the home (as `~/.cargo` is), shown read-only by the policy: it runs, and it
// cannot be changed. The home is private (0700): as root, the init runs as an unprivileged host
// uid that could not reach it, so the supervisor passes the tree itself.
both!(a_read_only_path_under_a_private_home_runs_and_stays_unchanged, |user| {
    let case = Case::new(user);
    let tool = case.home.join(".tool/bin");
    std::fs::create_dir_all(&tool).unwrap();
    std::fs::write(tool.join("hello"), "#!/bin/sh\necho hello from the tool\n").unwrap();
    std::fs::set_permissions(tool.join("hello"), std::fs::Permissions::from_mode(0o755)).unwrap();
    if user == User::Unprivileged && is_root() {
        for p in [case.home.join(".tool"), tool.clone(), tool.join("hello")] {
            std::os::unix::fs::lchown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    std::fs::set_permissions(&case.home, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Not shown yet: not found inside, and the summary says where the host has it.
    let path = format!("{}:/usr/bin:/bin", tool.display());
    let s = case.run_with(&[], &["hello"], |cmd| {
        cmd.env("PATH", &path);
    });
    assert_eq!(s.code, 127, "{s:?}");
    assert!(s.stderr.contains("read_only = [\"~/.tool\"]"), "{s:?}");
    let policy =
        case.policy(&format!("[filesystem]\nread_only = [{:?}]\n", case.home.join(".tool").display().to_string()));
    let hello = tool.join("hello");
    let s = case.sh(
        &["--policy", &policy],
        &format!("{0}\n(echo changed > {0}) 2>/dev/null && echo written || echo refused\n", hello.display()),
    );
    assert_eq!(s.lines(), ["hello from the tool", "refused"], "{s:?}");
    assert_eq!(std::fs::read_to_string(&hello).unwrap(), "#!/bin/sh\necho hello from the tool\n");
});

// A writable path under the home (an agent's own state, as `~/.claude` is) is the agent's to
// change, as the workdir is, and written through.
both!(a_writable_path_under_a_private_home_can_be_changed, |user| {
    let case = Case::new(user);
    let state = case.home.join(".agent-state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("settings.json"), "{}\n").unwrap();
    if user == User::Unprivileged && is_root() {
        for p in [state.clone(), state.join("settings.json")] {
            std::os::unix::fs::lchown(&p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    std::fs::set_permissions(&case.home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let policy = case.policy(&format!("[filesystem]\nwritable = [\".\", {:?}]\n", state.display().to_string()));
    let s = case.sh(
        &["--policy", &policy],
        &format!("echo '{{\"seen\": 1}}' > {0}/settings.json && touch {0}/new && echo changed\n", state.display()),
    );
    assert_eq!(s.lines(), ["changed"], "{s:?}");
    assert_eq!(std::fs::read_to_string(state.join("settings.json")).unwrap(), "{\"seen\": 1}\n");
    use std::os::unix::fs::MetadataExt;
    let made = std::fs::metadata(state.join("new")).unwrap();
    let owner = std::fs::metadata(&state).unwrap();
    assert_eq!((made.uid(), made.gid()), (owner.uid(), owner.gid()), "a new file takes the owner's ids on disk");
});

// A single file the policy lists (an agent's own settings file, as `~/.claude.json` is) is
// shown, read-only or writable as listed.
both!(a_file_the_policy_lists_is_shown_as_listed, |user| {
    let case = Case::new(user);
    let (settings, config) = (case.home.join(".agent.json"), case.home.join(".tool.conf"));
    std::fs::write(&settings, "{}\n").unwrap();
    std::fs::write(&config, "colour = blue\n").unwrap();
    if user == User::Unprivileged && is_root() {
        for p in [&settings, &config] {
            std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    std::fs::set_permissions(&case.home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let policy = case.policy(&format!(
        "[filesystem]\nwritable = [\".\", {:?}]\nread_only = [{:?}]\n",
        settings.display().to_string(),
        config.display().to_string()
    ));
    let s = case.sh(
        &["--policy", &policy],
        &format!(
            "cat {c}\n(echo red > {c}) 2>/dev/null && echo written || echo refused\necho '{{\"seen\": 1}}' > {s} && echo saved\n",
            c = config.display(),
            s = settings.display()
        ),
    );
    assert_eq!(s.lines(), ["colour = blue", "refused", "saved"], "{s:?}");
    assert_eq!(std::fs::read_to_string(&settings).unwrap(), "{\"seen\": 1}\n");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "colour = blue\n");
});

// Everyday builds run under the built-in policy: gcc's linker is given system paths, which the
// walls keep read-only, and no guard refuses it for that.
both!(a_c_program_compiles_and_runs_inside, |user| {
    let case = Case::new(user);
    case.script("m.c", "#include <stdio.h>\nint main(void) { puts(\"built\"); return 3; }\n");
    let s = case.sh(&[], "gcc -o m m.c && ./m\necho \"exit $?\"\n");
    assert_eq!(s.lines(), ["built", "exit 3"], "{s:?}");
    assert!(s.summary["denials"].as_array().unwrap().is_empty(), "{}", s.summary);
});

// So do interpreters given code on the command line, as venv's ensurepip and npm scripts use
// them: inside the sandbox any code may run from a file anyway. A policy that sets the guard
// keeps it.
both!(inline_code_runs_inside_unless_the_policy_sets_its_guard, |user| {
    let case = Case::new(user);
    let s = case.sh(&[], "python3 -m venv --without-pip v && ./v/bin/python3 -c 'print(6 * 7)'\n");
    assert_eq!(s.lines(), ["42"], "{s:?}");
    let policy = case.policy("[guards]\ninline_code = \"ask\"\n");
    let s = case.sh(&["--policy", &policy], "python3 -c 'print(6 * 7)' || echo refused\n");
    assert_eq!(s.lines(), ["refused"], "{s:?}");
    assert!(s.stderr.contains("guard.inline_code"), "{s:?}");
});

// Written through as root, the agent's files land with the workdir owner's ids: a setuid copy
// of a program there would be root's for every user of the host. No call may set those bits.
both!(the_agent_cannot_leave_a_setuid_file_in_the_workdir, |user| {
    let case = Case::new(user);
    let code = format!(
        "{PRELUDE}import shutil\nshutil.copy('/bin/true', 'x')\nattempt(lambda: os.chmod('x', 0o4755))\n\
         attempt(lambda: os.close(os.open('y', os.O_CREAT | os.O_WRONLY, 0o6755)))\n"
    );
    let s = case.python(&["--no-ephemeral"], &code);
    assert_eq!(s.lines(), ["Operation not permitted", "Operation not permitted"], "{s:?}");
    let mode = std::fs::metadata(case.work.join("x")).unwrap().permissions().mode();
    assert_eq!(mode & 0o6000, 0, "{mode:o}");
    assert!(!case.work.join("y").exists());
});

both!(no_ephemeral_writes_through, |user| {
    let case = Case::new(user);
    let s = case.sh(&["--no-ephemeral"], "echo through > f\n");
    assert_eq!(s.code, 0, "{s:?}");
    assert_eq!(std::fs::read_to_string(case.work.join("f")).unwrap(), "through\n");
});

both!(a_symlink_in_the_workdir_cannot_write_the_real_bashrc, |user| {
    let case = Case::new(user);
    let bashrc = case.home.join(".bashrc");
    std::fs::write(&bashrc, "# real\n").unwrap();
    std::os::unix::fs::symlink(&bashrc, case.work.join("rc")).unwrap();
    for mode in [&[][..], &["--no-ephemeral"][..]] {
        let s = case.python(mode, &format!("{PRELUDE}attempt(lambda: open('rc', 'a').write('evil'))\n"));
        assert_ne!(s.lines(), ["ok"], "{s:?}");
    }
    assert_eq!(std::fs::read_to_string(&bashrc).unwrap(), "# real\n");
});

// What scripts expect of `/dev`: process substitution opens `/dev/fd/N`, and `/dev/stderr`
// can be written (here a pipe of the agent's own: one the supervisor inherited belongs to a
// host user, and the agent's uid may not reopen it). `/dev` itself is read-only.
both!(dev_fd_and_dev_stderr_work_as_scripts_expect, |user| {
    let case = Case::new(user);
    let script = "cat <(echo from-dev-fd)\n{ echo to-stderr > /dev/stderr; } 2>&1 | cat\n: > /dev/x";
    let s = case.run(&[], &["/bin/bash", "-c", script]);
    assert_eq!(s.lines(), ["from-dev-fd", "to-stderr"], "{s:?}");
    assert!(s.stderr.contains("/dev/x: Read-only file system"), "{s:?}");
});

// What the agent starts with: the policy's allow-list and what the sandbox sets, nothing else
// of the supervisor's environment (a loader variable, a cloud key, anything unlisted).
both!(the_environment_is_scrubbed_to_the_allow_list, |user| {
    let case = Case::new(user);
    let policy = case.policy("[environment]\npass = [\"KEEP_*\"]\n");
    let mut cmd = case.command(&["--policy", &policy], &["/usr/bin/env"]);
    cmd.env("KEEP_ME", "kept").env("LD_PRELOAD", "/tmp/evil.so").env("AWS_SECRET_ACCESS_KEY", "s3cr3t");
    cmd.env("DROP_ME", "dropped");
    let s = Session::from(cmd.output().unwrap());
    assert_eq!(s.code, 0, "{s:?}");
    let vars: std::collections::BTreeMap<&str, &str> = s.lines().iter().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("KEEP_ME"), Some(&"kept"), "{vars:?}");
    for gone in ["LD_PRELOAD", "AWS_SECRET_ACCESS_KEY", "DROP_ME", "PORTCULLIS_STATE_DIR"] {
        assert!(!vars.contains_key(gone), "{gone} reached the agent: {vars:?}");
    }
    assert_eq!(vars.get("HOME").copied(), case.home.to_str());
    assert_eq!(vars.get("TMPDIR"), Some(&"/tmp"));
    assert_eq!(vars.get("XDG_CACHE_HOME"), Some(&"/tmp/.cache"));
    assert_eq!(vars.get("npm_config_cache"), Some(&"/tmp/.npm"));
    assert_eq!(vars.get("https_proxy"), Some(&"http://127.0.0.1:3128"));
});

// The home is out of sight, but a commit made in the session is the user's: their git identity
// (only that, from their global config) is passed in; `git config --global` works in `/tmp`.
both!(a_commit_in_the_session_carries_the_users_git_identity, |user| {
    let case = Case::new(user);
    std::fs::write(
        case.home.join(".gitconfig"),
        "[user]\n\tname = Ada Lovelace\n\temail = ada@example.org\n[credential]\n\thelper = store\n",
    )
    .unwrap();
    let script = "git init -q repo && cd repo && echo x > f && git add f && git commit -qm first && \
                  git log --format='%an <%ae> %cn' && git config --global init.defaultBranch main && git config --global --list";
    let s = case.sh(&[], script);
    assert_eq!(s.lines(), ["Ada Lovelace <ada@example.org> Ada Lovelace", "init.defaultbranch=main"], "{s:?}");
});

// ---------------------------------------------------------------- network and processes

both!(only_loopback_and_no_route_out, |user| {
    let case = Case::new(user);
    let s = case.sh(&[], "ip -o link\n");
    let links: Vec<&str> = s.lines().iter().map(|l| l.split(':').nth(1).unwrap_or_default().trim()).collect();
    assert_eq!(links, ["lo"], "{s:?}");
    let code = format!(
        "{PRELUDE}for addr in [('1.1.1.1', 80), ('10.0.0.1', 443), ('169.254.169.254', 80)]:\n    s = socket.socket()\n    s.settimeout(2)\n    attempt(lambda: s.connect(addr))\n"
    );
    let s = case.python(&[], &code);
    assert_eq!(s.lines().len(), 3, "{s:?}");
    assert!(s.lines().iter().all(|l| *l != "ok"), "{s:?}");
});

both!(the_supervisor_cannot_be_seen_signalled_or_traced, |user| {
    let case = Case::new(user);
    let code = format!(
        "{PRELUDE}sup = int(open('sup').read())
print(os.path.exists('/proc/%d' % sup))
attempt(lambda: os.kill(sup, 0))
attempt(lambda: libc.ptrace(16, sup, 0, 0))
attempt(lambda: libc.ptrace(16, 1, 0, 0))
attempt(lambda: open('/proc/1/mem', 'rb'))
print(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()) == sorted(set([1, os.getppid(), os.getpid()])))
"
    );
    case.script("agent.py", &code);
    // The supervisor's pid is known once it runs: the test writes it where the agent reads it.
    case.script("sup", "");
    let sup_file = case.work.join("sup");
    let mut cmd = case.command(&[], &["/bin/sh", "-c", "sleep 0.5; /usr/bin/python3 agent.py"]);
    let child = cmd.spawn().unwrap();
    std::fs::write(&sup_file, child.id().to_string()).unwrap();
    let s = Session::from(child.wait_with_output().unwrap());
    s.check_enforced(user);
    let lines = s.lines();
    assert_eq!(lines[0], "False", "{s:?}");
    assert_eq!(lines[1], "No such process", "{s:?}");
    assert_ne!(lines[2], "ok", "{s:?}");
    assert_eq!(lines[3], "Operation not permitted", "{s:?}");
    // Nor is the init's memory (Landlock scopes ptrace to the agent's own domain; the init is
    // not dumpable besides).
    assert_eq!(lines[4], "Permission denied", "{s:?}");
    // Only the init, the shell and the agent itself.
    assert_eq!(lines[5], "True", "{s:?}");
});

both!(unshare_mount_and_bpf_fail, |user| {
    let case = Case::new(user);
    let code = format!(
        "{PRELUDE}attempt(lambda: libc.unshare(0x10000000))
attempt(lambda: libc.mount(b'none', b'/tmp', b'tmpfs', 0, None))
attempt(lambda: libc.syscall(321, 0, 0, 0))
"
    );
    let s = case.python(&[], &code);
    assert_eq!(s.lines(), ["Operation not permitted"; 3], "{s:?}");
    let s = case.sh(&[], "unshare -U true; echo $?\n");
    assert_ne!(s.lines().last().copied(), Some("0"), "{s:?}");
});

both!(tiocsti_injection_fails, |user| {
    let case = Case::new(user);
    let s = case.python(&[], &format!("{PRELUDE}attempt(lambda: libc.ioctl(0, 0x5412, ctypes.c_char_p(b'x')))\n"));
    assert_eq!(s.lines(), ["Operation not permitted"], "{s:?}");
});

// ---------------------------------------------------------------- limits

both!(a_fork_bomb_is_contained_and_the_supervisor_survives, |user| {
    let case = Case::new(user);
    let policy = case.policy("[limits]\nprocesses = 64\nwall_clock = \"4s\"\n");
    let s = case.sh(&["--policy", &policy], "b() { b | b; }; b\n");
    // The supervisor lived to write its summary.
    assert!(s.summary.is_object(), "{s:?}");
    if user == User::Root {
        assert!(s.limits_hit().contains("processes"), "{}", s.limits_hit());
    } else {
        assert!(s.stderr.contains("fork") || s.stderr.contains("Resource"), "{s:?}");
    }
});

both!(a_memory_bomb_is_killed_and_reported, |user| {
    let case = Case::new(user);
    let policy = case.policy("[limits]\nmemory = \"128 MiB\"\nwall_clock = \"30s\"\n");
    let s = case.python(&["--policy", &policy], "x = []\nwhile True:\n    x.append(bytearray(16 << 20))\n");
    assert_ne!(s.code, 0, "{s:?}");
    if user == User::Root {
        assert_eq!(s.code, 137, "{s:?}");
        assert!(s.limits_hit().contains("memory"), "{}", s.limits_hit());
    } else {
        // Without a cgroup the address-space rlimit stops it.
        assert!(s.stderr.contains("MemoryError"), "{s:?}");
    }
});

// A policy without `[limits]` once ran with no memory, process or wall-clock limit at all.
both!(a_policy_without_limits_still_stops_a_fork_bomb, |user| {
    let case = Case::new(user);
    let policy = case.policy("[network]\nallow = [\"example.com\"]\n");
    // Threads count as processes for the kernel's limits; small stacks keep the address space
    // (which the memory rlimit bounds without a cgroup) out of the way.
    let code = "import threading, time\nthreading.stack_size(64 << 10)\nn = 0\ntry:\n    while n < 6000:\n        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n        n += 1\nexcept RuntimeError:\n    pass\nprint('started', n, flush=True)\nimport os\nos._exit(0)\n";
    let s = case.python(&["--policy", &policy], code);
    let started: u64 =
        s.lines().first().and_then(|l| l.strip_prefix("started ")).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!((100..4096).contains(&started), "the default process limit did not hold: {s:?}");
    if user == User::Root {
        assert!(s.limits_hit().contains("processes (4096"), "{}", s.limits_hit());
    }
    assert!(s.stderr.contains("processes 4096)"), "the banner names the limit: {}", s.stderr);
});

both!(a_policy_without_limits_still_stops_a_memory_balloon, |user| {
    let case = Case::new(user);
    let policy = case.policy("[network]\nallow = [\"example.com\"]\n");
    // As root, pages written, so the cgroup counts them; without a cgroup, address space
    // reserved but not touched (the rlimit's bound, four times the limit, is then reached
    // without using the host's memory). Both go past the default limit.
    let code = if user == User::Root {
        "x = []\nfor i in range(200):\n    x.append(b'x' * (64 << 20))\nprint('survived', flush=True)\n"
    } else {
        "import mmap\nx = []\nfor i in range(64):\n    x.append(mmap.mmap(-1, 1 << 30))\nprint('survived', flush=True)\n"
    };
    case.script("agent.py", code);
    let s = if user == User::Root {
        // Inside an outer cgroup a little above the default limit: were the limit missing, this
        // cgroup, not the host, would stop the balloon.
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
            list.split(',').any(|c| c == "memory").then(|| path.trim_start_matches('/').to_owned())
        });
        let rel = rel.expect("a v1 memory hierarchy, where the tests run as root");
        let outer =
            Path::new("/sys/fs/cgroup/memory").join(rel).join(format!("portcullis-test-outer-{}", std::process::id()));
        std::fs::create_dir(&outer).unwrap();
        std::fs::write(outer.join("memory.limit_in_bytes"), (6u64 << 30).to_string()).unwrap();
        let outer_tasks = outer.join("tasks");
        let inner = case.command(&["--policy", &policy], &["/usr/bin/python3", "agent.py"]);
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(&outer_tasks);
        cmd.arg(inner.get_program()).args(inner.get_args()).current_dir(inner.get_current_dir().unwrap()).env_clear();
        for (k, v) in inner.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        let s = Session::from(cmd.stdin(Stdio::null()).output().unwrap());
        let _ = std::fs::remove_dir(&outer);
        s
    } else {
        case.run(&["--policy", &policy], &["/usr/bin/python3", "agent.py"])
    };
    assert!(!s.stdout.contains("survived"), "the balloon outgrew the default limit: {s:?}");
    if user == User::Root {
        assert_eq!(s.code, 137, "{s:?}");
        assert!(s.limits_hit().contains("memory ("), "{}", s.limits_hit());
    } else {
        // The address-space rlimit refuses the reservation (ENOMEM).
        assert!(s.stderr.contains("Cannot allocate memory"), "{s:?}");
    }
});

/// The init is a copy of the supervisor: its environment area once held the supervisor's whole
/// host environment (a token exported in the user's shell), kept from the agent only by the
/// init's non-dumpable flag.
#[test]
fn the_init_holds_none_of_the_supervisors_environment() {
    if !available(User::Root) {
        return;
    }
    use std::io::BufRead;
    let case = Case::new(User::Root);
    case.script("agent.sh", "echo started\nsleep 30\n");
    let mut cmd = case.command(&[], &["/bin/sh", "agent.sh"]);
    cmd.env("HOST_SECRET_TOKEN", "s3cr3t-in-the-supervisors-environment");
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let supervisor = child.id().to_string();
    let init = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .find(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let after = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
            stat.contains("(portcullis-init)") && after.split(' ').nth(1) == Some(supervisor.as_str())
        })
        .expect("the session's init");
    let environ = std::fs::read(format!("/proc/{init}/environ")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(!environ.is_empty(), "nothing read: the test would prove nothing");
    let text = String::from_utf8_lossy(&environ);
    assert!(!text.contains("s3cr3t"), "the init holds the supervisor's environment");
    assert!(environ.iter().all(|b| *b == 0), "{text:?}");
}

both!(filling_tmp_hits_enospc_at_the_cap, |user| {
    let case = Case::new(user);
    let policy = case.policy("[limits]\ndisk = \"64 MiB\"\n");
    let code = "import errno\nn = 0\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        while True:\n            f.write(b'x' * (1 << 20)); f.flush(); n += 1\nexcept OSError as e:\n    print(errno.errorcode[e.errno], n)\n";
    let s = case.python(&["--policy", &policy], code);
    let line = s.lines().first().copied().unwrap_or_default().to_owned();
    let (name, mib) = line.split_once(' ').unwrap_or_default();
    assert_eq!(name, "ENOSPC", "{s:?}");
    let mib: u32 = mib.parse().unwrap();
    assert!((28..=32).contains(&mib), "wrote {mib} MiB into a 32 MiB /tmp");
    // The summary reports the limit, and how full each of the session's filesystems ended.
    let hit: Vec<&str> = s.summary["limits_hit"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(hit, ["disk (/tmp full at 32.0 MiB; writes failed)"], "{}", s.summary);
    let places: Vec<&str> = s.summary["disk"].as_array().unwrap().iter().filter_map(|d| d["place"].as_str()).collect();
    assert_eq!(places, ["workdir overlay", "/tmp"], "{}", s.summary);
    // A session that stays within its caps hits none.
    let s = case.python(&["--policy", &policy], "open('/tmp/small', 'wb').write(b'x' * (1 << 20))\n");
    assert_eq!(s.summary["limits_hit"], json!([]), "{}", s.summary);
});

both!(the_wall_clock_kills_the_whole_tree, |user| {
    let case = Case::new(user);
    let policy = case.policy("[limits]\nwall_clock = \"1s\"\n");
    let marker = format!("{}.{}", 7000 + std::process::id() % 1000, if user == User::Root { 1 } else { 2 });
    let script = format!("setsid sleep {marker} &\n(trap '' TERM; sleep {marker}) &\nsleep {marker}\n");
    let s = case.sh(&["--policy", &policy], &script);
    assert!(s.limits_hit().contains("wall clock"), "{s:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(processes_with(&marker), Vec::<String>::new());
});

// The init never reports the agent's end here: it is killed after the grace, and the session
// still ends with every process gone and the status of a kill.
both!(an_agent_that_ignores_sigterm_is_killed_after_the_grace, |user| {
    let case = Case::new(user);
    let policy = case.policy("[limits]\nwall_clock = \"1s\"\n");
    let marker = format!("{}.{}", 7500 + std::process::id() % 1000, if user == User::Root { 1 } else { 2 });
    // Ignored signals stay ignored in children: neither the shell nor its sleep ends on SIGTERM.
    let s = case.sh(&["--policy", &policy], &format!("trap '' TERM\nsleep {marker} &\nwait\n"));
    assert_eq!(s.code, 137, "{s:?}");
    assert_eq!(s.summary["exit_code"], 137, "{s:?}");
    assert!(s.limits_hit().contains("wall clock"), "{s:?}");
    assert_eq!(processes_with(&marker), Vec::<String>::new());
});

// ---------------------------------------------------------------- exec monitor

both!(every_exec_is_recorded_with_argv, |user| {
    let case = Case::new(user);
    let s = case.run(&[], &["/bin/sh", "-c", "ls; id; cat f"]);
    assert_eq!(s.code, 0, "{s:?}");
    let execs: Vec<Vec<String>> = case
        .events(&s)
        .iter()
        .filter(|e| e["kind"] == "exec")
        .map(|e| e["input"]["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_owned()).collect())
        .collect();
    for want in [vec!["ls"], vec!["id"], vec!["cat", "f"]] {
        assert!(execs.iter().any(|e| *e == want), "{want:?} not in {execs:?}");
    }
    // The command itself comes first, whole, with its program and working directory (the agent
    // reports them: its memory before that exec is the init's, which nobody may read).
    let first = case.events(&s).into_iter().find(|e| e["kind"] == "exec").unwrap();
    assert_eq!(first["input"]["argv"], serde_json::json!(["/bin/sh", "-c", "ls; id; cat f"]), "{first}");
    assert_eq!(first["input"]["path"], "/bin/sh", "{first}");
    assert_eq!(first["input"]["cwd"], case.work.to_str().unwrap(), "{first}");
    assert_eq!(first["decision"]["rules"][0], "builtin.run_command", "{first}");
});

both!(the_command_is_executed_once_as_given, |user| {
    let case = Case::new(user);
    // Found on PATH: the record names the file that ran.
    let s = case.run(&[], &["true"]);
    assert_eq!(s.code, 0, "{s:?}");
    let execs: Vec<Value> = case.events(&s).into_iter().filter(|e| e["kind"] == "exec").collect();
    assert_eq!(execs.len(), 1, "{execs:?}");
    let found =
        ["/usr/local/bin", "/usr/bin", "/bin"].iter().map(|d| format!("{d}/true")).find(|p| Path::new(p).exists());
    assert_eq!(execs[0]["input"]["path"].as_str(), found.as_deref(), "{execs:?}");
    // Missing: 127, no exec made, so none recorded.
    let s = case.run(&[], &["no-such-program"]);
    assert_eq!(s.code, 127, "{s:?}");
    assert!(s.stderr.contains("cannot run `no-such-program` in the sandbox: No such file or directory"), "{s:?}");
    assert!(case.events(&s).iter().all(|e| e["kind"] != "exec"), "{s:?}");
    // A file without a `#!` line is not handed to /bin/sh behind the policy's back: 126.
    case.script("plain", "echo ran\n");
    std::fs::set_permissions(case.work.join("plain"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = case.run(&[], &["./plain"]);
    assert_eq!((s.code, s.stdout.as_str()), (126, ""), "{s:?}");
    assert!(s.stderr.contains("Exec format error"), "{s:?}");
    let execs: Vec<Value> = case.events(&s).into_iter().filter(|e| e["kind"] == "exec").collect();
    assert_eq!(execs.len(), 1, "{execs:?}");
    assert_eq!(execs[0]["input"]["path"], format!("{}/./plain", case.work.display()), "{execs:?}");
});

both!(an_exec_the_policy_denies_fails_with_eacces_and_is_recorded, |user| {
    let case = Case::new(user);
    let policy = case.policy("[tools]\ndeny = [\"Bash(id *)\"]\n");
    let s = case.python(
        &["--policy", &policy],
        &format!("{PRELUDE}import subprocess\ntry:\n    subprocess.run(['/usr/bin/id'])\nexcept OSError as e:\n    print(e.strerror)\n"),
    );
    assert_eq!(s.lines(), ["Permission denied"], "{s:?}");
    let denied: Vec<Value> =
        case.events(&s).into_iter().filter(|e| e["kind"] == "exec" && e["decision"]["decision"] == "deny").collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["input"]["argv"][0], "/usr/bin/id");
    assert!(denied[0]["decision"]["reason"].as_str().unwrap().contains("Bash(id *)"), "{denied:?}");
    assert_eq!(denied[0]["decision"]["rules"][0], "tools.deny[0]", "{denied:?}");
});

// The caller of a refused exec reads why on its own standard error, once though the shell
// tries each PATH entry, before its "Permission denied".
both!(a_refused_exec_tells_its_caller_why, |user| {
    let case = Case::new(user);
    let policy = case.policy("[tools]\ndeny = [{ rule = \"Bash(id *)\", note = \"no ids here\" }]\n");
    let s = case.sh(&["--policy", &policy], "id -u\necho after\n");
    assert_eq!(s.lines(), ["after"], "{s:?}");
    let told: Vec<&str> = s.stderr.lines().filter(|l| l.starts_with("portcullis: `id -u` was not run: ")).collect();
    assert_eq!(told.len(), 1, "{s:?}");
    assert!(told[0].contains("Bash(id *)"), "{s:?}");
    let (at_told, at_denied) = (s.stderr.find(told[0]).unwrap(), s.stderr.find("Permission denied").unwrap());
    assert!(at_told < at_denied, "{s:?}");
});

// ---------------------------------------------------------------- refusal

both!(missing_landlock_is_refused_unless_the_dangerous_flag_is_given, |user| {
    let case = Case::new(user);
    let mut cmd = Command::new(&case.bin);
    cmd.args(["run", "--", "/bin/true"])
        .current_dir(&case.work)
        .env("HOME", &case.home)
        .env("PORTCULLIS_STATE_DIR", &case.state)
        .env("PORTCULLIS_SIMULATE_MISSING", "landlock");
    if user == User::Unprivileged && is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Landlock"), "{stderr}");
    // (`run_with` passes the flag itself for the unprivileged user.)
    // The flag names what it may drop: cgroups alone does not let a session run without Landlock.
    let s = case.run_with(&["--dangerously-allow-partial-sandbox=cgroups"], &["/bin/true"], |cmd| {
        cmd.env("PORTCULLIS_SIMULATE_MISSING", "landlock");
    });
    assert_eq!(s.code, 2, "{s:?}");
    assert!(s.stderr.contains("--dangerously-allow-partial-sandbox=landlock"), "{}", s.stderr);
    let flag: &[&str] = &["--dangerously-allow-partial-sandbox=landlock"];
    let s = case.run_with(flag, &["/bin/true"], |cmd| {
        cmd.env("PORTCULLIS_SIMULATE_MISSING", "landlock");
    });
    assert_eq!(s.code, 0, "{s:?}");
    let degraded = s.summary["degraded"].to_string();
    assert!(degraded.contains("landlock"), "{degraded}");
});

// ---------------------------------------------------------------- supervisor and init

/// The host's processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker) && !c.contains("agent.sh"))
        .collect()
}

fn spawn_session(case: &Case, script: &str) -> std::process::Child {
    case.script("agent.sh", script);
    case.command(&[], &["/bin/sh", "agent.sh"]).spawn().unwrap()
}

fn wait_for(marker: &str, count: usize) {
    for _ in 0..100 {
        if processes_with(marker).len() >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the session's processes did not start");
}

both!(the_agent_dies_with_the_supervisor, |user| {
    let case = Case::new(user);
    let marker = format!("{}.{}", 8000 + std::process::id() % 1000, if user == User::Root { 3 } else { 4 });
    let mut child = spawn_session(&case, &format!("setsid sleep {marker} &\nsleep {marker}\n"));
    wait_for(&marker, 2);
    // SIGKILL: the supervisor gets no chance to clean up; the kernel must.
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processes_with(&marker), Vec::<String>::new());
});

// PID 1 inside is the init, a copy of the supervisor: it must not show the supervisor's
// command line (the binary's host path, the policy file's path).
both!(pid_1_shows_its_own_name_not_the_supervisors_command_line, |user| {
    let case = Case::new(user);
    let policy = case.policy("[limits]\nwall_clock = \"1m\"\n");
    let s =
        case.run(&["--policy", &policy], &["/bin/sh", "-c", "tr -d '\\0' < /proc/1/cmdline; echo; cat /proc/1/comm"]);
    assert_eq!(s.lines(), ["portcullis-init", "portcullis-init"], "{s:?}");
});

both!(signals_reach_the_agent_and_its_status_is_passed_on, |user| {
    let case = Case::new(user);
    let marker = format!("{}.{}", 9000 + std::process::id() % 1000, if user == User::Root { 5 } else { 6 });
    let child = spawn_session(&case, &format!("trap 'echo got-int; exit 42' INT\nsleep {marker} & wait\n"));
    wait_for(&marker, 1);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let s = Session::from(child.wait_with_output().unwrap());
    assert_eq!(s.lines(), ["got-int"], "{s:?}");
    assert_eq!(s.code, 42, "{s:?}");
    assert_eq!(s.summary["exit_code"], 42, "{s:?}");
});

// ---------------------------------------------------------------- identity

/// The host uid of the first process whose command line contains `marker`.
fn host_uid_of(marker: &str) -> u32 {
    for _ in 0..100 {
        for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).replace('\0', " ").trim_end() == format!("sleep {marker}") {
                let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
                if let Some(uid) = status.lines().find_map(|l| l.strip_prefix("Uid:")) {
                    return uid.split_whitespace().next().unwrap().parse().unwrap();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no process runs `sleep {marker}`");
}

#[test]
fn started_as_root_each_agent_runs_as_a_uid_of_its_own_range() {
    if !available(User::Root) {
        return;
    }
    let case = Case::new(User::Root);
    // A root-only file the sandbox shows (through a read-only path the policy adds).
    let shown = case.work.parent().unwrap().join("shown");
    std::fs::create_dir_all(&shown).unwrap();
    std::fs::write(shown.join("root-only"), "secret").unwrap();
    std::fs::set_permissions(shown.join("root-only"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let policy = case.policy(&format!(
        "[filesystem]\nread_only = [{:?}]\n[agents.alpha]\ndescription = \"a\"\n[agents.beta]\ndescription = \"b\"\n",
        shown.display().to_string()
    ));
    let mut uids = Vec::new();
    for (i, agent) in ["alpha", "beta"].iter().enumerate() {
        // Sleeps about a second: long enough to be seen from the host.
        let marker = format!("1.{:03}{i}7", std::process::id() % 1000);
        case.script(
            "agent.py",
            &format!(
                "{PRELUDE}import subprocess\nattempt(lambda: open({:?}).read())\nprint(os.getuid())\nsubprocess.run(['sleep', {marker:?}])\n",
                shown.join("root-only")
            ),
        );
        let mut cmd = Command::new(&case.bin);
        cmd.args(["run", "--json", "--policy", &policy, "--agent", agent, "--", "/usr/bin/python3", "agent.py"])
            .current_dir(&case.work)
            .env("HOME", &case.home)
            .env("PORTCULLIS_STATE_DIR", &case.state)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let uid = host_uid_of(&marker);
        let s = Session::from(child.wait_with_output().unwrap());
        s.check_enforced(User::Root);
        // Inside, the agent is the workdir's owner (root here); outside, a uid of its range,
        // which cannot read what only root may.
        assert_eq!(s.lines(), ["Permission denied", "0"], "{s:?}");
        assert!(uid >= 1 << 30, "agent {agent} runs as host uid {uid}");
        assert_eq!(s.summary["exit_code"], 0);
        uids.push(uid);
    }
    assert_ne!(uids[0] >> 16, uids[1] >> 16, "two agents share a range: {uids:?}");
}

both!(git_hooks_and_config_cannot_be_changed, |user| {
    let case = Case::new(user);
    std::fs::create_dir_all(case.work.join(".git/hooks")).unwrap();
    std::fs::write(case.work.join(".git/config"), "[core]\n").unwrap();
    if user == User::Unprivileged && is_root() {
        for entry in walk(&case.work.join(".git")) {
            std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    for mode in [&[][..], &["--no-ephemeral"][..]] {
        let code = format!(
            "{PRELUDE}attempt(lambda: open('.git/hooks/pre-commit', 'w'))\nattempt(lambda: open('.git/config', 'a'))\nattempt(lambda: open('.git/HEAD', 'w').write('ref: refs/heads/main'))\n"
        );
        let s = case.python(mode, &code);
        assert_eq!(s.lines(), ["Read-only file system", "Read-only file system", "ok"], "{mode:?}: {s:?}");
    }
    assert!(!case.work.join(".git/hooks/pre-commit").exists());
});

both!(from_a_terminal_the_agent_gets_its_own_and_cannot_inject_into_it, |user| {
    let case = Case::new(user);
    case.script(
        "agent.py",
        &format!(
            "{PRELUDE}import fcntl, termios, subprocess\nprint(os.ttyname(0), os.isatty(1))\n\
             attempt(lambda: fcntl.ioctl(0, termios.TIOCSTI, b'x'))\n\
             print('before', flush=True)\nsubprocess.run(['/bin/ls'], stdout=subprocess.DEVNULL)\nprint('after', flush=True)\n"
        ),
    );
    let flag = if user == User::Unprivileged { " --dangerously-allow-partial-sandbox=cgroups" } else { "" };
    let line = format!("{} run{flag} -- /usr/bin/python3 agent.py", case.bin.display());
    // `script` runs the command on a new pseudo-terminal, as a user's terminal would.
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(&case.work)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &case.home)
        .env("PORTCULLIS_STATE_DIR", &case.state)
        .stdin(Stdio::null());
    if user == User::Unprivileged && is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(text.contains("/dev/pts/0 True"), "{text}");
    assert!(text.contains("Operation not permitted"), "{text}");
    assert!(out.status.success(), "{text}");
    // An alert raised while the agent has the terminal waits for the session's end.
    let (after, alert) = (text.find("after").unwrap(), text.find("ALERT first_tool_use").expect(&text));
    assert!(alert > after, "the alert landed in the agent's screen: {text}");
});

// ---------------------------------------------------------------- setup errors

#[test]
fn workdirs_and_homes_that_would_expose_too_much_are_refused_with_their_reason() {
    let case = Case::new(User::Root);
    let run = |home: &Path, args: &[&str]| {
        let out = Command::new(&case.bin)
            .arg("run")
            .args(args)
            .args(["--", "/bin/true"])
            .current_dir(&case.work)
            .env("HOME", home)
            .env("PORTCULLIS_STATE_DIR", &case.state)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(Path::new("/"), &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("set HOME"), "{err}");
    let (code, err) = run(&case.home, &["--workdir", "f"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not a directory"), "{err}");
    // A workdir that contains the home directory would show every credential in it.
    let (code, err) = run(&case.home, &["--workdir", ".."]);
    assert_eq!(code, Some(2));
    assert!(err.contains("contains your home directory"), "{err}");
    // Nothing ran, so no session was recorded.
    assert!(std::fs::read_dir(&case.state).unwrap().next().is_none());
}

#[test]
fn on_cgroup_v2_the_agent_is_born_in_its_sessions_cgroup() {
    if !available(User::Root) {
        return;
    }
    let has_v2 = std::fs::read_to_string("/proc/self/mounts").unwrap().lines().any(|l| l.contains(" cgroup2 "));
    if !has_v2 {
        assert!(std::env::var("PORTCULLIS_REQUIRE_SANDBOX").as_deref() != Ok("1"), "no cgroup v2 hierarchy");
        return;
    }
    let case = Case::new(User::Root);
    // No memory or process limits: this host's v2 hierarchy may have no controllers.
    let policy = case.policy("[limits]\nwall_clock = \"1m\"\nmemory = \"unlimited\"\nprocesses = \"unlimited\"\n");
    let s = case.run_with(&["--policy", &policy], &["/bin/cat", "/proc/self/cgroup"], |cmd| {
        cmd.env("PORTCULLIS_CGROUP", "v2");
    });
    s.check_enforced(User::Root);
    let id = s.summary["session"].as_str().unwrap();
    assert!(s.lines().contains(&format!("0::/portcullis/portcullis-{id}").as_str()), "{s:?}");
    // A limit the hierarchy cannot hold is refused, not dropped.
    let offered = std::fs::read_to_string(
        std::fs::read_to_string("/proc/self/mounts")
            .unwrap()
            .lines()
            .find(|l| l.contains(" cgroup2 "))
            .map(|l| format!("{}/cgroup.controllers", l.split_whitespace().nth(1).unwrap()))
            .unwrap(),
    )
    .unwrap_or_default();
    if !offered.split_whitespace().any(|c| c == "memory") {
        let policy = case.policy("[limits]\nmemory = \"1 GiB\"\n");
        let s = case.run_with(&["--policy", &policy], &["/bin/true"], |cmd| {
            cmd.env("PORTCULLIS_CGROUP", "v2");
        });
        assert_eq!(s.code, 2, "{s:?}");
        assert!(s.stderr.contains("offers no `memory` controller"), "{s:?}");
    }
}

// ---------------------------------------------------------------- a workdir root cannot idmap

// Started as root, the workdir is idmapped; on a filesystem that cannot be (overlay, as a
// container's root is), `run` refuses, naming the filesystem and what to do.
#[test]
fn as_root_a_workdir_on_overlay_is_refused_with_the_reason() {
    if !available(User::Root) {
        return;
    }
    let case = Case::new(User::Root);
    let base = case.work.parent().unwrap().join("ovl");
    for d in ["lower/proj", "upper", "work", "merged"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    let script = r#"mount -t overlay overlay -o "lowerdir=$B/lower,upperdir=$B/upper,workdir=$B/work" "$B/merged" && cd "$B/merged/proj" && exec "$@""#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&case.bin)
        .args(["run", "--", "/bin/true"])
        .env("HOME", &case.home)
        .env("PORTCULLIS_STATE_DIR", &case.state)
        .env("B", &base)
        .output()
        .unwrap();
    let s = Session::from(out);
    assert_eq!(s.code, 2, "{s:?}");
    assert!(s.stderr.contains("(overlay) does not support idmapped mounts"), "{s:?}");
    assert!(s.stderr.contains("unprivileged user"), "{s:?}");
}

// ---------------------------------------------------------------- a full disk

/// Runs `portcullis run ARGS -- CMD…` with the state directory on a tiny tmpfs (`size`), in a
/// mount namespace of its own (root only).
fn run_with_full_state(case: &Case, size: &str, args: &[&str], command: &[&str]) -> Session {
    let script = r#"mount -t tmpfs -o size="$SIZE" none "$PORTCULLIS_STATE_DIR" && exec "$@""#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&case.bin)
        .args(["run", "--json"])
        .args(args)
        .arg("--")
        .args(command)
        .current_dir(&case.work)
        .env("HOME", &case.home)
        .env("PORTCULLIS_STATE_DIR", &case.state)
        .env("SIZE", size)
        .output()
        .unwrap();
    Session::from(out)
}

#[test]
fn changes_that_cannot_be_saved_are_reported_not_lost_silently() {
    if !available(User::Root) {
        return;
    }
    let case = Case::new(User::Root);
    // The store's free-space floor off: this is the state directory filling regardless.
    let policy = case.policy("[audit]\nmin_free = \"0 B\"\n");
    let s = run_with_full_state(
        &case,
        "256k",
        &["--policy", &policy],
        &["/bin/dd", "if=/dev/zero", "of=big", "bs=1M", "count=2"],
    );
    assert_eq!(s.code, 2, "{s:?}");
    assert!(s.stderr.contains("cannot save the session's changes"), "{s:?}");
    assert!(s.stderr.contains("lost"), "{s:?}");
    assert!(!case.work.join("big").exists());
}

// `[limits] tool_calls` once counted every exec: past the 1,000th, an ordinary `./configure`
// or C build failed. Execs have their own cap, off unless set, and the tool-call cap is named
// as not enforced by `run`.
both!(execs_past_the_tool_call_cap_still_run_and_the_exec_cap_is_its_own, |user| {
    let case = Case::new(user);
    let loop_of = |n: u32| format!("i=0\nwhile [ $i -lt {n} ]; do /bin/true || echo refused; i=$((i+1)); done\n");
    let policy = case.policy("[limits]\ntool_calls = 5\ntokens = 100\n[tools]\nrate = { Bash = \"1/min\" }\n");
    let s = case.sh(&["--policy", &policy], &loop_of(20));
    assert_eq!((s.code, s.lines().len()), (0, 0), "{s:?}");
    assert_eq!(s.summary["execs"], 21, "{s:?}");
    let not_enforced: Vec<&str> =
        s.summary["not_enforced"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(not_enforced.iter().any(|n| n.starts_with("`limits.tool_calls`")), "{not_enforced:?}");
    assert!(not_enforced.iter().any(|n| n.starts_with("`limits.tokens`")), "{not_enforced:?}");
    assert!(not_enforced.iter().any(|n| n.starts_with("`tools.rate`")), "{not_enforced:?}");
    let start = case.events(&s).into_iter().find(|r| r["event"] == "session_start").unwrap();
    assert_eq!(start["data"]["not_enforced"], s.summary["not_enforced"], "{start}");
    let policy = case.policy("[limits]\nexecs = 5\n");
    let s = case.sh(&["--policy", &policy], &loop_of(8));
    assert_eq!(s.lines().len(), 4, "the shell plus 4 execs run, then the cap refuses: {s:?}");
    assert_eq!(s.summary["limits_hit"][0], "execs (5)", "{s:?}");
    assert!(s.summary["not_enforced"].as_array().unwrap().is_empty(), "{s:?}");
});

#[test]
fn settings_run_does_not_enforce_are_named_by_the_policy_check() {
    let dir = super::TempDir::new();
    std::fs::write(
        dir.path().join("p.toml"),
        "[limits]\nusd = 5.0\n[environment]\npass = [\"NO_PROXY\", \"CARGO_*\"]\n[[hooks.pre_tool_use]]\nmatcher = \"Bash\"\ncommand = \"/bin/true\"\n",
    )
    .unwrap();
    let out = super::portcullis(&["policy", "check", "p.toml"], dir.path(), None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("note: `limits.usd` (a model budget) is loaded but"), "{}", out.stdout);
    assert!(out.stdout.contains("note: `hooks.pre_tool_use`"), "{}", out.stdout);
    // A passed NO_PROXY once changed nothing, silently: `run` sets it.
    assert!(out.stdout.contains("note: `environment.pass` (`run` sets NO_PROXY itself"), "{}", out.stdout);
}

// The start record once read the policy file a second time: what it kept for `audit replay`
// could differ from what the session enforced. The policy here is a FIFO that gives its text to
// the first reader and is then replaced by a file that allows everything, for any second one.
both!(the_policy_text_recorded_is_the_text_enforced, |user| {
    let case = Case::new(user);
    let dir = case.work.parent().unwrap().to_path_buf();
    let fifo = dir.join("policy.toml");
    let status = Command::new("mkfifo").arg("-m").arg("0666").arg(&fifo).status().unwrap();
    assert!(status.success());
    let enforced = "[tools]\ndeny = [\"Bash(id *)\"]\n";
    std::fs::write(dir.join("open.toml"), "[tools]\nexec_default = \"allow\"\n").unwrap();
    let writer = {
        let dir = dir.clone();
        std::thread::spawn(move || {
            // Returns once `run` has opened the FIFO; any later open gets the other file.
            std::fs::write(dir.join("policy.toml"), enforced).unwrap();
            std::fs::rename(dir.join("open.toml"), dir.join("policy.toml")).unwrap();
        })
    };
    let s = case.sh(&["--policy", fifo.to_str().unwrap()], "/usr/bin/id -u >/dev/null 2>&1 || echo refused\n");
    writer.join().unwrap();
    assert_eq!(s.lines(), ["refused"], "{s:?}");
    let start = case.events(&s).into_iter().find(|r| r["event"] == "session_start").unwrap();
    assert_eq!(start["data"]["policy_text"], enforced, "the record holds a second read: {start}");
});

// `writable = ["./src"]`: `policy explain --write README.md` said deny, but `run
// --no-ephemeral` wrote it, because `run` mounted the whole workdir writable. For each policy
// and path below, what `explain` says of a write and a read is what the kernel does inside
// `run`, in both modes. (A read `explain` answers `ask` for is allowed in `run`: no one
// approves a process's reads there, and the sandbox shows the workdir.)
both!(explain_and_run_agree_on_every_write_and_read, |user| {
    let policies = [
        "[filesystem]\nwritable = [\"./src\"]\n",
        "[filesystem]\nwritable = [\".\"]\nread_only = [\"./vendor\"]\n",
        "[filesystem]\nwritable = [\"./src/**\", \"./docs\"]\nhidden = [\"./secrets\"]\n",
        "[network]\nallow = []\n",
    ];
    let paths = ["README.md", "src/main.rs", "src/new.rs", "vendor/lib.rs", "docs/a.md", "secrets/key.txt", "new.txt"];
    for policy_text in policies {
        for mode in [&[][..], &["--no-ephemeral"][..]] {
            let case = Case::new(user);
            for (p, text) in [
                ("README.md", "r"),
                ("src/main.rs", "m"),
                ("vendor/lib.rs", "v"),
                ("docs/a.md", "d"),
                ("secrets/key.txt", "k"),
            ] {
                std::fs::create_dir_all(case.work.join(p).parent().unwrap()).unwrap();
                std::fs::write(case.work.join(p), text).unwrap();
            }
            if user == User::Unprivileged && is_root() {
                for entry in walk(&case.work) {
                    std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
                }
            }
            let policy = case.policy(policy_text);
            let code = format!(
                "{PRELUDE}for p in {paths:?}:\n    attempt(lambda: open(p, 'a').close())\n    \
                 attempt(lambda: open(p).close())\n"
            );
            let s = case.python(&[&["--policy", &policy][..], mode].concat(), &code);
            let lines = s.lines();
            assert_eq!(lines.len(), 2 * paths.len(), "{s:?}");
            for (i, path) in paths.iter().enumerate() {
                let explain = |op: &str| -> String {
                    let out = case.subcommand(&["policy", "explain", "--policy", &policy, op, path, "--json"]);
                    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
                    v["decision"].as_str().unwrap().to_owned()
                };
                let (write, read) = (lines[2 * i], lines[2 * i + 1]);
                let said = explain("--write");
                assert_eq!(
                    said == "allow",
                    write == "ok",
                    "{policy_text} {mode:?}: write {path}: explain {said}, run {write}"
                );
                // Reads of the files the workdir had (a new one may not exist to read).
                if ["src/new.rs", "new.txt"].contains(path) {
                    continue;
                }
                let said = explain("--read");
                assert_eq!(
                    said == "deny",
                    read != "ok",
                    "{policy_text} {mode:?}: read {path}: explain {said}, run {read}"
                );
            }
        }
    }
});

both!(a_filesystem_entry_run_cannot_enforce_is_refused_naming_it, |user| {
    let case = Case::new(user);
    for (text, expect) in [
        ("writable = [\"./src/*.rs\"]", "a pattern inside the workdir"),
        ("writable = [\"./build\"]", "which does not exist in the workdir"),
        ("read_only = [\"./missing\"]", "which does not exist in the workdir"),
        ("writable = [\"./link\"]", "a symlink in the workdir"),
        // Outside the workdir: once skipped silently, and the agent's writes failed unexplained.
        ("writable = [\".\", \"~/.claude.json\"]", "does not exist"),
        ("writable = [\".\", \"~/.cache/*\"]", "a pattern"),
    ] {
        if !case.work.join("link").exists() {
            std::fs::create_dir_all(case.work.join("src")).unwrap();
            std::os::unix::fs::symlink("src", case.work.join("link")).unwrap();
        }
        let policy = case.policy(&format!("[filesystem]\n{text}\n"));
        let s = case.run_with(&["--policy", &policy], &["/bin/true"], |_| {});
        assert_eq!(s.code, 2, "{text}: {s:?}");
        assert!(s.stderr.contains(expect), "{text}: {}", s.stderr);
    }
});

// Every built-in credential path stays unreadable under a home the policy shows whole, those
// planted before the start and those the host creates during the session (`gh auth login`
// while the agent runs). Once, with `read_only = ["~/.config"]`, a `~/.config/gh/hosts.yml`
// made during the session was readable inside: the masks covered only what existed at the start.
both!(every_builtin_credential_path_stays_hidden_before_and_after_the_start, |user| {
    let case = Case::new(user);
    let entries: Vec<std::path::PathBuf> = portcullis_policy::BUILTIN_HIDDEN
        .iter()
        .map(|e| case.home.join(e.strip_prefix("~/").unwrap()))
        .filter(|p| !p.starts_with(case.home.join(".local/state/portcullis")))
        // The case's home already has `.ssh` and `.aws` directories: a file in them.
        .map(|p| if p.is_dir() { p.join("planted") } else { p })
        .collect();
    let plant = |p: &Path| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "planted secret").unwrap();
    };
    let (before, after): (Vec<_>, Vec<_>) = entries.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, p) in &before {
        plant(p);
    }
    // Readable neighbours: the home is shown, only the credentials are not.
    for p in ["notes.txt", ".config/editor.toml", ".cargo/config.toml"] {
        plant(&case.home.join(p));
    }
    let all: Vec<String> = entries.iter().map(|p| p.display().to_string()).collect();
    let code = format!(
        "{PRELUDE}open('ready', 'w').close()\nfor _ in range(2000):\n    if os.path.exists('go'):\n        break\n    time.sleep(0.01)\n\
         def leak(p):\n    try:\n        print('LEAK' if 'planted secret' in open(p).read() else 'empty')\n    except OSError as e:\n        print(e.strerror)\n\
         for p in {all:?}:\n    leak(p)\n\
         for p in ['notes.txt', '.config/editor.toml', '.cargo/config.toml']:\n    attempt(lambda: open(os.path.join({home:?}, p)).read() and None)\n",
        home = case.home.display().to_string()
    );
    case.script("agent.py", &code);
    let (work, late) = (case.work.clone(), after.iter().map(|(_, p)| (*p).clone()).collect::<Vec<_>>());
    let host = std::thread::spawn(move || {
        for _ in 0..2000 {
            if work.join("ready").exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for p in &late {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "planted secret").unwrap();
        }
        std::fs::write(work.join("go"), "").unwrap();
    });
    let policy = case.policy("[filesystem]\nread_only = [\"~\"]\n");
    let s = case.run(&["--policy", &policy, "--no-ephemeral"], &["/usr/bin/python3", "agent.py"]);
    host.join().unwrap();
    let lines = s.lines();
    assert_eq!(lines.len(), entries.len() + 3, "{s:?}");
    for (p, line) in entries.iter().zip(&lines) {
        assert_ne!(*line, "LEAK", "{} was readable: {s:?}", p.display());
    }
    assert_eq!(lines[entries.len()..], ["ok", "ok", "ok"], "{s:?}");
});

// ---------------------------------------------------------------- what an exec runs

// Under a policy denying `Bash(id *)`, each of these ran, and the trail recorded `allow ls`:
// exec rules read `argv[0]` while the kernel ran another file.
both!(exec_rules_judge_the_program_that_runs_not_its_argv0, |user| {
    let case = Case::new(user);
    let policy = case.policy("[tools]\ndeny = [\"Bash(id *)\"]\n");
    let script = "try() { \"$@\" >/dev/null 2>&1 && echo \"ran: $*\" || echo refused; }\n\
                  (exec -a ls id -u) >/dev/null 2>&1 && echo 'ran: exec -a' || echo refused\n\
                  cp /usr/bin/id ./copy; try ./copy -u\n\
                  cp /usr/bin/id /tmp/x; try /tmp/x -u\n\
                  ln -s /usr/bin/id /tmp/y; try /tmp/y -u\n\
                  ln -s /usr/bin/id ./link; try ./link -u\n\
                  try /lib64/ld-linux-x86-64.so.2 /usr/bin/id -u\n\
                  try /lib64/ld-linux-x86-64.so.2 ./copy -u\n\
                  try /lib64/ld-linux-x86-64.so.2 --library-path /usr/lib ./copy -u\n\
                  try /usr/bin/python3 -c 'import os; os.execv(\"/usr/bin/id\", [\"true\"])'\n\
                  try ls\n";
    case.script("agent.sh", script);
    let s = case.run(&["--policy", &policy], &["/bin/bash", "agent.sh"]);
    assert_eq!(s.lines(), [["refused"; 9].as_slice(), &["ran: ls"]].concat(), "{s:?}");
    // The record names what was asked and what ran.
    let execs: Vec<Value> = case.events(&s).into_iter().filter(|r| r["kind"] == "exec").collect();
    let disguised = execs.iter().find(|r| r["input"]["argv"][0] == "ls" && r["input"]["argv"][1] == "-u").unwrap();
    assert_eq!(disguised["decision"]["decision"], "deny", "{disguised}");
    assert_eq!(disguised["input"]["program"]["path"], "/usr/bin/id", "{disguised}");
    let copy = execs.iter().find(|r| r["input"]["argv"][0] == "./copy").unwrap_or_else(|| panic!("{execs:#?}"));
    assert_eq!(copy["input"]["program"]["copy_of"], "/usr/bin/id", "{copy}");
    // `audit show` shows both.
    let id = s.summary["session"].as_str().unwrap();
    let out = case.subcommand(&["audit", "show", id, "--store", case.state.join("audit").to_str().unwrap()]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("DENY  ls -u (ran /usr/bin/id)"), "{shown}");
    assert!(shown.contains(", a copy of /usr/bin/id)"), "{shown}");
});

// `fexecve` of a memfd or a deleted file: the monitor once answered ENOENT, as for a PATH miss,
// and wrote no record. Such a program has no path a rule could name: it is recorded and refused
// unless the policy allows it.
both!(an_anonymous_executable_is_recorded_and_refused_unless_allowed, |user| {
    let case = Case::new(user);
    let code = "import os\n\
                def run(fd, how):\n    pid = os.fork()\n    if pid == 0:\n        try:\n            if how == 'fd':\n                os.execve(fd, ['anon'], {})\n            else:\n                os.execv('/proc/self/fd/%d' % fd, ['anon'])\n        except OSError:\n            os._exit(126)\n    print('ran' if os.waitpid(pid, 0)[1] == 0 else 'refused')\n\
                m = os.memfd_create('m', 0)\nos.write(m, open('/usr/bin/true', 'rb').read())\n\
                open('d', 'wb').write(open('/usr/bin/true', 'rb').read()); os.chmod('d', 0o755)\n\
                d = os.open('d', os.O_RDONLY); os.unlink('d')\n\
                for fd in (m, d):\n    for how in ('fd', 'path'):\n        run(fd, how)\n";
    let s = case.python(&[], code);
    assert_eq!(s.lines(), ["refused"; 4], "{s:?}");
    let refused: Vec<Value> = case
        .events(&s)
        .into_iter()
        .filter(|r| r["kind"] == "exec" && r["decision"]["rules"][0] == "guard.anonymous_exec")
        .collect();
    assert_eq!(refused.len(), 4, "every anonymous exec is recorded: {refused:#?}");
    assert_eq!(refused[0]["input"]["program"]["anonymous"], true);
    let policy = case.policy("[guards]\nanonymous_exec = \"allow\"\n");
    let s = case.python(&["--policy", &policy], code);
    assert_eq!(s.lines(), ["ran"; 4], "{s:?}");
});

// A binary the agent builds or changes is a new program no name-based rule can know: a policy
// that needs its exec rules to hold can refuse programs from places the agent writes.
both!(a_policy_can_refuse_programs_from_places_the_agent_writes, |user| {
    let case = Case::new(user);
    let script = "printf '#!/bin/sh\\necho built\\n' > t.sh; chmod +x t.sh; ./t.sh || echo refused\n\
                  cp /usr/bin/true ./same; ./same && echo 'copy of a system program'\n";
    let s = case.sh(&[], script);
    assert_eq!(s.lines(), ["built", "copy of a system program"], "by default builds run their own programs: {s:?}");
    let policy = case.policy("[guards]\nwritable_exec = \"deny\"\n");
    let s = case.sh(&["--policy", &policy], script);
    assert_eq!(s.lines(), ["refused", "copy of a system program"], "{s:?}");
    assert!(s.stderr.contains("guard.writable_exec"), "{}", s.stderr);
});

// The check-to-exec window: a thread that rewrote the exec's path after the monitor read it won
// the race on its first try, and the trail recorded another program. The monitor cannot close
// that window (THREAT_MODEL.md); Landlock's execute right bounds it: the racing exec may only
// ever reach files in the places execution is allowed. Here the path flips between
// `/usr/bin/true` and a copy of `id` in `/tmp`: whichever the monitor reads, the copy never runs.
both!(a_racing_exec_never_runs_a_program_from_a_place_that_is_not_executable, |user| {
    let case = Case::new(user);
    let code = r#"import ctypes, os, shutil, threading
libc = ctypes.CDLL(None, use_errno=True)
shutil.copy('/usr/bin/id', '/tmp/x')
good, bad = b'/usr/bin/true', b'/tmp/x'.ljust(13, b'\0')
ran = 0
for _ in range(200):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1)
        buf = ctypes.create_string_buffer(good, 32)
        def flip():
            while True:
                ctypes.memmove(buf, bad, 13)
                ctypes.memmove(buf, good, 13)
        threading.Thread(target=flip, daemon=True).start()
        argv = (ctypes.c_char_p * 2)(b'x', None)
        libc.execve(buf, argv, None)
        os._exit(126)
    os.close(w)
    out = os.read(r, 100)
    os.close(r)
    os.waitpid(pid, 0)
    ran += b'uid=' in out
print('copy ran', ran)
"#;
    let s = case.python(&[], code);
    assert_eq!(s.lines(), ["copy ran 0"], "{s:?}");
});

// With dotfiles kept in a repository (`~/.config -> ~/dotfiles/config`) and the agent run in
// that repository, `cat config/gh/hosts.yml` read the token: the masks were made only where
// the home's paths are, not where their links lead.
both!(a_credential_reached_through_a_home_symlink_into_the_workdir_is_hidden, |user| {
    let case = Case::new(user);
    std::fs::create_dir_all(case.work.join("config/gh")).unwrap();
    std::fs::write(case.work.join("config/gh/hosts.yml"), "oauth_token: planted\n").unwrap();
    std::fs::write(case.work.join("config/editor.toml"), "ok\n").unwrap();
    std::os::unix::fs::symlink(case.work.join("config"), case.home.join(".config")).unwrap();
    if user == User::Unprivileged && is_root() {
        for entry in walk(&case.work) {
            std::os::unix::fs::lchown(&entry, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let s = case.sh(&[], "cat config/gh/hosts.yml 2>/dev/null || echo hidden\ncat config/editor.toml\n");
    assert_eq!(s.lines(), ["hidden", "ok"], "{s:?}");
});

// Nothing of `/home` and `/root` is shown but the session's own (empty) home and what the
// policy lists.
both!(home_and_root_show_nothing_but_what_the_policy_lists, |user| {
    let case = Case::new(user);
    let code = format!(
        "{PRELUDE}for d in ['/home', '/root']:\n    print(sorted(os.listdir(d)) if os.path.isdir(d) and d != {home:?} else 'absent')\n\
         print(os.listdir({home:?}))\n",
        home = case.home.display().to_string()
    );
    let s = case.python(&[], &code);
    let lines = s.lines();
    for line in &lines[..2] {
        assert!(*line == "absent" || *line == "[]", "{s:?}");
    }
    assert_eq!(lines[2], "[]", "the home is empty: {s:?}");
});

// Text the agent controls reached the terminal raw: a file named `ESC[2K ESC[1A` erased lines
// of the "files changed" list a user reads before `apply`, and one named
// `nl\n  limits hit: none` printed a fake summary line. Also a changed file's content in
// `diff`, and an exec's argv in `audit show`.
both!(agent_text_cannot_rewrite_the_summary_the_diff_or_the_audit_trail, |user| {
    let case = Case::new(user);
    case.script(
        "agent.sh",
        "touch \"$(printf 'a\\033[2K\\033[1Ab')\" \"$(printf 'nl\\n  limits hit: none')\"\n\
         printf 'clear \\033[2J here\\n' > f\ncp /bin/true \"$(printf 'e\\033[31mx')\"; ./e*\n",
    );
    let mut cmd = Command::new(&case.bin);
    cmd.args(["run", "--dangerously-allow-partial-sandbox=cgroups", "--", "/bin/sh", "agent.sh"])
        .current_dir(&case.work)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &case.home)
        .env("PORTCULLIS_STATE_DIR", &case.state);
    if user == User::Unprivileged && is_root() {
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "a raw escape reached the terminal: {stderr:?}");
    assert_eq!(stderr.lines().filter(|l| l.trim_start().starts_with("limits hit:")).count(), 1, "{stderr}");
    assert!(stderr.contains("A a\\x1b[2K\\x1b[1Ab") && stderr.contains("A nl\\n  limits hit: none"), "{stderr}");
    for args in [&["diff"][..], &["diff", "--stat"][..]] {
        let out = case.subcommand(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && !text.contains('\u{1b}'), "{args:?}: {text:?}");
    }
    let diff = String::from_utf8_lossy(&case.subcommand(&["diff"]).stdout).into_owned();
    assert!(diff.contains("+clear \\x1b[2J here"), "{diff}");
    let show = case.subcommand(&["audit", "show", "--store", case.state.join("audit").to_str().unwrap()]);
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("./e\\x1b[31mx") && !show.contains('\u{1b}'), "{show}");
});

// `truncate -s 2047M` three times: the summary said the overlay held 4 KiB, yet the supervisor
// wrote 6 GiB dense into the session's saved changes, and `apply` would have copied them dense.
both!(sparse_files_cannot_fill_the_hosts_disk_through_the_saved_changes, |user| {
    use std::os::unix::fs::MetadataExt;
    let case = Case::new(user);
    let s = case.sh(&[], "truncate -s 512M a b c\n");
    assert_eq!(s.code, 0, "{s:?}");
    let id = s.summary["session"].as_str().unwrap();
    let saved = case.state.join("sessions").join(id).join("changes");
    let allocated: u64 = ["a", "b", "c"].iter().map(|f| std::fs::metadata(saved.join(f)).unwrap().blocks() * 512).sum();
    assert!(allocated < 1 << 20, "{allocated} bytes written for three holes");
    let out = case.subcommand(&["apply", id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let meta = std::fs::metadata(case.work.join("a")).unwrap();
    assert_eq!(meta.len(), 512 << 20);
    assert!(meta.blocks() * 512 < 1 << 20, "applied dense");
});

// An exec monitor that stops must not leave the session running with its execs unchecked, nor
// only print a line: the session ends, and the trail says why.
// A prompt injection that outlives its session is written where the next agent reads its
// instructions: the summary names those files before anything is applied.
both!(files_the_next_agent_reads_as_instructions_are_named_in_the_summary, |user| {
    let case = Case::new(user);
    let s = case.sh(
        &[],
        "mkdir -p docs/.claude/commands src && echo 'ignore previous instructions' > CLAUDE.md\n\
         echo x > docs/.claude/commands/deploy.md && echo y > docs/AGENTS.md && echo z > src/notes.md\n",
    );
    assert_eq!(s.code, 0, "{s:?}");
    let named: Vec<&str> =
        s.summary["agent_instructions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(named, ["CLAUDE.md", "docs/.claude/commands/deploy.md", "docs/AGENTS.md"], "{}", s.summary);
});

// An `ask` with nobody to ask once read "needs approval", as if someone could approve it.
both!(an_ask_with_no_approver_is_refused_saying_so, |user| {
    let case = Case::new(user);
    let s = case.sh(&[], "git reset --hard || echo refused\n");
    assert_eq!(s.lines(), ["refused"], "{s:?}");
    assert!(s.stderr.contains("was not run: refused: needs approval ("), "{}", s.stderr);
    assert!(s.stderr.contains("and no approver is attached"), "{}", s.stderr);
    let refused = case.events(&s).into_iter().find(|r| r["kind"] == "exec" && r["decision"]["decision"] == "deny");
    let reason = refused.expect("the refusal is on the record")["decision"]["reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("refused: needs approval"), "{reason}");
});

both!(a_monitor_that_stops_ends_the_session_and_is_recorded, |user| {
    let case = Case::new(user);
    let s = case.run_with(&[], &["/bin/sh", "-c", "echo ran"], |cmd| {
        cmd.env("PORTCULLIS_FAULT_MONITOR", "1");
    });
    assert_eq!(s.code, 2, "{s:?}");
    assert!(!s.stdout.contains("ran"), "the agent ran unchecked: {s:?}");
    assert!(s.stderr.contains("the exec monitor stopped"), "{}", s.stderr);
    let recorded = case.events(&s).into_iter().any(|r| r["event"] == "monitor_failed");
    assert!(recorded, "no record of the monitor's failure");
});
