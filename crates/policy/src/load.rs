//! Two-phase policy loading: read the TOML into a checked shape, then compile rules.
//!
//! Phase one walks the document by hand rather than through `serde`, so that *every* problem
//! (unknown keys, wrong types, bad units, bad patterns, failing examples) is reported at once,
//! each with its line and column and, where possible, a hint.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::decision::{Decision, Location, Origin, Rule};
use crate::host::{self, Cidr, HostPattern};
use crate::path::{Environment, PathPattern, PathSyntax};
use crate::profile::{BuiltinRules, FsKind, NOT_STATIC_ID, Profile, RuleSet};
use crate::settings::*;
use crate::shell;
use crate::suggest;
use crate::tool::{self, Specifier, Target, ToolRule};
use crate::units::{self, ByteSize, Rate};

/// Credential locations hidden in every profile, whatever the policy says.
pub const BUILTIN_HIDDEN: &[&str] = &[
    // OpenSSH: private keys, agent and client config (ssh(1)).
    "~/.ssh",
    // AWS CLI and SDKs: credentials, config, SSO token cache (AWS CLI user guide, "Configuration
    // and credential file settings").
    "~/.aws",
    // Azure CLI: access tokens and service principal secrets (az, `~/.azure/msal_token_cache.json`).
    "~/.azure",
    // Google Cloud SDK: credentials database and application default credentials (gcloud).
    "~/.config/gcloud",
    // Kubernetes: kubeconfig with bearer tokens and client keys (kubectl).
    "~/.kube",
    // Docker: registry auths in `config.json` (docker login).
    "~/.docker",
    // Podman, Buildah, Skopeo: registry auths (containers-auth.json(5)).
    "~/.config/containers/auth.json",
    // Helm: registry logins and repository passwords (`helm registry login`, `helm repo add`).
    "~/.config/helm",
    // npm and yarn: registry tokens (`//registry.npmjs.org/:_authToken`, `npmAuthToken`).
    "~/.npmrc",
    "~/.yarnrc.yml",
    // PyPI upload tokens (twine), and pip indexes with passwords in their URLs (pip config).
    "~/.pypirc",
    "~/.pip/pip.conf",
    "~/.config/pip/pip.conf",
    // Hugging Face access token (huggingface_hub: `HF_HOME/token`, and the older location).
    "~/.cache/huggingface/token",
    "~/.huggingface/token",
    // cargo: crates.io tokens (The Cargo Book, "Credentials").
    "~/.cargo/credentials.toml",
    "~/.cargo/credentials",
    // Terraform: Terraform Cloud and registry tokens (`terraform login`; CLI config file).
    "~/.terraform.d/credentials.tfrc.json",
    "~/.terraformrc",
    // Maven and Gradle: repository passwords (settings.xml, settings-security.xml, gradle.properties).
    "~/.m2/settings.xml",
    "~/.m2/settings-security.xml",
    "~/.gradle/gradle.properties",
    // HashiCorp Vault: the token `vault login` writes.
    "~/.vault-token",
    // boto and gsutil, s3cmd: cloud storage keys.
    "~/.boto",
    "~/.s3cfg",
    // Oracle Cloud CLI: API signing keys and config.
    "~/.oci",
    // DigitalOcean (doctl), Fly.io (flyctl): API tokens.
    "~/.config/doctl",
    "~/.fly",
    // rclone: remotes with passwords and tokens.
    "~/.config/rclone",
    // Database clients: PostgreSQL's password file, MySQL's client config.
    "~/.pgpass",
    "~/.my.cnf",
    // curl, git, ftp: machine passwords; git's credential store (both locations).
    "~/.netrc",
    "~/.git-credentials",
    "~/.config/git/credentials",
    // GitHub CLI and hub: OAuth tokens (`hosts.yml`, `~/.config/hub`).
    "~/.config/gh",
    "~/.config/hub",
    // GitHub Copilot: OAuth tokens of the editor plugins and CLI.
    "~/.config/github-copilot",
    // GnuPG private keys; pass, the password store built on it.
    "~/.gnupg",
    "~/.password-store",
    // 1Password CLI and app: session and account data.
    "~/.config/op",
    "~/.op",
    "~/.config/1Password",
    // Desktop keyrings: GNOME Keyring and KDE Wallet.
    "~/.local/share/keyrings",
    "~/.local/share/kwalletd",
    "~/.kde/share/apps/kwallet",
    // Browser profiles: cookies, saved passwords, session tokens.
    "~/.mozilla",
    "~/.config/google-chrome",
    "~/.config/chromium",
    "~/.config/BraveSoftware",
    // Agent CLIs' own credentials: Claude Code, Codex, Gemini CLI.
    "~/.claude/.credentials.json",
    "~/.codex/auth.json",
    "~/.gemini/oauth_creds.json",
    // Portcullis itself: its config and state (the audit store and its key).
    "~/.config/portcullis",
    "~/.local/state/portcullis",
];

/// Environment variables that change how programs load or start (dynamic linker, shell and
/// interpreter start-up). They are never passed into a sandbox, whatever the policy says.
pub const NEVER_PASSED_ENV: &[&str] = &[
    "LD_*",
    "DYLD_*",
    "BASH_ENV",
    "ENV",
    "BASH_FUNC_*",
    "PROMPT_COMMAND",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "RUBYLIB",
    "NODE_OPTIONS",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "GCONV_PATH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "MALLOC_*",
    "GLIBC_TUNABLES",
];

/// True when environment variable `name` matches `pattern` (an exact name, or a prefix ending
/// in `*`).
/// Variables `run` sets in the sandbox itself, whatever the policy passes: its proxy, and
/// the session's own home, directories and identity. A `pass` entry naming one has no effect.
pub const RUN_SETS_ENV: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "npm_config_proxy",
    "npm_config_https_proxy",
    "HOME",
    "PWD",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "PORTCULLIS_SESSION",
];

pub fn env_name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn env_pattern_problem(pattern: &str) -> Option<(String, &'static str)> {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Some((
            format!("`{pattern}` is not an environment variable name"),
            "use letters, digits and `_`, with an optional `*` at the end",
        ));
    }
    if let Some(never) = NEVER_PASSED_ENV.iter().find(|n| env_name_matches(n, name) || env_name_matches(pattern, n)) {
        return Some((
            format!("`{pattern}` would pass `{never}`, which is never passed into the sandbox"),
            "these variables change how programs load; set what the agent needs in its own start-up instead",
        ));
    }
    None
}

