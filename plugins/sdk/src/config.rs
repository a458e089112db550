//! The configuration a library's rules are built from, and typed access to
//! it with errors that name the rule and the key. Unknown keys are rejected
//! by [`Params::finish`]: a typo never becomes a silent default.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::rule::Decision;

/// `integer` refuses values from 2^63 on (they would wrap as `i64`).
const MAX_INTEGER_EXCLUSIVE: f64 = 9_223_372_036_854_775_808.0;

/// What the host hands the library's factory: the `[rules.config]` table of
/// the configuration entry, and the rule the entry selected with
/// `rule = "..."`, if any.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginConfig {
    values: Map<String, Value>,
    selected: Option<String>,
}

impl PluginConfig {
    pub fn new(values: Map<String, Value>, selected: Option<String>) -> Self {
        PluginConfig { values, selected }
    }

    /// The configuration table.
    pub fn values(&self) -> &Map<String, Value> {
        &self.values
    }

    /// The rule the operator selected, if any.
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// Whether the factory should build rule `name`: true when no rule was
    /// selected or `name` was. A library that exports several rules builds
    /// only those it is asked for, so that each gets only its own
    /// configuration. (The host filters the result too.)
    pub fn wants(&self, name: &str) -> bool {
        self.selected.as_deref().is_none_or(|s| s == name)
    }

    /// Typed access to the table on behalf of rule `rule`.
    pub fn params<'a>(&'a self, rule: &'a str) -> Params<'a> {
        Params::new(rule, &self.values)
    }
}

/// A configuration the plugin rejects. The host refuses to start and names
/// the file, the rule and this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The rule the configuration was meant for, when known.
    pub rule: Option<String>,
    /// The offending key, when there is one.
    pub key: Option<String>,
    pub reason: String,
}

impl ConfigError {
    /// A reason about the whole configuration of `rule`.
    pub fn new(rule: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            rule: Some(rule.into()),
            key: None,
            reason: reason.into(),
        }
    }

    /// A reason about `key` of rule `rule`.
    pub fn bad_value(
        rule: impl Into<String>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            rule: Some(rule.into()),
            key: Some(key.into()),
            reason: reason.into(),
        }
    }

    /// The text after the rule name: `parameter `k`: reason` or `reason`.
    pub fn describe(&self) -> String {
        match &self.key {
            Some(k) => format!("parameter `{k}`: {}", self.reason),
            None => self.reason.clone(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.rule {
            Some(r) => write!(f, "rule `{r}`: {}", self.describe()),
            None => f.write_str(&self.describe()),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<String> for ConfigError {
    fn from(reason: String) -> Self {
        ConfigError {
            rule: None,
            key: None,
            reason,
        }
    }
}

impl From<&str> for ConfigError {
    fn from(reason: &str) -> Self {
        reason.to_string().into()
    }
}

/// Typed access to one rule's parameters; [`Params::finish`] rejects every
/// key that was never read. Numbers may be given as integers, floats or
/// numeric strings.
pub struct Params<'a> {
    rule: &'a str,
    table: &'a Map<String, Value>,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> Params<'a> {
    pub fn new(rule: &'a str, table: &'a Map<String, Value>) -> Self {
        Params {
            rule,
            table,
            used: RefCell::new(BTreeSet::new()),
        }
    }

    /// The rule these parameters are for.
    pub fn rule(&self) -> &str {
        self.rule
    }

    /// The raw value of `key` (marks it as read).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.used.borrow_mut().insert(key.to_string());
        self.table.get(key)
    }

    /// An error about `key`.
    pub fn bad(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::bad_value(self.rule, key, reason)
    }

    /// A number ≥ 0.
    pub fn non_negative(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let n = number(v).ok_or_else(|| self.bad(key, "expected a number"))?;
        if !n.is_finite() || n < 0.0 {
            return Err(self.bad(key, format!("must not be negative (got {n})")));
        }
        Ok(n)
    }

    /// A number > 0.
    pub fn positive(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        let n = self.non_negative(key, default)?;
        if n <= 0.0 {
            return Err(self.bad(key, "must be greater than 0"));
        }
        Ok(n)
    }

    /// A whole number ≥ `min`.
    /// A whole number `>= min` and below 2^63, so it converts to `i64`
    /// without wrapping.
    pub fn integer(&self, key: &str, default: u64, min: u64) -> Result<u64, ConfigError> {
        let n = self.non_negative(key, default as f64)?;
        if n.fract() != 0.0 {
            return Err(self.bad(key, format!("expected a whole number (got {n})")));
        }
        // Counts and thresholds are compared with `i64` counters: a value
        // from 2^63 on would wrap in an `as i64` (1e19 would turn a
        // threshold negative and match everything).
        if n >= MAX_INTEGER_EXCLUSIVE {
            return Err(self.bad(key, format!("is too large (got {n}; at most 2^63 - 1)")));
        }
        let n = n as u64;
        if n < min {
            return Err(self.bad(key, format!("must be at least {min} (got {n})")));
        }
        Ok(n)
    }

    /// A window or TTL in whole seconds (> 0, at most ten years; fractions
    /// round up).
    pub fn seconds(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        let n = self.positive(key, default as f64)?;
        if n > 10.0 * 365.0 * 86_400.0 {
            return Err(self.bad(key, "is more than ten years"));
        }
        Ok(n.ceil() as u64)
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.bad(key, "expected true or false")),
        }
    }

    pub fn string(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(self.bad(key, "expected a string")),
        }
    }

    /// A list of strings (a single string counts as a list of one).
    pub fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(self.bad(key, "expected a list of strings")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.bad(key, "expected a list of strings")),
        }
    }

    /// `severity` (1–10).
    pub fn severity(&self, default: u8) -> Result<u8, ConfigError> {
        let n = self.non_negative("severity", f64::from(default))?;
        if n.fract() != 0.0 || !(1.0..=10.0).contains(&n) {
            return Err(self.bad("severity", "must be an integer from 1 to 10"));
        }
        Ok(n as u8)
    }

    /// `tags`.
    pub fn tags(&self, default: &[&str]) -> Result<Vec<String>, ConfigError> {
        Ok(self
            .string_list("tags")?
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect()))
    }

    /// `decision`: an action name, `"none"`, or absent.
    pub fn decision(&self, default: Option<Decision>) -> Result<Option<Decision>, ConfigError> {
        match self.get("decision") {
            None => Ok(default),
            Some(Value::String(s)) if s.is_empty() || s == "none" => Ok(None),
            Some(Value::String(s)) => Decision::parse(s)
                .map(Some)
                .ok_or_else(|| self.bad("decision", format!("unknown action `{s}`"))),
            Some(_) => Err(self.bad("decision", "expected an action name")),
        }
    }

    /// Rejects every key that no accessor read.
    pub fn finish(self) -> Result<(), ConfigError> {
        let used = self.used.borrow();
        match self.table.keys().find(|k| !used.contains(k.as_str())) {
            Some(k) => Err(ConfigError::new(
                self.rule,
                format!("unknown parameter `{k}`"),
            )),
            None => Ok(()),
        }
    }
}

