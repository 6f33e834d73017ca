//! Path confinement: decide on the file the kernel would open, and open it through that check.
//!
//! [`Workdir::open`] first rejects spellings that only exist to confuse a checker (encoded dots,
//! look-alike characters, NUL, `~` and `/proc` tricks, backslash traversal), then opens the path
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to the workdir's descriptor,
//! so `..`, absolute symlinks and symlinks that climb out fail inside the kernel. The checks that
//! depend on what was opened (credential files, start-up files, hard links) run on the opened
//! descriptor. The caller reads and writes through the returned `File`: there is no window
//! between the check and the use.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use portcullis_policy::{Access, Decision, GuardSwitches};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Paths longer than this are refused before any work (Linux's `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The path contains a NUL byte, or `%00`.
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
    /// The path is longer than [`MAX_PATH_BYTES`].
    #[error("the path is {0} bytes long; the limit is 4096")]
    TooLong(usize),
    /// Percent-encoding or overlong UTF-8 hides a dot, a separator or a NUL.
    #[error("`{0}` hides `.` or `/` in an encoding")]
    Encoded(String),
    /// A character that looks like `.` or `/` but is not.
    #[error("`{0}` contains a look-alike of `.` or `/`")]
    LookAlike(String),
    /// `..\` or `.\` traversal written with backslashes.
    #[error("`{0}` uses backslashes to climb directories")]
    Backslash(String),
    /// `~`, `~user` or `$HOME` that leads outside the workdir.
    #[error("`{0}` leads to the home directory, outside the workdir")]
    Home(String),
    /// `/proc/*/root`, `/proc/*/cwd`, `/proc/*/fd` and `/dev/fd` lead anywhere.
    #[error("`{0}` goes through /proc or /dev/fd")]
    Proc(String),
    /// An absolute path outside the workdir.
    #[error("`{0}` is outside the workdir")]
    Outside(String),
    /// The kernel refused the path because it climbs out of the workdir (`..` or a symlink).
    #[error("`{0}` leaves the workdir through `..` or a symlink")]
    Escapes(String),
    /// A magic link (`/proc/self/fd/N`) or a symlink where none may be.
    #[error("`{0}` goes through a magic link or a symlink that is not allowed here")]
    Link(String),
    /// A credential file or directory, even inside the workdir.
    #[error("`{0}` is a credential file")]
    Credential(String),
    /// A shell start-up file, git hook or agent setting, which runs code later.
    #[error("`{0}` is a start-up file; writing it would run code later")]
    StartupFile(String),
    /// A regular file with more than one name may be a file outside the workdir.
    #[error("`{0}` has {1} hard links and may be a file outside the workdir")]
    HardLink(String, u64),
    /// The open itself failed.
    #[error("cannot open `{path}`")]
    Io {
        /// The path as given.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl PathError {
    /// True when the path was refused by a check rather than by the filesystem (a missing file).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, PathError::Io { .. })
    }
}

/// Which of the switchable path checks are on.
#[derive(Clone, Copy, Debug)]
pub struct PathSettings {
    /// Refuse credential files inside the workdir.
    pub credential_paths: bool,
    /// Refuse writes to start-up files inside the workdir.
    pub startup_files: bool,
    /// Refuse regular files with several hard links.
    pub hard_links: bool,
}

impl Default for PathSettings {
    fn default() -> Self {
        PathSettings { credential_paths: true, startup_files: true, hard_links: true }
    }
}

impl PathSettings {
    /// Reads `credential_paths`, `startup_files` and `hard_links` from the policy's `[guards]`.
    pub fn from_policy(switches: &GuardSwitches) -> Self {
        let on = |id: &str| switches.get(id).is_none_or(|s| s.is_some_and(|d| d != Decision::Allow));
        PathSettings {
            credential_paths: on("credential_paths"),
            startup_files: on("startup_files"),
            hard_links: on("hard_links"),
        }
    }
}

