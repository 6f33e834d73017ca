//! The audit trail from the outside: out of the agent's reach, no audit no action, crash safety
//! with the real supervisor killed, and the `audit` commands over a real session's records.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::egress::{mapping_available, run_in_mount_namespace};
use super::run::{Case, NOBODY, Session, User, available, both, is_root};

/// `portcullis audit ARGS --store STATE/audit` as the case's user.
fn audit(case: &Case, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(&case.bin);
    cmd.arg("audit").args(args).arg("--store").arg(case.state.join("audit"));
    cmd.env("HOME", &case.home).env("PORTCULLIS_STATE_DIR", &case.state).stdin(Stdio::null());
    if case.user == User::Unprivileged && is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

// ---------------------------------------------------------------- escape tests

both!(the_store_and_its_key_cannot_be_listed_read_or_written_from_inside, |user| {
    let case = Case::new(user);
    // The store sits in a directory the policy shows the agent, read-only: the walls must
    // still hide it, and the key beside it.
    let shared = case.work.parent().unwrap().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(shared.join("visible.txt"), "shown\n").unwrap();
    if user == User::Unprivileged && is_root() {
        for p in [&shared, &shared.join("visible.txt")] {
            std::os::unix::fs::lchown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let store = shared.join("audit");
    let policy = case.policy(&format!(
        "[filesystem]\nread_only = [\"{}\"]\n[audit]\ndir = \"{}\"\n",
        shared.display(),
        store.display()
    ));
    let first = case.sh(&["--policy", &policy], "true\n");
    assert_eq!(first.code, 0, "{first:?}");
    let segment = store.join("00000001.jsonl");
    assert!(segment.exists() && shared.join("audit.key").exists());
    let s = case.sh(
        &["--policy", &policy],
        &format!(
            "cat {shared}/visible.txt\n\
             ls {store} >/dev/null 2>&1 && echo listed || echo 'list refused'\n\
             cat {segment} >/dev/null 2>&1 && echo read || echo 'read refused'\n\
             (echo forged >> {segment}) 2>/dev/null && echo written || echo 'write refused'\n\
             cat {shared}/audit.key 2>/dev/null | grep -q . && echo 'key read' || echo 'key refused'\n",
            shared = shared.display(),
            store = store.display(),
            segment = segment.display(),
        ),
    );
    let lines = s.lines();
    assert_eq!(lines, ["shown", "list refused", "read refused", "write refused", "key refused"], "{s:?}");
    // And the trail is intact: nothing the agent did reached it.
    let report = portcullis_verify(&case, &store);
    assert_eq!(report["problem"], Value::Null, "{report}");
});

/// `audit verify --json` on `store`, with the host key beside it.
fn portcullis_verify(case: &Case, store: &Path) -> Value {
    let mut cmd = Command::new(&case.bin);
    cmd.args(["audit", "verify", "--json", "--store"]).arg(store).env("HOME", &case.home);
    if case.user == User::Unprivileged && is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = cmd.output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"))
}

// ---------------------------------------------------------------- no audit, no action

both!(a_full_store_refuses_the_call_and_ends_the_session_naming_the_cause, |user| {
    if !mapping_available(user) {
        return;
    }
    let case = Case::new(user);
    let small = case.work.parent().unwrap().join("small");
    std::fs::create_dir_all(&small).unwrap();
    // No floor: this is the disk filling regardless (the floor has its own test).
    let policy = case.policy(&format!("[audit]\ndir = \"{}/audit\"\nmin_free = \"0 B\"\n", small.display()));
    case.script("agent.sh", "i=0\nwhile [ $i -lt 3000 ]; do /bin/true; i=$((i+1)); done\necho survived\n");
    let s = run_in_mount_namespace(
        &case,
        "mount -t tmpfs -o size=64k,mode=0777 tmpfs \"$0\"",
        &small,
        &["--policy", &policy],
        &["/bin/sh", "agent.sh"],
    );
    assert!(!s.stdout.contains("survived"), "the session went on without its records: {s:?}");
    assert_eq!(s.code, 2, "{s:?}");
    assert!(s.stderr.contains("No space left on device"), "the cause is not named: {}", s.stderr);
    assert!(s.stderr.contains("audit store"), "{}", s.stderr);
});

/// A python agent sending `count` lookups to the sandbox's resolver, one at a time, each name
/// made by `name(i)`; prints how many were answered.
fn dns_flood(name: &str, seconds: f64) -> String {
    format!(
        r#"import socket, struct, time
def query(name, qid):
    q = struct.pack('>HHHHHH', qid, 0x0100, 1, 0, 0, 0)
    for label in name.split('.'):
        q += bytes([len(label)]) + label.encode()
    return q + b'\0' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect(('127.0.0.1', 53))
answered, i, end = 0, 0, time.time() + {seconds}
while time.time() < end:
    i += 1
    s.send(query({name}, i & 0xffff))
    try:
        s.recv(512)
        answered += 1
    except socket.timeout:
        pass
    if i % 500 == 0:
        print('answered', answered, flush=True)
print('answered', answered, flush=True)
"#
    )
}

/// The last `answered N` line the flood printed.
fn answered(s: &Session) -> u64 {
    s.stdout.lines().rev().find_map(|l| l.strip_prefix("answered ")?.parse().ok()).unwrap_or(0)
}

both!(a_flood_of_one_refused_lookup_is_folded_and_every_attempt_counted, |user| {
    let case = Case::new(user);
    let s = case.python(&[], &dns_flood("'exfil.attacker.example'", 2.0));
    assert_eq!(s.code, 0, "{s:?}");
    let sent = answered(&s);
    assert!(sent > 200, "the flood was too slow to test anything: {sent} lookups");
    let records: Vec<Value> = case.events(&s).into_iter().filter(|r| r["kind"] == "dns").collect();
    // The first two of each interval whole, the last with the count it stands for.
    assert!(records.len() <= 3 * 4, "{} records for {sent} identical refusals", records.len());
    let counted: u64 = records.iter().map(|r| 1 + r["data"]["folded"].as_u64().unwrap_or(0)).sum();
    assert_eq!(counted, sent, "every attempt is counted: {records:#?}");
    assert_eq!(records.last().unwrap()["data"]["attempt"], sent);
    assert!(!s.limits_hit().contains("audit volume"), "{}", s.limits_hit());
});

both!(a_flood_of_distinct_refused_lookups_ends_the_session_at_its_record_budget, |user| {
    let case = Case::new(user);
    let policy = case.policy("[audit]\nsession_records_per_second = 200\n");
    let s = case.python(&["--policy", &policy], &dns_flood("f'n{i}.attacker.example'", 20.0));
    assert!(s.limits_hit().contains("audit volume"), "{s:?}");
    assert!(s.summary["duration_ms"].as_u64().unwrap() < 15_000, "the session was not ended: {s:?}");
    let records = case.events(&s);
    // Ten seconds' worth at once, then the rate: far fewer than the flood sent.
    let seconds = s.summary["duration_ms"].as_u64().unwrap() / 1000 + 1;
    assert!(records.len() as u64 <= 2000 + 200 * seconds + 50, "{} records", records.len());
    let limit = records.iter().find(|r| r["event"] == "limit_reached").expect("the limit is on the record");
    assert!(limit["data"]["limit"].as_str().unwrap().contains("session_records_per_second"), "{limit}");
    assert_eq!(records.last().unwrap()["event"], "session_end", "the end is still recorded");
});

both!(a_store_below_its_free_space_floor_refuses_new_sessions_and_ends_running_ones, |user| {
    if !mapping_available(user) {
        return;
    }
    let case = Case::new(user);
    // A session does not start below the floor.
    let policy = case.policy("[audit]\nmin_free = \"1000 TiB\"\n");
    let s = case.run_with(&["--policy", &policy], &["/bin/sh", "-c", "echo ran"], |_| {});
    assert_ne!(s.code, 0, "{s:?}");
    assert!(!s.stdout.contains("ran"), "{s:?}");
    assert!(s.stderr.contains("below the store's floor") && s.stderr.contains("min_free"), "{}", s.stderr);
    // A running session ends when the store's filesystem falls below it: 16 MiB, a floor of
    // 12, a flood of distinct refusals filling it, and no record budget to stop it first.
    let small = case.work.parent().unwrap().join("small");
    std::fs::create_dir_all(&small).unwrap();
    let policy = case.policy(&format!(
        "[audit]\ndir = \"{}/audit\"\nmin_free = \"12 MiB\"\nsession_records_per_second = 1000000\n",
        small.display()
    ));
    case.script("agent.py", &dns_flood("f'n{i}.attacker.example'", 60.0));
    let s = run_in_mount_namespace(
        &case,
        "mount -t tmpfs -o size=16m,mode=0777 tmpfs \"$0\"",
        &small,
        &["--policy", &policy],
        &["/usr/bin/python3", "agent.py"],
    );
    assert_eq!(s.code, 2, "{s:?}");
    assert!(s.summary["duration_ms"].as_u64().unwrap() < 50_000, "the session was not ended: {s:?}");
    let problems = s.summary["problems"].to_string();
    assert!(problems.contains("below the store's floor"), "the cause is not named: {problems}");
});

both!(a_retried_refusal_is_marked_as_a_repeat_on_the_record, |user| {
    // A shell searching its PATH tries each directory (here one named twice), and a resolver
    // retries a refused lookup: each is a real attempt, and reads as one.
    let case = Case::new(user);
    let key = case.home.join(".ssh/id_ed25519");
    let s = case.sh(
        &[],
        &format!("PATH=/usr/bin:/usr/bin head -c 4 {} || true\ngetent hosts attacker.example || true\n", key.display()),
    );
    let records = case.events(&s);
    let heads: Vec<&Value> =
        records.iter().filter(|r| r["kind"] == "exec" && r["input"]["argv"][0] == "head").collect();
    assert!(heads.len() >= 2, "the shell tried each directory: {heads:#?}");
    for (i, r) in heads.iter().enumerate() {
        assert_eq!(r["decision"]["decision"], "deny");
        let attempt = if i == 0 { Value::Null } else { Value::from(i as u64 + 1) };
        assert_eq!(r["data"]["attempt"], attempt, "{r}");
    }
    for qtype in ["A", "AAAA"] {
        let lookups: Vec<&Value> =
            records.iter().filter(|r| r["kind"] == "dns" && r["input"]["qtype"] == qtype).collect();
        for (i, r) in lookups.iter().enumerate() {
            let attempt = if i == 0 { Value::Null } else { Value::from(i as u64 + 1) };
            assert_eq!(r["data"]["attempt"], attempt, "{r}");
        }
    }
    let id = s.summary["session"].as_str().unwrap();
    let (_, out, _) = audit(&case, &["show", id]);
    assert!(out.contains("[attempt 2, as /usr/bin/head]"), "{out}");
});

// ---------------------------------------------------------------- crash safety

both!(killing_the_supervisor_under_load_keeps_every_durable_record_and_the_chain_goes_on, |user| {
    if !available(user) {
        return;
    }
    let case = Case::new(user);
    case.script("agent.sh", "while :; do /bin/true; done\n");
    for round in 0..2u64 {
        let mut child = case.command(&[], &["/bin/sh", "agent.sh"]).spawn().unwrap();
        // Let it write for a while, under a steady stream of execs.
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        child.kill().unwrap(); // SIGKILL to the supervisor
        child.wait().unwrap();
        let report = portcullis_verify(&case, &case.state.join("audit"));
        assert_eq!(report["problem"], Value::Null, "round {round}: {report}");
        assert!(report["records"].as_u64().unwrap() > 20, "round {round}: {report}");
    }
    // The next session repairs a torn tail, if there was one, and chains on.
    let s = case.run(&[], &["/bin/true"]);
    assert_eq!(s.code, 0, "{s:?}");
    let report = portcullis_verify(&case, &case.state.join("audit"));
    assert_eq!((report["problem"].clone(), report["torn"].clone()), (Value::Null, Value::Null), "{report}");
    assert_eq!(report["signed_through"], report["last_seq"], "a finished session ends with a checkpoint: {report}");
    let records = case.events(&s);
    assert_eq!(records.last().unwrap()["event"], "session_end");
});

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = super::run::walk(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

both!(a_killed_supervisor_is_closed_by_the_next_session, |user| {
    use std::io::BufRead;
    let case = Case::new(user);
    case.script("agent.sh", "echo started\nsleep 60\n");
    let mut child = case.command(&[], &["/bin/sh", "agent.sh"]).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "started\n");
    let store = case.state.join("audit");
    let live: Vec<_> = std::fs::read_dir(store.join("live")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(live.len(), 1, "{live:?}");
    let entry: Value = serde_json::from_slice(&std::fs::read(&live[0]).unwrap()).unwrap();
    let id = entry["session"].as_str().unwrap().to_owned();
    let cgroup: Vec<std::path::PathBuf> =
        entry["cgroup"].as_array().map_or(Vec::new(), |a| a.iter().map(|d| d.as_str().unwrap().into()).collect());
    if user == User::Root {
        assert!(!cgroup.is_empty(), "a session as root has a cgroup: {entry}");
    }
    child.kill().unwrap(); // SIGKILL to the supervisor
    child.wait().unwrap();
    for d in &cgroup {
        assert!(d.is_dir(), "the lost session's cgroup `{}` is left behind", d.display());
    }
    // Commands that only read report the session open, and write nothing.
    let before = files(&store);
    let (code, out, _) = audit(&case, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact") && out.contains(&format!("session {id} is open: its supervisor")), "{out}");
    let (code, out, _) = audit(&case, &["show", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("was lost before the session ended"), "{out}");
    assert!(files(&store) == before, "a command that only reads wrote to the store");
    // The next session records its end, and removes its cgroup.
    let s = case.run(&[], &["/bin/true"]);
    assert_eq!(s.code, 0, "{s:?}");
    assert!(s.stderr.contains(&format!("session {id} lost its supervisor")), "{}", s.stderr);
    let records: Vec<Value> = case.events_of(&id);
    let end = records.last().unwrap();
    assert_eq!(end["event"], "session_end", "{end}");
    assert_eq!(end["data"]["supervisor_lost"], true, "{end}");
    assert_eq!(end["data"]["closed_by"], s.summary["session"], "{end}");
    assert_eq!(records.iter().filter(|r| r["event"] == "session_end").count(), 1);
    for d in &cgroup {
        assert!(!d.exists(), "the lost session's cgroup `{}` is still there", d.display());
    }
    let (code, out, _) = audit(&case, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("is open"), "{out}");
});

// ---------------------------------------------------------------- the commands

both!(show_query_and_verify_read_a_real_session, |user| {
    let case = Case::new(user);
    let policy = case.policy("[tools]\ndeny = [\"Bash(id *)\"]\n");
    let s = case.sh(&["--policy", &policy], "ls >/dev/null\n/usr/bin/id 2>/dev/null || echo refused\n");
    assert_eq!(s.lines(), ["refused"], "{s:?}");
    let id = s.summary["session"].as_str().unwrap().to_owned();
    let (code, out, _) = audit(&case, &["show", &id]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("session {id}")), "{out}");
    let deny = out.lines().find(|l| l.contains("DENY")).unwrap_or_else(|| panic!("no denial shown: {out}"));
    assert!(deny.contains("/usr/bin/id") && deny.contains("Bash(id *)"), "{deny}");
    assert!(out.lines().any(|l| l.contains("allow") && l.contains(" ls")), "{out}");
    // Query: the same denial as JSON, and nothing for a session that does not exist.
    let (_, out, _) = audit(&case, &["query", "--kind", "exec", "--decision", "deny", "--json"]);
    let denied: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(denied.len(), 1, "{out}");
    assert_eq!(denied[0]["input"]["argv"][0], "/usr/bin/id");
    let (_, out, _) = audit(&case, &["query", "--tool", "ls", "--json", "--since", "1h"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (_, out, _) = audit(&case, &["query", "--session", "nope", "--json"]);
    assert!(out.is_empty());
    let (code, out, _) = audit(&case, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    // Export: OCSF classes, the denial blocked.
    let (code, out, _) = audit(&case, &["export", "--format", "ocsf", "--session", &id]);
    assert_eq!(code, 0);
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let blocked: Vec<&Value> = events.iter().filter(|e| e["class_uid"] == 1007 && e["disposition_id"] == 2).collect();
    assert_eq!(blocked.len(), 1, "{out}");
    assert!(blocked[0]["process"]["cmd_line"].as_str().unwrap().starts_with("/usr/bin/id"));
    assert!(events.iter().any(|e| e["class_uid"] == 6002 && e["activity_id"] == 3), "the session's start");
    // Nothing is old enough to prune.
    let (code, out, _) = audit(&case, &["prune", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing is older than 90d"), "{out}");
    // Tampering turns verify red and names the record.
    let segment = case.state.join("audit/00000001.jsonl");
    let text = std::fs::read_to_string(&segment).unwrap().replace("/usr/bin/id", "/usr/bin/ls");
    std::fs::write(&segment, text).unwrap();
    let (code, out, _) = audit(&case, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("TAMPERED") && out.contains("first bad record") && out.contains("00000001.jsonl line"),
        "{out}"
    );
});

// ---------------------------------------------------------------- alerts

both!(alerts_are_recorded_printed_and_handed_to_the_alert_command, |user| {
    let case = Case::new(user);
    let received = case.work.parent().unwrap().join("alerts.jsonl");
    // Outside the workdir: a program the agent could rewrite is refused (`host_program`).
    let script = case.work.parent().unwrap().join("alert.sh");
    std::fs::write(&script, "#!/bin/sh\n[ \"$PWD\" = / ] || exit 9\ncat >> \"$1\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let policy = case.policy(&format!(
        "[tools]\ndeny = [\"Bash(id *)\"]\n[alerts]\nrepeated_denials = 3\ncommand = [{:?}, {:?}]\n",
        script.display().to_string(),
        received.display().to_string()
    ));
    let s = case.sh(&["--policy", &policy], "for i in 1 2 3 4 5; do /usr/bin/id 2>/dev/null; done; ls >/dev/null\n");
    assert_eq!(s.code, 0, "{s:?}");
    assert!(s.stderr.contains("ALERT repeated_denials"), "{}", s.stderr);
    assert!(s.stderr.contains("ALERT first_tool_use: agent default used `ls`"), "{}", s.stderr);
    assert!(!s.stderr.contains("used `sh`"), "the command `run` was given is not the agent's tool: {}", s.stderr);
    let handed: Vec<Value> = std::fs::read_to_string(&received)
        .unwrap_or_else(|e| panic!("the alert command did not run: {e}; {}", s.stderr))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(handed.iter().any(|a| a["trigger"] == "repeated_denials" && a["details"]["denials"] == 3), "{handed:?}");
    let stored: Vec<Value> = case.events(&s).into_iter().filter(|r| r["kind"] == "alert").collect();
    assert_eq!(stored.len(), handed.len(), "{stored:?}");
    // The next session knows `ls` already.
    let again = case.sh(&["--policy", &policy], "ls >/dev/null\n");
    assert!(!again.stderr.contains("used `ls`"), "{}", again.stderr);
    // Quiet, a new tool's alert is stored and handed on, not printed.
    let quiet = case.sh(&["--policy", &policy, "-q"], "wc -c agent.sh >/dev/null\n");
    assert!(!quiet.stderr.contains("ALERT"), "{}", quiet.stderr);
    let stored = case.events(&quiet).into_iter().filter(|r| r["kind"] == "alert").count();
    assert_eq!(stored, 1, "{}", quiet.stderr);
    assert!(std::fs::read_to_string(&received).unwrap().contains("used `wc`"));
});

both!(an_alert_script_the_agent_can_rewrite_is_refused_before_the_session_starts, |user| {
    let case = Case::new(user);
    // The starter policy once suggested `./hooks/page-oncall.sh`: in the project, where a
    // session written through (or an applied one) rewrites it, and the next alert runs the
    // agent's code on the host as the user who started `run`.
    let marker = case.work.parent().unwrap().join("ran-on-the-host");
    std::fs::create_dir_all(case.work.join("hooks")).unwrap();
    let page = case.work.join("hooks/page-oncall.sh");
    std::fs::write(&page, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&page, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Also through a link outside the project that points into it.
    let link = case.work.parent().unwrap().join("page-link");
    std::os::unix::fs::symlink(&page, &link).unwrap();
    for command in ["./hooks/page-oncall.sh".to_owned(), link.display().to_string()] {
        let policy = case.policy(&format!(
            "[tools]\ndeny = [\"Bash(id *)\"]\n[alerts]\nrepeated_denials = 1\ncommand = {command:?}\n"
        ));
        case.script("agent.sh", "/usr/bin/id; ls\n");
        let s = case.run_with(&["--policy", &policy, "--no-ephemeral"], &["/bin/sh", "agent.sh"], |_| {});
        assert_eq!(s.code, 2, "{s:?}");
        assert!(s.stderr.contains("which the agent can write from inside the sandbox"), "{}", s.stderr);
        assert!(!marker.exists(), "the alert script ran");
    }
});

#[test]
fn an_alert_command_with_shell_syntax_is_refused_by_the_policy_check() {
    let dir = super::TempDir::new();
    std::fs::write(dir.path().join("p.toml"), "[alerts]\ncommand = \"notify $(cat /tmp/x)\"\n").unwrap();
    let out = super::portcullis(&["policy", "check", "p.toml"], dir.path(), None);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("is run without a shell"), "{}", out.stderr);
}

// ---------------------------------------------------------------- replay

/// `audit replay ID --json`, passing the flag the case's sessions run with (the unprivileged
/// user has no cgroups here: see the `run` suite's note).
fn replay<'a>(case: &Case, id: &'a str) -> Vec<&'a str> {
    let mut args = vec!["replay", id, "--json"];
    if case.user == User::Unprivileged {
        args.push("--dangerously-allow-partial-sandbox=cgroups");
    }
    args
}

both!(a_session_whose_refusals_were_folded_still_replays, |user| {
    let case = Case::new(user);
    let policy = case.policy("[tools]\ndeny = [\"Bash(id *)\"]\n");
    case.script("agent.sh", "i=0\nwhile [ $i -lt 300 ]; do /usr/bin/id 2>/dev/null; i=$((i+1)); done\nexit 0\n");
    let s = case.run(&["--policy", &policy], &["/bin/sh", "agent.sh"]);
    assert_eq!(s.code, 0, "{s:?}");
    let id = s.summary["session"].as_str().unwrap().to_owned();
    let refused: Vec<Value> =
        case.events(&s).into_iter().filter(|r| r["kind"] == "exec" && r["decision"]["decision"] == "deny").collect();
    assert!(refused.len() < 300, "the refusals were not folded: {}", refused.len());
    let counted: u64 = refused.iter().map(|r| 1 + r["data"]["folded"].as_u64().unwrap_or(0)).sum();
    assert_eq!(counted, 300, "every refusal is counted");
    let (code, out, err) = audit(&case, &replay(&case, &id));
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["reconstructed"], true, "{report}");
});

both!(a_fifty_call_session_replays_exactly_and_a_new_policy_shows_the_calls_it_flips, |user| {
    let case = Case::new(user);
    let policy = case.policy("[tools]\ndeny = [\"Bash(id *)\"]\n");
    // 1 shell + 45 echoes + 2 refused ids + cat + wc + sort = 51 execs, deterministic.
    case.script(
        "agent.sh",
        "i=0\nwhile [ $i -lt 45 ]; do /bin/echo $i > out.$i; i=$((i+1)); done\n\
         /usr/bin/id 2>/dev/null; /usr/bin/id -u 2>/dev/null\n/bin/cat out.1 out.2 | /usr/bin/wc -l | /usr/bin/sort\nexit 3\n",
    );
    let s = case.run(&["--policy", &policy], &["/bin/sh", "agent.sh"]);
    assert_eq!(s.code, 3, "{s:?}");
    let id = s.summary["session"].as_str().unwrap().to_owned();
    let execs: Vec<Value> = case.events(&s).into_iter().filter(|r| r["kind"] == "exec").collect();
    assert!(execs.len() >= 50, "{} execs", execs.len());
    let (code, out, err) = audit(&case, &replay(&case, &id));
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert_eq!(code, 0, "{report}\n{err}");
    assert_eq!(report["calls"].as_u64(), Some(execs.len() as u64), "{report}");
    assert_eq!(report["decisions_matching"], report["calls"], "{report}");
    assert_eq!(report["outcomes_matching"], report["calls"], "{report}");
    assert_eq!(report["replay"]["exit_code"], 3, "{report}");
    assert_eq!(report["reconstructed"], true, "{report}");
    // The replay ran in an overlay: the workdir did not gain the agent's files.
    assert!(!case.work.join("out.1").exists());
    // A policy that denies echo flips exactly the echoes.
    let stricter = case.policy("[tools]\ndeny = [\"Bash(id *)\", \"Bash(echo *)\"]\n");
    let (code, out, err) = audit(&case, &["replay", &id, "--policy", &stricter, "--json"]);
    assert_eq!(code, 0, "{err}");
    let what_if: Value = serde_json::from_str(&out).unwrap();
    let flipped: Vec<u64> = what_if["changed"].as_array().unwrap().iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    let echoes: Vec<u64> =
        execs.iter().filter(|r| r["input"]["argv"][0] == "/bin/echo").map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(echoes.len(), 45);
    assert_eq!(flipped, echoes, "{what_if}");
    assert!(what_if["changed"].as_array().unwrap().iter().all(|c| c["recorded"] == "allow" && c["new"] == "deny"));
    // A tampered decision is not reconstructed.
    let segment = case.state.join("audit/00000001.jsonl");
    let text = std::fs::read_to_string(&segment).unwrap();
    let forged = text.replacen("\"decision\":{\"decision\":\"deny\"", "\"decision\":{\"decision\":\"allow\"", 1);
    assert_ne!(text, forged);
    std::fs::write(&segment, forged).unwrap();
    let (code, out, _) = audit(&case, &["replay", &id, "--decisions-only"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("reconstructed: NO"), "{out}");
});

#[test]
fn hooks_shows_p50_and_p99_per_hook() {
    let dir = super::TempDir::new();
    let store_dir = dir.path().join("audit");
    let store = portcullis_harness::audit::open_store(&store_dir, portcullis_audit::Options::default()).unwrap();
    for i in 1..=100u64 {
        for (hook, scale) in [("lint.sh", 1000), ("secrets-scan", 10)] {
            let mut r = portcullis_audit::Record::new(portcullis_audit::Kind::Hook, "pre_tool_use", "s1");
            r.tool = Some("Bash".into());
            r.data.insert("hook".into(), hook.into());
            r.latency_us = Some(i * scale);
            store.append(r).unwrap();
        }
    }
    store.close().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "hooks", "--json", "--store"])
        .arg(&store_dir)
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"));
    assert_eq!(rows[0]["hook"], "lint.sh");
    assert_eq!(
        (rows[0]["runs"].as_u64(), rows[0]["p50_us"].as_u64(), rows[0]["p99_us"].as_u64()),
        (Some(100), Some(50_000), Some(99_000))
    );
    assert_eq!((rows[1]["hook"].as_str(), rows[1]["max_us"].as_u64()), (Some("secrets-scan"), Some(1000)));
}

both!(tail_follow_streams_a_session_as_it_happens, |user| {
    use std::io::BufRead;
    let case = Case::new(user);
    let first = case.run(&[], &["/bin/true"]);
    assert_eq!(first.code, 0, "{first:?}");
    let mut cmd = Command::new(&case.bin);
    cmd.args(["audit", "tail", "-f", "-n", "0", "--store"]).arg(case.state.join("audit"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    if user == User::Unprivileged && is_root() {
        use std::os::unix::process::CommandExt;
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let mut tail = cmd.spawn().unwrap();
    let stdout = tail.stdout.take().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let s = case.sh(&[], "ls >/dev/null\n");
    assert_eq!(s.code, 0, "{s:?}");
    let id = s.summary["session"].as_str().unwrap().to_owned();
    // A watchdog: the tail must show the session's end within seconds.
    let pid = tail.id();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(20));
        let _ = Command::new("kill").arg(pid.to_string()).status();
    });
    let mut seen = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let record: Value = serde_json::from_str(&line.unwrap()).expect("JSON when not on a terminal");
        seen.push(record["event"].as_str().unwrap_or_default().to_owned());
        if record["session"] == id.as_str() && record["event"] == "session_end" {
            break;
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seen.first().map(String::as_str), Some("session_start"), "-n 0 starts at the end: {seen:?}");
    assert!(seen.iter().any(|e| e == "exec"), "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("session_end"), "{seen:?}");
});

both!(concurrent_sessions_share_one_chain, |user| {
    let case = Case::new(user);
    case.script("agent.sh", "i=0\nwhile [ $i -lt 150 ]; do /bin/true; i=$((i+1)); done\n");
    let children: Vec<_> = (0..3).map(|_| case.command(&[], &["/bin/sh", "agent.sh"]).spawn().unwrap()).collect();
    let sessions: Vec<Session> = children.into_iter().map(|c| Session::from(c.wait_with_output().unwrap())).collect();
    let report = portcullis_verify(&case, &case.state.join("audit"));
    assert_eq!(report["problem"], Value::Null, "{report}");
    for s in &sessions {
        assert_eq!(s.code, 0, "{s:?}");
        let execs = case.events(s).into_iter().filter(|r| r["kind"] == "exec").count();
        assert_eq!(execs, 151, "every exec of every session is in the one chain");
    }
});
