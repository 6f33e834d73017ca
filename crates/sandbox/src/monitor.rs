//! The exec monitor: the supervisor's side of the seccomp user notification on `execve` and
//! `execveat`. Every exec in the sandbox stops until the monitor has read its path, argv and
//! working directory and answered: run it, or fail it with `EACCES`. A refused exec's caller is
//! first told why, on its own standard error (see [`tell`]): a shell would only print
//! "Permission denied", and a model reading that output could not tell a rule from a bug.
//!
//! # Time of check
//!
//! The monitor reads the arguments from the caller's memory; the kernel reads them again when
//! the call continues. Another thread of the caller (or a process sharing its memory) can change
//! them in between, so the monitor's view of an exec is what the program asked for, not a
//! guarantee of what ran. That is why the monitor is not a wall: the mounts, Landlock and
//! seccomp's deny-list hold whatever the exec turns out to be. The monitor adds the audit
//! record and the policy's command rules for programs that do not race it, which is every
//! agent that has not already escaped its model. The ID check after reading makes sure the
//! memory read belonged to the trapped call (the process did not die and its pid get reused).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;

use crate::identity::{Identifier, Program};
use crate::sys::notify;

/// Bounds on what is read of one exec (the kernel's own limits are of the same order).
const MAX_ARGS: usize = 1 << 16;
const MAX_BYTES: usize = 4 << 20;

/// One exec, as the monitor read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// The caller's pid, as the supervisor sees it.
    pub pid: u32,
    /// The program's path as given (made absolute with the working directory when it can be).
    pub path: String,
    /// The arguments, `argv[0]` first.
    pub argv: Vec<String>,
    /// The caller's working directory.
    pub cwd: String,
    /// Why the request could not be read in full; such a request must be denied.
    pub unreadable: Option<String>,
    /// The caller's descriptor the exec runs (`execveat` with `AT_EMPTY_PATH`), if any.
    pub fd: Option<i32>,
    /// What the exec runs, read from the file itself ([`crate::identity`]); `None` when it
    /// could not be read, with why in `unidentified`.
    pub program: Option<Program>,
    /// Why the program could not be identified.
    pub unidentified: Option<String>,
    /// For a dynamic loader run directly (`ld-linux-x86-64.so.2 /tmp/x`), the program it is
    /// asked to load, identified the same way: the loader maps it without an exec, so neither
    /// Landlock's execute right nor a second trap sees it.
    pub loads: Option<Program>,
}

impl ExecRequest {
    /// An empty request from `pid`.
    pub fn new(pid: u32) -> Self {
        ExecRequest {
            pid,
            path: String::new(),
            argv: Vec::new(),
            cwd: String::new(),
            unreadable: None,
            fd: None,
            program: None,
            unidentified: None,
            loads: None,
        }
    }
}

/// The exec that starts the agent, as the agent reported it before making it.
///
/// The agent's process shares the init's memory until that exec (see
/// `sys::process::spawn_sharing_memory`), and the init is not dumpable, so a supervisor without
/// `CAP_SYS_PTRACE` cannot read the call's arguments from it. It need not: until that exec
/// completes the process runs only Portcullis' own code, which makes exactly this one exec, and
/// nothing else is under the filter yet, so the listener's first notification is this call.
#[derive(Clone, Debug)]
pub(crate) struct FirstExec {
    pub(crate) path: String,
    pub(crate) argv: Vec<String>,
    pub(crate) cwd: String,
}

/// The monitor, owning the listener.
#[derive(Debug)]
pub struct Monitor {
    listener: OwnedFd,
    first: Option<FirstExec>,
    identifier: Identifier,
}

impl Monitor {
    /// A monitor on `listener`, whose first notification is `first` when given.
    pub(crate) fn new(listener: OwnedFd, first: Option<FirstExec>) -> Self {
        Monitor { listener, first, identifier: Identifier::new(crate::identity::system_dirs()) }
    }