/// One problem in a policy file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// What is wrong, lower-case, with user input in backticks.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Where it is.
    #[serde(flatten)]
    pub location: Location,
    /// The line it is on.
    #[serde(skip)]
    pub line_text: String,
    /// How many characters the caret underline covers.
    #[serde(skip)]
    pub width: usize,
}

/// Every problem found in a policy file. Its `Display` is the report a person reads.
#[derive(Clone, Debug, thiserror::Error)]
pub struct LoadErrors {
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {}", p.message)?;
            writeln!(f, "  --> {}", p.location)?;
            let number = p.location.line.to_string();
            let pad = " ".repeat(number.len());
            writeln!(f, "{pad} |")?;
            writeln!(f, "{number} | {}", p.line_text)?;
            let indent = " ".repeat(p.location.column.saturating_sub(1) as usize);
            write!(f, "{pad} | {indent}{}", "^".repeat(p.width.max(1)))?;
            if let Some(hint) = &p.hint {
                write!(f, "\n{pad} = hint: {hint}")?;
            }
        }
        Ok(())
    }
}

type Node<'s> = Spanned<DeValue<'s>>;
type Span = Range<usize>;

/// A rule entry as written: `"text"` or `{ rule = "text", match = [..], not_match = [..], note = ".." }`.
#[derive(Clone, Debug)]
struct Entry {
    id: String,
    text: String,
    span: Span,
    matches: Vec<(String, Span)>,
    not_matches: Vec<(String, Span)>,
    note: Option<String>,
}

/// One profile's settings as written; `None` where the file is silent.
#[derive(Clone, Debug, Default)]
struct Raw {
    net_allow: Option<Vec<Entry>>,
    net_deny: Option<Vec<Entry>>,
    allow_cidrs: Option<Vec<Cidr>>,
    outbound_bytes: Option<ByteSize>,
    local_ports: Option<Vec<u16>>,
    dns_strict: Option<bool>,
    dns_label_len: Option<u32>,
    dns_entropy: Option<f64>,
    dns_subdomains: Option<u32>,
    writable: Option<Vec<Entry>>,
    read_only: Option<Vec<Entry>>,
    hidden: Option<Vec<Entry>>,
    ephemeral: Option<bool>,
    // `Some(None)`: set to "unlimited"; `None`: not set (the built-in default applies).
    wall_clock: Option<Option<Duration>>,
    tool_calls: Option<u64>,
    execs: Option<u64>,
    memory: Option<Option<ByteSize>>,
    processes: Option<Option<u64>>,
    disk: Option<Option<ByteSize>>,
    tokens: Option<u64>,
    usd: Option<f64>,
    tools_allow: Option<Vec<Entry>>,
    tools_ask: Option<Vec<Entry>>,
    tools_deny: Option<Vec<Entry>>,
    rate: Option<BTreeMap<String, Rate>>,
    tools_default: Option<Decision>,
    exec_default: Option<Decision>,
    env_pass: Option<Vec<String>>,
}

fn extend(parent: &Option<Vec<Entry>>, child: Option<Vec<Entry>>) -> Option<Vec<Entry>> {
    match (parent, child) {
        (None, c) => c,
        (Some(p), None) => Some(p.clone()),
        (Some(p), Some(c)) => Some(p.iter().cloned().chain(c).collect()),
    }
}

impl Raw {
    /// An agent profile: permissive lists and scalars replace the parent's; restrictive lists
    /// (`deny`, `ask`, `hidden`, `read_only`) add to them, so a profile never drops a restriction.
    fn inherit(&self, child: Raw) -> Raw {
        let p = self.clone();
        let mut rate = p.rate.clone().unwrap_or_default();
        rate.extend(child.rate.clone().unwrap_or_default());
        Raw {
            net_allow: child.net_allow.or(p.net_allow),
            net_deny: extend(&p.net_deny, child.net_deny),
            allow_cidrs: child.allow_cidrs.or(p.allow_cidrs),
            outbound_bytes: child.outbound_bytes.or(p.outbound_bytes),
            local_ports: child.local_ports.or(p.local_ports),
            dns_strict: child.dns_strict.or(p.dns_strict),
            dns_label_len: child.dns_label_len.or(p.dns_label_len),
            dns_entropy: child.dns_entropy.or(p.dns_entropy),
            dns_subdomains: child.dns_subdomains.or(p.dns_subdomains),
            writable: child.writable.or(p.writable),
            read_only: extend(&p.read_only, child.read_only),
            hidden: extend(&p.hidden, child.hidden),
            ephemeral: child.ephemeral.or(p.ephemeral),
            wall_clock: child.wall_clock.or(p.wall_clock),
            tool_calls: child.tool_calls.or(p.tool_calls),
            execs: child.execs.or(p.execs),
            memory: child.memory.or(p.memory),
            processes: child.processes.or(p.processes),
            disk: child.disk.or(p.disk),
            tokens: child.tokens.or(p.tokens),
            usd: child.usd.or(p.usd),
            tools_allow: child.tools_allow.or(p.tools_allow),
            tools_ask: extend(&p.tools_ask, child.tools_ask),
            tools_deny: extend(&p.tools_deny, child.tools_deny),
            rate: Some(rate),
            tools_default: child.tools_default.or(p.tools_default),
            exec_default: child.exec_default.or(p.exec_default),
            env_pass: child.env_pass.or(p.env_pass),
        }
    }
}

/// Everything a policy file holds, compiled.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) root: Profile,
    pub(crate) agents: BTreeMap<String, Profile>,
    pub(crate) hooks: Hooks,
    pub(crate) audit: AuditSettings,
    pub(crate) alerts: AlertSettings,
    pub(crate) guards: GuardSwitches,
}

struct Loader<'s> {
    src: &'s str,
    file: Arc<str>,
    env: &'s Environment,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

