//! The little languages of editors, debuggers, database shells, pagers and sed: the shell
//! escapes they offer and the files they write.

use super::{operands, option_values};
use crate::shell::parse::{Command, Word};

/// True when `name` abbreviates the Ex command `full` to at least `min` letters, as vi accepts.
fn abbreviates(name: &str, full: &str, min: usize) -> bool {
    name.len() >= min && full.starts_with(name)
}

/// True when one line of Ex commands (vi, vim, nvim, ex and ed: given with `-c`, `--cmd`,
/// `+cmd`, or fed on standard input) runs a shell or a scripting language: `:!sh`, `:sh`,
/// `:terminal`, `:r !id`, `:py3 …`, `:lua …`, `:exe …`, `:call system(…)`.
pub(crate) fn ex_runs_code(line: &str) -> bool {
    line.split(['|', '\n']).any(|part| {
        let mut rest = part;
        loop {
            // Ranges and marks: `%!sh`, `1,$!sort`, `'<,'>!`.
            rest = rest.trim_start_matches(|c: char| {
                c.is_ascii_digit() || matches!(c, ':' | ' ' | '\t' | '%' | ',' | '.' | '$' | ';' | '+' | '-')
            });
            if let Some(after_mark) = rest.strip_prefix('\'') {
                rest = after_mark.get(1..).unwrap_or_default();
                continue;
            }
            let name_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            let name = &rest[..name_len];
            let modifier = [
                ("silent", 3),
                ("unsilent", 3),
                ("keepalt", 5),
                ("keepjumps", 5),
                ("noautocmd", 3),
                ("vertical", 4),
                ("botright", 2),
                ("topleft", 2),
                ("tab", 3),
                ("confirm", 4),
                ("browse", 3),
                ("lockmarks", 3),
                ("hide", 3),
            ]
            .iter()
            .any(|(full, min)| abbreviates(name, full, *min));
            if !modifier {
                break;
            }
            rest = rest[name_len..].strip_prefix('!').unwrap_or(&rest[name_len..]);
        }
        if rest.starts_with('!') {
            return true;
        }
        let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
        let (name, args) = rest.split_at(name_len);
        let languages = name.starts_with("py")
            || name.starts_with("lua")
            || [
                ("shell", 2),
                ("terminal", 2),
                ("perl", 2),
                ("perldo", 5),
                ("ruby", 3),
                ("rubydo", 5),
                ("rubyfile", 5),
                ("tcl", 2),
                ("tcldo", 4),
                ("tclfile", 4),
                ("mzscheme", 2),
                ("mzfile", 3),
                ("execute", 3),
            ]
            .iter()
            .any(|(full, min)| abbreviates(name, full, *min));
        let lower = args.to_ascii_lowercase();
        let calls = (abbreviates(name, "call", 3) || abbreviates(name, "let", 3) || abbreviates(name, "echo", 2))
            && ["system", "libcall", "job_start", "jobstart", "termopen", "term_start"]
                .iter()
                .any(|f| lower.contains(f));
        let keystrokes = abbreviates(name, "normal", 4) && (args.contains('!') || args.contains(':'));
        // `:r !cmd` and `:r!cmd` read a command's output; `:w !cmd` feeds one (`:w!` forces).
        let filter = (abbreviates(name, "read", 1) || abbreviates(name, "edit", 1))
            && args.trim_start().starts_with('!')
            || (abbreviates(name, "write", 1) || name == "wq")
                && args.starts_with([' ', '\t'])
                && args.trim_start().starts_with('!');
        languages || calls || keystrokes || filter
    })
}

/// True when a command line of a command-driven tool runs a shell: gdb's `shell`, `python` and
/// `pipe`, the database shells' `\!`, `.shell` and `.system`, the `!` of ftp clients, pagers
/// and dc.
pub(crate) fn command_line_runs_shell(tool: &str, text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        let first = line.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
        match tool {
            "ed" | "red" | "ex" | "vi" | "vim" | "nvim" | "view" | "rvim" | "rview" | "vimdiff" | "gvim" => {
                ex_runs_code(line)
            }
            "gdb" | "cgdb" | "gdb-multiarch" => {
                line.starts_with(['!', '|'])
                    || ["shell", "she", "python", "py", "python-interactive", "pi", "pipe", "guile", "gu"]
                        .contains(&first.as_str())
            }
            "sqlite3" | "sqlite" => first.starts_with(".sh") || first.starts_with(".sys"),
            "mysql" | "mariadb" => line.contains("\\!") || first == "system",
            "psql" => line.contains("\\!"),
            "ftp" | "lftp" | "sftp" | "tftp" | "smbclient" | "tnftp" | "less" | "more" | "most" => {
                line.starts_with('!')
            }
            "dc" => line.contains('!'),
            _ => false,
        }
    })
}

