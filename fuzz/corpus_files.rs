//! Shared by each crate's `tests/fuzz_corpus.rs`: runs every committed input
//! of a fuzz target — its seed corpus (`fuzz/seeds/<target>/`) and every
//! former crash (`fuzz/regressions/<target>/`) — through the target's body,
//! so that `cargo test` keeps guarding what fuzzing found. Fails naming each
//! input that panicked, and fails when the seed corpus is missing or empty.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The repository's `fuzz/` directory, found from the crate's manifest.
fn fuzz_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|d| d.join("fuzz"))
        .find(|d| d.join("seeds").is_dir())
        .unwrap_or_else(|| panic!("no fuzz/seeds above {}", manifest.display()))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    out.sort();
    out
}

/// Runs every seed and regression input of `target` through `body`.
pub fn run_all(target: &str, body: fn(&[u8])) {
    let fuzz = fuzz_dir();
    let seeds = files(&fuzz.join("seeds").join(target));
    assert!(
        !seeds.is_empty(),
        "no seed corpus in {}",
        fuzz.join("seeds").join(target).display()
    );
    let regressions = files(&fuzz.join("regressions").join(target));
    let mut failed = Vec::new();
    for path in seeds.iter().chain(&regressions) {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz target `{target}` panicked on: {}",
        failed.join(", ")
    );
    eprintln!(
        "fuzz target `{target}`: {} seeds and {} former crashes ran clean",
        seeds.len(),
        regressions.len()
    );
}
