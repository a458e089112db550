//! The tiered store against real Redis and Postgres.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{clock, new_block, scalar_i64, TestRedis, TestSchema};
use diesel::connection::SimpleConnection;
use sec_audit_core::ScopeKey;
use sec_audit_store::{
    BlockStore, PostgresBlockStore, TieredBlockStore, TieredOptions, WARM_MEMBER,
};

struct Env {
    store: TieredBlockStore,
    redis: TestRedis,
    schema: TestSchema,
}

fn env(test: &str) -> Env {
    let redis = TestRedis::new(test);
    let schema = TestSchema::new(test);
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("valid config");
    pg.run_migrations().expect("migrations");
    let store = TieredBlockStore::new(&redis.pool, pg, clock(), TieredOptions::default());
    Env {
        store,
        redis,
        schema,
    }
}

impl Env {
    fn is_member(&self, member: &str) -> bool {
        self.redis.cmd::<i64>(
            redis::cmd("SISMEMBER")
                .arg(self.store.mirror_key())
                .arg(member),
        ) == 1
    }
    fn cached(&self, scope: &ScopeKey) -> bool {
        self.redis
            .cmd::<i64>(redis::cmd("EXISTS").arg(self.store.redis().block_key(scope)))
            == 1
    }
    fn active_rows(&self) -> i64 {
        scalar_i64(
            &mut self.schema.conn(),
            "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE revoked_at IS NULL",
        )
    }
}

/// Bans `10.x.y.z` for ids `from..to` straight in SQL (bypassing the
/// store, as an import or another service would), in batches.
fn bulk_ban(schema: &TestSchema, from: i64, to: i64) {
    let mut c = schema.conn();
    let mut start = from;
    while start < to {
        let end = (start + 25_000).min(to);
        c.batch_execute(&format!(
            "INSERT INTO permanent_blocks (scope_type, scope_value, message, created_at) \
             SELECT 'ip', '10.' || (g / 65536) || '.' || ((g / 256) % 256) || '.' || (g % 256), 'bulk', now() \
             FROM generate_series({start}, {}) AS g",
            end - 1
        ))
        .unwrap_or_else(|e| panic!("bulk insert failed: {e}"));
        start = end;
    }
}

fn bulk_ip(g: i64) -> String {
    format!("10.{}.{}.{}", g / 65536, (g / 256) % 256, g % 256)
}

#[test]
fn clean_lookup_is_one_redis_round_trip_and_no_postgres_query_at_0_1k_and_100k_bans() {
    let e = env("tiered_clean");
    let clean = [
        ScopeKey::new("user", "clean-user"),
        ScopeKey::new("session", "clean-session"),
        ScopeKey::new("ip", "192.0.2.1"),
    ];
    // Cold start: the first lookup builds the (empty) mirror.
    assert!(e.store.first_active(&clean).expect("lookup").is_none());
    assert!(e.is_member(WARM_MEMBER));

    let mut banned = 0i64;
    for target in [0i64, 1_000, 100_000] {
        if target > banned {
            let t = Instant::now();
            bulk_ban(&e.schema, banned, target);
            let inserted = t.elapsed();
            let t = Instant::now();
            let added = e.store.rebuild_mirror().expect("rebuild");
            eprintln!(
                "{target} bans: bulk insert {inserted:?}, mirror rebuild {:?}",
                t.elapsed()
            );
            assert_eq!(added as i64, target);
            banned = target;
        }
        let n = 200u64;
        let before = e.store.stats();
        let t = Instant::now();
        for _ in 0..n {
            assert!(e.store.first_active(&clean).expect("lookup").is_none());
        }
        let per = t.elapsed() / n as u32;
        let cost = e.store.stats().since(&before);
        eprintln!("{target} bans: clean lookup {per:?} avg, {cost:?} over {n} lookups");
        assert_eq!(
            cost.redis_round_trips, n,
            "one Redis round trip per clean lookup at {target} bans"
        );
        assert_eq!(
            cost.postgres_queries, 0,
            "no Postgres query for clean traffic at {target} bans"
        );
        assert!(
            per < Duration::from_millis(20),
            "clean lookup is constant work: {per:?}"
        );

        if target > 0 {
            // A bulk-inserted ban (never cached) is found through the mirror.
            let ip = bulk_ip(target / 2);
            let order = [
                ScopeKey::new("user", "clean-user"),
                ScopeKey::new("ip", &ip),
            ];
            let hit = e
                .store
                .first_active(&order)
                .expect("lookup")
                .expect("banned ip");
            assert_eq!(hit.scope_value, ip);
            let before = e.store.stats();
            assert!(e.store.first_active(&order).expect("lookup").is_some());
            let cost = e.store.stats().since(&before);
            assert_eq!(
                (cost.redis_round_trips, cost.postgres_queries),
                (1, 0),
                "now cached"
            );
        }
    }
    assert_eq!(e.active_rows(), 100_000);
    e.redis.assert_all_keys_have_ttl();
}

