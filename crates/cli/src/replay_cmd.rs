//! `portcullis audit replay`: does the trail reconstruct the session?
//!
//! 1. Every recorded call (exec, tool call) is decided again under the policy the session ran
//!    with (its text is in the session's start record; none means the built-in policy), by the
//!    same code that decided it live: the decisions must match.
//! 2. The session's command is run again in a fresh ephemeral sandbox under that policy, and
//!    each recorded exec must occur again, with the same decision, and the session must end
//!    with the same exit status. What the agent did depends on the workdir as it is now; the
//!    overlay keeps the replay from changing it.
//!
//! With `--policy NEW`, nothing runs: the calls are decided under NEW, and those whose decision
//! would change are listed (a dry run for a policy edit).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Mutex;

use anyhow::{Context, Result, bail};
use clap::Args;
use portcullis_audit::read::{self, Filter};
use portcullis_audit::{Kind, Stored};
use portcullis_harness::Decider;
use portcullis_harness::audit::Collected;
use portcullis_harness::exec_gate::{ExecGate, Tally};
use portcullis_policy::{Decision, Environment, Policy, Request};
use portcullis_sandbox::monitor::ExecRequest;
use serde::Serialize;
use serde_json::{Value, json};

#[derive(Debug, Args)]
#[command(after_help = "Exits 0 when the session is reconstructed (every decision and every outcome \
matches), 1 when it is not, 2 when it cannot be replayed. With --policy, exits 0 and lists the calls \
the new policy would decide differently.

Examples:
  portcullis audit replay 20261124-101500-3fa2c1
  portcullis audit replay 20261124-101500-3fa2c1 --policy stricter.toml
  portcullis audit replay 20261124-101500-3fa2c1 --decisions-only --json")]
pub(crate) struct ReplayArgs {
    /// The session id.
    session: String,
    /// Decide the calls under this policy instead, and list what would change (nothing runs).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Re-decide only; do not run the session again.
    #[arg(long)]
    decisions_only: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Run the session again even when these layers are missing, as `run` takes the flag
    /// (comma-separated: namespaces, overlayfs, landlock, seccomp, cgroups).
    #[arg(long, value_name = "LAYERS", value_delimiter = ',', num_args = 1, require_equals = true, action = clap::ArgAction::Append)]
    dangerously_allow_partial_sandbox: Vec<crate::run_cmd::Layer>,
}

/// One recorded call, replayed.
#[derive(Debug, Serialize)]
struct Call {
    seq: u64,
    kind: &'static str,
    what: String,
    recorded: Decision,
    decided: Decision,
    decision_matches: bool,
    /// For execs: the replayed session made it again, with the same decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_matches: Option<bool>,
}

/// The session as its start record describes it.
struct Recorded {
    workdir: PathBuf,
    argv: Vec<String>,
    agent: Option<String>,
    policy_text: Option<String>,
    exit_code: Option<i64>,
    calls: Vec<Stored>,
}

fn load(dir: &Path, session: &str) -> Result<Recorded> {
    let filter = Filter { session: Some(session.to_owned()), hide_checkpoints: true, ..Filter::default() };
    let records = read::query(dir, &filter).context("cannot read the audit store")?;
    let start = records
        .iter()
        .find(|r| r.record.event == "session_start")
        .with_context(|| format!("no start record for session `{session}` in `{}`", dir.display()))?;
    let data = &start.record.data;
    let workdir = data.get("workdir").and_then(Value::as_str).map(PathBuf::from);
    let argv: Option<Vec<String>> = data.get("argv").and_then(|a| serde_json::from_value(a.clone()).ok());
    let (Some(workdir), Some(argv)) = (workdir, argv) else {
        bail!("session `{session}` was not a `portcullis run` session (its start names no command)");
    };
    let exit_code = records
        .iter()
        .rev()
        .find(|r| r.record.event == "session_end")
        .and_then(|r| r.record.data.get("exit_code")?.as_i64());
    let calls = records.iter().filter(|r| matches!(r.record.kind, Kind::Exec | Kind::ToolCall)).cloned().collect();
    Ok(Recorded {
        workdir,
        argv,
        agent: start.record.agent.clone(),
        policy_text: data.get("policy_text").and_then(Value::as_str).map(str::to_owned),
        exit_code,
        calls,
    })
}

