//! `bench/audit.sh`'s measuring side: appends N records of about 200 bytes to a fresh store
//! with group commit (durable within the commit interval), then verifies the store.
//!
//! `cargo run --release -p portcullis-audit --example audit_bench -- DIR N`
//! prints `append <records/s>` and `verify <records/s>`.

use std::time::Instant;

use portcullis_audit::{DecisionRecord, HostKey, Kind, Options, Record, Store};
use portcullis_policy::Decision;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: audit_bench DIR N")?);
    let n: u64 = args.next().ok_or("usage: audit_bench DIR N")?.parse()?;
    let key = HostKey::load_or_create(&dir.join("audit.key"))?;
    let store_dir = dir.join("audit");
    let store = Store::open(&store_dir, key, Options { checkpoint_records: 10_000, ..Options::default() })?;
    let started = Instant::now();
    for i in 0..n {
        let mut r = Record::new(Kind::Exec, "exec", "20261124-083934-abcdef");
        r.input = Some(json!({"argv": ["git", "status", i], "pid": 4242}));
        r.decision = Some(DecisionRecord { decision: Decision::Allow, rules: Vec::new(), reason: String::new() });
        store.append(r)?;
    }
    store.close()?;
    let append = n as f64 / started.elapsed().as_secs_f64();
    let public = store.public_key();
    drop(store);
    let started = Instant::now();
    let report = portcullis_audit::verify::verify(&store_dir, &public)?;
    let verify = report.records as f64 / started.elapsed().as_secs_f64();
    if let Some(p) = report.problem {
        return Err(format!("verification failed: {p}").into());
    }
    let bytes: u64 = portcullis_audit::store::segments(&store_dir)?
        .iter()
        .map(|(_, p)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!("append {append:.0}");
    println!("verify {verify:.0}");
    println!("bytes_per_record {}", bytes / report.records.max(1));
    Ok(())
}
