//! `credential_stuffing` — an example sec-audit plugin rule (history-based).
//!
//! One source IP trying many *distinct* usernames within a window is
//! replaying a list of stolen credentials, which a per-IP failure counter
//! (`brute_force_login`) cannot tell apart from one user mistyping a
//! password. The rule reads the IP's recent `auth.login.failed` events from
//! history and counts the distinct usernames among them and the current one.
//!
//! The history summary does not keep `user.name`, so the rule contributes it
//! through `history_attributes` — as a fingerprint (FNV-1a 64), not in
//! clear: history attributes are not scrubbed and must hold no personal
//! data.
//!
//! Configuration (`[rules.config]`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `distinct_usernames` | 10 | distinct usernames from one IP within the window that make a match |
//! | `window_seconds` | 600 | how far back history is read, seconds or `"15m"` |
//! | `max_events` | 100 | how many history rows are read at most (≥ `distinct_usernames`) |
//! | `severity` | 8 | 1–10 |
//! | `message` | "Many distinct usernames tried from one source IP" | |
//! | `tags` | `["auth", "credential_stuffing"]` | |
//! | `decision` | none | a suggestion only; `rule_actions` decides |

use std::collections::BTreeSet;

use sec_audit_plugin_sdk::params::{Count, OptionalDecision, Seconds, Severity, StringList};
use sec_audit_plugin_sdk::serde::Deserialize;
use sec_audit_plugin_sdk::serde_json::{Map, Value};
use sec_audit_plugin_sdk::{
    export_rules, ConfigError, Context, Decision, Event, HistoryContext, HistoryQuery,
    PluginConfig, PluginMatch, PluginRule, RuleError,
};

/// The rule's name: what `rule_actions` and the emitted events key on.
pub const NAME: &str = "credential_stuffing";

/// The `history_attributes` key holding the username fingerprint.
pub const FINGERPRINT_KEY: &str = "user_fp";

const FAILED: &str = "auth.login.failed";

pub struct CredentialStuffing {
    distinct_usernames: usize,
    severity: u8,
    message: String,
    tags: Vec<String>,
    decision: Option<Decision>,
    event_types: Vec<String>,
    history: HistoryContext,
    /// `rule_attrs.<name>.user_fp`, the history row field to read.
    row_key: String,
}

/// `[rules.config]`, as the table above describes it.
#[derive(Deserialize)]
#[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields, default)]
struct Params {
    distinct_usernames: Count<2>,
    window_seconds: Seconds,
    max_events: Count<1>,
    severity: Severity,
    message: String,
    tags: StringList,
    decision: OptionalDecision,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            distinct_usernames: Count(10),
            window_seconds: Seconds(600),
            max_events: Count(100),
            severity: Severity(8),
            message: "Many distinct usernames tried from one source IP".into(),
            tags: StringList::of(&["auth", "credential_stuffing"]),
            decision: OptionalDecision(None),
        }
    }
}

impl CredentialStuffing {
    pub fn from_config(config: &PluginConfig) -> Result<Self, ConfigError> {
        let p: Params = config.deserialize(NAME)?;
        let (distinct, max_events) = (p.distinct_usernames.0, p.max_events.0);
        if max_events < distinct {
            return Err(ConfigError::bad_value(
                NAME,
                "max_events",
                format!("must be at least distinct_usernames ({distinct}), got {max_events}"),
            ));
        }
        Ok(CredentialStuffing {
            distinct_usernames: usize::try_from(distinct).unwrap_or(usize::MAX),
            severity: p.severity.0,
            message: p.message,
            tags: p.tags.0,
            decision: p.decision.0,
            event_types: vec![FAILED.to_string()],
            history: HistoryContext::new(["ip"])
                .event_types([FAILED])
                .window_seconds(p.window_seconds.0 as f64)
                .max_events(usize::try_from(max_events).unwrap_or(usize::MAX)),
            row_key: format!("rule_attrs.{NAME}.{FINGERPRINT_KEY}"),
        })
    }
}

/// FNV-1a 64 of the username, as 16 hex digits: stable across processes
/// and versions (history may live in a shared store), and not the name.
pub fn fingerprint(username: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in username.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn username<'e>(event: &'e Event<'_>) -> std::borrow::Cow<'e, str> {
    let name = event.text("user.name");
    if name.trim().is_empty() {
        event.text("username")
    } else {
        name
    }
}

impl PluginRule for CredentialStuffing {
    fn name(&self) -> &str {
        NAME
    }
    fn severity(&self) -> u8 {
        self.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }
    fn history_context(&self) -> Option<&HistoryContext> {
        Some(&self.history)
    }

    fn history_attributes(
        &self,
        event: &Event<'_>,
        _ctx: &Context<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let name = username(event);
        let name = name.trim();
        if name.is_empty() {
            return Ok(None);
        }
        let mut attrs = Map::new();
        attrs.insert(FINGERPRINT_KEY.into(), Value::String(fingerprint(name)));
        Ok(Some(attrs))
    }

    fn evaluate(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_>,
    ) -> Result<Option<PluginMatch>, RuleError> {
        if event.srcip().trim().is_empty() {
            return Ok(None);
        }
        let current = username(event);
        let current = current.trim();
        if current.is_empty() {
            return Ok(None);
        }
        // The current event is appended to history after the rules ran.
        let mut seen = BTreeSet::new();
        seen.insert(fingerprint(current));
        let rows = ctx.history.events("ip", &HistoryQuery::default())?;
        for row in rows.iter() {
            if let Some(Value::String(fp)) = row.field(&self.row_key) {
                seen.insert(fp);
            }
        }
        if seen.len() < self.distinct_usernames {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("distinct_usernames".into(), Value::from(seen.len()));
        meta.insert("failures_seen".into(), Value::from(rows.len() + 1));
        meta.insert(
            "window_seconds".into(),
            Value::from(self.history.window_seconds),
        );
        Ok(Some(
            PluginMatch::new(self, self.message.clone())
                .with_decision(self.decision)
                .with_tags(self.tags.iter().cloned())
                .with_metadata(meta),
        ))
    }
}

fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
    Ok(vec![Box::new(CredentialStuffing::from_config(config)?)])
}

export_rules!(make_rules);

#[cfg(test)]
mod tests {
    use super::fingerprint;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        // FNV-1a 64 reference value for "a".
        assert_eq!(fingerprint("a"), "af63dc4c8601ec8c");
        assert_ne!(fingerprint("alice"), fingerprint("bob"));
        assert_eq!(fingerprint("alice"), fingerprint("alice"));
    }
}
