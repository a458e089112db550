//! The block commands a script can drive: `-o json` on `blocks list` and
//! `check` (one JSON document), the `list` filters (`--rule`, `--since`,
//! `--contains`), and `blocks export` / `blocks import` as JSON lines —
//! on memory where it applies, Redis only, and tiered (Redis + Postgres).
//! Ranges are added, listed, exported and imported like any block.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};

use common::*;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double};
use serde_json::{json, Value};

fn run_with_stdin(args: &[&str], input: &str) -> Output {
    let mut child = cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn json_out(o: &Output) -> Value {
    serde_json::from_str(&stdout(o))
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", stdout(o)))
}

fn values(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|e| e["scope_value"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn check_json_is_one_document_with_stable_fields() {
    let dir = TempDir::new("check_json");
    let config = dir.write("c.toml", "enabled = true\n");
    let out = run(&["check", "--config", s(&config), "-o", "json", "--live"]);
    expect_code(&out, 0);
    let doc = json_out(&out);
    let w001 = doc["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["id"] == "W001"))
        .expect("W001: enabled without redis_url");
    assert_eq!(w001["level"], "warning");
    assert!(w001["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(doc["errors"], 0);
    assert_eq!(
        doc["warnings"],
        doc["findings"].as_array().map(Vec::len).unwrap_or(0)
    );
    assert_eq!(doc["live_problems"], 0);
    assert_eq!(doc["exit_status"], 0);
    assert_eq!(doc["live"][0]["ok"], true);
    assert!(doc["live"][0]["text"]
        .as_str()
        .unwrap_or("")
        .contains("redis not configured"));
    // The table form is unchanged.
    let out = run(&["check", "--config", s(&config)]);
    assert!(
        stdout(&out).starts_with("W001 warning: "),
        "{}",
        stdout(&out)
    );

    // A configuration that does not load: one E001, exit 2.
    let bad = dir.write("bad.toml", "enabeld = true\n");
    let out = run(&["check", "--config", s(&bad), "-o", "json"]);
    expect_code(&out, 2);
    let doc = json_out(&out);
    assert_eq!(doc["findings"][0]["id"], "E001");
    assert_eq!(doc["findings"][0]["level"], "error");
    assert_eq!(
        (doc["errors"].clone(), doc["exit_status"].clone()),
        (json!(1), json!(2))
    );
    let out = run(&["check", "--config", s(&config), "-o", "yaml"]);
    expect_code(&out, 2);
}

#[test]
fn import_on_memory_validates_every_line_and_names_the_bad_ones() {
    let dir = TempDir::new("import_memory");
    let config = dir.write("c.toml", "enabled = true\n");
    let good = r#"{"scope_type":"ip","scope_value":"10.9.0.0/16","kind":"temp","ttl_left":60,"reason":"r"}"#;
    let input = [
        good,
        "not json",
        r#"{"scope_type":"ip","scope_value":"10.9.0.5/16","kind":"permanent","reason":"r"}"#,
        "",
        r#"{"scope_type":"ip","scope_value":"10.9.0.1","kind":"temp","reason":"r"}"#,
        r#"{"scope_type":"ip","scope_value":"10.9.0.1","kind":"permanent","ttl_left":5,"reason":"r"}"#,
        r#"{"scope_type":"ip","scope_value":"10.9.0.1","kind":"permanent","reason":"r","colour":"red"}"#,
        r#"{"scope_type":"planet","scope_value":"x","kind":"permanent","reason":"r"}"#,
        r#"{"scope_type":"user","scope_value":"u","kind":"permanent","reason":"r","status_code":99}"#,
        r#"{"scope_type":"user","scope_value":"u","kind":"forever","reason":"r"}"#,
        r#"{"scope_type":"user","scope_value":"u","kind":"temp","expires_at":"yesterday","reason":"r"}"#,
        good,
    ]
    .join("\n");
    let out = run_with_stdin(&["blocks", "import", "--config", s(&config), "-"], &input);
    expect_code(&out, 2);
    let err = stderr(&out);
    for n in [2, 3, 5, 6, 7, 8, 9, 10, 11] {
        assert!(
            err.contains(&format!("line {n}: ")),
            "line {n} not named:\n{err}"
        );
    }
    for n in [1, 4, 12] {
        assert!(
            !err.contains(&format!("line {n}: ")),
            "line {n} is fine:\n{err}"
        );
    }
    assert!(err.contains("did you mean 10.9.0.0/16"), "{err}");
    assert!(err.contains("9 bad lines: nothing imported"), "{err}");
    assert_eq!(stdout(&out), "", "no block written, no record");

    // The good lines alone: each written through the block API.
    let out = run_with_stdin(
        &["blocks", "import", "--config", s(&config)],
        &format!("{good}\n"),
    );
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    assert_eq!(recs.len(), 1);
    assert_eq!(attr(&recs[0], "scope.value"), "10.9.0.0/16");
    assert_eq!(attr(&recs[0], "enforcement.action"), "temp");
}

/// Blocks the source store holds: a temp range, a permanent address inside
/// it, a permanent IPv6 range, a user block with its own status and
/// message, and a rule-made block with metadata (through `import`).
fn populate(config: &str) {
    for args in [
        &["--scope", "ip", "--value", "10.20.0.0/16", "--ttl", "1h"][..],
        &["--scope", "ip", "--value", "10.20.30.40"],
        &["--scope", "ip", "--value", "2001:DB8:77::/48"],
        &[
            "--scope",
            "user",
            "--value",
            "u-1",
            "--ttl",
            "2h",
            "--status-code",
            "418",
            "--message",
            "teapot",
        ],
    ] {
        let out = run(&[
            &[
                "blocks", "add", "--config", config, "--reason", "seen", "--actor", "alice",
            ],
            args,
        ]
        .concat());
        expect_code(&out, 0);
    }
    let rule_made = r#"{"scope_type":"ip","scope_value":"198.51.100.0/24","kind":"permanent","reason":"3 failed logins","rule_name":"brute_force_login","status_code":429,"message":"slow down","metadata":{"count":5}}"#;
    let out = run_with_stdin(
        &["blocks", "import", "--config", config, "--actor", "bob"],
        rule_made,
    );
    expect_code(&out, 0);
}

fn list(config: &str, extra: &[&str]) -> Value {
    let out = run(&[&["blocks", "list", "--config", config, "-o", "json"], extra].concat());
    expect_code(&out, 0);
    json_out(&out)
}

fn filters_select_what_they_say(config: &str) {
    let all = list(config, &[]);
    assert_eq!(all.as_array().map(Vec::len), Some(5), "{all}");
    // `--json` is `-o json`.
    let out = run(&["blocks", "list", "--config", config, "--json"]);
    assert_eq!(json_out(&out), all);
    let contains = |ip: &str| values(&list(config, &["--contains", ip]));
    assert_eq!(contains("10.20.30.40"), ["10.20.30.40", "10.20.0.0/16"]);
    assert_eq!(contains("::ffff:10.20.1.1"), ["10.20.0.0/16"]);
    assert_eq!(contains("2001:db8:77:1::2"), ["2001:db8:77::/48"]);
    assert_eq!(contains("198.51.100.200"), ["198.51.100.0/24"]);
    assert!(contains("192.0.2.1").is_empty());
    assert_eq!(
        values(&list(config, &["--rule", "brute_force_login"])),
        ["198.51.100.0/24"]
    );
    assert_eq!(values(&list(config, &["--rule", "manual"])).len(), 4);
    assert_eq!(values(&list(config, &["--since", "1h"])).len(), 5);
    assert!(values(&list(config, &["--since", "2099-01-01T00:00:00Z"])).is_empty());
    // The last block written (the import) and nothing older: created_at
    // 1 ms back (the JSON has millisecond precision).
    let newest = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["created_at"].as_str())
        .map(|t| sec_audit_cli::blocks::parse_time(t).expect("RFC 3339"))
        .fold(f64::MIN, f64::max);
    let since = sec_audit_enforce::events::rfc3339(newest - 0.001);
    assert_eq!(
        values(&list(config, &["--since", &since])),
        ["198.51.100.0/24"],
        "--since {since}"
    );
    assert_eq!(
        values(&list(
            config,
            &["--scope", "ip", "--value", "2001:db8:77:0::/48"]
        )),
        ["2001:db8:77::/48"]
    );
    // The table, and filters that make no sense.
    let out = run(&[
        "blocks",
        "list",
        "--config",
        config,
        "--contains",
        "10.20.30.40",
    ]);
    let table = stdout(&out);
    assert!(table.starts_with("scope  value"), "{table}");
    assert!(table.contains("10.20.0.0/16"), "{table}");
    for bad in [
        &["--contains", "10.20.0.0/16"][..],
        &["--contains", "nope"],
        &["--since", "yesterday"],
        &["--scope", "user", "--contains", "10.20.30.40"],
        &[
            "--scope",
            "ip",
            "--value",
            "1.2.3.4",
            "--contains",
            "1.2.3.4",
        ],
    ] {
        let out = run(&[&["blocks", "list", "--config", config], bad].concat());
        expect_code(&out, 2);
    }
}

/// Export from `from`, import into `to` (through standard input), compare,
/// import again: nothing changes. Returns the export.
fn export_import_round_trip(from: &str, to: &str) -> String {
    let out = run(&["blocks", "export", "--config", from]);
    expect_code(&out, 0);
    let exported = stdout(&out);
    let lines = records(&exported);
    assert_eq!(lines.len(), 5, "{exported}");
    for l in &lines {
        match l["kind"].as_str() {
            Some("temp") => {
                assert!(l["ttl_left"].as_u64().is_some_and(|t| t > 3000), "{l}");
                assert!(l["expires_at"].is_string(), "{l}");
            }
            Some("permanent") => assert!(l["ttl_left"].is_null() && l["expires_at"].is_null()),
            other => panic!("kind {other:?}"),
        }
    }
    assert!(
        stderr(&out).contains("exported 5 blocks"),
        "{}",
        stderr(&out)
    );

    let out = run_with_stdin(
        &["blocks", "import", "--config", to, "--actor", "carol"],
        &exported,
    );
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    assert_eq!(of(&recs, "block_applied").len(), 5, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("imported 5 blocks"),
        "{}",
        stderr(&out)
    );

    let a = list(from, &[]);
    let b = list(to, &[]);
    let key = |e: &Value| (e["scope_type"].to_string(), e["scope_value"].to_string());
    let mut a: Vec<Value> = a.as_array().cloned().unwrap_or_default();
    let mut b: Vec<Value> = b.as_array().cloned().unwrap_or_default();
    a.sort_by_key(key);
    b.sort_by_key(key);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        for field in [
            "scope_type",
            "scope_value",
            "kind",
            "rule_name",
            "reason",
            "status_code",
            "message",
        ] {
            assert_eq!(x[field], y[field], "{field} of {x} / {y}");
        }
        let at = |e: &Value| {
            e["expires_at"]
                .as_str()
                .map(|t| sec_audit_cli::blocks::parse_time(t).expect("time"))
        };
        match (at(x), at(y)) {
            (None, None) => {}
            (Some(p), Some(q)) => assert!((p - q).abs() <= 2.0, "expiry {p} / {q}"),
            other => panic!("expiry {other:?}"),
        }
        // The importer is the actor; who made the block stays recorded.
        assert_eq!(y["metadata"]["actor"], "carol");
        assert_eq!(y["metadata"]["original_actor"], x["metadata"]["actor"]);
        let strip = |e: &Value| {
            let mut m = e["metadata"].as_object().cloned().unwrap_or_default();
            m.remove("actor");
            m.remove("original_actor");
            m
        };
        assert_eq!(strip(x), strip(y));
    }

    // Importing again (from a file this time) changes nothing and writes
    // no record.
    let dir = TempDir::new("reimport");
    let file = dir.write("blocks.jsonl", &exported);
    let out = run(&[
        "blocks",
        "import",
        "--config",
        to,
        "--actor",
        "carol",
        s(&file),
    ]);
    expect_code(&out, 0);
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("imported 0 blocks") && stderr(&out).contains("5 unchanged"),
        "{}",
        stderr(&out)
    );
    exported
}

/// A request from inside an imported range, replayed on the target store,
/// is denied by the range.
fn the_imported_range_is_enforced(config: &str, dir: &TempDir) {
    let req = json!({"timestamp": 1_780_000_000_000_000_000i64, "attributes": {
        "event_type": "http.response.success", "request_id": "r1", "source.address": "10.20.99.1",
        "url.path": "/", "http.request.method": "GET", "http.response.status_code": 200}});
    let log = dir.write("log.jsonl", &req.to_string());
    let out = run(&["replay", "--config", config, s(&log)]);
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    let blocked = of(&recs, "blocked");
    assert_eq!(blocked.len(), 1, "{}", stdout(&out));
    assert_eq!(attr(blocked[0], "scope.value"), "10.20.0.0/16");
}

#[test]
fn on_redis_list_filters_export_and_import_round_trip() {
    let a = RedisPrefix::new("io_redis_a");
    let b = RedisPrefix::new("io_redis_b");
    let dir = TempDir::new("io_redis");
    let conf = |p: &RedisPrefix, name: &str| {
        let path = dir.write(
            name,
            &format!(
                "enabled = true\nredis_url = \"{}\"\nkey_prefix = \"{}\"\n",
                redis_url(),
                p.prefix
            ),
        );
        s(&path).to_string()
    };
    let (from, to) = (conf(&a, "a.toml"), conf(&b, "b.toml"));
    populate(&from);
    filters_select_what_they_say(&from);
    export_import_round_trip(&from, &to);
    the_imported_range_is_enforced(&to, &dir);
}

#[derive(QueryableByName)]
struct Rows {
    #[diesel(sql_type = BigInt)]
    n: i64,
    #[diesel(sql_type = Double)]
    newest: f64,
}

fn rows(schema: &Schema) -> (i64, f64) {
    let r: Rows = diesel::sql_query(format!(
        "SELECT count(*)::int8 AS n, coalesce(extract(epoch from max(created_at))::float8, 0) AS newest \
         FROM \"{}\".permanent_blocks",
        schema.name
    ))
    .get_result(&mut pg())
    .expect("query");
    (r.n, r.newest)
}

#[test]
fn on_tiered_stores_list_filters_export_and_import_round_trip() {
    let a = RedisPrefix::new("io_tiered_a");
    let b = RedisPrefix::new("io_tiered_b");
    let sa = Schema::new("io_tiered_a");
    let sb = Schema::new("io_tiered_b");
    let dir = TempDir::new("io_tiered");
    let conf = |p: &RedisPrefix, schema: &Schema, name: &str| {
        let path = dir.write(
            name,
            &format!(
                "enabled = true\nredis_url = \"{}\"\nkey_prefix = \"{}\"\ndatabase_url = \"{}\"\n",
                redis_url(),
                p.prefix,
                schema.url()
            ),
        );
        s(&path).to_string()
    };
    let (from, to) = (conf(&a, &sa, "a.toml"), conf(&b, &sb, "b.toml"));
    for c in [&from, &to] {
        expect_code(&run(&["migrate", "--config", c]), 0);
    }
    populate(&from);
    // Permanent blocks (ranges included) are Postgres rows.
    assert_eq!(rows(&sa).0, 3);
    filters_select_what_they_say(&from);
    let before = rows(&sb);
    assert_eq!(before.0, 0);
    // The round trip's re-import (the last step) must not touch a row.
    let exported = export_import_round_trip(&from, &to);
    let after = rows(&sb);
    assert_eq!(after.0, 3);
    let out = run_with_stdin(
        &["blocks", "import", "--config", &to, "--actor", "carol"],
        &exported,
    );
    expect_code(&out, 0);
    assert_eq!(
        rows(&sb),
        after,
        "re-import wrote no row, moved no created_at"
    );
    the_imported_range_is_enforced(&to, &dir);
    // Revoked like any block: the row stays as history.
    let out = run(&[
        "blocks",
        "revoke",
        "--config",
        &to,
        "--scope",
        "ip",
        "--value",
        "198.51.100.0/24",
        "--reason",
        "cleared",
    ]);
    expect_code(&out, 0);
    assert_eq!(rows(&sb).0, 3);
    assert!(values(&list(&to, &["--contains", "198.51.100.1"])).is_empty());
}
