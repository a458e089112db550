//! The tiered block store: temporary blocks in Redis, permanent blocks in
//! Postgres written through to a Redis cache, and a Redis mirror of the set
//! of active permanent bans so that a clean request costs one Redis round
//! trip and no Postgres query.
//!
//! Redis keys (all with a TTL):
//!
//! | key | what | TTL |
//! |---|---|---|
//! | `{prefix}:block:{scope_type}:{scope_value}` | the entry (JSON) | temp: its ttl; permanent: `permanent_cache_ttl` |
//! | `{prefix}:perm:members` | set of active permanent scope keys, plus the member `#warm` | `mirror_ttl` |
//! | `{prefix}:perm:rebuild` | lock of the worker rebuilding the mirror | 30 s |
//! | `{prefix}:ranges:lens` | the range index ([`crate::redis_block`]): prefix lengths in use, plus `#warm` | at least `mirror_ttl` and the longest temp range |
//!
//! The *warm* marker is a member of the set itself (`#warm`, which no scope
//! key can equal: a scope key always holds a `:`), not a key of its own: an
//! evicting Redis drops the set and its marker together, so "warm" can never
//! outlive the membership it vouches for. The range index carries its own
//! `#warm`, added by the rebuild once every permanent range's length is in
//! it: the lookup is warm only when both markers are present, so a lost
//! index is rebuilt like a lost mirror (and a lookup on a cold mirror asks
//! Postgres about every covering range, at every length).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use sec_audit_core::Clock;
use sec_audit_core::ScopeKey;

use crate::block::{BlockEntry, BlockStore, NewBlock, StoreError, TrailRow};
use crate::config::TieredOptions;
use crate::postgres::PostgresBlockStore;
use std::borrow::Cow;

use crate::ranges::{self, LenMask};
use crate::redis_block::{IndexReply, Planned, RedisBlockStore};
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
/// the mirror, atomically. KEYS: entry, mirror. ARGV: entry JSON, cache
/// TTL, scope key, mirror TTL.
pub(crate) static CACHE_BAN: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('TTL', KEYS[2]) == -1 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1",
    )
});

/// The write-through of a permanent range ban: [`CACHE_BAN`], plus the
/// range's length in the range index (score `inf`), whose TTL is kept at
/// least the mirror's. KEYS: entry, mirror, index. ARGV: entry JSON, cache
/// TTL, scope key, mirror TTL, index member.
pub(crate) static CACHE_RANGE_BAN: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('TTL', KEYS[2]) == -1 then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('ZADD', KEYS[3], 'GT', 'inf', ARGV[5])
if redis.call('TTL', KEYS[3]) < tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1",
    )
});

/// The rebuild's part of the range index: every permanent range's length
/// (score `inf`), then the index's `#warm`; the TTL at least the mirror's.
/// KEYS: index. ARGV: mirror TTL, members… (the last one `#warm`).
static INDEX_WARM: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'GT', 'inf', ARGV[i])
end
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return 1",
    )
});

/// Re-cache an entry read back from Postgres — only while the scope is
/// still in the mirror (a revocation that ran meanwhile removed the member
/// and is never undone) and only while the cached value is still the one the
/// lookup saw (compare-and-set: a ban, re-ban or temp block written
/// meanwhile is newer and is never overwritten by this stale read). KEYS:
/// entry, mirror. ARGV: entry JSON, cache TTL, scope key, `1` when the
/// lookup saw a value (else `0`), the value it saw.
pub(crate) static RECACHE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"local cur = redis.call('GET', KEYS[1])
if ARGV[4] == '1' then
  if cur ~= ARGV[5] then return 0 end
elseif cur then
  return 0
end
if redis.call('SISMEMBER', KEYS[2], ARGV[3]) == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0",
    )
});

/// Remove a member that Postgres says is not banned (self-healing), only
/// while the cached value is still the one the lookup saw: a ban written
/// meanwhile (its entry and member are written together) keeps its member.
/// KEYS: entry, mirror. ARGV: scope key, `1` when the lookup saw a value
/// (else `0`), the value it saw.
pub(crate) static HEAL: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"local cur = redis.call('GET', KEYS[1])
if ARGV[2] == '1' then
  if cur ~= ARGV[3] then return 0 end
elseif cur then
  return 0
end
return redis.call('SREM', KEYS[2], ARGV[1])",
    )
});

