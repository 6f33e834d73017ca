//! A compiled profile (the top level or one agent) and its evaluator.
//!
//! Rules are indexed at load so a decision touches only the rules that can match: tool rules by
//! canonical tool name and then by command name, host rules by exact name and by suffix, path
//! rules by their literal directory prefix. `tests/suite/differential.rs` checks the indexed
//! evaluator against a naive scan of every rule.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::decision::{Decision, Evaluation, InvalidRequest, Rule, Verdict};
use crate::host::{self, Cidr, HostPattern};
use crate::path::{Environment, PathPattern};
use crate::request::{Access, Request};
use crate::settings::Settings;
use crate::shell::{self, Segment};
use crate::tool::{self, CommandPattern, Specifier, ToolKind, ToolRule};

/// The id of the rule that keeps non-static shell lines from being allowed.
pub(crate) const NOT_STATIC_ID: &str = "builtin.shell.not_static";

/// What a `[filesystem]` entry grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FsKind {
    Writable,
    ReadOnly,
    Hidden,
}

/// Rules filed under one canonical tool name.
#[derive(Debug, Default)]
struct ToolRules {
    any: Vec<Arc<Rule>>,
    commands_by_name: FxHashMap<String, Vec<(CommandPattern, Arc<Rule>)>>,
    commands_other: Vec<(CommandPattern, Arc<Rule>)>,
    /// Deny and ask command rules that name shell operators, matched against the whole line.
    pipelines: Vec<(CommandPattern, Arc<Rule>)>,
    paths: PathIndex<Arc<Rule>>,
    domains: Vec<(HostPattern, Arc<Rule>)>,
    names: Vec<(String, Arc<Rule>)>,
}

/// Path patterns keyed by their literal directory prefix; a lookup walks the path's ancestors.
#[derive(Debug)]
struct PathIndex<T> {
    by_prefix: FxHashMap<String, Vec<(PathPattern, T)>>,
}

impl<T> Default for PathIndex<T> {
    fn default() -> Self {
        PathIndex { by_prefix: FxHashMap::default() }
    }
}

impl<T> PathIndex<T> {
    fn insert(&mut self, pattern: PathPattern, value: T) {
        self.by_prefix.entry(pattern.literal_prefix()).or_default().push((pattern, value));
    }

    fn is_empty(&self) -> bool {
        self.by_prefix.is_empty()
    }

    /// Every entry whose pattern matches `path` (absolute, normalised).
    fn matching<'s>(&'s self, path: &str) -> impl Iterator<Item = &'s T> {
        let ancestors = std::iter::once("/")
            .chain(path.match_indices('/').skip(1).map(|(i, _)| &path[..i]).chain((path.len() > 1).then_some(path)));
        ancestors
            .filter_map(|prefix| self.by_prefix.get(prefix))
            .flatten()
            .filter(move |(pattern, _)| pattern.matches(path))
            .map(|(_, v)| v)
    }
}

/// Host patterns indexed by exact name and by wildcard suffix.
#[derive(Debug, Default)]
struct HostIndex {
    exact: FxHashMap<String, Vec<(HostPattern, Arc<Rule>)>>,
    subdomain: FxHashMap<String, Vec<(HostPattern, Arc<Rule>)>>,
    other: Vec<(HostPattern, Arc<Rule>)>,
}

impl HostIndex {
    fn insert(&mut self, pattern: HostPattern, rule: Arc<Rule>) {
        use crate::host::NamePattern;
        match &pattern.name {
            NamePattern::Exact(name) => self.exact.entry(name.clone()).or_default().push((pattern, rule)),
            NamePattern::Subdomain(suffix) => self.subdomain.entry(suffix.clone()).or_default().push((pattern, rule)),
            NamePattern::Any | NamePattern::Labels(_) => self.other.push((pattern, rule)),
        }
    }

    /// Every (pattern, rule) whose name part can match `host`.
    fn candidates<'s>(&'s self, host: &str) -> impl Iterator<Item = &'s (HostPattern, Arc<Rule>)> {
        let suffixes = host.match_indices('.').filter_map(|(i, _)| self.subdomain.get(&host[i + 1..]));
        self.exact.get(host).into_iter().chain(suffixes).flatten().chain(self.other.iter())
    }
}

/// The fallback and built-in rules every profile carries, so every verdict names a rule.
#[derive(Debug)]
pub(crate) struct BuiltinRules {
    pub(crate) tools_default: Rule,
    pub(crate) exec_default: Rule,
    pub(crate) network_default: Rule,
    pub(crate) read_default: Rule,
    pub(crate) write_default: Rule,
    pub(crate) not_static: Rule,
    pub(crate) invalid: Rule,
    pub(crate) special_ranges: Rule,
}

