//! A real nginx (`auth_request`) in front of a small application, with
//! `sec-audit serve` deciding: failed logins reported through `/v1/events`
//! get their client denied through nginx (429), another client passes, and
//! a spoofed `X-Forwarded-For` neither evades nor frames. The nginx
//! configuration is `examples/proxies/nginx/nginx.conf.template`.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::proxy::*;
use common::*;
use sec_audit_serve::Tokens;

fn start_nginx(listen: SocketAddr, app: SocketAddr, serve: SocketAddr) -> ProxyProcess {
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
    let nginx = find_binary(
        "nginx",
        &["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"],
    );
    let child = Command::new(nginx)
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
    ProxyProcess { child, dir }
}

#[test]
fn nginx_auth_request_blocks_the_attacker_only() {
    let serve = Serve::start(
        PROXIED,
        Tokens::new(None, None, Some(INGEST.into())).expect("tokens"),
    );
    let (app, _app_rt) = start_app(serve.addr);
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut nginx = start_nginx(listen, app, serve.addr);
    wait_proxy(&mut nginx, "error.log", listen);

    // nginx maps serve's 403 to 429 (`error_page 403 = @sec_audit_denied`).
    blocks_the_attacker_only(&serve, listen, 429);
    let log = nginx.read("error.log");
    assert!(!log.contains("[emerg]"), "{log}");
}
