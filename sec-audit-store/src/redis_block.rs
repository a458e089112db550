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

use std::sync::Arc;

use sec_audit_core::Clock;
use sec_audit_rules::ScopeKey;

use crate::block::{BlockEntry, BlockStore, NewBlock, StoreError};
use crate::redis_pool::{glob_escape, RedisPool};
use crate::stats::StoreStats;

/// Redis-only block store.
#[derive(Debug, Clone)]
pub struct RedisBlockStore {
    pool: RedisPool,
    clock: Arc<dyn Clock>,
    permanent_ttl: u64,
}

impl RedisBlockStore {
    /// A store on `pool` (with its own round-trip counters). Permanent
    /// entries get a TTL of `permanent_ttl` seconds (at least 1).
    pub fn new(pool: &RedisPool, clock: Arc<dyn Clock>, permanent_ttl: u64) -> Self {
        RedisBlockStore {
            pool: pool.with_own_stats(),
            clock,
            permanent_ttl: permanent_ttl.max(1),
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

    /// The candidates' block keys and the one `MGET` of the lookup (shared
    /// with the async store).
    pub(crate) fn lookup_cmd(&self, scopes: &[ScopeKey]) -> (Vec<String>, redis::Cmd) {
        let keys: Vec<String> = scopes.iter().map(|s| self.block_key(s)).collect();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&keys);
        (keys, cmd)
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
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.block_key(&new.scope))
            .arg(Self::encode(&entry)?)
            .arg("EX")
            .arg(self.key_ttl(&entry, now));
        self.pool.query::<()>(&cmd)?;
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
        self.first_active(std::slice::from_ref(scope))
    }

    /// One MGET over every candidate key.
    fn first_active(&self, scopes: &[ScopeKey]) -> Result<Option<BlockEntry>, StoreError> {
        if scopes.is_empty() {
            return Ok(None);
        }
        let (keys, cmd) = self.lookup_cmd(scopes);
        let values: Vec<Option<String>> = self.pool.query(&cmd)?;
        Ok(self.pick_active(&keys, values))
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
