//! Any request line (shell commands, hosts, paths, URLs) must get an answer, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_policy::{Environment, OwnedRequest, Policy, STARTER_POLICY};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(env) = Environment::new("/work/proj", "/home/dev") else { return };
    let Ok(policy) = Policy::load(STARTER_POLICY, "starter.toml", &env) else { return };
    let requests = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => OwnedRequest::from_json(&value).map(|(r, _)| vec![r]).unwrap_or_default(),
        Err(_) => vec![
            OwnedRequest::bash(text),
            OwnedRequest::Connect { host: text.to_owned(), port: 443 },
            OwnedRequest::Resolve { name: text.to_owned() },
            OwnedRequest::ToolCall { tool: "WebFetch".into(), input: serde_json::json!({ "url": text }) },
            OwnedRequest::FileAccess { path: text.into(), access: portcullis_policy::Access::Write },
        ],
    };
    for request in &requests {
        let e = policy.evaluate(&request.as_request());
        assert!(!e.rules.is_empty(), "every verdict names a rule");
    }
});
