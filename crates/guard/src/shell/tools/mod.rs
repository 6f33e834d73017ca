//! What particular tools do with their arguments, read the way each tool reads them. Each
//! file covers one kind of tool; the rule families in `rules` decide what a finding is worth.

mod defences;
mod installers;
mod languages;
mod schedulers;
mod secrets;
mod shells;

pub(crate) use defences::{Defence, is_defence_file, switches_off_defence};
pub(crate) use installers::points_at_another_index;
pub(crate) use languages::{
    VI_FAMILY, command_arguments, command_line_runs_shell, reads_commands, script_writes, sed_script, sed_scripts,
};
pub(crate) use schedulers::schedules_a_command;
pub(crate) use secrets::hunts_for_secrets;
pub(crate) use shells::{SCRIPTING_SHELLS, scripting_shell_without_script, starts_a_session};

use super::parse::Word;

/// The value of every occurrence of any of `flags` in `args`, in each spelling: `-o F`, `-oF`
/// (one-letter flags), `--output F`, `--output=F`.
pub(crate) fn option_values<'a>(args: &'a [Word], flags: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    for (i, w) in args.iter().enumerate() {
        let t = w.text.as_str();
        for flag in flags {
            if t == *flag {
                out.extend(args.get(i + 1).map(|v| v.text.as_str()));
            } else if let Some(rest) = t.strip_prefix(flag) {
                if flag.starts_with("--") {
                    out.extend(rest.strip_prefix('='));
                } else if flag.len() == 2 && !rest.is_empty() {
                    out.push(rest);
                }
            }
        }
    }
    out
}

/// The operands of a command: words that are neither options nor the values of `with_value`.
pub(crate) fn operands<'a>(args: &'a [Word], with_value: &[&str]) -> Vec<&'a Word> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut options_done = false;
    while let Some(w) = args.get(i) {
        let t = w.text.as_str();
        i += 1;
        if options_done || !t.starts_with('-') || t == "-" {
            out.push(w);
        } else if t == "--" {
            options_done = true;
        } else if with_value.contains(&t) {
            i += 1;
        }
    }
    out
}
