//! Loads sec-audit plugin rules from shared libraries built with
//! `sec-audit-plugin-sdk`, and adapts each to the native
//! [`sec_audit_rules::Rule`] contract, so the engine runs it like any other
//! rule (`docs/plugins.md`).
//!
//! ```text
//! let spec = PluginSpec::from_entry(&entry, config_dir)?;      // or PluginSpec::new(path)...
//! let loaded = sec_audit_plugin_host::load(&spec)?;             // Vec<LoadedRule>
//! policy.plugin_rules.extend(plugin_rule_names(&loaded));       // observe until mapped
//! for r in &loaded { builder = builder.rule(r.rule.clone()); }
//! ```
//!
//! Guarantees:
//! - **Checked loading** ([`loader`]): missing file, digest mismatch
//!   (checked before the library is opened), not a plugin, incompatible SDK
//!   version or layout, empty rule name, unknown selected rule, rejected
//!   configuration — each a [`PluginError`] naming the file, the rule when
//!   known, and the reason. Duplicates against other registered rules are
//!   refused by the engine builder (`EngineError::DuplicateRule`).
//! - **Isolation**: a panic inside plugin code is caught on the plugin side
//!   and reaches the engine as [`sec_audit_rules::RuleError::Panicked`]; an
//!   invalid match (wrong or empty rule name, severity outside 1–10) is
//!   refused by the engine's match validation; both are isolated rule
//!   failures.
//! - **Lifetime**: a library is opened once per process and never closed.
//! - **Observe until mapped**: [`plugin_rule_names`] gives the set the
//!   runtime puts in `ActionPolicy::plugin_rules`.

#![forbid(unsafe_code)]

mod adapter;
mod error;
pub mod loader;

pub use error::PluginError;
pub use loader::{
    file_sha256, load, load_all, load_plugin_rules, loaded_libraries, plugin_rule_names,
    resolve_plugin_path, LoadedRule, PluginSpec,
};
pub use sec_audit_plugin_sdk::{SDK_ABI_VERSION, SDK_VERSION};