/// Decides `calls` again under `policy`, as the session's exec gate and pipeline would.
fn decide(policy: &Policy, agent: Option<&str>, command: &[String], calls: &[Stored]) -> Result<Vec<Decision>> {
    let profile = policy.profile(agent)?;
    let decider = Decider::new(policy, None);
    let exec_decider = Decider::for_sandbox(policy);
    let trail = Collected::default();
    let tally = Mutex::new(Tally::default());
    let gate = ExecGate {
        command,
        profile,
        decider: &exec_decider,
        cap: profile.settings().limits.execs,
        trail: &trail,
        tally: &tally,
        profile_guards: policy.guards(),
    };
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        let r = &call.record;
        let input = r.input.clone().unwrap_or(Value::Null);
        let decision = match r.kind {
            Kind::Exec => {
                let text = |k: &str| input.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                // What ran, as recorded (a record from before identities were kept: its path).
                let program = input.get("program").and_then(|p| serde_json::from_value(p.clone()).ok());
                let program = program.unwrap_or_else(|| portcullis_sandbox::identity::Program {
                    path: text("path"),
                    ..Default::default()
                });
                let request = ExecRequest {
                    path: text("path"),
                    argv: input.get("argv").and_then(|a| serde_json::from_value(a.clone()).ok()).unwrap_or_default(),
                    cwd: text("cwd"),
                    program: Some(program),
                    ..ExecRequest::new(input.get("pid").and_then(Value::as_u64).unwrap_or(0) as u32)
                };
                // The decision is read back from the record it wrote.
                let _ = gate.decide(&request);
                trail.take().pop().and_then(|r| r.decision).map_or(Decision::Deny, |d| d.decision)
            }
            _ => {
                let tool = r.tool.as_deref().unwrap_or_default();
                decider.decide(profile, &Request::ToolCall { tool, input: &input }).decision
            }
        };
        out.push(decision);
    }
    Ok(out)
}

