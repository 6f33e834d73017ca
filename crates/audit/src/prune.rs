//! Retention: segments whose every record is older than the retention period are removed, and
//! a signed marker names where the chain they held ended, so what remains still verifies.
//!
//! Order, for a crash at any step: the marker is written (and synced) first, then the segments
//! are removed; verification skips segments the marker already covers. Then a `store_pruned`
//! record goes into the chain, with a checkpoint after it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::key::{HostKey, prune_message};
use crate::record::{Kind, Record};
use crate::store::{Flock, Options, Store, parse_prefix, segments};
use crate::verify::PruneMarker;
use crate::{AuditError, hex};

/// What a prune removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pruned {
    /// The segments removed.
    pub segments: Vec<PathBuf>,
    /// The records they held.
    pub records: u64,
    /// The last record removed, when any was.
    pub through_seq: Option<u64>,
}

/// Removes the oldest segments whose records are all older than `cutoff_ms` (never the newest
/// segment), leaving a marker signed with `key`. With `dry_run`, only reports what it would do.
pub fn prune(dir: &Path, key: HostKey, cutoff_ms: u64, dry_run: bool) -> Result<Pruned, AuditError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError::Open { path, source }
    };
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new().read(true).write(true).open(&lock_path).map_err(io(&lock_path))?;
    let held = Flock::exclusive(&lock).map_err(io(&lock_path))?;
    let found = segments(dir).map_err(io(dir))?;
    let mut pruned = Pruned::default();
    let mut last: Option<(u64, u64, [u8; 32])> = None;
    for (n, path) in found.iter().take(found.len().saturating_sub(1)) {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let mut newest = 0u64;
        let mut end: Option<(u64, [u8; 32])> = None;
        let mut records = 0;
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let prefix = parse_prefix(line).ok_or_else(|| AuditError::Corrupt {
                path: path.clone(),
                why: "a line is not a record; run `portcullis audit verify`".into(),
            })?;
            if prefix.kind != b"checkpoint" {
                newest = newest.max(timestamp(line).unwrap_or(u64::MAX));
            }
            end = Some((prefix.seq, *blake3::hash(line).as_bytes()));
            records += 1;
        }
        if newest >= cutoff_ms {
            break;
        }
        let Some((seq, hash)) = end else { break };
        last = Some((*n, seq, hash));
        pruned.segments.push(path.clone());
        pruned.records += records;
        pruned.through_seq = Some(seq);
    }
    let Some((segment, seq, hash)) = last else { return Ok(pruned) };
    if dry_run {
        return Ok(pruned);
    }
    let marker = PruneMarker {
        segment,
        seq,
        hash,
        at_ms: crate::record::now_ms(),
        key: key.public().to_string(),
        sig: hex::encode(&key.sign(&prune_message(segment, seq, &hash))),
    };
    let tmp = dir.join("PRUNED.tmp");
    let text = serde_json::to_vec(&marker).map_err(|e| AuditError::Open { path: tmp.clone(), source: e.into() })?;
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    f.write_all(&text).and_then(|()| f.sync_all()).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dir.join("PRUNED")).map_err(io(dir))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    for path in &pruned.segments {
        std::fs::remove_file(path).map_err(io(path))?;
    }
    drop(held);
    let store = Store::open(dir, key, Options::default())?;
    let mut record = Record::new(Kind::Lifecycle, "store_pruned", "store");
    record.data = json!({
        "segments": pruned.segments,
        "records": pruned.records,
        "through_seq": seq,
        "cutoff_ms": cutoff_ms,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    store.commit(record)?;
    store.close()?;
    Ok(pruned)
}

/// A line's `ts_ms`.
fn timestamp(line: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(line, b"\"ts_ms\":")? + 8;
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits]).ok()?.parse().ok()
}
