//! Replay follows the log's clock whatever the stores: the same log and
//! configuration replayed in memory, through Redis (a scratch `key_prefix`)
//! and through the tiered store (Redis + a scratch Postgres schema) print
//! byte-identical enforcement records.
//!
//! Needs Redis at `SEC_AUDIT_TEST_REDIS_URL`, Postgres at
//! `SEC_AUDIT_TEST_DATABASE_URL`, the example plugin built by
//! `cargo xtask plugins`, and `gzip` on `PATH` for the compressed fixture; a
//! missing one fails the test, naming it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

/// `examples/quickstart.toml` with its plugin path made absolute and
/// `extra` settings in front.
fn config(dir: &TempDir, name: &str, extra: &str) -> PathBuf {
    let plugins = root().join("target/plugins");
    assert!(
        plugins.join("librepeated_not_found.so").exists(),
        "{} is missing: examples/quickstart.toml loads it; build it with `cargo xtask plugins` (scripts/test.sh does)",
        plugins.join("librepeated_not_found.so").display()
    );
    let text = std::fs::read_to_string(example("quickstart.toml"))
        .unwrap_or_else(|e| panic!("cannot read examples/quickstart.toml: {e}"));
    let text = text.replace("\"../target/plugins/", &format!("\"{}/", s(&plugins)));
    dir.write(name, &format!("{extra}\n{text}"))
}

fn replay(config: &Path, log: &Path) -> Vec<u8> {
    let out = run(&["replay", "--config", s(config), s(log)]);
    expect_code(&out, 0);
    out.stdout
}

/// Replays `log` in memory, through Redis and through the tiered store, and
/// asserts byte-identical records; returns them.
fn assert_parity(test: &str, log: &Path) -> String {
    let dir = TempDir::new(test);
    let memory = replay(&config(&dir, "memory.toml", ""), log);

    let redis = RedisPrefix::new(test);
    let redis_conf = config(
        &dir,
        "redis.toml",
        &format!(
            "redis_url = \"{}\"\nkey_prefix = \"{}\"",
            redis_url(),
            redis.prefix
        ),
    );
    let through_redis = replay(&redis_conf, log);

    let tiered_prefix = RedisPrefix::new(&format!("{test}_tiered"));
    let schema = Schema::new(test);
    let tiered_conf = config(
        &dir,
        "tiered.toml",
        &format!(
            "redis_url = \"{}\"\nkey_prefix = \"{}\"\ndatabase_url = \"{}\"",
            redis_url(),
            tiered_prefix.prefix,
            schema.url()
        ),
    );
    expect_code(&run(&["migrate", "--config", s(&tiered_conf)]), 0);
    let tiered = replay(&tiered_conf, log);

    let text = String::from_utf8_lossy(&memory).into_owned();
    for (name, other) in [("redis", &through_redis), ("tiered", &tiered)] {
        if *other != memory {
            let other = String::from_utf8_lossy(other);
            let first = text
                .lines()
                .zip(other.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(text.lines().count().min(other.lines().count()));
            panic!(
                "{test}: replay through {name} differs from memory ({} vs {} records); first difference at record {}:\n memory: {}\n {name}: {}",
                text.lines().count(),
                other.lines().count(),
                first + 1,
                text.lines().nth(first).unwrap_or("<none>"),
                other.lines().nth(first).unwrap_or("<none>"),
            );
        }
    }
    text
}

fn blocks_applied(records: &str) -> usize {
    records
        .lines()
        .filter(|l| l.contains("\"audit.enforcement.block_applied\""))
        .count()
}

#[test]
fn the_sample_replays_alike_in_memory_through_redis_and_tiered() {
    let out = assert_parity("parity_sample", &example("sample-audit.jsonl"));
    assert!(
        blocks_applied(&out) > 50 && out.lines().count() > 500,
        "the sample's attackers are found: {} records",
        out.lines().count()
    );
}

#[test]
fn a_generated_stream_spanning_many_windows_replays_alike_on_every_store() {
    let fixture = root().join("sec-audit-cli/tests/fixtures/seed11-stretched.jsonl.gz");
    let dir = TempDir::new("parity_gen");
    let log = dir.path("seed11.jsonl");
    let file = std::fs::File::create(&log)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let status = Command::new("gzip")
        .arg("-dc")
        .arg(&fixture)
        .stdout(file)
        .stderr(Stdio::inherit())
        .status()
        .unwrap_or_else(|e| panic!("`gzip` is required to unpack {}: {e}", fixture.display()));
    assert!(status.success(), "gzip -dc {} failed", fixture.display());
    let out = assert_parity("parity_gen", &log);
    assert!(
        blocks_applied(&out) > 100,
        "the stream's attackers are blocked"
    );
    // Windows close within the log: brute force is found in bursts only.
    let brute = out
        .lines()
        .filter(|l| l.contains("block_applied") && l.contains("\"brute_force_login\""))
        .count();
    assert!((1..=20).contains(&brute), "{brute} brute-force blocks");
}

/// Six failed logins ten minutes apart (300 s window, threshold 5) from
/// each of ten addresses never block; six within a minute do.
#[test]
fn failed_logins_spread_beyond_the_window_never_block_on_any_store() {
    let dir = TempDir::new("parity_spread");
    let mut lines = Vec::new();
    let t0 = 1_780_000_000_000_000_000i64;
    let mut n = 0;
    for i in 0..6 {
        for ip in 0..10 {
            n += 1;
            lines.push(json!({"timestamp": t0 + (i * 600 + ip) * 1_000_000_000,
                "attributes": {"event_type": "auth.login.failed", "request_id": format!("r{n}"),
                    "source.address": format!("198.51.100.{ip}"), "user.name": "alice"}}));
        }
    }
    let t1 = t0 + 4_000 * 1_000_000_000;
    for i in 0..6 {
        n += 1;
        lines.push(json!({"timestamp": t1 + i * 10 * 1_000_000_000,
            "attributes": {"event_type": "auth.login.failed", "request_id": format!("r{n}"),
                "source.address": "203.0.113.77", "user.name": "bob"}}));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let log = dir.write("spread.jsonl", &text);
    let out = assert_parity("parity_spread", &log);
    let blocked: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("block_applied"))
        .collect();
    assert_eq!(blocked.len(), 1, "only the burst blocks: {blocked:?}");
    assert!(blocked[0].contains("203.0.113.77"), "{}", blocked[0]);
}
