//! Edges of the command line: closed pipes, store outages, bad
//! configurations found without connecting.

mod common;

use std::process::{Output, Stdio};

use common::*;

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sec-audit-edges-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `sec-audit ARGS…` with standard output (or standard error) a pipe
/// whose reader is already closed: every write there fails with EPIPE, as
/// in `sec-audit … | true`.
fn run_closed(args: &[&str], close_stdout: bool) -> Output {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let mut c = cmd();
    c.args(args);
    if close_stdout {
        c.stdout(writer).stderr(Stdio::piped());
    } else {
        c.stderr(writer).stdout(Stdio::piped());
    }
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

const MEMORY: &str = "enabled = true\n[[rules]]\nbuiltin = \"brute_force_login\"\nthreshold = 3\n";

#[test]
fn a_closed_standard_output_ends_quietly_with_141() {
    let config = example("quickstart.toml");
    let config = config.to_str().unwrap();
    let log = example("sample-audit.jsonl");
    let memory = write_config("memory.toml", MEMORY);
    let memory = memory.to_str().unwrap();
    for args in [
        vec!["replay", "--config", config, log.to_str().unwrap()],
        vec!["check", "--config", config],
        vec!["blocks", "list", "--config", memory],
        vec!["blocks", "list", "--config", memory, "--json"],
    ] {
        let o = run_closed(&args, true);
        expect_code(&o, 141);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("ERROR"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn a_closed_standard_error_drops_diagnostics_and_keeps_the_status() {
    let config = example("quickstart.toml");
    let config = config.to_str().unwrap();
    let log = example("sample-audit.jsonl");
    let o = run_closed(&["check", "--config", config], false);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("W001"), "{}", stdout(&o));
    let o = run_closed(
        &["-vvv", "replay", "--config", config, log.to_str().unwrap()],
        false,
    );
    expect_code(&o, 0);
    assert!(!records(&stdout(&o)).is_empty());
    let memory = write_config("memory-err.toml", MEMORY);
    let o = run_closed(&["blocks", "list", "--config", memory.to_str().unwrap()], false);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "no active blocks\n");
    // A usage error with nowhere to say it still exits 2.
    let o = run_closed(&["replay"], false);
    expect_code(&o, 2);
}
