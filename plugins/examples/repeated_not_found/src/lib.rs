//! `repeated_not_found` — an example sec-audit plugin rule (counter-based).
//!
//! One source IP producing many 404 responses within a window is probing
//! for paths that do not exist (a scanner, a forced-browsing tool). The rule
//! counts `http.response.client_error` events with status 404 per source IP
//! in a fixed window and matches at `threshold` or more.
//!
//! Configuration (`[rules.config]`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `threshold` | 10 | 404s from one IP within the window that make a match |
//! | `window_seconds` | 60 | the counting window, seconds or `"15m"` (fixed: later hits do not extend it) |
//! | `severity` | 5 | 1–10 |
//! | `message` | "Repeated 404 responses from one source IP" | |
//! | `tags` | `["http", "scan"]` | |
//! | `decision` | none | a suggestion only; `rule_actions` decides |

use sec_audit_plugin_sdk::params::{Count, OptionalDecision, Seconds, Severity, StringList};
use sec_audit_plugin_sdk::serde::Deserialize;
use sec_audit_plugin_sdk::serde_json::{Map, Value};
use sec_audit_plugin_sdk::{
    export_rules, ConfigError, Context, Decision, Event, PluginConfig, PluginMatch, PluginRule,
    RuleError,
};

/// The rule's name: what `rule_actions` and the emitted events key on.
pub const NAME: &str = "repeated_not_found";

pub struct RepeatedNotFound {
    threshold: i64,
    window_seconds: u64,
    severity: u8,
    message: String,
    tags: Vec<String>,
    decision: Option<Decision>,
    event_types: Vec<String>,
}

/// `[rules.config]`, as the table above describes it.
#[derive(Deserialize)]
#[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields, default)]
struct Params {
    threshold: Count<1>,
    window_seconds: Seconds,
    severity: Severity,
    message: String,
    tags: StringList,
    decision: OptionalDecision,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            threshold: Count(10),
            window_seconds: Seconds(60),
            severity: Severity(5),
            message: "Repeated 404 responses from one source IP".into(),
            tags: StringList::of(&["http", "scan"]),
            decision: OptionalDecision(None),
        }
    }
}

impl RepeatedNotFound {
    pub fn from_config(config: &PluginConfig) -> Result<Self, ConfigError> {
        let p: Params = config.deserialize(NAME)?;
        Ok(RepeatedNotFound {
            threshold: p.threshold.as_i64(),
            window_seconds: p.window_seconds.0,
            severity: p.severity.0,
            message: p.message,
            tags: p.tags.0,
            decision: p.decision.0,
            event_types: vec!["http.response.client_error".to_string()],
        })
    }
}

impl PluginRule for RepeatedNotFound {
    fn name(&self) -> &str {
        NAME
    }
    fn severity(&self) -> u8 {
        self.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }

    fn evaluate(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_>,
    ) -> Result<Option<PluginMatch>, RuleError> {
        if event.status_code() != 404 {
            return Ok(None);
        }
        let ip = event.srcip();
        let ip = ip.trim();
        if ip.is_empty() {
            return Ok(None);
        }
        let mut key = String::with_capacity(NAME.len() + 1 + ip.len());
        key.push_str(NAME);
        key.push(':');
        key.push_str(ip);
        let count = ctx.counters.incr(&key, 1, Some(self.window_seconds));
        if count < self.threshold {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("not_found_count".into(), Value::from(count));
        meta.insert("window_seconds".into(), Value::from(self.window_seconds));
        let path = event.path();
        if !path.is_empty() {
            meta.insert("last_path".into(), Value::String(path.into_owned()));
        }
        Ok(Some(
            PluginMatch::new(self, self.message.clone())
                .with_decision(self.decision)
                .with_tags(self.tags.iter().cloned())
                .with_metadata(meta),
        ))
    }
}

fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
    Ok(vec![Box::new(RepeatedNotFound::from_config(config)?)])
}

export_rules!(make_rules);

/// Unit tests through the SDK's test host: no `.so`, no sec-audit host.
#[cfg(test)]
mod tests {
    use sec_audit_plugin_sdk::serde_json::json;
    use sec_audit_plugin_sdk::testing::TestHost;

    use super::make_rules;

    fn not_found(ip: &str, path: &str) -> sec_audit_plugin_sdk::serde_json::Value {
        json!({"event_type": "http.response.client_error", "source.address": ip,
               "http.response.status_code": 404, "url.path": path})
    }

    #[test]
    fn matches_from_the_threshold_on_within_the_window() {
        let mut host =
            TestHost::from_factory(make_rules, json!({"threshold": 3, "window_seconds": 60}))
                .unwrap();
        for i in 0..2 {
            assert!(host
                .evaluate(&not_found("203.0.113.7", &format!("/p{i}")))
                .unwrap()
                .is_empty());
            host.advance(1.0);
        }
        let m = host.evaluate(&not_found("203.0.113.7", "/p2")).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].metadata["not_found_count"], json!(3));
        assert_eq!(m[0].metadata["last_path"], json!("/p2"));
        // Another address has its own counter; a 403 is not a 404.
        assert!(host
            .evaluate(&not_found("203.0.113.8", "/p"))
            .unwrap()
            .is_empty());
        let forbidden = json!({"event_type": "http.response.client_error",
                               "source.address": "203.0.113.7", "http.response.status_code": 403});
        assert!(host.evaluate(&forbidden).unwrap().is_empty());
        assert_eq!(host.counter("repeated_not_found:203.0.113.7"), Some(3));
        // The window is fixed: it ends 60 s after the first 404.
        host.advance(58.0);
        assert_eq!(host.counter("repeated_not_found:203.0.113.7"), None);
        assert!(host
            .evaluate(&not_found("203.0.113.7", "/again"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_configuration_is_refused_naming_the_key() {
        let err = TestHost::from_factory(make_rules, json!({"threshold": 0})).unwrap_err();
        assert!(err.to_string().contains("threshold"), "{err}");
        let err = TestHost::from_factory(make_rules, json!({"treshold": 3})).unwrap_err();
        assert!(err.to_string().contains("treshold"), "{err}");
    }
}
