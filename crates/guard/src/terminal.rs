//! Text the agent controls (file names, argv, hosts, tool names) made safe to print on a
//! terminal: a control character or a line break in it would move the cursor, erase lines, or
//! start a line of its own that reads as Portcullis' (a file named `x\n  limits hit: none`).

use std::borrow::Cow;

/// `text` with every control character, line break and bidirectional-formatting character
/// written as an escape (`\n`, `\t`, `\x1b`, `\u{202e}`), and a backslash doubled when the text
/// needs any escape. Plain text comes back borrowed.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x100 && needs_escape(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// As [`printable`], but keeping line breaks and tabs: for a file's lines (a diff's body),
/// whose layout is the reader's, while an escape sequence in them is not.
pub fn printable_lines(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && c != '\t' && needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for part in text.split_inclusive('\n') {
        let (line, end) = part.strip_suffix('\n').map_or((part, ""), |l| (l, "\n"));
        for piece in line.split_inclusive('\t') {
            let (body, tab) = piece.strip_suffix('\t').map_or((piece, ""), |b| (b, "\t"));
            out.push_str(&printable(body));
            out.push_str(tab);
        }
        out.push_str(end);
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_cannot_move_the_cursor_or_start_a_line() {
        assert_eq!(printable("src/main.rs"), "src/main.rs");
        assert!(matches!(printable("plain"), Cow::Borrowed(_)));
        assert_eq!(printable("\u{1b}[2K\u{1b}[1Ax"), "\\x1b[2K\\x1b[1Ax");
        assert_eq!(printable("nl\n  limits hit: none"), "nl\\n  limits hit: none");
        assert_eq!(printable("a\\b\r"), "a\\\\b\\r");
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(printable("\u{9b}31m"), "\\x9b31m", "the one-byte CSI");
        assert_eq!(printable("naïve ünïcode"), "naïve ünïcode");
        assert_eq!(printable_lines("+\tok\n+\u{1b}[2J\n"), "+\tok\n+\\x1b[2J\n");
    }
}
