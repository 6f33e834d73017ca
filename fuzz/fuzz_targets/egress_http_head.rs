//! The proxy's request-head parser must never panic, and the head it sends upstream must be
//! one head: a single blank line, at its end, so no request can be smuggled inside another.
//! Read back as the destination would, that head must frame the body exactly as the proxy did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_egress::inspect_request_head;

fuzz_target!(|data: &[u8]| {
    if let Ok((method, _, framing, upstream)) = inspect_request_head(data) {
        assert!(upstream.ends_with(b"\r\n\r\n"));
        let body = &upstream[..upstream.len() - 4];
        assert!(!body.windows(4).any(|w| w == b"\r\n\r\n"), "a second head inside the first");
        match inspect_request_head(&upstream) {
            Ok(again) => assert_eq!((again.0, again.2), (method, framing), "the destination would frame it otherwise"),
            // The proxy adds `Host` and the framing field: a head at the field limit passes it.
            Err(431) => {}
            Err(status) => panic!("the head sent upstream is one the proxy would refuse: {status}"),
        }
    }
});
