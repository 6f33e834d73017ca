//! Tool rules in Claude Code's permission-rule syntax: `Tool` or `Tool(specifier)`.
//!
//! | rule | matches |
//! |---|---|
//! | `Bash(git push *)` | shell commands; `*` is any text, a trailing ` *` may match nothing |
//! | `Bash(npm run test:*)` | legacy prefix form, the same as `Bash(npm run test *)` |
//! | `Read(./src/**)`, `Edit(//etc/**)`, `Write(**/.env)` | paths, gitignore style (see [`crate::path`]) |
//! | `WebFetch(domain:docs.rs)` | fetches whose URL host matches the host pattern |
//! | `mcp__github`, `mcp__github__*`, `mcp__github__create_issue` | MCP tools |
//! | `Task(reviewer)` | sub-agents by type |
//!
//! `Read` rules apply to every tool that reads files (Read, Glob, Grep, LS, NotebookRead);
//! `Edit` and `Write` rules apply to every tool that changes files (Edit, MultiEdit, Write,
//! NotebookEdit). Unlike Claude Code, a `Write(path)` rule is honoured, never ignored.

use crate::host::HostPattern;
use crate::path::{Environment, PathPattern, PathSyntax};
use crate::suggest;

/// Tools that read files: `Read(...)` rules apply to all of them.
pub(crate) const READ_TOOLS: &[&str] = &["Read", "NotebookRead", "Glob", "Grep", "LS"];
/// Tools that change files: `Edit(...)` and `Write(...)` rules apply to all of them.
pub(crate) const WRITE_TOOLS: &[&str] = &["Edit", "MultiEdit", "Write", "NotebookEdit"];

const KNOWN_TOOLS: &[&str] = &[
    "Bash",
    "Read",
    "Edit",
    "MultiEdit",
    "Write",
    "NotebookEdit",
    "NotebookRead",
    "Glob",
    "Grep",
    "LS",
    "WebFetch",
    "WebSearch",
    "Task",
    "TodoWrite",
    "ExitPlanMode",
    "BashOutput",
    "KillShell",
    "SlashCommand",
    "bash",
    "shell",
    "read_file",
    "write_file",
    "edit_file",
    "list_dir",
    "web_fetch",
];

/// The name Portcullis files a tool under: its own tools and Codex's map onto Claude Code's.
pub fn canonical_tool(name: &str) -> &str {
    match name {
        "bash" | "shell" | "Shell" | "local_shell" => "Bash",
        "read_file" => "Read",
        "write_file" => "Write",
        "edit_file" | "apply_patch" => "Edit",
        "list_dir" => "LS",
        "web_fetch" => "WebFetch",
        other => other,
    }
}

/// How a canonical tool's input is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ToolKind {
    Shell,
    FileRead,
    FileWrite,
    Fetch,
    Task,
    Other,
}

pub(crate) fn kind_of(canonical: &str) -> ToolKind {
    match canonical {
        "Bash" => ToolKind::Shell,
        "WebFetch" => ToolKind::Fetch,
        "Task" => ToolKind::Task,
        n if READ_TOOLS.contains(&n) => ToolKind::FileRead,
        n if WRITE_TOOLS.contains(&n) => ToolKind::FileWrite,
        _ => ToolKind::Other,
    }
}

/// Which tools a rule is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// One canonical tool name (`Read` rules are filed under every read tool by the index).
    Tool(String),
    /// Every tool of one MCP server: `mcp__server` or `mcp__server__*`.
    McpServer(String),
}

/// What a rule's parenthesised part matches.
#[derive(Clone, Debug)]
pub(crate) enum Specifier {
    Any,
    Command(CommandPattern),
    Path(PathPattern),
    Domain(HostPattern),
    Name(String),
}

/// A parsed tool rule.
#[derive(Clone, Debug)]
pub(crate) struct ToolRule {
    pub(crate) target: Target,
    pub(crate) spec: Specifier,
}

/// A rule that could not be parsed, with a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RuleError {
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

