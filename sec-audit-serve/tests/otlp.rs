//! OTLP/HTTP ingest through the real `opentelemetry-otlp` exporter, in
//! both encodings (protobuf and JSON): an application's OTel logs of failed
//! logins get that client blocked.

mod common;

use std::collections::HashMap;

use common::*;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use sec_audit_serve::Tokens;

fn export_failed_logins(endpoint: &str, protocol: Protocol, ip: &str, n: usize) {
    let exporter = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(endpoint)
        .with_headers(HashMap::from([(
            "authorization".to_string(),
            format!("Bearer {INGEST}"),
        )]))
        .build()
        .expect("OTLP exporter");
    let provider = SdkLoggerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let logger = provider.logger("the-app");
    for _ in 0..n {
        let mut record = logger.create_log_record();
        // The event type travels as the record's event name; the body is
        // free text (it would be the fallback).
        record.set_event_name("auth.login.failed");
        record.set_body(AnyValue::String("login failed".into()));
        record.set_severity_number(Severity::Warn);
        record.set_timestamp(std::time::SystemTime::now());
        record.add_attribute("source.address", ip.to_string());
        record.add_attribute("user.id", "dave");
        record.add_attribute("http.response.status_code", 401i64);
        logger.emit(record);
    }
    provider.force_flush().expect("flush the exporter");
    provider.shutdown().expect("shut the exporter down");
}

#[test]
fn otlp_logs_in_both_encodings_lead_to_blocks() {
    let s = Serve::start(
        r#"
        enabled = true
        trusted_proxy_cidrs = ["127.0.0.1/32"]
        trusted_proxy_count = 1
        [[rules]]
        builtin = "brute_force_login"
        threshold = 3
        "#,
        Tokens::new(None, None, Some(INGEST.into())).expect("tokens"),
    );
    let endpoint = format!("http://{}/v1/logs", s.addr);
    for (protocol, ip) in [
        (Protocol::HttpBinary, "198.51.100.31"),
        (Protocol::HttpJson, "198.51.100.32"),
    ] {
        let decide = || {
            get(
                s.addr,
                "/v1/decide",
                &format!("X-Forwarded-For: {ip}\r\nX-Forwarded-Uri: /\r\n"),
            )
            .status
        };
        assert_eq!(decide(), 200, "{ip} before its logs");
        export_failed_logins(&endpoint, protocol, ip, 3);
        eventually(10, &format!("a block on {ip} ({protocol:?})"), || {
            (decide() == 403).then_some(())
        });
    }
    let m = get(s.addr, "/metrics", "").text();
    assert!(
        m.contains("sec_audit_ingest_events_total{source=\"logs\",outcome=\"accepted\"} 6"),
        "{m}"
    );
    // Without the ingest token: refused.
    let r = request(
        s.addr,
        "POST",
        "/v1/logs",
        "Content-Type: application/x-protobuf\r\n",
        b"",
    );
    assert_eq!(r.status, 401);
}
