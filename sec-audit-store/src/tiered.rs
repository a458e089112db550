//! The tiered block store: temporary blocks in Redis, permanent blocks in
//! Postgres written through to a Redis cache, and a Redis mirror of the set
//! of active permanent bans so that a clean request costs one Redis round
//! trip and no Postgres query (stores.md, "Tiered").
//!
//! Redis keys (all with a TTL):
//!
//! | key | what | TTL |
//! |---|---|---|
//! | `{prefix}:block:{scope_type}:{scope_value}` | the entry (JSON) | temp: its ttl; permanent: `permanent_cache_ttl` |
//! | `{prefix}:perm:members` | set of active permanent scope keys, plus the member `#warm` | `mirror_ttl` |
//! | `{prefix}:perm:rebuild` | lock of the worker rebuilding the mirror | 30 s |
//!
//! The *warm* marker is a member of the set itself (`#warm`, which no scope
//! key can equal: a scope key always holds a `:`), not a key of its own: an
//! evicting Redis drops the set and its marker together, so "warm" can never
//! outlive the membership it vouches for.

use std::sync::{Arc, LazyLock};

use sec_audit_core::Clock;
use sec_audit_rules::ScopeKey;

use crate::block::{BlockEntry, BlockStore, NewBlock, StoreError};
use crate::config::TieredOptions;
use crate::postgres::PostgresBlockStore;
use crate::redis_block::RedisBlockStore;
use crate::redis_pool::{unique_id, Lua, RedisPool};
use crate::stats::StoreStats;

/// The mirror's completeness marker (a member of the mirror set).
pub const WARM_MEMBER: &str = "#warm";

/// Members added per script call while rebuilding.
const SADD_CHUNK: usize = 1000;
/// Rows read from Postgres per page while rebuilding.
const REBUILD_PAGE: i64 = 20_000;
/// Lifetime (ms) of the rebuild lock.
const REBUILD_LOCK_MS: u64 = 30_000;

/// SADD members; give the set a TTL if it has none. Atomic, so the set never
/// exists without a TTL.
static SADD_TTL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"redis.call('SADD', KEYS[1], unpack(ARGV, 2))
if redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1",
    )
});

/// Write-through of a permanent ban: cache the entry and add the scope to
/// the mirror, atomically.
static CACHE_BAN: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('TTL', KEYS[2]) == -1 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1",
    )
});

/// Re-cache an entry read back from Postgres, only while the scope is still
/// in the mirror: a revocation that ran meanwhile (it removes the member)
/// is never undone by a stale re-cache.
static RECACHE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0",
    )
});

/// Remove a scope from both Redis tiers; returns the number of entries
/// deleted.
static FORGET: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n",
    )
});

/// Release the rebuild lock if we still hold it.
static UNLOCK: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0",
    )
});

/// Temp blocks in Redis, permanent blocks in Postgres with a Redis cache and
/// membership mirror. What the enforcer uses in production.
#[derive(Debug, Clone)]
pub struct TieredBlockStore {
    redis: RedisBlockStore,
    pg: PostgresBlockStore,
    options: TieredOptions,
}

impl TieredBlockStore {
    /// A tiered store over `redis` (with its own round-trip counters) and
    /// `pg`. Builds nothing remote: no connection is opened here.
    pub fn new(
        redis: &RedisPool,
        pg: PostgresBlockStore,
        clock: Arc<dyn Clock>,
        options: TieredOptions,
    ) -> Self {
        let redis = RedisBlockStore::new(redis, clock, options.permanent_cache_ttl);
        TieredBlockStore {
            redis,
            pg,
            options: TieredOptions {
                permanent_cache_ttl: options.permanent_cache_ttl.max(1),
                mirror_ttl: options.mirror_ttl.max(1),
            },
        }
    }

