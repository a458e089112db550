//! Fuzz target `replay`: see the body's documentation in
//! `sec-audit-cli/tests/fuzz_bodies/replay.rs` (shared with that crate's
//! `tests/fuzz_corpus.rs`, which replays the committed corpus in `cargo test`).

#![no_main]

#[path = "../../sec-audit-cli/tests/fuzz_bodies/replay.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
