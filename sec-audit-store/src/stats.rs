//! Round-trip accounting, so tests and operators can see what a call cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a store has sent to its backends since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Redis round trips: one per command or pipeline sent (a retry on a
    /// fresh connection counts again).
    pub redis_round_trips: u64,
    /// Postgres queries the store issued (connection set-up not included).
    pub postgres_queries: u64,
}

impl StoreStats {
    /// `self - earlier`, per counter.
    pub fn since(&self, earlier: &StoreStats) -> StoreStats {
        StoreStats {
            redis_round_trips: self
                .redis_round_trips
                .saturating_sub(earlier.redis_round_trips),
            postgres_queries: self
                .postgres_queries
                .saturating_sub(earlier.postgres_queries),
        }
    }
}

/// Live counters behind [`StoreStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    redis: AtomicU64,
    postgres: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Counters::default())
    }
    pub(crate) fn redis(&self, n: u64) {
        self.redis.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn postgres(&self, n: u64) {
        self.postgres.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            redis_round_trips: self.redis.load(Ordering::Relaxed),
            postgres_queries: self.postgres.load(Ordering::Relaxed),
        }
    }
}
