//! The enforcement runtime against the actions, fail modes, block API
//! and enforcement records of `docs/`, on memory stores with a settable clock.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{event, CountingStore, DownStore, Harness, TestRule, T0};
use sec_audit_enforce::{DenyReason, IngressDecision, ManualBlock, RequestView, Runtime, Stores};
use sec_audit_rules::ActionKind;
use sec_audit_store::MemoryBlockStore;
use serde_json::{json, Value};

const BRUTE: &str = r#"
enabled = true
[[rules]]
builtin = "brute_force_login"
threshold = 3
"#;

fn fail_login(ip: &str) -> Value {
    json!({"event_type": "auth.login.failed", "source.address": ip, "user.name": "alice", "request_id": "r"})
}

fn attrs(r: &Value) -> &serde_json::Map<String, Value> {
    r["attributes"].as_object().expect("attributes object")
}

#[test]
fn disabled_runtime_lets_everything_through_and_writes_nothing() {
    let h = Harness::new("[[rules]]\nbuiltin = \"brute_force_login\"\nthreshold = 1");
    assert_eq!(h.rt.handle_event(&event(fail_login("203.0.113.9"))), 0);
    assert!(h
        .rt
        .ingress_check(&RequestView::new("GET", "/", "203.0.113.9"))
        .is_allow());
    assert!(h.out.records().is_empty());
}

#[test]
fn temp_block_on_ip_then_ingress_denies_with_blocked_event() {
    let h = Harness::new(BRUTE);
    for _ in 0..2 {
        assert_eq!(h.rt.handle_event(&event(fail_login("203.0.113.9"))), 0);
    }
    assert_eq!(h.rt.handle_event(&event(fail_login("203.0.113.9"))), 1);
    let applied = h.out.of("audit.enforcement.block_applied");
    assert_eq!(applied.len(), 1);
    let a = attrs(&applied[0]);
    assert_eq!(a["scope.type"], "ip");
    assert_eq!(a["scope.value"], "203.0.113.9");
    assert_eq!(a["security_rule.name"], "brute_force_login");
    assert_eq!(a["enforcement.action"], "temp");
    assert_eq!(a["enforcement.ttl"], 300);
    assert_eq!(a["enforcement.expires_at"], "2026-05-28T20:31:40.000Z");
    assert_eq!(a["event_type"], "audit.enforcement.block_applied");
    assert_eq!(a["schema_version"], "1.0");
    assert_eq!(a.len(), 8, "exactly the contract's attributes: {a:?}");
    assert_eq!(applied[0]["severity_text"], "WARNING");

    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/anything", "203.0.113.9:5555"));
    match d {
        IngressDecision::Deny {
            status_code,
            message,
            reason,
            retry_after,
        } => {
            assert_eq!(status_code, 429);
            assert_eq!(retry_after, Some(300), "the whole TTL is left");
            assert_eq!(message, "Request blocked by audit enforcement policy");
            assert!(
                matches!(reason, DenyReason::Blocked { ref scope_type, .. } if scope_type == "ip")
            );
        }
        other => panic!("expected deny, got {other:?}"),
    }
    let blocked = h.out.of("audit.enforcement.blocked");
    assert_eq!(blocked.len(), 1);
    let b = attrs(&blocked[0]);
    assert_eq!(b["scope.type"], "ip");
    assert_eq!(b["scope.value"], "203.0.113.9");
    assert_eq!(b["security_rule.name"], "brute_force_login");
    assert_eq!(b["enforcement.action"], "blocked");
    assert_eq!(b["http.response.status_code"], 429);
    assert_eq!(b.len(), 7);
    // Another address still gets through.
    assert!(h
        .rt
        .ingress_check(&RequestView::new("GET", "/", "198.51.100.1"))
        .is_allow());
    // The block expires by itself.
    h.clock.advance_secs(300.0);
    assert!(h
        .rt
        .ingress_check(&RequestView::new("GET", "/", "203.0.113.9"))
        .is_allow());
}

