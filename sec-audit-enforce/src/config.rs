//! The enforcement configuration: loadable from a TOML file, buildable in
//! code, validated before anything starts.
//!
//! The schema is declarative: [`Config`] and every table in it are serde
//! types (`deny_unknown_fields`, range-checked field types from
//! [`sec_audit_rules::config`]), so an unknown key, a wrong type, a bad
//! regex, a bad CIDR, an out-of-range number or an unknown action is an
//! error, never a silent default. Every error names its key path
//! (`rule_actions.x.ttl`) and, for a file, the file, line and column
//! ([`ConfigError::At`]); no message repeats a string value (a URL may hold
//! a password). Durations are whole seconds or strings such as `"15m"`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use regex::Regex;
use sec_audit_rules::config::{
    self as rc, explain, int_in, millis_in, optional_int_in, seconds, Problem, Secs,
};
use sec_audit_rules::{ActionSpec, RuleConfig};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value as Json;
use toml::Value;

/// Environment variable overriding `redis_url`.
pub const ENV_REDIS_URL: &str = "SEC_AUDIT_REDIS_URL";
/// Environment variable overriding `database_url`.
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";
/// Environment variable overriding `redis_ca_file`.
pub const ENV_REDIS_CA_FILE: &str = "SEC_AUDIT_REDIS_CA_FILE";

/// Where in a configuration file something was written (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, when the configuration was read from one.
    pub file: Option<PathBuf>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}:{}", file.display(), self.line, self.column),
            None => write!(f, "line {}, column {}", self.line, self.column),
        }
    }
}

/// A configuration error. Its message names the offending key or rule and,
/// when the configuration came from text, where it was written.
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
    /// `error`, written at `at`.
    #[error("{at}: {error}")]
    At {
        at: Location,
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// The key the error is about, when it names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey(key)
            | ConfigError::WrongType { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::At { error, .. } => error.key(),
            _ => None,
        }
    }

    /// Where the error was written, when known.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::At { at, .. } => Some(at),
            _ => None,
        }
    }

    /// The error without its location.
    pub fn unlocated(&self) -> &ConfigError {
        match self {
            ConfigError::At { error, .. } => error.unlocated(),
            other => other,
        }
    }

    /// A serde error at key path `path` (below `prefix`) as a configuration
    /// error naming the full key.
    pub fn from_serde(prefix: &str, path: &str, message: &str) -> Self {
        let (key, problem) = explain(&rc::join_key(prefix, path), message);
        match problem {
            Problem::Unknown => ConfigError::UnknownKey(key),
            Problem::Missing => ConfigError::invalid(key, "is required"),
            Problem::Bad(reason) if key.is_empty() => ConfigError::Syntax(reason),
            Problem::Bad(reason) => ConfigError::invalid(key, reason),
        }
    }
}

/// Where a configuration came from: the file, and where each key (and each
/// list element) was written. Kept so that errors found after parsing —
/// validation, building rules, the `[serve]` table — still name a line.
/// Holds key paths and positions only, never values. Where a configuration
/// was written is not part of its value: any two sources compare equal, so
/// a configuration read from a file equals the same one built in code.
#[derive(Clone, Default)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    keys: Arc<BTreeMap<String, (usize, usize)>>,
}

impl PartialEq for ConfigSource {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ConfigSource {}

impl fmt::Debug for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Line and column (1-based, in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Records the position of every key below `prefix` of `table`.
fn index_table<'t>(
    text: &str,
    prefix: &str,
    entries: impl Iterator<Item = (&'t toml_edit::Key, &'t toml_edit::Item)>,
    out: &mut BTreeMap<String, (usize, usize)>,
) {
    for (key, item) in entries {
        let path = rc::join_key(prefix, key.get());
        if let Some(span) = key.span().or_else(|| item.span()) {
            out.entry(path.clone())
                .or_insert_with(|| line_column(text, span.start));
        }
        index_item(text, &path, item, out);
    }
}

fn index_item(
    text: &str,
    path: &str,
    item: &toml_edit::Item,
    out: &mut BTreeMap<String, (usize, usize)>,
) {
    match item {
        toml_edit::Item::Table(t) => index_table(text, path, pairs(t), out),
        toml_edit::Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                let element = format!("{path}[{i}]");
                if let Some(span) = t.span() {
                    out.insert(element.clone(), line_column(text, span.start));
                }
                index_table(text, &element, pairs(t), out);
            }
        }
        toml_edit::Item::Value(v) => index_value(text, path, v, out),
        toml_edit::Item::None => {}
    }
}

