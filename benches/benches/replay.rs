//! The whole replay pipeline per event, through the CLI's library
//! (`sec_audit_cli::replay::Replayer`): parse the line, the ingress pass of
//! each new request id, egress, and the enforcement records serialized as
//! OTel JSONL (to a discarding writer). The configuration is the quickstart
//! built-ins on memory stores; the input is the seeded mixed stream as
//! JSONL lines.
//!
//! Every pass over the stream runs on a fresh replayer (replay time only
//! moves forward, so a second pass over the same lines in one replayer would
//! not be the same traffic); building and dropping the replayer is not
//! timed.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sec_audit_benches::{full_run, jsonl_lines, GenOptions, QUICKSTART_BUILTINS};
use sec_audit_cli::lines::Line;
use sec_audit_cli::replay::{Replayer, MIN_REQUEST_WINDOW};
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
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let mut r = replayer();
                let k = left.min(lines.len());
                let t = Instant::now();
                for (i, l) in lines[..k].iter().enumerate() {
                    r.line(i as u64 + 1, Line::Text(l.as_bytes()));
                }
                total += t.elapsed();
                left -= k;
                assert_eq!(r.stats.rejected, 0, "generated lines are valid");
                drop(r);
            }
            total
        })
    });
    group.finish();
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
