//! Host names, host patterns (`*.github.com:443`), IP ranges and the special-range classifier.
//!
//! Names are compared in one normal form: lower-case ASCII, no trailing dot, IDNA labels as
//! punycode, and IP literals in their canonical spelling (WHATWG host parsing, so `0177.0.0.1`
//! and `2130706433` are both `127.0.0.1`, and `::ffff:127.0.0.1` is `127.0.0.1`).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A host name or IP literal that could not be normalised.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid host name")]
pub struct BadHost(pub String);

/// Normalises a host name or IP literal (bracketed or not) for comparison.
///
/// Returns the input unchanged, without allocating, when it is already a lower-case ASCII name.
pub fn normalize_host(host: &str) -> Result<Cow<'_, str>, BadHost> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if is_plain_name(trimmed) {
        return Ok(Cow::Borrowed(trimmed));
    }
    slow_normalize(host, trimmed)
}

/// True for names made only of `a-z`, digits, `-` and `.`, whose labels are non-empty and whose
/// last label does not start with a digit (so WHATWG would not read it as an IPv4 number).
fn is_plain_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() > 253 {
        return false;
    }
    let mut label_len = 0usize;
    let mut label_start = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => label_len += 1,
            b'.' => {
                if label_len == 0 || label_len > 63 {
                    return false;
                }
                label_len = 0;
                label_start = i + 1;
            }
            _ => return false,
        }
    }
    if label_len == 0 || label_len > 63 {
        return false;
    }
    // `xn--` labels must be validated by IDNA, and a numeric last label means an IPv4 literal.
    !bytes[label_start].is_ascii_digit() && !s.contains("xn--")
}

fn slow_normalize<'a>(original: &str, trimmed: &'a str) -> Result<Cow<'a, str>, BadHost> {
    let bad = || BadHost(original.to_owned());
    if trimmed.is_empty() || trimmed.ends_with('.') {
        return Err(bad());
    }
    let bracketed;
    let input = if trimmed.contains(':') && !trimmed.starts_with('[') {
        bracketed = format!("[{trimmed}]");
        bracketed.as_str()
    } else {
        trimmed
    };
    match url::Host::parse(input).map_err(|_| bad())? {
        url::Host::Domain(domain) => {
            let domain = domain.strip_suffix('.').map(str::to_owned).unwrap_or(domain);
            if domain.is_empty() || domain.split('.').any(str::is_empty) {
                return Err(bad());
            }
            Ok(Cow::Owned(domain))
        }
        url::Host::Ipv4(ip) => Ok(Cow::Owned(ip.to_string())),
        url::Host::Ipv6(ip) => Ok(Cow::Owned(canonical_ip(IpAddr::V6(ip)).to_string())),
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address ranges a proxy must not dial unless `network.allow_cidrs` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpecialRange {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 and IPv6 unique-local (`fc00::/7`).
    Private,
    /// `100.64.0.0/10`.
    Cgnat,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud instance metadata: `169.254.169.254`, `fd00:ec2::254`, `100.100.100.200`.
    Metadata,
    /// Multicast and broadcast.
    Multicast,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// Documentation, benchmarking and reserved ranges that are never a real destination.
    Reserved,
}

impl SpecialRange {
    /// The name used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialRange::Loopback => "loopback",
            SpecialRange::Private => "private",
            SpecialRange::Cgnat => "cgnat",
            SpecialRange::LinkLocal => "link-local",
            SpecialRange::Metadata => "cloud metadata",
            SpecialRange::Multicast => "multicast",
            SpecialRange::Unspecified => "unspecified",
            SpecialRange::Reserved => "reserved",
        }
    }
}

impl fmt::Display for SpecialRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an address into a special range, or `None` for an ordinary public address.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) => {
            SpecialRange::Metadata
        }
        (0, ..) => SpecialRange::Unspecified,
        (127, ..) => SpecialRange::Loopback,
        (10, ..) | (192, 168, _) => SpecialRange::Private,
        (172, 16..=31, _) => SpecialRange::Private,
        (100, 64..=127, _) => SpecialRange::Cgnat,
        (169, 254, _) => SpecialRange::LinkLocal,
        (224..=239, ..) | (255, 255, 255) => SpecialRange::Multicast,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) | (240..=255, ..) => {
            SpecialRange::Reserved
        }
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(SpecialRange::Metadata);
    }
    if ip.is_loopback() {
        return Some(SpecialRange::Loopback);
    }
    if ip.is_unspecified() {
        return Some(SpecialRange::Unspecified);
    }
    // IPv4-compatible (deprecated `::a.b.c.d`) and NAT64 (`64:ff9b::/96`) addresses carry an IPv4
    // address that the network may route to; classify by it.
    if s[..6] == [0, 0, 0, 0, 0, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return special_v4(v4).or(Some(SpecialRange::Reserved));
    }
    Some(match s[0] {
        0xfc00..=0xfdff => SpecialRange::Private,
        0xfe80..=0xfebf => SpecialRange::LinkLocal,
        0xff00..=0xffff => SpecialRange::Multicast,
        0x2001 if s[1] == 0x0db8 => SpecialRange::Reserved,
        _ => return None,
    })
}

