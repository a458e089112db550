//! `repeated_route`: on the ingress pass, many requests from one source IP
//! to the same route within a window.

use std::borrow::Cow;

use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{Common, FromParams, PathFilter};
use crate::config::{ConfigError, Decision, Number, Regexes, Seconds, Severity, StringList};
use crate::engine::INGRESS_EVENT_TYPE;
use crate::policy::ActionKind;
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct RepeatedRoute {
    common: Common,
    threshold: f64,
    window_seconds: u64,
    paths: PathFilter,
    block_ttl: Option<u64>,
    event_types: Vec<String>,
}

/// `repeated_route`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepeatedRouteParams {
    pub threshold: Number,
    pub window_seconds: Seconds,
    pub paths: Option<Regexes>,
    pub block_ttl: Option<Seconds>,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
    pub decision: Decision,
}

impl Default for RepeatedRouteParams {
    fn default() -> Self {
        RepeatedRouteParams {
            threshold: Number(10.0),
            window_seconds: Seconds(300),
            paths: None,
            block_ttl: None,
            severity: Severity(7),
            message: "Repeated requests to a monitored route".into(),
            tags: StringList::of(&["http", "route-abuse"]),
            decision: Decision(Some(ActionKind::TempBlock)),
        }
    }
}

impl FromParams for RepeatedRoute {
    type Params = RepeatedRouteParams;
    fn from_params(name: &str, p: RepeatedRouteParams) -> Result<Self, ConfigError> {
        Ok(RepeatedRoute {
            common: Common::new(name, p.severity, p.message, p.tags, p.decision),
            threshold: p.threshold.0,
            window_seconds: p.window_seconds.0,
            paths: PathFilter::new(p.paths.map(|r| r.0).unwrap_or_default()),
            block_ttl: p.block_ttl.map(|s| s.0),
            event_types: vec![INGRESS_EVENT_TYPE.into()],
        })
    }
}

/// `route_name`, else `route_pattern`, else the path (trimmed); empty when
/// the event has none of them.
fn route_key(event: &AuditEvent) -> Cow<'_, str> {
    for candidate in [event.route_name(), event.route_pattern(), event.path()] {
        let trimmed = candidate.trim();
        if trimmed.is_empty() {
            continue;
        }
        return match candidate {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        };
    }
    Cow::Borrowed("")
}

