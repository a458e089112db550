//! The tiers never disagree: permanent bans and revocations of ONE scope
//! racing from several writers, each with its own `TieredBlockStore` and its
//! own Redis and Postgres pools (as separate processes would), then a
//! comparison of Postgres, the Redis cached entry and the mirror member.

mod common;

use std::sync::{Arc, Barrier};

use common::{clock, new_block, TestRedis, TestSchema};
use diesel::sql_types::{BigInt, Double, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use sec_audit_core::ScopeKey;
use sec_audit_store::{
    BlockEntry, BlockStore, PostgresBlockStore, RedisPool, TieredBlockStore, TieredOptions,
};
use serde_json::{json, Map};

const WRITERS: usize = 8;
const ROUNDS: usize = 30;
const OPS_PER_WRITER: usize = 2;

#[derive(QueryableByName, Debug)]
struct AuditRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Double)]
    created_at: f64,
    #[diesel(sql_type = Nullable<Double>)]
    revoked_at: Option<f64>,
    #[diesel(sql_type = Text)]
    actor: String,
}

fn writer_store(redis: &TestRedis, schema: &TestSchema) -> TieredBlockStore {
    let pool = RedisPool::new(&redis.config()).expect("redis config");
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("pg config");
    let s = TieredBlockStore::new(&pool, pg, clock(), TieredOptions::default());
    // Open the connections first so the writers really overlap.
    s.postgres()
        .get_active(&ScopeKey::new("user", "warm-up"))
        .expect("postgres");
    s.redis()
        .get_active(&ScopeKey::new("user", "warm-up"))
        .expect("redis");
    s
}

fn ban(actor: &str) -> sec_audit_store::NewBlock {
    let mut b = new_block("user", "target", None);
    let mut m = Map::new();
    m.insert("actor".into(), json!(actor));
    b.metadata = m;
    b.reason = format!("by {actor}");
    b
}

/// What each tier says about the scope.
struct Tiers {
    row: Option<BlockEntry>,
    cached: Option<BlockEntry>,
    member: bool,
    rows: Vec<AuditRow>,
}

fn tiers(e: &(TestRedis, TestSchema), probe: &TieredBlockStore, scope: &ScopeKey) -> Tiers {
    let (redis, schema) = e;
    let row = probe.postgres().get_active(scope).expect("postgres read");
    let raw: Option<String> = redis.cmd(redis::cmd("GET").arg(probe.redis().block_key(scope)));
    let cached = raw.map(|r| serde_json::from_str::<BlockEntry>(&r).expect("cached entry decodes"));
    let member = redis.cmd::<i64>(
        redis::cmd("SISMEMBER")
            .arg(probe.mirror_key())
            .arg(scope.as_str()),
    ) == 1;
    let rows: Vec<AuditRow> = diesel::sql_query(
        "SELECT id, extract(epoch from created_at)::float8 AS created_at, \
         extract(epoch from revoked_at)::float8 AS revoked_at, \
         coalesce(metadata->>'actor', '') AS actor \
         FROM permanent_blocks WHERE scope_type = 'user' AND scope_value = 'target' ORDER BY id",
    )
    .load(&mut schema.conn())
    .expect("audit rows");
    Tiers {
        row,
        cached,
        member,
        rows,
    }
}

