//! `cargo xtask bench`: runs the criterion benchmarks of
//! `sec-audit-benches`, measures the replay's peak memory on a generated
//! 1 000 000-event log, and prints the table of targets.
//!
//! The table is read from criterion's `<target>/criterion/**/new/
//! {benchmark,estimates}.json` (the mean of the last run of each
//! benchmark), so `--table-only` reprints it without measuring again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{cargo, plugins, target_dir, workspace_root};

/// What a benchmark is held to.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// Mean per operation at most this many ns.
    MaxNs(f64),
    /// Mean at most this multiple of the reference benchmark's mean.
    MaxRatio(f64),
    /// No target: shown for information.
    None,
}

/// What a benchmark is compared with.
#[derive(Debug, Clone, Copy)]
enum Reference {
    /// Another benchmark of the same run (its full criterion id).
    Bench(&'static str),
    /// A fixed figure (ns) measured elsewhere, with its label.
    Fixed(f64, &'static str),
    None,
}

struct Row {
    id: &'static str,
    what: &'static str,
    limit: Limit,
    reference: Reference,
}

const fn row(id: &'static str, what: &'static str, limit: Limit, reference: Reference) -> Row {
    Row {
        id,
        what,
        limit,
        reference,
    }
}

/// The rows of the table, in order.
const ROWS: &[Row] = &[
    row(
        "egress/engine_evaluate/all_builtins",
        "egress, all built-ins, Engine::evaluate",
        Limit::MaxNs(3_400.0),
        Reference::Fixed(338_000.0, "Python 338 µs"),
    ),
    row(
        "egress/runtime_handle_event/all_builtins",
        "egress, all built-ins, Runtime::handle_event",
        Limit::MaxNs(3_400.0),
        Reference::Fixed(338_000.0, "Python 338 µs"),
    ),
    row(
        "egress/engine_evaluate/brute_force_login",
        "  alone: brute_force_login",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/engine_evaluate/login_throttle",
        "  alone: login_throttle (ingress-only)",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/engine_evaluate/repeated_client_error",
        "  alone: repeated_client_error",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/engine_evaluate/repeated_route",
        "  alone: repeated_route (ingress-only)",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/engine_evaluate/resource_enumeration",
        "  alone: resource_enumeration",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/engine_evaluate/request_body_threshold",
        "  alone: request_body_threshold",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/engine_evaluate/sensitive_field_change",
        "  alone: sensitive_field_change",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/engine_evaluate/suspicious_proxy_header",
        "  alone: suspicious_proxy_header",
        Limit::None,
        Reference::None,
    ),
    row(
        "egress/emit/direct",
        "one enforcement record, JSONL straight from the event",
        Limit::None,
        Reference::Bench("egress/emit/otel_processor"),
    ),
    row(
        "egress/emit/direct_buffered",
        "  the same, buffered sink",
        Limit::None,
        Reference::Bench("egress/emit/otel_processor"),
    ),
    row(
        "egress/emit/otel_processor",
        "  the same through the OTel logs API + JsonlProcessor",
        Limit::None,
        Reference::None,
    ),
    row(
        "ingress_memory/clean",
        "ingress, memory store, clean request",
        Limit::MaxNs(100.0),
        Reference::Fixed(3_600.0, "Python 3.6 µs"),
    ),
    row(
        "ingress_memory/clean_1k_blocks",
        "ingress, memory store, clean, 1 000 other blocks",
        Limit::MaxNs(100.0),
        Reference::Fixed(3_600.0, "Python 3.6 µs"),
    ),
    row(
        "ingress_memory/clean_safelist_1k",
        "  same, 1 000-entry safelist, none the request's",
        Limit::None,
        Reference::None,
    ),
    row(
        "ingress_memory/clean_quickstart",
        "  same, unscoped repeated_route counting it",
        Limit::None,
        Reference::Fixed(3_600.0, "Python 3.6 µs"),
    ),
    row(
        "ingress_tiered/ingress_check/0_bans",
        "ingress, tiered, clean, 0 bans",
        Limit::MaxRatio(1.3),
        Reference::Bench("ingress_tiered/redis_get/0_bans"),
    ),
    row(
        "ingress_tiered/ingress_check/1k_bans",
        "ingress, tiered, clean, 1 000 bans",
        Limit::MaxRatio(1.3),
        Reference::Bench("ingress_tiered/redis_get/1k_bans"),
    ),
    row(
        "ingress_tiered/ingress_check/100k_bans",
        "ingress, tiered, clean, 100 000 bans",
        Limit::MaxRatio(1.3),
        Reference::Bench("ingress_tiered/redis_get/100k_bans"),
    ),
    row(
        "plugin/plugin/never_matching",
        "plugin rule, bare call, never matching",
        Limit::MaxRatio(1.5),
        Reference::Bench("plugin/native/never_matching"),
    ),
    row(
        "plugin/plugin/mixed",
        "plugin rule, bare call, 1% scanners",
        Limit::MaxRatio(1.5),
        Reference::Bench("plugin/native/mixed"),
    ),
    row(
        "plugin/plugin/engine",
        "plugin rule, Engine::evaluate, mixed stream",
        Limit::MaxRatio(1.5),
        Reference::Bench("plugin/native/engine"),
    ),
    row(
        "replay/pipeline/parse_ahead",
        "replay pipeline per event, parsing ahead on a second thread (≥ 350 000/s, ≥ 1× a bare Value parse)",
        Limit::MaxRatio(1.0),
        Reference::Bench("replay/parse_only/value"),
    ),
    row(
        "replay/pipeline/per_event",
        "  same, on one thread",
        Limit::MaxNs(1e9 / MIN_EVENTS_PER_SEC),
        Reference::Bench("replay/parse_only/value"),
    ),
    row(
        "replay/parse_only/event",
        "  the replay's parse step alone (event and its slots)",
        Limit::None,
        Reference::Bench("replay/parse_only/value"),
    ),
    row(
        "history/memory/append",
        "history append, memory",
        Limit::None,
        Reference::None,
    ),
    row(
        "history/memory/query",
        "history query, memory",
        Limit::None,
        Reference::None,
    ),
    row(
        "history/redis/append",
        "history append, Redis",
        Limit::None,
        Reference::Bench("history/redis/get_reference"),
    ),
    row(
        "history/redis/query",
        "history query, Redis",
        Limit::None,
        Reference::Bench("history/redis/get_reference"),
    ),
];

/// Peak memory allowed for the 1 000 000-event replay.
const MAX_PEAK_MB: f64 = 100.0;
/// Replay throughput required (100× the Python original's 3 500 events/s
/// on the reference machine).
const MIN_EVENTS_PER_SEC: f64 = 350_000.0;

const BENCHES: [&str; 5] = ["egress", "ingress", "plugin", "history", "replay"];

#[derive(Debug, Clone, Copy)]
struct Estimate {
    mean: f64,
    low: f64,
    high: f64,
    median: f64,
}

/// Every `new/estimates.json` under `dir`, by criterion full id.
fn read_estimates(dir: &Path) -> BTreeMap<String, Estimate> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                if let Some((id, est)) = read_one(&p) {
                    out.insert(id, est);
                }
            } else {
                stack.push(p);
            }
        }
    }
    out
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn read_one(new_dir: &Path) -> Option<(String, Estimate)> {
    let bench = read_json(&new_dir.join("benchmark.json"))?;
    let est = read_json(&new_dir.join("estimates.json"))?;
    let id = bench.get("full_id")?.as_str()?.to_string();
    let mean = est.get("mean")?;
    let f = |v: Option<&Value>| v.and_then(Value::as_f64);
    Some((
        id,
        Estimate {
            mean: f(mean.get("point_estimate"))?,
            low: f(mean.pointer("/confidence_interval/lower_bound")).unwrap_or(f64::NAN),
            high: f(mean.pointer("/confidence_interval/upper_bound")).unwrap_or(f64::NAN),
            median: f(est.pointer("/median/point_estimate")).unwrap_or(f64::NAN),
        },
    ))
}

fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "–".into()
    } else if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Peak memory and throughput of one release replay of the big log.
#[derive(Debug, Clone)]
struct MemoryRun {
    events: u64,
    peak_kb: u64,
    wall_secs: f64,
    lines_per_sec: Option<f64>,
    /// The bare `serde_json::Value` parse of the same file (`parse-only`).
    parse_lines_per_sec: Option<f64>,
}

fn render_table(est: &BTreeMap<String, Estimate>, memory: Option<&MemoryRun>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| benchmark | mean per op (95% CI) | median | target | reference | ratio of means (of medians) | met (on the mean) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for r in ROWS {
        let Some(e) = est.get(r.id) else {
            let _ = writeln!(s, "| {} | not run | | | | | |", r.what);
            continue;
        };
        let (ref_label, ref_ns, ref_median) = match r.reference {
            Reference::Bench(id) => match est.get(id) {
                Some(x) => (
                    format!("{} ({id})", fmt_ns(x.mean)),
                    Some(x.mean),
                    Some(x.median),
                ),
                None => (format!("{id}: not run"), None, None),
            },
            Reference::Fixed(ns, label) => (label.to_string(), Some(ns), None),
            Reference::None => (String::new(), None, None),
        };
        let ratio = ref_ns.map(|r| e.mean / r);
        let mut ratio_text = ratio.map_or(String::new(), |x| {
            if x < 0.1 {
                format!("{x:.4}× ({:.0}× faster)", 1.0 / x)
            } else {
                format!("{x:.2}×")
            }
        });
        if let Some(m) = ref_median {
            let _ = write!(ratio_text, " ({:.2}×)", e.median / m);
        }
        let (target, met) = match r.limit {
            Limit::MaxNs(ns) => (format!("≤ {}", fmt_ns(ns)), Some(e.mean <= ns)),
            Limit::MaxRatio(x) => (format!("≤ {x}× reference"), ratio.map(|ratio| ratio <= x)),
            Limit::None => (String::new(), None),
        };
        let met = match met {
            Some(true) => "met",
            Some(false) => "NOT MET",
            None => "",
        };
        let _ = writeln!(
            s,
            "| {} (`{}`) | {} ({}–{}) | {} | {target} | {ref_label} | {ratio_text} | {met} |",
            r.what.trim(),
            r.id,
            fmt_ns(e.mean),
            fmt_ns(e.low),
            fmt_ns(e.high),
            fmt_ns(e.median),
        );
    }
    if let Some(m) = memory {
        let mb = m.peak_kb as f64 / 1024.0;
        let _ = writeln!(
            s,
            "| replay of {} events, release binary: peak RSS | {mb:.1} MB | | ≤ {MAX_PEAK_MB} MB | | | {} |",
            m.events,
            if mb <= MAX_PEAK_MB { "met" } else { "NOT MET" }
        );
        let rate = m.lines_per_sec.unwrap_or(m.events as f64 / m.wall_secs);
        let _ = writeln!(
            s,
            "| replay of {} events, release binary: throughput | {rate:.0} events/s ({:.2} s wall) | | ≥ {MIN_EVENTS_PER_SEC} events/s | | | {} |",
            m.events,
            m.wall_secs,
            if rate >= MIN_EVENTS_PER_SEC { "met" } else { "NOT MET" }
        );
        if let Some(parse) = m.parse_lines_per_sec {
            let ratio = rate / parse;
            let _ = writeln!(
                s,
                "| replay of {} events vs a bare `serde_json::Value` parse of the same file (`parse-only`, one thread) | {ratio:.2}× ({rate:.0} vs {parse:.0} lines/s) | | ≥ 1× | | | {} |",
                m.events,
                if ratio >= 1.0 { "met" } else { "NOT MET" }
            );
        }
    }
    let extra: Vec<&String> = est
        .keys()
        .filter(|k| !ROWS.iter().any(|r| r.id == k.as_str()))
        .filter(|k| {
            !ROWS
                .iter()
                .any(|r| matches!(r.reference, Reference::Bench(id) if id == k.as_str()))
        })
        .collect();
    if !extra.is_empty() {
        let _ = writeln!(s, "\nOther benchmarks (reference rows and extras):\n");
        for k in extra {
            let _ = writeln!(s, "- `{k}`: {}", fmt_ns(est[k].mean));
        }
    }
    s
}

