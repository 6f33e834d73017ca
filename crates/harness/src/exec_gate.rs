//! The exec gate: what `portcullis run` decides for each exec the sandbox's monitor traps. The
//! policy and the guards decide; the session's exec cap (`[limits] execs`) counts them; every
//! decision is an event; an exec that cannot be read or recorded does not run.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use portcullis_audit::{DecisionRecord, Kind};
use portcullis_policy::{Decision, Profile, Request};
use portcullis_sandbox::identity::Program;
use portcullis_sandbox::monitor::ExecRequest;
use serde_json::json;

use crate::Decider;
use crate::audit::Trail;

/// What the gate counted, for the session's summary.
#[derive(Debug, Default)]
pub struct Tally {
    /// Execs seen (PATH misses excluded: the monitor answers those itself).
    pub execs: u64,
    /// Refused execs: the command and the reason, a shell's retries of one refusal folded;
    /// the first [`DENIALS_LISTED`] of them (memory and the summary stay bounded under a flood).
    pub denials: Vec<(String, String)>,
    /// Refused execs in all, counted as `denials` counts them.
    pub denied: u64,
    /// The exec cap refused an exec.
    pub cap_hit: bool,
    /// The first failure to store a record, if any.
    pub sink_error: Option<String>,
    /// The command refused last (a retry of it is not counted again).
    last_denied: Option<String>,
}

/// The refusal of an exec that needs approval where no one can give it, saying which policy
/// line would let it run.
///
/// Never "needs approval" alone where nothing can approve: the agent (and the person reading
/// its output) must see that it was refused.
pub fn unapproved(verdict: &crate::Verdict<'_>, reason: &str) -> String {
    let how = match verdict.guards.iter().find(|g| g.decision == Decision::Ask) {
        Some(g) => format!("`{} = \"allow\"` under [guards]", g.id.strip_prefix("guard.").unwrap_or(&g.id)),
        None => "an allow rule for it under [tools]".to_owned(),
    };
    let why = reason.strip_prefix("needs approval ").unwrap_or(reason);
    format!("refused: needs approval ({why}), and no approver is attached; to let it run, the policy needs {how}")
}

/// How many refusals the summary lists; past them it counts.
pub const DENIALS_LISTED: usize = 100;

impl Tally {
    fn deny(&mut self, command: String, reason: &str) {
        self.denied += 1;
        if self.denials.len() < DENIALS_LISTED {
            self.denials.push((command.clone(), reason.to_owned()));
        }
        self.last_denied = Some(command);
    }
}

/// Decides execs for one session.
#[allow(missing_debug_implementations, reason = "holds a profile and a trail; nothing to show")]
pub struct ExecGate<'a, T: Trail> {
    /// The command `run` was given: the user's own, recorded and allowed.
    pub command: &'a [String],
    /// The agent's profile.
    pub profile: &'a Profile,
    /// Policy plus guards.
    pub decider: &'a Decider,
    /// The exec cap (`[limits] execs`). Not the tool-call cap: a build's execs are not the
    /// agent's tool calls.
    pub cap: Option<u64>,
    /// Where the records go.
    pub trail: &'a T,
    /// The counts, read when the session ends.
    pub tally: &'a Mutex<Tally>,
    /// The policy's `[guards]`, for the guards on the program itself (`writable_exec`,
    /// `anonymous_exec`).
    pub profile_guards: &'a portcullis_policy::GuardSwitches,
}

