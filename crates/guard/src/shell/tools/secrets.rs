//! Searches of the host for secrets, and the tools that print secrets from their stores.

use super::{operands, option_values};
use crate::shell::parse::{Command, Word};

/// Words that name secrets in search patterns, for file contents and file names alike.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "apikey",
    "api_key",
    "api-key",
    "private key",
    "private_key",
    "privatekey",
    "begin rsa",
    "begin openssh",
    "begin ec",
    "begin dsa",
    "begin pgp private",
    "-----begin",
    // Token prefixes: AWS access keys, GitHub and Slack tokens.
    "akia",
    "ghp_",
    "github_pat",
    "xoxb",
    "xoxp",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".pem",
    ".key",
    ".p12",
    ".pfx",
    ".kdbx",
    ".keychain",
    ".jks",
    ".keystore",
    ".ppk",
    ".ovpn",
    "shadow",
    "netrc",
    "pgpass",
    "htpasswd",
    "wallet",
    "aws_access",
    "aws_secret",
    "authorized_keys",
    "known_hosts",
    ".env",
];

/// Words that name secrets in file names only (`*private*` is a secret's file, not a keyword).
const SECRET_FILE_WORDS: &[&str] = &["private"];

/// True when a search pattern names a secret, read literally and with its regular-expression
/// syntax taken out (`api[_-]?key` is `apikey`, `pass(word|wd)` holds `password`).
fn names_a_secret(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let mut plain = String::with_capacity(lower.len());
    let mut in_class = false;
    for c in lower.chars() {
        match c {
            '[' => in_class = true,
            ']' => in_class = false,
            _ if in_class => {}
            '?' | '*' | '+' | '.' | '\\' | '(' | ')' | '^' | '$' | '{' | '}' => {}
            '|' => plain.push(' '),
            _ => plain.push(c),
        }
    }
    SECRET_WORDS.iter().any(|w| lower.contains(w) || plain.contains(w))
}

fn names_a_secret_file(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    // `id_*`: SSH keys are named for their algorithm.
    names_a_secret(text)
        || SECRET_FILE_WORDS.iter().any(|w| lower.contains(w))
        || lower.trim_start_matches(['*', '.']).starts_with("id_")
}

/// True for a search root outside the workdir: absolute, or in the home directory.
fn outside_root(text: &str) -> bool {
    text.starts_with('/') || text.starts_with('~') || text.starts_with("$HOME")
}

