mod store;
mod tamper;

use std::path::{Path, PathBuf};

use portcullis_audit::{HostKey, Kind, Options, Record, Store};
use serde_json::json;

/// A fresh directory for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The key beside the store in `root`.
pub(crate) fn key(root: &Path) -> HostKey {
    HostKey::load_or_create(&root.join("audit.key")).unwrap()
}

/// A store in `root/audit` with `options`.
pub(crate) fn open(root: &Path, options: Options) -> Store {
    Store::open(&root.join("audit"), key(root), options).unwrap()
}

/// An exec record numbered `i`.
pub(crate) fn exec(session: &str, i: usize) -> Record {
    let mut r = Record::new(Kind::Exec, "exec", session);
    r.agent = Some("claude".into());
    r.uid = Some(1000);
    r.input = Some(json!({"argv": ["/usr/bin/git", "status", format!("--n={i}")], "cwd": "/w", "pid": 100 + i}));
    r
}

/// Verifies `root/audit` with the host key.
pub(crate) fn verify(root: &Path) -> portcullis_audit::verify::Report {
    portcullis_audit::verify::verify(&root.join("audit"), &key(root).public()).unwrap()
}
