//! Connections fit for managed servers, against real `redis-server`s this
//! test starts on free loopback ports:
//!
//! - `rediss://` (TLS, rustls) with a throw-away CA made at test time: the
//!   private CA of `tls_ca_file` is trusted, the compiled-in public roots do
//!   not trust it, the host name is verified, `#insecure` is refused;
//! - a failover: a pooled connection that gets `READONLY` is dropped (older
//!   ones are marked stale) and the command retried once on a fresh
//!   connection — with the endpoint moved to the promoted replica, no call
//!   fails.

mod common;

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{clock, free_port, new_block, unique};
use sec_audit_core::ScopeKey;
use sec_audit_store::{
    BlockStore, RedisBlockStore, RedisConfig, RedisCounters, RedisPool, StoreError,
};

/// A `redis-server` with extra arguments, no persistence, on `port`.
struct Server {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Server {
    fn start(port: u16, dir: &Path, extra: &[String]) -> Server {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            // A replica syncs at once instead of after the default 5 s.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(dir)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (is it installed and on PATH?): {e}")
            });
        Server {
            port,
            dir: dir.to_path_buf(),
            child,
        }
    }

    /// A plain server on a free port.
    fn plain(extra: &[&str]) -> Server {
        let port = free_port();
        let dir = temp_dir("plain");
        let mut args = vec!["--port".to_string(), port.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let s = Server::start(port, &dir, &args);
        s.wait_ready(&format!("redis://127.0.0.1:{port}"), None);
        s
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until PING answers through `url` (bounded).
    fn wait_ready(&self, url: &str, ca: Option<&Path>) {
        let mut config = RedisConfig::new(url);
        if let Some(ca) = ca {
            config = config.with_tls_ca_file(ca);
        }
        let client = config.client().expect("client");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(300)) {
                if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server on port {} did not come up (does this redis-server support TLS?)",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cmd<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        let client = redis::Client::open(self.url()).expect("url");
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("private redis on {} unreachable: {e}", self.port));
        cmd.query(&mut c)
            .unwrap_or_else(|e| panic!("command on private redis {} failed: {e}", self.port))
    }

    fn info_field(&self, section: &str, field: &str) -> String {
        let info: String = self.cmd(redis::cmd("INFO").arg(section));
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
    }

    fn connections_received(&self) -> u64 {
        self.info_field("stats", "total_connections_received")
            .parse()
            .expect("a number")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let name = format!("sec-audit-{what}-{}", unique("conn")).replace(':', "-");
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A throw-away CA and a server certificate for `localhost` (only) signed
/// by it, written as PEM files into `dir`: (ca, cert, key).
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "sec-audit test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .expect("server cert");
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    (paths.0, paths.1, paths.2)
}

/// A TLS-only `redis-server` (`--port 0 --tls-port P`) with a fresh CA.
struct TlsServer {
    server: Server,
    ca: PathBuf,
}

impl TlsServer {
    fn start() -> TlsServer {
        let port = free_port();
        let dir = temp_dir("tls");
        let (ca, cert, key) = make_certs(&dir);
        let p = |p: &Path| p.to_string_lossy().to_string();
        let args: Vec<String> = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &p(&cert),
            "--tls-key-file",
            &p(&key),
            "--tls-ca-cert-file",
            &p(&ca),
            "--tls-auth-clients",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let server = Server::start(port, &dir, &args);
        let s = TlsServer { server, ca };
        s.server.wait_ready(&s.url("localhost"), Some(&s.ca));
        s
    }

    fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.server.port)
    }
}

fn config(url: &str, prefix: &str) -> RedisConfig {
    RedisConfig::new(url)
        .with_key_prefix(prefix)
        .with_connect_timeout(Duration::from_millis(2000))
        .with_command_timeout(Duration::from_millis(2000))
        .with_failure_backoff(Duration::ZERO)
        .with_pool_size(4)
}

