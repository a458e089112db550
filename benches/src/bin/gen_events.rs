//! Writes the benchmarks' seeded audit stream as JSONL.
//!
//! ```text
//! cargo run --release -p sec-audit-benches --bin gen-events -- \
//!     [--seed N] [--events N] [--noise SHARE] [--out FILE]
//! ```
//!
//! Same arguments, same bytes. Without `--out` the lines go to standard
//! output.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use sec_audit_benches::{write_jsonl, GenOptions};

fn parse<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> Result<T, String> {
    v.ok_or_else(|| format!("{flag} needs a value"))?
        .parse()
        .map_err(|_| format!("{flag}: not a valid value"))
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = GenOptions::new(1, 10_000);
    let mut out: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seed" => opts.seed = parse(a, it.next())?,
            "--events" => opts.events = parse(a, it.next())?,
            "--noise" => opts.noise = parse(a, it.next())?,
            "--users" => opts.users = parse(a, it.next())?,
            "--attackers" => opts.attackers = parse(a, it.next())?,
            "--out" => out = Some(parse(a, it.next())?),
            "-h" | "--help" => {
                eprintln!(
                    "usage: gen-events [--seed N] [--events N] [--noise SHARE] [--users N] \
                     [--attackers N] [--out FILE]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let written = match &out {
        Some(path) => {
            let f = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let n = write_jsonl(opts, &mut w).map_err(|e| format!("writing {path}: {e}"))?;
            w.flush().map_err(|e| format!("writing {path}: {e}"))?;
            n
        }
        None => {
            let stdout = io::stdout();
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            let n = write_jsonl(opts, &mut w).map_err(|e| format!("writing: {e}"))?;
            w.flush().map_err(|e| format!("writing: {e}"))?;
            n
        }
    };
    if let Some(path) = out {
        eprintln!("gen-events: {written} lines written to {path}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-events: {e}");
            ExitCode::FAILURE
        }
    }
}
