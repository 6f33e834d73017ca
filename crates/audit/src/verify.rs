//! Verification: every line's place (`seq`) and link (`prev`), every checkpoint's signature,
//! the segments' order and ends, the signed head and the prune marker. The first bad record is
//! named by segment, line, byte offset and `seq`.
//!
//! What it proves: the records up to the newest valid checkpoint are the ones this host's key
//! signed over, unedited, in order, none removed. Records after that checkpoint are chained
//! (an edit or a removal inside them is found) but not yet signed: a writer holding the store's
//! files could cut them off, or rewrite them and re-chain, undetected. Checkpoints every
//! `checkpoint_records` records or `checkpoint_interval`, and at every session's end, bound
//! that window.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::hex;
use crate::key::{PublicKey, checkpoint_message, prune_message};
use crate::record::Stored;
use crate::store::{GENESIS, parse_prefix, segments};

/// What verification found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The segments read.
    pub segments: u64,
    /// The records read (checkpoints included).
    pub records: u64,
    /// The checkpoints whose signatures verified.
    pub checkpoints: u64,
    /// The first record's `seq` (after pruning, not 1).
    pub first_seq: u64,
    /// The last record's `seq`.
    pub last_seq: u64,
    /// The last record a valid checkpoint covers.
    pub signed_through: u64,
    /// A partial record at the very end: a crash during a write. Not an error; the next
    /// writer cuts it off.
    pub torn: Option<Torn>,
    /// The prune marker, when older segments were removed by `prune`.
    pub pruned: Option<PruneMarker>,
    /// The first problem, if any: verification stops there.
    pub problem: Option<Problem>,
    /// The public key checkpoints were checked against.
    pub key: String,
}

impl Report {
    /// True when nothing is wrong (a torn tail is not wrong).
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// A partial last record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Torn {
    /// The segment's path.
    pub segment: PathBuf,
    /// Where the whole records end.
    pub offset: u64,
    /// The partial bytes after them.
    pub bytes: u64,
}

/// Where verification failed, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The segment's path.
    pub segment: PathBuf,
    /// The line, from 1 (0 for a problem with the segment or the store as a whole).
    pub line: u64,
    /// The line's byte offset in the segment.
    pub offset: u64,
    /// The bad record's `seq`, when it has one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.segment.display())?;
        if self.line > 0 {
            write!(f, " line {} (byte {})", self.line, self.offset)?;
        }
        if let Some(s) = self.seq {
            write!(f, ", record {s}")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// The signed marker `prune` leaves: the chain's end in the last segment it removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneMarker {
    /// The last segment removed.
    pub segment: u64,
    /// Its last record's `seq`.
    pub seq: u64,
    /// That record's hash.
    #[serde(with = "hex_hash")]
    pub hash: [u8; 32],
    /// When the prune ran.
    pub at_ms: u64,
    /// The signer's public key.
    pub key: String,
    /// The signature over (segment, seq, hash).
    pub sig: String,
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::hex::encode(h))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        crate::hex::decode(&text).ok_or_else(|| serde::de::Error::custom("not a 64-digit hex hash"))
    }
}

/// The prune marker in `dir`, unverified (the writer continues the chain from it).
pub fn pruned_through(dir: &Path) -> Option<PruneMarker> {
    let text = std::fs::read(dir.join("PRUNED")).ok()?;
    serde_json::from_slice(&text).ok()
}

/// A copy of a checkpoint, as `write_head` left it.
struct Head {
    segment: u64,
    line: Vec<u8>,
}

