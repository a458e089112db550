//! `sec-audit blocks add` racing `sec-audit blocks revoke` on one user scope
//! (tiered store, separate processes): after every round, Postgres, the
//! Redis cached entry and the mirror member agree. Needs Redis at
//! `SEC_AUDIT_TEST_REDIS_URL` and Postgres at `SEC_AUDIT_TEST_DATABASE_URL`.

mod common;

use std::process::Stdio;

use common::*;
use diesel::prelude::*;
use diesel::sql_types::{Double, Nullable, Text};

const ROUNDS: usize = 6;
const ADDERS: usize = 3;
const REVOKERS: usize = 3;

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Double)]
    created_at: f64,
    #[diesel(sql_type = Nullable<Double>)]
    revoked_at: Option<f64>,
    #[diesel(sql_type = Text)]
    actor: String,
}

#[test]
fn racing_add_and_revoke_processes_leave_the_tiers_equal() {
    let redis = RedisPrefix::new("blocks_race");
    let schema = Schema::new("blocks_race");
    let dir = TempDir::new("blocks_race");
    let config = dir.write(
        "c.toml",
        &format!(
            "redis_url = \"{}\"\nkey_prefix = \"{}\"\ndatabase_url = \"{}\"\ncommand_timeout_ms = 5000\n",
            redis_url(),
            redis.prefix,
            schema.url()
        ),
    );
    let config = s(&config).to_string();
    expect_code(&run(&["migrate", "--config", &config]), 0);
    let entry_key = format!("{}:block:user:target", redis.prefix);
    let mirror_key = format!("{}:perm:members", redis.prefix);
    for round in 0..ROUNDS {
        let mut children = Vec::new();
        for i in 0..ADDERS.max(REVOKERS) {
            if i < ADDERS {
                let actor = format!("a{i}-r{round}");
                children.push(
                    cmd()
                        .args([
                            "blocks", "add", "--config", &config, "--scope", "user", "--value",
                            "target",
                        ])
                        .args(["--reason", "race", "--actor", &actor])
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}")),
                );
            }
            if i < REVOKERS {
                children.push(
                    cmd()
                        .args([
                            "blocks", "revoke", "--config", &config, "--scope", "user", "--value",
                            "target",
                        ])
                        .args(["--reason", "race"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}")),
                );
            }
        }
        for c in children {
            let out = c.wait_with_output().expect("wait");
            expect_code(&out, 0);
        }
        let rows: Vec<Row> = diesel::sql_query(format!(
            "SELECT extract(epoch from created_at)::float8 AS created_at, \
             extract(epoch from revoked_at)::float8 AS revoked_at, \
             coalesce(metadata->>'actor', '') AS actor \
             FROM \"{}\".permanent_blocks ORDER BY id",
            schema.name
        ))
        .load(&mut pg())
        .unwrap_or_else(|e| panic!("reading permanent_blocks: {e}"));
        for r in &rows {
            if let Some(rev) = r.revoked_at {
                assert!(
                    rev >= r.created_at,
                    "round {round}: revoked before created: {r:?}"
                );
            }
        }
        let active: Vec<&Row> = rows.iter().filter(|r| r.revoked_at.is_none()).collect();
        assert!(active.len() <= 1, "round {round}: {active:?}");
        let mut conn = redis_conn();
        let cached: Option<String> = redis::cmd("GET")
            .arg(&entry_key)
            .query(&mut conn)
            .expect("GET");
        let member: i64 = redis::cmd("SISMEMBER")
            .arg(&mirror_key)
            .arg("user:target")
            .query(&mut conn)
            .expect("SISMEMBER");
        match active.first() {
            Some(row) => {
                assert_eq!(member, 1, "round {round}: active row without mirror member");
                let cached = cached
                    .unwrap_or_else(|| panic!("round {round}: active row without cached entry"));
                let cached: serde_json::Value = serde_json::from_str(&cached).expect("entry JSON");
                assert_eq!(
                    cached["metadata"]["actor"].as_str(),
                    Some(row.actor.as_str()),
                    "round {round}: cache and row name different actors"
                );
            }
            None => {
                assert_eq!(member, 0, "round {round}: member without an active row");
                assert!(
                    cached.is_none(),
                    "round {round}: cached entry without an active row"
                );
            }
        }
    }
}
