//! Action resolution: pure policy turning a match into an action
//! (`docs/configuration.md`, `rule_actions`). Applying the action is the enforcer's job.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::config;
use crate::rule::Match;

/// An action name as configured or suggested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    Observe,
    Alert,
    TempBlock,
    PersistBlock,
    /// Permanent when `block_severity` is set and the match's severity is at
    /// or above it, otherwise temporary.
    Block,
}

impl ActionKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "observe" => ActionKind::Observe,
            "alert" => ActionKind::Alert,
            "temp_block" => ActionKind::TempBlock,
            "persist_block" => ActionKind::PersistBlock,
            "block" => ActionKind::Block,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Observe => "observe",
            ActionKind::Alert => "alert",
            ActionKind::TempBlock => "temp_block",
            ActionKind::PersistBlock => "persist_block",
            ActionKind::Block => "block",
        }
    }
}

/// A `rule_actions` entry: every field optional so that a user's table can
/// be merged over a built-in default. In a configuration file it is an
/// action name (`"alert"`) or a table of these keys; unknown keys are
/// errors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionSpec {
    pub action: Option<ActionKind>,
    pub scopes: Option<Vec<String>>,
    /// Seconds (`900` or `"15m"` in a file).
    pub ttl: Option<u64>,
    pub status_code: Option<u16>,
    pub message: Option<String>,
    /// Block the whole IPv4 network of this prefix length (0–32) instead of
    /// the address.
    pub range_prefix_v4: Option<u8>,
    /// Block the whole IPv6 network of this prefix length (0–128).
    pub range_prefix_v6: Option<u8>,
}

/// The table form of an `rule_actions` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionTable {
    action: Option<ActionKind>,
    #[serde(default, deserialize_with = "scopes")]
    scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "config::optional_seconds")]
    ttl: Option<u64>,
    #[serde(
        default,
        deserialize_with = "config::optional_int_in::<_, u16, 100, 599>"
    )]
    status_code: Option<u16>,
    message: Option<String>,
    #[serde(default, deserialize_with = "config::optional_int_in::<_, u8, 0, 32>")]
    range_prefix_v4: Option<u8>,
    #[serde(default, deserialize_with = "config::optional_int_in::<_, u8, 0, 128>")]
    range_prefix_v6: Option<u8>,
}

fn scopes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let scopes = Vec::<String>::deserialize(d)?;
    if scopes.is_empty() {
        return Err(de::Error::custom("must name at least one scope"));
    }
    Ok(Some(scopes))
}

impl<'de> Deserialize<'de> for ActionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ActionSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an action name or a table")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ActionSpec, E> {
                ActionKind::deserialize(de::value::StrDeserializer::new(s)).map(ActionSpec::action)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<ActionSpec, A::Error> {
                let t = ActionTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ActionSpec {
                    action: t.action,
                    scopes: t.scopes,
                    ttl: t.ttl,
                    status_code: t.status_code,
                    message: t.message,
                    range_prefix_v4: t.range_prefix_v4,
                    range_prefix_v6: t.range_prefix_v6,
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl ActionSpec {
    /// The keys a `rule_actions.<rule>` table accepts.
    pub fn table_keys() -> &'static [&'static str] {
        crate::config::struct_fields::<ActionTable>()
    }

    pub fn action(kind: ActionKind) -> Self {
        ActionSpec {
            action: Some(kind),
            ..Default::default()
        }
    }
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }
    /// `over` merged over `self`: every field `over` sets wins.
    pub fn merged(&self, over: &ActionSpec) -> ActionSpec {
        ActionSpec {
            action: over.action.or(self.action),
            scopes: over.scopes.clone().or_else(|| self.scopes.clone()),
            ttl: over.ttl.or(self.ttl),
            status_code: over.status_code.or(self.status_code),
            message: over.message.clone().or_else(|| self.message.clone()),
            range_prefix_v4: over.range_prefix_v4.or(self.range_prefix_v4),
            range_prefix_v6: over.range_prefix_v6.or(self.range_prefix_v6),
        }
    }
}

/// The built-in default action of a built-in rule name, if it has one (the
/// registry's, [`crate::builtin::BUILTINS`]).
pub fn builtin_default(rule_name: &str) -> Option<ActionSpec> {
    crate::builtin::find(rule_name).and_then(|b| b.default_action())
}

/// What an action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Observe,
    Alert,
    TempBlock,
    PermanentBlock,
}

impl Effect {
    pub fn is_block(self) -> bool {
        matches!(self, Effect::TempBlock | Effect::PermanentBlock)
    }
}

/// Which resolution step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedBy {
    RuleActions,
    BlockRules,
    Decision,
    Default,
}

