//! The workspace's task runner: `cargo xtask <task>` (alias in
//! `.cargo/config.toml`).
//!
//! Tasks:
//! - `plugins [--dev] [--out DIR]`: builds the example plugin rules (release
//!   profile unless `--dev`) and copies their shared libraries to
//!   `<target>/plugins/` (or `DIR`), printing each file's sha256 for the
//!   configuration's `sha256 = "..."`.
//! - `bench [--table-only] [--no-memory] [--events N] [FILTER]`: builds the
//!   plugins, runs the criterion benchmarks of `sec-audit-benches`, replays a
//!   generated 1 000 000-event log with the release `sec-audit` binary under
//!   `/usr/bin/time -v` for the peak memory, and prints the table of
//!   targets (mean per operation, target, ratio to the reference, met or
//!   not), also written to `<target>/criterion/sec-audit-table.md`.
//! - `fuzz [--seconds N] [--sanitizer address|none] [TARGET]`: builds the
//!   cargo-fuzz targets of `fuzz/` and runs each (or TARGET) for N seconds
//!   (default 60); exits non-zero on a crash, naming the artifact. See
//!   `fuzz.rs` and `fuzz/README.md`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use sha2::{Digest, Sha256};

mod bench;
mod fuzz;

/// The example plugins shipped with the workspace (package = library name).
const EXAMPLE_PLUGINS: [&str; 2] = ["repeated_not_found", "credential_stuffing"];

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  plugins [--dev] [--out DIR]   build the example plugins (release unless --dev)
                                and copy them to <target>/plugins/ (or DIR)
  bench [--table-only] [--no-memory] [--events N] [FILTER]
                                build the plugins, run the criterion benchmarks
                                (FILTER: a criterion name filter), measure the
                                replay's peak memory on N (1000000) events, and
                                print the table of targets
  fuzz [--seconds N] [--sanitizer address|none] [TARGET]
                                build the cargo-fuzz targets (needs `cargo install
                                cargo-fuzz`) and run each, or TARGET (replay,
                                config, client_ip, plugin_config), for N (60)
                                seconds; non-zero exit on a crash, naming the
                                artifact
  help                          this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("plugins") => plugins(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The workspace's target directory, as cargo reports it (honours
/// `CARGO_TARGET_DIR` and `build.target-dir`).
pub(crate) fn target_dir(root: &Path) -> Result<PathBuf, String> {
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("cargo metadata output is not JSON: {e}"))?;
    meta.get("target_directory")
        .and_then(|v| v.as_str())
        .map(PathBuf::from)
        .ok_or_else(|| "cargo metadata reported no target_directory".to_string())
}

fn sha256_hex(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub(crate) fn plugins(args: &[String]) -> Result<(), String> {
    let mut release = true;
    let mut out_dir: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dev" => release = false,
            "--release" => release = true,
            "--out" => {
                let dir = it.next().ok_or("--out needs a directory")?;
                out_dir = Some(PathBuf::from(dir));
            }
            other => return Err(format!("plugins: unknown argument `{other}`\n\n{USAGE}")),
        }
    }
    let root = workspace_root();
    let target = target_dir(&root)?;
    let profile_dir = target.join(if release { "release" } else { "debug" });
    let out_dir = out_dir.unwrap_or_else(|| target.join("plugins"));

    let mut build = cargo();
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    if release {
        build.arg("--release");
    }
    for p in EXAMPLE_PLUGINS {
        build.args(["-p", p]);
    }
    let status = build
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err("building the plugins failed".into());
    }

    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    for p in EXAMPLE_PLUGINS {
        let file = format!(
            "{}{p}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        );
        let built = profile_dir.join(&file);
        let dest = out_dir.join(&file);
        // Copy then rename: a running host that has the old file mapped
        // keeps its inode; writing over it in place would corrupt the
        // mapped code.
        let tmp = out_dir.join(format!(".{file}.tmp"));
        std::fs::copy(&built, &tmp).map_err(|e| format!("cannot copy {}: {e}", built.display()))?;
        std::fs::rename(&tmp, &dest)
            .map_err(|e| format!("cannot move {} into place: {e}", dest.display()))?;
        println!("{}  sha256 {}", dest.display(), sha256_hex(&dest)?);
    }
    Ok(())
}
