//! Decisions, the rules behind them, and the evaluation an enforcement point acts on.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// What an enforcement point must do. `Ord` is strictness: `max()` over the matches is the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Let the action happen.
    Allow,
    /// Ask a human (or an approval queue) first.
    Ask,
    /// Refuse the action.
    Deny,
}

impl Decision {
    /// The lower-case name used in policy files and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Ask => "ask",
            Decision::Deny => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Decision {
    type Err = UnknownDecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" => Ok(Decision::Allow),
            "ask" => Ok(Decision::Ask),
            "deny" => Ok(Decision::Deny),
            _ => Err(UnknownDecision(s.to_owned())),
        }
    }
}

/// A string that is not `allow`, `ask` or `deny`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("unknown decision `{0}`: expected `allow`, `ask` or `deny`")]
pub struct UnknownDecision(pub String);

/// Where a rule came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Written in the policy file (or in the built-in default policy's text).
    Policy,
    /// A protection compiled into Portcullis, such as the credential-path list.
    Builtin,
    /// The documented fallback when no rule matched.
    Default,
}

/// A position in a policy file, for messages that point at the rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// The file name as the user gave it, or `<builtin>`.
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One rule as the user sees it: its id, its text and what it decides.
#[derive(Clone, Debug, Serialize)]
pub struct Rule {
    /// A stable path to the rule, such as `tools.deny[2]` or `agents.ci.network.allow[0]`.
    pub id: String,
    /// The rule as written (`Bash(git push *)`, `*.github.com:443`, `~/.ssh`).
    pub text: String,
    /// What the rule decides when it matches.
    pub decision: Decision,
    /// Where the rule came from.
    pub origin: Origin,
    /// Where the rule is written, when it comes from a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The author's explanation, shown with the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.id, self.text)?;
        if let Some(location) = &self.location {
            write!(f, " ({location})")?;
        }
        Ok(())
    }
}

/// Why a request was refused without any rule being consulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidRequest {
    /// A shell tool call without a string `command`.
    MissingCommand,
    /// A file tool call whose path field is not a string.
    BadPathField,
    /// A path that contains a NUL byte or is not UTF-8.
    BadPath,
    /// A web fetch without a parseable absolute `url`.
    BadUrl,
    /// A host name that is empty or malformed.
    BadHost,
    /// An exec with an empty argv.
    EmptyArgv,
    /// A shell command that is empty.
    EmptyCommand,
}

impl InvalidRequest {
    /// A lower-case sentence naming the problem.
    pub fn message(self) -> &'static str {
        match self {
            InvalidRequest::MissingCommand => "the tool input has no string `command`",
            InvalidRequest::BadPathField => "the tool input's path field is not a string",
            InvalidRequest::BadPath => "the path contains a NUL byte or is not valid UTF-8",
            InvalidRequest::BadUrl => "the tool input has no valid absolute `url`",
            InvalidRequest::BadHost => "the host name is empty or malformed",
            InvalidRequest::EmptyArgv => "the exec has an empty argv",
            InvalidRequest::EmptyCommand => "the shell command is empty",
        }
    }
}

/// The kind of cause behind a verdict, for people and for machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Reason {
    /// Rules written in the policy decided.
    Matched,
    /// A built-in protection decided (credential paths, special address ranges).
    Builtin,
    /// No rule matched: the documented default for this kind of request applied.
    Default,
    /// A shell line with parts that cannot be read statically, so no rule can allow it.
    NotStatic,
    /// The request was malformed; malformed requests are denied.
    Invalid(InvalidRequest),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Matched => f.write_str("rules in the policy matched"),
            Reason::Builtin => f.write_str("a built-in protection applies"),
            Reason::Default => f.write_str("no rule matched, so the default applies"),
            Reason::NotStatic => {
                f.write_str("the command has parts that cannot be read statically, so no rule can allow it")
            }
            Reason::Invalid(invalid) => write!(f, "malformed request: {}", invalid.message()),
        }
    }
}

/// The answer to "may this happen?": the verdict, the rules that made it, and why.
///
/// `rules` is never empty: defaults and built-in protections are rules too, so every verdict
/// can be traced to something a person can read.
#[derive(Clone, Debug)]
pub struct Evaluation<'p> {
    /// The verdict.
    pub decision: Decision,
    /// Every rule that decides at the verdict's level, in the order they were found.
    pub rules: SmallVec<[&'p Rule; 2]>,
    /// What kind of cause decided.
    pub reason: Reason,
}

