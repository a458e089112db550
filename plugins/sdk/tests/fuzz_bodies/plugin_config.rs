//! The body of the `plugin_config` fuzz target
//! (`fuzz/fuzz_targets/plugin_config.rs`), shared with
//! `tests/fuzz_corpus.rs` so that `cargo test` runs every committed corpus
//! file and former crash through the same code.
//!
//! The input is what a plugin library receives from the host for a rule's
//! `[rules.config]` table: JSON text, decoded the way the SDK's shim decodes
//! it (empty text is an empty table; anything but an object is refused).
//! The table is deserialized the way the example plugins deserialize theirs
//! (`PluginConfig::deserialize` into a `deny_unknown_fields` struct of
//! `params` types), then every key into every `params` type, checking each
//! type's promise (a `Number` is finite and >= 0, a `Count<MIN>` is at least
//! `MIN` and fits an `i64`, `Seconds` are 1 s to ten years, a `Severity` is
//! 1-10) and that every error names the rule (and the key, for a bad value).
//! A struct with no fields names an unknown key of any non-empty table.
//! Finally the table crosses the boundary types (`map_to_ffi` /
//! `map_from_ffi`, as metadata does) and must come back equal.

use std::collections::BTreeMap;

use sec_audit_plugin_sdk::params::{
    Count, Number, OptionalDecision, Seconds, Severity, StringList,
};
use sec_audit_plugin_sdk::serde::de::DeserializeOwned;
use sec_audit_plugin_sdk::serde::Deserialize;
use sec_audit_plugin_sdk::serde_json::{self, Map, Value};
use sec_audit_plugin_sdk::{map_from_ffi, map_to_ffi, number, ConfigError, PluginConfig};

const RULE: &str = "fuzz_rule";
/// Ten years, the bound of `Seconds`.
const TEN_YEARS: u64 = 10 * 365 * 86_400;

fn assert_names_rule(e: &ConfigError, key: Option<&str>) {
    assert_eq!(e.rule.as_deref(), Some(RULE), "{e:?}");
    let text = e.to_string();
    assert!(text.starts_with(&format!("rule `{RULE}`: ")), "{text}");
    assert!(!e.reason.is_empty(), "{e:?}");
    if let Some(key) = key {
        assert_eq!(e.key.as_deref(), Some(key), "{e:?}");
    }
}

/// The union of the example plugins' configurations.
#[derive(Deserialize)]
#[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields, default)]
struct Examples {
    threshold: Count<1>,
    distinct_usernames: Count<2>,
    max_events: Count<1>,
    window_seconds: Seconds,
    severity: Severity,
    message: String,
    tags: StringList,
    decision: OptionalDecision,
    event_types: Option<StringList>,
    enabled: bool,
    amount: Number,
}

impl Default for Examples {
    fn default() -> Self {
        Examples {
            threshold: Count(10),
            distinct_usernames: Count(10),
            max_events: Count(100),
            window_seconds: Seconds(60),
            severity: Severity(5),
            message: "a message".into(),
            tags: StringList::of(&["http", "scan"]),
            decision: OptionalDecision(None),
            event_types: None,
            enabled: true,
            amount: Number(1.0),
        }
    }
}

/// A configuration that takes no key at all.
#[derive(Deserialize)]
#[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields)]
struct Nothing {}

/// Deserializes `{key: raw}` as `T` and checks `promise` on the value, or
/// that the error names the rule and the key.
fn one<T: DeserializeOwned>(key: &str, raw: &Value, promise: impl FnOnce(T)) {
    let mut m = Map::new();
    m.insert(key.to_string(), raw.clone());
    match PluginConfig::new(m, None).deserialize::<BTreeMap<String, T>>(RULE) {
        Ok(values) => {
            if let Some(v) = values.into_values().next() {
                promise(v);
            }
        }
        Err(e) => assert_names_rule(&e, Some(key)),
    }
}

/// `key` of `table` as every field type, checking what each returns.
fn every_type(table: &Map<String, Value>, key: &str) {
    let Some(raw) = table.get(key) else {
        return;
    };
    let num = number(raw);
    one::<Number>(key, raw, |n| {
        assert!(n.0.is_finite() && n.0 >= 0.0, "{key}: {n:?}");
        assert_eq!(num, Some(n.0), "{key}");
    });
    one::<Count<0>>(key, raw, |n| {
        assert!(i64::try_from(n.0).is_ok(), "{key}: {n:?}")
    });
    one::<Count<1>>(key, raw, |n| assert!(n.0 >= 1, "{key}: {n:?}"));
    one::<Count<5>>(key, raw, |n| {
        assert!(n.0 >= 5, "{key}: {n:?}");
        assert_eq!(n.as_i64() as u64, n.0);
    });
    one::<Seconds>(key, raw, |s| {
        assert!((1..=TEN_YEARS).contains(&s.0), "{key}: {s:?}")
    });
    one::<Severity>(key, raw, |s| {
        assert!((1..=10).contains(&s.0), "{key}: {s:?}")
    });
    one::<bool>(key, raw, |b| assert_eq!(raw, &Value::Bool(b)));
    one::<String>(key, raw, |s| assert_eq!(raw.as_str(), Some(s.as_str())));
    one::<StringList>(key, raw, |l| match raw {
        Value::String(s) => assert_eq!(l.0, std::slice::from_ref(s)),
        Value::Array(items) => assert_eq!(l.0.len(), items.len()),
        other => panic!("{key}: {other} read as a list"),
    });
    one::<OptionalDecision>(key, raw, |d| {
        if d.0.is_none() {
            assert!(matches!(raw.as_str(), Some("" | "none")), "{key}: {raw}");
        }
    });
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let table: Map<String, Value> = if text.trim().is_empty() {
        Map::new()
    } else {
        match serde_json::from_str(text) {
            Ok(t) => t,
            Err(_) => return,
        }
    };
    let first = table.keys().next().cloned();
    for selected in [None, first] {
        let config = PluginConfig::new(table.clone(), selected.clone());
        assert!(config.wants(selected.as_deref().unwrap_or("anything")));

        // The way the example plugins read their configuration.
        match config.deserialize::<Examples>(RULE) {
            Ok(p) => {
                assert!(p.threshold.0 >= 1 && p.distinct_usernames.0 >= 2);
                assert!((1..=TEN_YEARS).contains(&p.window_seconds.0));
                assert!((1..=10).contains(&p.severity.0));
                if table.get("tags").is_none() {
                    assert_eq!(p.tags.0, ["http", "scan"]);
                }
                assert!(p.amount.0 >= 0.0 && p.max_events.0 >= 1);
                let _ = (p.message, p.decision, p.event_types, p.enabled);
            }
            Err(e) => assert_names_rule(&e, None),
        }

        // Every key, every type.
        for key in table.keys() {
            every_type(&table, key);
        }

        // Taking nothing leaves every key unknown.
        match config.deserialize::<Nothing>(RULE) {
            Ok(Nothing {}) => assert!(table.is_empty(), "a struct without fields took keys"),
            Err(e) => {
                assert_names_rule(&e, None);
                assert!(
                    table
                        .keys()
                        .any(|k| e.reason == format!("unknown parameter `{k}`")),
                    "{e}"
                );
            }
        }
    }

    let back = map_from_ffi(map_to_ffi(table.clone()));
    assert_eq!(back, table, "the table changed crossing the boundary");
}
