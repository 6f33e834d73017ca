mod differential;
mod evaluate;
mod load;
mod properties;

use portcullis_policy::{Environment, Policy};

pub(crate) fn env() -> Environment {
    Environment::new("/work/proj", "/home/dev").unwrap()
}

pub(crate) fn policy(text: &str) -> Policy {
    match Policy::load(text, "test.toml", &env()) {
        Ok(p) => p,
        Err(e) => panic!("policy did not load:\n{e}"),
    }
}
