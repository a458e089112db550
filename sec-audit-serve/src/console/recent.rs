//! The console's memory of recent decisions: a subscriber on the runtime's
//! emitter keeps the last [`RING_CAPACITY`] enforcement records (scrubbed
//! and bounded as the JSONL trail is, then bounded further) and a count per
//! event type for each of the last [`MINUTES`] minutes of the runtime's
//! clock. Memory is bounded: at most [`RING_CAPACITY`] records of at most
//! about [`MAX_RECORD_JSON`] bytes each, and [`MINUTES`] small buckets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use sec_audit_core::record::{project_attributes, RecordBounds};
use sec_audit_core::{Clock, Scrubber};
use sec_audit_enforce::events::keys;
use sec_audit_enforce::{EnforcementEvent, EventEmitter, EventType};
use serde_json::{Map, Value};

/// Records kept for the decisions page.
pub const RING_CAPACITY: usize = 500;
/// Minutes counted for the overview's chart.
pub const MINUTES: usize = 60;
/// A record whose bounded attributes still serialize to more than this is
/// cut down to its [`CORE_KEYS`].
pub const MAX_RECORD_JSON: usize = 8 * 1024;

/// Tighter than the trail's bounds: the ring is for reading on a page.
const BOUNDS: RecordBounds = RecordBounds {
    max_depth: 4,
    max_entries: 20,
    max_string_chars: 512,
    max_attributes: 48,
    max_record_bytes: MAX_RECORD_JSON,
};

/// What an oversized record keeps (each string cut to 256 characters).
pub const CORE_KEYS: [&str; 12] = [
    keys::EVENT_TYPE,
    keys::RULE_NAME,
    keys::SCOPE_TYPE,
    keys::SCOPE_VALUE,
    keys::ACTION,
    keys::REASON,
    keys::REVOKED_BY,
    keys::TTL,
    keys::ERROR_TYPE,
    keys::FAIL_MODE,
    keys::SOURCE_ADDRESS,
    keys::USER_ID,
];

/// One enforcement record as the console shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Increasing number of the record since the server started.
    pub seq: u64,
    pub timestamp_ns: i64,
    pub event_type: EventType,
    /// Scrubbed and bounded.
    pub attributes: Map<String, Value>,
}

impl Record {
    /// A string attribute (numbers and booleans as text), or "".
    pub fn text(&self, key: &str) -> String {
        match self.attributes.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }
}

/// Decisions per event type in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the epoch on the runtime's clock.
    pub minute: i64,
    /// Indexed like [`EventType::ALL`].
    pub counts: [u64; EventType::ALL.len()],
}

struct Inner {
    ring: VecDeque<Arc<Record>>,
    minutes: VecDeque<Minute>,
    next_seq: u64,
}

/// The recent records and the per-minute counts.
pub struct Recent {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    scrubber: Scrubber,
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recent")
    }
}

