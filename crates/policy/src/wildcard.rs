//! The one wildcard matcher behind command patterns and path components.

/// True when `text` matches `pattern`, where `star` matches any run of items (empty included)
/// and `one`, when given, matches exactly one item. Linear in practice; backtracks only to the
/// last `star`.
pub(crate) fn matches<T: Copy + PartialEq>(pattern: &[T], text: &[T], star: T, one: Option<T>) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == star {
            resume = Some((p, t));
            p += 1;
        } else if p < pattern.len() && (pattern[p] == text[t] || Some(pattern[p]) == one) {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = resume {
            p = sp + 1;
            t = st + 1;
            resume = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == star)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_single_items() {
        let m = |p: &str, t: &str| matches(p.as_bytes(), t.as_bytes(), b'*', Some(b'?'));
        assert!(m("*.rs", "main.rs"));
        assert!(m("a?c", "abc"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("*.rs", "main.rsx"));
        assert!(!m("a?c", "ac"));
        assert!(!matches(b"a?c", b"abc", b'*', None));
    }
}
