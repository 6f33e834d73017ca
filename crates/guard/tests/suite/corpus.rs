//! The shell guard against third-party command sets shipped in `tests/data`.

use portcullis_guard::shell::{GuardSettings, analyze, analyze_argv};
use portcullis_policy::Decision;
use serde_json::Value;

fn jsonl(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_codex_dangerous_case_is_flagged_and_its_safe_ones_are_not() {
    let cases = jsonl(include_str!("../data/codex_command_safety/cases.jsonl"));
    let mut checked = 0;
    for case in cases.iter().filter(|c| c["property"] == "might_be_dangerous") {
        let argv: Vec<Vec<u8>> = case["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
        let flagged = analyze_argv(&argv, &GuardSettings::default()).decision().is_some();
        assert_eq!(flagged, case["expected"].as_bool().unwrap(), "{}", case["argv"]);
        checked += 1;
    }
    assert_eq!(checked, 9);
}

#[test]
fn codex_known_safe_commands_are_not_flagged() {
    let cases = jsonl(include_str!("../data/codex_command_safety/cases.jsonl"));
    for case in cases.iter().filter(|c| c["property"] == "known_safe" && c["expected"] == true) {
        let argv: Vec<Vec<u8>> = case["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
        let analysis = analyze_argv(&argv, &GuardSettings::default());
        assert_eq!(analysis.decision(), None, "{}: {:?}", case["argv"], analysis.findings);
    }
}

#[test]
fn ordinary_development_commands_are_rarely_stopped() {
    let cases = jsonl(include_str!("../data/tldr_benign/commands.jsonl"));
    assert!(cases.len() >= 500, "the benign set has {} commands", cases.len());
    let (mut denied, mut asked) = (Vec::new(), Vec::new());
    for case in &cases {
        let command = case["command"].as_str().unwrap();
        match analyze(command, &GuardSettings::default()).decision() {
            Some(Decision::Deny) => denied.push(command),
            Some(Decision::Ask) => asked.push(command),
            _ => {}
        }
    }
    let n = cases.len() as f64;
    assert!(denied.len() as f64 / n <= 0.02, "{} denied: {denied:#?}", denied.len());
    assert!(asked.len() as f64 / n <= 0.05, "{} asked: {asked:#?}", asked.len());
}