/// Remove a scope from both Redis tiers; returns the number of entries
/// deleted. KEYS: entry, mirror. ARGV: scope key.
pub(crate) static FORGET: LazyLock<Lua> = LazyLock::new(|| {
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

/// Milliseconds between two warnings of one [`Coalesced`] kind.
const COALESCE_MS: u64 = 10_000;

/// A warning that can repeat per request, logged at most once per
/// [`COALESCE_MS`] with the number of occurrences since the last one.
pub(crate) struct Coalesced {
    last_ms: AtomicU64,
    since: AtomicU64,
}

static COALESCE_START: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Coalesced {
    pub(crate) const fn new() -> Coalesced {
        Coalesced {
            last_ms: AtomicU64::new(0),
            since: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; `Some(n)` (occurrences since the last
    /// warning, this one included) when this one should be logged.
    pub(crate) fn hit(&self) -> Option<u64> {
        let ms = u64::try_from(COALESCE_START.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.hit_at(ms)
    }

    /// [`Self::hit`] at `ms` milliseconds of a monotonic clock.
    fn hit_at(&self, ms: u64) -> Option<u64> {
        self.since.fetch_add(1, Ordering::Relaxed);
        // +1: 0 means "never logged".
        let now = ms.saturating_add(1);
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < COALESCE_MS {
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        Some(self.since.swap(0, Ordering::Relaxed).max(1))
    }
}

/// Postgres failed during a lookup and a cached entry answered instead.
static PG_FALLBACK: Coalesced = Coalesced::new();

/// Logs (coalesced) that a Postgres error was answered by a cached entry.
pub(crate) fn log_cached_fallback(error: &StoreError, entry: &BlockEntry) {
    if let Some(n) = PG_FALLBACK.hit() {
        tracing::warn!(
            kind = error.kind(),
            error = %error,
            scope = %entry.scope(),
            occurrences = n,
            "postgres unavailable during a block lookup; answered by a later candidate's active cached block"
        );
    }
}

/// The first active cached entry among candidates `from..`.
pub(crate) fn first_cached_from(
    cached: &[Option<BlockEntry>],
    now: f64,
    from: usize,
) -> Option<BlockEntry> {
    cached
        .iter()
        .skip(from)
        .flatten()
        .find(|e| e.is_active(now))
        .cloned()
}

/// The next step of a warm lookup (`#warm` present), from the decoded MGET
/// values and the SMISMEMBER flags of the candidates (`members[i]`: candidate
/// `i` is in the mirror), scanning candidates `from..` in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WarmStep {
    /// Candidate `i`'s cached entry is active: it is the answer.
    Hit(usize),
    /// Candidate `i` is banned (a member) but has no usable cached entry:
    /// ask Postgres about it. Active: re-cache it ([`RECACHE`], with the
    /// value the lookup saw) and answer it. Not active: heal ([`HEAL`],
    /// with the value the lookup saw) and continue from `i + 1`.
    AskPostgres(usize),
    /// No candidate is blocked.
    Clean,
}

/// See [`WarmStep`].
pub(crate) fn warm_step(
    cached: &[Option<BlockEntry>],
    members: &[bool],
    now: f64,
    from: usize,
) -> WarmStep {
    for (i, entry) in cached.iter().enumerate().skip(from) {
        if entry.as_ref().is_some_and(|e| e.is_active(now)) {
            return WarmStep::Hit(i);
        }
        if members.get(i).copied().unwrap_or(false) {
            return WarmStep::AskPostgres(i);
        }
    }
    WarmStep::Clean
}

/// A cold lookup (`#warm` absent), after the rebuild attempt: Postgres is
/// asked once about the candidates `..upto` (those before the first active
/// cached entry); its first active row there is the answer (re-cache it
/// with the value the lookup saw); otherwise the answer is the cached entry
/// of candidate `first_cached`, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColdPlan {
    pub(crate) upto: usize,
    pub(crate) first_cached: Option<usize>,
}

/// See [`ColdPlan`].
pub(crate) fn cold_plan(cached: &[Option<BlockEntry>], now: f64) -> ColdPlan {
    let first_cached = cached
        .iter()
        .position(|e| e.as_ref().is_some_and(|e| e.is_active(now)));
    ColdPlan {
        upto: first_cached.unwrap_or(cached.len()),
        first_cached,
    }
}

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
        let mut lens = LenMask::default();
        loop {
            let (members, last) = self.pg.active_keys_page(after, REBUILD_PAGE)?;
            for m in &members {
                if let Some(r) = m
                    .strip_prefix("ip:")
                    .and_then(ranges::IpRange::parse_canonical)
                {
                    lens.insert_range(&r);
                }
            }
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
        // The index first: the mirror's marker never vouches for an index
        // that lacks a permanent range's length.
        let mut index_args = vec![ttl.clone()];
        for family in [ranges::Family::V4, ranges::Family::V6] {
            index_args.extend(lens.lens(family).map(|l| ranges::index_member(family, l)));
        }
        index_args.push(WARM_MEMBER.to_string());
        self.redis
            .pool()
            .eval::<i64>(&INDEX_WARM, &[self.redis.range_index_key()], &index_args)?;
        self.redis
            .pool()
            .eval::<i64>(&SADD_TTL, &keys, &[ttl, WARM_MEMBER.to_string()])?;
        tracing::info!(scopes = total, "permanent-ban mirror rebuilt from postgres");
        Ok(total)
    }

    /// Cold mirror: rebuild it (one worker at a time; the others answer from
    /// Postgres meanwhile), then answer for the candidates without an active
    /// cached entry from Postgres ([`cold_plan`]).
    ///
    /// With `expand`, Postgres is asked about every covering range of the
    /// address candidates, at every prefix length (the range index may be
    /// as incomplete as the mirror), up to the first active cached entry.
    fn cold_lookup(
        &self,
        original: &[ScopeKey],
        scopes: &[ScopeKey],
        raw: &[Option<String>],
        cached: &[Option<BlockEntry>],
        rebuild: bool,
        expand: bool,
    ) -> Result<Option<BlockEntry>, StoreError> {
        if rebuild {
            self.try_rebuild();
        }
        let plan = cold_plan(cached, self.redis.now());
        let first_cached = plan.first_cached.and_then(|i| cached[i].clone());
        let ask: Cow<'_, [ScopeKey]> = if expand {
            let full = ranges::expand(original, &LenMask::all());
            let upto = plan
                .first_cached
                .and_then(|i| full.iter().position(|k| *k == scopes[i]))
                .unwrap_or(full.len());
            match full {
                Cow::Borrowed(f) => Cow::Borrowed(&f[..upto]),
                Cow::Owned(mut f) => {
                    f.truncate(upto);
                    Cow::Owned(f)
                }
            }
        } else {
            Cow::Borrowed(&scopes[..plan.upto])
        };
        if !ask.is_empty() {
            match self.pg.first_exact(&ask) {
                Ok(Some(entry)) => {
                    let seen = scopes
                        .iter()
                        .position(|s| {
                            s.scope() == entry.scope_type && s.value() == entry.scope_value
                        })
                        .and_then(|i| raw[i].as_deref());
                    self.recache(&entry, seen);
                    return Ok(Some(entry));
                }
                Ok(None) => {}
                // A later candidate's active cached entry proves a ban:
                // answer it rather than the error (which fails open).
                Err(e) => match first_cached {
                    Some(entry) => {
                        log_cached_fallback(&e, &entry);
                        return Ok(Some(entry));
                    }
                    None => return Err(e),
                },
            }
        }
        Ok(first_cached)
    }

    /// A cold mirror: the worker that takes the rebuild lock rebuilds it
    /// (failures are logged; the lookup then answers from Postgres).
    pub(crate) fn try_rebuild(&self) {
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
    }

    /// Re-caches a permanent entry read from Postgres (only while it is in
    /// the mirror and the cached value is still `seen`). A failure only
    /// costs a later Postgres read.
    fn recache(&self, entry: &BlockEntry, seen: Option<&str>) {
        let scope = entry.scope();
        let result = RedisBlockStore::encode(entry).and_then(|json| {
            self.redis.pool().eval::<i64>(
                &RECACHE,
                &[self.redis.block_key(&scope), self.mirror_key()],
                &[
                    json,
                    self.options.permanent_cache_ttl.to_string(),
                    scope.as_str().to_string(),
                    if seen.is_some() { "1" } else { "0" }.to_string(),
                    seen.unwrap_or("").to_string(),
                ],
            )
        });
        if let Err(e) = result {
            tracing::warn!(scope = %scope, error = %e, "permanent block not re-cached in redis");
        }
    }

    /// Removes a scope that Postgres says is no longer banned from the
    /// mirror (self-healing), unless its cached value changed since `seen`.
    fn heal(&self, scope: &ScopeKey, seen: Option<&str>) {
        match self.redis.pool().eval::<i64>(
            &HEAL,
            &[self.redis.block_key(scope), self.mirror_key()],
            &[
                scope.as_str().to_string(),
                if seen.is_some() { "1" } else { "0" }.to_string(),
                seen.unwrap_or("").to_string(),
            ],
        ) {
            Ok(1) => {
                tracing::info!(scope = %scope, "stale member removed from the permanent-ban mirror")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(scope = %scope, error = %e, "stale mirror member not removed"),
        }
    }

    /// The write-through of a permanent ban ([`CACHE_BAN`], or
    /// [`CACHE_RANGE_BAN`] for a range).
    fn cache_ban(&self, entry: &BlockEntry) -> Result<(), StoreError> {
        let scope = entry.scope();
        let json = RedisBlockStore::encode(entry)?;
        let mut args = vec![
            json,
            self.options.permanent_cache_ttl.to_string(),
            scope.as_str().to_string(),
            self.options.mirror_ttl.to_string(),
        ];
        let mut keys = vec![self.redis.block_key(&scope), self.mirror_key()];
        let script = match ranges::range_of(&scope) {
            None => &CACHE_BAN,
            Some(r) => {
                keys.push(self.redis.range_index_key());
                args.push(ranges::index_member(r.family(), r.prefix_len()));
                &CACHE_RANGE_BAN
            }
        };
        self.redis.pool().eval::<i64>(script, &keys, &args)?;
        Ok(())
    }

    /// The write-through of a revocation ([`FORGET`]): entries deleted.
    fn forget(&self, scope: &ScopeKey) -> Result<usize, StoreError> {
        let deleted: i64 = self.redis.pool().eval(
            &FORGET,
            &[self.redis.block_key(scope), self.mirror_key()],
            &[scope.as_str().to_string()],
        )?;
        Ok(usize::try_from(deleted).unwrap_or(0))
    }

    /// After a change whose write-through was attempted but that did not
    /// commit (or whose outcome is unknown): make Redis say what Postgres
    /// says, under the scope's lock. If even that fails, the mirror is
    /// marked cold, so the next lookup rebuilds it and asks Postgres about
    /// every candidate without an active cached entry.
    fn repair(&self, scope: &ScopeKey) {
        let result = self.pg.read_serialized(scope, |row| match row {
            Some(entry) => self.cache_ban(entry),
            None => self.forget(scope).map(|_| ()),
        });
        if let Err(f) = result {
            tracing::error!(scope = %scope, kind = f.error.kind(), error = %f.error, "a failed ban change could not be reconciled between postgres and redis; marking the mirror cold");
            let mut cmd = redis::cmd("SREM");
            cmd.arg(self.mirror_key()).arg(WARM_MEMBER);
            if let Err(e) = self.redis.pool().query::<i64>(&cmd) {
                tracing::error!(scope = %scope, error = %e, "the permanent-ban mirror could not be marked cold");
            }
        }
    }
}

/// The raw reply of the lookup pipeline: the cached values, the mirror
/// flags, the range index.
pub(crate) type RawLookup = (Vec<Option<String>>, Vec<bool>, IndexReply);

/// The lookup round trip's reply, decoded: each candidate's cached entry
/// and its mirror membership.
pub(crate) struct LookupReply {
    /// The raw cached values, kept for the compare-and-set re-cache and
    /// heal scripts (a stale lookup never overwrites a newer change).
    raw: Vec<Option<String>>,
    pub(crate) cached: Vec<Option<BlockEntry>>,
    /// `flags[0]`: the mirror and the range index are warm; `flags[i +
    /// 1]`: candidate `i` is a member.
    pub(crate) flags: Vec<bool>,
}

impl LookupReply {
    /// `index_warm`: the range index holds its `#warm`.
    pub(crate) fn decode(
        candidates: usize,
        keys: &[String],
        values: Vec<Option<String>>,
        mut flags: Vec<bool>,
        index_warm: bool,
    ) -> Result<LookupReply, StoreError> {
        if values.len() != candidates || flags.len() != candidates + 1 {
            return Err(StoreError::Redis(
                "unexpected reply shape to the block lookup".into(),
            ));
        }
        flags[0] = flags[0] && index_warm;
        let cached = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| v.as_deref().and_then(|raw| RedisBlockStore::decode(k, raw)))
            .collect();
        Ok(LookupReply {
            raw: values,
            cached,
            flags,
        })
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
    /// async store): `MGET` of the candidates' entries, `SMISMEMBER` of the
    /// warm marker and the candidates, the read of the range index.
    pub(crate) fn lookup_pipe(&self, scopes: &[ScopeKey]) -> (Vec<String>, redis::Pipeline) {
        let keys: Vec<String> = scopes.iter().map(|s| self.redis.block_key(s)).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(&keys);
        pipe.cmd("SMISMEMBER")
            .arg(self.mirror_key())
            .arg(WARM_MEMBER)
            .arg(scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        self.redis.add_index_read(&mut pipe);
        (keys, pipe)
    }

    /// A lookup's candidates: with `expand`, each address followed by its
    /// covering ranges at the lengths the last lookup found in use; else
    /// exactly `scopes`.
    pub(crate) fn plan<'a>(&self, scopes: &'a [ScopeKey], expand: bool) -> Planned<'a> {
        if expand {
            self.redis.plan(scopes)
        } else {
            Planned {
                used: LenMask::default(),
                candidates: Cow::Borrowed(scopes),
            }
        }
    }

    /// Decodes a lookup reply for `planned`; `Err(candidates)` when the
    /// range index names a length the plan lacked: the lookup must be sent
    /// again for those candidates (once: see [`crate::redis_block`]).
    #[allow(clippy::type_complexity)]
    pub(crate) fn settle<'a>(
        &self,
        scopes: &'a [ScopeKey],
        planned: &Planned<'_>,
        keys: &[String],
        raw: RawLookup,
        expand: bool,
    ) -> Result<Result<LookupReply, Cow<'a, [ScopeKey]>>, StoreError> {
        let (values, flags, index) = raw;
        let (state, again) = self.redis.replan(scopes, planned, &index);
        match again {
            Some(again) if expand => Ok(Err(again)),
            _ => LookupReply::decode(planned.candidates.len(), keys, values, flags, state.warm)
                .map(Ok),
        }
    }

    /// Decodes the reply of a repeated lookup (no further repeat).
    pub(crate) fn settle_again(
        &self,
        candidates: &[ScopeKey],
        keys: &[String],
        (values, flags, index): RawLookup,
    ) -> Result<LookupReply, StoreError> {
        let planned = Planned {
            used: LenMask::all(),
            candidates: Cow::Borrowed(candidates),
        };
        let (state, _) = self.redis.replan(candidates, &planned, &index);
        LookupReply::decode(candidates.len(), keys, values, flags, state.warm)
    }

    /// The sync lookup: one round trip (two when a new prefix length
    /// appeared), then the walk.
    fn lookup(&self, scopes: &[ScopeKey], expand: bool) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        let planned = self.plan(scopes, expand);
        let (keys, pipe) = self.lookup_pipe(&planned.candidates);
        let raw: RawLookup = self.redis.pool().pipeline(&pipe)?;
        let (candidates, reply) = match self.settle(scopes, &planned, &keys, raw, expand)? {
            Ok(reply) => (planned.candidates, reply),
            Err(again) => {
                let (keys, pipe) = self.lookup_pipe(&again);
                let raw: RawLookup = self.redis.pool().pipeline(&pipe)?;
                let reply = self.settle_again(&again, &keys, raw)?;
                (again, reply)
            }
        };
        match self.walk(scopes, &candidates, &reply, true, expand)? {
            Walk::Answer(found) => Ok(found),
            // Unreachable with Postgres allowed; answered as "nothing found"
            // would hide a ban, so it is an error.
            Walk::NeedsPostgres => Err(StoreError::Redis("lookup did not complete".into())),
        }
    }

    /// Decides from the lookup reply, in candidate order. Without
    /// `allow_postgres` it touches nothing (no I/O) and stops where
    /// Postgres would be needed; the async store then runs it again, with
    /// Postgres, on its blocking pool.
    ///
    /// A cold mirror whose first candidate has an active cached entry is
    /// answered by that entry without Postgres (`cold_plan().upto == 0`);
    /// the sync walk still rebuilds the mirror first. `rebuild: false`
    /// leaves the rebuild to the caller (the async store runs it detached).
    ///
    /// A Postgres error is answered by the first later candidate's active
    /// cached entry (a proven ban, logged, coalesced) and returned only
    /// when there is none.
    ///
    /// `original`: the lookup's own candidates; `scopes`: the candidates
    /// the reply answers for (with covering ranges when `expand`).
    pub(crate) fn walk(
        &self,
        original: &[ScopeKey],
        scopes: &[ScopeKey],
        reply: &LookupReply,
        allow_postgres: bool,
        expand: bool,
    ) -> Result<Walk, StoreError> {
        self.walk_with(original, scopes, reply, allow_postgres, true, expand)
    }

    /// [`Self::walk`]; `rebuild`: a cold walk with Postgres rebuilds the
    /// mirror inline first.
    pub(crate) fn walk_with(
        &self,
        original: &[ScopeKey],
        scopes: &[ScopeKey],
        reply: &LookupReply,
        allow_postgres: bool,
        rebuild: bool,
        expand: bool,
    ) -> Result<Walk, StoreError> {
        let LookupReply { raw, cached, flags } = reply;
        let now = self.redis.now();
        if !flags[0] {
            if !allow_postgres {
                let plan = cold_plan(cached, now);
                if plan.upto == 0 {
                    return Ok(Walk::Answer(
                        plan.first_cached.and_then(|i| cached[i].clone()),
                    ));
                }
                return Ok(Walk::NeedsPostgres);
            }
            return self
                .cold_lookup(original, scopes, raw, cached, rebuild, expand)
                .map(Walk::Answer);
        }
        let mut from = 0;
        loop {
            match warm_step(cached, &flags[1..], now, from) {
                WarmStep::Hit(i) => return Ok(Walk::Answer(cached[i].clone())),
                WarmStep::Clean => return Ok(Walk::Answer(None)),
                WarmStep::AskPostgres(_) if !allow_postgres => return Ok(Walk::NeedsPostgres),
                // Banned, but the cached entry was evicted (or expired, or
                // unreadable): Postgres decides, and the cache is refilled.
                WarmStep::AskPostgres(i) => match self.pg.get_active(&scopes[i]) {
                    Ok(Some(entry)) => {
                        self.recache(&entry, raw[i].as_deref());
                        return Ok(Walk::Answer(Some(entry)));
                    }
                    Ok(None) => {
                        self.heal(&scopes[i], raw[i].as_deref());
                        from = i + 1;
                    }
                    // A later candidate's active cached entry proves a ban:
                    // answer it rather than the error (which fails open).
                    Err(e) => match first_cached_from(cached, now, i + 1) {
                        Some(entry) => {
                            log_cached_fallback(&e, &entry);
                            return Ok(Walk::Answer(Some(entry)));
                        }
                        None => return Err(e),
                    },
                },
            }
        }
    }
}

