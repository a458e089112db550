//! Outages are loud and bounded: `evaluation_failed` records and the
//! diagnostics that would repeat per request are coalesced.
//!
//! * **Records.** At most one `evaluation_failed` record per (fail mode,
//!   error kind) per second of the runtime's clock. The first failure of a
//!   burst is emitted at once with `enforcement.failure_count = 1`; the
//!   failures suppressed after it are counted and carried by the next
//!   record of that key (`failure_count` = suppressed + 1), or emitted by
//!   [`FailureReporter::flush`] (`Runtime::flush`, and when the runtime is
//!   dropped). The counts of all records of a key add up to its failures:
//!   nothing is lost.
//! * **Log lines.** [`log_coalesced`] (from `sec-audit-core`, so the stores
//!   use it too): at most one line per (message, error kind) per second of
//!   monotonic time, process-wide, carrying the number of occurrences it
//!   stands for (`count`).
//! * **Counts.** [`FailureStats`]: how many decisions a failure made
//!   (fail-open, fail-closed) and how many block writes failed, exact,
//!   whatever was coalesced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use sec_audit_core::Clock;

use crate::events::{keys, EnforcementEvent, EventEmitter, EventType};

/// The attribute of `evaluation_failed` holding how many failures the
/// record stands for.
pub const FAILURE_COUNT_ATTR: &str = keys::FAILURE_COUNT;

/// The coalescing window of records, in nanoseconds of the runtime's clock.
pub const RECORD_WINDOW_NS: i64 = 1_000_000_000;

/// How many outcomes failures decided since the runtime was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureStats {
    /// Failures that let a request or event through (`fail_mode = open`):
    /// a block lookup that could not answer, a failed rule pass, a failed
    /// block write.
    pub fail_open: u64,
    /// Failures that denied a request (`fail_mode = closed`).
    pub fail_closed: u64,
    /// Block writes that failed (also counted in `fail_open`: the block was
    /// not enforced).
    pub block_writes_failed: u64,
}

impl FailureStats {
    /// Any outcome decided by a failure.
    pub fn any(&self) -> bool {
        self.fail_open + self.fail_closed > 0
    }
}

#[derive(Debug)]
struct Slot {
    mode: String,
    kind: String,
    /// When the last record of this key was emitted.
    last_ns: i64,
    /// Failures since then, not yet in a record.
    pending: u64,
}

/// The per-key windows of [`FailureReporter`] (a handful of keys: a linear
/// scan, no allocation once a key exists).
#[derive(Debug, Default)]
pub struct FailureCoalescer {
    slots: Mutex<Vec<Slot>>,
}

impl FailureCoalescer {
    /// One failure at `now_ns`: `Some(count)` when a record must be emitted
    /// now (standing for `count` failures), `None` when it is suppressed
    /// and counted.
    pub fn record(&self, mode: &str, kind: &str, now_ns: i64) -> Option<u64> {
        let mut slots = self.slots.lock();
        match slots.iter_mut().find(|s| s.mode == mode && s.kind == kind) {
            Some(s) => {
                s.pending += 1;
                if now_ns.saturating_sub(s.last_ns) >= RECORD_WINDOW_NS {
                    s.last_ns = now_ns;
                    Some(std::mem::take(&mut s.pending))
                } else {
                    None
                }
            }
            None => {
                slots.push(Slot {
                    mode: mode.to_string(),
                    kind: kind.to_string(),
                    last_ns: now_ns,
                    pending: 0,
                });
                Some(1)
            }
        }
    }

    /// Takes every suppressed count: `(mode, kind, count)`.
    pub fn drain(&self, now_ns: i64) -> Vec<(String, String, u64)> {
        let mut slots = self.slots.lock();
        slots
            .iter_mut()
            .filter(|s| s.pending > 0)
            .map(|s| {
                s.last_ns = now_ns;
                (
                    s.mode.clone(),
                    s.kind.clone(),
                    std::mem::take(&mut s.pending),
                )
            })
            .collect()
    }
}

/// Called on every failure, uncoalesced, with its fail mode and kind (for
/// exact metrics: records are coalesced, observers are not).
pub type FailureObserver = dyn Fn(&str, &str) + Send + Sync;

/// Reports failures of one runtime: coalesced records, exact counts.
/// Shared by the runtime and its enforcer.
pub struct FailureReporter {
    observers: parking_lot::RwLock<Vec<Arc<FailureObserver>>>,
    coalescer: FailureCoalescer,
    emitter: Arc<EventEmitter>,
    clock: Arc<dyn Clock>,
    fail_open: AtomicU64,
    fail_closed: AtomicU64,
    block_writes_failed: AtomicU64,
}

