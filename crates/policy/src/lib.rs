//! The Portcullis policy engine: one answer to "may this happen?".
//!
//! A policy is a TOML file (see `DESIGN.md` and `portcullis policy init`). Loading happens in two
//! phases, a checked shape and then compiled rules, and reports every problem at once with its
//! line and column. Evaluation cannot fail: a malformed request is denied and says why.
//!
//! ```
//! use portcullis_policy::{Decision, Environment, Policy, Request};
//!
//! let env = Environment::new("/work/project", "/home/dev").unwrap();
//! let policy = Policy::load(r#"
//!     [network]
//!     allow = ["*.github.com:443"]
//!     [tools]
//!     deny = ["Bash(git push --force *)"]
//! "#, "policy.toml", &env).unwrap();
//!
//! let connect = Request::Connect { host: "api.github.com", port: 443 };
//! assert_eq!(policy.evaluate(&connect).decision, Decision::Allow);
//!
//! let input = serde_json::json!({ "command": "git status && git push --force origin main" });
//! let verdict = policy.evaluate(&Request::ToolCall { tool: "Bash", input: &input });
//! assert_eq!(verdict.decision, Decision::Deny);
//! assert_eq!(verdict.rules[0].id, "tools.deny[0]");
//! ```
//!
//! # Defaults when nothing matches
//!
//! | request | default |
//! |---|---|
//! | connect, resolve, web fetch | deny (`default.network`) |
//! | tool call | `tools.default`, `ask` unless configured (`default.tools`) |
//! | exec inside the sandbox | `tools.exec_default`, `allow` unless configured (`default.exec`) |
//! | file write outside `filesystem.writable` | deny (`default.write`), whatever the tool rules say |
//! | file read outside the filesystem paths | ask (`default.read`) |
//!
//! Built-in protections apply whatever the policy says: credential paths are hidden, special
//! address ranges need `network.allow_cidrs`, and a shell line that cannot be read statically
//! is never allowed by a rule.

mod decision;
mod host;
mod load;
mod path;
mod profile;
mod request;
mod settings;
mod shell;
mod suggest;
mod tool;
mod units;
mod wildcard;

use std::collections::BTreeMap;

pub use decision::{Decision, Evaluation, InvalidRequest, Location, Origin, Reason, Rule, UnknownDecision};
pub use host::{BadHost, Cidr, HostPattern, PatternError, SpecialRange, canonical_ip, normalize_host, special_range};
pub use load::{BUILTIN_HIDDEN, LoadErrors, NEVER_PASSED_ENV, Problem, RUN_SETS_ENV, env_name_matches};
pub use path::{Environment, NotAbsolute, PathPattern, PathSyntax, lexical_normalize};
pub use profile::Profile;
pub use request::{Access, OwnedRequest, Request, RequestError, parse_host_port};
pub use settings::{
    AlertSettings, AuditSettings, DnsSettings, Durability, FilesystemSettings, GUARD_SWITCHES, GuardSwitches, Hook,
    Hooks, Limits, NetworkSettings, Settings, ToolSettings,
};
pub use tool::canonical_tool;
pub use units::{ByteSize, Rate, UnitError, parse_duration};

/// The text of the built-in default policy.
pub const BUILTIN_POLICY: &str = include_str!("default.toml");

/// The commented starter policy that `portcullis policy init` writes.
pub const STARTER_POLICY: &str = include_str!("starter.toml");

/// A loaded, validated, immutable policy. Share it as `Arc<Policy>`; a reload swaps the `Arc`.
#[derive(Debug)]
pub struct Policy {
    root: Profile,
    agents: BTreeMap<String, Profile>,
    hooks: Hooks,
    audit: AuditSettings,
    alerts: AlertSettings,
    guards: GuardSwitches,
}

/// An agent name the policy has no profile for.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the policy has no agent `{name}`{}", known_list(.known))]
pub struct UnknownAgent {
    /// The name asked for.
    pub name: String,
    /// The agents the policy defines.
    pub known: Vec<String>,
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; it defines no agents".into()
    } else {
        format!("; it defines {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
    }
}

impl Policy {
    /// Parses and validates a policy. `file` names the source in messages.
    pub fn load(text: &str, file: &str, env: &Environment) -> Result<Self, LoadErrors> {
        let loaded = load::load(text, file, env)?;
        Ok(Policy {
            root: loaded.root,
            agents: loaded.agents,
            hooks: loaded.hooks,
            audit: loaded.audit,
            alerts: loaded.alerts,
            guards: loaded.guards,
        })
    }

