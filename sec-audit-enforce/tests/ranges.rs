//! Range blocks through the runtime: `rule_actions` range prefixes block the
//! offending address's covering range; the block API takes a CIDR for the
//! ip scope; the ingress check (sync and async) denies an address inside an
//! active range — on memory, Redis-only and tiered (Redis + Postgres)
//! stores; revocation and the audit trail work as for single addresses.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{event, Harness, SharedBuf};
use sec_audit_enforce::{
    BlockApiError, Config, DenyReason, IngressDecision, ManualBlock, RequestView, Runtime, Sink,
};
use serde_json::json;

fn fail_login(ip: &str) -> sec_audit_core::AuditEvent {
    event(
        json!({"event_type": "auth.login.failed", "source.address": ip, "user.name": "alice", "request_id": "r"}),
    )
}

fn blocked_by(d: &IngressDecision) -> Option<String> {
    match d {
        IngressDecision::Deny {
            reason: DenyReason::Blocked { scope_value, .. },
            ..
        } => Some(scope_value.clone()),
        _ => None,
    }
}

fn get(ip: &str) -> RequestView<'static> {
    RequestView::new("GET", "/", ip.to_string())
}

fn manual(value: &str, ttl: Option<u64>) -> ManualBlock {
    ManualBlock {
        scope_type: "ip".into(),
        value: value.into(),
        ttl,
        reason: "botnet".into(),
        actor: Some("ops".into()),
        ..Default::default()
    }
}

const RANGED: &str = r#"
enabled = true
[[rules]]
builtin = "brute_force_login"
threshold = 3
[rule_actions]
brute_force_login = { range_prefix_v4 = 24, range_prefix_v6 = 64 }
"#;

#[test]
fn a_rule_with_range_prefixes_blocks_the_covering_range_and_says_so() {
    let h = Harness::new(RANGED);
    for _ in 0..2 {
        assert_eq!(h.rt.handle_event(&fail_login("203.0.113.9")), 0);
    }
    assert_eq!(h.rt.handle_event(&fail_login("203.0.113.9")), 1);
    let applied = h.out.of("audit.enforcement.block_applied");
    assert_eq!(applied.len(), 1);
    let a = &applied[0]["attributes"];
    assert_eq!(a["scope.type"], "ip");
    assert_eq!(
        a["scope.value"], "203.0.113.0/24",
        "the record names the range"
    );
    assert_eq!(a["enforcement.action"], "temp");

    let entry =
        h.rt.is_blocked("ip", "203.0.113.0/24")
            .expect("lookup")
            .expect("the range is blocked");
    assert_eq!(entry.metadata["range_address"], "203.0.113.9");
    assert_eq!(entry.rule_name, "brute_force_login");

    // Every address of the /24 is denied, by the range; others pass.
    for ip in ["203.0.113.9", "203.0.113.200:4444"] {
        assert_eq!(
            blocked_by(&h.rt.ingress_check(&get(ip))).as_deref(),
            Some("203.0.113.0/24"),
            "{ip}"
        );
    }
    assert!(h.rt.ingress_check(&get("203.0.114.1")).is_allow());
    let blocked = h.out.of("audit.enforcement.blocked");
    assert_eq!(blocked[0]["attributes"]["scope.value"], "203.0.113.0/24");

    // IPv6: the /64.
    for _ in 0..3 {
        h.rt.handle_event(&fail_login("2001:db8:1:2:3::9"));
    }
    assert_eq!(
        blocked_by(&h.rt.ingress_check(&get("[2001:db8:1:2:ffff::1]:80"))).as_deref(),
        Some("2001:db8:1:2::/64")
    );
    assert!(h.rt.ingress_check(&get("2001:db8:1:3::1")).is_allow());

    // The range expires like the single block it replaces.
    h.clock.advance_secs(301.0);
    assert!(h.rt.ingress_check(&get("203.0.113.9")).is_allow());
}

