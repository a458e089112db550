//! End to end over real HTTP on loopback: the example axum application
//! behind the sec-audit layer. Repeated failed logins from one address get
//! 429 from then on; other addresses still get through; the JSONL trail
//! holds the `block_applied` and `blocked` records.

#[path = "../examples/axum_login/app.rs"]
mod app;
mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use common::SharedBuf;
use sec_audit_enforce::{Config, Runtime, Sink};
use socket2::{Domain, Socket, Type};

/// One HTTP/1.1 request from the given loopback source address; returns the
/// status code and body.
fn http(from: &str, server: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http_full(from, server, method, path, body);
    (status, body)
}

/// The same, with the response head (lower-cased) too.
fn http_full(
    from: &str,
    server: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String, String) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("source address");
    socket
        .bind(&local.into())
        .expect("bind to a loopback source address");
    socket.connect(&server.into()).expect("connect");
    let mut stream: std::net::TcpStream = socket.into();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let head = out
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, head, body)
}

#[test]
fn attacker_is_blocked_over_http_and_the_trail_records_it() {
    let config = Config::from_file(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/axum_login/sec-audit.toml"
    )))
    .expect("example config loads");
    let trail = SharedBuf::default();
    let runtime = Arc::new(
        Runtime::builder(config)
            .sink(Sink::Writer(Box::new(trail.clone())))
            .build()
            .expect("runtime builds"),
    );
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let server = listener.local_addr().expect("addr");
    rt.spawn(async move {
        axum::serve(
            listener,
            app::router(runtime).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let attacker = "127.0.0.2";
    let user = "127.0.0.3";
    let wrong = r#"{"username":"alice","password":"guess"}"#;
    for i in 1..=5 {
        let (status, _) = http(attacker, server, "POST", "/login", wrong);
        assert_eq!(status, 401, "failed login {i} reaches the app");
    }
    for _ in 0..3 {
        let (status, head, body) = http_full(attacker, server, "GET", "/", "");
        assert_eq!(status, 429);
        assert_eq!(body, "Request blocked by audit enforcement policy");
        // The temp block's seconds left (brute_force_login: 300 s).
        let retry: u64 = head
            .lines()
            .find_map(|l| l.strip_prefix("retry-after: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("Retry-After on a temp-block deny: {head}"));
        assert!((290..=300).contains(&retry), "{retry}");
    }
    let right = format!(r#"{{"username":"alice","password":"{}"}}"#, app::PASSWORD);
    assert_eq!(
        http(attacker, server, "POST", "/login", &right).0,
        429,
        "even the right password"
    );
    assert_eq!(http(user, server, "GET", "/", "").0, 200);
    assert_eq!(http(user, server, "POST", "/login", &right).0, 200);

    let records = trail.records();
    let applied = trail.of("audit.enforcement.block_applied");
    assert_eq!(applied.len(), 1, "{records:?}");
    assert_eq!(applied[0]["attributes"]["scope.type"], "ip");
    assert_eq!(applied[0]["attributes"]["scope.value"], attacker);
    assert_eq!(
        applied[0]["attributes"]["security_rule.name"],
        "brute_force_login"
    );
    let blocked = trail.of("audit.enforcement.blocked");
    assert_eq!(blocked.len(), 4);
    assert!(blocked
        .iter()
        .all(|r| r["attributes"]["scope.value"] == attacker
            && r["attributes"]["http.response.status_code"] == 429));
}

/// An egress rule that takes 50 ms per event.
struct Slow;

impl sec_audit_rules::Rule for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn severity(&self) -> u8 {
        1
    }
    fn evaluate(
        &self,
        _: &sec_audit_core::AuditEvent,
        _: &sec_audit_rules::RuleContext<'_>,
    ) -> Result<Option<sec_audit_rules::Match>, sec_audit_rules::RuleError> {
        std::thread::sleep(std::time::Duration::from_millis(50));
        Ok(None)
    }
}

#[test]
fn a_full_egress_queue_drops_response_events_and_never_holds_a_response() {
    use sec_audit_enforce::tower::{PeerAddr, SecAuditLayer};
    use sec_audit_enforce::EgressQueue;
    use tower::{Layer, Service};

    let runtime = Arc::new(
        Runtime::builder(Config::from_toml_str("enabled = true").expect("config"))
            .sink(Sink::Writer(Box::new(SharedBuf::default())))
            .rule(Arc::new(Slow))
            .build()
            .expect("runtime"),
    );
    let queue = EgressQueue::new(Arc::clone(&runtime), 2, 1);
    let layer = SecAuditLayer::new(runtime).with_egress_queue(queue.clone());
    let mut svc =
        layer.layer(axum::Router::new().route("/", axum::routing::get(|| async { "ok" })));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let started = std::time::Instant::now();
    rt.block_on(async {
        for i in 0..30u8 {
            std::future::poll_fn(|cx| {
                Service::<axum::http::Request<axum::body::Body>>::poll_ready(&mut svc, cx)
            })
            .await
            .expect("ready");
            let mut req = axum::http::Request::new(axum::body::Body::empty());
            req.extensions_mut()
                .insert(PeerAddr(SocketAddr::from(([127, 0, 0, 10 + i % 5], 4000))));
            let res = svc.call(req).await.expect("response");
            assert_eq!(res.status(), 200);
        }
    });
    // 30 events x 50 ms of egress would be 1.5 s if responses waited.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let s = queue.stats();
    assert_eq!(s.accepted + s.dropped, 30, "{s:?}");
    assert!(s.dropped >= 30 - 2 - 2, "{s:?}");
    assert_eq!(queue.shutdown(std::time::Duration::from_secs(10)), 0);
    assert_eq!(queue.stats().processed, s.accepted);
}

#[test]
fn the_layer_sends_retry_after_on_temp_block_denials_only_and_passes_the_safelist() {
    use sec_audit_enforce::tower::{AuditIdentity, PeerAddr, SecAuditLayer};
    use sec_audit_enforce::ManualBlock;
    use tower::{Layer, Service};

    let clock = Arc::new(sec_audit_core::ManualClock::at_secs(common::T0));
    let config = Config::from_toml_str(
        "enabled = true\n[rule_actions]\nt = { action = \"temp_block\", ttl = 40 }\n[escalation]\nfactor = 3\nmax_ttl = 1000\nwindow = 1000\n[safelist]\nips = [\"127.0.0.0/24\"]",
    )
    .expect("config");
    let runtime = Arc::new(
        Runtime::builder(config)
            .clock(clock.clone())
            .sink(Sink::Writer(Box::new(SharedBuf::default())))
            .stores(sec_audit_enforce::Stores::memory(clock.clone()))
            .rule(Arc::new(common::TestRule {
                ingress: true,
                ..common::TestRule::new("t")
            }))
            .build()
            .expect("runtime"),
    );
    runtime
        .block(&ManualBlock {
            scope_type: "user".into(),
            value: "banned".into(),
            ttl: None,
            reason: "fraud".into(),
            ..ManualBlock::default()
        })
        .expect("permanent block");
    let mut svc = SecAuditLayer::new(Arc::clone(&runtime))
        .layer(axum::Router::new().fallback(|| async { "ok" }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut call = |peer: [u8; 4], path: &str, user: Option<&str>| {
        rt.block_on(async {
            std::future::poll_fn(|cx| {
                Service::<axum::http::Request<axum::body::Body>>::poll_ready(&mut svc, cx)
            })
            .await
            .expect("ready");
            let mut req = axum::http::Request::builder()
                .uri(path)
                .body(axum::body::Body::empty())
                .expect("request");
            req.extensions_mut()
                .insert(PeerAddr(SocketAddr::from((peer, 4000))));
            req.extensions_mut().insert(AuditIdentity {
                user_id: user.map(str::to_string),
                session_id: None,
            });
            let res = svc.call(req).await.expect("response");
            let retry = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_string());
            (res.status().as_u16(), retry)
        })
    };
    let attacker = [203, 0, 113, 50];
    // The ingress rule's own temp block: its TTL.
    assert_eq!(call(attacker, "/trigger", None), (429, Some("40".into())));
    // The request's block, part-way through: the seconds left.
    clock.advance_secs(15.5);
    assert_eq!(call(attacker, "/", None), (429, Some("25".into())));
    // The next offense is escalated, and so is its Retry-After.
    clock.advance_secs(25.0);
    assert_eq!(call(attacker, "/", None), (200, None));
    assert_eq!(call(attacker, "/trigger", None), (429, Some("120".into())));
    // A permanent block: denied without Retry-After.
    assert_eq!(call([198, 51, 100, 1], "/", Some("banned")), (429, None));
    // A safelisted address is never blocked by the rule.
    assert_eq!(call([127, 0, 0, 9], "/trigger", None), (200, None));
    assert_eq!(call([127, 0, 0, 9], "/", None), (200, None));
}
