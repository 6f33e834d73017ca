//! p50 and p99 of shell analysis and host normalisation, one call at a time.
//!
//! `cargo run --release -p portcullis-guard --example latency`

#![allow(clippy::unwrap_used, reason = "a measurement tool stops on bad data")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis_guard::{host, shell};

#[path = "../benches/guards.rs"]
#[allow(dead_code, reason = "only the inputs are used here")]
mod inputs;

fn measure(name: &str, rounds: usize, mut f: impl FnMut()) {
    for _ in 0..rounds / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let total: Duration = times.iter().sum();
    println!(
        "{name:<28} p50 {:>9.2?}  p99 {:>9.2?}  {:>10.0}/s",
        p(0.50),
        p(0.99),
        rounds as f64 / total.as_secs_f64()
    );
}

fn main() {
    let settings = shell::GuardSettings::default();
    let mut i = 0;
    measure("shell, 80-char command", 20_000, || {
        i = (i + 1) % inputs::TYPICAL.len();
        black_box(shell::analyze(inputs::TYPICAL[i], &settings));
    });
    let mut plain = String::new();
    while plain.len() < 2048 {
        plain.push_str(inputs::TYPICAL[plain.len() % inputs::TYPICAL.len()]);
        plain.push('\n');
    }
    measure("shell, 2 KB of command lines", 2_000, || {
        black_box(shell::analyze(&plain, &settings));
    });
    let script = inputs::script();
    measure("shell, 2 KB script with ifs", 2_000, || {
        black_box(shell::analyze(&script, &settings));
    });
    for input in ["api.github.com", "Bücher.example.DE.", "0177.0.0.1"] {
        measure(&format!("host {input}"), 200_000, || {
            black_box(host::normalize(input).unwrap());
        });
    }
}