    /// The built-in default policy: no network, the workdir writable (ephemeral), credentials
    /// hidden, conservative limits.
    pub fn builtin(env: &Environment) -> Self {
        match Self::load(BUILTIN_POLICY, "<builtin>", env) {
            Ok(policy) => policy,
            // INVARIANT: the built-in text is tested to load (`builtin_policy_loads`).
            Err(e) => unreachable!("the built-in policy does not load: {e}"),
        }
    }

    /// Decides a request with the top-level profile.
    pub fn evaluate(&self, request: &Request<'_>) -> Evaluation<'_> {
        self.root.evaluate(request)
    }

    /// The top-level profile.
    pub fn root(&self) -> &Profile {
        &self.root
    }

    /// An agent's profile (`None`: the top level).
    pub fn profile(&self, agent: Option<&str>) -> Result<&Profile, UnknownAgent> {
        match agent {
            None => Ok(&self.root),
            Some(name) => self
                .agents
                .get(name)
                .ok_or_else(|| UnknownAgent { name: name.to_owned(), known: self.agents.keys().cloned().collect() }),
        }
    }

    /// The agent names, in order.
    pub fn agents(&self) -> impl Iterator<Item = &str> {
        self.agents.keys().map(String::as_str)
    }

    /// `[hooks]`.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    /// The settings this policy sets that `portcullis run` loads but does not enforce (no key
    /// may be silently ignored): model budgets, per-tool rates, user hooks and the tool-call
    /// cap, which count the agent's tool calls (the hook and the MCP gateway will), not execs.
    /// Each as its place in the file and what it is.
    pub fn not_enforced_by_run(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut profiles: Vec<(String, &Profile)> = vec![(String::new(), &self.root)];
        profiles.extend(self.agents.iter().map(|(name, p)| (format!("agents.{name}."), p)));
        for (prefix, profile) in profiles {
            let s = profile.settings();
            let mut say = |key: String, what: &str| {
                if !out.iter().any(|o: &String| o.starts_with(&format!("`{key}`"))) {
                    out.push(format!("`{key}` ({what})"));
                }
            };
            if s.limits.tool_calls.is_some() {
                say(format!("{prefix}limits.tool_calls"), "counts tool calls; `run` sees execs: see `limits.execs`");
            }
            if s.limits.tokens.is_some() {
                say(format!("{prefix}limits.tokens"), "a model budget");
            }
            if s.limits.usd.is_some() {
                say(format!("{prefix}limits.usd"), "a model budget");
            }
            if !s.tools.rate.is_empty() {
                say(format!("{prefix}tools.rate"), "per-tool rates count tool calls");
            }
            // A client that honoured a passed `NO_PROXY` would go around the proxy and meet
            // Landlock with nothing to say why: `run` sets these itself.
            let overridden: Vec<&str> =
                RUN_SETS_ENV.iter().copied().filter(|v| s.environment.iter().any(|p| env_name_matches(p, v))).collect();
            if !overridden.is_empty() {
                say(
                    format!("{prefix}environment.pass"),
                    &format!("`run` sets {} itself, whatever is passed", overridden.join(", ")),
                );
            }
        }
        let hooks = &self.hooks;
        for (event, list) in [
            ("pre_tool_use", &hooks.pre_tool_use),
            ("post_tool_use", &hooks.post_tool_use),
            ("user_prompt_submit", &hooks.user_prompt_submit),
        ] {
            if !list.is_empty() {
                out.push(format!("`hooks.{event}` (user hooks run on tool calls)"));
            }
        }
        out
    }

    /// `[audit]`.
    pub fn audit(&self) -> &AuditSettings {
        &self.audit
    }

    /// `[alerts]`.
    pub fn alerts(&self) -> &AlertSettings {
        &self.alerts
    }

    /// `[guards]`.
    pub fn guards(&self) -> &GuardSwitches {
        &self.guards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::new("/w", "/h").unwrap()
    }

    #[test]
    fn builtin_policy_loads() {
        Policy::load(BUILTIN_POLICY, "<builtin>", &env()).unwrap();
    }

    #[test]
    fn starter_policy_loads_with_its_agent() {
        let p = Policy::load(STARTER_POLICY, "portcullis.toml", &env()).unwrap();
        assert_eq!(p.agents().collect::<Vec<_>>(), ["reviewer"]);
    }
}
