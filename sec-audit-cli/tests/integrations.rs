//! The SIEM content of `integrations/` against records sec-audit really
//! emits: the Wazuh decoder and rules parse as XML and, evaluated over the
//! flattened records (PCRE2 field patterns, `if_sid` chains), send each
//! record to the rule written for its case; the Sigma rules validate
//! against the vendored Sigma rule schema and their detections select
//! exactly the records of their case.
//!
//! Records: a replay of `examples/sample-audit.jsonl` with
//! `examples/builtins.toml` (alert, blocked, temporary and permanent
//! block_applied), a block written and revoked through the block API, and
//! `evaluation_failed` from a Redis that does not answer (fail open) and a
//! `fail_closed_paths` path (fail closed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{cmd, example, expect_code, root, s};
use regex::Regex;
use sec_audit_enforce::{Config, ManualBlock, RequestView, Runtime, Sink};
use serde_json::Value;

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn records(&self) -> Vec<Value> {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

fn runtime(config: &str, buf: &SharedBuf) -> Runtime {
    let config = Config::from_toml_str(config).unwrap_or_else(|e| panic!("{e}"));
    Runtime::builder(config)
        .sink(Sink::Writer(Box::new(buf.clone())))
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Every kind of enforcement record, as sec-audit writes it.
fn emitted_records() -> Vec<Value> {
    let out = cmd()
        .args([
            "replay",
            "--config",
            s(&example("builtins.toml")),
            s(&example("sample-audit.jsonl")),
        ])
        .output()
        .expect("run sec-audit replay");
    expect_code(&out, 0);
    let mut records: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();

    // The block API: a temporary manual block, then its revocation.
    let buf = SharedBuf::default();
    let rt = runtime("enabled = true", &buf);
    rt.block(&ManualBlock {
        scope_type: "ip".into(),
        value: "203.0.113.77".into(),
        ttl: Some(600),
        reason: "investigating".into(),
        actor: Some("ops:alice".into()),
        ..ManualBlock::default()
    })
    .expect("block");
    assert_eq!(
        rt.unblock("ip", "203.0.113.77", "false positive", "ops:alice")
            .expect("unblock"),
        1
    );
    rt.flush();
    records.extend(buf.records());

    // A Redis that does not answer: the lookup fails, open by default and
    // closed on a fail-closed path.
    let buf = SharedBuf::default();
    let rt = runtime(
        &format!(
            "enabled = true\nredis_url = \"redis://127.0.0.1:{}\"\nconnect_timeout_ms = 200\ncommand_timeout_ms = 200\nfail_closed_paths = [\"^/admin\"]",
            closed_port()
        ),
        &buf,
    );
    assert!(rt
        .ingress_check(&RequestView::new("GET", "/shop", "203.0.113.5"))
        .is_allow());
    assert!(!rt
        .ingress_check(&RequestView::new("GET", "/admin/users", "203.0.113.5"))
        .is_allow());
    rt.flush();
    records.extend(buf.records());
    records
}

/// The case of a record, named as the integrations name them.
fn case(r: &Value) -> &'static str {
    let a = &r["attributes"];
    match (
        r["body"].as_str().unwrap_or(""),
        a["enforcement.action"].as_str(),
        a["enforcement.fail_mode"].as_str(),
    ) {
        ("audit.enforcement.alert", _, _) => "alert",
        ("audit.enforcement.blocked", _, _) => "blocked",
        ("audit.enforcement.block_applied", Some("temp"), _) => "temporary block",
        ("audit.enforcement.block_applied", Some("permanent"), _) => "permanent block",
        ("audit.enforcement.block_revoked", _, _) => "block revoked",
        ("audit.enforcement.evaluation_failed", _, Some("open")) => "failed open",
        ("audit.enforcement.evaluation_failed", _, Some("closed")) => "failed closed",
        other => panic!("a record of no known case: {other:?}: {r}"),
    }
}

const CASES: [&str; 7] = [
    "alert",
    "blocked",
    "temporary block",
    "permanent block",
    "block revoked",
    "failed open",
    "failed closed",
];

#[test]
fn the_records_cover_every_case() {
    let records = emitted_records();
    let seen: BTreeSet<&str> = records.iter().map(case).collect();
    assert_eq!(seen, CASES.iter().copied().collect());
}

// --- Wazuh ------------------------------------------------------------------

fn integrations() -> std::path::PathBuf {
    root().join("integrations")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The record's fields as Wazuh's JSON decoder names them: nested keys
/// joined with `.`, scalars as text.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        Value::Number(n) => {
            out.insert(prefix.to_string(), n.to_string());
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        Value::Null | Value::Array(_) => {}
    }
}