const TOP_KEYS: &[&str] = &[
    "version",
    "network",
    "filesystem",
    "limits",
    "environment",
    "tools",
    "agents",
    "guards",
    "hooks",
    "audit",
    "alerts",
];
const AGENT_KEYS: &[&str] = &["description", "network", "filesystem", "limits", "environment", "tools"];
const ENV_KEYS: &[&str] = &["pass"];
const NETWORK_KEYS: &[&str] = &["allow", "deny", "allow_cidrs", "outbound_bytes", "local_ports", "dns"];
const DNS_KEYS: &[&str] = &["strict", "max_label_length", "max_label_entropy", "max_unique_subdomains"];
const FS_KEYS: &[&str] = &["writable", "read_only", "hidden", "ephemeral"];
/// The limits a policy that sets none gets: a session ends, not the host.
pub(crate) const DEFAULT_WALL_CLOCK: Duration = Duration::from_secs(2 * 3600);
/// Processes and threads in a session's tree.
pub(crate) const DEFAULT_PROCESSES: u64 = 4096;
/// Disk a session may write (its overlay; `/tmp` gets half).
pub(crate) const DEFAULT_DISK: u64 = 2 << 30;
/// Memory: 4 GiB, or half the host's, whichever is smaller.
pub(crate) const DEFAULT_MEMORY_CAP: u64 = 4 << 30;

/// The default memory limit on this host: [`DEFAULT_MEMORY_CAP`] or half of `MemTotal`,
/// whichever is smaller.
pub(crate) fn default_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib.saturating_mul(1024))
    });
    total.map_or(DEFAULT_MEMORY_CAP, |t| (t / 2).min(DEFAULT_MEMORY_CAP))
}

const LIMIT_KEYS: &[&str] = &["wall_clock", "tool_calls", "execs", "memory", "processes", "disk", "tokens", "usd"];
const TOOL_KEYS: &[&str] = &["allow", "ask", "deny", "rate", "default", "exec_default"];
const HOOK_EVENTS: &[&str] = &["pre_tool_use", "post_tool_use", "user_prompt_submit"];
const HOOK_KEYS: &[&str] = &["matcher", "command", "timeout", "on_error"];
const AUDIT_KEYS: &[&str] =
    &["retention", "dir", "durability", "min_free", "session_records_per_second", "session_bytes"];
/// Characters that mean something to a shell, refused in a program's string form.
/// (`~/` is not among them: Portcullis expands it at the start of the program's path.)
const SHELL_SYNTAX: &str = "|&;<>()$`\\\"'*?[]{}!#";
const ALERT_KEYS: &[&str] = &["command", "working_hours", "repeated_denials"];
const ENTRY_KEYS: &[&str] = &["rule", "match", "not_match", "note"];

/// Parses and compiles a policy. `file` names the source in messages.
pub(crate) fn load(src: &str, file: &str, env: &Environment) -> Result<Loaded, LoadErrors> {
    let mut loader = Loader {
        src,
        file: Arc::from(file),
        env,
        line_starts: std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect(),
        problems: Vec::new(),
    };
    let (doc, syntax) = DeTable::parse_recoverable(src);
    for e in syntax {
        let span = e.span().unwrap_or(0..0);
        loader.problem(span, format!("invalid TOML: {}", e.message().trim_end_matches('\n')), None);
    }
    let loaded = loader.document(doc.get_ref());
    loader.problems.sort_by_key(|p| (p.location.line, p.location.column));
    loader.problems.dedup();
    if loader.problems.is_empty() { Ok(loaded) } else { Err(LoadErrors { problems: loader.problems }) }
}

impl<'s> Loader<'s> {
    fn location(&self, offset: usize) -> (u32, u32, &'s str) {
        let line = self.line_starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let start = self.line_starts[line];
        let end = self.src[start..].find('\n').map_or(self.src.len(), |i| start + i);
        let offset = offset.min(end);
        let column = self.src.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        (to_u32(line + 1), to_u32(column), self.src.get(start..end).unwrap_or_default().trim_end_matches('\r'))
    }

    fn loc(&self, span: &Span) -> Location {
        let (line, column, _) = self.location(span.start);
        Location { file: self.file.clone(), line, column }
    }

    fn problem(&mut self, span: Span, message: String, hint: Option<String>) {
        let (line, column, text) = self.location(span.start);
        let width = self.src.get(span.clone()).map_or(1, |s| s.lines().next().unwrap_or_default().chars().count());
        self.problems.push(Problem {
            message,
            hint,
            location: Location { file: self.file.clone(), line, column },
            line_text: text.to_owned(),
            width,
        });
    }

    /// Reports keys not in `allowed`, with a suggestion when one is close.
    fn check_keys(&mut self, table: &DeTable<'_>, path: &str, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                let name = key.get_ref();
                let hint = match suggest::closest(name, allowed.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!(
                        "the keys here are {}",
                        allowed.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                let place = if path.is_empty() { "at the top level".to_owned() } else { format!("in `[{path}]`") };
                self.problem(key.span(), format!("unknown key `{name}` {place}"), Some(hint));
            }
        }
    }

