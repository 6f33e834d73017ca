//! The store's hot paths: redacting a proxy request's record, encoding a record, `append`
//! (redaction, encoding, queueing; the commit thread writes behind), `commit` as the exec gate
//! calls it (written before it returns), and `verify` over a 100,000-record store.
//!
//! Run: `cargo bench -p portcullis-audit --bench store`. `bench/audit.sh` compares the store
//! with the disk's own limit.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark panics on setup errors")]

use std::path::PathBuf;

use divan::{Bencher, black_box, counter::ItemsCount};
use portcullis_audit::{HostKey, Kind, Options, Record, Store};
use serde_json::json;

fn main() {
    divan::main();
}

fn record(i: u64) -> Record {
    let mut r = Record::new(Kind::Exec, "exec", "20261124-083934-abcdef");
    r.agent = Some("claude".into());
    r.input = Some(json!({"argv": ["git", "status", "--short"], "cwd": "/src/app", "pid": 4242 + i}));
    r
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-audit-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open(dir: &std::path::Path) -> Store {
    let key = HostKey::load_or_create(&dir.join("audit.key")).unwrap();
    Store::open(&dir.join("audit"), key, Options::default()).unwrap()
}

/// What the proxy records for each request, through the redactor (a fresh copy each time, as
/// each request's record is).
#[divan::bench]
fn redact_connect(bencher: Bencher) {
    use portcullis_audit::redact::{Placeholder, Redactor};
    let input = json!({"host": "registry.npmjs.org", "port": 443, "method": "GET",
        "path": "/@types%2fnode/-/node-22.10.1.tgz", "via": "http", "address": "104.16.1.35:443"});
    let outcome = json!({"status": 200, "bytes_up": 412, "bytes_down": 1024, "address": "104.16.1.35:443"});
    bencher.counter(ItemsCount::new(1usize)).with_inputs(|| (input.clone(), outcome.clone())).bench_local_values(
        |(mut i, mut o)| {
            Placeholder.redact(&mut i);
            Placeholder.redact(&mut o);
            (i, o)
        },
    );
}

#[divan::bench]
fn encode(bencher: Bencher) {
    let r = record(1);
    let mut out = Vec::with_capacity(512);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        out.clear();
        black_box(&r).encode_body(&mut out);
        black_box(out.len())
    });
}

/// Times `op` on one record at a time, on a fresh store in a directory of its own.
fn on_store(bencher: Bencher, name: &str, op: fn(&Store, Record)) {
    let dir = scratch(name);
    let store = open(&dir);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| op(&store, record(7)));
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[divan::bench(sample_count = 20)]
fn append(bencher: Bencher) {
    on_store(bencher, "append", |store, r| {
        store.append(r).unwrap();
    });
}

#[divan::bench(sample_count = 20)]
fn commit(bencher: Bencher) {
    on_store(bencher, "commit", |store, r| store.commit(r).unwrap());
}

#[divan::bench(sample_count = 10)]
fn verify_100k(bencher: Bencher) {
    let dir = scratch("verify");
    let store = open(&dir);
    for i in 0..100_000 {
        store.append(record(i)).unwrap();
    }
    store.close().unwrap();
    let key = store.public_key();
    bencher.counter(ItemsCount::new(100_000usize)).bench_local(|| {
        let report = portcullis_audit::verify::verify(&dir.join("audit"), &key).unwrap();
        assert!(report.ok());
    });
    let _ = std::fs::remove_dir_all(&dir);
}
