//! Isolation (a panicking plugin, invalid matches, rule errors) and the
//! fidelity of what a plugin reads through the boundary.

mod support;

use std::sync::Arc;

use sec_audit_core::AuditEvent;
use sec_audit_plugin_host::{load, load_plugin_rules, PluginSpec};
use sec_audit_rules::{builtin, Engine, EngineError, EngineOptions, Rule, ScopeKey};
use serde_json::{json, Value};
use support::{clock, event, plugin, table};

fn failed_login(ip: &str) -> AuditEvent {
    event(json!({"event_type": "auth.login.failed", "source.address": ip, "user.name": "victim"}))
}

fn brute_force(threshold: u32) -> Arc<dyn Rule> {
    builtin::build(&table(
        json!({"builtin": "brute_force_login", "threshold": threshold}),
    ))
    .unwrap()
}

#[test]
fn a_panicking_plugin_rule_is_isolated_and_native_rules_keep_matching() {
    let panicking = load_plugin_rules(&PluginSpec::new(plugin("panicking"))).unwrap();
    assert_eq!(panicking.len(), 1);
    let engine = Engine::builder()
        .clock(clock())
        .rule(Arc::clone(&panicking[0]))
        .rule(brute_force(3))
        .build()
        .unwrap();

    for i in 1..=2u64 {
        assert!(engine
            .evaluate(&failed_login("203.0.113.1"), false)
            .unwrap()
            .is_empty());
        assert_eq!(engine.rule_failures(), i);
    }
    let m = engine
        .evaluate(&failed_login("203.0.113.1"), false)
        .unwrap();
    assert_eq!(
        m.len(),
        1,
        "the built-in still matches beside a panicking plugin"
    );
    assert_eq!(m[0].rule_name, "brute_force_login");
    assert_eq!(engine.rule_failures(), 3);

    // A direct call reports the panic as a rule failure, never unwinds.
    let store = sec_audit_rules::MemoryCounters::new(clock());
    let history = sec_audit_rules::MemoryHistory::new();
    let keys = [ScopeKey::new("ip", "203.0.113.1")];
    let config = serde_json::Map::new();
    let ctx = sec_audit_rules::RuleContext {
        now: 1.0,
        counters: &store,
        history: sec_audit_rules::HistoryReader::new(&history, &keys, None, 1.0),
        config: &config,
    };
    assert_eq!(
        panicking[0].evaluate(&failed_login("203.0.113.1"), &ctx),
        Err(sec_audit_rules::RuleError::Panicked)
    );
    assert_eq!(
        panicking[0].history_attributes(&failed_login("203.0.113.1"), &ctx),
        Err(sec_audit_rules::RuleError::Panicked)
    );
}

#[test]
fn a_panicking_plugin_fails_the_ingress_pass_only_when_fail_open_is_off() {
    let spec =
        PluginSpec::new(plugin("panicking")).with_config(table(json!({"event_types": ["x.y"]})));
    let rules = load_plugin_rules(&spec).unwrap();
    assert_eq!(rules[0].event_types(), ["x.y".to_string()]);
    let engine = Engine::builder()
        .clock(clock())
        .rule(Arc::clone(&rules[0]))
        .options(EngineOptions {
            fail_open: false,
            ..Default::default()
        })
        .build()
        .unwrap();
    // Not ingress-safe: never run on the ingress pass, so it cannot fail it.
    assert!(engine
        .evaluate(&event(json!({"event_type": "x.y"})), true)
        .unwrap()
        .is_empty());
    // Egress: isolated, the pass itself succeeds.
    assert!(engine
        .evaluate(&event(json!({"event_type": "x.y"})), false)
        .unwrap()
        .is_empty());
    assert_eq!(engine.rule_failures(), 1);
    // Other types are filtered out before the plugin is called.
    assert!(engine
        .evaluate(&event(json!({"event_type": "other"})), false)
        .unwrap()
        .is_empty());
    assert_eq!(engine.rule_failures(), 1);
}

#[test]
fn invalid_matches_are_isolated_rule_failures() {
    let rules = load(&PluginSpec::new(plugin("invalid_match"))).unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["severity_zero", "empty_match_name", "wrong_match_name"]
    );
    let mut builder = Engine::builder().clock(clock()).rule(brute_force(1));
    for r in &rules {
        builder = builder.rule(Arc::clone(&r.rule));
    }
    let engine = builder.build().unwrap();
    let m = engine.evaluate(&failed_login("192.0.2.3"), false).unwrap();
    assert_eq!(m.len(), 1, "only the built-in's match survives: {m:?}");
    assert_eq!(m[0].rule_name, "brute_force_login");
    assert_eq!(engine.rule_failures(), 3);
}