    fn expect_table<'n>(&mut self, node: &'n Node<'s>, path: &str) -> Option<&'n DeTable<'s>> {
        match node.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.problem(node.span(), format!("`{path}` must be a table, not {}", other.type_str()), None);
                None
            }
        }
    }

    /// Reads `table[key]` with `read`, naming it `path.key` in messages.
    fn field<T>(
        &mut self,
        table: &DeTable<'s>,
        path: &str,
        key: &str,
        read: fn(&mut Self, &Node<'s>, &str) -> Option<T>,
    ) -> Option<T> {
        let node = table.get(key)?;
        read(self, node, &format!("{path}.{key}"))
    }

    fn rule_list(&mut self, node: &Node<'s>, id: &str) -> Option<Vec<Entry>> {
        Some(self.entries(node, id))
    }

    fn string(&mut self, node: &Node<'s>, path: &str) -> Option<String> {
        match node.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                self.problem(node.span(), format!("`{path}` must be a string, not {}", other.type_str()), None);
                None
            }
        }
    }

    /// A program Portcullis runs on the host: a string of words split on whitespace, or an array
    /// of strings (for arguments with spaces). It is run without a shell, so a string with shell
    /// syntax is refused rather than run in a way its author did not mean.
    fn program(&mut self, node: &Node<'s>, path: &str) -> Option<Vec<String>> {
        let argv: Vec<String> = match node.get_ref() {
            DeValue::String(s) => {
                if let Some(c) = s.chars().find(|c| SHELL_SYNTAX.contains(*c)) {
                    self.problem(
                        node.span(),
                        format!("`{path}` is run without a shell, so it cannot hold `{c}`"),
                        Some("name a program and its arguments, or write an array: `[\"prog\", \"an arg\"]`".into()),
                    );
                    return None;
                }
                s.split_whitespace().map(str::to_owned).collect()
            }
            DeValue::Array(_) => self.strings(node, path).into_iter().map(|(s, _)| s).collect(),
            other => {
                self.problem(
                    node.span(),
                    format!("`{path}` must be a string or an array of strings, not {}", other.type_str()),
                    None,
                );
                return None;
            }
        };
        if argv.first().is_none_or(String::is_empty) {
            self.problem(node.span(), format!("`{path}` names no program"), None);
            return None;
        }
        Some(argv)
    }

    fn boolean(&mut self, node: &Node<'s>, path: &str) -> Option<bool> {
        match node.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                self.problem(
                    node.span(),
                    format!("`{path}` must be `true` or `false`, not {}", other.type_str()),
                    None,
                );
                None
            }
        }
    }

    /// A limit: `"unlimited"` (`Some(None)`), or what `read` reads.
    fn or_unlimited<T>(
        &mut self,
        node: &Node<'s>,
        path: &str,
        read: fn(&mut Self, &Node<'s>, &str) -> Option<T>,
    ) -> Option<Option<T>> {
        if let DeValue::String(s) = node.get_ref()
            && s.trim().eq_ignore_ascii_case("unlimited")
        {
            return Some(None);
        }
        read(self, node, path).map(Some)
    }

    fn integer(&mut self, node: &Node<'s>, path: &str) -> Option<u64> {
        if let DeValue::Integer(i) = node.get_ref() {
            let digits = i.as_str().replace('_', "");
            let digits = digits.trim_start_matches('+');
            let digits = ["0x", "0o", "0b"].iter().fold(digits, |d, p| d.strip_prefix(p).unwrap_or(d));
            if let Ok(n) = u64::from_str_radix(digits, i.radix()) {
                return Some(n);
            }
        }
        self.problem(node.span(), format!("`{path}` must be a whole number of zero or more"), None);
        None
    }

    /// An array of TCP port numbers (1–65535).
    fn ports(&mut self, node: &Node<'s>, path: &str) -> Option<Vec<u16>> {
        let DeValue::Array(items) = node.get_ref() else {
            self.problem(node.span(), format!("`{path}` must be an array of port numbers"), None);
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match self.integer(item, &item_path).map(u16::try_from) {
                Some(Ok(port)) if port > 0 => out.push(port),
                Some(_) => self.problem(item.span(), format!("`{item_path}` is not a port (1–65535)"), None),
                None => {}
            }
        }
        Some(out)
    }

    fn small_integer(&mut self, node: &Node<'s>, path: &str) -> Option<u32> {
        let n = self.integer(node, path)?;
        u32::try_from(n).ok().or_else(|| {
            self.problem(node.span(), format!("`{path}` is too large"), None);
            None
        })
    }

    fn float(&mut self, node: &Node<'s>, path: &str) -> Option<f64> {
        let value = match node.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(_) => self.integer(node, path).map(|n| n as f64),
            _ => None,
        };
        match value {
            Some(v) if v.is_finite() && v >= 0.0 => Some(v),
            _ => {
                self.problem(node.span(), format!("`{path}` must be a number of zero or more"), None);
                None
            }
        }
    }

    fn unit<T>(
        &mut self,
        node: &Node<'s>,
        path: &str,
        example: &str,
        parse: impl Fn(&str) -> Result<T, units::UnitError>,
    ) -> Option<T> {
        let text = match node.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.as_str().replace('_', ""),
            other => {
                self.problem(
                    node.span(),
                    format!("`{path}` must be a string such as \"{example}\", not {}", other.type_str()),
                    None,
                );
                return None;
            }
        };
        match parse(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(node.span(), format!("`{path}`: {}", e.message), Some(e.hint.to_owned()));
                None
            }
        }
    }

    fn size(&mut self, node: &Node<'s>, path: &str) -> Option<ByteSize> {
        self.unit(node, path, "4 GiB", ByteSize::parse)
    }

    fn duration(&mut self, node: &Node<'s>, path: &str) -> Option<Duration> {
        self.unit(node, path, "2h", units::parse_duration)
    }

    fn decision(&mut self, node: &Node<'s>, path: &str) -> Option<Decision> {
        let text = self.string(node, path)?;
        match text.parse::<Decision>() {
            Ok(d) => Some(d),
            Err(_) => {
                let hint = suggest::closest(&text, ["allow", "ask", "deny"]).map(|n| format!("did you mean `{n}`?"));
                self.problem(node.span(), format!("`{path}` must be `allow`, `ask` or `deny`, not `{text}`"), hint);
                None
            }
        }
    }

    fn strings(&mut self, node: &Node<'s>, path: &str) -> Vec<(String, Span)> {
        let DeValue::Array(items) = node.get_ref() else {
            self.problem(node.span(), format!("`{path}` must be an array of strings"), None);
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = self.string(item, &format!("{path}[{i}]")) {
                out.push((s, item.span()));
            }
        }
        out
    }

    /// A list of rule entries; `id` is the list's path (`tools.deny`).
    fn entries(&mut self, node: &Node<'s>, id: &str) -> Vec<Entry> {
        let DeValue::Array(items) = node.get_ref() else {
            self.problem(
                node.span(),
                format!("`{id}` must be an array"),
                Some(format!("write `{} = [\"…\"]`", id.rsplit('.').next().unwrap_or(id))),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let entry_id = format!("{id}[{i}]");
            match item.get_ref() {
                DeValue::String(s) => out.push(Entry {
                    id: entry_id,
                    text: s.to_string(),
                    span: item.span(),
                    matches: Vec::new(),
                    not_matches: Vec::new(),
                    note: None,
                }),
                DeValue::Table(t) => {
                    self.check_keys(t, &entry_id, ENTRY_KEYS);
                    let Some(rule) = t.get("rule") else {
                        self.problem(
                            item.span(),
                            format!("`{entry_id}` has no `rule`"),
                            Some("write `{ rule = \"…\", match = [\"…\"] }`".into()),
                        );
                        continue;
                    };
                    let Some(text) = self.string(rule, &format!("{entry_id}.rule")) else {
                        continue;
                    };
                    let matches =
                        t.get("match").map(|n| self.strings(n, &format!("{entry_id}.match"))).unwrap_or_default();
                    let not_matches = t
                        .get("not_match")
                        .map(|n| self.strings(n, &format!("{entry_id}.not_match")))
                        .unwrap_or_default();
                    let note = t.get("note").and_then(|n| self.string(n, &format!("{entry_id}.note")));
                    out.push(Entry { id: entry_id, text, span: rule.span(), matches, not_matches, note });
                }
                other => self.problem(
                    item.span(),
                    format!("`{entry_id}` must be a string or a table, not {}", other.type_str()),
                    None,
                ),
            }
        }
        out
    }

    fn document(&mut self, doc: &DeTable<'s>) -> Loaded {
        self.check_keys(doc, "", TOP_KEYS);
        if let Some(v) = doc.get("version")
            && self.integer(v, "version").is_some_and(|n| n != 1)
        {
            self.problem(v.span(), "this Portcullis reads policy `version = 1` only".into(), None);
        }
        let top = self.section(doc, "");
        let builtin_hidden: Vec<Entry> = BUILTIN_HIDDEN
            .iter()
            .enumerate()
            .map(|(i, p)| Entry {
                id: format!("builtin.hidden[{i}]"),
                text: (*p).to_owned(),
                span: 0..0,
                matches: Vec::new(),
                not_matches: Vec::new(),
                note: Some("credentials are never visible to an agent".into()),
            })
            .collect();
        let root = self.compile(None, &top, &builtin_hidden);
        let mut agents = BTreeMap::new();
        if let Some(node) = doc.get("agents")
            && let Some(table) = self.expect_table(node, "agents")
        {
            for (name, value) in table.iter() {
                let name_str = name.get_ref().to_string();
                if !valid_agent_name(&name_str) {
                    self.problem(
                        name.span(),
                        format!("`{name_str}` is not an agent name"),
                        Some("use letters, digits, `-` and `_`".into()),
                    );
                    continue;
                }
                let path = format!("agents.{name_str}");
                let Some(agent) = self.expect_table(value, &path) else {
                    continue;
                };
                self.check_keys(agent, &path, AGENT_KEYS);
                if let Some(d) = agent.get("description") {
                    self.string(d, &format!("{path}.description"));
                }
                let own = self.section(agent, &path);
                let merged = top.inherit(own);
                agents.insert(name_str.clone(), self.compile(Some(name_str), &merged, &builtin_hidden));
            }
        }
        Loaded {
            root,
            agents,
            hooks: doc.get("hooks").map(|n| self.hooks(n)).unwrap_or_default(),
            audit: self.audit(doc.get("audit")),
            alerts: self.alerts(doc.get("alerts")),
            guards: self.guards(doc.get("guards")),
        }
    }

    /// `[guards]`: each built-in guard set to `off`, `allow`, `ask` or `deny`.
    fn guards(&mut self, node: Option<&Node<'s>>) -> GuardSwitches {
        let mut guards = GuardSwitches::default();
        let Some(t) = node.and_then(|n| self.expect_table(n, "guards")) else {
            return guards;
        };
        self.check_keys(t, "guards", GUARD_SWITCHES);
        for (key, value) in t.iter() {
            let key = key.get_ref().to_string();
            if !GUARD_SWITCHES.contains(&key.as_str()) {
                continue;
            }
            let path = format!("guards.{key}");
            let Some(text) = self.string(value, &path) else { continue };
            let setting = match text.as_str() {
                "off" => None,
                other => match other.parse::<Decision>() {
                    Ok(d) => Some(d),
                    Err(_) => {
                        let hint = suggest::closest(other, ["off", "allow", "ask", "deny"])
                            .map(|n| format!("did you mean `{n}`?"));
                        self.problem(
                            value.span(),
                            format!("`{path}` must be `off`, `allow`, `ask` or `deny`, not `{other}`"),
                            hint,
                        );
                        continue;
                    }
                },
            };
            guards.switches.insert(key, setting);
        }
        guards
    }

    /// Reads the `network`, `filesystem`, `limits` and `tools` tables under `prefix`.
    fn section(&mut self, table: &DeTable<'s>, prefix: &str) -> Raw {
        let p = |key: &str| {
            if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
        };
        let mut raw = Raw::default();
        if let Some(node) = table.get("network") {
            let path = p("network");
            if let Some(t) = self.expect_table(node, &path) {
                self.check_keys(t, &path, NETWORK_KEYS);
                raw.net_allow = self.field(t, &path, "allow", Self::rule_list);
                raw.net_deny = self.field(t, &path, "deny", Self::rule_list);
                raw.allow_cidrs = t.get("allow_cidrs").map(|n| {
                    let list = self.strings(n, &format!("{path}.allow_cidrs"));
                    list.into_iter()
                        .filter_map(|(s, span)| match Cidr::parse(&s) {
                            Ok(c) => Some(c),
                            Err(m) => {
                                self.problem(
                                    span,
                                    m,
                                    Some("write a range like `10.0.0.0/8` or an address like `127.0.0.1`".into()),
                                );
                                None
                            }
                        })
                        .collect()
                });
                raw.outbound_bytes = self.field(t, &path, "outbound_bytes", Self::size);
                raw.local_ports = self.field(t, &path, "local_ports", Self::ports);
                if let Some(dns) = t.get("dns") {
                    let dpath = format!("{path}.dns");
                    if let Some(d) = self.expect_table(dns, &dpath) {
                        self.check_keys(d, &dpath, DNS_KEYS);
                        raw.dns_strict = self.field(d, &dpath, "strict", Self::boolean);
                        raw.dns_label_len = self.field(d, &dpath, "max_label_length", Self::small_integer);
                        raw.dns_entropy = self.field(d, &dpath, "max_label_entropy", Self::float);
                        raw.dns_subdomains = self.field(d, &dpath, "max_unique_subdomains", Self::small_integer);
                    }
                }
            }
        }
        if let Some(node) = table.get("filesystem") {
            let path = p("filesystem");
            if let Some(t) = self.expect_table(node, &path) {
                self.check_keys(t, &path, FS_KEYS);
                raw.writable = self.field(t, &path, "writable", Self::rule_list);
                raw.read_only = self.field(t, &path, "read_only", Self::rule_list);
                raw.hidden = self.field(t, &path, "hidden", Self::rule_list);
                raw.ephemeral = self.field(t, &path, "ephemeral", Self::boolean);
            }
        }
        if let Some(node) = table.get("limits") {
            let path = p("limits");
            if let Some(t) = self.expect_table(node, &path) {
                self.check_keys(t, &path, LIMIT_KEYS);
                raw.wall_clock = self.field(t, &path, "wall_clock", |s, n, p| s.or_unlimited(n, p, Self::duration));
                raw.tool_calls = self.field(t, &path, "tool_calls", Self::integer);
                raw.execs = self.field(t, &path, "execs", Self::integer);
                raw.memory = self.field(t, &path, "memory", |s, n, p| s.or_unlimited(n, p, Self::size));
                raw.processes = self.field(t, &path, "processes", |s, n, p| s.or_unlimited(n, p, Self::integer));
                // The overlay and `/tmp` are sized filesystems: a disk limit is always finite.
                raw.disk = self.field(t, &path, "disk", Self::size).map(Some);
                raw.tokens = self.field(t, &path, "tokens", Self::integer);
                raw.usd = self.field(t, &path, "usd", Self::float);
            }
        }
        if let Some(node) = table.get("environment") {
            let path = p("environment");
            if let Some(t) = self.expect_table(node, &path) {
                self.check_keys(t, &path, ENV_KEYS);
                raw.env_pass = t.get("pass").map(|n| {
                    let list = self.strings(n, &format!("{path}.pass"));
                    list.into_iter()
                        .filter_map(|(name, span)| match env_pattern_problem(&name) {
                            None => Some(name),
                            Some((message, hint)) => {
                                self.problem(span, message, Some(hint.to_owned()));
                                None
                            }
                        })
                        .collect()
                });
            }
        }
        if let Some(node) = table.get("tools") {
            let path = p("tools");
            if let Some(t) = self.expect_table(node, &path) {
                self.check_keys(t, &path, TOOL_KEYS);
                raw.tools_allow = self.field(t, &path, "allow", Self::rule_list);
                raw.tools_ask = self.field(t, &path, "ask", Self::rule_list);
                raw.tools_deny = self.field(t, &path, "deny", Self::rule_list);
                raw.tools_default = self.field(t, &path, "default", Self::decision);
                raw.exec_default = self.field(t, &path, "exec_default", Self::decision);
                if let Some(rates) = t.get("rate") {
                    let rpath = format!("{path}.rate");
                    if let Some(rt) = self.expect_table(rates, &rpath) {
                        let mut map = BTreeMap::new();
                        for (tool_name, value) in rt.iter() {
                            let name = tool_name.get_ref().to_string();
                            if let Some(rate) = self.unit(value, &format!("{rpath}.{name}"), "60/min", Rate::parse) {
                                map.insert(tool::canonical_tool(&name).to_owned(), rate);
                            }
                        }
                        raw.rate = Some(map);
                    }
                }
            }
        }
        raw
    }

    fn rule_meta(&self, entry: &Entry, decision: Decision, origin: Origin) -> Arc<Rule> {
        Arc::new(Rule {
            id: entry.id.clone(),
            text: entry.text.clone(),
            decision,
            origin,
            location: (origin == Origin::Policy).then(|| self.loc(&entry.span)),
            note: entry.note.clone(),
        })
    }

    fn builtin_rule(&self, id: &str, text: String, decision: Decision, origin: Origin) -> Rule {
        Rule { id: id.into(), text, decision, origin, location: None, note: None }
    }

    /// Checks an entry's examples with `matches`, reporting each one that fails.
    fn examples(&mut self, entry: &Entry, matches: impl Fn(&str) -> bool) {
        for (example, span) in &entry.matches {
            if !matches(example) {
                self.problem(
                    span.clone(),
                    format!("`{}` should match `{example}` but does not", entry.text),
                    Some("fix the rule or the example".into()),
                );
            }
        }
        for (example, span) in &entry.not_matches {
            if matches(example) {
                self.problem(
                    span.clone(),
                    format!("`{}` should not match `{example}` but does", entry.text),
                    Some("fix the rule or the example".into()),
                );
            }
        }
    }

    fn compile(&mut self, name: Option<String>, raw: &Raw, builtin_hidden: &[Entry]) -> Profile {
        let env = self.env.clone();
        let mut set = RuleSet::default();
        let tool_lists =
            [(&raw.tools_allow, Decision::Allow), (&raw.tools_ask, Decision::Ask), (&raw.tools_deny, Decision::Deny)];
        for (list, decision) in tool_lists {
            for entry in list.iter().flatten() {
                match ToolRule::parse(&entry.text, &env) {
                    Ok(rule) => {
                        self.examples(entry, |ex| tool_example_matches(&rule, ex, &env));
                        set.tools.push((rule, self.rule_meta(entry, decision, Origin::Policy)));
                    }
                    Err(e) => self.problem(entry.span.clone(), format!("bad tool rule: {}", e.message), e.hint),
                }
            }
        }
        for (list, decision) in [(&raw.net_allow, Decision::Allow), (&raw.net_deny, Decision::Deny)] {
            for entry in list.iter().flatten() {
                match HostPattern::parse(&entry.text) {
                    Ok(pattern) => {
                        self.examples(entry, |ex| host_example_matches(&pattern, ex));
                        set.hosts.push((pattern, self.rule_meta(entry, decision, Origin::Policy)));
                    }
                    Err(e) => self.problem(entry.span.clone(), format!("bad host pattern: {}", e.message), e.hint),
                }
            }
        }
        let writable_default = [Entry {
            id: "filesystem.writable[0]".into(),
            text: ".".into(),
            span: 0..0,
            matches: Vec::new(),
            not_matches: Vec::new(),
            note: None,
        }];
        let (writable, writable_origin) = match &raw.writable {
            Some(list) => (list.as_slice(), Origin::Policy),
            None => (&writable_default[..], Origin::Default),
        };
        let fs_lists: [(&[Entry], FsKind, Decision, Origin); 4] = [
            (writable, FsKind::Writable, Decision::Allow, writable_origin),
            (raw.read_only.as_deref().unwrap_or_default(), FsKind::ReadOnly, Decision::Deny, Origin::Policy),
            (builtin_hidden, FsKind::Hidden, Decision::Deny, Origin::Builtin),
            (raw.hidden.as_deref().unwrap_or_default(), FsKind::Hidden, Decision::Deny, Origin::Policy),
        ];
        for (list, kind, decision, origin) in fs_lists {
            for entry in list {
                match PathPattern::compile(&entry.text, PathSyntax::Filesystem, &env) {
                    Ok(pattern) => {
                        self.examples(entry, |ex| {
                            env.absolute(ex.as_ref())
                                .and_then(|p| p.to_str().map(|p| pattern.matches(p)))
                                .unwrap_or(false)
                        });
                        set.paths.push((pattern, kind, self.rule_meta(entry, decision, origin)));
                    }
                    Err(m) => self.problem(entry.span.clone(), format!("bad path `{}`: {m}", entry.text), None),
                }
            }
        }
        let tools_default = raw.tools_default.unwrap_or(Decision::Ask);
        let exec_default = raw.exec_default.unwrap_or(Decision::Allow);
        let texts = |list: Option<&Vec<Entry>>| {
            list.map(|l| l.iter().map(|e| e.text.clone()).collect::<Vec<_>>()).unwrap_or_default()
        };
        let settings = Settings {
            network: NetworkSettings {
                allow_cidrs: raw.allow_cidrs.clone().unwrap_or_default(),
                outbound_bytes: raw.outbound_bytes,
                local_ports: raw.local_ports.clone().unwrap_or_default(),
                dns: DnsSettings {
                    strict: raw.dns_strict.unwrap_or(false),
                    max_label_length: raw.dns_label_len.unwrap_or(40),
                    max_label_entropy: raw.dns_entropy.unwrap_or(4.0),
                    max_unique_subdomains: raw.dns_subdomains.unwrap_or(64),
                },
            },
            filesystem: FilesystemSettings {
                ephemeral: raw.ephemeral.unwrap_or(true),
                writable: writable.iter().map(|e| e.text.clone()).collect(),
                read_only: texts(raw.read_only.as_ref()),
                hidden: BUILTIN_HIDDEN.iter().map(|s| (*s).to_owned()).chain(texts(raw.hidden.as_ref())).collect(),
            },
            // SECURITY: what the policy leaves unset gets the built-in default, finite and
            // scaled to the host; no limit at all is only ever an explicit "unlimited".
            limits: Limits {
                wall_clock: raw.wall_clock.unwrap_or(Some(DEFAULT_WALL_CLOCK)),
                tool_calls: raw.tool_calls,
                execs: raw.execs,
                memory: raw.memory.unwrap_or_else(|| Some(ByteSize(default_memory()))),
                processes: raw.processes.unwrap_or(Some(DEFAULT_PROCESSES)),
                disk: raw.disk.unwrap_or(Some(ByteSize(DEFAULT_DISK))),
                tokens: raw.tokens,
                usd: raw.usd,
            },
            tools: ToolSettings { default: tools_default, exec_default, rate: raw.rate.clone().unwrap_or_default() },
            environment: raw.env_pass.clone().unwrap_or_default(),
        };
        let builtin = BuiltinRules {
            tools_default: self.builtin_rule(
                "default.tools",
                format!("tools.default = \"{tools_default}\""),
                tools_default,
                Origin::Default,
            ),
            exec_default: self.builtin_rule(
                "default.exec",
                format!("tools.exec_default = \"{exec_default}\""),
                exec_default,
                Origin::Default,
            ),
            network_default: self.builtin_rule(
                "default.network",
                "destinations not in network.allow are denied".into(),
                Decision::Deny,
                Origin::Default,
            ),
            read_default: self.builtin_rule(
                "default.read",
                "reads outside the filesystem section's paths need approval".into(),
                Decision::Ask,
                Origin::Default,
            ),
            write_default: self.builtin_rule(
                "default.write",
                "writes outside filesystem.writable are denied".into(),
                Decision::Deny,
                Origin::Default,
            ),
            not_static: self.builtin_rule(
                NOT_STATIC_ID,
                "a shell line with expansions, substitutions or here-documents is never allowed by rules".into(),
                Decision::Ask,
                Origin::Builtin,
            ),
            invalid: self.builtin_rule(
                "builtin.invalid_request",
                "malformed requests are denied".into(),
                Decision::Deny,
                Origin::Builtin,
            ),
            special_ranges: self.builtin_rule(
                "builtin.network.special_ranges",
                "loopback, private, link-local and metadata addresses are denied unless network.allow_cidrs lists them"
                    .into(),
                Decision::Deny,
                Origin::Builtin,
            ),
        };
        Profile::build(name, settings, env, set, builtin)
    }

    fn hooks(&mut self, node: &Node<'s>) -> Hooks {
        let mut hooks = Hooks::default();
        let Some(table) = self.expect_table(node, "hooks") else {
            return hooks;
        };
        self.check_keys(table, "hooks", HOOK_EVENTS);
        for event in HOOK_EVENTS {
            let Some(list) = table.get(*event) else {
                continue;
            };
            let path = format!("hooks.{event}");
            let DeValue::Array(items) = list.get_ref() else {
                self.problem(
                    list.span(),
                    format!("`{path}` must be an array of tables"),
                    Some(format!("write `[[{path}]]`")),
                );
                continue;
            };
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let hpath = format!("{path}[{i}]");
                let Some(t) = self.expect_table(item, &hpath) else {
                    continue;
                };
                self.check_keys(t, &hpath, HOOK_KEYS);
                let command = t.get("command").and_then(|n| self.string(n, &format!("{hpath}.command")));
                if t.get("command").is_none() {
                    self.problem(
                        item.span(),
                        format!("`{hpath}` has no `command`"),
                        Some("write `command = \"~/.config/portcullis/hooks/check.sh\"`".into()),
                    );
                }
                let matcher = t
                    .get("matcher")
                    .and_then(|n| self.string(n, &format!("{hpath}.matcher")))
                    .unwrap_or_else(|| "*".into());
                let timeout = t
                    .get("timeout")
                    .and_then(|n| self.duration(n, &format!("{hpath}.timeout")))
                    .unwrap_or(Duration::from_secs(30));
                let on_error = t
                    .get("on_error")
                    .and_then(|n| self.decision(n, &format!("{hpath}.on_error")))
                    .unwrap_or(Decision::Deny);
                if let Some(command) = command {
                    out.push(Hook { matcher, command, timeout, on_error });
                }
            }
            match *event {
                "pre_tool_use" => hooks.pre_tool_use = out,
                "post_tool_use" => hooks.post_tool_use = out,
                _ => hooks.user_prompt_submit = out,
            }
        }
        hooks
    }

    fn audit(&mut self, node: Option<&Node<'s>>) -> AuditSettings {
        let mut audit = AuditSettings {
            retention: Duration::from_secs(90 * 86_400),
            dir: None,
            durability: Durability::Group,
            min_free: ByteSize(128 << 20),
            session_records_per_second: 2000,
            session_bytes: ByteSize(512 << 20),
        };
        let Some(t) = node.and_then(|n| self.expect_table(n, "audit")) else {
            return audit;
        };
        self.check_keys(t, "audit", AUDIT_KEYS);
        if let Some(r) = t.get("retention").and_then(|n| self.duration(n, "audit.retention")) {
            audit.retention = r;
        }
        audit.dir = t.get("dir").and_then(|n| self.string(n, "audit.dir")).map(PathBuf::from);
        if let Some(b) = t.get("min_free").and_then(|n| self.size(n, "audit.min_free")) {
            audit.min_free = b;
        }
        if let Some(b) = t.get("session_bytes").and_then(|n| self.size(n, "audit.session_bytes")) {
            audit.session_bytes = b;
        }
        if let Some(n) = t.get("session_records_per_second") {
            match self.integer(n, "audit.session_records_per_second") {
                Some(0) => self.problem(
                    n.span(),
                    "`audit.session_records_per_second` must be at least 1: a session records its own start".into(),
                    None,
                ),
                Some(r) => audit.session_records_per_second = r,
                None => {}
            }
        }
        if let Some(n) = t.get("durability") {
            match self.string(n, "audit.durability").as_deref() {
                Some("sync") => audit.durability = Durability::Sync,
                Some("group") => audit.durability = Durability::Group,
                Some(other) => {
                    self.problem(n.span(), format!("`audit.durability` must be `sync` or `group`, not `{other}`"), None)
                }
                None => {}
            }
        }
        audit
    }

    fn alerts(&mut self, node: Option<&Node<'s>>) -> AlertSettings {
        let mut alerts = AlertSettings { repeated_denials: 10, ..AlertSettings::default() };
        let Some(t) = node.and_then(|n| self.expect_table(n, "alerts")) else {
            return alerts;
        };
        self.check_keys(t, "alerts", ALERT_KEYS);
        alerts.command = t.get("command").and_then(|n| self.program(n, "alerts.command"));
        if let Some(n) = t.get("working_hours")
            && let Some(s) = self.string(n, "alerts.working_hours")
        {
            match parse_hours(&s) {
                Some(h) => alerts.working_hours = Some(h),
                None => self.problem(
                    n.span(),
                    format!("`alerts.working_hours` must look like `08:00-18:30`, not `{s}`"),
                    None,
                ),
            }
        }
        if let Some(n) = t.get("repeated_denials").and_then(|n| self.small_integer(n, "alerts.repeated_denials")) {
            alerts.repeated_denials = n;
        }
        alerts
    }
}

