//! The shell analyser must answer every byte string without panicking, and a line it cannot
//! read in full must never come back without a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_guard::shell::{GuardSettings, analyze, parse_bytes};

fuzz_target!(|data: &[u8]| {
    let settings = GuardSettings::default();
    let parsed = parse_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let analysis = analyze(text, &settings);
        if analysis.parsed.incomplete.is_some() {
            assert!(analysis.decision().is_some(), "an incomplete line came back clean");
        }
    } else {
        assert!(parsed.incomplete.is_some());
    }
});
