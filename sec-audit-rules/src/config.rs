//! Reading a rule's configuration table, with errors that name the rule and
//! the key. Unknown keys are rejected: a typo never becomes a silent default.

use std::cell::RefCell;
use std::collections::BTreeSet;

use regex::Regex;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::policy::ActionKind;

/// A rule's configuration table (TOML tables are converted to this).
pub type RuleConfig = Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("rules: `builtin = \"{0}\"` is not a built-in rule")]
    UnknownBuiltin(String),
    #[error("rules: an entry has no `builtin` (or `plugin`) key")]
    MissingBuiltin,
    #[error("rule `{rule}`: unknown parameter `{key}`")]
    UnknownParameter { rule: String, key: String },
    #[error("rule `{rule}`: missing required parameter `{key}`")]
    MissingParameter { rule: String, key: String },
    #[error("rule `{rule}`: parameter `{key}`: {reason}")]
    BadValue {
        rule: String,
        key: String,
        reason: String,
    },
}

/// Typed access to one rule's parameters; [`Params::finish`] rejects every
/// key that was never read.
pub struct Params<'a> {
    rule: &'a str,
    table: &'a RuleConfig,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> Params<'a> {
    /// `always_allowed` keys (such as `builtin`) are never reported unknown.
    pub fn new(rule: &'a str, table: &'a RuleConfig, always_allowed: &[&str]) -> Self {
        Params {
            rule,
            table,
            used: RefCell::new(always_allowed.iter().map(|s| s.to_string()).collect()),
        }
    }

    pub fn rule(&self) -> &str {
        self.rule
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.used.borrow_mut().insert(key.to_string());
        self.table.get(key)
    }

    /// An error about `key`.
    pub fn bad(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            rule: self.rule.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// A number ≥ 0 from an integer, a float or a numeric string.
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

    /// A window or TTL in whole seconds (> 0; fractions round up).
    pub fn seconds(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        let n = self.positive(key, default as f64)?;
        if n > 10.0 * 365.0 * 86_400.0 {
            return Err(self.bad(key, "is more than ten years"));
        }
        Ok(n.ceil() as u64)
    }

    /// Like [`Params::seconds`], absent by default.
    pub fn optional_seconds(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        if self.table.get(key).is_none() {
            self.get(key);
            return Ok(None);
        }
        self.seconds(key, 1).map(Some)
    }

    /// An exact decimal from an integer, a float or a numeric string.
    pub fn decimal(&self, key: &str, default: Decimal) -> Result<Decimal, ConfigError> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        decimal(v).ok_or_else(|| self.bad(key, "expected a decimal number"))
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

    /// A list of regexes.
    pub fn regex_list(&self, key: &str, default: &[&str]) -> Result<Vec<Regex>, ConfigError> {
        let list = self
            .string_list(key)?
            .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
        list.iter()
            .map(|p| Regex::new(p).map_err(|e| self.bad(key, format!("invalid regex `{p}`: {e}"))))
            .collect()
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

    /// `decision`: an action name, or absent.
    pub fn decision(&self, default: Option<ActionKind>) -> Result<Option<ActionKind>, ConfigError> {
        match self.get("decision") {
            None => Ok(default),
            Some(Value::String(s)) if s.is_empty() || s == "none" => Ok(None),
            Some(Value::String(s)) => ActionKind::parse(s)
                .map(Some)
                .ok_or_else(|| self.bad("decision", format!("unknown action `{s}`"))),
            Some(_) => Err(self.bad("decision", "expected an action name")),
        }
    }

    /// Rejects every key that no accessor read.
    pub fn finish(self) -> Result<(), ConfigError> {
        let used = self.used.borrow();
        match self.table.keys().find(|k| !used.contains(k.as_str())) {
            Some(k) => Err(ConfigError::UnknownParameter {
                rule: self.rule.to_string(),
                key: k.clone(),
            }),
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

/// An exact decimal from a number or a numeric string.
pub fn decimal(v: &Value) -> Option<Decimal> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    text.parse::<Decimal>()
        .ok()
        .or_else(|| Decimal::from_scientific(&text).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(v: Value) -> RuleConfig {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn numbers_accept_integers_floats_and_numeric_strings() {
        let t = table(json!({"a": 5, "b": 2.5, "c": "7", "d": "x", "e": -1, "f": true}));
        let p = Params::new("r", &t, &[]);
        assert_eq!(p.non_negative("a", 0.0).unwrap(), 5.0);
        assert_eq!(p.non_negative("b", 0.0).unwrap(), 2.5);
        assert_eq!(p.non_negative("c", 0.0).unwrap(), 7.0);
        assert!(matches!(
            p.non_negative("d", 0.0),
            Err(ConfigError::BadValue { .. })
        ));
        let err = p.non_negative("e", 0.0).unwrap_err().to_string();
        assert!(
            err.contains("rule `r`") && err.contains("`e`") && err.contains("negative"),
            "{err}"
        );
        assert!(p.non_negative("f", 0.0).is_err());
        assert_eq!(p.non_negative("absent", 3.0).unwrap(), 3.0);
    }

    #[test]
    fn unknown_keys_are_rejected_by_finish() {
        let t = table(json!({"builtin": "x", "threshold": 3, "treshold": 4}));
        let p = Params::new("x", &t, &["builtin"]);
        p.non_negative("threshold", 1.0).unwrap();
        assert_eq!(
            p.finish().unwrap_err(),
            ConfigError::UnknownParameter {
                rule: "x".into(),
                key: "treshold".into()
            }
        );
    }

    #[test]
    fn regexes_severity_decision_and_seconds() {
        let t = table(
            json!({"paths": ["(bad"], "severity": 11, "decision": "explode",
                             "window_seconds": 0.5, "ttl": 0}),
        );
        let p = Params::new("x", &t, &[]);
        assert!(p
            .regex_list("paths", &[])
            .unwrap_err()
            .to_string()
            .contains("invalid regex"));
        assert!(p.severity(5).is_err());
        assert!(p.decision(None).is_err());
        assert_eq!(p.seconds("window_seconds", 300).unwrap(), 1);
        assert!(p.seconds("ttl", 300).is_err());
        assert_eq!(p.optional_seconds("block_ttl").unwrap(), None);
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(&json!("10000.01")).unwrap().to_string(), "10000.01");
        assert!(decimal(&json!(10000.01)).unwrap() > decimal(&json!(10000)).unwrap());
        assert!(decimal(&json!("1e3")).is_some());
        assert!(decimal(&json!("abc")).is_none());
        assert!(decimal(&json!(null)).is_none());
    }
}
