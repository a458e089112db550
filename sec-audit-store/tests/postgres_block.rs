//! The Postgres block store against a real Postgres, one schema per test.

mod common;

use std::sync::{Arc, Barrier};

use common::{clock, new_block, scalar_i64, TestSchema};
use diesel::sql_types::{Integer, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use sec_audit_core::ScopeKey;
use sec_audit_store::{BlockStore, PostgresBlockStore, StoreError};
use serde_json::json;

fn store(schema: &TestSchema) -> PostgresBlockStore {
    let s = PostgresBlockStore::new(&schema.config(), clock()).expect("valid config");
    s.run_migrations().expect("migrations");
    s
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Column {
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Nullable<Integer>)]
    character_maximum_length: Option<i32>,
    #[diesel(sql_type = Text)]
    is_nullable: String,
    #[diesel(sql_type = Nullable<Text>)]
    column_default: Option<String>,
}

/// name, data type, max length, nullable, default.
type ColumnSpec = (String, String, Option<i32>, bool, Option<String>);

#[derive(QueryableByName, Debug)]
struct Index {
    #[diesel(sql_type = Text)]
    indexdef: String,
}

#[test]
fn migrations_run_only_when_asked_and_create_the_specified_table() {
    let schema = TestSchema::new("pg_migrations");
    let s = PostgresBlockStore::new(&schema.config(), clock()).expect("valid config");
    // Building the store ran nothing.
    let mut c = schema.conn();
    let n = scalar_i64(
        &mut c,
        &format!(
            "SELECT count(*)::int8 AS n FROM information_schema.tables WHERE table_schema = '{}'",
            schema.name
        ),
    );
    assert_eq!(n, 0, "no table before run_migrations");
    assert_eq!(
        s.pending_migrations().expect("pending"),
        vec!["2024-01-01-000000_permanent_blocks".to_string()]
    );

    let applied = s.run_migrations().expect("migrations");
    assert_eq!(applied, vec!["20240101000000".to_string()]);
    assert!(
        s.run_migrations().expect("second run").is_empty(),
        "idempotent"
    );
    assert_eq!(
        s.applied_migrations().expect("applied"),
        vec!["20240101000000".to_string()]
    );
    assert!(s.pending_migrations().expect("pending").is_empty());

    let cols: Vec<Column> = diesel::sql_query(format!(
        "SELECT column_name::text AS column_name, data_type::text AS data_type, \
                character_maximum_length::int4 AS character_maximum_length, is_nullable::text AS is_nullable, \
                column_default::text AS column_default \
         FROM information_schema.columns WHERE table_schema = '{}' AND table_name = 'permanent_blocks' \
         ORDER BY ordinal_position",
        schema.name
    ))
    .load(&mut c)
    .expect("columns");
    let got: Vec<ColumnSpec> = cols
        .into_iter()
        .map(|c| {
            (
                c.column_name,
                c.data_type,
                c.character_maximum_length,
                c.is_nullable == "YES",
                c.column_default,
            )
        })
        .collect();
    let vc = "character varying".to_string();
    let tz = "timestamp with time zone".to_string();
    let empty = Some("''::character varying".to_string());
    let expected = vec![
        (
            "id".to_string(),
            "bigint".to_string(),
            None,
            false,
            Some(format!(
                "nextval('{}.permanent_blocks_id_seq'::regclass)",
                schema.name
            )),
        ),
        ("scope_type".into(), vc.clone(), Some(32), false, None),
        ("scope_value".into(), vc.clone(), Some(255), false, None),
        ("reason".into(), vc.clone(), Some(255), false, empty.clone()),
        (
            "rule_name".into(),
            vc.clone(),
            Some(128),
            false,
            empty.clone(),
        ),
        (
            "status_code".into(),
            "smallint".into(),
            None,
            false,
            Some("429".into()),
        ),
        ("message".into(), vc.clone(), Some(255), false, None),
        (
            "metadata".into(),
            "jsonb".into(),
            None,
            false,
            Some("'{}'::jsonb".into()),
        ),
        ("created_at".into(), tz.clone(), None, false, None),
        ("expires_at".into(), tz.clone(), None, true, None),
        ("revoked_at".into(), tz.clone(), None, true, None),
        (
            "revoked_by".into(),
            vc.clone(),
            Some(128),
            false,
            empty.clone(),
        ),
        ("revoked_reason".into(), vc, Some(255), false, empty),
    ];
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        if g.0 == "id" {
            assert_eq!((&g.0, &g.1, g.3), (&e.0, &e.1, e.3));
            assert!(
                g.4.as_deref().is_some_and(|d| d.starts_with("nextval(")),
                "bigserial: {:?}",
                g.4
            );
        } else {
            assert_eq!(g, e);
        }
    }

    let idx: Vec<Index> = diesel::sql_query(format!(
        "SELECT indexdef::text AS indexdef FROM pg_indexes WHERE schemaname = '{}' AND tablename = 'permanent_blocks'",
        schema.name
    ))
    .load(&mut c)
    .expect("indexes");
    let defs: Vec<String> = idx.into_iter().map(|i| i.indexdef).collect();
    let has = |needle: &str| defs.iter().any(|d| d.contains(needle));
    assert!(
        has("PRIMARY KEY") || defs.iter().any(|d| d.contains("permanent_blocks_pkey")),
        "{defs:?}"
    );
    assert!(has("(created_at)"), "{defs:?}");
    assert!(has("(revoked_at)"), "{defs:?}");
    assert!(
        defs.iter().any(|d| d.starts_with("CREATE UNIQUE INDEX")
            && d.contains("(scope_type, scope_value)")
            && d.contains("WHERE (revoked_at IS NULL)")),
        "partial unique index: {defs:?}"
    );
}

