//! The body of the `plugin_config` fuzz target
//! (`fuzz/fuzz_targets/plugin_config.rs`), shared with
//! `tests/fuzz_corpus.rs` so that `cargo test` runs every committed corpus
//! file and former crash through the same code.
//!
//! The input is what a plugin library receives from the host for a rule's
//! `[rules.config]` table: JSON text, decoded the way the SDK's shim decodes
//! it (empty text is an empty table; anything but an object is refused).
//! The table is read the way the example plugins read theirs, then every key
//! with every `Params` accessor, checking each accessor's promise (a
//! `positive` number is > 0, an `integer` is at least its minimum, `seconds`
//! are 1 s to ten years, a `severity` is 1-10) and that every error names
//! the rule (and the key, for a bad value). `finish` passes once every key
//! was read and names an unread key otherwise. Finally the table crosses the
//! boundary types (`map_to_ffi` / `map_from_ffi`, as metadata does) and must
//! come back equal.

use sec_audit_plugin_sdk::serde_json::{self, Map, Value};
use sec_audit_plugin_sdk::{map_from_ffi, map_to_ffi, number, ConfigError, Params, PluginConfig};

const RULE: &str = "fuzz_rule";
/// Ten years, the bound of `Params::seconds`.
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

/// Reads `key` with every accessor and checks what each returns.
fn every_accessor(p: &Params<'_>, table: &Map<String, Value>, key: &str) {
    let raw = table.get(key);
    let num = raw.and_then(number);
    let check = |r: Result<(), ConfigError>| {
        if let Err(e) = r {
            assert_names_rule(&e, Some(key));
        }
    };
    check(p.non_negative(key, 0.0).map(|n| {
        assert!(n.is_finite() && n >= 0.0, "{key}: {n}");
        match raw {
            None => assert_eq!(n, 0.0),
            Some(_) => assert_eq!(num, Some(n), "{key}"),
        }
    }));
    check(
        p.positive(key, 1.0)
            .map(|n| assert!(n.is_finite() && n > 0.0, "{key}: {n}")),
    );
    for min in [0, 1, 5] {
        check(p.integer(key, 7, min).map(|n| {
            assert!(n >= min, "{key}: {n} < {min}");
            assert!(i64::try_from(n).is_ok(), "{key}: {n} does not fit an i64");
            if raw.is_none() {
                assert_eq!(n, 7);
            }
        }));
    }
    check(
        p.seconds(key, 60)
            .map(|s| assert!((1..=TEN_YEARS).contains(&s), "{key}: {s}")),
    );
    check(p.bool(key, false).map(|b| {
        if let Some(v) = raw {
            assert_eq!(v, &Value::Bool(b));
        }
    }));
    check(p.string(key, "default").map(|s| {
        if let Some(v) = raw {
            assert_eq!(v.as_str(), Some(s.as_str()));
        }
    }));
    check(p.string_list(key).map(|l| {
        assert_eq!(l.is_some(), raw.is_some());
    }));
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
        let p = config.params(RULE);
        let read = (|| {
            let threshold = p.integer("threshold", 10, 1)?;
            assert!(threshold >= 1);
            let distinct = p.integer("distinct_usernames", 10, 2)?;
            let max_events = p.integer("max_events", 100, distinct)?;
            assert!(max_events >= distinct);
            let window = p.seconds("window_seconds", 60)?;
            assert!((1..=TEN_YEARS).contains(&window));
            let severity = p.severity(5)?;
            assert!((1..=10).contains(&severity));
            let _message = p.string("message", "a message")?;
            let tags = p.tags(&["http", "scan"])?;
            if table.get("tags").is_none() {
                assert_eq!(tags, ["http", "scan"]);
            }
            let _decision = p.decision(None)?;
            let _events = p.string_list("event_types")?;
            let _flag = p.bool("enabled", true)?;
            let _amount = p.positive("amount", 1.0)?;
            p.finish()
        })();
        if let Err(e) = read {
            assert_names_rule(&e, None);
        }

        // Every key, every accessor; then `finish` has nothing left over.
        let p = config.params(RULE);
        for key in table.keys() {
            every_accessor(&p, &table, key);
        }
        if let Err(e) = p.finish() {
            panic!("every key was read, yet finish failed: {e}");
        }

        // Reading nothing leaves every key unknown.
        match config.params(RULE).finish() {
            Ok(()) => assert!(table.is_empty(), "finish accepted unread keys"),
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