    /// Redis round trips and Postgres queries issued by this store.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            redis_round_trips: self.redis.stats().redis_round_trips,
            postgres_queries: self.pg.stats().postgres_queries,
        }
    }

    pub fn postgres(&self) -> &PostgresBlockStore {
        &self.pg
    }

    pub fn redis(&self) -> &RedisBlockStore {
        &self.redis
    }

    pub fn options(&self) -> TieredOptions {
        self.options
    }

    /// The Redis key of the mirror set.
    pub fn mirror_key(&self) -> String {
        self.redis.pool().key("perm", "members")
    }

    fn lock_key(&self) -> String {
        self.redis.pool().key("perm", "rebuild")
    }

    /// Rebuilds the mirror from Postgres: adds every active permanent scope
    /// (a union — nothing is deleted, so a ban written meanwhile is never
    /// lost), then marks it warm. Returns the number of scopes added.
    /// Called by a lookup that finds the mirror cold; also usable by
    /// operator tooling.
    pub fn rebuild_mirror(&self) -> Result<usize, StoreError> {
        let set = self.mirror_key();
        let ttl = self.options.mirror_ttl.to_string();
        let keys = [set.clone()];
        let mut after = 0i64;
        let mut total = 0usize;
        loop {
            let (members, last) = self.pg.active_keys_page(after, REBUILD_PAGE)?;
            if !members.is_empty() {
                let mut pipe = redis::pipe();
                for chunk in members.chunks(SADD_CHUNK) {
                    let mut args = Vec::with_capacity(chunk.len() + 1);
                    args.push(ttl.clone());
                    args.extend(chunk.iter().cloned());
                    SADD_TTL.add_to(&mut pipe, &keys, &args);
                }
                // Any error reply fails the whole call: the set is never
                // marked warm over a missing chunk.
                let _: Vec<i64> = self.redis.pool().pipeline(&pipe)?;
                total += members.len();
            }
            match last {
                Some(id) if members.len() as i64 >= REBUILD_PAGE => after = id,
                _ => break,
            }
        }
        self.redis
            .pool()
            .eval::<i64>(&SADD_TTL, &keys, &[ttl, WARM_MEMBER.to_string()])?;
        tracing::info!(scopes = total, "permanent-ban mirror rebuilt from postgres");
        Ok(total)
    }

    /// Cold mirror: rebuild it (one worker at a time; the others answer from
    /// Postgres meanwhile), then answer for the candidates without an active
    /// cached entry from Postgres.
    fn cold_lookup(
        &self,
        scopes: &[ScopeKey],
        cached: &[Option<BlockEntry>],
    ) -> Result<Option<BlockEntry>, StoreError> {
        let token = unique_id();
        let mut lock = redis::cmd("SET");
        lock.arg(self.lock_key())
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(REBUILD_LOCK_MS);
        match self.redis.pool().query::<Option<String>>(&lock) {
            Ok(Some(_)) => {
                if let Err(e) = self.rebuild_mirror() {
                    tracing::warn!(error = %e, "permanent-ban mirror rebuild failed; answering from postgres");
                }
                if let Err(e) = self
                    .redis
                    .pool()
                    .eval::<i64>(&UNLOCK, &[self.lock_key()], &[token])
                {
                    tracing::warn!(error = %e, "mirror rebuild lock not released; it expires by itself");
                }
            }
            Ok(None) => {
                tracing::debug!("mirror rebuild in progress elsewhere; answering from postgres")
            }
            Err(e) => {
                tracing::warn!(error = %e, "mirror rebuild lock unavailable; answering from postgres")
            }
        }
        let now = self.redis.now();
        // The first candidate with an active cached entry bounds what
        // Postgres must be asked about.
        let first_cached = cached
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.is_active(now)));
        let upto = first_cached.unwrap_or(scopes.len());
        if upto > 0 {
            if let Some(entry) = self.pg.first_active(&scopes[..upto])? {
                self.recache(&entry);
                return Ok(Some(entry));
            }
        }
        Ok(first_cached.and_then(|i| cached[i].clone()))
    }

    /// Re-caches a permanent entry read from Postgres (only while it is in
    /// the mirror). A failure only costs a later Postgres read.
    fn recache(&self, entry: &BlockEntry) {
        let scope = entry.scope();
        let result = RedisBlockStore::encode(entry).and_then(|json| {
            self.redis.pool().eval::<i64>(
                &RECACHE,
                &[self.redis.block_key(&scope), self.mirror_key()],
                &[
                    json,
                    self.options.permanent_cache_ttl.to_string(),
                    scope.as_str().to_string(),
                ],
            )
        });
        if let Err(e) = result {
            tracing::warn!(scope = %scope, error = %e, "permanent block not re-cached in redis");
        }
    }

    /// Removes a scope that Postgres says is no longer banned from the
    /// mirror (self-healing).
    fn heal(&self, scope: &ScopeKey) {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(self.mirror_key()).arg(scope.as_str());
        match self.redis.pool().query::<i64>(&cmd) {
            Ok(_) => {
                tracing::info!(scope = %scope, "stale member removed from the permanent-ban mirror")
            }
            Err(e) => tracing::warn!(scope = %scope, error = %e, "stale mirror member not removed"),
        }
    }
}

/// The raw reply of the lookup pipeline.
pub(crate) type RawLookup = (Vec<Option<String>>, Vec<bool>);

/// The lookup round trip's reply, decoded: each candidate's cached entry
/// and its mirror membership.
pub(crate) struct LookupReply {
    cached: Vec<Option<BlockEntry>>,
    /// `flags[0]`: the mirror is warm; `flags[i + 1]`: candidate `i` is a
    /// member.
    flags: Vec<bool>,
}

impl LookupReply {
    pub(crate) fn decode(
        candidates: usize,
        keys: &[String],
        (values, flags): RawLookup,
    ) -> Result<LookupReply, StoreError> {
        if values.len() != candidates || flags.len() != candidates + 1 {
            return Err(StoreError::Redis(
                "unexpected reply shape to the block lookup".into(),
            ));
        }
        let cached = keys
            .iter()
            .zip(values)
            .map(|(k, v)| v.and_then(|raw| RedisBlockStore::decode(k, &raw)))
            .collect();
        Ok(LookupReply { cached, flags })
    }
}

