//! `request_body_threshold`: on the ingress pass, a numeric request-body
//! field above a threshold (an amount, a quantity).

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use sec_audit_core::event::lookup;
use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{Common, FromParams, PathFilter};
use crate::config::{decimal, Amount, ConfigError, Decision, Regexes, Severity, StringList};
use crate::engine::INGRESS_EVENT_TYPE;
use crate::policy::ActionKind;
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct RequestBodyThreshold {
    common: Common,
    field: String,
    threshold: Decimal,
    paths: PathFilter,
    event_types: Vec<String>,
}

/// `request_body_threshold`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestBodyThresholdParams {
    pub field: String,
    pub threshold: Amount,
    pub paths: Option<Regexes>,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
    pub decision: Decision,
}

impl Default for RequestBodyThresholdParams {
    fn default() -> Self {
        RequestBodyThresholdParams {
            field: "amount".into(),
            threshold: Amount(Decimal::from(10_000)),
            paths: None,
            severity: Severity(8),
            message: "Request body numeric threshold exceeded".into(),
            tags: StringList::of(&["request", "threshold"]),
            decision: Decision(Some(ActionKind::Block)),
        }
    }
}

impl FromParams for RequestBodyThreshold {
    type Params = RequestBodyThresholdParams;
    fn from_params(name: &str, p: RequestBodyThresholdParams) -> Result<Self, ConfigError> {
        if p.field.trim().is_empty() {
            return Err(ConfigError::bad(name, "field", "must not be empty"));
        }
        let threshold = p.threshold.0;
        if threshold.is_sign_negative() && !threshold.is_zero() {
            return Err(ConfigError::bad(
                name,
                "threshold",
                format!("must not be negative (got {threshold})"),
            ));
        }
        Ok(RequestBodyThreshold {
            common: Common::new(name, p.severity, p.message, p.tags, p.decision),
            field: p.field,
            threshold,
            paths: PathFilter::new(p.paths.map(|r| r.0).unwrap_or_default()),
            event_types: vec![INGRESS_EVENT_TYPE.into()],
        })
    }
}

impl RequestBodyThreshold {
    /// The field's value as text when it exceeds the threshold.
    fn exceeding(&self, value: &Value) -> Option<String> {
        if let Some(d) = decimal(value) {
            return (d > self.threshold).then(|| d.to_string());
        }
        // Numeric but outside the exact decimal range (about ±7.9e28), or an
        // infinity: compare as a float so a huge value cannot slip through.
        // NaN and non-numeric text are ignored.
        let text = match value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_string(),
            _ => return None,
        };
        let f = text.parse::<f64>().ok().filter(|f| !f.is_nan())?;
        let limit = self.threshold.to_f64()?;
        (f > limit).then_some(text)
    }
}