fn rule_err(message: String, hint: Option<String>) -> RuleError {
    RuleError { message, hint }
}

impl ToolRule {
    pub(crate) fn parse(text: &str, env: &Environment) -> Result<Self, RuleError> {
        let text = text.trim();
        let (name, spec) = match text.find('(') {
            Some(open) => {
                let Some(inner) = text[open + 1..].strip_suffix(')') else {
                    return Err(rule_err(
                        format!("`{text}` has no closing `)`"),
                        Some("write `Tool(specifier)`".into()),
                    ));
                };
                (&text[..open], Some(inner))
            }
            None => (text, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*') {
            return Err(rule_err(
                format!("`{name}` is not a tool name"),
                Some("write `Tool` or `Tool(specifier)`, such as `Bash(git status)`".into()),
            ));
        }
        if let Some(server) = name.strip_prefix("mcp__") {
            return parse_mcp(name, server, spec);
        }
        if name.contains('*') {
            return Err(rule_err(
                format!("`{name}` has a wildcard in a tool name"),
                Some("only MCP rules take a wildcard: `mcp__server__*`".into()),
            ));
        }
        if !KNOWN_TOOLS.contains(&name)
            && let Some(near) = suggest::closest(name, KNOWN_TOOLS.iter().copied())
        {
            return Err(rule_err(format!("unknown tool `{name}`"), Some(format!("did you mean `{near}`?"))));
        }
        let canonical = canonical_tool(name).to_owned();
        let spec = match spec {
            None => Specifier::Any,
            Some(s) => parse_specifier(&canonical, s, env)?,
        };
        Ok(ToolRule { target: Target::Tool(canonical), spec })
    }

    /// The canonical tool names this rule is filed under (empty for MCP server rules).
    pub(crate) fn tool_names(&self) -> Vec<&str> {
        match &self.target {
            Target::McpServer(_) => Vec::new(),
            Target::Tool(name) => match name.as_str() {
                "Read" => READ_TOOLS.to_vec(),
                "Edit" | "Write" => WRITE_TOOLS.to_vec(),
                other => vec![other],
            },
        }
    }
}

fn parse_mcp(name: &str, server: &str, spec: Option<&str>) -> Result<ToolRule, RuleError> {
    if spec.is_some() {
        return Err(rule_err(format!("`{name}` takes no specifier"), Some("MCP rules name tools only".into())));
    }
    let (server, tool) = match server.split_once("__") {
        Some((s, t)) => (s, Some(t)),
        None => (server, None),
    };
    if server.is_empty() || server.contains('*') || tool.is_some_and(|t| t.is_empty() || (t.contains('*') && t != "*"))
    {
        return Err(rule_err(
            format!("`{name}` is not an MCP rule"),
            Some("write `mcp__server`, `mcp__server__*` or `mcp__server__tool`".into()),
        ));
    }
    Ok(match tool {
        None | Some("*") => ToolRule { target: Target::McpServer(server.to_owned()), spec: Specifier::Any },
        Some(_) => ToolRule { target: Target::Tool(name.to_owned()), spec: Specifier::Any },
    })
}

fn parse_specifier(canonical: &str, spec: &str, env: &Environment) -> Result<Specifier, RuleError> {
    if spec.trim().is_empty() {
        return Err(rule_err(
            format!("`{canonical}()` has an empty specifier"),
            Some(format!("write `{canonical}` to match every use")),
        ));
    }
    Ok(match kind_of(canonical) {
        ToolKind::Shell => Specifier::Command(CommandPattern::parse(spec)),
        ToolKind::FileRead | ToolKind::FileWrite => {
            Specifier::Path(PathPattern::compile(spec, PathSyntax::ClaudeRule, env).map_err(|m| rule_err(m, None))?)
        }
        ToolKind::Fetch => {
            let Some(domain) = spec.strip_prefix("domain:") else {
                return Err(rule_err(
                    format!("`{canonical}({spec})` is not a fetch rule"),
                    Some("write `WebFetch(domain:example.com)`".into()),
                ));
            };
            let pattern = HostPattern::parse(domain).map_err(|e| rule_err(e.message, e.hint))?;
            Specifier::Domain(pattern)
        }
        ToolKind::Task => Specifier::Name(spec.to_owned()),
        ToolKind::Other => {
            return Err(rule_err(format!("`{canonical}` takes no specifier"), Some(format!("write `{canonical}`"))));
        }
    })
}

/// A shell command pattern: `*` is any text; a trailing ` *` may also match nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommandPattern {
    glob: String,
    /// With a trailing ` *`, the length of the part before it, which matches on its own too.
    bare_len: Option<usize>,
    /// The command name's basename when the first word is literal: the index key.
    pub(crate) key: Option<String>,
}

