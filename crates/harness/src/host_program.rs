//! Programs Portcullis runs on the host because the policy names them (the `[alerts] command`
//! today; user hooks will follow the same rule): resolved to an absolute path once, when the
//! session starts, and refused if the agent could change them.
//!
//! SECURITY: such a program runs outside the sandbox with the supervisor's privileges. If it,
//! or a directory above it, lies where the agent can write (the workdir, a `writable` path),
//! a turned agent rewrites it and then makes it run: its code runs on the host. So the path the
//! policy gives and the path it resolves to are both checked against every place the sandbox
//! can write, and the program is run from `/`, with a scrubbed environment and without a shell;
//! what the agent influences (tool names, hosts, argv) reaches it only as JSON on stdin.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment a host program gets: nothing of the supervisor's but these.
const PASSED_ENV: &[&str] = &["LANG", "LC_ALL", "TZ"];

/// A program resolved and checked at the session's start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProgram {
    /// The canonical path run.
    path: PathBuf,
    args: Vec<String>,
    home: PathBuf,
}

/// Why a program the policy names cannot be run on the host.
#[derive(Debug, thiserror::Error)]
pub enum HostProgramError {
    /// The program is not found.
    #[error("{what}: `{program}` is not found{}", if program.contains('/') { "" } else { " on PATH" })]
    NotFound {
        /// What names the program (`[alerts] command`).
        what: String,
        /// The program as the policy gives it.
        program: String,
    },
    /// The path is not an executable regular file.
    #[error("{what}: `{}` is not an executable file", path.display())]
    NotExecutable {
        /// What names the program.
        what: String,
        /// The resolved path.
        path: PathBuf,
    },
    /// The program, or a directory above it, can be written from inside the sandbox.
    #[error(
        "{what}: `{}` lies in `{}`, which the agent can write from inside the sandbox, so the agent could \
         change what runs on the host; move the program out of it (for example under \
         ~/.config/portcullis/) and name that path",
        path.display(),
        place.display()
    )]
    AgentWritable {
        /// What names the program.
        what: String,
        /// The path checked (as given, or as resolved).
        path: PathBuf,
        /// The writable place it lies in.
        place: PathBuf,
    },
}

impl HostProgram {
    /// Resolves `argv[0]`: `~/x` under `home`, a path with a `/` against `cwd`, a bare name on
    /// `path` (the host's `PATH`). Refused when the program or any directory above it lies in
    /// one of `agent_writable` (as given or with symlinks resolved), or is not an executable file.
    /// `what` names the setting in errors.
    pub fn resolve(
        what: &str,
        argv: &[String],
        home: &Path,
        cwd: &Path,
        path: &OsString,
        agent_writable: &[PathBuf],
    ) -> Result<HostProgram, HostProgramError> {
        let not_found = || HostProgramError::NotFound { what: what.to_owned(), program: argv.join(" ") };
        let (program, args) = argv.split_first().ok_or_else(not_found)?;
        let given = if let Some(rest) = program.strip_prefix("~/") {
            home.join(rest)
        } else if program.contains('/') {
            cwd.join(program)
        } else {
            std::env::split_paths(path)
                .filter(|d| d.is_absolute())
                .map(|d| d.join(program))
                .find(|p| executable(p))
                .ok_or_else(not_found)?
        };
        let given = normal(&given);
        let canonical = given.canonicalize().map_err(|_| not_found())?;
        // Both spellings: a symlink the agent can replace is as bad as the file itself.
        let places: Vec<PathBuf> =
            agent_writable.iter().flat_map(|w| [normal(w), w.canonicalize().unwrap_or_else(|_| normal(w))]).collect();
        let refuse = |checked: &Path| -> Result<(), HostProgramError> {
            for path in [normal(checked), checked.canonicalize().unwrap_or_else(|_| normal(checked))] {
                if let Some(place) = places.iter().find(|w| path.starts_with(w)) {
                    return Err(HostProgramError::AgentWritable { what: what.to_owned(), path, place: place.clone() });
                }
            }
            Ok(())
        };
        refuse(&given)?;
        if !executable(&canonical) {
            return Err(HostProgramError::NotExecutable { what: what.to_owned(), path: canonical });
        }
        // SECURITY: what the program reads as code is checked too: a script's interpreter
        // (`#!/proj/.venv/bin/python`) and every argument naming an existing path
        // (`python3 /proj/ops/alert.py`).
        if let Some(interpreter) = shebang(&canonical) {
            refuse(&interpreter)?;
        }
        for arg in args {
            let path = if let Some(rest) = arg.strip_prefix("~/") { home.join(rest) } else { cwd.join(arg) };
            if (arg.contains('/') || path.exists()) && path.symlink_metadata().is_ok() {
                refuse(&path)?;
            }
        }
        Ok(HostProgram { path: canonical, args: args.to_vec(), home: home.to_path_buf() })
    }

