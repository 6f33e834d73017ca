//! Portcullis guards: analysers shared by the hooks, the exec monitor and the proxy.
//!
//! Pure: no I/O, except the path resolver's own opens.

pub mod gitconfig;
pub mod host;
pub mod path;
pub mod shell;
pub mod terminal;
