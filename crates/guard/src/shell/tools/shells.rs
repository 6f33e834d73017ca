//! Terminal multiplexers and shells for languages other than sh.

use crate::shell::parse::Command;

/// Terminal multiplexers and session tools: each new session, window or pane is a shell.
pub(crate) fn starts_a_session(cmd: &Command) -> bool {
    let args = cmd.args();
    let first = args.iter().map(|w| w.text.as_str()).find(|t| !t.starts_with('-'));
    let queries = |sub: Option<&str>| {
        sub.is_some_and(|s| {
            s.starts_with("list")
                || s.starts_with("kill")
                || s.starts_with("show")
                || s.starts_with("display")
                || matches!(
                    s,
                    "ls" | "has" | "has-session" | "info" | "capture-pane" | "capturep" | "detach" | "detach-client"
                )
        })
    };
    match cmd.name() {
        "tmux" => !queries(first) && !args.iter().any(|w| w.text == "-V"),
        "screen" => !args
            .iter()
            .any(|w| matches!(w.text.as_str(), "-ls" | "-list" | "-v" | "-wipe" | "-h" | "--help" | "--version")),
        "byobu" | "byobu-tmux" | "byobu-screen" => !queries(first),
        "zellij" => {
            !queries(first) && !args.iter().any(|w| matches!(w.text.as_str(), "-V" | "--version" | "-h" | "--help"))
        }
        "dtach" | "abduco" => args.iter().any(|w| matches!(w.text.as_str(), "-c" | "-A" | "-n" | "-N")),
        _ => false,
    }
}

/// Shells for other languages than sh: started without a script they take commands
/// (`tclsh` and `wish` run `exec`, PowerShell runs anything).
pub(crate) const SCRIPTING_SHELLS: &[&str] =
    &["tclsh", "wish", "jimsh", "pwsh", "powershell", "sash", "rc", "es", "scsh", "ksh93", "ipython", "bpython"];

/// True for a PowerShell or other scripting shell given no script, no command and no file.
pub(crate) fn scripting_shell_without_script(cmd: &Command) -> bool {
    // `tclsh8.6`, `powershell.exe`: a versioned or Windows name is the same shell.
    let name = cmd.name();
    let name = name.strip_suffix(".exe").unwrap_or(name).trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !SCRIPTING_SHELLS.contains(&name) {
        return false;
    }
    let powershell = matches!(name, "pwsh" | "powershell");
    let mut i = 0;
    let args = cmd.args();
    while let Some(w) = args.get(i) {
        let t = w.text.to_ascii_lowercase();
        i += 1;
        if !t.starts_with('-') {
            return false;
        }
        if powershell {
            let option = t.trim_start_matches('-');
            // `-Command`, `-File`, `-EncodedCommand` and their prefixes run something given.
            if ["command", "file", "encodedcommand", "ec", "enc"]
                .iter()
                .any(|o| o.starts_with(option) && !option.is_empty())
            {
                return false;
            }
            if ["executionpolicy", "ep", "ex", "workingdirectory", "wd", "outputformat", "of", "inputformat", "if"]
                .contains(&option)
            {
                i += 1;
            }
        } else if t == "-c" || t == "-e" || t == "-f" {
            return false;
        }
    }
    true
}
