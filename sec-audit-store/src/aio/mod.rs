//! Async block lookups (feature `async`): the ingress lookup of the Redis
//! and tiered stores over one multiplexed tokio connection, so an async
//! server never blocks an executor thread on Redis.
//!
//! The async stores reuse the sync stores' key scheme, entry decoding and
//! lookup order (they hold the sync store and call its helpers); only the
//! lookup's round trip is async. Whatever must stay synchronous — the
//! Postgres read of a cold mirror or of an evicted cached entry, with its
//! re-cache — runs on a [`BlockingPool`] (tokio's blocking threads, bounded,
//! with a timeout that covers the wait for a permit).
//!
//! | type | lookup |
//! |---|---|
//! | [`AsyncRedisBlockStore`] | one pipelined `MGET` + read of the range index |
//! | [`AsyncTieredBlockStore`] | one pipelined `MGET` + `SMISMEMBER` + read of the range index; Postgres (cold / evicted) on the blocking pool |
//!
//! Covering ranges are looked up exactly as the sync stores do (the same
//! plan, [`crate::ranges`]): a second round trip only when the range index
//! names a prefix length the first lacked.
//! | [`LocalBlocks`] | a store that answers from memory, called inline |
//! | [`OffloadedBlocks`] | any other [`BlockStore`], on the blocking pool |

mod blocking;
mod breaker;
mod conn;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sec_audit_core::ScopeKey;

pub use blocking::{BlockingError, BlockingPool};
pub use conn::AsyncRedis;

use crate::block::{BlockEntry, BlockStore, StoreError};
use crate::redis_block::{IndexReply, RedisBlockStore};
use crate::stats::StoreStats;
use crate::tiered::{first_cached_from, log_cached_fallback, RawLookup, TieredBlockStore, Walk};

/// A boxed, `Send` future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The ingress lookup, async. Same contract as
/// [`BlockStore::first_active`]: the first active entry among `scopes`, in
/// the given order; a failure is an error, never "not blocked".
pub trait AsyncBlockStore: Send + Sync {
    fn first_active<'a>(
        &'a self,
        scopes: &'a [ScopeKey],
    ) -> BoxFuture<'a, Result<Option<BlockEntry>, StoreError>>;

    /// What the lookups have sent to the backends.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
}

/// A store that answers from process memory (e.g. [`crate::MemoryBlockStore`]),
/// called inline: no I/O, nothing to offload.
#[derive(Clone)]
pub struct LocalBlocks(pub Arc<dyn BlockStore>);

impl AsyncBlockStore for LocalBlocks {
    fn first_active<'a>(
        &'a self,
        scopes: &'a [ScopeKey],
    ) -> BoxFuture<'a, Result<Option<BlockEntry>, StoreError>> {
        let r = self.0.first_active(scopes);
        Box::pin(std::future::ready(r))
    }
}

/// Any sync store, called on a [`BlockingPool`].
#[derive(Clone)]
pub struct OffloadedBlocks {
    pub store: Arc<dyn BlockStore>,
    pub pool: BlockingPool,
}

impl AsyncBlockStore for OffloadedBlocks {
    fn first_active<'a>(
        &'a self,
        scopes: &'a [ScopeKey],
    ) -> BoxFuture<'a, Result<Option<BlockEntry>, StoreError>> {
        let store = Arc::clone(&self.store);
        let scopes = scopes.to_vec();
        Box::pin(async move {
            self.pool
                .run(move || store.first_active(&scopes))
                .await
                .map_err(StoreError::from)?
        })
    }
}

/// [`RedisBlockStore`]'s lookup over an async connection.
#[derive(Debug, Clone)]
pub struct AsyncRedisBlockStore {
    conn: AsyncRedis,
    store: RedisBlockStore,
}

impl AsyncRedisBlockStore {
    /// `store` gives the key scheme and decoding; `conn` (with its own
    /// counters) carries the lookups. Both should use the same Redis and
    /// key prefix.
    pub fn new(conn: &AsyncRedis, store: RedisBlockStore) -> AsyncRedisBlockStore {
        AsyncRedisBlockStore {
            conn: conn.with_own_stats(),
            store,
        }
    }

    /// The lookup: one round trip, `MGET` over every candidate key (an
    /// address's covering ranges at the lengths in use included) and the
    /// read of the range index; a second `MGET` only when the index names a
    /// length the first lacked.
    pub async fn first_active(
        &self,
        scopes: &[ScopeKey],
    ) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        let planned = self.store.plan(scopes);
        let (keys, pipe) = self.store.lookup_pipe(&planned.candidates);
        let (values, index): (Vec<Option<String>>, IndexReply) = self.conn.pipeline(&pipe).await?;
        match self.store.replan(scopes, &planned, &index).1 {
            None => Ok(self.store.pick_active(&keys, values)),
            Some(again) => {
                let (keys, cmd) = self.store.lookup_cmd(&again);
                let values: Vec<Option<String>> = self.conn.query(&cmd).await?;
                Ok(self.store.pick_active(&keys, values))
            }
        }
    }

    /// Round trips of the async lookups.
    pub fn stats(&self) -> StoreStats {
        self.conn.stats()
    }

    pub fn connection(&self) -> &AsyncRedis {
        &self.conn
    }
}

