//! The end-of-run tally of enforcement events: blocks and alerts by rule and
//! scope, collected by an emitter subscriber.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sec_audit_enforce::events::keys;
use sec_audit_enforce::{EnforcementEvent, EventType};

use crate::util::{ellipsize, table};

/// Distinct values remembered per row; beyond it the count shows `N+`.
pub const DISTINCT_CAP: usize = 10_000;
/// Example values shown per row.
const EXAMPLES: usize = 3;

/// What happened, in the order the table lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Alert,
    /// A blocking match on a safelisted subject, alerted instead
    /// (`enforcement.safelisted`).
    Safelisted,
    TempBlock,
    PermanentBlock,
    /// A request denied at ingress by an active block (`blocked`).
    Denied,
    Revoked,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Alert => "alert",
            Outcome::Safelisted => "safelisted",
            Outcome::TempBlock => "temp block",
            Outcome::PermanentBlock => "permanent block",
            Outcome::Denied => "denied by block",
            Outcome::Revoked => "revoked",
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Row {
    pub count: u64,
    values: BTreeSet<String>,
    capped: bool,
    examples: Vec<String>,
}

impl Row {
    fn add(&mut self, value: &str) {
        self.count += 1;
        if value.is_empty() {
            return;
        }
        if !self.values.contains(value) {
            if self.values.len() < DISTINCT_CAP {
                self.values.insert(value.to_string());
            } else {
                self.capped = true;
            }
            if self.examples.len() < EXAMPLES {
                self.examples.push(value.to_string());
            }
        }
    }

    pub fn distinct(&self) -> String {
        if self.capped {
            format!("{}+", self.values.len())
        } else {
            self.values.len().to_string()
        }
    }
}

/// Counts by (rule, scope, outcome), plus evaluation failures.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub rows: BTreeMap<(String, String, Outcome), Row>,
    /// By `fail_mode` and `error.type`.
    pub failures: BTreeMap<(String, String), u64>,
    pub events: u64,
}

impl Tally {
    /// The event types a tally subscribes to.
    pub fn event_types() -> Vec<EventType> {
        EventType::ALL.to_vec()
    }

    pub fn record(&mut self, e: &EnforcementEvent) {
        self.events += 1;
        let s = |k: &str| e.get_str(k).unwrap_or("").to_string();
        let rule = s(keys::RULE_NAME);
        let (scope, value, outcome) = match e.event_type {
            EventType::Alert if e.get_bool(keys::SAFELISTED) == Some(true) => (
                s(keys::SCOPE_TYPE),
                s(keys::SCOPE_VALUE),
                Outcome::Safelisted,
            ),
            EventType::Alert => {
                // An alert carries the match's ip, session and user; the
                // table lists it under the first one present.
                let (scope, value) = [
                    ("ip", keys::SOURCE_ADDRESS),
                    ("user", keys::USER_ID),
                    ("session", keys::SESSION_ID),
                ]
                .iter()
                .find_map(|(scope, key)| {
                    e.get_str(key)
                        .filter(|v| !v.is_empty())
                        .map(|v| (scope.to_string(), v.to_string()))
                })
                .unwrap_or_else(|| ("-".into(), String::new()));
                (scope, value, Outcome::Alert)
            }
            EventType::BlockApplied => {
                let outcome = if e.get_str(keys::ACTION) == Some("permanent") {
                    Outcome::PermanentBlock
                } else {
                    Outcome::TempBlock
                };
                (s(keys::SCOPE_TYPE), s(keys::SCOPE_VALUE), outcome)
            }
            EventType::Blocked => (s(keys::SCOPE_TYPE), s(keys::SCOPE_VALUE), Outcome::Denied),
            EventType::BlockRevoked => {
                (s(keys::SCOPE_TYPE), s(keys::SCOPE_VALUE), Outcome::Revoked)
            }
            EventType::EvaluationFailed => {
                // A coalesced record stands for `failure_count` failures.
                let n = e.get_u64(keys::FAILURE_COUNT).unwrap_or(1);
                *self
                    .failures
                    .entry((s(keys::FAIL_MODE), s(keys::ERROR_TYPE)))
                    .or_default() += n;
                return;
            }
        };
        let rule = if rule.is_empty() { "-".into() } else { rule };
        self.rows
            .entry((rule, scope, outcome))
            .or_default()
            .add(&value);
    }

    #[cfg(test)]
    /// How many rows of `outcome` a rule has on `scope`.
    pub fn count(&self, rule: &str, scope: &str, outcome: Outcome) -> u64 {
        self.rows
            .get(&(rule.to_string(), scope.to_string(), outcome))
            .map_or(0, |r| r.count)
    }

