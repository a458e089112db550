//! The safelist and escalating bans on the real servers: offense counts as
//! Redis counters on the runtime's clock (every key with a TTL), older
//! blocks of a safelisted subject in Redis and Postgres ignored at ingress
//! and reported by `check_store` (W006), and `permanent_after` writing a
//! permanent ban to the Postgres tier.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{event, SharedBuf, T0};
use sec_audit_core::ManualClock;
use sec_audit_enforce::check::check_store;
use sec_audit_enforce::{BlockApiError, Config, ManualBlock, RequestView, Runtime, Sink};
use sec_audit_rules::ScopeKey;
use serde_json::{json, Value};

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

fn redis() -> redis::Connection {
    redis::Client::open(redis_url())
        .expect("redis url")
        .get_connection_with_timeout(std::time::Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("Redis must be up at {} for this test: {e}", redis_url()))
}

/// Every key under `prefix`, each asserted to have a TTL; then deleted.
fn keys_all_with_ttl_then_delete(prefix: &str) -> Vec<String> {
    let mut con = redis();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut con)
        .unwrap();
    for k in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(k).query(&mut con).unwrap();
        assert!(ttl > 0, "key {k} has no TTL ({ttl})");
    }
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut con).unwrap();
    }
    keys
}

fn runtime(toml: &str, clock: &Arc<ManualClock>, out: &SharedBuf) -> Runtime {
    Runtime::builder(Config::from_toml_str(toml).expect("config"))
        .clock(clock.clone())
        .sink(Sink::Writer(Box::new(out.clone())))
        .build()
        .expect("runtime")
}

fn fail_login(ip: &str) -> Value {
    json!({"event_type": "auth.login.failed", "source.address": ip, "user.name": "alice"})
}

fn last_applied(out: &SharedBuf) -> (Value, Value, Value) {
    let applied = out.of("audit.enforcement.block_applied");
    let a = &applied.last().expect("a block_applied")["attributes"];
    (
        a["scope.value"].clone(),
        a["enforcement.offense"].clone(),
        a["enforcement.ttl"].clone(),
    )
}

fn manual(scope: &str, value: &str, ttl: Option<u64>) -> ManualBlock {
    ManualBlock {
        scope_type: scope.into(),
        value: value.into(),
        ttl,
        reason: "test".into(),
        ..ManualBlock::default()
    }
}

#[test]
fn on_redis_offenses_escalate_on_the_runtime_clock_and_the_safelist_holds() {
    let prefix = unique("policy_redis");
    let base = format!(
        r#"
enabled = true
redis_url = "{}"
key_prefix = "{prefix}"
[[rules]]
builtin = "brute_force_login"
threshold = 1
[rule_actions]
brute_force_login = {{ ttl = 60 }}
[escalation]
factor = 2
max_ttl = 200
window = 100
"#,
        redis_url()
    );
    let clock = Arc::new(ManualClock::at_secs(T0));
    let out = SharedBuf::default();
    // An older block on the NAT address, from before the safelist.
    let before = runtime(&base, &clock, &SharedBuf::default());
    before
        .block(&manual("ip", "192.0.2.214", Some(3_600)))
        .expect("block in Redis");
    let rt = runtime(
        &format!("{base}\n[safelist]\nips = [\"192.0.2.0/24\"]\n"),
        &clock,
        &out,
    );
    assert!(rt
        .ingress_check(&RequestView::new("GET", "/", "192.0.2.214"))
        .is_allow());
    assert!(!before
        .ingress_check(&RequestView::new("GET", "/", "192.0.2.214"))
        .is_allow());
    let findings = check_store(rt.config(), rt_blocks(&rt).as_ref()).expect("Redis answers");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].id, "W006");
    assert!(
        findings[0].message.contains("ip:192.0.2.214")
            && findings[0].message.contains("safelist.ips 192.0.2.0/24"),
        "{}",
        findings[0].message
    );
    assert!(matches!(
        rt.block(&manual("ip", "192.0.2.7", Some(60))),
        Err(BlockApiError::Safelisted { .. })
    ));
    // The safelisted address offends: alerts, no block, no offense count.
    rt.handle_event(&event(fail_login("192.0.2.214")));
    assert!(out.of("audit.enforcement.block_applied").is_empty());
    assert_eq!(
        out.of("audit.enforcement.alert")[0]["attributes"]["enforcement.safelisted"],
        true
    );
    let ip = "203.0.113.9";
    let mut seen = Vec::new();
    for wait in [0.0, 60.0, 120.0, 200.0] {
        clock.advance_secs(wait);
        assert!(rt
            .ingress_check(&RequestView::new("GET", "/", ip))
            .is_allow());
        assert_eq!(rt.handle_event(&event(fail_login(ip))), 1);
        seen.push(last_applied(&out));
        let d = rt.ingress_check_async_blocking(ip);
        assert_eq!(d, seen.last().unwrap().2.as_u64());
    }
    let expect = |n: u64, ttl: u64| (json!(ip), json!(n), json!(ttl));
    assert_eq!(
        seen,
        [
            expect(1, 60),
            expect(2, 120),
            expect(3, 200),
            expect(4, 200)
        ]
    );
    // The count is a Redis counter of the detection state.
    let esc = rt.escalation().expect("escalation");
    assert_eq!(esc.count(&ScopeKey::new("ip", ip)), 4);
    let mut con = redis();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("{prefix}:ctr:offense:ip:{ip}"))
        .query(&mut con)
        .unwrap();
    assert!((1..=300).contains(&ttl), "offense key TTL {ttl}");
    // Past the window after the block's end, on the runtime's clock (the
    // key itself is still there: its TTL is a wall-clock bound).
    clock.advance_secs(301.0);
    assert_eq!(esc.count(&ScopeKey::new("ip", ip)), 0);
    rt.handle_event(&event(fail_login(ip)));
    assert_eq!(last_applied(&out), expect(1, 60));
    let keys = keys_all_with_ttl_then_delete(&prefix);
    assert!(keys.iter().any(|k| k.contains(":ctr:offense:")), "{keys:?}");
}

