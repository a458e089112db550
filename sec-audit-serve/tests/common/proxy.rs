//! Shared by the real-proxy tests (`nginx.rs`, `caddy.rs`): the proxy
//! binary lookup, a guard that stops the proxy process, the small
//! application behind the proxy, and the block / pass / spoof scenario.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{any, post};

use super::*;

pub const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
pub const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// serve's configuration in front of which the proxies run: the proxy
/// connects from 127.0.0.1 and is trusted as one hop.
pub const PROXIED: &str = r#"
enabled = true
trusted_proxy_cidrs = ["127.0.0.1/32"]
trusted_proxy_count = 1
[[rules]]
builtin = "brute_force_login"
threshold = 3
window_seconds = 300
"#;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The first of `paths` that exists, else `name` on the `PATH`; panics
/// naming the package to install.
pub fn find_binary(name: &str, paths: &[&str]) -> PathBuf {
    for p in paths {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
    {
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !s.is_empty() {
            return PathBuf::from(s);
        }
    }
    panic!("{name} is not installed: this test needs a real {name} (apt-get install {name}; scripts/test.sh installs it)");
}

/// A started proxy process and its temp dir: stopped with SIGTERM (then
/// SIGKILL after 5 s) when dropped, also when the test fails.
pub struct ProxyProcess {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl ProxyProcess {
    /// Panics, with `log`, when the process has already exited.
    pub fn assert_running(&mut self, log: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the proxy exited ({status}):\n{}", self.read(log));
        }
    }

    /// A file in the temp dir (a log), empty when missing.
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // SIGTERM: nginx's master stops its workers (SIGKILL would orphan
        // them, still listening); Caddy stops gracefully.
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

#[derive(serde::Deserialize)]
struct Login {
    password: Option<String>,
}

/// The application: `/login` checks a password and reports a failure to
/// serve as an audit event, keyed on the address serve resolved (the
/// proxy's `X-Audit-Client-Ip`); anything else answers 200 naming it.
pub fn start_app(serve: SocketAddr) -> (SocketAddr, tokio::runtime::Runtime) {
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

pub fn from(ip: IpAddr, to: SocketAddr, method: &str, target: &str, head: &str) -> Reply {
    request_from(Some(ip), to, method, target, head.as_bytes(), b"")
        .unwrap_or_else(|e| panic!("{method} {target} from {ip}: {e}"))
}

/// Polls `GET /` through the proxy from the bystander until it answers
/// 200 (at most 10 s), checking on each round that the proxy still runs.
pub fn wait_proxy(proxy: &mut ProxyProcess, log: &str, listen: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        proxy.assert_running(log);
        if let Ok(r) = request_from(Some(BYSTANDER), listen, "GET", "/", b"", b"") {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the proxy on {listen} never answered 200:\n{}",
            proxy.read(log)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The scenario through a proxy on `listen` in front of `start_app` and
/// `serve` (over `PROXIED`): the attacker's failed logins (each claiming
/// to be the bystander in `X-Forwarded-For`) get it denied with
/// `denied_status`, `Retry-After` and `X-Sec-Audit-Status: 429`; spoofed
/// `X-Forwarded-For` neither evades nor frames; the trail holds exactly
/// one block, on the attacker's address.
pub fn blocks_the_attacker_only(serve: &Serve, listen: SocketAddr, denied_status: u16) {
    // Serve saw the client through the proxy's X-Forwarded-For, not the
    // proxy.
    let r = from(BYSTANDER, listen, "GET", "/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "app; client 127.0.0.3");

    for _ in 0..3 {
        let r = from(
            ATTACKER,
            listen,
            "POST",
            "/login?password=guess",
            "X-Forwarded-For: 127.0.0.3\r\n",
        );
        assert!(
            r.status == 401 || r.status == denied_status,
            "login answered {} {}",
            r.status,
            r.text()
        );
        if r.status == 401 {
            assert_eq!(r.text(), "bad password from 127.0.0.2");
        }
    }
    // Egress runs off the request path: wait for the block to land.
    let denied = eventually(10, "the attacker to be denied", || {
        let r = from(ATTACKER, listen, "GET", "/", "");
        (r.status == denied_status).then_some(r)
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
        assert_eq!(
            r.status, denied_status,
            "spoofed XFF {spoof} evaded the block"
        );
    }
    // Framing: the bystander named in the attacker's header still passes.
    let r = from(BYSTANDER, listen, "GET", "/anything?x=1", "");
    assert_eq!(r.status, 200, "the bystander was framed: {}", r.text());

    let blocks: Vec<_> = serve
        .records()
        .into_iter()
        .filter(|r| r["attributes"]["event_type"] == "audit.enforcement.block_applied")
        .collect();
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["attributes"]["scope.type"], "ip");
    assert_eq!(blocks[0]["attributes"]["scope.value"], "127.0.0.2");
}