/// An address range from `network.allow_cidrs`: `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `v6/n` or a single address.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("`{s}` is not an address range"))?;
        let network = canonical_ip(network);
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a prefix length outside 0..={max}"))?,
        };
        let cidr = Cidr { network, prefix };
        if cidr.mask(network) != network {
            return Err(format!("`{s}` has host bits set past /{prefix}"));
        }
        Ok(cidr)
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4) & u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(bits))
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        }
    }

    /// True when `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        ip.is_ipv4() == self.network.is_ipv4() && self.mask(ip) == self.network
    }
}

/// How a host pattern's name part matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NamePattern {
    /// `*`: every host.
    Any,
    /// A literal name or IP, normalised.
    Exact(String),
    /// `*.suffix`: names with one or more labels before `suffix`, never `suffix` itself.
    Subdomain(String),
    /// Wildcards in inner labels: `api.*.example.com` (`*` there is exactly one label).
    Labels(Vec<Option<String>>),
}

/// `host[:port]` with whole-label wildcards, as written in `network.allow` and `network.deny`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    pub(crate) name: NamePattern,
    /// `None` matches every port.
    pub(crate) port: Option<u16>,
}

/// Why a host pattern was rejected, with a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub hint: Option<String>,
}

fn pattern_err(message: String, hint: &str) -> PatternError {
    PatternError { message, hint: Some(hint.to_owned()) }
}

impl HostPattern {
    /// Parses `host`, `host:port`, `*.host:port`, `[v6]:port`, `*` or `*:443`.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let (host, port) = split_host_port(s)?;
        let name = parse_name_pattern(host, s)?;
        Ok(HostPattern { name, port })
    }

    /// True when the pattern matches a normalised host and port (`None`: any port).
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        let port_ok = match (self.port, port) {
            (None, _) => true,
            (Some(p), Some(q)) => p == q,
            (Some(_), None) => false,
        };
        port_ok && self.matches_name(host)
    }

    pub(crate) fn matches_name(&self, host: &str) -> bool {
        match &self.name {
            NamePattern::Any => true,
            NamePattern::Exact(name) => host == name,
            NamePattern::Subdomain(suffix) => is_strict_subdomain(host, suffix),
            NamePattern::Labels(labels) => {
                let mut parts = host.split('.');
                let count = host.split('.').count();
                count == labels.len()
                    && labels.iter().all(|label| {
                        let part = parts.next().unwrap_or_default();
                        label.as_deref().is_none_or(|l| l == part)
                    })
            }
        }
    }
}

/// True when `host` ends with `.suffix` on a label boundary.
pub(crate) fn is_strict_subdomain(host: &str, suffix: &str) -> bool {
    host.len() > suffix.len() + 1 && host.ends_with(suffix) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), PatternError> {
    let parse_port =
        |p: &str| -> Result<Option<u16>, PatternError> {
            if p == "*" {
                return Ok(None);
            }
            p.parse::<u16>().ok().filter(|p| *p != 0).map(Some).ok_or_else(|| {
                pattern_err(format!("`{p}` is not a port in `{s}`"), "ports are 1 to 65535, or `*` for any")
            })
        };
    if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(pattern_err(format!("unclosed `[` in `{s}`"), "write IPv6 addresses as `[::1]:443`"));
        };
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, parse_port(p)?)),
                None => Err(pattern_err(
                    format!("unexpected `{after}` after `]` in `{s}`"),
                    "write IPv6 addresses as `[::1]:443`",
                )),
            },
        };
    }
    match s.matches(':').count() {
        0 => Ok((s, None)),
        1 => {
            let (host, port) = s.split_once(':').unwrap_or((s, ""));
            Ok((host, parse_port(port)?))
        }
        _ => Ok((s, None)),
    }
}

