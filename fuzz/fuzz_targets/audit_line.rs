//! Reading a stored line must never panic, and the canonical encoding must be a fixed point: a
//! record read back and encoded again has the same bytes, so its hash is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_audit::read;
use portcullis_audit::store::parse_prefix;

fuzz_target!(|data: &[u8]| {
    let _ = parse_prefix(data);
    if let Some(stored) = read::parse(data) {
        let line = stored.to_line();
        let again = read::parse(&line).expect("a canonical line reads back");
        assert_eq!(again.to_line(), line, "encoding is a fixed point");
        // A stored line's prefix is read without parsing: it holds for a hex `prev`, as the
        // store writes it.
        if stored.prev.len() == 64 && stored.prev.bytes().all(|b| b.is_ascii_hexdigit()) {
            let p = parse_prefix(&line).expect("a canonical line's prefix parses");
            assert_eq!(p.seq, stored.seq);
            assert_eq!(p.kind, stored.record.kind.as_str().as_bytes());
        }
    }
});
