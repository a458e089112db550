//! Picking the stores a configuration names: memory (the embedded default),
//! Redis-only, or tiered (Redis + Postgres). Nothing connects here:
//! connections open on first use, so validation and `check` work while the
//! servers are down.

use std::sync::Arc;
use std::time::Duration;

use sec_audit_core::Clock;
use sec_audit_rules::{Counters, HistoryStore, MemoryCounters, MemoryHistory};
use sec_audit_store::aio::{
    AsyncBlockStore, AsyncRedis, AsyncRedisBlockStore, AsyncTieredBlockStore, BlockingPool,
    LocalBlocks,
};
use sec_audit_store::{
    BlockStore, MemoryBlockStore, PostgresBlockStore, PostgresConfig, RedisBlockStore, RedisConfig,
    RedisCounters, RedisHistory, RedisPool, TieredBlockStore, TieredOptions,
};

use crate::config::Config;

/// TTL of a "permanent" block in Redis-only mode (`permanent_tier_enabled =
/// false` or no `database_url`): long-lived, but — like every key we write —
/// not without a TTL. One year.
pub const REDIS_ONLY_PERMANENT_TTL: u64 = 365 * 86_400;

/// Which kind of stores a configuration selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// In-process (single process only).
    Memory,
    /// Everything in Redis; permanent blocks as long-lived entries.
    RedisOnly,
    /// Temporary blocks in Redis, permanent bans in Postgres with a Redis
    /// cache and membership mirror.
    Tiered,
}

impl StoreKind {
    pub fn of(config: &Config) -> StoreKind {
        if config.redis_url.trim().is_empty() {
            StoreKind::Memory
        } else if config.permanent_tier_enabled && !config.database_url.trim().is_empty() {
            StoreKind::Tiered
        } else {
            StoreKind::RedisOnly
        }
    }
}

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

/// The Redis settings of a configuration.
pub fn redis_config(config: &Config) -> RedisConfig {
    RedisConfig::new(config.redis_url.trim())
        .with_key_prefix(config.key_prefix.clone())
        .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .with_command_timeout(Duration::from_millis(config.command_timeout_ms))
}

/// The Postgres settings of a configuration.
pub fn postgres_config(config: &Config) -> PostgresConfig {
    PostgresConfig::new(config.database_url.trim())
        .with_connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .with_statement_timeout(Duration::from_millis(config.command_timeout_ms))
}

/// The stores `config` names. Opens no connection.
pub fn from_config(config: &Config, clock: Arc<dyn Clock>) -> Result<Stores, String> {
    let pool = BlockingPool::new(1, Duration::from_millis(config.command_timeout_ms));
    Ok(build(config, clock, &pool)?.stores)
}

/// The stores of a configuration with the async lookup over the same data.
pub(crate) struct Built {
    pub stores: Stores,
    /// The async lookup: the Redis or tiered one over a multiplexed
    /// connection, or the memory store inline.
    pub async_blocks: Arc<dyn AsyncBlockStore>,
    /// The stores do I/O (Redis, Postgres).
    pub remote: bool,
}

/// The stores `config` names, sync and async. Opens no connection.
pub(crate) fn build(
    config: &Config,
    clock: Arc<dyn Clock>,
    blocking: &BlockingPool,
) -> Result<Built, String> {
    let kind = StoreKind::of(config);
    if kind == StoreKind::Memory {
        if !config.database_url.trim().is_empty() {
            return Err("database_url is set without redis_url: the permanent tier needs Redis for its cache".into());
        }
        let stores = Stores::memory(clock);
        let async_blocks: Arc<dyn AsyncBlockStore> =
            Arc::new(LocalBlocks(Arc::clone(&stores.blocks)));
        return Ok(Built {
            stores,
            async_blocks,
            remote: false,
        });
    }
    let redis = redis_config(config);
    let pool = RedisPool::new(&redis).map_err(|e| format!("redis_url: {e}"))?;
    let conn = AsyncRedis::new(&redis).map_err(|e| format!("redis_url: {e}"))?;
    let (blocks, async_blocks): (Arc<dyn BlockStore>, Arc<dyn AsyncBlockStore>) =
        if kind == StoreKind::Tiered {
            let pg = PostgresBlockStore::new(&postgres_config(config), Arc::clone(&clock))
                .map_err(|e| format!("database_url: {e}"))?;
            let tiered = Arc::new(TieredBlockStore::new(
                &pool,
                pg,
                clock,
                TieredOptions {
                    permanent_cache_ttl: config.permanent_cache_ttl,
                    ..TieredOptions::default()
                },
            ));
            let lookup = AsyncTieredBlockStore::new(&conn, Arc::clone(&tiered), blocking.clone());
            (tiered, Arc::new(lookup))
        } else {
            let store = RedisBlockStore::new(&pool, clock, REDIS_ONLY_PERMANENT_TTL);
            let lookup = AsyncRedisBlockStore::new(&conn, store.clone());
            (Arc::new(store), Arc::new(lookup))
        };
    Ok(Built {
        stores: Stores {
            counters: Arc::new(RedisCounters::new(&pool)),
            history: Arc::new(RedisHistory::new(&pool)),
            blocks,
        },
        async_blocks,
        remote: true,
    })
}
