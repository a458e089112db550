//! `repeated_client_error`: many 4xx responses to one source IP within a
//! window (scanning, guessing).

use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{Common, FromParams};
use crate::config::{ConfigError, Decision, Number, Seconds, Severity, StringList};
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct RepeatedClientError {
    common: Common,
    threshold: f64,
    window_seconds: u64,
    event_types: Vec<String>,
}

/// The counter key of one source IP's client errors.
fn client_error_key(ip: &str) -> String {
    format!("client_errors:{}", super::ip_key(ip))
}

/// `repeated_client_error`'s parameters (it suggests no decision).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatedClientErrorParams {
    pub threshold: Number,
    pub window_seconds: Seconds,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
}

impl Default for RepeatedClientErrorParams {
    fn default() -> Self {
        RepeatedClientErrorParams {
            threshold: Number(20.0),
            window_seconds: Seconds(300),
            severity: Severity(6),
            message: "Repeated HTTP client errors from source IP".into(),
            tags: StringList::of(&["http", "scan"]),
        }
    }
}

impl FromParams for RepeatedClientError {
    type Params = RepeatedClientErrorParams;
    fn from_params(name: &str, p: RepeatedClientErrorParams) -> Result<Self, ConfigError> {
        Ok(RepeatedClientError {
            common: Common::new(name, p.severity, p.message, p.tags, Decision(None)),
            threshold: p.threshold.0,
            window_seconds: p.window_seconds.0,
            event_types: vec!["http.response.client_error".into()],
        })
    }
}

impl Rule for RepeatedClientError {
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
        let count = ctx
            .counters
            .incr(&client_error_key(ip), 1, Some(self.window_seconds));
        if (count as f64) < self.threshold {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("error_count".into(), Value::from(count));
        Ok(Some(self.common.matched(self, event, ctx.now, meta)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use serde_json::{json, Value};

    fn err(ip: &str) -> Value {
        json!({"event_type": "http.response.client_error", "source.address": ip,
               "http.response.status_code": 404, "url.path": "/x"})
    }

    #[test]
    fn matches_at_threshold_and_above() {
        let kit = Kit::new(&[json!({"builtin": "repeated_client_error"})]);
        for i in 1..=19 {
            assert!(
                kit.eval(&err("203.0.113.9")).is_empty(),
                "error {i} is below the threshold"
            );
        }
        let m = kit.eval(&err("203.0.113.9"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].rule_name, "repeated_client_error");
        assert_eq!(m[0].severity, 6);
        assert_eq!(m[0].metadata["error_count"], json!(20));
        assert_eq!(m[0].tags, vec!["http".to_string(), "scan".to_string()]);
        assert_eq!(m[0].message, "Repeated HTTP client errors from source IP");
        assert_eq!(m[0].decision, None);
        assert_eq!(m[0].srcip, "203.0.113.9");
        let m = kit.eval(&err("203.0.113.9"));
        assert_eq!(
            m[0].metadata["error_count"],
            json!(21),
            "every further error matches again"
        );
    }

    #[test]
    fn counts_per_ip_and_only_client_errors() {
        let kit = Kit::new(&[json!({"builtin": "repeated_client_error", "threshold": 3})]);
        kit.eval(&err("1.1.1.1"));
        kit.eval(&err("1.1.1.1"));
        assert!(kit.eval(&err("2.2.2.2")).is_empty());
        let ok = json!({"event_type": "http.response.success", "srcip": "1.1.1.1"});
        let server = json!({"event_type": "http.response.server_error", "srcip": "1.1.1.1"});
        assert!(kit.eval(&ok).is_empty());
        assert!(kit.eval(&server).is_empty());
        assert_eq!(kit.eval(&err("1.1.1.1")).len(), 1);
        let no_ip = json!({"event_type": "http.response.client_error"});
        for _ in 0..5 {
            assert!(kit.eval(&no_ip).is_empty(), "needs a source IP");
        }
    }

    #[test]
    fn window_expiry_starts_over() {
        let kit = Kit::new(&[
            json!({"builtin": "repeated_client_error", "threshold": 2.0, "window_seconds": 60}),
        ]);
        kit.eval(&err("1.1.1.1"));
        kit.clock.advance_secs(59.0);
        assert_eq!(kit.eval(&err("1.1.1.1")).len(), 1, "inside the window");
        kit.clock.advance_secs(1.0);
        assert!(
            kit.eval(&err("1.1.1.1")).is_empty(),
            "window over at t + 60: a new count of 1"
        );
        assert_eq!(kit.eval(&err("1.1.1.1")).len(), 1);
    }
}
