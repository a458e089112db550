//! The `config` fuzz target's committed inputs (seed corpus and former
//! crashes, under `fuzz/`) run through the target's own body
//! (`tests/fuzz_bodies/config.rs`) as a plain test, so CI guards what fuzzing
//! found without running the fuzzer. See `fuzz/README.md`.

#[path = "fuzz_bodies/config.rs"]
mod body;

#[path = "../../fuzz/corpus_files.rs"]
mod corpus_files;

#[test]
fn config_fuzz_corpus_and_former_crashes_run_clean() {
    corpus_files::run_all("config", body::run);
}
