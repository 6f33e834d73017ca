//! Hosts and URLs, read the way the proxy will see them.
//!
//! URLs follow the WHATWG URL Standard (the `url` crate): userinfo is split off (`a.com@evil.io`
//! is `evil.io`), backslashes count as slashes in special schemes, percent-encoded host bytes are
//! decoded, and IPv4 addresses are read in every spelling (`2130706433`, `0177.0.0.1`, `0x7f.1`,
//! `127.1`). Names are lower-case, without a trailing dot, in punycode (UTS-46), and are checked
//! for mixed scripts and for confusability with an ASCII name. Addresses and well-known names are
//! classified into the special ranges the proxy must not dial.

use std::net::{IpAddr, Ipv6Addr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use portcullis_policy::{SpecialRange, special_range};

/// A host that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The text is not a valid host under WHATWG host parsing.
    #[error("`{0}` is not a valid host")]
    Invalid(String),
    /// The URL cannot be parsed.
    #[error("`{0}` is not a valid URL")]
    Url(String),
    /// The URL has no host (`file:///etc/passwd`, `mailto:`).
    #[error("`{0}` names no host")]
    NoHost(String),
    /// The name is rejected by strict UTS-46 processing.
    #[error("`{0}` is not a valid internationalised domain name")]
    Idna(String),
}

/// A normalised host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A domain name: lower-case ASCII, punycode for international labels, no trailing dot.
    Name(String),
    /// An IP address; IPv4-mapped IPv6 addresses are given as IPv4.
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Warnings about a name that is valid but may deceive a reader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFlags {
    /// A label mixes letters of scripts that do not belong together (Latin with Cyrillic, …).
    pub mixed_script: bool,
    /// The ASCII name this one imitates, when every character has an ASCII look-alike.
    pub confusable_with: Option<String>,
    /// The IPv6 zone id that was removed (`fe80::1%eth0`).
    pub zone: Option<String>,
}

/// A host after normalisation, with its classification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// The normalised host.
    pub host: Host,
    /// The special range it is in (addresses), or that it names (`localhost`, metadata names).
    pub special: Option<SpecialRange>,
    /// Deception warnings.
    pub flags: HostFlags,
}

/// A URL's destination as the proxy would dial it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrlTarget {
    /// The scheme, lower-case.
    pub scheme: String,
    /// The host.
    pub host: HostInfo,
    /// The port, explicit or the scheme's default.
    pub port: Option<u16>,
    /// True when the URL carried a user name or password (`user:pass@host`).
    pub userinfo: bool,
}

/// Normalises a host as it appears in a URL, a `CONNECT` authority or a `Host` header
/// (brackets and zone ids allowed).
pub fn normalize(input: &str) -> Result<HostInfo, HostError> {
    let (text, zone) = split_zone(input);
    let normal = portcullis_policy::normalize_host(text).map_err(|_| HostError::Invalid(input.to_owned()))?;
    let host = match normal.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(normal.into_owned()),
    };
    let (special, mut flags) = match &host {
        Host::Ip(ip) => (special_range(*ip), HostFlags::default()),
        Host::Name(name) => (special_name(name), name_flags(name)),
    };
    flags.zone = zone.map(str::to_owned);
    Ok(HostInfo { host, special, flags })
}

/// Splits `fe80::1%eth0` (or `%25eth0`, as in URLs) into the address and its zone.
fn split_zone(text: &str) -> (&str, Option<&str>) {
    let inner = text.trim_start_matches('[').trim_end_matches(']');
    match inner.split_once('%') {
        Some((addr, zone)) if addr.parse::<Ipv6Addr>().is_ok() => (addr, Some(zone.strip_prefix("25").unwrap_or(zone))),
        _ => (text, None),
    }
}

/// Parses an absolute URL the WHATWG way and returns what the proxy would dial.
pub fn parse_url(input: &str) -> Result<UrlTarget, HostError> {
    let url = url::Url::parse(input.trim()).map_err(|_| HostError::Url(input.to_owned()))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => normalize(d)?,
        Some(url::Host::Ipv4(v4)) => normalize(&v4.to_string())?,
        Some(url::Host::Ipv6(v6)) => normalize(&v6.to_string())?,
        None => return Err(HostError::NoHost(input.to_owned())),
    };
    Ok(UrlTarget {
        scheme: url.scheme().to_owned(),
        host,
        port: url.port_or_known_default(),
        userinfo: !url.username().is_empty() || url.password().is_some(),
    })
}

