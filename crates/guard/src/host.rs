//! Hosts and URLs, read the way the proxy will see them.
//!
//! URLs follow the WHATWG URL Standard (the `url` crate): userinfo is split off (`a.com@evil.io`
//! is `evil.io`), backslashes count as slashes in special schemes, percent-encoded host bytes are
//! decoded, and IPv4 addresses are read in every spelling (`2130706433`, `0177.0.0.1`, `0x7f.1`,
//! `127.1`). Names are lower-case, without a trailing dot, in punycode (UTS-46), and are checked
//! for mixed scripts and for confusability with an ASCII name. Addresses and well-known names are
//! classified into the special ranges the proxy must not dial.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// Normalises a host as it appears in a URL, a `CONNECT` authority or a `Host` header, or as
/// a name given to the resolver (brackets, zone ids, a trailing dot and a port allowed).
pub fn normalize(input: &str) -> Result<HostInfo, HostError> {
    let (text, zone) = split_zone(strip_port(input));
    let normal = portcullis_policy::normalize_host(text).map_err(|_| HostError::Invalid(input.to_owned()))?;
    let host = match normal.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => Host::Name(normal.into_owned()),
    };
    let (special, mut flags) = match &host {
        Host::Ip(ip) => (special_address(*ip), HostFlags::default()),
        Host::Name(name) => (special_name(name), name_flags(name)),
    };
    flags.zone = zone.map(str::to_owned);
    Ok(HostInfo { host, special, flags })
}

/// `host:port` and `[v6]:port`, as in a `CONNECT` authority or a `Host` header, without the port.
fn strip_port(text: &str) -> &str {
    let port =
        |p: &str| p.is_empty() || (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok());
    if text.starts_with('[') {
        return match text.rfind(']') {
            Some(end) if text[end + 1..].strip_prefix(':').is_some_and(port) => &text[..=end],
            _ => text,
        };
    }
    match text.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') && !host.is_empty() && port(p) => host,
        _ => text,
    }
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
///
/// A URL that wraps another (`jar:http://host/a.jar!/entry`, `view-source:http://host/`) is
/// the inner URL's destination: that is what a client fetches.
pub fn parse_url(input: &str) -> Result<UrlTarget, HostError> {
    parse_nested_url(input, 0)
}

fn parse_nested_url(input: &str, depth: usize) -> Result<UrlTarget, HostError> {
    let url = url::Url::parse(input.trim()).map_err(|_| HostError::Url(input.to_owned()))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => normalize(d)?,
        Some(url::Host::Ipv4(v4)) => normalize(&v4.to_string())?,
        Some(url::Host::Ipv6(v6)) => normalize(&v6.to_string())?,
        None => {
            // `jar:URL!/entry`: the archive's URL ends at `!`.
            let inner = url.path();
            let inner = inner.find("!/").map_or(inner.strip_suffix('!').unwrap_or(inner), |end| &inner[..end]);
            if depth < 4 && url.cannot_be_a_base() && inner.contains("://") {
                return parse_nested_url(inner, depth + 1);
            }
            return Err(HostError::NoHost(input.to_owned()));
        }
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

/// Names that stand for loopback: RFC 6761 `localhost` and `*.localhost`, and the names
/// distributions put in `/etc/hosts` for it.
const LOOPBACK_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "localhost4",
    "localhost4.localdomain4",
    "localhost6",
    "localhost6.localdomain6",
    "ip6-localhost",
    "ip6-loopback",
];

/// Public domains whose every name resolves to loopback.
const LOOPBACK_DOMAINS: &[&str] = &["localtest.me", "lvh.me", "vcap.me", "localho.st", "lacolhost.com"];

/// Public wildcard-DNS domains that resolve a name to the address spelled in it:
/// `10.0.0.1.nip.io`, `app-127-0-0-1.sslip.io`, `7f000001.nip.io`, `--1.sslip.io`.
const ADDRESS_DOMAINS: &[&str] = &["nip.io", "sslip.io", "xip.io", "traefik.me"];

