//! The Redis block store: `{prefix}:block:{scope_type}:{scope_value}` holding
//! the entry as JSON, every key with a TTL.
//!
//! A temporary entry's key lives exactly as long as the block. A permanent
//! entry's key lives `permanent_ttl` seconds: in the tiered store that is
//! the cache of a Postgres row; used alone (no permanent tier) it is a
//! long-lived entry that an operator re-applies if it must outlive that.
//!
//! A stored value that is not a valid entry is treated as absent and logged
//! as a warning (it never panics and never hides the other candidates of a
//! lookup); it expires with its key.
//!
//! **Ranges** ([`crate::ranges`]): a range block is an entry like any
//! other (`{prefix}:block:ip:10.0.0.0/24`). The *range index*
//! `{prefix}:ranges:lens`, a sorted set, names the prefix lengths in use:
//! member `4/24` or `6/48`, score the latest `expires_at` of a range of
//! that length (`inf` for a permanent one), written in the same script as
//! the entry; its TTL is never shorter than the longest entry's. The lookup
//! reads the index in its one round trip and checks, for an address
//! candidate, its covering ranges at the lengths the previous lookup found
//! in use; only when the index names a length that guess lacked (the first
//! range of a new length) does it look again, once, with the index's
//! lengths. The index is a superset (a revoked range leaves its length
//! until the index expires): never a missed range, at most a few keys more.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use sec_audit_core::Clock;
use sec_audit_core::ScopeKey;

use crate::block::{BlockEntry, BlockStore, NewBlock, StoreError};
use crate::ranges::{self, LenMask, SharedLens};
use crate::redis_pool::{glob_escape, Lua, RedisPool};
use crate::stats::StoreStats;
use crate::tiered::WARM_MEMBER;

/// Writes a range's entry and its length into the range index, atomically,
/// so the index never lacks the length of a stored range; drops index
/// members whose ranges all expired; keeps the index's TTL at least the
/// entry's. KEYS: entry, index. ARGV: entry JSON, entry TTL, index member,
/// its score (`expires_at`, or `inf`), now.
static BLOCK_RANGE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], 'GT', ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
return 1",
    )
});

/// The range index as read by a lookup: members and scores.
pub(crate) type IndexReply = Vec<(String, f64)>;

/// What a lookup learnt from the range index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexState {
    /// The lengths holding a live range.
    pub(crate) lens: LenMask,
    /// The tiered store's completeness marker is present.
    pub(crate) warm: bool,
}

/// A lookup's candidates: the given ones, each address followed by its
/// covering ranges at the lengths `used` (the guess).
pub(crate) struct Planned<'a> {
    pub(crate) used: LenMask,
    pub(crate) candidates: Cow<'a, [ScopeKey]>,
}

/// Redis-only block store.
#[derive(Debug, Clone)]
pub struct RedisBlockStore {
    pool: RedisPool,
    clock: Arc<dyn Clock>,
    permanent_ttl: u64,
    /// The prefix lengths the last lookup found in use (shared by clones).
    lens: Arc<SharedLens>,
}

impl RedisBlockStore {
    /// A store on `pool` (with its own round-trip counters). Permanent
    /// entries get a TTL of `permanent_ttl` seconds (at least 1).
    pub fn new(pool: &RedisPool, clock: Arc<dyn Clock>, permanent_ttl: u64) -> Self {
        RedisBlockStore {
            pool: pool.with_own_stats(),
            clock,
            permanent_ttl: permanent_ttl.max(1),
            lens: Arc::new(SharedLens::default()),
        }
    }

    pub fn stats(&self) -> StoreStats {
        self.pool.stats()
    }

    pub fn permanent_ttl(&self) -> u64 {
        self.permanent_ttl
    }

    pub(crate) fn pool(&self) -> &RedisPool {
        &self.pool
    }

    pub(crate) fn now(&self) -> f64 {
        self.clock.now()
    }

    /// The Redis key of a scope's entry.
    pub fn block_key(&self, scope: &ScopeKey) -> String {
        self.pool.key("block", scope.as_str())
    }

