//! Decisions: who is asking, and what the policy says about a destination.

use std::net::IpAddr;
use std::sync::Arc;

use portcullis_policy::{Decision, Evaluation, Policy, Request, special_range};

/// Who a connection acts for: the agent, and the tool when the client said (proxy credentials).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// The agent's profile name; `None` for the policy's top level.
    pub agent: Option<String>,
    /// The tool, when known.
    pub tool: Option<String>,
}

/// A decision with the rule and reason a denial names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Let it through.
    pub allow: bool,
    /// The rule that decided, as `id `text``.
    pub rule: String,
    /// Why, in one line.
    pub reason: String,
}

impl Verdict {
    /// A denial by a rule of the proxy's own.
    pub fn deny(rule: &str, reason: impl Into<String>) -> Verdict {
        Verdict { allow: false, rule: rule.to_owned(), reason: reason.into() }
    }
}

/// What the proxy and the resolver ask.
pub trait Gate: Send + Sync {
    /// May `who` open a TCP connection to `host:port` (`host` normalised)?
    fn connect(&self, who: &Identity, host: &str, port: u16) -> Verdict;
    /// May `who` look up `name` (normalised)?
    fn resolve(&self, who: &Identity, name: &str) -> Verdict;
    /// May `who` dial `ip`, a resolved address? False for the special ranges unless the
    /// policy's `network.allow_cidrs` lists them.
    fn address_allowed(&self, who: &Identity, ip: IpAddr) -> bool;
    /// Is `agent` a profile of the policy?
    fn knows_agent(&self, agent: &str) -> bool;
}

/// The policy as a [`Gate`].
#[derive(Debug)]
pub struct PolicyGate {
    policy: Arc<Policy>,
}

impl PolicyGate {
    /// Decides with `policy`.
    pub fn new(policy: Arc<Policy>) -> Self {
        PolicyGate { policy }
    }

    fn decide(&self, who: &Identity, request: &Request<'_>) -> Verdict {
        match self.policy.profile(who.agent.as_deref()) {
            Ok(profile) => verdict(&profile.evaluate(request)),
            Err(e) => Verdict::deny("agents", e.to_string()),
        }
    }
}

fn verdict(e: &Evaluation<'_>) -> Verdict {
    let rule = e.rules.first().map(|r| format!("{} `{}`", r.id, r.text)).unwrap_or_default();
    let mut reason = e.explanation();
    if e.decision == Decision::Ask {
        reason.push_str("; the proxy cannot ask, so it denies");
    }
    Verdict { allow: e.decision == Decision::Allow, rule, reason }
}

impl Gate for PolicyGate {
    fn connect(&self, who: &Identity, host: &str, port: u16) -> Verdict {
        self.decide(who, &Request::Connect { host, port })
    }

    fn resolve(&self, who: &Identity, name: &str) -> Verdict {
        self.decide(who, &Request::Resolve { name })
    }

    fn address_allowed(&self, who: &Identity, ip: IpAddr) -> bool {
        if special_range(ip).is_none() {
            return true;
        }
        self.policy
            .profile(who.agent.as_deref())
            .is_ok_and(|p| p.settings().network.allow_cidrs.iter().any(|c| c.contains(ip)))
    }

    fn knows_agent(&self, agent: &str) -> bool {
        self.policy.profile(Some(agent)).is_ok()
    }
}