/// The head copies that exist.
fn read_heads(dir: &Path) -> std::io::Result<Vec<Head>> {
    let mut heads = Vec::new();
    for name in crate::store::HEADS {
        let text = match std::fs::read(dir.join(name)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut lines = text.split(|b| *b == b'\n');
        let segment = lines.next().and_then(|s| std::str::from_utf8(s).ok()?.parse().ok()).unwrap_or(0);
        heads.push(Head { segment, line: lines.next().unwrap_or_default().to_vec() });
    }
    Ok(heads)
}

/// The record a head copy's line names, when its signature verifies under `key`.
pub(crate) fn head_seq(line: &[u8], key: &PublicKey) -> Option<u64> {
    let p = parse_prefix(line)?;
    let prev: [u8; 32] = hex::decode_bytes(p.prev)?;
    check_checkpoint(line, p.seq, &prev, key).ok()?;
    Some(p.seq)
}

/// A checkpoint's signed fields.
#[derive(Deserialize)]
struct CheckpointData {
    covers: u64,
    hash: String,
    key: String,
    sig: String,
}

/// Checks the checkpoint on `line` (record `seq`, following a line hashed `prev`).
fn check_checkpoint(line: &[u8], seq: u64, prev: &[u8; 32], key: &PublicKey) -> Result<(), String> {
    let stored: Stored = serde_json::from_slice(line).map_err(|e| format!("the checkpoint is not valid JSON: {e}"))?;
    let data: CheckpointData = serde_json::from_value(serde_json::Value::Object(stored.record.data))
        .map_err(|e| format!("the checkpoint lacks its signed fields: {e}"))?;
    // Record 0 is the head a store is created with: it covers the empty chain.
    if data.covers != seq.saturating_sub(1) || data.hash != hex::encode(prev) {
        return Err(format!(
            "the checkpoint claims to cover record {} with another hash than the chain's",
            data.covers
        ));
    }
    let expected = key.to_string();
    if data.key != expected {
        return Err(format!("the checkpoint is signed by key {}, not by this host's key {expected}", short(&data.key)));
    }
    if !key.verifies(&checkpoint_message(data.covers, prev), &data.sig) {
        return Err("the checkpoint's signature does not verify: it was forged or altered".into());
    }
    Ok(())
}

fn short(key: &str) -> String {
    key.get(..16).map_or_else(|| key.to_owned(), |k| format!("{k}…"))
}

/// Verifies the store in `dir` against `key`.
pub fn verify(dir: &Path, key: &PublicKey) -> std::io::Result<Report> {
    let mut report = Report { key: key.to_string(), ..Report::default() };
    // The head copies first: a writer appending while this reads can only make the segments
    // newer than them, never older (read the other way round, a checkpoint written meanwhile
    // would look like records removed from the end).
    let heads = read_heads(dir)?;
    let found = segments(dir)?;
    let problem = |segment: &Path, line: u64, offset: u64, seq: Option<u64>, what: String| Problem {
        segment: segment.to_path_buf(),
        line,
        offset,
        seq,
        what,
    };
    // Where the chain must start: the prune marker's end, or nothing.
    let (mut seq, mut prev, mut number) = (0u64, GENESIS, 1u64);
    if let Some(marker) = pruned_through(dir) {
        let valid = marker.key == key.to_string()
            && key.verifies(&prune_message(marker.segment, marker.seq, &marker.hash), &marker.sig);
        if !valid {
            report.problem = Some(problem(
                &dir.join("PRUNED"),
                0,
                0,
                None,
                "the prune marker is not signed by this host's key: segments were removed without `audit prune`".into(),
            ));
            return Ok(report);
        }
        (seq, prev, number) = (marker.seq, marker.hash, marker.segment + 1);
        report.pruned = Some(marker);
    } else if dir.join("PRUNED").exists() {
        report.problem = Some(problem(&dir.join("PRUNED"), 0, 0, None, "the prune marker cannot be read".into()));
        return Ok(report);
    }
    report.first_seq = seq + 1;
    report.signed_through = seq;
    let mut checkpoint_hashes: Vec<[u8; 32]> = Vec::new();
    let mut prev_hex = [0u8; 64];
    // Segments a prune marker covers are on their way out (a prune that stopped between
    // writing the marker and removing them): skipped.
    let found: Vec<&(u64, PathBuf)> = found.iter().filter(|(n, _)| *n >= number).collect();
    for (i, (n, path)) in found.iter().enumerate() {
        if *n != number {
            let what = if i == 0 {
                format!(
                    "the store starts at segment {n}, and no signed prune marker covers the segments before it: \
                     segment {} was removed",
                    crate::store::segment_name(number)
                )
            } else {
                format!("segment {} is missing: it was removed", crate::store::segment_name(number))
            };
            report.problem = Some(problem(path, 0, 0, None, what));
            return Ok(report);
        }
        number += 1;
        report.segments += 1;
        let bytes = std::fs::read(path)?;
        let last_segment = i + 1 == found.len();
        let mut at = 0usize;
        let mut line_no = 0u64;
        let mut sealed = false;
        while at < bytes.len() {
            let Some(len) = memchr::memchr(b'\n', &bytes[at..]) else {
                if last_segment {
                    report.torn =
                        Some(Torn { segment: path.clone(), offset: at as u64, bytes: (bytes.len() - at) as u64 });
                } else {
                    report.problem = Some(problem(
                        path,
                        line_no + 1,
                        at as u64,
                        None,
                        "the segment ends with a partial record, and later segments exist".into(),
                    ));
                    return Ok(report);
                }
                break;
            };
            let line = &bytes[at..at + len];
            line_no += 1;
            let fail = |seq: Option<u64>, what: String| problem(path, line_no, at as u64, seq, what);
            if sealed {
                report.problem = Some(fail(None, "records follow the segment's seal".into()));
                return Ok(report);
            }
            let Some(p) = parse_prefix(line) else {
                report.problem = Some(fail(None, "the line is not a record (its leading fields are damaged)".into()));
                return Ok(report);
            };
            if p.seq != seq + 1 {
                let what = if p.seq > seq + 1 {
                    format!("record {} is missing here (found record {}): lines were deleted or moved", seq + 1, p.seq)
                } else {
                    format!("it is out of order (expected record {}): lines were moved or repeated", seq + 1)
                };
                report.problem = Some(fail(Some(p.seq), what));
                return Ok(report);
            }
            hex::encode_array(&mut prev_hex, &prev);
            if p.prev != prev_hex {
                // The line before no longer hashes to what this one recorded: it was changed
                // (or this line's `prev` was).
                report.problem = Some(if let Some(before_at) = previous_line(&bytes, at) {
                    problem(
                        path,
                        line_no - 1,
                        before_at as u64,
                        Some(seq),
                        format!(
                            "the record was changed: it no longer hashes to the `prev` that record {} holds",
                            p.seq
                        ),
                    )
                } else {
                    fail(Some(p.seq), "its `prev` does not match the chain before it".into())
                });
                return Ok(report);
            }
            if p.kind == b"checkpoint" {
                if let Err(what) = check_checkpoint(line, p.seq, &prev, key) {
                    report.problem = Some(fail(Some(p.seq), what));
                    return Ok(report);
                }
                report.checkpoints += 1;
                sealed = p.event == b"seal";
            }
            prev = *blake3::hash(line).as_bytes();
            if p.kind == b"checkpoint" {
                checkpoint_hashes.push(prev);
                report.signed_through = p.seq;
            }
            seq = p.seq;
            report.records += 1;
            at += len + 1;
        }
        if !last_segment && !sealed {
            report.problem = Some(problem(
                path,
                line_no,
                at as u64,
                None,
                "the segment does not end with its seal: records were removed from its end".into(),
            ));
            return Ok(report);
        }
    }
    report.last_seq = seq;
    // Heads are made with the store, before its first segment: read before the segments, they
    // may be missing only for a store created while this read, whose heads name record 0.
    let heads = if heads.len() < crate::store::HEADS.len() {
        read_heads(dir)?.into_iter().filter(|h| parse_prefix(&h.line).is_some_and(|p| p.seq <= seq)).collect()
    } else {
        heads
    };
    let head_problem = |what: String| Some(problem(&dir.join("HEAD.0"), 0, 0, None, what));
    let written = !found.is_empty() || report.pruned.is_some();
    if written && heads.len() < crate::store::HEADS.len() {
        report.problem = head_problem(format!(
            "{} of the store's two signed heads {} missing: a store has both from its creation, so they were deleted, \
             and the store cannot prove its length (records may have been cut from its end)",
            crate::store::HEADS.len() - heads.len(),
            if heads.is_empty() { "are" } else { "is" }
        ));
        return Ok(report);
    }
    // The newest copy whose signature verifies; a copy torn by a crash is passed over.
    let newest = heads.iter().filter_map(|h| Some((head_seq(&h.line, key)?, h))).max_by_key(|(s, _)| *s);
    match newest {
        None if !heads.is_empty() => {
            report.problem = head_problem("no copy of the signed head verifies: they were forged or altered".into());
        }
        None => {}
        // The head the store was created with: it names the empty chain.
        Some((0, _)) => {}
        Some((head_seq, head)) => {
            if head_seq > seq {
                report.problem = head_problem(format!(
                    "the store ends at record {seq}, but its signed head names a checkpoint at record {head_seq} in \
                     segment {}: records were removed from the end (a truncated or deleted segment)",
                    crate::store::segment_name(head.segment)
                ));
            } else if !checkpoint_hashes.contains(blake3::hash(&head.line).as_bytes()) {
                report.problem = head_problem(format!(
                    "the checkpoint the signed head names (record {head_seq}) is not the one in the store: \
                     the store was rewritten"
                ));
            }
        }
    }
    Ok(report)
}

/// Where the line before the one at `at` starts, if the segment has one.
fn previous_line(bytes: &[u8], at: usize) -> Option<usize> {
    (at > 0).then(|| memchr::memrchr(b'\n', &bytes[..at - 1]).map_or(0, |i| i + 1))
}
