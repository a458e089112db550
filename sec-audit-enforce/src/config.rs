//! The enforcement configuration (enforcement.md, "Configuration"): loadable
//! from a TOML file, buildable in code, validated before anything starts.
//!
//! Parsing is by hand over the TOML table so that every error names its key:
//! an unknown key, a wrong type, a bad regex, a bad CIDR, an out-of-range
//! number or an unknown action is an error, never a silent default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use sec_audit_rules::{ActionKind, ActionSpec, RuleConfig};
use serde_json::Value as Json;
use toml::Value;

/// Environment variable overriding `redis_url`.
pub const ENV_REDIS_URL: &str = "SEC_AUDIT_REDIS_URL";
/// Environment variable overriding `database_url`.
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// Environment variable overriding `redis_ca_file`.
pub const ENV_REDIS_CA_FILE: &str = "SEC_AUDIT_REDIS_CA_FILE";

/// A configuration error. Its message names the offending key or rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("configuration is not valid TOML: {0}")]
    Syntax(String),
    #[error("unknown configuration key `{0}`")]
    UnknownKey(String),
    #[error("configuration key `{key}`: expected {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{0}")]
    Rule(String),
}

impl ConfigError {
    fn wrong(key: impl Into<String>, expected: &'static str) -> Self {
        ConfigError::WrongType {
            key: key.into(),
            expected,
        }
    }
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleEntry {
    /// `builtin = "<name>"` plus its parameters (the whole table).
    Builtin(RuleConfig),
    /// `plugin = "<path>"`.
    Plugin(PluginEntry),
}

/// A plugin rule entry (plugins.md, "Configuration").
#[derive(Debug, Clone, PartialEq)]
pub struct PluginEntry {
    /// As written; relative paths are resolved against the configuration
    /// file's directory (see [`Config::base_dir`]).
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub rule: Option<String>,
    pub config: RuleConfig,
}

/// The whole configuration. Field names and defaults are the keys of
/// enforcement.md; `connect_timeout_ms` and `command_timeout_ms` are this
/// project's additions (bounded store timeouts).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub enabled: bool,
    pub redis_url: String,
    pub require_redis: bool,
    pub database_url: String,
    pub permanent_tier_enabled: bool,
    pub permanent_cache_ttl: u64,
    pub default_temp_ttl: u64,
    pub key_prefix: String,
    pub fail_open: bool,
    pub fail_closed_paths: Vec<String>,
    pub eval_safe_on_ingress: bool,
    pub status_code: u16,
    pub message: String,
    pub block_severity: Option<u8>,
    pub block_precedence: Vec<String>,
    pub trusted_proxy_cidrs: Vec<String>,
    pub trusted_proxy_count: Option<usize>,
    pub schema_version: String,
    pub rules: Vec<RuleEntry>,
    pub rule_actions: BTreeMap<String, ActionSpec>,
    pub block_rules: BTreeMap<String, u64>,
    /// Connect timeout for Redis and Postgres, milliseconds.
    pub connect_timeout_ms: u64,
    /// Per-command timeout for Redis and statement timeout for Postgres,
    /// milliseconds.
    pub command_timeout_ms: u64,
    /// Connection settings (this project's additions; see
    /// [`CONNECTION_KEYS`]): pooled connections per Redis and Postgres pool,
    /// how long calls fail fast after a failed connect (0: never), and the
    /// PEM CA file trusted for `rediss://` (a private CA; as written in a
    /// file it is relative to the file's directory).
    pub redis_pool_size: u32,
    pub postgres_pool_size: u32,
    pub failure_backoff_ms: u64,
    pub redis_ca_file: Option<PathBuf>,
    /// Directory relative plugin paths are resolved against.
    pub base_dir: PathBuf,
    /// The `[serve]` table as written, for `sec-audit serve` (the
    /// `sec-audit-serve` crate parses and validates it, naming its keys as
    /// `serve.<key>`). `None` when the file has none.
    pub serve: Option<toml::Table>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            redis_url: String::new(),
            require_redis: false,
            database_url: String::new(),
            permanent_tier_enabled: true,
            permanent_cache_ttl: 3600,
            default_temp_ttl: 300,
            key_prefix: "sec_audit".into(),
            fail_open: true,
            fail_closed_paths: Vec::new(),
            eval_safe_on_ingress: true,
            status_code: 429,
            message: "Request blocked by audit enforcement policy".into(),
            block_severity: None,
            block_precedence: Vec::new(),
            trusted_proxy_cidrs: Vec::new(),
            trusted_proxy_count: None,
            schema_version: "1.0".into(),
            rules: Vec::new(),
            rule_actions: BTreeMap::new(),
            block_rules: BTreeMap::new(),
            connect_timeout_ms: 1000,
            command_timeout_ms: 500,
            redis_pool_size: 16,
            postgres_pool_size: 8,
            failure_backoff_ms: 1000,
            redis_ca_file: None,
            base_dir: PathBuf::from("."),
            serve: None,
        }
    }
}

