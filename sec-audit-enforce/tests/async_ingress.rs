//! `Runtime::ingress_check_async` and the egress queue: the same decisions
//! and events as the sync check (memory and real Redis stores), `retry_after`,
//! a frozen private Redis that costs each request at most the command timeout
//! and then fails fast per its fail mode while the executor keeps running,
//! and a bounded egress queue that drains on shutdown.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{event, Harness, SharedBuf, TestRule};
use sec_audit_core::AuditEvent;
use sec_audit_enforce::{
    Config, DenyReason, EgressQueue, IngressDecision, ManualBlock, QueueFull, RequestView, Runtime,
    Sink,
};
use sec_audit_rules::{Match, Rule, RuleContext, RuleError};
use serde_json::{json, Value};

fn assert_send<T: Send>(_: &T) {}

fn fail_login(ip: &str) -> AuditEvent {
    event(json!({"event_type": "auth.login.failed", "source.address": ip, "user.name": "alice"}))
}

fn transfer(ip: &str, amount: &str) -> RequestView<'static> {
    let mut body = serde_json::Map::new();
    body.insert("amount".into(), json!(amount));
    RequestView::new("POST", "/api/transfer/", ip.to_string()).with_body(body)
}

/// The record fields that must match between the two checks (times come
/// from the same manual clock).
fn trail(out: &SharedBuf) -> Vec<(Value, Value)> {
    out.records()
        .into_iter()
        .map(|r| (r["body"].clone(), r["attributes"].clone()))
        .collect()
}

const RULES: &str = r#"
enabled = true
[[rules]]
builtin = "brute_force_login"
threshold = 3
[[rules]]
builtin = "login_throttle"
threshold = 3
[[rules]]
builtin = "request_body_threshold"
paths = ["^/api/transfer"]
"#;

/// One scenario, each request decided by `check`.
fn scenario(
    h: &Harness,
    check: &dyn Fn(&Runtime, &RequestView<'_>) -> IngressDecision,
) -> Vec<IngressDecision> {
    let rt = &h.rt;
    let mut d = Vec::new();
    d.push(check(
        rt,
        &RequestView::new("GET", "/", "192.0.2.1").with_user_id("alice"),
    ));
    // An ingress rule matches and applies a temp block: the deny carries
    // its TTL; the next request is denied by the block itself.
    d.push(check(rt, &transfer("192.0.2.2", "10000.01")));
    h.clock.advance_secs(10.0);
    d.push(check(rt, &RequestView::new("GET", "/", "192.0.2.2")));
    // Egress blocks after three failed logins; login_throttle on ingress.
    for _ in 0..3 {
        rt.handle_event(&fail_login("192.0.2.3"));
    }
    d.push(check(rt, &RequestView::new("POST", "/login", "192.0.2.3")));
    // A permanent block: no retry_after.
    rt.block(&ManualBlock {
        scope_type: "user".into(),
        value: "mallory".into(),
        reason: "test".into(),
        ..ManualBlock::default()
    })
    .expect("block");
    d.push(check(
        rt,
        &RequestView::new("GET", "/", "192.0.2.9").with_user_id("mallory"),
    ));
    d.push(check(
        rt,
        &RequestView::new("GET", "/", "192.0.2.9").with_user_id("bob"),
    ));
    d
}

#[test]
fn async_check_decides_and_records_exactly_like_the_sync_check_on_memory_stores() {
    let sync = Harness::new(RULES);
    let sync_d = scenario(&sync, &|rt, r| rt.ingress_check(r));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let asy = Harness::new(RULES);
    let async_d = scenario(&asy, &|rt, r| {
        let fut = rt.ingress_check_async(r);
        assert_send(&fut);
        tokio.block_on(fut)
    });
    assert_eq!(sync_d, async_d);
    assert_eq!(trail(&sync.out), trail(&asy.out));

    assert!(sync_d[0].is_allow());
    let IngressDecision::Deny {
        reason: DenyReason::RuleMatched { rule_name },
        retry_after: Some(ttl),
        ..
    } = &sync_d[1]
    else {
        panic!("rule match with a temp block: {:?}", sync_d[1]);
    };
    assert_eq!(rule_name, "request_body_threshold");
    assert!(*ttl >= 60, "the applied block's whole TTL: {ttl}");
    assert!(
        matches!(&sync_d[2], IngressDecision::Deny { reason: DenyReason::Blocked { .. }, retry_after: Some(left), .. } if *left == ttl - 10),
        "10 s later: {:?}",
        sync_d[2]
    );
    assert!(
        matches!(&sync_d[3], IngressDecision::Deny { .. }),
        "{:?}",
        sync_d[3]
    );
    assert!(
        matches!(&sync_d[4], IngressDecision::Deny { reason: DenyReason::Blocked { scope_value, .. }, retry_after: None, .. } if scope_value == "mallory"),
        "{:?}",
        sync_d[4]
    );
    assert!(sync_d[5].is_allow());
}

#[test]
fn async_check_follows_fail_open_on_rule_failures_and_panics() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    for (fail_open, panic) in [(true, false), (false, false), (true, true), (false, true)] {
        let toml = if fail_open {
            "enabled = true"
        } else {
            "enabled = true\nfail_open = false"
        };
        let make = || {
            let mut r = TestRule::new("broken");
            r.ingress = true;
            r.fail = !panic;
            r.panic = panic;
            Harness::with(toml, |b| b.rule(Arc::new(r)))
        };
        let (s, a) = (make(), make());
        let req = RequestView::new("GET", "/", "192.0.2.1");
        let ds = s.rt.ingress_check(&req);
        let da = tokio.block_on(a.rt.ingress_check_async(&req));
        assert_eq!(ds, da, "fail_open={fail_open} panic={panic}");
        assert_eq!(da.is_allow(), fail_open);
        assert_eq!(trail(&s.out), trail(&a.out));
        if !fail_open {
            assert!(!a.out.of("audit.enforcement.evaluation_failed").is_empty());
        }
    }
}

