//! `sec-audit replay` end to end: the built binary over the committed
//! sample log and the quick-start configuration, malformed input, bad
//! configurations, determinism.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;
use serde_json::{json, Value};

/// The quick-start configuration; its plugin must have been built.
fn quickstart() -> String {
    let plugin = root().join("target/plugins/librepeated_not_found.so");
    assert!(
        plugin.exists(),
        "{} is missing: examples/quickstart.toml loads it; build it with `cargo xtask plugins` (scripts/test.sh does)",
        plugin.display()
    );
    s(&example("quickstart.toml")).to_string()
}

fn sample() -> String {
    s(&example("sample-audit.jsonl")).to_string()
}

/// Values of `scope.value` of `kind` records by `rule` on `scope`.
fn values(recs: &[Value], kind: &str, rule: &str, scope: &str) -> Vec<String> {
    of(recs, kind)
        .into_iter()
        .filter(|r| attr(r, "security_rule.name") == rule && attr(r, "scope.type") == scope)
        .map(|r| attr(r, "scope.value").to_string())
        .collect()
}

#[test]
fn sample_replay_finds_every_attack_family() {
    let out = run(&["replay", "--config", &quickstart(), &sample()]);
    expect_code(&out, 0);
    let recs = records(&stdout(&out));
    let err = stderr(&out);

    // Brute force: temp blocks on attacker IPs, and their later attempts
    // denied at ingress.
    let brute = values(&recs, "block_applied", "brute_force_login", "ip");
    assert!(
        brute.iter().filter(|v| v.starts_with("203.0.113.")).count() >= 10,
        "brute force: {brute:?}"
    );
    assert!(!values(&recs, "blocked", "brute_force_login", "ip").is_empty());

    // Scanning: repeated 404s blocked, and the plugin rule alerts.
    let scan = values(&recs, "block_applied", "repeated_client_error", "ip");
    assert!(scan.len() >= 10, "scanning: {scan:?}");
    let plugin_alerts: Vec<&Value> = of(&recs, "alert")
        .into_iter()
        .filter(|r| attr(r, "security_rule.name") == "repeated_not_found")
        .collect();
    assert!(!plugin_alerts.is_empty(), "the plugin rule raised no alert");

    // Enumeration: alerts (the quick start maps it to alert).
    let enumeration: Vec<&Value> = of(&recs, "alert")
        .into_iter()
        .filter(|r| attr(r, "security_rule.name") == "resource_enumeration")
        .collect();
    assert!(!enumeration.is_empty(), "no enumeration alert");
    assert!(enumeration
        .iter()
        .all(|r| attr(r, "enforcement.action") == "alert"));

    // Proxy spoofing: temp blocks on ip.
    let spoof = values(&recs, "block_applied", "suspicious_proxy_header", "ip");
    assert!(spoof.len() >= 5, "spoofing: {spoof:?}");

    // The insider: permanent blocks on user (and session), never on ip.
    let insider: Vec<&Value> = of(&recs, "block_applied")
        .into_iter()
        .filter(|r| attr(r, "security_rule.name") == "sensitive_field_change")
        .collect();
    assert!(insider
        .iter()
        .any(|r| attr(r, "scope.type") == "user" && attr(r, "enforcement.action") == "permanent"));
    assert!(insider.iter().all(|r| attr(r, "scope.type") != "ip"));
    assert!(insider
        .iter()
        .all(|r| r["attributes"].get("enforcement.ttl").is_none()));

    // Oversized transfers: caught on the ingress pass (the request body).
    let transfer = values(&recs, "block_applied", "request_body_threshold", "ip");
    assert!(!transfer.is_empty(), "no transfer block");

    // Every record is stamped with the replay clock: inside the log's time
    // span, never the wall clock.
    let t0 = 1_780_000_000_000_000_000i64;
    for r in &recs {
        let t = r["timestamp"].as_i64().unwrap_or(0);
        assert!(
            (t0..t0 + 3_600_000_000_000).contains(&t),
            "timestamp {t} is not the log's time"
        );
        assert_eq!(r["observed_timestamp"], r["timestamp"]);
        assert_eq!(r["attributes"]["schema_version"], "1.0");
    }

    // The summary a person reads first.
    assert_eq!(summary_count(&err, "lines read"), 4000, "{err}");
    assert_eq!(summary_count(&err, "rejected lines"), 11, "{err}");
    assert!(summary_count(&err, "denied requests") > 100, "{err}");
    for rule in [
        "brute_force_login",
        "repeated_client_error",
        "repeated_not_found",
        "resource_enumeration",
        "suspicious_proxy_header",
        "sensitive_field_change",
        "request_body_threshold",
    ] {
        assert!(err.contains(rule), "summary lacks {rule}:\n{err}");
    }
    assert!(err.contains("permanent block"), "{err}");
    assert!(err.contains("denied by block"), "{err}");
}

