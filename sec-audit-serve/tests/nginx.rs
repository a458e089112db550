//! A real nginx (`auth_request`) in front of a small application, with
//! `sec-audit serve` deciding: failed logins reported through `/v1/events`
//! get their client denied through nginx (429), another client passes, and
//! a spoofed `X-Forwarded-For` neither evades nor frames. The nginx
//! configuration is `examples/proxies/nginx/nginx.conf.template`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, post};
use common::*;
use sec_audit_serve::Tokens;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn nginx_binary() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v nginx"]).output() {
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !s.is_empty() {
            return PathBuf::from(s);
        }
    }
    panic!("nginx is not installed: this test needs a real nginx (apt-get install nginx; scripts/test.sh installs it)");
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would orphan
        // them, still listening).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(listen: SocketAddr, app: SocketAddr, serve: SocketAddr) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let template = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/proxies/nginx/nginx.conf.template"
        ))
        .expect("the nginx example configuration");
        let run_dir = dir.path().display().to_string();
        let conf = template
            .replace("${RUN_DIR}", &run_dir)
            .replace("${LISTEN}", &listen.to_string())
            .replace("${APP}", &app.to_string())
            .replace("${SEC_AUDIT}", &serve.to_string());
        assert!(!conf.contains("${"), "unfilled placeholder in the template");
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        Nginx { child, dir }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

#[derive(serde::Deserialize)]
struct Login {
    password: Option<String>,
}

/// The application: `/login` checks a password and reports a failure to
/// serve as an audit event, keyed on the address serve resolved; anything
/// else answers 200.
fn start_app(serve: SocketAddr) -> (SocketAddr, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("app runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("app listener");
    let addr = listener.local_addr().expect("app address");
    let app =
        axum::Router::new()
            .route(
                "/login",
                post(
                    |State(serve): State<SocketAddr>,
                     headers: HeaderMap,
                     Query(q): Query<Login>| async move {
                        if q.password.as_deref() == Some("secret") {
                            return (StatusCode::OK, "welcome".to_string());
                        }
                        let ip = headers
                            .get("x-audit-client-ip")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let who = ip.clone();
                        let reply = tokio::task::spawn_blocking(move || {
                            request(
                                serve,
                                "POST",
                                "/v1/events",
                                &format!("Authorization: Bearer {INGEST}\r\n"),
                                failed_login(&ip, "alice").as_bytes(),
                            )
                        })
                        .await
                        .expect("report");
                        assert_eq!(reply.status, 202, "{}", reply.text());
                        (StatusCode::UNAUTHORIZED, format!("bad password from {who}"))
                    },
                ),
            )
            .fallback(any(|headers: HeaderMap| async move {
                format!(
                    "app; client {}",
                    headers
                        .get("x-audit-client-ip")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?")
                )
            }))
            .with_state(serve);
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, rt)
}

fn from(ip: IpAddr, to: SocketAddr, method: &str, target: &str, head: &str) -> Reply {
    request_from(Some(ip), to, method, target, head.as_bytes(), b"")
        .unwrap_or_else(|e| panic!("{method} {target} from {ip}: {e}"))
}

#[test]
fn nginx_auth_request_blocks_the_attacker_only() {
    let serve = Serve::start(
        r#"
        enabled = true
        trusted_proxy_cidrs = ["127.0.0.1/32"]
        trusted_proxy_count = 1
        [[rules]]
        builtin = "brute_force_login"
        threshold = 3
        window_seconds = 300
        "#,
        Tokens::new(None, None, Some(INGEST.into())).expect("tokens"),
    );
    let (app, _app_rt) = start_app(serve.addr);
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nginx = Nginx::start(listen, app, serve.addr);
    eventually(10, "nginx to answer", || {
        request_from(Some(BYSTANDER), listen, "GET", "/", b"", b"")
            .ok()
            .filter(|r| r.status == 200)
    });

    // Serve saw the client through nginx's X-Forwarded-For, not nginx.
    let r = from(BYSTANDER, listen, "GET", "/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "app; client 127.0.0.3");

    // The attacker fails three logins, each time claiming to be the
    // bystander in X-Forwarded-For (framing attempt).
    for _ in 0..3 {
        let r = from(
            ATTACKER,
            listen,
            "POST",
            "/login?password=guess",
            "X-Forwarded-For: 127.0.0.3\r\n",
        );
        assert!(
            r.status == 401 || r.status == 429,
            "login answered {} {}",
            r.status,
            r.text()
        );
    }
    // Egress runs off the request path: wait for the block to land.
    let denied = eventually(10, "the attacker to be denied", || {
        let r = from(ATTACKER, listen, "GET", "/", "");
        (r.status == 429).then_some(r)
    });
    let retry: u64 = denied
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After on a temp block");
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    assert_eq!(denied.header("x-sec-audit-status"), Some("429"));

    // Evading: a spoofed X-Forwarded-For does not get the attacker through.
    for spoof in ["127.0.0.3", "10.9.9.9, 127.0.0.3", "garbage"] {
        let r = from(
            ATTACKER,
            listen,
            "GET",
            "/",
            &format!("X-Forwarded-For: {spoof}\r\n"),
        );
        assert_eq!(r.status, 429, "spoofed XFF {spoof} evaded the block");
    }
    // Framing: the bystander named in the attacker's header still passes.
    let r = from(BYSTANDER, listen, "GET", "/anything?x=1", "");
    assert_eq!(r.status, 200, "the bystander was framed: {}", r.text());

    // The trail has exactly one block, on the attacker's address.
    let blocks: Vec<_> = serve
        .records()
        .into_iter()
        .filter(|r| r["attributes"]["event_type"] == "audit.enforcement.block_applied")
        .collect();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["attributes"]["scope.type"], "ip");
    assert_eq!(blocks[0]["attributes"]["scope.value"], "127.0.0.2");
    assert!(
        !nginx.error_log().contains("[emerg]"),
        "{}",
        nginx.error_log()
    );
}