/// The rules of one profile, before indexing.
#[derive(Debug, Default)]
pub(crate) struct RuleSet {
    pub(crate) tools: Vec<(ToolRule, Arc<Rule>)>,
    pub(crate) hosts: Vec<(HostPattern, Arc<Rule>)>,
    pub(crate) paths: Vec<(PathPattern, FsKind, Arc<Rule>)>,
}

/// A compiled policy profile: the top level, or an agent's profile with the top level inherited.
#[derive(Debug)]
pub struct Profile {
    name: Option<String>,
    settings: Settings,
    env: Environment,
    tools: FxHashMap<String, ToolRules>,
    mcp_servers: FxHashMap<String, Vec<Arc<Rule>>>,
    hosts: HostIndex,
    fs: PathIndex<(FsKind, Arc<Rule>)>,
    allow_cidrs: Vec<Cidr>,
    builtin: BuiltinRules,
    rules: Vec<Arc<Rule>>,
}

/// Shell operators that make a command rule describe a whole line rather than one command.
const OPERATORS: &[char] = &['|', ';', '&', '>', '<', '$', '(', ')', '`'];

impl Profile {
    pub(crate) fn build(
        name: Option<String>,
        settings: Settings,
        env: Environment,
        set: RuleSet,
        builtin: BuiltinRules,
    ) -> Self {
        let mut profile = Profile {
            name,
            allow_cidrs: settings.network.allow_cidrs.clone(),
            settings,
            env,
            tools: FxHashMap::default(),
            mcp_servers: FxHashMap::default(),
            hosts: HostIndex::default(),
            fs: PathIndex::default(),
            builtin,
            rules: Vec::new(),
        };
        for (rule, meta) in set.tools {
            profile.rules.push(meta.clone());
            if let tool::Target::McpServer(server) = &rule.target {
                profile.mcp_servers.entry(server.clone()).or_default().push(meta);
                continue;
            }
            for name in rule.tool_names() {
                let entry = profile.tools.entry(name.to_owned()).or_default();
                match &rule.spec {
                    Specifier::Any => entry.any.push(meta.clone()),
                    Specifier::Command(pattern) => {
                        if meta.decision != Decision::Allow && pattern_has_operator(pattern) {
                            entry.pipelines.push((pattern.clone(), meta.clone()));
                        }
                        match &pattern.key {
                            Some(key) => entry
                                .commands_by_name
                                .entry(key.clone())
                                .or_default()
                                .push((pattern.clone(), meta.clone())),
                            None => entry.commands_other.push((pattern.clone(), meta.clone())),
                        }
                    }
                    Specifier::Path(pattern) => entry.paths.insert(pattern.clone(), meta.clone()),
                    Specifier::Domain(pattern) => entry.domains.push((pattern.clone(), meta.clone())),
                    Specifier::Name(name) => entry.names.push((name.clone(), meta.clone())),
                }
            }
        }
        for (pattern, meta) in set.hosts {
            profile.rules.push(meta.clone());
            profile.hosts.insert(pattern, meta);
        }
        for (pattern, kind, meta) in set.paths {
            profile.rules.push(meta.clone());
            profile.fs.insert(pattern, (kind, meta));
        }
        profile
    }

