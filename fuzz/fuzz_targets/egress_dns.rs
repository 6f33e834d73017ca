//! The resolver's DNS parser must never panic on any message, and what it answers must be a
//! well-formed response to the same id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_egress::dns::{Rcode, format_error, parse_query, response};
use portcullis_egress::tunnel::TunnelDetector;

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = parse_query(data) {
        let addrs = ["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        let r = response(&q, Rcode::NoError, &addrs, 30, q.udp_limit());
        assert!(r.len() >= 12 && r.len() <= q.udp_limit().max(512) + 64);
        assert_eq!(&r[..2], &data[..2]);
        let again = parse_query(&r);
        assert!(again.is_err(), "a response never parses as a query");
        let _ = q.name();
        let _ = TunnelDetector::new(40, 4.0, 64).check(&q.labels);
    } else if let Some(r) = format_error(data) {
        assert_eq!(r.len(), 12);
    }
});