#[test]
fn a_permanent_ban_survives_losing_every_redis_key() {
    let e = env("tiered_flush");
    let user = ScopeKey::new("user", "banned-user");
    e.store
        .block(&new_block("user", "banned-user", None))
        .expect("ban");
    e.store
        .block(&new_block("ip", "203.0.113.9", Some(300)))
        .expect("temp block");
    assert!(e
        .store
        .first_active(std::slice::from_ref(&user))
        .expect("lookup")
        .is_some());
    assert!(e.is_member("user:banned-user"));

    // The FLUSHALL equivalent for a test that shares Redis with others:
    // every key under this test's prefix is deleted. (The outage tests run
    // a real FLUSHALL on a private redis-server.)
    assert!(e.redis.flush_prefix() >= 3);
    assert!(e.redis.keys().is_empty());

    let hit = e
        .store
        .first_active(&[ScopeKey::new("ip", "203.0.113.9"), user.clone()])
        .expect("lookup");
    assert_eq!(
        hit.expect("still banned").scope_value,
        "banned-user",
        "the temp block is gone, the ban is not"
    );
    assert!(e.is_member(WARM_MEMBER), "mirror rebuilt and warm");
    assert!(e.is_member("user:banned-user"));
    assert!(e.cached(&user), "entry re-cached");
    let ttl = e.redis.ttl(&e.store.mirror_key());
    assert!(
        ttl > 0 && ttl <= TieredOptions::default().mirror_ttl as i64,
        "{ttl}"
    );
    let ttl = e.redis.ttl(&e.store.redis().block_key(&user));
    assert!(
        ttl > 0 && ttl <= TieredOptions::default().permanent_cache_ttl as i64,
        "{ttl}"
    );

    let before = e.store.stats();
    assert!(e
        .store
        .first_active(std::slice::from_ref(&user))
        .expect("lookup")
        .is_some());
    let cost = e.store.stats().since(&before);
    assert_eq!((cost.redis_round_trips, cost.postgres_queries), (1, 0));
    e.redis.assert_all_keys_have_ttl();
}

#[test]
fn concurrent_lookups_on_a_cold_mirror_all_see_the_ban() {
    let e = env("tiered_cold_herd");
    e.store
        .block(&new_block("session", "s-evil", None))
        .expect("ban");
    e.redis.flush_prefix();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (s, b) = (e.store.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                s.first_active(&[
                    ScopeKey::new("ip", "1.1.1.1"),
                    ScopeKey::new("session", "s-evil"),
                ])
            })
        })
        .collect();
    for h in handles {
        let r = h.join().expect("thread").expect("no error");
        assert_eq!(r.expect("ban seen").scope_value, "s-evil");
    }
    assert!(e.is_member(WARM_MEMBER));
    e.redis.assert_all_keys_have_ttl();
}

#[test]
fn an_evicted_cache_entry_is_read_back_from_postgres_and_recached() {
    let e = env("tiered_evict");
    let user = ScopeKey::new("user", "u1");
    e.store.block(&new_block("user", "u1", None)).expect("ban");
    assert!(e
        .store
        .first_active(std::slice::from_ref(&user))
        .expect("lookup")
        .is_some());
    let _: i64 = e
        .redis
        .cmd(redis::cmd("DEL").arg(e.store.redis().block_key(&user)));
    assert!(!e.cached(&user));

    let before = e.store.stats();
    let hit = e
        .store
        .first_active(&[ScopeKey::new("ip", "4.4.4.4"), user.clone()])
        .expect("lookup");
    assert_eq!(hit.expect("eviction never unbans").scope_value, "u1");
    let cost = e.store.stats().since(&before);
    assert_eq!(cost.postgres_queries, 1);
    assert_eq!(cost.redis_round_trips, 2, "lookup + re-cache");
    assert!(e.cached(&user));
    let before = e.store.stats();
    assert!(e.store.get_active(&user).expect("lookup").is_some());
    let cost = e.store.stats().since(&before);
    assert_eq!((cost.redis_round_trips, cost.postgres_queries), (1, 0));
    e.redis.assert_all_keys_have_ttl();
}

