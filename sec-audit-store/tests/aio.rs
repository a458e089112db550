//! The async lookups (feature `async`) against real Redis and Postgres: they
//! agree with the sync stores on the same keys, cost the same round trip,
//! and a frozen or dead Redis never stalls the executor.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{clock, new_block, PrivateRedis, TestRedis, TestSchema};
use sec_audit_core::ScopeKey;
use sec_audit_store::aio::{
    AsyncBlockStore, AsyncRedis, AsyncRedisBlockStore, AsyncTieredBlockStore, BlockingPool,
};
use sec_audit_store::{
    BlockStore, PostgresBlockStore, RedisBlockStore, RedisConfig, StoreError, TieredBlockStore,
    TieredOptions,
};

fn scopes(ip: &str, user: &str) -> Vec<ScopeKey> {
    vec![ScopeKey::new("ip", ip), ScopeKey::new("user", user)]
}

struct Tiered {
    sync: Arc<TieredBlockStore>,
    lookup: AsyncTieredBlockStore,
    redis: TestRedis,
    _schema: TestSchema,
}

fn tiered(test: &str) -> Tiered {
    let redis = TestRedis::new(test);
    let schema = TestSchema::new(test);
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("valid config");
    pg.run_migrations().expect("migrations");
    let sync = Arc::new(TieredBlockStore::new(
        &redis.pool,
        pg,
        clock(),
        TieredOptions::default(),
    ));
    let conn = AsyncRedis::new(&redis.config()).expect("config");
    let lookup = AsyncTieredBlockStore::new(
        &conn,
        Arc::clone(&sync),
        BlockingPool::new(4, Duration::from_secs(5)),
    );
    Tiered {
        sync,
        lookup,
        redis,
        _schema: schema,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_only_async_lookup_agrees_with_the_sync_store_in_one_round_trip() {
    let r = TestRedis::new("aio_redis_agree");
    let sync = RedisBlockStore::new(&r.pool, clock(), 3600);
    let conn = AsyncRedis::new(&r.config()).expect("config");
    let lookup = AsyncRedisBlockStore::new(&conn, sync.clone());
    sync.block(&new_block("ip", "192.0.2.10", Some(120)))
        .expect("temp");
    sync.block(&new_block("user", "mallory", None))
        .expect("permanent");
    r.cmd::<()>(
        redis::cmd("SET")
            .arg(r.key("block:user:garbled"))
            .arg("{not json")
            .arg("EX")
            .arg(60),
    );
    let cases = [
        scopes("192.0.2.1", "alice"),    // clean
        scopes("192.0.2.10", "alice"),   // temp on ip
        scopes("192.0.2.1", "mallory"),  // permanent on user
        scopes("192.0.2.10", "mallory"), // both: candidate order decides
        scopes("192.0.2.1", "garbled"),  // unreadable entry = absent
        vec![],                          // nothing to look up
    ];
    for case in &cases {
        let before = lookup.stats();
        let a = lookup.first_active(case).await;
        let s = sync.first_active(case);
        assert_eq!(a, s, "{case:?}");
        let trips = lookup.stats().since(&before).redis_round_trips;
        assert_eq!(trips, u64::from(!case.is_empty()), "{case:?}");
    }
    let temp = lookup
        .first_active(&cases[1])
        .await
        .expect("ok")
        .expect("blocked");
    assert_eq!(temp.scope_value, "192.0.2.10");
    assert!(temp.expires_at.is_some());
    // Through the trait object too.
    let dynamic: &dyn AsyncBlockStore = &lookup;
    assert_eq!(
        dynamic
            .first_active(&cases[2])
            .await
            .expect("ok")
            .map(|e| e.scope_value),
        Some("mallory".to_string())
    );
    assert!(conn.ping().await.is_ok());
    r.assert_all_keys_have_ttl();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_async_lookup_agrees_with_the_sync_store_clean_temp_permanent_evicted_cold() {
    let t = tiered("aio_tiered_agree");
    t.sync
        .block(&new_block("ip", "198.51.100.5", Some(300)))
        .expect("temp");
    t.sync
        .block(&new_block("user", "eve", None))
        .expect("permanent");
    t.sync.rebuild_mirror().expect("warm mirror");

    // Clean: one round trip, no Postgres query.
    let clean = scopes("198.51.100.1", "alice");
    let before = t.lookup.stats();
    assert_eq!(t.lookup.first_active(&clean).await, Ok(None));
    let cost = t.lookup.stats().since(&before);
    assert_eq!((cost.redis_round_trips, cost.postgres_queries), (1, 0));
    assert_eq!(t.sync.first_active(&clean), Ok(None));

    for case in [
        scopes("198.51.100.5", "alice"),
        scopes("198.51.100.1", "eve"),
        scopes("198.51.100.5", "eve"),
    ] {
        let a = t.lookup.first_active(&case).await.expect("async");
        assert!(a.is_some(), "{case:?}");
        assert_eq!(Ok(a), t.sync.first_active(&case), "{case:?}");
    }

    // Evicted cached entry of a permanent ban: Postgres decides (on the
    // blocking pool) and the cache is refilled.
    let eve = ScopeKey::new("user", "eve");
    let cache_key = t.sync.redis().block_key(&eve);
    t.redis.cmd::<i64>(redis::cmd("DEL").arg(&cache_key));
    let case = scopes("198.51.100.1", "eve");
    let before = t.lookup.stats();
    let found = t.lookup.first_active(&case).await.expect("async");
    assert_eq!(found.as_ref().map(|e| e.scope_value.as_str()), Some("eve"));
    assert!(t.lookup.stats().since(&before).postgres_queries >= 1);
    assert_eq!(
        t.redis.cmd::<i64>(redis::cmd("EXISTS").arg(&cache_key)),
        1,
        "re-cached"
    );
    assert_eq!(Ok(found), t.sync.first_active(&case));

    // Cold mirror (lost, e.g. evicted): answered from Postgres; the mirror
    // is rebuilt detached from the request.
    t.redis
        .cmd::<i64>(redis::cmd("DEL").arg(t.sync.mirror_key()));
    t.redis.cmd::<i64>(redis::cmd("DEL").arg(&cache_key));
    let found = t.lookup.first_active(&case).await.expect("async, cold");
    assert_eq!(found.as_ref().map(|e| e.scope_value.as_str()), Some("eve"));
    let waited = Instant::now();
    while t.redis.cmd::<i64>(
        redis::cmd("SISMEMBER")
            .arg(t.sync.mirror_key())
            .arg("#warm"),
    ) != 1
    {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the mirror was not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        t.redis.cmd::<i64>(
            redis::cmd("SISMEMBER")
                .arg(t.sync.mirror_key())
                .arg("user:eve")
        ),
        1,
        "the rebuilt mirror holds the ban"
    );
    assert_eq!(Ok(found), t.sync.first_active(&case));
    assert_eq!(t.lookup.first_active(&clean).await, Ok(None));
    t.redis.assert_all_keys_have_ttl();
}

/// Resumes (SIGCONT) the server when dropped, so a failing assertion never
/// leaves it stopped; `PrivateRedis` then kills it.
struct Resume<'a>(&'a PrivateRedis);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.signal("CONT");
    }
}

