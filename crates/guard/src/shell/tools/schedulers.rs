//! Commands that schedule another to run later, outside the session.

use crate::shell::parse::Command;

/// True when a command schedules another to run later, outside the session: `at`, `batch`,
/// `systemd-run` timers and detached units, `launchctl submit`, `schtasks /create`.
pub(crate) fn schedules_a_command(cmd: &Command) -> bool {
    let name = cmd.name().to_ascii_lowercase();
    if !matches!(name.as_str(), "at" | "batch" | "systemd-run" | "launchctl" | "schtasks" | "schtasks.exe" | "loginctl")
        && !name.contains("scheduledtask")
    {
        return false;
    }
    let exact: Vec<&str> = cmd.args().iter().map(|w| w.text.as_str()).collect();
    let words: Vec<String> = cmd.args().iter().map(|w| w.text.to_ascii_lowercase()).collect();
    let has = |t: &str| words.iter().any(|w| w == t);
    match name.as_str() {
        // `at -l`, `at -r N`, `at -c N` only list, remove or show jobs.
        "at" => !words.iter().any(|w| matches!(w.as_str(), "-l" | "-r" | "-d" | "-c" | "-v" | "--help" | "-h")),
        "batch" => true,
        "systemd-run" => {
            let timer = words.iter().any(|w| w.starts_with("--on-") || w.starts_with("--timer-property"));
            // Without `--scope`, `--wait` or a terminal, the command runs as a unit of its own
            // that outlives the session.
            let attached = exact.iter().any(|w| {
                matches!(*w, "--scope" | "--wait" | "--pty" | "--pipe" | "--shell")
                    || (w.starts_with('-') && !w.starts_with("--") && w.contains(['t', 'P', 'S']))
            });
            timer || !attached && !has("--help") && !has("--version")
        }
        "launchctl" => has("submit"),
        "schtasks" | "schtasks.exe" => words.iter().any(|w| w == "/create" || w == "-create" || w == "/change"),
        "register-scheduledtask" | "new-scheduledtask" | "new-scheduledtaskaction" | "new-scheduledtasktrigger" => true,
        "loginctl" => has("enable-linger"),
        _ => false,
    }
}
