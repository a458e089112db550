//! Redis detection state against a real Redis.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestRedis;
use sec_audit_core::{Clock, ManualClock};
use sec_audit_core::{Counters, HistoryRetention, HistoryRow, HistoryStore, ScopeKey};
use sec_audit_rules::MemoryCounters;
use sec_audit_store::{RedisCounters, RedisHistory, DEFAULT_COUNTER_TTL};
use serde_json::{json, Map, Value};

#[test]
fn counter_incr_is_one_atomic_script_with_a_fixed_window_ttl() {
    let r = TestRedis::new("ctr_incr");
    let c = RedisCounters::new(&r.pool);
    let key = c.redis_key("bf:1.2.3.4");
    assert_eq!(key, format!("{}:ctr:bf:1.2.3.4", r.prefix));

    assert_eq!(c.incr("bf:1.2.3.4", 1, Some(2)), 1);
    let pttl1: i64 = r.cmd(redis::cmd("PTTL").arg(&key));
    assert!(pttl1 > 0 && pttl1 <= 2000, "{pttl1}");
    std::thread::sleep(Duration::from_millis(300));
    let before = c.stats();
    assert_eq!(c.incr("bf:1.2.3.4", 4, Some(2)), 5);
    assert_eq!(
        c.stats().since(&before).redis_round_trips,
        1,
        "incr + TTL is one round trip"
    );
    let pttl2: i64 = r.cmd(redis::cmd("PTTL").arg(&key));
    assert!(
        pttl2 < pttl1 - 200,
        "a later hit must not extend the window ({pttl1} -> {pttl2})"
    );
    assert_eq!(c.get_int("bf:1.2.3.4", 0), 5);

    // The window ends at t + w: the next incr starts a new one at `amount`.
    std::thread::sleep(Duration::from_millis(pttl2 as u64 + 100));
    assert_eq!(c.get_int("bf:1.2.3.4", -1), -1);
    assert_eq!(c.incr("bf:1.2.3.4", 3, Some(2)), 3);
    assert!(r.ttl(&key) > 0);

    // No TTL given: the documented default, never none.
    assert_eq!(c.incr("no-ttl", 1, None), 1);
    let t = r.ttl(&c.redis_key("no-ttl"));
    assert!(
        t > DEFAULT_COUNTER_TTL as i64 - 10 && t <= DEFAULT_COUNTER_TTL as i64,
        "{t}"
    );

    // A key that somehow lacks a TTL is repaired by the next incr.
    let bare = c.redis_key("bare");
    let _: () = r.cmd(
        redis::cmd("HSET")
            .arg(&bare)
            .arg("v")
            .arg(7)
            .arg("x")
            .arg(""),
    );
    assert_eq!(r.ttl(&bare), -1);
    assert_eq!(c.incr("bare", 1, Some(60)), 8);
    assert!(r.ttl(&bare) > 0);

    // A counter in an older format (a plain integer) starts again.
    let old = c.redis_key("old");
    let _: () = r.cmd(redis::cmd("SET").arg(&old).arg(7));
    assert_eq!(c.incr("old", 2, Some(60)), 2);
    assert!(r.ttl(&old) > 0);

    r.assert_all_keys_have_ttl();
}

#[test]
fn counter_incr_is_atomic_across_threads() {
    let r = TestRedis::new("ctr_threads");
    let c = Arc::new(RedisCounters::new(&r.pool));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    c.incr("shared", 1, Some(60));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    assert_eq!(c.get_int("shared", 0), 800);
    let t = r.ttl(&c.redis_key("shared"));
    assert!(t > 0 && t <= 60, "{t}");
    r.assert_all_keys_have_ttl();
}

