//! Frozen replay behaviour: the built `sec-audit` binary replays several
//! audit streams under several configurations (memory stores), and the
//! SHA-256 of its standard output (the enforcement records) and of its
//! summary on standard error must equal the digests recorded in
//! `tests/fixtures/golden/digests.txt`.
//!
//! The streams and configurations are in `tests/fixtures/golden/` (its
//! README says how the streams were generated); the sample stream is the
//! committed `examples/sample-audit.jsonl`.
//!
//! Two things are normalised before hashing, and only these: the summary's
//! `time` line (wall-clock timing) is dropped and its `replay of PATH` line
//! names the stream instead of the scratch path; in the records, the
//! `instrumentation_scope` version (the crate version) is replaced by
//! `VERSION`, so a release bump is not a behaviour change.
//!
//! `SEC_AUDIT_GOLDEN_RECORD=1 cargo test -p sec-audit-cli --test golden`
//! rewrites `digests.txt` from the current code instead of comparing.
//! Changing a digest is a deliberate act: record, review the diff of
//! `digests.txt`, and say in the commit why the output changed.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The environment variable that switches the test to recording.
const RECORD: &str = "SEC_AUDIT_GOLDEN_RECORD";

/// (name, file): `*.gz` files are in the fixture directory, the sample is
/// the committed example.
const STREAMS: [(&str, &str); 5] = [
    ("sample", "examples/sample-audit.jsonl"),
    ("s11", "s11.jsonl.gz"),
    ("s23-noise", "s23-noise.jsonl.gz"),
    ("s31-attributes", "s31-attributes.jsonl.gz"),
    ("s42-many", "s42-many.jsonl.gz"),
];

/// The eight built-ins; `only-NAME.toml` runs NAME alone.
const BUILTINS: [&str; 8] = [
    "brute_force_login",
    "login_throttle",
    "repeated_client_error",
    "repeated_route",
    "request_body_threshold",
    "resource_enumeration",
    "sensitive_field_change",
    "suspicious_proxy_header",
];

