//! Resolving the configured `[[rules]]` into rule objects at startup, so a
//! bad rule fails the start, not a request.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use sec_audit_plugin_host::{resolve_plugin_path, PluginSpec};
use sec_audit_rules::{Rule, RuleConfig};

use crate::config::{Config, ConfigError, RuleEntry};
use crate::runtime::BuildError;

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOrigin {
    Builtin,
    Plugin(PathBuf),
}

/// One configured rule, built.
#[derive(Clone)]
pub struct ResolvedRule {
    pub rule: Arc<dyn Rule>,
    /// The rule's own configuration table (what its context exposes).
    pub config: RuleConfig,
    pub origin: RuleOrigin,
}

/// Every configured rule, in configuration order.
#[derive(Clone, Default)]
pub struct ResolvedRules {
    pub rules: Vec<ResolvedRule>,
}

impl ResolvedRules {
    /// Names of the registered built-ins (whose default actions apply).
    pub fn builtin_names(&self) -> BTreeSet<String> {
        self.names(|o| *o == RuleOrigin::Builtin)
    }
    /// Names of the registered plugin rules (whose own decision is ignored).
    pub fn plugin_names(&self) -> BTreeSet<String> {
        self.names(|o| matches!(o, RuleOrigin::Plugin(_)))
    }
    fn names(&self, f: impl Fn(&RuleOrigin) -> bool) -> BTreeSet<String> {
        self.rules
            .iter()
            .filter(|r| f(&r.origin))
            .map(|r| r.rule.name().to_string())
            .collect()
    }
}

/// Builds every configured rule; the first failure is an error naming the
/// rule (and for plugins the file).
pub fn resolve_rules(config: &Config) -> Result<ResolvedRules, BuildError> {
    let mut out = ResolvedRules::default();
    for (i, entry) in config.rules.iter().enumerate() {
        let entry_key = format!("rules[{i}]");
        match entry {
            RuleEntry::Builtin(table) => {
                let rule = sec_audit_rules::builtin::build(table).map_err(|e| {
                    // Where the parameter (or else the entry) was written.
                    let key = match (&e, e.key()) {
                        (sec_audit_rules::ConfigError::UnknownBuiltin(_), _) => {
                            format!("{entry_key}.builtin")
                        }
                        (_, Some(k)) => format!("{entry_key}.{k}"),
                        (_, None) => entry_key.clone(),
                    };
                    config
                        .source
                        .locate_at(&key, ConfigError::Rule(e.to_string()))
                })?;
                let mut params = table.clone();
                params.remove("builtin");
                out.rules.push(ResolvedRule {
                    rule,
                    config: params,
                    origin: RuleOrigin::Builtin,
                });
            }
            RuleEntry::Plugin(p) => {
                let mut spec = PluginSpec::new(resolve_plugin_path(&config.base_dir, &p.path))
                    .with_config(p.config.clone());
                if let Some(d) = &p.sha256 {
                    spec = spec.with_sha256(d.clone());
                }
                if let Some(r) = &p.rule {
                    spec = spec.with_rule(r.clone());
                }
                let loaded = sec_audit_plugin_host::load(&spec).map_err(|e| {
                    let key = plugin_error_key(&entry_key, &e);
                    BuildError::Plugin(match config.source.locate_key(&key) {
                        Some(at) => format!("{at}: {e}"),
                        None => e.to_string(),
                    })
                })?;
                for l in loaded {
                    out.rules.push(ResolvedRule {
                        rule: l.rule,
                        config: p.config.clone(),
                        origin: RuleOrigin::Plugin(l.plugin_path),
                    });
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, r) in out.rules.iter().enumerate() {
        if !seen.insert(r.rule.name().to_string()) {
            let e = ConfigError::Rule(format!(
                "rules: rule `{}` is registered twice",
                r.rule.name()
            ));
            // Plugins may export several rules: the entry is known only
            // when every entry gave one rule.
            let e = if out.rules.len() == config.rules.len() {
                config.source.locate_at(&format!("rules[{i}]"), e)
            } else {
                e
            };
            return Err(e.into());
        }
    }
    Ok(out)
}

/// The key a plugin error is about: the key of its `[rules.config]` when the
/// plugin named one (the SDK's `parameter `k`: ...` form), `sha256` for a
/// digest, else the entry.
fn plugin_error_key(entry: &str, e: &sec_audit_plugin_host::PluginError) -> String {
    use sec_audit_plugin_host::PluginError as P;
    match e {
        P::ConfigRejected { reason, .. } => {
            let param = reason
                .strip_prefix("parameter `")
                .or_else(|| reason.strip_prefix("unknown parameter `"))
                .and_then(|r| r.split_once('`'))
                .map(|(k, _)| k);
            match param {
                Some(k) => format!("{entry}.config.{k}"),
                None => format!("{entry}.config"),
            }
        }
        P::BadDigest { .. } | P::DigestMismatch { .. } => format!("{entry}.sha256"),
        P::RuleNotExported { .. } => format!("{entry}.rule"),
        _ => format!("{entry}.plugin"),
    }
}