impl AsyncBlockStore for AsyncRedisBlockStore {
    fn first_active<'a>(
        &'a self,
        scopes: &'a [ScopeKey],
    ) -> BoxFuture<'a, Result<Option<BlockEntry>, StoreError>> {
        Box::pin(AsyncRedisBlockStore::first_active(self, scopes))
    }

    fn stats(&self) -> StoreStats {
        AsyncRedisBlockStore::stats(self)
    }
}

/// [`TieredBlockStore`]'s lookup: the round trip async, the Postgres part
/// (cold mirror, evicted cached entry) on the blocking pool.
#[derive(Clone)]
pub struct AsyncTieredBlockStore {
    conn: AsyncRedis,
    store: Arc<TieredBlockStore>,
    pool: BlockingPool,
    /// A detached mirror rebuild is scheduled or running.
    rebuilding: Arc<AtomicBool>,
}

/// Clears the flag when dropped (the rebuild ended, or was never run).
struct ResetOnDrop(Arc<AtomicBool>);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for AsyncTieredBlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTieredBlockStore")
            .field("conn", &self.conn)
            .field("pool", &self.pool)
            .finish()
    }
}

impl AsyncTieredBlockStore {
    pub fn new(
        conn: &AsyncRedis,
        store: Arc<TieredBlockStore>,
        pool: BlockingPool,
    ) -> AsyncTieredBlockStore {
        AsyncTieredBlockStore {
            conn: conn.with_own_stats(),
            store,
            pool,
            rebuilding: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The lookup: one pipelined round trip; when the reply needs Postgres,
    /// the sync store's walk runs on the blocking pool.
    pub async fn first_active(
        &self,
        scopes: &[ScopeKey],
    ) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        let planned = self.store.plan(scopes, true);
        let (keys, pipe) = self.store.lookup_pipe(&planned.candidates);
        let raw: RawLookup = self.conn.pipeline(&pipe).await?;
        let (candidates, reply) = match self.store.settle(scopes, &planned, &keys, raw, true)? {
            Ok(reply) => (planned.candidates, reply),
            Err(again) => {
                let (keys, pipe) = self.store.lookup_pipe(&again);
                let raw: RawLookup = self.conn.pipeline(&pipe).await?;
                let reply = self.store.settle_again(&again, &keys, raw)?;
                (again, reply)
            }
        };
        let cold = !reply.flags[0];
        if cold {
            self.rebuild_detached();
        }
        if let Walk::Answer(found) = self.store.walk(scopes, &candidates, &reply, false, true)? {
            return Ok(found);
        }
        // What answers when the blocking pool does not (timeout, panic):
        // the first active cached entry, a proven ban. The walk without
        // Postgres stopped before it, so it is the answer of every path
        // but "an earlier candidate is banned in Postgres".
        let fallback = first_cached_from(&reply.cached, self.store.redis().now(), 0);
        let store = Arc::clone(&self.store);
        let scopes = scopes.to_vec();
        let candidates = candidates.into_owned();
        let walked = self
            .pool
            .run(move || store.walk_with(&scopes, &candidates, &reply, true, false, true))
            .await;
        match walked {
            Ok(Ok(Walk::Answer(found))) => Ok(found),
            Ok(Ok(Walk::NeedsPostgres)) => Err(StoreError::Redis("lookup did not complete".into())),
            Ok(Err(e)) => Err(e),
            Err(e) => {
                let e = StoreError::from(e);
                match fallback {
                    Some(entry) => {
                        log_cached_fallback(&e, &entry);
                        Ok(Some(entry))
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// A cold mirror: rebuild it on the blocking pool, detached from the
    /// request (a long rebuild never holds a lookup past the pool's
    /// timeout), at most one attempt per store at a time; across
    /// processes the rebuild lock elects one worker.
    fn rebuild_detached(&self) {
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        let reset = ResetOnDrop(Arc::clone(&self.rebuilding));
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Arc::clone(&self.store);
        let pool = self.pool.clone();
        handle.spawn(async move {
            // The rebuild keeps its permit until it ends, even past the
            // pool's timeout; `reset` goes with it (or is dropped unrun).
            let outcome = pool
                .run(move || {
                    let _reset = reset;
                    store.try_rebuild();
                })
                .await;
            if let Err(e) = outcome {
                tracing::debug!(kind = e.kind(), error = %e, "detached mirror rebuild still running or not run");
            }
        });
    }

    /// Round trips of the async lookups plus what the sync store sent for
    /// them (Postgres reads, re-caches).
    pub fn stats(&self) -> StoreStats {
        let a = self.conn.stats();
        let s = self.store.stats();
        StoreStats {
            redis_round_trips: a.redis_round_trips + s.redis_round_trips,
            postgres_queries: s.postgres_queries,
        }
    }

    pub fn connection(&self) -> &AsyncRedis {
        &self.conn
    }

    pub fn store(&self) -> &Arc<TieredBlockStore> {
        &self.store
    }
}

impl AsyncBlockStore for AsyncTieredBlockStore {
    fn first_active<'a>(
        &'a self,
        scopes: &'a [ScopeKey],
    ) -> BoxFuture<'a, Result<Option<BlockEntry>, StoreError>> {
        Box::pin(AsyncTieredBlockStore::first_active(self, scopes))
    }

    fn stats(&self) -> StoreStats {
        AsyncTieredBlockStore::stats(self)
    }
}