    /// The resolved path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command for the program: its arguments, run from `/` with only a fixed `PATH`, `HOME`
    /// and the locale in its environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.args(&self.args).current_dir("/").env_clear();
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin").env("HOME", &self.home);
        for (k, v) in std::env::vars_os().filter(|(k, _)| PASSED_ENV.iter().any(|p| k == *p)) {
            cmd.env(k, v);
        }
        cmd
    }
}

/// The interpreter a script names on its `#!` line.
fn shebang(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?.trim();
    text.split_whitespace().next().map(PathBuf::from)
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `path` without `.` and with `..` taken lexically (for the as-given check; the canonical
/// path is checked as well).
fn normal(path: &Path) -> PathBuf {
    portcullis_policy::lexical_normalize(path).unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portcullis-hostprog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("work/hooks")).unwrap();
        std::fs::create_dir_all(dir.join("home/.config/portcullis")).unwrap();
        for p in ["work/hooks/page.sh", "home/.config/portcullis/page.sh"] {
            std::fs::write(dir.join(p), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(dir.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    fn resolve(dir: &Path, program: &str) -> Result<HostProgram, HostProgramError> {
        let (work, home) = (dir.join("work"), dir.join("home"));
        HostProgram::resolve(
            "[alerts] command",
            &[program.to_owned()],
            &home,
            &work,
            &"/usr/bin:/bin".into(),
            std::slice::from_ref(&work),
        )
    }

    #[test]
    fn an_alert_script_in_the_workdir_is_refused() {
        let dir = tree("inside");
        let e = resolve(&dir, "./hooks/page.sh").unwrap_err();
        assert!(matches!(e, HostProgramError::AgentWritable { .. }), "{e}");
        assert!(e.to_string().contains("~/.config/portcullis"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_out_of_the_workdir_or_into_it_is_refused() {
        let dir = tree("links");
        // A link in the workdir to a safe program: the agent can replace the link.
        std::os::unix::fs::symlink(dir.join("home/.config/portcullis/page.sh"), dir.join("work/link")).unwrap();
        assert!(matches!(resolve(&dir, "./link"), Err(HostProgramError::AgentWritable { .. })));
        // A link outside to a script in the workdir: the agent can rewrite its target.
        std::os::unix::fs::symlink(dir.join("work/hooks/page.sh"), dir.join("home/.config/portcullis/in")).unwrap();
        assert!(matches!(resolve(&dir, "~/.config/portcullis/in"), Err(HostProgramError::AgentWritable { .. })));
        // `..` out of the workdir and back in.
        let back = format!("{}/work/../work/hooks/page.sh", dir.display());
        assert!(matches!(resolve(&dir, &back), Err(HostProgramError::AgentWritable { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_script_argument_or_interpreter_in_the_workdir_is_refused() {
        let dir = tree("args");
        let (work, home) = (dir.join("work"), dir.join("home"));
        let resolve = |argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
            HostProgram::resolve(
                "[alerts] command",
                &argv,
                &home,
                &work,
                &"/usr/bin:/bin".into(),
                std::slice::from_ref(&work),
            )
        };
        let script = work.join("hooks/page.sh").display().to_string();
        assert!(matches!(resolve(&["sh", &script]), Err(HostProgramError::AgentWritable { .. })));
        assert!(matches!(resolve(&["sh", "hooks/page.sh"]), Err(HostProgramError::AgentWritable { .. })));
        // A script outside whose interpreter lies in the workdir.
        let outside = home.join(".config/portcullis/page.sh");
        std::fs::write(&outside, format!("#!{}/venv/python\n", work.display())).unwrap();
        assert!(matches!(resolve(&["~/.config/portcullis/page.sh"]), Err(HostProgramError::AgentWritable { .. })));
        assert!(resolve(&["sh", "-c"]).is_ok(), "arguments that name nothing are data");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_program_outside_resolves_once_to_its_absolute_path() {
        let dir = tree("outside");
        let p = resolve(&dir, "~/.config/portcullis/page.sh").unwrap();
        assert_eq!(p.path(), dir.join("home/.config/portcullis/page.sh").canonicalize().unwrap());
        assert_eq!(resolve(&dir, "true").unwrap().path(), Path::new("/usr/bin/true").canonicalize().unwrap());
        assert!(matches!(resolve(&dir, "no-such-program"), Err(HostProgramError::NotFound { .. })));
        std::fs::write(dir.join("home/plain"), "").unwrap();
        assert!(matches!(resolve(&dir, "~/plain"), Err(HostProgramError::NotExecutable { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_program_gets_no_environment_of_the_supervisors_and_runs_from_the_root() {
        let dir = tree("env");
        let p = HostProgram::resolve(
            "[alerts] command",
            &["env".to_owned()],
            &dir.join("home"),
            &dir,
            &"/usr/bin:/bin".into(),
            &[],
        )
        .unwrap();
        let cmd = p.command();
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/")));
        let names: Vec<_> = cmd.get_envs().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        assert!(names.iter().all(|n| ["PATH", "HOME", "LANG", "LC_ALL", "TZ"].contains(&n.as_str())), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
