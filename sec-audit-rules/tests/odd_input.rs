//! All eight built-ins together on odd events: nothing panics, no rule
//! evaluation fails.

use std::sync::Arc;

use sec_audit_core::{AuditEvent, ManualClock};
use sec_audit_rules::builtin::{build, BUILTIN_NAMES};
use sec_audit_rules::Engine;
use serde_json::{json, Map, Value};

fn engine(clock: Arc<ManualClock>) -> Engine {
    let mut b = Engine::builder().clock(clock);
    for name in BUILTIN_NAMES {
        let mut t = Map::new();
        t.insert("builtin".into(), json!(name));
        match name {
            "sensitive_field_change" => {
                t.insert("fields".into(), json!(["email", "ÉMAIL", "role"]));
                t.insert("model_labels".into(), json!(["auth.user", "ü.ß"]));
            }
            "suspicious_proxy_header" => {
                t.insert("safe_for_enforcement".into(), json!(true));
            }
            "login_throttle" | "repeated_route" | "request_body_threshold" => {
                t.insert("paths".into(), json!([]));
                t.insert("threshold".into(), json!(1));
            }
            _ => {
                t.insert("threshold".into(), json!(1));
            }
        }
        b = b.rule(build(&t).expect("builds"));
    }
    b.build().expect("engine builds")
}

fn deep(levels: usize) -> Value {
    let mut v = json!("leaf");
    for i in 0..levels {
        v = if i % 2 == 0 {
            json!({ "k": v })
        } else {
            json!([v, 1, "x"])
        };
    }
    v
}

fn odd_values() -> Vec<Value> {
    let long = "/".to_string() + &"a".repeat(5000);
    vec![
        json!(null),
        json!(true),
        json!(0),
        json!(-1),
        json!(1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!("not-an-ip"),
        json!("::ffff:1.2.3.4"),
        json!("[::1]:80"),
        json!("1.2.3.4:99999"),
        json!("999.999.999.999"),
        json!(""),
        json!("   "),
        json!("12345"),
        json!("1e999999999"),
        json!("-1e-999999999"),
        json!("NaN"),
        json!("ünïcödé ☃ 🦀 \u{202e}"),
        json!("a\u{0}b"),
        json!(long),
        json!(["a", 1, null, ["b"], {"c": "d"}]),
        json!({"x": 1}),
        deep(60),
    ]
}

const TYPES: [&str; 10] = [
    "audit.http.request.pre",
    "auth.login.failed",
    "auth.login.success",
    "http.response.success",
    "http.response.client_error",
    "http.response.server_error",
    "http.response.redirect",
    "model.update",
    "custom.thing",
    "model.create",
];

const KEYS: [&str; 16] = [
    "source.address",
    "srcip",
    "url.path",
    "path",
    "http.route",
    "route_pattern",
    "http.route_name",
    "request.body",
    "proxy_headers",
    "trusted_route",
    "changed_fields",
    "model_label",
    "object_id",
    "user.id",
    "session.id",
    "http.response.status_code",
];

#[test]
fn all_builtins_survive_odd_events() {
    let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
    let engine = engine(clock.clone());
    let values = odd_values();
    let long = "/".to_string() + &"é".repeat(5000);
    let mut evaluated = 0;
    for (ti, event_type) in TYPES.iter().enumerate() {
        for (vi, value) in values.iter().enumerate() {
            // Every key set to one odd value at once, and one key at a time
            // over an otherwise well-formed event.
            let mut all = Map::new();
            for key in KEYS {
                all.insert(key.into(), value.clone());
            }
            let mut events = vec![all];
            for (ki, key) in KEYS.iter().enumerate() {
                let mut m = Map::new();
                m.insert("source.address".into(), json!("203.0.113.9"));
                m.insert("url.path".into(), json!(format!("/api/items/{vi}/{ki}")));
                m.insert("http.route".into(), json!("/api/items/{id}/"));
                m.insert("request.body".into(), json!({"amount": value.clone()}));
                m.insert(
                    "proxy_headers".into(),
                    json!({"X-Forwarded-For": value.clone(), "Forwarded": long.clone()}),
                );
                m.insert("changed_fields".into(), json!([value.clone(), "Email"]));
                m.insert("model_label".into(), json!("auth.user"));
                m.insert((*key).into(), value.clone());
                events.push(m);
            }
            for attrs in events {
                let event = AuditEvent::new(*event_type, attrs).expect("valid event");
                let egress = engine.evaluate(&event, false).expect("fail-open engine");
                let ingress = engine.evaluate(&event, true).expect("fail-open engine");
                for m in egress.iter().chain(ingress.iter()) {
                    assert!((1..=10).contains(&m.severity));
                }
                evaluated += 1;
            }
        }
        clock.advance_secs(ti as f64 * 7.0);
    }
    assert!(evaluated > 1000);
    assert_eq!(engine.rule_failures(), 0, "no rule failed or panicked");
}

#[test]
fn odd_rule_attrs_in_history_do_not_break_resource_enumeration() {
    let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
    let engine = engine(clock);
    // Paths that are long, non-ASCII or numeric still count as strings.
    for path in [
        json!("/a/☃"),
        json!(12),
        json!("/".repeat(5000)),
        json!("/a/1"),
    ] {
        let event = AuditEvent::new(
            "http.response.success",
            json!({"srcip": "1.1.1.1", "route_pattern": "/a/{x}", "url.path": path})
                .as_object()
                .cloned()
                .expect("object"),
        )
        .expect("valid event");
        let matches = engine.evaluate(&event, false).expect("fail-open engine");
        assert!(matches
            .iter()
            .any(|m| m.rule_name == "resource_enumeration"));
    }
    assert_eq!(engine.rule_failures(), 0);
}
