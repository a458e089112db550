//! The HTTP surface over loopback: decide answers, the block API and its
//! tokens, ingest limits, hostile input, metrics, readiness.

mod common;

use common::*;
use sec_audit_serve::Tokens;

const BASE: &str = r#"
enabled = true
trusted_proxy_cidrs = ["127.0.0.1/32"]
trusted_proxy_count = 1
[[rules]]
builtin = "brute_force_login"
threshold = 3
"#;

fn tokens() -> Tokens {
    Tokens::new(Some(ADMIN.into()), Some(READ.into()), None).expect("tokens")
}

fn bearer(t: &str) -> String {
    format!("Authorization: Bearer {t}\r\n")
}

fn decide_for(s: &Serve, client: &str) -> Reply {
    get(
        s.addr,
        "/v1/decide",
        &format!(
            "X-Forwarded-For: {client}\r\nX-Original-URI: /page?q=1\r\nX-Original-Method: GET\r\n"
        ),
    )
}

#[test]
fn block_api_tokens_and_decide_answers() {
    let s = Serve::start(BASE, tokens());
    let list = "/v1/blocks";
    // No token, a wrong token: 401 with a challenge.
    let r = get(s.addr, list, "");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        get(s.addr, list, &bearer("not-the-token-0123456789")).status,
        401
    );
    assert_eq!(
        get(s.addr, list, "Authorization: Basic YTpi\r\n").status,
        401
    );
    // The read token reads, but may not write.
    let r = get(s.addr, list, &bearer(READ));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["blocks"], serde_json::json!([]));
    let body = br#"{"scope":"ip","value":"203.0.113.7","ttl":60,"reason":"test","status_code":418,"message":"teapot"}"#;
    assert_eq!(
        request(s.addr, "POST", list, &bearer(READ), body).status,
        403
    );
    assert_eq!(
        request(
            s.addr,
            "DELETE",
            "/v1/blocks/ip/203.0.113.7?reason=x",
            &bearer(READ),
            b""
        )
        .status,
        403
    );
    assert_eq!(
        request(
            s.addr,
            "DELETE",
            "/v1/blocks/ip/203.0.113.7?reason=x",
            "",
            b""
        )
        .status,
        401
    );
    // Before the block: allowed, and told which client it was.
    let r = decide_for(&s, "203.0.113.7");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-sec-audit-client-ip"), Some("203.0.113.7"));
    // The admin token blocks.
    let r = request(s.addr, "POST", list, &bearer(ADMIN), body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["kind"], "temp");
    assert_eq!(r.json()["metadata"]["actor"], "serve:admin");
    // Bad requests are 400, never a panic.
    for bad in [
        &b"{"[..],
        br#"{"scope":"ip","value":"not-an-ip","reason":"x"}"#,
        br#"{"scope":"planet","value":"x","reason":"x"}"#,
        br#"{"scope":"ip","value":"1.2.3.4","reason":""}"#,
        br#"{"scope":"ip","value":"1.2.3.4","reason":"x","ttl":0}"#,
        br#"{"scope":"ip","value":"1.2.3.4","reason":"x","extra":1}"#,
    ] {
        let r = request(s.addr, "POST", list, &bearer(ADMIN), bad);
        assert_eq!(
            r.status,
            400,
            "{} -> {}",
            String::from_utf8_lossy(bad),
            r.text()
        );
    }
    // Denied: 403 by default, the block's status, Retry-After, the message.
    let r = decide_for(&s, "203.0.113.7");
    assert_eq!(r.status, 403);
    assert_eq!(r.header("x-sec-audit-status"), Some("418"));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry));
    assert_eq!(r.text(), "teapot");
    // Another client passes; a spoofed chain cannot frame it either.
    assert_eq!(decide_for(&s, "203.0.113.8").status, 200);
    assert_eq!(decide_for(&s, "203.0.113.7, 203.0.113.8").status, 200);
    // Read one entry back.
    let r = get(
        s.addr,
        "/v1/blocks?scope=ip&value=203.0.113.7",
        &bearer(READ),
    );
    assert_eq!(r.json()["blocks"][0]["scope_value"], "203.0.113.7");
    assert_eq!(get(s.addr, "/v1/blocks?value=1", &bearer(READ)).status, 400);
    // Revoke: the reason is required.
    assert_eq!(
        request(
            s.addr,
            "DELETE",
            "/v1/blocks/ip/203.0.113.7",
            &bearer(ADMIN),
            b""
        )
        .status,
        400
    );
    let r = request(
        s.addr,
        "DELETE",
        "/v1/blocks/ip/203.0.113.7?reason=done",
        &bearer(ADMIN),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["removed"].as_u64().unwrap_or(0) >= 1);
    assert_eq!(decide_for(&s, "203.0.113.7").status, 200);
    // User and session come from the configured headers.
    for (scope, value, head) in [
        ("user", "mallory", "X-Audit-User: mallory\r\n"),
        ("session", "sess-42", "X-Audit-Session: sess-42\r\n"),
    ] {
        let body = format!(r#"{{"scope":"{scope}","value":"{value}","ttl":60,"reason":"test"}}"#);
        let r = request(s.addr, "POST", list, &bearer(ADMIN), body.as_bytes());
        assert_eq!(r.status, 201, "{}", r.text());
        let r = get(
            s.addr,
            "/v1/decide",
            &format!("X-Forwarded-For: 203.0.113.20\r\n{head}"),
        );
        assert_eq!(r.status, 403, "{scope} block through {head}");
        assert_eq!(decide_for(&s, "203.0.113.20").status, 200, "without {head}");
    }
    // The same enforcement events as the library; no token anywhere.
    let records = s.records();
    let types: Vec<&str> = records
        .iter()
        .filter_map(|r| r["attributes"]["event_type"].as_str())
        .collect();
    assert!(
        types.contains(&"audit.enforcement.block_applied"),
        "{types:?}"
    );
    assert!(types.contains(&"audit.enforcement.blocked"), "{types:?}");
    assert!(
        types.contains(&"audit.enforcement.block_revoked"),
        "{types:?}"
    );
    let trail = std::fs::read_to_string(&s.trail).unwrap_or_default();
    assert!(!trail.contains(ADMIN) && !trail.contains(READ));
}

