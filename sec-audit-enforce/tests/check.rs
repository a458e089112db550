//! The configuration check: W001–W005 (W004 needs a live Redis and is
//! covered with the store tests; W006 needs a store: `policy_servers.rs`)
//! and E001.

use sec_audit_enforce::check::has_errors;
use sec_audit_enforce::{check, Config, Level};

fn ids(toml: &str) -> Vec<&'static str> {
    let config = Config::from_toml_str(toml).expect("parses");
    check(&config).into_iter().map(|f| f.id).collect()
}

#[test]
fn a_clean_configuration_has_no_findings() {
    assert!(ids("").is_empty());
    assert!(ids("enabled = true\nredis_url = \"redis://127.0.0.1:6379\"\n[[rules]]\nbuiltin = \"brute_force_login\"").is_empty());
}

#[test]
fn w001_enabled_without_redis() {
    assert_eq!(ids("enabled = true"), vec!["W001"]);
}

#[test]
fn w002_fail_closed_paths() {
    assert_eq!(ids("fail_closed_paths = [\"^/admin\"]"), vec!["W002"]);
}

#[test]
fn w003_permanent_block_on_ip() {
    let toml = "[[rules]]\nbuiltin = \"brute_force_login\"\n[rule_actions]\nbrute_force_login = { action = \"persist_block\", scopes = [\"ip\"] }";
    assert_eq!(ids(toml), vec!["W003"]);
    let gated = "block_severity = 5\n[[rules]]\nbuiltin = \"brute_force_login\"\n[rule_actions]\nbrute_force_login = { action = \"block\", scopes = [\"ip\", \"user\"] }";
    assert_eq!(ids(gated), vec!["W003"]);
    // Without a severity gate `block` is temporary: no warning.
    let temp = "[[rules]]\nbuiltin = \"brute_force_login\"\n[rule_actions]\nbrute_force_login = { action = \"block\", scopes = [\"ip\"] }";
    assert!(ids(temp).is_empty());
    // Permanent on user and session is fine.
    let users = "[[rules]]\nbuiltin = \"brute_force_login\"\n[rule_actions]\nbrute_force_login = { action = \"persist_block\", scopes = [\"user\"] }";
    assert!(ids(users).is_empty());
}

#[test]
fn w003_escalation_to_permanent_on_an_operator_written_ip() {
    let esc = "[escalation]\nfactor = 2\nmax_ttl = 3600\nwindow = 3600\npermanent_after = 4\n";
    let rules = "[[rules]]\nbuiltin = \"brute_force_login\"\n";
    let on_ip = format!(
        "{esc}{rules}[rule_actions]\nbrute_force_login = {{ scopes = [\"ip\", \"user\"] }}"
    );
    let findings = check(&Config::from_toml_str(&on_ip).unwrap());
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].id, "W003");
    assert!(
        findings[0].message.contains("permanent_after = 4"),
        "{}",
        findings[0].message
    );
    // The default ip scope never becomes permanent: no warning; nor
    // without permanent_after, nor on user only.
    assert!(ids(&format!("{esc}{rules}")).is_empty());
    assert!(ids(&format!(
        "{esc}{rules}[rule_actions]\nbrute_force_login = {{ scopes = [\"user\"] }}"
    ))
    .is_empty());
    assert!(ids(&format!(
        "{rules}[rule_actions]\nbrute_force_login = {{ scopes = [\"ip\"] }}"
    ))
    .is_empty());
    // An alert never blocks.
    assert!(ids(&format!("{esc}{rules}[rule_actions]\nbrute_force_login = {{ action = \"alert\", scopes = [\"ip\"] }}")).is_empty());
}

#[test]
fn w005_entries_naming_no_registered_rule() {
    let toml = "[[rules]]\nbuiltin = \"brute_force_login\"\n[rule_actions]\nghost = \"alert\"\n[block_rules]\nrepeated_route = 60";
    let findings = check(&Config::from_toml_str(toml).unwrap());
    let w005: Vec<&str> = findings
        .iter()
        .filter(|f| f.id == "W005")
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(w005.len(), 2);
    assert!(w005[0].contains("rule_actions.ghost"));
    assert!(w005[1].contains("block_rules.repeated_route"));
}

