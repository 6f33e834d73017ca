//! The pipeline's decision step: the policy's verdict and the built-in guards' findings, folded
//! into one answer where the strictest wins.
//!
//! The guards read what the policy engine cannot: a shell line as the shell would run it, a
//! path as the kernel would resolve it. A guard can only tighten the policy's verdict.

pub mod audit;
pub mod exec_gate;
pub mod host_program;
pub mod live;
pub mod persistence;

use portcullis_guard::path::{PathError, PathSettings, Workdir};
use portcullis_guard::shell::{self, GuardSettings};
use portcullis_policy::{Access, Decision, Evaluation, Policy, Profile, Request, canonical_tool};
use serde::Serialize;
use serde_json::Value;

/// What a guard found, in the shape of a rule.
#[derive(Clone, Debug, Serialize)]
pub struct GuardFinding {
    /// `guard.<family>`, such as `guard.destructive_delete` or `guard.path`.
    pub id: String,
    /// What was seen.
    pub text: String,
    /// The finding's decision.
    pub decision: Decision,
}

/// One decision with everything behind it.
#[derive(Debug)]
pub struct Verdict<'p> {
    /// The strictest of the policy's verdict and the guards' findings.
    pub decision: Decision,
    /// The policy's evaluation.
    pub policy: Evaluation<'p>,
    /// The guards' findings, strictest first.
    pub guards: Vec<GuardFinding>,
}

impl Verdict<'_> {
    /// The ids of the rules and guards that decided: those whose decision is the verdict's.
    pub fn rule_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> =
            self.policy.rules.iter().filter(|r| r.decision == self.decision).map(|r| r.id.to_string()).collect();
        ids.extend(self.guards.iter().filter(|g| g.decision == self.decision).map(|g| g.id.clone()));
        ids
    }

    /// A one-line explanation naming what decided.
    pub fn explanation(&self) -> String {
        let deciding: Vec<&GuardFinding> = self.guards.iter().filter(|g| g.decision == self.decision).collect();
        if self.policy.decision == self.decision || deciding.is_empty() {
            let mut text = self.policy.explanation();
            for g in deciding {
                text.push_str(&format!("; guard {}: {}", g.id, g.text));
            }
            text
        } else {
            let verb = match self.decision {
                Decision::Allow => "allowed",
                Decision::Ask => "needs approval",
                Decision::Deny => "denied",
            };
            let parts: Vec<String> = deciding.iter().map(|g| format!("{}: {}", g.id, g.text)).collect();
            format!("{verb} by a built-in guard: {}", parts.join("; "))
        }
    }
}

/// The shell guards `portcullis run`'s walls make redundant for its execs ([`Decider::for_sandbox`]):
///
/// - `write_outside`: the mounts and Landlock refuse every write outside the workdir, the
///   session's own `/tmp` and the policy's writable paths. The guard, reading the arguments of
///   a tool it does not know, refused what only reads outside them: gcc's linker (`collect2`)
///   is given `/usr/lib/...` paths.
/// - `inline_code` and `shell_escape`: their concern is code no one reviewed. Inside the
///   sandbox any code may run from a file the agent writes, and whatever runs is bounded by
///   the same walls, with every exec (its whole argv, the inline code included) on the record.
///   They refused `python3 -m venv` (ensurepip runs `python -c`) and npm scripts (`node -e`).
///
/// - `network_transfer`: every connection leaves through the sandbox's proxy and resolver,
///   which refuse a destination the policy does not list (the 403 names the rule) and count
///   every byte against the outbound ceiling. The guard asked about `curl`, `wget`, `git`,
///   `pip` to hosts the policy allows, where its ask could only be a refusal.
///
/// The guards whose concern reaches past the walls still decide: remote history
/// (`force_push`), credentials, the workdir's own work (`destructive_delete`, `git_discard`)
/// and the rest.
pub const WALLED_GUARDS: &[&str] = &["write_outside", "inline_code", "shell_escape", "network_transfer"];

/// The wall that answers each of [`WALLED_GUARDS`], for the session's summary.
pub fn walled_by(guard: &str) -> &'static str {
    match guard {
        "write_outside" => "the mounts and Landlock",
        "network_transfer" => "the egress proxy",
        _ => "the sandbox (every exec recorded)",
    }
}

/// The guards [`Decider::for_sandbox`] turns off for `policy`: those of [`WALLED_GUARDS`] the
/// policy does not set.
pub fn deferred_guards(policy: &Policy) -> Vec<&'static str> {
    WALLED_GUARDS.iter().copied().filter(|id| policy.guards().get(id).is_none()).collect()
}

