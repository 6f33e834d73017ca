//! Host and URL normalisation against the WHATWG, UTS #46 and SSRF data in `tests/data`.

use portcullis_guard::host::{self, Host};
use serde_json::Value;

const SPECIAL: &[&str] = &["http", "https", "ws", "wss", "ftp"];

/// WPT cases for absolute URLs in special schemes: a failure must fail, and every host must
/// come out as the standard's `hostname`.
#[test]
fn wpt_url_host_parsing_cases_pass() {
    let cases: Vec<Value> = serde_json::from_str(include_str!("../data/wpt_url/urltestdata.json")).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for case in cases.iter().filter(|c| c.is_object()) {
        let input = case["input"].as_str().unwrap();
        if !case["base"].is_null() {
            continue;
        }
        let scheme = input.trim_start().split(':').next().unwrap_or_default().to_ascii_lowercase();
        if !SPECIAL.contains(&scheme.as_str()) {
            continue;
        }
        checked += 1;
        let ours = host::parse_url(input);
        if case["failure"] == true {
            if ours.is_ok() {
                wrong.push(format!("{input:?} should fail, got {:?}", ours.map(|t| t.host.host)));
            }
            continue;
        }
        let expected = case["hostname"].as_str().unwrap().trim_start_matches('[').trim_end_matches(']');
        match ours {
            Ok(t) => {
                let got = match &t.host.host {
                    Host::Name(n) => n.clone(),
                    Host::Ip(ip) => ip.to_string(),
                };
                // The standard writes IPv4-mapped IPv6 as `::ffff:a.b.c.d`; Portcullis compares it as IPv4.
                let expected_ip = expected
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(portcullis_policy::canonical_ip)
                    .map(|ip| ip.to_string());
                if got != expected && Some(&got) != expected_ip.as_ref() {
                    wrong.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
                }
            }
            // Portcullis is stricter than the standard in one way: a host with an empty label
            // (`.`, `a..b`) is rejected, so it can never be dialled.
            Err(_) if expected.split('.').any(str::is_empty) => {}
            Err(e) => wrong.push(format!("{input:?}: expected {expected:?}, got {e}")),
        }
    }
    assert!(checked > 200, "only {checked} cases checked");
    assert!(wrong.is_empty(), "{} of {checked} wrong:\n{}", wrong.len(), wrong.join("\n"));
}

fn unescape(input: &str) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find("\\u") {
        out.push_str(&rest[..i]);
        let (code, tail) = if rest[i + 2..].starts_with('{') {
            let end = rest[i + 3..].find('}').unwrap();
            (&rest[i + 3..i + 3 + end], &rest[i + 4 + end..])
        } else {
            (&rest[i + 2..i + 6], &rest[i + 6..])
        };
        out.push(char::from_u32(u32::from_str_radix(code, 16).unwrap()).unwrap_or('\u{fffd}'));
        rest = tail;
    }
    out.push_str(rest);
    out.replace("\\x{", "").replace("\\\\", "\\")
}

/// UTS #46 ToASCII (non-transitional) with the conformance settings.
#[test]
fn idna_to_ascii_conformance_cases_pass() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in include_str!("../data/idna/IdnaTestV2.txt").lines() {
        let line = line.split('#').next().unwrap_or_default();
        if line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split(';').map(str::trim).collect();
        let source = unescape(cols[0]);
        let to_unicode = if cols[1].is_empty() { source.clone() } else { unescape(cols[1]) };
        let unicode_status = cols[2];
        let to_ascii = if cols[3].is_empty() { to_unicode.clone() } else { unescape(cols[3]) };
        let ascii_status = if cols[4].is_empty() { unicode_status } else { cols[4] };
        let expect_error = !ascii_status.is_empty() && ascii_status != "[]";
        checked += 1;
        match (host::to_ascii_strict(&source), expect_error) {
            (Ok(_), true) => wrong.push(format!("{source:?} should fail ({ascii_status})")),
            (Ok(got), false) if got != to_ascii => {
                wrong.push(format!("{source:?}: expected {to_ascii:?}, got {got:?}"))
            }
            (Err(_), false) => wrong.push(format!("{source:?} should give {to_ascii:?}")),
            _ => {}
        }
    }
    assert!(checked > 5000, "only {checked} cases");
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Every loopback, private and metadata spelling in the SSRF list is special, or is not a
/// host at all (and so can never be dialled).
#[test]
fn ssrf_spellings_of_internal_targets_are_special() {
    let mut checked = 0;
    for line in include_str!("../data/ssrf/ssrf_bypass_urls.jsonl").lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let payload = case["payload"].as_str().unwrap();
        let url = payload.strip_prefix("ssrf.php?url=").unwrap_or(payload);
        let Ok(target) = host::parse_url(url) else { continue };
        let internal = matches!(case["section"].as_str(), Some(s) if !s.contains("Redirect") && !s.contains("PHP"))
            && !matches!(&target.host.host, Host::Name(n) if n.contains("r3dir") || n.contains("evil") || n.contains("attacker") || n.contains("brutelogic") || n == "example.com" || n == "domain");
        if internal {
            checked += 1;
            assert!(target.host.special.is_some(), "{payload} -> {:?} is not special", target.host.host);
        }
    }
    assert!(checked >= 30, "only {checked} internal targets checked");
}

/// Names that mean loopback or a metadata service are special in every spelling a URL, a
/// `CONNECT` authority or a resolver query may use.
#[test]
fn loopback_and_metadata_host_names_are_special_in_every_spelling() {
    use portcullis_policy::SpecialRange::{Loopback, Metadata};
    for (name, range) in [
        ("LOCALHOST.", Loopback),
        ("foo.LocalHost.", Loopback),
        ("LOCALHOST.:443", Loopback),
        ("[::1]:8080", Loopback),
        ("localhost4.localdomain4", Loopback),
        ("app.127.0.0.1.nip.io", Loopback),
        ("api-127-0-0-1.sslip.io", Loopback),
        ("readme.localtest.me", Loopback),
        ("2002:7f00:1::", Loopback),
        ("METADATA", Metadata),
        ("metadata.google.internal.:80", Metadata),
        ("metadata.goog", Metadata),
        ("instance-data.us-east-1.compute.internal", Metadata),
        ("metadata.tencentyun.com", Metadata),
        ("metadata.platformequinix.com", Metadata),
        ("168.63.129.16", Metadata),
        ("169-254-169-254.nip.io", Metadata),
    ] {
        assert_eq!(host::normalize(name).map(|h| h.special), Ok(Some(range)), "{name}");
    }
    for url in ["HTTP://LOCALHOST./x", "jar:http://127.0.0.1!/", "http://u@Metadata.Google.Internal.:80/"] {
        assert!(host::parse_url(url).is_ok_and(|t| t.host.special.is_some()), "{url}");
    }
    for name in ["example.com", "localhost.example.com", "8.8.8.8.nip.io", "metadata.example.com", "2002:808:808::"] {
        assert_eq!(host::normalize(name).map(|h| h.special), Ok(None), "{name}");
    }
}
