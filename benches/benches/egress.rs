//! Egress: the full built-in set (configured as in `examples/quickstart.toml`
//! without the plugin) on memory stores, over the seeded mixed stream, one
//! event per iteration, cycling through the stream. Side by side in one
//! group: `Engine::evaluate(event, false)`, the whole
//! `Runtime::handle_event` (actions applied, records serialized to a
//! discarding writer), and each built-in alone through the engine; and one
//! enforcement record emitted (`emit/*`: written straight from the event,
//! written through or buffered, and the same record through the OTel logs
//! API and `JsonlProcessor`), to a discarding writer.
//!
//! The clock follows the stream (each event at its own timestamp); every
//! pass over the stream starts an hour after the previous one ended, so
//! counter windows behave as in the original traffic on every pass.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sec_audit_benches::{
    full_run, quickstart_rules, record_event, timed_events, TimedEvent, QUICKSTART_BUILTINS,
};
use sec_audit_core::{ManualClock, Scrubber};
use sec_audit_enforce::events::{EventEmitter, JsonlProcessor};
use sec_audit_enforce::{Config, Runtime, Sink};
use sec_audit_rules::Engine;

/// Drives the clock: event `i` of the endless cyclic stream.
struct Cycle<'a> {
    stream: &'a [TimedEvent],
    clock: &'a ManualClock,
    span_ns: i64,
    i: usize,
}

impl<'a> Cycle<'a> {
    fn new(stream: &'a [TimedEvent], clock: &'a ManualClock) -> Self {
        let first = stream.first().map_or(0, |e| e.timestamp_ns);
        let last = stream.last().map_or(0, |e| e.timestamp_ns);
        Cycle {
            stream,
            clock,
            span_ns: last - first + 3_600_000_000_000,
            i: 0,
        }
    }

    fn next(&mut self) -> &'a TimedEvent {
        let n = self.stream.len();
        let e = &self.stream[self.i % n];
        let pass = (self.i / n) as i64;
        self.clock.set_ns(e.timestamp_ns + pass * self.span_ns);
        self.i += 1;
        e
    }
}

fn egress(c: &mut Criterion) {
    let n = if full_run() { 20_000 } else { 500 };
    let stream = timed_events(42, n);
    let start = stream.first().map_or(0, |e| e.timestamp_ns);

    let mut group = c.benchmark_group("egress");

    // The whole built-in set, through the engine.
    {
        let clock = Arc::new(ManualClock::new(start));
        let mut builder = Engine::builder().clock(clock.clone());
        for (_, rule, table) in quickstart_rules() {
            builder = builder.rule_with_config(rule, table);
        }
        let engine = builder.build().expect("the quickstart built-ins register");
        let mut cycle = Cycle::new(&stream, &clock);
        group.bench_function("engine_evaluate/all_builtins", |b| {
            b.iter(|| {
                let e = cycle.next();
                std::hint::black_box(engine.evaluate(&e.event, false))
            })
        });
    }

    // The whole egress path of the runtime: evaluate, resolve, enforce,
    // write the records.
    {
        let clock = Arc::new(ManualClock::new(start));
        let config = Config::from_toml_str(QUICKSTART_BUILTINS).expect("bench configuration");
        let runtime = Runtime::builder(config)
            .clock(clock.clone())
            .sink(Sink::Writer(Box::new(std::io::sink())))
            .build()
            .expect("runtime on memory stores");
        let mut cycle = Cycle::new(&stream, &clock);
        group.bench_function("runtime_handle_event/all_builtins", |b| {
            b.iter(|| {
                let e = cycle.next();
                std::hint::black_box(runtime.handle_event(&e.event))
            })
        });
    }

    // Each built-in alone.
    for (name, rule, table) in quickstart_rules() {
        let clock = Arc::new(ManualClock::new(start));
        let engine = Engine::builder()
            .clock(clock.clone())
            .rule_with_config(rule, table)
            .build()
            .expect("a built-in registers");
        let mut cycle = Cycle::new(&stream, &clock);
        group.bench_function(format!("engine_evaluate/{name}"), |b| {
            b.iter(|| {
                let e = cycle.next();
                std::hint::black_box(engine.evaluate(&e.event, false))
            })
        });
    }

    // One enforcement record, emitted.
    for (id, emitter) in emitters() {
        group.bench_function(format!("emit/{id}"), |b| {
            let mut i = 0i64;
            b.iter(|| {
                i += 1;
                emitter.emit(record_event(i));
            })
        });
    }
    group.finish();
}

fn emitters() -> Vec<(&'static str, EventEmitter)> {
    let discard = || Box::new(std::io::sink());
    let provider = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
        .with_log_processor(JsonlProcessor::new(discard(), Scrubber::default()))
        .build();
    vec![
        (
            "direct",
            EventEmitter::new(Sink::Writer(discard()), Scrubber::default(), "1.0"),
        ),
        (
            "direct_buffered",
            EventEmitter::new(Sink::Buffered(discard()), Scrubber::default(), "1.0"),
        ),
        (
            "otel_processor",
            EventEmitter::with_provider(provider, "1.0"),
        ),
    ]
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = egress
}
criterion_main!(benches);
