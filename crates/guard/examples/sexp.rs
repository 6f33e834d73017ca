fn main() {
    let mut p = tree_sitter::Parser::new();
    p.set_language(&tree_sitter_bash::LANGUAGE.into()).unwrap();
    for line in std::env::args().skip(1) {
        println!("{line}\n  {}", p.parse(&line, None).unwrap().root_node().to_sexp());
    }
}