/// A number from an integer, a float or a numeric string.
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value, selected: Option<&str>) -> PluginConfig {
        PluginConfig::new(
            v.as_object().cloned().unwrap_or_default(),
            selected.map(str::to_string),
        )
    }

    #[test]
    fn params_read_numbers_strings_and_reject_unknown_keys() {
        let c = config(
            json!({"a": 5, "b": "2.5", "w": 0.5, "s": "x", "l": "one", "bad": -1, "typo": 1}),
            None,
        );
        let p = c.params("r");
        assert_eq!(p.non_negative("a", 0.0).unwrap(), 5.0);
        assert_eq!(p.positive("b", 1.0).unwrap(), 2.5);
        assert_eq!(p.seconds("w", 60).unwrap(), 1);
        assert_eq!(p.integer("missing", 7, 1).unwrap(), 7);
        assert_eq!(p.string("s", "").unwrap(), "x");
        assert_eq!(p.string_list("l").unwrap(), Some(vec!["one".to_string()]));
        let e = p.non_negative("bad", 0.0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "rule `r`: parameter `bad`: must not be negative (got -1)"
        );
        let e = p.finish().unwrap_err();
        assert_eq!(e.to_string(), "rule `r`: unknown parameter `typo`");
    }

    #[test]
    fn integers_that_would_wrap_as_i64_are_refused() {
        // From 2^63 on a value would wrap as i64 (a threshold of 1e19 would
        // turn negative and match every event).
        let c = config(
            json!({"big": 1e19, "edge": 9_223_372_036_854_775_807_u64}),
            None,
        );
        let p = c.params("r");
        assert!(p.integer("big", 1, 1).is_err());
        assert!(
            p.integer("edge", 1, 1).is_err(),
            "2^63 - 1 is not exact as f64: 2^63"
        );
    }

    #[test]
    fn integer_severity_and_decision_are_validated() {
        let c = config(json!({"n": 1.5, "severity": 11, "decision": "ban"}), None);
        let p = c.params("r");
        assert!(p.integer("n", 1, 1).is_err());
        assert!(p.severity(5).is_err());
        assert!(p.decision(None).is_err());
        let c = config(json!({"decision": "temp_block", "severity": "9"}), None);
        let p = c.params("r");
        assert_eq!(p.decision(None).unwrap(), Some(Decision::TempBlock));
        assert_eq!(p.severity(5).unwrap(), 9);
        assert!(p.finish().is_ok());
    }

    #[test]
    fn selection() {
        assert!(config(json!({}), None).wants("x"));
        let c = config(json!({}), Some("y"));
        assert!(!c.wants("x"));
        assert!(c.wants("y"));
        assert_eq!(c.selected(), Some("y"));
    }
}
