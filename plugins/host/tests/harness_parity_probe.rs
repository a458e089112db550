//! The SDK's test host against the real host, with the `probe` fixture
//! (it reports every accessor, field, counter operation, history read and
//! its configuration in its match metadata).

mod parity;
mod support;

// The fixture's own source, built in-process for the test host; the real
// host loads the same source from its `.so`.
#[allow(dead_code)]
#[path = "../../tests-fixtures/probe/src/lib.rs"]
mod probe_source;

use parity::{assert_same, run_both, sample_steps, Outcome, Step};
use sec_audit_plugin_sdk::__private::RulesFactory;
use serde_json::json;
use support::plugin;

fn factory(
    c: &sec_audit_plugin_sdk::PluginConfig,
) -> Result<Vec<Box<dyn sec_audit_plugin_sdk::PluginRule>>, sec_audit_plugin_sdk::ConfigError> {
    <probe_source::__SecAuditPluginFactory as RulesFactory>::make(c)
}

const KEYS: [&str; 17] = [
    "a.b",
    "a.c.d",
    "n",
    "x.y",
    "missing",
    "num",
    "flag",
    "list",
    "obj",
    "üñí",
    "user.name",
    "proxy_headers",
    "route",
    "route_name",
    "srcip",
    "user_id",
    "session_id",
];

#[test]
fn the_test_host_reads_events_counters_and_history_as_the_host_does() {
    let mut steps = vec![
        Step {
            at: 1_000_000.0,
            event: json!({
                "event_type": "http.response.client_error", "request_id": "req-1",
                "source.address": "203.0.113.200", "user.id": 42, "session.id": "s-1",
                "http.request.method": "POST", "path": "/raw/path",
                "url.full": "https://example.test/raw/path", "http.route": "/raw/{id}",
                "route_name": "raw-detail", "status": "404",
                "request.body": {"amount": "10000.5", "nested": {"k": [1, 2]}},
                "a.b": 1, "a": {"b": 2, "c": {"d": "deep"}}, "n": null, "x": {"y": null},
                "num": 1.5, "flag": true, "list": [1, "two", null], "obj": {"k": "v"},
                "üñí": "cödé ☃"}),
            ingress: false,
        },
        // An OTel record line, an IPv4-mapped address, a raw key winning.
        Step {
            at: 1_000_001.0,
            event: json!({"timestamp": 1, "attributes": {
                "event_type": "http.response.success", "source.address": "::ffff:203.0.113.200",
                "srcip": "", "user_id": "explicit", "user.id": "otel", "url.path": "/two",
                "http.response.status_code": 200.0}}),
            ingress: false,
        },
        // The ingress pass: no history appended.
        Step {
            at: 1_000_002.0,
            event: json!({"event_type": "audit.http.request.pre", "url.path": "/login",
                          "http.request.method": "POST", "source.address": "203.0.113.200",
                          "request.body": {"amount": 12}}),
            ingress: true,
        },
        Step {
            at: 1_000_050.0,
            event: json!({"event_type": "http.response.success", "srcip": "203.0.113.200",
                          "actor": {"id": "a-7", "name": "x"}, "url.path": "/three"}),
            ingress: false,
        },
        // Exactly the probe's 100 s window after the third step.
        Step {
            at: 1_000_101.0,
            event: json!({"event_type": "http.response.redirect", "srcip": "203.0.113.200",
                          "http.route": "/r/{id}", "http.route_name": "r", "url.path": "/r/1",
                          "target": {"app": "a", "model": "m", "object_id": 3, "other": 1},
                          "changed_fields": ["x"], "model_label": "auth.user"}),
            ingress: false,
        },
        // Past the probe's 100 s window and its counter's TTL.
        Step {
            at: 1_000_130.0,
            event: json!({"event_type": "http.response.success", "srcip": "203.0.113.200",
                          "user_id": "42", "url.path": "/four"}),
            ingress: false,
        },
    ];
    // Many events of one address: max_events (5) caps the reads.
    for i in 0..8 {
        steps.push(Step {
            at: 1_000_131.0 + f64::from(i),
            event: json!({"event_type": "e", "srcip": "198.51.100.5", "url.path": format!("/{i}")}),
            ingress: false,
        });
    }
    let (native, harness) = run_both(&plugin("probe"), factory, json!({"keys": KEYS}), &steps);
    assert!(native
        .iter()
        .all(|o| matches!(o, Outcome::Matches(m) if m.len() == 1)));
    assert_same(&native, &harness, &steps);
}

#[test]
fn the_test_host_agrees_with_the_host_over_the_sample_log() {
    let steps = sample_steps(600);
    let (native, harness) = run_both(&plugin("probe"), factory, json!({"keys": KEYS}), &steps);
    assert_same(&native, &harness, &steps);
}

#[test]
fn the_test_host_fails_where_the_host_isolates_a_failure() {
    let steps = [Step {
        at: 1_000_000.0,
        event: json!({"event_type": "e", "srcip": "198.51.100.6", "session_id": "s"}),
        ingress: false,
    }];
    let (native, harness) = run_both(
        &plugin("probe"),
        factory,
        json!({"read_undeclared": true}),
        &steps,
    );
    assert_eq!(native, vec![Outcome::Failed]);
    assert_same(&native, &harness, &steps);
}