fn type_index(t: EventType) -> usize {
    EventType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

fn minute_of(secs: f64) -> i64 {
    (secs / 60.0).floor() as i64
}

/// Scrubs and bounds a record's attributes for the ring.
fn bounded(mut attrs: Map<String, Value>, scrubber: &Scrubber) -> Map<String, Value> {
    project_attributes(&mut attrs, scrubber, &BOUNDS);
    let size = serde_json::to_string(&attrs).map_or(usize::MAX, |s| s.len());
    if size <= MAX_RECORD_JSON {
        return attrs;
    }
    let mut core = Map::new();
    for k in CORE_KEYS {
        if let Some(v) = attrs.remove(k) {
            let v = match v {
                Value::String(s) => Value::String(s.chars().take(256).collect()),
                v @ (Value::Number(_) | Value::Bool(_)) => v,
                _ => continue,
            };
            core.insert(k.to_string(), v);
        }
    }
    core.insert("console.truncated".into(), Value::Bool(true));
    core
}

impl Recent {
    /// An empty memory over `clock` (the runtime's), scrubbing with
    /// `scrubber` (the runtime's).
    pub fn new(clock: Arc<dyn Clock>, scrubber: Scrubber) -> Self {
        Recent {
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(RING_CAPACITY),
                minutes: VecDeque::with_capacity(MINUTES + 1),
                next_seq: 1,
            }),
            clock,
            scrubber,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the ring
        // inconsistent (pushes and pops only): keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps every record `emitter` emits from now on.
    pub fn subscribe(self: &Arc<Self>, emitter: &EventEmitter) {
        let me = Arc::clone(self);
        emitter.subscribe(None, move |e| {
            me.record(e);
            Ok(())
        });
    }

    /// Keeps one record (counted in the minute of the runtime's clock now).
    pub fn record(&self, e: &EnforcementEvent) {
        let attributes = bounded(e.to_map(), &self.scrubber);
        let minute = minute_of(self.clock.now());
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if inner.ring.len() >= RING_CAPACITY {
            inner.ring.pop_front();
        }
        inner.ring.push_back(Arc::new(Record {
            seq,
            timestamp_ns: e.timestamp_ns,
            event_type: e.event_type,
            attributes,
        }));
        let i = type_index(e.event_type);
        match inner.minutes.back_mut() {
            Some(m) if m.minute == minute => m.counts[i] += 1,
            // A clock that went back: counted in the latest minute.
            Some(m) if m.minute > minute => m.counts[i] += 1,
            _ => {
                let mut counts = [0; EventType::ALL.len()];
                counts[i] = 1;
                inner.minutes.push_back(Minute { minute, counts });
            }
        }
        while inner
            .minutes
            .front()
            .is_some_and(|m| m.minute <= minute - MINUTES as i64)
        {
            inner.minutes.pop_front();
        }
    }

    /// The kept records, newest first.
    pub fn records(&self) -> Vec<Arc<Record>> {
        self.lock().ring.iter().rev().cloned().collect()
    }

    /// The last [`MINUTES`] minutes ending with the current one, oldest
    /// first, every minute present (zero counts where nothing happened).
    pub fn last_hour(&self) -> Vec<Minute> {
        let now = minute_of(self.clock.now());
        let inner = self.lock();
        (0..MINUTES as i64)
            .rev()
            .map(|back| {
                let minute = now - back;
                inner
                    .minutes
                    .iter()
                    .find(|m| m.minute == minute)
                    .copied()
                    .unwrap_or(Minute {
                        minute,
                        counts: [0; EventType::ALL.len()],
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sec_audit_core::ManualClock;

    fn event(t: EventType) -> EnforcementEvent {
        EnforcementEvent::new(t, 1)
            .attr("security_rule.name", "r")
            .attr("scope.type", "user")
            .attr("scope.value", "u")
    }

    #[test]
    fn the_ring_is_bounded_and_newest_first() {
        let clock = Arc::new(ManualClock::at_secs(6000.0));
        let r = Recent::new(clock, Scrubber::default());
        for _ in 0..RING_CAPACITY + 7 {
            r.record(&event(EventType::Blocked));
        }
        let recs = r.records();
        assert_eq!(recs.len(), RING_CAPACITY);
        assert_eq!(recs[0].seq, (RING_CAPACITY + 7) as u64);
        assert_eq!(recs[RING_CAPACITY - 1].seq, 8);
    }

    #[test]
    fn minutes_count_per_type_and_forget_the_hour_before() {
        let clock = Arc::new(ManualClock::at_secs(60.0 * 1000.0));
        let r = Recent::new(clock.clone(), Scrubber::default());
        r.record(&event(EventType::Blocked));
        r.record(&event(EventType::Blocked));
        r.record(&event(EventType::Alert));
        clock.advance_secs(60.0 * 30.0);
        r.record(&event(EventType::BlockApplied));
        let hour = r.last_hour();
        assert_eq!(hour.len(), MINUTES);
        assert_eq!(hour[MINUTES - 1].minute, 1030);
        let b = type_index(EventType::Blocked);
        assert_eq!(hour[MINUTES - 31].counts[b], 2);
        assert_eq!(hour[MINUTES - 31].counts[type_index(EventType::Alert)], 1);
        assert_eq!(
            hour[MINUTES - 1].counts[type_index(EventType::BlockApplied)],
            1
        );
        clock.advance_secs(60.0 * 31.0);
        r.record(&event(EventType::Alert));
        let total: u64 = r.last_hour().iter().map(|m| m.counts[b]).sum();
        assert_eq!(total, 0, "older than an hour");
        assert!(r.lock().minutes.len() <= MINUTES);
    }

    #[test]
    fn records_are_scrubbed_and_bounded() {
        let clock = Arc::new(ManualClock::at_secs(0.0));
        let r = Recent::new(clock, Scrubber::default());
        let mut e = event(EventType::Alert).attr("password", "hunter2");
        for i in 0..40 {
            e = e.attr(format!("big.{i}"), "x".repeat(2000));
        }
        r.record(&e);
        let rec = &r.records()[0];
        let json = serde_json::to_string(&rec.attributes).unwrap();
        assert!(!json.contains("hunter2"));
        assert!(json.len() <= MAX_RECORD_JSON, "{}", json.len());
        assert_eq!(rec.text("scope.value"), "u");
        assert_eq!(rec.attributes["console.truncated"], Value::Bool(true));
        // A small record keeps everything, scrubbed.
        r.record(&event(EventType::Alert).attr("password", "hunter2"));
        let rec = &r.records()[0];
        assert_eq!(rec.text("password"), sec_audit_core::REDACTED);
        assert_eq!(rec.text("security_rule.name"), "r");
    }
}