#[test]
fn counter_set_get_delete_expire() {
    let r = TestRedis::new("ctr_ops");
    let c = RedisCounters::new(&r.pool).with_default_ttl(500);
    c.set("a", 42, Some(30));
    assert_eq!(c.get_int("a", 0), 42);
    assert!(r.ttl(&c.redis_key("a")) <= 30);
    c.set("b", 1, None);
    let t = r.ttl(&c.redis_key("b"));
    assert!(t > 490 && t <= 500, "default TTL applies to set: {t}");
    c.expire("a", 100);
    assert!(r.ttl(&c.redis_key("a")) > 30);
    c.delete("a");
    assert_eq!(c.get_int("a", 7), 7);
    c.expire("a", 5); // missing key: nothing happens
    assert_eq!(c.get_int("a", 7), 7);
    c.expire("b", 0); // like the memory store: gone from now
    assert_eq!(c.get_int("b", -3), -3);
    // A value that is not an integer reads as the default.
    let _: () = r.cmd(
        redis::cmd("SET")
            .arg(c.redis_key("junk"))
            .arg("x1")
            .arg("EX")
            .arg(60),
    );
    assert_eq!(c.get_int("junk", 9), 9);
    r.assert_all_keys_have_ttl();
}

#[test]
fn counter_windows_follow_the_runtime_clock_not_the_wall_clock() {
    let r = TestRedis::new("ctr_clock");
    let clock = Arc::new(ManualClock::at_secs(1_780_000_000.0));
    let c = RedisCounters::new(&r.pool).with_clock(clock.clone());
    let m = MemoryCounters::new(clock.clone());
    // Six failed logins ten minutes apart, in a 300 s window: never six.
    for _ in 0..6 {
        let (redis, memory) = (c.incr("bf", 1, Some(300)), m.incr("bf", 1, Some(300)));
        assert_eq!((redis, memory), (1, 1));
        clock.advance_secs(600.0);
    }
    // Six within the window count up; the window is fixed at its first hit.
    for i in 1..=6 {
        assert_eq!(c.incr("burst", 1, Some(300)), i);
        clock.advance_secs(10.0);
    }
    assert_eq!(c.get_int("burst", 0), 6);
    clock.advance_secs(300.0 - 60.0 - 0.001);
    assert_eq!(c.get_int("burst", 0), 6, "still inside [t, t + 300)");
    clock.advance_secs(0.001);
    assert_eq!(c.get_int("burst", -1), -1, "gone at exactly t + 300");
    assert_eq!(c.incr("burst", 1, Some(300)), 1);
    // The key's TTL stays a wall-clock safety bound of the window.
    let t = r.ttl(&c.redis_key("burst"));
    assert!(t > 290 && t <= 300, "{t}");
    r.assert_all_keys_have_ttl();
}

/// Pseudo-random operations, the same on the Redis and the memory
/// counters under one manual clock: the same answers.
#[test]
fn redis_counters_answer_like_memory_counters_under_a_manual_clock() {
    let r = TestRedis::new("ctr_parity");
    let clock = Arc::new(ManualClock::at_secs(1_700_000_000.25));
    let c = RedisCounters::new(&r.pool).with_clock(clock.clone());
    let m = MemoryCounters::new(clock.clone());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..600 {
        let key = format!("k{}", next(4));
        let ttl = match next(4) {
            0 => None,
            n => Some(n * 20),
        };
        let (a, b) = match next(10) {
            0..=4 => {
                let amount = next(3) as i64 + 1;
                (c.incr(&key, amount, ttl), m.incr(&key, amount, ttl))
            }
            5 | 6 => (c.get_int(&key, -7), m.get_int(&key, -7)),
            7 => {
                let v = next(100) as i64;
                c.set(&key, v, ttl);
                m.set(&key, v, ttl);
                (0, 0)
            }
            8 => {
                let t = next(3) * 15;
                c.expire(&key, t);
                m.expire(&key, t);
                (0, 0)
            }
            _ => {
                c.delete(&key);
                m.delete(&key);
                (0, 0)
            }
        };
        assert_eq!(a, b, "step {step} on {key} at {}", clock.now());
        clock.advance_secs(next(25) as f64 + 0.5);
    }
    r.assert_all_keys_have_ttl();
}

