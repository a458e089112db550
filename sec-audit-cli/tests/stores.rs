//! The commands against real servers: state shared between two invocations
//! through Redis, and permanent bans written to Postgres. Redis at
//! `SEC_AUDIT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`), Postgres at
//! `SEC_AUDIT_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); a server that is down fails
//! the test, naming it.

mod common;

use common::*;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use serde_json::{json, Value};

fn redis_config(dir: &TempDir, prefix: &str, extra: &str) -> String {
    let p = dir.write(
        "c.toml",
        &format!(
            "enabled = true\nredis_url = \"{}\"\nkey_prefix = \"{prefix}\"\n{extra}\n[[rules]]\nbuiltin = \"brute_force_login\"\n",
            redis_url()
        ),
    );
    s(&p).to_string()
}

fn request(sec: i64, rid: &str, ip: &str, user: Option<&str>) -> String {
    let mut attrs = json!({"event_type": "http.response.success", "request_id": rid,
        "source.address": ip, "url.path": "/dashboard/", "http.request.method": "GET",
        "http.response.status_code": 200});
    if let Some(u) = user {
        attrs["user.id"] = json!(u);
    }
    json!({"timestamp": 1_780_000_000_000_000_000i64 + sec * 1_000_000_000, "attributes": attrs})
        .to_string()
}

#[test]
fn a_block_added_from_the_shell_is_enforced_by_a_later_replay() {
    let redis = RedisPrefix::new("manual");
    let dir = TempDir::new("manual");
    let config = redis_config(&dir, &redis.prefix, "");

    // Two invocations of `blocks add`: a permanent ip ban and a temp user
    // block.
    let out = run(&[
        "blocks",
        "add",
        "--config",
        &config,
        "--scope",
        "ip",
        "--value",
        "198.51.100.77",
        "--reason",
        "seen in the WAF",
        "--actor",
        "alice",
    ]);
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    assert_eq!(recs.len(), 1, "{}", stdout(&out));
    let a = &recs[0];
    assert_eq!(a["body"], "audit.enforcement.block_applied");
    assert_eq!(attr(a, "security_rule.name"), "manual");
    assert_eq!(attr(a, "scope.type"), "ip");
    assert_eq!(attr(a, "scope.value"), "198.51.100.77");
    assert_eq!(attr(a, "enforcement.action"), "permanent");
    assert!(stderr(&out).contains("blocked ip:198.51.100.77 (permanent) by alice"));
    let out = run(&[
        "blocks",
        "add",
        "--config",
        &config,
        "--scope",
        "user",
        "--value",
        "u-42",
        "--ttl",
        "2h",
        "--reason",
        "account takeover suspected",
    ]);
    expect_code(&out, 0);
    assert_eq!(
        records(&stdout(&out))[0]["attributes"]["enforcement.ttl"],
        7200
    );

    // A third invocation sees both.
    let out = run(&["blocks", "list", "--config", &config, "--json"]);
    expect_code(&out, 0);
    let listed: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let listed = listed.as_array().unwrap();
    let keys: Vec<(String, String)> = listed
        .iter()
        .map(|e| {
            (
                e["scope_value"].as_str().unwrap_or("").into(),
                e["kind"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        keys.contains(&("198.51.100.77".into(), "permanent".into())),
        "{keys:?}"
    );
    assert!(keys.contains(&("u-42".into(), "temp".into())), "{keys:?}");
    let actor = listed
        .iter()
        .find(|e| e["scope_value"] == "198.51.100.77")
        .map(|e| e["metadata"]["actor"].clone());
    assert_eq!(actor, Some(json!("alice")));
    let out = run(&["blocks", "list", "--config", &config, "--scope", "ip"]);
    expect_code(&out, 0);
    let table = stdout(&out);
    assert!(table.starts_with("scope  value"), "{table}");
    assert!(
        table.contains("198.51.100.77") && !table.contains("u-42"),
        "{table}"
    );

    // A replay on the same stores enforces them at ingress.
    let log = dir.write(
        "log.jsonl",
        &[
            request(0, "r1", "198.51.100.77", None),
            request(1, "r2", "198.51.100.8", None),
            request(2, "r3", "198.51.100.9", Some("u-42")),
            request(3, "r4", "198.51.100.8", Some("u-7")),
        ]
        .join("\n"),
    );
    let out = run(&["replay", "--config", &config, s(&log)]);
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    let blocked: Vec<(&str, &str, &str)> = of(&recs, "blocked")
        .into_iter()
        .map(|r| {
            (
                attr(r, "scope.type"),
                attr(r, "scope.value"),
                attr(r, "security_rule.name"),
            )
        })
        .collect();
    assert_eq!(
        blocked,
        [
            ("ip", "198.51.100.77", "manual"),
            ("user", "u-42", "manual")
        ]
    );
    let err = stderr(&out);
    assert_eq!(summary_count(&err, "denied requests"), 2, "{err}");

    // Revoke from the shell: the event, then the list no longer shows it.
    let out = run(&[
        "blocks",
        "revoke",
        "--config",
        &config,
        "--scope",
        "ip",
        "--value",
        "198.51.100.77",
        "--reason",
        "false positive",
        "--revoked-by",
        "bob",
    ]);
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["body"], "audit.enforcement.block_revoked");
    assert_eq!(attr(&recs[0], "enforcement.revoked_by"), "bob");
    assert_eq!(attr(&recs[0], "enforcement.reason"), "false positive");
    let out = run(&[
        "blocks",
        "list",
        "--config",
        &config,
        "--scope",
        "ip",
        "--value",
        "198.51.100.77",
    ]);
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "no active blocks\n");
    // Revoking again removes nothing and is not an error.
    let out = run(&[
        "blocks",
        "revoke",
        "--config",
        &config,
        "--scope",
        "ip",
        "--value",
        "198.51.100.77",
        "--reason",
        "again",
    ]);
    expect_code(&out, 0);
    assert!(out.stdout.is_empty());
    assert!(stderr(&out).contains("nothing revoked"));
}

#[test]
fn block_commands_reject_bad_requests_and_report_a_down_store() {
    let dir = TempDir::new("badblock");
    let prefix = format!("t_cli:{}", unique("badblock"));
    let config = redis_config(&dir, &prefix, "");
    let out = run(&[
        "blocks",
        "add",
        "--config",
        &config,
        "--scope",
        "ip",
        "--value",
        "not-an-ip",
        "--reason",
        "x",
    ]);
    expect_code(&out, 2);
    assert!(stderr(&out).contains("not-an-ip"), "{}", stderr(&out));
    let out = run(&[
        "blocks", "add", "--config", &config, "--scope", "route", "--value", "/x", "--reason", "x",
    ]);
    expect_code(&out, 2);
    assert!(stderr(&out).contains("route"), "{}", stderr(&out));
    let out = run(&[
        "blocks",
        "add",
        "--config",
        &config,
        "--scope",
        "ip",
        "--value",
        "192.0.2.1",
        "--ttl",
        "0",
        "--reason",
        "x",
    ]);
    expect_code(&out, 2);

    let down = dir.write(
        "down.toml",
        "redis_url = \"redis://127.0.0.1:1\"\nconnect_timeout_ms = 300\n",
    );
    let out = run(&["blocks", "list", "--config", s(&down)]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("sec-audit: block store: "), "{err}");
}

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    scope_type: String,
    #[diesel(sql_type = Text)]
    scope_value: String,
    #[diesel(sql_type = Text)]
    rule_name: String,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Text)]
    actor: String,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Text)]
    revoked_by: String,
}

