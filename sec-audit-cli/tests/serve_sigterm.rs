//! The real `sec-audit serve` binary: it prints its address, serves, and on
//! SIGTERM drains the egress queue and flushes the JSONL trail, so every
//! accepted event leaves its record; configuration errors name the key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    s.write_all(body).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn sigterm_drains_every_accepted_event_into_the_trail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trail = dir.path().join("trail.jsonl");
    let config = dir.path().join("sec-audit.toml");
    std::fs::write(
        &config,
        format!(
            r#"
enabled = true
[[rules]]
builtin = "brute_force_login"
threshold = 1
[rule_actions]
brute_force_login = "alert"
[serve]
listen = "127.0.0.1:0"
output = "{}"
max_body_bytes = 16777216
queue_capacity = 100000
egress_workers = 1
"#,
            trail.display()
        ),
    )
    .expect("config");
    let mut child = Proc(
        Command::new(env!("CARGO_BIN_EXE_sec-audit"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sec-audit serve"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("serve printed nothing");
    let addr: SocketAddr = first
        .strip_prefix("sec-audit serve: listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {first}"));

    // One big batch: the egress worker is still busy with it when SIGTERM
    // arrives.
    const N: usize = 20_000;
    let line = r#"{"event_type":"auth.login.failed","source.address":"192.0.2.77","user.id":"eve","url.path":"/login"}"#;
    let body = format!("{line}\n").repeat(N);
    let (status, reply) = post(addr, "/v1/events", body.as_bytes());
    assert_eq!(status, 202, "{reply}");
    assert!(reply.contains(&format!("\"accepted\":{N}")), "{reply}");
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(status.success(), "exit {status:?}: {rest:?}");
    let summary = rest
        .iter()
        .find(|l| l.starts_with("sec-audit serve: stopped"))
        .unwrap_or_else(|| panic!("no shutdown summary in {rest:?}"));
    let queued: usize = summary
        .split("; ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad summary {summary}"));
    assert!(
        queued > 0,
        "the queue was already empty at SIGTERM: {summary}"
    );
    assert!(summary.ends_with(" 0 lost"), "{summary}");
    let alerts = std::fs::read_to_string(&trail)
        .expect("trail")
        .lines()
        .filter(|l| l.contains("\"audit.enforcement.alert\""))
        .count();
    assert_eq!(alerts, N, "every accepted event leaves its alert record");
}

#[test]
fn a_bad_serve_table_is_a_configuration_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("sec-audit.toml");
    std::fs::write(
        &config,
        "[serve]\nlisten = \"127.0.0.1:0\"\nqueue_capcity = 5\n",
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_sec-audit"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`serve.queue_capcity`"), "{err}");
    // A token too short to be safe is refused too, without showing it.
    std::fs::write(&config, "[serve]\nlisten = \"127.0.0.1:0\"\n").expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_sec-audit"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("SEC_AUDIT_ADMIN_TOKEN", "hunter2")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SEC_AUDIT_ADMIN_TOKEN") && !err.contains("hunter2"),
        "{err}"
    );
}