    /// Answers execs until no process is left in the sandbox. `decide` returns `Ok` to let an
    /// exec run, or why it may not; it sees every exec, including unreadable ones (which it
    /// should deny).
    pub fn run(mut self, mut decide: impl FnMut(&ExecRequest) -> Result<(), String>) -> io::Result<()> {
        let fd = self.listener.as_fd();
        let mut told: Option<(u32, Vec<String>)> = None;
        while let Some(n) = notify::receive(fd)? {
            let (mut request, reported) = match self.first.take() {
                Some(f) => {
                    let r = ExecRequest { path: f.path, argv: f.argv, cwd: f.cwd, ..ExecRequest::new(n.pid) };
                    (r, true)
                }
                None => (read_request(&n), false),
            };
            // The process died or was interrupted while we read: nothing to answer.
            if !notify::still_pending(fd, n.id) {
                continue;
            }
            // A shell looking for a program tries each PATH entry; a miss is not an exec. It is
            // answered ENOENT here, so a file that appears after the check still does not run
            // unchecked. (The agent's first exec is of a file it found.)
            // An exec through a descriptor is never a miss: it is identified (and recorded) below.
            let by_fd = request.fd.is_some() || crate::identity::fd_path(&request.path).is_some();
            // A path the session already identified under the system directories exists: the
            // shell's thousandth `/bin/true` needs no second look at the filesystem.
            let known = if by_fd { None } else { self.identifier.known(&request.path) };
            if known.is_none()
                && !reported
                && !by_fd
                && request.unreadable.is_none()
                && !exists_inside(n.pid, &request.path)
            {
                match notify::answer(fd, n.id, Some(libc::ENOENT)) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    other => other?,
                }
                continue;
            }
            if request.unreadable.is_none() {
                match known.map_or_else(|| self.identifier.identify(n.pid, &request.path, request.fd), Ok) {
                    Ok(program) => request.program = Some(program),
                    Err(e) => request.unidentified = Some(e.to_string()),
                }
                request.loads = loaded_program(&self.identifier, &request);
            }
            let verdict = match (decide(&request), &request.unreadable) {
                (Ok(()), Some(why)) => Err(format!("the exec could not be read: {why}")),
                (verdict, _) => verdict,
            };
            if let Err(why) = &verdict
                && told.as_ref().is_none_or(|(pid, argv)| *pid != n.pid || *argv != request.argv)
            {
                tell(fd, &n, &request.argv, why);
                // A shell tries each PATH entry: one message a refused command.
                told = Some((n.pid, request.argv.clone()));
            }
            match notify::answer(fd, n.id, verdict.is_err().then_some(libc::EACCES)) {
                // ENOENT: the caller went away after the check.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                other => other?,
            }
        }
        Ok(())
    }
}

/// The program a dynamic loader run as a command is asked to load: its first argument that is
/// not an option, resolved against the caller's working directory.
fn loaded_program(identifier: &Identifier, request: &ExecRequest) -> Option<Program> {
    let program = request.program.as_ref()?;
    let name = std::path::Path::new(program.copy_of.as_deref().unwrap_or(&program.path)).file_name()?.to_str()?;
    if !crate::identity::is_loader_name(name) {
        return None;
    }
    let target = request.argv.get(crate::identity::loader_target(&request.argv)?)?;
    let path = if target.starts_with('/') {
        target.clone()
    } else {
        format!("{}/{target}", request.cwd.trim_end_matches('/'))
    };
    identifier.identify(request.pid, &path, None).ok()
}

/// Writes why an exec is refused to the caller's standard error, before the call fails.
///
/// The descriptor is the caller's own, duplicated with `pidfd_getfd` (never reopened by path,
/// which would check the supervisor's rights instead of the caller's): the line goes where the
/// caller's own writes go, and not at all if it could not write there. The pidfd is taken while
/// the call is still pending, so it names the trapped process, not a reuse of its pid. Nothing
/// is written when the stream would block (a full pipe), so the monitor never waits on it.
fn tell(listener: std::os::fd::BorrowedFd<'_>, n: &notify::Notification, argv: &[String], why: &str) {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
    let Some(pid) = i32::try_from(n.pid).ok().and_then(Pid::from_raw) else { return };
    let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else { return };
    if !notify::still_pending(listener, n.id) {
        return;
    }
    let Ok(stderr) = pidfd_getfd(&pidfd, 2, PidfdGetfdFlags::empty()) else { return };
    let mut ready = [PollFd::new(&stderr, PollFlags::OUT)];
    if poll(&mut ready, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).is_err()
        || !ready[0].revents().contains(PollFlags::OUT)
    {
        return;
    }
    let line = format!("portcullis: `{}` was not run: {}\n", one_line(&shown_command(argv), 200), one_line(why, 400));
    let _ = rustix::io::write(&stderr, line.as_bytes());
}

/// The command an exec stands for, for people: its argv, or, for an agent CLI's shell wrapper,
/// the command inside it. Claude Code runs each Bash tool call as
/// `bash -c "source ~/.claude/shell-snapshots/snapshot-….sh … && eval '<command>' < /dev/null
/// && pwd -P >| /tmp/claude-…-cwd"`: a refusal quoting that would not name what the agent
/// asked for. The record keeps the whole argv.
pub fn shown_command(argv: &[String]) -> String {
    wrapped_command(argv).unwrap_or_else(|| argv.join(" "))
}

/// The `<command>` of a snapshot-sourcing `eval '<command>'` wrapper, if `argv` is one.
fn wrapped_command(argv: &[String]) -> Option<String> {
    let shell = argv.first()?.rsplit('/').next()?;
    if !matches!(shell, "bash" | "sh" | "zsh" | "dash") {
        return None;
    }
    let flag = argv.iter().skip(1).position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'))?;
    let script = argv.get(flag + 2)?;
    if !script.contains("shell-snapshots/snapshot-") {
        return None;
    }
    let at = script.find("eval ")? + "eval ".len();
    shell_word(&script[at..]).filter(|w| !w.is_empty())
}