fn assert_agree(t: &Tiers, round: usize) {
    let active = t.rows.iter().filter(|r| r.revoked_at.is_none()).count();
    assert!(
        active <= 1,
        "round {round}: {active} active rows: {:?}",
        t.rows
    );
    for r in &t.rows {
        if let Some(rev) = r.revoked_at {
            assert!(
                rev >= r.created_at,
                "round {round}: row {} revoked at {rev} before it was created at {}",
                r.id,
                r.created_at
            );
        }
    }
    match &t.row {
        Some(row) => {
            let audit = t.rows.iter().find(|r| r.revoked_at.is_none());
            assert_eq!(
                audit.map(|r| json!(r.actor)),
                Some(row.metadata["actor"].clone()),
                "round {round}: the active audit row is the row read"
            );
            assert!(
                t.member,
                "round {round}: active row without mirror member: {row:?}"
            );
            let cached = t.cached.as_ref().unwrap_or_else(|| {
                panic!("round {round}: active row without cached entry: {row:?}")
            });
            assert_eq!(
                (
                    &cached.metadata,
                    &cached.reason,
                    cached.created_at,
                    cached.revoked_at
                ),
                (&row.metadata, &row.reason, row.created_at, None),
                "round {round}: cache and row disagree"
            );
        }
        None => {
            assert!(
                !t.member,
                "round {round}: mirror member without an active row"
            );
            assert!(
                t.cached.is_none(),
                "round {round}: cached entry without an active row: {:?}",
                t.cached
            );
        }
    }
}

