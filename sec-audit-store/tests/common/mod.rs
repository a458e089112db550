//! Shared test harness: real Redis and Postgres, isolated per test.
//!
//! - Redis at `SEC_AUDIT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`);
//!   each test uses its own key prefix `t:{test}:{pid}:{nanos}`.
//! - Postgres at `SEC_AUDIT_TEST_DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`); each test uses its own schema,
//!   dropped at the end.
//! - A missing server fails the test, naming what is missing and the URL.
//! - Private servers (`redis-server`, a Postgres cluster via `initdb` and
//!   `pg_ctl` run as user `postgres`) for tests that stop and restart them.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use sec_audit_core::ScopeKey;
use sec_audit_core::{Clock, SystemClock};
use sec_audit_store::{NewBlock, PostgresConfig, RedisConfig, RedisPool};
use serde_json::Map;

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub fn redis_url() -> String {
    std::env::var("SEC_AUDIT_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

pub fn pg_url() -> String {
    std::env::var("SEC_AUDIT_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

pub fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `{test}:{pid}:{nanos}`-style unique suffix.
pub fn unique(test: &str) -> String {
    format!("{test}:{}:{}", std::process::id(), nanos())
}

/// Connects to Redis or fails the test saying what is missing.
pub fn redis_conn(url: &str) -> redis::Connection {
    let client = redis::Client::open(url)
        .unwrap_or_else(|e| panic!("Redis URL {url} is invalid (SEC_AUDIT_TEST_REDIS_URL): {e}"));
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(3)).unwrap_or_else(|e| {
        panic!("Redis is required for this test but is not reachable at {url} (set SEC_AUDIT_TEST_REDIS_URL): {e}")
    });
    let pong: String = redis::cmd("PING")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("Redis at {url} does not answer PING: {e}"));
    assert_eq!(pong, "PONG");
    conn
}

/// Connects to Postgres or fails the test saying what is missing.
pub fn pg_conn(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| {
        panic!("Postgres is required for this test but is not reachable at {url} (set SEC_AUDIT_TEST_DATABASE_URL): {e}")
    })
}

/// A test's private slice of the shared Redis: its own key prefix. Every
/// key under it is deleted when it drops.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    pub pool: RedisPool,
    raw: std::sync::Mutex<redis::Connection>,
}

impl TestRedis {
    pub fn new(test: &str) -> TestRedis {
        Self::at(&redis_url(), test)
    }

    pub fn at(url: &str, test: &str) -> TestRedis {
        let raw = redis_conn(url);
        let prefix = format!("t:{}", unique(test));
        let pool = RedisPool::new(&Self::config_for(url, &prefix)).expect("valid redis config");
        TestRedis {
            url: url.to_string(),
            prefix,
            pool,
            raw: std::sync::Mutex::new(raw),
        }
    }

    pub fn config_for(url: &str, prefix: &str) -> RedisConfig {
        RedisConfig::new(url)
            .with_key_prefix(prefix)
            .with_connect_timeout(Duration::from_millis(800))
            .with_command_timeout(Duration::from_millis(800))
            .with_pool_size(8)
    }

    pub fn config(&self) -> RedisConfig {
        Self::config_for(&self.url, &self.prefix)
    }

    /// Runs a raw command on a direct (non-store) connection.
    pub fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let mut c = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        cmd.query(&mut *c)
            .unwrap_or_else(|e| panic!("raw redis command failed: {e}"))
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Every key under this test's prefix (SCAN).
    pub fn keys(&self) -> Vec<String> {
        let mut c = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        scan_all(&mut c, &format!("{}:*", glob_escape(&self.prefix)))
    }

    /// The FLUSHALL equivalent for an isolated test: other tests share this
    /// Redis, so only this test's keys are deleted.
    pub fn flush_prefix(&self) -> usize {
        let keys = self.keys();
        let mut c = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in keys.chunks(500) {
            let _: i64 = redis::cmd("DEL").arg(chunk).query(&mut *c).unwrap_or(0);
        }
        keys.len()
    }

    pub fn ttl(&self, key: &str) -> i64 {
        self.cmd(redis::cmd("TTL").arg(key))
    }