impl BlockStore for TieredBlockStore {
    /// Temp → Redis only. Permanent → one Postgres transaction holding the
    /// scope's advisory lock: the upsert, then the write-through to the
    /// Redis cache and mirror, then COMMIT. A failed write-through rolls the
    /// ban back (the Redis error is returned: neither tier has it); a failed
    /// COMMIT is repaired ([`Self::repair`]).
    fn block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError> {
        if new.ttl.is_some() {
            return self.redis.block(new);
        }
        match self.pg.block_serialized(new, |entry| self.cache_ban(entry)) {
            Ok((entry, ())) => Ok(entry),
            Err(f) => {
                if f.attempted {
                    tracing::warn!(scope = %new.scope, kind = f.error.kind(), error = %f.error, "permanent block not stored; reconciling redis with postgres");
                    self.repair(&new.scope);
                }
                Err(f.error)
            }
        }
    }

    /// One Postgres transaction holding the scope's advisory lock: the
    /// revocation, then the removal of the cached entry (temp or permanent)
    /// and the mirror member, then COMMIT. Returns the entries removed over
    /// both tiers. A Postgres failure leaves Redis untouched; a failed Redis
    /// removal rolls the revocation back; a failed COMMIT is repaired.
    fn unblock(
        &self,
        scope: &ScopeKey,
        reason: &str,
        revoked_by: &str,
    ) -> Result<usize, StoreError> {
        match self
            .pg
            .unblock_serialized(scope, reason, revoked_by, |_| self.forget(scope))
        {
            Ok((revoked, deleted)) => Ok(revoked + deleted),
            Err(f) => {
                if f.attempted {
                    tracing::warn!(scope = %scope, kind = f.error.kind(), error = %f.error, "revocation not stored; reconciling redis with postgres");
                    self.repair(scope);
                }
                Err(f.error)
            }
        }
    }