#[test]
fn block_api_is_off_without_tokens_and_native_mode_answers_the_status() {
    let s = Serve::start(
        &format!("{BASE}\n[serve]\ndecide_status = \"native\"\n"),
        Tokens::default(),
    );
    assert_eq!(get(s.addr, "/v1/blocks", &bearer(ADMIN)).status, 404);
    let body = br#"{"scope":"ip","value":"203.0.113.9","reason":"x"}"#;
    assert_eq!(request(s.addr, "POST", "/v1/blocks", "", body).status, 404);
    // Block through ingest instead: three failed logins.
    let lines: String = (0..3)
        .map(|_| failed_login("203.0.113.9", "bob") + "\n")
        .collect();
    let r = request(s.addr, "POST", "/v1/events", "", lines.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"accepted": 3, "rejected": 0, "errors": []})
    );
    let r = eventually(10, "the block", || {
        let r = decide_for(&s, "203.0.113.9");
        (r.status != 200).then_some(r)
    });
    // Native: the block's own status (the default 429) is the answer.
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-sec-audit-status"), Some("429"));
    assert!(r.header("retry-after").is_some());
}

#[test]
fn ingest_token_limits_and_queue_full() {
    let s = Serve::start(
        &format!(
            "{BASE}\n[serve]\nmax_body_bytes = 4096\nmax_line_bytes = 1024\nqueue_capacity = 4\n"
        ),
        Tokens::new(None, None, Some(INGEST.into())).expect("tokens"),
    );
    let line = failed_login("198.51.100.1", "u") + "\n";
    for path in ["/v1/events", "/v1/logs"] {
        let r = request(
            s.addr,
            "POST",
            path,
            "Content-Type: application/json\r\n",
            line.as_bytes(),
        );
        assert_eq!(r.status, 401, "{path} without the ingest token");
        let r = request(s.addr, "POST", path, &bearer(READ), line.as_bytes());
        assert_eq!(r.status, 401, "{path} with another token");
    }
    let auth = bearer(INGEST);
    assert_eq!(
        request(s.addr, "POST", "/v1/events", &auth, line.as_bytes()).status,
        202
    );
    // Oversized: 413 before parsing.
    let big = line.repeat(40);
    assert!(big.len() > 4096);
    assert_eq!(
        request(s.addr, "POST", "/v1/events", &auth, big.as_bytes()).status,
        413
    );
    // Rejected lines are counted; the error list is bounded.
    let mut body = String::from("not json\n{\"no_type\":1}\n");
    body.push_str(&"x\n".repeat(40));
    body.push_str(&line);
    let r = request(s.addr, "POST", "/v1/events", &auth, body.as_bytes());
    assert_eq!(r.status, 202);
    let j = r.json();
    assert_eq!(
        (j["accepted"].as_u64(), j["rejected"].as_u64()),
        (Some(1), Some(42))
    );
    assert_eq!(
        j["errors"][0],
        serde_json::json!({"line": 1, "reason": "not valid JSON"})
    );
    assert_eq!(j["errors"][1]["line"], 2);
    assert_eq!(j["errors"].as_array().map(Vec::len), Some(20));
    // More events than the queue holds: 503 with Retry-After, none taken.
    let five = line.repeat(5);
    let r = request(s.addr, "POST", "/v1/events", &auth, five.as_bytes());
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let m = get(s.addr, "/metrics", "").text();
    assert!(
        m.contains("sec_audit_ingest_events_total{source=\"events\",outcome=\"dropped\"} 5"),
        "{m}"
    );
}