fn parse_name_pattern(host: &str, whole: &str) -> Result<NamePattern, PatternError> {
    const LABEL_HINT: &str = "wildcards stand for whole labels: write `*.example.com`, not `*example.com`";
    if host.is_empty() {
        return Err(pattern_err(format!("`{whole}` has no host"), "write a host name such as `api.example.com:443`"));
    }
    if host == "*" {
        return Ok(NamePattern::Any);
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host == "*" {
        // `*.`: a wildcard with nothing after it.
        return Err(pattern_err(
            format!("`{whole}` has a wildcard with no domain after it"),
            "write a domain after the wildcard, such as `*.example.com`",
        ));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        let hint = if host.starts_with("*") {
            "a wildcard needs a domain after it, such as `*.example.com`"
        } else {
            "labels cannot be empty"
        };
        return Err(pattern_err(format!("`{whole}` has an empty label"), hint));
    }
    if labels.iter().any(|l| l.contains('*') && *l != "*") {
        return Err(pattern_err(format!("`{whole}` has a wildcard inside a label"), LABEL_HINT));
    }
    let normalize = |name: &str| -> Result<String, PatternError> {
        normalize_host(name).map(Cow::into_owned).map_err(|_| {
            pattern_err(
                format!("`{name}` in `{whole}` is not a valid host name"),
                "use letters, digits, `-` and `.`, or an IP address",
            )
        })
    };
    if labels.contains(&"*") && labels.last().is_some_and(|l| l.starts_with(|c: char| c.is_ascii_digit())) {
        return Err(pattern_err(
            format!("`{whole}` puts a wildcard in an IP address"),
            "list addresses one by one, or ranges in `network.allow_cidrs`",
        ));
    }
    if labels[0] == "*" && !labels[1..].contains(&"*") {
        let suffix = normalize(&labels[1..].join("."))?;
        return Ok(NamePattern::Subdomain(suffix));
    }
    if labels.contains(&"*") {
        let mut out = Vec::with_capacity(labels.len());
        for label in labels {
            out.push(if label == "*" { None } else { Some(normalize(label)?) });
        }
        return Ok(NamePattern::Labels(out));
    }
    Ok(NamePattern::Exact(normalize(host)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize_host(s).unwrap().into_owned()
    }

    #[test]
    fn normalises_names_and_ip_spellings() {
        assert_eq!(norm("Api.GitHub.com."), "api.github.com");
        assert_eq!(norm("0177.0.0.1"), "127.0.0.1");
        assert_eq!(norm("2130706433"), "127.0.0.1");
        assert_eq!(norm("0x7f.1"), "127.0.0.1");
        assert_eq!(norm("127.1"), "127.0.0.1");
        assert_eq!(norm("[::ffff:127.0.0.1]"), "127.0.0.1");
        assert_eq!(norm("::1"), "::1");
        assert_eq!(norm("bücher.de"), "xn--bcher-kva.de");
        assert!(normalize_host("").is_err());
        assert!(normalize_host("a..b").is_err());
        assert!(normalize_host("exa mple.com").is_err());
    }

    #[test]
    fn wildcard_never_crosses_a_label_boundary() {
        let p = HostPattern::parse("*.github.com").unwrap();
        assert!(p.matches("api.github.com", Some(443)));
        assert!(p.matches("a.b.github.com", None));
        assert!(!p.matches("github.com", Some(443)));
        assert!(!p.matches("evilgithub.com", Some(443)));
        assert!(!p.matches("github.com.evil.io", Some(443)));
    }

    #[test]
    fn ports_and_inner_wildcards() {
        let p = HostPattern::parse("api.*.example.com:443").unwrap();
        assert!(p.matches("api.eu.example.com", Some(443)));
        assert!(!p.matches("api.eu.example.com", Some(80)));
        assert!(!p.matches("api.a.b.example.com", Some(443)));
        let v6 = HostPattern::parse("[::1]:8080").unwrap();
        assert!(v6.matches("::1", Some(8080)));
        assert!(HostPattern::parse("*").unwrap().matches("anything.io", Some(1)));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in ["*.", "*.0.0.1", "*github.com", "git*.com", "a..b", "host:0", "host:http", "", "[::1"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn special_ranges_cover_metadata_and_mapped_forms() {
        let class = |s: &str| special_range(s.parse().unwrap());
        assert_eq!(class("169.254.169.254"), Some(SpecialRange::Metadata));
        assert_eq!(class("fd00:ec2::254"), Some(SpecialRange::Metadata));
        assert_eq!(class("::ffff:10.0.0.1"), Some(SpecialRange::Private));
        assert_eq!(class("100.64.1.1"), Some(SpecialRange::Cgnat));
        assert_eq!(class("127.0.0.53"), Some(SpecialRange::Loopback));
        assert_eq!(class("0.0.0.0"), Some(SpecialRange::Unspecified));
        assert_eq!(class("8.8.8.8"), None);
        assert_eq!(class("2606:4700::1111"), None);
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.2.3.4".parse().unwrap()));
        assert!(c.contains("::ffff:10.2.3.4".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.1/8").is_err());
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("1.2.3.4".parse().unwrap()));
    }
}
