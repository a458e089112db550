//! Fuzz target `plugin_config`: see the body's documentation in
//! `plugins/sdk/tests/fuzz_bodies/plugin_config.rs` (shared with that crate's
//! `tests/fuzz_corpus.rs`, which replays the committed corpus in `cargo test`).

#![no_main]

#[path = "../../plugins/sdk/tests/fuzz_bodies/plugin_config.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