#[test]
fn each_invalid_match_kind_is_refused() {
    for (rule, expected) in [
        ("severity_zero", "severity 0 outside 1-10"),
        ("empty_match_name", "empty rule name"),
        (
            "wrong_match_name",
            "returned a match named `brute_force_login`",
        ),
    ] {
        let rules =
            load_plugin_rules(&PluginSpec::new(plugin("invalid_match")).with_rule(rule)).unwrap();
        assert_eq!(rules.len(), 1);
        let engine = Engine::builder()
            .clock(clock())
            .rule(Arc::clone(&rules[0]))
            .build()
            .unwrap();
        assert!(engine
            .evaluate(&failed_login("192.0.2.3"), false)
            .unwrap()
            .is_empty());
        assert_eq!(engine.rule_failures(), 1, "{rule}");
        // What the engine validates, for the message.
        let store = sec_audit_rules::MemoryCounters::new(clock());
        let history = sec_audit_rules::MemoryHistory::new();
        let config = serde_json::Map::new();
        let ctx = sec_audit_rules::RuleContext {
            now: 1.0,
            counters: &store,
            history: sec_audit_rules::HistoryReader::new(&history, &[], None, 1.0),
            config: &config,
        };
        let m = rules[0]
            .evaluate(&failed_login("192.0.2.3"), &ctx)
            .unwrap()
            .unwrap();
        let err = m.validate(rule).unwrap_err().to_string();
        assert!(err.contains(expected), "{rule}: {err}");
    }
}

#[test]
fn a_plugin_rule_name_clashing_with_another_rule_is_refused_by_the_engine() {
    let a = load_plugin_rules(&PluginSpec::new(plugin("repeated_not_found"))).unwrap();
    let b = load_plugin_rules(&PluginSpec::new(plugin("repeated_not_found"))).unwrap();
    let err = Engine::builder()
        .rule(Arc::clone(&a[0]))
        .rule(Arc::clone(&b[0]))
        .build()
        .unwrap_err();
    assert_eq!(err, EngineError::DuplicateRule("repeated_not_found".into()));
}

fn probe(config: Value) -> Arc<dyn Rule> {
    let spec = PluginSpec::new(plugin("probe")).with_config(table(config));
    load_plugin_rules(&spec).unwrap().remove(0)
}

#[test]
fn the_event_view_has_the_native_semantics() {
    let keys = [
        "a.b", "a.c.d", "n", "x.y", "missing", "num", "flag", "list", "obj", "üñí",
    ];
    let rule = probe(json!({"keys": keys}));
    assert!(rule.safe_for_enforcement());
    let clock = clock();
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(rule)
        .build()
        .unwrap();
    let e = event(json!({
        "event_type": "http.response.client_error",
        "request_id": "req-1",
        "source.address": "203.0.113.200",
        "user.id": 42,
        "session.id": "s-1",
        "http.request.method": "POST",
        "path": "/raw/path",
        "url.full": "https://example.test/raw/path",
        "http.route": "/raw/{id}",
        "route_name": "raw-detail",
        "status": "404",
        "request.body": {"amount": "10000.5", "nested": {"k": [1, 2]}},
        "a.b": 1, "a": {"b": 2, "c": {"d": "deep"}},
        "n": null, "x": {"y": null},
        "num": 1.5, "flag": true, "list": [1, "two", null], "obj": {"k": "v"},
        "üñí": "cödé ☃"
    }));
    let m = engine.evaluate(&e, false).unwrap();
    assert_eq!(m.len(), 1);
    let md = &m[0].metadata;
    assert_eq!(md["event_type"], json!("http.response.client_error"));
    assert_eq!(md["request_id"], json!("req-1"));
    assert_eq!(md["srcip"], json!("203.0.113.200"));
    assert_eq!(md["user_id"], json!("42"), "numbers read as text");
    assert_eq!(md["session_id"], json!("s-1"));
    assert_eq!(md["method"], json!("POST"));
    assert_eq!(md["path"], json!("/raw/path"));
    assert_eq!(md["url"], json!("https://example.test/raw/path"));
    assert_eq!(md["route_pattern"], json!("/raw/{id}"));
    assert_eq!(md["route_name"], json!("raw-detail"));
    assert_eq!(md["status_code"], json!(404));
    assert_eq!(
        md["body"],
        json!({"amount": "10000.5", "nested": {"k": [1, 2]}})
    );
    assert_eq!(md["body_amount"], json!("10000.5"));
    assert_eq!(
        md["fields"],
        json!({"a.b": 1, "a.c.d": "deep", "n": null, "x.y": null, "missing": null, "num": 1.5,
               "flag": true, "list": [1, "two", null], "obj": {"k": "v"}, "üñí": "cödé ☃"})
    );
    assert_eq!(
        md["texts"],
        json!({"a.b": "1", "a.c.d": "deep", "n": "", "x.y": "", "missing": "", "num": "1.5",
               "flag": "true", "list": "", "obj": "", "üñí": "cödé ☃"})
    );
    assert_eq!(md["now"], json!(1_000_000.0));
    assert_eq!(md["config"], json!({"keys": keys}));
    // The match carries the event's identifying fields.
    assert_eq!(m[0].srcip, "203.0.113.200");
    assert_eq!(m[0].user_id, "42");
    assert_eq!(m[0].session_id, "s-1");
    assert_eq!(m[0].request_id, "req-1");
    assert_eq!(m[0].subject.as_deref(), Some("probe-subject"));
    assert_eq!(m[0].tags, vec!["probe".to_string()]);
    assert_eq!(m[0].severity, 3);
}