/// The runtime's block store, through the one public way to reach it: the
/// stores the configuration names (same prefix, same data).
fn rt_blocks(rt: &Runtime) -> Arc<dyn sec_audit_store::BlockStore> {
    sec_audit_enforce::stores::from_config(rt.config(), rt.clock().clone())
        .expect("stores")
        .blocks
}

trait AsyncCheck {
    /// `Retry-After` of the async check of a request from `ip`.
    fn ingress_check_async_blocking(&self, ip: &str) -> Option<u64>;
}

impl AsyncCheck for Runtime {
    fn ingress_check_async_blocking(&self, ip: &str) -> Option<u64> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let d = rt.block_on(self.ingress_check_async(&RequestView::new("GET", "/", ip)));
        assert!(!d.is_allow(), "{ip} is blocked: {d:?}");
        d.retry_after()
    }
}

fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql must be installed to run this test (apt-get install postgresql-client)");
    assert!(status.success(), "psql failed on {url}: {sql}");
}

/// Drops the scratch schema and the Redis keys at the end, even on failure.
struct Scratch {
    base: String,
    schema: String,
    prefix: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        psql(
            &self.base,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema),
        );
        let mut con = redis();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut con)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query(&mut con);
        }
    }
}

#[test]
fn tiered_permanent_after_writes_a_postgres_ban_and_a_safelisted_ban_is_ignored() {
    let scratch = Scratch {
        base: database_url(),
        schema: unique("policy_tiered"),
        prefix: unique("policy_tiered"),
    };
    psql(&scratch.base, &format!("CREATE SCHEMA {}", scratch.schema));
    let sep = if scratch.base.contains('?') { '&' } else { '?' };
    let db = format!(
        "{}{sep}options=-csearch_path%3D{}",
        scratch.base, scratch.schema
    );
    let base = format!(
        r#"
enabled = true
redis_url = "{}"
database_url = "{db}"
key_prefix = "{}"
[rule_actions]
brute_force_login = {{ scopes = ["user"], ttl = 60 }}
[[rules]]
builtin = "brute_force_login"
threshold = 1
[escalation]
factor = 2
max_ttl = 600
window = 600
permanent_after = 2
"#,
        redis_url(),
        scratch.prefix
    );
    let config = Config::from_toml_str(&base).unwrap();
    let pg = sec_audit_store::PostgresBlockStore::new(
        &sec_audit_enforce::stores::postgres_config(&config),
        Arc::new(sec_audit_core::SystemClock),
    )
    .unwrap();
    pg.run_migrations()
        .expect("migrations run (is PostgreSQL reachable?)");
    let clock = Arc::new(ManualClock::at_secs(T0));
    let out = SharedBuf::default();
    let rt = runtime(&base, &clock, &out);
    let login = |user: &str| {
        event(
            json!({"event_type": "auth.login.failed", "source.address": "203.0.113.20",
                     "user.id": user, "user.name": user}),
        )
    };
    rt.handle_event(&login("mallory"));
    assert_eq!(last_applied(&out).1, json!(1));
    clock.advance_secs(60.0);
    rt.handle_event(&login("mallory"));
    let applied = out.of("audit.enforcement.block_applied");
    let a = &applied.last().unwrap()["attributes"];
    assert_eq!(a["enforcement.action"], "permanent");
    assert_eq!(a["enforcement.offense"], 2);
    assert!(a.get("enforcement.ttl").is_none());
    // In the Postgres tier, and enforced long after any TTL.
    let rows = sec_audit_store::BlockStore::active_blocks(&pg, Some("user")).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].scope_value, "mallory");
    clock.advance_secs(86_400.0);
    let d = rt.ingress_check(&RequestView::new("GET", "/", "198.51.100.1").with_user_id("mallory"));
    assert!(matches!(
        d,
        sec_audit_enforce::IngressDecision::Deny {
            retry_after: None,
            ..
        }
    ));
    // Safelisted later: the permanent ban no longer denies, check_store
    // reports it, and a revocation through the API still works.
    let safe = runtime(
        &format!("{base}\n[safelist]\nusers = [\"mallory\"]\n"),
        &clock,
        &SharedBuf::default(),
    );
    assert!(safe
        .ingress_check(&RequestView::new("GET", "/", "198.51.100.1").with_user_id("mallory"))
        .is_allow());
    let findings = check_store(safe.config(), rt_blocks(&safe).as_ref()).unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert!(
        findings[0].message.contains("a permanent block"),
        "{}",
        findings[0].message
    );
    assert!(
        safe.unblock("user", "mallory", "safelisted", "test")
            .unwrap()
            >= 1
    );
    assert!(check_store(safe.config(), rt_blocks(&safe).as_ref())
        .unwrap()
        .is_empty());
    // The revocation forgave the count: the next offense starts at 1.
    rt.handle_event(&login("mallory"));
    assert_eq!(last_applied(&out).1, json!(1));
    keys_all_with_ttl_then_delete(&scratch.prefix);
}
