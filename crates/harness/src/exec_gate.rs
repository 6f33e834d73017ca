//! The exec gate: what `portcullis run` decides for each exec the sandbox's monitor traps. The
//! policy and the guards decide; the session's tool-call cap counts execs; every decision is an
//! event; an exec that cannot be read or recorded does not run.

use std::path::PathBuf;
use std::sync::Mutex;

use portcullis_policy::{Decision, Profile, Request};
use portcullis_sandbox::monitor::ExecRequest;
use serde_json::json;

use crate::Decider;
use crate::events::{Event, EventSink};

/// What the gate counted, for the session's summary.
#[derive(Debug, Default)]
pub struct Tally {
    /// Execs seen (PATH misses excluded: the monitor answers those itself).
    pub execs: u64,
    /// Refused execs: the command and the reason, a shell's retries of one refusal folded.
    pub denials: Vec<(String, String)>,
    /// The tool-call cap refused an exec.
    pub cap_hit: bool,
    /// The first failure to record an event, if any.
    pub sink_error: Option<String>,
}

/// Decides execs for one session.
#[allow(missing_debug_implementations, reason = "holds a profile and a sink; nothing to show")]
pub struct ExecGate<'a, S: EventSink> {
    /// The command `run` was given: the user's own, recorded and allowed.
    pub command: &'a [String],
    /// The agent's profile.
    pub profile: &'a Profile,
    /// Policy plus guards.
    pub decider: &'a Decider,
    /// The tool-call cap, counted in execs.
    pub cap: Option<u64>,
    /// The session id, for events.
    pub session: &'a str,
    /// Where events go.
    pub sink: &'a Mutex<S>,
    /// The counts, read when the session ends.
    pub tally: &'a Mutex<Tally>,
}

impl<S: EventSink> ExecGate<'_, S> {
    /// Decides `req`: true lets it run.
    pub fn decide(&self, req: &ExecRequest) -> bool {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.execs += 1;
        let argv = if req.argv.is_empty() { vec![req.path.clone()] } else { req.argv.clone() };
        let (decision, reason) = if let Some(why) = &req.unreadable {
            (Decision::Deny, format!("the exec could not be read: {why}"))
        } else if tally.execs == 1 && req.argv == self.command {
            // The command `run` was given is the user's, not the agent's: recorded, not questioned.
            (Decision::Allow, "allowed: the command `portcullis run` was given".to_owned())
        } else if self.cap.is_some_and(|c| tally.execs > c) {
            tally.cap_hit = true;
            (Decision::Deny, format!("the session's tool-call cap ({} execs) is reached", self.cap.unwrap_or_default()))
        } else {
            let cwd = PathBuf::from(&req.cwd);
            let verdict = self.decider.decide(self.profile, &Request::Exec { argv: &argv, cwd: &cwd });
            let reason = verdict.explanation();
            match verdict.decision {
                Decision::Ask => (Decision::Deny, format!("{reason} (approval is not available for execs in `run`)")),
                d => (d, reason),
            }
        };
        let event = Event::now(
            self.session,
            "exec",
            json!({"pid": req.pid, "path": req.path, "argv": req.argv, "cwd": req.cwd, "decision": decision, "reason": reason}),
        );
        let recorded = self.sink.lock().unwrap_or_else(|e| e.into_inner()).record(&event);
        let command = argv.join(" ");
        if let Err(e) = recorded {
            // Fail closed: an exec that cannot be recorded does not run.
            tally.sink_error.get_or_insert_with(|| e.to_string());
            tally.denials.push((command, format!("the event log cannot be written: {e}")));
            return false;
        }
        let allowed = decision == Decision::Allow;
        // A shell retries a refused exec along its PATH; one refusal is reported once.
        if !allowed && tally.denials.last().is_none_or(|(c, _)| *c != command) {
            tally.denials.push((command, reason));
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::{Environment, Policy};
    use std::io;

    /// A sink that keeps events in memory, or fails every write.
    #[derive(Default)]
    struct Memory {
        events: Vec<Event>,
        broken: bool,
    }

    impl EventSink for Memory {
        fn record(&mut self, event: &Event) -> io::Result<()> {
            if self.broken {
                return Err(io::Error::other("disk full"));
            }
            self.events.push(event.clone());
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn location(&self) -> String {
            "memory".into()
        }
    }

    fn exec(argv: &[&str]) -> ExecRequest {
        ExecRequest {
            pid: 7,
            path: format!("/usr/bin/{}", argv[0]),
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            cwd: "/work".into(),
            unreadable: None,
        }
    }

    #[test]
    fn policy_cap_and_recording_decide_each_exec() {
        let env = Environment::new(PathBuf::from("/work"), PathBuf::from("/home/u")).unwrap();
        let policy = Policy::load("[tools]\ndeny = [\"Bash(id *)\"]\n", "p.toml", &env).unwrap();
        let decider = Decider::new(&policy, None);
        let (sink, tally) = (Mutex::new(Memory::default()), Mutex::new(Tally::default()));
        let command = vec!["agent".to_owned()];
        let gate = ExecGate {
            command: &command,
            profile: policy.root(),
            decider: &decider,
            cap: Some(4),
            session: "s",
            sink: &sink,
            tally: &tally,
        };
        assert!(gate.decide(&exec(&["agent"])), "the command run was given");
        assert!(gate.decide(&exec(&["ls"])));
        assert!(!gate.decide(&exec(&["id"])));
        assert!(!gate.decide(&exec(&["id"])), "a retry is refused again");
        assert!(!gate.decide(&exec(&["ls"])), "the fifth exec is past the cap of four");
        let mut unreadable = exec(&["ls"]);
        unreadable.unreadable = Some("gone".into());
        assert!(!gate.decide(&unreadable));
        let t = tally.lock().unwrap();
        assert_eq!(t.execs, 6);
        assert!(t.cap_hit);
        let commands: Vec<&str> = t.denials.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(commands, ["id", "ls"], "retries fold, and the cap's and the unreadable refusal fold too");
        let events = &sink.lock().unwrap().events;
        assert_eq!(events.len(), 6);
        assert_eq!(events[2].fields["decision"], "deny");
        assert!(events[2].fields["reason"].as_str().unwrap().contains("Bash(id *)"));
    }

    #[test]
    fn an_exec_that_cannot_be_recorded_does_not_run() {
        let env = Environment::new(PathBuf::from("/work"), PathBuf::from("/home/u")).unwrap();
        let policy = Policy::builtin(&env);
        let decider = Decider::new(&policy, None);
        let sink = Mutex::new(Memory { events: Vec::new(), broken: true });
        let tally = Mutex::new(Tally::default());
        let gate = ExecGate {
            command: &[],
            profile: policy.root(),
            decider: &decider,
            cap: None,
            session: "s",
            sink: &sink,
            tally: &tally,
        };
        assert!(!gate.decide(&exec(&["ls"])));
        assert_eq!(tally.lock().unwrap().sink_error.as_deref(), Some("disk full"));
    }
}
