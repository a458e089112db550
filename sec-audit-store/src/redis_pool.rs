//! A lazily connecting, thread-safe pool of Redis connections with bounded
//! connect and command timeouts, shared by every Redis-backed store.
//!
//! - Building a pool opens nothing; the first command connects.
//! - Every connection has read and write timeouts (`command_timeout`); a
//!   caller waits at most `connect_timeout` for a connection.
//! - A connection that saw an I/O error is discarded. When a pooled
//!   connection turns out to be dead (the server restarted, or closed an idle
//!   connection), every connection opened before is marked stale, and the
//!   command is retried once on a fresh connection: a restarted server is
//!   used again at once, without a failed request per stale connection.
//! - A `READONLY` reply (the connection reaches a replica: after a failover
//!   the old primary was demoted, and the endpoint now names the new one) is
//!   handled the same way: the connection is dropped, older ones are marked
//!   stale, and the command is retried once on a fresh connection. The
//!   server refused the write, so the retry cannot apply it twice.
//! - `rediss://` connects over TLS (rustls); see [`RedisConfig::client`].
//! - Checkout validation does no I/O (no PING), so a command costs exactly
//!   one round trip.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{
    Cmd, ConnectionLike, ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind,
};

use crate::block::StoreError;
use crate::config::RedisConfig;
use crate::failfast::FailFast;
use crate::stats::{Counters, StoreStats};

struct Manager {
    client: redis::Client,
    connect_timeout: Duration,
    command_timeout: Duration,
    generation: Arc<AtomicU64>,
}

pub(crate) struct PooledConn {
    conn: redis::Connection,
    generation: u64,
    poisoned: bool,
}

fn stale() -> RedisError {
    RedisError::from(io::Error::new(
        io::ErrorKind::NotConnected,
        "stale pooled connection",
    ))
}

impl r2d2::ManageConnection for Manager {
    type Connection = PooledConn;
    type Error = RedisError;

    fn connect(&self) -> Result<PooledConn, RedisError> {
        let generation = self.generation.load(Ordering::Acquire);
        let conn = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        conn.set_read_timeout(Some(self.command_timeout))?;
        conn.set_write_timeout(Some(self.command_timeout))?;
        Ok(PooledConn {
            conn,
            generation,
            poisoned: false,
        })
    }

    fn is_valid(&self, c: &mut PooledConn) -> Result<(), RedisError> {
        if c.poisoned || !c.conn.is_open() || c.generation < self.generation.load(Ordering::Acquire)
        {
            return Err(stale());
        }
        Ok(())
    }

    fn has_broken(&self, c: &mut PooledConn) -> bool {
        c.poisoned || !c.conn.is_open() || c.generation < self.generation.load(Ordering::Acquire)
    }
}

struct Shared {
    pool: r2d2::Pool<Manager>,
    generation: Arc<AtomicU64>,
    key_prefix: String,
    connect_timeout: Duration,
    down: FailFast,
}

/// A handle on a Redis connection pool. Cloning shares the pool and the
/// round-trip counters; [`RedisPool::with_own_stats`] shares the pool with
/// fresh counters (each store built on a pool counts its own round trips).
#[derive(Clone)]
pub struct RedisPool {
    shared: Arc<Shared>,
    stats: Arc<Counters>,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("key_prefix", &self.shared.key_prefix)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

pub(crate) enum Failure {
    Store(StoreError),
    Redis(RedisError),
}

impl Failure {
    fn is_no_script(&self) -> bool {
        matches!(self, Failure::Redis(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript))
    }
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        match f {
            Failure::Store(e) => e,
            Failure::Redis(e) if e.is_timeout() => StoreError::Timeout(format!("redis: {e}")),
            Failure::Redis(e) => StoreError::Redis(e.to_string()),
        }
    }
}

/// A server-side Lua script, sent by hash (EVALSHA) and by source only when
/// the server does not know it yet.
pub(crate) struct Lua {
    src: &'static str,
    hash: String,
}

