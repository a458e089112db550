//! Shared helpers for the end-to-end tests: they run the built `sec-audit`
//! binary with a clean environment (no URL overrides, no RUST_LOG).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sec-audit");

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

pub fn example(name: &str) -> PathBuf {
    root().join("examples").join(name)
}

/// The `sec-audit` command with the URL overrides and RUST_LOG removed, so
/// the configuration files written by the tests are what counts.
pub fn cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("SEC_AUDIT_REDIS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("SEC_AUDIT_REDIS_CA_FILE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs `sec-audit ARGS…`.
pub fn run(args: &[&str]) -> Output {
    cmd()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both streams otherwise.
pub fn expect_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit status {:?}, expected {code}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Parses JSONL output.
pub fn records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Records whose body is `audit.enforcement.{kind}`.
pub fn of<'a>(recs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    let body = format!("audit.enforcement.{kind}");
    recs.iter().filter(|r| r["body"] == body.as_str()).collect()
}

pub fn attr<'a>(r: &'a Value, key: &str) -> &'a str {
    r["attributes"][key].as_str().unwrap_or("")
}

/// A unique name for this test run.
pub fn unique(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{test}_{}_{nanos}", std::process::id())
}

/// A scratch directory removed at the end of the test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> Self {
        let p = std::env::temp_dir().join(format!("sec-audit-cli-{}", unique(test)));
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn redis_url() -> String {
    std::env::var("SEC_AUDIT_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_REDIS_URL.to_string())
}

pub fn pg_url() -> String {
    std::env::var("SEC_AUDIT_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

/// Connects to the test Redis or fails naming what is missing.
pub fn redis_conn() -> redis::Connection {
    let url = redis_url();
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("SEC_AUDIT_TEST_REDIS_URL {url} is invalid: {e}"));
    let mut conn = client
        .get_connection_with_timeout(std::time::Duration::from_secs(3))
        .unwrap_or_else(|e| {
            panic!("Redis is required for this test but is not reachable at {url} (set SEC_AUDIT_TEST_REDIS_URL): {e}")
        });
    let pong: String = redis::cmd("PING")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("Redis at {url} does not answer PING: {e}"));
    assert_eq!(pong, "PONG");
    conn
}

/// A unique Redis key prefix whose keys are deleted at the end.
pub struct RedisPrefix {
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new(test: &str) -> Self {
        // Fail now, clearly, if Redis is down.
        drop(redis_conn());
        RedisPrefix {
            prefix: format!("t_cli:{}", unique(test)),
        }
    }

    pub fn keys(&self) -> Vec<String> {
        let mut conn = redis_conn();
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}:*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("SCAN failed: {e}"));
            out.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        let mut conn = redis_conn();
        let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query(&mut conn);
    }
}

/// A count of the replay summary, e.g. `summary_count(err, "denied requests")`.
pub fn summary_count(summary: &str, label: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix(label)?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no `{label}` count in the summary:\n{summary}"))
}

/// A connection to the test database, or a panic naming it.
pub fn pg() -> diesel::PgConnection {
    use diesel::Connection;
    let url = pg_url();
    diesel::PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("Postgres is required for this test but is not reachable at {url} (set SEC_AUDIT_TEST_DATABASE_URL): {e}")
    })
}

/// A scratch Postgres schema of the test's own, dropped at the end.
pub struct Schema {
    pub name: String,
}

impl Schema {
    pub fn new(test: &str) -> Self {
        use diesel::connection::SimpleConnection;
        let name: String = unique(test)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        pg().batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .unwrap_or_else(|e| panic!("CREATE SCHEMA {name}: {e}"));
        Schema { name }
    }

    /// The test database URL with this schema as the search path.
    pub fn url(&self) -> String {
        let base = pg_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-csearch_path%3D{}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        let _ = pg().batch_execute(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name));
    }
}