fn run_status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Builds the release binaries, generates the log if needed, and replays it
/// under `/usr/bin/time -v`.
fn measure_memory(root: &Path, target: &Path, events: u64) -> Result<MemoryRun, String> {
    let mut build = cargo();
    build
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["-p", "sec-audit-cli", "--bin", "sec-audit"])
        .args([
            "-p",
            "sec-audit-benches",
            "--bin",
            "gen-events",
            "--bin",
            "parse-only",
        ]);
    run_status(
        &mut build,
        "cargo build --release (sec-audit, gen-events, parse-only)",
    )?;
    let release = target.join("release");
    let dir = target.join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let log = dir.join(format!("events-{events}.jsonl"));
    let done = dir.join(format!("events-{events}.jsonl.done"));
    if !(log.is_file() && done.is_file()) {
        eprintln!(
            "xtask: generating {} ({events} events, seed 42)",
            log.display()
        );
        let mut gen = Command::new(release.join("gen-events"));
        gen.args(["--seed", "42", "--events", &events.to_string(), "--out"])
            .arg(&log);
        run_status(&mut gen, "gen-events")?;
        std::fs::write(&done, b"seed 42\n").map_err(|e| format!("cannot write marker: {e}"))?;
    }
    let time = Path::new("/usr/bin/time");
    if !time.is_file() {
        return Err(
            "/usr/bin/time is missing (apt-get install time): cannot measure peak memory".into(),
        );
    }
    let out_file = dir.join(format!("replay-{events}.enforcement.jsonl"));
    let config = root.join("benches").join("quickstart-builtins.toml");
    eprintln!("xtask: replaying {} under /usr/bin/time -v", log.display());
    let out = Command::new(time)
        .arg("-v")
        .arg(release.join("sec-audit"))
        .arg("replay")
        .arg("--config")
        .arg(&config)
        .arg("--no-progress")
        .arg("--output")
        .arg(&out_file)
        .arg(&log)
        .output()
        .map_err(|e| format!("cannot run the replay: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("the replay failed ({}):\n{stderr}", out.status));
    }
    let field = |name: &str| -> Option<&str> {
        stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(str::trim)
    };
    let peak_kb: u64 = field("Maximum resident set size (kbytes):")
        .and_then(|v| v.parse().ok())
        .ok_or("no `Maximum resident set size` in the output of /usr/bin/time -v")?;
    let wall_secs = field("Elapsed (wall clock) time (h:mm:ss or m:ss):")
        .map(|v| {
            v.split(':').fold(0.0, |acc, part| {
                acc * 60.0 + part.parse::<f64>().unwrap_or(0.0)
            })
        })
        .unwrap_or(f64::NAN);
    // The replay's own summary: "time   1.23s (812345 lines/s)".
    let lines_per_sec = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("time") && l.contains("lines/s"))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    let _ = std::fs::remove_file(&out_file);
    // The reference pass over the same file, right after the replay.
    eprintln!("xtask: parsing {} into serde_json::Value", log.display());
    let parse = Command::new(release.join("parse-only"))
        .arg(&log)
        .output()
        .map_err(|e| format!("cannot run parse-only: {e}"))?;
    if !parse.status.success() {
        return Err(format!(
            "parse-only failed ({}): {}",
            parse.status,
            String::from_utf8_lossy(&parse.stderr)
        ));
    }
    // "parsed N lines (… valid JSON) in S s (R lines/s)"
    let parse_lines_per_sec = String::from_utf8_lossy(&parse.stdout)
        .rsplit('(')
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok());
    Ok(MemoryRun {
        events,
        peak_kb,
        wall_secs,
        lines_per_sec,
        parse_lines_per_sec,
    })
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    format!("{model}, {cores} cores; {rustc}; load average {load}")
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut table_only = false;
    let mut memory = true;
    let mut events: u64 = 1_000_000;
    let mut filter: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--table-only" => table_only = true,
            "--no-memory" => memory = false,
            "--events" => {
                events = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--events needs a number")?
            }
            f if !f.starts_with('-') && filter.is_none() => filter = Some(f.to_string()),
            other => return Err(format!("bench: unknown argument `{other}`")),
        }
    }
    let root = workspace_root();
    let target = target_dir(&root)?;
    let mut memory_run = None;
    if !table_only {
        plugins(&[])?;
        let mut bench = cargo();
        bench
            .arg("bench")
            .arg("--manifest-path")
            .arg(root.join("Cargo.toml"))
            .args(["-p", "sec-audit-benches"]);
        for b in BENCHES {
            bench.args(["--bench", b]);
        }
        if let Some(f) = &filter {
            bench.arg("--").arg(f);
        }
        run_status(&mut bench, "cargo bench")?;
        if memory {
            memory_run = Some(measure_memory(&root, &target, events)?);
        }
    }
    let estimates = read_estimates(&target.join("criterion"));
    if estimates.is_empty() {
        return Err(format!(
            "no criterion results under {}: run `cargo xtask bench` first",
            target.join("criterion").display()
        ));
    }
    let mut table = String::new();
    let _ = writeln!(table, "Machine: {}\n", machine());
    table.push_str(&render_table(&estimates, memory_run.as_ref()));
    println!("{table}");
    let out: PathBuf = target.join("criterion").join("sec-audit-table.md");
    std::fs::write(&out, &table).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    eprintln!("xtask: table written to {}", out.display());
    Ok(())
}