fn row(t: f64, ty: &str) -> HistoryRow {
    let mut m = Map::new();
    m.insert("event_type".into(), json!(ty));
    m.insert("recorded_at".into(), Value::from(t));
    m.insert("srcip".into(), json!("1.2.3.4"));
    Arc::new(m.into())
}

fn times(rows: &[HistoryRow]) -> Vec<f64> {
    rows.iter()
        .map(|r| r["recorded_at"].as_f64().unwrap_or(f64::NAN))
        .collect()
}

#[test]
fn history_append_prunes_trims_and_query_filters_newest_first() {
    let r = TestRedis::new("hist_basic");
    let h = RedisHistory::new(&r.pool);
    let key = ScopeKey::new("ip", "1.2.3.4");
    assert_eq!(h.redis_key(&key), format!("{}:hist:ip:1.2.3.4", r.prefix));
    let ret = HistoryRetention {
        window_seconds: 100.0,
        max_events_per_key: 3,
    };
    for (i, t) in [1000.0, 1010.0, 1020.0, 1030.0].iter().enumerate() {
        let ty = if i % 2 == 0 { "a" } else { "b" };
        h.append(std::slice::from_ref(&key), *t, row(*t, ty), &ret);
    }
    assert_eq!(
        times(&h.query(&key, 0.0, None, 10)),
        vec![1030.0, 1020.0, 1010.0],
        "trimmed to the newest 3"
    );
    assert_eq!(
        times(&h.query(&key, 0.0, Some(&["a".to_string()]), 10)),
        vec![1020.0]
    );
    assert_eq!(
        times(&h.query(&key, 0.0, Some(&["b".to_string()]), 10)),
        vec![1030.0, 1010.0]
    );
    assert_eq!(
        times(&h.query(&key, 1020.0, None, 10)),
        vec![1030.0],
        "strictly newer than since"
    );
    assert_eq!(times(&h.query(&key, 0.0, None, 2)), vec![1030.0, 1020.0]);
    assert!(h.query(&key, 0.0, None, 0).is_empty());
    assert!(h
        .query(&ScopeKey::new("ip", "9.9.9.9"), 0.0, None, 10)
        .is_empty());

    // A row at exactly recorded_at - window goes on the next append.
    h.append(std::slice::from_ref(&key), 1120.0, row(1120.0, "a"), &ret);
    assert_eq!(times(&h.query(&key, 0.0, None, 10)), vec![1120.0, 1030.0]);

    // Summary content survives the round trip.
    let got = h.query(&key, 1100.0, None, 1);
    assert_eq!(got[0]["srcip"], json!("1.2.3.4"));
    assert_eq!(got[0]["event_type"], json!("a"));

    let ttl = r.ttl(&h.redis_key(&key));
    assert!(ttl > 150 && ttl <= 160, "window + 60 s: {ttl}");
    r.assert_all_keys_have_ttl();
}

#[test]
fn history_append_to_every_scope_key_is_one_round_trip() {
    let r = TestRedis::new("hist_onetrip");
    let h = RedisHistory::new(&r.pool);
    let keys = [
        ScopeKey::new("user", "42"),
        ScopeKey::new("session", "s-1"),
        ScopeKey::new("ip", "10.0.0.1"),
        ScopeKey::new("route", "/a/{id}"),
    ];
    let ret = HistoryRetention::default();
    // The first call may load the script (one extra round trip, once).
    h.append(&keys, 100.0, row(100.0, "x"), &ret);
    let before = h.stats();
    h.append(&keys, 101.0, row(101.0, "x"), &ret);
    assert_eq!(
        h.stats().since(&before).redis_round_trips,
        1,
        "one round trip for four scope keys"
    );
    for k in &keys {
        assert_eq!(times(&h.query(k, 0.0, None, 10)), vec![101.0, 100.0], "{k}");
    }
    assert_eq!(r.assert_all_keys_have_ttl(), 4);
}

