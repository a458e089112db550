//! The safelist, escalating bans and `Retry-After` (issue 13) on memory
//! stores with a settable clock.

mod common;

use std::sync::Arc;

use common::{event, Harness, TestRule, T0};
use sec_audit_core::ManualClock;
use sec_audit_enforce::{
    BlockApiError, Config, DenyReason, IngressDecision, ManualBlock, RequestView, Runtime, Sink,
    Stores,
};
use serde_json::{json, Value};

const NAT: &str = "192.0.2.214";

fn fail_login(ip: &str) -> Value {
    json!({"event_type": "auth.login.failed", "source.address": ip, "user.name": "alice", "request_id": "r"})
}

fn attrs(r: &Value) -> &serde_json::Map<String, Value> {
    r["attributes"].as_object().expect("attributes object")
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

/// Brute force at threshold 3, and a safelist.
fn brute_safelisted(extra: &str) -> String {
    format!(
        r#"
enabled = true
[[rules]]
builtin = "brute_force_login"
threshold = 3
[safelist]
ips = ["{NAT}", "10.0.0.0/8", "2001:db8:5afe::/48"]
users = ["ops"]
sessions = ["sess-monitor"]
{extra}
"#
    )
}

#[test]
fn a_safelisted_address_is_never_denied_even_by_an_older_block() {
    // The blocks were written before the safelist existed.
    let clock = Arc::new(ManualClock::at_secs(T0));
    let stores = Stores::memory(clock.clone());
    let before = Runtime::builder(Config::from_toml_str("enabled = true").expect("config"))
        .clock(clock.clone())
        .sink(Sink::Discard)
        .stores(stores.clone())
        .build()
        .expect("runtime");
    for (scope, value) in [
        ("ip", NAT),
        ("ip", "10.20.30.40"),
        ("ip", "2001:db8:5afe::9"),
        ("ip", "198.51.100.9"),
        ("user", "ops"),
        ("user", "mallory"),
        ("session", "sess-monitor"),
    ] {
        before
            .block(&manual(scope, value, Some(600)))
            .expect("block");
    }
    let h = Harness::with(&brute_safelisted(""), |b| b.stores(stores.clone()));
    let allow = |req: RequestView<'_>| {
        let d = h.rt.ingress_check(&req);
        assert!(d.is_allow(), "{req:?}: {d:?}");
    };
    allow(RequestView::new("GET", "/", NAT));
    allow(RequestView::new("GET", "/", format!("{NAT}:5555")));
    allow(RequestView::new("GET", "/", format!("[::ffff:{NAT}]:443")));
    allow(RequestView::new("GET", "/", "10.20.30.40"));
    allow(RequestView::new("GET", "/", "2001:db8:5afe::9"));
    allow(RequestView::new("GET", "/", "203.0.113.1").with_user_id("ops"));
    allow(RequestView::new("GET", "/", "203.0.113.1").with_session_id("sess-monitor"));
    assert!(h.out.of("audit.enforcement.blocked").is_empty());
    // Per scope: a blocked user behind the safelisted NAT is still denied
    // by the user's block, and an unlisted address by its own.
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", NAT).with_user_id("mallory"));
    assert!(
        matches!(&d, IngressDecision::Deny { reason: DenyReason::Blocked { scope_type, scope_value, .. }, .. }
            if scope_type == "user" && scope_value == "mallory"),
        "{d:?}"
    );
    assert!(!h
        .rt
        .ingress_check(&RequestView::new("GET", "/", "198.51.100.9").with_user_id("ops"))
        .is_allow());
    // The async check agrees.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio");
    rt.block_on(async {
        assert!(h
            .rt
            .ingress_check_async(&RequestView::new("GET", "/", NAT))
            .await
            .is_allow());
        assert!(!h
            .rt
            .ingress_check_async(&RequestView::new("GET", "/", NAT).with_user_id("mallory"))
            .await
            .is_allow());
    });
}