#[test]
fn hostile_input_is_answered_never_panics() {
    let s = Serve::start(BASE, tokens());
    let raw = |head: &[u8], body: &[u8], method: &str, path: &str| {
        request_from(None, s.addr, method, path, head, body)
    };
    // Not-UTF-8 header values on decide.
    let r = raw(
        b"X-Forwarded-For: \xff\xfe\r\nX-Original-URI: /\xc3\x28?\xff\r\nX-Audit-User: \xfa\r\nX-Original-Method: \xff\r\n",
        b"",
        "GET",
        "/v1/decide",
    )
    .expect("decide with bad bytes");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-sec-audit-client-ip"),
        None,
        "a bad XFF entry is no client ip"
    );
    // A huge header: refused by the HTTP layer or answered, never a crash.
    let huge = format!("X-Audit-User: {}\r\n", "a".repeat(200_000));
    let _ = raw(huge.as_bytes(), b"", "GET", "/v1/decide");
    // Bad JSON, bad protobuf, bad media type.
    let r = raw(
        b"Content-Type: application/json\r\n",
        b"{\"resourceLogs\":",
        "POST",
        "/v1/logs",
    )
    .expect("logs");
    assert_eq!(r.status, 400);
    let r = raw(
        b"Content-Type: application/x-protobuf\r\n",
        b"\xff\xff\xff\xff\x0f",
        "POST",
        "/v1/logs",
    )
    .expect("logs");
    assert_eq!(r.status, 400);
    let r = raw(b"Content-Type: text/plain\r\n", b"x", "POST", "/v1/logs").expect("logs");
    assert_eq!(r.status, 415);
    let r = raw(b"", b"\xff\xfe\n{\"event_type\":", "POST", "/v1/events").expect("events");
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["rejected"], 2);
    let deep = "[".repeat(100_000);
    let r = raw(
        b"Content-Type: application/json\r\n",
        deep.as_bytes(),
        "POST",
        "/v1/logs",
    )
    .expect("deep");
    assert_eq!(r.status, 400);
    // A bad block path or query.
    let r = raw(
        bearer(ADMIN).as_bytes(),
        b"",
        "DELETE",
        "/v1/blocks/ip/%ff%fe?reason=%ff",
    )
    .expect("delete");
    assert!(r.status == 400 || r.status == 200, "{}", r.status);
    // Still serving.
    assert_eq!(get(s.addr, "/healthz", "").status, 200);
    assert_eq!(get(s.addr, "/readyz", "").status, 200);
}