#[test]
fn history_rows_at_the_same_instant_do_not_collapse() {
    let r = TestRedis::new("hist_same");
    let h = RedisHistory::new(&r.pool);
    let k = ScopeKey::new("user", "u");
    let ret = HistoryRetention::default();
    let same = row(5000.0, "a");
    for _ in 0..3 {
        h.append(std::slice::from_ref(&k), 5000.0, same.clone(), &ret);
    }
    assert_eq!(h.query(&k, 0.0, None, 10).len(), 3);
    let n: i64 = r.cmd(redis::cmd("ZCARD").arg(h.redis_key(&k)));
    assert_eq!(n, 3);
    r.assert_all_keys_have_ttl();
}

#[test]
fn history_rows_that_do_not_parse_are_skipped() {
    let r = TestRedis::new("hist_junk");
    let h = RedisHistory::new(&r.pool);
    let k = ScopeKey::new("ip", "5.5.5.5");
    let ret = HistoryRetention::default();
    h.append(std::slice::from_ref(&k), 10.0, row(10.0, "a"), &ret);
    let zkey = h.redis_key(&k);
    let _: i64 = r.cmd(redis::cmd("ZADD").arg(&zkey).arg(11).arg("no separator"));
    let _: i64 = r.cmd(redis::cmd("ZADD").arg(&zkey).arg(12).arg("id|{not json"));
    let _: i64 = r.cmd(redis::cmd("ZADD").arg(&zkey).arg(13).arg("id|[1,2,3]"));
    h.append(std::slice::from_ref(&k), 14.0, row(14.0, "a"), &ret);
    assert_eq!(times(&h.query(&k, 0.0, None, 10)), vec![14.0, 10.0]);
    assert_eq!(
        times(&h.query(&k, 0.0, Some(&["a".to_string()]), 10)),
        vec![14.0, 10.0]
    );
    r.assert_all_keys_have_ttl();
}

#[test]
fn history_type_filter_reads_past_a_page_of_other_types() {
    let r = TestRedis::new("hist_pages");
    let h = RedisHistory::new(&r.pool);
    let k = ScopeKey::new("ip", "7.7.7.7");
    let ret = HistoryRetention {
        window_seconds: 10_000.0,
        max_events_per_key: 500,
    };
    h.append(std::slice::from_ref(&k), 1.0, row(1.0, "rare"), &ret);
    for i in 0..200 {
        let t = 2.0 + i as f64;
        h.append(std::slice::from_ref(&k), t, row(t, "common"), &ret);
    }
    let got = h.query(&k, 0.0, Some(&["rare".to_string()]), 1);
    assert_eq!(times(&got), vec![1.0]);
    assert_eq!(
        h.query(&k, 0.0, Some(&["common".to_string()]), 150).len(),
        150
    );
    r.assert_all_keys_have_ttl();
}

#[test]
fn history_members_are_the_json_of_the_summary_map() {
    // The bytes written to Redis are those of the row's JSON object (keys
    // sorted, numbers as `serde_json` writes them), whatever the row type.
    let r = TestRedis::new("hist_bytes");
    let h = RedisHistory::new(&r.pool);
    let k = ScopeKey::new("ip", "6.6.6.6");
    let m = json!({"event_type": "http.response", "srcip": "6.6.6.6", "status": 404,
        "recorded_at": 1700000000.25, "route": "/a/{id}",
        "rule_attrs": {"resource_enumeration": {"route": "/a/{id}", "path": "/a/1"}},
        "actor": {"id": 1, "name": "n"}});
    let m = m.as_object().cloned().unwrap_or_default();
    h.append(
        std::slice::from_ref(&k),
        1700000000.25,
        Arc::new(m.clone().into()),
        &HistoryRetention::default(),
    );
    let members: Vec<String> = r.cmd(redis::cmd("ZRANGE").arg(h.redis_key(&k)).arg(0).arg(-1));
    assert_eq!(members.len(), 1);
    let json = members[0].split_once('|').map(|(_, j)| j.to_string());
    assert_eq!(json, Some(serde_json::to_string(&m).unwrap()));
    let back = h.query(&k, 0.0, None, 10);
    assert_eq!(back[0].to_json_map(), m);
    assert_eq!(back[0].recorded_at(), 1700000000.25);
}