/// UTS-46 ToASCII with the strict settings of the conformance tests: STD3 ASCII rules, hyphen
/// checks and DNS length limits. Names this rejects are not resolved.
pub fn to_ascii_strict(name: &str) -> Result<String, HostError> {
    let err = || HostError::Idna(name.to_owned());
    let uts46 = Uts46::new();
    let ascii = uts46
        .to_ascii(name.as_bytes(), AsciiDenyList::STD3, Hyphens::Check, DnsLength::Verify)
        .map_err(|_| err())?
        .into_owned();
    // SECURITY: punycode labels are decoded and encoded again, so a label that smuggles in code
    // points the tables disallow (UTS #46 V7) is rejected rather than passed through.
    if ascii.split('.').any(|l| l.starts_with("xn--")) {
        let (unicode, decoded) = uts46.to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Check);
        decoded.map_err(|_| err())?;
        let again = uts46
            .to_ascii(unicode.as_bytes(), AsciiDenyList::STD3, Hyphens::Check, DnsLength::Verify)
            .map_err(|_| err())?;
        if again != ascii || unicode.chars().any(|c| !c.is_ascii() && is_unassigned_plane(c)) {
            return Err(err());
        }
    }
    Ok(ascii)
}

/// Planes with no assigned letters: supplementary private use and the unassigned planes 4–13.
fn is_unassigned_plane(c: char) -> bool {
    matches!(c as u32, 0x3_134B..=0xD_FFFF | 0xF_0000..=0x10_FFFF)
}

