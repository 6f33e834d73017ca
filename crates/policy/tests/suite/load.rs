//! Loading: every problem at once, with line:column and hints.

use portcullis_policy::Policy;

use super::env;

fn problems(text: &str) -> Vec<(u32, u32, String, Option<String>)> {
    let errors = Policy::load(text, "p.toml", &env()).expect_err("the policy should not load");
    errors.problems.into_iter().map(|p| (p.location.line, p.location.column, p.message, p.hint)).collect()
}

#[test]
fn three_mistakes_are_all_reported_with_positions() {
    let text = "[network]\nalow = [\"x.io\"]\ndeny = [\"*.\"]\n\n[tools]\nrate = { Bash = \"60/fortnight\" }\n";
    let found = problems(text);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert_eq!((found[0].0, found[0].1), (2, 1));
    assert!(found[0].2.contains("unknown key `alow`"));
    assert_eq!(found[0].3.as_deref(), Some("did you mean `allow`?"));
    assert_eq!((found[1].0, found[1].1), (3, 9));
    assert!(found[1].2.contains("`*.`"), "{}", found[1].2);
    assert_eq!((found[2].0, found[2].1), (6, 17));
    assert!(found[2].2.contains("fortnight"));
}

#[test]
fn a_failing_example_is_a_load_error() {
    let text = r#"
[tools]
deny = [{ rule = "Bash(git push --force *)", match = ["git push -f origin main"] }]
"#;
    let found = problems(text);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].0, found[0].1), (3, 55));
    assert!(found[0].2.contains("should match `git push -f origin main`"), "{}", found[0].2);
}

#[test]
fn a_not_match_example_that_matches_is_a_load_error() {
    let text = r#"
[network]
allow = [{ rule = "*.github.com", not_match = ["api.github.com"] }]
"#;
    assert!(problems(text)[0].2.contains("should not match"));
}

#[test]
fn passing_examples_load() {
    super::policy(
        r#"
[network]
allow = [{ rule = "*.github.com:443", match = ["api.github.com:443"], not_match = ["github.com:443", "evilgithub.com:443"] }]
[filesystem]
hidden = [{ rule = "~/.config/acme", match = ["~/.config/acme/token"] }]
[tools]
deny = [{ rule = "Read(**/.env)", match = ["sub/.env"], not_match = ["env.txt"] }]
ask = [{ rule = "mcp__github", match = ["mcp__github__create_issue"] }]
allow = [{ rule = "WebFetch(domain:docs.rs)", match = ["https://docs.rs/serde"] }]
"#,
    );
}

#[test]
fn unknown_keys_everywhere_are_errors() {
    let text = r#"
colour = "red"
[limits]
wall_clok = "2h"
[agents.ci]
tools.alow = []
[[hooks.pre_tool_use]]
command = "x"
timout = "5s"
[audit]
retension = "9d"
"#;
    let found = problems(text);
    let keys: Vec<&str> = found.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(found.len(), 5, "{keys:#?}");
    for key in ["colour", "wall_clok", "alow", "timout", "retension"] {
        assert!(keys.iter().any(|k| k.contains(&format!("`{key}`"))), "{key} missing from {keys:?}");
    }
}

#[test]
fn wrong_types_and_units_are_errors() {
    let text = r#"
[network]
allow = "example.com"
outbound_bytes = "lots"
allow_cidrs = ["10.0.0.1/8"]
[limits]
memory = 4.5
tool_calls = -3
[tools]
default = "alow"
allow = ["Bassh(ls)", "WebFetch(docs.rs)"]
"#;
    let found = problems(text);
    assert_eq!(found.len(), 8, "{found:#?}");
    assert!(found.iter().any(|p| p.2.contains("`limits.memory` must be a string such as \"4 GiB\"")), "{found:#?}");
    assert!(found.iter().any(|p| p.3.as_deref() == Some("did you mean `allow`?")));
    assert!(found.iter().any(|p| p.3.as_deref() == Some("did you mean `Bash`?")));
}

#[test]
fn toml_syntax_errors_have_positions() {
    let found = problems("[network\nallow = [\n");
    assert!(!found.is_empty());
    assert_eq!(found[0].0, 1);
}

