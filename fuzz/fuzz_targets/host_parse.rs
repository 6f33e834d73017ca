//! Host and URL parsing must never panic, and what it returns must be stable: normalising a
//! normalised host gives the same host.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_guard::host::{Host, normalize, parse_url, to_ascii_strict};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = parse_url(text);
    let _ = to_ascii_strict(text);
    if let Ok(info) = normalize(text) {
        let again = normalize(&info.host.to_string()).expect("a normalised host normalises again");
        assert_eq!(again.host, info.host);
        if let Host::Name(name) = &info.host {
            assert!(name.is_ascii() && !name.ends_with('.'));
        }
    }
});
