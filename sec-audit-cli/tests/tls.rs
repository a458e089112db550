//! The binary over `rediss://`: a TLS-only `redis-server` this test starts
//! on a free loopback port, with a CA made at test time and named by the
//! configuration's `redis_ca_file` (relative to the configuration file).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct TlsRedis {
    port: u16,
    child: Child,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `ca.pem`, `server.pem`, `server.key` (a certificate for
/// `localhost`) into `dir`.
fn make_certs(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sec-audit cli test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("cert");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("write");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write");
}

fn start_tls_redis(dir: &Path) -> TlsRedis {
    make_certs(dir);
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let file = |n: &str| dir.join(n).to_string_lossy().to_string();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--tls-cert-file", &file("server.pem")])
        .args(["--tls-key-file", &file("server.key")])
        .args(["--tls-ca-cert-file", &file("ca.pem")])
        .args(["--tls-auth-clients", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start redis-server (is it installed and on PATH?): {e}")
        });
    let server = TlsRedis { port, child };
    // Ready when a TLS PING answers.
    let client = sec_audit_store::RedisConfig::new(format!("rediss://localhost:{port}"))
        .with_tls_ca_file(dir.join("ca.pem"))
        .client()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(300)) {
            if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                return server;
            }
        }
        assert!(
            Instant::now() < deadline,
            "TLS redis-server on port {port} did not come up (does this redis-server support TLS?)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn check_live_and_blocks_work_over_rediss_with_a_private_ca() {
    let dir = TempDir::new("tls");
    let server = start_tls_redis(&dir.0);
    let url = format!("rediss://localhost:{}", server.port);
    let config = dir.write(
        "c.toml",
        &format!(
            "enabled = true\nredis_url = \"{url}\"\nredis_ca_file = \"ca.pem\"\nkey_prefix = \"t_cli_tls\"\nredis_pool_size = 2\n"
        ),
    );
    let out = run(&["check", "--config", s(&config), "--live"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("live ok: redis reachable at {url}")) && text.contains("version "),
        "{text}"
    );
    expect_code(&out, 0);

    // A block written by one invocation is listed by another, over TLS.
    let out = run(&[
        "blocks",
        "add",
        "--config",
        s(&config),
        "--scope",
        "user",
        "--value",
        "tls-u",
        "--ttl",
        "60",
        "--reason",
        "tls test",
    ]);
    expect_code(&out, 0);
    let out = run(&["blocks", "list", "--config", s(&config), "--json"]);
    expect_code(&out, 0);
    let listed: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert!(
        listed
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["scope_value"] == "tls-u")),
        "{listed}"
    );

    // Without the private CA the built-in public roots refuse the server.
    let no_ca = dir.write(
        "no_ca.toml",
        &format!("redis_url = \"{url}\"\nconnect_timeout_ms = 400\n"),
    );
    let out = run(&["check", "--config", s(&no_ca), "--live"]);
    expect_code(&out, 1);
    assert!(
        stdout(&out).contains("live error: redis not reachable at"),
        "{}",
        stdout(&out)
    );

    // A CA file that does not exist is a configuration error naming the key.
    let missing = dir.write(
        "missing.toml",
        &format!("redis_url = \"{url}\"\nredis_ca_file = \"nope.pem\"\n"),
    );
    let out = run(&["check", "--config", s(&missing)]);
    expect_code(&out, 2);
    assert!(stdout(&out).contains("`redis_ca_file`"), "{}", stdout(&out));
}
