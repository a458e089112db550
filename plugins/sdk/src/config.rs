//! The configuration a library's rules are built from. A plugin author
//! describes its `[rules.config]` as a serde type and calls
//! [`PluginConfig::deserialize`]; errors name the rule and the key, and with
//! `#[serde(deny_unknown_fields)]` a typo never becomes a silent default.
//! [`crate::params`] has field types that check ranges while they
//! deserialize (counts, windows, severities, decisions).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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

    /// The table as the author's type `T` (usually a
    /// `#[derive(Deserialize)] #[serde(deny_unknown_fields, default)]`
    /// struct of [`crate::params`] types), on behalf of rule `rule`: an
    /// error names `rule` and the offending key, and never repeats a string
    /// value.
    pub fn deserialize<T: DeserializeOwned>(&self, rule: &str) -> Result<T, ConfigError> {
        let value = Value::Object(self.values.clone());
        serde_path_to_error::deserialize(&value).map_err(|e| {
            crate::params::explain(
                rule,
                crate::params::first_key(e.path()),
                &e.inner().to_string(),
            )
        })
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