const KEYS: [&str; 28] = [
    "enabled",
    "redis_url",
    "require_redis",
    "database_url",
    "permanent_tier_enabled",
    "permanent_cache_ttl",
    "default_temp_ttl",
    "key_prefix",
    "fail_open",
    "fail_closed_paths",
    "eval_safe_on_ingress",
    "status_code",
    "message",
    "block_severity",
    "block_precedence",
    "trusted_proxy_cidrs",
    "trusted_proxy_count",
    "schema_version",
    "rules",
    "rule_actions",
    "block_rules",
    "connect_timeout_ms",
    "command_timeout_ms",
    "redis_pool_size",
    "postgres_pool_size",
    "failure_backoff_ms",
    "redis_ca_file",
    "serve",
];

/// The connection keys and their accepted ranges (inclusive): timeouts in
/// milliseconds, pool sizes in connections.
pub const CONNECTION_KEYS: [(&str, u64, u64); 5] = [
    ("connect_timeout_ms", 1, 600_000),
    ("command_timeout_ms", 1, 600_000),
    ("redis_pool_size", 1, 1024),
    ("postgres_pool_size", 1, 1024),
    ("failure_backoff_ms", 0, 600_000),
];

fn connection_range(key: &str) -> (u64, u64) {
    CONNECTION_KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or((0, u64::MAX), |(_, lo, hi)| (*lo, *hi))
}

fn in_range(key: &str, v: u64) -> Result<u64, ConfigError> {
    let (lo, hi) = connection_range(key);
    if v < lo || v > hi {
        return Err(ConfigError::invalid(
            key,
            format!("must be {lo}-{hi} (got {v})"),
        ));
    }
    Ok(v)
}

/// Reads the connection keys added to `connect_timeout_ms` and
/// `command_timeout_ms` (which are read with the others).
fn parse_connection_keys(t: &toml::Table, c: &mut Config) -> Result<(), ConfigError> {
    let int = |key: &str, default: u64| -> Result<u64, ConfigError> {
        match get_int(t, key)? {
            None => Ok(default),
            Some(v) if v < 0 => Err(ConfigError::invalid(
                key,
                format!("must not be negative (got {v})"),
            )),
            Some(v) => in_range(key, v as u64),
        }
    };
    c.redis_pool_size = int("redis_pool_size", u64::from(c.redis_pool_size))? as u32;
    c.postgres_pool_size = int("postgres_pool_size", u64::from(c.postgres_pool_size))? as u32;
    c.failure_backoff_ms = int("failure_backoff_ms", c.failure_backoff_ms)?;
    c.redis_ca_file = match t.get("redis_ca_file") {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => {
            return Err(ConfigError::invalid("redis_ca_file", "must not be empty"))
        }
        Some(Value::String(s)) => Some(PathBuf::from(s)),
        Some(_) => return Err(ConfigError::wrong("redis_ca_file", "a path")),
    };
    Ok(())
}

