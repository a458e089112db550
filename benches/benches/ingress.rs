//! The ingress check (`Runtime::ingress_check`) of a clean request: no
//! block, and no ingress-safe rule whose path filter admits the request.
//!
//! - `ingress_memory`: memory stores. `clean` uses the quickstart built-ins
//!   with `repeated_route` scoped to a monitored route (`paths =
//!   ["^/api/export"]`), so no ingress rule applies to the request;
//!   `clean_1k_blocks` is the same with 1 000 other scopes blocked;
//!   `clean_safelist_1k` with a safelist of 1 000 networks and 100 users
//!   and sessions, none the request's;
//!   `clean_quickstart` uses the quickstart as it is, where the unscoped
//!   `repeated_route` counts every request (from 4 096 addresses, none
//!   reaching its threshold).
//! - `ingress_tiered`: the tiered store over the real Redis and Postgres
//!   with 0, 1 000 and 100 000 active permanent bans (fewer in criterion's
//!   test mode), each next to a bare Redis `GET` round trip through the same
//!   `RedisPool` — the reference of the ≤ 1.3× target. The two alternate
//!   call by call and each benchmark times its own side, so both see the
//!   same machine.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sec_audit_benches::servers::tiered_store;
use sec_audit_benches::{
    alternating, full_run, human, BenchRedis, BenchSchema, QUICKSTART_BUILTINS,
};
use sec_audit_core::{Clock, ManualClock, SystemClock};
use sec_audit_enforce::{Config, IngressDecision, ManualBlock, RequestView, Runtime, Sink, Stores};
use sec_audit_store::{RedisCounters, RedisHistory};

/// [`QUICKSTART_BUILTINS`] with `repeated_route` watching one monitored
/// route instead of every path.
pub fn scoped_config() -> Config {
    let text = QUICKSTART_BUILTINS.replace(
        "builtin = \"repeated_route\"\n",
        "builtin = \"repeated_route\"\npaths = [\"^/api/export\"]\n",
    );
    assert_ne!(text, QUICKSTART_BUILTINS, "repeated_route entry not found");
    Config::from_toml_str(&text).expect("bench configuration")
}

fn clean_request() -> RequestView<'static> {
    RequestView {
        method: Cow::Borrowed("GET"),
        path: Cow::Borrowed("/api/accounts/42/"),
        peer_addr: Cow::Borrowed("198.51.100.7"),
        forwarded_for: None,
        user_id: Some(Cow::Borrowed("1042")),
        session_id: Some(Cow::Borrowed("sess-5f3a9c21")),
        request_id: Some(Cow::Borrowed("req-1-000001")),
        body: None,
    }
}

fn memory_runtime(config: Config) -> Runtime {
    Runtime::builder(config)
        .sink(Sink::Writer(Box::new(std::io::sink())))
        .build()
        .expect("runtime on memory stores")
}

fn ingress_memory(c: &mut Criterion) {
    let req = clean_request();
    let mut group = c.benchmark_group("ingress_memory");
    let scoped = memory_runtime(scoped_config());
    assert_eq!(scoped.ingress_check(&req), IngressDecision::Allow);
    group.bench_function("clean", |b| {
        b.iter(|| std::hint::black_box(scoped.ingress_check(std::hint::black_box(&req))))
    });
    // The same with a safelist of 1 000 networks (IPv4 and IPv6) and 100
    // users and sessions, none of them the request's: the cost of the
    // safelist on a clean request.
    let mut listed = scoped_config();
    listed.safelist = sec_audit_benches::safelist_1k();
    let listed = memory_runtime(listed);
    assert_eq!(listed.ingress_check(&req), IngressDecision::Allow);
    group.bench_function("clean_safelist_1k", |b| {
        b.iter(|| std::hint::black_box(listed.ingress_check(std::hint::black_box(&req))))
    });
    // The same with 1 000 active blocks in the store (ip, user and session
    // scopes, none of them the request's).
    let busy = memory_runtime(scoped_config());
    for i in 0..1_000u32 {
        let (scope_type, value) = match i % 4 {
            0 | 1 => ("ip", format!("10.9.{}.{}", i / 250, i % 250)),
            2 => ("user", format!("blocked-user-{i}")),
            _ => ("session", format!("blocked-session-{i}")),
        };
        busy.block(&ManualBlock {
            scope_type: scope_type.into(),
            value,
            ttl: if i % 2 == 0 { Some(86_400) } else { None },
            reason: "bench".into(),
            ..ManualBlock::default()
        })
        .expect("memory block");
    }
    assert_eq!(busy.ingress_check(&req), IngressDecision::Allow);
    group.bench_function("clean_1k_blocks", |b| {
        b.iter(|| std::hint::black_box(busy.ingress_check(std::hint::black_box(&req))))
    });
    // The quickstart as it is: the unscoped repeated_route counts every
    // request. Requests come from 4 096 addresses, 2 ms apart, so none
    // reaches its threshold (40 in 60 s) and every request stays clean.
    let clock = Arc::new(ManualClock::new(sec_audit_benches::START_NS));
    let quickstart = Runtime::builder(Config::from_toml_str(QUICKSTART_BUILTINS).expect("config"))
        .clock(clock.clone())
        .sink(Sink::Writer(Box::new(std::io::sink())))
        .build()
        .expect("runtime on memory stores");
    let peers: Vec<String> = (0..4096u32)
        .map(|i| format!("198.51.{}.{}", 100 + i / 250, 1 + i % 250))
        .collect();
    let requests: Vec<RequestView<'_>> = peers
        .iter()
        .map(|p| RequestView {
            peer_addr: Cow::Borrowed(p.as_str()),
            ..clean_request()
        })
        .collect();
    let mut i = 0usize;
    group.bench_function("clean_quickstart", |b| {
        b.iter(|| {
            clock.advance_secs(0.002);
            let r = &requests[i % requests.len()];
            i += 1;
            let d = quickstart.ingress_check(r);
            debug_assert_eq!(d, IngressDecision::Allow);
            std::hint::black_box(d)
        })
    });
    group.finish();
}

