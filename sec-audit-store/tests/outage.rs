//! Outages: closed ports, and servers this test starts, kills and restarts.
//! Block-store calls fail with a distinct error, quickly; detection state
//! degrades; stores reconnect when the server is back.

mod common;

use std::time::{Duration, Instant};

use common::{
    clock, free_port, new_block, scan_all, timed, PrivatePostgres, PrivateRedis, TestRedis,
    TestSchema,
};
use sec_audit_core::{Counters, HistoryRetention, HistoryStore, ScopeKey};
use sec_audit_store::{
    BlockStore, PostgresBlockStore, PostgresConfig, RedisBlockStore, RedisCounters, RedisHistory,
    RedisPool, StoreError, TieredBlockStore, TieredOptions, WARM_MEMBER,
};
use serde_json::Map;

const FAST: Duration = Duration::from_secs(2);

fn closed_redis_pool() -> RedisPool {
    let url = format!("redis://127.0.0.1:{}", free_port());
    RedisPool::new(&TestRedis::config_for(&url, "t:outage")).expect("config")
}

fn pg_config(url: &str) -> PostgresConfig {
    PostgresConfig::new(url)
        .with_connect_timeout(Duration::from_secs(1))
        .with_statement_timeout(Duration::from_secs(2))
}

fn is_redis_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Redis(_) | StoreError::Timeout(_)) || e.to_string().contains("redis")
}

fn is_postgres_error(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(_) | StoreError::Timeout(_))
        || e.to_string().contains("postgres")
}