struct WazuhRule {
    id: u32,
    level: u32,
    if_sid: Option<u32>,
    fields: Vec<(String, Regex)>,
}

impl WazuhRule {
    fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.fields
            .iter()
            .all(|(name, re)| fields.get(name).is_some_and(|v| re.is_match(v)))
    }
}

fn wazuh_rules() -> Vec<WazuhRule> {
    let text = read(&integrations().join("wazuh/rules/sec_audit_rules.xml"));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("rules XML: {e}"));
    let group = doc.root_element();
    assert_eq!(group.tag_name().name(), "group");
    let mut rules = Vec::new();
    for rule in group.children().filter(|n| n.is_element()) {
        assert_eq!(rule.tag_name().name(), "rule");
        let num = |attr: &str| -> u32 {
            rule.attribute(attr)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("rule without a numeric {attr}"))
        };
        let mut r = WazuhRule {
            id: num("id"),
            level: num("level"),
            if_sid: None,
            fields: Vec::new(),
        };
        for child in rule.children().filter(|n| n.is_element()) {
            let body = child.text().unwrap_or("").trim();
            match child.tag_name().name() {
                "if_sid" => r.if_sid = Some(body.parse().expect("numeric if_sid")),
                "field" => {
                    // Only PCRE2 patterns are evaluated here (and used).
                    assert_eq!(child.attribute("type"), Some("pcre2"), "rule {}", r.id);
                    let name = child.attribute("name").expect("field name");
                    let re = Regex::new(body).unwrap_or_else(|e| panic!("rule {}: {e}", r.id));
                    r.fields.push((name.to_string(), re));
                }
                "description" | "group" => {}
                // Any other condition would be ignored by this evaluator.
                other => panic!("rule {}: <{other}> is not evaluated by this test", r.id),
            }
        }
        rules.push(r);
    }
    rules
}

/// The rule Wazuh alerts with: the deepest matching rule of the `if_sid`
/// tree. Siblings are exclusive (asserted).
fn wazuh_fired<'r>(rules: &'r [WazuhRule], record: &Value) -> Option<&'r WazuhRule> {
    let mut fields = BTreeMap::new();
    flatten("", record, &mut fields);
    let matching = |parent: Option<u32>| -> Vec<&'r WazuhRule> {
        rules
            .iter()
            .filter(|r| r.if_sid == parent && r.matches(&fields))
            .collect()
    };
    let mut level = matching(None);
    let mut fired = None;
    while !level.is_empty() {
        assert_eq!(level.len(), 1, "several sibling rules match {record}");
        let r = level[0];
        fired = Some(r);
        level = matching(Some(r.id));
    }
    fired
}