impl Rule for RepeatedRoute {
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
        let ip = ip.trim();
        let route = route_key(event);
        if ip.is_empty() || route.is_empty() {
            return Ok(None);
        }
        let key = format!(
            "route_hits:{}:{}",
            super::ip_key(ip),
            super::bounded_text(&route)
        );
        let count = ctx.counters.incr(&key, 1, Some(self.window_seconds));
        if (count as f64) < self.threshold {
            return Ok(None);
        }
        let mut meta = Map::new();
        meta.insert("request_count".into(), Value::from(count));
        meta.insert("route".into(), Value::String(route.into_owned()));
        if let Some(ttl) = self.block_ttl {
            meta.insert("block_ttl".into(), Value::from(ttl));
        }
        Ok(Some(self.common.matched(self, event, ctx.now, meta)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::policy::ActionKind;
    use serde_json::{json, Value};

    fn pre(ip: &str, path: &str) -> Value {
        json!({"event_type": "audit.http.request.pre", "source.address": ip, "url.path": path})
    }

    #[test]
    fn matches_at_threshold_and_above_on_ingress() {
        let kit = Kit::new(&[json!({"builtin": "repeated_route"})]);
        for i in 1..=9 {
            assert!(
                kit.ingress(&pre("1.1.1.1", "/api/export")).is_empty(),
                "request {i}"
            );
        }
        let m = kit.ingress(&pre("1.1.1.1", "/api/export"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].rule_name, "repeated_route");
        assert_eq!(m[0].severity, 7);
        assert_eq!(m[0].decision, Some(ActionKind::TempBlock));
        assert_eq!(m[0].metadata["request_count"], json!(10));
        assert_eq!(m[0].metadata["route"], json!("/api/export"));
        assert!(
            !m[0].metadata.contains_key("block_ttl"),
            "only when configured"
        );
        assert_eq!(m[0].message, "Repeated requests to a monitored route");
        assert_eq!(
            kit.ingress(&pre("1.1.1.1", "/api/export"))[0].metadata["request_count"],
            json!(11)
        );
    }

    #[test]
    fn route_key_prefers_route_name_then_pattern_then_path() {
        let kit = Kit::new(&[json!({"builtin": "repeated_route", "threshold": 2})]);
        let named = |path: &str| {
            json!({"event_type": "audit.http.request.pre", "srcip": "1.1.1.1", "url.path": path,
                   "http.route": "/items/{id}", "http.route_name": "item-detail"})
        };
        kit.ingress(&named("/items/1"));
        let m = kit.ingress(&named("/items/2"));
        assert_eq!(m.len(), 1, "different paths, same route name");
        assert_eq!(m[0].metadata["route"], json!("item-detail"));

        let pattern = |path: &str| {
            json!({"event_type": "audit.http.request.pre", "srcip": "2.2.2.2", "path": path,
                   "route_pattern": "/users/{id}"})
        };
        kit.ingress(&pattern("/users/1"));
        let m = kit.ingress(&pattern("/users/2"));
        assert_eq!(m[0].metadata["route"], json!("/users/{id}"));

        kit.ingress(&pre("3.3.3.3", "/a"));
        assert!(
            kit.ingress(&pre("3.3.3.3", "/b")).is_empty(),
            "path keys differ"
        );
        assert_eq!(kit.ingress(&pre("3.3.3.3", "/a")).len(), 1);

        let nothing =
            json!({"event_type": "audit.http.request.pre", "srcip": "4.4.4.4", "url.path": "  "});
        for _ in 0..3 {
            assert!(kit.ingress(&nothing).is_empty(), "no route key: no match");
        }
    }

    #[test]
    fn counts_per_ip_and_needs_an_ip() {
        let kit = Kit::new(&[json!({"builtin": "repeated_route", "threshold": 2})]);
        kit.ingress(&pre("1.1.1.1", "/a"));
        assert!(kit.ingress(&pre("2.2.2.2", "/a")).is_empty());
        let anon = json!({"event_type": "audit.http.request.pre", "url.path": "/a"});
        assert!(kit.ingress(&anon).is_empty());
        assert!(kit.ingress(&anon).is_empty());
        assert_eq!(kit.ingress(&pre("1.1.1.1", "/a")).len(), 1);
    }

    #[test]
    fn paths_filter_block_ttl_and_decision() {
        let kit = Kit::new(&[
            json!({"builtin": "repeated_route", "threshold": 1, "paths": ["^/api/"],
                                    "block_ttl": 120, "decision": "alert"}),
        ]);
        assert!(kit.ingress(&pre("1.1.1.1", "/static/app.js")).is_empty());
        let m = kit.ingress(&pre("1.1.1.1", "/api/x"));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].metadata["block_ttl"], json!(120));
        assert_eq!(m[0].decision, Some(ActionKind::Alert));
    }

    #[test]
    fn window_expiry_starts_over() {
        let kit =
            Kit::new(&[json!({"builtin": "repeated_route", "threshold": 3, "window_seconds": 10})]);
        kit.ingress(&pre("1.1.1.1", "/a"));
        kit.ingress(&pre("1.1.1.1", "/a"));
        kit.clock.advance_secs(10.0);
        assert!(kit.ingress(&pre("1.1.1.1", "/a")).is_empty());
        kit.ingress(&pre("1.1.1.1", "/a"));
        assert_eq!(kit.ingress(&pre("1.1.1.1", "/a")).len(), 1);
    }
}
