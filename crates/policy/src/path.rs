//! Path patterns and lexical path normalisation.
//!
//! Patterns follow gitignore: `*` and `?` stay inside one component, `**` spans any number of
//! components, a pattern without a `/` matches at any depth, and a pattern that matches a
//! directory also matches everything below it. This module decides on the path *string*; the
//! guard crate resolves the path the kernel would open, and the sandbox's mounts are the wall.

use std::path::{Component, Path, PathBuf};

/// The two directories that relative patterns and paths are anchored to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    workdir: PathBuf,
    home: PathBuf,
}

/// An environment path that is not absolute.
#[derive(Clone, Debug, thiserror::Error)]
#[error("`{0}` is not an absolute path")]
pub struct NotAbsolute(pub PathBuf);

impl Environment {
    /// `workdir` anchors `.` and relative paths; `home` anchors `~`. Both must be absolute.
    pub fn new(workdir: impl Into<PathBuf>, home: impl Into<PathBuf>) -> Result<Self, NotAbsolute> {
        let (workdir, home) = (workdir.into(), home.into());
        for p in [&workdir, &home] {
            if !p.is_absolute() {
                return Err(NotAbsolute(p.clone()));
            }
        }
        Ok(Environment {
            workdir: lexical_normalize(&workdir).unwrap_or(workdir),
            home: lexical_normalize(&home).unwrap_or(home),
        })
    }

    /// The directory relative paths are resolved against.
    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The directory `~` stands for.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Makes a request path absolute and collapses `.`, `..` and `~` lexically.
    /// `None` for paths that are not UTF-8 or contain NUL.
    pub fn absolute(&self, path: &Path) -> Option<PathBuf> {
        let s = path.to_str()?;
        if s.contains('\0') {
            return None;
        }
        let joined = if s == "~" {
            self.home.clone()
        } else if let Some(rest) = s.strip_prefix("~/") {
            self.home.join(rest)
        } else {
            self.workdir.join(path)
        };
        lexical_normalize(&joined)
    }
}

/// Collapses `.` and `..` without touching the filesystem. `..` at the root stays at the root.
pub fn lexical_normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Glob(String),
    AnyDepth,
}

/// A compiled, absolute path pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    parts: Vec<Part>,
}

/// How relative patterns are anchored: the two path syntaxes in a policy file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathSyntax {
    /// Claude Code's rule syntax: `//abs`, `~/home`, `/workdir-relative`, `rel` or `./rel`.
    ClaudeRule,
    /// The `[filesystem]` section: `/abs`, `~/home`, `.`, `rel` or `./rel`.
    Filesystem,
}

impl PathPattern {
    /// Compiles a pattern written in `syntax`, anchored with `env`.
    pub fn compile(pattern: &str, syntax: PathSyntax, env: &Environment) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("the path pattern is empty".into());
        }
        if pattern.contains('\0') {
            return Err("the path pattern contains a NUL byte".into());
        }
        let (base, rest): (&Path, &str) = if pattern == "~" {
            (env.home(), "")
        } else if let Some(rest) = pattern.strip_prefix("~/") {
            (env.home(), rest)
        } else if let Some(rest) = pattern.strip_prefix("//") {
            (Path::new("/"), rest)
        } else if let Some(rest) = pattern.strip_prefix('/') {
            match syntax {
                PathSyntax::ClaudeRule => (env.workdir(), rest),
                PathSyntax::Filesystem => (Path::new("/"), rest),
            }
        } else if pattern.starts_with('~') {
            return Err(format!("`{pattern}` names another user's home; write `~/…` or an absolute path"));
        } else {
            let dot_slash = pattern.strip_prefix("./");
            let anchored = syntax == PathSyntax::Filesystem
                || dot_slash.is_some()
                || pattern == "."
                || pattern.trim_end_matches('/').contains('/');
            let rest = dot_slash.unwrap_or(pattern);
            if anchored {
                (env.workdir(), rest)
            } else {
                // gitignore: a bare name matches at any depth below the anchor.
                return Self::from_parts(env.workdir(), &format!("**/{rest}"));
            }
        };
        Self::from_parts(base, rest)
    }

    fn from_parts(base: &Path, rest: &str) -> Result<Self, String> {
        let mut parts: Vec<Part> = Vec::new();
        for comp in base.components() {
            if let Component::Normal(c) = comp {
                let c = c.to_str().ok_or("the environment path is not UTF-8")?;
                parts.push(Part::Literal(c.to_owned()));
            }
        }
        for comp in rest.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    if !matches!(parts.pop(), Some(Part::Literal(_))) {
                        return Err("`..` may only follow a literal directory".into());
                    }
                }
                "**" => {
                    if parts.last() != Some(&Part::AnyDepth) {
                        parts.push(Part::AnyDepth);
                    }
                }
                c if c.contains(['*', '?']) => parts.push(Part::Glob(c.to_owned())),
                c => parts.push(Part::Literal(c.to_owned())),
            }
        }
        Ok(PathPattern { parts })
    }

    /// The longest literal directory every match starts with, as `/a/b` (`/` if none).
    pub(crate) fn literal_prefix(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                _ => break,
            }
        }
        if out.is_empty() { "/".into() } else { out }
    }

    /// True when the pattern matches `path` or one of its ancestors. `path` must be absolute
    /// and normalised (see [`Environment::absolute`]).
    pub fn matches(&self, path: &str) -> bool {
        let components: smallvec::SmallVec<[&str; 16]> = path.split('/').filter(|c| !c.is_empty()).collect();
        match_parts(&self.parts, &components)
    }
}