#[test]
fn ban_revoke_reban_keeps_the_audit_trail() {
    let schema = TestSchema::new("pg_revoke");
    let s = store(&schema);
    let scope = ScopeKey::new("user", "mallory");
    let mut nb = new_block("user", "mallory", None);
    nb.metadata.insert("failure_count".into(), json!(7));
    let e = s.block(&nb).expect("ban");
    assert!(e.is_permanent());
    assert_eq!(e.status_code, 403);
    assert_eq!(e.metadata["failure_count"], json!(7));
    let got = s.get_active(&scope).expect("read").expect("active");
    assert_eq!(got.reason, "test reason");
    assert!((got.created_at - e.created_at).abs() < 1e-3);

    assert_eq!(
        s.unblock(&scope, "appeal accepted", "ops@example")
            .expect("revoke"),
        1
    );
    assert_eq!(s.unblock(&scope, "again", "ops").expect("revoke twice"), 0);
    assert!(s.get_active(&scope).expect("read").is_none());
    assert!(s.active_blocks(None).expect("list").is_empty());

    let mut c = schema.conn();
    let revoked = scalar_i64(
        &mut c,
        "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE scope_value = 'mallory' AND revoked_at IS NOT NULL \
         AND revoked_by = 'ops@example' AND revoked_reason = 'appeal accepted'",
    );
    assert_eq!(revoked, 1, "revocation is a soft delete");

    s.block(&new_block("user", "mallory", None))
        .expect("re-ban after revoke");
    assert!(s.get_active(&scope).expect("read").is_some());
    assert_eq!(
        scalar_i64(&mut c, "SELECT count(*)::int8 AS n FROM permanent_blocks"),
        2
    );
    assert_eq!(
        scalar_i64(
            &mut c,
            "SELECT count(*)::int8 AS n FROM permanent_blocks WHERE revoked_at IS NULL"
        ),
        1
    );
    assert_eq!(s.active_blocks(Some("user")).expect("list").len(), 1);
    assert!(s.active_blocks(Some("ip")).expect("list").is_empty());
    assert!(s.active_temp_blocks(None).expect("list").is_empty());

    // The trail: both rows, newest first, the revocation with who and why.
    let trail = s
        .trail(&scope, 10)
        .expect("trail")
        .expect("postgres keeps one");
    assert_eq!(trail.len(), 2);
    assert!(trail[0].entry.revoked_at.is_none());
    assert_eq!(trail[0].revoked_by, "");
    assert!(trail[1].entry.revoked_at.is_some());
    assert_eq!(trail[1].revoked_by, "ops@example");
    assert_eq!(trail[1].revoked_reason, "appeal accepted");
    assert_eq!(trail[1].entry.metadata["failure_count"], json!(7));
    assert!(trail[0].entry.created_at >= trail[1].entry.created_at);
    assert_eq!(s.trail(&scope, 1).expect("trail").map(|t| t.len()), Some(1));
    let other = ScopeKey::new("user", "nobody");
    assert_eq!(s.trail(&other, 10).expect("trail"), Some(Vec::new()));
}

