//! Range blocks (`ip` blocks whose value is a CIDR) against real Redis and
//! Postgres: every store denies an address inside an active range, the
//! address's own block first, the longest prefix next; ranges are listed,
//! revoked and kept as history like any block; the tiered clean lookup
//! stays one Redis round trip, with the same commands and the same number
//! of keys, at 100 000 single bans plus 1 000 ranges.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{clock, new_block, scalar_i64, PrivateRedis, TestRedis, TestSchema};
use diesel::connection::SimpleConnection;
use sec_audit_core::ScopeKey;
use sec_audit_core::{Clock, ManualClock};
use sec_audit_store::aio::{AsyncRedis, AsyncRedisBlockStore, AsyncTieredBlockStore, BlockingPool};
use sec_audit_store::{
    BlockEntry, BlockStore, MemoryBlockStore, PostgresBlockStore, RedisBlockStore, StoreError,
    TieredBlockStore, TieredOptions,
};

fn ingress(ip: &str) -> Vec<ScopeKey> {
    vec![
        ScopeKey::new("user", "clean-user"),
        ScopeKey::new("session", "clean-session"),
        ScopeKey::new("ip", ip),
    ]
}

fn value(found: Result<Option<BlockEntry>, StoreError>) -> Option<String> {
    found.expect("lookup").map(|e| e.scope_value)
}