/// The action a match resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedAction {
    pub effect: Effect,
    /// The scopes a block may key on (unused for observe and alert).
    pub scopes: Vec<String>,
    /// Seconds, for temporary blocks only.
    pub ttl: Option<u64>,
    pub status_code: Option<u16>,
    pub message: Option<String>,
    pub resolved_by: ResolvedBy,
    /// From `rule_actions`: an ip block blocks the offending address's
    /// covering range of this prefix length instead (IPv4 / IPv6). A
    /// length of 32 / 128 is the address itself.
    pub range_prefix_v4: Option<u8>,
    pub range_prefix_v6: Option<u8>,
}

/// The scopes a permanent block takes when the operator named none.
pub const PERMANENT_DEFAULT_SCOPES: [&str; 2] = ["user", "session"];

/// The resolution policy: `rule_actions`, `block_rules`, `block_severity`,
/// `default_temp_ttl`, plus which rules are built-ins (whose defaults apply)
/// and which are plugins (whose own decision is ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionPolicy {
    pub rule_actions: BTreeMap<String, ActionSpec>,
    pub block_rules: BTreeMap<String, u64>,
    pub block_severity: Option<u8>,
    pub default_temp_ttl: u64,
    /// Registered rules that are built-ins: only these get built-in defaults.
    pub builtin_rules: BTreeSet<String>,
    /// Registered plugin rules: their suggested decision is ignored.
    pub plugin_rules: BTreeSet<String>,
}

impl Default for ActionPolicy {
    fn default() -> Self {
        ActionPolicy {
            rule_actions: BTreeMap::new(),
            block_rules: BTreeMap::new(),
            block_severity: None,
            default_temp_ttl: 300,
            builtin_rules: BTreeSet::new(),
            plugin_rules: BTreeSet::new(),
        }
    }
}

impl ActionPolicy {
    /// The effective `rule_actions` entry of a rule: the user's table merged
    /// over the built-in default (when the rule is a registered built-in).
    pub fn entry(&self, rule_name: &str) -> Option<(ActionSpec, bool)> {
        let default = if self.builtin_rules.contains(rule_name) {
            builtin_default(rule_name)
        } else {
            None
        };
        match (default, self.rule_actions.get(rule_name)) {
            (None, None) => None,
            (Some(d), None) => Some((d, false)),
            (None, Some(u)) => Some((u.clone(), u.scopes.is_some())),
            (Some(d), Some(u)) => Some((d.merged(u), u.scopes.is_some())),
        }
    }