    /// The agent's name, or `None` for the top-level profile.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Limits, network, filesystem and tool settings after inheritance.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The workdir and home the profile's paths are anchored to.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// Every rule of the profile, built-in ones included.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &**r)
    }

    /// Decides a request. Cannot fail: a malformed request is denied and says why.
    pub fn evaluate(&self, request: &Request<'_>) -> Evaluation<'_> {
        match *request {
            Request::ToolCall { tool, input } => self.tool_call(tool, input),
            Request::Exec { argv, cwd: _ } => self.exec(argv),
            Request::Connect { host, port } => self.connect(host, Some(port)).finish(&self.builtin.network_default),
            Request::Resolve { name } => self.connect(name, None).finish(&self.builtin.network_default),
            Request::FileAccess { path, access } => {
                let key = match access {
                    Access::Read => "Read",
                    Access::Write => "Edit",
                };
                self.file(key, path, access)
            }
        }
    }

    fn invalid(&self, why: InvalidRequest) -> Evaluation<'_> {
        let mut v = Verdict::default();
        v.invalid(why, &self.builtin.invalid);
        v.finish(&self.builtin.invalid)
    }

    fn tool_call<'p>(&'p self, tool: &str, input: &Value) -> Evaluation<'p> {
        let canonical = tool::canonical_tool(tool);
        match tool::kind_of(canonical) {
            ToolKind::Shell => match shell_command(input) {
                Some(line) => self.shell_line(&line),
                None => self.invalid(InvalidRequest::MissingCommand),
            },
            ToolKind::FileRead | ToolKind::FileWrite => {
                let access = if tool::kind_of(canonical) == ToolKind::FileRead { Access::Read } else { Access::Write };
                let path = ["file_path", "notebook_path", "path"].iter().find_map(|k| input.get(*k));
                match path {
                    None | Some(Value::Null) => self.file(canonical, Path::new("."), access),
                    Some(Value::String(p)) => self.file(canonical, Path::new(p), access),
                    Some(_) => self.invalid(InvalidRequest::BadPathField),
                }
            }
            ToolKind::Fetch => self.fetch(input),
            ToolKind::Task | ToolKind::Other => {
                let mut v = Verdict::default();
                if let Some(rules) = self.tools.get(canonical) {
                    rules.any.iter().for_each(|r| v.add(r));
                    if !rules.names.is_empty() {
                        let name = input.get("subagent_type").and_then(Value::as_str).unwrap_or_default();
                        for (pattern, rule) in &rules.names {
                            if tool::wildcard(pattern.as_bytes(), name.as_bytes()) {
                                v.add(rule);
                            }
                        }
                    }
                }
                if let Some(server) = canonical.strip_prefix("mcp__").and_then(|rest| rest.split("__").next()) {
                    self.mcp_servers.get(server).into_iter().flatten().for_each(|r| v.add(r));
                }
                v.finish(&self.builtin.tools_default)
            }
        }
    }

    fn shell_line(&self, line: &str) -> Evaluation<'_> {
        let parsed = shell::split(line);
        if parsed.segments.is_empty() && line.trim().is_empty() {
            return self.invalid(InvalidRequest::EmptyCommand);
        }
        self.shell_segments(&parsed.segments, parsed.not_static, line)
    }

    /// Decides a shell line whose simple commands were found by a full analysis (the guard's):
    /// each command's words, expanded, and whether any part could not be read statically. Rules
    /// match each command; deny and ask rules with shell operators also match `line` as a whole.
    pub fn evaluate_shell<'p>(&'p self, commands: &[Vec<String>], not_static: bool, line: &str) -> Evaluation<'p> {
        let segments: Vec<Segment> = commands
            .iter()
            .filter(|argv| argv.first().is_some_and(|name| !name.is_empty()))
            .map(|argv| Segment::from_argv(argv))
            .collect();
        if segments.is_empty() && line.trim().is_empty() {
            return self.invalid(InvalidRequest::EmptyCommand);
        }
        self.shell_segments(&segments, not_static, line)
    }

    fn shell_segments(&self, segments: &[Segment], not_static: bool, line: &str) -> Evaluation<'_> {
        let mut v = Verdict::default();
        let rules = self.tools.get("Bash");
        for segment in segments {
            v.merge(self.segment(rules, segment, &self.builtin.tools_default));
        }
        if let Some(rules) = rules.filter(|r| !r.pipelines.is_empty()) {
            let whole = shell::collapse_whitespace(line);
            for (pattern, rule) in &rules.pipelines {
                if pattern.matches(&whole) {
                    v.add(rule);
                }
            }
        }
        if not_static {
            v.add(&self.builtin.not_static);
        }
        v.finish(&self.builtin.tools_default)
    }

    fn exec(&self, argv: &[String]) -> Evaluation<'_> {
        if argv.is_empty() {
            return self.invalid(InvalidRequest::EmptyArgv);
        }
        let segment = Segment::from_argv(argv);
        self.segment(self.tools.get("Bash"), &segment, &self.builtin.exec_default).finish(&self.builtin.exec_default)
    }

    /// The verdict for one simple command; `fallback` when no rule matches.
    fn segment<'p>(&'p self, rules: Option<&'p ToolRules>, segment: &Segment, fallback: &'p Rule) -> Verdict<'p> {
        let mut v = Verdict::default();
        if let Some(rules) = rules {
            rules.any.iter().for_each(|r| v.add(r));
            let by_name = rules.commands_by_name.get(segment.name()).into_iter().flatten();
            let full = segment.full_name();
            let by_full =
                (full != segment.name()).then(|| rules.commands_by_name.get(full)).flatten().into_iter().flatten();
            for (pattern, rule) in by_name.chain(by_full).chain(rules.commands_other.iter()) {
                if segment.candidates().any(|c| pattern.matches(c)) {
                    v.add(rule);
                }
            }
        }
        if v.is_empty() {
            v.add(fallback);
        }
        v
    }

    /// Network rules and special ranges for `host` (`port: None` is a name resolution).
    fn connect(&self, host: &str, port: Option<u16>) -> Verdict<'_> {
        let mut v = Verdict::default();
        let Ok(host) = host::normalize_host(host) else {
            v.invalid(InvalidRequest::BadHost, &self.builtin.invalid);
            return v;
        };
        for (pattern, rule) in self.hosts.candidates(&host) {
            let hit = match port {
                Some(_) => pattern.matches(&host, port),
                // A lookup is allowed by any allow rule for the name, and denied only by deny
                // rules that cover every port.
                None => pattern.matches_name(&host) && (rule.decision == Decision::Allow || pattern.port.is_none()),
            };
            if hit {
                v.add(rule);
            }
        }
        if let Ok(ip) = host.parse::<IpAddr>()
            && host::special_range(ip).is_some()
            && !self.allow_cidrs.iter().any(|c| c.contains(ip))
        {
            v.add(&self.builtin.special_ranges);
        }
        v
    }

    fn fetch<'p>(&'p self, input: &Value) -> Evaluation<'p> {
        let Some(url) = input.get("url").and_then(Value::as_str).and_then(|u| url::Url::parse(u).ok()) else {
            return self.invalid(InvalidRequest::BadUrl);
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return self.invalid(InvalidRequest::BadUrl);
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        // SECURITY: the network allow-list is a wall for fetches too; tool rules only tighten it.
        let mut v = self.connect(host, Some(port));
        if v.is_empty() {
            v.add(&self.builtin.network_default);
        }
        if let Some(rules) = self.tools.get("WebFetch") {
            rules.any.iter().for_each(|r| v.add(r));
            if let Ok(host) = host::normalize_host(host) {
                for (pattern, rule) in &rules.domains {
                    if pattern.matches(&host, Some(port)) {
                        v.add(rule);
                    }
                }
            }
        }
        v.finish(&self.builtin.network_default)
    }

    /// Filesystem rules plus the tool rules filed under `key` for a file access.
    fn file<'p>(&'p self, key: &str, path: &Path, access: Access) -> Evaluation<'p> {
        let Some(abs) = self.env.absolute(path) else {
            return self.invalid(InvalidRequest::BadPath);
        };
        let Some(abs) = abs.to_str() else {
            return self.invalid(InvalidRequest::BadPath);
        };
        let mut v = Verdict::default();
        for (kind, rule) in self.fs.matching(abs) {
            let decision = match (kind, access) {
                (FsKind::Hidden, _) | (FsKind::ReadOnly, Access::Write) => Decision::Deny,
                (FsKind::Writable, _) | (FsKind::ReadOnly, Access::Read) => Decision::Allow,
            };
            v.add_as(decision, rule);
        }
        // SECURITY: writes outside the writable paths meet read-only mounts; no tool rule opens them.
        if v.is_empty() && access == Access::Write {
            v.add(&self.builtin.write_default);
        }
        if let Some(rules) = self.tools.get(key) {
            rules.any.iter().for_each(|r| v.add(r));
            if !rules.paths.is_empty() {
                rules.paths.matching(abs).for_each(|r| v.add(r));
            }
        }
        v.finish(&self.builtin.read_default)
    }
}

fn pattern_has_operator(pattern: &CommandPattern) -> bool {
    pattern.source().contains(OPERATORS)
}

/// The command line of a shell tool call: Claude Code's `{"command": "…"}`, or Codex's argv
/// form `{"command": ["bash", "-lc", "…"]}`.
fn shell_command(input: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match input.get("command")? {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Array(items) => {
            let argv: Vec<&str> = items.iter().map(Value::as_str).collect::<Option<_>>()?;
            match argv.as_slice() {
                [shell, flag, script]
                    if ["bash", "sh", "zsh", "/bin/bash", "/bin/sh"].contains(shell)
                        && flag.ends_with('c')
                        && flag.starts_with('-') =>
                {
                    Some(std::borrow::Cow::Borrowed(*script))
                }
                [] => None,
                _ => Some(std::borrow::Cow::Owned(argv.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "))),
            }
        }
        _ => None,
    }
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
