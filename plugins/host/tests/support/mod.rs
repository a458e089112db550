//! Builds the plugin libraries the tests load — the two examples (from the
//! main workspace) and the odd fixtures (`plugins/tests-fixtures`, their own
//! workspace) — once per test process, into `<target>/plugin-fixtures`, a
//! target directory of their own: the outer `cargo test` is not blocked on,
//! and the fixtures' test-only SDK features never unify into the real build.
//! Cargo's own lock on that directory serializes concurrent test processes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use sec_audit_core::{AuditEvent, ManualClock};
use serde_json::{Map, Value};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>/plugin-fixtures`, next to the profile directory this test
/// binary runs from.
fn fixtures_target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SEC_AUDIT_PLUGIN_FIXTURES_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // <target>/<profile>/deps/<test binary>
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("plugin-fixtures")
}

fn cargo_build(manifest: &Path, target_dir: &Path, packages: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    let out = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build {packages:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn build_all() -> Result<PathBuf, String> {
    let root = workspace_root();
    let target = fixtures_target_dir();
    cargo_build(
        &root.join("Cargo.toml"),
        &target,
        &["repeated_not_found", "credential_stuffing"],
    )?;
    let fixtures = root.join("plugins/tests-fixtures/Cargo.toml");
    // One invocation per SDK feature set: features never unify across them.
    cargo_build(
        &fixtures,
        &target,
        &["panicking", "invalid_match", "not_a_plugin", "probe"],
    )?;
    cargo_build(&fixtures, &target, &["other_sdk_version"])?;
    cargo_build(&fixtures, &target, &["changed_layout"])?;
    Ok(target.join("debug"))
}

/// The path of the built library of package `name`.
pub fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_all) {
        Ok(dir) => dir.join(format!(
            "{}{name}{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )),
        Err(e) => panic!("building the test plugins failed: {e}"),
    }
}

pub fn table(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub fn event(v: Value) -> AuditEvent {
    AuditEvent::from_attributes(table(v)).expect("valid event")
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at_secs(1_000_000.0))
}