/// Where the walk over a lookup reply ended.
pub(crate) enum Walk {
    Answer(Option<BlockEntry>),
    /// The answer needs Postgres (cold mirror, or a member without a usable
    /// cached entry) and Postgres was not allowed.
    NeedsPostgres,
}

impl TieredBlockStore {
    /// The candidates' block keys and the lookup pipeline (shared with the
    /// async store).
    pub(crate) fn lookup_pipe(&self, scopes: &[ScopeKey]) -> (Vec<String>, redis::Pipeline) {
        let keys: Vec<String> = scopes.iter().map(|s| self.redis.block_key(s)).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(&keys);
        pipe.cmd("SMISMEMBER")
            .arg(self.mirror_key())
            .arg(WARM_MEMBER)
            .arg(scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        (keys, pipe)
    }

    /// Decides from the lookup reply, in candidate order. Without
    /// `allow_postgres` it touches nothing (no I/O) and stops where
    /// Postgres would be needed; the async store then runs it again, with
    /// Postgres, on its blocking pool.
    pub(crate) fn walk(
        &self,
        scopes: &[ScopeKey],
        reply: &LookupReply,
        allow_postgres: bool,
    ) -> Result<Walk, StoreError> {
        let LookupReply { cached, flags } = reply;
        if !flags[0] {
            if !allow_postgres {
                return Ok(Walk::NeedsPostgres);
            }
            return self.cold_lookup(scopes, cached).map(Walk::Answer);
        }
        let now = self.redis.now();
        for (i, scope) in scopes.iter().enumerate() {
            if let Some(e) = cached[i].as_ref().filter(|e| e.is_active(now)) {
                return Ok(Walk::Answer(Some(e.clone())));
            }
            if flags[i + 1] {
                if !allow_postgres {
                    return Ok(Walk::NeedsPostgres);
                }
                // Banned, but the cached entry was evicted (or expired, or
                // unreadable): Postgres decides, and the cache is refilled.
                match self.pg.get_active(scope)? {
                    Some(entry) => {
                        self.recache(&entry);
                        return Ok(Walk::Answer(Some(entry)));
                    }
                    None => self.heal(scope),
                }
            }
        }
        Ok(Walk::Answer(None))
    }
}

impl BlockStore for TieredBlockStore {
    /// Temp → Redis only. Permanent → Postgres, then written through to the
    /// Redis cache and mirror; if that write-through fails the ban is stored
    /// (durable, found after a rebuild) and the Redis error is returned.
    fn block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError> {
        if new.ttl.is_some() {
            return self.redis.block(new);
        }
        let entry = self.pg.block(new)?;
        let scope = entry.scope();
        let json = RedisBlockStore::encode(&entry)?;
        self.redis
            .pool()
            .eval::<i64>(
                &CACHE_BAN,
                &[self.redis.block_key(&scope), self.mirror_key()],
                &[
                    json,
                    self.options.permanent_cache_ttl.to_string(),
                    scope.as_str().to_string(),
                    self.options.mirror_ttl.to_string(),
                ],
            )
            .map_err(|e| {
                tracing::warn!(scope = %scope, error = %e, "permanent block stored in postgres, redis write-through failed");
                e
            })?;
        Ok(entry)
    }

    /// Revokes in Postgres, then removes the cached entry (temp or
    /// permanent) and the mirror member. Returns the entries removed over
    /// both tiers. A Postgres failure leaves Redis untouched.
    fn unblock(
        &self,
        scope: &ScopeKey,
        reason: &str,
        revoked_by: &str,
    ) -> Result<usize, StoreError> {
        let revoked = self.pg.unblock(scope, reason, revoked_by)?;
        let deleted: i64 = self.redis.pool().eval(
            &FORGET,
            &[self.redis.block_key(scope), self.mirror_key()],
            &[scope.as_str().to_string()],
        )?;
        Ok(revoked + usize::try_from(deleted).unwrap_or(0))
    }

    fn get_active(&self, scope: &ScopeKey) -> Result<Option<BlockEntry>, StoreError> {
        self.first_active(std::slice::from_ref(scope))
    }

    /// One pipelined round trip: MGET of the candidates' entries and
    /// SMISMEMBER of the warm marker and the candidates. A clean request
    /// with a warm mirror ends there.
    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        let (keys, pipe) = self.lookup_pipe(scopes);
        let reply = self.redis.pool().pipeline(&pipe)?;
        let reply = LookupReply::decode(scopes.len(), &keys, reply)?;
        match self.walk(scopes, &reply, true)? {
            Walk::Answer(found) => Ok(found),
            // Unreachable with Postgres allowed; answered as "nothing found"
            // would hide a ban, so it is an error.
            Walk::NeedsPostgres => Err(StoreError::Redis("lookup did not complete".into())),
        }
    }

    /// Active permanent blocks, from Postgres.
    fn active_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        self.pg.active_blocks(scope_type)
    }

    /// Active temporary blocks, from Redis (SCAN).
    fn active_temp_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        self.redis.active_temp_blocks(scope_type)
    }
}
