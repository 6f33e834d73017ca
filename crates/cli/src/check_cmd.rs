//! `portcullis check`: what this host and user can enforce.

use std::process::ExitCode;

use portcullis_sandbox::probe::Probe;

use crate::EXIT_SETUP;

pub(crate) fn run(json: bool) -> ExitCode {
    let probe = Probe::run();
    let missing = probe.missing();
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": missing.is_empty(), "checks": probe.checks, "landlock_abi": probe.landlock_abi, "cgroups": probe.cgroups })
        );
    } else {
        for check in &probe.checks {
            let mark = if check.available { "ok     " } else { "MISSING" };
            println!("{mark}  {:<28} {}", check.feature.to_string(), check.detail);
        }
        if missing.is_empty() {
            println!("every sandbox feature is available");
        } else {
            let names: Vec<String> = missing.iter().map(ToString::to_string).collect();
            eprintln!("error: missing {}; `portcullis run` refuses to start without it", names.join(", "));
        }
    }
    if missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_SETUP) }
}