#[test]
fn the_wazuh_decoder_hands_sec_audit_lines_to_the_json_decoder() {
    let text = read(&integrations().join("wazuh/decoders/sec_audit_decoders.xml"));
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("decoder XML: {e}"));
    let decoder = doc.root_element();
    assert_eq!(decoder.tag_name().name(), "decoder");
    assert_eq!(decoder.attribute("name"), Some("sec-audit"));
    let child = |name: &str| {
        decoder
            .children()
            .find(|n| n.has_tag_name(name))
            .unwrap_or_else(|| panic!("no <{name}>"))
    };
    let program = child("program_name");
    assert_eq!(program.attribute("type"), Some("pcre2"));
    let re = Regex::new(program.text().unwrap_or("")).expect("program_name pattern");
    assert!(re.is_match("sec-audit"));
    assert!(!re.is_match("sec-audit-other") && !re.is_match("sshd"));
    assert_eq!(child("plugin_decoder").text(), Some("JSON_Decoder"));
}

#[test]
fn each_record_fires_the_wazuh_rule_of_its_case() {
    let rules = wazuh_rules();
    let expected: BTreeMap<&str, u32> = [
        ("alert", 100701),
        ("blocked", 100702),
        ("temporary block", 100703),
        ("permanent block", 100704),
        ("block revoked", 100705),
        ("failed open", 100706),
        ("failed closed", 100707),
    ]
    .into_iter()
    .collect();
    let mut fired_ids = BTreeSet::new();
    for r in emitted_records() {
        let c = case(&r);
        let fired = wazuh_fired(&rules, &r).unwrap_or_else(|| panic!("no rule fires for {r}"));
        assert_eq!(fired.id, expected[c], "{c}: {r}");
        // Levels follow the severity.
        match r["severity_text"].as_str() {
            Some("INFO") => assert!(fired.level < 5, "{c}"),
            Some("WARNING") => assert!((5..=10).contains(&fired.level), "{c}"),
            Some("ERROR") => assert!(fired.level >= 12, "{c}"),
            other => panic!("severity {other:?}"),
        }
        fired_ids.insert(fired.id);
    }
    // Every alerting rule is reached by a real record.
    let alerting: BTreeSet<u32> = rules.iter().filter(|r| r.level > 0).map(|r| r.id).collect();
    assert_eq!(fired_ids, alerting);
    // Other JSON is not ours.
    let other: Value = serde_json::json!({"body": "audit.enforcement.blocked",
        "resource": {"service.name": "someone-else"}, "attributes": {"event_type": "audit.enforcement.blocked"}});
    assert!(wazuh_fired(&rules, &other).is_none());
}

// --- Sigma ------------------------------------------------------------------

fn sigma_rules() -> Vec<(String, Value)> {
    let dir = integrations().join("sigma/rules");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| {
            let v: Value =
                yaml_serde::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            (name.unwrap_or_default(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no Sigma rules in {}", dir.display());
    out
}

fn sigma_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(
        &integrations().join("sigma/schema/sigma-detection-rule-schema.json"),
    ))
    .expect("the schema is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the schema does not compile: {e}"))
}

#[test]
fn the_sigma_rules_are_valid_sigma() {
    let validator = sigma_validator();
    let mut ids = BTreeSet::new();
    for (name, rule) in sigma_rules() {
        let errors: Vec<String> = validator
            .iter_errors(&rule)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert_eq!(rule["logsource"]["product"], "sec-audit", "{name}");
        assert_eq!(rule["logsource"]["service"], "enforcement", "{name}");
        assert!(
            ids.insert(rule["id"].as_str().unwrap_or("").to_string()),
            "{name}: duplicate id"
        );
    }
    // The validator does refuse what the schema forbids.
    let (_, mut bad) = sigma_rules().remove(0);
    bad["level"] = Value::from("severe");
    assert!(!validator.is_valid(&bad));
    let (_, mut bad) = sigma_rules().remove(0);
    bad["id"] = Value::from("not-a-uuid");
    assert!(!validator.is_valid(&bad));
}