#[test]
fn rediss_with_a_private_ca_works_and_is_verified() {
    let tls = TlsServer::start();
    let prefix = format!("t:{}", unique("tls"));

    // Trusting the private CA: blocks round-trip over TLS.
    let pool = RedisPool::new(&config(&tls.url("localhost"), &prefix).with_tls_ca_file(&tls.ca))
        .expect("valid TLS settings");
    let store = RedisBlockStore::new(&pool, clock(), 3600);
    let user = ScopeKey::new("user", "tls-user");
    store
        .block(&new_block("user", "tls-user", Some(60)))
        .expect("a block written over TLS");
    let found = store
        .first_active(std::slice::from_ref(&user))
        .expect("a lookup over TLS")
        .expect("the block is found");
    assert_eq!(found.scope_value, "tls-user");
    assert_eq!(
        pool.get_raw(&format!("{prefix}:nothing"))
            .expect("GET over TLS"),
        None
    );
    // The plain port is closed: that really was TLS.
    let info_port = tls.plain_port();
    assert_eq!(info_port, "0", "the server listens on no plain port");

    // The public roots compiled in do not know the private CA.
    // (A refused handshake is retried until connect_timeout: keep it short.)
    let short = |c: RedisConfig| c.with_connect_timeout(Duration::from_millis(400));
    let pool = RedisPool::new(&short(config(&tls.url("localhost"), &prefix))).expect("valid");
    let err = RedisPool::get_raw(&pool, "x").expect_err("an unknown CA is refused");
    assert!(matches!(err, StoreError::Redis(_)), "{err:?}");

    // The certificate names `localhost` only: 127.0.0.1 is another name.
    let pool = RedisPool::new(&short(
        config(&tls.url("127.0.0.1"), &prefix).with_tls_ca_file(&tls.ca),
    ))
    .expect("valid");
    let err = pool.get_raw("x").expect_err("a name mismatch is refused");
    assert!(matches!(err, StoreError::Redis(_)), "{err:?}");

    // The same settings give an async-capable client (the redis crate's
    // tokio-rustls-comp opens its connection from this client).
    let client = config(&tls.url("localhost"), &prefix)
        .with_tls_ca_file(&tls.ca)
        .client()
        .expect("client");
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("connect over TLS");
    let pong: String = redis::cmd("PING").query(&mut conn).expect("PING");
    assert_eq!(pong, "PONG");
    let n: u64 = redis::cmd("DEL")
        .arg(format!("{prefix}:block:user:tls-user"))
        .query(&mut conn)
        .expect("DEL");
    assert_eq!(n, 1);
}