impl CommandPattern {
    pub(crate) fn parse(spec: &str) -> Self {
        let collapsed = spec.split_whitespace().collect::<Vec<_>>().join(" ");
        let glob = match collapsed.strip_suffix(":*") {
            Some(prefix) => format!("{prefix} *"),
            None => collapsed,
        };
        let bare_len = glob.strip_suffix(" *").map(str::len);
        let first = glob.split(' ').next().unwrap_or_default();
        let key =
            (!first.contains('*') && !first.is_empty()).then(|| first.rsplit('/').next().unwrap_or(first).to_owned());
        CommandPattern { glob, bare_len, key }
    }

    /// The pattern after normalisation (`:*` rewritten to ` *`).
    pub(crate) fn source(&self) -> &str {
        &self.glob
    }

    pub(crate) fn matches(&self, command: &str) -> bool {
        wildcard(self.glob.as_bytes(), command.as_bytes()) || self.bare_len.is_some_and(|n| command == &self.glob[..n])
    }
}

/// `*` matches any run of bytes (spaces included); everything else matches itself.
pub(crate) fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    crate::wildcard::matches(pattern, text, b'*', None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::new("/w", "/h").unwrap()
    }

    #[test]
    fn command_patterns() {
        let p = CommandPattern::parse("git push *");
        assert!(p.matches("git push origin main"));
        assert!(p.matches("git push"));
        assert!(!p.matches("git pushx"));
        assert!(!p.matches("git status"));
        assert_eq!(p.key.as_deref(), Some("git"));
        let legacy = CommandPattern::parse("npm run test:*");
        assert!(legacy.matches("npm run test"));
        assert!(legacy.matches("npm run test --watch"));
        assert!(!legacy.matches("npm run testing"));
        let exact = CommandPattern::parse("npm  run build");
        assert!(exact.matches("npm run build"));
        assert!(!exact.matches("npm run build --prod"));
        assert_eq!(CommandPattern::parse("* install").key, None);
        assert!(CommandPattern::parse("ls*").matches("lsof"));
    }

    #[test]
    fn rules_parse_and_file_under_families() {
        let r = ToolRule::parse("Read(./src/**)", &env()).unwrap();
        assert_eq!(r.tool_names(), READ_TOOLS);
        let w = ToolRule::parse("Write(**/.env)", &env()).unwrap();
        assert_eq!(w.tool_names(), WRITE_TOOLS);
        assert!(matches!(ToolRule::parse("mcp__github", &env()).unwrap().target, Target::McpServer(_)));
        assert!(matches!(ToolRule::parse("mcp__github__*", &env()).unwrap().target, Target::McpServer(_)));
        assert!(matches!(ToolRule::parse("web_fetch(domain:docs.rs)", &env()).unwrap().spec, Specifier::Domain(_)));
    }

    #[test]
    fn typos_and_bad_rules_are_errors() {
        let e = ToolRule::parse("Bassh(ls)", &env()).unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean `Bash`?"));
        for bad in ["Bash(", "Bash()", "WebFetch(docs.rs)", "TodoWrite(x)", "mcp__", "mcp__a__b*c", "Ba sh", "Re*d"] {
            assert!(ToolRule::parse(bad, &env()).is_err(), "{bad}");
        }
        assert!(ToolRule::parse("MyCustomTool", &env()).is_ok());
    }
}
