//! History append and query, on memory (`MemoryHistory`) and on the real
//! Redis (`RedisHistory`), with a bare Redis `GET` through the same pool as
//! the round-trip reference.
//!
//! Rows are the summaries the engine would store for the seeded mixed
//! stream, appended under each event's scope keys (user, session, ip,
//! route); queries read one ip key's HTTP-response rows of the last five
//! minutes, at most 100, as `resource_enumeration` does.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sec_audit_benches::{full_run, timed_events, BenchRedis};
use sec_audit_core::Scrubber;
use sec_audit_rules::builtin::HTTP_RESPONSE_TYPES;
use sec_audit_rules::summary::build_summary;
use sec_audit_rules::{
    HistoryRetention, HistoryRow, HistoryStore, MemoryHistory, ScopeKey, ScopeRegistry,
};
use sec_audit_store::RedisHistory;
use serde_json::Value;

struct Prepared {
    keys: Vec<Vec<ScopeKey>>,
    rows: Vec<(f64, HistoryRow)>,
}

fn prepare(n: usize) -> Prepared {
    let scopes = ScopeRegistry::builtin();
    let scrubber = Scrubber::default();
    let mut keys = Vec::with_capacity(n);
    let mut rows = Vec::with_capacity(n);
    for e in timed_events(7, n) {
        let at = e.timestamp_ns as f64 / 1e9;
        let mut s = build_summary(&e.event, &scrubber);
        s.insert("recorded_at".into(), Value::from(at));
        keys.push(scopes.extract(&e.event));
        rows.push((at, Arc::new(s.into())));
    }
    Prepared { keys, rows }
}

fn run_store(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    label: &str,
    store: &dyn HistoryStore,
    p: &Prepared,
) {
    let retention = HistoryRetention {
        window_seconds: 300.0,
        max_events_per_key: 100,
    };
    // Fill once so queries find rows.
    for (keys, (at, row)) in p.keys.iter().zip(&p.rows) {
        store.append(keys, *at, Arc::clone(row), &retention);
    }
    let n = p.rows.len();
    let span = p.rows.last().map_or(0.0, |r| r.0) - p.rows.first().map_or(0.0, |r| r.0) + 3600.0;
    let mut i = n; // continue after the fill, a pass later
    group.bench_function(BenchmarkId::new(label, "append"), |b| {
        b.iter(|| {
            let k = i % n;
            let at = p.rows[k].0 + (i / n) as f64 * span;
            store.append(&p.keys[k], at, Arc::clone(&p.rows[k].1), &retention);
            i += 1;
        })
    });
    // Query the ip keys of the stream's last pass, as of its end.
    let now = p.rows.last().map_or(0.0, |r| r.0) + ((i.saturating_sub(1)) / n) as f64 * span;
    let ip_keys: Vec<&ScopeKey> = p
        .keys
        .iter()
        .filter_map(|ks| ks.iter().find(|k| k.scope() == "ip"))
        .collect();
    let types: Vec<String> = HTTP_RESPONSE_TYPES.iter().map(|t| t.to_string()).collect();
    let mut j = 0usize;
    group.bench_function(BenchmarkId::new(label, "query"), |b| {
        b.iter(|| {
            let key = ip_keys[j % ip_keys.len()];
            j += 1;
            std::hint::black_box(store.query(key, now - 300.0, Some(&types), 100))
        })
    });
}

fn history(c: &mut Criterion) {
    let n = if full_run() { 5_000 } else { 200 };
    let p = prepare(n);
    let mut group = c.benchmark_group("history");

    let memory = MemoryHistory::new();
    run_store(&mut group, "memory", &memory, &p);

    let redis = BenchRedis::new("history");
    let get_key = redis.key("hist:ip:192.0.2.1");
    group.bench_function(BenchmarkId::new("redis", "get_reference"), |b| {
        b.iter(|| std::hint::black_box(redis.pool.get_raw(&get_key)))
    });
    let store = RedisHistory::new(&redis.pool);
    run_store(&mut group, "redis", &store, &p);
    group.finish();
    drop(redis);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = history
}
criterion_main!(benches);
