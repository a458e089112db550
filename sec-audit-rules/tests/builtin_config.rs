//! Building the built-in rules from configuration tables: defaults, and
//! errors that name the rule and the key.

use sec_audit_rules::builtin::{build, build_named, BUILTIN_NAMES};
use sec_audit_rules::{ConfigError, RuleConfig};
use serde_json::{json, Value};

fn table(v: Value) -> RuleConfig {
    v.as_object().cloned().expect("test table is an object")
}

fn build_err(v: Value) -> ConfigError {
    match build(&table(v)) {
        Ok(rule) => panic!("rule `{}` built but an error was expected", rule.name()),
        Err(e) => e,
    }
}

/// The error names the rule and the key.
fn assert_names(err: &ConfigError, rule: &str, key: &str) {
    let text = err.to_string();
    assert!(
        text.contains(&format!("`{rule}`")),
        "{text} should name rule {rule}"
    );
    assert!(
        text.contains(&format!("`{key}`")),
        "{text} should name key {key}"
    );
}

fn defaults_for(name: &str) -> Value {
    if name == "sensitive_field_change" {
        json!({"builtin": name, "fields": ["email"]})
    } else {
        json!({"builtin": name})
    }
}

#[test]
fn every_builtin_builds_with_defaults() {
    let expected: [(&str, u8, bool, &[&str]); 8] = [
        (
            "brute_force_login",
            8,
            false,
            &["auth.login.failed", "auth.login.success"],
        ),
        ("login_throttle", 8, true, &["audit.http.request.pre"]),
        (
            "repeated_client_error",
            6,
            false,
            &["http.response.client_error"],
        ),
        ("repeated_route", 7, true, &["audit.http.request.pre"]),
        (
            "request_body_threshold",
            8,
            true,
            &["audit.http.request.pre"],
        ),
        (
            "resource_enumeration",
            7,
            false,
            &[
                "http.response.success",
                "http.response.redirect",
                "http.response.client_error",
                "http.response.server_error",
            ],
        ),
        ("sensitive_field_change", 7, false, &["model.update"]),
        ("suspicious_proxy_header", 6, false, &[]),
    ];
    assert_eq!(BUILTIN_NAMES.len(), expected.len());
    for (name, severity, ingress, types) in expected {
        assert!(BUILTIN_NAMES.contains(&name));
        let rule = build(&table(defaults_for(name))).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rule.name(), name);
        assert_eq!(rule.severity(), severity, "{name}");
        assert_eq!(rule.safe_for_enforcement(), ingress, "{name}");
        assert_eq!(rule.event_types(), types, "{name}");
        assert_eq!(
            rule.history_context().is_some(),
            name == "resource_enumeration",
            "{name}"
        );
    }
}

#[test]
fn every_builtin_accepts_the_common_overrides() {
    for name in BUILTIN_NAMES {
        let mut t = table(defaults_for(name));
        t.insert("severity".into(), json!(3));
        t.insert("message".into(), json!("custom"));
        t.insert("tags".into(), json!(["a", "b"]));
        let rule = build(&t).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rule.severity(), 3, "{name}");
    }
}

#[test]
fn decision_is_accepted_only_by_rules_that_suggest_one() {
    for name in BUILTIN_NAMES {
        let mut t = table(defaults_for(name));
        t.insert("decision".into(), json!("alert"));
        let result = build(&t);
        if name == "repeated_client_error" {
            let err = result
                .err()
                .expect("repeated_client_error suggests no decision");
            assert_eq!(
                err,
                ConfigError::UnknownParameter {
                    rule: name.into(),
                    key: "decision".into()
                }
            );
        } else {
            assert!(result.is_ok(), "{name}: {:?}", result.err());
        }
    }
}

#[test]
fn unknown_builtin_and_missing_builtin_error() {
    assert_eq!(
        build_err(json!({"builtin": "nope"})),
        ConfigError::UnknownBuiltin("nope".into())
    );
    assert!(matches!(
        build_err(json!({"builtin": 5})),
        ConfigError::UnknownBuiltin(_)
    ));
    assert_eq!(
        build_err(json!({"threshold": 5})),
        ConfigError::MissingBuiltin
    );
    assert!(build_named("nope", &RuleConfig::new()).is_err());
}

