//! Why a plugin was refused. Every variant names the file; those about one
//! rule name it too.

use std::path::{Path, PathBuf};

fn rule_part(rule: &Option<String>) -> String {
    match rule {
        Some(r) => format!("rule `{r}`: "),
        None => String::new(),
    }
}

/// A startup error: the plugin is refused and nothing of it is registered.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin `{}`: file not found", path.display())]
    NotFound { path: PathBuf },

    #[error("plugin `{}`: cannot read the file: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("plugin `{}`: `sha256` must be 64 hexadecimal characters, got `{value}`", path.display())]
    BadDigest { path: PathBuf, value: String },

    #[error(
        "plugin `{}`: sha256 digest mismatch: the configuration expects {expected} but the file has {actual}; refusing to load it",
        path.display()
    )]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("plugin `{}`: not a sec-audit plugin: {reason}", path.display())]
    NotAPlugin { path: PathBuf, reason: String },

    #[error(
        "plugin `{}`: incompatible plugin SDK version: the plugin was built against SDK interface version {found}, this host requires {expected}; rebuild it against this host's sec-audit-plugin-sdk",
        path.display()
    )]
    IncompatibleVersion {
        path: PathBuf,
        found: String,
        expected: String,
    },

    #[error(
        "plugin `{}`: incompatible type layout: the plugin was built against a different plugin SDK; rebuild it against this host's sec-audit-plugin-sdk ({detail})",
        path.display()
    )]
    IncompatibleLayout { path: PathBuf, detail: String },

    #[error("plugin `{}`: failed to initialize: {reason}", path.display())]
    InitFailed { path: PathBuf, reason: String },

    #[error("plugin `{}`: {}configuration rejected: {reason}", path.display(), rule_part(rule))]
    ConfigRejected {
        path: PathBuf,
        rule: Option<String>,
        reason: String,
    },

    #[error("plugin `{}`: exports a rule with an empty name", path.display())]
    EmptyRuleName { path: PathBuf },

    #[error("plugin `{}`: rule `{rule}` is not exported by the library{}", path.display(), exports(available))]
    RuleNotExported {
        path: PathBuf,
        rule: String,
        available: Vec<String>,
    },

    #[error("plugin `{}`: exports no rule", path.display())]
    NoRules { path: PathBuf },

    #[error("plugin `{}`: rule `{rule}`: {reason}", path.display())]
    InvalidRule {
        path: PathBuf,
        rule: String,
        reason: String,
    },

    #[error("plugin `{}`: configuration entry: {reason}", path.display())]
    BadEntry { path: PathBuf, reason: String },
}

fn exports(available: &[String]) -> String {
    if available.is_empty() {
        String::new()
    } else {
        format!(" (it exports: {})", available.join(", "))
    }
}

impl PluginError {
    /// The plugin file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PluginError::NotFound { path }
            | PluginError::Io { path, .. }
            | PluginError::BadDigest { path, .. }
            | PluginError::DigestMismatch { path, .. }
            | PluginError::NotAPlugin { path, .. }
            | PluginError::IncompatibleVersion { path, .. }
            | PluginError::IncompatibleLayout { path, .. }
            | PluginError::InitFailed { path, .. }
            | PluginError::ConfigRejected { path, .. }
            | PluginError::EmptyRuleName { path }
            | PluginError::RuleNotExported { path, .. }
            | PluginError::NoRules { path }
            | PluginError::InvalidRule { path, .. }
            | PluginError::BadEntry { path, .. } => path,
        }
    }

    /// The rule the error is about, when known.
    pub fn rule(&self) -> Option<&str> {
        match self {
            PluginError::ConfigRejected { rule, .. } => rule.as_deref(),
            PluginError::RuleNotExported { rule, .. } | PluginError::InvalidRule { rule, .. } => {
                Some(rule)
            }
            _ => None,
        }
    }

    /// A short, stable name of the error kind.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::NotFound { .. } => "not_found",
            PluginError::Io { .. } => "io",
            PluginError::BadDigest { .. } => "bad_digest",
            PluginError::DigestMismatch { .. } => "digest_mismatch",
            PluginError::NotAPlugin { .. } => "not_a_plugin",
            PluginError::IncompatibleVersion { .. } => "incompatible_version",
            PluginError::IncompatibleLayout { .. } => "incompatible_layout",
            PluginError::InitFailed { .. } => "init_failed",
            PluginError::ConfigRejected { .. } => "config_rejected",
            PluginError::EmptyRuleName { .. } => "empty_rule_name",
            PluginError::RuleNotExported { .. } => "rule_not_exported",
            PluginError::NoRules { .. } => "no_rules",
            PluginError::InvalidRule { .. } => "invalid_rule",
            PluginError::BadEntry { .. } => "bad_entry",
        }
    }
}