impl Rule for RequestBodyThreshold {
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
        let Some(body) = event.body() else {
            return Ok(None);
        };
        let Some(value) = lookup(body, &self.field) else {
            return Ok(None);
        };
        if !self.paths.allows(&event.path()) {
            return Ok(None);
        }
        let Some(text) = self.exceeding(value) else {
            return Ok(None);
        };
        let mut meta = Map::new();
        meta.insert("field".into(), Value::String(self.field.clone()));
        meta.insert("value".into(), Value::String(text));
        meta.insert(
            "threshold".into(),
            Value::String(self.threshold.to_string()),
        );
        Ok(Some(self.common.matched(self, event, ctx.now, meta)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::policy::ActionKind;
    use serde_json::{json, Value};

    fn pre(body: Value) -> Value {
        json!({"event_type": "audit.http.request.pre", "source.address": "1.1.1.1",
               "url.path": "/pay", "request.body": body})
    }

    fn fires(kit: &Kit, body: Value) -> bool {
        !kit.ingress(&pre(body)).is_empty()
    }

    #[test]
    fn strictly_greater_than_the_threshold() {
        let kit = Kit::new(&[json!({"builtin": "request_body_threshold"})]);
        assert!(!fires(&kit, json!({"amount": 9999})), "below");
        assert!(
            !fires(&kit, json!({"amount": 10000})),
            "at the threshold: not greater"
        );
        assert!(!fires(&kit, json!({"amount": "10000.00"})));
        let m = kit.ingress(&pre(json!({"amount": 10001})));
        assert_eq!(m.len(), 1, "above");
        assert_eq!(m[0].rule_name, "request_body_threshold");
        assert_eq!(m[0].severity, 8);
        assert_eq!(m[0].decision, Some(ActionKind::Block));
        assert_eq!(m[0].metadata["field"], json!("amount"));
        assert_eq!(m[0].metadata["value"], json!("10001"));
        assert_eq!(m[0].metadata["threshold"], json!("10000"));
        assert_eq!(m[0].message, "Request body numeric threshold exceeded");
    }

    #[test]
    fn decimal_exact_from_numbers_and_numeric_strings() {
        let kit = Kit::new(&[json!({"builtin": "request_body_threshold"})]);
        assert!(fires(&kit, json!({"amount": "10000.01"})));
        assert!(fires(&kit, json!({"amount": 10000.01})));
        assert!(fires(
            &kit,
            json!({"amount": " 10000.0000000000000000001 "})
        ));
        assert!(!fires(&kit, json!({"amount": "9999.9999999999999999999"})));
        assert!(fires(&kit, json!({"amount": "1e5"})));
        let m = kit.ingress(&pre(json!({"amount": "10000.50"})));
        assert_eq!(m[0].metadata["value"], json!("10000.50"));
        assert!(!fires(&kit, json!({"amount": -50000})));
    }

    #[test]
    fn huge_values_do_not_slip_through() {
        let kit = Kit::new(&[json!({"builtin": "request_body_threshold"})]);
        assert!(fires(&kit, json!({"amount": 1e300})));
        assert!(fires(&kit, json!({"amount": "1e40"})));
        assert!(fires(&kit, json!({"amount": "9".repeat(60)})));
        assert!(fires(&kit, json!({"amount": "Infinity"})));
        assert!(fires(&kit, json!({"amount": "1e999999999"})));
        assert!(!fires(&kit, json!({"amount": "-1e40"})));
        assert!(!fires(&kit, json!({"amount": "NaN"})));
    }

    #[test]
    fn anything_else_is_ignored() {
        let kit = Kit::new(&[json!({"builtin": "request_body_threshold"})]);
        for v in [
            json!(true),
            json!(null),
            json!([20000]),
            json!({"v": 20000}),
            json!("lots"),
            json!(""),
            json!("20,000"),
            json!("0x5000"),
            json!("-"),
            json!("e5"),
        ] {
            assert!(!fires(&kit, json!({"amount": v.clone()})), "{v}");
        }
        assert!(!fires(&kit, json!({"other": 20000})));
        let no_body = json!({"event_type": "audit.http.request.pre", "url.path": "/pay"});
        assert!(kit.ingress(&no_body).is_empty());
        let text_body = json!({"event_type": "audit.http.request.pre", "body": "amount=20000"});
        assert!(kit.ingress(&text_body).is_empty());
        let raw_body = json!({"event_type": "audit.http.request.pre", "body": {"amount": 20000}});
        assert_eq!(
            kit.ingress(&raw_body).len(),
            1,
            "raw `body` key accepted too"
        );
    }

    #[test]
    fn field_threshold_and_paths_are_configurable() {
        let kit = Kit::new(&[
            json!({"builtin": "request_body_threshold", "field": "order.qty",
                                    "threshold": "2.5", "paths": ["^/pay$"], "decision": "alert"}),
        ]);
        assert!(fires(&kit, json!({"order": {"qty": 3}})), "nested lookup");
        assert!(fires(&kit, json!({"order.qty": "2.51"})), "flat dotted key");
        assert!(!fires(&kit, json!({"order": {"qty": 2.5}})));
        let m = kit.ingress(&pre(json!({"order": {"qty": 3}})));
        assert_eq!(m[0].metadata["threshold"], json!("2.5"));
        assert_eq!(m[0].metadata["field"], json!("order.qty"));
        assert_eq!(m[0].decision, Some(ActionKind::Alert));
        let other_path = json!({"event_type": "audit.http.request.pre", "url.path": "/pay/other",
                                "request.body": {"order": {"qty": 3}}});
        assert!(kit.ingress(&other_path).is_empty());
    }
}