/// The async lookup (`AsyncRedis`, the ingress path of an async server)
/// over `rediss://` with a private CA: it must use the same TLS settings as
/// the pool, or every async lookup fails the handshake (and fails open).
#[test]
fn async_lookups_over_rediss_trust_the_private_ca() {
    use sec_audit_store::aio::{AsyncRedis, AsyncRedisBlockStore};
    let tls = TlsServer::start();
    let prefix = format!("t:{}", unique("atls"));
    let settings = config(&tls.url("localhost"), &prefix).with_tls_ca_file(&tls.ca);
    let pool = RedisPool::new(&settings).expect("valid TLS settings");
    let store = RedisBlockStore::new(&pool, clock(), 3600);
    store
        .block(&new_block("user", "atls-user", Some(60)))
        .expect("a block written over TLS");
    let conn = AsyncRedis::new(&settings).expect("valid TLS settings");
    let lookup = AsyncRedisBlockStore::new(&conn, store.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let user = ScopeKey::new("user", "atls-user");
    let found = rt
        .block_on(lookup.first_active(std::slice::from_ref(&user)))
        .expect("an async lookup over TLS with the private CA")
        .expect("the block is found");
    assert_eq!(found.scope_value, "atls-user");
    rt.block_on(conn.ping()).expect("async PING over TLS");

    // Without the CA the public roots refuse the server, async too.
    let short = config(&tls.url("localhost"), &prefix)
        .with_connect_timeout(Duration::from_millis(400))
        .with_command_timeout(Duration::from_millis(400));
    let conn = AsyncRedis::new(&short).expect("valid");
    let err = rt
        .block_on(conn.ping())
        .expect_err("an unknown CA is refused");
    assert!(
        matches!(err, StoreError::Redis(_) | StoreError::Timeout(_)),
        "{err:?}"
    );
    store
        .unblock(&user, "test", "test")
        .expect("cleanup over TLS");
}

impl TlsServer {
    /// The server's plain (non-TLS) port setting, read over TLS.
    fn plain_port(&self) -> String {
        let client = RedisConfig::new(self.url("localhost"))
            .with_tls_ca_file(&self.ca)
            .client()
            .expect("client");
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("TLS connection");
        let v: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("port")
            .query(&mut c)
            .expect("CONFIG GET port");
        v.get(1).cloned().unwrap_or_default()
    }
}

#[test]
fn tls_settings_are_checked_without_connecting() {
    let dir = temp_dir("tlscheck");
    let (ca, _, key) = make_certs(&dir);
    let ok = RedisConfig::new("rediss://localhost:1").with_tls_ca_file(&ca);
    assert!(ok.validate().is_ok());
    assert!(ok.is_tls());
    assert!(!RedisConfig::new("redis://localhost:1").is_tls());
    assert!(RedisConfig::new("rediss://localhost:1").validate().is_ok());

    let msg = |c: RedisConfig| c.validate().expect_err("invalid").to_string();
    // No certificate verification is never offered.
    assert!(msg(RedisConfig::new("rediss://localhost:1/#insecure")).contains("#insecure"));
    // A CA file only makes sense with TLS.
    assert!(
        msg(RedisConfig::new("redis://localhost:1").with_tls_ca_file(&ca))
            .contains("not rediss://")
    );
    // Missing, not PEM, or PEM without a certificate.
    assert!(
        msg(RedisConfig::new("rediss://h:1").with_tls_ca_file(dir.join("nope.pem")))
            .contains("nope.pem")
    );
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    assert!(
        msg(RedisConfig::new("rediss://h:1").with_tls_ca_file(&junk))
            .contains("no PEM certificate")
    );
    assert!(
        msg(RedisConfig::new("rediss://h:1").with_tls_ca_file(&key)).contains("no PEM certificate")
    );
    assert!(sec_audit_store::check_tls_ca_file(&ca).is_ok());
    assert!(sec_audit_store::check_tls_ca_file(&junk).is_err());
    // Errors never carry the URL's password.
    let e = msg(RedisConfig::new("rediss://:s3cret@h:1/#insecure"));
    assert!(!e.contains("s3cret"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_readonly_reply_drops_the_connection_and_retries_once_then_the_promoted_replica_is_used() {
    let primary = Server::plain(&[]);
    let replica = Server::plain(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    wait_until("the replica to sync", || {
        replica.info_field("replication", "master_link_status") == "up"
    });
    let prefix = format!("t:{}", unique("readonly"));
    let pool = RedisPool::new(&config(&replica.url(), &prefix)).expect("config");
    let store = RedisBlockStore::new(&pool, clock(), 3600);

    // A write against the replica: READONLY, surfaced once, after one retry
    // on a fresh connection.
    let before_conns = replica.connections_received();
    let before = store.stats();
    let err = store
        .block(&new_block("user", "ro", Some(60)))
        .expect_err("a write on a replica fails");
    assert!(err.to_string().to_lowercase().contains("readonly"), "{err}");
    assert_eq!(
        store.stats().since(&before).redis_round_trips,
        2,
        "one attempt and one retry"
    );
    assert_eq!(
        replica.connections_received() - before_conns - 1, // our INFO connection
        2,
        "the retry ran on a fresh connection"
    );

    // A script that writes (EVALSHA, NOSCRIPT, EVAL): its READONLY reply is
    // recognised too (one retry of the EVAL).
    let counters = RedisCounters::new(&pool);
    let before = counters.stats();
    use sec_audit_core::Counters as _;
    assert_eq!(counters.incr("c", 1, Some(60)), 1, "degrades to `amount`");
    assert_eq!(
        counters.stats().since(&before).redis_round_trips,
        3,
        "EVALSHA, EVAL, and one retry of the EVAL"
    );

    // Failover: the replica is promoted. The next call succeeds at once.
    let _: String = replica.cmd(redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
    let before = store.stats();
    store
        .block(&new_block("user", "ro", Some(60)))
        .expect("the first write after the promotion succeeds");
    assert_eq!(store.stats().since(&before).redis_round_trips, 1);
    assert!(store
        .get_active(&ScopeKey::new("user", "ro"))
        .expect("read")
        .is_some());
    let before = counters.stats();
    assert_eq!(counters.incr("c", 1, Some(60)), 1);
    assert_eq!(counters.incr("c", 1, Some(60)), 2, "the script now writes");
    assert_eq!(counters.stats().since(&before).redis_round_trips, 2);
}

/// A TCP forwarder standing for a managed endpoint whose DNS name moves to
/// the new primary on failover: new connections go to the current target,
/// existing ones stay where they were.
struct Endpoint {
    port: u16,
    target: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

impl Endpoint {
    fn start(target: u16) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Arc::new(AtomicU16::new(target));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (target.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let to = t.load(Ordering::Acquire);
                let Ok(server) = TcpStream::connect_timeout(
                    &([127, 0, 0, 1], to).into(),
                    Duration::from_secs(2),
                ) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                std::thread::spawn(move || pipe(client, server));
                std::thread::spawn(move || pipe(s2, c2));
            }
        });
        Endpoint {
            port,
            target,
            stop,
            accept: Some(accept),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn point_to(&self, port: u16) {
        self.target.store(port, Ordering::Release);
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(500),
        );
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

#[test]
fn after_a_failover_behind_a_moving_endpoint_no_call_fails() {
    let a = Server::plain(&[]);
    let b = Server::plain(&["--replicaof", "127.0.0.1", &a.port.to_string()]);
    wait_until("the replica to sync", || {
        b.info_field("replication", "master_link_status") == "up"
    });
    let endpoint = Endpoint::start(a.port);
    let prefix = format!("t:{}", unique("failover"));
    let pool = RedisPool::new(&config(&endpoint.url(), &prefix)).expect("config");
    let store = RedisBlockStore::new(&pool, clock(), 3600);
    // Several pooled connections to A.
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for i in 0..20 {
                    store
                        .block(&new_block("user", &format!("before-{t}-{i}"), Some(60)))
                        .expect("write before the failover");
                }
            });
        }
    });

    // Failover: B promoted, A demoted to B's replica, the endpoint moves.
    let _: String = b.cmd(redis::cmd("REPLICAOF").arg("NO").arg("ONE"));
    let _: String = a.cmd(redis::cmd("REPLICAOF").arg("127.0.0.1").arg(b.port));
    endpoint.point_to(b.port);
    wait_until("A to become a replica", || {
        a.info_field("replication", "role") == "slave"
    });

    let before = store.stats();
    let mut failures = Vec::new();
    for i in 0..20 {
        if let Err(e) = store.block(&new_block("user", &format!("after-{i}"), Some(60))) {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "calls failed after the failover: {failures:?}"
    );
    let trips = store.stats().since(&before).redis_round_trips;
    assert!(
        trips <= 21,
        "one retry at most: {trips} round trips for 20 calls"
    );
    // The writes landed on the new primary.
    let v: Option<String> = b.cmd(redis::cmd("GET").arg(format!("{prefix}:block:user:after-19")));
    assert!(v.is_some(), "the write is on the promoted server");
}

#[test]
fn a_tls_handshake_with_a_silent_server_is_bounded_by_the_connect_timeout() {
    // Accepts TCP connections and never answers: the TLS handshake must not
    // hang a caller (or the pool's connecting thread).
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).expect("nonblocking");
        while !st.load(Ordering::Acquire) {
            if let Ok((c, _)) = listener.accept() {
                held.push(c);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let pool = RedisPool::new(
        &config(&format!("rediss://localhost:{port}"), "t:silent")
            .with_connect_timeout(Duration::from_millis(300)),
    )
    .expect("valid");
    for _ in 0..3 {
        let started = Instant::now();
        let err = pool.get_raw("x").expect_err("no TLS server there");
        assert!(
            matches!(err, StoreError::Redis(_) | StoreError::Timeout(_)),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "bounded by connect_timeout, took {:?}",
            started.elapsed()
        );
    }
    stop.store(true, Ordering::Release);
    let _ = holder.join();
}
