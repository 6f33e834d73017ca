//! Measures the shell guard against the third-party corpora (see `docs/guards.md`).
//!
//! `cargo run --release -p portcullis-guard --example corpus -- CORPORA_DIR [--misses]`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measurement tool stops on bad data")]

use std::collections::BTreeMap;
use std::path::Path;

use portcullis_guard::host::{self, Host};
use portcullis_guard::shell::{GuardSettings, analyze, analyze_argv};
use portcullis_policy::Decision;
use serde_json::Value;

/// Pages of ordinary development tools whose tldr examples form the benign set.
pub const BENIGN_PAGES: &[&str] = &[
    "git-status",
    "git-log",
    "git-diff",
    "git-commit",
    "git-add",
    "git-show",
    "git-blame",
    "git-branch",
    "git-fetch",
    "git-pull",
    "git-remote",
    "git-tag",
    "git-switch",
    "git-init",
    "git-clone",
    "git-config",
    "git-grep",
    "git-shortlog",
    "git-describe",
    "git-rev-parse",
    "git-ls-files",
    "git-merge",
    "git-rebase",
    "git-cherry-pick",
    "cargo",
    "cargo-build",
    "cargo-test",
    "cargo-run",
    "cargo-check",
    "cargo-clippy",
    "cargo-fmt",
    "cargo-doc",
    "cargo-add",
    "cargo-tree",
    "cargo-bench",
    "cargo-new",
    "cargo-init",
    "cargo-update",
    "cargo-metadata",
    "rustc",
    "rustup",
    "rustfmt",
    "npm",
    "npm-install",
    "npm-run",
    "npm-test",
    "npm-ls",
    "npm-init",
    "npx",
    "node",
    "yarn",
    "pnpm",
    "tsc",
    "eslint",
    "prettier",
    "jest",
    "pytest",
    "go",
    "go-build",
    "go-test",
    "go-run",
    "go-fmt",
    "go-vet",
    "go-mod",
    "ls",
    "grep",
    "rg",
    "cat",
    "head",
    "tail",
    "wc",
    "sort",
    "uniq",
    "diff",
    "make",
    "mkdir",
    "touch",
    "echo",
    "pwd",
    "cd",
    "which",
    "tree",
    "less",
    "jq",
    "sed",
    "find",
    "fd",
    "cut",
    "tr",
    "xargs",
    "du",
    "df",
    "file",
    "stat",
    "basename",
    "dirname",
    "realpath",
    "date",
    "env",
    "printf",
    "awk",
    "tee",
    "cmp",
    "comm",
    "paste",
    "column",
    "nl",
    "fold",
    "seq",
    "yes",
    "true",
    "false",
    "sleep",
    "time",
    "ps",
    "top",
    "uname",
    "whoami",
    "hostname",
    "id",
    "gzip",
    "tar",
    "zip",
    "unzip",
    "cp",
    "mv",
    "ln",
    "chmod",
    "readlink",
    "mktemp",
];

fn render(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else { break };
        let inner = &rest[start + 2..start + end];
        let pick = match inner.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(alts) => alts.split('|').next().unwrap_or_default(),
            None => inner,
        };
        out.push_str(pick);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// The labelling rule for the benign set: shell commands (not key presses such as `<Space>`)
