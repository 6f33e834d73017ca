//! Redaction before a record reaches disk. The store runs every record's `input`, `outcome`
//! and `data` through a [`Redactor`]; [`Placeholder`] masks the obvious secrets (values under
//! secret-sounding keys, and a few well-known token shapes) until the content guard supplies
//! the real scanner through the same seam.

use serde_json::Value;

/// Rewrites the secrets in a value in place.
pub trait Redactor: Send + Sync {
    /// Masks what must not be stored.
    fn redact(&self, value: &mut Value);
}

/// The interim redactor: keys named like credentials, and token prefixes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Placeholder;

/// A key is a credential's when one of its `_`-separated words (lower-case, `-` as `_`) is one
/// of these, or it contains one of [`SECRET_PAIRS`].
const SECRET_WORDS: [&str; 9] =
    ["password", "passwd", "secret", "token", "apikey", "authorization", "cookie", "credential", "credentials"];
const SECRET_PAIRS: [&str; 3] = ["api_key", "private_key", "access_key"];

fn secret_key(key: &str) -> bool {
    // Without allocating: this runs for every key of every record.
    let words = || key.split(['_', '-']);
    words().any(|w| SECRET_WORDS.iter().any(|s| w.eq_ignore_ascii_case(s)))
        || SECRET_PAIRS.iter().any(|pair| {
            let (a, b) = pair.split_once('_').unwrap_or((pair, ""));
            words().zip(words().skip(1)).any(|(x, y)| x.eq_ignore_ascii_case(a) && y.eq_ignore_ascii_case(b))
        })
}

/// Token prefixes, each followed by at least `min` characters of `[A-Za-z0-9_-]`.
const TOKEN_PREFIXES: [(&str, usize); 9] = [
    ("AKIA", 16),
    ("ghp_", 30),
    ("gho_", 30),
    ("ghs_", 30),
    ("github_pat_", 30),
    ("sk-", 20),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("glpat-", 20),
];

/// What a masked value is replaced with.
pub const MASK: &str = "[REDACTED]";

impl Redactor for Placeholder {
    fn redact(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if secret_key(k) && !v.is_null() {
                        *v = Value::String(MASK.into());
                    } else {
                        self.redact(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v)),
            Value::String(s) => {
                if let Some(masked) = mask_text(s) {
                    *s = masked;
                }
            }
            _ => {}
        }
    }
}

/// `text` with token-shaped spans, PEM private keys and `Bearer`/`Basic` credentials masked;
/// `None` when nothing was found.
///
/// One pass over the bytes, trying at each position only the patterns that start with that
/// byte: this runs on every string of every record (on the proxy's path, several per request),
/// and a substring search per pattern cost more than the rest of the record.
fn mask_text(text: &str) -> Option<String> {
    // The shortest thing masked is `Basic ` and 8 characters.
    if text.len() < 14 {
        return None;
    }
    let bytes = text.as_bytes();
    if let Some(start) = memchr::memmem::find(bytes, b"-----BEGIN")
        && memchr::memmem::find(&bytes[start..], b"PRIVATE KEY").is_some()
    {
        let end = memchr::memmem::find(&bytes[start..], b"-----END").map_or(text.len(), |e| {
            let after = start + e + 8;
            memchr::memmem::find(&bytes[after..], b"-----").map_or(text.len(), |t| after + t + 5)
        });
        let mut out = String::with_capacity(text.len());
        out.push_str(&text[..start]);
        out.push_str(MASK);
        out.push_str(&mask_text(&text[end..]).unwrap_or_else(|| text[end..].to_owned()));
        return Some(out);
    }
    let token_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, &c) in bytes.iter().enumerate() {
        if !matches!(c, b'A' | b'g' | b's' | b'x' | b'B' | b'b') {
            continue;
        }
        let rest = &bytes[i..];
        for (prefix, min) in TOKEN_PREFIXES {
            if rest.starts_with(prefix.as_bytes()) && (i == 0 || !token_char(bytes[i - 1])) {
                let run = rest[prefix.len()..].iter().take_while(|c| token_char(**c)).count();
                if run >= min {
                    spans.push((i, i + prefix.len() + run));
                }
            }
        }
        for scheme in ["Bearer ", "Basic ", "bearer ", "basic "] {
            if rest.starts_with(scheme.as_bytes()) {
                let start = i + scheme.len();
                let run = bytes[start..]
                    .iter()
                    .take_while(|c| token_char(**c) || matches!(c, b'.' | b'=' | b'+' | b'/'))
                    .count();
                if run >= 8 {
                    spans.push((start, start + run));
                }
            }
        }
    }
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (s, e) in spans {
        if s < at {
            at = at.max(e);
            continue;
        }
        out.push_str(&text[at..s]);
        out.push_str(MASK);
        at = e;
    }
    out.push_str(&text[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_and_the_rest_kept() {
        let mut v = json!({
            "argv": ["curl", "-H", "Authorization: Bearer abcdefgh12345678", "https://example.com"],
            "env": {"AWS_SECRET_ACCESS_KEY": "x", "GITHUB_TOKEN": "y", "PATH": "/bin"},
            "note": "key AKIAIOSFODNN7EXAMPLE and ghp_0123456789abcdefghij0123456789abcd here",
            "pem": "a\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\nz",
            "plain": "git status --short",
        });
        Placeholder.redact(&mut v);
        assert_eq!(v["argv"][2], "Authorization: Bearer [REDACTED]");
        assert_eq!(v["argv"][3], "https://example.com");
        assert_eq!(v["env"]["GITHUB_TOKEN"], MASK);
        assert_eq!(v["env"]["PATH"], "/bin");
        assert_eq!(v["note"], "key [REDACTED] and [REDACTED] here");
        assert_eq!(v["pem"], "a\n[REDACTED]\nz");
        assert_eq!(v["plain"], "git status --short");
        let text = v.to_string();
        for secret in ["abcdefgh12345678", "AKIAIOSFODNN7EXAMPLE", "b3Blbn", "ghp_0123"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn token_shapes_need_a_boundary_and_their_length() {
        let mask = |s: &str| mask_text(s).unwrap_or_else(|| s.to_owned());
        // Inside a longer word, or too short: kept.
        assert_eq!(mask("xsk-0123456789abcdefghij and more"), "xsk-0123456789abcdefghij and more");
        assert_eq!(mask("sk-short and some padding"), "sk-short and some padding");
        assert_eq!(mask("Bearer 1234567 is too short"), "Bearer 1234567 is too short");
        // At the start, after a space, twice, and a scheme next to a token.
        assert_eq!(mask("sk-0123456789abcdefghij"), MASK);
        assert_eq!(mask("a=xoxb-123456789012 b=xoxp-123456789012"), format!("a={MASK} b={MASK}"));
        assert_eq!(mask("basic dXNlcjpwYXNz ghp_0123456789abcdefghij0123456789"), format!("basic {MASK} {MASK}"));
        // Multi-byte text around a token is cut on character boundaries.
        assert_eq!(mask("clé glpat-0123456789abcdefghij é"), format!("clé {MASK} é"));
    }
}
