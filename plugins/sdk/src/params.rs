//! Field types for a plugin's configuration struct: each checks its range
//! while it deserializes, so a plugin's `from_config` is a
//! `#[derive(Deserialize)]` struct and one [`PluginConfig::deserialize`]
//! call.
//!
//! Numbers may be written as integers, floats or numeric strings (`"4"`);
//! windows also as durations (`"15m"`, `"90s"`, `"2h"`, `"7d"`). A single
//! string counts as a list of one.
//!
//! ```
//! use sec_audit_plugin_sdk::params::{Count, OptionalDecision, Seconds, Severity, StringList};
//! use sec_audit_plugin_sdk::serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields, default)]
//! struct Params {
//!     threshold: Count<1>,
//!     window_seconds: Seconds,
//!     severity: Severity,
//!     message: String,
//!     tags: StringList,
//!     decision: OptionalDecision,
//! }
//!
//! impl Default for Params {
//!     fn default() -> Self {
//!         Params {
//!             threshold: Count(10),
//!             window_seconds: Seconds(60),
//!             severity: Severity(5),
//!             message: "Too many teapots".into(),
//!             tags: StringList::of(&["http"]),
//!             decision: OptionalDecision(None),
//!         }
//!     }
//! }
//! ```
//!
//! [`PluginConfig::deserialize`]: crate::PluginConfig::deserialize

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::config::ConfigError;
use crate::rule::Decision;

/// Ten years: the longest [`Seconds`].
pub const TEN_YEARS_SECS: u64 = 10 * 365 * 86_400;

/// Counts refuse values from 2^63 on (they would wrap as `i64`).
const MAX_INTEGER_EXCLUSIVE: f64 = 9_223_372_036_854_775_808.0;

/// A serde error as the plugin's configuration error: unknown and missing
/// keys by name, any other problem as a bad value of the table key it is
/// under (`first`, the error path's first segment). A string value is never
/// repeated.
pub(crate) fn explain(rule: &str, first: Option<&str>, message: &str) -> ConfigError {
    let backticked = |s: &str| -> Option<String> {
        let rest = s.strip_prefix('`')?;
        rest.split_once('`').map(|(k, _)| k.to_string())
    };
    if message.starts_with("unknown field ") {
        let field = first
            .map(str::to_string)
            .or_else(|| message.strip_prefix("unknown field ").and_then(backticked))
            .unwrap_or_default();
        return ConfigError::new(rule, format!("unknown parameter `{field}`"));
    }
    if let Some(field) = message.strip_prefix("missing field ").and_then(backticked) {
        return ConfigError::new(rule, format!("missing required parameter `{field}`"));
    }
    let reason = scrub(message);
    match first {
        Some(key) => ConfigError::bad_value(rule, key, reason),
        None => ConfigError::new(rule, reason),
    }
}

/// The table key a `serde_path_to_error` path starts with.
pub(crate) fn first_key(path: &serde_path_to_error::Path) -> Option<&str> {
    match path.iter().next()? {
        serde_path_to_error::Segment::Map { key } => Some(key),
        _ => None,
    }
}

/// serde's `invalid type: string "…", expected …` without the string.
fn scrub(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(i) = rest.rfind(", expected ") {
                let (got, expected) = (&rest[..i], &rest[i + ", expected ".len()..]);
                let got = if got.starts_with("string") || got.starts_with("character") {
                    "a string"
                } else {
                    got
                };
                return format!("expected {expected} (got {got})");
            }
        }
    }
    message.to_string()
}

/// Parses a duration: a whole number with an optional unit `s`, `m`, `h`
/// or `d` (any case; no unit is seconds), in seconds.
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{t}` is not a duration (e.g. 300, 90s, 15m, 2h, 7d)"
            ))
        }
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a duration (e.g. 300, 90s, 15m, 2h, 7d)"))?;
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{t}` is too long"))
}

/// A number before its checks: a finite number, or text that is not one.
enum Num {
    F(f64),
    Text(String),
}

