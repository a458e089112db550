//! `login_throttle`: on the ingress pass, refuses login requests from a
//! source IP whose recent login failures (counted by `brute_force_login`
//! under the shared key [`super::login_failure_key`]) reached the threshold.

use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{login_failure_key, Common, FromParams, PathFilter};
use crate::config::{ConfigError, Decision, Number, Regexes, Severity, StringList};
use crate::engine::INGRESS_EVENT_TYPE;
use crate::policy::ActionKind;
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct LoginThrottle {
    common: Common,
    threshold: f64,
    paths: PathFilter,
    event_types: Vec<String>,
}

/// `login_throttle`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginThrottleParams {
    pub threshold: Number,
    /// Default `["/login"]`.
    pub paths: Option<Regexes>,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
    pub decision: Decision,
}

impl Default for LoginThrottleParams {
    fn default() -> Self {
        LoginThrottleParams {
            threshold: Number(5.0),
            paths: None,
            severity: Severity(8),
            message: "Login temporarily throttled after repeated failures".into(),
            tags: StringList::of(&["auth", "throttle"]),
            decision: Decision(Some(ActionKind::Block)),
        }
    }
}

impl FromParams for LoginThrottle {
    type Params = LoginThrottleParams;
    fn from_params(name: &str, p: LoginThrottleParams) -> Result<Self, ConfigError> {
        let paths = match p.paths {
            Some(paths) => paths,
            None => Regexes::of(&["/login"])
                .map_err(|e| ConfigError::bad(name, "paths", e.to_string()))?,
        };
        Ok(LoginThrottle {
            common: Common::new(name, p.severity, p.message, p.tags, p.decision),
            threshold: p.threshold.0,
            paths: PathFilter::new(paths.0),
            event_types: vec![INGRESS_EVENT_TYPE.into()],
        })
    }
}