    /// Decodes a stored entry; `None` (with a warning) when it does not
    /// parse.
    pub(crate) fn decode(key: &str, raw: &str) -> Option<BlockEntry> {
        match serde_json::from_str::<BlockEntry>(raw) {
            Ok(e) => Some(e),
            Err(err) => {
                tracing::warn!(key, error = %err, "redis block entry does not decode; treated as absent");
                None
            }
        }
    }

    pub(crate) fn encode(entry: &BlockEntry) -> Result<String, StoreError> {
        serde_json::to_string(entry)
            .map_err(|e| StoreError::Decode(format!("entry does not encode: {e}")))
    }

    /// The Redis key of the range index.
    pub fn range_index_key(&self) -> String {
        self.pool.key("ranges", "lens")
    }

    /// The candidates' block keys and an `MGET` of them (shared with the
    /// async store).
    pub(crate) fn lookup_cmd(&self, scopes: &[ScopeKey]) -> (Vec<String>, redis::Cmd) {
        let keys: Vec<String> = scopes.iter().map(|s| self.block_key(s)).collect();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&keys);
        (keys, cmd)
    }

    /// Adds the read of the range index to a lookup pipeline.
    pub(crate) fn add_index_read(&self, pipe: &mut redis::Pipeline) {
        pipe.cmd("ZRANGE")
            .arg(self.range_index_key())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
    }

    /// The lookup's one round trip: `MGET` of the candidates' keys and the
    /// read of the range index.
    pub(crate) fn lookup_pipe(&self, scopes: &[ScopeKey]) -> (Vec<String>, redis::Pipeline) {
        let keys: Vec<String> = scopes.iter().map(|s| self.block_key(s)).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("MGET").arg(&keys);
        self.add_index_read(&mut pipe);
        (keys, pipe)
    }

    /// The candidates of a lookup, with the covering ranges at the lengths
    /// the last lookup found in use.
    pub(crate) fn plan<'a>(&self, scopes: &'a [ScopeKey]) -> Planned<'a> {
        let used = self.lens.load();
        Planned {
            candidates: ranges::expand(scopes, &used),
            used,
        }
    }

    /// Reads the index reply (and remembers its lengths for the next
    /// lookup). Returns what it says, and — when it names a length the
    /// plan lacked for one of the address candidates — the candidates to
    /// look at again.
    pub(crate) fn replan<'a>(
        &self,
        scopes: &'a [ScopeKey],
        planned: &Planned<'_>,
        index: &IndexReply,
    ) -> (IndexState, Option<Cow<'a, [ScopeKey]>>) {
        let state = self.read_index(index);
        let again = ranges::missed(scopes, &planned.used, &state.lens)
            .then(|| ranges::expand(scopes, &state.lens));
        (state, again)
    }

    fn read_index(&self, index: &IndexReply) -> IndexState {
        let mut state = IndexState {
            lens: LenMask::default(),
            warm: false,
        };
        let mut now = None;
        for (member, score) in index {
            if member == WARM_MEMBER {
                state.warm = true;
            } else if let Some((family, len)) = ranges::parse_index_member(member) {
                let now = *now.get_or_insert_with(|| self.clock.now());
                if *score > now {
                    state.lens.insert(family, len);
                }
            }
        }
        if self.lens.load() != state.lens {
            self.lens.store(&state.lens);
        }
        state
    }

    /// Writes `entry` under `scope`: a plain `SET` with the entry's TTL, or
    /// for a range [`BLOCK_RANGE`] (entry and index together).
    pub(crate) fn write_entry(&self, entry: &BlockEntry, now: f64) -> Result<(), StoreError> {
        let scope = entry.scope();
        let ttl = self.key_ttl(entry, now);
        match ranges::range_of(&scope) {
            None => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(self.block_key(&scope))
                    .arg(Self::encode(entry)?)
                    .arg("EX")
                    .arg(ttl);
                self.pool.query::<()>(&cmd)
            }
            Some(r) => {
                let score = entry
                    .expires_at
                    .map_or_else(|| "inf".to_string(), |at| at.to_string());
                self.pool
                    .eval::<i64>(
                        &BLOCK_RANGE,
                        &[self.block_key(&scope), self.range_index_key()],
                        &[
                            Self::encode(entry)?,
                            ttl.to_string(),
                            ranges::index_member(r.family(), r.prefix_len()),
                            score,
                            now.to_string(),
                        ],
                    )
                    .map(|_| ())
            }
        }
    }

    /// The first active entry among exactly these keys (one `MGET`).
    fn first_exact(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        let (keys, cmd) = self.lookup_cmd(scopes);
        let values: Vec<Option<String>> = self.pool.query(&cmd)?;
        Ok(self.pick_active(&keys, values))
    }

    /// The first active entry of an `MGET` reply, in candidate order.
    pub(crate) fn pick_active(
        &self,
        keys: &[String],
        values: Vec<Option<String>>,
    ) -> Option<BlockEntry> {
        let now = self.clock.now();
        keys.iter()
            .zip(values)
            .filter_map(|(k, v)| v.and_then(|raw| Self::decode(k, &raw)))
            .find(|e| e.is_active(now))
    }

    /// TTL in whole seconds for an entry written at `now`.
    fn key_ttl(&self, entry: &BlockEntry, now: f64) -> u64 {
        match entry.expires_at {
            Some(at) => ((at - now).ceil().max(1.0)) as u64,
            None => self.permanent_ttl,
        }
    }

    /// Entries of every key matching `{prefix}:block:{scope_type or *}:*`.
    fn scan_entries(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        let pattern = match scope_type {
            Some(t) => format!("{}:*", glob_escape(&self.pool.key("block", t))),
            None => format!("{}*", glob_escape(&self.pool.key("block", ""))),
        };
        let mut out = Vec::new();
        self.pool.scan(&pattern, |keys| {
            let mut cmd = redis::cmd("MGET");
            cmd.arg(&keys);
            let values: Vec<Option<String>> = self.pool.query(&cmd)?;
            for (k, v) in keys.iter().zip(values) {
                if let Some(e) = v.and_then(|raw| Self::decode(k, &raw)) {
                    if scope_type.is_none_or(|t| e.scope_type == t) {
                        out.push(e);
                    }
                }
            }
            Ok(())
        })?;
        out.sort_by(|a, b| (&a.scope_type, &a.scope_value).cmp(&(&b.scope_type, &b.scope_value)));
        Ok(out)
    }
}