/// A task ticking every 5 ms, recording the longest gap between its ticks:
/// if anything blocked the executor, the gap would show it.
struct Ticker {
    ticks: Arc<AtomicU64>,
    max_gap_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start() -> Ticker {
        let ticks = Arc::new(AtomicU64::new(0));
        let max_gap_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, g, s) = (ticks.clone(), max_gap_ms.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !s.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let gap = last.elapsed().as_millis() as u64;
                g.fetch_max(gap, Ordering::Relaxed);
                t.fetch_add(1, Ordering::Relaxed);
                last = Instant::now();
            }
        });
        Ticker {
            ticks,
            max_gap_ms,
            stop,
        }
    }
    fn reset_gap(&self) {
        self.max_gap_ms.store(0, Ordering::Relaxed);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

const COMMAND_TIMEOUT: Duration = Duration::from_millis(300);
/// Slack for a busy 2-core machine.
const MARGIN: Duration = Duration::from_millis(250);

fn outage_config(url: &str) -> RedisConfig {
    TestRedis::config_for(url, "t:aio:outage")
        .with_command_timeout(COMMAND_TIMEOUT)
        .with_connect_timeout(COMMAND_TIMEOUT)
        .with_failure_backoff(Duration::from_millis(1000))
}

async fn until_ok(
    store: &AsyncRedisBlockStore,
    case: &[ScopeKey],
    limit: Duration,
) -> Option<sec_audit_store::BlockEntry> {
    let start = Instant::now();
    loop {
        match store.first_active(case).await {
            Ok(found) => return found,
            Err(e) => assert!(start.elapsed() < limit, "not back within {limit:?}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// One executor thread: any blocking call on it would stop the ticker.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_frozen_redis_costs_each_lookup_at_most_the_command_timeout_then_fails_fast_without_stalling_the_executor(
) {
    let server = PrivateRedis::start();
    let config = outage_config(&server.url());
    let sync_pool = sec_audit_store::RedisPool::new(&config).expect("config");
    let sync = RedisBlockStore::new(&sync_pool, clock(), 3600);
    let conn = AsyncRedis::new(&config).expect("config");
    let store = Arc::new(AsyncRedisBlockStore::new(&conn, sync.clone()));
    sync.block(&new_block("ip", "203.0.113.50", Some(600)))
        .expect("block");
    let case = scopes("203.0.113.50", "u");
    assert!(store.first_active(&case).await.expect("healthy").is_some());

    let ticker = Ticker::start();
    tokio::time::sleep(Duration::from_millis(50)).await;
    ticker.reset_gap();
    let ticks_before = ticker.ticks.load(Ordering::Relaxed);
    server.signal("STOP");
    let resume = Resume(&server);

    // 16 lookups at once on the frozen server: each ends within the
    // command timeout (plus slack), with an error — never "not blocked".
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        let case = case.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = store.first_active(&case).await;
            (r, t.elapsed())
        }));
    }
    for task in tasks {
        let (r, took) = task.await.expect("task");
        let err = r.expect_err("a frozen server cannot answer");
        assert!(
            matches!(err, StoreError::Timeout(_) | StoreError::Redis(_)),
            "{err:?}"
        );
        assert!(took <= COMMAND_TIMEOUT + MARGIN, "took {took:?}");
    }
    // Then the breaker is open: later lookups fail at once.
    for _ in 0..50 {
        let t = Instant::now();
        assert!(store.first_active(&case).await.is_err());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }
    // The executor thread kept running other tasks all along.
    let ticks = ticker.ticks.load(Ordering::Relaxed) - ticks_before;
    let gap = ticker.max_gap_ms.load(Ordering::Relaxed);
    assert!(ticks >= 20, "ticker made {ticks} ticks during the outage");
    // A blocked executor would stall at least one command timeout (300 ms).
    assert!(gap < 250, "executor stalled for {gap} ms");
    assert!(conn.is_failing_fast());

    drop(resume); // SIGCONT
    let found = until_ok(&store, &case, Duration::from_secs(5)).await;
    assert_eq!(found.map(|e| e.scope_value), Some("203.0.113.50".into()));
    assert!(!conn.is_failing_fast());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_killed_redis_fails_fast_and_a_restarted_one_is_used_again() {
    let mut server = PrivateRedis::start();
    let config = outage_config(&server.url());
    let sync_pool = sec_audit_store::RedisPool::new(&config).expect("config");
    let sync = RedisBlockStore::new(&sync_pool, clock(), 3600);
    let conn = AsyncRedis::new(&config).expect("config");
    let store = AsyncRedisBlockStore::new(&conn, sync.clone());
    let case = scopes("203.0.113.60", "u");
    assert_eq!(store.first_active(&case).await, Ok(None));

    server.kill();
    let t = Instant::now();
    assert!(store.first_active(&case).await.is_err(), "dead server");
    assert!(t.elapsed() <= COMMAND_TIMEOUT + MARGIN, "{:?}", t.elapsed());
    for _ in 0..20 {
        let t = Instant::now();
        assert!(store.first_active(&case).await.is_err());
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }

    server.restart();
    sync.block(&new_block("ip", "203.0.113.60", Some(600)))
        .expect("block on the restarted server");
    let found = until_ok(&store, &case, Duration::from_secs(5)).await;
    assert_eq!(found.map(|e| e.scope_value), Some("203.0.113.60".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_restart_between_two_lookups_costs_no_failed_lookup() {
    let mut server = PrivateRedis::start();
    let config = outage_config(&server.url()).with_failure_backoff(Duration::from_secs(5));
    let sync_pool = sec_audit_store::RedisPool::new(&config).expect("config");
    let conn = AsyncRedis::new(&config).expect("config");
    let store = AsyncRedisBlockStore::new(&conn, RedisBlockStore::new(&sync_pool, clock(), 60));
    let case = scopes("203.0.113.70", "u");
    assert_eq!(store.first_active(&case).await, Ok(None));
    server.kill();
    server.restart();
    // The old connection is dead; the lookup reconnects and retries once.
    assert_eq!(store.first_active(&case).await, Ok(None));
    assert!(!conn.is_failing_fast());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn tiered_lookup_that_needs_an_unreachable_postgres_is_an_error_never_not_blocked() {
    let redis = TestRedis::new("aio_tiered_pg_down");
    let url = format!("postgres://postgres@127.0.0.1:{}/test", common::free_port());
    let pg = PostgresBlockStore::new(&sec_audit_store::PostgresConfig::new(url), clock())
        .expect("valid config");
    let sync = Arc::new(TieredBlockStore::new(
        &redis.pool,
        pg,
        clock(),
        TieredOptions::default(),
    ));
    // A warm mirror (and range index) that lists a ban whose cached entry
    // is gone.
    redis.cmd::<i64>(
        redis::cmd("SADD")
            .arg(sync.mirror_key())
            .arg("#warm")
            .arg("user:eve"),
    );
    redis.cmd::<i64>(redis::cmd("EXPIRE").arg(sync.mirror_key()).arg(60));
    let index = sync.redis().range_index_key();
    redis.cmd::<i64>(redis::cmd("ZADD").arg(&index).arg("inf").arg("#warm"));
    redis.cmd::<i64>(redis::cmd("EXPIRE").arg(&index).arg(60));
    let conn = AsyncRedis::new(&redis.config()).expect("config");
    let lookup = AsyncTieredBlockStore::new(
        &conn,
        Arc::clone(&sync),
        BlockingPool::new(2, Duration::from_secs(5)),
    );
    let t = Instant::now();
    let r = lookup.first_active(&scopes("198.51.100.9", "eve")).await;
    assert!(
        matches!(r, Err(StoreError::Postgres(_) | StoreError::Timeout(_))),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // A clean request still needs no Postgres: answered from Redis alone.
    assert_eq!(
        lookup.first_active(&scopes("198.51.100.9", "bob")).await,
        Ok(None)
    );
}

/// A tiered store whose Postgres is a closed loopback port (every query
/// fails at once), plus its async lookup over a blocking pool of one.
fn tiered_without_postgres(
    test: &str,
    pool: BlockingPool,
) -> (TestRedis, Arc<TieredBlockStore>, AsyncTieredBlockStore) {
    let redis = TestRedis::new(test);
    let port = common::free_port();
    let pg = PostgresBlockStore::new(
        &sec_audit_store::PostgresConfig::new(format!("postgres://postgres@127.0.0.1:{port}/test"))
            .with_connect_timeout(Duration::from_millis(300))
            .with_failure_backoff(Duration::ZERO),
        clock(),
    )
    .expect("valid config");
    let sync = Arc::new(TieredBlockStore::new(
        &redis.pool,
        pg,
        clock(),
        TieredOptions::default(),
    ));
    let conn = AsyncRedis::new(&redis.config()).expect("config");
    let lookup = AsyncTieredBlockStore::new(&conn, Arc::clone(&sync), pool);
    (redis, sync, lookup)
}

/// Holds the only permit of a pool of one until dropped.
struct Busy(Arc<AtomicBool>);

impl Busy {
    async fn occupy(pool: &BlockingPool) -> Busy {
        let release = Arc::new(AtomicBool::new(false));
        let r = Arc::clone(&release);
        let p = pool.clone();
        tokio::spawn(async move {
            let _ = p
                .run(move || {
                    let t = Instant::now();
                    while !r.load(Ordering::Acquire) && t.elapsed() < Duration::from_secs(20) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
                .await;
        });
        let t = Instant::now();
        while pool.busy() < pool.size() {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the pool was not occupied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Busy(release)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Cold mirror, the blocking pool unavailable (full): a first candidate
/// with an active cached entry is answered without the pool; a later
/// candidate's active cached entry answers when the pool times out;
/// nothing cached: the timeout is the answer (fail mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_mirror_is_answered_by_cached_entries_when_the_blocking_pool_cannot() {
    let pool = BlockingPool::new(1, Duration::from_millis(200));
    let (redis, sync, lookup) = tiered_without_postgres("aio_cold_cached", pool.clone());
    sync.block(&new_block("user", "carol", Some(300)))
        .expect("temp block, redis only");
    // The mirror is cold: it was never built.
    assert_eq!(
        redis.cmd::<i64>(redis::cmd("EXISTS").arg(sync.mirror_key())),
        0
    );
    let busy = Busy::occupy(&pool).await;

    // The first candidate is cached: no Postgres, no pool.
    let first = vec![
        ScopeKey::new("user", "carol"),
        ScopeKey::new("ip", "192.0.2.7"),
    ];
    let found = lookup
        .first_active(&first)
        .await
        .expect("answered from the cache");
    assert_eq!(found.map(|e| e.scope_value), Some("carol".to_string()));

    // A later candidate is cached: Postgres would be asked about the first
    // one, the pool times out, the cached ban answers.
    let later = vec![
        ScopeKey::new("ip", "192.0.2.7"),
        ScopeKey::new("user", "carol"),
    ];
    let t = Instant::now();
    let found = lookup
        .first_active(&later)
        .await
        .expect("the cached ban answers");
    assert_eq!(found.map(|e| e.scope_value), Some("carol".to_string()));
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // Nothing cached: the timeout is returned (the caller's fail mode).
    let none = vec![
        ScopeKey::new("ip", "192.0.2.7"),
        ScopeKey::new("user", "dave"),
    ];
    let err = lookup
        .first_active(&none)
        .await
        .expect_err("nothing proves a ban");
    assert!(matches!(err, StoreError::Timeout(_)), "{err:?}");
    drop(busy);
    redis.assert_all_keys_have_ttl();
}

/// Postgres failing in the walk (warm mirror, a member without cached
/// entry; cold mirror): a later candidate's active cached entry answers,
/// sync and async alike; with none, the Postgres error is returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_error_never_hides_a_later_cached_ban() {
    let pool = BlockingPool::new(2, Duration::from_secs(5));
    let (redis, sync, lookup) = tiered_without_postgres("aio_pg_error", pool);
    sync.block(&new_block("user", "carol", Some(300)))
        .expect("temp block, redis only");
    // A warm mirror naming a banned ip whose cached entry is gone.
    redis.cmd::<i64>(
        redis::cmd("SADD")
            .arg(sync.mirror_key())
            .arg("#warm")
            .arg("ip:192.0.2.9"),
    );
    redis.cmd::<i64>(redis::cmd("EXPIRE").arg(sync.mirror_key()).arg(600));
    let case = vec![
        ScopeKey::new("ip", "192.0.2.9"),
        ScopeKey::new("user", "carol"),
    ];
    let alone = vec![
        ScopeKey::new("ip", "192.0.2.9"),
        ScopeKey::new("user", "dave"),
    ];
    for warm in [true, false] {
        if !warm {
            redis.cmd::<i64>(redis::cmd("DEL").arg(sync.mirror_key()));
        }
        let s = sync
            .first_active(&case)
            .expect("sync: the cached ban answers");
        assert_eq!(
            s.map(|e| e.scope_value),
            Some("carol".to_string()),
            "warm {warm}"
        );
        let a = lookup
            .first_active(&case)
            .await
            .expect("async: the cached ban answers");
        assert_eq!(
            a.map(|e| e.scope_value),
            Some("carol".to_string()),
            "warm {warm}"
        );
        let err = sync
            .first_active(&alone)
            .expect_err("sync: nothing proves a ban");
        assert!(
            matches!(
                err,
                StoreError::Postgres(_) | StoreError::Pool(_) | StoreError::Timeout(_)
            ),
            "{err:?}"
        );
        let err = lookup
            .first_active(&alone)
            .await
            .expect_err("async: nothing proves a ban");
        assert!(
            matches!(
                err,
                StoreError::Postgres(_) | StoreError::Pool(_) | StoreError::Timeout(_)
            ),
            "{err:?}"
        );
    }
    redis.assert_all_keys_have_ttl();
}
