//! Package managers pointed at another index, registry or module proxy than their default.

use super::option_values;
use crate::shell::parse::Command;

/// Options with which an installer fetches from another index or registry than its default.
const INDEX_OPTIONS: &[&str] = &[
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--trusted-host",
    "--index",
    "--default-index",
    "--registry",
    "--source",
    "--clear-sources",
    "--pypi-mirror",
    "--repository",
    "--repository-url",
];

/// Environment variables that point an installer at another index, registry or proxy (or
/// switch off checksum verification of what it fetches).
fn index_variable(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "PIP_INDEX_URL"
            | "PIP_EXTRA_INDEX_URL"
            | "PIP_FIND_LINKS"
            | "PIP_TRUSTED_HOST"
            | "PIP_CONFIG_FILE"
            | "UV_INDEX_URL"
            | "UV_EXTRA_INDEX_URL"
            | "UV_INDEX"
            | "UV_DEFAULT_INDEX"
            | "UV_FIND_LINKS"
            | "PIPENV_PYPI_MIRROR"
            | "NPM_CONFIG_REGISTRY"
            | "YARN_REGISTRY"
            | "YARN_NPM_REGISTRY_SERVER"
            | "BUN_CONFIG_REGISTRY"
            | "PNPM_CONFIG_REGISTRY"
            | "GOPROXY"
            | "GOSUMDB"
            | "GONOSUMDB"
            | "GONOSUMCHECK"
            | "GOINSECURE"
            | "GONOPROXY"
            | "GOPRIVATE"
            | "CONDA_CHANNELS"
            | "CONDA_CHANNEL_ALIAS"
            | "GEM_SOURCE"
            | "RUBYGEMS_HOST"
            | "COMPOSER_REPOSITORY"
            | "NUGET_SOURCE"
    ) || upper.starts_with("CARGO_REGISTRIES_")
        || upper.starts_with("CARGO_SOURCE_")
        || upper.starts_with("POETRY_REPOSITORIES_")
        || upper.starts_with("POETRY_SOURCE")
        || upper.starts_with("BUNDLE_MIRROR__")
        || (upper.starts_with("NPM_CONFIG_") && upper.ends_with("REGISTRY"))
}

/// Configuration keys that name an index or registry.
fn index_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    [
        "index-url",
        "index_url",
        "find-links",
        "trusted-host",
        "registry",
        "mirror",
        "channels",
        "channel_alias",
        "repositories.",
        "repo.",
        "source.",
        "replace-with",
        "index",
    ]
    .iter()
    .any(|k| lower.contains(k))
        || lower.split('=').next().is_some_and(index_variable)
}

/// Package managers whose fetches the network rules exempt.
const INSTALLERS: &[&str] = &[
    "pip",
    "pip3",
    "pipx",
    "uv",
    "uvx",
    "poetry",
    "pdm",
    "pipenv",
    "hatch",
    "rye",
    "conda",
    "mamba",
    "micromamba",
    "npm",
    "npx",
    "pnpm",
    "pnpx",
    "yarn",
    "bun",
    "bunx",
    "cargo",
    "gem",
    "bundle",
    "bundler",
    "go",
    "composer",
    "nuget",
    "dotnet",
    "easy_install",
    "twine",
];

/// True when a command points a package manager at another index or registry: an index option
/// (`--index-url`, `--registry`, `--index`), an environment variable (`PIP_INDEX_URL`,
/// `GOPROXY`), or a configuration change (`pip config set global.index-url`, `npm config set
/// registry`, `gem sources --add`, `go env -w GOPROXY=…`, `poetry source add`).
pub(crate) fn points_at_another_index(cmd: &Command) -> bool {
    let args = cmd.args();
    let name = cmd.name();
    let assigned = cmd.assignments.iter().any(|(n, _)| index_variable(n))
        || (matches!(name, "export" | "declare" | "typeset" | "setenv" | "env")
            && args.iter().any(|w| w.text.split_once('=').is_some_and(|(k, _)| index_variable(k))));
    if assigned {
        return true;
    }
    // `python -m pip …`, `python3 -m uv …` are the installer itself.
    let module =
        (name.starts_with("python") || name == "py").then(|| args.windows(2).position(|p| p[0].text == "-m")).flatten();
    let (tool, args) = match module {
        Some(pos) => (args[pos + 1].text.as_str(), args.get(pos + 2..).unwrap_or_default()),
        None => (name, args),
    };
    let tool = tool.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    if !INSTALLERS.contains(&tool) && !INSTALLERS.contains(&name) {
        return false;
    }
    let words: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    // pip's `-i` and `-f` name an index only where it fetches (`pip show -f` lists files).
    let fetches = matches!(tool, "pip" | "pipx" | "uv" | "easy_install")
        && words
            .iter()
            .any(|w| matches!(*w, "install" | "download" | "wheel" | "index" | "search" | "lock" | "sync" | "compile"));
    let option = words.iter().any(|w| {
        INDEX_OPTIONS.iter().any(|o| w == o || w.strip_prefix(o).is_some_and(|r| r.starts_with('=')))
            // `pip install -i URL`, `pip install -f URL`; `conda install -c URL`
            || (fetches && matches!(*w, "-i" | "-f"))
            || (fetches && (w.starts_with("-ihttp") || w.starts_with("-fhttp")))

    }) || (tool == "cargo" && option_values(args, &["--config"]).iter().any(|v| index_key(v)))
        // `cargo --config 'source.crates-io.replace-with="x"'`
        || (matches!(tool, "conda" | "mamba" | "micromamba")
        && option_values(args, &["-c", "--channel"]).iter().any(|v| v.contains("://")));
    let position = |t: &str| words.iter().position(|w| *w == t);
    let reads = words.iter().any(|w| {
        matches!(
            *w,
            "get" | "list" | "ls" | "show" | "--get" | "--list" | "-l" | "--show" | "--show-sources" | "--json"
        )
    });
    let config = !reads
        && match (position("config"), position("set"), position("env"), position("-w")) {
            // `pip config set global.index-url`, `npm config set registry`, `yarn config set
            // npmRegistryServer`, `conda config --add channels`, `bundle config mirror.x`.
            (Some(c), ..) => words[c + 1..].iter().any(|w| index_key(w)),
            // `npm set registry …`
            (None, Some(s), ..) => words[s + 1..].iter().any(|w| index_key(w)),
            // `go env -w GOPROXY=…`
            (None, None, Some(_), Some(w)) => words[w + 1..].iter().any(|w| index_key(w)),
            _ => false,
        };
    let sources = match tool {
        "gem" => words.first() == Some(&"sources") && words.iter().any(|w| matches!(*w, "--add" | "-a")),
        "poetry" => words.windows(2).any(|p| p[0] == "source" && p[1] == "add"),
        "nuget" => words.windows(2).any(|p| p[0] == "sources" && p[1] == "add"),
        "dotnet" => words.windows(3).any(|p| p[0] == "nuget" && p[1] == "add" && p[2] == "source"),
        "composer" => words.iter().any(|w| w.starts_with("repositories.") || w.starts_with("repo.")),
        _ => false,
    };
    option || config || sources
}
