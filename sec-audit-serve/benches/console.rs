//! What the console adds to every enforcement record (its subscriber keeps
//! a scrubbed, bounded copy and counts the minute), and what rendering its
//! busiest pages costs.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sec_audit_core::{Scrubber, SystemClock};
use sec_audit_enforce::{EnforcementEvent, EventType};
use sec_audit_serve::console::recent::{Recent, RING_CAPACITY};

fn block_applied() -> EnforcementEvent {
    EnforcementEvent::new(EventType::BlockApplied, 1_700_000_000_000_000_000)
        .attr("scope.type", "ip")
        .attr("scope.value", "203.0.113.9")
        .attr("security_rule.name", "brute_force_login")
        .attr("enforcement.action", "temp")
        .attr("enforcement.ttl", 300)
        .attr("enforcement.expires_at", "2023-11-14T22:18:20.000Z")
        .attr("event_type", "audit.enforcement.block_applied")
        .attr("schema_version", "1.0")
}

fn alert() -> EnforcementEvent {
    EnforcementEvent::new(EventType::Alert, 1_700_000_000_000_000_000)
        .attr("security_rule.name", "credential_stuffing")
        .attr("security_rule.severity", 7)
        .attr(
            "security_rule.description",
            "Many users tried from one address",
        )
        .attr("enforcement.action", "alert")
        .attr("source.address", "198.51.100.23")
        .attr("user.id", "alice@example.com")
        .attr("session.id", "s-8c1f2a")
        .attr("event_type", "audit.enforcement.alert")
        .attr("schema_version", "1.0")
}

fn bench(c: &mut Criterion) {
    let recent = Recent::new(Arc::new(SystemClock), Scrubber::default());
    let (applied, alert) = (block_applied(), alert());
    c.bench_function("console_record_block_applied", |b| {
        b.iter(|| recent.record(black_box(&applied)))
    });
    c.bench_function("console_record_alert", |b| {
        b.iter(|| recent.record(black_box(&alert)))
    });
    for _ in 0..RING_CAPACITY {
        recent.record(&applied);
    }
    c.bench_function("console_records_snapshot_full_ring", |b| {
        b.iter(|| black_box(recent.records()))
    });
    c.bench_function("console_last_hour", |b| {
        b.iter(|| black_box(recent.last_hour()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