/// Names that stand for loopback or for a cloud metadata service.
fn special_name(name: &str) -> Option<SpecialRange> {
    let loopback = [
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "localhost6",
        "localhost6.localdomain6",
    ];
    if loopback.contains(&name) || name.ends_with(".localhost") {
        return Some(SpecialRange::Loopback);
    }
    let metadata = [
        "metadata",
        "metadata.google.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    ];
    metadata.contains(&name).then_some(SpecialRange::Metadata)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Script {
    Common,
    Latin,
    Greek,
    Cyrillic,
    Armenian,
    Hebrew,
    Arabic,
    Han,
    Kana,
    Hangul,
    Other,
}

fn script(c: char) -> Script {
    match c as u32 {
        0x30..=0x39 | 0x2d | 0x5f => Script::Common,
        0x61..=0x7a | 0x41..=0x5a | 0xc0..=0x24f | 0x1e00..=0x1eff => Script::Latin,
        0x370..=0x3ff | 0x1f00..=0x1fff => Script::Greek,
        0x400..=0x52f | 0x2de0..=0x2dff | 0xa640..=0xa69f | 0x1c80..=0x1c8f => Script::Cyrillic,
        0x530..=0x58f => Script::Armenian,
        0x590..=0x5ff => Script::Hebrew,
        0x600..=0x6ff | 0x750..=0x77f => Script::Arabic,
        0x4e00..=0x9fff | 0x3400..=0x4dbf | 0x3000..=0x303f => Script::Han,
        0x3040..=0x30ff | 0x31f0..=0x31ff => Script::Kana,
        0xac00..=0xd7af | 0x1100..=0x11ff | 0x3130..=0x318f => Script::Hangul,
        _ => Script::Other,
    }
}

/// True when two scripts may share a label (Japanese and Korean mix Han with their own).
fn compatible(a: Script, b: Script) -> bool {
    use Script::*;
    a == b
        || matches!(
            (a, b),
            (Han, Kana)
                | (Kana, Han)
                | (Han, Hangul)
                | (Hangul, Han)
                | (Latin, Han | Kana | Hangul)
                | (Han | Kana | Hangul, Latin)
        )
}

/// The ASCII letter a non-ASCII character is commonly mistaken for.
fn ascii_lookalike(c: char) -> Option<char> {
    Some(match c {
        'а' | 'ɑ' | 'α' => 'a',
        'Ь' | 'ь' | 'ƅ' => 'b',
        'с' | 'ϲ' | 'ⅽ' => 'c',
        'ԁ' | 'ɗ' | 'ⅾ' => 'd',
        'е' | 'ҽ' | 'ε' => 'e',
        'ɡ' | 'ց' => 'g',
        'һ' | 'հ' => 'h',
        'і' | 'ι' | 'ı' | 'ⅰ' => 'i',
        'ј' | 'ϳ' => 'j',
        'κ' | 'к' => 'k',
        'ⅼ' | 'ǀ' | 'ӏ' => 'l',
        'ⅿ' => 'm',
        'ո' | 'п' | 'η' => 'n',
        'о' | 'ο' | 'օ' | 'σ' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' | 'զ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'τ' | 'т' => 't',
        'υ' | 'ս' | 'μ' => 'u',
        'ν' | 'ѵ' | 'ⅴ' => 'v',
        'ԝ' | 'ω' | 'ѡ' => 'w',
        'х' | 'χ' | 'ⅹ' => 'x',
        'у' | 'γ' => 'y',
        'ᴢ' => 'z',
        _ => return None,
    })
}

fn name_flags(ascii: &str) -> HostFlags {
    let mut flags = HostFlags::default();
    if !ascii.split('.').any(|l| l.starts_with("xn--")) {
        return flags;
    }
    let (unicode, _) = Uts46::new().to_unicode(ascii.as_bytes(), AsciiDenyList::EMPTY, Hyphens::Allow);
    let mut skeleton = String::with_capacity(unicode.len());
    let mut all_lookalike = true;
    for label in unicode.split('.') {
        let mut seen: Option<Script> = None;
        for c in label.chars() {
            let s = script(c);
            if s != Script::Common {
                match seen {
                    Some(prev) if !compatible(prev, s) => flags.mixed_script = true,
                    Some(Script::Latin) => seen = Some(s),
                    None => seen = Some(s),
                    _ => {}
                }
            }
        }
        if !skeleton.is_empty() {
            skeleton.push('.');
        }
        for c in label.chars() {
            if c.is_ascii() {
                skeleton.push(c);
            } else if let Some(a) = ascii_lookalike(c) {
                skeleton.push(a);
            } else {
                all_lookalike = false;
            }
        }
    }
    if all_lookalike && skeleton != ascii {
        flags.confusable_with = Some(skeleton);
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> String {
        normalize(s).unwrap().host.to_string()
    }

    #[test]
    fn ip_literals_in_every_spelling() {
        for spelling in [
            "2130706433",
            "0177.0.0.1",
            "0x7f000001",
            "0x7f.1",
            "127.1",
            "127.0.1",
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
            "127.0.0.1.",
        ] {
            assert_eq!(host(spelling), "127.0.0.1", "{spelling}");
            assert_eq!(normalize(spelling).unwrap().special, Some(SpecialRange::Loopback), "{spelling}");
        }
        let zoned = normalize("[fe80::1%25eth0]").unwrap();
        assert_eq!(zoned.flags.zone.as_deref(), Some("eth0"));
        assert_eq!(zoned.special, Some(SpecialRange::LinkLocal));
        assert_eq!(normalize("::127.0.0.1").unwrap().special, Some(SpecialRange::Loopback));
        assert_eq!(normalize("0xa9fea9fe").unwrap().special, Some(SpecialRange::Metadata));
    }

    #[test]
    fn urls_resolve_userinfo_backslash_and_encoding() {
        let t = parse_url("http://allowed.com@evil.io/").unwrap();
        assert_eq!(t.host.host, Host::Name("evil.io".into()));
        assert!(t.userinfo);
        assert_eq!(parse_url("http://evil.io\\@allowed.com/").unwrap().host.host, Host::Name("evil.io".into()));
        assert_eq!(parse_url("http://ex%61mple.com/").unwrap().host.host, Host::Name("example.com".into()));
        assert_eq!(parse_url("https://EXAMPLE.com.:8443/x").unwrap().port, Some(8443));
        assert_eq!(parse_url("http://ⓔⓧⓐⓜⓟⓛⓔ.ⓒⓞⓜ").unwrap().host.host, Host::Name("example.com".into()));
        assert!(matches!(parse_url("file:///etc/passwd"), Err(HostError::NoHost(_))));
    }

    #[test]
    fn names_are_normalised_and_flagged() {
        assert_eq!(host("Bücher.DE."), "xn--bcher-kva.de");
        let apple = normalize("аpple.com").unwrap();
        assert!(apple.flags.mixed_script);
        assert_eq!(apple.flags.confusable_with.as_deref(), Some("apple.com"));
        let cyrillic = normalize("аррӏе.com").unwrap();
        assert_eq!(cyrillic.flags.confusable_with.as_deref(), Some("apple.com"));
        assert!(!normalize("bücher.de").unwrap().flags.mixed_script);
        assert_eq!(normalize("bücher.de").unwrap().flags.confusable_with, None);
        assert_eq!(normalize("api.localhost").unwrap().special, Some(SpecialRange::Loopback));
        assert_eq!(normalize("metadata.google.internal").unwrap().special, Some(SpecialRange::Metadata));
        assert!(normalize("a..b").is_err());
        assert!(normalize("").is_err());
    }

    #[test]
    fn strict_idna() {
        assert_eq!(to_ascii_strict("faß.de").unwrap(), "xn--fa-hia.de");
        assert!(to_ascii_strict("-bad-.com").is_err());
        assert!(to_ascii_strict("under_score.com").is_err());
    }
}