    /// The scope's own entry (no covering ranges), looked up like an
    /// ingress candidate.
    fn get_active(&self, scope: &ScopeKey) -> Result<Option<BlockEntry>, StoreError> {
        self.lookup(std::slice::from_ref(scope), false)
    }

    /// One pipelined round trip: MGET of the candidates' entries (an
    /// address's covering ranges at the prefix lengths in use included),
    /// SMISMEMBER of the warm marker and the candidates, and the read of
    /// the range index. A clean request with a warm mirror ends there; a
    /// second round trip only when the index names a prefix length the
    /// candidates lacked (the first range of a new length).
    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        self.lookup(scopes, true)
    }

    /// Active permanent blocks, from Postgres.
    fn active_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        self.pg.active_blocks(scope_type)
    }

    /// Active temporary blocks, from Redis (SCAN).
    fn active_temp_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        self.redis.active_temp_blocks(scope_type)
    }

    /// The permanent tier's trail, from Postgres.
    fn trail(&self, scope: &ScopeKey, limit: usize) -> Result<Option<Vec<TrailRow>>, StoreError> {
        self.pg.trail(scope, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn entry(expires_at: Option<f64>) -> Option<BlockEntry> {
        Some(BlockEntry {
            scope_type: "user".into(),
            scope_value: "u".into(),
            reason: String::new(),
            rule_name: String::new(),
            status_code: 429,
            message: String::new(),
            created_at: 0.0,
            expires_at,
            revoked_at: None,
            metadata: Map::new(),
        })
    }

    #[test]
    fn coalesced_warnings_log_once_per_window_with_the_count() {
        let c = Coalesced::new();
        assert_eq!(c.hit_at(0), Some(1), "the first one is logged");
        for ms in [1, 500, COALESCE_MS - 2] {
            assert_eq!(c.hit_at(ms), None, "within the window: counted only");
        }
        assert_eq!(
            c.hit_at(COALESCE_MS),
            Some(4),
            "the three counted plus this one"
        );
        assert_eq!(c.hit_at(COALESCE_MS + 1), None);
    }

    #[test]
    fn first_cached_from_skips_inactive_and_earlier_entries() {
        let cached = [entry(None), None, entry(Some(5.0)), entry(Some(50.0))];
        assert!(first_cached_from(&cached, 10.0, 0).is_some_and(|e| e.expires_at.is_none()));
        assert_eq!(
            first_cached_from(&cached, 10.0, 1).and_then(|e| e.expires_at),
            Some(50.0)
        );
        assert_eq!(first_cached_from(&cached, 60.0, 1), None);
    }

    #[test]
    fn warm_steps_follow_candidate_order() {
        let cached = [None, entry(Some(5.0)), entry(None)];
        // An expired temp entry on a member: ask Postgres about it first.
        assert_eq!(
            warm_step(&cached, &[false, true, false], 10.0, 0),
            WarmStep::AskPostgres(1)
        );
        // Not active in Postgres: continue after it, to the cached ban.
        assert_eq!(
            warm_step(&cached, &[false, true, false], 10.0, 2),
            WarmStep::Hit(2)
        );
        assert_eq!(
            warm_step(&cached, &[false, false, false], 1.0, 0),
            WarmStep::Hit(1)
        );
        assert_eq!(
            warm_step(&[None, None], &[false, false], 1.0, 0),
            WarmStep::Clean
        );
        assert_eq!(
            warm_step(&[None, None], &[false, true], 1.0, 0),
            WarmStep::AskPostgres(1)
        );
    }

    #[test]
    fn cold_plans_ask_postgres_only_before_the_first_active_entry() {
        let cached = [None, entry(Some(5.0)), entry(None), None];
        assert_eq!(
            cold_plan(&cached, 10.0),
            ColdPlan {
                upto: 2,
                first_cached: Some(2)
            }
        );
        assert_eq!(
            cold_plan(&[None, None], 0.0),
            ColdPlan {
                upto: 2,
                first_cached: None
            }
        );
    }
}
