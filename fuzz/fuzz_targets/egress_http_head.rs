//! The proxy's request-head parser must never panic, and the head it sends upstream must be
//! one head: a single blank line, at its end, so no request can be smuggled inside another.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_egress::inspect_request_head;

fuzz_target!(|data: &[u8]| {
    if let Ok((_, _, _, upstream)) = inspect_request_head(data) {
        assert!(upstream.ends_with(b"\r\n\r\n"));
        let body = &upstream[..upstream.len() - 4];
        assert!(!body.windows(4).any(|w| w == b"\r\n\r\n"), "a second head inside the first");
    }
});