fn configs() -> Vec<String> {
    let mut c = vec!["quickstart".to_string()];
    c.extend(BUILTINS.iter().map(|b| format!("only-{b}")));
    c.push("severity-gated".into());
    c.push("ingress-disabled".into());
    c
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn digests_file() -> PathBuf {
    fixtures().join("digests.txt")
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The stream's bytes (decompressed).
fn stream_bytes(file: &str) -> Vec<u8> {
    if let Some(gz) = file.strip_suffix(".gz").map(|_| fixtures().join(file)) {
        let f = std::fs::File::open(&gz)
            .unwrap_or_else(|e| panic!("cannot open fixture {}: {e}", gz.display()));
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(f)
            .read_to_end(&mut out)
            .unwrap_or_else(|e| panic!("cannot decompress {}: {e}", gz.display()));
        out
    } else {
        let p = root().join(file);
        std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
    }
}

/// What one replay produced, normalised.
struct Outcome {
    stream: &'static str,
    config: String,
    stdout: Vec<u8>,
    summary: String,
}

impl Outcome {
    fn key(&self) -> (String, String) {
        (self.stream.to_string(), self.config.clone())
    }
}

/// The summary without its timing line, naming the stream instead of the
/// scratch path it was read from.
fn normalise_summary(err: &str, path: &str, stream: &str) -> String {
    let mut out = String::new();
    for line in err.lines() {
        if line.trim_start().starts_with("time ") && line.ends_with(" lines/s)") {
            continue;
        }
        match line.strip_prefix("replay of ") {
            Some(p) if p == path => {
                let _ = writeln!(out, "replay of {stream}");
            }
            _ => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

fn normalise_stdout(out: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(out);
    let scope = |v: &str| {
        format!(r#""instrumentation_scope":{{"name":"sec-audit-enforce","version":"{v}"}}"#)
    };
    text.replace(&scope(env!("CARGO_PKG_VERSION")), &scope("VERSION"))
        .into_bytes()
}

fn replay(stream: &'static str, log: &Path, config: &str) -> Outcome {
    let toml = fixtures().join(format!("{config}.toml"));
    let out = run(&["replay", "--config", s(&toml), s(log)]);
    expect_code(&out, 0);
    Outcome {
        stream,
        config: config.to_string(),
        stdout: normalise_stdout(&out.stdout),
        summary: normalise_summary(&stderr(&out), s(log), stream),
    }
}

/// The plugin the quick-start configurations load.
fn require_plugin() {
    let plugin = root().join("target/plugins/librepeated_not_found.so");
    assert!(
        plugin.exists(),
        "{} is missing: the golden quickstart and ingress-disabled configurations load it; build it with `cargo xtask plugins` (scripts/test.sh does)",
        plugin.display()
    );
}

/// Runs every stream × configuration, on as many threads as there are
/// cores (at most four).
fn run_all(dir: &TempDir) -> Vec<Outcome> {
    let mut logs = Vec::new();
    for (name, file) in STREAMS {
        let path = dir.path(&format!("{name}.jsonl"));
        std::fs::write(&path, stream_bytes(file))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        logs.push((name, path));
    }
    let jobs: Vec<(&'static str, PathBuf, String)> = logs
        .iter()
        .flat_map(|(name, path)| configs().into_iter().map(move |c| (*name, path.clone(), c)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((stream, log, config)) = jobs.get(i) else {
                    break;
                };
                let o = replay(stream, log, config);
                done.lock().unwrap_or_else(|p| p.into_inner()).push(o);
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(Outcome::key);
    assert_eq!(done.len(), jobs.len(), "a replay thread died");
    done
}

/// What each configuration must visibly do, so that a digest of empty or
/// degenerate output can never be recorded or pass.
fn problems(o: &Outcome, quickstart_stdout: Option<&[u8]>) -> Vec<String> {
    let mut p = Vec::new();
    let text = String::from_utf8_lossy(&o.stdout);
    let recs = records(&text);
    let rule = |r: &Value| attr(r, "security_rule.name").to_string();
    if recs.is_empty() {
        p.push("no enforcement record at all".into());
    }
    if summary_count(&o.summary, "events replayed") < 3000 {
        p.push("fewer than 3000 events replayed".into());
    }
    let blocks = of(&recs, "block_applied");
    let denied = of(&recs, "blocked");
    let alerts = of(&recs, "alert");
    match o.config.as_str() {
        "quickstart" => {
            if blocks.is_empty() || denied.is_empty() || alerts.is_empty() {
                p.push(format!(
                    "expected blocks, denials and alerts; got {} / {} / {}",
                    blocks.len(),
                    denied.len(),
                    alerts.len()
                ));
            }
            if !alerts.iter().any(|r| rule(r) == "resource_enumeration") {
                p.push("no resource_enumeration alert".into());
            }
        }
        "severity-gated" => {
            let action = |a: &str| {
                blocks
                    .iter()
                    .filter(|r| attr(r, "enforcement.action") == a)
                    .count()
            };
            if action("permanent") == 0 || action("temp") == 0 {
                p.push(format!(
                    "expected permanent (severity >= 8) and temporary blocks; got {} / {}",
                    action("permanent"),
                    action("temp")
                ));
            }
            if blocks.iter().any(|r| {
                attr(r, "enforcement.action") == "permanent" && attr(r, "scope.type") == "ip"
            }) {
                p.push("a permanent block on ip".into());
            }
        }
        "ingress-disabled" => {
            if blocks.is_empty() || denied.is_empty() {
                p.push("expected blocks and denials".into());
            }
            if quickstart_stdout == Some(o.stdout.as_slice()) {
                p.push(
                    "same output as the quickstart: eval_safe_on_ingress = false changed nothing"
                        .into(),
                );
            }
        }
        only => {
            let name = only.strip_prefix("only-").unwrap_or(only);
            if let Some(other) = recs.iter().find(|r| rule(r) != name) {
                p.push(format!("a record from another rule: {other}"));
            }
            let acts = if name == "resource_enumeration" {
                &alerts
            } else {
                &blocks
            };
            if acts.is_empty() {
                p.push(format!("{name} alone decided nothing"));
            }
        }
    }
    p
}

/// `digests.txt`: `stream config records stdout-sha256 summary-sha256`
/// per line, plus `input stream sha256` lines; `#` starts a comment.
type Recorded = BTreeMap<(String, String), (usize, String, String)>;

fn parse_digests(text: &str) -> (BTreeMap<String, String>, Recorded) {
    let mut inputs = BTreeMap::new();
    let mut rows = Recorded::new();
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            [c, ..] if c.starts_with('#') => {}
            ["input", stream, sha] => {
                inputs.insert(stream.to_string(), sha.to_string());
            }
            [stream, config, count, out, sum] => {
                let count = count.parse().unwrap_or_else(|e| {
                    panic!("digests.txt line {}: bad record count: {e}", n + 1)
                });
                rows.insert(
                    (stream.to_string(), config.to_string()),
                    (count, out.to_string(), sum.to_string()),
                );
            }
            _ => panic!("digests.txt line {}: cannot read `{line}`", n + 1),
        }
    }
    (inputs, rows)
}

fn render_digests(inputs: &[(String, String)], outcomes: &[Outcome]) -> String {
    let mut t = String::from(
        "# Frozen replay behaviour (tests/golden.rs). Written by\n\
         #   SEC_AUDIT_GOLDEN_RECORD=1 cargo test -p sec-audit-cli --test golden\n\
         # Changing a line is a deliberate act: say in the commit why the output changed.\n\
         # input STREAM SHA256-of-the-decompressed-stream\n\
         # STREAM CONFIG RECORDS SHA256-of-stdout SHA256-of-the-summary\n",
    );
    for (stream, sha) in inputs {
        let _ = writeln!(t, "input {stream} {sha}");
    }
    for o in outcomes {
        let _ = writeln!(
            t,
            "{} {} {} {} {}",
            o.stream,
            o.config,
            o.stdout.iter().filter(|&&b| b == b'\n').count(),
            sha256(&o.stdout),
            sha256(o.summary.as_bytes())
        );
    }
    t
}

#[test]
fn replay_output_matches_the_recorded_digests() {
    require_plugin();
    let dir = TempDir::new("golden");
    let inputs: Vec<(String, String)> = STREAMS
        .iter()
        .map(|(name, file)| (name.to_string(), sha256(&stream_bytes(file))))
        .collect();
    let outcomes = run_all(&dir);

    // Non-trivial output first, in both modes.
    let quickstart: BTreeMap<&str, &[u8]> = outcomes
        .iter()
        .filter(|o| o.config == "quickstart")
        .map(|o| (o.stream, o.stdout.as_slice()))
        .collect();
    let mut failures = Vec::new();
    for o in &outcomes {
        for p in problems(o, quickstart.get(o.stream).copied()) {
            failures.push(format!("{} × {}: {p}", o.stream, o.config));
        }
    }
    assert!(
        failures.is_empty(),
        "degenerate replay output:\n{}",
        failures.join("\n")
    );

    let rendered = render_digests(&inputs, &outcomes);
    if std::env::var_os(RECORD).is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(digests_file(), &rendered)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", digests_file().display()));
        eprintln!(
            "{RECORD}: recorded {} digests in {}",
            outcomes.len(),
            digests_file().display()
        );
        return;
    }

    let text = std::fs::read_to_string(digests_file()).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (record it with {RECORD}=1)",
            digests_file().display()
        )
    });
    let (want_inputs, want) = parse_digests(&text);
    let (_, got) = parse_digests(&rendered);
    for (stream, sha) in &inputs {
        match want_inputs.get(stream) {
            Some(w) if w == sha => {}
            Some(_) => failures.push(format!(
                "input {stream}: the stream itself changed, so its digests below say nothing about the code"
            )),
            None => failures.push(format!("input {stream}: not recorded")),
        }
    }
    let mut shown = 0;
    for (key, (count, out, sum)) in &got {
        let (stream, config) = key;
        let Some((wcount, wout, wsum)) = want.get(key) else {
            failures.push(format!("{stream} × {config}: not recorded"));
            continue;
        };
        if out != wout {
            failures.push(format!(
                "{stream} × {config}: the enforcement records changed ({wcount} recorded, {count} now)"
            ));
        }
        if sum != wsum {
            // The new summary of the first few, to see what moved.
            shown += 1;
            let now = outcomes
                .iter()
                .find(|o| &o.key() == key)
                .filter(|_| shown <= 3)
                .map(|o| format!("; it is now:\n{}", o.summary))
                .unwrap_or_default();
            failures.push(format!("{stream} × {config}: the summary changed{now}"));
        }
    }
    for (stream, config) in want.keys().filter(|k| !got.contains_key(*k)) {
        failures.push(format!(
            "{stream} × {config}: recorded but no longer replayed"
        ));
    }
    assert!(
        failures.is_empty(),
        "replay behaviour differs from {} ({} differences, {} pairs replayed):\n{}\n\
         Reproduce one with `sec-audit replay --config tests/fixtures/golden/CONFIG.toml LOG` \
         (LOG: examples/sample-audit.jsonl or the decompressed fixture). If the change is \
         intended, re-record with {RECORD}=1 and say why in the commit.",
        digests_file().display(),
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
}