fn ingress_tiered(c: &mut Criterion) {
    let full = full_run();
    // Test mode still runs against the real servers, with a smaller ban list.
    // (single bans, ranges, label): the last level adds 1 000 ranges
    // (ip blocks on CIDRs, two prefix lengths) to the single bans.
    let levels: [(i64, i64, &str); 4] = if full {
        [
            (0, 0, "0_bans"),
            (1_000, 0, "1k_bans"),
            (100_000, 0, "100k_bans"),
            (100_000, 1_000, "100k_bans_1k_ranges"),
        ]
    } else {
        [
            (0, 0, "0_bans"),
            (1_000, 0, "1k_bans"),
            (5_000, 0, "100k_bans"),
            (5_000, 1_000, "100k_bans_1k_ranges"),
        ]
    };
    let redis = BenchRedis::new("ingress");
    let schema = BenchSchema::new("ingress");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(tiered_store(&redis, &schema, Arc::clone(&clock)));
    let stores = Stores {
        counters: Arc::new(RedisCounters::new(&redis.pool)),
        history: Arc::new(RedisHistory::new(&redis.pool)),
        blocks: store.clone(),
    };
    let runtime = Runtime::builder(scoped_config())
        .clock(Arc::clone(&clock))
        .sink(Sink::Writer(Box::new(std::io::sink())))
        .stores(stores)
        .build()
        .expect("runtime on the tiered store");
    let req = clean_request();
    let get_key = redis.key("block:ip:192.0.2.1");

    let mut group = c.benchmark_group("ingress_tiered");
    let mut banned = 0i64;
    let mut ranged = 0i64;
    for (target, ranges, label) in levels {
        if target > banned {
            let t = Instant::now();
            schema.bulk_ban(banned, target);
            banned = target;
            eprintln!(
                "ingress_tiered: {target} bans inserted in {}",
                human(t.elapsed())
            );
        }
        if ranges > ranged {
            schema.bulk_ban_ranges(ranges);
            ranged = ranges;
        }
        let t = Instant::now();
        let members = store
            .rebuild_mirror()
            .unwrap_or_else(|e| panic!("mirror rebuild at {target} bans failed: {e}"));
        assert_eq!(members as i64, target + ranges, "mirror holds every ban");
        // The first lookup after new prefix lengths appeared learns them
        // (a second round trip, once).
        runtime.ingress_check(&req);
        eprintln!("ingress_tiered: mirror rebuilt in {}", human(t.elapsed()));
        assert_eq!(
            runtime.ingress_check(&req),
            IngressDecision::Allow,
            "a clean request is allowed"
        );
        let before = store.stats();
        for _ in 0..10 {
            runtime.ingress_check(&req);
        }
        let cost = store.stats().since(&before);
        assert_eq!(
            (cost.redis_round_trips, cost.postgres_queries),
            (10, 0),
            "one Redis round trip and no Postgres query per clean request at {target} bans"
        );

        // The two sides alternate call by call; each benchmark times its own
        // side (see `alternating`), so the ratio holds on a noisy machine.
        let get = || {
            std::hint::black_box(redis.pool.get_raw(&get_key).ok());
        };
        let check = || {
            std::hint::black_box(runtime.ingress_check(std::hint::black_box(&req)));
        };
        group.bench_function(BenchmarkId::new("redis_get", label), |b| {
            b.iter_custom(|iters| alternating(iters, 1, get, check))
        });
        group.bench_function(BenchmarkId::new("ingress_check", label), |b| {
            b.iter_custom(|iters| alternating(iters, 1, check, get))
        });
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ingress_memory, ingress_tiered
}
criterion_main!(benches);
