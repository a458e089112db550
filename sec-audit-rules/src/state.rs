//! Detection state: counters and history, their thread-safe in-memory
//! implementations (the embedded default). The traits are defined in
//! `sec_audit_core::state` and re-exported here.
//!
//! Detection-state calls never fail: an implementation that cannot reach its
//! backend degrades (an `incr` returns `amount` as if the key were new, a
//! read returns the default, an append is dropped) and logs a warning.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;
use sec_audit_core::Clock;

pub use sec_audit_core::state::{Counters, HistoryRetention, HistoryRow, HistoryStore};
use sec_audit_core::ScopeKey;

const SHARDS: usize = 16;

fn shard_of(hasher: &RandomState, key: &str) -> usize {
    (hasher.hash_one(key) as usize) % SHARDS
}

#[derive(Debug, Clone, Copy)]
struct CounterEntry {
    value: i64,
    expires_at: f64,
}

/// In-memory counters: sharded, expiry checked on access, at most
/// `max_keys` keys (expired keys go first, then the soonest to expire).
pub struct MemoryCounters {
    clock: Arc<dyn Clock>,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, CounterEntry>>>,
    max_keys_per_shard: usize,
}

impl std::fmt::Debug for MemoryCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCounters")
            .field("max_keys", &(self.max_keys_per_shard * SHARDS))
            .finish()
    }
}

impl MemoryCounters {
    pub const DEFAULT_MAX_KEYS: usize = 100_000;

    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_max_keys(clock, Self::DEFAULT_MAX_KEYS)
    }

    pub fn with_max_keys(clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        MemoryCounters {
            clock,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Number of live keys (for tests and diagnostics).
    pub fn len(&self) -> usize {
        let now = self.clock.now();
        self.shards
            .iter()
            .map(|s| s.lock().values().filter(|e| e.expires_at > now).count())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expiry(now: f64, ttl: Option<u64>) -> f64 {
        ttl.map_or(f64::INFINITY, |t| now + t as f64)
    }

    fn make_room(&self, map: &mut HashMap<String, CounterEntry>, now: f64) {
        if map.len() < self.max_keys_per_shard {
            return;
        }
        map.retain(|_, e| e.expires_at > now);
        if map.len() >= self.max_keys_per_shard {
            let drop = (self.max_keys_per_shard / 8).max(1);
            let mut by_expiry: Vec<(f64, String)> =
                map.iter().map(|(k, e)| (e.expires_at, k.clone())).collect();
            by_expiry.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, k) in by_expiry.into_iter().take(drop) {
                map.remove(&k);
            }
        }
    }
}

impl Counters for MemoryCounters {
    fn answers_locally(&self) -> bool {
        true
    }

    fn incr(&self, key: &str, amount: i64, ttl_secs: Option<u64>) -> i64 {
        let now = self.clock.now();
        let mut map = self.shards[shard_of(&self.hasher, key)].lock();
        if let Some(e) = map.get_mut(key) {
            if e.expires_at > now {
                e.value = e.value.saturating_add(amount);
                return e.value;
            }
            *e = CounterEntry {
                value: amount,
                expires_at: Self::expiry(now, ttl_secs),
            };
            return amount;
        }
        self.make_room(&mut map, now);
        map.insert(
            key.to_string(),
            CounterEntry {
                value: amount,
                expires_at: Self::expiry(now, ttl_secs),
            },
        );
        amount
    }

    fn get_int(&self, key: &str, default: i64) -> i64 {
        let now = self.clock.now();
        let map = self.shards[shard_of(&self.hasher, key)].lock();
        match map.get(key) {
            Some(e) if e.expires_at > now => e.value,
            _ => default,
        }
    }

    fn set(&self, key: &str, value: i64, ttl_secs: Option<u64>) {
        let now = self.clock.now();
        let mut map = self.shards[shard_of(&self.hasher, key)].lock();
        if !map.contains_key(key) {
            self.make_room(&mut map, now);
        }
        map.insert(
            key.to_string(),
            CounterEntry {
                value,
                expires_at: Self::expiry(now, ttl_secs),
            },
        );
    }

    fn delete(&self, key: &str) {
        self.shards[shard_of(&self.hasher, key)].lock().remove(key);
    }

    fn expire(&self, key: &str, ttl_secs: u64) {
        let now = self.clock.now();
        let mut map = self.shards[shard_of(&self.hasher, key)].lock();
        if let Some(e) = map.get_mut(key) {
            if e.expires_at > now {
                e.expires_at = now + ttl_secs as f64;
            }
        }
    }
}

struct KeyHistory {
    /// Oldest first.
    rows: VecDeque<(f64, HistoryRow)>,
}

impl KeyHistory {
    /// Rows strictly newer than `since`, newest first, of the given types,
    /// at most `limit`.
    fn matching<'h>(
        &'h self,
        since: f64,
        event_types: Option<&'h [String]>,
        limit: usize,
    ) -> impl Iterator<Item = &'h HistoryRow> + 'h {
        self.rows
            .iter()
            .rev()
            .take_while(move |(t, _)| *t > since)
            .filter(move |(_, row)| match event_types {
                None => true,
                Some(types) => row
                    .event_type()
                    .is_some_and(|t| types.iter().any(|x| x == t)),
            })
            .take(limit)
            .map(|(_, row)| row)
    }
}