/// Credential files and directories, matched on path components inside the workdir.
const CREDENTIAL_NAMES: &[&str] = &[
    ".ssh",
    ".aws",
    ".azure",
    ".gnupg",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".npmrc",
    ".pypirc",
    ".password-store",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".credentials.json",
    "credentials.db",
    "auth.json",
];
/// Start-up files: writing them runs code in a later shell, desktop or agent session. The shell
/// guard uses the same list for redirections and copies.
pub(crate) const STARTUP_NAMES: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    ".kshrc",
    ".cshrc",
    ".tcshrc",
    ".inputrc",
    ".xinitrc",
    ".xprofile",
    "config.fish",
    ".mcp.json",
    ".envrc",
];

/// A workdir held open by descriptor; every open is resolved beneath it.
#[derive(Debug)]
pub struct Workdir {
    fd: OwnedFd,
    root: PathBuf,
    home: PathBuf,
    settings: PathSettings,
}

/// Options for [`Workdir::open`].
#[derive(Clone, Copy, Debug)]
pub enum OpenMode {
    /// Read an existing file or directory.
    Read,
    /// Write an existing file, truncating it.
    Write,
    /// Create a new file or replace an existing one.
    Create,
    /// Append to a file, creating it if needed.
    Append,
}

impl OpenMode {
    fn access(self) -> Access {
        match self {
            OpenMode::Read => Access::Read,
            _ => Access::Write,
        }
    }
}