fn get_bool(t: &toml::Table, key: &str, default: bool) -> Result<bool, ConfigError> {
    match t.get(key) {
        None => Ok(default),
        Some(Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(ConfigError::wrong(key, "true or false")),
    }
}

fn get_string(t: &toml::Table, key: &str, default: &str) -> Result<String, ConfigError> {
    match t.get(key) {
        None => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ConfigError::wrong(key, "a string")),
    }
}

fn get_int(t: &toml::Table, key: &str) -> Result<Option<i64>, ConfigError> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::Integer(i)) => Ok(Some(*i)),
        Some(_) => Err(ConfigError::wrong(key, "an integer")),
    }
}

fn positive(key: &str, v: i64) -> Result<u64, ConfigError> {
    if v <= 0 {
        return Err(ConfigError::invalid(
            key,
            format!("must be greater than 0 (got {v})"),
        ));
    }
    Ok(v as u64)
}

fn get_positive(t: &toml::Table, key: &str, default: u64) -> Result<u64, ConfigError> {
    get_int(t, key)?.map_or(Ok(default), |v| positive(key, v))
}

fn string_list(v: &Value, key: &str) -> Result<Vec<String>, ConfigError> {
    let Value::Array(items) = v else {
        return Err(ConfigError::wrong(key, "a list of strings"));
    };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ConfigError::wrong(key, "a list of strings")),
        })
        .collect()
}

fn get_list(t: &toml::Table, key: &str) -> Result<Vec<String>, ConfigError> {
    t.get(key).map_or(Ok(Vec::new()), |v| string_list(v, key))
}

/// Converts a TOML value to JSON (datetimes become strings).
pub fn toml_to_json(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(s.clone()),
        Value::Integer(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Datetime(d) => Json::String(d.to_string()),
        Value::Array(a) => Json::Array(a.iter().map(toml_to_json).collect()),
        Value::Table(t) => Json::Object(table_to_json(t)),
    }
}

fn table_to_json(t: &toml::Table) -> RuleConfig {
    t.iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect()
}

fn status_code(key: &str, v: i64) -> Result<u16, ConfigError> {
    if !(100..=599).contains(&v) {
        return Err(ConfigError::invalid(
            key,
            format!("must be 100-599 (got {v})"),
        ));
    }
    Ok(v as u16)
}

fn action_kind(key: &str, s: &str) -> Result<ActionKind, ConfigError> {
    ActionKind::parse(s).ok_or_else(|| {
        ConfigError::invalid(
            key,
            format!("unknown action `{s}` (expected observe, alert, temp_block, persist_block or block)"),
        )
    })
}

fn parse_action(name: &str, v: &Value) -> Result<ActionSpec, ConfigError> {
    let base = format!("rule_actions.{name}");
    match v {
        Value::String(s) => Ok(ActionSpec::action(action_kind(&base, s)?)),
        Value::Table(t) => {
            let mut spec = ActionSpec::default();
            for (k, v) in t {
                let key = format!("{base}.{k}");
                match k.as_str() {
                    "action" => match v {
                        Value::String(s) => spec.action = Some(action_kind(&key, s)?),
                        _ => return Err(ConfigError::wrong(key, "an action name")),
                    },
                    "scopes" => {
                        let scopes = string_list(v, &key)?;
                        if scopes.is_empty() {
                            return Err(ConfigError::invalid(key, "must name at least one scope"));
                        }
                        spec.scopes = Some(scopes);
                    }
                    "ttl" => match v {
                        Value::Integer(i) => spec.ttl = Some(positive(&key, *i)?),
                        _ => return Err(ConfigError::wrong(key, "an integer")),
                    },
                    "status_code" => match v {
                        Value::Integer(i) => spec.status_code = Some(status_code(&key, *i)?),
                        _ => return Err(ConfigError::wrong(key, "an integer")),
                    },
                    "message" => match v {
                        Value::String(s) => spec.message = Some(s.clone()),
                        _ => return Err(ConfigError::wrong(key, "a string")),
                    },
                    "range_prefix_v4" | "range_prefix_v6" => {
                        let max = if k == "range_prefix_v4" { 32 } else { 128 };
                        let len = match v {
                            Value::Integer(i) if (0..=max).contains(i) => *i as u8,
                            Value::Integer(i) => {
                                return Err(ConfigError::invalid(
                                    key,
                                    format!("must be 0-{max} (got {i})"),
                                ))
                            }
                            _ => return Err(ConfigError::wrong(key, "an integer")),
                        };
                        if k == "range_prefix_v4" {
                            spec.range_prefix_v4 = Some(len);
                        } else {
                            spec.range_prefix_v6 = Some(len);
                        }
                    }
                    _ => return Err(ConfigError::UnknownKey(key)),
                }
            }
            Ok(spec)
        }
        _ => Err(ConfigError::wrong(base, "an action name or a table")),
    }
}