#[test]
fn observe_writes_no_event_and_alert_writes_one_per_match() {
    let h = Harness::with("enabled = true\n[rule_actions]\nnoisy = \"alert\"", |b| {
        b.rule(Arc::new(TestRule::new("quiet")))
            .rule(Arc::new(TestRule::new("noisy")))
    });
    h.rt.handle_event(&event(
        json!({"event_type": "x", "trigger": "yes", "source.address": "192.0.2.1",
                                    "session.id": "s1", "user.id": "u1"}),
    ));
    let recs = h.out.records();
    assert_eq!(recs.len(), 1, "observe emits nothing: {recs:?}");
    let a = attrs(&recs[0]);
    assert_eq!(recs[0]["body"], "audit.enforcement.alert");
    assert_eq!(recs[0]["severity_number"], 13);
    assert_eq!(a["security_rule.name"], "noisy");
    assert_eq!(a["security_rule.severity"], 5);
    assert_eq!(a["security_rule.description"], "noisy matched");
    assert_eq!(a["enforcement.action"], "alert");
    assert_eq!(a["source.address"], "192.0.2.1");
    assert_eq!(a["session.id"], "s1");
    assert_eq!(a["user.id"], "u1");
    assert_eq!(a.len(), 9);
    assert!(h.rt.list_temp_blocks(None).unwrap().is_empty());
}

