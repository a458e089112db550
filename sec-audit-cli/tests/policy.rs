//! The safelist and escalating bans from the shell: the quick start's
//! sample no longer blocks its NAT address, `blocks add` refuses a
//! safelisted subject, `check --live` warns about one that is blocked
//! (W006), and a replay escalates on the log's clock alike in memory,
//! through Redis and through the tiered store.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{json, Value};

const NAT: &str = "192.0.2.214";

/// `examples/quickstart.toml` with its plugin path made absolute.
fn quickstart(dir: &TempDir) -> PathBuf {
    let plugins = root().join("target/plugins");
    assert!(
        plugins.join("librepeated_not_found.so").exists(),
        "{} is missing: examples/quickstart.toml loads it; build it with `cargo xtask plugins` (scripts/test.sh does)",
        plugins.join("librepeated_not_found.so").display()
    );
    let text = std::fs::read_to_string(example("quickstart.toml"))
        .unwrap_or_else(|e| panic!("cannot read examples/quickstart.toml: {e}"));
    dir.write(
        "quickstart.toml",
        &text.replace("\"../target/plugins/", &format!("\"{}/", s(&plugins))),
    )
}

#[test]
fn the_quick_start_sample_alerts_on_its_safelisted_nat_address_and_never_blocks_it() {
    let dir = TempDir::new("qs_safelist");
    let config = quickstart(&dir);
    let out = run(&[
        "replay",
        "--config",
        s(&config),
        s(&example("sample-audit.jsonl")),
    ]);
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    let on_nat = |kind: &str| -> Vec<&Value> {
        of(&recs, kind)
            .into_iter()
            .filter(|r| attr(r, "scope.type") == "ip" && attr(r, "scope.value") == NAT)
            .collect()
    };
    assert!(
        on_nat("block_applied").is_empty(),
        "the NAT is never blocked"
    );
    assert!(on_nat("blocked").is_empty(), "nor denied");
    let spared = on_nat("alert");
    assert!(!spared.is_empty(), "its blocking matches stay visible");
    for r in &spared {
        assert_eq!(r["attributes"]["enforcement.safelisted"], true, "{r}");
        assert_eq!(attr(r, "enforcement.action"), "alert");
        assert_eq!(attr(r, "source.address"), NAT);
    }
    assert!(spared
        .iter()
        .any(|r| attr(r, "security_rule.name") == "repeated_client_error"));
    // The attackers are still blocked.
    assert!(of(&recs, "block_applied").len() > 50);
    // The summary lists them as safelisted.
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.starts_with("repeated_client_error")
            && l.contains("safelisted")
            && l.contains(NAT)),
        "{err}"
    );
    // The configuration still checks clean but for W001.
    let out = run(&["check", "--config", s(&config)]);
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).lines().map(|l| &l[..4]).collect::<Vec<_>>(),
        ["W001"]
    );
}

#[test]
fn blocks_add_refuses_a_safelisted_subject() {
    let dir = TempDir::new("add_safelisted");
    let config = dir.write(
        "c.toml",
        "enabled = true\n[safelist]\nips = [\"192.0.2.0/24\"]\nusers = [\"ops\"]\n",
    );
    for (scope, value, entry) in [
        ("ip", NAT, "safelist.ips 192.0.2.0/24"),
        ("user", "ops", "safelist.users ops"),
    ] {
        let out = run(&[
            "blocks",
            "add",
            "--config",
            s(&config),
            "--scope",
            scope,
            "--value",
            value,
            "--reason",
            "test",
        ]);
        expect_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("is safelisted") && err.contains(entry),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "no block_applied record");
    }
    let out = run(&[
        "blocks",
        "add",
        "--config",
        s(&config),
        "--scope",
        "ip",
        "--value",
        "192.0.3.1",
        "--ttl",
        "60",
        "--reason",
        "test",
    ]);
    expect_code(&out, 0);
}

#[test]
fn check_live_warns_about_a_safelisted_subject_that_is_blocked() {
    let redis = RedisPrefix::new("check_w006");
    let dir = TempDir::new("check_w006");
    let base = format!(
        "enabled = true\nredis_url = \"{}\"\nkey_prefix = \"{}\"\n",
        redis_url(),
        redis.prefix
    );
    let plain = dir.write("plain.toml", &base);
    for (scope, value, ttl) in [("ip", "192.0.2.77", Some("1h")), ("user", "ops", None)] {
        let mut args = vec![
            "blocks",
            "add",
            "--config",
            s(&plain),
            "--scope",
            scope,
            "--value",
            value,
            "--reason",
            "before the safelist",
        ];
        if let Some(t) = ttl {
            args.extend(["--ttl", t]);
        }
        expect_code(&run(&args), 0);
    }
    let safe = dir.write(
        "safe.toml",
        &format!("{base}[safelist]\nips = [\"192.0.2.0/24\"]\nusers = [\"ops\", \"monitor\"]\n"),
    );
    // Without --live nothing is read from the store.
    let out = run(&["check", "--config", s(&safe)]);
    expect_code(&out, 0);
    assert!(!stdout(&out).contains("W006"), "{}", stdout(&out));
    let out = run(&["check", "--config", s(&safe), "--live"]);
    expect_code(&out, 0);
    let text = stdout(&out);
    let w006: Vec<&str> = text.lines().filter(|l| l.starts_with("W006")).collect();
    assert_eq!(w006.len(), 2, "{text}");
    assert!(
        w006.iter().any(|l| l.contains("safelist.ips 192.0.2.0/24")
            && l.contains("ip:192.0.2.77")
            && l.contains("a temporary block until")),
        "{text}"
    );
    assert!(
        w006.iter().any(|l| l.contains("safelist.users ops")
            && l.contains("user:ops")
            && l.contains("a permanent block")),
        "{text}"
    );
    assert!(
        text.contains(
            "live ok: safelist checked against the block store: 2 safelisted subjects blocked"
        ),
        "{text}"
    );
    // Revoked: clean.
    for (scope, value) in [("ip", "192.0.2.77"), ("user", "ops")] {
        expect_code(
            &run(&[
                "blocks",
                "revoke",
                "--config",
                s(&safe),
                "--scope",
                scope,
                "--value",
                value,
                "--reason",
                "safelisted",
            ]),
            0,
        );
    }
    let out = run(&["check", "--config", s(&safe), "--live"]);
    expect_code(&out, 0);
    assert!(!stdout(&out).contains("W006"), "{}", stdout(&out));
}