fn redis_url() -> String {
    std::env::var("SEC_AUDIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("t:{tag}:{}:{nanos}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_check_agrees_with_the_sync_check_on_real_redis_stores() {
    let toml = format!(
        "enabled = true\nredis_url = \"{}\"\nkey_prefix = \"{}\"\n[[rules]]\nbuiltin = \"brute_force_login\"\nthreshold = 2\n",
        redis_url(),
        unique("async_agree")
    );
    let out = SharedBuf::default();
    let rt = Runtime::builder(Config::from_toml_str(&toml).expect("config"))
        .sink(Sink::Writer(Box::new(out.clone())))
        .build()
        .expect("runtime");
    let clean = RequestView::new("GET", "/", "198.51.100.20").with_user_id("carol");
    assert_eq!(rt.ingress_check_async(&clean).await, IngressDecision::Allow);
    for _ in 0..2 {
        rt.handle_event(&fail_login("198.51.100.21"));
    }
    rt.block(&ManualBlock {
        scope_type: "user".into(),
        value: "dave".into(),
        reason: "test".into(),
        ..ManualBlock::default()
    })
    .expect("permanent (Redis-only: a long-lived entry)");
    for req in [
        clean.clone(),
        RequestView::new("GET", "/", "198.51.100.21"),
        RequestView::new("GET", "/", "198.51.100.20").with_user_id("dave"),
    ] {
        let a = rt.ingress_check_async(&req).await;
        let s = rt.ingress_check(&req);
        // The two checks may straddle a second boundary of the TTL left.
        let strip = |d: IngressDecision| match d {
            IngressDecision::Deny {
                status_code,
                message,
                reason,
                retry_after,
            } => (
                Some((status_code, message, reason)),
                retry_after.map(|s| s >= 299),
            ),
            IngressDecision::Allow => (None, None),
        };
        assert_eq!(strip(a.clone()), strip(s), "{req:?}");
        if req.peer_addr == "198.51.100.21" {
            assert!(
                matches!(
                    a,
                    IngressDecision::Deny {
                        retry_after: Some(299..=300),
                        ..
                    }
                ),
                "{a:?}"
            );
        }
    }
}

/// A redis-server this test owns, on a free loopback port; resumed
/// (SIGCONT) and killed when dropped, whatever happened.
struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed to run this test (apt-get install redis-server)",
            );
        let r = PrivateRedis { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 7];
                if c.write_all(b"PING\r\n").is_ok()
                    && c.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return r;
                }
            }
            assert!(
                Instant::now() < deadline,
                "private redis-server did not come up on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "kill -{sig} failed");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);
const MARGIN: Duration = Duration::from_millis(250);

fn is_blocked(d: &IngressDecision) -> bool {
    matches!(
        d,
        IngressDecision::Deny {
            reason: DenyReason::Blocked { .. },
            ..
        }
    )
}

// One executor thread: a check that blocked it would stop the ticker.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn frozen_redis_each_check_within_the_command_timeout_per_fail_mode_then_fast_then_recovery()
{
    let server = PrivateRedis::start();
    let toml = format!(
        r#"
enabled = true
redis_url = "redis://127.0.0.1:{}"
key_prefix = "{}"
fail_closed_paths = ["^/admin"]
connect_timeout_ms = 300
command_timeout_ms = 300
[[rules]]
builtin = "login_throttle"
threshold = 1000
"#,
        server.port,
        unique("frozen")
    );
    let out = SharedBuf::default();
    let rt = Arc::new(
        Runtime::builder(Config::from_toml_str(&toml).expect("config"))
            .sink(Sink::Writer(Box::new(out.clone())))
            .build()
            .expect("runtime"),
    );
    rt.block(&ManualBlock {
        scope_type: "ip".into(),
        value: "203.0.113.80".into(),
        ttl: Some(600),
        reason: "test".into(),
        ..ManualBlock::default()
    })
    .expect("block");
    assert_eq!(rt.stores_ready_async().await, Ok(()));
    let blocked = RequestView::new("GET", "/", "203.0.113.80").into_owned();
    assert!(is_blocked(&rt.ingress_check_async(&blocked).await));
    // The ingress rule pass (Redis counters) runs on the blocking pool.
    assert!(rt
        .ingress_check_async(&RequestView::new("POST", "/login", "203.0.113.81"))
        .await
        .is_allow());

    let ticks = Arc::new(AtomicU64::new(0));
    let max_gap = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (t, g, s) = (ticks.clone(), max_gap.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !s.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                g.fetch_max(last.elapsed().as_millis() as u64, Ordering::Relaxed);
                t.fetch_add(1, Ordering::Relaxed);
                last = Instant::now();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    max_gap.store(0, Ordering::Relaxed);
    server.signal("STOP");
    out.clear();

    let paths = ["/shop", "/admin/users", "/login", "/"];
    let mut tasks = Vec::new();
    for i in 0..12 {
        let rt = Arc::clone(&rt);
        let path = paths[i % paths.len()];
        let ip = if path == "/" {
            "203.0.113.80"
        } else {
            "198.51.100.30"
        };
        tasks.push(tokio::spawn(async move {
            let req = RequestView::new(if path == "/login" { "POST" } else { "GET" }, path, ip);
            let t = Instant::now();
            let d = rt.ingress_check_async(&req).await;
            (path, d, t.elapsed())
        }));
    }
    for task in tasks {
        let (path, d, took) = task.await.expect("task");
        assert!(took <= COMMAND_TIMEOUT + MARGIN, "{path}: took {took:?}");
        if path.starts_with("/admin") {
            assert!(
                matches!(
                    d,
                    IngressDecision::Deny {
                        reason: DenyReason::FailClosed,
                        retry_after: None,
                        ..
                    }
                ),
                "{path}: {d:?}"
            );
        } else {
            // Fail open, even for the blocked address: the store cannot say.
            assert!(d.is_allow(), "{path}: {d:?}");
        }
    }
    assert!(
        rt.stores_ready_async().await.is_err(),
        "not ready while frozen"
    );
    // Failing fast now: no check waits.
    for i in 0..40 {
        let path = paths[i % paths.len()];
        let t = Instant::now();
        let d = rt
            .ingress_check_async(&RequestView::new("GET", path, "198.51.100.31"))
            .await;
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{path}: {:?}",
            t.elapsed()
        );
        assert_eq!(d.is_allow(), !path.starts_with("/admin"), "{path}: {d:?}");
    }
    let failed = out.of("audit.enforcement.evaluation_failed");
    assert!(!failed.is_empty());
    assert!(failed
        .iter()
        .any(|f| f["attributes"]["enforcement.fail_mode"] == "closed"));
    assert!(failed
        .iter()
        .any(|f| f["attributes"]["enforcement.fail_mode"] == "open"));
    stop.store(true, Ordering::Relaxed);
    let _ = ticker.await;
    let gap = max_gap.load(Ordering::Relaxed);
    assert!(
        ticks.load(Ordering::Relaxed) >= 20,
        "the executor kept running tasks"
    );
    // A blocked executor would stall at least one command timeout (300 ms).
    assert!(gap < 250, "executor stalled for {gap} ms");

    server.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let d = rt.ingress_check_async(&blocked).await;
        if is_blocked(&d) {
            assert!(matches!(
                d,
                IngressDecision::Deny {
                    retry_after: Some(1..=600),
                    ..
                }
            ));
            assert_eq!(rt.stores_ready_async().await, Ok(()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery after SIGCONT: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An egress rule that takes its time (to fill the queue).
struct Slow(Duration);

impl Rule for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn severity(&self) -> u8 {
        1
    }
    fn evaluate(&self, _: &AuditEvent, _: &RuleContext<'_>) -> Result<Option<Match>, RuleError> {
        std::thread::sleep(self.0);
        Ok(None)
    }
}

fn slow_runtime(each: Duration) -> Arc<Runtime> {
    let h = Harness::with("enabled = true", |b| b.rule(Arc::new(Slow(each))));
    Arc::new(h.rt)
}

#[test]
fn egress_queue_refuses_when_full_and_shutdown_drains_every_accepted_event() {
    let rt = slow_runtime(Duration::from_millis(20));
    let queue = EgressQueue::new(rt, 4, 1);
    let handle = queue.clone();
    let mut refused = 0;
    let t = Instant::now();
    for i in 0..20 {
        match handle.try_submit(fail_login(&format!("192.0.2.{i}"))) {
            Ok(()) => {}
            Err(QueueFull) => refused += 1,
        }
    }
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "try_submit never waits"
    );
    assert!(
        refused >= 20 - 4 - 1,
        "at most capacity + the one in a worker: {refused}"
    );
    assert!(queue.depth() <= 4);
    let s = queue.stats();
    assert_eq!(s.accepted + s.dropped, 20);
    assert_eq!(s.dropped, refused);

    assert_eq!(queue.shutdown(Duration::from_secs(10)), 0, "nothing lost");
    let s = queue.stats();
    assert_eq!(s.processed, s.accepted);
    assert_eq!(queue.depth(), 0);
    assert_eq!(queue.try_submit(fail_login("192.0.2.99")), Err(QueueFull));
    assert_eq!(queue.stats().dropped, refused + 1);
}

#[test]
fn egress_queue_shutdown_reports_what_its_deadline_left_behind() {
    let rt = slow_runtime(Duration::from_millis(100));
    let queue = EgressQueue::new(rt, 50, 1);
    for i in 0..10 {
        queue
            .try_submit(fail_login(&format!("192.0.2.{i}")))
            .expect("room");
    }
    let left = queue.shutdown(Duration::from_millis(150));
    let s = queue.stats();
    assert!(left >= 5, "{left} left");
    assert_eq!(s.processed + left as u64, 10, "{s:?}");
    // Shutting down again waits for the rest.
    assert_eq!(queue.shutdown(Duration::from_secs(10)), 0);
    assert_eq!(queue.stats().processed, 10);
}

#[test]
fn egress_queue_workers_are_named_std_threads() {
    let names = Arc::new(std::sync::Mutex::new(Vec::new()));
    struct Name(Arc<std::sync::Mutex<Vec<String>>>);
    impl Rule for Name {
        fn name(&self) -> &str {
            "name"
        }
        fn severity(&self) -> u8 {
            1
        }
        fn evaluate(
            &self,
            _: &AuditEvent,
            _: &RuleContext<'_>,
        ) -> Result<Option<Match>, RuleError> {
            let n = std::thread::current().name().unwrap_or("").to_string();
            self.0
                .lock()
                .map_err(|_| RuleError::Failed("poisoned".into()))?
                .push(n);
            Ok(None)
        }
    }
    let h = Harness::with("enabled = true", |b| b.rule(Arc::new(Name(names.clone()))));
    let queue = EgressQueue::new(Arc::new(h.rt), 10, 2);
    for i in 0..6 {
        queue
            .try_submit(fail_login(&format!("192.0.2.{i}")))
            .expect("room");
    }
    assert_eq!(queue.shutdown(Duration::from_secs(10)), 0);
    let names = names.lock().expect("names");
    assert_eq!(names.len(), 6);
    assert!(
        names.iter().all(|n| n.starts_with("sec-audit-egress-")),
        "{names:?}"
    );
}

/// Records the threads a store is called on, delegating to a real store.
struct Threads {
    seen: std::sync::Mutex<Vec<std::thread::ThreadId>>,
}

impl Threads {
    fn note(&self) {
        if let Ok(mut s) = self.seen.lock() {
            s.push(std::thread::current().id());
        }
    }
    fn seen(&self) -> Vec<std::thread::ThreadId> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

struct SeenCounters(sec_audit_store::RedisCounters, Arc<Threads>);

impl sec_audit_rules::Counters for SeenCounters {
    fn incr(&self, key: &str, amount: i64, ttl: Option<u64>) -> i64 {
        self.1.note();
        self.0.incr(key, amount, ttl)
    }
    fn get_int(&self, key: &str, default: i64) -> i64 {
        self.1.note();
        self.0.get_int(key, default)
    }
    fn set(&self, key: &str, value: i64, ttl: Option<u64>) {
        self.1.note();
        self.0.set(key, value, ttl)
    }
    fn delete(&self, key: &str) {
        self.1.note();
        self.0.delete(key)
    }
    fn expire(&self, key: &str, ttl: u64) {
        self.1.note();
        self.0.expire(key, ttl)
    }
}

struct SeenHistory(sec_audit_store::RedisHistory, Arc<Threads>);

impl sec_audit_rules::HistoryStore for SeenHistory {
    fn append(
        &self,
        keys: &[sec_audit_rules::ScopeKey],
        recorded_at: f64,
        row: sec_audit_rules::HistoryRow,
        retention: &sec_audit_rules::HistoryRetention,
    ) {
        self.1.note();
        self.0.append(keys, recorded_at, row, retention)
    }
    fn query(
        &self,
        key: &sec_audit_rules::ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
    ) -> Vec<sec_audit_rules::HistoryRow> {
        self.1.note();
        self.0.query(key, since, event_types, limit)
    }
}

/// Explicit stores: blocks in memory, counters and history in (real)
/// Redis. The async check must still run the rule pass off the executor:
/// on a current-thread runtime, no Redis state call may run on the thread
/// that drives it.
#[test]
fn the_rule_pass_leaves_the_executor_when_counters_or_history_do_io() {
    let prefix = unique("pass_offload");
    let pool = sec_audit_store::RedisPool::new(
        &sec_audit_store::RedisConfig::new(redis_url()).with_key_prefix(&prefix),
    )
    .expect("valid redis config");
    let threads = Arc::new(Threads {
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let clock = Arc::new(sec_audit_core::ManualClock::at_secs(common::T0));
    let stores = sec_audit_enforce::Stores {
        counters: Arc::new(SeenCounters(
            sec_audit_store::RedisCounters::new(&pool).with_clock(clock.clone()),
            Arc::clone(&threads),
        )),
        history: Arc::new(SeenHistory(
            sec_audit_store::RedisHistory::new(&pool),
            Arc::clone(&threads),
        )),
        blocks: Arc::new(sec_audit_store::MemoryBlockStore::new(clock.clone())),
    };
    let rt = Runtime::builder(Config::from_toml_str(RULES).expect("config"))
        .clock(clock)
        .sink(Sink::Writer(Box::new(SharedBuf::default())))
        .stores(stores)
        .build()
        .expect("runtime");
    let exec = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let driver = std::thread::current().id();
    for _ in 0..4 {
        let d = exec.block_on(rt.ingress_check_async(&RequestView::new(
            "POST",
            "/login",
            "192.0.2.77",
        )));
        assert!(matches!(
            d,
            IngressDecision::Allow | IngressDecision::Deny { .. }
        ));
    }
    let seen = threads.seen();
    assert!(!seen.is_empty(), "the rule pass used the Redis state");
    assert!(
        seen.iter().all(|t| *t != driver),
        "{} of {} Redis state calls ran on the executor thread",
        seen.iter().filter(|t| **t == driver).count(),
        seen.len()
    );
    // The test's keys (under its own prefix) all carry TTLs.
}

/// An egress rule that counts the events it saw, taking its time.
struct Counting(Duration, Arc<AtomicU64>);

impl Rule for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn severity(&self) -> u8 {
        1
    }
    fn evaluate(&self, _: &AuditEvent, _: &RuleContext<'_>) -> Result<Option<Match>, RuleError> {
        std::thread::sleep(self.0);
        self.1.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }
}

/// Dropping the last handle without `shutdown` drains the queue within the
/// drop deadline (2 s): every event queued is through egress when the drop
/// returns; a queue too deep for the deadline costs the drop at most it.
#[test]
fn dropping_the_last_egress_queue_handle_drains_within_a_bounded_time() {
    let seen = Arc::new(AtomicU64::new(0));
    let h = Harness::with("enabled = true", |b| {
        b.rule(Arc::new(Counting(
            Duration::from_millis(20),
            Arc::clone(&seen),
        )))
    });
    let queue = EgressQueue::new(Arc::new(h.rt), 50, 1);
    let second = queue.clone();
    for i in 0..10 {
        queue
            .try_submit(fail_login(&format!("192.0.2.{i}")))
            .expect("room");
    }
    drop(second);
    assert!(
        seen.load(Ordering::Relaxed) < 10,
        "a clone's drop does not wait"
    );
    drop(queue);
    assert_eq!(
        seen.load(Ordering::Relaxed),
        10,
        "drained before the drop returned"
    );

    // Too deep for the deadline: the drop returns after about 2 s.
    let seen = Arc::new(AtomicU64::new(0));
    let h = Harness::with("enabled = true", |b| {
        b.rule(Arc::new(Counting(
            Duration::from_millis(300),
            Arc::clone(&seen),
        )))
    });
    let queue = EgressQueue::new(Arc::new(h.rt), 50, 1);
    for i in 0..20 {
        queue
            .try_submit(fail_login(&format!("192.0.2.{i}")))
            .expect("room");
    }
    let t = Instant::now();
    drop(queue);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(seen.load(Ordering::Relaxed) < 20);
}
