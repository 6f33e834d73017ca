//! `evaluate` on a policy with 200 tool and network rules, over a mix of requests.
//!
//! Run: `cargo bench -p portcullis-policy --bench evaluate`. Throughput is in decisions per
//! second (divan's `item/s`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark panics on setup errors")]

use std::path::PathBuf;

use divan::{Bencher, black_box, counter::ItemsCount};
use portcullis_policy::{Access, Environment, OwnedRequest, Policy};
use serde_json::json;

fn main() {
    divan::main();
}

const TOOLS: &[&str] = &["git", "cargo", "npm", "make", "docker", "kubectl", "python", "pip", "go", "terraform"];

/// 100 tool rules and 100 network rules, spread over allow, ask and deny.
fn policy_text() -> String {
    let mut allow = Vec::new();
    let mut ask = Vec::new();
    let mut deny = Vec::new();
    for (i, tool) in TOOLS.iter().enumerate() {
        allow.push(format!("Bash({tool} status *)"));
        allow.push(format!("Bash({tool} build *)"));
        allow.push(format!("Bash({tool} test:*)"));
        ask.push(format!("Bash({tool} push *)"));
        deny.push(format!("Bash({tool} push --force *)"));
        allow.push(format!("Read(./pkg{i}/**)"));
        ask.push(format!("Edit(./pkg{i}/Cargo.toml)"));
        deny.push(format!("Write(./pkg{i}/**/.env)"));
        allow.push(format!("mcp__server{i}__read"));
        deny.push(format!("mcp__server{i}__delete"));
    }
    let mut hosts_allow = Vec::new();
    let mut hosts_deny = Vec::new();
    for i in 0..40 {
        hosts_allow.push(format!("api{i}.example.com:443"));
        hosts_allow.push(format!("*.svc{i}.internal.io:443"));
    }
    for i in 0..20 {
        hosts_deny.push(format!("evil{i}.example.com"));
    }
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    format!(
        "[network]\nallow = [{}]\ndeny = [{}]\n[tools]\nallow = [{}]\nask = [{}]\ndeny = [{}]\n",
        list(&hosts_allow),
        list(&hosts_deny),
        list(&allow),
        list(&ask),
        list(&deny)
    )
}

fn requests() -> Vec<OwnedRequest> {
    let mut out = Vec::new();
    for (i, tool) in TOOLS.iter().enumerate() {
        out.push(OwnedRequest::bash(&format!("{tool} status --short")));
        out.push(OwnedRequest::bash(&format!("{tool} push --force origin main")));
        out.push(OwnedRequest::Exec {
            argv: vec![format!("/usr/bin/{tool}"), "build".into(), "--release".into()],
            cwd: PathBuf::from("/work/proj"),
        });
        out.push(OwnedRequest::Connect { host: format!("api{i}.example.com"), port: 443 });
        out.push(OwnedRequest::Connect { host: format!("a.b.svc{i}.internal.io"), port: 443 });
        out.push(OwnedRequest::Connect { host: format!("evil{i}.example.com"), port: 443 });
        out.push(OwnedRequest::Resolve { name: format!("unknown{i}.attacker.io") });
        out.push(OwnedRequest::FileAccess { path: PathBuf::from(format!("pkg{i}/src/lib.rs")), access: Access::Read });
        out.push(OwnedRequest::ToolCall {
            tool: "Edit".into(),
            input: json!({ "file_path": format!("/work/proj/pkg{i}/Cargo.toml") }),
        });
        out.push(OwnedRequest::ToolCall { tool: format!("mcp__server{i}__delete"), input: json!({}) });
    }
    out
}

fn setup() -> (Policy, Vec<OwnedRequest>) {
    let env = Environment::new("/work/proj", "/home/dev").unwrap();
    let policy = Policy::load(&policy_text(), "bench.toml", &env).unwrap();
    assert_eq!(policy.root().rules().filter(|r| r.origin == portcullis_policy::Origin::Policy).count(), 200);
    (policy, requests())
}

/// The whole mix, one decision per request.
#[divan::bench]
fn mixed(bencher: Bencher) {
    let (policy, requests) = setup();
    bencher.counter(ItemsCount::new(requests.len())).bench_local(|| {
        for r in &requests {
            black_box(policy.evaluate(&r.as_request()).decision);
        }
    });
}

/// Each request kind alone, to see where the time goes.
#[divan::bench(args = ["bash", "exec", "connect", "resolve", "file", "edit_tool", "mcp"])]
fn by_kind(bencher: Bencher, kind: &str) {
    let (policy, requests) = setup();
    let index = ["bash", "bash2", "exec", "connect", "connect2", "connect3", "resolve", "file", "edit_tool", "mcp"]
        .iter()
        .position(|k| *k == kind)
        .unwrap();
    let picked: Vec<&OwnedRequest> = requests.iter().skip(index).step_by(10).collect();
    bencher.counter(ItemsCount::new(picked.len())).bench_local(|| {
        for r in &picked {
            black_box(policy.evaluate(&r.as_request()).decision);
        }
    });
}

/// Loading and compiling the 200-rule policy.
#[divan::bench]
fn load(bencher: Bencher) {
    let env = Environment::new("/work/proj", "/home/dev").unwrap();
    let text = policy_text();
    bencher.bench_local(|| Policy::load(black_box(&text), "bench.toml", &env).unwrap());
}