/// Decides requests with a policy and the guards it configures.
#[derive(Debug)]
pub struct Decider {
    shell: GuardSettings,
    workdir: Option<Workdir>,
}

impl Decider {
    /// Guards configured by `policy`'s `[guards]`; `workdir` enables the path guard.
    pub fn new(policy: &Policy, workdir: Option<Workdir>) -> Self {
        Decider { shell: GuardSettings::from_policy(policy.guards()), workdir }
    }

    /// For the execs inside `portcullis run`'s sandbox: as [`Decider::new`], except that the
    /// guards whose concern the sandbox's walls answer are off unless the policy sets them
    /// ([`WALLED_GUARDS`]). In `run` their `ask` could only be a refusal (no one is there to
    /// approve an exec), which broke everyday builds and gained nothing.
    pub fn for_sandbox(policy: &Policy) -> Self {
        let mut decider = Decider::new(policy, None);
        for id in deferred_guards(policy) {
            // The id is one of the shell families; setting it cannot fail.
            let _ = decider.shell.set(id, None);
        }
        decider
    }

    /// The path-guard settings a policy asks for.
    pub fn path_settings(policy: &Policy) -> PathSettings {
        PathSettings::from_policy(policy.guards())
    }

    /// Decides `request` under `profile`.
    pub fn decide<'p>(&self, profile: &'p Profile, request: &Request<'_>) -> Verdict<'p> {
        let mut policy = profile.evaluate(request);
        let mut guards = Vec::new();
        match *request {
            Request::ToolCall { tool, input } => match canonical_tool(tool) {
                "Bash" => {
                    if let Some(line) = input.get("command").and_then(Value::as_str) {
                        let analysis = shell::analyze(line, &self.shell);
                        // The policy's rules match the commands as bash would run them: unquoted,
                        // expanded, and unwrapped from `sudo`, `bash -c` and the like.
                        let commands: Vec<Vec<String>> = analysis
                            .parsed
                            .commands
                            .iter()
                            .map(|c| c.argv.iter().map(|w| w.text.clone()).collect())
                            .collect();
                        let not_static = analysis.parsed.incomplete.is_some()
                            || analysis.parsed.commands.iter().any(|c| c.argv.iter().any(|w| w.dynamic));
                        policy = profile.evaluate_shell(&commands, not_static, line);
                        guards.extend(analysis.findings.into_iter().map(shell_finding));
                    }
                }
                "Read" | "NotebookRead" | "Glob" | "Grep" | "LS" => self.path(input, Access::Read, &mut guards),
                "Edit" | "MultiEdit" | "Write" | "NotebookEdit" => self.path(input, Access::Write, &mut guards),
                _ => {}
            },
            Request::Exec { argv, .. } => {
                let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
                let analysis = shell::analyze_argv(&argv, &self.shell);
                guards.extend(analysis.findings.into_iter().map(shell_finding));
            }
            Request::FileAccess { path, access } => {
                if let Some(p) = path.to_str() {
                    self.path_text(p, access, &mut guards);
                }
            }
            Request::Connect { .. } | Request::Resolve { .. } => {}
        }
        guards.sort_by_key(|g| std::cmp::Reverse(g.decision));
        let decision = guards.iter().map(|g| g.decision).chain([policy.decision]).max().unwrap_or(Decision::Deny);
        Verdict { decision, policy, guards }
    }

    fn path(&self, input: &Value, access: Access, out: &mut Vec<GuardFinding>) {
        if let Some(p) =
            ["file_path", "notebook_path", "path"].iter().find_map(|k| input.get(*k)).and_then(Value::as_str)
        {
            self.path_text(p, access, out);
        }
    }

    fn path_text(&self, path: &str, access: Access, out: &mut Vec<GuardFinding>) {
        if let Some(workdir) = &self.workdir
            && let Err(e) = workdir.inspect(path, access)
        {
            out.push(path_finding(&e));
        }
    }
}

fn shell_finding(f: shell::Finding) -> GuardFinding {
    GuardFinding { id: format!("guard.{}", f.family), text: f.detail, decision: f.decision }
}

