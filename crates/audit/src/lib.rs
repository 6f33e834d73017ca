//! The audit store: every session's records in one hash chain of append-only JSON Lines
//! segments, with Ed25519-signed checkpoints, group commit, verification and queries.
//!
//! ```text
//! AUDIT/                 0700, the supervisor's user's; never visible in a sandbox
//!   lock                 writers hold it (flock) while they append, so sessions share one chain
//!   HEAD.0, HEAD.1       copies of the newest checkpoint, in turn: a removed tail is noticed
//!   PRUNED               the signed marker `prune` leaves for the segments it removed
//!   00000001.jsonl …     segments: one record a line, each with the hash of the line before
//! audit.key              the host's signing key (0600), beside the store, not in it
//! ```
//! See `docs/audit.md` for the schema and what verification proves.

pub mod alerts;
pub mod fold;
pub mod key;
pub mod ocsf;
pub mod prune;
pub mod read;
pub mod record;
pub mod redact;
pub mod store;
pub mod verify;

use std::path::PathBuf;

pub use key::{HostKey, PublicKey};
pub use record::{Cost, DecisionRecord, Kind, Provenance, Record, Stored};
pub use store::{Durability, Options, Store};

/// What can go wrong opening or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store's directory or a file in it cannot be made or opened.
    #[error("cannot open the audit store `{path}`")]
    Open {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store's directory is not private to this user.
    #[error("the audit store `{path}` is not private: {why}")]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A record could not be written: the store takes no more, and the calls it would have
    /// described are denied.
    #[error("cannot write the audit store `{path}`: {cause}")]
    Unwritable {
        /// The segment.
        path: PathBuf,
        /// The first failure, as the system gave it.
        cause: String,
    },
    /// The filesystem holding the store has less free space than the store's floor: no new
    /// session starts, and a running one ends (its end is still recorded, within the floor).
    #[error(
        "the filesystem holding the audit store `{path}` has {} free, below the store's floor of {} \
         ([audit] min_free): sessions are refused until space is freed",
        mib(*free),
        mib(*floor)
    )]
    LowSpace {
        /// The store's directory.
        path: PathBuf,
        /// The bytes free (to this user).
        free: u64,
        /// The floor.
        floor: u64,
    },
    /// The store's tail is not a record this writer can continue from.
    #[error("the audit store `{path}` cannot be continued: {why}")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The key file cannot be read or made.
    #[error("cannot read or make the audit key `{path}`")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key file is not safe to use.
    #[error("the audit key `{path}` is refused: {why}")]
    KeyUnsafe {
        /// The key file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The store was closed.
    #[error("the audit store is closed")]
    Closed,
}

/// Lower-case hex, both ways.
pub(crate) mod hex {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    /// `bytes` as hex.
    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = Vec::with_capacity(bytes.len() * 2);
        encode_into(&mut out, bytes);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends `bytes` as hex to `out`.
    pub(crate) fn encode_into(out: &mut Vec<u8>, bytes: &[u8]) {
        for b in bytes {
            out.push(DIGITS[usize::from(b >> 4)]);
            out.push(DIGITS[usize::from(b & 15)]);
        }
    }

    /// `bytes` as hex into `out`.
    pub(crate) fn encode_array(out: &mut [u8; 64], bytes: &[u8; 32]) {
        for (i, b) in bytes.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 15)];
        }
    }

    fn value(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }

    /// Exactly `N` bytes from `2N` lower-case hex digits.
    pub(crate) fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
        decode_bytes(text.as_bytes())
    }

    /// As [`decode`], from bytes.
    pub(crate) fn decode_bytes<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
        if text.len() != 2 * N {
            return None;
        }
        let mut out = [0u8; N];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            out[i] = value(pair[0])? << 4 | value(pair[1])?;
        }
        Some(out)
    }
}

/// `12.5 MiB`.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}