/// The argv vectors an exec is judged under: as asked, with the canonical path and the copied
/// system program in `argv[0]`'s place, and, for a loader or multi-call binary, what it runs
/// (its arguments from the first).
fn names(argv: &[String], program: Option<&Program>) -> Vec<Vec<String>> {
    let mut out = vec![argv.to_vec()];
    let Some(program) = program else { return out };
    let mut push = |argv0: &str| {
        let mut v = argv.to_vec();
        match v.first_mut() {
            Some(first) => *first = argv0.to_owned(),
            None => v.push(argv0.to_owned()),
        }
        if !out.contains(&v) {
            out.push(v);
        }
    };
    if !program.anonymous {
        push(&program.path);
    }
    if let Some(copy) = &program.copy_of {
        push(copy);
    }
    let real = program.copy_of.as_deref().unwrap_or(&program.path);
    let first_name_runs = argv.first().is_some_and(|a| portcullis_sandbox::identity::runs_another(a));
    if (portcullis_sandbox::identity::runs_another(real) || first_name_runs) && argv.len() > 1 {
        // `busybox id -u`, `ld-linux-x86-64.so.2 --library-path L /usr/bin/id -u`: the loader's
        // options (and their values) are skipped to the program.
        let from = portcullis_sandbox::identity::loader_target(argv).unwrap_or(argv.len());
        let rest: Vec<String> = argv[from..].to_vec();
        if !rest.is_empty() && !out.contains(&rest) {
            out.push(rest);
        }
    }
    out
}

