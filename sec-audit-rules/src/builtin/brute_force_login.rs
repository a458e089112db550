//! `brute_force_login`: repeated login failures from one source IP.

use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{login_failure_key, Common, FromParams};
use crate::config::{ConfigError, Decision, Number, Seconds, Severity, StringList};
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct BruteForceLogin {
    common: Common,
    threshold: f64,
    window_seconds: u64,
    event_types: Vec<String>,
}

/// `brute_force_login`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BruteForceLoginParams {
    pub threshold: Number,
    pub window_seconds: Seconds,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
    pub decision: Decision,
}

impl Default for BruteForceLoginParams {
    fn default() -> Self {
        BruteForceLoginParams {
            threshold: Number(5.0),
            window_seconds: Seconds(300),
            severity: Severity(8),
            message: "Repeated login failures detected".into(),
            tags: StringList::of(&["auth", "bruteforce"]),
            decision: Decision(None),
        }
    }
}

impl FromParams for BruteForceLogin {
    type Params = BruteForceLoginParams;
    fn from_params(name: &str, p: BruteForceLoginParams) -> Result<Self, ConfigError> {
        Ok(BruteForceLogin {
            common: Common::new(name, p.severity, p.message, p.tags, p.decision),
            threshold: p.threshold.0,
            window_seconds: p.window_seconds.0,
            event_types: vec!["auth.login.failed".into(), "auth.login.success".into()],
        })
    }
}

impl Rule for BruteForceLogin {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn severity(&self) -> u8 {
        self.common.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }

    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        let ip = event.srcip();
        let ip = ip.trim();
        if ip.is_empty() {
            return Ok(None);
        }
        let key = login_failure_key(ip);
        if event.event_type() == "auth.login.success" {
            ctx.counters.delete(&key);
            return Ok(None);
        }
        let count = ctx.counters.incr(&key, 1, Some(self.window_seconds));
        if (count as f64) < self.threshold {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("failure_count".into(), Value::from(count));
        let username = event.text("user.name");
        let username = if username.is_empty() {
            event.text("username")
        } else {
            username
        };
        if !username.is_empty() {
            meta.insert("username".into(), Value::String(username.into_owned()));
        }
        Ok(Some(self.common.matched(self, event, ctx.now, meta)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use serde_json::json;

    #[test]
    fn matches_at_threshold_and_success_resets() {
        let kit = Kit::new(&[json!({"builtin": "brute_force_login"})]);
        let fail = json!({"event_type": "auth.login.failed", "source.address": "203.0.113.9", "user.name": "alice"});
        for i in 1..=4 {
            assert!(kit.eval(&fail).is_empty(), "failure {i} must not match");
        }
        let m = kit.eval(&fail);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].metadata["failure_count"], json!(5));
        assert_eq!(m[0].metadata["username"], json!("alice"));
        assert_eq!(
            m[0].tags,
            vec!["auth".to_string(), "bruteforce".to_string()]
        );
        assert_eq!(m[0].message, "Repeated login failures detected");
        assert_eq!(kit.eval(&fail).len(), 1, "6th failure still matches");
        assert!(kit
            .eval(&json!({"event_type": "auth.login.success", "source.address": "203.0.113.9"}))
            .is_empty());
        assert!(
            kit.eval(&fail).is_empty(),
            "counter was reset by the success"
        );
    }

    #[test]
    fn window_expiry_starts_a_new_window() {
        let kit = Kit::new(&[
            json!({"builtin": "brute_force_login", "threshold": 3, "window_seconds": 60}),
        ]);
        let fail = json!({"event_type": "auth.login.failed", "srcip": "203.0.113.9"});
        kit.eval(&fail);
        kit.eval(&fail);
        kit.clock.advance_secs(60.0);
        assert!(kit.eval(&fail).is_empty(), "old failures expired at t + w");
        kit.eval(&fail);
        assert_eq!(kit.eval(&fail).len(), 1);
    }

    #[test]
    fn needs_a_source_ip_and_counts_per_ip() {
        let kit = Kit::new(&[json!({"builtin": "brute_force_login", "threshold": "2"})]);
        assert!(kit
            .eval(&json!({"event_type": "auth.login.failed"}))
            .is_empty());
        assert!(kit
            .eval(&json!({"event_type": "auth.login.failed"}))
            .is_empty());
        kit.eval(&json!({"event_type": "auth.login.failed", "srcip": "1.1.1.1"}));
        assert!(kit
            .eval(&json!({"event_type": "auth.login.failed", "srcip": "2.2.2.2"}))
            .is_empty());
        assert_eq!(
            kit.eval(&json!({"event_type": "auth.login.failed", "srcip": "1.1.1.1"}))
                .len(),
            1
        );
    }
}