#[test]
fn metrics_after_traffic() {
    let s = Serve::start(BASE, tokens());
    let lines: String = (0..3)
        .map(|_| failed_login("192.0.2.44", "carol") + "\n")
        .collect();
    assert_eq!(
        request(s.addr, "POST", "/v1/events", "", lines.as_bytes()).status,
        202
    );
    eventually(10, "the block", || {
        (decide_for(&s, "192.0.2.44").status == 403).then_some(())
    });
    assert_eq!(decide_for(&s, "192.0.2.45").status, 200);
    assert_eq!(
        request(s.addr, "POST", "/v1/events", "", b"oops\n").status,
        202
    );
    let m = eventually(10, "egress counted", || {
        let m = get(s.addr, "/metrics", "").text();
        m.contains("sec_audit_egress_processed_total 3")
            .then_some(m)
    });
    for needle in [
        "sec_audit_decisions_total{event_type=\"audit.enforcement.block_applied\",rule=\"brute_force_login\",scope=\"ip\"} 1",
        "sec_audit_decisions_total{event_type=\"audit.enforcement.blocked\",rule=\"brute_force_login\",scope=\"ip\"}",
        "sec_audit_ingress_decisions_total{outcome=\"deny\"}",
        "sec_audit_ingress_decisions_total{outcome=\"allow\"}",
        "sec_audit_ingest_events_total{source=\"events\",outcome=\"accepted\"} 3",
        "sec_audit_ingest_events_total{source=\"events\",outcome=\"rejected\"} 1",
        "sec_audit_queue_depth 0",
        "sec_audit_queue_capacity 10000",
        "sec_audit_decide_latency_seconds_bucket",
        "sec_audit_decide_latency_seconds_count",
    ] {
        assert!(m.contains(needle), "{needle} missing from\n{m}");
    }
    assert!(m
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .all(|l| l.starts_with("sec_audit_")));
}