#[test]
fn report_shows_the_line_and_a_caret() {
    let err = Policy::load("[tools]\ndefault = \"maybe\"\n", "p.toml", &env()).unwrap_err();
    let report = err.to_string();
    assert!(report.contains("--> p.toml:2:11"), "{report}");
    assert!(report.contains("2 | default = \"maybe\""), "{report}");
    assert!(report.contains("^^^^^^^"), "{report}");
}

#[test]
fn hooks_audit_and_alerts_are_read() {
    let p = super::policy(
        r#"
[[hooks.pre_tool_use]]
matcher = "Bash"
command = "./hooks/check.sh"
timeout = "5s"
[audit]
retention = "30d"
durability = "sync"
[alerts]
working_hours = "08:00-18:30"
"#,
    );
    assert_eq!(p.hooks().pre_tool_use[0].timeout.as_secs(), 5);
    assert_eq!(p.audit().retention.as_secs(), 30 * 86_400);
    assert_eq!(p.alerts().working_hours, Some((480, 1110)));
}

#[test]
fn unknown_agent_is_an_error_naming_the_known_ones() {
    let p = super::policy("[agents.ci]\n");
    let e = p.profile(Some("cj")).unwrap_err().to_string();
    assert!(e.contains("`cj`") && e.contains("`ci`"), "{e}");
}

#[test]
fn guards_are_switched_by_name_and_typos_are_errors() {
    let p = super::policy("[guards]\nforce_push = \"ask\"\nfork_bomb = \"off\"\n");
    assert_eq!(p.guards().get("force_push"), Some(Some(portcullis_policy::Decision::Ask)));
    assert_eq!(p.guards().get("fork_bomb"), Some(None));
    assert_eq!(p.guards().get("remote_code"), None);
    let found = problems("[guards]\nforce_psh = \"ask\"\nfork_bomb = \"maybe\"\n");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(found[0].3.as_deref(), Some("did you mean `force_push`?"));
}

#[test]
fn environment_pass_lists_refuse_loader_variables_with_their_place() {
    let text = "[environment]\npass = [\"ANTHROPIC_API_KEY\", \"LD_PRELOAD\", \"L*\", \"BAD NAME\"]\n";
    let err = Policy::load(text, "p.toml", &env()).unwrap_err();
    let messages: Vec<String> = err.problems.iter().map(|p| p.message.clone()).collect();
    assert_eq!(err.problems.len(), 3, "{messages:?}");
    assert!(messages[0].contains("LD_PRELOAD") && messages[0].contains("never passed"), "{messages:?}");
    assert!(messages[1].contains("`L*`"), "{messages:?}");
    assert!(messages[2].contains("not an environment variable name"), "{messages:?}");
    let ok = Policy::load("[environment]\npass = [\"ANTHROPIC_*\", \"GITHUB_TOKEN\"]\n", "p.toml", &env()).unwrap();
    assert_eq!(ok.root().settings().environment, ["ANTHROPIC_*", "GITHUB_TOKEN"]);
}

/// A policy that sets no limits still bounds a session: a fork bomb or a memory balloon ends
/// the session, not the host. No limit at all is only ever an explicit "unlimited".
#[test]
fn a_policy_without_limits_gets_finite_defaults_and_unlimited_is_explicit() {
    let policy = Policy::load("[network]\nallow = [\"example.com\"]\n", "p.toml", &env()).unwrap();
    let limits = &policy.profile(None).unwrap().settings().limits;
    let total = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .unwrap()
        * 1024;
    assert_eq!(limits.memory.map(|m| m.0), Some((total / 2).min(4 << 30)));
    assert_eq!(limits.processes, Some(4096));
    assert_eq!(limits.disk.map(|d| d.0), Some(2 << 30));
    assert_eq!(limits.wall_clock, Some(std::time::Duration::from_secs(7200)));
    let text = "[limits]\nmemory = \"unlimited\"\nprocesses = \"Unlimited\"\nwall_clock = \"unlimited\"\n";
    let policy = Policy::load(text, "p.toml", &env()).unwrap();
    let limits = &policy.profile(None).unwrap().settings().limits;
    assert_eq!((limits.memory, limits.processes, limits.wall_clock), (None, None, None));
    // The overlay and /tmp are sized filesystems: the disk limit is always finite.
    let found = problems("[limits]\ndisk = \"unlimited\"\n");
    assert!(found.iter().any(|p| p.2.contains("limits.disk")), "{found:#?}");
}