#[test]
fn counters_and_history_cross_back_into_the_host() {
    let clock = clock();
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(probe(json!({})))
        .build()
        .unwrap();
    let ev = |path: &str, ty: &str| {
        event(json!({"event_type": ty, "srcip": "198.51.100.4", "user_id": "u1", "url.path": path}))
    };
    let m = engine
        .evaluate(&ev("/one", "http.response.success"), false)
        .unwrap();
    let md = &m[0].metadata;
    assert_eq!(md["incr_first"], json!(2));
    assert_eq!(md["incr_second"], json!(5));
    assert_eq!(md["set_read"], json!(7));
    assert_eq!(md["after_delete"], json!(-1));
    assert_eq!(md["history_ip_count"], json!(0));
    // The counters are the engine's: the plugin's writes are visible natively.
    assert_eq!(engine.counters().get_int("probe:k", 0), 5);
    // `expire("probe:k", 100)` moved the key's end to now + 100.
    clock.advance_secs(99.0);
    assert_eq!(engine.counters().get_int("probe:k", 0), 5);

    for (path, ty) in [
        ("/two", "http.response.client_error"),
        ("/three", "http.response.success"),
    ] {
        clock.advance_secs(1.0);
        engine.evaluate(&ev(path, ty), false).unwrap();
    }
    clock.advance_secs(1.0);
    let m = engine
        .evaluate(&ev("/four", "http.response.success"), false)
        .unwrap();
    let md = &m[0].metadata;
    // Window 100 s: the first event (101 s old... now 102 s) is out.
    assert_eq!(md["history_ip_count"], json!(2));
    assert_eq!(md["history_user_count"], json!(2));
    assert_eq!(
        md["history_paths"],
        json!(["/three", "/two"]),
        "newest first, with rule_attrs"
    );
    assert_eq!(md["history_newest_recorded_at"], json!(1_000_101.0));
    assert_eq!(md["history_typed_limited"], json!(1));
}

#[test]
fn max_events_caps_history_reads() {
    let clock = clock();
    let engine = Engine::builder()
        .clock(clock.clone())
        .rule(probe(json!({})))
        .build()
        .unwrap();
    let mut last = None;
    for i in 0..8 {
        clock.advance_secs(1.0);
        let e =
            event(json!({"event_type": "e", "srcip": "198.51.100.5", "url.path": format!("/{i}")}));
        last = Some(engine.evaluate(&e, false).unwrap());
    }
    let m = last.unwrap();
    assert_eq!(
        m[0].metadata["history_ip_count"],
        json!(5),
        "max_events = 5"
    );
}

#[test]
fn reading_an_undeclared_scope_is_an_isolated_failure() {
    let engine = Engine::builder()
        .clock(clock())
        .rule(probe(json!({"read_undeclared": true})))
        .build()
        .unwrap();
    let e = event(json!({"event_type": "e", "srcip": "198.51.100.6", "session_id": "s"}));
    assert!(engine.evaluate(&e, false).unwrap().is_empty());
    assert_eq!(engine.rule_failures(), 1);

    let rule = probe(json!({"read_undeclared": true}));
    let store = sec_audit_rules::MemoryCounters::new(clock());
    let history = sec_audit_rules::MemoryHistory::new();
    let config = serde_json::Map::new();
    let ctx = sec_audit_rules::RuleContext {
        now: 1.0,
        counters: &store,
        history: sec_audit_rules::HistoryReader::new(&history, &[], rule.history_context(), 1.0),
        config: &config,
    };
    assert_eq!(
        rule.evaluate(&e, &ctx),
        Err(sec_audit_rules::RuleError::UndeclaredScope(
            "session".into()
        ))
    );
}
