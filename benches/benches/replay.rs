//! The whole replay pipeline per event, through the CLI's library
//! (`sec_audit_cli::replay::Replayer`): parse the line, the ingress pass of
//! each new request id, egress, and the enforcement records serialized as
//! OTel JSONL (to a discarding writer). The configuration is the quickstart
//! built-ins on memory stores; the input is the seeded mixed stream as
//! JSONL lines.
//!
//! Beside the pipeline, on the same lines: `parse_only/value`, the bare
//! `serde_json::Value` parse of each line (the reference of the throughput
//! target), `parse_only/event`, the replay's own parse step
//! ([`ParsedInput::of`]: the event with its resolved slots), and
//! `pipeline/parse_ahead`, the pipeline as `sec-audit replay` runs it —
//! parsing on a second thread ahead of evaluation.
//!
//! Every pass over the stream runs on a fresh replayer (replay time only
//! moves forward, so a second pass over the same lines in one replayer would
//! not be the same traffic); building and dropping the replayer is not
//! timed.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sec_audit_benches::{full_run, jsonl_lines, GenOptions, QUICKSTART_BUILTINS};
use sec_audit_cli::lines::Line;
use sec_audit_cli::parse_ahead;
use sec_audit_cli::replay::{ParsedInput, Replayer, MIN_REQUEST_WINDOW};
use sec_audit_enforce::{Config, Sink};

fn replay(c: &mut Criterion) {
    let n = if full_run() { 20_000 } else { 500 };
    let lines = jsonl_lines(GenOptions::new(42, n));
    let config = Config::from_toml_str(QUICKSTART_BUILTINS).expect("bench configuration");
    let replayer = || {
        Replayer::new(
            config.clone(),
            Sink::Writer(Box::new(std::io::sink())),
            MIN_REQUEST_WINDOW,
        )
        .expect("replayer on memory stores")
    };

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pipeline/per_event", |b| {
        b.iter_custom(|iters| {
            timed_passes(iters, lines.len(), &replayer, |r, k| {
                for (i, l) in lines[..k].iter().enumerate() {
                    r.line(i as u64 + 1, Line::Text(l.as_bytes()));
                }
            })
        })
    });
    group.bench_function("parse_only/value", |b| {
        let mut i = 0;
        b.iter(|| {
            let l = &lines[i % lines.len()];
            i += 1;
            serde_json::from_slice::<serde_json::Value>(l.as_bytes()).is_ok()
        })
    });
    group.bench_function("parse_only/event", |b| {
        let mut i = 0;
        b.iter(|| {
            let l = &lines[i % lines.len()];
            i += 1;
            ParsedInput::of(Line::Text(l.as_bytes()))
        })
    });
    // The input as one buffer, read through the same bounded line reader.
    let mut text = lines.join("\n");
    text.push('\n');
    // Where each line ends (after its newline), found before timing.
    let ends: Vec<usize> = text.match_indices('\n').map(|(i, _)| i + 1).collect();
    group.bench_function("pipeline/parse_ahead", |b| {
        b.iter_custom(|iters| {
            timed_passes(iters, lines.len(), &replayer, |r, k| {
                // The first k lines: up to the k-th newline.
                parse_ahead::drive(&text.as_bytes()[..ends[k - 1]], 1 << 20, |batch| {
                    for p in &batch.lines {
                        let n = r.stats.lines + 1;
                        r.parsed(n, p);
                    }
                    ControlFlow::Continue(())
                })
                .expect("in-memory input");
            })
        })
    });
    group.finish();
}

/// Times `iters` events as passes of at most `n` lines, each pass on a
/// fresh replayer (`run(replayer, k)` replays the first `k` lines; only it
/// is timed) that must have replayed every line and rejected none.
fn timed_passes(
    iters: u64,
    n: usize,
    replayer: &dyn Fn() -> Replayer,
    mut run: impl FnMut(&mut Replayer, usize),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let mut r = replayer();
        let k = left.min(n);
        let t = Instant::now();
        run(&mut r, k);
        total += t.elapsed();
        left -= k;
        assert_eq!(r.stats.lines as usize, k, "every line replayed");
        assert_eq!(r.stats.rejected, 0, "generated lines are valid");
    }
    total
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = replay
}
criterion_main!(benches);
