//! Fuzz target `client_ip`: see the body's documentation in
//! `sec-audit-core/tests/fuzz_bodies/client_ip.rs` (shared with that crate's
//! `tests/fuzz_corpus.rs`, which replays the committed corpus in `cargo test`).

#![no_main]

#[path = "../../sec-audit-core/tests/fuzz_bodies/client_ip.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