#[test]
fn same_input_and_configuration_give_byte_identical_output() {
    let dir = TempDir::new("identical");
    let (a, b) = (dir.path("a.jsonl"), dir.path("b.jsonl"));
    for p in [&a, &b] {
        let out = run(&[
            "replay",
            "--config",
            &quickstart(),
            &sample(),
            "--output",
            s(p),
        ]);
        expect_code(&out, 0);
        assert!(out.stdout.is_empty(), "--output leaves stdout empty");
    }
    let (x, y) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(x.len() > 10_000, "output is suspiciously small");
    assert!(x == y, "two replays of the same input differ");
    // Standard output carries the same bytes.
    let out = run(&["replay", "--config", &quickstart(), &sample()]);
    assert!(out.stdout == x, "stdout differs from --output");
    // --output truncates: a second run into the same file is not appended.
    let out = run(&[
        "replay",
        "--config",
        &quickstart(),
        &sample(),
        "--output",
        s(&a),
    ]);
    expect_code(&out, 0);
    assert_eq!(std::fs::read(&a).unwrap().len(), x.len());
}

#[test]
fn standard_input_replays_like_a_file() {
    let input = std::fs::read(example("sample-audit.jsonl")).unwrap();
    let mut child = cmd()
        .args(["replay", "--config", &quickstart(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    expect_code(&out, 0);
    assert!(stderr(&out).contains("replay of standard input"));
    let from_file = run(&["replay", "--config", &quickstart(), &sample()]);
    assert!(out.stdout == from_file.stdout);
}

const SMALL: &str = r#"
enabled = false
[[rules]]
builtin = "brute_force_login"
threshold = 2
"#;

fn fail(sec: i64, rid: &str) -> String {
    json!({"timestamp": 1_780_000_000_000_000_000i64 + sec * 1_000_000_000,
           "attributes": {"event_type": "auth.login.failed", "request_id": rid,
                          "source.address": "203.0.113.9", "user.name": "alice"}})
    .to_string()
}

#[test]
fn a_malformed_log_is_survived_and_reported_with_line_numbers() {
    let dir = TempDir::new("malformed");
    let config = dir.write("c.toml", SMALL);
    let mut lines = vec![
        fail(0, "r1"),                                                         // 1
        "{\"timestamp\": 1, \"attributes\": ".to_string(),                     // 2 truncated
        "[1, 2, 3]".to_string(),                                               // 3
        json!({"timestamp": 5, "attributes": {"event_type": ""}}).to_string(), // 4
        json!({"attributes": {"event_type": "x"}}).to_string(),                // 5 no timestamp
        format!(
            "{{\"timestamp\": 7, \"event_type\": \"{}\"}}",
            "a".repeat(3000)
        ), // 6 too long
        "\u{fffd} not json".to_string(),                                       // 7
        fail(1, "r2"),                                                         // 8
    ];
    // Plenty more bad lines: only the first ten are listed.
    lines.extend((0..12).map(|i| format!("garbage {i}")));
    lines.push(fail(2, "r3"));
    let log = dir.write("log.jsonl", &(lines.join("\n") + "\n"));
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"\xff\xfe not utf-8\n");
    std::fs::write(&log, &bytes).unwrap();

    let out = run(&[
        "replay",
        "--config",
        s(&config),
        s(&log),
        "--max-line-bytes",
        "2048",
    ]);
    expect_code(&out, 0);
    let err = stderr(&out);
    for expected in [
        "line 2: not valid JSON",
        "line 3: not a JSON object",
        "line 4: no non-empty `event_type`",
        "line 5: no integer `timestamp`",
        "line 6: longer than the line limit (3034 bytes)",
        "line 7: not valid JSON",
        "line 9: not valid JSON",
        "line 12: not valid JSON",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(!err.contains("line 13:"), "only ten are listed:\n{err}");
    assert!(err.contains("… and 9 more rejected lines"), "{err}");
    assert_eq!(summary_count(&err, "lines read"), 22, "{err}");
    assert_eq!(summary_count(&err, "events replayed"), 3, "{err}");
    assert_eq!(summary_count(&err, "rejected lines"), 19, "{err}");
    // enabled = false in the file: replay enforces anyway, and says so.
    assert!(
        err.contains("enabled = false; replay enforces it anyway"),
        "{err}"
    );
    // The good lines around the bad ones still ran: a block at the second
    // failure, the third request denied.
    let recs = records(&stdout(&out));
    assert_eq!(of(&recs, "block_applied").len(), 1);
    assert_eq!(of(&recs, "blocked").len(), 1);
}

#[test]
fn a_bad_configuration_exits_2_naming_the_key() {
    let dir = TempDir::new("badconfig");
    let log = dir.write("log.jsonl", &(fail(0, "r1") + "\n"));
    let cases = [
        ("enabeld = true\n", "`enabeld`"),
        ("default_temp_ttl = 0\n", "`default_temp_ttl`"),
        (
            "[[rules]]\nbuiltin = \"brute_force_login\"\nthreshhold = 3\n",
            "threshhold",
        ),
        (
            "[rule_actions]\nbrute_force_login = \"ban\"\n",
            "`rule_actions.brute_force_login`",
        ),
        (
            "[[rules]]\nplugin = \"no/such/plugin.so\"\n",
            "no/such/plugin.so",
        ),
        ("enabled = \n", "not valid TOML"),
    ];
    for (text, key) in cases {
        let config = dir.write("bad.toml", text);
        let out = run(&["replay", "--config", s(&config), s(&log)]);
        expect_code(&out, 2);
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("sec-audit: "), "{err}");
        assert!(err.contains(key), "`{key}` not named in: {err}");
        assert!(out.stdout.is_empty());
    }
    // A missing configuration file is a configuration error too.
    let out = run(&["replay", "--config", s(&dir.path("nope.toml")), s(&log)]);
    expect_code(&out, 2);
    assert!(stderr(&out).contains("nope.toml"));
}

#[test]
fn io_errors_exit_1_naming_the_cause() {
    let dir = TempDir::new("io");
    let config = dir.write("c.toml", SMALL);
    let out = run(&[
        "replay",
        "--config",
        s(&config),
        s(&dir.path("missing.jsonl")),
    ]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("cannot open log") && err.contains("missing.jsonl"),
        "{err}"
    );
    let log = dir.write("log.jsonl", &(fail(0, "r1") + "\n"));
    let out = run(&[
        "replay",
        "--config",
        s(&config),
        s(&log),
        "--output",
        s(&dir.path("no/such/dir/out.jsonl")),
    ]);
    expect_code(&out, 1);
    assert!(
        stderr(&out).contains("cannot open output"),
        "{}",
        stderr(&out)
    );
    // A configured store that does not answer fails the replay up front
    // (the replay itself would fail open on every event).
    let down = dir.write(
        "down.toml",
        "redis_url = \"redis://127.0.0.1:1\"\nconnect_timeout_ms = 300\n",
    );
    let out = run(&["replay", "--config", s(&down), s(&log)]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("redis not reachable at redis://127.0.0.1:1"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // Refuses to overwrite its input.
    let out = run(&[
        "replay",
        "--config",
        s(&config),
        s(&log),
        "--output",
        s(&log),
    ]);
    expect_code(&out, 2);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("auth.login.failed"));
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["replay", "examples/sample-audit.jsonl"]);
    expect_code(&out, 2);
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("sec-audit: ") && err.contains("--config"),
        "{err}"
    );
    let out = run(&["replay", "--confg", "x.toml", "log"]);
    expect_code(&out, 2);
    assert!(stderr(&out).contains("--confg"), "{}", stderr(&out));
    let out = run(&[
        "replay",
        "--config",
        "x.toml",
        "log",
        "--request-window",
        "10",
    ]);
    expect_code(&out, 2);
    let out = run(&["frobnicate"]);
    expect_code(&out, 2);
}