/// True when a command searches the host, not the workdir, for secrets: `find / -name
/// '*.pem'`, `locate id_rsa`, `grep -ri password /etc`, `rg -i token ~`; or prints them from a
/// keyring or a credential store: `gpg --export-secret-keys`, `security find-generic-password`,
/// `secret-tool lookup`, `git credential fill`.
pub(crate) fn hunts_for_secrets(cmd: &Command) -> bool {
    let name = cmd.name();
    let searches = matches!(
        name,
        "find"
            | "bfs"
            | "locate"
            | "mlocate"
            | "plocate"
            | "slocate"
            | "fd"
            | "fdfind"
            | "grep"
            | "egrep"
            | "fgrep"
            | "rg"
            | "ag"
            | "ack"
            | "ack-grep"
            | "zgrep"
            | "ugrep"
    );
    let stores = matches!(
        name,
        "gpg"
            | "gpg2"
            | "security"
            | "secret-tool"
            | "keyring"
            | "kwallet-query"
            | "kwalletcli"
            | "lssecret"
            | "mimikatz"
            | "lazagne"
            | "lazagne.py"
            | "secretsdump.py"
            | "impacket-secretsdump"
            | "pass"
            | "gopass"
            | "lpass"
            | "op"
            | "bw"
            | "gh"
            | "glab"
            | "kubectl"
            | "git"
    ) || name.starts_with("docker-credential-")
        || name.starts_with("python");
    if !searches && !stores {
        return false;
    }
    let args = cmd.args();
    let words: Vec<String> = args.iter().map(|w| w.text.to_ascii_lowercase()).collect();
    let has = |t: &str| words.iter().any(|w| w == t);
    let sub = |a: &str, b: &str| words.windows(2).any(|p| p[0] == a && p[1] == b);
    match name {
        "find" | "bfs" => {
            let roots: Vec<&Word> =
                args.iter().take_while(|w| !w.text.starts_with('-') && w.text != "(" && w.text != "!").collect();
            let patterns = option_values(
                args,
                &[
                    "-name",
                    "-iname",
                    "-path",
                    "-ipath",
                    "-regex",
                    "-iregex",
                    "-wholename",
                    "-iwholename",
                    "-lname",
                    "-ilname",
                ],
            );
            roots.iter().any(|r| outside_root(&r.text)) && patterns.iter().any(|p| names_a_secret_file(p))
        }
        "locate" | "mlocate" | "plocate" | "slocate" => {
            operands(args, &["-d", "--database", "-l", "-n", "--limit"]).iter().any(|w| names_a_secret_file(&w.text))
        }
        "fd" | "fdfind" => {
            let ops = operands(
                args,
                &["-e", "--extension", "-t", "--type", "-E", "--exclude", "-d", "--max-depth", "-x", "-X"],
            );
            let extension =
                option_values(args, &["-e", "--extension"]).iter().any(|e| names_a_secret(&format!(".{e}")));
            (ops.first().is_some_and(|p| names_a_secret_file(&p.text)) || extension)
                && ops.iter().skip(1).any(|r| outside_root(&r.text))
        }
        "grep" | "egrep" | "fgrep" | "rg" | "ag" | "ack" | "ack-grep" | "zgrep" | "ugrep" => {
            let with_value = [
                "-e",
                "-f",
                "-m",
                "-A",
                "-B",
                "-C",
                "-g",
                "--glob",
                "-t",
                "--type",
                "-T",
                "--max-count",
                "--include",
                "--exclude",
                "--exclude-dir",
                "-d",
                "--directories",
                "-j",
                "--threads",
            ];
            let given = option_values(args, &["-e", "--regexp"]);
            let ops = operands(args, &with_value);
            let (patterns, roots): (Vec<&str>, Vec<&Word>) = if given.is_empty() {
                (ops.first().map(|w| w.text.as_str()).into_iter().collect(), ops.iter().skip(1).copied().collect())
            } else {
                (given, ops)
            };
            let recursive = !matches!(name, "grep" | "egrep" | "fgrep" | "zgrep")
                || args.iter().any(|w| {
                    w.text == "--recursive"
                        || w.text == "--dereference-recursive"
                        || (w.text.starts_with('-') && !w.text.starts_with("--") && w.text.contains(['r', 'R']))
                });
            let broad = |w: &Word| {
                let t = w.text.trim_end_matches('/');
                w.glob
                    || recursive
                    || matches!(t, "" | "~" | "/etc" | "/home" | "/root" | "/var" | "/opt" | "/srv" | "/Users")
            };
            // `grep -r . --include='*.env' ~`: the files searched are named for secrets.
            let files = option_values(args, &["--include", "-g", "--glob", "--iglob"]);
            (patterns.iter().any(|p| names_a_secret(p)) || files.iter().any(|f| names_a_secret_file(f)))
                && roots.iter().any(|r| outside_root(&r.text) && broad(r))
        }
        "gpg" | "gpg2" => words.iter().any(|w| w.starts_with("--export-secret")),
        "security" => words.first().is_some_and(|s| {
            matches!(s.as_str(), "find-generic-password" | "find-internet-password" | "dump-keychain" | "export")
        }),
        "secret-tool" => has("lookup") || has("search"),
        "keyring" => has("get"),
        "kwallet-query" => has("-r") || has("--read-password"),
        "kwalletcli"
        | "lssecret"
        | "mimikatz"
        | "lazagne"
        | "lazagne.py"
        | "secretsdump.py"
        | "impacket-secretsdump" => !has("-h") && !has("--help"),
        "pass" | "gopass" | "lpass" => {
            has("show") || ((has("-c") || has("--clip")) && !has("generate") && !has("insert") && !has("edit"))
        }
        "op" => has("read") || sub("item", "get") || sub("document", "get"),
        "bw" => has("get") || has("export"),
        // The stored tokens, as `cat` of the store would print them.
        "gh" | "glab" => sub("auth", "token"),
        "kubectl" => has("view") && has("--raw"),
        "git" => sub("credential", "fill") || sub("credential-store", "get"),
        n if n.starts_with("docker-credential-") => has("get") || has("list"),
        n if n.starts_with("python") => sub("-m", "keyring") && has("get"),
        _ => false,
    }
}