fn zscore(redis: &TestRedis, key: &str, member: &str) -> Option<f64> {
    redis.cmd::<Option<f64>>(redis::cmd("ZSCORE").arg(key).arg(member))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ranges_deny_covered_addresses_and_a_new_length_costs_one_more_round_trip_once() {
    let r = TestRedis::new("ranges_redis");
    let writer = RedisBlockStore::new(&r.pool, clock(), 3600);
    // Another process's store: its own guess of the lengths in use.
    let reader = RedisBlockStore::new(&r.pool, clock(), 3600);
    let conn = AsyncRedis::new(&r.config()).expect("config");
    let lookup = AsyncRedisBlockStore::new(&conn, RedisBlockStore::new(&r.pool, clock(), 3600));

    assert_eq!(value(reader.first_active(&ingress("10.0.0.7"))), None);
    writer
        .block(&new_block("ip", "10.0.0.0/24", Some(120)))
        .expect("temp range");
    writer
        .block(&new_block("ip", "10.0.0.0/16", None))
        .expect("permanent range (redis only)");
    writer
        .block(&new_block("ip", "2001:db8::/32", Some(60)))
        .expect("v6 range");

    // The reader's first lookup learns the new lengths from the index and
    // looks again; from then on one round trip.
    let before = reader.stats();
    assert_eq!(
        value(reader.first_active(&ingress("10.0.0.7"))).as_deref(),
        Some("10.0.0.0/24")
    );
    assert_eq!(reader.stats().since(&before).redis_round_trips, 2);
    let cases = [
        ("10.0.0.7", Some("10.0.0.0/24")),
        ("10.0.200.1", Some("10.0.0.0/16")),
        ("10.1.0.1", None),
        ("192.0.2.1", None),
        ("2001:db8:5::1", Some("2001:db8::/32")),
        ("2001:db9::1", None),
    ];
    for (ip, want) in cases {
        let before = reader.stats();
        assert_eq!(
            value(reader.first_active(&ingress(ip))).as_deref(),
            want,
            "{ip}"
        );
        assert_eq!(reader.stats().since(&before).redis_round_trips, 1, "{ip}");
        let before = lookup.stats();
        let a = lookup.first_active(&ingress(ip)).await;
        assert_eq!(value(a).as_deref(), want, "async {ip}");
        assert!(lookup.stats().since(&before).redis_round_trips <= 2);
    }
    for (ip, _) in cases {
        let before = lookup.stats();
        lookup.first_active(&ingress(ip)).await.expect("async");
        assert_eq!(
            lookup.stats().since(&before).redis_round_trips,
            1,
            "async {ip}"
        );
    }

    // The address's own block comes first; a user block before both.
    writer
        .block(&new_block("ip", "10.0.0.7", Some(30)))
        .expect("single");
    assert_eq!(
        value(reader.first_active(&ingress("10.0.0.7"))).as_deref(),
        Some("10.0.0.7")
    );
    writer
        .block(&new_block("user", "clean-user", Some(30)))
        .expect("user");
    assert_eq!(
        value(reader.first_active(&ingress("10.0.0.7"))).as_deref(),
        Some("clean-user")
    );
    writer
        .unblock(&ScopeKey::new("user", "clean-user"), "", "")
        .expect("unblock");

    // get_active is the scope's own entry.
    let range = ScopeKey::new("ip", "10.0.0.0/24");
    assert!(reader.get_active(&range).expect("get").is_some());
    assert!(reader
        .get_active(&ScopeKey::new("ip", "10.0.0.8"))
        .expect("get")
        .is_none());

    // Listed like any block.
    let temp: Vec<String> = reader
        .active_temp_blocks(Some("ip"))
        .expect("list")
        .into_iter()
        .map(|e| e.scope_value)
        .collect();
    assert_eq!(temp, ["10.0.0.0/24", "10.0.0.7", "2001:db8::/32"]);
    assert_eq!(reader.active_blocks(Some("ip")).expect("list").len(), 1);

    // Revoked: the next longest range answers.
    assert_eq!(writer.unblock(&range, "", "").expect("unblock"), 1);
    assert_eq!(
        value(reader.first_active(&ingress("10.0.0.8"))).as_deref(),
        Some("10.0.0.0/16")
    );

    // The index: one member per length, scores are the latest expiry (inf
    // for a permanent range); its TTL covers the longest entry.
    let index = reader.range_index_key();
    assert_eq!(zscore(&r, &index, "4/16"), Some(f64::INFINITY));
    assert!(zscore(&r, &index, "4/24").is_some_and(|s| s > clock().now() + 100.0));
    assert!(zscore(&r, &index, "6/32").is_some());
    assert!(r.ttl(&index) >= 3590, "ttl {}", r.ttl(&index));
    r.assert_all_keys_have_ttl();
}

#[test]
fn expired_lengths_leave_the_index_and_non_canonical_ranges_are_refused_everywhere() {
    let r = TestRedis::new("ranges_expiry");
    let manual = Arc::new(ManualClock::at_secs(1_780_000_000.0));
    let c: Arc<dyn Clock> = manual.clone();
    let store = RedisBlockStore::new(&r.pool, c.clone(), 3600);
    store
        .block(&new_block("ip", "10.0.0.0/20", Some(10)))
        .expect("temp");
    let index = store.range_index_key();
    assert_eq!(zscore(&r, &index, "4/20"), Some(1_780_000_010.0));
    assert_eq!(
        value(store.first_active(&ingress("10.0.1.1"))).as_deref(),
        Some("10.0.0.0/20")
    );
    manual.advance_secs(11.0);
    assert_eq!(value(store.first_active(&ingress("10.0.1.1"))), None);
    store
        .block(&new_block("ip", "10.0.0.0/8", Some(10)))
        .expect("temp");
    assert_eq!(zscore(&r, &index, "4/20"), None, "pruned by the next write");

    let schema = TestSchema::new("ranges_refused");
    let pg = PostgresBlockStore::new(&schema.config(), c.clone()).expect("config");
    pg.run_migrations().expect("migrations");
    let tiered = TieredBlockStore::new(&r.pool, pg.clone(), c.clone(), TieredOptions::default());
    let memory = MemoryBlockStore::new(c);
    let stores: [&dyn BlockStore; 4] = [&memory, &store, &pg, &tiered];
    for bad in [
        "10.0.0.5/24",
        "10.0.0.1/32",
        "2001:DB8::/32",
        "10.0.0.0/024",
        "1/2",
    ] {
        for s in stores {
            let e = s.block(&new_block("ip", bad, None)).unwrap_err();
            assert_eq!(e.kind(), "invalid_request", "{bad}");
        }
    }
    assert_eq!(
        scalar_i64(
            &mut schema.conn(),
            "SELECT count(*)::int8 AS n FROM permanent_blocks"
        ),
        0
    );
    r.assert_all_keys_have_ttl();
}

#[test]
fn postgres_ranges_are_rows_with_their_revocation_trail() {
    let schema = TestSchema::new("ranges_pg");
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("config");
    pg.run_migrations().expect("migrations");
    pg.block(&new_block("ip", "198.51.100.0/24", None))
        .expect("range");
    pg.block(&new_block("ip", "2001:db8:aa::/48", None))
        .expect("v6 range");
    pg.block(&new_block("ip", "198.51.100.9", None))
        .expect("single");
    let cases = [
        ("198.51.100.9", Some("198.51.100.9")),
        ("198.51.100.10", Some("198.51.100.0/24")),
        ("198.51.101.1", None),
        ("2001:db8:aa:1::1", Some("2001:db8:aa::/48")),
        // An IPv4-mapped candidate is the IPv4 address for its ranges.
        ("::ffff:198.51.100.77", Some("198.51.100.0/24")),
    ];
    for (ip, want) in cases {
        assert_eq!(
            value(pg.first_active(&ingress(ip))).as_deref(),
            want,
            "{ip}"
        );
    }
    assert!(pg
        .get_active(&ScopeKey::new("ip", "198.51.100.10"))
        .expect("get")
        .is_none());
    let listed: Vec<String> = pg
        .active_blocks(Some("ip"))
        .expect("list")
        .into_iter()
        .map(|e| e.scope_value)
        .collect();
    assert_eq!(
        listed,
        ["198.51.100.0/24", "198.51.100.9", "2001:db8:aa::/48"]
    );
    let range = ScopeKey::new("ip", "198.51.100.0/24");
    assert_eq!(
        pg.unblock(&range, "false positive", "ops").expect("revoke"),
        1
    );
    assert_eq!(value(pg.first_active(&ingress("198.51.100.10"))), None);
    pg.block(&new_block("ip", "198.51.100.0/24", None))
        .expect("re-ban");
    assert_eq!(
        value(pg.first_active(&ingress("198.51.100.10"))).as_deref(),
        Some("198.51.100.0/24")
    );
    let mut c = schema.conn();
    assert_eq!(
        scalar_i64(
            &mut c,
            "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE scope_value = '198.51.100.0/24' \
             AND revoked_at IS NOT NULL AND revoked_by = 'ops' AND revoked_reason = 'false positive'"
        ),
        1
    );
    assert_eq!(
        scalar_i64(
            &mut c,
            "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE scope_value = '198.51.100.0/24'"
        ),
        2,
        "the revoked row stays as history"
    );
}

struct Tiered {
    store: Arc<TieredBlockStore>,
    redis: TestRedis,
    schema: TestSchema,
}

fn tiered_at(redis: TestRedis, test: &str) -> Tiered {
    let schema = TestSchema::new(test);
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("config");
    pg.run_migrations().expect("migrations");
    let store = Arc::new(TieredBlockStore::new(
        &redis.pool,
        pg,
        clock(),
        TieredOptions::default(),
    ));
    Tiered {
        store,
        redis,
        schema,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiered_permanent_range_survives_losing_redis_and_revocation_keeps_history() {
    let t = tiered_at(TestRedis::new("ranges_tiered"), "ranges_tiered");
    let conn = AsyncRedis::new(&t.redis.config()).expect("config");
    let lookup = AsyncTieredBlockStore::new(
        &conn,
        Arc::clone(&t.store),
        BlockingPool::new(2, Duration::from_secs(5)),
    );
    let range = ScopeKey::new("ip", "203.0.113.0/24");
    t.store
        .block(&new_block("ip", "203.0.113.0/24", None))
        .expect("permanent range");
    t.store
        .block(&new_block("ip", "203.0.0.0/16", Some(300)))
        .expect("temp range");
    let index = t.store.redis().range_index_key();
    assert_eq!(zscore(&t.redis, &index, "4/24"), Some(f64::INFINITY));
    assert!(
        t.redis.cmd::<i64>(
            redis::cmd("SISMEMBER")
                .arg(t.store.mirror_key())
                .arg("ip:203.0.113.0/24")
        ) == 1
    );

    // Cold start: rebuilt, then one round trip, no Postgres.
    assert_eq!(
        value(t.store.first_active(&ingress("203.0.113.50"))).as_deref(),
        Some("203.0.113.0/24")
    );
    for (ip, want) in [
        ("203.0.113.50", Some("203.0.113.0/24")),
        ("203.0.5.5", Some("203.0.0.0/16")),
        ("198.51.100.1", None),
    ] {
        let before = t.store.stats();
        assert_eq!(value(t.store.first_active(&ingress(ip))).as_deref(), want);
        let cost = t.store.stats().since(&before);
        assert_eq!(
            (cost.redis_round_trips, cost.postgres_queries),
            (1, 0),
            "{ip}"
        );
        let a = lookup.first_active(&ingress(ip)).await;
        assert_eq!(value(a).as_deref(), want, "async {ip}");
    }

    // Every Redis key lost: the permanent range is rebuilt from Postgres
    // (the temp one is gone with Redis, as temp blocks are).
    t.redis.flush_prefix();
    assert_eq!(
        value(lookup.first_active(&ingress("203.0.113.50")).await).as_deref(),
        Some("203.0.113.0/24"),
        "async, cold: Postgres asked about every covering range"
    );
    assert_eq!(
        value(t.store.first_active(&ingress("203.0.113.51"))).as_deref(),
        Some("203.0.113.0/24")
    );
    // The async lookup rebuilt the mirror and index detached.
    let waited = Instant::now();
    while zscore(&t.redis, &index, "#warm").is_none() {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "index not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(zscore(&t.redis, &index, "4/24"), Some(f64::INFINITY));

    // Only the index lost (the mirror still warm): rebuilt like a mirror.
    t.redis.cmd::<i64>(redis::cmd("DEL").arg(&index));
    // Every lookup answers right at once (from Postgres while the index is
    // cold); the rebuild runs one worker at a time, so a lookup that finds
    // the detached rebuild above still holding its turn answers without
    // rebuilding: retry, bounded, until one of them rebuilds.
    let waited = Instant::now();
    loop {
        assert_eq!(
            value(t.store.first_active(&ingress("203.0.113.52"))).as_deref(),
            Some("203.0.113.0/24")
        );
        if zscore(&t.redis, &index, "4/24").is_some() {
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "index not rebuilt by a lookup"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(zscore(&t.redis, &index, "4/24"), Some(f64::INFINITY));
    assert_eq!(zscore(&t.redis, &index, "#warm"), Some(f64::INFINITY));
    // (This lookup learns the lengths again.)
    assert!(t
        .store
        .first_active(&ingress("203.0.113.52"))
        .expect("lookup")
        .is_some());

    // Its cached entry evicted: read back from Postgres and re-cached.
    t.redis
        .cmd::<i64>(redis::cmd("DEL").arg(t.store.redis().block_key(&range)));
    let before = t.store.stats();
    assert_eq!(
        value(t.store.first_active(&ingress("203.0.113.53"))).as_deref(),
        Some("203.0.113.0/24")
    );
    let cost = t.store.stats().since(&before);
    assert_eq!((cost.redis_round_trips, cost.postgres_queries), (2, 1));
    let before = t.store.stats();
    assert!(t
        .store
        .first_active(&ingress("203.0.113.54"))
        .expect("lookup")
        .is_some());
    assert_eq!(t.store.stats().since(&before).postgres_queries, 0);

    // Listed from Postgres like any permanent block; revoked like one.
    let listed: Vec<String> = t
        .store
        .active_blocks(Some("ip"))
        .expect("list")
        .into_iter()
        .map(|e| e.scope_value)
        .collect();
    assert_eq!(listed, ["203.0.113.0/24"]);
    assert_eq!(t.store.unblock(&range, "appeal", "ops").expect("revoke"), 2);
    assert_eq!(value(t.store.first_active(&ingress("203.0.113.50"))), None);
    assert_eq!(
        value(lookup.first_active(&ingress("203.0.113.50")).await),
        None
    );
    assert_eq!(
        scalar_i64(
            &mut t.schema.conn(),
            "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE scope_value = '203.0.113.0/24' \
             AND revoked_by = 'ops' AND revoked_reason = 'appeal'"
        ),
        1
    );
    t.redis.assert_all_keys_have_ttl();
}

/// Every command a private Redis ran since the last reset, as its
/// arguments (SLOWLOG with a threshold of 0 logs them all, oldest last),
/// with the server time spent in microseconds.
fn slowlog(conn: &mut redis::Connection) -> Vec<(Vec<String>, i64)> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(-1)
        .query(conn)
        .expect("SLOWLOG GET");
    let mut out = Vec::new();
    for e in entries {
        let redis::Value::Array(fields) = e else {
            panic!("slowlog entry {e:?}")
        };
        let micros: i64 = redis::from_redis_value(fields[2].clone()).expect("duration");
        let args: Vec<String> = redis::from_redis_value(fields[3].clone()).expect("args");
        out.push((args, micros));
    }
    out.reverse();
    out
}

fn reset_slowlog(conn: &mut redis::Connection) {
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query(conn)
        .expect("reset");
}

/// Per command name: how many ran and their argument counts.
fn shape(log: &[(Vec<String>, i64)]) -> BTreeMap<String, Vec<usize>> {
    let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (args, _) in log {
        let name = args.first().map(|a| a.to_uppercase()).unwrap_or_default();
        if name == "SLOWLOG" || name == "CONFIG" {
            continue;
        }
        m.entry(name).or_default().push(args.len());
    }
    m
}

/// Inserts `ip` bans `10.x.y.z` for `0..singles` straight in SQL (as an
/// import or another service would).
fn bulk_singles(schema: &TestSchema, singles: i64) {
    let mut c = schema.conn();
    let mut start = 0;
    while start < singles {
        let end = (start + 25_000).min(singles);
        c.batch_execute(&format!(
            "INSERT INTO permanent_blocks (scope_type, scope_value, message, created_at) \
             SELECT 'ip', '10.' || (g / 65536) || '.' || ((g / 256) % 256) || '.' || (g % 256), 'bulk', now() \
             FROM generate_series({start}, {}) AS g",
            end - 1
        ))
        .expect("bulk singles");
        start = end;
    }
}

/// Inserts `count` ranges straight in SQL: `/24`s in 172.16/12, every
/// tenth a `/20` instead, and two `/16`s in 100.64/10.
fn bulk_ranges(schema: &TestSchema, count: i64) {
    let mut c = schema.conn();
    c.batch_execute(&format!(
        "INSERT INTO permanent_blocks (scope_type, scope_value, message, created_at) \
         SELECT 'ip', CASE WHEN g % 10 = 0 \
             THEN '172.' || (16 + g / 16) || '.' || ((g % 16) * 16) || '.0/20' \
             ELSE '172.' || (16 + g / 256) || '.' || (g % 256) || '.0/24' END, 'bulk range', now() \
         FROM generate_series(1, {}) AS g",
        count - 2
    ))
    .expect("bulk ranges");
    c.batch_execute(
        "INSERT INTO permanent_blocks (scope_type, scope_value, message, created_at) VALUES \
         ('ip', '100.64.0.0/16', 'bulk range', now()), ('ip', '100.65.0.0/16', 'bulk range', now())",
    )
    .expect("bulk /16s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_lookup_is_one_round_trip_with_constant_work_at_100k_bans_and_1k_ranges() {
    // A private Redis, so that its SLOWLOG (threshold 0: every command)
    // shows exactly what the lookups made the server do.
    let server = PrivateRedis::start();
    let t = tiered_at(TestRedis::at(&server.url(), "ranges_scale"), "ranges_scale");
    let mut raw = common::redis_conn(&server.url());
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .query(&mut raw)
        .expect("CONFIG SET");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-max-len")
        .arg(10_000)
        .query(&mut raw)
        .expect("CONFIG SET");
    let conn = AsyncRedis::new(&t.redis.config()).expect("config");
    let lookup = AsyncTieredBlockStore::new(
        &conn,
        Arc::clone(&t.store),
        BlockingPool::new(2, Duration::from_secs(5)),
    );
    let clean = ingress("192.0.2.1");
    assert_eq!(
        value(t.store.first_active(&clean)),
        None,
        "cold start: rebuilt"
    );

    let n = 200u64;
    let mut shapes = Vec::new();
    for (singles, ranges) in [(0i64, 0i64), (100_000, 0), (100_000, 1_000)] {
        if singles + ranges > 0 {
            let started = Instant::now();
            if ranges == 0 {
                bulk_singles(&t.schema, singles);
            } else {
                bulk_ranges(&t.schema, ranges);
            }
            let added = t.store.rebuild_mirror().expect("rebuild");
            assert_eq!(added as i64, singles + ranges);
            eprintln!(
                "{singles} bans + {ranges} ranges inserted and mirrored in {:?}",
                started.elapsed()
            );
        }
        // The first lookup learns the lengths in use (a second round trip
        // when they changed); then every clean lookup is one.
        assert_eq!(value(t.store.first_active(&clean)), None);
        assert_eq!(value(lookup.first_active(&clean).await), None);
        reset_slowlog(&mut raw);
        let before = t.store.stats();
        for _ in 0..n {
            assert_eq!(value(t.store.first_active(&clean)), None);
        }
        let cost = t.store.stats().since(&before);
        // (The async store's stats include the sync store's.)
        let before_async = lookup.stats();
        for _ in 0..n {
            assert_eq!(value(lookup.first_active(&clean).await), None);
        }
        let cost_async = lookup.stats().since(&before_async);
        assert_eq!((cost.redis_round_trips, cost.postgres_queries), (n, 0));
        assert_eq!(
            (cost_async.redis_round_trips, cost_async.postgres_queries),
            (n, 0)
        );
        let log = slowlog(&mut raw);
        let s = shape(&log);
        let micros: i64 = log.iter().map(|(_, us)| us).sum();
        let mut per: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (args, us) in &log {
            let e = per.entry(args[0].to_uppercase()).or_default();
            e.0 += 1;
            e.1 += us;
        }
        eprintln!("per command (count, total us): {per:?}");
        eprintln!(
            "{singles} bans + {ranges} ranges: server time {:.1} us per clean lookup; commands {:?}",
            micros as f64 / (2 * n) as f64,
            s.iter().map(|(k, v)| (k.clone(), v.len(), v[0])).collect::<Vec<_>>()
        );
        // Per lookup: one MGET, one SMISMEMBER, one ZRANGE — each with the
        // same number of arguments every time.
        assert_eq!(
            s.keys().cloned().collect::<Vec<_>>(),
            ["MGET", "SMISMEMBER", "ZRANGE"]
        );
        for (name, counts) in &s {
            assert_eq!(counts.len() as u64, 2 * n, "{name}");
            assert!(counts.iter().all(|c| *c == counts[0]), "{name}: {counts:?}");
        }
        shapes.push(s);
    }
    // 3 candidates, whatever the number of bans; with ranges, 3 more keys:
    // the /24, /20 and /16 covering the address (one per length in use),
    // never one per ban or range.
    for s in &shapes[..2] {
        assert_eq!(s["MGET"][0], 1 + 3);
        assert_eq!(s["SMISMEMBER"][0], 2 + 1 + 3);
    }
    assert_eq!(shapes[2]["MGET"][0], 1 + 3 + 3);
    assert_eq!(shapes[2]["SMISMEMBER"][0], 2 + 1 + 3 + 3);
    assert!(shapes.iter().all(|s| s["ZRANGE"][0] == 5));

    // Bans found through the mirror (never cached: inserted in SQL).
    for (ip, want) in [
        ("172.17.5.9", "172.17.5.0/24"),
        ("172.16.160.7", "172.16.160.0/20"),
        ("100.65.200.1", "100.65.0.0/16"),
        ("10.0.3.4", "10.0.3.4"),
    ] {
        assert_eq!(
            value(t.store.first_active(&ingress(ip))).as_deref(),
            Some(want)
        );
        let before = t.store.stats();
        assert_eq!(
            value(t.store.first_active(&ingress(ip))).as_deref(),
            Some(want)
        );
        let cost = t.store.stats().since(&before);
        assert_eq!(
            (cost.redis_round_trips, cost.postgres_queries),
            (1, 0),
            "cached: {ip}"
        );
    }
    t.redis.assert_all_keys_have_ttl();
}