/// that do not run under `sudo`.
pub fn is_ordinary(command: &str) -> bool {
    !command.starts_with('<') && !command.split(['|', ';', '&']).any(|part| part.trim_start().starts_with("sudo "))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map_or("../shared/corpora", String::as_str));
    let misses = args.iter().any(|a| a == "--misses");
    let settings = GuardSettings::default();

    println!("## GTFOBins (functions that must be asked or denied)");
    let mut by_function: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let wanted = ["shell", "reverse-shell", "bind-shell", "upload", "download", "file-write", "privilege-escalation"];
    let (mut total, mut flagged) = (0, 0);
    for case in lines(&dir.join("commands_gtfobins/cases.jsonl")) {
        let function = case["function"].as_str().unwrap().to_owned();
        let code = case["code"].as_str().unwrap();
        let hit = analyze(code, &settings).decision().is_some();
        let entry = by_function.entry(function.clone()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(hit);
        if wanted.contains(&function.as_str()) {
            total += 1;
            flagged += usize::from(hit);
            if !hit && misses {
                println!("MISS {function}: {code:?}");
            }
        }
    }
    for (function, (n, hit)) in &by_function {
        println!("{function:<22} {hit:>4}/{n:<4} {:5.1}%", 100.0 * *hit as f64 / *n as f64);
    }
    println!("required functions: {flagged}/{total} = {:.1}%", 100.0 * flagged as f64 / total as f64);

    println!("\n## Codex command-safety cases marked dangerous");
    for case in lines(&dir.join("commands_codex_tests/cases.jsonl")) {
        if case["property"] == "might_be_dangerous" {
            let argv: Vec<Vec<u8>> =
                case["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().as_bytes().to_vec()).collect();
            let d = analyze_argv(&argv, &settings).decision();
            let expected = case["expected"].as_bool().unwrap();
            let ok = d.is_some() == expected;
            println!(
                "{} expected {:<5} got {:<5} {:?}",
                if ok { "ok  " } else { "FAIL" },
                expected,
                d.map_or("none", Decision::as_str),
                case["argv"]
            );
        }
    }

    println!("\n## tldr benign set");
    let (mut n, mut deny, mut ask, mut skipped) = (0, 0, 0, 0);
    for case in lines(&dir.join("commands_tldr/cases.jsonl")) {
        let page = case["page"].as_str().unwrap();
        if case["platform"] == "osx" || !BENIGN_PAGES.contains(&page) {
            continue;
        }
        let command = render(case["command_template"].as_str().unwrap());
        if !is_ordinary(&command) {
            skipped += 1;
            continue;
        }
        let a = analyze(&command, &settings);
        n += 1;
        match a.decision() {
            Some(Decision::Deny) => deny += 1,
            Some(Decision::Ask) => ask += 1,
            _ => {}
        }
        if misses && a.decision().is_some() {
            let families: Vec<&str> = a.findings.iter().map(|f| f.family).collect();
            println!("{:<5} {families:?} {command}", a.decision().unwrap().as_str());
        }
    }
    println!("{skipped} examples left out: key presses and commands run under sudo");
    println!(
        "{n} commands: {deny} denied ({:.1}%), {ask} asked ({:.1}%)",
        100.0 * deny as f64 / n as f64,
        100.0 * ask as f64 / n as f64
    );

    println!("\n## SSRF list: internal targets classified special");
    let (mut internal, mut special) = (0, 0);
    for case in lines(&dir.join("paths_urls/ssrf_bypass_urls.jsonl")) {
        let payload = case["payload"].as_str().unwrap();
        let section = case["section"].as_str().unwrap_or_default();
        // Redirect services, PHP snippets and named attacker hosts are not internal targets.
        if section.contains("Redirect") || section.contains("PHP") {
            continue;
        }
        let url = payload.strip_prefix("ssrf.php?url=").unwrap_or(payload);
        let target = host::parse_url(url);
        let external = |n: &str| {
            ["r3dir", "evil", "attacker", "brutelogic", "domain"].iter().any(|e| n.contains(e)) || n == "example.com"
        };
        match &target {
            Ok(t) if matches!(&t.host.host, Host::Name(n) if external(n)) => continue,
            // Templates (`dict://<user>…`, `gopher://[host]…`) and local files name no address.
            Err(_) if url.contains('<') || url.contains("[host]") || url.contains("scheme://") => continue,
            Err(host::HostError::NoHost(_)) if url.starts_with("file:") || url.starts_with("netdoc:") => continue,
            _ => {}
        }
        internal += 1;
        let hit = target.as_ref().is_ok_and(|t| t.host.special.is_some());
        special += usize::from(hit);
        if !hit && misses {
            println!("MISS {url:?}: {:?}", target.map(|t| t.host.host));
        }
    }
    println!(
        "{special}/{internal} = {:.1}% (a miss that is not a valid URL is never dialled)",
        100.0 * special as f64 / internal as f64
    );
}