/// True for tools whose standard input may be commands that [`command_line_runs_shell`] reads.
pub(crate) fn reads_commands(tool: &str) -> bool {
    matches!(
        tool,
        "ed" | "red"
            | "gdb"
            | "cgdb"
            | "gdb-multiarch"
            | "sqlite3"
            | "sqlite"
            | "mysql"
            | "mariadb"
            | "psql"
            | "ftp"
            | "lftp"
            | "sftp"
            | "tftp"
            | "smbclient"
            | "tnftp"
            | "dc"
    ) || VI_FAMILY.contains(&tool)
}

/// Editors that read Ex commands.
pub(crate) const VI_FAMILY: &[&str] = &["vi", "vim", "nvim", "ex", "view", "rvim", "rview", "vimdiff", "gvim", "evim"];

/// The commands a tool is given on its command line to run in its own command language.
pub(crate) fn command_arguments(cmd: &Command) -> Vec<&str> {
    let args = cmd.args();
    let name = cmd.name();
    let mut out = Vec::new();
    if VI_FAMILY.contains(&name) {
        out.extend(option_values(args, &["-c", "--cmd"]));
        out.extend(args.iter().filter_map(|w| w.text.strip_prefix('+')));
    }
    match name {
        "gdb" | "cgdb" | "gdb-multiarch" => out.extend(option_values(
            args,
            &["-ex", "--ex", "-iex", "--iex", "--eval-command", "-eval-command", "--init-eval-command"],
        )),
        "sqlite3" | "sqlite" => {
            out.extend(option_values(args, &["-cmd", "--cmd"]));
            out.extend(
                operands(args, &["-cmd", "--cmd", "-separator", "-nullvalue", "-newline"])
                    .iter()
                    .skip(1)
                    .map(|w| w.text.as_str()),
            );
        }
        "mysql" | "mariadb" => out.extend(option_values(args, &["-e", "--execute"])),
        "psql" => out.extend(option_values(args, &["-c", "--command"])),
        "lftp" => out.extend(option_values(args, &["-c", "-e"])),
        "dc" => out.extend(option_values(args, &["-e", "--expression"])),
        "less" | "more" | "most" => out.extend(args.iter().filter_map(|w| w.text.strip_prefix('+'))),
        _ => {}
    }
    out
}

/// A tool that writes files named inside its own script language, with the paths it writes.
pub(crate) fn script_writes(cmd: &Command) -> Vec<String> {
    let args = cmd.args();
    match cmd.name() {
        "sed" | "gsed" => sed_scripts(args).iter().flat_map(|s| sed_script(s).writes).collect(),
        "sqlite3" | "sqlite" => command_arguments(cmd).iter().flat_map(|t| sqlite_writes(t)).collect(),
        _ => Vec::new(),
    }
}

/// The scripts a sed command runs: `-e` and `--expression` values, or its first operand.
pub(crate) fn sed_scripts(args: &[Word]) -> Vec<&str> {
    let given = option_values(args, &["-e", "--expression"]);
    if !given.is_empty() || args.iter().any(|w| w.text == "-f" || w.text.starts_with("--file")) {
        return given;
    }
    operands(args, &["-l", "--line-length"]).first().map(|w| vec![w.text.as_str()]).unwrap_or_default()
}

/// What a sed script does besides editing the stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SedEffects {
    /// Files named by `w`, `W` and the `w` flag of `s`.
    pub writes: Vec<String>,
    /// True when the script runs a command (`e`, or the `e` flag of `s`).
    pub runs: bool,
}

