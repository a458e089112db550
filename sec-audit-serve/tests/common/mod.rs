//! Shared test helpers: a small blocking HTTP/1.1 client that can bind its
//! socket to any loopback address, and an in-process `sec-audit serve`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sec_audit_enforce::{Config, Runtime, Sink};
use sec_audit_serve::{ServeConfig, Server, ShutdownReport, Tokens};

pub mod browser;
pub mod proxy;

pub const ADMIN: &str = "admin-token-for-tests-0123456789";
pub const READ: &str = "read-token-for-tests-0123456789";
pub const INGEST: &str = "ingest-token-for-tests-0123456789";

/// A response: status, headers (lower-case names), body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&body[..nl])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        body = &body[nl + 2..];
        if size == 0 || body.len() < size {
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or(&[]);
    }
}

/// Sends one request (`Connection: close`) from `from` (any loopback
/// address; `None`: the system's choice) and reads the whole reply.
/// `head` holds extra header lines, raw bytes (may be invalid UTF-8).
pub fn request_from(
    from: Option<IpAddr>,
    to: SocketAddr,
    method: &str,
    target: &str,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<Reply> {
    let stream = match from {
        None => TcpStream::connect_timeout(&to, Duration::from_secs(5))?,
        Some(ip) => {
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
            socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
            socket.into()
        }
    };
    let mut stream = stream;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_write_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {to}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(head);
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    stream.write_all(&req)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end in the reply"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn request(to: SocketAddr, method: &str, target: &str, head: &str, body: &[u8]) -> Reply {
    request_from(None, to, method, target, head.as_bytes(), body)
        .unwrap_or_else(|e| panic!("{method} {target} on {to}: {e}"))
}

pub fn get(to: SocketAddr, target: &str, head: &str) -> Reply {
    request(to, "GET", target, head, b"")
}

/// Polls `GET /healthz` until it answers 200 (at most 10 s).
pub fn wait_healthy(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = request_from(None, addr, "GET", "/healthz", b"", b"") {
            if r.status == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "serve on {addr} never became healthy"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some` (at most `secs`).
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// An in-process `sec-audit serve` on a free loopback port.
pub struct Serve {
    pub addr: SocketAddr,
    pub trail: PathBuf,
    pub server: Server,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<ShutdownReport>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Serve {
    /// Starts serve over `config_toml` (its `[serve]` table applies; the
    /// listen address is replaced by a free port).
    pub fn start(config_toml: &str, tokens: Tokens) -> Serve {
        let dir = tempfile::tempdir().expect("temp dir");
        let trail = dir.path().join("trail.jsonl");
        let mut s = Self::start_in(config_toml, tokens, &trail);
        s._dir = Some(dir);
        s
    }

    pub fn start_in(config_toml: &str, tokens: Tokens, trail: &Path) -> Serve {
        let config = Config::from_toml_str(config_toml).expect("test configuration");
        let serve = ServeConfig::from_config(&config).expect("test [serve] table");
        let runtime = Arc::new(
            Runtime::builder(config)
                .sink(Sink::file(trail).expect("trail file"))
                .build()
                .expect("runtime"),
        );
        let server = Server::new(runtime, serve, tokens);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let srv = server.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let _ = addr_tx.send(listener.local_addr()?);
                srv.serve(listener, async move {
                    let _ = rx.await;
                })
                .await
            })
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("serve did not bind");
        wait_healthy(addr);
        Serve {
            addr,
            trail: trail.to_path_buf(),
            server,
            stop: Some(tx),
            thread: Some(thread),
            _dir: None,
        }
    }

    /// Stops the server (graceful) and returns its report.
    pub fn stop(&mut self) -> ShutdownReport {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.thread
            .take()
            .expect("already stopped")
            .join()
            .expect("serve thread panicked")
            .expect("serve failed")
    }

    /// The JSONL trail's records so far.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.trail)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A failed-login event line as an application would report it.
pub fn failed_login(ip: &str, user: &str) -> String {
    serde_json::json!({
        "event_type": "auth.login.failed",
        "source.address": ip,
        "user.id": user,
        "url.path": "/login",
        "http.request.method": "POST",
        "http.response.status_code": 401,
    })
    .to_string()
}