#[test]
fn unknown_parameters_are_rejected_for_every_builtin() {
    for name in BUILTIN_NAMES {
        let mut t = table(defaults_for(name));
        t.insert("treshold".into(), json!(5));
        let err = build(&t)
            .err()
            .unwrap_or_else(|| panic!("{name} accepted a typo"));
        assert_eq!(
            err,
            ConfigError::UnknownParameter {
                rule: name.into(),
                key: "treshold".into()
            }
        );
        assert_names(&err, name, "treshold");
    }
    // Parameters of one rule are unknown to another.
    let err = build_err(json!({"builtin": "repeated_client_error", "paths": ["/x"]}));
    assert_eq!(
        err,
        ConfigError::UnknownParameter {
            rule: "repeated_client_error".into(),
            key: "paths".into()
        }
    );
    let err = build_err(json!({"builtin": "login_throttle", "window_seconds": 10}));
    assert_names(&err, "login_throttle", "window_seconds");
    let err = build_err(json!({"builtin": "suspicious_proxy_header", "threshold": 1}));
    assert_names(&err, "suspicious_proxy_header", "threshold");
}

#[test]
fn negative_thresholds_are_errors() {
    for name in [
        "brute_force_login",
        "login_throttle",
        "repeated_client_error",
        "repeated_route",
        "request_body_threshold",
        "resource_enumeration",
    ] {
        for bad in [json!(-1), json!(-0.5), json!("-3")] {
            let err = build_err(json!({"builtin": name, "threshold": bad}));
            assert!(
                matches!(err, ConfigError::BadValue { .. }),
                "{name}: {err:?}"
            );
            assert_names(&err, name, "threshold");
        }
        let err = build_err(json!({"builtin": name, "threshold": "many"}));
        assert_names(&err, name, "threshold");
    }
}

#[test]
fn thresholds_accept_integers_floats_and_numeric_strings() {
    for name in [
        "login_throttle",
        "repeated_client_error",
        "repeated_route",
        "resource_enumeration",
    ] {
        for ok in [json!(3), json!(3.5), json!("4"), json!(0)] {
            assert!(
                build(&table(json!({"builtin": name, "threshold": ok}))).is_ok(),
                "{name}"
            );
        }
    }
    for ok in [json!(3), json!(2.75), json!("12345.67"), json!(0)] {
        assert!(build(&table(
            json!({"builtin": "request_body_threshold", "threshold": ok})
        ))
        .is_ok());
    }
}

#[test]
fn invalid_regexes_are_errors() {
    for name in ["login_throttle", "repeated_route", "request_body_threshold"] {
        let err = build_err(json!({"builtin": name, "paths": ["^/ok$", "(unclosed"]}));
        assert_names(&err, name, "paths");
        assert!(err.to_string().contains("invalid regex"), "{err}");
        let err = build_err(json!({"builtin": name, "paths": [1, 2]}));
        assert_names(&err, name, "paths");
    }
}

#[test]
fn sensitive_field_change_requires_fields() {
    let err = build_err(json!({"builtin": "sensitive_field_change"}));
    assert_eq!(
        err,
        ConfigError::MissingParameter {
            rule: "sensitive_field_change".into(),
            key: "fields".into()
        }
    );
    assert_names(&err, "sensitive_field_change", "fields");
    for bad in [
        json!([]),
        json!([""]),
        json!(5),
        json!([1]),
        json!({"a": "b"}),
    ] {
        let err = build_err(json!({"builtin": "sensitive_field_change", "fields": bad}));
        assert!(matches!(err, ConfigError::BadValue { .. }), "{err:?}");
        assert_names(&err, "sensitive_field_change", "fields");
    }
    let err = build_err(
        json!({"builtin": "sensitive_field_change", "fields": ["email"], "model_labels": 3}),
    );
    assert_names(&err, "sensitive_field_change", "model_labels");
    assert!(build(&table(
        json!({"builtin": "sensitive_field_change", "fields": "email"})
    ))
    .is_ok());
}

#[test]
fn bad_decisions_are_errors() {
    for name in BUILTIN_NAMES
        .iter()
        .filter(|n| **n != "repeated_client_error")
    {
        let mut t = table(defaults_for(name));
        t.insert("decision".into(), json!("explode"));
        let err = build(&t)
            .err()
            .unwrap_or_else(|| panic!("{name} accepted a bad decision"));
        assert_names(&err, name, "decision");
        t.insert("decision".into(), json!(1));
        let err = build(&t)
            .err()
            .unwrap_or_else(|| panic!("{name} accepted a numeric decision"));
        assert_names(&err, name, "decision");
    }
}