impl Workdir {
    /// Opens `root` (absolute) as the workdir; `home` is what `~` means.
    pub fn open_dir(root: &Path, home: &Path, settings: PathSettings) -> Result<Self, PathError> {
        let io = |source| PathError::Io { path: root.display().to_string(), source };
        let fd = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io(e.into()))?;
        let root = std::fs::canonicalize(root).map_err(io)?;
        Ok(Workdir { fd, root, home: home.to_path_buf(), settings })
    }

    /// The workdir's canonical path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Checks the spelling of `path` and returns it relative to the workdir. No I/O.
    pub fn check(&self, path: &str) -> Result<PathBuf, PathError> {
        let owned = || path.to_owned();
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(path.len()));
        }
        if path.contains('\0') {
            return Err(PathError::Nul(owned()));
        }
        if let Some(why) = decoded_danger(path) {
            return Err(match why {
                Danger::Nul => PathError::Nul(owned()),
                Danger::Encoded => PathError::Encoded(owned()),
            });
        }
        if path.chars().any(is_lookalike) {
            return Err(PathError::LookAlike(owned()));
        }
        if path
            .split('/')
            .any(|c| c.contains('\\') && c.split('\\').any(|p| p.chars().all(|ch| ch == '.') && !p.is_empty()))
        {
            return Err(PathError::Backslash(owned()));
        }
        let expanded = if path == "~" || path.starts_with("~/") {
            Some(self.home.join(path.trim_start_matches('~').trim_start_matches('/')))
        } else if let Some(rest) = path.strip_prefix("$HOME").or_else(|| path.strip_prefix("${HOME}")) {
            Some(self.home.join(rest.trim_start_matches('/')))
        } else if path.starts_with('~') {
            return Err(PathError::Home(owned()));
        } else {
            None
        };
        let absolute = expanded.clone().unwrap_or_else(|| self.root.join(path));
        let normal = portcullis_policy::lexical_normalize(&absolute).ok_or_else(|| PathError::Outside(owned()))?;
        let text = normal.to_string_lossy();
        let mut parts = text.split('/').skip(1);
        if matches!(
            (parts.next(), parts.next(), parts.next()),
            (Some("proc"), Some(_), Some("root" | "cwd" | "fd" | "exe" | "map_files"))
        ) || text.starts_with("/dev/fd")
            || text.starts_with("/proc/self")
            || text.starts_with("/proc/thread-self")
        {
            return Err(PathError::Proc(owned()));
        }
        match normal.strip_prefix(&self.root) {
            Ok(rel) => {
                if expanded.is_none() && Path::new(path).is_absolute() || expanded.is_some() {
                    Ok(rel.to_path_buf())
                } else {
                    // Relative paths go to the kernel as written, so `..` is judged there.
                    Ok(PathBuf::from(path))
                }
            }
            Err(_) if expanded.is_some() => Err(PathError::Home(owned())),
            Err(_) if Path::new(path).is_absolute() => Err(PathError::Outside(owned())),
            // A relative path whose `..` climbs out: the kernel will refuse it too.
            Err(_) => Err(PathError::Escapes(owned())),
        }
    }

    /// Every check that needs no open: the spelling, and credential and start-up names on the
    /// path as written. [`Workdir::open`] repeats the name checks on the file it opened.
    pub fn inspect(&self, path: &str, access: Access) -> Result<PathBuf, PathError> {
        let rel = self.check(path)?;
        let normal = portcullis_policy::lexical_normalize(&Path::new("/").join(&rel)).unwrap_or_default();
        let normal = normal.strip_prefix("/").map(Path::to_path_buf).unwrap_or(normal);
        self.check_names(path, &normal, access)?;
        Ok(rel)
    }

    /// Checks and opens `path` beneath the workdir. The returned file is the one that passed.
    pub fn open(&self, path: &str, mode: OpenMode) -> Result<File, PathError> {
        let rel = self.check(path)?;
        let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
        let access = mode.access();
        self.check_names(path, &rel, access)?;
        let flags = match mode {
            OpenMode::Read => OFlags::RDONLY,
            OpenMode::Write => OFlags::WRONLY | OFlags::TRUNC,
            OpenMode::Create => OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC,
            OpenMode::Append => OFlags::WRONLY | OFlags::CREATE | OFlags::APPEND,
        } | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        // openat2 insists on a zero mode unless a file may be created.
        let mode = if flags.contains(OFlags::CREATE) { Mode::from_bits_truncate(0o644) } else { Mode::empty() };
        let fd = rustix::fs::openat2(self.fd.as_fd(), &rel, flags, mode, resolve).map_err(|e| match e {
            Errno::XDEV => PathError::Escapes(path.to_owned()),
            Errno::LOOP => PathError::Link(path.to_owned()),
            other => PathError::Io { path: path.to_owned(), source: other.into() },
        })?;
        // The name the kernel actually opened, for the checks that depend on it.
        let real = rustix::fs::readlink(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)), Vec::new())
            .map(|c| PathBuf::from(c.to_string_lossy().into_owned()))
            .map_err(|e| PathError::Io { path: path.to_owned(), source: e.into() })?;
        let real_rel = real.strip_prefix(&self.root).map_err(|_| PathError::Escapes(path.to_owned()))?.to_path_buf();
        self.check_names(path, &real_rel, access)?;
        if self.settings.hard_links {
            let stat = rustix::fs::fstat(&fd).map_err(|e| PathError::Io { path: path.to_owned(), source: e.into() })?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile && stat.st_nlink > 1 {
                return Err(PathError::HardLink(path.to_owned(), stat.st_nlink));
            }
        }
        Ok(File::from(fd))
    }

    /// Credential and start-up names, on a path relative to the workdir.
    fn check_names(&self, original: &str, rel: &Path, access: Access) -> Result<(), PathError> {
        let parts: Vec<&str> =
            rel.components().filter_map(|c| if let Component::Normal(p) = c { p.to_str() } else { None }).collect();
        if self.settings.credential_paths && parts.iter().any(|p| CREDENTIAL_NAMES.contains(p)) {
            return Err(PathError::Credential(original.to_owned()));
        }
        if self.settings.startup_files && access == Access::Write {
            let last = parts.last().copied().unwrap_or_default();
            let git_control = parts.windows(2).any(|w| w[0] == ".git" && matches!(w[1], "hooks" | "config" | "info"));
            let agent_settings = parts
                .windows(2)
                .any(|w| matches!(w[0], ".claude" | ".codex" | ".cursor" | ".vscode" | ".gemini" | ".husky"));
            if STARTUP_NAMES.contains(&last) || last.ends_with(".pth") || git_control || agent_settings {
                return Err(PathError::StartupFile(original.to_owned()));
            }
        }
        Ok(())
    }
}

enum Danger {
    Nul,
    Encoded,
}

