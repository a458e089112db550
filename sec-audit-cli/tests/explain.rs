//! `sec-audit explain` end to end: the built binary over the committed
//! sample log, with a configuration of the built-ins written here (so the
//! example configuration's safelist and plugin do not change what these
//! tests see).

mod common;

use common::*;

/// Every built-in, the quick start's thresholds, no safelist, no plugin.
const CONFIG: &str = r#"
enabled = true
default_temp_ttl = 300

[[rules]]
builtin = "brute_force_login"
threshold = 5
window_seconds = 300

[[rules]]
builtin = "login_throttle"
threshold = 5
paths = ["^/accounts/login/"]

[[rules]]
builtin = "repeated_client_error"
threshold = 10
window_seconds = 300

[[rules]]
builtin = "repeated_route"
threshold = 40
window_seconds = 60

[[rules]]
builtin = "resource_enumeration"
threshold = 12
window_seconds = 300

[[rules]]
builtin = "request_body_threshold"
paths = ["^/api/transfer"]
field = "amount"
threshold = 10000

[[rules]]
builtin = "sensitive_field_change"
fields = ["password", "is_superuser"]
model_labels = ["auth.user"]

[[rules]]
builtin = "suspicious_proxy_header"

[rule_actions]
resource_enumeration = "alert"
"#;

fn sample() -> String {
    s(&example("sample-audit.jsonl")).to_string()
}

fn explain(dir: &TempDir, extra: &[&str]) -> String {
    let config = dir.path("explain.toml");
    let mut args = vec!["explain", "--config", s(&config), ""];
    let log = sample();
    args[3] = &log;
    args.extend_from_slice(extra);
    let out = run(&args);
    expect_code(&out, 0);
    stdout(&out)
}

fn dir_with(config: &str, test: &str) -> TempDir {
    let dir = TempDir::new(test);
    dir.write("explain.toml", config);
    dir
}

/// The shared NAT address of the sample: repeated client errors get it
/// temp-blocked, and its next request is denied by that block.
#[test]
fn a_subject_shows_the_match_its_action_the_entry_that_decided_and_the_denial() {
    let dir = dir_with(CONFIG, "explain_subject");
    let text = explain(&dir, &["--subject", "ip:192.0.2.214", "--limit", "100000"]);
    // The match, what it read, the action and why.
    let i = text
        .find("rule repeated_client_error: MATCHED")
        .unwrap_or_else(|| panic!("no repeated_client_error match explained:\n{text}"));
    let tail = &text[i..];
    assert!(
        tail.contains("read: counter client_errors:192.0.2.214 += 1 -> 10"),
        "the counter read that reached the threshold is shown:\n{}",
        &tail[..tail.len().min(2000)]
    );
    assert!(
        tail.contains(
            "action: temp_block on ip for 300 s (default_temp_ttl) — from the built-in default of repeated_client_error (no rule_actions entry)"
        ),
        "{}",
        &tail[..tail.len().min(2000)]
    );
    assert!(
        tail.contains("audit.enforcement.block_applied security_rule.name=repeated_client_error")
            && tail.contains("scope.value=192.0.2.214"),
        "the block record of this event is listed:\n{}",
        &tail[..tail.len().min(2000)]
    );
    // A later request of the address is denied by that block, with the
    // seconds left.
    assert!(
        tail.contains("DENIED 429, Retry-After")
            && tail.contains("active block on ip:192.0.2.214 (written by repeated_client_error)"),
        "a later denial names the block it hit:\n{}",
        &tail[..tail.len().min(4000)]
    );
    // The rule_actions entry decides for resource_enumeration.
    assert!(text.contains(
        "action: alert — from rule_actions.resource_enumeration (over the built-in default of resource_enumeration)"
    ));
    // Every explained event belongs to the subject.
    for header in text.lines().filter(|l| l.starts_with("line ")) {
        assert!(header.contains(" ip=192.0.2.214"), "{header}");
    }
}