struct NumVisitor(&'static str);

impl Visitor<'_> for NumVisitor {
    type Value = Num;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
        Ok(Num::F(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
        Ok(Num::F(v as f64))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
        Ok(Num::F(v))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Num, E> {
        Ok(match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Num::F(f),
            _ => Num::Text(s.trim().to_string()),
        })
    }
}

fn non_negative<E: de::Error>(n: Num) -> Result<f64, E> {
    match n {
        Num::F(f) if !f.is_finite() || f < 0.0 => {
            Err(E::custom(format!("must not be negative (got {f})")))
        }
        Num::F(f) => Ok(f),
        Num::Text(_) => Err(E::custom("expected a number")),
    }
}

/// A number ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        non_negative(d.deserialize_any(NumVisitor("a number"))?).map(Number)
    }
}

/// A whole number `>= MIN` and below 2^63, so it converts to `i64` without
/// wrapping (a threshold of `1e19` would otherwise turn negative and match
/// everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count<const MIN: u64>(pub u64);

impl<const MIN: u64> Count<MIN> {
    /// The count as `i64` (always exact).
    pub fn as_i64(self) -> i64 {
        i64::try_from(self.0).unwrap_or(i64::MAX)
    }
}

impl<'de, const MIN: u64> Deserialize<'de> for Count<MIN> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = non_negative::<D::Error>(d.deserialize_any(NumVisitor("a whole number"))?)?;
        if n.fract() != 0.0 {
            return Err(de::Error::custom(format!(
                "expected a whole number (got {n})"
            )));
        }
        if n >= MAX_INTEGER_EXCLUSIVE {
            return Err(de::Error::custom(format!(
                "is too large (got {n}; at most 2^63 - 1)"
            )));
        }
        let n = n as u64;
        if n < MIN {
            return Err(de::Error::custom(format!(
                "must be at least {MIN} (got {n})"
            )));
        }
        Ok(Count(n))
    }
}

/// A window or TTL in whole seconds: greater than 0, at most ten years; a
/// number (fractions round up) or a duration string such as `"15m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = match d.deserialize_any(NumVisitor(
            "a number of seconds or a duration such as \"15m\"",
        ))? {
            Num::Text(s) if !s.starts_with(|c: char| c.is_ascii_digit()) => {
                return Err(de::Error::custom(
                    "expected a number of seconds or a duration such as \"15m\"",
                ))
            }
            Num::Text(s) => parse_duration_secs(&s).map_err(de::Error::custom)? as f64,
            n => non_negative(n)?,
        };
        if n <= 0.0 {
            return Err(de::Error::custom("must be greater than 0"));
        }
        if n > TEN_YEARS_SECS as f64 {
            return Err(de::Error::custom("is more than ten years"));
        }
        Ok(Seconds(n.ceil() as u64))
    }
}

/// A severity, an integer from 1 to 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Severity(pub u8);

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n =
            non_negative::<D::Error>(d.deserialize_any(NumVisitor("an integer from 1 to 10"))?)?;
        if n.fract() != 0.0 || !(1.0..=10.0).contains(&n) {
            return Err(de::Error::custom("must be an integer from 1 to 10"));
        }
        Ok(Severity(n as u8))
    }
}

/// A list of strings; a single string counts as a list of one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringList(pub Vec<String>);

impl StringList {
    pub fn of(items: &[&str]) -> Self {
        StringList(items.iter().map(|s| s.to_string()).collect())
    }
}

/// One string of a list.
struct Item(String);

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
                Ok(s.to_string())
            }
        }
        d.deserialize_any(V).map(Item)
    }
}

impl<'de> Deserialize<'de> for StringList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(vec![s.to_string()])
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Item(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V).map(StringList)
    }
}

impl<'de> Deserialize<'de> for Decision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match OptionalDecision::deserialize(d)?.0 {
            Some(decision) => Ok(decision),
            None => Err(de::Error::custom("expected an action name, not none")),
        }
    }
}

/// A suggested decision: an action name, or `"none"` / `""` for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptionalDecision(pub Option<Decision>);

