//! The two shipped example plugins, loaded from their real `.so` files and
//! run through a real engine (memory stores, manual clock).

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use sec_audit_plugin_host::{load, plugin_rule_names, LoadedRule, PluginSpec};
use sec_audit_rules::{builtin, ActionKind, ActionPolicy, ActionSpec, Effect, Engine, ScopeKey};
use serde_json::{json, Value};
use support::{clock, event, plugin, table};

fn load_one(name: &str, config: Value) -> LoadedRule {
    let spec = PluginSpec::new(plugin(name)).with_config(table(config));
    let mut rules = load(&spec).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rules.len(), 1);
    rules.remove(0)
}

fn not_found(ip: &str, path: &str) -> sec_audit_core::AuditEvent {
    event(
        json!({"event_type": "http.response.client_error", "source.address": ip,
                 "http.response.status_code": 404, "url.path": path}),
    )
}

#[test]
fn repeated_not_found_fires_at_the_threshold_per_ip_within_the_window() {
    let clock = clock();
    let loaded = load_one(
        "repeated_not_found",
        json!({"threshold": 5, "window_seconds": 60}),
    );
    assert_eq!(loaded.name, "repeated_not_found");
    assert_eq!(loaded.sha256.len(), 64);
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(loaded.rule.clone())
        .build()
        .unwrap();

    for i in 1..=4 {
        assert!(engine
            .evaluate(&not_found("203.0.113.7", &format!("/p{i}")), false)
            .unwrap()
            .is_empty());
    }
    // Not a 404, another IP, another type: none counts.
    let forbidden = event(
        json!({"event_type": "http.response.client_error", "srcip": "203.0.113.7", "status": "403"}),
    );
    assert!(engine.evaluate(&forbidden, false).unwrap().is_empty());
    assert!(engine
        .evaluate(&not_found("198.51.100.1", "/x"), false)
        .unwrap()
        .is_empty());
    let success = event(
        json!({"event_type": "http.response.success", "srcip": "203.0.113.7", "status": 404}),
    );
    assert!(engine.evaluate(&success, false).unwrap().is_empty());

    let m = engine
        .evaluate(&not_found("203.0.113.7", "/p5"), false)
        .unwrap();
    assert_eq!(m.len(), 1, "the 5th 404 matches");
    let m = &m[0];
    assert_eq!(m.rule_name, "repeated_not_found");
    assert_eq!(m.severity, 5);
    assert_eq!(m.srcip, "203.0.113.7");
    assert_eq!(m.event_type, "http.response.client_error");
    assert_eq!(m.matched_at, 1_000_000.0);
    assert_eq!(m.message, "Repeated 404 responses from one source IP");
    assert_eq!(m.tags, vec!["http".to_string(), "scan".to_string()]);
    assert_eq!(m.metadata["not_found_count"], json!(5));
    assert_eq!(m.metadata["last_path"], json!("/p5"));
    assert_eq!(m.decision, None);
    assert_eq!(engine.rule_failures(), 0);

    // The window is fixed: from t + 60 on the count starts again.
    clock.advance_secs(60.0);
    assert!(engine
        .evaluate(&not_found("203.0.113.7", "/again"), false)
        .unwrap()
        .is_empty());
}

#[test]
fn repeated_not_found_defaults_are_threshold_10_and_window_60() {
    let clock = clock();
    let loaded = load_one("repeated_not_found", json!({}));
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(loaded.rule)
        .build()
        .unwrap();
    for _ in 0..9 {
        assert!(engine
            .evaluate(&not_found("192.0.2.1", "/a"), false)
            .unwrap()
            .is_empty());
    }
    clock.advance_secs(59.0);
    assert_eq!(
        engine
            .evaluate(&not_found("192.0.2.1", "/a"), false)
            .unwrap()
            .len(),
        1
    );
}

fn failed_login(ip: &str, user: &str) -> sec_audit_core::AuditEvent {
    event(json!({"event_type": "auth.login.failed", "source.address": ip, "user.name": user}))
}

