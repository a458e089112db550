//! Redis detection state: counters and history shared by every worker
//! (the `Counters` and `HistoryStore` traits).
//!
//! Nothing here ever fails to the caller: a Redis error degrades detection
//! (an `incr` returns `amount` as if the key were new, a read returns the
//! default or nothing, a write is dropped) and logs a warning naming the
//! operation.

use std::sync::{Arc, LazyLock};

use sec_audit_core::{Clock, SystemClock};
use sec_audit_core::{
    Counters, HistoryEntry, HistoryRetention, HistoryRow, HistoryStore, ScopeKey,
};
use serde_json::{Map, Value};

use crate::block::StoreError;
use crate::redis_pool::{unique_id, Lua, RedisPool};
use crate::stats::StoreStats;

/// TTL (seconds) given to a counter written without one: no Redis key may
/// live forever. One day.
pub const DEFAULT_COUNTER_TTL: u64 = 86_400;

/// Seconds a history key outlives its window.
pub const HISTORY_TTL_MARGIN: u64 = 60;

fn degraded(operation: &'static str, err: &StoreError) {
    // Once per call during an outage: coalesced (one line per kind per
    // second, with a count), and the kind only, never the message.
    sec_audit_core::log_coalesce::log_coalesced(
        sec_audit_core::log_coalesce::Level::Warn,
        "redis detection state degraded",
        &format!("{operation}: {}", err.kind()),
    );
}

/// A counter is a hash `{v: value, x: expires_at}`: `x` is the window's end
/// on the runtime's clock (seconds, shortest round-trip text; empty: never),
/// compared against the `now` each call passes, so a replay driven by its
/// log's clock counts windows as the memory store does. The key's TTL (wall
/// clock) is only a safety bound: set with the window, never shorter than
/// what the clock still needs for a key that is being counted.
///
/// Live (`x > now`): HINCRBY. Otherwise — absent, past `x`, or not a hash
/// (a counter written by an older version) — the key starts again at
/// `amount` with `x` and the TTL. ARGV: amount, TTL seconds, now, x.
static INCR: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"local k = KEYS[1]
local now = tonumber(ARGV[3])
if redis.call('TYPE', k).ok == 'hash' then
  local x = redis.call('HGET', k, 'x')
  local xn = x and tonumber(x)
  if x == '' or (xn and xn > now) then
    local v = redis.call('HINCRBY', k, 'v', ARGV[1])
    local ttl = redis.call('TTL', k)
    if ttl == -1 then
      redis.call('EXPIRE', k, ARGV[2])
    elseif xn then
      local need = math.ceil(xn - now)
      if ttl < need - 1 then
        redis.call('EXPIRE', k, need)
      end
    end
    return v
  end
end
redis.call('DEL', k)
redis.call('HSET', k, 'v', ARGV[1], 'x', ARGV[4])
redis.call('EXPIRE', k, ARGV[2])
return tonumber(ARGV[1])",
    )
});

/// The value while live at `now` (ARGV[1]), else nil.
static GET: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"local k = KEYS[1]
if redis.call('TYPE', k).ok ~= 'hash' then return false end
local r = redis.call('HMGET', k, 'v', 'x')
if not r[1] then return false end
local xn = r[2] and tonumber(r[2])
if r[2] == '' or (xn and xn > tonumber(ARGV[1])) then return r[1] end
return false",
    )
});

/// Replaces the counter. ARGV: value, TTL seconds, x.
static SET: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'x', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1",
    )
});

/// A live counter ends `ttl` from now; a dead one is removed. ARGV: TTL
/// seconds, now, new x.
static EXPIRE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"local k = KEYS[1]
if redis.call('TYPE', k).ok ~= 'hash' then return redis.call('DEL', k) end
local x = redis.call('HGET', k, 'x')
local xn = x and tonumber(x)
if not (x == '' or (xn and xn > tonumber(ARGV[2]))) or tonumber(ARGV[1]) <= 0 then
  redis.call('DEL', k)
  return 0
end
redis.call('HSET', k, 'x', ARGV[3])
redis.call('EXPIRE', k, ARGV[1])
return 1",
    )
});

/// Fixed-window counters under `{prefix}:ctr:{key}`, timed by the runtime's
/// clock (see [`INCR`]).
#[derive(Debug, Clone)]
pub struct RedisCounters {
    pool: RedisPool,
    default_ttl: u64,
    clock: Arc<dyn Clock>,
}

