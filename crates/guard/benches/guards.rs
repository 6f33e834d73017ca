//! Shell analysis and host normalisation. Run: `cargo bench -p portcullis-guard --bench guards`.
//! For p50/p99, run the `latency` example.

#![allow(clippy::unwrap_used, reason = "a benchmark panics on setup errors")]

use divan::{Bencher, black_box, counter::ItemsCount};
use portcullis_guard::{host, shell};

fn main() {
    divan::main();
}

/// Commands of about 80 characters, as agents write them.
pub(crate) const TYPICAL: &[&str] = &[
    "git log --oneline --graph --decorate -n 20 -- src/ && git status --short --branch",
    "cargo test --workspace --all-features -- --nocapture 2>&1 | tail -n 50 > test.log",
    "find . -name '*.rs' -not -path './target/*' | xargs grep -n 'unwrap()' | head -40",
    "curl -fsSL https://example.com/install.sh -o install.sh && sha256sum install.sh",
    "npm run build --workspace=packages/web && npm test -- --coverage --watchAll=false",
    "docker compose -f docker-compose.yml up -d db && sleep 5 && psql -h localhost -c ''",
    "for f in src/*.ts; do npx prettier --check \"$f\" || echo \"needs format: $f\"; done",
    "python3 -m pytest tests/ -x -q --maxfail=3 -k 'not slow' | tee pytest-output.txt",
];

/// About 2 KB: the typical lines, each followed by an `if` statement.
pub(crate) fn script() -> String {
    let mut s = String::from("#!/bin/bash\nset -euo pipefail\n");
    while s.len() < 2048 {
        s.push_str(TYPICAL[s.len() % TYPICAL.len()]);
        s.push('\n');
        s.push_str("if [ -f Cargo.toml ]; then cargo fmt --check; else echo 'no cargo'; fi\n");
    }
    s
}

#[divan::bench]
fn shell_typical_line(bencher: Bencher) {
    let settings = shell::GuardSettings::default();
    bencher.counter(ItemsCount::new(TYPICAL.len())).bench_local(|| {
        for line in TYPICAL {
            black_box(shell::analyze(black_box(line), &settings).decision());
        }
    });
}

#[divan::bench]
fn shell_2kb_script(bencher: Bencher) {
    let settings = shell::GuardSettings::default();
    let script = script();
    bencher.bench_local(|| black_box(shell::analyze(black_box(&script), &settings).decision()));
}

#[divan::bench(args = ["api.github.com", "Bücher.example.DE.", "0177.0.0.1", "[::ffff:169.254.169.254]"])]
fn host_normalize(bencher: Bencher, input: &str) {
    bencher.bench_local(|| black_box(host::normalize(black_box(input)).unwrap()));
}

#[divan::bench]
fn url_parse(bencher: Bencher) {
    bencher.bench_local(|| {
        black_box(host::parse_url(black_box("https://user@api.github.com:443/repos/x/y?page=2")).unwrap())
    });
}