/// Decodes `%XX`, `%uXXXX` and nested forms (`%%32%65`, `%252e`) up to four rounds, and reports
/// when decoding produces a NUL, a dot, a separator or a non-ASCII byte (overlong UTF-8).
fn decoded_danger(path: &str) -> Option<Danger> {
    let mut current = path.as_bytes().to_vec();
    for _ in 0..4 {
        let (next, introduced) = decode_round(&current);
        if next == current {
            return None;
        }
        for b in introduced {
            match b {
                0 => return Some(Danger::Nul),
                b'.' | b'/' | b'\\' | b'%' => return Some(Danger::Encoded),
                b if b >= 0x80 => return Some(Danger::Encoded),
                _ => {}
            }
        }
        current = next;
    }
    Some(Danger::Encoded)
}

/// One round of percent-decoding; returns the bytes and the bytes that decoding produced.
fn decode_round(input: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(input.len());
    let mut introduced = Vec::new();
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if let (Some(h), Some(l)) = (input.get(i + 1).and_then(|b| hex(*b)), input.get(i + 2).and_then(|b| hex(*b)))
            {
                let b = (h * 16 + l) as u8;
                out.push(b);
                introduced.push(b);
                i += 3;
                continue;
            }
            if matches!(input.get(i + 1), Some(b'u' | b'U'))
                && input.len() >= i + 6
                && input[i + 2..i + 6].iter().all(|b| hex(*b).is_some())
            {
                let code = input[i + 2..i + 6].iter().fold(0u32, |acc, b| acc * 16 + hex(*b).unwrap_or(0));
                let c = char::from_u32(code).unwrap_or('\u{fffd}');
                let mut buf = [0u8; 4];
                let bytes = c.encode_utf8(&mut buf).as_bytes();
                out.extend_from_slice(bytes);
                introduced.extend_from_slice(bytes);
                i += 6;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    (out, introduced)
}

/// Characters that render like `.`, `/` or `\`.
fn is_lookalike(c: char) -> bool {
    matches!(
        c,
        '\u{2024}'
            | '\u{2025}'
            | '\u{2026}'
            | '\u{FE52}'
            | '\u{FF0E}'
            | '\u{3002}'
            | '\u{FF61}'
            | '\u{0701}'
            | '\u{0702}'
            | '\u{2E2E}'
            | '\u{A4F8}'
            | '\u{2215}'
            | '\u{2044}'
            | '\u{FF0F}'
            | '\u{29F8}'
            | '\u{2571}'
            | '\u{FF3C}'
            | '\u{FE68}'
            | '\u{2216}'
            | '\u{29F5}'
            | '\u{29F9}'
            | '\u{2572}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workdir() -> (PathBuf, Workdir) {
        let base = std::env::temp_dir().join(format!("pc-path-unit-{}", std::process::id()));
        let root = base.join("work");
        std::fs::create_dir_all(&root).unwrap();
        let wd = Workdir::open_dir(&root, &base.join("home"), PathSettings::default()).unwrap();
        (base, wd)
    }

    #[test]
    fn spellings_are_refused_before_any_open() {
        let (base, wd) = workdir();
        let refused = |p: &str| wd.check(p).is_err();
        for p in [
            "a\0b",
            "..%2f..%2fetc%2fpasswd",
            "%2e%2e/%2e%2e/etc/passwd",
            "%252e%252e/x",
            "%%32%65%%32%65/x",
            "%c0%ae%c0%ae/x",
            "%uff0e%uff0e/x",
            "\u{2025}/\u{2025}/etc/passwd",
            "..\\..\\etc\\passwd",
            "~/.ssh/id_rsa",
            "$HOME/.aws/credentials",
            "~root/.ssh",
            "/proc/self/root/etc/passwd",
            "/proc/1/cwd/x",
            "/dev/fd/3",
            "/etc/passwd",
            "../../../../etc/passwd",
            "a/../../x",
        ] {
            assert!(refused(p), "{p:?} was not refused");
        }
        assert!(wd.check("src/main.rs").is_ok());
        assert!(wd.check("docs/100%20percent.md").is_ok());
        assert!(wd.check(&format!("{}/src/x", wd.root().display())).is_ok());
        assert!(matches!(wd.check(&"a/".repeat(50_000)), Err(PathError::TooLong(_))));
        std::fs::remove_dir_all(base).unwrap();
    }
}