fn parse_rule_entry(i: usize, v: &Value) -> Result<RuleEntry, ConfigError> {
    let key = format!("rules[{i}]");
    let Value::Table(t) = v else {
        return Err(ConfigError::wrong(key, "a table"));
    };
    match (t.get("builtin"), t.get("plugin")) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(key, "has both `builtin` and `plugin`")),
        (Some(Value::String(_)), None) => Ok(RuleEntry::Builtin(table_to_json(t))),
        (Some(_), None) => Err(ConfigError::wrong(
            format!("{key}.builtin"),
            "a built-in rule name",
        )),
        (None, Some(Value::String(path))) => {
            let mut entry = PluginEntry {
                path: PathBuf::from(path),
                sha256: None,
                rule: None,
                config: RuleConfig::new(),
            };
            for (k, v) in t {
                let sub = format!("{key}.{k}");
                match (k.as_str(), v) {
                    ("plugin", _) => {}
                    ("sha256", Value::String(s)) => entry.sha256 = Some(s.clone()),
                    ("rule", Value::String(s)) => entry.rule = Some(s.clone()),
                    ("config", Value::Table(c)) => entry.config = table_to_json(c),
                    ("sha256" | "rule", _) => return Err(ConfigError::wrong(sub, "a string")),
                    ("config", _) => return Err(ConfigError::wrong(sub, "a table")),
                    _ => return Err(ConfigError::UnknownKey(sub)),
                }
            }
            Ok(RuleEntry::Plugin(entry))
        }
        (None, Some(_)) => Err(ConfigError::wrong(format!("{key}.plugin"), "a path")),
        (None, None) => Err(ConfigError::invalid(
            key,
            "needs `builtin = \"<name>\"` or `plugin = \"<path>\"`",
        )),
    }
}