impl BlockStore for RedisBlockStore {
    fn block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError> {
        let new = new.normalized()?;
        let now = self.clock.now();
        let entry = new.entry(now);
        self.write_entry(&entry, now)?;
        Ok(entry)
    }

    fn unblock(
        &self,
        scope: &ScopeKey,
        _reason: &str,
        _revoked_by: &str,
    ) -> Result<usize, StoreError> {
        crate::limits::check_scope(scope.scope(), scope.value())?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.block_key(scope));
        let n: i64 = self.pool.query(&cmd)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn get_active(&self, scope: &ScopeKey) -> Result<Option<BlockEntry>, StoreError> {
        self.first_exact(std::slice::from_ref(scope))
    }

    /// One round trip: `MGET` over every candidate key (with the covering
    /// ranges at the lengths in use) and the read of the range index. A
    /// second `MGET` only when the index names a length the first lacked.
    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        let planned = self.plan(scopes);
        let (keys, pipe) = self.lookup_pipe(&planned.candidates);
        let (values, index): (Vec<Option<String>>, IndexReply) = self.pool.pipeline(&pipe)?;
        match self.replan(scopes, &planned, &index).1 {
            None => Ok(self.pick_active(&keys, values)),
            Some(again) => self.first_exact(&again),
        }
    }

    fn active_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        let now = self.clock.now();
        let mut v = self.scan_entries(scope_type)?;
        v.retain(|e| e.is_permanent() && e.is_active(now));
        Ok(v)
    }

    fn active_temp_blocks(&self, scope_type: Option<&str>) -> Result<Vec<BlockEntry>, StoreError> {
        let now = self.clock.now();
        let mut v = self.scan_entries(scope_type)?;
        v.retain(|e| !e.is_permanent() && e.is_active(now));
        Ok(v)
    }
}
