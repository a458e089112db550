//! Fuzz target `config`: see the body's documentation in
//! `sec-audit-enforce/tests/fuzz_bodies/config.rs` (shared with that crate's
//! `tests/fuzz_corpus.rs`, which replays the committed corpus in `cargo test`).

#![no_main]

#[path = "../../sec-audit-enforce/tests/fuzz_bodies/config.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