impl Config {
    /// Parses a TOML document. Relative plugin paths resolve against the
    /// current directory; use [`Config::from_file`] to resolve them against
    /// the file's directory.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::Syntax(e.message().to_string() + &span_hint(text, e.span()))
        })?;
        Self::from_table(&table)
    }

    /// Reads and parses a TOML file, then applies the environment overrides.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        // Bounded: `/dev/zero` or a log given by mistake ends at once.
        let text = crate::config_checks::read_bounded(path)?;
        let mut config = Self::from_toml_str(&text)?;
        config.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        config.redis_ca_file = config.redis_ca_file.map(|f| config.base_dir.join(f));
        config.apply_env();
        // The overrides are URLs too.
        config.validate_urls()?;
        Ok(config)
    }

    /// `SEC_AUDIT_REDIS_URL` and `DATABASE_URL`, when set and non-empty,
    /// override the file's URLs; `SEC_AUDIT_REDIS_CA_FILE` its
    /// `redis_ca_file` (relative to the current directory).
    pub fn apply_env(&mut self) {
        if let Some(v) = std::env::var_os(ENV_REDIS_CA_FILE).filter(|v| !v.is_empty()) {
            self.redis_ca_file = Some(PathBuf::from(v));
        }
        if let Some(v) = std::env::var(ENV_REDIS_URL).ok().filter(|v| !v.is_empty()) {
            self.redis_url = v;
        }
        if let Some(v) = std::env::var(ENV_DATABASE_URL)
            .ok()
            .filter(|v| !v.is_empty())
        {
            self.database_url = v;
        }
    }

    /// Parses an already-decoded TOML table.
    pub fn from_table(t: &toml::Table) -> Result<Config, ConfigError> {
        if let Some(k) = t.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(ConfigError::UnknownKey(k.clone()));
        }
        let d = Config::default();
        let mut c = Config {
            enabled: get_bool(t, "enabled", d.enabled)?,
            redis_url: get_string(t, "redis_url", &d.redis_url)?,
            require_redis: get_bool(t, "require_redis", d.require_redis)?,
            database_url: get_string(t, "database_url", &d.database_url)?,
            permanent_tier_enabled: get_bool(
                t,
                "permanent_tier_enabled",
                d.permanent_tier_enabled,
            )?,
            permanent_cache_ttl: get_positive(t, "permanent_cache_ttl", d.permanent_cache_ttl)?,
            default_temp_ttl: get_positive(t, "default_temp_ttl", d.default_temp_ttl)?,
            key_prefix: get_string(t, "key_prefix", &d.key_prefix)?,
            fail_open: get_bool(t, "fail_open", d.fail_open)?,
            fail_closed_paths: get_list(t, "fail_closed_paths")?,
            eval_safe_on_ingress: get_bool(t, "eval_safe_on_ingress", d.eval_safe_on_ingress)?,
            status_code: get_int(t, "status_code")?
                .map_or(Ok(d.status_code), |v| status_code("status_code", v))?,
            message: get_string(t, "message", &d.message)?,
            block_severity: match get_int(t, "block_severity")? {
                None => None,
                Some(v) if (0..=10).contains(&v) => Some(v as u8),
                Some(v) => {
                    return Err(ConfigError::invalid(
                        "block_severity",
                        format!("must be 0-10 (got {v})"),
                    ))
                }
            },
            block_precedence: get_list(t, "block_precedence")?,
            trusted_proxy_cidrs: get_list(t, "trusted_proxy_cidrs")?,
            trusted_proxy_count: match get_int(t, "trusted_proxy_count")? {
                None => None,
                Some(v) if v >= 1 => Some(v as usize),
                Some(v) => {
                    return Err(ConfigError::invalid(
                        "trusted_proxy_count",
                        format!("must be at least 1 (got {v})"),
                    ))
                }
            },
            schema_version: get_string(t, "schema_version", &d.schema_version)?,
            connect_timeout_ms: get_positive(t, "connect_timeout_ms", d.connect_timeout_ms)?,
            command_timeout_ms: get_positive(t, "command_timeout_ms", d.command_timeout_ms)?,
            serve: match t.get("serve") {
                None => None,
                Some(Value::Table(s)) => Some(s.clone()),
                Some(_) => return Err(ConfigError::wrong("serve", "a table ([serve])")),
            },
            ..d
        };
        parse_connection_keys(t, &mut c)?;
        if let Some(rules) = t.get("rules") {
            let Value::Array(items) = rules else {
                return Err(ConfigError::wrong(
                    "rules",
                    "an array of tables ([[rules]])",
                ));
            };
            c.rules = items
                .iter()
                .enumerate()
                .map(|(i, v)| parse_rule_entry(i, v))
                .collect::<Result<_, _>>()?;
        }
        if let Some(actions) = t.get("rule_actions") {
            let Value::Table(actions) = actions else {
                return Err(ConfigError::wrong("rule_actions", "a table"));
            };
            for (name, v) in actions {
                c.rule_actions.insert(name.clone(), parse_action(name, v)?);
            }
        }
        if let Some(block_rules) = t.get("block_rules") {
            let Value::Table(block_rules) = block_rules else {
                return Err(ConfigError::wrong(
                    "block_rules",
                    "a table of rule name = seconds",
                ));
            };
            for (name, v) in block_rules {
                let key = format!("block_rules.{name}");
                let Value::Integer(i) = v else {
                    return Err(ConfigError::wrong(key, "an integer number of seconds"));
                };
                c.block_rules.insert(name.clone(), positive(&key, *i)?);
            }
        }
        c.validate_fields()?;
        Ok(c)
    }

    /// Checks what can be checked without building rules: regexes, CIDRs,
    /// both-or-neither proxy settings, `require_redis`, ranges.
    pub fn validate_fields(&self) -> Result<(), ConfigError> {
        self.fail_closed_path_regexes()?;
        self.validate_urls()?;
        sec_audit_core::ClientIpResolver::new(&self.trusted_proxy_cidrs, self.trusted_proxy_count)
            .map_err(|e| {
                let key = match e {
                    sec_audit_core::TrustedProxyError::BadCidr(_) => "trusted_proxy_cidrs",
                    _ => "trusted_proxy_count",
                };
                ConfigError::invalid(key, e.to_string())
            })?;
        if self.require_redis && self.enabled && self.redis_url.trim().is_empty() {
            return Err(ConfigError::invalid(
                "require_redis",
                "enabled with require_redis = true but no redis_url is set",
            ));
        }
        if !(100..=599).contains(&self.status_code) {
            return Err(ConfigError::invalid("status_code", "must be 100-599"));
        }
        if self.block_severity.is_some_and(|s| s > 10) {
            return Err(ConfigError::invalid("block_severity", "must be 0-10"));
        }
        if self.key_prefix.is_empty() {
            return Err(ConfigError::invalid("key_prefix", "must not be empty"));
        }
        self.validate_connection_keys()?;
        if self.permanent_cache_ttl == 0 || self.default_temp_ttl == 0 {
            return Err(ConfigError::invalid(
                "default_temp_ttl",
                "TTLs must be greater than 0",
            ));
        }
        for (name, spec) in &self.rule_actions {
            if let Some(code) = spec.status_code {
                status_code(&format!("rule_actions.{name}.status_code"), i64::from(code))?;
            }
            let builtin_default = sec_audit_rules::policy::builtin_default(name).is_some();
            if spec.action.is_none() && !builtin_default {
                return Err(ConfigError::invalid(
                    format!("rule_actions.{name}"),
                    "`action` is required (only built-in rules have a default to merge over)",
                ));
            }
        }
        Ok(())
    }

    /// Ranges of the connection keys, and `redis_ca_file` only with a
    /// `rediss://` URL. Reads no file (see `check` for the CA file itself).
    pub fn validate_connection_keys(&self) -> Result<(), ConfigError> {
        in_range("connect_timeout_ms", self.connect_timeout_ms)?;
        in_range("command_timeout_ms", self.command_timeout_ms)?;
        in_range("redis_pool_size", u64::from(self.redis_pool_size))?;
        in_range("postgres_pool_size", u64::from(self.postgres_pool_size))?;
        in_range("failure_backoff_ms", self.failure_backoff_ms)?;
        let url = self.redis_url.trim();
        if self.redis_ca_file.is_some() && !url.is_empty() && !url.starts_with("rediss://") {
            return Err(ConfigError::invalid(
                "redis_ca_file",
                "is set but redis_url is not rediss:// (TLS)",
            ));
        }
        Ok(())
    }

    /// The compiled `fail_closed_paths`.
    pub fn fail_closed_path_regexes(&self) -> Result<Vec<Regex>, ConfigError> {
        self.fail_closed_paths
            .iter()
            .map(|p| {
                Regex::new(p).map_err(|e| {
                    ConfigError::invalid("fail_closed_paths", format!("invalid regex `{p}`: {e}"))
                })
            })
            .collect()
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let start = span.start.min(text.len());
    let line = text.get(..start).map_or(1, |s| s.matches('\n').count() + 1);
    format!(" (line {line})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::from_toml_str("").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.redis_url, "");
        assert!(c.permanent_tier_enabled);
        assert_eq!(c.permanent_cache_ttl, 3600);
        assert_eq!(c.default_temp_ttl, 300);
        assert_eq!(c.key_prefix, "sec_audit");
        assert!(c.fail_open);
        assert!(c.eval_safe_on_ingress);
        assert_eq!(c.status_code, 429);
        assert_eq!(c.message, "Request blocked by audit enforcement policy");
        assert_eq!(c.block_severity, None);
        assert_eq!(c.schema_version, "1.0");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn a_full_file_parses() {
        let c = Config::from_toml_str(
            r#"
            enabled = true
            redis_url = "redis://127.0.0.1:6379"
            fail_closed_paths = ["^/admin"]
            block_severity = 9
            block_precedence = ["ip"]
            trusted_proxy_cidrs = ["10.0.0.0/8"]
            trusted_proxy_count = 1
            [[rules]]
            builtin = "brute_force_login"
            threshold = 3
            [[rules]]
            plugin = "target/plugins/libx.so"
            sha256 = "ab"
            rule = "x"
            [rules.config]
            threshold = 4
            [rule_actions]
            brute_force_login = { ttl = 60 }
            x = "alert"
            [block_rules]
            repeated_route = 120
            "#,
        )
        .unwrap();
        assert_eq!(c.rules.len(), 2);
        assert!(
            matches!(&c.rules[1], RuleEntry::Plugin(p) if p.rule.as_deref() == Some("x") && p.config["threshold"] == 4)
        );
        assert_eq!(c.rule_actions["brute_force_login"].ttl, Some(60));
        assert_eq!(c.rule_actions["x"].action, Some(ActionKind::Alert));
        assert_eq!(c.block_rules["repeated_route"], 120);
    }

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("enabeld = true").contains("`enabeld`"));
        assert!(err("enabled = \"yes\"").contains("`enabled`"));
        assert!(err("status_code = 42").contains("`status_code`"));
        assert!(err("fail_closed_paths = [\"(\"]").contains("`fail_closed_paths`"));
        assert!(
            err("trusted_proxy_cidrs = [\"10.0.0.0/99\"]\ntrusted_proxy_count = 1")
                .contains("`trusted_proxy_cidrs`")
        );
        assert!(err("trusted_proxy_cidrs = [\"10.0.0.0/8\"]").contains("`trusted_proxy_count`"));
        assert!(err("block_severity = 11").contains("`block_severity`"));
        assert!(err("default_temp_ttl = 0").contains("`default_temp_ttl`"));
        assert!(err("[rule_actions]\nfoo = \"ban\"").contains("`rule_actions.foo`"));
        assert!(err("[rule_actions]\nfoo = { scopes = [\"ip\"] }").contains("`rule_actions.foo`"));
        assert!(err("[rule_actions]\nfoo = { action = \"alert\", tll = 5 }")
            .contains("`rule_actions.foo.tll`"));
        assert!(err("[block_rules]\nfoo = -1").contains("`block_rules.foo`"));
        assert!(err("[[rules]]\nthreshold = 1").contains("`rules[0]`"));
        assert!(err("[[rules]]\nplugin = \"p.so\"\nsha = \"x\"").contains("`rules[0].sha`"));
        assert!(err("enabled = true\nrequire_redis = true").contains("`require_redis`"));
        assert!(err("enabled = ").contains("not valid TOML"));
        assert!(err("serve = 1").contains("`serve`"));
    }

    #[test]
    fn the_serve_table_is_kept_raw() {
        let c = Config::from_toml_str(
            "enabled = true\n[serve]\nlisten = \"127.0.0.1:1\"\nanything = 2",
        )
        .unwrap();
        let serve = c.serve.unwrap();
        assert_eq!(serve["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(serve["anything"].as_integer(), Some(2));
        assert_eq!(Config::from_toml_str("").unwrap().serve, None);
    }

    #[test]
    fn connection_keys_parse_and_are_range_checked() {
        let c = Config::from_toml_str(
            "redis_pool_size = 4\npostgres_pool_size = 2\nfailure_backoff_ms = 0\nredis_url = \"rediss://h:6380\"\nredis_ca_file = \"ca.pem\"",
        )
        .unwrap();
        assert_eq!(c.redis_pool_size, 4);
        assert_eq!(c.postgres_pool_size, 2);
        assert_eq!(c.failure_backoff_ms, 0);
        assert_eq!(c.redis_ca_file, Some(PathBuf::from("ca.pem")));
        let d = Config::default();
        assert_eq!(
            (
                d.redis_pool_size,
                d.postgres_pool_size,
                d.failure_backoff_ms
            ),
            (16, 8, 1000)
        );
        for (text, key) in [
            ("redis_pool_size = 0", "`redis_pool_size`"),
            ("redis_pool_size = 1025", "`redis_pool_size`"),
            ("redis_pool_size = -1", "`redis_pool_size`"),
            ("redis_pool_size = \"8\"", "`redis_pool_size`"),
            ("postgres_pool_size = 0", "`postgres_pool_size`"),
            ("postgres_pool_size = 99999999999", "`postgres_pool_size`"),
            ("failure_backoff_ms = -5", "`failure_backoff_ms`"),
            ("failure_backoff_ms = 600001", "`failure_backoff_ms`"),
            ("connect_timeout_ms = 600001", "`connect_timeout_ms`"),
            ("command_timeout_ms = 0", "`command_timeout_ms`"),
            ("redis_ca_file = 3", "`redis_ca_file`"),
            ("redis_ca_file = \"\"", "`redis_ca_file`"),
            (
                "redis_url = \"redis://h\"\nredis_ca_file = \"ca.pem\"",
                "`redis_ca_file`",
            ),
        ] {
            assert!(err(text).contains(key), "{text}: {}", err(text));
        }
        // Built in code, the same ranges hold.
        let c = Config {
            redis_pool_size: 0,
            ..Config::default()
        };
        assert!(c
            .validate_fields()
            .unwrap_err()
            .to_string()
            .contains("`redis_pool_size`"));
    }

    #[test]
    fn rule_actions_range_prefixes() {
        let c = Config::from_toml_str(
            "[rule_actions]\nx = { action = \"temp_block\", range_prefix_v4 = 24, range_prefix_v6 = 64 }",
        )
        .unwrap();
        assert_eq!(c.rule_actions["x"].range_prefix_v4, Some(24));
        assert_eq!(c.rule_actions["x"].range_prefix_v6, Some(64));
        let err = |t: &str| Config::from_toml_str(t).unwrap_err().to_string();
        assert!(
            err("[rule_actions]\nx = { action = \"alert\", range_prefix_v4 = 33 }")
                .contains("`rule_actions.x.range_prefix_v4`")
        );
        assert!(
            err("[rule_actions]\nx = { action = \"alert\", range_prefix_v6 = 129 }")
                .contains("`rule_actions.x.range_prefix_v6`")
        );
        assert!(
            err("[rule_actions]\nx = { action = \"alert\", range_prefix_v6 = \"48\" }")
                .contains("`rule_actions.x.range_prefix_v6`")
        );
    }

    #[test]
    fn builtin_rule_actions_may_omit_the_action() {
        assert!(Config::from_toml_str("[rule_actions]\nbrute_force_login = { ttl = 10 }").is_ok());
    }
}