fn pairs(t: &toml_edit::Table) -> impl Iterator<Item = (&toml_edit::Key, &toml_edit::Item)> {
    t.iter().filter_map(|(k, _)| t.get_key_value(k))
}

fn index_value(
    text: &str,
    path: &str,
    v: &toml_edit::Value,
    out: &mut BTreeMap<String, (usize, usize)>,
) {
    match v {
        toml_edit::Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                let element = format!("{path}[{i}]");
                if let Some(span) = e.span() {
                    out.insert(element.clone(), line_column(text, span.start));
                }
                index_value(text, &element, e, out);
            }
        }
        toml_edit::Value::InlineTable(t) => {
            let entries = t.iter().filter_map(|(k, _)| t.get_key_value(k));
            index_table(text, path, entries, out);
        }
        _ => {}
    }
}

impl ConfigSource {
    fn index(file: Option<&Path>, text: &str, doc: &toml_edit::ImDocument<String>) -> Self {
        let mut keys = BTreeMap::new();
        index_table(text, "", pairs(doc.as_table()), &mut keys);
        ConfigSource {
            file: file.map(Path::to_path_buf),
            keys: Arc::new(keys),
        }
    }

    /// The file the configuration was read from.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    fn at(&self, (line, column): (usize, usize)) -> Location {
        Location {
            file: self.file.clone(),
            line,
            column,
        }
    }

    /// Where `key` (a path such as `rules[0].threshold`) was written: the
    /// key itself, else its nearest written parent.
    pub fn locate_key(&self, key: &str) -> Option<Location> {
        let mut k = key;
        loop {
            if let Some(pos) = self.keys.get(k) {
                return Some(self.at(*pos));
            }
            let cut = k.rfind(['.', '['])?;
            k = &k[..cut];
        }
    }

    /// `e` with the location of the key it names (unchanged when it names
    /// none, is located already, or the key was not written).
    pub fn locate(&self, e: ConfigError) -> ConfigError {
        if matches!(e, ConfigError::At { .. }) {
            return e;
        }
        match e.key().and_then(|k| self.locate_key(k)) {
            Some(at) => ConfigError::At {
                at,
                error: Box::new(e),
            },
            None => e,
        }
    }

    /// `e`, located at `key`.
    pub fn locate_at(&self, key: &str, e: ConfigError) -> ConfigError {
        match self.locate_key(key) {
            Some(at) => ConfigError::At {
                at,
                error: Box::new(e),
            },
            None => e,
        }
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleEntry {
    /// `builtin = "<name>"` plus its parameters (the whole table; the
    /// built-in's own serde type checks them when the rule is built).
    Builtin(RuleConfig),
    /// `plugin = "<path>"`.
    Plugin(PluginEntry),
}

/// A plugin rule entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginEntry {
    /// As written; relative paths are resolved against the configuration
    /// file's directory (see [`Config::base_dir`]).
    pub path: PathBuf,
    pub sha256: Option<String>,
    pub rule: Option<String>,
    pub config: RuleConfig,
}

/// The keys of a plugin entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginFile {
    plugin: String,
    sha256: Option<String>,
    rule: Option<String>,
    #[serde(default)]
    config: toml::Table,
}

/// Every key of the configuration schema except the `[serve]` table's
/// (`sec_audit_serve::ServeConfig::keys`) and the built-ins' parameters
/// (documented per rule), in the naming of `docs/configuration.md`:
/// `enabled`, `rules[].plugin`, `rule_actions.<rule>.ttl`,
/// `safelist.ips`, … Read from the serde types themselves.
pub fn schema_keys() -> Vec<String> {
    use sec_audit_rules::config::struct_fields;
    let mut keys: Vec<String> = struct_fields::<Config>()
        .iter()
        .map(|k| k.to_string())
        .collect();
    keys.push("rules[].builtin".into());
    keys.extend(
        struct_fields::<PluginFile>()
            .iter()
            .map(|k| format!("rules[].{k}")),
    );
    keys.push("rule_actions.<rule>".into());
    keys.extend(
        sec_audit_rules::policy::ActionSpec::table_keys()
            .iter()
            .map(|k| format!("rule_actions.<rule>.{k}")),
    );
    keys.push("block_rules.<rule>".into());
    keys.extend(
        struct_fields::<SafelistConfig>()
            .iter()
            .map(|k| format!("safelist.{k}")),
    );
    keys.extend(
        struct_fields::<EscalationConfig>()
            .iter()
            .map(|k| format!("escalation.{k}")),
    );
    keys
}

