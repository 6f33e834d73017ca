//! A fast path for the lines that need no grammar: only plain words, `|`, `&&`, `||`, `;`, `&`
//! and simple redirections. Such a line has exactly one parse, so splitting it by hand gives
//! the same commands as tree-sitter-bash (a property test checks this) at a fraction of the
//! cost. Anything else (quotes, `$`, globs, keywords, brackets, comments, non-ASCII) returns
//! `None` and goes to the full parser.
//!
//! Scripts are also cut at top-level newlines, so each line can take the fast path or be parsed
//! on its own; a script whose newlines cannot be shown to be top-level is parsed whole.

/// One statement of a simple line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// `NAME=value` on its own.
    Assign(String, String),
    /// A command, with its pipeline (local id, position) when it is in one.
    Command {
        assigns: Vec<(String, String)>,
        /// Each word and whether it has unquoted glob characters.
        words: Vec<(String, bool)>,
        redirects: Vec<(String, Option<u32>, String)>,
        pipeline: Option<(usize, usize)>,
    },
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_./:=,+@%~^".contains(&b)
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "for", "while", "until", "select", "in",
    "function", "time", "coproc", "!", "{", "}",
];

/// A word: its text after quote removal, whether an unquoted part has `*` or `?`, and its
/// source (to tell `A=1` from `'A=1'` and `if` from `'if'`).
#[derive(Debug, PartialEq, Eq)]
struct FastWord<'a> {
    text: String,
    glob: bool,
    raw: &'a str,
}

#[derive(Debug, PartialEq, Eq)]
enum Tok<'a> {
    Word(FastWord<'a>),
    Pipe,
    And,
    Or,
    Semi,
    Amp,
    Redirect(&'a str, Option<u32>, &'a str),
}

fn tokens(line: &str) -> Option<Vec<Tok<'_>>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word_end = |mut j: usize| {
        while j < b.len() && plain(b[j]) {
            j += 1;
        }
        j
    };
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b'|' if b.get(i + 1) == Some(&b'|') => {
                out.push(Tok::Or);
                i += 2;
            }
            b'|' if b.get(i + 1) == Some(&b'&') => return None,
            b'|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            b'&' if b.get(i + 1) == Some(&b'&') => {
                out.push(Tok::And);
                i += 2;
            }
            b'&' if b.get(i + 1) == Some(&b'>') => {
                let op_len = if b.get(i + 2) == Some(&b'>') { 3 } else { 2 };
                let (target, next) = redirect_target(line, i + op_len, false)?;
                out.push(Tok::Redirect(&line[i..i + op_len], None, target));
                i = next;
            }
            b'&' => {
                out.push(Tok::Amp);
                i += 1;
            }
            b';' if b.get(i + 1) == Some(&b';') => return None,
            b';' => {
                out.push(Tok::Semi);
                i += 1;
            }
            b'>' | b'<' => {
                let (op, next_i) = redirect_op(b, i)?;
                let (target, next) = redirect_target(line, next_i, op.ends_with('&'))?;
                out.push(Tok::Redirect(op, None, target));
                i = next;
            }
            c if plain(c)
                && matches!(b.get(word_end(i)), Some(b'>' | b'<'))
                && b[i..word_end(i)].iter().all(u8::is_ascii_digit) =>
            {
                let end = word_end(i);
                let (op, next_i) = redirect_op(b, end)?;
                let (target, next) = redirect_target(line, next_i, op.ends_with('&'))?;
                out.push(Tok::Redirect(op, Some(line[i..end].parse().ok()?), target));
                i = next;
            }
            c if plain(c) || matches!(c, b'\'' | b'"' | b'*' | b'?') => {
                let (word, end) = quoted_word(line, i)?;
                out.push(Tok::Word(word));
                i = end;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A word of plain characters, `*`, `?`, and quoted parts without anything to expand.
fn quoted_word(line: &str, start: usize) -> Option<(FastWord<'_>, usize)> {
    let b = line.as_bytes();
    let mut text = String::new();
    let mut glob = false;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            c if plain(c) => text.push(c as char),
            b'*' | b'?' => {
                glob = true;
                text.push(b[i] as char);
            }
            quote @ (b'\'' | b'"') => {
                let close = line[i + 1..].find(quote as char)? + i + 1;
                let inner = &line[i + 1..close];
                if quote == b'"' && inner.contains(['$', '`', '\\', '!']) {
                    return None;
                }
                text.push_str(inner);
                i = close;
            }
            _ => break,
        }
        i += 1;
    }
    Some((FastWord { text, glob, raw: &line[start..i] }, i))
}