impl Rule for LoginThrottle {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn severity(&self) -> u8 {
        self.common.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }
    fn safe_for_enforcement(&self) -> bool {
        true
    }
    fn may_match_path(&self, path: &str) -> bool {
        self.paths.allows(path)
    }

    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        if !self.paths.allows(&event.path()) {
            return Ok(None);
        }
        let ip = event.srcip();
        // Same key text as `brute_force_login` (the trimmed source address).
        let ip = ip.trim();
        if ip.is_empty() {
            return Ok(None);
        }
        let count = ctx.counters.get_int(&login_failure_key(ip), 0);
        if (count as f64) < self.threshold {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("failure_count".into(), Value::from(count));
        Ok(Some(self.common.matched(self, event, ctx.now, meta)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::policy::ActionKind;
    use serde_json::{json, Value};

    const IP: &str = "203.0.113.9";

    fn kit(throttle: Value) -> Kit {
        Kit::new(&[json!({"builtin": "brute_force_login"}), throttle])
    }

    fn fail(kit: &Kit, ip: &str, n: usize) {
        for _ in 0..n {
            kit.eval(&json!({"event_type": "auth.login.failed", "source.address": ip}));
        }
    }

    fn pre(ip: &str, path: &str) -> Value {
        json!({"event_type": "audit.http.request.pre", "source.address": ip, "url.path": path})
    }

    fn throttled(m: &[crate::rule::Match]) -> Vec<&crate::rule::Match> {
        m.iter()
            .filter(|m| m.rule_name == "login_throttle")
            .collect()
    }

    #[test]
    fn fires_at_threshold_on_the_shared_brute_force_counter() {
        let kit = kit(json!({"builtin": "login_throttle"}));
        fail(&kit, IP, 4);
        assert!(
            kit.ingress(&pre(IP, "/login")).is_empty(),
            "4 failures: below threshold"
        );
        fail(&kit, IP, 1);
        let m = kit.ingress(&pre(IP, "/login"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].rule_name, "login_throttle");
        assert_eq!(m[0].severity, 8);
        assert_eq!(m[0].decision, Some(ActionKind::Block));
        assert_eq!(m[0].metadata["failure_count"], json!(5));
        assert_eq!(m[0].srcip, IP);
        assert_eq!(
            m[0].message,
            "Login temporarily throttled after repeated failures"
        );
        assert_eq!(m[0].tags, vec!["auth".to_string(), "throttle".to_string()]);
        fail(&kit, IP, 1);
        let m = kit.ingress(&pre(IP, "/accounts/login/"));
        assert_eq!(
            m.len(),
            1,
            "above threshold, regex search matches inside the path"
        );
        assert_eq!(m[0].metadata["failure_count"], json!(6));
    }

    #[test]
    fn only_login_paths_and_only_the_failing_ip() {
        let kit = kit(json!({"builtin": "login_throttle"}));
        fail(&kit, IP, 5);
        assert!(
            kit.ingress(&pre(IP, "/api/items")).is_empty(),
            "not a login path"
        );
        assert!(
            kit.ingress(&pre("198.51.100.1", "/login")).is_empty(),
            "another IP"
        );
        assert!(kit
            .ingress(&json!({"event_type": "audit.http.request.pre", "url.path": "/login"}))
            .is_empty());
        assert_eq!(kit.ingress(&pre(IP, "/login")).len(), 1);
    }

    #[test]
    fn runs_on_the_ingress_event_only() {
        let kit = kit(json!({"builtin": "login_throttle"}));
        fail(&kit, IP, 5);
        let egress = kit
            .eval(&json!({"event_type": "http.response.success", "srcip": IP, "path": "/login"}));
        assert!(throttled(&egress).is_empty());
        // Egress evaluation of the pre event also works (the rule is just
        // a detector), but ingress is where it matters.
        assert_eq!(throttled(&kit.eval(&pre(IP, "/login"))).len(), 1);
    }

    #[test]
    fn a_login_success_resets_and_the_window_expires() {
        let kit = kit(json!({"builtin": "login_throttle"}));
        fail(&kit, IP, 5);
        assert_eq!(kit.ingress(&pre(IP, "/login")).len(), 1);
        kit.eval(&json!({"event_type": "auth.login.success", "source.address": IP}));
        assert!(
            kit.ingress(&pre(IP, "/login")).is_empty(),
            "success deleted the counter"
        );
        fail(&kit, IP, 5);
        assert_eq!(kit.ingress(&pre(IP, "/login")).len(), 1);
        kit.clock.advance_secs(299.0);
        assert_eq!(
            kit.ingress(&pre(IP, "/login")).len(),
            1,
            "still inside the brute-force window"
        );
        kit.clock.advance_secs(1.0);
        assert!(
            kit.ingress(&pre(IP, "/login")).is_empty(),
            "failure window expired at t + 300"
        );
    }

    #[test]
    fn threshold_paths_and_decision_are_configurable() {
        let k = kit(
            json!({"builtin": "login_throttle", "threshold": "2", "paths": ["^/auth/", "/sso$"],
                             "decision": "temp_block", "message": "m", "tags": ["x"], "severity": 9}),
        );
        fail(&k, IP, 1);
        assert!(k.ingress(&pre(IP, "/auth/token")).is_empty());
        fail(&k, IP, 1);
        let m = k.ingress(&pre(IP, "/auth/token"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].decision, Some(ActionKind::TempBlock));
        assert_eq!((m[0].message.as_str(), m[0].severity), ("m", 9));
        assert_eq!(m[0].tags, vec!["x".to_string()]);
        assert_eq!(k.ingress(&pre(IP, "/x/sso")).len(), 1);
        assert!(
            k.ingress(&pre(IP, "/login")).is_empty(),
            "default path replaced"
        );

        let all = kit(json!({"builtin": "login_throttle", "paths": [], "decision": "none"}));
        fail(&all, IP, 5);
        let m = all.ingress(&pre(IP, "/anything"));
        assert_eq!(m.len(), 1, "empty list = every path");
        assert_eq!(m[0].decision, None);
    }
}