/// Retries `f` until it succeeds or `limit` passes; returns how long it took.
fn until_ok<T>(limit: Duration, mut f: impl FnMut() -> Result<T, StoreError>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return (v, start.elapsed()),
            Err(e) => {
                assert!(start.elapsed() < limit, "no recovery within {limit:?}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn closed_redis_port_block_store_errors_fast_and_detection_state_degrades() {
    let pool = closed_redis_pool();
    let store = RedisBlockStore::new(&pool, clock(), 3600);
    let (r, took) = timed(|| store.first_active(&[ScopeKey::new("ip", "1.1.1.1")]));
    let err = r.expect_err("lookup must fail");
    assert!(
        matches!(err, StoreError::Redis(_)),
        "a redis error: {err:?}"
    );
    assert_eq!(err.kind(), "redis_error");
    assert!(took < FAST, "{took:?}");
    // Inside the back-off window the next calls fail at once.
    let (r, took) = timed(|| store.block(&new_block("ip", "1.1.1.1", Some(60))));
    assert!(matches!(r, Err(StoreError::Redis(_))), "{r:?}");
    assert!(took < Duration::from_millis(100), "fail fast: {took:?}");

    let counters = RedisCounters::new(&pool);
    let history = RedisHistory::new(&pool);
    let (v, took) = timed(|| counters.incr("k", 5, Some(60)));
    assert_eq!(v, 5, "incr degrades to amount");
    assert!(took < FAST);
    assert_eq!(counters.get_int("k", 11), 11);
    counters.set("k", 1, Some(5));
    counters.delete("k");
    counters.expire("k", 5);
    let key = ScopeKey::new("ip", "1.1.1.1");
    history.append(
        std::slice::from_ref(&key),
        1.0,
        std::sync::Arc::new(Map::new().into()),
        &HistoryRetention::default(),
    );
    assert!(history.query(&key, 0.0, None, 10).is_empty());

    // Past the back-off the pool tries again, still bounded by the timeout.
    std::thread::sleep(Duration::from_millis(1100));
    let (r, took) = timed(|| store.get_active(&key));
    assert!(matches!(r, Err(StoreError::Redis(_))), "{r:?}");
    assert!(took < FAST, "{took:?}");
}

#[test]
fn closed_postgres_port_errors_fast_and_is_distinct_from_redis() {
    let url = format!("postgres://postgres@127.0.0.1:{}/none", free_port());
    let pg = PostgresBlockStore::new(&pg_config(&url), clock()).expect("config");
    let (r, took) = timed(|| pg.get_active(&ScopeKey::new("user", "u")));
    let err = r.expect_err("must fail");
    assert!(
        matches!(err, StoreError::Postgres(_)),
        "a postgres error: {err:?}"
    );
    assert_eq!(err.kind(), "postgres_error");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let (r, took) = timed(|| pg.run_migrations());
    assert!(matches!(r, Err(StoreError::Postgres(_))), "{r:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");

    // Tiered over a healthy Redis and a dead Postgres: temp blocks still
    // work; permanent bans and a cold lookup report the Postgres error.
    let redis = TestRedis::new("outage_pg_closed");
    let tiered = TieredBlockStore::new(&redis.pool, pg, clock(), TieredOptions::default());
    tiered
        .block(&new_block("ip", "6.6.6.6", Some(60)))
        .expect("temp block needs only redis");
    let (r, took) = timed(|| tiered.block(&new_block("user", "u", None)));
    assert!(is_postgres_error(
        &r.expect_err("permanent ban needs postgres")
    ));
    assert!(took < Duration::from_secs(3));
    let (r, took) = timed(|| tiered.first_active(&[ScopeKey::new("user", "clean")]));
    assert!(is_postgres_error(
        &r.expect_err("cold mirror needs postgres")
    ));
    assert!(took < Duration::from_secs(3));
    redis.assert_all_keys_have_ttl();

    // And a dead Redis with a live Postgres is a Redis error.
    let schema = TestSchema::new("outage_redis_closed");
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("config");
    let tiered = TieredBlockStore::new(&closed_redis_pool(), pg, clock(), TieredOptions::default());
    let (r, took) = timed(|| tiered.first_active(&[ScopeKey::new("user", "u")]));
    assert!(is_redis_error(&r.expect_err("lookup needs redis")));
    assert!(took < FAST);
}

#[test]
fn killed_redis_server_errors_fast_then_the_store_reconnects() {
    let mut server = PrivateRedis::start();
    let pool = RedisPool::new(&TestRedis::config_for(&server.url(), "t:restart")).expect("config");
    let store = RedisBlockStore::new(&pool, clock(), 3600);
    let counters = RedisCounters::new(&pool);
    let ip = ScopeKey::new("ip", "9.8.7.6");
    store
        .block(&new_block("ip", "9.8.7.6", Some(60)))
        .expect("block");
    assert!(store.get_active(&ip).expect("lookup").is_some());
    assert_eq!(counters.incr("c", 1, Some(60)), 1);

    server.kill();
    let (r, took) = timed(|| store.get_active(&ip));
    assert!(matches!(r, Err(StoreError::Redis(_))), "{r:?}");
    assert!(took < FAST, "{took:?}");
    let (v, took) = timed(|| counters.incr("c", 3, Some(60)));
    assert_eq!(v, 3);
    assert!(took < FAST);

    server.restart();
    // Back within the failure back-off (1 s), on the same pool.
    let (found, took) = until_ok(Duration::from_secs(5), || store.get_active(&ip));
    assert!(
        found.is_none(),
        "the restarted server has no data (no persistence)"
    );
    assert!(
        took < Duration::from_millis(1500),
        "reconnected after {took:?}"
    );
    store
        .block(&new_block("ip", "9.8.7.6", Some(60)))
        .expect("block after restart");
    assert!(store.get_active(&ip).expect("lookup").is_some());
    assert_eq!(counters.incr("c", 1, Some(60)), 1);
    let mut raw = common::redis_conn(&server.url());
    let keys = scan_all(&mut raw, "*");
    common::assert_every_key_has_ttl(&mut raw, &keys);
}

#[test]
fn flushall_on_a_private_redis_keeps_permanent_bans() {
    let server = PrivateRedis::start();
    let schema = TestSchema::new("outage_flushall");
    let pool = RedisPool::new(&TestRedis::config_for(&server.url(), "sec_audit")).expect("config");
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("config");
    pg.run_migrations().expect("migrations");
    let store = TieredBlockStore::new(&pool, pg, clock(), TieredOptions::default());
    let user = ScopeKey::new("user", "banned");
    store
        .block(&new_block("user", "banned", None))
        .expect("ban");
    store
        .block(&new_block("ip", "2.2.2.2", Some(300)))
        .expect("temp");
    assert!(store
        .first_active(std::slice::from_ref(&user))
        .expect("lookup")
        .is_some());

    let mut raw = common::redis_conn(&server.url());
    let _: () = redis::cmd("FLUSHALL").query(&mut raw).expect("FLUSHALL");
    assert!(scan_all(&mut raw, "*").is_empty());

    let hit = store
        .first_active(&[ScopeKey::new("ip", "2.2.2.2"), user.clone()])
        .expect("lookup");
    assert_eq!(hit.expect("ban survives FLUSHALL").scope_value, "banned");
    let warm: i64 = redis::cmd("SISMEMBER")
        .arg(store.mirror_key())
        .arg(WARM_MEMBER)
        .query(&mut raw)
        .expect("SISMEMBER");
    assert_eq!(warm, 1);
    let before = store.stats();
    assert!(store.get_active(&user).expect("lookup").is_some());
    let cost = store.stats().since(&before);
    assert_eq!((cost.redis_round_trips, cost.postgres_queries), (1, 0));
    let keys = scan_all(&mut raw, "*");
    assert!(!keys.is_empty());
    common::assert_every_key_has_ttl(&mut raw, &keys);
}

#[test]
fn stopped_postgres_cluster_errors_fast_while_warm_lookups_go_on_then_it_reconnects() {
    let t = Instant::now();
    let mut server = PrivatePostgres::start();
    eprintln!("private postgres cluster up in {:?}", t.elapsed());
    let redis = TestRedis::new("outage_pg_restart");
    let pg = PostgresBlockStore::new(&pg_config(&server.url()), clock()).expect("config");
    pg.run_migrations().expect("migrations");
    let store = TieredBlockStore::new(&redis.pool, pg, clock(), TieredOptions::default());
    let user = ScopeKey::new("user", "persisted");
    let clean = [
        ScopeKey::new("user", "clean"),
        ScopeKey::new("ip", "192.0.2.7"),
    ];
    store
        .block(&new_block("user", "persisted", None))
        .expect("ban");
    assert!(store
        .first_active(&clean)
        .expect("warm the mirror")
        .is_none());

    server.stop();
    // Clean traffic and cached bans need no Postgres at all.
    let before = store.stats();
    assert!(store
        .first_active(&clean)
        .expect("clean lookup with postgres down")
        .is_none());
    assert!(store
        .get_active(&user)
        .expect("cached ban with postgres down")
        .is_some());
    let cost = store.stats().since(&before);
    assert_eq!((cost.redis_round_trips, cost.postgres_queries), (2, 0));
    // An evicted entry must be read back: that is a Postgres error, fast.
    let _: i64 = redis.cmd(redis::cmd("DEL").arg(store.redis().block_key(&user)));
    let (r, took) = timed(|| store.get_active(&user));
    assert!(
        is_postgres_error(&r.expect_err("postgres is down")),
        "distinct error"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    let (r, took) = timed(|| store.block(&new_block("user", "other", None)));
    assert!(is_postgres_error(&r.expect_err("postgres is down")));
    assert!(took < Duration::from_secs(3), "{took:?}");

    server.restart();
    let (found, took) = until_ok(Duration::from_secs(10), || store.get_active(&user));
    eprintln!("postgres store usable again {took:?} after restart");
    assert_eq!(found.expect("the ban is durable").scope_value, "persisted");
    store
        .block(&new_block("user", "other", None))
        .expect("ban after restart");
    assert_eq!(store.active_blocks(None).expect("list").len(), 2);
    redis.assert_all_keys_have_ttl();
}

#[test]
fn a_restart_between_two_calls_costs_no_failed_call() {
    let mut redis_server = PrivateRedis::start();
    let mut pg_server = PrivatePostgres::start();
    let pool =
        RedisPool::new(&TestRedis::config_for(&redis_server.url(), "t:quick")).expect("config");
    let redis_store = RedisBlockStore::new(&pool, clock(), 3600);
    let pg = PostgresBlockStore::new(&pg_config(&pg_server.url()), clock()).expect("config");
    pg.run_migrations().expect("migrations");
    let user = ScopeKey::new("user", "u");
    pg.block(&new_block("user", "u", None)).expect("ban");
    // Several pooled connections, all of which die with the servers.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..20 {
                    redis_store.get_active(&user).expect("redis");
                    pg.get_active(&user).expect("postgres");
                }
            });
        }
    });

    redis_server.kill();
    redis_server.restart();
    pg_server.stop();
    pg_server.restart();

    let before = redis_store.stats();
    assert!(redis_store
        .get_active(&user)
        .expect("first redis call after restart")
        .is_none());
    assert!(
        redis_store.stats().since(&before).redis_round_trips <= 2,
        "at most one retry"
    );
    let before = pg.stats();
    assert!(pg
        .get_active(&user)
        .expect("first postgres call after restart")
        .is_some());
    let retries = pg.stats().since(&before).postgres_queries;
    eprintln!(
        "first postgres call after restart: {retries} queries (one retry on a fresh connection)"
    );
    assert!(retries <= 2, "at most one retry");
    for _ in 0..10 {
        redis_store.get_active(&user).expect("redis after restart");
        pg.get_active(&user).expect("postgres after restart");
    }
}

#[test]
fn a_frozen_redis_times_out_within_the_command_timeout_then_recovers() {
    let server = PrivateRedis::start();
    let pool = RedisPool::new(&TestRedis::config_for(&server.url(), "t:frozen")).expect("config");
    let store = RedisBlockStore::new(&pool, clock(), 3600);
    let counters = RedisCounters::new(&pool);
    let ip = ScopeKey::new("ip", "4.3.2.1");
    store
        .block(&new_block("ip", "4.3.2.1", Some(60)))
        .expect("block");

    server.signal("STOP");
    // The server accepts nothing and answers nothing: the command timeout
    // (800 ms here) bounds the call.
    let (r, took) = timed(|| store.get_active(&ip));
    server.signal("CONT");
    let err = r.expect_err("a frozen server cannot answer");
    assert!(
        matches!(err, StoreError::Timeout(_) | StoreError::Redis(_)),
        "{err:?}"
    );
    assert!(took < FAST, "{took:?}");

    let (found, _) = until_ok(Duration::from_secs(5), || store.get_active(&ip));
    assert!(found.is_some(), "the entry is still there");
    assert_eq!(counters.incr("c", 2, Some(60)), 2);
}