fn redirect_op(b: &[u8], i: usize) -> Option<(&'static str, usize)> {
    Some(match (b[i], b.get(i + 1)) {
        (b'>', Some(b'>')) => (">>", i + 2),
        (b'>', Some(b'&')) => (">&", i + 2),
        (b'>', Some(b'|' | b'(')) | (b'<', Some(b'<' | b'&' | b'>' | b'(')) => return None,
        (b'>', _) => (">", i + 1),
        (b'<', _) => ("<", i + 1),
        _ => return None,
    })
}

/// The word after a redirection operator; `dup` (`>&`) wants a descriptor or `-`.
fn redirect_target(line: &str, mut i: usize, dup: bool) -> Option<(&str, usize)> {
    let b = line.as_bytes();
    while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    let start = i;
    while i < b.len() && plain(b[i]) {
        i += 1;
    }
    let target = &line[start..i];
    if target.is_empty() || (dup && !target.bytes().all(|c| c.is_ascii_digit())) {
        return None;
    }
    Some((target, i))
}

fn is_assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some((name, value))
}

/// Splits a simple line, or returns `None` when it needs the full parser.
pub(crate) fn simple(line: &str) -> Option<Vec<Item>> {
    let toks = tokens(line)?;
    let mut items = Vec::new();
    let mut pipelines = 0;
    let mut i = 0;
    while i < toks.len() {
        // One pipeline: commands joined by `|`.
        let mut members: Vec<Item> = Vec::new();
        loop {
            let (item, next) = command(&toks, i)?;
            members.push(item);
            i = next;
            if toks.get(i) == Some(&Tok::Pipe) {
                i += 1;
                continue;
            }
            break;
        }
        if members.len() > 1 {
            if members.iter().any(|m| matches!(m, Item::Assign(..))) {
                return None;
            }
            let id = pipelines;
            pipelines += 1;
            for (pos, m) in members.iter_mut().enumerate() {
                if let Item::Command { pipeline, .. } = m {
                    *pipeline = Some((id, pos));
                }
            }
        }
        items.extend(members);
        match toks.get(i) {
            None => break,
            Some(Tok::And | Tok::Or) => {
                i += 1;
                if i >= toks.len() {
                    return None;
                }
            }
            Some(Tok::Semi | Tok::Amp) => i += 1,
            _ => return None,
        }
    }
    Some(items)
}

