//! The Redis block store against a real Redis.

mod common;

use common::{clock, new_block, TestRedis};
use sec_audit_core::ScopeKey;
use sec_audit_store::{BlockStore, RedisBlockStore, StoreError};

#[test]
fn entries_are_json_under_the_documented_key_and_every_key_has_a_ttl() {
    let r = TestRedis::new("rblock_keys");
    let s = RedisBlockStore::new(&r.pool, clock(), 3600);
    let temp = s
        .block(&new_block("ip", "1.2.3.4", Some(120)))
        .expect("temp block");
    assert!(temp.expires_at.is_some());
    let perm = s
        .block(&new_block("user", "alice", None))
        .expect("permanent block");
    assert!(perm.is_permanent());

    let temp_key = format!("{}:block:ip:1.2.3.4", r.prefix);
    let perm_key = format!("{}:block:user:alice", r.prefix);
    assert_eq!(s.block_key(&ScopeKey::new("ip", "1.2.3.4")), temp_key);
    let t = r.ttl(&temp_key);
    assert!(
        t > 110 && t <= 120,
        "temp key lives as long as the block: {t}"
    );
    let t = r.ttl(&perm_key);
    assert!(
        t > 3590 && t <= 3600,
        "permanent entry uses permanent_ttl: {t}"
    );
    let raw: String = r.cmd(redis::cmd("GET").arg(&temp_key));
    let v: serde_json::Value = serde_json::from_str(&raw).expect("stored JSON");
    assert_eq!(v["scope_type"], "ip");
    assert_eq!(v["status_code"], 403);
    assert_eq!(r.assert_all_keys_have_ttl(), 2);
}

#[test]
fn first_active_is_one_mget_in_candidate_order() {
    let r = TestRedis::new("rblock_first");
    let s = RedisBlockStore::new(&r.pool, clock(), 3600);
    s.block(&new_block("ip", "1.1.1.1", Some(60)))
        .expect("block");
    s.block(&new_block("user", "u", None)).expect("block");
    let order = [
        ScopeKey::new("session", "none"),
        ScopeKey::new("user", "u"),
        ScopeKey::new("ip", "1.1.1.1"),
    ];
    let before = s.stats();
    let hit = s.first_active(&order).expect("lookup").expect("a block");
    assert_eq!(hit.scope_type, "user");
    assert_eq!(s.stats().since(&before).redis_round_trips, 1);
    let clean = [ScopeKey::new("ip", "2.2.2.2"), ScopeKey::new("user", "v")];
    let before = s.stats();
    assert!(s.first_active(&clean).expect("lookup").is_none());
    assert_eq!(s.stats().since(&before).redis_round_trips, 1);
    assert!(s.first_active(&[]).expect("empty").is_none());

    assert_eq!(
        s.unblock(&ScopeKey::new("user", "u"), "r", "op")
            .expect("unblock"),
        1
    );
    assert_eq!(
        s.unblock(&ScopeKey::new("user", "u"), "r", "op")
            .expect("unblock"),
        0
    );
    assert_eq!(
        s.first_active(&order)
            .expect("lookup")
            .expect("ip")
            .scope_type,
        "ip"
    );
    r.assert_all_keys_have_ttl();
}

#[test]
fn listing_uses_scan_and_splits_temp_from_permanent() {
    let r = TestRedis::new("rblock_list");
    let s = RedisBlockStore::new(&r.pool, clock(), 3600);
    for i in 0..25 {
        s.block(&new_block("ip", &format!("10.0.0.{i}"), Some(300)))
            .expect("block");
    }
    s.block(&new_block("user", "bob", Some(300)))
        .expect("block");
    s.block(&new_block("user", "eve", None)).expect("block");
    assert_eq!(s.active_temp_blocks(None).expect("list").len(), 26);
    assert_eq!(s.active_temp_blocks(Some("ip")).expect("list").len(), 25);
    let users = s.active_temp_blocks(Some("user")).expect("list");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].scope_value, "bob");
    assert!(users[0].expires_at.is_some());
    let perm = s.active_blocks(None).expect("list");
    assert_eq!(perm.len(), 1);
    assert_eq!(perm[0].scope_value, "eve");
    assert!(s.active_blocks(Some("ip")).expect("list").is_empty());
    r.assert_all_keys_have_ttl();
}

#[test]
fn a_corrupt_entry_is_treated_as_absent_and_does_not_hide_other_candidates() {
    let r = TestRedis::new("rblock_corrupt");
    let s = RedisBlockStore::new(&r.pool, clock(), 3600);
    let bad = s.block_key(&ScopeKey::new("user", "x"));
    let _: () = r.cmd(
        redis::cmd("SET")
            .arg(&bad)
            .arg("{not json")
            .arg("EX")
            .arg(60),
    );
    s.block(&new_block("ip", "3.3.3.3", Some(60)))
        .expect("block");
    let order = [ScopeKey::new("user", "x"), ScopeKey::new("ip", "3.3.3.3")];
    let hit = s
        .first_active(&order)
        .expect("no error")
        .expect("the valid block");
    assert_eq!(hit.scope_type, "ip");
    assert!(s
        .get_active(&ScopeKey::new("user", "x"))
        .expect("no error")
        .is_none());
    assert_eq!(s.active_temp_blocks(None).expect("list").len(), 1);
    r.assert_all_keys_have_ttl();
}

#[test]
fn invalid_blocks_are_refused_before_any_round_trip() {
    let r = TestRedis::new("rblock_invalid");
    let s = RedisBlockStore::new(&r.pool, clock(), 3600);
    assert!(matches!(
        s.block(&new_block("ip", "", None)),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.block(&new_block("ip", "x", Some(0))),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(s.stats().redis_round_trips, 0);
}