    /// Resolves a match (first step that applies wins).
    pub fn resolve(&self, m: &Match) -> ResolvedAction {
        if let Some((spec, scopes_explicit)) = self.entry(&m.rule_name) {
            if let Some(kind) = spec.action {
                let mut action = self.finish(
                    m,
                    kind,
                    spec.scopes,
                    scopes_explicit,
                    spec.ttl,
                    spec.status_code,
                    spec.message,
                    ResolvedBy::RuleActions,
                );
                action.range_prefix_v4 = spec.range_prefix_v4;
                action.range_prefix_v6 = spec.range_prefix_v6;
                return action;
            }
        }
        if let Some(ttl) = self.block_rules.get(&m.rule_name) {
            return self.finish(
                m,
                ActionKind::TempBlock,
                None,
                false,
                Some(*ttl),
                None,
                None,
                ResolvedBy::BlockRules,
            );
        }
        if !self.plugin_rules.contains(&m.rule_name) {
            if let Some(kind) = m.decision {
                return self.finish(m, kind, None, false, None, None, None, ResolvedBy::Decision);
            }
        }
        self.finish(
            m,
            ActionKind::Observe,
            None,
            false,
            None,
            None,
            None,
            ResolvedBy::Default,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        m: &Match,
        kind: ActionKind,
        scopes: Option<Vec<String>>,
        scopes_explicit: bool,
        action_ttl: Option<u64>,
        status_code: Option<u16>,
        message: Option<String>,
        resolved_by: ResolvedBy,
    ) -> ResolvedAction {
        let effect = match kind {
            ActionKind::Observe => Effect::Observe,
            ActionKind::Alert => Effect::Alert,
            ActionKind::TempBlock => Effect::TempBlock,
            ActionKind::PersistBlock => Effect::PermanentBlock,
            ActionKind::Block => match self.block_severity {
                Some(gate) if m.severity >= gate => Effect::PermanentBlock,
                _ => Effect::TempBlock,
            },
        };
        let mut scopes = scopes.unwrap_or_else(|| vec!["ip".to_string()]);
        if effect == Effect::PermanentBlock && !scopes_explicit && scopes.iter().any(|s| s == "ip")
        {
            // A permanent ban on an IP locks out everyone behind a shared NAT:
            // never a default, only an explicit operator choice.
            tracing::warn!(
                rule = %m.rule_name,
                "permanent block without configured scopes: using user and session, never ip"
            );
            scopes = PERMANENT_DEFAULT_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
        let ttl = match effect {
            Effect::TempBlock => Some(
                action_ttl
                    .or_else(|| self.block_rules.get(&m.rule_name).copied())
                    .or_else(|| metadata_ttl(m))
                    .unwrap_or(self.default_temp_ttl),
            ),
            _ => None,
        };
        ResolvedAction {
            effect,
            scopes,
            ttl,
            status_code,
            message,
            resolved_by,
            range_prefix_v4: None,
            range_prefix_v6: None,
        }
    }
}

/// A positive `block_ttl` or `ttl` number in the match metadata.
fn metadata_ttl(m: &Match) -> Option<u64> {
    ["block_ttl", "ttl"].iter().find_map(|k| {
        let n = match m.metadata.get(*k)? {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        (n.is_finite() && n > 0.0).then(|| n.ceil() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};
    use std::sync::Arc;

    fn m(rule: &str, severity: u8, decision: Option<ActionKind>, metadata: Value) -> Match {
        Match {
            rule_name: rule.into(),
            severity,
            matched_at: 0.0,
            message: "msg".into(),
            event_type: "e".into(),
            request_id: String::new(),
            session_id: String::new(),
            srcip: String::new(),
            user_id: String::new(),
            decision,
            subject: None,
            tags: vec![],
            metadata: Arc::new(metadata.as_object().cloned().unwrap_or_else(Map::new)),
        }
    }

    fn policy_with_builtins() -> ActionPolicy {
        ActionPolicy {
            builtin_rules: [
                "brute_force_login",
                "sensitive_field_change",
                "resource_enumeration",
                "login_throttle",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn builtin_defaults_apply_only_to_registered_builtins() {
        let p = policy_with_builtins();
        let a = p.resolve(&m("brute_force_login", 8, None, json!({})));
        assert_eq!(
            (a.effect, a.scopes.clone(), a.ttl),
            (Effect::TempBlock, vec!["ip".to_string()], Some(300))
        );
        let a = p.resolve(&m("sensitive_field_change", 7, None, json!({})));
        assert_eq!(
            (a.effect, a.scopes),
            (
                Effect::PermanentBlock,
                vec!["user".to_string(), "session".to_string()]
            )
        );
        assert_eq!(
            p.resolve(&m("resource_enumeration", 7, None, json!({})))
                .effect,
            Effect::Observe
        );
        // Not registered as a built-in: no default.
        let empty = ActionPolicy::default();
        assert_eq!(
            empty
                .resolve(&m("brute_force_login", 8, None, json!({})))
                .effect,
            Effect::Observe
        );
    }

    #[test]
    fn user_table_merges_over_the_default() {
        let mut p = policy_with_builtins();
        p.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec {
                ttl: Some(60),
                status_code: Some(403),
                ..Default::default()
            },
        );
        let a = p.resolve(&m("brute_force_login", 8, None, json!({})));
        assert_eq!(
            (a.effect, a.ttl, a.status_code),
            (Effect::TempBlock, Some(60), Some(403))
        );
        assert_eq!(a.scopes, vec!["ip".to_string()]);
        p.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec::action(ActionKind::Alert),
        );
        assert_eq!(
            p.resolve(&m("brute_force_login", 8, None, json!({})))
                .effect,
            Effect::Alert
        );
    }

    #[test]
    fn block_rules_ttl_is_honoured_for_builtins_unlike_the_python_original() {
        let mut p = policy_with_builtins();
        p.block_rules.insert("brute_force_login".into(), 42);
        assert_eq!(
            p.resolve(&m("brute_force_login", 8, None, json!({}))).ttl,
            Some(42)
        );
        // The action's own ttl beats block_rules.
        p.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec {
                ttl: Some(7),
                ..Default::default()
            },
        );
        assert_eq!(
            p.resolve(&m("brute_force_login", 8, None, json!({}))).ttl,
            Some(7)
        );
    }

    #[test]
    fn ttl_precedence_metadata_then_default() {
        let mut p = ActionPolicy {
            default_temp_ttl: 99,
            ..Default::default()
        };
        let a = p.resolve(&m(
            "custom",
            5,
            Some(ActionKind::TempBlock),
            json!({"block_ttl": 30}),
        ));
        assert_eq!(a.ttl, Some(30));
        let a = p.resolve(&m(
            "custom",
            5,
            Some(ActionKind::TempBlock),
            json!({"ttl": "12"}),
        ));
        assert_eq!(a.ttl, Some(12));
        let a = p.resolve(&m(
            "custom",
            5,
            Some(ActionKind::TempBlock),
            json!({"ttl": -5}),
        ));
        assert_eq!(a.ttl, Some(99));
        p.block_rules.insert("custom".into(), 20);
        let a = p.resolve(&m(
            "custom",
            5,
            Some(ActionKind::PersistBlock),
            json!({"block_ttl": 30}),
        ));
        assert_eq!(
            (a.effect, a.ttl, a.resolved_by),
            (Effect::TempBlock, Some(20), ResolvedBy::BlockRules)
        );
    }

    #[test]
    fn decision_persist_block_never_defaults_to_ip() {
        let p = ActionPolicy::default();
        let a = p.resolve(&m("custom", 5, Some(ActionKind::PersistBlock), json!({})));
        assert_eq!(a.effect, Effect::PermanentBlock);
        assert_eq!(a.scopes, vec!["user".to_string(), "session".to_string()]);
        assert_eq!(a.ttl, None);
    }

    #[test]
    fn block_severity_gate() {
        let mut p = ActionPolicy::default();
        assert_eq!(
            p.resolve(&m("c", 9, Some(ActionKind::Block), json!({})))
                .effect,
            Effect::TempBlock
        );
        p.block_severity = Some(8);
        let a = p.resolve(&m("c", 8, Some(ActionKind::Block), json!({})));
        assert_eq!(a.effect, Effect::PermanentBlock);
        assert!(!a.scopes.contains(&"ip".to_string()));
        assert_eq!(
            p.resolve(&m("c", 7, Some(ActionKind::Block), json!({})))
                .effect,
            Effect::TempBlock
        );
        // A string override merged over an ip default does not make a permanent ip ban.
        let mut p = policy_with_builtins();
        p.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec::action(ActionKind::PersistBlock),
        );
        assert_eq!(
            p.resolve(&m("brute_force_login", 8, None, json!({})))
                .scopes,
            vec!["user".to_string(), "session".to_string()]
        );
        // An explicit operator choice may.
        p.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec::action(ActionKind::PersistBlock).with_scopes(["ip"]),
        );
        assert_eq!(
            p.resolve(&m("brute_force_login", 8, None, json!({})))
                .scopes,
            vec!["ip".to_string()]
        );
    }

    #[test]
    fn plugin_decisions_are_ignored_until_mapped() {
        let mut p = ActionPolicy::default();
        p.plugin_rules.insert("plug".into());
        assert_eq!(
            p.resolve(&m("plug", 9, Some(ActionKind::TempBlock), json!({})))
                .effect,
            Effect::Observe
        );
        p.rule_actions
            .insert("plug".into(), ActionSpec::action(ActionKind::TempBlock));
        assert_eq!(
            p.resolve(&m("plug", 9, None, json!({}))).effect,
            Effect::TempBlock
        );
        // A plugin claiming a built-in name gets no built-in default.
        p.plugin_rules.insert("brute_force_login".into());
        assert_eq!(
            p.resolve(&m("brute_force_login", 8, None, json!({})))
                .effect,
            Effect::Observe
        );
    }

    #[test]
    fn unknown_and_observe_default() {
        let p = ActionPolicy::default();
        let a = p.resolve(&m("x", 3, None, json!({})));
        assert_eq!(
            (a.effect, a.resolved_by),
            (Effect::Observe, ResolvedBy::Default)
        );
        assert_eq!(ActionKind::parse("temp_block"), Some(ActionKind::TempBlock));
        assert_eq!(ActionKind::parse("ban"), None);
        assert_eq!(
            p.resolve(&m("x", 3, Some(ActionKind::Alert), json!({})))
                .effect,
            Effect::Alert
        );
    }

    #[test]
    fn range_prefixes_come_from_rule_actions_merged_over_the_default() {
        let mut p = policy_with_builtins();
        p.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec {
                range_prefix_v4: Some(24),
                ..Default::default()
            },
        );
        let a = p.resolve(&m("brute_force_login", 8, None, json!({})));
        assert_eq!(a.effect, Effect::TempBlock);
        assert_eq!((a.range_prefix_v4, a.range_prefix_v6), (Some(24), None));
        p.block_rules.insert("other".into(), 10);
        let b = p.resolve(&m("other", 8, None, json!({})));
        assert_eq!((b.range_prefix_v4, b.range_prefix_v6), (None, None));
    }
}