#[test]
fn a_blocking_match_on_a_safelisted_address_is_an_alert_and_writes_no_block() {
    let h = Harness::new(&brute_safelisted(""));
    for _ in 0..4 {
        assert_eq!(h.rt.handle_event(&event(fail_login(NAT))), 0);
    }
    assert!(h.out.of("audit.enforcement.block_applied").is_empty());
    let alerts = h.out.of("audit.enforcement.alert");
    assert_eq!(alerts.len(), 2, "threshold 3: the 3rd and 4th match");
    let a = attrs(&alerts[0]);
    assert_eq!(a["security_rule.name"], "brute_force_login");
    assert_eq!(a["enforcement.action"], "alert");
    assert_eq!(a["enforcement.safelisted"], true);
    assert_eq!(a["scope.type"], "ip");
    assert_eq!(a["scope.value"], NAT);
    assert_eq!(a["source.address"], NAT);
    assert!(h
        .rt
        .ingress_check(&RequestView::new("GET", "/", NAT))
        .is_allow());
    assert_eq!(h.rt.is_blocked("ip", NAT).unwrap(), None);
    // An address in a safelisted network, written as IPv4-mapped IPv6.
    for _ in 0..3 {
        assert_eq!(h.rt.handle_event(&event(fail_login("::ffff:10.1.2.3"))), 0);
    }
    assert_eq!(h.rt.is_blocked("ip", "10.1.2.3").unwrap(), None);
    // An unlisted address is blocked as before (no offense attribute
    // without [escalation]).
    for _ in 0..3 {
        h.rt.handle_event(&event(fail_login("203.0.113.9")));
    }
    let applied = h.out.of("audit.enforcement.block_applied");
    assert_eq!(applied.len(), 1);
    assert_eq!(attrs(&applied[0])["scope.value"], "203.0.113.9");
    assert!(attrs(&applied[0]).get("enforcement.offense").is_none());
}