impl Schema {
    fn rows(&self) -> Vec<Row> {
        diesel::sql_query(format!(
            "SELECT scope_type, scope_value, rule_name, reason, \
             coalesce(metadata->>'actor', '') AS actor, revoked_at IS NULL AS active, revoked_by \
             FROM \"{}\".permanent_blocks ORDER BY id",
            self.name
        ))
        .load(&mut pg())
        .unwrap_or_else(|e| panic!("reading permanent_blocks: {e}"))
    }
}

#[test]
fn migrate_then_a_permanent_ban_writes_a_postgres_row() {
    let schema = Schema::new("cli_pg");
    let redis = RedisPrefix::new("pg");
    let dir = TempDir::new("pg");
    let config = redis_config(
        &dir,
        &redis.prefix,
        &format!("database_url = \"{}\"", schema.url()),
    );

    let out = run(&["migrate", "--config", &config]);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("applied ") && text.contains("applied to"),
        "{text}"
    );
    let out = run(&["migrate", "--config", &config]);
    expect_code(&out, 0);
    assert!(
        stdout(&out).starts_with("nothing to apply"),
        "{}",
        stdout(&out)
    );

    let out = run(&["check", "--config", &config, "--live"]);
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("live ok: postgres reachable at")
            && stdout(&out).contains("migrations up to date"),
        "{}",
        stdout(&out)
    );

    let out = run(&[
        "blocks",
        "add",
        "--config",
        &config,
        "--scope",
        "user",
        "--value",
        "u-4711",
        "--reason",
        "changed is_superuser",
        "--actor",
        "carol",
    ]);
    expect_code(&out, 0);
    let rows = schema.rows();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(
        (
            r.scope_type.as_str(),
            r.scope_value.as_str(),
            r.rule_name.as_str()
        ),
        ("user", "u-4711", "manual")
    );
    assert_eq!(r.reason, "changed is_superuser");
    assert_eq!(r.actor, "carol");
    assert!(r.active);

    // Listed from Postgres, revoked in both tiers: the row stays as the
    // audit trail.
    let out = run(&["blocks", "list", "--config", &config, "--scope", "user"]);
    expect_code(&out, 0);
    assert!(stdout(&out).contains("u-4711"), "{}", stdout(&out));
    let out = run(&[
        "blocks",
        "revoke",
        "--config",
        &config,
        "--scope",
        "user",
        "--value",
        "u-4711",
        "--reason",
        "reviewed",
        "--revoked-by",
        "dave",
    ]);
    expect_code(&out, 0);
    let rows = schema.rows();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].active);
    assert_eq!(rows[0].revoked_by, "dave");

    // Pending migrations are a live problem.
    let fresh = Schema::new("cli_pg_fresh");
    let config2 = dir.write(
        "fresh.toml",
        &format!("database_url = \"{}\"\n", fresh.url()),
    );
    let out = run(&["check", "--config", s(&config2), "--live"]);
    expect_code(&out, 1);
    assert!(stdout(&out).contains("pending"), "{}", stdout(&out));
}
