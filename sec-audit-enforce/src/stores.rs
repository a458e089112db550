//! Picking the stores a configuration names: memory (the embedded default),
//! Redis-only, or tiered (Redis + Postgres). Connections open lazily.

use std::sync::Arc;

use sec_audit_core::Clock;
use sec_audit_rules::{Counters, HistoryStore, MemoryCounters, MemoryHistory};
use sec_audit_store::{BlockStore, MemoryBlockStore};

use crate::config::Config;

/// The three kinds of state the runtime uses.
#[derive(Clone)]
pub struct Stores {
    pub counters: Arc<dyn Counters>,
    pub history: Arc<dyn HistoryStore>,
    pub blocks: Arc<dyn BlockStore>,
}

impl Stores {
    /// In-process stores (single process only).
    pub fn memory(clock: Arc<dyn Clock>) -> Self {
        Stores {
            counters: Arc::new(MemoryCounters::new(Arc::clone(&clock))),
            history: Arc::new(MemoryHistory::new()),
            blocks: Arc::new(MemoryBlockStore::new(clock)),
        }
    }
}

/// The stores `config` names.
pub fn from_config(config: &Config, clock: Arc<dyn Clock>) -> Result<Stores, String> {
    if config.redis_url.trim().is_empty() {
        return Ok(Stores::memory(clock));
    }
    Err("redis_url is set but this build has no Redis store".into())
}