/// Names of cloud metadata services, besides `metadata.*.internal` and
/// `instance-data.*.internal`: Google, AWS, Azure, Tencent, Equinix Metal (Packet), IBM Cloud,
/// Rancher.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.goog",
    "metadata.google.internal",
    "instance-data",
    "metadata.azure.internal",
    "metadata.tencentyun.com",
    "metadata.packet.net",
    "metadata.platformequinix.com",
    "api.metadata.cloud.ibm.com",
    "rancher-metadata",
];

/// True when `name` is `domain` or below it.
fn within(name: &str, domain: &str) -> bool {
    name == domain || name.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.'))
}

/// Names that stand for loopback or for a cloud metadata service, or that spell an address
/// the public wildcard DNS services resolve them to. `name` is normalised (lower case, no
/// trailing dot).
fn special_name(name: &str) -> Option<SpecialRange> {
    if LOOPBACK_NAMES.contains(&name)
        || name.ends_with(".localhost")
        || LOOPBACK_DOMAINS.iter().any(|d| within(name, d))
    {
        return Some(SpecialRange::Loopback);
    }
    let first = name.split('.').next().unwrap_or_default();
    if METADATA_NAMES.contains(&name)
        || (matches!(first, "metadata" | "instance-data") && name.ends_with(".internal"))
        || name.ends_with(".rancher.internal")
    {
        return Some(SpecialRange::Metadata);
    }
    let spelled = ADDRESS_DOMAINS.iter().find_map(|d| name.strip_suffix(d)?.strip_suffix('.'))?;
    spelled_address(spelled).and_then(special_address)
}

/// The address a wildcard-DNS name spells before its domain: four dotted labels at the end,
/// four dashed numbers or eight hex digits at the end of the last label, or a dashed IPv6
/// address (`--1` for `::1`).
fn spelled_address(spelled: &str) -> Option<IpAddr> {
    let labels: Vec<&str> = spelled.split('.').collect();
    if labels.len() >= 4
        && let Ok(v4) = labels[labels.len() - 4..].join(".").parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    let last = labels.last().copied().unwrap_or_default();
    if last.contains("--") {
        let v6 = last.rsplit_once('.').map_or(last, |(_, a)| a).replace('-', ":");
        if let Ok(ip) = v6.parse::<Ipv6Addr>() {
            return Some(IpAddr::V6(ip));
        }
    }
    let parts: Vec<&str> = last.split('-').collect();
    if parts.len() >= 4
        && let Ok(v4) = parts[parts.len() - 4..].join(".").parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    let hex = parts.last().copied().unwrap_or_default();
    (hex.len() == 8).then(|| u32::from_str_radix(hex, 16).ok()).flatten().map(|n| IpAddr::V4(Ipv4Addr::from(n)))
}

/// Azure's WireServer, which answers inside every Azure VM like a metadata service.
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

/// The special range of an address, including IPv6 forms that carry an IPv4 address the
/// network delivers to: 6to4 (`2002:7f00:1::`), Teredo, IPv4-translated (`::ffff:0:7f00:1`)
/// and local-use NAT64 (`64:ff9b:1::7f00:1`).
fn special_address(ip: IpAddr) -> Option<SpecialRange> {
    if ip == IpAddr::V4(AZURE_WIRESERVER) {
        return Some(SpecialRange::Metadata);
    }
    special_range(ip).or_else(|| {
        let IpAddr::V6(v6) = ip else { return None };
        let s = v6.segments();
        let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        let carried = match s {
            [0x2002, hi, lo, ..] => v4(hi, lo),
            // Teredo keeps the client's address inverted in the last 32 bits.
            [0x2001, 0, .., hi, lo] => v4(!hi, !lo),
            [0, 0, 0, 0, 0xffff, 0, hi, lo] => v4(hi, lo),
            [0x64, 0xff9b, 1, _, _, _, hi, lo] => v4(hi, lo),
            _ => return None,
        };
        special_address(IpAddr::V4(carried))
    })
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