#[test]
fn a_dead_redis_is_not_ready_fails_open_and_closed_where_configured() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    // Nothing listens on `port` once the probe listener is dropped.
    let s = Serve::start(
        &format!(
            "redis_url = \"redis://127.0.0.1:{port}\"\nconnect_timeout_ms = 200\ncommand_timeout_ms = 200\n\
             fail_closed_paths = [\"^/admin$\"]\n{BASE}\n[serve]\nready_timeout_ms = 2000\n"
        ),
        tokens(),
    );
    let r = get(s.addr, "/readyz", "");
    assert_eq!(r.status, 503, "{}", r.text());
    let r = decide_for(&s, "192.0.2.50");
    assert_eq!(r.status, 200, "a store outage fails open");
    // The original path, query stripped, from the proxy's header ...
    let r = get(
        s.addr,
        "/v1/decide",
        "X-Forwarded-For: 192.0.2.51\r\nX-Forwarded-Uri: /admin?next=/\r\nX-Forwarded-Method: POST\r\n",
    );
    assert_eq!(
        r.status, 403,
        "fail_closed_paths applies to the forwarded path"
    );
    // ... or, Envoy style, appended to the decide path.
    let r = request(
        s.addr,
        "POST",
        "/v1/decide/admin?x=1",
        "X-Forwarded-For: 192.0.2.52\r\n",
        b"",
    );
    assert_eq!(r.status, 403);
    let r = request(
        s.addr,
        "POST",
        "/v1/decide/public",
        "X-Forwarded-For: 192.0.2.52\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
    let r = request(
        s.addr,
        "GET",
        "/v1/decide/",
        "X-Forwarded-For: 192.0.2.52\r\n",
        b"",
    );
    assert_eq!(r.status, 200);
    let m = get(s.addr, "/metrics", "").text();
    assert!(
        m.contains("sec_audit_ingress_decisions_total{outcome=\"fail_open\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("sec_audit_ingress_decisions_total{outcome=\"fail_closed\"} 2"),
        "{m}"
    );
    assert!(m.contains("sec_audit_store_errors_total{kind="), "{m}");
}

#[test]
fn on_real_redis_ingest_blocks_and_decide_denies() {
    let url = std::env::var("SEC_AUDIT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "sec_audit_serve_test_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let s = Serve::start(
        &format!("redis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\n{BASE}"),
        tokens(),
    );
    let r = get(s.addr, "/readyz", "");
    assert_eq!(
        r.status,
        200,
        "Redis at {url} must be up for this test: {}",
        r.text()
    );
    assert_eq!(decide_for(&s, "192.0.2.60").status, 200);
    let lines: String = (0..3)
        .map(|_| failed_login("192.0.2.60", "frank") + "\n")
        .collect();
    assert_eq!(
        request(s.addr, "POST", "/v1/events", "", lines.as_bytes()).status,
        202
    );
    let r = eventually(10, "the block in Redis", || {
        let r = decide_for(&s, "192.0.2.60");
        (r.status == 403).then_some(r)
    });
    assert_eq!(r.header("x-sec-audit-status"), Some("429"));
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(decide_for(&s, "192.0.2.61").status, 200);
    // Clean up through the API (the key has a TTL anyway).
    let r = request(
        s.addr,
        "DELETE",
        "/v1/blocks/ip/192.0.2.60?reason=test%20done",
        &bearer(ADMIN),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(decide_for(&s, "192.0.2.60").status, 200);
}

#[test]
fn decide_honours_the_safelist_and_sends_retry_after_for_temp_blocks_only() {
    let url = std::env::var("SEC_AUDIT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "sec_audit_serve_policy_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let base = format!(
        "redis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\n{BASE}[rule_actions]\nbrute_force_login = {{ ttl = 50 }}\n[escalation]\nfactor = 2\nmax_ttl = 1000\nwindow = 1000\n"
    );
    // Blocks from before the safelist, in the shared Redis.
    let before = sec_audit_enforce::Runtime::builder(
        sec_audit_enforce::Config::from_toml_str(&base).expect("config"),
    )
    .sink(sec_audit_enforce::Sink::Discard)
    .build()
    .expect("runtime");
    for (scope, value, ttl) in [("ip", "192.0.2.80", Some(600)), ("user", "banned", None)] {
        before
            .block(&sec_audit_enforce::ManualBlock {
                scope_type: scope.into(),
                value: value.into(),
                ttl,
                reason: "before".into(),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("Redis at {url} must be up for this test: {e}"));
    }
    let s = Serve::start(
        &format!("{base}[safelist]\nips = [\"192.0.2.0/24\"]\n"),
        tokens(),
    );
    // The safelisted address passes despite its older block.
    assert_eq!(decide_for(&s, "192.0.2.80").status, 200);
    // A permanent block (the user's, through the configured header):
    // denied, without Retry-After — even from the safelisted address.
    for client in ["203.0.113.1", "192.0.2.80"] {
        let r = get(
            s.addr,
            "/v1/decide",
            &format!("X-Forwarded-For: {client}\r\nX-Audit-User: banned\r\n"),
        );
        assert_eq!(r.status, 403, "{client}");
        assert_eq!(r.header("retry-after"), None, "{client}");
    }
    // The block API refuses a safelisted subject with 409.
    let r = request(
        s.addr,
        "POST",
        "/v1/blocks",
        &bearer(ADMIN),
        br#"{"scope":"ip","value":"192.0.2.81","ttl":60,"reason":"test"}"#,
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("safelist"), "{}", r.text());
    // Egress: the safelisted address's brute force is an alert, the other
    // one's a temp block with its offense count and Retry-After.
    let lines: String = ["192.0.2.90", "203.0.113.90"]
        .iter()
        .flat_map(|ip| (0..3).map(move |_| failed_login(ip, "frank") + "\n"))
        .collect();
    assert_eq!(
        request(s.addr, "POST", "/v1/events", "", lines.as_bytes()).status,
        202
    );
    let r = eventually(10, "the block in Redis", || {
        let r = decide_for(&s, "203.0.113.90");
        (r.status == 403).then_some(r)
    });
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=50).contains(&retry), "{retry}");
    assert_eq!(decide_for(&s, "192.0.2.90").status, 200);
    let records = eventually(10, "the records", || {
        let r = s.records();
        r.iter()
            .any(|r| r["attributes"]["enforcement.safelisted"] == true)
            .then_some(r)
    });
    let alert = records
        .iter()
        .find(|r| r["attributes"]["enforcement.safelisted"] == true)
        .expect("a safelisted alert");
    assert_eq!(alert["attributes"]["scope.value"], "192.0.2.90");
    let applied: Vec<_> = records
        .iter()
        .filter(|r| r["body"] == "audit.enforcement.block_applied")
        .collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!(applied[0]["attributes"]["scope.value"], "203.0.113.90");
    assert_eq!(applied[0]["attributes"]["enforcement.offense"], 1);
    assert_eq!(applied[0]["attributes"]["enforcement.ttl"], 50);
    // Clean up (every key has a TTL anyway).
    for path in [
        "/v1/blocks/ip/203.0.113.90?reason=done",
        "/v1/blocks/ip/192.0.2.80?reason=done",
        "/v1/blocks/user/banned?reason=done",
    ] {
        assert_eq!(
            request(s.addr, "DELETE", path, &bearer(ADMIN), b"").status,
            200
        );
    }
}

/// A range through the HTTP block API: added, enforced by decide for every
/// address inside it, read back, revoked (the CIDR's `/` percent-encoded
/// in the path) — on memory and on Redis stores.
#[test]
fn block_api_adds_lists_and_revokes_a_range() {
    let url = std::env::var("SEC_AUDIT_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "sec_audit_serve_range_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    for stores in [
        String::new(),
        format!("redis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\n"),
    ] {
        let s = Serve::start(&format!("{stores}{BASE}"), tokens());
        let list = "/v1/blocks";
        let body = br#"{"scope":"ip","value":"203.0.113.0/24","ttl":60,"reason":"botnet"}"#;
        let r = request(s.addr, "POST", list, &bearer(ADMIN), body);
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["scope_value"], "203.0.113.0/24");
        let r = request(
            s.addr,
            "POST",
            list,
            &bearer(ADMIN),
            br#"{"scope":"ip","value":"203.0.113.5/24","reason":"typo"}"#,
        );
        assert_eq!(r.status, 400);
        assert!(
            r.text().contains("did you mean 203.0.113.0/24"),
            "{}",
            r.text()
        );

        assert_eq!(decide_for(&s, "203.0.113.77").status, 403, "{stores}");
        assert_eq!(decide_for(&s, "203.0.113.1").status, 403);
        assert_eq!(decide_for(&s, "203.0.114.1").status, 200);

        let r = get(
            s.addr,
            "/v1/blocks?scope=ip&value=203.0.113.0%2F24",
            &bearer(READ),
        );
        assert_eq!(r.json()["blocks"][0]["scope_value"], "203.0.113.0/24");
        let r = get(s.addr, "/v1/blocks?scope=ip", &bearer(READ));
        assert_eq!(r.json()["blocks"].as_array().map(Vec::len), Some(1));

        let r = request(
            s.addr,
            "DELETE",
            "/v1/blocks/ip/203.0.113.0%2F24?reason=cleared",
            &bearer(ADMIN),
            b"",
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["removed"], 1);
        assert_eq!(decide_for(&s, "203.0.113.77").status, 200);

        let records = s.records();
        let of = |t: &str| {
            records
                .iter()
                .filter(|r| r["attributes"]["event_type"] == t)
                .map(|r| r["attributes"]["scope.value"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(of("audit.enforcement.block_applied"), ["203.0.113.0/24"]);
        assert_eq!(of("audit.enforcement.block_revoked"), ["203.0.113.0/24"]);
        assert!(!of("audit.enforcement.blocked").is_empty());
    }
}
