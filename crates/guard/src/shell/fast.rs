//! A fast path for the lines that need no grammar: only plain words, `|`, `&&`, `||`, `;`, `&`
//! and simple redirections. Such a line has exactly one parse, so splitting it by hand gives
//! the same commands as tree-sitter-bash (a property test checks this) at a fraction of the
//! cost. Anything else (quotes, `$`, globs, keywords, brackets, comments, non-ASCII) returns
//! `None` and goes to the full parser.
//!
//! Scripts are also cut at top-level newlines, so each line can take the fast path or be parsed
//! on its own; a script whose newlines cannot be shown to be top-level is parsed whole.

/// One statement of a line the fast path read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// `NAME=value` on its own.
    Assign(String, Vec<Part>),
    /// A loop variable: unknown from here on.
    Unknown(String),
    /// A command, with its pipeline (local id, position) when it is in one.
    Command {
        assigns: Vec<(String, Vec<Part>)>,
        /// Each word's parts and whether it has unquoted glob characters.
        words: Vec<(Vec<Part>, bool)>,
        redirects: Vec<(String, Option<u32>, String)>,
        pipeline: Option<(usize, usize)>,
        /// Inside a loop or a conditional.
        nested: bool,
    },
}

/// A piece of a word: literal text, or a variable (`$x`, `${x}`) with its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    Lit(String),
    Var { name: String, source: String },
}

fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_./:=,+@%~^".contains(&b)
}

const RESERVED: &[&str] = &[
    "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "for", "while", "until", "select", "in",
    "function", "time", "coproc", "!", "{", "}", "[[", "]]",
];

/// A word: its parts after quote removal, whether an unquoted part has `*` or `?`, and its
/// source (to tell `A=1` from `'A=1'` and `if` from `'if'`).
#[derive(Debug, PartialEq, Eq)]
struct FastWord<'a> {
    parts: Vec<Part>,
    glob: bool,
    raw: &'a str,
}

