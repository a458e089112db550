//! `--help`, `--version`, `check` (offline and `--live`) and `migrate`
//! without a database, end to end.

mod common;

use common::*;

#[test]
fn every_command_has_help_and_the_tool_a_version() {
    for args in [
        vec!["--help"],
        vec!["replay", "--help"],
        vec!["check", "--help"],
        vec!["blocks", "--help"],
        vec!["blocks", "list", "--help"],
        vec!["blocks", "add", "--help"],
        vec!["blocks", "revoke", "--help"],
        vec!["migrate", "--help"],
    ] {
        let out = run(&args);
        expect_code(&out, 0);
        let text = stdout(&out);
        assert!(text.contains("Usage: sec-audit"), "{args:?}: {text}");
        if args != ["blocks", "--help"] {
            assert!(
                text.contains("Exit status"),
                "{args:?} documents exit codes"
            );
        }
    }
    let replay_help = stdout(&run(&["replay", "--help"]));
    assert!(replay_help.contains("enabled = true"), "{replay_help}");
    let out = run(&["--version"]);
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).trim(),
        format!("sec-audit {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_prints_findings_one_per_line() {
    let dir = TempDir::new("check");
    let config = dir.write(
        "c.toml",
        r#"
enabled = true
fail_closed_paths = ["^/admin"]
[[rules]]
builtin = "brute_force_login"
[rule_actions]
brute_force_login = { action = "persist_block", scopes = ["ip"] }
ghost = "alert"
"#,
    );
    let out = run(&["check", "--config", s(&config)]);
    expect_code(&out, 0);
    let text = stdout(&out);
    let ids: Vec<&str> = text
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["W001", "W002", "W003", "W005"], "{text}");
    assert!(text.lines().all(|l| l.contains(" warning: ")));
    assert!(stderr(&out).contains("0 errors, 4 warnings"));

    // An error finding: exit 2.
    let bad = dir.write("bad.toml", "[[rules]]\nbuiltin = \"no_such_rule\"\n");
    let out = run(&["check", "--config", s(&bad)]);
    expect_code(&out, 2);
    assert!(stdout(&out).starts_with("E001 error: "), "{}", stdout(&out));
    assert!(stdout(&out).contains("no_such_rule"));
    let bad = dir.write("bad2.toml", "enabeld = true\n");
    let out = run(&["check", "--config", s(&bad)]);
    expect_code(&out, 2);
    assert!(stdout(&out).contains("E001 error: ") && stdout(&out).contains("`enabeld`"));

    // The quick start checks clean but for W001 (no Redis).
    let out = run(&["check", "--config", s(&example("quickstart.toml"))]);
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).lines().map(|l| &l[..4]).collect::<Vec<_>>(),
        ["W001"]
    );
}

#[test]
fn live_check_reports_reachability_and_eviction_policy() {
    let _ = redis_conn(); // fails clearly when the test Redis is down
    let dir = TempDir::new("live");
    let config = dir.write(
        "c.toml",
        &format!(
            "redis_url = \"{}\"\nkey_prefix = \"t_cli_live\"\n",
            redis_url()
        ),
    );
    let mut conn = redis_conn();
    let policy: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("CONFIG GET maxmemory-policy on the test Redis: {e}"));
    let policy = policy.get(1).cloned().unwrap_or_default();
    let out = run(&["check", "--config", s(&config), "--live"]);
    let text = stdout(&out);
    assert!(
        text.contains("live ok: redis reachable at")
            && text.contains(&format!("maxmemory-policy {policy}")),
        "{text}"
    );
    assert!(text.contains("live ok: postgres not configured"), "{text}");
    // The server version is read and new enough (SMISMEMBER, Redis 6.2+).
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("INFO server on the test Redis: {e}"));
    let (major, minor, patch) = sec_audit_cli::check_cmd::redis_version(&info)
        .unwrap_or_else(|| panic!("the test Redis reports no redis_version"));
    assert!(
        text.contains(&format!("version {major}.{minor}.{patch},")) && !text.contains("E002"),
        "{text}"
    );
    let evicts = policy.starts_with("allkeys-") || policy.starts_with("volatile-");
    assert_eq!(text.contains("W004 warning"), evicts, "{text}");
    expect_code(&out, 0);

    // An unreachable server: exit 1, one line naming it.
    let down = dir.write(
        "down.toml",
        "redis_url = \"redis://127.0.0.1:1\"\nconnect_timeout_ms = 300\n",
    );
    let out = run(&["check", "--config", s(&down), "--live"]);
    expect_code(&out, 1);
    assert!(
        stdout(&out).contains("live error: redis not reachable at redis://127.0.0.1:1"),
        "{}",
        stdout(&out)
    );
    // Without --live nothing connects.
    let out = run(&["check", "--config", s(&down)]);
    expect_code(&out, 0);
}

#[test]
fn migrate_without_a_database_url_names_it() {
    let dir = TempDir::new("nodb");
    let config = dir.write("c.toml", "enabled = true\n");
    let out = run(&["migrate", "--config", s(&config)]);
    expect_code(&out, 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("database_url"), "{err}");
}