/// The first shell word of `text` with its quoting removed (single quotes, double quotes with
/// backslash escapes, and backslash escapes outside quotes), ending at unquoted whitespace.
fn shell_word(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    c => out.push(c),
                }
            },
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        c @ ('"' | '\\' | '$' | '`') => out.push(c),
                        c => {
                            out.push('\\');
                            out.push(c);
                        }
                    },
                    c => out.push(c),
                }
            },
            '\\' => out.push(chars.next()?),
            c if c.is_whitespace() => break,
            c => out.push(c),
        }
    }
    Some(out)
}

/// `text` on one line, cut to about `max` bytes (at a character boundary).
fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// True when `path` names something in the caller's root (resolved as the caller would, with
/// symlinks kept inside that root).
fn exists_inside(pid: u32, path: &str) -> bool {
    use rustix::fs::{Mode, OFlags, ResolveFlags, open, openat2};
    let Ok(root) =
        open(format!("/proc/{pid}/root").as_str(), OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
    else {
        // Cannot tell: let the policy decide on what was asked.
        return true;
    };
    openat2(&root, path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT).is_ok()
}

fn read_request(n: &notify::Notification) -> ExecRequest {
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", n.pid))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut request = ExecRequest { cwd, ..ExecRequest::new(n.pid) };
    if let Err(e) = read_into(n, &mut request) {
        request.unreadable = Some(e.to_string());
    }
    request
}

fn read_into(n: &notify::Notification, request: &mut ExecRequest) -> io::Result<()> {
    let mem = File::open(format!("/proc/{}/mem", n.pid))?;
    let mut budget = MAX_BYTES;
    let (dirfd, path_ptr, argv_ptr, flags) = if i64::from(n.nr) == libc::SYS_execveat {
        (n.args[0] as i32, n.args[1], n.args[2], n.args[4] as i32)
    } else {
        (libc::AT_FDCWD, n.args[0], n.args[1], 0)
    };
    let path = read_string(&mem, path_ptr, &mut budget)?;
    let base = if dirfd == libc::AT_FDCWD || path.starts_with('/') {
        request.cwd.clone()
    } else {
        std::fs::read_link(format!("/proc/{}/fd/{dirfd}", n.pid))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    request.path = if path.starts_with('/') {
        path
    } else if path.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
        if dirfd != libc::AT_FDCWD {
            request.fd = Some(dirfd);
        }
        base
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    };
    if argv_ptr == 0 {
        return Ok(());
    }
    for i in 0..MAX_ARGS {
        let mut word = [0u8; 8];
        mem.read_exact_at(&mut word, argv_ptr + 8 * i as u64)?;
        let ptr = u64::from_ne_bytes(word);
        if ptr == 0 {
            return Ok(());
        }
        request.argv.push(read_string(&mem, ptr, &mut budget)?);
    }
    Err(io::Error::other(format!("more than {MAX_ARGS} arguments")))
}

/// Reads a NUL-terminated string at `addr`, a page at a time (a string may end just before an
/// unmapped page).
fn read_string(mem: &File, addr: u64, budget: &mut usize) -> io::Result<String> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    loop {
        let len = (PAGE - at % PAGE) as usize;
        let mut chunk = vec![0u8; len];
        let got = mem.read_at(&mut chunk, at)?;
        if got == 0 {
            return Err(io::Error::other("unreadable argument memory"));
        }
        if let Some(end) = chunk[..got].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..end]);
            break;
        }
        out.extend_from_slice(&chunk[..got]);
        if out.len() > *budget {
            return Err(io::Error::other(format!("the arguments exceed {MAX_BYTES} bytes")));
        }
        at += got as u64;
    }
    *budget = budget.saturating_sub(out.len());
    Ok(std::ffi::OsString::from_vec(out).to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::{one_line, shown_command};

    fn argv(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_refusal_names_the_command_inside_an_agent_clis_shell_wrapper() {
        let wrapped = |cmd: &str| {
            argv(&[
                "/bin/bash",
                "-c",
                &format!(
                    "source /home/u/.claude/shell-snapshots/snapshot-bash-1785160735574-zxu151.sh 2>/dev/null || true \
                     && eval {cmd} \\< /dev/null && pwd -P >| /tmp/claude-ccfa-cwd"
                ),
            ])
        };
        assert_eq!(shown_command(&wrapped("'git reset --hard'")), "git reset --hard");
        // A quote inside the command, as the CLI escapes it.
        assert_eq!(shown_command(&wrapped(r#"'echo '"'"'hi'"'"' > x'"#)), "echo 'hi' > x");
        assert_eq!(shown_command(&wrapped(r#"'it'\''s'"#)), "it's");
        // Anything else is shown as it ran.
        assert_eq!(shown_command(&argv(&["bash", "-c", "eval 'ls'"])), "bash -c eval 'ls'");
        assert_eq!(shown_command(&argv(&["curl", "-s", "x"])), "curl -s x");
    }

    #[test]
    fn a_message_stays_on_one_line_and_is_cut_at_a_character() {
        assert_eq!(one_line("a\nb\tc\u{1b}[2J", 100), "a b c [2J");
        assert_eq!(one_line("ééé", 3), "é…");
        assert_eq!(one_line("short", 100), "short");
    }
}
