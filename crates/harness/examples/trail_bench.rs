//! `bench/audit.sh`'s measure of a session's own path to the store: N allowed exec records
//! (the ordinary path) appended through a session's log (folding and the record budget in
//! front of the store), against the same records appended to the store directly, each into a
//! fresh store in DIR, alternating three times.
//!
//! `cargo run --release -p portcullis-harness --example trail_bench -- DIR N`
//! prints `direct <records/s>` and `trail <records/s>` (the best of three each).

use std::sync::Arc;
use std::time::Instant;

use portcullis_audit::{DecisionRecord, HostKey, Kind, Options, Record, Store};
use portcullis_harness::audit::{Budget, SessionLog, Trail};
use portcullis_policy::Decision;
use serde_json::json;

fn record(log: Option<&SessionLog>, i: u64) -> Record {
    let mut r = match log {
        Some(l) => l.record(Kind::Exec, "exec"),
        None => {
            let mut r = Record::new(Kind::Exec, "exec", "20261124-083934-abcdef");
            r.uid = Some(rustix::process::getuid().as_raw());
            r
        }
    };
    r.input = Some(json!({"argv": ["git", "status", i], "pid": 4242}));
    r.decision = Some(DecisionRecord { decision: Decision::Allow, rules: Vec::new(), reason: String::new() });
    r
}

fn store(dir: &std::path::Path, name: &str) -> Result<Store, Box<dyn std::error::Error>> {
    let key = HostKey::load_or_create(&dir.join("audit.key"))?;
    let path = dir.join(name);
    let _ = std::fs::remove_dir_all(&path);
    Ok(Store::open(&path, key, Options { checkpoint_records: 10_000, ..Options::default() })?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: trail_bench DIR N")?);
    let n: u64 = args.next().ok_or("usage: trail_bench DIR N")?.parse()?;
    let (mut direct, mut trail) = (0f64, 0f64);
    for _ in 0..3 {
        let s = store(&dir, "direct")?;
        let started = Instant::now();
        for i in 0..n {
            s.append(record(None, i))?;
        }
        s.close()?;
        direct = direct.max(n as f64 / started.elapsed().as_secs_f64());

        let log = SessionLog::new(Arc::new(store(&dir, "trail")?), "20261124-083934-abcdef", None)
            .with_budget(Budget::new(u64::MAX / 20, u64::MAX));
        let started = Instant::now();
        for i in 0..n {
            let r = record(Some(&log), i);
            log.append(r)?;
        }
        log.flush_folded()?;
        log.store().close()?;
        trail = trail.max(n as f64 / started.elapsed().as_secs_f64());
    }
    println!("direct {direct:.0}");
    println!("trail {trail:.0}");
    Ok(())
}
