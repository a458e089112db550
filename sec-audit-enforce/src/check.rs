//! The configuration check (`sec-audit check`): findings
//! as data a program can print.

use std::collections::BTreeSet;
use std::fmt;

use sec_audit_rules::ActionKind;

use crate::config::Config;
use crate::rules::resolve_rules;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Error,
}

/// One finding: an id (`W001`…`W005`, `E001`; `E002` and `W006` from the
/// live check of the CLI), its level and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: &'static str,
    pub level: Level,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Warning => "warning",
            Level::Error => "error",
        };
        write!(f, "{} {level}: {}", self.id, self.message)
    }
}

fn warn(id: &'static str, message: String) -> Finding {
    Finding {
        id,
        level: Level::Warning,
        message,
    }
}

/// Checks a configuration without opening any connection. Validation
/// errors (including rules and plugins that do not build) are `E001`.
pub fn check(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Err(e) = config.validate_fields() {
        out.push(Finding {
            id: "E001",
            level: Level::Error,
            message: e.to_string(),
        });
    }
    // The built-in scopes: a configuration file cannot add custom ones.
    if let Err(e) = config.validate_scopes(&sec_audit_rules::ScopeRegistry::builtin()) {
        out.push(Finding {
            id: "E001",
            level: Level::Error,
            message: e.to_string(),
        });
    }
    let registered: Option<BTreeSet<String>> = match resolve_rules(config) {
        Ok(r) => Some(r.rules.iter().map(|r| r.rule.name().to_string()).collect()),
        Err(e) => {
            out.push(Finding {
                id: "E001",
                level: Level::Error,
                message: e.to_string(),
            });
            None
        }
    };
    if let Some(ca) = &config.redis_ca_file {
        if let Err(reason) = sec_audit_store::check_tls_ca_file(ca) {
            out.push(Finding {
                id: "E001",
                level: Level::Error,
                message: format!(
                    "configuration key `redis_ca_file`: {}: {reason}",
                    ca.display()
                ),
            });
        }
    }
    if config.enabled && config.redis_url.trim().is_empty() {
        out.push(warn(
            "W001",
            "enabled without redis_url: counters, history and blocks are per process, wrong with several workers".into(),
        ));
    }
    if !config.fail_closed_paths.is_empty() {
        out.push(warn(
            "W002",
            format!(
                "fail_closed_paths is set ({}): a block-store outage denies all matching traffic",
                config.fail_closed_paths.join(", ")
            ),
        ));
    }
    for (name, spec) in &config.rule_actions {
        let scopes_ip = spec
            .scopes
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| s == "ip"));
        let permanent = match spec.action {
            Some(ActionKind::PersistBlock) => true,
            Some(ActionKind::Block) => config.block_severity.is_some(),
            _ => false,
        };
        if scopes_ip && permanent {
            out.push(warn(
                "W003",
                format!("rule_actions.{name} makes a permanent block on ip: everyone behind a shared NAT or carrier address is locked out"),
            ));
        }
        let kind = spec
            .action
            .or_else(|| sec_audit_rules::policy::builtin_default(name).and_then(|d| d.action));
        let temp = matches!(kind, Some(ActionKind::TempBlock | ActionKind::Block));
        if let Some(n) = config.escalation.as_ref().and_then(|e| e.permanent_after) {
            if scopes_ip && temp && !permanent {
                out.push(warn(
                    "W003",
                    format!("rule_actions.{name} names ip and escalation.permanent_after = {n}: its {n}th temporary block of an address is permanent, locking out everyone behind a shared NAT or carrier address"),
                ));
            }
        }
    }
    if let Some(registered) = &registered {
        for name in config.rule_actions.keys() {
            if !registered.contains(name) {
                out.push(warn(
                    "W005",
                    format!("rule_actions.{name} names no registered rule: it is inert"),
                ));
            }
        }
        for name in config.block_rules.keys() {
            if !registered.contains(name) {
                out.push(warn(
                    "W005",
                    format!("block_rules.{name} names no registered rule: it is inert"),
                ));
            }
        }
    }
    out
}

/// `W006`: a safelisted subject that has an active block in `store` (it
/// was blocked before it was safelisted). Ingress ignores that block, but
/// every listing shows it as a ban. Reads the store (operator tooling:
/// `sec-audit check --live`).
pub fn check_store(
    config: &Config,
    store: &dyn sec_audit_store::BlockStore,
) -> Result<Vec<Finding>, sec_audit_store::StoreError> {
    let safelist = crate::safelist::Safelist::new(&config.safelist);
    if safelist.is_empty() {
        return Ok(Vec::new());
    }
    let entries = crate::safelist::blocked_entries(&safelist, store)?;
    Ok(entries
        .iter()
        .map(|e| {
            let key = e.scope();
            let entry = safelist.entry_for(&key).unwrap_or_else(|| "[safelist]".into());
            let kind = match e.expires_at {
                None => "a permanent block".to_string(),
                Some(t) => format!("a temporary block until {}", crate::events::rfc3339(t)),
            };
            warn(
                "W006",
                format!(
                    "{entry} covers {key}, which has {kind} (rule {}): ingress ignores it, but it still reads as a ban; revoke it (`sec-audit blocks revoke --config <file> --scope {} --value {} --reason <why>`)",
                    e.rule_name,
                    e.scope_type,
                    e.scope_value
                ),
            )
        })
        .collect())
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.level == Level::Error)
}
