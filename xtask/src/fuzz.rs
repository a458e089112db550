//! `cargo xtask fuzz [--seconds N] [--sanitizer address|none] [TARGET]`:
//! builds the cargo-fuzz targets of `fuzz/` and runs each (or one) for N
//! seconds, then prints one line per target (date, seconds, executions,
//! corpus size, crashes) in the form of the run log in `fuzz/README.md`.
//! Exits non-zero when a target crashed (a panic, a failed assertion, a
//! timeout or an out-of-memory), naming each artifact.
//!
//! What it runs, exactly (from the repository root):
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz -s <sanitizer> [TARGET]
//! RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s <sanitizer> <target> \
//!     fuzz/corpus/<target> fuzz/seeds/<target> [fuzz/regressions/<target>] -- \
//!     -max_total_time=<N> -timeout=<T> -print_final_stats=1 [-dict=fuzz/dicts/<target>.dict]
//! ```
//!
//! (cargo-fuzz adds `-artifact_prefix=fuzz/artifacts/<target>/`.)
//! cargo-fuzz passes nightly-only flags (`-Zsanitizer=...`, and `-Cpasses=
//! sancov-module` options); `RUSTC_BOOTSTRAP=1` lets the stable toolchain
//! accept them. New inputs go to `fuzz/corpus/<target>` (not committed);
//! the committed seeds and former crashes are read only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{cargo, workspace_root};

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 4] = ["replay", "config", "client_ip", "plugin_config"];

const DEFAULT_SECONDS: u64 = 60;
/// libFuzzer's per-input timeout: an input slower than this is a finding
/// (e.g. quadratic work), saved as a `timeout-*` artifact.
const INPUT_TIMEOUT_SECS: u64 = 10;

/// What one run found.
#[derive(Debug, Default)]
struct RunStats {
    executions: Option<u64>,
    corpus: Option<u64>,
    artifacts: Vec<String>,
    success: bool,
}

pub fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = DEFAULT_SECONDS;
    let mut sanitizer = "address".to_string();
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().ok_or("--seconds needs a number")?;
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("--seconds: `{v}` is not a positive number"))?;
            }
            "--sanitizer" | "-s" => {
                let v = it.next().ok_or("--sanitizer needs address or none")?;
                if !matches!(v.as_str(), "address" | "none") {
                    return Err(format!("--sanitizer: `{v}` is not address or none"));
                }
                sanitizer = v.clone();
            }
            t if !t.starts_with('-') && only.is_none() => {
                if !TARGETS.contains(&t) {
                    return Err(format!(
                        "fuzz: unknown target `{t}` (targets: {})",
                        TARGETS.join(", ")
                    ));
                }
                only = Some(t.to_string());
            }
            other => return Err(format!("fuzz: unknown argument `{other}`")),
        }
    }
    let root = workspace_root();
    let fuzz_dir = root.join("fuzz");
    let ok = cargo()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        return Err("cargo-fuzz is not installed: run `cargo install cargo-fuzz`".into());
    }

    let mut build = cargo();
    build
        .current_dir(&root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "build", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .args(["-s", &sanitizer]);
    if let Some(t) = &only {
        build.arg(t);
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo fuzz build: {e}"))?;
    if !status.success() {
        return Err("building the fuzz targets failed".into());
    }

    let targets: Vec<&str> = match &only {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let mut rows = Vec::new();
    let mut crashed = Vec::new();
    for target in targets {
        let stats = run_target(&root, &fuzz_dir, target, seconds, &sanitizer)?;
        let crashes = stats.artifacts.len().max(usize::from(!stats.success));
        rows.push(format!(
            "| {} | {target} | {seconds} | {} | {} | {crashes} |",
            utc_date(),
            stats.executions.map_or("?".into(), |n| n.to_string()),
            stats.corpus.map_or("?".into(), |n| n.to_string()),
        ));
        if !stats.success {
            crashed.push(match stats.artifacts.is_empty() {
                true => format!("{target}: the fuzzer failed (see its output above)"),
                false => format!("{target}: {}", stats.artifacts.join(", ")),
            });
        }
    }
    println!("\n| date | target | seconds | executions | corpus | crashes |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzzing found crashes (reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz <target> <artifact>`, then add the input to fuzz/regressions/<target>/):\n  {}",
            crashed.join("\n  ")
        ))
    }
}

fn run_target(
    root: &Path,
    fuzz_dir: &Path,
    target: &str,
    seconds: u64,
    sanitizer: &str,
) -> Result<RunStats, String> {
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)
        .map_err(|e| format!("cannot create {}: {e}", corpus.display()))?;
    let artifacts = fuzz_dir.join("artifacts").join(target);
    std::fs::create_dir_all(&artifacts)
        .map_err(|e| format!("cannot create {}: {e}", artifacts.display()))?;
    let mut dirs: Vec<PathBuf> = vec![corpus, fuzz_dir.join("seeds").join(target)];
    let regressions = fuzz_dir.join("regressions").join(target);
    if regressions.is_dir() {
        dirs.push(regressions);
    }
    let mut cmd = cargo();
    cmd.current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "--fuzz-dir"])
        .arg(fuzz_dir)
        .args(["-s", sanitizer, target])
        .args(&dirs)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg("-print_final_stats=1");
    let dict = fuzz_dir.join("dicts").join(format!("{target}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    eprintln!("xtask: fuzzing `{target}` for {seconds} s");
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo fuzz run: {e}"))?;
    let mut stats = RunStats::default();
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            parse_line(&line, &mut stats);
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for the fuzzer failed: {e}"))?;
    stats.success = status.success();
    Ok(stats)
}

/// Picks what the summary needs out of libFuzzer's standard error.
fn parse_line(line: &str, stats: &mut RunStats) {
    if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
        stats.executions = n.trim().parse().ok();
    } else if let Some(rest) = line.split_once("Test unit written to ") {
        stats.artifacts.push(rest.1.trim().to_string());
    } else if line.starts_with('#') {
        // `#1234	pulse  cov: 10 ft: 20 corp: 30/4Kb ...`
        if let Some(c) = line.split("corp: ").nth(1) {
            if let Some(n) = c.split('/').next().and_then(|n| n.trim().parse().ok()) {
                stats.corpus = Some(n);
            }
        }
    }
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn utc_date() -> String {
    date_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// The UTC date of a Unix time, `YYYY-MM-DD` (Howard Hinnant's
/// civil-from-days).
fn date_of(secs: u64) -> String {
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_output() {
        let mut s = RunStats::default();
        for l in [
            "#2\tINITED cov: 100 ft: 120 corp: 11/9Kb exec/s: 0 rss: 40Mb",
            "#65536\tpulse  cov: 900 ft: 2000 corp: 210/30Kb lim: 4096 exec/s: 3000 rss: 90Mb",
            "artifact_prefix='fuzz/artifacts/replay/'; Test unit written to fuzz/artifacts/replay/crash-0a1b",
            "stat::number_of_executed_units: 123456",
        ] {
            parse_line(l, &mut s);
        }
        assert_eq!(s.corpus, Some(210));
        assert_eq!(s.executions, Some(123_456));
        assert_eq!(s.artifacts, ["fuzz/artifacts/replay/crash-0a1b"]);
    }

    #[test]
    fn civil_date() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_780_000_000), "2026-05-28");
        assert_eq!(date_of(951_782_400), "2000-02-29");
        assert_eq!(date_of(1_798_761_599), "2026-12-31");
    }
}