#[test]
fn a_full_length_prefix_is_the_address_itself() {
    let h = Harness::new(&RANGED.replace("range_prefix_v4 = 24", "range_prefix_v4 = 32"));
    for _ in 0..3 {
        h.rt.handle_event(&fail_login("203.0.113.9"));
    }
    let applied = h.out.of("audit.enforcement.block_applied");
    assert_eq!(applied[0]["attributes"]["scope.value"], "203.0.113.9");
    assert!(h.rt.ingress_check(&get("203.0.113.10")).is_allow());
}

#[test]
fn the_block_api_takes_canonical_ranges_and_refuses_host_bits() {
    let h = Harness::new("enabled = true");
    let e =
        h.rt.block(&manual(" 198.51.100.0/24 ", Some(600)))
            .expect("range");
    assert_eq!(e.scope_value, "198.51.100.0/24");
    assert_eq!(
        h.rt.block(&manual("2001:DB8::/32", None))
            .expect("v6")
            .scope_value,
        "2001:db8::/32"
    );
    assert_eq!(
        h.rt.block(&manual("192.0.2.7/32", Some(60)))
            .expect("a /32")
            .scope_value,
        "192.0.2.7",
        "a /32 is a single-address block"
    );
    match h.rt.block(&manual("198.51.100.5/24", None)) {
        Err(e @ BlockApiError::HostBits { .. }) => {
            assert!(
                e.to_string().contains("did you mean 198.51.100.0/24"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    for bad in ["198.51.100.0/33", "not-an-ip/8", "198.51.100.0/"] {
        assert!(
            matches!(h.rt.block(&manual(bad, None)), Err(BlockApiError::BadIp(_))),
            "{bad}"
        );
    }
    assert_eq!(
        blocked_by(&h.rt.ingress_check(&get("198.51.100.77"))).as_deref(),
        Some("198.51.100.0/24")
    );
    assert_eq!(
        blocked_by(&h.rt.ingress_check(&get("2001:db8:ffff::1"))).as_deref(),
        Some("2001:db8::/32")
    );
    // Listed with the others; revoked like them (a non-canonical spelling
    // names the same range), with the block_revoked record.
    let ip: Vec<String> =
        h.rt.list_temp_blocks(Some("ip"))
            .expect("list")
            .into_iter()
            .map(|e| e.scope_value)
            .collect();
    assert_eq!(ip, ["192.0.2.7", "198.51.100.0/24"]);
    assert_eq!(
        h.rt.unblock("ip", "198.51.100.0/24", "cleared", "ops")
            .expect("revoke"),
        1
    );
    assert!(h.rt.ingress_check(&get("198.51.100.77")).is_allow());
    let revoked = h.out.of("audit.enforcement.block_revoked");
    assert_eq!(revoked[0]["attributes"]["scope.value"], "198.51.100.0/24");
    assert_eq!(
        h.rt.unblock("ip", "2001:db8:0::/32", "cleared", "ops")
            .expect("revoke"),
        1
    );
}

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
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}_{}_{nanos}", std::process::id())
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .env("PGOPTIONS", "--client-min-messages=warning")
        .stderr(Stdio::inherit())
        .output()
        .expect("psql must be installed to run this test");
    assert!(out.status.success(), "psql failed on {url}: {sql}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Deletes every key under `prefix` (the FLUSHALL of an isolated test),
/// after checking that each has a TTL.
fn flush(prefix: &str) {
    let client = redis::Client::open(redis_url()).expect("url");
    let mut con = client.get_connection().expect("Redis reachable");
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(!keys.is_empty());
    for k in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(k).query(&mut con).expect("TTL");
        assert!(ttl > 0, "key {k} has no TTL");
    }
    let _: () = redis::cmd("DEL").arg(&keys).query(&mut con).expect("DEL");
}

/// Range blocks through a runtime on real stores: sync and async ingress
/// deny inside the range, revocation lifts it.
async fn ranges_on(rt: &Runtime, prefix: &str, permanent: bool) {
    let ttl = (!permanent).then_some(600);
    rt.block(&manual("198.51.100.0/24", ttl)).expect("range");
    rt.block(&manual("2001:db8:aa::/48", ttl))
        .expect("v6 range");
    for (ip, want) in [
        ("198.51.100.9", Some("198.51.100.0/24")),
        ("198.51.101.9", None),
        ("2001:db8:aa:5::1", Some("2001:db8:aa::/48")),
        ("2001:db8:ab::1", None),
    ] {
        assert_eq!(
            blocked_by(&rt.ingress_check(&get(ip))).as_deref(),
            want,
            "{ip}"
        );
        assert_eq!(
            blocked_by(&rt.ingress_check_async(&get(ip)).await).as_deref(),
            want,
            "async {ip}"
        );
    }
    if permanent {
        // Survives losing every Redis key.
        flush(prefix);
        assert_eq!(
            blocked_by(&rt.ingress_check_async(&get("198.51.100.10")).await).as_deref(),
            Some("198.51.100.0/24")
        );
        assert_eq!(
            blocked_by(&rt.ingress_check(&get("198.51.100.11"))).as_deref(),
            Some("198.51.100.0/24")
        );
    }
    let listed: Vec<String> = if permanent {
        rt.list_active_blocks(Some("ip"))
    } else {
        rt.list_temp_blocks(Some("ip"))
    }
    .expect("list")
    .into_iter()
    .map(|e| e.scope_value)
    .collect();
    assert_eq!(listed, ["198.51.100.0/24", "2001:db8:aa::/48"]);
    assert!(
        rt.unblock("ip", "198.51.100.0/24", "cleared", "ops")
            .expect("revoke")
            >= 1
    );
    assert!(rt.ingress_check(&get("198.51.100.9")).is_allow());
    assert!(rt
        .ingress_check_async(&get("198.51.100.9"))
        .await
        .is_allow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_on_redis_only_stores() {
    let prefix = unique("ranges_redis");
    let toml = format!(
        "enabled = true\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n",
        redis_url()
    );
    let out = SharedBuf::default();
    let rt = Runtime::builder(Config::from_toml_str(&toml).expect("config"))
        .sink(Sink::Writer(Box::new(out.clone())))
        .build()
        .expect("runtime");
    ranges_on(&rt, &prefix, false).await;
    assert_eq!(out.of("audit.enforcement.block_applied").len(), 2);
    assert_eq!(out.of("audit.enforcement.block_revoked").len(), 1);
    flush(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_on_tiered_stores_with_the_postgres_trail() {
    let schema = unique("enforce_ranges");
    let base = database_url();
    psql(&base, &format!("CREATE SCHEMA {schema}"));
    let sep = if base.contains('?') { '&' } else { '?' };
    let db = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let prefix = unique("ranges_tiered");
    let toml = format!(
        "enabled = true\nredis_url = \"{}\"\ndatabase_url = \"{db}\"\nkey_prefix = \"{prefix}\"\n",
        redis_url()
    );
    let config = Config::from_toml_str(&toml).expect("config");
    let pg = sec_audit_store::PostgresBlockStore::new(
        &sec_audit_enforce::stores::postgres_config(&config),
        Arc::new(sec_audit_core::SystemClock),
    )
    .expect("pg config");
    pg.run_migrations().expect("migrations");
    let rt = Runtime::builder(config)
        .sink(Sink::Discard)
        .build()
        .expect("runtime");
    ranges_on(&rt, &prefix, true).await;
    let trail = psql(
        &base,
        &format!(
            "SELECT scope_value || '|' || (revoked_at IS NOT NULL) || '|' || revoked_by || '|' || revoked_reason || '|' || (metadata->>'actor') \
             FROM {schema}.permanent_blocks ORDER BY id"
        ),
    );
    assert_eq!(
        trail.lines().collect::<Vec<_>>(),
        [
            "198.51.100.0/24|true|ops|cleared|ops",
            "2001:db8:aa::/48|false|||ops"
        ]
    );
    psql(&base, &format!("DROP SCHEMA {schema} CASCADE"));
}
