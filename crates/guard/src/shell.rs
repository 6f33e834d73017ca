//! Shell-command analysis: every simple command a line can run, and the rule families that
//! judge them.

mod parse;

pub use parse::{
    Command, Incomplete, MAX_COMMANDS, MAX_DEPTH, MAX_LINE_BYTES, Parsed, Redirect, Relation, Word,
    is_shell, parse, parse_bytes,
};
