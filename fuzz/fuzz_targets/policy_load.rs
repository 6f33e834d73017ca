//! Policy loading must never panic, whatever bytes the file holds, and every problem it
//! reports must point inside the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_policy::{Environment, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(env) = Environment::new("/work/proj", "/home/dev") else { return };
    match Policy::load(text, "fuzz.toml", &env) {
        Ok(policy) => {
            // A policy that loads must also answer.
            let input = serde_json::json!({ "command": "git push --force origin main" });
            let _ = policy.evaluate(&portcullis_policy::Request::ToolCall { tool: "Bash", input: &input });
        }
        Err(errors) => {
            let lines = text.lines().count().max(1) as u32 + 1;
            for p in &errors.problems {
                assert!(p.location.line >= 1 && p.location.line <= lines, "line {} out of range", p.location.line);
                assert!(p.location.column >= 1);
            }
            let _ = errors.to_string();
        }
    }
});