#[test]
fn e001_anything_validation_rejects() {
    let bad_rule =
        Config::from_toml_str("[[rules]]\nbuiltin = \"brute_force_login\"\nthreshold = -1")
            .unwrap();
    let f = check(&bad_rule);
    assert!(has_errors(&f));
    assert_eq!(f[0].id, "E001");
    assert_eq!(f[0].level, Level::Error);
    assert!(
        f[0].message.contains("brute_force_login") && f[0].message.contains("threshold"),
        "{}",
        f[0]
    );
    let dup = Config::from_toml_str(
        "[[rules]]\nbuiltin = \"brute_force_login\"\n[[rules]]\nbuiltin = \"brute_force_login\"",
    )
    .unwrap();
    assert!(check(&dup)
        .iter()
        .any(|f| f.id == "E001" && f.message.contains("twice")));
    let unknown = Config::from_toml_str("[[rules]]\nbuiltin = \"brute_force_logon\"").unwrap();
    assert!(check(&unknown)
        .iter()
        .any(|f| f.id == "E001" && f.message.contains("brute_force_logon")));
    // A configuration built in code is checked the same way.
    let config = Config {
        status_code: 700,
        ..Config::default()
    };
    assert!(check(&config)
        .iter()
        .any(|f| f.id == "E001" && f.message.contains("status_code")));
}

#[test]
fn findings_print_as_one_line_each() {
    let f = check(&Config::from_toml_str("enabled = true").unwrap());
    assert_eq!(f[0].to_string().lines().count(), 1);
    assert!(f[0].to_string().starts_with("W001 warning: "));
}

#[test]
fn e001_for_a_redis_ca_file_that_does_not_hold_a_certificate() {
    let dir = std::env::temp_dir().join(format!("sec-audit-check-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").expect("write");
    for (file, reason) in [
        (dir.join("missing.pem"), "not found"),
        (junk.clone(), "no PEM certificate"),
    ] {
        let config = Config::from_toml_str(&format!(
            "redis_url = \"rediss://cache:6380\"\nredis_ca_file = \"{}\"",
            file.display()
        ))
        .expect("parses: the file is read by check, not by parsing");
        let f = check(&config);
        assert!(
            f.iter().any(|f| f.id == "E001"
                && f.level == Level::Error
                && f.message.contains("`redis_ca_file`")
                && f.message.contains(reason)),
            "{f:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_relative_redis_ca_file_is_relative_to_the_configuration_file() {
    let dir = std::env::temp_dir().join(format!("sec-audit-check-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "redis_url = \"rediss://cache:6380\"\nredis_ca_file = \"certs/ca.pem\"\n",
    )
    .expect("write");
    let config = Config::from_file(&path).expect("loads");
    assert_eq!(config.redis_ca_file, Some(dir.join("certs/ca.pem")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn e001_names_where_a_bad_rule_parameter_is_written() {
    let text = "enabled = true\n[[rules]]\nbuiltin = \"brute_force_login\"\n\n[[rules]]\nbuiltin = \"repeated_route\"\nthreshold = 3\nwindow_seconds = \"soon\"\n";
    let f = check(&Config::from_toml_str(text).unwrap());
    let e001: Vec<&str> = f
        .iter()
        .filter(|f| f.id == "E001")
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(e001.len(), 1, "{f:?}");
    assert!(
        e001[0].starts_with("line 8, column 1: ")
            && e001[0].contains("repeated_route")
            && e001[0].contains("`window_seconds`"),
        "{}",
        e001[0]
    );
    // An unknown built-in: its `builtin` key; a parameter the rule does not
    // take: that key.
    let f = check(&Config::from_toml_str("[[rules]]\n\nbuiltin = \"brute_force_logon\"").unwrap());
    assert!(f[0].message.starts_with("line 3, column 1: "), "{}", f[0]);
    let f = check(
        &Config::from_toml_str("[[rules]]\nbuiltin = \"login_throttle\"\n  treshold = 1").unwrap(),
    );
    assert!(f[0].message.starts_with("line 3, column 3: "), "{}", f[0]);
    // A scope that does not exist.
    let f = check(
        &Config::from_toml_str("\n[rule_actions]\nbrute_force_login = { scopes = [\"usr\"] }")
            .unwrap(),
    );
    assert!(f[0].message.starts_with("line 3, column 23: "), "{}", f[0]);
}