fn valid_agent_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn parse_hours(s: &str) -> Option<(u16, u16)> {
    let clock = |t: &str| -> Option<u16> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (a, b) = s.split_once('-')?;
    Some((clock(a)?, clock(b)?))
}

/// Does a tool rule match an example written for it? Examples are the rule's argument: a
/// command line, a path, a URL or host, a sub-agent type, or (for rules without one) a tool name.
fn tool_example_matches(rule: &ToolRule, example: &str, env: &Environment) -> bool {
    match &rule.spec {
        Specifier::Command(pattern) => {
            let line = shell::split(example);
            pattern.matches(&shell::collapse_whitespace(example))
                || line.segments.iter().any(|s| s.candidates().any(|c| pattern.matches(c)))
        }
        Specifier::Path(pattern) => {
            env.absolute(example.as_ref()).and_then(|p| p.to_str().map(|p| pattern.matches(p))).unwrap_or(false)
        }
        Specifier::Domain(pattern) => {
            let (host, port) = match url::Url::parse(example) {
                Ok(u) if u.host_str().is_some() => {
                    (u.host_str().unwrap_or_default().to_owned(), u.port_or_known_default())
                }
                _ => match crate::request::parse_host_port(example) {
                    Ok((h, p)) => (h, Some(p)),
                    Err(_) => (example.to_owned(), None),
                },
            };
            host::normalize_host(host.trim_start_matches('[').trim_end_matches(']'))
                .is_ok_and(|h| pattern.matches(&h, port))
        }
        Specifier::Name(pattern) => tool::wildcard(pattern.as_bytes(), example.as_bytes()),
        Specifier::Any => match &rule.target {
            Target::Tool(_) => rule.tool_names().contains(&tool::canonical_tool(example)),
            Target::McpServer(server) => {
                example.strip_prefix("mcp__").and_then(|r| r.split("__").next()) == Some(server.as_str())
            }
        },
    }
}

fn host_example_matches(pattern: &HostPattern, example: &str) -> bool {
    let (host, port) = match crate::request::parse_host_port(example) {
        Ok((h, p)) => (h, Some(p)),
        Err(_) => (example.to_owned(), None),
    };
    host::normalize_host(&host).is_ok_and(|h| pattern.matches(&h, port))
}