#[test]
fn other_bad_values_name_rule_and_key() {
    let cases = [
        (
            json!({"builtin": "repeated_route", "window_seconds": 0}),
            "window_seconds",
        ),
        (
            json!({"builtin": "repeated_route", "block_ttl": -5}),
            "block_ttl",
        ),
        (
            json!({"builtin": "repeated_client_error", "window_seconds": "soon"}),
            "window_seconds",
        ),
        (
            json!({"builtin": "resource_enumeration", "window_seconds": -1}),
            "window_seconds",
        ),
        (
            json!({"builtin": "request_body_threshold", "field": 5}),
            "field",
        ),
        (
            json!({"builtin": "request_body_threshold", "field": ""}),
            "field",
        ),
        (
            json!({"builtin": "suspicious_proxy_header", "safe_for_enforcement": "yes"}),
            "safe_for_enforcement",
        ),
        (
            json!({"builtin": "login_throttle", "severity": 11}),
            "severity",
        ),
        (
            json!({"builtin": "login_throttle", "message": 1}),
            "message",
        ),
        (json!({"builtin": "login_throttle", "tags": 1}), "tags"),
    ];
    for (t, key) in cases {
        let name = t["builtin"].as_str().unwrap_or_default().to_string();
        let err = build_err(t);
        assert_names(&err, &name, key);
    }
}

#[test]
fn the_registry_declares_what_each_builtin_does() {
    use sec_audit_rules::builtin::{find, IngressSafety, BUILTINS};
    use sec_audit_rules::policy::builtin_default;
    use sec_audit_rules::ActionKind;
    assert_eq!(BUILTINS.len(), BUILTIN_NAMES.len());
    for b in &BUILTINS {
        assert!(std::ptr::eq(find(b.name).expect("found by name"), b));
        let rule = b
            .build(&table(defaults_for(b.name)))
            .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert_eq!(rule.name(), b.name);
        // The declared ingress safety is what the built rule reports.
        let safe_with = |flag: bool| {
            let mut t = table(defaults_for(b.name));
            t.insert("safe_for_enforcement".into(), json!(flag));
            build(&t).map(|r| r.safe_for_enforcement())
        };
        match b.ingress {
            IngressSafety::Always => assert!(rule.safe_for_enforcement(), "{}", b.name),
            IngressSafety::Never => assert!(!rule.safe_for_enforcement(), "{}", b.name),
            IngressSafety::Configurable => {
                assert!(!rule.safe_for_enforcement(), "{}", b.name);
                assert_eq!(safe_with(true), Ok(true), "{}", b.name);
            }
        }
        if b.ingress != IngressSafety::Configurable {
            assert!(safe_with(true).is_err(), "{} takes no flag", b.name);
        }
        assert_eq!(builtin_default(b.name), b.default_action(), "{}", b.name);
    }
    let sensitive = builtin_default("sensitive_field_change").expect("has a default");
    assert_eq!(sensitive.action, Some(ActionKind::PersistBlock));
    assert_eq!(
        sensitive.scopes,
        Some(vec!["user".to_string(), "session".to_string()])
    );
    assert_eq!(builtin_default("resource_enumeration"), None);
    assert_eq!(builtin_default("x"), None);
}

#[test]
fn windows_take_seconds_or_duration_strings() {
    for (w, secs) in [
        (json!(900), 900),
        (json!("15m"), 900),
        (json!("2h"), 7200),
        (json!(0.5), 1),
    ] {
        let rule = build(&table(
            json!({"builtin": "repeated_route", "window_seconds": w.clone(), "block_ttl": w}),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rule.name(), "repeated_route", "{secs}");
    }
    let rule = build(&table(
        json!({"builtin": "resource_enumeration", "window_seconds": "15m"}),
    ))
    .expect("builds");
    assert_eq!(
        rule.history_context().map(|h| h.window_seconds),
        Some(900.0)
    );
    for bad in [json!("15 minutes"), json!("0m"), json!("15w")] {
        let err = build_err(json!({"builtin": "repeated_route", "window_seconds": bad}));
        assert_names(&err, "repeated_route", "window_seconds");
    }
}