/// Reads a sed script command by command: addresses, then the command letter, then its
/// arguments. `w FILE` takes the rest of the line.
pub(crate) fn sed_script(script: &str) -> SedEffects {
    let mut effects = SedEffects::default();
    let chars: Vec<char> = script.chars().collect();
    let mut i = 0;
    let skip_delimited = |i: &mut usize, delim: char| {
        while *i < chars.len() && chars[*i] != delim {
            if chars[*i] == '\\' {
                *i += 1;
            }
            *i += 1;
        }
        *i += 1;
    };
    let rest_of_line = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && chars[*i] != '\n' {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>().trim().to_owned()
    };
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            ' ' | '\t' | '\n' | ';' | '{' | '}' | '!' | ',' | '$' | '~' | '+' => {}
            '0'..='9' => {}
            '/' => skip_delimited(&mut i, '/'),
            '\\' if i < chars.len() => {
                let delim = chars[i];
                i += 1;
                skip_delimited(&mut i, delim);
            }
            'w' | 'W' => effects.writes.push(rest_of_line(&mut i)),
            'e' => {
                effects.runs = true;
                rest_of_line(&mut i);
            }
            // Commands whose argument runs to the end of the line.
            'a' | 'i' | 'c' | 'r' | 'R' | ':' | '#' => {
                rest_of_line(&mut i);
            }
            // Branches take a label up to `;`.
            'b' | 't' | 'T' => {
                while i < chars.len() && !matches!(chars[i], ';' | '\n') {
                    i += 1;
                }
            }
            's' | 'y' if i < chars.len() => {
                let delim = chars[i];
                i += 1;
                skip_delimited(&mut i, delim);
                skip_delimited(&mut i, delim);
                if c == 'y' {
                    continue;
                }
                while i < chars.len() && !matches!(chars[i], ';' | '\n' | '}') {
                    match chars[i] {
                        'w' | 'W' => {
                            i += 1;
                            effects.writes.push(rest_of_line(&mut i));
                            break;
                        }
                        'e' => effects.runs = true,
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {}
        }
    }
    effects.writes.retain(|w| !w.is_empty() && w != "/dev/stdout" && w != "/dev/stderr");
    effects
}

/// Files an sqlite3 dot-command or SQL statement writes: `.output F`, `.once F`, `.save F`,
/// `.backup [DB] F`, `ATTACH 'F'`, `VACUUM INTO 'F'`.
fn sqlite_writes(text: &str) -> Vec<String> {
    let unquote = |t: &str| t.trim_matches(|c| c == '\'' || c == '"' || c == ';').to_owned();
    let mut out = Vec::new();
    for line in text.split(['\n', ';']) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = words.first().map(|w| w.to_ascii_lowercase()) else { continue };
        if [".output", ".once", ".save", ".backup", ".log"]
            .iter()
            .any(|d| d.starts_with(first.as_str()) && first.len() >= 4)
        {
            out.extend(words.iter().skip(1).rfind(|w| !w.starts_with('-')).map(|w| unquote(w)));
        }
        let lower: Vec<String> = words.iter().map(|w| w.to_ascii_lowercase()).collect();
        for (k, w) in lower.iter().enumerate() {
            if w == "attach" || (w == "into" && k > 0 && lower[k - 1] == "vacuum") {
                out.extend(words.iter().skip(k + 1).find(|w| w.starts_with(['\'', '"'])).map(|w| unquote(w)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ex_commands_that_run_code() {
        for line in [
            ":!sh",
            "!sh",
            ":sh",
            ":shell",
            "set shell=/bin/sh|shell",
            ":terminal",
            ":te",
            ":%!sh",
            "'<,'>!sort",
            ":silent !id",
            ":sil! !id",
            ":r !id",
            ":r!id",
            ":w !sh",
            ":py3 import os",
            ":python import pty",
            ":lua os.execute('id')",
            ":perl system('id')",
            ":ruby system('id')",
            ":exe '!id'",
            ":call system('id')",
            ":norm :!id",
        ] {
            assert!(ex_runs_code(line), "{line}");
        }
        for line in [":set nu", ":w", ":w!", ":wq", "42", ":q!", ":%s/a/b/g", ":e file", ":syntax on", ":set ft=sh"] {
            assert!(!ex_runs_code(line), "{line}");
        }
    }

    #[test]
    fn sed_scripts_are_read_command_by_command() {
        let writes = |s: &str| sed_script(s).writes;
        assert_eq!(writes("w /etc/x"), ["/etc/x"]);
        assert_eq!(writes("1w/etc/cron.d/x"), ["/etc/cron.d/x"]);
        assert_eq!(writes("s/a/b/w /etc/x"), ["/etc/x"]);
        assert_eq!(writes("/^x/!W /root/x"), ["/root/x"]);
        assert_eq!(writes("s/a/b/gw out.txt"), ["out.txt"]);
        assert!(writes("s/w/W/g").is_empty());
        assert!(writes("/w/d").is_empty());
        assert!(writes("1p").is_empty());
        assert!(writes("y/abc/xyz/").is_empty());
        assert!(sed_script("1e id").runs);
        assert!(sed_script("s/.*/id/e").runs);
        assert!(!sed_script("s/e/E/g").runs);
    }

    #[test]
    fn sqlite_dot_commands_that_write() {
        assert_eq!(sqlite_writes(".output /etc/x"), ["/etc/x"]);
        assert_eq!(sqlite_writes(".once -x /etc/x"), ["/etc/x"]);
        assert_eq!(sqlite_writes(".backup main '/etc/x'"), ["/etc/x"]);
        assert_eq!(sqlite_writes("ATTACH DATABASE '/etc/x' AS x; create table x.t(a)"), ["/etc/x"]);
        assert_eq!(sqlite_writes("vacuum into '/etc/x'"), ["/etc/x"]);
        assert!(sqlite_writes("select 1").is_empty());
    }
}