impl Lua {
    pub(crate) fn new(src: &'static str) -> Lua {
        Lua {
            src,
            hash: redis::Script::new(src).get_hash().to_string(),
        }
    }

    fn cmd(&self, by_hash: bool, keys: &[String], args: &[String]) -> Cmd {
        let mut cmd = if by_hash {
            let mut c = redis::cmd("EVALSHA");
            c.arg(&self.hash);
            c
        } else {
            let mut c = redis::cmd("EVAL");
            c.arg(self.src);
            c
        };
        cmd.arg(keys.len()).arg(keys).arg(args);
        cmd
    }

    /// Adds this script to a pipeline by source (EVAL): a pipeline cannot
    /// recover from NOSCRIPT halfway through.
    pub(crate) fn add_to(&self, pipe: &mut Pipeline, keys: &[String], args: &[String]) {
        pipe.add_command(self.cmd(false, keys, args));
    }
}

impl RedisPool {
    /// Builds the pool without connecting. Fails only on invalid settings.
    pub fn new(config: &RedisConfig) -> Result<RedisPool, StoreError> {
        config.validate()?;
        let client = config.client()?;
        let generation = Arc::new(AtomicU64::new(0));
        let manager = Manager {
            client,
            connect_timeout: config.connect_timeout,
            command_timeout: config.command_timeout,
            generation: generation.clone(),
        };
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .min_idle(Some(0))
            .connection_timeout(config.connect_timeout)
            .test_on_check_out(true)
            .idle_timeout(Some(Duration::from_secs(300)))
            .max_lifetime(Some(Duration::from_secs(1800)))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager);
        Ok(RedisPool {
            shared: Arc::new(Shared {
                pool,
                generation,
                key_prefix: config.key_prefix.clone(),
                connect_timeout: config.connect_timeout,
                down: FailFast::new(config.failure_backoff),
            }),
            stats: Counters::new(),
        })
    }

    /// The same pool with its own, zeroed round-trip counters.
    pub fn with_own_stats(&self) -> RedisPool {
        RedisPool {
            shared: self.shared.clone(),
            stats: Counters::new(),
        }
    }

    pub fn key_prefix(&self) -> &str {
        &self.shared.key_prefix
    }

    /// Round trips sent through this handle (and its clones).
    pub fn stats(&self) -> StoreStats {
        self.stats.snapshot()
    }

    /// `{prefix}:{kind}:{rest}`.
    pub(crate) fn key(&self, kind: &str, rest: &str) -> String {
        let p = &self.shared.key_prefix;
        let mut k = String::with_capacity(p.len() + kind.len() + rest.len() + 2);
        k.push_str(p);
        k.push(':');
        k.push_str(kind);
        k.push(':');
        k.push_str(rest);
        k
    }

    fn checkout(&self) -> Result<r2d2::PooledConnection<Manager>, Failure> {
        if let Some(last) = self.shared.down.check() {
            return Err(Failure::Store(StoreError::Redis(format!(
                "unavailable, failing fast: {last}"
            ))));
        }
        match self.shared.pool.get() {
            Ok(c) => {
                self.shared.down.succeeded();
                Ok(c)
            }
            Err(e) => {
                let msg = e.to_string();
                let waited = self.shared.connect_timeout.as_millis();
                // r2d2 appends the last connection error, if any; with no
                // connection at all the server is unreachable (even when the
                // connect attempt is still hanging), otherwise the pool is
                // exhausted.
                if msg.contains(": ") || self.shared.pool.state().connections == 0 {
                    let msg = format!("cannot connect within {waited} ms ({msg})");
                    self.shared.down.failed(&msg);
                    Err(Failure::Store(StoreError::Redis(msg)))
                } else {
                    Err(Failure::Store(StoreError::Pool(format!(
                        "redis: no pooled connection free within {waited} ms"
                    ))))
                }
            }
        }
    }

    /// Runs one round trip on a pooled connection, retrying once on a fresh
    /// connection when the first one turns out to be dead.
    fn exec<T>(
        &self,
        f: impl Fn(&mut redis::Connection) -> Result<T, RedisError>,
    ) -> Result<T, Failure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut c = self.checkout()?;
            self.stats.redis(1);
            match f(&mut c.conn) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if e.is_io_error() || e.kind() == ErrorKind::Parse || !c.conn.is_open() {
                        // A timed-out or broken connection may be out of step
                        // with the server: never reuse it.
                        c.poisoned = true;
                    }
                    if attempt == 1 && e.is_connection_dropped() {
                        self.shared.generation.fetch_add(1, Ordering::AcqRel);
                        tracing::debug!(error = %e, "redis: pooled connection was dead, retrying on a fresh one");
                        continue;
                    }
                    if is_read_only(&e) {
                        // The server behind this connection is a replica now
                        // (failover): no pooled connection opened before is
                        // worth keeping.
                        c.poisoned = true;
                        self.shared.generation.fetch_add(1, Ordering::AcqRel);
                        if attempt == 1 {
                            tracing::debug!(
                                "redis: READONLY reply (failover?), retrying on a fresh connection"
                            );
                            continue;
                        }
                    }
                    return Err(Failure::Redis(e));
                }
            }
        }
    }

    /// One `GET` of `key`, taken as given (no prefix is added), on a pooled
    /// connection: the reference cost of a single round trip through this
    /// pool, for benchmarks and diagnostics.
    pub fn get_raw(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query(&cmd)
    }

    pub(crate) fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        Ok(self.exec(|c| cmd.query(c))?)
    }

    pub(crate) fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        Ok(self.exec(|c| pipe.query(c))?)
    }

    /// Runs a script: EVALSHA, then EVAL once if the server lacks it.
    pub(crate) fn eval<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        let by_hash = lua.cmd(true, keys, args);
        match self.exec(|c| by_hash.query(c)) {
            Ok(v) => Ok(v),
            Err(f) if f.is_no_script() => {
                let by_src = lua.cmd(false, keys, args);
                Ok(self.exec(|c| by_src.query(c))?)
            }
            Err(f) => Err(f.into()),
        }
    }

    /// Every key matching `pattern` (SCAN, never KEYS), in batches handed to
    /// `each`.
    pub(crate) fn scan(
        &self,
        pattern: &str,
        mut each: impl FnMut(Vec<String>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) = self.query(&cmd)?;
            if !keys.is_empty() {
                each(keys)?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// A `READONLY` error reply: the connection reaches a read-only replica.
/// Inside a script the reply keeps the code (Redis 7) or carries it after
/// the script error prefix (older servers).
fn is_read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly)
        || e.code() == Some("READONLY")
        || e.detail()
            .is_some_and(|d| d.contains("READONLY You can't write"))
}

/// Escapes glob metacharacters for SCAN MATCH.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A process-unique id: a random per-process part and a counter, fixed
/// width so ids of one process sort in creation order.
pub(crate) fn unique_id() -> String {
    static SEED: LazyLock<u64> = LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        h.finish()
    });
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:016x}{:016x}",
        *SEED,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_metacharacters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\d:e"), "a\\*b\\?\\[c\\]\\\\d:e");
    }

    #[test]
    fn ids_are_unique_and_ordered() {
        let a = unique_id();
        let b = unique_id();
        assert_ne!(a, b);
        assert!(a < b);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn building_a_pool_does_not_connect() {
        let p = RedisPool::new(&RedisConfig::new("redis://127.0.0.1:1")).unwrap();
        assert_eq!(p.stats(), StoreStats::default());
        assert_eq!(p.key("ctr", "x"), "sec_audit:ctr:x");
        assert!(RedisPool::new(&RedisConfig::new("bogus://")).is_err());
    }
}