#[test]
fn only_the_safelisted_targets_of_a_match_are_spared() {
    let h = Harness::with(
        &brute_safelisted(
            "[rule_actions]\nt = { action = \"temp_block\", scopes = [\"ip\", \"user\", \"session\"], ttl = 60 }",
        ),
        |b| {
            b.rule(Arc::new(TestRule {
                ingress: true,
                ..TestRule::new("t")
            }))
        },
    );
    h.rt.handle_event(&event(json!({"event_type": "x", "trigger": "yes",
        "source.address": NAT, "user.id": "u1", "session.id": "sess-monitor"})));
    let applied = h.out.of("audit.enforcement.block_applied");
    let blocked: Vec<String> = applied
        .iter()
        .map(|r| {
            format!(
                "{}:{}",
                r["attributes"]["scope.type"].as_str().unwrap(),
                r["attributes"]["scope.value"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(blocked, ["user:u1"]);
    let spared: Vec<String> = h
        .out
        .of("audit.enforcement.alert")
        .iter()
        .filter(|r| r["attributes"]["enforcement.safelisted"] == true)
        .map(|r| {
            format!(
                "{}:{}",
                r["attributes"]["scope.type"].as_str().unwrap(),
                r["attributes"]["scope.value"].as_str().unwrap()
            )
        })
        .collect();
    let mut spared = spared;
    spared.sort();
    assert_eq!(
        spared,
        [format!("ip:{NAT}"), "session:sess-monitor".to_string()]
    );

    // On the ingress pass: a match whose every target is safelisted does
    // not deny; one that blocked something does.
    h.out.clear();
    let d = h.rt.ingress_check(
        &RequestView::new("GET", "/trigger", NAT)
            .with_user_id("ops")
            .with_session_id("sess-monitor"),
    );
    assert!(d.is_allow(), "{d:?}");
    assert!(h.out.of("audit.enforcement.block_applied").is_empty());
    assert_eq!(h.out.of("audit.enforcement.alert").len(), 3);
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/trigger", NAT).with_user_id("u2"));
    assert!(
        matches!(
            d,
            IngressDecision::Deny {
                reason: DenyReason::RuleMatched { .. },
                retry_after: Some(60),
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn the_block_api_refuses_a_safelisted_subject_and_still_revokes() {
    let h = Harness::new(&brute_safelisted(""));
    for (scope, value, entry) in [
        ("ip", NAT, "safelist.ips 192.0.2.214/32"),
        ("ip", "::ffff:10.9.9.9", "safelist.ips 10.0.0.0/8"),
        (
            "ip",
            "2001:db8:5afe:1::1",
            "safelist.ips 2001:db8:5afe::/48",
        ),
        ("user", " ops ", "safelist.users ops"),
        ("session", "sess-monitor", "safelist.sessions sess-monitor"),
    ] {
        for ttl in [Some(60), None] {
            let e = h.rt.block(&manual(scope, value, ttl)).unwrap_err();
            assert!(
                matches!(&e, BlockApiError::Safelisted { entry: got, .. } if got == entry),
                "{scope}:{value}: {e:?}"
            );
            let text = e.to_string();
            assert!(
                text.contains(entry) && text.contains("[safelist]"),
                "{text}"
            );
        }
    }
    assert!(h.out.of("audit.enforcement.block_applied").is_empty());
    assert!(h.rt.list_temp_blocks(None).unwrap().is_empty());
    assert!(h.rt.block(&manual("ip", "192.0.2.215", Some(60))).is_ok());
    assert!(h.rt.block(&manual("user", "opsx", None)).is_ok());
    // Revoking is always allowed (cleaning up an older block).
    assert_eq!(h.rt.unblock("ip", NAT, "cleanup", "test").unwrap(), 0);
}

const ESCALATING: &str = r#"
enabled = true
[[rules]]
builtin = "brute_force_login"
threshold = 1
[rule_actions]
brute_force_login = { ttl = 60 }
[escalation]
factor = 2
max_ttl = 200
window = 100
"#;

fn offense_and_ttl(r: &Value) -> (Value, Value, Value) {
    let a = attrs(r);
    (
        a["enforcement.offense"].clone(),
        a.get("enforcement.ttl").cloned().unwrap_or(Value::Null),
        a["enforcement.action"].clone(),
    )
}

#[test]
fn repeated_temp_blocks_of_a_scope_escalate_up_to_the_cap_then_reset() {
    let h = Harness::new(ESCALATING);
    let ip = "203.0.113.9";
    let mut seen = Vec::new();
    for wait in [0.0, 60.0, 120.0, 200.0, 200.0] {
        h.clock.advance_secs(wait);
        assert!(
            h.rt.ingress_check(&RequestView::new("GET", "/", ip))
                .is_allow(),
            "the previous block has expired"
        );
        assert_eq!(h.rt.handle_event(&event(fail_login(ip))), 1);
        let d = h.rt.ingress_check(&RequestView::new("GET", "/", ip));
        seen.push((
            offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
            d.retry_after(),
        ));
    }
    let expect = |n: u64, ttl: u64| ((json!(n), json!(ttl), json!("temp")), Some(ttl));
    assert_eq!(
        seen,
        [
            expect(1, 60),
            expect(2, 120),
            expect(3, 200),
            expect(4, 200),
            expect(5, 200)
        ]
    );
    // A re-block while the ban is active is not a new offense.
    h.rt.handle_event(&event(fail_login(ip)));
    assert_eq!(
        offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
        (json!(5), json!(200), json!("temp"))
    );
    // Quiet for longer than the window after the block ends: back to 1.
    h.clock.advance_secs(200.0 + 100.0);
    h.rt.handle_event(&event(fail_login(ip)));
    assert_eq!(
        offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
        (json!(1), json!(60), json!("temp"))
    );
    // Another address has its own count.
    h.rt.handle_event(&event(fail_login("203.0.113.10")));
    assert_eq!(
        offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
        (json!(1), json!(60), json!("temp"))
    );
    // A revocation forgives.
    h.clock.advance_secs(60.0);
    h.rt.handle_event(&event(fail_login(ip)));
    assert_eq!(
        h.rt.escalation()
            .unwrap()
            .count(&sec_audit_rules::ScopeKey::new("ip", ip)),
        2
    );
    h.rt.unblock("ip", ip, "false positive", "test").unwrap();
    h.rt.handle_event(&event(fail_login(ip)));
    assert_eq!(
        offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
        (json!(1), json!(60), json!("temp"))
    );
    // Manual blocks are not escalated.
    let e = h.rt.block(&manual("ip", "198.51.100.1", Some(30))).unwrap();
    assert_eq!(
        e.expires_at,
        Some(sec_audit_core::Clock::now(&*h.clock) + 30.0)
    );
    let last = h.out.of("audit.enforcement.block_applied");
    assert!(attrs(last.last().unwrap())
        .get("enforcement.offense")
        .is_none());
}

#[test]
fn permanent_after_bans_users_for_good_but_an_ip_only_when_the_operator_named_it() {
    let toml = |scopes: &str| {
        format!(
            r#"
enabled = true
[rule_actions]
t = {{ action = "temp_block", scopes = {scopes}, ttl = 60 }}
[escalation]
factor = 3
max_ttl = 1000
window = 3600
permanent_after = 3
"#
        )
    };
    let trigger = || {
        event(
            json!({"event_type": "x", "trigger": "yes", "source.address": "203.0.113.9", "user.id": "u1"}),
        )
    };
    let h = Harness::with(&toml("[\"user\"]"), |b| {
        b.rule(Arc::new(TestRule::new("t")))
    });
    for (n, ttl) in [(1, json!(60)), (2, json!(180))] {
        h.rt.handle_event(&trigger());
        assert_eq!(
            offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
            (json!(n), ttl, json!("temp"))
        );
        h.clock.advance_secs(1000.0);
    }
    h.rt.handle_event(&trigger());
    let last = h.out.of("audit.enforcement.block_applied");
    let a = attrs(last.last().unwrap());
    assert_eq!(a["enforcement.action"], "permanent");
    assert_eq!(a["enforcement.offense"], 3);
    assert!(a.get("enforcement.ttl").is_none());
    h.clock.advance_secs(100_000.0);
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", "198.51.100.1").with_user_id("u1"));
    assert!(
        matches!(
            d,
            IngressDecision::Deny {
                retry_after: None,
                ..
            }
        ),
        "{d:?}"
    );

    // The default scope (ip, not written by the operator): the third block
    // stays temporary, at the escalated TTL.
    let default_ip = "enabled = true\n[rule_actions]\nt = { action = \"temp_block\", ttl = 60 }\n[escalation]\nfactor = 3\nmax_ttl = 1000\nwindow = 3600\npermanent_after = 3";
    let h = Harness::with(default_ip, |b| b.rule(Arc::new(TestRule::new("t"))));
    for _ in 0..3 {
        h.rt.handle_event(&trigger());
        h.clock.advance_secs(1000.0);
    }
    assert_eq!(
        offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
        (json!(3), json!(540), json!("temp"))
    );
    // Written by the operator: permanent.
    let h = Harness::with(&toml("[\"ip\"]"), |b| b.rule(Arc::new(TestRule::new("t"))));
    for _ in 0..3 {
        h.rt.handle_event(&trigger());
        h.clock.advance_secs(1000.0);
    }
    assert_eq!(
        offense_and_ttl(h.out.of("audit.enforcement.block_applied").last().unwrap()),
        (json!(3), Value::Null, json!("permanent"))
    );
    // Safelisted targets are never an offense.
    let h = Harness::with(
        &format!("{}\n[safelist]\nusers = [\"u1\"]", toml("[\"user\"]")),
        |b| b.rule(Arc::new(TestRule::new("t"))),
    );
    for _ in 0..4 {
        h.rt.handle_event(&trigger());
    }
    assert!(h.out.of("audit.enforcement.block_applied").is_empty());
    assert_eq!(
        h.rt.escalation()
            .unwrap()
            .count(&sec_audit_rules::ScopeKey::new("user", "u1")),
        0
    );
}

#[test]
fn retry_after_on_every_temp_block_denial_and_none_for_permanent() {
    let toml = "enabled = true\n[rule_actions]\nt = { action = \"temp_block\", scopes = [\"ip\", \"user\"], ttl = 90 }\n[escalation]\nfactor = 2\nmax_ttl = 1000\nwindow = 1000";
    let h = Harness::with(toml, |b| {
        b.rule(Arc::new(TestRule {
            ingress: true,
            ..TestRule::new("t")
        }))
    });
    // The address already has an offense: its block is longer than the
    // user's (the first target in precedence order); the request is told
    // the longest.
    h.rt.handle_event(&event(
        json!({"event_type": "x", "trigger": "yes", "source.address": "203.0.113.5"}),
    ));
    h.clock.advance_secs(90.0);
    let d =
        h.rt.ingress_check(&RequestView::new("POST", "/trigger", "203.0.113.5").with_user_id("u1"));
    assert!(
        matches!(
            d,
            IngressDecision::Deny {
                reason: DenyReason::RuleMatched { .. },
                retry_after: Some(180),
                ..
            }
        ),
        "{d:?}"
    );
    // Its own block, part-way through: the seconds left, rounded up.
    h.clock.advance_secs(10.4);
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", "198.51.100.3").with_user_id("u1"));
    assert_eq!(d.retry_after(), Some(80));
    // A permanent block: none.
    h.rt.block(&manual("user", "u9", None)).unwrap();
    let d =
        h.rt.ingress_check(&RequestView::new("GET", "/", "198.51.100.2").with_user_id("u9"));
    assert!(
        matches!(
            d,
            IngressDecision::Deny {
                retry_after: None,
                ..
            }
        ),
        "{d:?}"
    );

    // A temp-block match that wrote no block (the request has none of its
    // scopes) still tells the client the action's TTL.
    let h = Harness::with(
        "enabled = true\n[rule_actions]\nt = { action = \"temp_block\", scopes = [\"user\"], ttl = 45 }",
        |b| {
            b.rule(Arc::new(TestRule {
                ingress: true,
                ..TestRule::new("t")
            }))
        },
    );
    let d =
        h.rt.ingress_check(&RequestView::new("POST", "/trigger", "203.0.113.6"));
    assert!(h.out.of("audit.enforcement.block_applied").is_empty());
    assert!(
        matches!(
            d,
            IngressDecision::Deny {
                reason: DenyReason::RuleMatched { .. },
                retry_after: Some(45),
                ..
            }
        ),
        "{d:?}"
    );
}

#[test]
fn safelist_and_escalation_values_are_validated() {
    for (text, key) in [
        ("[safelist]\nusers = [\"\"]", "`safelist.users[0]`"),
        ("[safelist]\nsessions = [\" \"]", "`safelist.sessions[0]`"),
        (
            "[escalation]\nfactor = 0.5\nmax_ttl = 10\nwindow = 10",
            "`escalation.factor`",
        ),
        (
            "[escalation]\nfactor = 2\nmax_ttl = 10\nwindow = 10\npermanent_after = 1",
            "`escalation.permanent_after`",
        ),
    ] {
        let e = Config::from_toml_str(text).unwrap_err().to_string();
        assert!(e.contains(key), "{text}: {e}");
    }
}