/// Matches pattern parts against a prefix of the components (ancestor semantics).
fn match_parts(parts: &[Part], comps: &[&str]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return true;
    };
    match first {
        Part::AnyDepth => (0..=comps.len()).any(|skip| match_parts(rest, &comps[skip..])),
        Part::Literal(l) => comps.first().is_some_and(|c| c == l) && match_parts(rest, &comps[1..]),
        Part::Glob(g) => comps.first().is_some_and(|c| glob_component(g, c)) && match_parts(rest, &comps[1..]),
    }
}

/// `*` and `?` within one component; a leading `.` is matched like any other character.
fn glob_component(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    crate::wildcard::matches(&p, &t, '*', Some('?'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::new("/work/proj", "/home/u").unwrap()
    }

    fn m(pattern: &str, syntax: PathSyntax, path: &str) -> bool {
        PathPattern::compile(pattern, syntax, &env()).unwrap().matches(path)
    }

    #[test]
    fn claude_anchors() {
        use PathSyntax::ClaudeRule as C;
        assert!(m("./src/**", C, "/work/proj/src/a/b.rs"));
        assert!(!m("./src/**", C, "/work/proj/lib/a.rs"));
        assert!(m("/docs/*.md", C, "/work/proj/docs/x.md"));
        assert!(m("//etc/passwd", C, "/etc/passwd"));
        assert!(m("~/.ssh", C, "/home/u/.ssh/id_ed25519"));
        assert!(m("**/.env", C, "/work/proj/a/b/.env"));
        assert!(m(".env", C, "/work/proj/deep/.env"));
        assert!(m("*.pem", C, "/work/proj/certs/k.pem"));
        assert!(!m("*.pem", C, "/other/k.pem"));
    }

    #[test]
    fn filesystem_anchors() {
        use PathSyntax::Filesystem as F;
        assert!(m(".", F, "/work/proj/anything"));
        assert!(m("/var/cache", F, "/var/cache/x"));
        assert!(!m(".", F, "/work/project2/x"));
        assert!(m("~/.config/acme", F, "/home/u/.config/acme/token"));
    }

    #[test]
    fn normalises_request_paths() {
        let e = env();
        assert_eq!(e.absolute(Path::new("a/../../x")).unwrap(), Path::new("/work/x"));
        assert_eq!(e.absolute(Path::new("~/.aws/credentials")).unwrap(), Path::new("/home/u/.aws/credentials"));
        assert_eq!(e.absolute(Path::new("/../../etc")).unwrap(), Path::new("/etc"));
        assert!(e.absolute(Path::new("a\0b")).is_none());
    }

    #[test]
    fn globs_stay_in_one_component() {
        assert!(glob_component("*.rs", "main.rs"));
        assert!(glob_component("a?c", "abc"));
        assert!(!glob_component("*.rs", "main.rsx"));
        assert!(m("/a/*/c", PathSyntax::Filesystem, "/a/b/c"));
        assert!(!m("/a/*/c", PathSyntax::Filesystem, "/a/b/x/c"));
        assert!(m("/a/**/c", PathSyntax::Filesystem, "/a/b/x/c"));
    }
}