#[test]
fn revoking_removes_both_tiers_and_keeps_the_row_as_history() {
    let e = env("tiered_revoke");
    let user = ScopeKey::new("user", "mallory");
    e.store
        .block(&new_block("user", "mallory", None))
        .expect("ban");
    assert!(e.cached(&user) && e.is_member("user:mallory"));
    assert_eq!(
        e.store.unblock(&user, "appeal", "ops").expect("revoke"),
        2,
        "postgres row + redis entry"
    );
    assert!(!e.cached(&user));
    assert!(!e.is_member("user:mallory"));
    assert!(e
        .store
        .first_active(std::slice::from_ref(&user))
        .expect("lookup")
        .is_none());
    let mut c = e.schema.conn();
    assert_eq!(
        scalar_i64(
            &mut c,
            "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE scope_value = 'mallory' \
             AND revoked_at IS NOT NULL AND revoked_by = 'ops' AND revoked_reason = 'appeal'"
        ),
        1
    );
    assert_eq!(e.store.unblock(&user, "again", "ops").expect("revoke"), 0);

    // A ban after a revocation is a new row, enforced at once.
    e.store
        .block(&new_block("user", "mallory", None))
        .expect("re-ban");
    assert!(e
        .store
        .first_active(std::slice::from_ref(&user))
        .expect("lookup")
        .is_some());
    assert_eq!(
        scalar_i64(&mut c, "SELECT count(*)::int8 AS n FROM permanent_blocks"),
        2
    );

    // A temp block lives in Redis only; unblocking it removes one entry.
    let ip = ScopeKey::new("ip", "5.6.7.8");
    e.store
        .block(&new_block("ip", "5.6.7.8", Some(60)))
        .expect("temp");
    assert_eq!(e.store.active_temp_blocks(None).expect("list").len(), 1);
    assert_eq!(e.store.active_blocks(None).expect("list").len(), 1);
    assert_eq!(
        scalar_i64(
            &mut c,
            "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE scope_type = 'ip'"
        ),
        0
    );
    assert_eq!(e.store.unblock(&ip, "r", "ops").expect("unblock"), 1);
    assert!(e.store.get_active(&ip).expect("lookup").is_none());
    e.redis.assert_all_keys_have_ttl();

    // The trail is the permanent tier's: the user's two rows, none for the
    // temp-blocked ip.
    let trail = e.store.trail(&user, 10).expect("trail").expect("kept");
    assert_eq!(trail.len(), 2);
    assert_eq!(
        (
            trail[1].revoked_by.as_str(),
            trail[1].revoked_reason.as_str()
        ),
        ("ops", "appeal")
    );
    assert!(trail[0].entry.revoked_at.is_none());
    assert_eq!(e.store.trail(&ip, 10).expect("trail"), Some(Vec::new()));
}

#[test]
fn a_stale_mirror_member_heals_itself() {
    let e = env("tiered_heal");
    assert!(e
        .store
        .first_active(&[ScopeKey::new("ip", "1.1.1.1")])
        .expect("warm up")
        .is_none());
    let _: i64 = e.redis.cmd(
        redis::cmd("SADD")
            .arg(e.store.mirror_key())
            .arg("user:ghost"),
    );
    let ghost = ScopeKey::new("user", "ghost");
    let before = e.store.stats();
    assert!(e
        .store
        .first_active(std::slice::from_ref(&ghost))
        .expect("lookup")
        .is_none());
    assert_eq!(e.store.stats().since(&before).postgres_queries, 1);
    assert!(!e.is_member("user:ghost"), "removed from the mirror");
    let before = e.store.stats();
    assert!(e
        .store
        .first_active(std::slice::from_ref(&ghost))
        .expect("lookup")
        .is_none());
    assert_eq!(e.store.stats().since(&before).postgres_queries, 0);
    e.redis.assert_all_keys_have_ttl();
}

#[test]
fn lookup_follows_candidate_order_across_tiers() {
    let e = env("tiered_order");
    e.store
        .block(&new_block("ip", "7.7.7.7", Some(60)))
        .expect("temp");
    e.store.block(&new_block("user", "u", None)).expect("ban");
    let user_first = [ScopeKey::new("user", "u"), ScopeKey::new("ip", "7.7.7.7")];
    let ip_first = [ScopeKey::new("ip", "7.7.7.7"), ScopeKey::new("user", "u")];
    assert_eq!(
        e.store
            .first_active(&user_first)
            .expect("lookup")
            .expect("hit")
            .scope_type,
        "user"
    );
    assert_eq!(
        e.store
            .first_active(&ip_first)
            .expect("lookup")
            .expect("hit")
            .scope_type,
        "ip"
    );
    // With the user's entry evicted, the user still wins when it comes first.
    let _: i64 = e
        .redis
        .cmd(redis::cmd("DEL").arg(e.store.redis().block_key(&user_first[0])));
    assert_eq!(
        e.store
            .first_active(&user_first)
            .expect("lookup")
            .expect("hit")
            .scope_type,
        "user"
    );
    e.redis.assert_all_keys_have_ttl();
}

#[test]
fn ten_threads_banning_one_scope_through_the_tiered_store() {
    let e = env("tiered_concurrent");
    // Open the connections first so the ten bans really overlap.
    let stores: Vec<TieredBlockStore> = (0..10)
        .map(|_| {
            let pg = PostgresBlockStore::new(&e.schema.config(), clock()).expect("config");
            let s = TieredBlockStore::new(&e.redis.pool, pg, clock(), TieredOptions::default());
            s.postgres()
                .get_active(&ScopeKey::new("user", "warm"))
                .expect("connect");
            s
        })
        .collect();
    let barrier = Arc::new(Barrier::new(10));
    let handles: Vec<_> = stores
        .into_iter()
        .map(|s| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                s.block(&new_block("user", "target", None))
            })
        })
        .collect();
    for h in handles {
        let r = h.join().expect("thread");
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(e.active_rows(), 1);
    assert!(e.is_member("user:target"));
    assert!(e
        .store
        .get_active(&ScopeKey::new("user", "target"))
        .expect("lookup")
        .is_some());
    e.redis.assert_all_keys_have_ttl();
}
