//! The example plugin rule `repeated_not_found` (loaded from
//! `target/plugins/` through `sec_audit_plugin_host::load`) against the same
//! rule compiled natively ([`NativeRepeatedNotFound`]), side by side:
//!
//! - `never_matching`: the bare `Rule::evaluate` call on 404s from many
//!   IPs with a threshold never reached (a counter increment per call, no
//!   match): the boundary's cost stands out most here.
//! - `mixed`: the bare call with the example's default threshold on 404s
//!   where 1% come from five scanners (they match from their 10th on).
//! - `engine`: a whole `Engine::evaluate` of the seeded mixed stream with
//!   the rule as the only one registered (what a deployment pays per event).
//!
//! Native and plugin run in alternating batches of 1 000 calls and each
//! benchmark times its own side, so the ratio holds on a noisy machine.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sec_audit_benches::{
    alternating, full_run, mixed_events, plugin_library, NativeRepeatedNotFound,
};
use sec_audit_core::{AuditEvent, ManualClock};
use sec_audit_plugin_host::{load, PluginSpec};
use sec_audit_rules::{
    Engine, HistoryReader, MemoryCounters, MemoryHistory, Rule, RuleConfig, RuleContext,
};
use serde_json::{json, Map, Value};

fn not_found_events(n: u32) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let ip = if i % 100 == 0 {
                format!("203.0.113.{}", (i / 100) % 5)
            } else {
                format!("10.{}.{}.{}", (i / 2) / 62_500, ((i / 2) / 250) % 250, (i / 2) % 250)
            };
            let attrs = json!({"event_type": "http.response.client_error", "source.address": ip,
                               "http.response.status_code": 404, "url.path": format!("/missing/{i}")});
            match attrs {
                Value::Object(m) => AuditEvent::from_attributes(m).expect("valid event"),
                _ => unreachable!("json! object"),
            }
        })
        .collect()
}

fn plugin_rule(threshold: i64) -> Arc<dyn Rule> {
    let mut config = Map::new();
    config.insert("threshold".into(), Value::from(threshold));
    let spec = PluginSpec::new(plugin_library("repeated_not_found")).with_config(config);
    let loaded = load(&spec).unwrap_or_else(|e| panic!("loading the example plugin failed: {e}"));
    loaded
        .into_iter()
        .next()
        .map(|l| l.rule)
        .expect("the example plugin exports one rule")
}

/// One side of a comparison: a rule called bare over `events`, cyclically,
/// on its own memory counters.
struct Bare<'e> {
    rule: Arc<dyn Rule>,
    clock: Arc<ManualClock>,
    counters: MemoryCounters,
    history: MemoryHistory,
    config: RuleConfig,
    events: &'e [AuditEvent],
    i: usize,
}

impl<'e> Bare<'e> {
    fn new(rule: Arc<dyn Rule>, events: &'e [AuditEvent]) -> Self {
        let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
        Bare {
            counters: MemoryCounters::new(clock.clone()),
            clock,
            history: MemoryHistory::new(),
            config: RuleConfig::new(),
            rule,
            events,
            i: 0,
        }
    }

    fn call(&mut self) {
        let e = &self.events[self.i % self.events.len()];
        self.i += 1;
        if self.i.is_multiple_of(self.events.len()) {
            // Every pass starts a new counting window, as in the original
            // traffic: only the scanners ever match.
            self.clock.advance_secs(61.0);
        }
        let ctx = RuleContext {
            now: 1_000_000.0,
            counters: &self.counters,
            history: HistoryReader::new(
                &self.history,
                &[],
                self.rule.history_context(),
                1_000_000.0,
            ),
            config: &self.config,
        };
        let _ = std::hint::black_box(self.rule.evaluate(e, &ctx));
    }
}

/// One side: a whole engine with the rule alone, over the mixed stream.
struct Whole<'e> {
    engine: Engine,
    clock: Arc<ManualClock>,
    events: &'e [AuditEvent],
    i: usize,
}

impl<'e> Whole<'e> {
    fn new(rule: Arc<dyn Rule>, events: &'e [AuditEvent]) -> Self {
        let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
        Whole {
            engine: Engine::builder()
                .clock(clock.clone())
                .rule(rule)
                .build()
                .expect("rule registers"),
            clock,
            events,
            i: 0,
        }
    }

    fn call(&mut self) {
        let e = &self.events[self.i % self.events.len()];
        self.i += 1;
        if self.i.is_multiple_of(self.events.len()) {
            self.clock.advance_secs(3600.0);
        }
        let _ = std::hint::black_box(self.engine.evaluate(e, false));
    }
}

/// Batches of calls alternate between the two sides (see `alternating`).
const BATCH: u64 = 1_000;

fn plugin(c: &mut Criterion) {
    let n = if full_run() { 20_000 } else { 200 };
    let events = not_found_events(n);
    let mixed = mixed_events(42, n as usize);

    let mut group = c.benchmark_group("plugin");
    for (label, threshold) in [("never_matching", 1_000_000_000i64), ("mixed", 10)] {
        let native = RefCell::new(Bare::new(
            Arc::new(NativeRepeatedNotFound::new(threshold, 60)),
            &events,
        ));
        let plugin = RefCell::new(Bare::new(plugin_rule(threshold), &events));
        let n_call = || native.borrow_mut().call();
        let p_call = || plugin.borrow_mut().call();
        group.bench_function(BenchmarkId::new("native", label), |b| {
            b.iter_custom(|iters| alternating(iters, BATCH, n_call, p_call))
        });
        group.bench_function(BenchmarkId::new("plugin", label), |b| {
            b.iter_custom(|iters| alternating(iters, BATCH, p_call, n_call))
        });
    }
    let native = RefCell::new(Whole::new(
        Arc::new(NativeRepeatedNotFound::new(10, 60)),
        &mixed,
    ));
    let plugin = RefCell::new(Whole::new(plugin_rule(10), &mixed));
    let n_call = || native.borrow_mut().call();
    let p_call = || plugin.borrow_mut().call();
    group.bench_function(BenchmarkId::new("native", "engine"), |b| {
        b.iter_custom(|iters| alternating(iters, BATCH, n_call, p_call))
    });
    group.bench_function(BenchmarkId::new("plugin", "engine"), |b| {
        b.iter_custom(|iters| alternating(iters, BATCH, p_call, n_call))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = plugin
}
criterion_main!(benches);
