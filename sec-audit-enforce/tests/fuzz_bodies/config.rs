//! The body of the `config` fuzz target (`fuzz/fuzz_targets/config.rs`),
//! shared with `tests/fuzz_corpus.rs` so that `cargo test` runs every
//! committed corpus file and former crash through the same code.
//!
//! The input is a configuration file: any bytes, loaded with
//! [`Config::from_toml_str`] (the loader behind `Config::from_file`, without
//! the environment overrides). A configuration that loads is then checked
//! (`check`, which opens no connection), built into a runtime over memory
//! stores, and driven with a few fixed events and requests, so that every
//! built-in rule runs with whatever parameters the input gave it. Plugin
//! entries are dropped before that: loading a shared library named by the
//! input is not what this target is about (the `plugin_config` target
//! covers the plugin side of `[rules.config]`).
//!
//! Beyond "no panic": an error message is never empty, and `check` and the
//! runtime builder agree (a configuration `check` passes builds, and one
//! that builds has no `check` error).

use std::borrow::Cow;
use std::sync::Arc;

use sec_audit_core::{parse_line, ManualClock};
use sec_audit_enforce::{check, Config, RequestView, RuleEntry, Runtime, Sink, Stores};

/// 2026-05-28T20:26:40Z in nanoseconds.
const T0: i64 = 1_780_000_000_000_000_000;

/// Events every built-in can match on with its defaults or the corpus's
/// parameters: login failures, 404s, an enumeration walk, a sensitive
/// change, an oversized transfer, a spoofed proxy header.
const EVENTS: [&str; 9] = [
    r#"{"event_type":"auth.login.failed","request_id":"r1","source.address":"203.0.113.9","user.name":"alice","url.path":"/accounts/login/","http.request.method":"POST"}"#,
    r#"{"event_type":"auth.login.failed","request_id":"r2","source.address":"203.0.113.9","user.name":"bob","url.path":"/accounts/login/","http.request.method":"POST"}"#,
    r#"{"event_type":"http.response.client_error","request_id":"r3","source.address":"203.0.113.9","http.response.status_code":404,"url.path":"/wp-admin/","http.request.method":"GET"}"#,
    r#"{"event_type":"http.response.client_error","request_id":"r4","source.address":"203.0.113.9","http.response.status_code":404,"url.path":"/.env","http.request.method":"GET"}"#,
    r#"{"event_type":"http.response.success","request_id":"r5","source.address":"198.51.100.7","user.id":"42","http.response.status_code":200,"url.path":"/api/accounts/1/","http.route":"/api/accounts/{id}/","http.request.method":"GET"}"#,
    r#"{"event_type":"http.response.success","request_id":"r6","source.address":"198.51.100.7","user.id":"42","http.response.status_code":200,"url.path":"/api/accounts/2/","http.route":"/api/accounts/{id}/","http.request.method":"GET"}"#,
    r#"{"event_type":"model.update","request_id":"r7","source.address":"198.51.100.8","user.id":"7","session.id":"s-7","model_label":"auth.user","changed_fields":["password","is_superuser"]}"#,
    r#"{"event_type":"http.response.success","request_id":"r8","source.address":"198.51.100.9","url.path":"/api/transfer/","http.request.method":"POST","http.response.status_code":201,"request.body":{"amount":"99999.99","currency":"EUR"}}"#,
    r#"{"event_type":"http.response.success","request_id":"r9","source.address":"198.51.100.10","url.path":"/","http.response.status_code":200,"proxy_headers":{"x-forwarded-for":"127.0.0.1, 10.0.0.1"}}"#,
];

/// A non-empty value, as the replay's request view takes it.
fn some(c: Cow<'_, str>) -> Option<Cow<'_, str>> {
    (!c.is_empty()).then_some(c)
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut config = match Config::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error message");
            return;
        }
    };
    config.rules.retain(|r| matches!(r, RuleEntry::Builtin(_)));
    let findings = check(&config);
    for f in &findings {
        assert!(!f.message.is_empty(), "a finding without a message: {f:?}");
    }
    let check_ok = !sec_audit_enforce::check::has_errors(&findings);

    let clock = Arc::new(ManualClock::new(T0));
    let built = Runtime::builder(config)
        .clock(clock.clone())
        .stores(Stores::memory(clock.clone()))
        .sink(Sink::Discard)
        .build();
    let runtime = match built {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty build error");
            assert!(
                !check_ok,
                "check found no error but the runtime does not build: {e}"
            );
            return;
        }
    };
    assert!(
        check_ok,
        "the runtime builds but check reports an error: {findings:?}"
    );

    let events: Vec<_> = EVENTS
        .iter()
        .map(|l| parse_line(l).expect("the fixed events parse").event)
        .collect();
    for _ in 0..2 {
        for event in &events {
            clock.advance_secs(1.0);
            let request = RequestView {
                user_id: some(event.user_id()),
                session_id: some(event.session_id()),
                body: event.body().map(Cow::Borrowed),
                ..RequestView::new(event.method(), event.path(), event.srcip())
            }
            .with_headers([("X-Forwarded-For", "198.51.100.1, 10.0.0.2")]);
            let _ = runtime.ingress_check(&request);
            let _ = runtime.client_ip(&request);
            let _ = runtime.handle_event(event);
        }
    }
    runtime.flush();
}
