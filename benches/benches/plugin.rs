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

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sec_audit_benches::{full_run, mixed_events, plugin_library, NativeRepeatedNotFound};
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

/// Bare `evaluate` calls of `rule` over `events`, cyclically, with one fixed
/// context on memory counters.
fn bench_bare(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    rule: &Arc<dyn Rule>,
    events: &[AuditEvent],
) {
    let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
    let counters = MemoryCounters::new(clock.clone());
    let history = MemoryHistory::new();
    let config = RuleConfig::new();
    let ctx = RuleContext {
        now: 1_000_000.0,
        counters: &counters,
        history: HistoryReader::new(&history, &[], rule.history_context(), 1_000_000.0),
        config: &config,
    };
    let mut i = 0usize;
    group.bench_function(id, |b| {
        b.iter(|| {
            let e = &events[i % events.len()];
            i += 1;
            if i.is_multiple_of(events.len()) {
                // Every pass starts a new counting window, as in the
                // original traffic: only the scanners ever match.
                clock.advance_secs(61.0);
            }
            std::hint::black_box(rule.evaluate(e, &ctx))
        })
    });
}

fn plugin(c: &mut Criterion) {
    let n = if full_run() { 20_000 } else { 200 };
    let events = not_found_events(n);
    let mixed = mixed_events(42, n as usize);

    let mut group = c.benchmark_group("plugin");
    for (label, threshold) in [("never_matching", 1_000_000_000i64), ("mixed", 10)] {
        let native: Arc<dyn Rule> = Arc::new(NativeRepeatedNotFound::new(threshold, 60));
        let plugin = plugin_rule(threshold);
        bench_bare(
            &mut group,
            BenchmarkId::new("native", label),
            &native,
            &events,
        );
        bench_bare(
            &mut group,
            BenchmarkId::new("plugin", label),
            &plugin,
            &events,
        );
    }
    let native: Arc<dyn Rule> = Arc::new(NativeRepeatedNotFound::new(10, 60));
    for (kind, rule) in [("native", native), ("plugin", plugin_rule(10))] {
        let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
        let engine = Engine::builder()
            .clock(clock.clone())
            .rule(rule)
            .build()
            .expect("rule registers");
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new(kind, "engine"), |b| {
            b.iter(|| {
                let e = &mixed[i % mixed.len()];
                i += 1;
                if i.is_multiple_of(mixed.len()) {
                    clock.advance_secs(3600.0);
                }
                std::hint::black_box(engine.evaluate(e, false))
            })
        });
    }
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