impl std::fmt::Debug for FailureReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureReporter")
            .field("stats", &self.stats())
            .finish()
    }
}

impl FailureReporter {
    pub fn new(emitter: Arc<EventEmitter>, clock: Arc<dyn Clock>) -> Self {
        FailureReporter {
            observers: parking_lot::RwLock::new(Vec::new()),
            coalescer: FailureCoalescer::default(),
            emitter,
            clock,
            fail_open: AtomicU64::new(0),
            fail_closed: AtomicU64::new(0),
            block_writes_failed: AtomicU64::new(0),
        }
    }

    fn emit(&self, mode: &str, kind: &str, count: u64, now_ns: i64) {
        self.emitter.emit(
            EnforcementEvent::new(EventType::EvaluationFailed, now_ns)
                .attr(keys::FAIL_MODE, mode)
                .attr(keys::ERROR_TYPE, kind)
                .attr(FAILURE_COUNT_ATTR, count),
        );
    }

    /// Calls `observer` on every failure from now on, uncoalesced.
    pub fn observe(&self, observer: Arc<FailureObserver>) {
        self.observers.write().push(observer);
    }

    /// A failure that decided an outcome with `mode` (`open` or `closed`);
    /// `kind` is a short error kind, never a message.
    pub fn failed(&self, mode: &str, kind: &str) {
        if mode == "closed" {
            self.fail_closed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.fail_open.fetch_add(1, Ordering::Relaxed);
        }
        for observer in self.observers.read().iter() {
            observer(mode, kind);
        }
        let now = self.clock.now_ns();
        if let Some(count) = self.coalescer.record(mode, kind, now) {
            self.emit(mode, kind, count, now);
        }
    }

    /// A block write that failed: the block is not enforced (fail open).
    pub fn block_write_failed(&self, kind: &str) {
        self.block_writes_failed.fetch_add(1, Ordering::Relaxed);
        log_coalesced(Level::Error, "writing a block failed", kind);
        self.failed("open", kind);
    }

    /// Emits the suppressed counts, one record per key.
    pub fn flush(&self) {
        let now = self.clock.now_ns();
        for (mode, kind, count) in self.coalescer.drain(now) {
            self.emit(&mode, &kind, count, now);
        }
    }

    pub fn stats(&self) -> FailureStats {
        FailureStats {
            fail_open: self.fail_open.load(Ordering::Relaxed),
            fail_closed: self.fail_closed.load(Ordering::Relaxed),
            block_writes_failed: self.block_writes_failed.load(Ordering::Relaxed),
        }
    }
}

pub use sec_audit_core::log_coalesce::{log_coalesced, Level};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observers_see_every_failure_while_records_are_coalesced() {
        use crate::events::Sink;
        use sec_audit_core::{ManualClock, Scrubber};
        let emitter = Arc::new(EventEmitter::new(Sink::Discard, Scrubber::default(), "1.0"));
        let records = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&records);
        emitter.subscribe(None, move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let clock = Arc::new(ManualClock::at_secs(1_000.0));
        let reporter = FailureReporter::new(Arc::clone(&emitter), clock);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        reporter.observe(Arc::new(move |mode: &str, kind: &str| {
            sink.lock().push((mode.to_string(), kind.to_string()));
        }));
        for _ in 0..5 {
            reporter.failed("open", "timeout");
        }
        reporter.failed("closed", "timeout");
        assert_eq!(records.load(Ordering::Relaxed), 2, "one record per key");
        let seen = seen.lock();
        assert_eq!(seen.len(), 6, "every failure observed");
        assert_eq!(seen.iter().filter(|(m, _)| m == "open").count(), 5);
    }

    #[test]
    fn one_record_per_key_per_second_with_the_counts_adding_up() {
        let c = FailureCoalescer::default();
        let t0 = 1_000 * RECORD_WINDOW_NS;
        assert_eq!(c.record("open", "timeout", t0), Some(1));
        for i in 1..10 {
            assert_eq!(c.record("open", "timeout", t0 + i * 1_000), None);
        }
        // Another key has its own window.
        assert_eq!(c.record("closed", "timeout", t0), Some(1));
        assert_eq!(c.record("open", "redis_error", t0), Some(1));
        // A second later: the next record carries the 9 suppressed + itself.
        assert_eq!(c.record("open", "timeout", t0 + RECORD_WINDOW_NS), Some(10));
        assert_eq!(c.record("open", "timeout", t0 + RECORD_WINDOW_NS + 1), None);
        assert_eq!(
            c.drain(t0 + RECORD_WINDOW_NS + 2),
            vec![("open".to_string(), "timeout".to_string(), 1)]
        );
        assert!(c.drain(t0 + RECORD_WINDOW_NS + 3).is_empty());
    }
}