    /// Scans every key under the prefix and asserts each has a TTL.
    pub fn assert_all_keys_have_ttl(&self) -> usize {
        let keys = self.keys();
        let mut c = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        assert_every_key_has_ttl(&mut c, &keys);
        keys.len()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.flush_prefix();
    }
}

pub fn scan_all(c: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(c)
            .unwrap_or_else(|e| panic!("SCAN failed: {e}"));
        out.extend(keys);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

pub fn assert_every_key_has_ttl(c: &mut redis::Connection, keys: &[String]) {
    for k in keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(k)
            .query(c)
            .unwrap_or_else(|e| panic!("TTL failed: {e}"));
        assert_ne!(ttl, -1, "redis key {k} has no TTL");
    }
}

pub fn glob_escape(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A test's own Postgres schema, dropped when it drops.
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    pub fn new(test: &str) -> TestSchema {
        Self::at(&pg_url(), test)
    }

    pub fn at(url: &str, test: &str) -> TestSchema {
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(20)
            .collect();
        let name = format!(
            "t_{}_{}_{}",
            short.to_lowercase(),
            std::process::id(),
            nanos() % 1_000_000_000_000
        );
        let mut c = pg_conn(url);
        c.batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .unwrap_or_else(|e| panic!("cannot create schema {name} at {url}: {e}"));
        TestSchema {
            url: url.to_string(),
            name,
        }
    }

    pub fn config(&self) -> PostgresConfig {
        PostgresConfig::new(&self.url)
            .with_search_path(&self.name)
            .with_connect_timeout(Duration::from_secs(2))
            .with_statement_timeout(Duration::from_secs(10))
            .with_pool_size(12)
    }

    /// A direct connection whose search path is the schema.
    pub fn conn(&self) -> PgConnection {
        let mut c = pg_conn(&self.url);
        c.batch_execute(&format!("SET search_path TO \"{}\"", self.name))
            .unwrap_or_else(|e| panic!("cannot set search_path: {e}"));
        c
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&self.url) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
        }
    }
}

pub fn scalar_i64(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel::RunQueryDsl;
    diesel::sql_query(sql)
        .get_result::<N>(conn)
        .unwrap_or_else(|e| panic!("query failed: {sql}: {e}"))
        .n
}

pub fn new_block(scope: &str, value: &str, ttl: Option<u64>) -> NewBlock {
    NewBlock {
        scope: ScopeKey::new(scope, value),
        reason: "test reason".into(),
        rule_name: "test_rule".into(),
        status_code: 403,
        message: "blocked".into(),
        ttl,
        metadata: Map::new(),
    }
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A `redis-server` this test owns, on a free port, with no persistence.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "sec-audit-redis-{}-{}",
            std::process::id(),
            nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut r = PrivateRedis {
            port,
            dir,
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits for PING.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (is it installed and on PATH?): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).expect("url");
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server on port {} did not come up",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().map(|c| c.id()).expect("server running");
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} {pid} failed");
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Postgres cluster this test owns (initdb + pg_ctl as user `postgres`),
/// on a free port in a temp dir.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    running: bool,
}

fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    let path = format!("{PG_BIN}/{program}");
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--", &path]).args(args);
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {path} as user postgres via runuser: {e}"))
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        let port = free_port();
        let dir = PathBuf::from(format!(
            "/tmp/sec-audit-pg-{}-{}",
            std::process::id(),
            nanos()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let chown = Command::new("chown").arg("postgres").arg(&dir).status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "cannot chown {} to postgres",
            dir.display()
        );
        let data = dir.join("data");
        let out = as_postgres(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed (Postgres binaries expected in {PG_BIN}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = PrivatePostgres {
            port,
            dir,
            running: false,
        };
        pg.restart();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn restart(&mut self) {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let out = as_postgres(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-o",
                &opts,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "20",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.running = true;
    }

    /// Stops the cluster at once (`-m immediate`).
    pub fn stop(&mut self) {
        let data = self.dir.join("data");
        let _ = as_postgres(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
        self.running = false;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            self.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` and returns its result with the time it took.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}