#[test]
fn ten_threads_banning_one_scope_leave_one_active_row_and_no_error() {
    let schema = TestSchema::new("pg_concurrent");
    store(&schema);
    // One store (one pool, one open connection) per thread, so the ten
    // upserts really hit the server together.
    let stores: Vec<PostgresBlockStore> = (0..10)
        .map(|_| {
            let s = PostgresBlockStore::new(&schema.config(), clock()).expect("valid config");
            s.get_active(&ScopeKey::new("session", "warm-up"))
                .expect("connect");
            s
        })
        .collect();
    for round in 0..3 {
        let barrier = Arc::new(Barrier::new(stores.len()));
        let handles: Vec<_> = stores
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, s)| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let mut nb = new_block("session", &format!("sess-{round}"), None);
                    nb.reason = format!("worker {i}");
                    barrier.wait();
                    s.block(&nb)
                })
            })
            .collect();
        for h in handles {
            let r = h.join().expect("thread");
            assert!(r.is_ok(), "a concurrent ban failed: {r:?}");
        }
    }
    let mut c = schema.conn();
    for round in 0..3 {
        let active = scalar_i64(
            &mut c,
            &format!("SELECT count(*)::int8 AS n FROM permanent_blocks WHERE scope_value = 'sess-{round}' AND revoked_at IS NULL"),
        );
        assert_eq!(active, 1, "round {round}");
    }
    assert_eq!(
        scalar_i64(&mut c, "SELECT count(*)::int8 AS n FROM permanent_blocks"),
        3
    );
}

#[test]
fn first_active_is_one_query_in_candidate_order() {
    let schema = TestSchema::new("pg_first");
    let s = store(&schema);
    s.block(&new_block("ip", "9.9.9.9", None)).expect("ban");
    s.block(&new_block("session", "s", None)).expect("ban");
    let order = [
        ScopeKey::new("user", "nobody"),
        ScopeKey::new("session", "s"),
        ScopeKey::new("ip", "9.9.9.9"),
    ];
    let before = s.stats();
    assert_eq!(
        s.first_active(&order)
            .expect("read")
            .expect("hit")
            .scope_type,
        "session"
    );
    assert_eq!(s.stats().since(&before).postgres_queries, 1);
    let rev = [
        ScopeKey::new("ip", "9.9.9.9"),
        ScopeKey::new("session", "s"),
    ];
    assert_eq!(
        s.first_active(&rev).expect("read").expect("hit").scope_type,
        "ip"
    );
    assert!(s
        .first_active(&[ScopeKey::new("ip", "1.1.1.1")])
        .expect("read")
        .is_none());
}

#[test]
fn rebanning_updates_the_one_active_row_and_limits_are_enforced() {
    let schema = TestSchema::new("pg_limits");
    let s = store(&schema);
    s.block(&new_block("ip", "8.8.8.8", None)).expect("ban");
    let mut again = new_block("ip", "8.8.8.8", None);
    again.message = "updated".into();
    again.reason = "é".repeat(300);
    let e = s.block(&again).expect("re-ban");
    assert_eq!(e.message, "updated");
    assert_eq!(
        e.reason.chars().count(),
        255,
        "long text is truncated to the column"
    );
    let mut c = schema.conn();
    assert_eq!(
        scalar_i64(&mut c, "SELECT count(*)::int8 AS n FROM permanent_blocks"),
        1
    );

    assert!(
        matches!(
            s.block(&new_block("ip", "x", Some(60))),
            Err(StoreError::Invalid(_))
        ),
        "temp refused"
    );
    let long = "v".repeat(256);
    assert!(matches!(
        s.block(&new_block("ip", &long, None)),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.block(&new_block(&"t".repeat(33), "v", None)),
        Err(StoreError::Invalid(_))
    ));
}
