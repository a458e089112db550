//! Stores for sec-audit: the block-store contract and its implementations
//! (memory, Redis, Postgres, tiered), and Redis-backed detection state
//! (counters and history) shared by every worker.
//!
//! Nothing here connects at construction: Redis and Postgres connections
//! open on first use, so configuration can be validated while the servers
//! are down. See the crate README for the Redis key scheme, the tiered
//! lookup and the degradation rules.

#[cfg(feature = "async")]
pub mod aio;
pub mod block;
pub mod config;
mod failfast;
pub mod limits;
pub mod memory;
pub mod postgres;
pub mod ranges;
pub mod redis_block;
pub mod redis_pool;
pub mod redis_state;
pub mod stats;
pub mod tiered;

pub use block::{BlockEntry, BlockStore, NewBlock, StoreError, TrailRow};
pub use config::{
    check_tls_ca_file, redact_url, PostgresConfig, RedisConfig, TieredOptions, DEFAULT_KEY_PREFIX,
};
pub use memory::MemoryBlockStore;
pub use postgres::{PostgresBlockStore, MIGRATIONS};
pub use ranges::{canonical_ip_value, IpRange, IpValueError};
pub use redis_block::RedisBlockStore;
pub use redis_pool::RedisPool;
pub use redis_state::{RedisCounters, RedisHistory, DEFAULT_COUNTER_TTL, HISTORY_TTL_MARGIN};
pub use stats::StoreStats;
pub use tiered::{TieredBlockStore, WARM_MEMBER};
