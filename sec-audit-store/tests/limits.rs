//! The same `NewBlock` is accepted or refused alike by every store, and
//! stored with the same bounded text (`sec_audit_store::limits`).

mod common;

use std::sync::Arc;

use common::{new_block, TestRedis, TestSchema};
use sec_audit_core::ScopeKey;
use sec_audit_core::{Clock, ManualClock};
use sec_audit_store::limits::{
    MAX_MESSAGE_CHARS, MAX_REASON_CHARS, MAX_RULE_NAME_CHARS, MAX_SCOPE_VALUE_CHARS,
};
use sec_audit_store::{
    BlockEntry, BlockStore, MemoryBlockStore, NewBlock, PostgresBlockStore, RedisBlockStore,
    TieredBlockStore, TieredOptions,
};
use serde_json::json;

#[test]
fn every_store_refuses_and_truncates_alike() {
    let redis = TestRedis::new("limits");
    let schema = TestSchema::new("limits");
    // Whole seconds: Postgres keeps microseconds, the entries must compare.
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_secs(1_780_000_000.0));
    let pg = PostgresBlockStore::new(&schema.config(), clock.clone()).expect("pg config");
    pg.run_migrations().expect("migrations");
    let tiered_redis = TestRedis::new("limits_tiered");
    let stores: Vec<(&str, Box<dyn BlockStore>)> = vec![
        ("memory", Box::new(MemoryBlockStore::new(clock.clone()))),
        (
            "redis",
            Box::new(RedisBlockStore::new(&redis.pool, clock.clone(), 3600)),
        ),
        ("postgres", Box::new(pg.clone())),
        (
            "tiered",
            Box::new(TieredBlockStore::new(
                &tiered_redis.pool,
                PostgresBlockStore::new(&schema.config(), clock.clone()).expect("pg config"),
                clock.clone(),
                TieredOptions::default(),
            )),
        ),
    ];

    let refused: Vec<NewBlock> = vec![
        new_block("user", &"u".repeat(MAX_SCOPE_VALUE_CHARS + 1), None),
        new_block("user", "nul\0inside", None),
        new_block("user", "", None),
        new_block(&"t".repeat(33), "v", None),
    ];
    let mut long = new_block("user", &"é".repeat(MAX_SCOPE_VALUE_CHARS), None);
    long.reason = "r".repeat(400);
    long.message = "m\0".repeat(400);
    long.rule_name = "ñ".repeat(200);
    long.metadata.insert("note".into(), json!("a\0b"));

    let mut stored: Vec<(&str, BlockEntry)> = Vec::new();
    for (name, store) in &stores {
        for bad in &refused {
            let e = store.block(bad).expect_err(name);
            assert_eq!(e.kind(), "invalid_request", "{name}: {:?}", bad.scope);
        }
        let e = store
            .unblock(&ScopeKey::new("user", "nul\0inside"), "r", "t")
            .expect_err(name);
        assert_eq!(e.kind(), "invalid_request", "{name}");
        let entry = store.block(&long).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(entry.reason.chars().count(), MAX_REASON_CHARS, "{name}");
        assert_eq!(entry.message, "m".repeat(MAX_MESSAGE_CHARS), "{name}");
        assert_eq!(entry.rule_name, "ñ".repeat(MAX_RULE_NAME_CHARS), "{name}");
        assert_eq!(entry.metadata["note"], json!("ab"), "{name}");
        let read = store
            .get_active(&long.scope)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .unwrap_or_else(|| panic!("{name}: stored"));
        assert_eq!(read, entry, "{name}: read back as written");
        // A lookup naming an unstorable scope is simply not blocked.
        assert!(store
            .first_active(&[ScopeKey::new("user", "nul\0inside")])
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .is_none());
        stored.push((name, entry));
        if *name == "postgres" {
            // The tiered store shares this schema's table.
            pg.unblock(&long.scope, "next", "test").expect("revoke");
        }
    }
    let (first, reference) = &stored[0];
    for (name, e) in &stored[1..] {
        assert_eq!(
            (&e.reason, &e.message, &e.rule_name, &e.metadata),
            (
                &reference.reason,
                &reference.message,
                &reference.rule_name,
                &reference.metadata
            ),
            "{name} and {first} store the same text"
        );
    }
    redis.assert_all_keys_have_ttl();
    tiered_redis.assert_all_keys_have_ttl();
}