#[test]
fn persist_block_defaults_to_user_and_session_in_precedence_order() {
    let h = Harness::new(
        "enabled = true\n[[rules]]\nbuiltin = \"sensitive_field_change\"\nfields = [\"password\"]",
    );
    let n = h.rt.handle_event(&event(json!({"event_type": "model.update", "changed_fields": ["password"],
        "model_label": "auth.user", "user.id": "u7", "session.id": "s7", "source.address": "192.0.2.7"})));
    assert_eq!(n, 2);
    let applied = h.out.of("audit.enforcement.block_applied");
    let scopes: Vec<(&str, &str)> = applied
        .iter()
        .map(|r| {
            (
                r["attributes"]["scope.type"].as_str().unwrap(),
                r["attributes"]["enforcement.action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        vec![("user", "permanent"), ("session", "permanent")]
    );
    assert!(applied
        .iter()
        .all(|r| r["attributes"].get("enforcement.ttl").is_none()
            && r["attributes"].get("enforcement.expires_at").is_none()));
    assert_eq!(h.rt.list_active_blocks(None).unwrap().len(), 2);
    assert!(
        h.rt.is_blocked("ip", "192.0.2.7").unwrap().is_none(),
        "never ip by default"
    );
    // Permanent: still there much later.
    h.clock.advance_secs(10.0 * 365.0 * 86400.0);
    assert!(!h
        .rt
        .ingress_check(&RequestView::new("GET", "/", "192.0.2.99").with_user_id("u7"))
        .is_allow());
}

#[test]
fn block_precedence_orders_scopes_and_action_scopes_filter() {
    let toml = r#"
enabled = true
block_precedence = ["ip"]
[rule_actions]
t = { action = "temp_block", scopes = ["user", "ip"], ttl = 60, status_code = 403, message = "go away" }
"#;
    // Naming `route` (never block-eligible) in the scopes is a
    // configuration error now, like an unknown scope.
    let bad = sec_audit_enforce::Config::from_toml_str(
        &toml.replace("\"user\", \"ip\"]", "\"user\", \"ip\", \"route\"]"),
    )
    .unwrap();
    let err = Runtime::builder(bad)
        .rule(Arc::new(TestRule::new("t")))
        .sink(sec_audit_enforce::Sink::Discard)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`rule_actions.t.scopes`") && err.contains("route"),
        "{err}"
    );
    let h = Harness::with(toml, |b| b.rule(Arc::new(TestRule::new("t"))));
    h.rt.handle_event(&event(
        json!({"event_type": "x", "trigger": "yes", "source.address": "192.0.2.1",
                                    "user.id": "u1", "session.id": "s1", "http.route": "/r"}),
    ));
    let applied = h.out.of("audit.enforcement.block_applied");
    let scopes: Vec<&str> = applied
        .iter()
        .map(|r| r["attributes"]["scope.type"].as_str().unwrap())
        .collect();
    assert_eq!(
        scopes,
        vec!["ip", "user"],
        "in precedence order; session not in the action"
    );
    assert!(applied
        .iter()
        .all(|r| r["attributes"]["enforcement.ttl"] == 60));
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", "198.51.100.1").with_user_id("u1"));
    assert_eq!(
        d,
        IngressDecision::Deny {
            status_code: 403,
            message: "go away".into(),
            reason: DenyReason::Blocked {
                scope_type: "user".into(),
                scope_value: "u1".into(),
                rule_name: "t".into()
            },
            retry_after: Some(60),
        }
    );
    // Both blocked: ip wins by precedence.
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", "192.0.2.1").with_user_id("u1"));
    assert!(
        matches!(d, IngressDecision::Deny { reason: DenyReason::Blocked { ref scope_type, .. }, .. } if scope_type == "ip")
    );
}

#[test]
fn block_severity_gate_and_block_rules_ttl() {
    let toml = r#"
enabled = true
block_severity = 5
[block_rules]
lowsev = 42
"#;
    let mut high = TestRule::new("high");
    high.decision = Some(ActionKind::Block);
    let mut low = TestRule::new("lowsev");
    low.severity = 3;
    low.decision = Some(ActionKind::Block);
    let h = Harness::with(toml, |b| b.rule(Arc::new(high)).rule(Arc::new(low)));
    h.rt.handle_event(&event(json!({"event_type": "x", "trigger": "yes", "source.address": "192.0.2.1", "user.id": "u1"})));
    let applied = h.out.of("audit.enforcement.block_applied");
    let got: Vec<(String, String, String)> = applied
        .iter()
        .map(|r| {
            let a = &r["attributes"];
            (
                a["security_rule.name"].as_str().unwrap().into(),
                a["scope.type"].as_str().unwrap().into(),
                a["enforcement.action"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("high".into(), "user".into(), "permanent".into()),
            ("lowsev".into(), "ip".into(), "temp".into()),
        ]
    );
    assert_eq!(applied[1]["attributes"]["enforcement.ttl"], 42);
}

#[test]
fn metadata_is_scrubbed_and_reblock_replaces() {
    let mut r = TestRule::new("t");
    r.metadata.insert("api_token".into(), json!("secret-value"));
    r.metadata.insert("count".into(), json!(3));
    let h = Harness::with(
        "enabled = true\n[rule_actions]\nt = { action = \"temp_block\", ttl = 100 }",
        |b| b.rule(Arc::new(r)),
    );
    let ev = event(json!({"event_type": "x", "trigger": "yes", "source.address": "192.0.2.1"}));
    h.rt.handle_event(&ev);
    let entry = h.rt.is_blocked("ip", "192.0.2.1").unwrap().unwrap();
    assert_eq!(entry.metadata["api_token"], "[REDACTED]");
    assert_eq!(entry.metadata["count"], 3);
    assert_eq!(entry.reason, "t matched");
    h.clock.advance_secs(90.0);
    h.rt.handle_event(&ev);
    h.clock.advance_secs(90.0);
    assert!(
        h.rt.is_blocked("ip", "192.0.2.1").unwrap().is_some(),
        "re-block gave a new TTL"
    );
    assert_eq!(
        h.rt.list_temp_blocks(Some("ip")).unwrap().len(),
        1,
        "replaced, not duplicated"
    );
}

#[test]
fn ingress_rules_run_on_the_synthetic_event_with_the_body() {
    let toml = r#"
enabled = true
[[rules]]
builtin = "request_body_threshold"
paths = ["^/api/transfer"]
"#;
    let h = Harness::new(toml);
    let mut body = serde_json::Map::new();
    body.insert("amount".into(), json!("10000.01"));
    let req = RequestView::new("POST", "/api/transfer/", "192.0.2.5").with_body(body);
    let d = h.rt.ingress_check(&req);
    assert!(
        matches!(d, IngressDecision::Deny { status_code: 429, reason: DenyReason::RuleMatched { ref rule_name }, .. } if rule_name == "request_body_threshold")
    );
    assert_eq!(h.out.of("audit.enforcement.block_applied").len(), 1);
    // The written block now denies the next request up front.
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", "192.0.2.5"));
    assert!(matches!(
        d,
        IngressDecision::Deny {
            reason: DenyReason::Blocked { .. },
            ..
        }
    ));
    // With eval_safe_on_ingress = false the rule never runs on ingress.
    let h2 = Harness::new(&toml.replacen(
        "enabled = true",
        "enabled = true\neval_safe_on_ingress = false",
        1,
    ));
    let mut body = serde_json::Map::new();
    body.insert("amount".into(), json!(99999));
    assert!(h2
        .rt
        .ingress_check(&RequestView::new("POST", "/api/transfer/", "192.0.2.5").with_body(body))
        .is_allow());
}

#[test]
fn login_throttle_shares_the_brute_force_counter_on_ingress() {
    let toml = r#"
enabled = true
[[rules]]
builtin = "brute_force_login"
threshold = 100
[[rules]]
builtin = "login_throttle"
threshold = 3
"#;
    let h = Harness::new(toml);
    for _ in 0..3 {
        h.rt.handle_event(&event(fail_login("203.0.113.50")));
    }
    assert!(
        h.rt.ingress_check(&RequestView::new("GET", "/dashboard", "203.0.113.50"))
            .is_allow(),
        "only /login"
    );
    let d =
        h.rt.ingress_check(&RequestView::new("POST", "/login", "203.0.113.50"));
    assert!(
        matches!(
            d,
            IngressDecision::Deny {
                reason: DenyReason::RuleMatched { .. },
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn one_block_store_call_per_clean_request() {
    let clock = Arc::new(sec_audit_core::ManualClock::at_secs(T0));
    let counting = Arc::new(CountingStore {
        inner: MemoryBlockStore::new(clock.clone()),
        lookups: Default::default(),
    });
    let mut stores = Stores::memory(clock.clone());
    stores.blocks = counting.clone();
    let config = sec_audit_enforce::Config::from_toml_str(
        "enabled = true\n[[rules]]\nbuiltin = \"login_throttle\"\n[[rules]]\nbuiltin = \"repeated_route\"",
    )
    .unwrap();
    let rt = sec_audit_enforce::Runtime::builder(config)
        .clock(clock)
        .sink(sec_audit_enforce::Sink::Discard)
        .stores(stores)
        .build()
        .unwrap();
    for i in 0..5 {
        let req = RequestView::new("GET", "/login", "192.0.2.9")
            .with_user_id("u")
            .with_session_id(format!("s{i}"));
        assert!(rt.ingress_check(&req).is_allow());
    }
    assert_eq!(counting.lookups.load(Ordering::SeqCst), 5);
}

#[test]
fn store_outage_fails_open_by_default_and_closed_on_listed_paths() {
    let down = Arc::new(DownStore::default());
    let h = Harness::with("enabled = true\nfail_closed_paths = [\"^/admin\"]\nstatus_code = 503\nmessage = \"unavailable\"", |b| {
        let clock = Arc::new(sec_audit_core::ManualClock::at_secs(T0));
        let mut s = Stores::memory(clock);
        s.blocks = down.clone();
        b.stores(s)
    });
    assert!(h
        .rt
        .ingress_check(&RequestView::new("GET", "/shop", "192.0.2.1"))
        .is_allow());
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/admin/users", "192.0.2.1"));
    assert_eq!(
        d,
        IngressDecision::Deny {
            status_code: 503,
            message: "unavailable".into(),
            reason: DenyReason::FailClosed,
            retry_after: None,
        }
    );
    let failed = h.out.of("audit.enforcement.evaluation_failed");
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["severity_text"], "ERROR");
    assert_eq!(failed[0]["severity_number"], 17);
    assert_eq!(failed[0]["attributes"]["enforcement.fail_mode"], "open");
    assert_eq!(failed[1]["attributes"]["enforcement.fail_mode"], "closed");
    for f in &failed {
        let a = attrs(f);
        assert_eq!(a["error.type"], "redis_error");
        assert_eq!(a["enforcement.failure_count"], 1);
        assert_eq!(a.len(), 5, "{a:?}");
        let line = f.to_string();
        assert!(
            !line.contains("alice") && !line.contains("10.0.0.1"),
            "no error message in events: {line}"
        );
    }
    // Egress with a down store: logged and swallowed.
    let h2 = Harness::with(BRUTE, |b| {
        let clock = Arc::new(sec_audit_core::ManualClock::at_secs(T0));
        let mut s = Stores::memory(clock);
        s.blocks = Arc::new(DownStore::default());
        b.stores(s)
    });
    for _ in 0..5 {
        assert_eq!(h2.rt.handle_event(&event(fail_login("203.0.113.9"))), 0);
    }
}

fn down_harness(toml: &str) -> Harness {
    Harness::with(toml, |b| {
        let clock = Arc::new(sec_audit_core::ManualClock::at_secs(T0));
        let mut s = Stores::memory(clock);
        s.blocks = Arc::new(DownStore::default());
        b.stores(s)
    })
}

fn failure_counts(h: &Harness) -> Vec<(String, String, u64)> {
    h.out
        .of("audit.enforcement.evaluation_failed")
        .iter()
        .map(|f| {
            let a = attrs(f);
            (
                a["enforcement.fail_mode"].as_str().unwrap().to_string(),
                a["error.type"].as_str().unwrap().to_string(),
                a["enforcement.failure_count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn an_outage_is_one_record_per_mode_and_kind_per_second_with_its_count() {
    const N: u64 = 500;
    let h = down_harness("enabled = true\nfail_closed_paths = [\"^/admin\"]");
    // N failed lookups within one second of the runtime's clock.
    for i in 0..N {
        h.clock.set_secs(T0 + i as f64 * 0.001);
        assert!(h
            .rt
            .ingress_check(&RequestView::new("GET", "/shop", "192.0.2.1"))
            .is_allow());
    }
    // The first is emitted at once; the rest are held and counted.
    assert_eq!(
        failure_counts(&h),
        [("open".into(), "redis_error".into(), 1)]
    );
    // Another fail mode is another key: its own first record.
    assert!(!h
        .rt
        .ingress_check(&RequestView::new("GET", "/admin", "192.0.2.1"))
        .is_allow());
    assert_eq!(failure_counts(&h).len(), 2);
    // A second later, the next failure carries the N-1 suppressed.
    h.out.clear();
    h.clock.set_secs(T0 + 1.0);
    h.rt.ingress_check(&RequestView::new("GET", "/shop", "192.0.2.1"));
    assert_eq!(
        failure_counts(&h),
        [("open".into(), "redis_error".into(), N)]
    );
    // Suppressed again, then a flush emits what is held: nothing is lost.
    h.out.clear();
    for _ in 0..7 {
        h.rt.ingress_check(&RequestView::new("GET", "/shop", "192.0.2.1"));
    }
    assert!(failure_counts(&h).is_empty());
    h.rt.flush();
    assert_eq!(
        failure_counts(&h),
        [("open".into(), "redis_error".into(), 7)]
    );
    h.rt.flush();
    assert_eq!(
        failure_counts(&h).len(),
        1,
        "a flush emits only what is held"
    );
    let stats = h.rt.failure_stats();
    assert_eq!(stats.fail_open, N + 1 + 7);
    assert_eq!(stats.fail_closed, 1);
}

#[test]
fn failed_block_writes_on_egress_are_coalesced_and_counted() {
    let h = down_harness(BRUTE);
    for i in 0..50 {
        h.clock.set_secs(T0 + f64::from(i) * 0.01);
        assert_eq!(h.rt.handle_event(&event(fail_login("203.0.113.9"))), 0);
    }
    let stats = h.rt.failure_stats();
    assert!(stats.block_writes_failed > 0, "{stats:?}");
    let before_flush = failure_counts(&h);
    assert_eq!(before_flush.len(), 1, "{before_flush:?}");
    h.rt.flush();
    let total: u64 = failure_counts(&h).iter().map(|(_, _, n)| n).sum();
    assert_eq!(total, stats.block_writes_failed);
    // Dropping the runtime emits what a flush would have.
    let h = down_harness(BRUTE);
    for _ in 0..20 {
        h.rt.handle_event(&event(fail_login("203.0.113.9")));
    }
    let writes = h.rt.failure_stats().block_writes_failed;
    let out = h.out.clone();
    drop(h);
    let total: u64 = out
        .of("audit.enforcement.evaluation_failed")
        .iter()
        .map(|f| {
            f["attributes"]["enforcement.failure_count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(total, writes);
}

#[test]
fn rule_failures_on_ingress_follow_fail_open() {
    let mut r = TestRule::new("broken");
    r.ingress = true;
    r.fail = true;
    let h = Harness::with("enabled = true", |b| b.rule(Arc::new(r)));
    assert!(h
        .rt
        .ingress_check(&RequestView::new("GET", "/", "192.0.2.1"))
        .is_allow());
    let mut r = TestRule::new("broken");
    r.ingress = true;
    r.panic = true;
    let h = Harness::with("enabled = true\nfail_open = false", |b| b.rule(Arc::new(r)));
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", "192.0.2.1"));
    assert!(matches!(
        d,
        IngressDecision::Deny {
            reason: DenyReason::Error,
            ..
        }
    ));
    let failed = h.out.of("audit.enforcement.evaluation_failed");
    assert_eq!(failed[0]["attributes"]["enforcement.fail_mode"], "closed");
    assert_eq!(failed[0]["attributes"]["error.type"], "rule_failed");
}

#[test]
fn spoofed_forwarded_for_never_becomes_a_ban_key() {
    // No trusted proxies: XFF is ignored entirely.
    let h = Harness::with("enabled = true\n[rule_actions]\nt = \"temp_block\"", |b| {
        let mut r = TestRule::new("t");
        r.ingress = true;
        b.rule(Arc::new(r))
    });
    let req = RequestView::new("GET", "/trigger", "203.0.113.66")
        .with_headers([("X-Forwarded-For", "198.51.100.1")]);
    assert!(!h.rt.ingress_check(&req).is_allow());
    let keys: Vec<String> =
        h.rt.list_temp_blocks(Some("ip"))
            .unwrap()
            .into_iter()
            .map(|e| e.scope_value)
            .collect();
    assert_eq!(keys, vec!["203.0.113.66".to_string()]);
    assert!(
        h.rt.ingress_check(&RequestView::new("GET", "/", "198.51.100.1"))
            .is_allow(),
        "the victim is not banned"
    );

    // Behind a trusted proxy: only the proxy-appended hop counts.
    let h = Harness::with(
        "enabled = true\ntrusted_proxy_cidrs = [\"10.0.0.0/8\"]\ntrusted_proxy_count = 1\n[rule_actions]\nt = \"temp_block\"",
        |b| {
            let mut r = TestRule::new("t");
            r.ingress = true;
            b.rule(Arc::new(r))
        },
    );
    let req = RequestView::new("GET", "/trigger", "10.0.0.2")
        .with_headers([("x-forwarded-for", "198.51.100.1, 203.0.113.77")]);
    assert!(!h.rt.ingress_check(&req).is_allow());
    let keys: Vec<String> =
        h.rt.list_temp_blocks(Some("ip"))
            .unwrap()
            .into_iter()
            .map(|e| e.scope_value)
            .collect();
    assert_eq!(keys, vec!["203.0.113.77".to_string()]);
    // An untrusted peer's XFF is ignored: the peer is the client.
    let req = RequestView::new("GET", "/", "203.0.113.77")
        .with_headers([("X-Forwarded-For", "10.0.0.5")]);
    assert!(!h.rt.ingress_check(&req).is_allow());
    // Garbage in the chain: no ip scope at all, never the garbage.
    let req = RequestView::new("GET", "/trigger", "10.0.0.2")
        .with_headers([("X-Forwarded-For", "not-an-ip")]);
    h.rt.ingress_check(&req);
    assert!(h
        .rt
        .list_temp_blocks(Some("ip"))
        .unwrap()
        .iter()
        .all(|e| e.scope_value != "not-an-ip"));
}

#[test]
fn block_api_round_trip_and_events() {
    let h = Harness::new("");
    let e =
        h.rt.block(&ManualBlock {
            scope_type: "ip".into(),
            value: "::ffff:192.0.2.44".into(),
            ttl: Some(60),
            reason: "abuse report".into(),
            actor: Some("ops@example".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(e.scope_value, "192.0.2.44");
    assert_eq!(e.rule_name, "manual");
    assert_eq!(e.metadata["actor"], "ops@example");
    assert!(h.rt.is_blocked("ip", "192.0.2.44").unwrap().is_some());
    h.rt.block(&ManualBlock {
        scope_type: "user".into(),
        value: "mallory".into(),
        ttl: None,
        reason: "fraud".into(),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(h.rt.list_active_blocks(None).unwrap().len(), 1);
    assert_eq!(h.rt.list_temp_blocks(None).unwrap().len(), 1);
    assert!(h
        .rt
        .block(&ManualBlock {
            scope_type: "route".into(),
            value: "/x".into(),
            ..Default::default()
        })
        .is_err());
    assert!(h
        .rt
        .block(&ManualBlock {
            scope_type: "ip".into(),
            value: "nope".into(),
            ..Default::default()
        })
        .is_err());
    assert_eq!(
        h.rt.unblock("user", "mallory", "appeal granted", "ops")
            .unwrap(),
        1
    );
    assert_eq!(h.rt.unblock("user", "mallory", "again", "ops").unwrap(), 0);
    let applied = h.out.of("audit.enforcement.block_applied");
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0]["attributes"]["security_rule.name"], "manual");
    let revoked = h.out.of("audit.enforcement.block_revoked");
    assert_eq!(revoked.len(), 1, "only when something was removed");
    let a = attrs(&revoked[0]);
    assert_eq!(revoked[0]["severity_text"], "INFO");
    assert_eq!(a["scope.type"], "user");
    assert_eq!(a["scope.value"], "mallory");
    assert_eq!(a["enforcement.revoked_by"], "ops");
    assert_eq!(a["enforcement.reason"], "appeal granted");
    assert_eq!(a.len(), 6);
}

#[test]
fn enforcement_events_fed_back_are_ignored() {
    let h = Harness::with("enabled = true\n[rule_actions]\nt = \"temp_block\"", |b| {
        b.rule(Arc::new(TestRule::new("t")))
    });
    for ty in [
        "audit.enforcement.block_applied",
        "audit.rule.x",
        "audit.context.y",
    ] {
        assert_eq!(
            h.rt.handle_event(&event(
                json!({"event_type": ty, "trigger": "yes", "source.address": "192.0.2.1"})
            )),
            0
        );
    }
    assert!(h.out.records().is_empty());
}

#[test]
fn subscribers_see_events_after_the_write_and_are_isolated() {
    let h = Harness::new(BRUTE);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    h.rt.emitter().subscribe(None, |_| panic!("bad subscriber"));
    h.rt.emitter().subscribe(
        Some(vec![sec_audit_enforce::EventType::BlockApplied]),
        move |e| {
            s.lock().unwrap().push(e.event_type);
            Ok(())
        },
    );
    for _ in 0..3 {
        h.rt.handle_event(&event(fail_login("203.0.113.9")));
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(!h
        .rt
        .ingress_check(&RequestView::new("GET", "/", "203.0.113.9"))
        .is_allow());
    assert_eq!(seen.lock().unwrap().len(), 1, "filtered to block_applied");
}

#[test]
fn odd_requests_never_panic() {
    let h = Harness::new("enabled = true\n[[rules]]\nbuiltin = \"repeated_route\"\n[[rules]]\nbuiltin = \"login_throttle\"\npaths = []\n[[rules]]\nbuiltin = \"request_body_threshold\"");
    let long = "/".to_string() + &"é".repeat(5000);
    for peer in ["", "not-an-ip", "999.1.1.1", "[::1]:80", "☃"] {
        let mut body = serde_json::Map::new();
        body.insert("amount".into(), json!({"nested": [1, 2]}));
        let req = RequestView::new("", long.as_str(), peer)
            .with_headers([("X-Forwarded-For", "☃, ,,")])
            .with_body(body);
        h.rt.ingress_check(&req);
    }
}
