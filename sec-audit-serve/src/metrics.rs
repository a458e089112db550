//! `/metrics`: Prometheus text, every name starting `sec_audit_`.
//!
//! Enforcement decisions are counted by a subscriber on the runtime's
//! emitter (every emitted record, whoever caused it: decide, egress, the
//! block API). Failures (store errors, fail-open outcomes, evaluation
//! failures) are counted exactly by an observer on the runtime's failure
//! reporter: the `evaluation_failed` records themselves are coalesced (one
//! per fail mode and kind per second). The HTTP handlers count ingress
//! outcomes, ingest lines and the decide latency; queue figures are read at
//! scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sec_audit_enforce::events::keys;
use sec_audit_enforce::{EnforcementEvent, EventEmitter, Runtime};

type Labels = Vec<(&'static str, String)>;

/// The error kinds of the block and state stores (`StoreError::kind`);
/// other `error.type` values of `evaluation_failed` are rule or engine
/// failures.
const STORE_ERROR_KINDS: [&str; 6] = [
    "redis_error",
    "postgres_error",
    "pool_error",
    "timeout",
    "decode_error",
    "invalid_request",
];

/// Whether an `error.type` is a store error kind.
pub fn is_store_error(kind: &str) -> bool {
    STORE_ERROR_KINDS.contains(&kind) || kind.starts_with("redis") || kind.starts_with("postgres")
}

/// The metrics of one server.
pub struct Metrics {
    registry: Registry,
    decisions: Family<Labels, Counter>,
    ingress: Family<Labels, Counter>,
    store_errors: Family<Labels, Counter>,
    evaluation_failures: Family<Labels, Counter>,
    ingest: Family<Labels, Counter>,
    queue_depth: Gauge,
    queue_capacity: Gauge,
    egress_processed: Counter,
    processed_seen: AtomicU64,
    decide_latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Ingress outcomes of `/v1/decide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    FailClosed,
}

/// Where ingested events came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Events,
    Logs,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Events => "events",
            Source::Logs => "logs",
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            decisions: Family::default(),
            ingress: Family::default(),
            store_errors: Family::default(),
            evaluation_failures: Family::default(),
            ingest: Family::default(),
            queue_depth: Gauge::default(),
            queue_capacity: Gauge::default(),
            egress_processed: Counter::default(),
            processed_seen: AtomicU64::new(0),
            // 50 µs to ~1.6 s.
            decide_latency: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register(
            "sec_audit_decisions",
            "Enforcement records emitted, by event type, rule and scope",
            m.decisions.clone(),
        );
        registry.register(
            "sec_audit_ingress_decisions",
            "Outcomes of /v1/decide: allow (fail_open allows included), deny, fail_closed; fail_open counts store or rule failures that let a request through",
            m.ingress.clone(),
        );
        registry.register(
            "sec_audit_store_errors",
            "Store failures reported by the runtime, by kind",
            m.store_errors.clone(),
        );
        registry.register(
            "sec_audit_evaluation_failures",
            "Failures that decided an outcome (each one, though the evaluation_failed records are coalesced), by error kind and fail mode",
            m.evaluation_failures.clone(),
        );
        registry.register(
            "sec_audit_ingest_events",
            "Ingested events by source (events, logs) and outcome (accepted, rejected, dropped)",
            m.ingest.clone(),
        );
        registry.register(
            "sec_audit_queue_depth",
            "Events waiting for egress",
            m.queue_depth.clone(),
        );
        registry.register(
            "sec_audit_queue_capacity",
            "Capacity of the egress queue",
            m.queue_capacity.clone(),
        );
        registry.register(
            "sec_audit_egress_processed",
            "Events egress has handled",
            m.egress_processed.clone(),
        );
        registry.register(
            "sec_audit_decide_latency_seconds",
            "Time /v1/decide spends deciding (the ingress check)",
            m.decide_latency.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts every record `emitter` emits from now on.
    pub fn subscribe(self: &Arc<Self>, emitter: &EventEmitter) {
        let m = Arc::clone(self);
        emitter.subscribe(None, move |e| {
            m.record(e);
            Ok(())
        });
    }

    fn record(&self, e: &EnforcementEvent) {
        let text = |k: &str| e.get_str(k).unwrap_or("").to_string();
        self.decisions
            .get_or_create(&vec![
                ("event_type", e.event_type.as_str().to_string()),
                ("rule", text(keys::RULE_NAME)),
                ("scope", text(keys::SCOPE_TYPE)),
            ])
            .inc();
    }

    /// Counts every failure of `runtime` from now on, uncoalesced.
    pub fn observe_failures(self: &Arc<Self>, runtime: &Runtime) {
        let m = Arc::clone(self);
        runtime.on_failure(move |mode, kind| m.failure(mode, kind));
    }

    /// One failure that decided an outcome (`mode`: `open` or `closed`).
    fn failure(&self, mode: &str, kind: &str) {
        if is_store_error(kind) {
            self.store_error(kind);
        }
        if mode == "open" {
            self.ingress
                .get_or_create(&vec![("outcome", "fail_open".to_string())])
                .inc();
        }
        self.evaluation_failures
            .get_or_create(&vec![
                ("kind", kind.to_string()),
                ("fail_mode", mode.to_string()),
            ])
            .inc();
    }

    /// Counts a store failure seen outside the runtime's records (the
    /// block API, readiness).
    pub fn store_error(&self, kind: &str) {
        self.store_errors
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    pub fn ingress(&self, outcome: Outcome) {
        let o = match outcome {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::FailClosed => "fail_closed",
        };
        self.ingress
            .get_or_create(&vec![("outcome", o.into())])
            .inc();
    }

    pub fn decide_latency(&self, secs: f64) {
        self.decide_latency.observe(secs);
    }

    pub fn ingest(&self, source: Source, accepted: u64, rejected: u64, dropped: u64) {
        for (outcome, n) in [
            ("accepted", accepted),
            ("rejected", rejected),
            ("dropped", dropped),
        ] {
            let c = self.ingest.get_or_create_owned(&vec![
                ("source", source.as_str().into()),
                ("outcome", outcome.into()),
            ]);
            c.inc_by(n);
        }
    }

    /// The text exposition, with the queue figures as of now.
    pub fn render(&self, depth: usize, capacity: usize, processed: u64) -> String {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
        self.queue_capacity
            .set(i64::try_from(capacity).unwrap_or(i64::MAX));
        let seen = self.processed_seen.fetch_max(processed, Ordering::Relaxed);
        if processed > seen {
            self.egress_processed.inc_by(processed - seen);
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding the metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sec_audit_core::Scrubber;
    use sec_audit_enforce::{EventType, Sink};

    #[test]
    fn records_and_handlers_show_up() {
        let m = Arc::new(Metrics::new());
        let emitter = EventEmitter::new(Sink::Discard, Scrubber::default(), "1.0");
        m.subscribe(&emitter);
        emitter.emit(
            EnforcementEvent::new(EventType::BlockApplied, 1)
                .attr("security_rule.name", "brute_force_login")
                .attr("scope.type", "ip"),
        );
        m.failure("open", "timeout");
        m.ingress(Outcome::Deny);
        m.ingest(Source::Events, 3, 1, 0);
        m.decide_latency(0.001);
        let text = m.render(2, 10, 5);
        for needle in [
            "sec_audit_decisions_total{event_type=\"audit.enforcement.block_applied\",rule=\"brute_force_login\",scope=\"ip\"} 1",
            "sec_audit_store_errors_total{kind=\"timeout\"} 1",
            "sec_audit_ingress_decisions_total{outcome=\"fail_open\"} 1",
            "sec_audit_ingress_decisions_total{outcome=\"deny\"} 1",
            "sec_audit_ingest_events_total{source=\"events\",outcome=\"accepted\"} 3",
            "sec_audit_queue_depth 2",
            "sec_audit_egress_processed_total 5",
            "sec_audit_decide_latency_seconds_count 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        assert!(text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.starts_with("sec_audit_")));
    }
}