impl FastWord<'_> {
    fn is_keyword(&self, k: &str) -> bool {
        self.raw == k
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Tok<'a> {
    Word(FastWord<'a>),
    Pipe,
    And,
    Or,
    Semi,
    Amp,
    Newline,
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
            b'\n' => {
                out.push(Tok::Newline);
                i += 1;
            }
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
            b'[' | b']' | b'!' => {
                // `[`, `]` and `!=` as whole words (tests); anything else needs the grammar.
                let end = (i..b.len()).find(|&j| matches!(b[j], b' ' | b'\t' | b'\n' | b';')).unwrap_or(b.len());
                let word = &line[i..end];
                if !matches!(word, "[" | "]" | "!=") {
                    return None;
                }
                out.push(Tok::Word(FastWord { parts: vec![Part::Lit(word.to_owned())], glob: false, raw: word }));
                i = end;
            }
            c if plain(c) || matches!(c, b'\'' | b'"' | b'*' | b'?' | b'$') => {
                let (word, end) = quoted_word(line, i)?;
                out.push(Tok::Word(word));
                i = end;
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `$name`, `${name}` or a special parameter (`$1`, `$@`) at `i`; returns the part and its end.
fn variable(line: &str, i: usize) -> Option<(Part, usize)> {
    let b = line.as_bytes();
    let (name_start, braced) = if b.get(i + 1) == Some(&b'{') { (i + 2, true) } else { (i + 1, false) };
    let first = *b.get(name_start)?;
    let name_end = if first.is_ascii_alphabetic() || first == b'_' {
        (name_start..b.len()).find(|&j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_')).unwrap_or(b.len())
    } else if !braced && (first.is_ascii_digit() || b"@*#?$!-".contains(&first)) {
        name_start + 1
    } else {
        return None;
    };
    let end = if braced {
        if b.get(name_end) != Some(&b'}') {
            return None;
        }
        name_end + 1
    } else {
        name_end
    };
    Some((Part::Var { name: line[name_start..name_end].to_owned(), source: line[i..end].to_owned() }, end))
}

/// A word of plain characters, `*`, `?`, simple variables, and quoted parts without other
/// expansions.
fn quoted_word(line: &str, start: usize) -> Option<(FastWord<'_>, usize)> {
    let b = line.as_bytes();
    let mut parts: Vec<Part> = Vec::new();
    let mut lit = String::new();
    let mut glob = false;
    let mut i = start;
    let flush = |lit: &mut String, parts: &mut Vec<Part>| {
        if !lit.is_empty() {
            parts.push(Part::Lit(std::mem::take(lit)));
        }
    };
    while i < b.len() {
        match b[i] {
            c if plain(c) => lit.push(c as char),
            b'*' | b'?' => {
                glob = true;
                lit.push(b[i] as char);
            }
            b'$' => {
                let (var, end) = variable(line, i)?;
                flush(&mut lit, &mut parts);
                parts.push(var);
                i = end;
                continue;
            }
            b'\'' => {
                let close = line[i + 1..].find('\'')? + i + 1;
                lit.push_str(&line[i + 1..close]);
                i = close;
            }
            b'"' => {
                let close = line[i + 1..].find('"')? + i + 1;
                let inner = &line[i + 1..close];
                if inner.contains(['`', '\\', '!']) {
                    return None;
                }
                let mut j = 0;
                while j < inner.len() {
                    if inner.as_bytes()[j] == b'$' {
                        let (var, end) = variable(inner, j)?;
                        flush(&mut lit, &mut parts);
                        parts.push(var);
                        j = end;
                    } else {
                        let next = inner[j..].find('$').map_or(inner.len(), |k| j + k);
                        lit.push_str(&inner[j..next]);
                        j = next;
                    }
                }
                i = close;
            }
            _ => break,
        }
        i += 1;
    }
    flush(&mut lit, &mut parts);
    if parts.is_empty() {
        parts.push(Part::Lit(String::new()));
    }
    Some((FastWord { parts, glob, raw: &line[start..i] }, i))
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

/// Reads a line (or a script chunk), or returns `None` when it needs the full parser.
pub(crate) fn simple(line: &str) -> Option<Vec<Item>> {
    let toks = tokens(line)?;
    let mut p = Parser { toks, at: 0, items: Vec::new(), pipelines: Vec::new() };
    p.list(&[], false)?;
    (p.at == p.toks.len()).then_some(p.items)
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    at: usize,
    items: Vec<Item>,
    /// One entry per local pipeline.
    pipelines: Vec<usize>,
}

impl Parser<'_> {
    fn keyword(&self, k: &str) -> bool {
        matches!(self.toks.get(self.at), Some(Tok::Word(w)) if w.is_keyword(k))
    }

    fn skip_separators(&mut self) {
        while matches!(self.toks.get(self.at), Some(Tok::Semi | Tok::Newline)) {
            self.at += 1;
        }
    }

    fn expect(&mut self, k: &str) -> Option<()> {
        self.skip_separators();
        self.keyword(k).then(|| self.at += 1)
    }

    /// Pipelines joined by `&&`, `||`, `;`, `&` or newlines, up to one of `stop` (or the end).
    fn list(&mut self, stop: &[&str], nested: bool) -> Option<()> {
        let mut any = false;
        loop {
            self.skip_separators();
            if self.at >= self.toks.len() || stop.iter().any(|k| self.keyword(k)) {
                return (any || stop.is_empty()).then_some(());
            }
            self.pipeline(nested)?;
            any = true;
            match self.toks.get(self.at) {
                None => return Some(()),
                Some(Tok::And | Tok::Or) => {
                    self.at += 1;
                    while matches!(self.toks.get(self.at), Some(Tok::Newline)) {
                        self.at += 1;
                    }
                    if self.at >= self.toks.len() || stop.iter().any(|k| self.keyword(k)) {
                        return None;
                    }
                }
                Some(Tok::Semi | Tok::Amp | Tok::Newline) => self.at += 1,
                Some(Tok::Word(w)) if stop.iter().any(|k| w.is_keyword(k)) => {}
                _ => return None,
            }
        }
    }

    /// Commands joined by `|`. A compound command inside a pipeline (`… | while read l; do …`)
    /// takes the full parser's path.
    fn pipeline(&mut self, nested: bool) -> Option<()> {
        let mut members: Vec<(usize, usize)> = Vec::new();
        let mut compound = false;
        loop {
            let before = self.items.len();
            compound |= self.command(nested)?;
            members.push((before, self.items.len()));
            if matches!(self.toks.get(self.at), Some(Tok::Pipe)) {
                self.at += 1;
                while matches!(self.toks.get(self.at), Some(Tok::Newline)) {
                    self.at += 1;
                }
                continue;
            }
            break;
        }
        if members.len() > 1 {
            if compound || self.items[members[0].0..].iter().any(|i| matches!(i, Item::Assign(..))) {
                return None;
            }
            self.pipelines.push(0);
            let id = self.pipelines.len() - 1;
            for (pos, (from, to)) in members.into_iter().enumerate() {
                for item in &mut self.items[from..to] {
                    if let Item::Command { pipeline, .. } = item {
                        *pipeline = Some((id, pos));
                    }
                }
            }
        }
        Some(())
    }

    /// Reads one command; `Some(true)` for a compound command.
    fn command(&mut self, nested: bool) -> Option<bool> {
        if self.keyword("if") {
            self.at += 1;
            self.list(&["then"], true)?;
            self.expect("then")?;
            self.list(&["elif", "else", "fi"], true)?;
            loop {
                self.skip_separators();
                if self.keyword("elif") {
                    self.at += 1;
                    self.list(&["then"], true)?;
                    self.expect("then")?;
                    self.list(&["elif", "else", "fi"], true)?;
                } else if self.keyword("else") {
                    self.at += 1;
                    self.list(&["fi"], true)?;
                } else {
                    break;
                }
            }
            self.expect("fi")?;
            return self.after_compound().map(|()| true);
        }
        if self.keyword("for") {
            self.at += 1;
            let Some(Tok::Word(var)) = self.toks.get(self.at) else { return None };
            let name = var.raw.to_owned();
            is_assignment(&format!("{name}="))?;
            self.at += 1;
            self.items.push(Item::Unknown(name));
            if self.keyword("in") {
                self.at += 1;
                while let Some(Tok::Word(w)) = self.toks.get(self.at) {
                    if w.is_keyword("do") {
                        return None;
                    }
                    self.at += 1;
                }
            }
            if !matches!(self.toks.get(self.at), Some(Tok::Semi | Tok::Newline)) {
                return None;
            }
            self.expect("do")?;
            self.list(&["done"], true)?;
            self.expect("done")?;
            return self.after_compound().map(|()| true);
        }
        if self.keyword("while") || self.keyword("until") {
            self.at += 1;
            self.list(&["do"], true)?;
            self.expect("do")?;
            self.list(&["done"], true)?;
            self.expect("done")?;
            return self.after_compound().map(|()| true);
        }
        if self.keyword("[") {
            // A test: no command runs, as in the full parser.
            while let Some(Tok::Word(w)) = self.toks.get(self.at) {
                self.at += 1;
                if w.is_keyword("]") {
                    return Some(false);
                }
            }
            return None;
        }
        self.simple_command(nested).map(|()| false)
    }

    /// A compound statement must be followed by a separator or the end: no redirections.
    fn after_compound(&self) -> Option<()> {
        match self.toks.get(self.at) {
            None | Some(Tok::Semi | Tok::Newline | Tok::And | Tok::Or | Tok::Amp | Tok::Pipe) => Some(()),
            Some(Tok::Word(w)) if ["then", "do", "done", "fi", "elif", "else"].iter().any(|k| w.is_keyword(k)) => {
                Some(())
            }
            _ => None,
        }
    }

    fn simple_command(&mut self, nested: bool) -> Option<()> {
        let mut assigns = Vec::new();
        let mut words: Vec<(Vec<Part>, bool)> = Vec::new();
        let mut redirects = Vec::new();
        while let Some(tok) = self.toks.get(self.at) {
            match tok {
                Tok::Word(w) if words.is_empty() && is_assignment(w.raw).is_some() => {
                    // `A='x y'`, `A=$B`: the name is plain, the value may be quoted.
                    let (n, _) = is_assignment(w.raw)?;
                    if w.glob {
                        return None;
                    }
                    let mut parts = w.parts.clone();
                    match parts.first_mut() {
                        Some(Part::Lit(first)) => {
                            *first = first.split_once('=').map(|(_, v)| v.to_owned())?;
                        }
                        _ => return None,
                    }
                    assigns.push((n.to_owned(), parts));
                }
                // Words after a redirection are rare and tree-sitter-bash files them oddly;
                // leave such lines to it (and to the fixes in `parse`).
                Tok::Word(_) if !redirects.is_empty() => return None,
                Tok::Word(w) => {
                    // Reserved words need the grammar; names starting with `-`, quoted or built
                    // from variables take the full parser's path too.
                    let name_ok = !RESERVED.contains(&w.raw)
                        && !w.raw.starts_with(['-', '\'', '"', '[', ']', '!'])
                        && !w.glob
                        && matches!(w.parts.as_slice(), [Part::Lit(_)]);
                    if words.is_empty() && !name_ok {
                        return None;
                    }
                    if !words.is_empty() && (w.is_keyword("[") || w.is_keyword("]")) {
                        return None;
                    }
                    words.push((w.parts.clone(), w.glob));
                }
                Tok::Redirect(op, fd, target) => redirects.push(((*op).to_owned(), *fd, (*target).to_owned())),
                _ => break,
            }
            self.at += 1;
        }
        match (words.is_empty(), assigns.len(), redirects.is_empty()) {
            (true, 1, true) => {
                let (n, v) = assigns.pop()?;
                self.items.push(Item::Assign(n, v));
                Some(())
            }
            // Several bare assignments or a bare redirection parse differently; leave them.
            (true, _, _) => None,
            _ => {
                self.items.push(Item::Command { assigns, words, redirects, pipeline: None, nested });
                Some(())
            }
        }
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
        assert!(matches!(&items[3], Item::Assign(n, v) if n == "B" && *v == [Part::Lit("2".into())]));
        let quoted = simple("grep -n 'a b' \"c $d\"*.rs").unwrap();
        assert!(matches!(&quoted[0], Item::Command { words, .. } if words[3].1 && words[3].0.len() == 3));
        let compound = simple("for f in a b; do echo \"$f\"; done; if [ -f x ]; then y; else z; fi").unwrap();
        assert_eq!(compound.iter().filter(|i| matches!(i, Item::Command { nested: true, .. })).count(), 3);
        for hard in [
            "echo $(x)",
            "ls ${x:-y}",
            "[[ -f x ]]",
            "if true; then x",
            "a | | b",
            "a &&",
            "cat <<EOF",
            "echo # c",
            "f() x",
            "echo 'open",
            "for x in a; do y; done > out",
            "case x in a) b;; esac",
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
