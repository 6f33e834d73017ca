//! The indexed evaluator agrees with a deliberately naive reference on random policies.
//!
//! The reference reads the rule strings itself, matches with regular expressions and scans
//! every rule for every request. It shares no matching code with the engine.

use std::collections::BTreeSet;
use std::path::Path;

use portcullis_policy::{Access, BUILTIN_HIDDEN, Decision, Request};
use proptest::prelude::*;
use regex::Regex;
use serde_json::json;

const WORKDIR: &str = "/work/proj";
const HOME: &str = "/home/dev";
const WORDS: &[&str] = &["git", "push", "rm", "-rf", "ls", "x", "--force", "/usr/bin/git"];
const LABELS: &[&str] = &["a", "b", "gh", "com", "io"];
const PATHS: &[&str] =
    &["src/a.rs", "a/b", "a/.env", "/etc/passwd", "~/x/y", "~/.ssh/k", "b.rs", "src", "/work/proj", "a/b/c.rs"];
const RULE_PATHS: &[&str] = &["./src/**", "*.rs", "**/.env", "./a/*", "//etc/**", "~/x", "/a", "src", "./a/**/*.rs"];
const FS_PATHS: &[&str] = &[".", "./a", "/etc", "~/x", "a/b", "/work/proj/src"];
const TOOLS: &[&str] = &["Read", "Edit", "Write", "Grep", "MultiEdit"];
const OTHER_TOOLS: &[&str] = &["mcp__s1__t1", "mcp__s1__t2", "mcp__s2__t1", "TodoWrite"];
const READ_TOOLS: &[&str] = &["Read", "NotebookRead", "Glob", "Grep", "LS"];
const WRITE_TOOLS: &[&str] = &["Edit", "MultiEdit", "Write", "NotebookEdit"];

#[derive(Clone, Debug)]
struct Spec {
    net_allow: Vec<String>,
    net_deny: Vec<String>,
    cidrs: bool,
    writable: Option<Vec<String>>,
    read_only: Vec<String>,
    hidden: Vec<String>,
    allow: Vec<String>,
    ask: Vec<String>,
    deny: Vec<String>,
    default: Decision,
    exec_default: Decision,
}

fn quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(", "))
}

impl Spec {
    fn toml(&self) -> String {
        let mut t = format!(
            "[network]\nallow = {}\ndeny = {}\nallow_cidrs = {}\n[filesystem]\nread_only = {}\nhidden = {}\n",
            quoted(&self.net_allow),
            quoted(&self.net_deny),
            if self.cidrs { "[\"10.0.0.0/8\"]" } else { "[]" },
            quoted(&self.read_only),
            quoted(&self.hidden),
        );
        if let Some(w) = &self.writable {
            t.push_str(&format!("writable = {}\n", quoted(w)));
        }
        t.push_str(&format!(
            "[tools]\nallow = {}\nask = {}\ndeny = {}\ndefault = \"{}\"\nexec_default = \"{}\"\n",
            quoted(&self.allow),
            quoted(&self.ask),
            quoted(&self.deny),
            self.default,
            self.exec_default
        ));
        t
    }
}

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

fn host_pattern() -> impl Strategy<Value = String> {
    let name = prop::collection::vec(pick(LABELS), 1..3).prop_map(|l| l.join("."));
    (0..4u8, name, prop::option::of(pick(&[443u16, 80]))).prop_map(|(form, name, port)| {
        let host = match form {
            0 => name,
            1 => format!("*.{name}"),
            2 => "*".into(),
            _ => format!("a.*.{name}"),
        };
        match port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    })
}