impl<'de> Deserialize<'de> for RuleEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read whole: whether the keys are parameters of a built-in or the
        // keys of a plugin entry depends on `builtin` / `plugin`, which may
        // come last.
        let t = toml::Table::deserialize(d)?;
        match (t.get("builtin"), t.get("plugin")) {
            (Some(_), Some(_)) => Err(de::Error::custom("has both `builtin` and `plugin`")),
            (Some(Value::String(_)), None) => Ok(RuleEntry::Builtin(table_to_json(&t))),
            (Some(_), None) => Err(rc::sub_error("builtin", "expected a built-in rule name")),
            (None, Some(_)) => {
                let p: PluginFile = serde_path_to_error::deserialize(Value::Table(t))
                    .map_err(|e| rc::sub_error(&e.path().to_string(), e.inner().message()))?;
                Ok(RuleEntry::Plugin(PluginEntry {
                    path: PathBuf::from(p.plugin),
                    sha256: p.sha256,
                    rule: p.rule,
                    config: table_to_json(&p.config),
                }))
            }
            (None, None) => Err(de::Error::custom(
                "needs `builtin = \"<name>\"` or `plugin = \"<path>\"`",
            )),
        }
    }
}

/// `[safelist]`: addresses, networks, users and sessions that are never
/// blocked. A bare address is a /32 (IPv4) or /128 (IPv6) network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafelistConfig {
    #[serde(deserialize_with = "ip_nets")]
    pub ips: Vec<IpNet>,
    #[serde(deserialize_with = "names")]
    pub users: Vec<String>,
    #[serde(deserialize_with = "names")]
    pub sessions: Vec<String>,
}

/// One address or CIDR.
struct Net(IpNet);

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        t.parse::<IpNet>()
            .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
            .map(Net)
            .map_err(|_| de::Error::custom(format!("`{t}` is not an IP address or CIDR")))
    }
}

fn ip_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Ok(Vec::<Net>::deserialize(d)?
        .into_iter()
        .map(|n| n.0)
        .collect())
}

/// A name of a safelist entry: not blank.
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(de::Error::custom("must not be empty"));
        }
        Ok(Name(s))
    }
}

fn names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<Name>::deserialize(d)?
        .into_iter()
        .map(|n| n.0)
        .collect())
}

/// `[escalation]`: repeated blocks of one key last longer. Each new block
/// within `window` seconds of the previous one multiplies its TTL by
/// `factor`, up to `max_ttl` seconds; after `permanent_after` blocks (when
/// set) it becomes permanent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    #[serde(deserialize_with = "factor")]
    pub factor: f64,
    #[serde(deserialize_with = "seconds")]
    pub max_ttl: u64,
    #[serde(deserialize_with = "seconds")]
    pub window: u64,
    #[serde(default, deserialize_with = "optional_int_in::<_, u32, 1, 4294967295>")]
    pub permanent_after: Option<u32>,
}

fn factor<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let f = f64::deserialize(d)?;
    if !f.is_finite() || f < 1.0 {
        return Err(de::Error::custom(format!("must be at least 1 (got {f})")));
    }
    Ok(f)
}