#[test]
fn racing_bans_and_revocations_of_one_scope_leave_the_tiers_equal() {
    let e = (
        TestRedis::new("tiered_race"),
        TestSchema::new("tiered_race"),
    );
    PostgresBlockStore::new(&e.1.config(), clock())
        .expect("pg config")
        .run_migrations()
        .expect("migrations");
    let probe = writer_store(&e.0, &e.1);
    probe.rebuild_mirror().expect("warm mirror");
    let scope = ScopeKey::new("user", "target");
    let stores: Vec<Arc<TieredBlockStore>> = (0..WRITERS)
        .map(|_| Arc::new(writer_store(&e.0, &e.1)))
        .collect();
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(w, s)| {
                let (s, b) = (Arc::clone(s), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    b.wait();
                    for op in 0..OPS_PER_WRITER {
                        // Writers alternate, out of phase with each other.
                        if (w + op + round) % 2 == 0 {
                            s.block(&ban(&format!("w{w}-r{round}-op{op}")))
                                .map(|_| ())
                                .map_err(|e| format!("block: {e}"))?;
                        } else {
                            s.unblock(&ScopeKey::new("user", "target"), "race", "test")
                                .map(|_| ())
                                .map_err(|e| format!("unblock: {e}"))?;
                        }
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for h in handles {
            let r = h.join().expect("writer thread");
            assert!(r.is_ok(), "round {round}: {r:?}");
        }
        let t = tiers(&e, &probe, &scope);
        assert_agree(&t, round);
        // The latest operation wins: a last ban, alone, is what every tier
        // holds; a last revocation leaves nothing.
        let last = format!("last-r{round}");
        stores[round % WRITERS]
            .block(&ban(&last))
            .expect("last ban");
        let t = tiers(&e, &probe, &scope);
        assert_agree(&t, round);
        assert_eq!(
            t.row.as_ref().map(|r| r.metadata["actor"].clone()),
            Some(json!(last))
        );
        let hit = probe
            .first_active(std::slice::from_ref(&scope))
            .expect("lookup");
        assert_eq!(hit.map(|h| h.metadata["actor"].clone()), Some(json!(last)));
        if round % 2 == 1 {
            stores[0]
                .unblock(&scope, "last", "test")
                .expect("last revoke");
            let t = tiers(&e, &probe, &scope);
            assert_agree(&t, round);
            assert!(t.row.is_none());
            assert!(probe
                .first_active(std::slice::from_ref(&scope))
                .expect("lookup")
                .is_none());
        }
    }
    e.0.assert_all_keys_have_ttl();
}

#[test]
fn a_failed_write_through_leaves_neither_tier_with_the_change() {
    let redis = TestRedis::new("tiered_rollback");
    let schema = TestSchema::new("tiered_rollback");
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("pg config");
    pg.run_migrations().expect("migrations");
    let live = TieredBlockStore::new(&redis.pool, pg.clone(), clock(), TieredOptions::default());
    // Same Postgres, but a Redis nobody listens on.
    let closed = RedisPool::new(
        &sec_audit_store::RedisConfig::new("redis://127.0.0.1:1")
            .with_key_prefix(redis.prefix.clone())
            .with_connect_timeout(std::time::Duration::from_millis(300)),
    )
    .expect("redis config");
    let dead = TieredBlockStore::new(&closed, pg.clone(), clock(), TieredOptions::default());
    let scope = ScopeKey::new("user", "target");

    let err = dead.block(&ban("nobody")).expect_err("redis is down");
    assert_eq!(err.kind(), "redis_error");
    assert!(
        pg.get_active(&scope).expect("read").is_none(),
        "the ban was rolled back: Postgres does not hold it either"
    );

    live.block(&ban("alice")).expect("ban");
    let err = dead
        .unblock(&scope, "try", "test")
        .expect_err("redis is down");
    assert_eq!(err.kind(), "redis_error");
    let row = pg.get_active(&scope).expect("read").expect("still banned");
    assert_eq!(row.metadata["actor"], json!("alice"));
    assert!(live
        .first_active(std::slice::from_ref(&scope))
        .expect("lookup")
        .is_some());
    let _ = &schema;
    redis.assert_all_keys_have_ttl();
}

/// A change whose COMMIT fails after its write-through ran (a deferred
/// constraint trigger raises at COMMIT) is repaired: Redis ends up saying
/// what Postgres says.
#[test]
fn a_failed_commit_after_the_write_through_is_repaired() {
    use diesel::connection::SimpleConnection;
    let redis = TestRedis::new("tiered_commit");
    let schema = TestSchema::new("tiered_commit");
    let pg = PostgresBlockStore::new(&schema.config(), clock()).expect("pg config");
    pg.run_migrations().expect("migrations");
    schema
        .conn()
        .batch_execute(
            "CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$; \
             CREATE CONSTRAINT TRIGGER refuse_doomed AFTER INSERT OR UPDATE ON permanent_blocks \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
             WHEN (NEW.scope_value = 'doomed' OR (NEW.scope_value = 'kept' AND NEW.revoked_at IS NOT NULL)) \
             EXECUTE FUNCTION refuse_commit();",
        )
        .expect("trigger");
    let store = TieredBlockStore::new(&redis.pool, pg.clone(), clock(), TieredOptions::default());
    store.rebuild_mirror().expect("warm mirror");
    let entry_of = |scope: &ScopeKey| -> Option<String> {
        redis.cmd(redis::cmd("GET").arg(store.redis().block_key(scope)))
    };
    let member = |scope: &ScopeKey| -> bool {
        redis.cmd::<i64>(
            redis::cmd("SISMEMBER")
                .arg(store.mirror_key())
                .arg(scope.as_str()),
        ) == 1
    };

    // A ban that does not commit leaves no cache entry and no member.
    let doomed = ScopeKey::new("user", "doomed");
    let mut b = ban("alice");
    b.scope = doomed.clone();
    let err = store.block(&b).expect_err("commit refused");
    assert_eq!(err.kind(), "postgres_error");
    assert!(pg.get_active(&doomed).expect("read").is_none());
    assert!(entry_of(&doomed).is_none(), "repaired: no cached entry");
    assert!(!member(&doomed), "repaired: no member");
    assert!(store
        .first_active(std::slice::from_ref(&doomed))
        .expect("lookup")
        .is_none());

    // A revocation that does not commit leaves the ban cached and a member.
    let kept = ScopeKey::new("user", "kept");
    let mut b = ban("bob");
    b.scope = kept.clone();
    store.block(&b).expect("ban");
    let err = store
        .unblock(&kept, "try", "test")
        .expect_err("commit refused");
    assert_eq!(err.kind(), "postgres_error");
    let row = pg.get_active(&kept).expect("read").expect("still banned");
    let cached: BlockEntry =
        serde_json::from_str(&entry_of(&kept).expect("repaired: cached again")).expect("entry");
    assert_eq!(cached, row);
    assert!(member(&kept), "repaired: member again");
    redis.assert_all_keys_have_ttl();
}