/// In-memory history: sharded, at most `max_keys` scope keys (stale keys go
/// first, then the least recently appended).
pub struct MemoryHistory {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, KeyHistory>>>,
    max_keys_per_shard: usize,
}

impl std::fmt::Debug for MemoryHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHistory")
            .field("max_keys", &(self.max_keys_per_shard * SHARDS))
            .finish()
    }
}

impl Default for MemoryHistory {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryHistory {
    pub const DEFAULT_MAX_KEYS: usize = 10_000;

    pub fn new() -> Self {
        Self::with_max_keys(Self::DEFAULT_MAX_KEYS)
    }

    pub fn with_max_keys(max_keys: usize) -> Self {
        MemoryHistory {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_keys_per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Number of scope keys held.
    pub fn key_count(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    fn make_room(&self, map: &mut HashMap<String, KeyHistory>, cutoff: f64) {
        if map.len() < self.max_keys_per_shard {
            return;
        }
        map.retain(|_, h| h.rows.back().is_some_and(|(t, _)| *t > cutoff));
        if map.len() >= self.max_keys_per_shard {
            let drop = (self.max_keys_per_shard / 8).max(1);
            let mut by_age: Vec<(f64, String)> = map
                .iter()
                .map(|(k, h)| (h.rows.back().map_or(f64::NEG_INFINITY, |r| r.0), k.clone()))
                .collect();
            by_age.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (_, k) in by_age.into_iter().take(drop) {
                map.remove(&k);
            }
        }
    }
}

impl HistoryStore for MemoryHistory {
    fn answers_locally(&self) -> bool {
        true
    }

    fn append(
        &self,
        keys: &[ScopeKey],
        recorded_at: f64,
        row: HistoryRow,
        retention: &HistoryRetention,
    ) {
        let cutoff = recorded_at - retention.window_seconds;
        let max = retention.max_events_per_key.max(1);
        for key in keys {
            let k = key.as_str();
            let mut map = self.shards[shard_of(&self.hasher, k)].lock();
            match map.get_mut(k) {
                Some(h) => {
                    while h.rows.front().is_some_and(|(t, _)| *t <= cutoff) {
                        h.rows.pop_front();
                    }
                    h.rows.push_back((recorded_at, Arc::clone(&row)));
                    while h.rows.len() > max {
                        h.rows.pop_front();
                    }
                }
                None => {
                    self.make_room(&mut map, cutoff);
                    let mut rows = VecDeque::new();
                    rows.push_back((recorded_at, Arc::clone(&row)));
                    map.insert(k.to_string(), KeyHistory { rows });
                }
            }
        }
    }

    fn query(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
    ) -> Vec<HistoryRow> {
        let k = key.as_str();
        let map = self.shards[shard_of(&self.hasher, k)].lock();
        let Some(h) = map.get(k) else {
            return Vec::new();
        };
        h.matching(since, event_types, limit).cloned().collect()
    }

    fn visit_all(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
        f: &mut dyn FnMut(&mut dyn Iterator<Item = &HistoryRow>),
    ) {
        let k = key.as_str();
        let map = self.shards[shard_of(&self.hasher, k)].lock();
        match map.get(k) {
            Some(h) => f(&mut h.matching(since, event_types, limit)),
            None => f(&mut std::iter::empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sec_audit_core::ManualClock;
    use serde_json::{json, Map, Value};

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::at_secs(1000.0))
    }

    #[test]
    fn counter_window_is_fixed_and_expires_at_exactly_t_plus_w() {
        let c = clock();
        let ctr = MemoryCounters::new(c.clone());
        assert_eq!(ctr.incr("k", 1, Some(10)), 1);
        c.advance_secs(9.0);
        assert_eq!(ctr.incr("k", 1, Some(10)), 2); // does not extend the window
        c.advance_secs(0.999);
        assert_eq!(ctr.get_int("k", 0), 2);
        c.advance_secs(0.001); // t + w: gone
        assert_eq!(ctr.get_int("k", -1), -1);
        assert_eq!(ctr.incr("k", 3, Some(10)), 3);
    }

    #[test]
    fn counter_set_delete_expire() {
        let c = clock();
        let ctr = MemoryCounters::new(c.clone());
        ctr.set("a", 42, None);
        assert_eq!(ctr.get_int("a", 0), 42);
        ctr.expire("a", 5);
        c.advance_secs(5.0);
        assert_eq!(ctr.get_int("a", 0), 0);
        ctr.set("b", 1, Some(100));
        ctr.delete("b");
        assert_eq!(ctr.get_int("b", 7), 7);
        ctr.expire("missing", 5);
        assert_eq!(ctr.get_int("missing", 0), 0);
    }

    #[test]
    fn counter_key_cap_holds() {
        let c = clock();
        let ctr = MemoryCounters::with_max_keys(c.clone(), 160);
        for i in 0..5000 {
            ctr.incr(&format!("k{i}"), 1, Some(60));
        }
        assert!(ctr.len() <= 160, "{}", ctr.len());
    }

    #[test]
    fn counters_are_thread_safe() {
        let ctr = Arc::new(MemoryCounters::new(clock()));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let ctr = ctr.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        ctr.incr("shared", 1, Some(60));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(ctr.get_int("shared", 0), 8000);
    }

    fn row(t: f64, ty: &str) -> HistoryRow {
        let mut m = Map::new();
        m.insert("event_type".into(), json!(ty));
        m.insert("recorded_at".into(), Value::from(t));
        Arc::new(m.into())
    }

    #[test]
    fn history_prunes_trims_filters_and_orders_newest_first() {
        let h = MemoryHistory::new();
        let key = ScopeKey::new("ip", "1.2.3.4");
        let ret = HistoryRetention {
            window_seconds: 100.0,
            max_events_per_key: 3,
        };
        for (i, t) in [10.0, 20.0, 30.0, 40.0].iter().enumerate() {
            let ty = if i % 2 == 0 { "a" } else { "b" };
            h.append(std::slice::from_ref(&key), *t, row(*t, ty), &ret);
        }
        let all = h.query(&key, 0.0, None, 10);
        let times: Vec<f64> = all.iter().map(|r| r.recorded_at()).collect();
        assert_eq!(times, vec![40.0, 30.0, 20.0]);
        let only_a = h.query(&key, 0.0, Some(&["a".to_string()]), 10);
        assert_eq!(only_a.len(), 1);
        assert_eq!(h.query(&key, 30.0, None, 10).len(), 1);
        assert_eq!(h.query(&key, 0.0, None, 2).len(), 2);
        // A row at exactly recorded_at - window is dropped on the next append.
        h.append(std::slice::from_ref(&key), 130.0, row(130.0, "a"), &ret);
        let times: Vec<f64> = h
            .query(&key, 0.0, None, 10)
            .iter()
            .map(|r| r.recorded_at())
            .collect();
        assert_eq!(times, vec![130.0, 40.0]);
    }

    #[test]
    fn history_key_cap_holds_and_same_instant_rows_do_not_collapse() {
        let h = MemoryHistory::with_max_keys(64);
        let ret = HistoryRetention::default();
        for i in 0..2000 {
            h.append(
                &[ScopeKey::new("ip", format!("10.0.{}.{}", i / 256, i % 256))],
                i as f64,
                row(i as f64, "a"),
                &ret,
            );
        }
        assert!(h.key_count() <= 64);
        let k = ScopeKey::new("user", "u");
        h.append(std::slice::from_ref(&k), 5.0, row(5.0, "a"), &ret);
        h.append(std::slice::from_ref(&k), 5.0, row(5.0, "a"), &ret);
        assert_eq!(h.query(&k, 0.0, None, 10).len(), 2);
    }
}