impl<'de> Deserialize<'de> for OptionalDecision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = OptionalDecision;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an action name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OptionalDecision, E> {
                if s.is_empty() || s == "none" {
                    return Ok(OptionalDecision(None));
                }
                Decision::parse(s)
                    .map(|d| OptionalDecision(Some(d)))
                    .ok_or_else(|| E::custom(format!("unknown action `{s}`")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A number from an integer, a float or a numeric string (for reading
/// event values the way the field types read configuration).
pub fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PluginConfig;
    use serde_json::{json, Value};

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct P {
        a: Number,
        w: Seconds,
        n: Count<1>,
        s: String,
        l: StringList,
        severity: Severity,
        decision: OptionalDecision,
        flag: bool,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                a: Number(0.0),
                w: Seconds(60),
                n: Count(7),
                s: String::new(),
                l: StringList::default(),
                severity: Severity(5),
                decision: OptionalDecision(None),
                flag: false,
            }
        }
    }

    fn config(v: Value) -> PluginConfig {
        PluginConfig::new(v.as_object().cloned().unwrap_or_default(), None)
    }

    fn p(v: Value) -> Result<P, ConfigError> {
        config(v).deserialize("r")
    }

    #[test]
    fn fields_read_numbers_strings_and_reject_unknown_keys() {
        let c = p(json!({"a": 5, "w": 0.5, "s": "x", "l": "one"})).unwrap();
        assert_eq!(c.a, Number(5.0));
        assert_eq!(c.w, Seconds(1));
        assert_eq!(c.n, Count(7));
        assert_eq!(c.s, "x");
        assert_eq!(c.l, StringList::of(&["one"]));
        assert_eq!(p(json!({"a": "2.5"})).unwrap().a, Number(2.5));
        let e = p(json!({"a": -1})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rule `r`: parameter `a`: must not be negative (got -1)"
        );
        assert_eq!(e.key.as_deref(), Some("a"));
        let e = p(json!({"typo": 1})).unwrap_err();
        assert_eq!(e.to_string(), "rule `r`: unknown parameter `typo`");
        let e = p(json!({"s": 5})).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("s"));
        let e = p(json!({"flag": "s3cret"})).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn counts_that_would_wrap_as_i64_are_refused() {
        // From 2^63 on a value would wrap as i64 (a threshold of 1e19 would
        // turn negative and match every event).
        assert!(p(json!({"n": 1e19})).is_err());
        assert!(
            p(json!({"n": 9_223_372_036_854_775_807_u64})).is_err(),
            "2^63 - 1 is not exact as f64: 2^63"
        );
        assert!(p(json!({"n": 1.5})).is_err());
        let e = p(json!({"n": 0})).unwrap_err();
        assert_eq!(e.reason, "must be at least 1 (got 0)");
        assert_eq!(p(json!({"n": "12"})).unwrap().n.as_i64(), 12);
    }

    #[test]
    fn severity_decision_and_windows_are_validated() {
        assert!(p(json!({"severity": 11})).is_err());
        assert!(p(json!({"decision": "ban"})).is_err());
        let c = p(json!({"decision": "temp_block", "severity": "9"})).unwrap();
        assert_eq!(c.decision, OptionalDecision(Some(Decision::TempBlock)));
        assert_eq!(c.severity, Severity(9));
        assert_eq!(p(json!({"decision": "none"})).unwrap().decision.0, None);
        assert_eq!(p(json!({"w": "15m"})).unwrap().w, Seconds(900));
        assert_eq!(p(json!({"w": 900})).unwrap().w, Seconds(900));
        for bad in [json!(0), json!("soon"), json!("5w"), json!(4e8)] {
            assert!(p(json!({ "w": bad })).is_err(), "{bad}");
        }
    }

    #[test]
    fn selection() {
        assert!(config(json!({})).wants("x"));
        let c = PluginConfig::new(Default::default(), Some("y".into()));
        assert!(!c.wants("x"));
        assert!(c.wants("y"));
        assert_eq!(c.selected(), Some("y"));
    }
}