fn tool_rule() -> impl Strategy<Value = String> {
    let word = || pick(WORDS);
    prop_oneof![
        (word(), word(), 0..6u8).prop_map(|(a, b, form)| match form {
            0 => format!("Bash({a})"),
            1 => format!("Bash({a} {b})"),
            2 => format!("Bash({a} *)"),
            3 => format!("Bash({a} {b} *)"),
            4 => format!("Bash(* {b})"),
            _ => format!("Bash({a}:*)"),
        }),
        (pick(&["Read", "Edit", "Write", "Grep"]), pick(RULE_PATHS)).prop_map(|(t, p)| format!("{t}({p})")),
        pick(&["Bash", "Read", "Edit", "TodoWrite", "mcp__s1", "mcp__s1__t1", "mcp__s2__*", "WebFetch"])
            .prop_map(str::to_owned),
        host_pattern().prop_map(|h| format!("WebFetch(domain:{h})")),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    let rules = |n| prop::collection::vec(tool_rule(), 0..n);
    let hosts = |n| prop::collection::vec(host_pattern(), 0..n);
    let paths = |n| prop::collection::vec(pick(FS_PATHS).prop_map(str::to_owned), 0..n);
    let decision = || pick(&[Decision::Allow, Decision::Ask, Decision::Deny]);
    (
        (hosts(5), hosts(3), any::<bool>()),
        (prop::option::of(paths(3)), paths(2), paths(2)),
        (rules(6), rules(4), rules(4), decision(), decision()),
    )
        .prop_map(
            |(
                (net_allow, net_deny, cidrs),
                (writable, read_only, hidden),
                (allow, ask, deny, default, exec_default),
            )| Spec {
                net_allow,
                net_deny,
                cidrs,
                writable,
                read_only,
                hidden,
                allow,
                ask,
                deny,
                default,
                exec_default,
            },
        )
}

#[derive(Clone, Debug)]
enum Req {
    Bash(String),
    Exec(Vec<String>),
    Connect(String, u16),
    Resolve(String),
    File(String, Access),
    FileTool(&'static str, String),
    Fetch(String, u16),
    Other(&'static str),
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(pick(LABELS), 1..4).prop_map(|l| l.join(".")),
        1 => pick(&["10.0.0.1", "8.8.8.8"]).prop_map(str::to_owned),
    ]
}

fn request() -> impl Strategy<Value = Req> {
    let words = || prop::collection::vec(pick(WORDS), 1..4).prop_map(|w| w.join(" "));
    let port = || pick(&[443u16, 80]);
    prop_oneof![
        prop::collection::vec(words(), 1..3).prop_map(|s| Req::Bash(s.join(" && "))),
        prop::collection::vec(pick(WORDS).prop_map(str::to_owned), 1..4).prop_map(Req::Exec),
        (host(), port()).prop_map(|(h, p)| Req::Connect(h, p)),
        host().prop_map(Req::Resolve),
        (pick(PATHS), any::<bool>())
            .prop_map(|(p, w)| Req::File(p.to_owned(), if w { Access::Write } else { Access::Read })),
        (pick(TOOLS), pick(PATHS)).prop_map(|(t, p)| Req::FileTool(t, p.to_owned())),
        (host(), port()).prop_map(|(h, p)| Req::Fetch(h, p)),
        pick(OTHER_TOOLS).prop_map(Req::Other),
    ]
}

// ---------------------------------------------------------------------------------------------
// The reference.
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Acc {
    best: Option<Decision>,
    ids: BTreeSet<String>,
}

impl Acc {
    fn add(&mut self, d: Decision, id: &str) {
        match self.best {
            Some(b) if d < b => {}
            Some(b) if d == b => {
                self.ids.insert(id.to_owned());
            }
            _ => {
                self.best = Some(d);
                self.ids = BTreeSet::from([id.to_owned()]);
            }
        }
    }

    fn merge(&mut self, other: Acc) {
        if let Some(d) = other.best {
            for id in other.ids {
                self.add(d, &id);
            }
        }
    }

    fn or(mut self, d: Decision, id: &str) -> (Decision, BTreeSet<String>) {
        if self.best.is_none() {
            self.add(d, id);
        }
        (self.best.unwrap(), self.ids)
    }
}

fn rules_of(spec: &Spec) -> Vec<(String, String, Decision)> {
    let mut out = Vec::new();
    for (list, name, d) in [
        (&spec.allow, "allow", Decision::Allow),
        (&spec.ask, "ask", Decision::Ask),
        (&spec.deny, "deny", Decision::Deny),
    ] {
        for (i, r) in list.iter().enumerate() {
            out.push((format!("tools.{name}[{i}]"), r.clone(), d));
        }
    }
    out
}

fn split_rule(rule: &str) -> (&str, Option<&str>) {
    match rule.find('(') {
        Some(i) => (&rule[..i], Some(&rule[i + 1..rule.len() - 1])),
        None => (rule, None),
    }
}

fn command_matches(spec: &str, text: &str) -> bool {
    let glob = match spec.strip_suffix(":*") {
        Some(p) => format!("{p} *"),
        None => spec.to_owned(),
    };
    let re = format!("^{}$", regex::escape(&glob).replace(r"\*", ".*"));
    Regex::new(&re).unwrap().is_match(text) || glob.strip_suffix(" *").is_some_and(|p| p == text)
}

fn candidates(words: &[String]) -> Vec<String> {
    let text = words.join(" ");
    let mut out = vec![text.clone()];
    if let Some(i) = words[0].rfind('/') {
        out.push(text[i + 1..].to_owned());
    }
    out
}

fn bash_segment(spec: &Spec, words: &[String], default: Decision, default_id: &str) -> Acc {
    let mut acc = Acc::default();
    for (id, rule, d) in rules_of(spec) {
        let (name, arg) = split_rule(&rule);
        if name != "Bash" {
            continue;
        }
        if arg.is_none_or(|a| candidates(words).iter().any(|c| command_matches(a, c))) {
            acc.add(d, &id);
        }
    }
    if acc.best.is_none() {
        acc.add(default, default_id);
    }
    acc
}

fn host_regex(name: &str) -> Regex {
    let re = if name == "*" {
        ".*".to_owned()
    } else if let Some(rest) = name.strip_prefix("*.") {
        format!(r"([a-z0-9-]+\.)+{}", regex::escape(rest))
    } else {
        name.split('.')
            .map(|l| if l == "*" { "[a-z0-9-]+".to_owned() } else { regex::escape(l) })
            .collect::<Vec<_>>()
            .join(r"\.")
    };
    Regex::new(&format!("^{re}$")).unwrap()
}

fn host_rule_matches(pattern: &str, host: &str, port: Option<u16>, deciding: Decision) -> bool {
    let (name, rule_port) = match pattern.rsplit_once(':') {
        Some((n, p)) => (n, Some(p.parse::<u16>().unwrap())),
        None => (pattern, None),
    };
    let port_ok = match (rule_port, port) {
        (None, _) => true,
        (Some(r), Some(p)) => r == p,
        (Some(_), None) => deciding == Decision::Allow,
    };
    port_ok && host_regex(name).is_match(host)
}

fn network(spec: &Spec, host: &str, port: Option<u16>) -> Acc {
    let mut acc = Acc::default();
    for (list, name, d) in [(&spec.net_allow, "allow", Decision::Allow), (&spec.net_deny, "deny", Decision::Deny)] {
        for (i, p) in list.iter().enumerate() {
            if host_rule_matches(p, host, port, d) {
                acc.add(d, &format!("network.{name}[{i}]"));
            }
        }
    }
    let special = host.starts_with("10.");
    if special && !spec.cidrs {
        acc.add(Decision::Deny, "builtin.network.special_ranges");
    }
    acc
}

fn absolute(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("~/") {
        format!("{HOME}/{rest}")
    } else if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{WORKDIR}/{path}")
    }
}

fn anchor(pattern: &str, claude: bool) -> String {
    if let Some(rest) = pattern.strip_prefix("//") {
        format!("/{rest}")
    } else if let Some(rest) = pattern.strip_prefix("~/") {
        format!("{HOME}/{rest}")
    } else if let Some(rest) = pattern.strip_prefix('/') {
        if claude { format!("{WORKDIR}/{rest}") } else { pattern.to_owned() }
    } else if pattern == "." {
        WORKDIR.to_owned()
    } else if let Some(rest) = pattern.strip_prefix("./") {
        format!("{WORKDIR}/{rest}")
    } else if claude && !pattern.contains('/') {
        format!("{WORKDIR}/**/{pattern}")
    } else {
        format!("{WORKDIR}/{pattern}")
    }
}

fn path_matches(pattern: &str, claude: bool, path: &str) -> bool {
    let anchored = anchor(pattern, claude);
    let mut re = String::from("^");
    for comp in anchored.split('/').filter(|c| !c.is_empty()) {
        if comp == "**" {
            re.push_str("(/[^/]+)*");
        } else {
            re.push('/');
            re.push_str(&regex::escape(comp).replace(r"\*", "[^/]*").replace(r"\?", "[^/]"));
        }
    }
    re.push_str("(/.*)?$");
    Regex::new(&re).unwrap().is_match(path)
}

fn rule_covers_tool(rule_name: &str, tool: &str) -> bool {
    rule_name == tool
        || (rule_name == "Read" && READ_TOOLS.contains(&tool))
        || (["Edit", "Write"].contains(&rule_name) && WRITE_TOOLS.contains(&tool))
}

fn file(spec: &Spec, tool: &str, path: &str, access: Access) -> (Decision, BTreeSet<String>) {
    let path = absolute(path);
    let mut acc = Acc::default();
    let default_writable = vec![".".to_owned()];
    let writable = spec.writable.as_ref().unwrap_or(&default_writable);
    for (i, p) in writable.iter().enumerate() {
        if path_matches(p, false, &path) {
            acc.add(Decision::Allow, &format!("filesystem.writable[{i}]"));
        }
    }
    for (i, p) in spec.read_only.iter().enumerate() {
        if path_matches(p, false, &path) {
            acc.add(
                if access == Access::Read { Decision::Allow } else { Decision::Deny },
                &format!("filesystem.read_only[{i}]"),
            );
        }
    }
    for (i, p) in BUILTIN_HIDDEN.iter().enumerate() {
        if path_matches(p, false, &path) {
            acc.add(Decision::Deny, &format!("builtin.hidden[{i}]"));
        }
    }
    for (i, p) in spec.hidden.iter().enumerate() {
        if path_matches(p, false, &path) {
            acc.add(Decision::Deny, &format!("filesystem.hidden[{i}]"));
        }
    }
    if acc.best.is_none() && access == Access::Write {
        acc.add(Decision::Deny, "default.write");
    }
    for (id, rule, d) in rules_of(spec) {
        let (name, arg) = split_rule(&rule);
        if rule_covers_tool(name, tool) && arg.is_none_or(|a| path_matches(a, true, &path)) {
            acc.add(d, &id);
        }
    }
    acc.or(Decision::Ask, "default.read")
}

fn reference(spec: &Spec, req: &Req) -> (Decision, BTreeSet<String>) {
    match req {
        Req::Bash(line) => {
            let mut acc = Acc::default();
            for segment in line.split(" && ") {
                let words: Vec<String> = segment.split(' ').map(str::to_owned).collect();
                acc.merge(bash_segment(spec, &words, spec.default, "default.tools"));
            }
            acc.or(spec.default, "default.tools")
        }
        Req::Exec(argv) => {
            bash_segment(spec, argv, spec.exec_default, "default.exec").or(spec.exec_default, "default.exec")
        }
        Req::Connect(host, port) => network(spec, host, Some(*port)).or(Decision::Deny, "default.network"),
        Req::Resolve(host) => network(spec, host, None).or(Decision::Deny, "default.network"),
        Req::File(path, access) => file(spec, if *access == Access::Read { "Read" } else { "Edit" }, path, *access),
        Req::FileTool(tool, path) => {
            let access = if READ_TOOLS.contains(tool) { Access::Read } else { Access::Write };
            file(spec, tool, path, access)
        }
        Req::Fetch(host, port) => {
            let mut acc = network(spec, host, Some(*port));
            if acc.best.is_none() {
                acc.add(Decision::Deny, "default.network");
            }
            for (id, rule, d) in rules_of(spec) {
                let (name, arg) = split_rule(&rule);
                if name != "WebFetch" {
                    continue;
                }
                let hit = match arg {
                    None => true,
                    Some(a) => host_rule_matches(a.strip_prefix("domain:").unwrap(), host, Some(*port), Decision::Deny),
                };
                if hit {
                    acc.add(d, &id);
                }
            }
            acc.or(Decision::Deny, "default.network")
        }
        Req::Other(tool) => {
            let mut acc = Acc::default();
            for (id, rule, d) in rules_of(spec) {
                let server_rule = rule.strip_suffix("__*").unwrap_or(&rule);
                let hit = rule == *tool
                    || (rule.starts_with("mcp__")
                        && rule.matches("__").count() == 1
                        && tool.starts_with(&format!("{rule}__")))
                    || (rule.ends_with("__*") && tool.starts_with(&format!("{server_rule}__")));
                if hit {
                    acc.add(d, &id);
                }
            }
            acc.or(spec.default, "default.tools")
        }
    }
}

fn engine(policy: &portcullis_policy::Policy, req: &Req) -> (Decision, BTreeSet<String>) {
    let eval = |r: &Request<'_>| {
        let e = policy.evaluate(r);
        (e.decision, e.rules.iter().map(|r| r.id.clone()).collect())
    };
    match req {
        Req::Bash(line) => eval(&Request::ToolCall { tool: "Bash", input: &json!({ "command": line }) }),
        Req::Exec(argv) => eval(&Request::Exec { argv, cwd: Path::new(WORKDIR) }),
        Req::Connect(host, port) => eval(&Request::Connect { host, port: *port }),
        Req::Resolve(host) => eval(&Request::Resolve { name: host }),
        Req::File(path, access) => eval(&Request::FileAccess { path: Path::new(path), access: *access }),
        Req::FileTool(tool, path) => eval(&Request::ToolCall { tool, input: &json!({ "file_path": path }) }),
        Req::Fetch(host, port) => {
            eval(&Request::ToolCall { tool: "WebFetch", input: &json!({ "url": format!("https://{host}:{port}/x") }) })
        }
        Req::Other(tool) => eval(&Request::ToolCall { tool, input: &json!({}) }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn evaluator_agrees_with_the_naive_reference(spec in spec(), requests in prop::collection::vec(request(), 1..24)) {
        let text = spec.toml();
        let policy = portcullis_policy::Policy::load(&text, "random.toml", &super::env())
            .unwrap_or_else(|e| panic!("generated policy did not load:\n{text}\n{e}"));
        for req in &requests {
            prop_assert_eq!(engine(&policy, req), reference(&spec, req), "request {:?}\npolicy:\n{}", req, text);
        }
    }
}