fn block_rules<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, u64>, D::Error> {
    Ok(BTreeMap::<String, Secs>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

fn ca_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(Some(PathBuf::from(s)))
}

/// The whole configuration. Field names and defaults are the contract's
/// keys; the connection keys ([`CONNECTION_KEYS`]), `[safelist]` and
/// `[escalation]` are this project's additions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub enabled: bool,
    pub redis_url: String,
    pub require_redis: bool,
    pub database_url: String,
    pub permanent_tier_enabled: bool,
    /// Seconds (`3600` or `"1h"` in a file).
    #[serde(deserialize_with = "seconds")]
    pub permanent_cache_ttl: u64,
    /// Seconds (`300` or `"5m"` in a file).
    #[serde(deserialize_with = "seconds")]
    pub default_temp_ttl: u64,
    pub key_prefix: String,
    pub fail_open: bool,
    pub fail_closed_paths: Vec<String>,
    pub eval_safe_on_ingress: bool,
    #[serde(deserialize_with = "int_in::<_, u16, 100, 599>")]
    pub status_code: u16,
    pub message: String,
    #[serde(deserialize_with = "optional_int_in::<_, u8, 0, 10>")]
    pub block_severity: Option<u8>,
    pub block_precedence: Vec<String>,
    pub trusted_proxy_cidrs: Vec<String>,
    #[serde(deserialize_with = "optional_int_in::<_, usize, 1, 18446744073709551615>")]
    pub trusted_proxy_count: Option<usize>,
    pub schema_version: String,
    pub rules: Vec<RuleEntry>,
    pub rule_actions: BTreeMap<String, ActionSpec>,
    /// Rule name = seconds (`120` or `"2m"`).
    #[serde(deserialize_with = "block_rules")]
    pub block_rules: BTreeMap<String, u64>,
    /// Connect timeout for Redis and Postgres, milliseconds.
    #[serde(deserialize_with = "millis_in::<_, 1, 600000>")]
    pub connect_timeout_ms: u64,
    /// Per-command timeout for Redis and statement timeout for Postgres,
    /// milliseconds.
    #[serde(deserialize_with = "millis_in::<_, 1, 600000>")]
    pub command_timeout_ms: u64,
    /// Connection settings (this project's additions; see
    /// [`CONNECTION_KEYS`]): pooled connections per Redis and Postgres pool,
    /// how long calls fail fast after a failed connect (0: never), and the
    /// PEM CA file trusted for `rediss://` (a private CA; as written in a
    /// file it is relative to the file's directory).
    #[serde(deserialize_with = "int_in::<_, u32, 1, 1024>")]
    pub redis_pool_size: u32,
    #[serde(deserialize_with = "int_in::<_, u32, 1, 1024>")]
    pub postgres_pool_size: u32,
    #[serde(deserialize_with = "millis_in::<_, 0, 600000>")]
    pub failure_backoff_ms: u64,
    #[serde(deserialize_with = "ca_file")]
    pub redis_ca_file: Option<PathBuf>,
    /// `[safelist]` (default empty).
    pub safelist: SafelistConfig,
    /// `[escalation]`, when written.
    pub escalation: Option<EscalationConfig>,
    /// Directory relative plugin paths are resolved against.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The `[serve]` table as written, for `sec-audit serve` (the
    /// `sec-audit-serve` crate deserializes it with [`Config::section`],
    /// naming its keys as `serve.<key>`). `None` when the file has none.
    pub serve: Option<toml::Table>,
    /// Where the configuration was read from (for error locations).
    #[serde(skip)]
    pub source: ConfigSource,
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
            safelist: SafelistConfig::default(),
            escalation: None,
            base_dir: PathBuf::from("."),
            serve: None,
            source: ConfigSource::default(),
        }
    }
}

/// The connection keys and their accepted ranges (inclusive): timeouts in
/// milliseconds, pool sizes in connections. (The schema's field types hold
/// the same ranges; a test keeps them equal.)
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

