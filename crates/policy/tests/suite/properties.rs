//! Property tests for host patterns and normalisation.

use portcullis_policy::{HostPattern, normalize_host};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    // Hyphens in the third and fourth places mark an IDNA A-label (`xn--…`), which must then be
    // valid punycode: leave those to the IDNA tests.
    "[a-z][a-z0-9-]{0,8}[a-z0-9]".prop_filter("reserved for A-labels", |l| l.get(2..4) != Some("--"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `*.suffix` never matches a host that shares the suffix's text without a label boundary,
    /// the suffix itself, or a host that merely starts with the suffix.
    #[test]
    fn wildcard_never_crosses_a_label_boundary(
        suffix in prop::collection::vec(label(), 1..4),
        glue in "[a-z0-9-]{1,8}",
        tail in prop::collection::vec(label(), 1..3),
        sub in prop::collection::vec(label(), 1..3),
    ) {
        let suffix = suffix.join(".");
        let pattern = HostPattern::parse(&format!("*.{suffix}")).unwrap();
        let glued = format!("{glue}{suffix}");
        prop_assert!(!pattern.matches(&glued, Some(443)), "{glued}");
        let extended = format!("{suffix}.{}", tail.join("."));
        // (`e6.e6` is a real subdomain of `e6`: only a host that does not end in `.suffix` counts.)
        if !extended.ends_with(&format!(".{suffix}")) {
            prop_assert!(!pattern.matches(&extended, Some(443)), "{extended}");
        }
        prop_assert!(!pattern.matches(&suffix, Some(443)));
        let real = format!("{}.{suffix}", sub.join("."));
        prop_assert!(pattern.matches(&real, Some(443)), "{real}");
    }

    /// Normalisation is idempotent and case-insensitive.
    #[test]
    fn normalisation_is_idempotent(labels in prop::collection::vec("[a-zA-Z][a-zA-Z0-9]{0,6}", 1..4), dot in any::<bool>()) {
        let name = format!("{}{}", labels.join("."), if dot { "." } else { "" });
        let once = normalize_host(&name).unwrap().into_owned();
        prop_assert_eq!(normalize_host(&once).unwrap().into_owned(), once.clone());
        prop_assert_eq!(once.clone(), once.to_lowercase());
        prop_assert!(!once.ends_with('.'));
    }

    /// Every spelling of an IPv4 address normalises to the dotted quad.
    #[test]
    fn ipv4_spellings_agree(a in any::<u8>(), b in any::<u8>(), c in any::<u8>(), d in any::<u8>()) {
        let dotted = format!("{a}.{b}.{c}.{d}");
        let number = u32::from_be_bytes([a, b, c, d]);
        for spelling in [
            number.to_string(),
            format!("0x{number:x}"),
            format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
            format!("{a}.{b}.{}", u16::from_be_bytes([c, d])),
            format!("[::ffff:{dotted}]"),
        ] {
            prop_assert_eq!(normalize_host(&spelling).unwrap().into_owned(), dotted.clone(), "{}", spelling);
        }
    }
}