fn path_finding(e: &PathError) -> GuardFinding {
    GuardFinding { id: "guard.path".into(), text: e.to_string(), decision: Decision::Deny }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_policy::Environment;
    use serde_json::json;

    fn policy(text: &str) -> Policy {
        Policy::load(text, "p.toml", &Environment::new("/w", "/h").unwrap()).unwrap()
    }

    fn bash<'p>(d: &Decider, p: &'p Policy, line: &str) -> Verdict<'p> {
        let input = json!({ "command": line });
        d.decide(p.root(), &Request::ToolCall { tool: "Bash", input: &input })
    }

    #[test]
    fn a_guard_tightens_an_allow_rule() {
        let p = policy("[tools]\nallow = [\"Bash\"]\n");
        let d = Decider::new(&p, None);
        let v = bash(&d, &p, "c=rm; $c -rf ~");
        assert_eq!(v.policy.decision, Decision::Allow, "the bare `Bash` rule allows the expanded `rm -rf ~`");
        assert_eq!(v.decision, Decision::Deny);
        assert_eq!(v.guards[0].id, "guard.destructive_delete");
        assert!(v.explanation().contains("built-in guard"), "{}", v.explanation());
        assert_eq!(bash(&d, &p, "git status").decision, Decision::Allow);
    }

    #[test]
    fn a_guard_never_loosens_a_deny_rule() {
        let p = policy("[tools]\ndeny = [\"Bash(git *)\"]\n[guards]\nforce_push = \"off\"\n");
        let d = Decider::new(&p, None);
        let v = bash(&d, &p, "git push --force");
        assert!(v.guards.is_empty());
        assert_eq!(v.decision, Decision::Deny);
    }

    #[test]
    fn policy_rules_match_commands_as_bash_runs_them() {
        let p = policy(
            "[tools]\nallow = [\"Bash(git *)\", \"Bash(sudo *)\"]\ndeny = [\"Bash(rm *)\"]\n[guards]\ndestructive_delete = \"off\"\nprivilege_escalation = \"off\"\n",
        );
        let d = Decider::new(&p, None);
        // Quoting does not hide a command from a deny rule.
        let v = bash(&d, &p, "r\\m -r tmpdir");
        assert_eq!(v.decision, Decision::Deny, "{}", v.explanation());
        assert_eq!(v.policy.rules[0].id, "tools.deny[0]");
        // An allowed wrapper does not carry an unlisted command through.
        assert_eq!(bash(&d, &p, "sudo make install").decision, Decision::Ask);
        // Static expansion lets an allow rule apply.
        assert_eq!(bash(&d, &p, "b=main; git checkout $b").decision, Decision::Allow);
    }

    #[test]
    fn execs_are_read_by_the_shell_guard() {
        let p = policy("");
        let d = Decider::new(&p, None);
        let argv: Vec<String> = ["sudo", "rm", "-rf", "/"].iter().map(|s| s.to_string()).collect();
        let v = d.decide(p.root(), &Request::Exec { argv: &argv, cwd: std::path::Path::new("/w") });
        assert_eq!(v.policy.decision, Decision::Allow);
        assert_eq!(v.decision, Decision::Deny);
    }

    #[test]
    fn inside_the_sandbox_the_walled_guards_are_off_unless_the_policy_sets_them() {
        let exec = |d: &Decider, p: &Policy, argv: &[&str]| {
            let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
            d.decide(p.root(), &Request::Exec { argv: &argv, cwd: std::path::Path::new("/w") }).decision
        };
        let linker = ["/usr/lib/gcc/collect2", "-plugin", "/usr/lib/gcc/liblto_plugin.so", "-o", "m", "/tmp/cc1.o"];
        let p = policy("");
        assert_eq!(exec(&Decider::new(&p, None), &p, &linker), Decision::Ask, "outside, the guard reads the paths");
        assert_eq!(exec(&Decider::for_sandbox(&p), &p, &linker), Decision::Allow);
        assert_eq!(exec(&Decider::for_sandbox(&p), &p, &["python3", "-c", "print(1)"]), Decision::Allow);
        // The proxy decides where data may go.
        let upload = ["curl", "-d", "@notes", "https://x.io"];
        assert_eq!(exec(&Decider::new(&p, None), &p, &upload), Decision::Ask, "outside, the guard asks");
        assert_eq!(exec(&Decider::for_sandbox(&p), &p, &upload), Decision::Allow);
        // The other guards still decide there.
        assert_eq!(exec(&Decider::for_sandbox(&p), &p, &["sudo", "id"]), Decision::Deny);
        assert_eq!(exec(&Decider::for_sandbox(&p), &p, &["git", "reset", "--hard"]), Decision::Ask);
        // A policy that sets the guard keeps it.
        let strict = policy("[guards]\nwrite_outside = \"deny\"\n");
        assert_eq!(exec(&Decider::for_sandbox(&strict), &strict, &linker), Decision::Deny);
    }
}
