//! Detection-state contracts: counters and history. The in-memory
//! implementations live in `sec-audit-rules` (`MemoryCounters`,
//! `MemoryHistory`), the Redis ones in `sec-audit-store`.
//!
//! Detection-state calls never fail: an implementation that cannot reach its
//! backend degrades (an `incr` returns `amount` as if the key were new, a
//! read returns the default, an append is dropped) and logs a warning.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::history_entry::HistoryEntry;
use crate::scope_key::ScopeKey;

/// A summary as a JSON object (what a [`HistoryEntry`] reads from and
/// writes as).
pub type Summary = Map<String, Value>;

/// Fixed-window counters. A TTL is set only when a key is created; a key
/// created at `t` with TTL `w` is gone from `t + w` on.
pub trait Counters: Send + Sync {
    /// Adds `amount` and returns the new value; creates the key (with `ttl`)
    /// when absent or expired.
    fn incr(&self, key: &str, amount: i64, ttl_secs: Option<u64>) -> i64;
    fn get_int(&self, key: &str, default: i64) -> i64;
    fn set(&self, key: &str, value: i64, ttl_secs: Option<u64>);
    fn delete(&self, key: &str);
    fn expire(&self, key: &str, ttl_secs: u64);
    /// True when every call answers from process memory, without I/O (an
    /// async caller may then call it inline instead of off its executor).
    fn answers_locally(&self) -> bool {
        false
    }
}

/// One history row: an event summary (with `recorded_at`), shared by every
/// key it is stored under.
pub type HistoryRow = Arc<HistoryEntry>;

/// How long and how much history a store keeps per key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryRetention {
    pub window_seconds: f64,
    pub max_events_per_key: usize,
}

impl Default for HistoryRetention {
    fn default() -> Self {
        HistoryRetention {
            window_seconds: 900.0,
            max_events_per_key: 100,
        }
    }
}

/// Event history per scope key.
pub trait HistoryStore: Send + Sync {
    /// Appends `row` under every key: prunes rows at or older than
    /// `recorded_at - window`, adds, trims to the newest
    /// `max_events_per_key`.
    fn append(
        &self,
        keys: &[ScopeKey],
        recorded_at: f64,
        row: HistoryRow,
        retention: &HistoryRetention,
    );
    /// Rows strictly newer than `since`, newest first, of the given types
    /// (`None`: all), at most `limit`.
    fn query(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
    ) -> Vec<HistoryRow>;

    /// Calls `f` with each row [`HistoryStore::query`] would return, in the
    /// same order. A store may call `f` while holding a lock: `f` must not
    /// use the store.
    fn visit(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
        f: &mut dyn FnMut(&HistoryRow),
    ) {
        self.visit_all(key, since, event_types, limit, &mut |rows| {
            rows.for_each(&mut *f)
        });
    }

    /// Calls `f` once with the rows [`HistoryStore::query`] would return,
    /// in the same order, all borrowed at once (so that `f` may keep
    /// references into several rows while it runs). A store may call `f`
    /// while holding a lock: `f` must not use the store.
    fn visit_all(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
        f: &mut dyn FnMut(&mut dyn Iterator<Item = &HistoryRow>),
    ) {
        let rows = self.query(key, since, event_types, limit);
        f(&mut rows.iter());
    }

    /// True when every call answers from process memory, without I/O (an
    /// async caller may then call it inline instead of off its executor).
    fn answers_locally(&self) -> bool {
        false
    }
}