impl RedisCounters {
    /// Counters on `pool` (with their own round-trip counters), on the
    /// system clock; keys written without a TTL get [`DEFAULT_COUNTER_TTL`].
    pub fn new(pool: &RedisPool) -> Self {
        RedisCounters {
            pool: pool.with_own_stats(),
            default_ttl: DEFAULT_COUNTER_TTL,
            clock: Arc::new(SystemClock),
        }
    }

    /// Times windows by `clock` (the runtime's: the log's, in a replay).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Overrides the TTL given to keys written without one (at least 1 s).
    pub fn with_default_ttl(mut self, secs: u64) -> Self {
        self.default_ttl = secs.max(1);
        self
    }

    pub fn stats(&self) -> StoreStats {
        self.pool.stats()
    }

    /// The Redis key of counter `key`.
    pub fn redis_key(&self, key: &str) -> String {
        self.pool.key("ctr", key)
    }

    /// The key's TTL: the window, or the default when there is none.
    fn ttl(&self, ttl: Option<u64>) -> u64 {
        ttl.unwrap_or(self.default_ttl).max(1)
    }

    /// The window's end on the clock, as stored (`""`: never, like the
    /// memory store's counter without a TTL).
    fn expires_at(now: f64, ttl: Option<u64>) -> String {
        ttl.map_or_else(String::new, |t| num(now + t as f64))
    }
}

impl Counters for RedisCounters {
    fn incr(&self, key: &str, amount: i64, ttl_secs: Option<u64>) -> i64 {
        let now = self.clock.now();
        let keys = [self.redis_key(key)];
        let args = [
            amount.to_string(),
            self.ttl(ttl_secs).to_string(),
            num(now),
            Self::expires_at(now, ttl_secs),
        ];
        match self.pool.eval::<i64>(&INCR, &keys, &args) {
            Ok(v) => v,
            Err(e) => {
                degraded("incr", &e);
                amount
            }
        }
    }

    fn get_int(&self, key: &str, default: i64) -> i64 {
        let keys = [self.redis_key(key)];
        match self
            .pool
            .eval::<Option<String>>(&GET, &keys, &[num(self.clock.now())])
        {
            Ok(Some(s)) => match s.trim().parse::<i64>() {
                Ok(v) => v,
                Err(_) => {
                    degraded(
                        "get_int",
                        &StoreError::Decode(format!("counter `{key}` is not an integer")),
                    );
                    default
                }
            },
            Ok(None) => default,
            Err(e) => {
                degraded("get_int", &e);
                default
            }
        }
    }

    fn set(&self, key: &str, value: i64, ttl_secs: Option<u64>) {
        let now = self.clock.now();
        let keys = [self.redis_key(key)];
        let args = [
            value.to_string(),
            self.ttl(ttl_secs).to_string(),
            Self::expires_at(now, ttl_secs),
        ];
        if let Err(e) = self.pool.eval::<i64>(&SET, &keys, &args) {
            degraded("set", &e);
        }
    }

    fn delete(&self, key: &str) {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.redis_key(key));
        if let Err(e) = self.pool.query::<i64>(&cmd) {
            degraded("delete", &e);
        }
    }

    fn expire(&self, key: &str, ttl_secs: u64) {
        // A TTL of 0 removes the counter, like the memory store's "gone
        // from now".
        let now = self.clock.now();
        let keys = [self.redis_key(key)];
        let args = [ttl_secs.to_string(), num(now), num(now + ttl_secs as f64)];
        if let Err(e) = self.pool.eval::<i64>(&EXPIRE, &keys, &args) {
            degraded("expire", &e);
        }
    }
}

/// For every key: drop rows at or older than the cutoff, add the row, keep
/// the newest `max`, set the TTL. One script for all of an event's keys: one
/// round trip, atomic.
static APPEND: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r"local max = tonumber(ARGV[4])
for _, k in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', ARGV[1])
  redis.call('ZADD', k, ARGV[2], ARGV[3])
  local n = redis.call('ZCARD', k)
  if n > max then
    redis.call('ZREMRANGEBYRANK', k, 0, n - max - 1)
  end
  redis.call('EXPIRE', k, ARGV[5])
end
return #KEYS",
    )
});

/// The separator between a row's unique id and its JSON.
const ID_SEP: char = '|';

/// Event history: one sorted set per scope key, `{prefix}:hist:{scope:value}`,
/// score = `recorded_at`, member = `{unique id}|{summary JSON}`.
#[derive(Debug, Clone)]
pub struct RedisHistory {
    pool: RedisPool,
}

