//! The runtime against real servers: Redis stopped under it (fail open and
//! fail closed, then recovery), and the tiered store (Redis + Postgres)
//! where a permanent ban survives losing every Redis key.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{event, SharedBuf};
use sec_audit_enforce::{
    Config, DenyReason, IngressDecision, ManualBlock, RequestView, Runtime, Sink,
};
use serde_json::json;

fn redis_url() -> String {
    std::env::var("SEC_AUDIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn database_url() -> String {
    std::env::var("SEC_AUDIT_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{tag}_{}_{nanos}", std::process::id())
}

struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start_on(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed to run this test (apt-get install redis-server)",
            );
        let mut redis = PrivateRedis {
            port,
            child: Some(child),
        };
        redis.wait_ready();
        redis
    }
    /// Waits until the server answers PING with PONG (a port that accepts
    /// is not yet a server that answers: a just-started Redis on a busy
    /// machine may take a while), failing loudly after a generous deadline.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .expect("a valid loopback url");
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "private redis-server on port {} exited: {status}",
                        self.port
                    );
                }
            }
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1)) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                if redis::cmd("PING").query::<String>(&mut c).as_deref() == Ok("PONG") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not answer PING on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed())
}

/// Connect and command timeouts of the outage test: a margin that holds on
/// a busy 2-core machine (a 300 ms timeout once failed there against a
/// just-started server).
const TIMEOUT_MS: u64 = 2000;
/// What one call may take while Redis is down: a connect and a command
/// timeout, plus scheduling slack — bounded, not a hang.
const OUTAGE_BOUND: Duration = Duration::from_millis(2 * TIMEOUT_MS + 2000);

#[test]
fn fail_open_and_fail_closed_with_the_real_redis_stopped_then_recovery() {
    let mut redis = PrivateRedis::start();
    let toml = format!(
        r#"
enabled = true
redis_url = "redis://127.0.0.1:{}"
key_prefix = "{}"
fail_closed_paths = ["^/admin"]
connect_timeout_ms = {TIMEOUT_MS}
command_timeout_ms = {TIMEOUT_MS}
[[rules]]
builtin = "brute_force_login"
threshold = 2
"#,
        redis.port,
        unique("failmodes")
    );
    let out = SharedBuf::default();
    let rt = Runtime::builder(Config::from_toml_str(&toml).unwrap())
        .sink(Sink::Writer(Box::new(out.clone())))
        .build()
        .expect("runtime builds without touching Redis");
    for _ in 0..2 {
        rt.handle_event(&event(
            json!({"event_type": "auth.login.failed", "source.address": "203.0.113.9"}),
        ));
    }
    assert!(matches!(
        rt.ingress_check(&RequestView::new("GET", "/", "203.0.113.9")),
        IngressDecision::Deny {
            reason: DenyReason::Blocked { .. },
            ..
        }
    ));
    assert!(rt
        .ingress_check(&RequestView::new("GET", "/", "198.51.100.1"))
        .is_allow());

    redis.stop();
    out.clear();
    let (d, took) = timed(|| rt.ingress_check(&RequestView::new("GET", "/shop", "198.51.100.1")));
    assert!(d.is_allow(), "fail open by default: {d:?}");
    assert!(took < OUTAGE_BOUND, "bounded by the timeouts: {took:?}");
    let (d, took) =
        timed(|| rt.ingress_check(&RequestView::new("GET", "/admin/users", "198.51.100.1")));
    assert!(
        matches!(
            d,
            IngressDecision::Deny {
                status_code: 429,
                reason: DenyReason::FailClosed,
                ..
            }
        ),
        "{d:?}"
    );
    assert!(took < OUTAGE_BOUND, "{took:?}");
    let failed = out.of("audit.enforcement.evaluation_failed");
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["attributes"]["enforcement.fail_mode"], "open");
    assert_eq!(failed[1]["attributes"]["enforcement.fail_mode"], "closed");
    for f in &failed {
        let t = f["attributes"]["error.type"].as_str().unwrap();
        assert!(
            !t.contains(' ') && t.len() < 40,
            "a short kind, not a message: {t}"
        );
    }
    // Egress degrades quietly while Redis is down.
    let (_, took) = timed(|| {
        rt.handle_event(&event(
            json!({"event_type": "auth.login.failed", "source.address": "192.0.2.1"}),
        ))
    });
    assert!(took < OUTAGE_BOUND, "{took:?}");

    // The server comes back on the same port: the runtime reconnects.
    let _redis = PrivateRedis::start_on(redis.port);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        out.clear();
        let d = rt.ingress_check(&RequestView::new("GET", "/admin/users", "198.51.100.1"));
        if d.is_allow() && out.of("audit.enforcement.evaluation_failed").is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "runtime did not recover after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql must be installed to run this test (apt-get install postgresql-client)");
    assert!(
        status.success(),
        "psql failed on {url}: {sql} — is PostgreSQL running at {url}?"
    );
}

#[test]
fn tiered_runtime_permanent_ban_survives_losing_redis() {
    let schema = unique("enforce_tiered");
    let base = database_url();
    psql(&base, &format!("CREATE SCHEMA {schema}"));
    let sep = if base.contains('?') { '&' } else { '?' };
    let db = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let prefix = unique("tiered");
    let toml = format!(
        r#"
enabled = true
redis_url = "{}"
database_url = "{db}"
key_prefix = "{prefix}"
"#,
        redis_url()
    );
    let config = Config::from_toml_str(&toml).unwrap();
    let pg = sec_audit_store::PostgresBlockStore::new(
        &sec_audit_enforce::stores::postgres_config(&config),
        Arc::new(sec_audit_core::SystemClock),
    )
    .unwrap();
    let applied = pg
        .run_migrations()
        .expect("migrations run (is PostgreSQL reachable?)");
    assert!(!applied.is_empty());
    let rt = Runtime::builder(config)
        .sink(Sink::Discard)
        .build()
        .unwrap();

    rt.block(&ManualBlock {
        scope_type: "user".into(),
        value: "mallory".into(),
        ttl: None,
        reason: "fraud".into(),
        ..Default::default()
    })
    .expect("permanent ban written");
    let req = RequestView::new("GET", "/", "198.51.100.1").with_user_id("mallory");
    assert!(!rt.ingress_check(&req).is_allow());

    // Lose every Redis key of this runtime (the FLUSHALL of an isolated test).
    let client = redis::Client::open(redis_url()).unwrap();
    let mut con = client.get_connection().expect("Redis reachable");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap();
    assert!(!keys.is_empty());
    for k in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(k).query(&mut con).unwrap();
        assert!(ttl > 0, "key {k} has no TTL");
    }
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut con).unwrap();
    assert!(
        !rt.ingress_check(&req).is_allow(),
        "the ban survives losing Redis"
    );
    assert!(rt
        .ingress_check(&RequestView::new("GET", "/", "198.51.100.1").with_user_id("alice"))
        .is_allow());

    assert!(rt.unblock("user", "mallory", "appeal", "ops").unwrap() >= 1);
    assert!(rt.ingress_check(&req).is_allow());
    assert_eq!(rt.list_active_blocks(Some("user")).unwrap().len(), 0);
    psql(&base, &format!("DROP SCHEMA {schema} CASCADE"));
}
