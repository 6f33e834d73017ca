//! `portcullis`: argument parsing and wiring. Decisions live in the library crates.

mod audit_cmd;
mod check_cmd;
mod egress_cmd;
mod policy_cmd;
mod replay_cmd;
mod run_cmd;
mod sessions;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `portcullis run` does, in one line.
const RUN_ABOUT: &str = "Run an agent (and everything it starts) in a sandbox";

/// Exit status for policy and setup errors (every problem is listed first).
const EXIT_SETUP: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "The control plane for AI agents: policy for every tool call, walls around the host, an audit trail the agent cannot edit",
    long_about = "Portcullis decides what an AI agent's tool calls actually do. The model decides what it wants; \
Portcullis checks each tool call, exec, connection and file access against one policy, and answers \
allow, ask or deny, naming the rules behind every answer.",
    after_help = "Examples:
  portcullis policy init                         write a commented starter policy
  portcullis policy check portcullis.toml        validate a policy, listing every problem
  portcullis policy explain --tool Bash --input '{\"command\":\"git push --force\"}'
                                                 show what the policy decides, and why
  portcullis check                               list what this host can enforce
  portcullis run -- claude                       run an agent in the sandbox
  portcullis diff; portcullis apply              show, then keep, what it changed
  portcullis audit show; portcullis audit verify  read the session's trail, and check it

Run `portcullis help <command>` for more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, check and question policies.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// Verify, live, which sandbox features this host and user can enforce.
    #[command(after_help = "Exits 0 when every feature is available and 2 otherwise, naming what is missing.

Examples:
  portcullis check
  portcullis check --json | jq '.checks[] | select(.available | not)'")]
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    #[command(about = RUN_ABOUT)]
    Run(run_cmd::RunArgs),
    /// Show what a session changed in its ephemeral workdir.
    Diff(sessions::DiffArgs),
    /// Copy a session's changes into the real workdir.
    Apply(sessions::ApplyArgs),
    /// Serve the egress proxy (and optionally the resolver) alone, on a host port.
    Proxy(egress_cmd::ProxyArgs),
    /// Verify, show, tail and query the audit trail.
    Audit(audit_cmd::AuditArgs),
}

/// The command line. `run` has a parser of its own: a session's start-up is measured against
/// bubblewrap's, and building every other command's parser first cost it about 0.2 ms.
fn parse() -> Command {
    use clap::{Args, FromArgMatches};
    if std::env::args_os().nth(1).is_some_and(|a| a == "run") {
        let cmd = run_cmd::RunArgs::augment_args(clap::Command::new("run").bin_name("portcullis run").about(RUN_ABOUT));
        let matches = cmd.get_matches_from(std::env::args_os().skip(1));
        return Command::Run(run_cmd::RunArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()));
    }
    Cli::parse().command
}

fn main() -> ExitCode {
    portcullis_sandbox::restore_default_sigpipe();
    let command = parse();
    let result = match command {
        Command::Policy(command) => policy_cmd::run(command),
        Command::Check { json } => Ok(check_cmd::run(json)),
        Command::Run(args) => run_cmd::run(args),
        Command::Diff(args) => sessions::diff(&args),
        Command::Apply(args) => sessions::apply(&args),
        Command::Proxy(args) => egress_cmd::proxy(&args),
        Command::Audit(args) => audit_cmd::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}