impl Evaluation<'_> {
    /// A one-line human explanation of the verdict.
    pub fn explanation(&self) -> String {
        let verb = match self.decision {
            Decision::Allow => "allowed",
            Decision::Ask => "needs approval",
            Decision::Deny => "denied",
        };
        let mut out = match self.reason {
            Reason::Matched => format!("{verb}: matched"),
            Reason::Builtin => format!("{verb} by a built-in protection:"),
            Reason::Default => format!("{verb}: no rule matched, so the default applies:"),
            Reason::NotStatic => {
                format!("{verb}: the command has parts that cannot be read statically:")
            }
            Reason::Invalid(invalid) => format!("{verb}: {}:", invalid.message()),
        };
        for (i, rule) in self.rules.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(&rule.to_string());
            if let Some(note) = &rule.note {
                out.push_str(" - ");
                out.push_str(note);
            }
        }
        out
    }
}

/// Folds matches into a verdict: the strictest decision wins and collects its rules.
#[derive(Debug, Default)]
pub(crate) struct Verdict<'p> {
    pub(crate) decision: Option<Decision>,
    pub(crate) rules: SmallVec<[&'p Rule; 2]>,
    pub(crate) invalid: Option<InvalidRequest>,
}

impl<'p> Verdict<'p> {
    pub(crate) fn add(&mut self, rule: &'p Rule) {
        self.add_as(rule.decision, rule);
    }

    /// Adds `rule` deciding `decision`, which may differ from the rule's own decision for
    /// rules that decide per access (a read-only path allows reads and denies writes).
    pub(crate) fn add_as(&mut self, decision: Decision, rule: &'p Rule) {
        match self.decision {
            Some(current) if decision < current => {}
            Some(current) if decision == current => {
                if !self.rules.iter().any(|r| std::ptr::eq(*r, rule)) {
                    self.rules.push(rule);
                }
            }
            _ => {
                self.decision = Some(decision);
                self.rules.clear();
                self.rules.push(rule);
            }
        }
    }

    pub(crate) fn merge(&mut self, other: Verdict<'p>) {
        if let Some(decision) = other.decision {
            for rule in other.rules {
                self.add_as(decision, rule);
            }
        }
        if self.invalid.is_none() {
            self.invalid = other.invalid;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.decision.is_none()
    }

    pub(crate) fn invalid(&mut self, invalid: InvalidRequest, rule: &'p Rule) {
        self.invalid = Some(invalid);
        self.add_as(Decision::Deny, rule);
    }

    /// The final evaluation. `fallback` decides when nothing was added, so the result always
    /// names a rule.
    pub(crate) fn finish(mut self, fallback: &'p Rule) -> Evaluation<'p> {
        if self.decision.is_none() {
            self.add(fallback);
        }
        let decision = self.decision.unwrap_or(Decision::Deny);
        let reason = match self.invalid {
            Some(invalid) if decision == Decision::Deny => Reason::Invalid(invalid),
            _ => {
                let origin = |o: Origin| self.rules.iter().any(|r| r.origin == o);
                if origin(Origin::Policy) {
                    Reason::Matched
                } else if self.rules.iter().any(|r| r.id == crate::profile::NOT_STATIC_ID) {
                    Reason::NotStatic
                } else if origin(Origin::Builtin) {
                    Reason::Builtin
                } else {
                    Reason::Default
                }
            }
        };
        Evaluation { decision, rules: self.rules, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, decision: Decision) -> Rule {
        Rule { id: id.into(), text: id.into(), decision, origin: Origin::Policy, location: None, note: None }
    }

    #[test]
    fn strictest_decision_wins_and_keeps_only_its_rules() {
        let (a, k, d) = (rule("a", Decision::Allow), rule("k", Decision::Ask), rule("d", Decision::Deny));
        let fallback = rule("f", Decision::Ask);
        let mut v = Verdict::default();
        v.add(&a);
        v.add(&d);
        v.add(&k);
        let e = v.finish(&fallback);
        assert_eq!(e.decision, Decision::Deny);
        assert_eq!(e.rules.len(), 1);
        assert_eq!(e.rules[0].id, "d");
    }

    #[test]
    fn empty_verdict_uses_the_fallback_rule() {
        let fallback = rule("default", Decision::Ask);
        let e = Verdict::default().finish(&fallback);
        assert_eq!(e.decision, Decision::Ask);
        assert_eq!(e.rules[0].id, "default");
    }

    #[test]
    fn decision_order_is_strictness() {
        assert!(Decision::Deny > Decision::Ask && Decision::Ask > Decision::Allow);
        assert_eq!("ask".parse::<Decision>().unwrap(), Decision::Ask);
        assert!("alow".parse::<Decision>().is_err());
    }
}
