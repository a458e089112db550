//! A real Caddy (`forward_auth`) in front of a small application, with
//! `sec-audit serve` deciding: failed logins reported through `/v1/events`
//! get their client denied through Caddy (serve's answer passed through:
//! 403 by default, 429 with `decide_status = "native"`, `Retry-After`
//! kept), another client passes, a spoofed `X-Forwarded-For` neither evades
//! nor frames, and a client-supplied `X-Audit-User` never reaches serve.
//! The Caddy configuration is `examples/proxies/caddy/Caddyfile`, run as
//! committed with its address placeholders set through the environment.

mod common;

use std::fs::File;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::proxy::*;
use common::*;
use sec_audit_serve::Tokens;

const CADDYFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/proxies/caddy/Caddyfile"
);

/// Runs the committed Caddyfile with Caddy's home, data and config dirs in
/// a temp dir (no admin endpoint, no automatic HTTPS: no certificate, no
/// network beyond the loopback addresses given), its log in `caddy.log`.
fn start_caddy(listen: SocketAddr, app: SocketAddr, serve: SocketAddr) -> ProxyProcess {
    let text = std::fs::read_to_string(CADDYFILE).expect("the Caddy example configuration");
    for needed in [
        "admin off",
        "auto_https off",
        "{$CADDY_BIND:",
        "{$CADDY_PORT:",
        "{$SEC_AUDIT_ADDR:",
        "{$APP_ADDR:",
    ] {
        assert!(text.contains(needed), "the Caddyfile lacks {needed}");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let log = File::create(dir.path().join("caddy.log")).expect("caddy.log");
    let log2 = log.try_clone().expect("caddy.log");
    let caddy = find_binary("caddy", &["/usr/bin/caddy", "/usr/local/bin/caddy"]);
    let child = Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config", CADDYFILE])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("CADDY_BIND", listen.ip().to_string())
        .env("CADDY_PORT", listen.port().to_string())
        .env("SEC_AUDIT_ADDR", serve.to_string())
        .env("APP_ADDR", app.to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .expect("start caddy");
    ProxyProcess { child, dir }
}

fn run(decide_status: &str, denied_status: u16) {
    let serve = Serve::start(
        &format!("{PROXIED}\n[serve]\ndecide_status = \"{decide_status}\"\n"),
        Tokens::new(Some(ADMIN.into()), None, Some(INGEST.into())).expect("tokens"),
    );
    let (app, _app_rt) = start_app(serve.addr);
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut caddy = start_caddy(listen, app, serve.addr);
    wait_proxy(&mut caddy, "caddy.log", listen);

    blocks_the_attacker_only(&serve, listen, denied_status);
    let denied = from(ATTACKER, listen, "GET", "/", "");
    assert_eq!(denied.status, denied_status);
    assert_eq!(
        denied.text(),
        "Request blocked by audit enforcement policy",
        "serve's body passed through"
    );

    // Identity headers: block user alice; serve itself denies a request
    // naming her, but Caddy drops a client-supplied X-Audit-User.
    let r = request(
        serve.addr,
        "POST",
        "/v1/blocks",
        &format!("Authorization: Bearer {ADMIN}\r\n"),
        br#"{"scope":"user","value":"alice","ttl":60,"reason":"test"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let direct = request(
        serve.addr,
        "GET",
        "/v1/decide",
        "X-Forwarded-For: 127.0.0.3\r\nX-Audit-User: alice\r\n",
        b"",
    );
    assert_eq!(direct.status, denied_status, "{}", direct.text());
    let r = from(BYSTANDER, listen, "GET", "/", "X-Audit-User: alice\r\n");
    assert_eq!(
        r.status, 200,
        "a client-supplied X-Audit-User reached serve"
    );

    caddy.assert_running("caddy.log");
    let log = caddy.read("caddy.log");
    assert!(!log.contains("\"level\":\"error\""), "{log}");
}

#[test]
fn caddy_forward_auth_passes_serves_403_through() {
    run("forbidden", 403);
}

#[test]
fn caddy_forward_auth_passes_the_native_429_through() {
    run("native", 429);
}