fn describe(r: &Stored) -> String {
    let input = r.record.input.as_ref();
    match r.record.kind {
        Kind::Exec => input
            .and_then(|i| i.get("argv"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        _ => format!("{} {}", r.record.tool.as_deref().unwrap_or("?"), input.map(Value::to_string).unwrap_or_default()),
    }
}

fn recorded_decision(r: &Stored) -> Decision {
    r.record.decision.as_ref().map_or(Decision::Deny, |d| d.decision)
}

fn load_policy(text: Option<&str>, file: &str, env: &Environment) -> Result<Policy> {
    match text {
        Some(t) => Policy::load(t, file, env).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(Policy::builtin(env)),
    }
}

pub(crate) fn replay(dir: &Path, args: &ReplayArgs) -> Result<ExitCode> {
    let rec = load(dir, &args.session)?;
    let home = std::env::home_dir().context("cannot tell the home directory: set HOME")?;
    let env = Environment::new(rec.workdir.clone(), home)?;
    if let Some(file) = &args.policy {
        return what_if(&rec, file, &env, args.json);
    }
    let policy = load_policy(rec.policy_text.as_deref(), "the session's policy", &env)
        .context("the session's recorded policy no longer loads")?;
    let decided = decide(&policy, rec.agent.as_deref(), &rec.argv, &rec.calls)?;
    let mut calls: Vec<Call> = rec
        .calls
        .iter()
        .zip(&decided)
        .map(|(r, d)| Call {
            seq: r.seq,
            kind: r.record.kind.as_str(),
            what: describe(r),
            recorded: recorded_decision(r),
            decided: *d,
            decision_matches: recorded_decision(r) == *d,
            outcome_matches: None,
        })
        .collect();
    let mut rerun = Value::Null;
    if !args.decisions_only {
        let (session, exit_code) = rerun_session(dir, &rec, &args.session, &args.dangerously_allow_partial_sandbox)?;
        let again =
            read::query(dir, &Filter { session: Some(session.clone()), kinds: vec![Kind::Exec], ..Filter::default() })?;
        // Each recorded exec must occur again (in order), with the same decision.
        let mut used = vec![false; again.len()];
        let mut from = 0;
        for (call, r) in calls.iter_mut().zip(&rec.calls) {
            if r.record.kind != Kind::Exec {
                continue;
            }
            let argv = r.record.input.as_ref().and_then(|i| i.get("argv"));
            let same = |i: usize| again[i].record.input.as_ref().and_then(|x| x.get("argv")) == argv;
            // A repeated refusal may be folded differently in the re-run (`fold`): it matches
            // any identical one.
            let found = (from..again.len()).chain(0..from).find(|&i| !used[i] && same(i)).or_else(|| {
                r.record.data.contains_key("attempt").then(|| (0..again.len()).find(|&i| same(i))).flatten()
            });
            call.outcome_matches = Some(match found {
                Some(i) => {
                    used[i] = true;
                    from = i + 1;
                    recorded_decision(&again[i]) == call.recorded
                }
                None => false,
            });
        }
        let repeated = |r: &Stored| {
            r.record.data.contains_key("attempt")
                && rec.calls.iter().any(|c| {
                    c.record.kind == Kind::Exec
                        && c.record.input.as_ref().and_then(|i| i.get("argv"))
                            == r.record.input.as_ref().and_then(|i| i.get("argv"))
                })
        };
        let extra: Vec<String> =
            again.iter().zip(&used).filter(|(r, u)| !**u && !repeated(r)).map(|(r, _)| describe(r)).collect();
        rerun = json!({
            "session": session,
            "exit_code": exit_code,
            "recorded_exit_code": rec.exit_code,
            "exit_code_matches": rec.exit_code == Some(i64::from(exit_code)),
            "execs_not_in_the_record": extra,
        });
    }
    let decisions_ok = calls.iter().all(|c| c.decision_matches);
    let outcomes_ok = calls.iter().all(|c| c.outcome_matches != Some(false))
        && rerun.get("exit_code_matches").is_none_or(|m| m == true)
        && rerun["execs_not_in_the_record"].as_array().is_none_or(Vec::is_empty);
    let matched = |f: &dyn Fn(&Call) -> bool| calls.iter().filter(|c| f(c)).count();
    let reconstructed = decisions_ok && outcomes_ok;
    let report = json!({
        "session": args.session,
        "calls": calls.len(),
        "decisions_matching": matched(&|c| c.decision_matches),
        "outcomes_matching": matched(&|c| c.outcome_matches == Some(true)),
        "outcomes_checked": matched(&|c| c.outcome_matches.is_some()),
        "replay": rerun,
        "reconstructed": reconstructed,
        "details": calls,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "session {}: {} calls; decisions {}/{} match",
            args.session,
            calls.len(),
            report["decisions_matching"],
            calls.len()
        );
        if !args.decisions_only {
            println!(
                "  re-run as session {}: execs {}/{} occurred again with the same decision; exit status {} (recorded {})",
                rerun["session"].as_str().unwrap_or_default(),
                report["outcomes_matching"],
                report["outcomes_checked"],
                rerun["exit_code"],
                rerun["recorded_exit_code"]
            );
        }
        for c in calls.iter().filter(|c| !c.decision_matches || c.outcome_matches == Some(false)) {
            println!(
                "  #{} {} `{}`: recorded {:?}, now {:?}{}",
                c.seq,
                c.kind,
                c.what,
                c.recorded,
                c.decided,
                if c.outcome_matches == Some(false) { "; not seen again in the re-run" } else { "" }
            );
        }
        for extra in rerun["execs_not_in_the_record"].as_array().into_iter().flatten() {
            println!("  the re-run also ran `{}`, which the record does not have", extra.as_str().unwrap_or_default());
        }
        println!("{}", if reconstructed { "reconstructed: yes" } else { "reconstructed: NO" });
    }
    Ok(if reconstructed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Decides the calls under `file` and lists what changes.
fn what_if(rec: &Recorded, file: &Path, env: &Environment, json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read policy `{}`", file.display()))?;
    let policy = load_policy(Some(&text), &file.display().to_string(), env)?;
    let decided = decide(&policy, rec.agent.as_deref(), &rec.argv, &rec.calls)?;
    let flips: Vec<Value> = rec
        .calls
        .iter()
        .zip(&decided)
        .filter(|(r, d)| recorded_decision(r) != **d)
        .map(|(r, d)| json!({"seq": r.seq, "kind": r.record.kind.as_str(), "what": describe(r), "recorded": recorded_decision(r), "new": d}))
        .collect();
    if json {
        println!("{}", json!({"calls": rec.calls.len(), "changed": flips}));
    } else {
        println!("{} of {} calls would be decided differently under {}", flips.len(), rec.calls.len(), file.display());
        for f in &flips {
            println!(
                "  #{} {} `{}`: {} -> {}",
                f["seq"],
                f["kind"].as_str().unwrap_or_default(),
                f["what"].as_str().unwrap_or_default(),
                f["recorded"].as_str().unwrap_or_default(),
                f["new"].as_str().unwrap_or_default()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the session's command again, ephemeral, under its policy; returns the new session's id
/// and exit status.
fn rerun_session(
    dir: &Path,
    rec: &Recorded,
    original: &str,
    partial: &[crate::run_cmd::Layer],
) -> Result<(String, i32)> {
    let exe = std::env::current_exe().context("cannot find the portcullis binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--json", "--quiet", "--replay-of", original]).arg("--workdir").arg(&rec.workdir);
    if !partial.is_empty() {
        let names: Vec<&str> = partial.iter().map(|l| l.name()).collect();
        cmd.arg(format!("--dangerously-allow-partial-sandbox={}", names.join(",")));
    }
    // The policy as recorded, in a private file beside the store for the run's length.
    let policy_file = rec.policy_text.as_ref().map(|text| {
        let path = dir.parent().unwrap_or(dir).join(format!("replay-{original}.toml"));
        (path, text)
    });
    if let Some((path, text)) = &policy_file {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        cmd.arg("--policy").arg(path);
    }
    if let Some(a) = &rec.agent {
        cmd.args(["--agent", a]);
    }
    cmd.arg("--").args(&rec.argv);
    cmd.current_dir(&rec.workdir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let out = cmd.output().context("cannot run the session again");
    if let Some((path, _)) = &policy_file {
        let _ = std::fs::remove_file(path);
    }
    let out = out?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stderr
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.get("session").is_some()))
        .with_context(|| format!("the re-run did not finish: {stderr}"))?;
    let session = summary["session"].as_str().unwrap_or_default().to_owned();
    let code = summary["exit_code"].as_i64().unwrap_or(-1) as i32;
    Ok((session, code))
}
