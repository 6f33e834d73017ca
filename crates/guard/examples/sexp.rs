//! Prints tree-sitter-bash's syntax tree for each argument: the tool for finding grammar quirks.
//!
//! `cargo run -p portcullis-guard --example sexp -- 'a | b > out'`

fn main() {
    let mut parser = tree_sitter::Parser::new();
    if let Err(e) = parser.set_language(&tree_sitter_bash::LANGUAGE.into()) {
        eprintln!("cannot load the bash grammar: {e}");
        std::process::exit(2);
    }
    for line in std::env::args().skip(1) {
        match parser.parse(&line, None) {
            Some(tree) => println!("{line}\n  {}", tree.root_node().to_sexp()),
            None => println!("{line}\n  (no tree)"),
        }
    }
}