/// A Sigma field of a record: an attribute, else a top-level key.
fn sigma_field<'a>(r: &'a Value, field: &str) -> Option<&'a Value> {
    r["attributes"].get(field).or_else(|| r.get(field))
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One search identifier: a map of field → value or list of values (all
/// fields must match; a list matches any of its values), compared as
/// case-insensitive text, Sigma's default.
fn selection_matches(sel: &Value, r: &Value, rule: &str) -> bool {
    let Value::Object(map) = sel else {
        panic!("{rule}: only map selections are evaluated by this test");
    };
    map.iter().all(|(field, want)| {
        assert!(
            !field.contains('|'),
            "{rule}: modifiers are not evaluated by this test"
        );
        let Some(have) = sigma_field(r, field) else {
            return false;
        };
        let have = value_text(have).to_lowercase();
        match want {
            Value::Array(options) => options.iter().any(|o| value_text(o).to_lowercase() == have),
            one => value_text(one).to_lowercase() == have,
        }
    })
}

/// `condition`: identifiers with `and`, `or`, `not` and parentheses.
fn condition_matches(cond: &str, detection: &Value, r: &Value, rule: &str) -> bool {
    let spaced = cond.replace('(', " ( ").replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    fn or(t: &[&str], i: &mut usize, f: &dyn Fn(&str) -> bool) -> bool {
        let mut v = and(t, i, f);
        while t.get(*i) == Some(&"or") {
            *i += 1;
            let rhs = and(t, i, f);
            v = v || rhs;
        }
        v
    }
    fn and(t: &[&str], i: &mut usize, f: &dyn Fn(&str) -> bool) -> bool {
        let mut v = not(t, i, f);
        while t.get(*i) == Some(&"and") {
            *i += 1;
            let rhs = not(t, i, f);
            v = v && rhs;
        }
        v
    }
    fn not(t: &[&str], i: &mut usize, f: &dyn Fn(&str) -> bool) -> bool {
        match t.get(*i).copied() {
            Some("not") => {
                *i += 1;
                !not(t, i, f)
            }
            Some("(") => {
                *i += 1;
                let v = or(t, i, f);
                assert_eq!(t.get(*i).copied(), Some(")"), "unbalanced condition");
                *i += 1;
                v
            }
            Some(id) => {
                *i += 1;
                f(id)
            }
            None => panic!("condition ends early"),
        }
    }
    let lookup = |id: &str| -> bool {
        let sel = detection
            .get(id)
            .unwrap_or_else(|| panic!("{rule}: condition names `{id}`, which is not defined"));
        selection_matches(sel, r, rule)
    };
    let mut i = 0;
    let v = or(&tokens, &mut i, &lookup);
    assert_eq!(
        i,
        tokens.len(),
        "{rule}: condition `{cond}` not fully parsed"
    );
    v
}

#[test]
fn each_sigma_rule_selects_exactly_the_records_of_its_case() {
    let expected: BTreeMap<&str, &str> = [
        ("sec_audit_alert.yml", "alert"),
        ("sec_audit_request_blocked.yml", "blocked"),
        ("sec_audit_temporary_block.yml", "temporary block"),
        ("sec_audit_permanent_block.yml", "permanent block"),
        ("sec_audit_block_revoked.yml", "block revoked"),
        ("sec_audit_evaluation_failed.yml", "failed open"),
    ]
    .into_iter()
    .collect();
    let rules = sigma_rules();
    let names: BTreeSet<&str> = rules.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        expected.keys().copied().collect(),
        "a rule without a case here"
    );
    let records = emitted_records();
    for (name, rule) in &rules {
        let detection = &rule["detection"];
        let cond = detection["condition"].as_str().expect("condition");
        let mut hits = 0;
        for r in &records {
            let hit = condition_matches(cond, detection, r, name);
            let c = case(r);
            let wanted = c == expected[name.as_str()]
                || (name == "sec_audit_evaluation_failed.yml" && c == "failed closed");
            assert_eq!(hit, wanted, "{name} on a `{c}` record: {r}");
            hits += usize::from(hit);
        }
        assert!(hits > 0, "{name} selects no real record");
    }
}