/// One failed login from `ip` at `sec` seconds into the log, no request id
/// (straight to egress).
fn failed_login(sec: i64, ip: &str) -> String {
    json!({"timestamp": 1_780_000_000_000_000_000i64 + sec * 1_000_000_000,
           "attributes": {"event_type": "auth.login.failed", "source.address": ip,
                          "user.name": "alice", "user.id": "u1"}})
    .to_string()
}

const ESCALATING: &str = r#"
[[rules]]
builtin = "brute_force_login"
threshold = 1
[rule_actions]
brute_force_login = { scopes = ["ip", "user"], ttl = 60 }
[escalation]
factor = 2
max_ttl = 1000
window = 1000
permanent_after = 4
"#;

fn replay(config: &Path, log: &Path) -> Vec<u8> {
    let out = run(&["replay", "--config", s(config), s(log)]);
    expect_code(&out, 0);
    out.stdout
}

#[test]
fn a_replay_escalates_on_the_log_clock_alike_in_memory_redis_and_tiered() {
    let dir = TempDir::new("replay_escalation");
    // Each login comes after the previous block has ended (60, 120, 240 s).
    let log: String = [0, 70, 200, 450]
        .iter()
        .map(|t| failed_login(*t, "203.0.113.77") + "\n")
        .collect();
    let log = dir.write("log.jsonl", &log);
    let memory = replay(&dir.write("memory.toml", ESCALATING), &log);
    let recs = records(&String::from_utf8_lossy(&memory));
    let applied: Vec<(String, Value, Value, String)> = of(&recs, "block_applied")
        .into_iter()
        .map(|r| {
            (
                attr(r, "scope.type").to_string(),
                r["attributes"]["enforcement.offense"].clone(),
                r["attributes"]
                    .get("enforcement.ttl")
                    .cloned()
                    .unwrap_or(Value::Null),
                attr(r, "enforcement.action").to_string(),
            )
        })
        .collect();
    let row = |scope: &str, n: u64, ttl: Value, action: &str| {
        (scope.to_string(), json!(n), ttl, action.to_string())
    };
    assert_eq!(
        applied,
        [
            // In precedence order: user, then ip.
            row("user", 1, json!(60), "temp"),
            row("ip", 1, json!(60), "temp"),
            row("user", 2, json!(120), "temp"),
            row("ip", 2, json!(120), "temp"),
            row("user", 3, json!(240), "temp"),
            row("ip", 3, json!(240), "temp"),
            // The 4th: permanent on the user, and on the ip only because
            // the operator wrote ip in the rule's scopes.
            row("user", 4, Value::Null, "permanent"),
            row("ip", 4, Value::Null, "permanent"),
        ]
    );

    let redis = RedisPrefix::new("replay_escalation");
    let through_redis = replay(
        &dir.write(
            "redis.toml",
            &format!(
                "redis_url = \"{}\"\nkey_prefix = \"{}\"\n{ESCALATING}",
                redis_url(),
                redis.prefix
            ),
        ),
        &log,
    );
    assert_eq!(
        String::from_utf8_lossy(&through_redis),
        String::from_utf8_lossy(&memory),
        "Redis replay differs from memory"
    );
    // Every key the replay left has a TTL.
    let mut conn = redis_conn();
    let keys = redis.keys();
    assert!(keys.iter().any(|k| k.contains(":ctr:offense:")), "{keys:?}");
    for k in &keys {
        let ttl: i64 = redis::cmd("TTL").arg(k).query(&mut conn).unwrap();
        assert!(ttl > 0, "{k} has no TTL");
    }

    let tiered_prefix = RedisPrefix::new("replay_escalation_tiered");
    let schema = Schema::new("replay_escalation");
    let tiered_conf = dir.write(
        "tiered.toml",
        &format!(
            "redis_url = \"{}\"\nkey_prefix = \"{}\"\ndatabase_url = \"{}\"\n{ESCALATING}",
            redis_url(),
            tiered_prefix.prefix,
            schema.url()
        ),
    );
    expect_code(&run(&["migrate", "--config", s(&tiered_conf)]), 0);
    let tiered = replay(&tiered_conf, &log);
    assert_eq!(
        String::from_utf8_lossy(&tiered),
        String::from_utf8_lossy(&memory),
        "tiered replay differs from memory"
    );
    // The permanent bans are Postgres rows.
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Ban {
        #[diesel(sql_type = diesel::sql_types::Text)]
        scope: String,
    }
    use diesel::RunQueryDsl;
    let bans: Vec<Ban> = diesel::sql_query(format!(
        "SELECT scope_type || ':' || scope_value AS scope FROM \"{}\".permanent_blocks \
         WHERE revoked_at IS NULL ORDER BY scope",
        schema.name
    ))
    .load(&mut pg())
    .unwrap_or_else(|e| panic!("reading permanent_blocks: {e}"));
    assert_eq!(
        bans.iter().map(|b| b.scope.as_str()).collect::<Vec<_>>(),
        ["ip:203.0.113.77", "user:u1"]
    );
}
