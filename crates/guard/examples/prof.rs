use std::time::Instant;
fn main() {
    let line = "git log --oneline --graph --decorate -n 20 -- src/ && git status --short --branch";
    let mut script = String::new();
    while script.len() < 2048 { script.push_str(line); script.push('\n'); }
    let mut p = tree_sitter::Parser::new();
    p.set_language(&tree_sitter_bash::LANGUAGE.into()).unwrap();
    for (name, text) in [("line", line), ("script", script.as_str())] {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n { std::hint::black_box(p.parse(text, None)); }
        let ts = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n { std::hint::black_box(portcullis_guard::shell::parse(text)); }
        let pa = t.elapsed() / n;
        let s = portcullis_guard::shell::GuardSettings::default();
        let t = Instant::now();
        for _ in 0..n { std::hint::black_box(portcullis_guard::shell::analyze(text, &s)); }
        let an = t.elapsed() / n;
        println!("{name}: tree-sitter {ts:?} parse {pa:?} analyze {an:?}");
    }
}
