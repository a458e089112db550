//! The real Redis and Postgres the benchmarks run against, isolated like the
//! store tests: a key prefix of its own on Redis, a schema of its own on
//! Postgres, both removed on drop. A server that cannot be reached is a
//! panic naming what is missing and the variable to set — never a silent
//! skip.
//!
//! - Redis: `SEC_AUDIT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//! - Postgres: `SEC_AUDIT_TEST_DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`).

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use sec_audit_core::Clock;
use sec_audit_store::{
    PostgresBlockStore, PostgresConfig, RedisConfig, RedisPool, TieredBlockStore, TieredOptions,
};

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn redis_url() -> String {
    std::env::var("SEC_AUDIT_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

pub fn pg_url() -> String {
    std::env::var("SEC_AUDIT_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

fn redis_conn(url: &str) -> redis::Connection {
    let client = redis::Client::open(url)
        .unwrap_or_else(|e| panic!("Redis URL {url} is invalid (SEC_AUDIT_TEST_REDIS_URL): {e}"));
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(3))
        .unwrap_or_else(|e| {
            panic!(
                "the benchmarks need Redis, which is not reachable at {url} \
                 (start redis-server or set SEC_AUDIT_TEST_REDIS_URL): {e}"
            )
        });
    let pong: String = redis::cmd("PING")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("Redis at {url} does not answer PING: {e}"));
    assert_eq!(pong, "PONG", "Redis at {url} answered PING with {pong}");
    conn
}

fn pg_conn(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| {
        panic!(
            "the benchmarks need PostgreSQL, which is not reachable at {url} \
             (start PostgreSQL or set SEC_AUDIT_TEST_DATABASE_URL): {e}"
        )
    })
}

/// A private key prefix on the shared Redis; every key under it is deleted
/// on drop.
pub struct BenchRedis {
    pub url: String,
    pub prefix: String,
    pub pool: RedisPool,
    raw: std::sync::Mutex<redis::Connection>,
}

impl BenchRedis {
    pub fn new(name: &str) -> BenchRedis {
        let url = redis_url();
        let raw = redis_conn(&url);
        let prefix = format!("bench:{name}:{}:{}", std::process::id(), crate::nanos());
        let config = RedisConfig::new(url.as_str())
            .with_key_prefix(prefix.as_str())
            .with_connect_timeout(Duration::from_millis(2000))
            .with_command_timeout(Duration::from_millis(2000))
            .with_pool_size(4);
        let pool = RedisPool::new(&config)
            .unwrap_or_else(|e| panic!("Redis configuration for {url} rejected: {e}"));
        BenchRedis {
            url,
            prefix,
            pool,
            raw: std::sync::Mutex::new(raw),
        }
    }

    /// `{prefix}:{rest}`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// SET on the raw (non-pool) connection, with a TTL.
    pub fn set(&self, key: &str, value: &str, ttl_secs: u64) {
        let mut c = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("EX")
            .arg(ttl_secs)
            .query(&mut *c)
            .unwrap_or_else(|e| panic!("SET {key} on Redis at {} failed: {e}", self.url));
    }

    /// Deletes every key under the prefix; returns how many.
    pub fn flush_prefix(&self) -> usize {
        let mut c = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        let pattern = format!("{}:*", glob_escape(&self.prefix));
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let step: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut *c);
            let Ok((next, batch)) = step else { break };
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for chunk in keys.chunks(500) {
            let _: Result<i64, _> = redis::cmd("DEL").arg(chunk).query(&mut *c);
        }
        keys.len()
    }
}

impl Drop for BenchRedis {
    fn drop(&mut self) {
        self.flush_prefix();
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A private schema on the shared Postgres, dropped on drop.
pub struct BenchSchema {
    pub url: String,
    pub name: String,
}

impl BenchSchema {
    pub fn new(name: &str) -> BenchSchema {
        let url = pg_url();
        let short: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(20)
            .collect();
        let name = format!(
            "bench_{}_{}_{}",
            short.to_lowercase(),
            std::process::id(),
            crate::nanos() % 1_000_000_000_000
        );
        let mut c = pg_conn(&url);
        c.batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .unwrap_or_else(|e| panic!("cannot create schema {name} at {url}: {e}"));
        BenchSchema { url, name }
    }

    pub fn config(&self) -> PostgresConfig {
        PostgresConfig::new(self.url.as_str())
            .with_search_path(self.name.as_str())
            .with_connect_timeout(Duration::from_secs(3))
            .with_statement_timeout(Duration::from_secs(30))
            .with_pool_size(4)
    }

    /// A direct connection whose search path is the schema.
    pub fn conn(&self) -> PgConnection {
        let mut c = pg_conn(&self.url);
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .unwrap_or_else(|e| panic!("cannot set search_path: {e}"));
        c
    }

    /// Bans `10.x.y.z` for ids `from..to` straight in SQL (as an import
    /// would), in batches.
    pub fn bulk_ban(&self, from: i64, to: i64) {
        let mut c = self.conn();
        let mut start = from;
        while start < to {
            let end = (start + 25_000).min(to);
            c.batch_execute(&format!(
                "INSERT INTO permanent_blocks (scope_type, scope_value, message, created_at) \
                 SELECT 'ip', '10.' || (g / 65536) || '.' || ((g / 256) % 256) || '.' || (g % 256), 'bulk', now() \
                 FROM generate_series({start}, {}) AS g",
                end - 1
            ))
            .unwrap_or_else(|e| panic!("bulk insert of bans failed: {e}"));
            start = end;
        }
    }

    /// Bans `count` ip ranges straight in SQL: `/24`s in 172.16/12, every
    /// tenth a `/20` instead (two prefix lengths in use).
    pub fn bulk_ban_ranges(&self, count: i64) {
        self.conn()
            .batch_execute(&format!(
                "INSERT INTO permanent_blocks (scope_type, scope_value, message, created_at) \
                 SELECT 'ip', CASE WHEN g % 10 = 0 \
                     THEN '172.' || (16 + g / 16) || '.' || ((g % 16) * 16) || '.0/20' \
                     ELSE '172.' || (16 + g / 256) || '.' || (g % 256) || '.0/24' END, 'bulk range', now() \
                 FROM generate_series(1, {count}) AS g"
            ))
            .unwrap_or_else(|e| panic!("bulk insert of ranges failed: {e}"));
    }
}

impl Drop for BenchSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.url) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

/// A tiered block store over `redis` and a migrated `schema`.
pub fn tiered_store(
    redis: &BenchRedis,
    schema: &BenchSchema,
    clock: Arc<dyn Clock>,
) -> TieredBlockStore {
    let pg = PostgresBlockStore::new(&schema.config(), Arc::clone(&clock))
        .unwrap_or_else(|e| panic!("Postgres configuration rejected: {e}"));
    pg.run_migrations()
        .unwrap_or_else(|e| panic!("migrations on {} failed: {e}", schema.url));
    TieredBlockStore::new(&redis.pool, pg, clock, TieredOptions::default())
}