    /// The table a person reads first.
    pub fn render(&self) -> String {
        if self.rows.is_empty() && self.failures.is_empty() {
            return "no blocks, alerts or denials\n".into();
        }
        let mut out = String::new();
        if !self.rows.is_empty() {
            let rows: Vec<Vec<String>> = self
                .rows
                .iter()
                .map(|((rule, scope, outcome), row)| {
                    let mut examples = row.examples.join(", ");
                    if row.values.len() > row.examples.len() || row.capped {
                        examples.push_str(", …");
                    }
                    vec![
                        rule.clone(),
                        scope.clone(),
                        outcome.label().to_string(),
                        row.count.to_string(),
                        row.distinct(),
                        ellipsize(&examples, 72),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["rule", "scope", "action", "events", "distinct", "examples"],
                &rows,
                &[3, 4],
            ));
        }
        if !self.failures.is_empty() {
            out.push('\n');
            for ((mode, kind), n) in &self.failures {
                let _ = writeln!(out, "evaluation failures: {n} (fail_mode {mode}, {kind})");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(rule: &str, scope: &str, value: &str, action: &str) -> EnforcementEvent {
        EnforcementEvent::new(EventType::BlockApplied, 0)
            .attr("security_rule.name", rule)
            .attr("scope.type", scope)
            .attr("scope.value", value)
            .attr("enforcement.action", action)
    }

    #[test]
    fn tallies_by_rule_scope_and_outcome() {
        let mut t = Tally::default();
        t.record(&applied("brute_force_login", "ip", "203.0.113.1", "temp"));
        t.record(&applied("brute_force_login", "ip", "203.0.113.1", "temp"));
        t.record(&applied("brute_force_login", "ip", "203.0.113.2", "temp"));
        t.record(&applied("sensitive_field_change", "user", "7", "permanent"));
        t.record(
            &EnforcementEvent::new(EventType::Alert, 0)
                .attr("security_rule.name", "resource_enumeration")
                .attr("source.address", "203.0.113.9")
                .attr("user.id", "7"),
        );
        t.record(
            &EnforcementEvent::new(EventType::Blocked, 0)
                .attr("security_rule.name", "brute_force_login")
                .attr("scope.type", "ip")
                .attr("scope.value", "203.0.113.1"),
        );
        t.record(
            &EnforcementEvent::new(EventType::EvaluationFailed, 0)
                .attr("enforcement.fail_mode", "open")
                .attr("error.type", "redis_error"),
        );
        t.record(
            &EnforcementEvent::new(EventType::EvaluationFailed, 0)
                .attr("enforcement.fail_mode", "open")
                .attr("error.type", "redis_error")
                .attr(sec_audit_enforce::FAILURE_COUNT_ATTR, 41),
        );
        assert_eq!(t.count("brute_force_login", "ip", Outcome::TempBlock), 3);
        assert_eq!(
            t.count("sensitive_field_change", "user", Outcome::PermanentBlock),
            1
        );
        assert_eq!(t.count("resource_enumeration", "ip", Outcome::Alert), 1);
        assert_eq!(t.count("brute_force_login", "ip", Outcome::Denied), 1);
        // A safelisted alert is listed under its target, as safelisted.
        t.record(
            &EnforcementEvent::new(EventType::Alert, 0)
                .attr("security_rule.name", "repeated_client_error")
                .attr("source.address", "192.0.2.214")
                .attr("user.id", "7")
                .attr("scope.type", "ip")
                .attr("scope.value", "192.0.2.214")
                .attr("enforcement.safelisted", true),
        );
        assert_eq!(
            t.count("repeated_client_error", "ip", Outcome::Safelisted),
            1
        );
        assert_eq!(t.count("repeated_client_error", "ip", Outcome::Alert), 0);
        let text = t.render();
        assert!(text.contains("safelisted"), "{text}");
        assert!(text.starts_with("rule "), "{text}");
        assert!(text.contains("brute_force_login"), "{text}");
        assert!(text.contains("203.0.113.1, 203.0.113.2"), "{text}");
        assert!(text.contains("evaluation failures: 42 (fail_mode open, redis_error)"));
        let row = &t.rows[&("brute_force_login".into(), "ip".into(), Outcome::TempBlock)];
        assert_eq!(row.distinct(), "2");
    }

    #[test]
    fn distinct_values_are_capped() {
        let mut r = Row::default();
        for i in 0..DISTINCT_CAP + 5 {
            r.add(&i.to_string());
        }
        assert_eq!(r.distinct(), format!("{DISTINCT_CAP}+"));
        assert_eq!(r.examples.len(), EXAMPLES);
    }
}
