//! Typed, validated settings: limits, network, filesystem, tools, hooks, audit and alerts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::decision::Decision;
use crate::host::Cidr;
use crate::units::{ByteSize, Rate};

/// A profile's settings after inheritance.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// `[network]` settings other than the host rules.
    pub network: NetworkSettings,
    /// `[filesystem]`.
    pub filesystem: FilesystemSettings,
    /// `[limits]`.
    pub limits: Limits,
    /// `[tools]` settings other than the rules.
    pub tools: ToolSettings,
    /// `[environment] pass`: the host's environment variables passed into a sandbox (names, or
    /// prefixes ending in `*`), besides the terminal and locale ones always passed.
    pub environment: Vec<String>,
}

/// `[network]` settings.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkSettings {
    /// Special ranges that may be dialled (they stay denied otherwise).
    #[serde(serialize_with = "ser_cidrs")]
    pub allow_cidrs: Vec<Cidr>,
    /// The session's ceiling on client-to-upstream bytes.
    pub outbound_bytes: Option<ByteSize>,
    /// Loopback TCP ports of the agent's own services (a dev server it starts): inside a
    /// sandbox the agent may listen on them and connect to them.
    pub local_ports: Vec<u16>,
    /// `[network.dns]`.
    pub dns: DnsSettings,
}

fn ser_cidrs<S: serde::Serializer>(cidrs: &[Cidr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(cidrs.iter().map(|c| format!("{c:?}")))
}

/// `[network.dns]`: how the resolver treats tunnel-shaped names.
#[derive(Clone, Debug, Serialize)]
pub struct DnsSettings {
    /// Deny tunnel-shaped names even under an allowed parent (otherwise they are flagged).
    pub strict: bool,
    /// Labels longer than this are tunnel-shaped.
    pub max_label_length: u32,
    /// Labels with more Shannon entropy than this (bits per character) are tunnel-shaped.
    pub max_label_entropy: f64,
    /// More distinct subdomains than this under one parent in a session is tunnel-shaped.
    pub max_unique_subdomains: u32,
}

/// `[filesystem]`: what the sandbox mounts and the file tools may touch.
#[derive(Clone, Debug, Serialize)]
pub struct FilesystemSettings {
    /// Run the workdir as an overlay whose writes are kept apart until applied.
    pub ephemeral: bool,
    /// Writable paths, as written.
    pub writable: Vec<String>,
    /// Read-only paths, as written.
    pub read_only: Vec<String>,
    /// Hidden paths as written, after the built-in credential list.
    pub hidden: Vec<String>,
}

/// `[limits]`. `None` means no limit beyond the sandbox's own.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Limits {
    /// Session wall clock.
    #[serde(serialize_with = "ser_opt_duration")]
    pub wall_clock: Option<Duration>,
    /// Tool calls per session: the loop guard. Execs are not tool calls (`run` counts those
    /// against `execs`).
    pub tool_calls: Option<u64>,
    /// Execs per session under `run` (a build runs thousands; off unless set).
    pub execs: Option<u64>,
    /// Memory for the whole process tree.
    pub memory: Option<ByteSize>,
    /// Processes in the tree.
    pub processes: Option<u64>,
    /// Disk written (tmpfs and overlay upper layer).
    pub disk: Option<ByteSize>,
    /// Model tokens.
    pub tokens: Option<u64>,
    /// Money, in US dollars.
    pub usd: Option<f64>,
}

pub(crate) fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// `[tools]` settings other than the rules.
#[derive(Clone, Debug, Serialize)]
pub struct ToolSettings {
    /// The decision for tool calls that no rule matches.
    pub default: Decision,
    /// The decision for execs inside the sandbox that no `Bash(...)` rule matches.
    pub exec_default: Decision,
    /// Per-tool rate limits, by canonical tool name.
    pub rate: BTreeMap<String, Rate>,
}

/// One user hook, run in the Claude Code hook protocol.
#[derive(Clone, Debug, Serialize)]
pub struct Hook {
    /// Which tools it runs for: a tool name, `A|B`, or `*`.
    pub matcher: String,
    /// The shell command to run.
    pub command: String,
    /// How long it may take.
    #[serde(serialize_with = "ser_duration")]
    pub timeout: Duration,
    /// The decision when it crashes, times out or answers nonsense.
    pub on_error: Decision,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// `[hooks]`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Hooks {
    /// Before each tool call.
    pub pre_tool_use: Vec<Hook>,
    /// After each tool call.
    pub post_tool_use: Vec<Hook>,
    /// When the user submits a prompt.
    pub user_prompt_submit: Vec<Hook>,
}

/// How hard the audit store works to keep records across a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync each record before the action it describes proceeds.
    Sync,
    /// fsync batches of records (group commit).
    Group,
}

/// `[audit]`.
#[derive(Clone, Debug, Serialize)]
pub struct AuditSettings {
    /// How long records are kept.
    #[serde(serialize_with = "ser_duration")]
    pub retention: Duration,
    /// Where the store lives, when not the default.
    pub dir: Option<PathBuf>,
    /// See [`Durability`].
    pub durability: Durability,
    /// The free space the store leaves on its filesystem: below it, sessions do not start, and
    /// running ones end.
    pub min_free: ByteSize,
    /// Records a second one session may write, averaged over ten seconds (repeated refusals
    /// are folded first, and do not count).
    pub session_records_per_second: u64,
    /// Bytes of records one session may write in all.
    pub session_bytes: ByteSize,
}

/// `[alerts]`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AlertSettings {
    /// A program and its arguments, run on the host (without a shell) with each alert's JSON on
    /// stdin.
    pub command: Option<Vec<String>>,
    /// Calls outside these hours (minutes after midnight, local time) raise an alert.
    pub working_hours: Option<(u16, u16)>,
    /// Denials per minute past which an agent is reported as probing its walls.
    pub repeated_denials: u32,
}

/// The built-in guards a policy can switch: the shell rule families and the path checks.
pub const GUARD_SWITCHES: &[&str] = &[
    "destructive_delete",
    "force_push",
    "force_with_lease",
    "remote_code",
    "reverse_shell",
    "privilege_escalation",
    "persistence",
    "credential_access",
    "fork_bomb",
    "history_tampering",
    "harness_tampering",
    "shell_escape",
    "inline_code",
    "network_transfer",
    "write_outside",
    "git_discard",
    "dynamic",
    "credential_paths",
    "startup_files",
    "hard_links",
    "writable_exec",
    "anonymous_exec",
];

/// `[guards]`: how each built-in guard decides. A guard the policy does not mention keeps its
/// own default.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GuardSwitches {
    /// Guard id to its setting: `None` is `off`.
    pub switches: BTreeMap<String, Option<Decision>>,
}

impl GuardSwitches {
    /// The policy's setting for a guard: `None` when the policy is silent, `Some(None)` when it
    /// is switched off, `Some(Some(d))` when it decides `d`.
    pub fn get(&self, id: &str) -> Option<Option<Decision>> {
        self.switches.get(id).copied()
    }
}