#[test]
fn credential_stuffing_counts_distinct_usernames_from_history() {
    let clock = clock();
    let loaded = load_one(
        "credential_stuffing",
        json!({"distinct_usernames": 4, "window_seconds": 600}),
    );
    let rule = loaded.rule.clone();
    let ctx = rule.history_context().expect("declares a history context");
    assert_eq!(ctx.scopes, BTreeSet::from(["ip".to_string()]));
    assert_eq!(ctx.event_types, Some(vec!["auth.login.failed".to_string()]));
    assert_eq!(ctx.window_seconds, 600.0);
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(rule)
        .build()
        .unwrap();

    let ip = "203.0.113.50";
    // The same username again and again is not stuffing.
    for _ in 0..6 {
        assert!(engine
            .evaluate(&failed_login(ip, "alice"), false)
            .unwrap()
            .is_empty());
    }
    for user in ["bob", "carol"] {
        clock.advance_secs(1.0);
        assert!(engine
            .evaluate(&failed_login(ip, user), false)
            .unwrap()
            .is_empty());
    }
    // Another IP's attempts do not count for this one.
    assert!(engine
        .evaluate(&failed_login("198.51.100.9", "dave"), false)
        .unwrap()
        .is_empty());
    clock.advance_secs(1.0);
    let m = engine.evaluate(&failed_login(ip, "dave"), false).unwrap();
    assert_eq!(m.len(), 1, "the 4th distinct username matches");
    assert_eq!(m[0].rule_name, "credential_stuffing");
    assert_eq!(m[0].severity, 8);
    assert_eq!(m[0].srcip, ip);
    assert_eq!(m[0].metadata["distinct_usernames"], json!(4));
    assert_eq!(m[0].metadata["failures_seen"], json!(9));
    assert_eq!(
        m[0].tags,
        vec!["auth".to_string(), "credential_stuffing".to_string()]
    );

    // History remembers a fingerprint of each username, never the name.
    let rows = engine
        .history()
        .query(&ScopeKey::new("ip", ip), 0.0, None, 100);
    assert_eq!(rows.len(), 9);
    let attrs = &rows[0]["rule_attrs"]["credential_stuffing"];
    assert_eq!(attrs["user_fp"].as_str().map(str::len), Some(16));
    let dump = serde_json::to_string(&rows.iter().map(|r| r.as_ref().clone()).collect::<Vec<_>>())
        .unwrap();
    for name in ["alice", "bob", "carol", "dave"] {
        assert!(
            !dump.contains(name),
            "history must not hold `{name}`: {dump}"
        );
    }

    // Outside the window the old attempts no longer count.
    clock.advance_secs(600.0);
    assert!(engine
        .evaluate(&failed_login(ip, "erin"), false)
        .unwrap()
        .is_empty());
    assert_eq!(engine.rule_failures(), 0);
}

#[test]
fn credential_stuffing_defaults_need_ten_distinct_usernames() {
    let clock = clock();
    let loaded = load_one("credential_stuffing", json!({}));
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(loaded.rule)
        .build()
        .unwrap();
    for i in 0..9 {
        clock.advance_secs(30.0);
        assert!(engine
            .evaluate(&failed_login("192.0.2.77", &format!("user{i}")), false)
            .unwrap()
            .is_empty());
    }
    clock.advance_secs(30.0);
    assert_eq!(
        engine
            .evaluate(&failed_login("192.0.2.77", "user9"), false)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn plugin_rules_only_observe_until_mapped_then_block() {
    let clock = clock();
    // The plugin suggests a temp block: ignored while unmapped.
    let loaded = load_one(
        "repeated_not_found",
        json!({"threshold": 2, "decision": "temp_block"}),
    );
    let engine = Engine::builder()
        .clock(clock)
        .rule(loaded.rule.clone())
        .build()
        .unwrap();
    engine
        .evaluate(&not_found("203.0.113.9", "/a"), false)
        .unwrap();
    let m = engine
        .evaluate(&not_found("203.0.113.9", "/b"), false)
        .unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].decision, Some(ActionKind::TempBlock));

    let mut policy = ActionPolicy {
        plugin_rules: plugin_rule_names(std::slice::from_ref(&loaded)),
        ..Default::default()
    };
    assert!(policy.plugin_rules.contains("repeated_not_found"));
    assert_eq!(policy.resolve(&m[0]).effect, Effect::Observe);

    policy.rule_actions.insert(
        "repeated_not_found".into(),
        ActionSpec {
            ttl: Some(120),
            ..ActionSpec::action(ActionKind::TempBlock).with_scopes(["ip"])
        },
    );
    let action = policy.resolve(&m[0]);
    assert_eq!(action.effect, Effect::TempBlock);
    assert_eq!(action.scopes, vec!["ip".to_string()]);
    assert_eq!(action.ttl, Some(120));
}

#[test]
fn plugins_run_beside_native_rules_and_not_on_the_ingress_pass() {
    let clock = clock();
    let loaded = load_one("repeated_not_found", json!({"threshold": 1}));
    let brute = builtin::build(&table(
        json!({"builtin": "brute_force_login", "threshold": 1}),
    ))
    .unwrap();
    let engine = Engine::builder()
        .clock(clock)
        .rule(brute)
        .rule(Arc::clone(&loaded.rule))
        .build()
        .unwrap();
    assert!(!engine.has_ingress_rules());
    assert_eq!(
        engine
            .evaluate(&not_found("192.0.2.5", "/x"), false)
            .unwrap()
            .len(),
        1
    );
    assert!(engine
        .evaluate(&not_found("192.0.2.5", "/x"), true)
        .unwrap()
        .is_empty());
    let m = engine
        .evaluate(&failed_login("192.0.2.5", "u"), false)
        .unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].rule_name, "brute_force_login");
}
