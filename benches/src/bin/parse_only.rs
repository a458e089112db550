//! `parse-only LOG`: the reference pass of the replay throughput target —
//! reads LOG line by line as `sec-audit replay` does (the same bounded line
//! reader, the same 256 KiB buffer) and parses every line into a bare
//! `serde_json::Value`, on one thread, doing nothing else. Prints
//! `parsed N lines in S s (R lines/s)`; `cargo xtask bench` runs it beside
//! the release replay of the same file and reports the ratio.

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;
use std::time::Instant;

use sec_audit_cli::lines::{Line, LineReader};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: parse-only LOG");
        return ExitCode::from(2);
    };
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("parse-only: cannot open {path}: {e}");
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    let mut lines = LineReader::new(BufReader::with_capacity(256 * 1024, file), 1 << 20);
    let (mut n, mut valid) = (0u64, 0u64);
    loop {
        match lines.next_line() {
            Ok(Some(Line::Text(bytes))) => {
                n += 1;
                if serde_json::from_slice::<serde_json::Value>(bytes).is_ok() {
                    valid += 1;
                }
            }
            Ok(Some(Line::TooLong(_))) => n += 1,
            Ok(None) => break,
            Err(e) => {
                eprintln!("parse-only: reading {path} failed after line {n}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "parsed {n} lines ({valid} valid JSON) in {secs:.3} s ({:.0} lines/s)",
        n as f64 / secs.max(1e-9)
    );
    ExitCode::SUCCESS
}