impl RedisHistory {
    pub fn new(pool: &RedisPool) -> Self {
        RedisHistory {
            pool: pool.with_own_stats(),
        }
    }

    pub fn stats(&self) -> StoreStats {
        self.pool.stats()
    }

    /// The Redis key of scope key `key`.
    pub fn redis_key(&self, key: &ScopeKey) -> String {
        self.pool.key("hist", key.as_str())
    }

    fn decode(member: &str) -> Option<HistoryRow> {
        let (_, json) = member.split_once(ID_SEP)?;
        match serde_json::from_str::<Map<String, Value>>(json) {
            Ok(m) => Some(Arc::new(HistoryEntry::from_json(m))),
            Err(_) => None,
        }
    }
}

/// Shortest text that parses back to the same f64 (never an exponent).
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else if x > 0.0 {
        "+inf".into()
    } else {
        "-inf".into()
    }
}

impl HistoryStore for RedisHistory {
    fn append(
        &self,
        keys: &[ScopeKey],
        recorded_at: f64,
        row: HistoryRow,
        retention: &HistoryRetention,
    ) {
        if keys.is_empty() || !recorded_at.is_finite() {
            return;
        }
        let json = match serde_json::to_string(&*row) {
            Ok(j) => j,
            Err(e) => {
                degraded("history_append", &StoreError::Decode(e.to_string()));
                return;
            }
        };
        let member = format!("{}{ID_SEP}{json}", unique_id());
        let window = if retention.window_seconds.is_finite() {
            retention.window_seconds.max(0.0)
        } else {
            0.0
        };
        let ttl = window.ceil() as u64 + HISTORY_TTL_MARGIN;
        let redis_keys: Vec<String> = keys.iter().map(|k| self.redis_key(k)).collect();
        let args = [
            num(recorded_at - window),
            num(recorded_at),
            member,
            retention.max_events_per_key.max(1).to_string(),
            ttl.to_string(),
        ];
        if let Err(e) = self.pool.eval::<i64>(&APPEND, &redis_keys, &args) {
            degraded("history_append", &e);
        }
    }

    fn query(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
    ) -> Vec<HistoryRow> {
        if limit == 0 {
            return Vec::new();
        }
        let redis_key = self.redis_key(key);
        let min = if since.is_nan() {
            "-inf".to_string()
        } else {
            format!("({}", num(since))
        };
        // Without a type filter the server applies the limit. With one, rows
        // are read in pages (the set is trimmed, so this is bounded).
        let page = if event_types.is_none() {
            limit
        } else {
            limit.saturating_mul(4).clamp(64, 1000)
        };
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            let mut cmd = redis::cmd("ZREVRANGEBYSCORE");
            cmd.arg(&redis_key)
                .arg("+inf")
                .arg(&min)
                .arg("LIMIT")
                .arg(offset)
                .arg(page);
            let members: Vec<String> = match self.pool.query(&cmd) {
                Ok(m) => m,
                Err(e) => {
                    degraded("history_query", &e);
                    return out;
                }
            };
            let got = members.len();
            for m in members {
                let Some(row) = Self::decode(&m) else {
                    tracing::debug!(key = %key, "history row skipped: does not parse");
                    continue;
                };
                let keep = match event_types {
                    None => true,
                    Some(types) => row
                        .event_type()
                        .is_some_and(|t| types.iter().any(|x| x == t)),
                };
                if keep {
                    out.push(row);
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
            if got < page || event_types.is_none() {
                return out;
            }
            offset += got;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_without_exponents() {
        assert_eq!(num(1_700_000_000.123_456), "1700000000.123456");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(f64::INFINITY), "+inf");
        assert_eq!(num(f64::NEG_INFINITY), "-inf");
        let x = 1_712_345_678.987_654_3_f64;
        assert_eq!(num(x).parse::<f64>().unwrap(), x);
    }

    #[test]
    fn members_decode_or_are_skipped() {
        assert!(RedisHistory::decode("abc|{\"a\":1}").is_some());
        assert!(RedisHistory::decode("abc|{\"a\":1, \"b\": \"x|y\"}").is_some());
        assert!(RedisHistory::decode("abc|not json").is_none());
        assert!(RedisHistory::decode("no separator").is_none());
        assert!(RedisHistory::decode("abc|[1,2]").is_none());
    }
}