fn command(toks: &[Tok<'_>], mut i: usize) -> Option<(Item, usize)> {
    let mut assigns = Vec::new();
    let mut words = Vec::new();
    let mut redirects = Vec::new();
    while let Some(tok) = toks.get(i) {
        match tok {
            Tok::Word(w) if words.is_empty() && is_assignment(w.raw).is_some() => {
                // `A='x y'`: the name is plain, the value may be quoted.
                let (n, _) = is_assignment(w.raw)?;
                let value = w.text.split_once('=').map(|(_, v)| v)?;
                if w.glob {
                    return None;
                }
                assigns.push((n.to_owned(), value.to_owned()));
            }
            // Words after a redirection are rare and tree-sitter-bash files them oddly; leave
            // such lines to it (and to the fixes in `parse`).
            Tok::Word(_) if !redirects.is_empty() => return None,
            Tok::Word(w) => {
                // Reserved words need the grammar; names starting with `-` are parsed oddly by
                // tree-sitter-bash, so they take its path too.
                if words.is_empty() && (RESERVED.contains(&w.raw) || w.raw.starts_with(['-', '\'', '"']) || w.glob) {
                    return None;
                }
                words.push((w.text.clone(), w.glob));
            }
            Tok::Redirect(op, fd, target) => redirects.push(((*op).to_owned(), *fd, (*target).to_owned())),
            _ => break,
        }
        i += 1;
    }
    match (words.is_empty(), assigns.len(), redirects.is_empty()) {
        (true, 1, true) => {
            let (n, v) = assigns.pop()?;
            Some((Item::Assign(n, v), i))
        }
        // Several bare assignments or a bare redirection parse differently; leave them.
        (true, _, _) => None,
        _ => Some((Item::Command { assigns, words, redirects, pipeline: None }, i)),
    }
}

/// Cuts a script at newlines that are certainly top-level, or returns `None`.
pub(crate) fn chunks(src: &str) -> Option<Vec<&str>> {
    if !src.contains('\n') || src.contains("<<") {
        return None;
    }
    let b = src.as_bytes();
    let (mut single, mut double, mut backtick) = (false, false, false);
    let (mut parens, mut braces, mut keywords) = (0i64, 0i64, 0i64);
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut word_start = true;
    while i < b.len() {
        let c = b[i];
        if single {
            single = c != b'\'';
        } else if c == b'\\' {
            if b.get(i + 1) == Some(&b'\n') {
                // A continued line is not a boundary.
                i += 2;
                continue;
            }
            i += 2;
            word_start = false;
            continue;
        } else if double {
            double = c != b'"';
            if c == b'$' && b.get(i + 1) == Some(&b'(') {
                parens += 1;
                i += 1;
            } else if c == b')' && parens > 0 {
                parens -= 1;
            }
        } else if backtick {
            backtick = c != b'`';
        } else {
            match c {
                b'\'' => single = true,
                b'"' => double = true,
                b'`' => backtick = true,
                b'(' => parens += 1,
                b')' => parens -= 1,
                b'{' => braces += 1,
                b'}' => braces -= 1,
                b'#' if word_start => {
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    continue;
                }
                // A line ending in `|`, `&&` or `||` continues on the next one.
                b'\n'
                    if parens == 0
                        && braces == 0
                        && keywords == 0
                        && !src[start..i].trim_end().ends_with(['|', '&']) =>
                {
                    out.push(&src[start..i]);
                    start = i + 1;
                }
                _ if word_start && c.is_ascii_alphabetic() => {
                    let end = (i..b.len()).find(|&j| !b[j].is_ascii_alphanumeric() && b[j] != b'_').unwrap_or(b.len());
                    match &src[i..end] {
                        "if" | "case" | "for" | "while" | "until" | "select" => keywords += 1,
                        "fi" | "esac" | "done" => keywords -= 1,
                        _ => {}
                    }
                    word_start = false;
                    i = end;
                    continue;
                }
                _ => {}
            }
        }
        word_start = matches!(c, b' ' | b'\t' | b'\n' | b';' | b'&' | b'|' | b'(' | b')');
        i += 1;
    }
    if single || double || backtick || parens != 0 || braces != 0 || keywords != 0 {
        return None;
    }
    out.push(&src[start..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_lines_split() {
        let items = simple("A=1 git log -n 5 2>&1 | head > out && ls; B=2").unwrap();
        assert_eq!(items.len(), 4);
        assert!(matches!(&items[3], Item::Assign(n, v) if n == "B" && v == "2"));
        let quoted = simple("grep -n 'a b' \"c d\"*.rs").unwrap();
        assert!(
            matches!(&quoted[0], Item::Command { words, .. } if words[2] == ("a b".into(), false) && words[3] == ("c d*.rs".into(), true))
        );
        for hard in [
            "echo \"$x\"",
            "ls $HOME",
            "[ -f x ]",
            "if true; then x; fi",
            "a | | b",
            "a &&",
            "cat <<EOF",
            "echo # c",
            "f() x",
            "echo 'open",
        ] {
            assert!(simple(hard).is_none(), "{hard}");
        }
    }

    #[test]
    fn scripts_cut_only_at_top_level_newlines() {
        assert_eq!(chunks("a\nb c\n").unwrap(), ["a", "b c", ""]);
        assert_eq!(chunks("if x; then\n y\nfi\nz").unwrap(), ["if x; then\n y\nfi", "z"]);
        assert_eq!(chunks("echo 'a\nb'\nc").unwrap(), ["echo 'a\nb'", "c"]);
        assert_eq!(chunks("f() {\n x\n}\ng").unwrap(), ["f() {\n x\n}", "g"]);
        assert!(chunks("echo 'open\n").is_none());
        assert!(chunks("cat <<EOF\nx\nEOF").is_none());
    }
}
