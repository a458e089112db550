//! The `replay` fuzz target's committed inputs (seed corpus and former
//! crashes, under `fuzz/`) run through the target's own body
//! (`tests/fuzz_bodies/replay.rs`) as a plain test, so CI guards what fuzzing
//! found without running the fuzzer. See `fuzz/README.md`.

#[path = "fuzz_bodies/replay.rs"]
mod body;

#[path = "../../fuzz/corpus_files.rs"]
mod corpus_files;

#[test]
fn replay_fuzz_corpus_and_former_crashes_run_clean() {
    corpus_files::run_all("replay", body::run);
}