impl<T: Trail> ExecGate<'_, T> {
    /// The guard a program's own nature meets, if it decides more than `allow`: an anonymous
    /// program (a memfd, a deleted file; `anonymous_exec`, deny unless the policy says
    /// otherwise) or one in a place the agent can write that copies no system program
    /// (`writable_exec`, allow unless the policy says otherwise: builds run their own binaries).
    fn program_guard(&self, program: &Program) -> Option<(&'static str, Decision, String)> {
        let setting = |id: &str, default: Decision| match self.profile_guards.get(id) {
            None => default,
            Some(s) => s.unwrap_or(Decision::Allow),
        };
        if program.anonymous {
            let d = setting("anonymous_exec", Decision::Deny);
            let text = format!(
                "guard.anonymous_exec: `{}` is run through a descriptor to a file no path names (a memfd or a \
                 deleted file), which no rule can know",
                program.path
            );
            return (d > Decision::Allow).then_some(("anonymous_exec", d, text));
        }
        if program.writable && program.copy_of.is_none() {
            let d = setting("writable_exec", Decision::Allow);
            let text = format!(
                "guard.writable_exec: `{}` lies where the agent can write, so it may be any program",
                program.path
            );
            return (d > Decision::Allow).then_some(("writable_exec", d, text));
        }
        None
    }

    /// Decides `req`: `Ok` lets it run; `Err` carries why it may not.
    pub fn decide(&self, req: &ExecRequest) -> Result<(), String> {
        let started = Instant::now();
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.execs += 1;
        let argv = if req.argv.is_empty() { vec![req.path.clone()] } else { req.argv.clone() };
        let mut rules: Vec<String> = Vec::new();
        let (decision, reason) = if let Some(why) = &req.unreadable {
            rules.push("builtin.exec_unreadable".into());
            (Decision::Deny, format!("the exec could not be read: {why}"))
        } else if tally.execs == 1 && req.argv == self.command {
            // The command `run` was given is the user's, not the agent's: recorded, not questioned.
            rules.push("builtin.run_command".into());
            (Decision::Allow, "allowed: the command `portcullis run` was given".to_owned())
        } else if self.cap.is_some_and(|c| tally.execs > c) {
            tally.cap_hit = true;
            rules.push("limits.execs".into());
            (Decision::Deny, format!("the session's exec cap ({} execs) is reached", self.cap.unwrap_or_default()))
        } else if let Some(why) = req.program.is_none().then_some(&req.unidentified) {
            // SECURITY: rules that cannot tell what runs cannot allow it.
            rules.push("builtin.exec_unidentified".into());
            let why = why.as_deref().unwrap_or("no program");
            (Decision::Deny, format!("the program the exec runs could not be identified: {why}"))
        } else {
            let cwd = PathBuf::from(&req.cwd);
            // SECURITY: judged under every name the program has (what argv[0] says, where its
            // path leads, the system program it copies, what a loader or multi-call binary
            // runs); the strictest verdict wins.
            let mut candidates = names(&argv, req.program.as_ref());
            if let Some(loaded) = &req.loads {
                // What a loader maps is judged as if it had been executed.
                let from = portcullis_sandbox::identity::loader_target(&argv).unwrap_or(argv.len());
                let inner: Vec<String> = argv[from..].to_vec();
                candidates.extend(names(&inner, Some(loaded)).into_iter().filter(|v| !v.is_empty()));
            }
            let verdict = candidates
                .iter()
                .map(|names| self.decider.decide(self.profile, &Request::Exec { argv: names, cwd: &cwd }))
                // The first of the strictest: on a tie, the reason speaks of the exec as asked.
                .reduce(|best, v| if v.decision > best.decision { v } else { best })
                .unwrap_or_else(|| self.decider.decide(self.profile, &Request::Exec { argv: &argv, cwd: &cwd }));
            let mut reason = verdict.explanation();
            rules = verdict.rule_ids();
            let mut decision = verdict.decision;
            for (id, guard, text) in
                [&req.program, &req.loads].into_iter().flatten().filter_map(|p| self.program_guard(p))
            {
                if guard > decision {
                    decision = guard;
                    rules = vec![format!("guard.{id}")];
                    reason = text;
                }
            }
            match decision {
                Decision::Ask => (Decision::Deny, unapproved(&verdict, &reason)),
                d => (d, reason),
            }
        };
        let mut record = self.trail.record(Kind::Exec, "exec");
        record.input = Some(json!({
            "pid": req.pid, "path": req.path, "argv": req.argv, "cwd": req.cwd, "program": req.program,
            "loads": req.loads,
        }));
        record.decision = Some(DecisionRecord { decision, rules, reason: reason.clone() });
        record.latency_us = Some(started.elapsed().as_micros() as u64);
        let recorded = self.trail.commit(record);
        // For people: the command an agent CLI's shell wrapper stands for (the record keeps argv).
        let command = portcullis_sandbox::monitor::shown_command(&argv);
        if let Err(e) = recorded {
            // Fail closed: an exec that cannot be recorded does not run.
            tally.sink_error.get_or_insert_with(|| e.clone());
            let reason = format!("the audit store cannot be written: {e}");
            tally.deny(command, &reason);
            return Err(reason);
        }
        if decision == Decision::Allow {
            return Ok(());
        }
        // A shell retries a refused exec along its PATH; one refusal is reported once.
        if tally.last_denied.as_deref() != Some(command.as_str()) {
            tally.deny(command, &reason);
        }
        Err(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_audit::Record;
    use portcullis_policy::{Environment, Policy};

    /// A trail that keeps records in memory, or fails every write.
    #[derive(Default)]
    struct Memory {
        records: Mutex<Vec<Record>>,
        broken: bool,
    }

    impl Trail for Memory {
        fn record(&self, kind: Kind, event: &str) -> Record {
            Record::new(kind, event, "s")
        }
        fn commit(&self, record: Record) -> Result<(), String> {
            if self.broken {
                return Err("disk full".into());
            }
            self.records.lock().unwrap().push(record);
            Ok(())
        }
    }

    fn exec(argv: &[&str]) -> ExecRequest {
        let path = format!("/usr/bin/{}", argv[0]);
        ExecRequest {
            path: path.clone(),
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            cwd: "/work".into(),
            program: Some(Program { path, ..Program::default() }),
            ..ExecRequest::new(7)
        }
    }

    /// A gate for `policy` with no command given and no cap.
    fn gate<'a>(
        policy: &'a Policy,
        decider: &'a Decider,
        trail: &'a Memory,
        tally: &'a Mutex<Tally>,
    ) -> ExecGate<'a, Memory> {
        ExecGate {
            command: &[],
            profile: policy.root(),
            decider,
            cap: None,
            trail,
            tally,
            profile_guards: policy.guards(),
        }
    }

    #[test]
    fn policy_cap_and_recording_decide_each_exec() {
        let env = Environment::new(PathBuf::from("/work"), PathBuf::from("/home/u")).unwrap();
        let policy = Policy::load("[tools]\ndeny = [\"Bash(id *)\"]\n", "p.toml", &env).unwrap();
        let decider = Decider::new(&policy, None);
        let (trail, tally) = (Memory::default(), Mutex::new(Tally::default()));
        let command = vec!["agent".to_owned()];
        let gate = ExecGate { command: &command, cap: Some(4), ..gate(&policy, &decider, &trail, &tally) };
        assert!(gate.decide(&exec(&["agent"])).is_ok(), "the command run was given");
        assert!(gate.decide(&exec(&["ls"])).is_ok());
        assert!(gate.decide(&exec(&["id"])).is_err());
        assert!(gate.decide(&exec(&["id"])).is_err(), "a retry is refused again");
        assert!(gate.decide(&exec(&["ls"])).is_err(), "the fifth exec is past the cap of four");
        let mut unreadable = exec(&["ls"]);
        unreadable.unreadable = Some("gone".into());
        assert!(gate.decide(&unreadable).is_err());
        let t = tally.lock().unwrap();
        assert_eq!(t.execs, 6);
        assert!(t.cap_hit);
        let commands: Vec<&str> = t.denials.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(commands, ["id", "ls"], "retries fold, and the cap's and the unreadable refusal fold too");
        let records = trail.records.lock().unwrap();
        assert_eq!(records.len(), 6);
        let denied = records[2].decision.as_ref().unwrap();
        assert_eq!(denied.decision, Decision::Deny);
        assert!(denied.reason.contains("Bash(id *)"), "{}", denied.reason);
        assert_eq!(denied.rules, ["tools.deny[0]"]);
        assert_eq!(records[2].input.as_ref().unwrap()["argv"][0], "id");
    }

    #[test]
    fn a_refusal_for_want_of_approval_names_the_policy_line_that_would_allow_it() {
        let env = Environment::new(PathBuf::from("/work"), PathBuf::from("/home/u")).unwrap();
        let policy = Policy::load("[tools]\nask = [\"Bash(make *)\"]\n", "p.toml", &env).unwrap();
        let decider = Decider::for_sandbox(&policy);
        let (trail, tally) = (Memory::default(), Mutex::new(Tally::default()));
        let gate = gate(&policy, &decider, &trail, &tally);
        let guard = gate.decide(&exec(&["git", "reset", "--hard"])).unwrap_err();
        assert!(guard.contains("the policy needs `git_discard = \"allow\"` under [guards]"), "{guard}");
        let rule = gate.decide(&exec(&["make", "all"])).unwrap_err();
        assert!(rule.contains("the policy needs an allow rule for it under [tools]"), "{rule}");
    }

    #[test]
    fn a_program_that_cannot_be_identified_does_not_run() {
        let env = Environment::new(PathBuf::from("/work"), PathBuf::from("/home/u")).unwrap();
        let policy = Policy::builtin(&env);
        let decider = Decider::for_sandbox(&policy);
        let (trail, tally) = (Memory::default(), Mutex::new(Tally::default()));
        let gate = gate(&policy, &decider, &trail, &tally);
        let mut unknown = exec(&["ls"]);
        unknown.program = None;
        unknown.unidentified = Some("the file went away".into());
        let why = gate.decide(&unknown).unwrap_err();
        assert!(why.contains("could not be identified"), "{why}");
        assert_eq!(trail.records.lock().unwrap()[0].decision.as_ref().unwrap().rules, ["builtin.exec_unidentified"]);
    }

    #[test]
    fn an_exec_that_cannot_be_recorded_does_not_run() {
        let env = Environment::new(PathBuf::from("/work"), PathBuf::from("/home/u")).unwrap();
        let policy = Policy::builtin(&env);
        let decider = Decider::new(&policy, None);
        let trail = Memory { records: Mutex::new(Vec::new()), broken: true };
        let tally = Mutex::new(Tally::default());
        let gate = gate(&policy, &decider, &trail, &tally);
        assert!(gate.decide(&exec(&["ls"])).is_err());
        assert_eq!(tally.lock().unwrap().sink_error.as_deref(), Some("disk full"));
    }
}