impl Config {
    /// Parses a TOML document. Relative plugin paths resolve against the
    /// current directory; use [`Config::from_file`] to resolve them against
    /// the file's directory.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::parse(text, None)
    }

    fn parse(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
        let located = |span: Option<std::ops::Range<usize>>, e: ConfigError| match span {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                ConfigError::At {
                    at: Location {
                        file: file.map(Path::to_path_buf),
                        line,
                        column,
                    },
                    error: Box::new(e),
                }
            }
            None => e,
        };
        // The message and position only: toml's own `Display` quotes the
        // line, which may hold a password.
        let doc = toml_edit::ImDocument::parse(text.to_string()).map_err(|e| {
            let message = e.message().trim();
            let message = if message.is_empty() {
                "a value is missing or malformed".to_string()
            } else {
                message.replace('\n', "; ")
            };
            located(e.span(), ConfigError::Syntax(message))
        })?;
        let source = ConfigSource::index(file, text, &doc);
        let mut config: Config = serde_path_to_error::deserialize(
            toml_edit::de::Deserializer::from(doc),
        )
        .map_err(|e| {
            let error = ConfigError::from_serde("", &e.path().to_string(), e.inner().message());
            let by_key = error
                .key()
                .and_then(|k| source.keys.get(k).map(|pos| source.at(*pos)));
            match by_key {
                Some(at) => ConfigError::At {
                    at,
                    error: Box::new(error),
                },
                None if e.inner().span().is_some() => located(e.inner().span(), error),
                None => source.locate(error),
            }
        })?;
        config.source = source;
        config.validate_fields()?;
        Ok(config)
    }

    /// Reads and parses a TOML file, then applies the environment overrides.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        // Bounded: `/dev/zero` or a log given by mistake ends at once.
        let text = crate::config_checks::read_bounded(path)?;
        let mut config = Self::parse(&text, Some(path))?;
        config.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        config.redis_ca_file = config.redis_ca_file.map(|f| config.base_dir.join(f));
        config.apply_env();
        // The overrides are URLs too (not located: the value came from the
        // environment).
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

    /// Deserializes a raw table of this configuration (such as `[serve]`)
    /// into `T`; errors name `name.<key>` and where it was written.
    pub fn section<T: DeserializeOwned>(
        &self,
        name: &str,
        table: &toml::Table,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(Value::Table(table.clone())).map_err(|e| {
            self.source.locate(ConfigError::from_serde(
                name,
                &e.path().to_string(),
                e.inner().message(),
            ))
        })
    }

    /// Checks what can be checked without building rules: regexes, CIDRs,
    /// both-or-neither proxy settings, `require_redis`, ranges (for a
    /// configuration built in code too). Errors carry the key's location
    /// when the configuration came from text.
    pub fn validate_fields(&self) -> Result<(), ConfigError> {
        self.check_fields().map_err(|e| self.source.locate(e))
    }

    fn check_fields(&self) -> Result<(), ConfigError> {
        self.fail_closed_path_regexes()?;
        crate::safelist::validate(&self.safelist)?;
        if let Some(e) = &self.escalation {
            crate::escalation::validate(e)?;
        }
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
        crate::safelist::validate(&self.safelist)?;
        if let Some(e) = &self.escalation {
            crate::escalation::validate(e)?;
        }
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
            for (key, prefix, max) in [
                ("range_prefix_v4", spec.range_prefix_v4, 32),
                ("range_prefix_v6", spec.range_prefix_v6, 128),
            ] {
                if let Some(p) = prefix.filter(|p| *p > max) {
                    return Err(ConfigError::invalid(
                        format!("rule_actions.{name}.{key}"),
                        format!("must be 0-{max} (got {p})"),
                    ));
                }
            }
            let builtin_default = sec_audit_rules::policy::builtin_default(name).is_some();
            if spec.action.is_none() && !builtin_default {
                return Err(ConfigError::invalid(
                    format!("rule_actions.{name}"),
                    "`action` is required (only built-in rules have a default to merge over)",
                ));
            }
        }
        if let Some(e) = &self.escalation {
            if !e.factor.is_finite() || e.factor < 1.0 {
                return Err(ConfigError::invalid(
                    "escalation.factor",
                    format!("must be at least 1 (got {})", e.factor),
                ));
            }
            for (key, v) in [("max_ttl", e.max_ttl), ("window", e.window)] {
                if v == 0 {
                    return Err(ConfigError::invalid(
                        format!("escalation.{key}"),
                        "must be greater than 0 (got 0)",
                    ));
                }
            }
            if e.permanent_after == Some(0) {
                return Err(ConfigError::invalid(
                    "escalation.permanent_after",
                    "must be at least 1 (got 0)",
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
            .enumerate()
            .map(|(i, p)| {
                Regex::new(p).map_err(|e| {
                    self.source.locate_at(
                        &format!("fail_closed_paths[{i}]"),
                        ConfigError::invalid(
                            "fail_closed_paths",
                            format!("invalid regex `{p}`: {e}"),
                        ),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sec_audit_rules::ActionKind;

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
    fn safelist_and_escalation_tables_parse() {
        let c = Config::from_toml_str(
            "[safelist]\nips = [\"192.0.2.214\", \"10.0.0.0/8\", \"2001:db8::/32\", \"::1\"]\nusers = [\"ops\"]\nsessions = [\"s1\"]\n[escalation]\nfactor = 2\nmax_ttl = 86400\nwindow = 3600\npermanent_after = 5",
        )
        .unwrap();
        let ips: Vec<String> = c.safelist.ips.iter().map(ToString::to_string).collect();
        assert_eq!(
            ips,
            ["192.0.2.214/32", "10.0.0.0/8", "2001:db8::/32", "::1/128"]
        );
        assert_eq!(c.safelist.users, ["ops"]);
        assert_eq!(c.safelist.sessions, ["s1"]);
        assert_eq!(
            c.escalation,
            Some(EscalationConfig {
                factor: 2.0,
                max_ttl: 86_400,
                window: 3_600,
                permanent_after: Some(5),
            })
        );
        let d = Config::from_toml_str("").unwrap();
        assert_eq!(d.safelist, SafelistConfig::default());
        assert_eq!(d.escalation, None);
        for (text, key) in [
            ("[safelist]\nips = [\"300.1.1.1\"]", "`safelist.ips[0]`"),
            ("[safelist]\nips = \"10.0.0.1\"", "`safelist.ips`"),
            ("[safelist]\nip = []", "`safelist.ip`"),
            ("safelist = 1", "`safelist`"),
            (
                "[escalation]\nmax_ttl = 10\nwindow = 10",
                "`escalation.factor`",
            ),
            (
                "[escalation]\nfactor = 2\nwindow = 10",
                "`escalation.max_ttl`",
            ),
            (
                "[escalation]\nfactor = 2\nmax_ttl = 10\nwindow = 0",
                "`escalation.window`",
            ),
            (
                "[escalation]\nfactor = \"2\"\nmax_ttl = 10\nwindow = 1",
                "`escalation.factor`",
            ),
            (
                "[escalation]\nfactor = 2\nmax_ttl = 10\nwindow = 1\npermanent_after = -1",
                "`escalation.permanent_after`",
            ),
            (
                "[escalation]\nfactor = 2\nmax_ttl = 10\nwindow = 1\nbantime = 1",
                "`escalation.bantime`",
            ),
        ] {
            assert!(err(text).contains(key), "{text}: {}", err(text));
        }
    }

    #[test]
    fn builtin_rule_actions_may_omit_the_action() {
        assert!(Config::from_toml_str("[rule_actions]\nbrute_force_login = { ttl = 10 }").is_ok());
    }

    #[test]
    fn errors_carry_the_line_and_column() {
        let text = "enabled = true\n\n[rule_actions]\nfoo = { action = \"alert\", tll = 5 }\n";
        let e = Config::from_toml_str(text).unwrap_err();
        let at = e.location().expect("located");
        assert_eq!((at.line, at.column), (4, 27), "{e}");
        assert_eq!(
            e.to_string(),
            "line 4, column 27: unknown configuration key `rule_actions.foo.tll`"
        );
        assert_eq!(
            e.unlocated(),
            &ConfigError::UnknownKey("rule_actions.foo.tll".into())
        );
        // Errors found after parsing are located too.
        let e = err("enabled = true\nkey_prefix = \"x\"\nrequire_redis = true");
        assert!(e.starts_with("line 3, column 1: "), "{e}");
        let e = err("fail_closed_paths = [\"^/ok\",\n  \"(\"]");
        assert!(e.starts_with("line 2, column 3: "), "{e}");
        let e = err("enabled = true\n[[rules]]\nbuiltin = 5");
        assert!(e.starts_with("line 3, column 1: "), "{e}");
        let e = err("a = [1,");
        assert!(e.starts_with("line 1, column 8: "), "{e}");
        // A file names itself.
        let dir = std::env::temp_dir().join(format!("sec-audit-cfg-loc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "enabled = true\nstatus_code = 42\n").unwrap();
        let e = Config::from_file(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2:1: configuration key `status_code`: must be 100-599 (got 42)",
                path.display()
            )
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_messages_never_echo_string_values() {
        for text in [
            "enabled = \"redis://:s3cret@host\"",
            "redis_url = \"redis://:s3cret@host:99999\"",
            "redis_url = \"redis://:s3cret@host",
            "status_code = \"redis://:s3cret@host\"",
            "[rule_actions]\nx = { action = \"alert\", message = [\"s3cret\"] }",
            "[[rules]]\nplugin = \"p.so\"\nsha256 = [\"s3cret\"]",
            "database_url = \"mysql://u:s3cret@db/x\"",
        ] {
            let e = err(text);
            assert!(!e.contains("s3cret"), "{text}: {e}");
            assert!(e.contains("line "), "{text}: {e}");
        }
    }

    #[test]
    fn durations_are_seconds_or_strings_everywhere() {
        let c = Config::from_toml_str(
            r#"
            default_temp_ttl = "15m"
            permanent_cache_ttl = "1h"
            connect_timeout_ms = "2s"
            command_timeout_ms = "250ms"
            failure_backoff_ms = 0
            [rule_actions]
            brute_force_login = { ttl = "15m" }
            x = { action = "alert", ttl = 900 }
            [block_rules]
            a = "2m"
            b = 120
            [escalation]
            factor = 2
            max_ttl = "1d"
            window = 900
            "#,
        )
        .unwrap();
        assert_eq!((c.default_temp_ttl, c.permanent_cache_ttl), (900, 3600));
        assert_eq!((c.connect_timeout_ms, c.command_timeout_ms), (2000, 250));
        assert_eq!(c.rule_actions["brute_force_login"].ttl, Some(900));
        assert_eq!(c.rule_actions["x"].ttl, Some(900));
        assert_eq!((c.block_rules["a"], c.block_rules["b"]), (120, 120));
        let e = c.escalation.unwrap();
        assert_eq!((e.max_ttl, e.window), (86_400, 900));
        assert_eq!(
            Config::from_toml_str("default_temp_ttl = 900")
                .unwrap()
                .default_temp_ttl,
            900
        );
        for (text, key) in [
            ("default_temp_ttl = \"15 minutes\"", "`default_temp_ttl`"),
            ("default_temp_ttl = \"0m\"", "`default_temp_ttl`"),
            ("default_temp_ttl = 1.5", "`default_temp_ttl`"),
            ("default_temp_ttl = \"1500ms\"", "`default_temp_ttl`"),
            ("[block_rules]\na = \"2w\"", "`block_rules.a`"),
            (
                "[rule_actions]\nx = { action = \"alert\", ttl = \"\" }",
                "`rule_actions.x.ttl`",
            ),
            ("connect_timeout_ms = \"11m\"", "`connect_timeout_ms`"),
        ] {
            let e = err(text);
            assert!(e.contains(key) && e.starts_with("line "), "{text}: {e}");
        }
    }

    #[test]
    fn the_safelist_loads_and_rejects_bad_entries() {
        let c = Config::from_toml_str(
            "[safelist]\nips = [\"192.0.2.7\", \"10.0.0.0/8\", \"2001:db8::1\", \"2001:db8:1::/48\"]\nusers = [\"ops\"]\nsessions = [\"s-1\"]",
        )
        .unwrap();
        let ips: Vec<String> = c.safelist.ips.iter().map(ToString::to_string).collect();
        assert_eq!(
            ips,
            [
                "192.0.2.7/32",
                "10.0.0.0/8",
                "2001:db8::1/128",
                "2001:db8:1::/48"
            ]
        );
        assert_eq!(c.safelist.users, ["ops"]);
        assert_eq!(c.safelist.sessions, ["s-1"]);
        assert_eq!(
            Config::from_toml_str("").unwrap().safelist,
            SafelistConfig::default()
        );
        for (text, key, at) in [
            (
                "[safelist]\nips = [\"192.0.2.7\", \"192.0.2.300\"]",
                "`safelist.ips[1]`",
                "line 2, column 21",
            ),
            (
                "[safelist]\nips = [\"10.0.0.0/33\"]",
                "`safelist.ips[0]`",
                "line 2, column 8",
            ),
            (
                "[safelist]\nips = \"10.0.0.1\"",
                "`safelist.ips`",
                "line 2, column 1",
            ),
            (
                "[safelist]\nusers = [\"\"]",
                "`safelist.users[0]`",
                "line 2, column 10",
            ),
            (
                "[safelist]\nsessions = [1]",
                "`safelist.sessions[0]`",
                "line 2, column 13",
            ),
            ("[safelist]\nip = []", "`safelist.ip`", "line 2, column 1"),
        ] {
            let e = err(text);
            assert!(e.contains(key) && e.starts_with(at), "{text}: {e}");
        }
    }

    #[test]
    fn escalation_loads_and_rejects_bad_values() {
        let c = Config::from_toml_str(
            "[escalation]\nfactor = 1.5\nmax_ttl = \"1h\"\nwindow = \"15m\"\npermanent_after = 3",
        )
        .unwrap();
        assert_eq!(
            c.escalation,
            Some(EscalationConfig {
                factor: 1.5,
                max_ttl: 3600,
                window: 900,
                permanent_after: Some(3),
            })
        );
        assert_eq!(Config::from_toml_str("").unwrap().escalation, None);
        let ok = "factor = 2\nmax_ttl = 60\nwindow = 60";
        assert_eq!(
            Config::from_toml_str(&format!("[escalation]\n{ok}"))
                .unwrap()
                .escalation
                .and_then(|e| e.permanent_after),
            None
        );
        for (text, key, line) in [
            (
                "factor = 0.9\nmax_ttl = 60\nwindow = 60",
                "`escalation.factor`",
                2,
            ),
            (
                "factor = \"2\"\nmax_ttl = 60\nwindow = 60",
                "`escalation.factor`",
                2,
            ),
            (
                "factor = 2\nmax_ttl = 0\nwindow = 60",
                "`escalation.max_ttl`",
                3,
            ),
            (
                "factor = 2\nmax_ttl = 60\nwindow = -1",
                "`escalation.window`",
                4,
            ),
            (
                "factor = 2\nmax_ttl = 60\nwindow = 60\npermanent_after = 0",
                "`escalation.permanent_after`",
                5,
            ),
            ("factor = 2\nwindow = 60", "`escalation.max_ttl`", 1),
            (
                "factor = 2\nmax_ttl = 60\nwindow = 60\nwindows = 1",
                "`escalation.windows`",
                5,
            ),
        ] {
            let e = err(&format!("[escalation]\n{text}"));
            assert!(
                e.contains(key) && e.starts_with(&format!("line {line}, ")),
                "{text}: {e}"
            );
        }
        // Built in code, the same bounds hold.
        let c = Config {
            escalation: Some(EscalationConfig {
                factor: 0.5,
                max_ttl: 1,
                window: 1,
                permanent_after: None,
            }),
            ..Config::default()
        };
        assert!(c
            .validate_fields()
            .unwrap_err()
            .to_string()
            .contains("`escalation.factor`"));
    }

    #[test]
    fn rule_actions_take_range_prefixes() {
        let c = Config::from_toml_str(
            "[rule_actions]\nbrute_force_login = { range_prefix_v4 = 24, range_prefix_v6 = 64 }\nx = { action = \"temp_block\", range_prefix_v4 = 0, range_prefix_v6 = 128 }",
        )
        .unwrap();
        let b = &c.rule_actions["brute_force_login"];
        assert_eq!((b.range_prefix_v4, b.range_prefix_v6), (Some(24), Some(64)));
        let x = &c.rule_actions["x"];
        assert_eq!((x.range_prefix_v4, x.range_prefix_v6), (Some(0), Some(128)));
        assert_eq!(c.rule_actions.get("y"), None);
        for (text, key) in [
            (
                "x = { action = \"alert\", range_prefix_v4 = 33 }",
                "`rule_actions.x.range_prefix_v4`",
            ),
            (
                "x = { action = \"alert\", range_prefix_v6 = 129 }",
                "`rule_actions.x.range_prefix_v6`",
            ),
            (
                "x = { action = \"alert\", range_prefix_v4 = -1 }",
                "`rule_actions.x.range_prefix_v4`",
            ),
            (
                "x = { action = \"alert\", range_prefix_v6 = \"64\" }",
                "`rule_actions.x.range_prefix_v6`",
            ),
        ] {
            let e = err(&format!("[rule_actions]\n{text}"));
            assert!(e.contains(key) && e.starts_with("line 2, "), "{text}: {e}");
        }
        // The user's prefixes merge over a built-in default.
        let merged = sec_audit_rules::policy::builtin_default("brute_force_login")
            .unwrap()
            .merged(b);
        assert_eq!(merged.range_prefix_v4, Some(24));
        assert_eq!(merged.action, Some(ActionKind::TempBlock));
        let c = Config {
            rule_actions: [(
                "x".to_string(),
                ActionSpec {
                    range_prefix_v6: Some(200),
                    ..ActionSpec::action(ActionKind::Alert)
                },
            )]
            .into(),
            ..Config::default()
        };
        assert!(c
            .validate_fields()
            .unwrap_err()
            .to_string()
            .contains("range_prefix_v6"));
    }

    #[test]
    fn the_schema_holds_the_connection_ranges() {
        for (key, lo, hi) in CONNECTION_KEYS {
            assert!(
                Config::from_toml_str(&format!("{key} = {lo}")).is_ok(),
                "{key}"
            );
            assert!(
                Config::from_toml_str(&format!("{key} = {hi}")).is_ok(),
                "{key}"
            );
            assert!(err(&format!("{key} = {}", hi + 1)).contains(key), "{key}");
            if lo > 0 {
                assert!(err(&format!("{key} = {}", lo - 1)).contains(key), "{key}");
            }
        }
    }
}