#[test]
fn one_line_shows_skips_with_their_reason_and_the_path_filter() {
    let dir = dir_with(CONFIG, "explain_line");
    // Line 30 of the sample: a successful /api/profile/ response of the NAT
    // address, the first event of its request.
    let text = explain(&dir, &["--line", "30"]);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(headers.len(), 1, "{text}");
    assert!(
        headers[0].starts_with("line 30: http.response.success"),
        "{text}"
    );
    for want in [
        "ingress (the request's first event): allowed",
        "rule brute_force_login: skipped — not ingress-safe",
        "rule login_throttle: ran, no match — its path filter excludes /api/profile/",
        "egress:",
        "rule brute_force_login: skipped — runs only on auth.login.failed, auth.login.success",
        "rule resource_enumeration: ran, no match",
        "read: history ip:192.0.2.214: 0 row(s)",
        "records: none",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
}

#[test]
fn the_ttl_names_its_source() {
    // block_rules gives repeated_client_error its TTL; its action still
    // comes from the built-in default (which has one).
    let config = format!("{CONFIG}\n[block_rules]\nrepeated_client_error = 42\n");
    let dir = dir_with(&config, "explain_block_rules");
    let text = explain(&dir, &["--subject", "ip:192.0.2.214", "--limit", "100000"]);
    assert!(
        text.contains("action: temp_block on ip for 42 s (block_rules.repeated_client_error) — from the built-in default of repeated_client_error"),
        "{}",
        &text[..text.len().min(3000)]
    );
    // A rule_actions ttl wins over block_rules.
    let config = config.replace(
        "[rule_actions]\n",
        "[rule_actions]\nrepeated_client_error = { action = \"temp_block\", ttl = 77 }\n",
    );
    let dir = dir_with(&config, "explain_rule_actions_ttl");
    let text = explain(&dir, &["--subject", "ip:192.0.2.214", "--limit", "100000"]);
    assert!(
        text.contains("action: temp_block on ip for 77 s (rule_actions.repeated_client_error.ttl) — from rule_actions.repeated_client_error (over the built-in default of repeated_client_error)"),
        "{}",
        &text[..text.len().min(3000)]
    );
}

#[test]
fn a_request_id_explains_each_of_its_events() {
    let dir = dir_with(CONFIG, "explain_request");
    let text = explain(&dir, &["--request-id", "req-7-000025"]);
    let headers: Vec<&str> = text.lines().filter(|l| l.starts_with("line ")).collect();
    assert!(!headers.is_empty(), "{text}");
    for h in &headers {
        assert!(h.contains("request=req-7-000025"), "{h}");
    }
}

#[test]
fn explain_never_writes_to_the_configured_stores() {
    let prefix = RedisPrefix::new("explain_dry");
    let config = format!(
        "redis_url = \"{}\"\nkey_prefix = \"{}\"\n{CONFIG}",
        redis_url(),
        prefix.prefix
    );
    let dir = dir_with(&config, "explain_dry");
    let text = explain(&dir, &["--subject", "ip:192.0.2.214", "--limit", "100000"]);
    assert!(
        text.contains("rule repeated_client_error: MATCHED"),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert_eq!(
        prefix.keys(),
        Vec::<String>::new(),
        "explain wrote to the configured Redis"
    );
}

#[test]
fn bad_selections_are_usage_errors() {
    let dir = dir_with(CONFIG, "explain_bad");
    let config = dir.path("explain.toml");
    let log = sample();
    for (args, want) in [
        (vec!["--subject", "nocolon"], "expected SCOPE:VALUE"),
        (vec!["--subject", "ip:not-an-ip"], "is not an IP address"),
        (vec!["--line", "99999999"], "the log has only"),
    ] {
        let mut all = vec!["explain", "--config", s(&config), &log];
        all.extend(args.iter().copied());
        let out = run(&all);
        expect_code(&out, 2);
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    }
    // No selector at all: clap refuses.
    let out = run(&["explain", "--config", s(&config), &log]);
    expect_code(&out, 2);
}
