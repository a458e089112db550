//! `suspicious_proxy_header`: forwarding headers on a request that did not
//! come through a trusted proxy, claiming a client identity other than the
//! connection's own address (a spoofing attempt).

use std::net::IpAddr;

use sec_audit_core::client_ip::parse_ip_token;
use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use serde::Deserialize;

use super::{Common, FromParams};
use crate::config::{ConfigError, Decision, Severity, StringList};
use crate::rule::{Match, Rule, RuleContext, RuleError};

/// How deep array header values are walked; anything deeper counts as
/// non-blank text without an IP.
const MAX_VALUE_DEPTH: usize = 4;

#[derive(Debug, Clone)]
pub struct SuspiciousProxyHeader {
    common: Common,
    safe_for_enforcement: bool,
}

/// `suspicious_proxy_header`'s parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuspiciousProxyHeaderParams {
    pub safe_for_enforcement: bool,
    pub severity: Severity,
    pub message: String,
    pub tags: StringList,
    pub decision: Decision,
}

impl Default for SuspiciousProxyHeaderParams {
    fn default() -> Self {
        SuspiciousProxyHeaderParams {
            safe_for_enforcement: false,
            severity: Severity(6),
            message: "Suspicious proxy headers on an untrusted route".into(),
            tags: StringList::of(&["http", "proxy", "spoofing"]),
            decision: Decision(None),
        }
    }
}

impl FromParams for SuspiciousProxyHeader {
    type Params = SuspiciousProxyHeaderParams;
    fn from_params(name: &str, p: SuspiciousProxyHeaderParams) -> Result<Self, ConfigError> {
        Ok(SuspiciousProxyHeader {
            common: Common::new(name, p.severity, p.message, p.tags, p.decision),
            safe_for_enforcement: p.safe_for_enforcement,
        })
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What one header value holds.
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// Some non-blank content.
    non_blank: bool,
    /// At least one IP token.
    any_ip: bool,
    /// An IP token different from the source IP (or no source IP).
    mismatch: bool,
}

impl Scan {
    fn suspicious(self) -> bool {
        self.non_blank && (!self.any_ip || self.mismatch)
    }

    fn text(&mut self, text: &str, source: Option<IpAddr>) {
        let tokens = text
            .split(|c: char| c == ',' || c == ';' || c == '=' || c.is_whitespace())
            .filter(|t| !t.is_empty());
        for token in tokens {
            self.non_blank = true;
            if let Some(ip) = parse_ip_token(token.trim_matches(|c| c == '"' || c == '\'')) {
                self.any_ip = true;
                if source != Some(canonical(ip)) {
                    self.mismatch = true;
                }
            }
        }
    }

    fn value(&mut self, value: &Value, source: Option<IpAddr>, depth: usize) {
        match value {
            Value::Null => {}
            Value::String(s) => self.text(s, source),
            Value::Number(n) => self.text(&n.to_string(), source),
            Value::Bool(b) => self.text(if *b { "true" } else { "false" }, source),
            Value::Array(items) if depth < MAX_VALUE_DEPTH => {
                for item in items {
                    self.value(item, source, depth + 1);
                }
            }
            Value::Array(items) => self.non_blank |= !items.is_empty(),
            Value::Object(map) => self.non_blank |= !map.is_empty(),
        }
    }
}

impl Rule for SuspiciousProxyHeader {
    fn name(&self) -> &str {
        &self.common.name
    }
    fn severity(&self) -> u8 {
        self.common.severity
    }
    fn safe_for_enforcement(&self) -> bool {
        self.safe_for_enforcement
    }

    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        if matches!(event.field("trusted_route"), Some(Value::Bool(true))) {
            return Ok(None);
        }
        let Some(Value::Object(headers)) = event.field("proxy_headers") else {
            return Ok(None);
        };
        if headers.is_empty() {
            return Ok(None);
        }
        let source = parse_ip_token(&event.srcip()).map(canonical);
        let mut suspicious: Vec<&str> = Vec::new();
        for (name, value) in headers {
            let mut scan = Scan::default();
            scan.value(value, source, 0);
            if scan.suspicious() {
                suspicious.push(name);
            }
        }
        if suspicious.is_empty() {
            return Ok(None);
        }
        suspicious.sort_unstable();
        let mut meta = Map::new();
        meta.insert("header_count".into(), Value::from(suspicious.len()));
        meta.insert(
            "headers".into(),
            Value::Array(
                suspicious
                    .into_iter()
                    .map(|h| Value::String(h.to_string()))
                    .collect(),
            ),
        );
        Ok(Some(self.common.matched(self, event, ctx.now, meta)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::Kit;
    use crate::policy::ActionKind;
    use serde_json::{json, Value};

    fn kit() -> Kit {
        Kit::new(&[json!({"builtin": "suspicious_proxy_header"})])
    }

    fn ev(src: Value, headers: Value) -> Value {
        json!({"event_type": "http.response.success", "source.address": src, "proxy_headers": headers})
    }

    fn suspicious(kit: &Kit, src: &str, headers: Value) -> Option<Vec<String>> {
        let m = kit.eval(&ev(json!(src), headers));
        m.first().map(|m| {
            m.metadata["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        })
    }

    #[test]
    fn a_different_client_ip_is_suspicious() {
        let kit = kit();
        let m = kit.eval(&ev(
            json!("203.0.113.9"),
            json!({"X-Forwarded-For": "198.51.100.1", "X-Real-IP": "203.0.113.9"}),
        ));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].rule_name, "suspicious_proxy_header");
        assert_eq!(m[0].severity, 6);
        assert_eq!(m[0].metadata["headers"], json!(["X-Forwarded-For"]));
        assert_eq!(m[0].metadata["header_count"], json!(1));
        assert_eq!(
            m[0].message,
            "Suspicious proxy headers on an untrusted route"
        );
        assert_eq!(
            m[0].tags,
            vec![
                "http".to_string(),
                "proxy".to_string(),
                "spoofing".to_string()
            ]
        );
        assert_eq!(m[0].decision, None);
    }

    #[test]
    fn headers_naming_only_the_source_ip_or_blank_are_fine() {
        let kit = kit();
        let src = "203.0.113.9";
        assert_eq!(
            suspicious(&kit, src, json!({"X-Forwarded-For": "203.0.113.9"})),
            None
        );
        assert_eq!(
            suspicious(
                &kit,
                src,
                json!({"X-Forwarded-For": " 203.0.113.9 , \"203.0.113.9:443\""})
            ),
            None
        );
        assert_eq!(
            suspicious(
                &kit,
                src,
                json!({"Forwarded": "for=203.0.113.9;proto=https"})
            ),
            None
        );
        assert_eq!(
            suspicious(
                &kit,
                src,
                json!({"X-Forwarded-For": "", "X-Real-IP": "   ", "Via": null})
            ),
            None
        );
        assert_eq!(
            suspicious(&kit, src, json!({"X-Forwarded-For": "::ffff:203.0.113.9"})),
            None,
            "v4-mapped"
        );
        assert_eq!(
            suspicious(
                &kit,
                "2001:db8::1",
                json!({"Forwarded": "for=\"[2001:db8::1]:4711\"", "X-Real-IP": "[2001:db8::1]"})
            ),
            None
        );
        assert_eq!(
            suspicious(
                &kit,
                "::ffff:203.0.113.9",
                json!({"X-Real-IP": "203.0.113.9"})
            ),
            None
        );
    }

    #[test]
    fn non_ip_text_and_any_other_ip_are_suspicious() {
        let kit = kit();
        let src = "203.0.113.9";
        assert_eq!(
            suspicious(&kit, src, json!({"X-Forwarded-For": "unknown"})),
            Some(vec!["X-Forwarded-For".into()])
        );
        assert_eq!(
            suspicious(
                &kit,
                src,
                json!({"X-Forwarded-For": "203.0.113.9, 10.0.0.1"})
            ),
            Some(vec!["X-Forwarded-For".into()]),
            "one differing token is enough"
        );
        assert_eq!(
            suspicious(
                &kit,
                src,
                json!({"Forwarded": "for=[2001:db8::1];by=203.0.113.9", "b": "1.2.3.4", "a": "x"})
            ),
            Some(vec!["Forwarded".into(), "a".into(), "b".into()]),
            "sorted names"
        );
        let m = kit.eval(&ev(
            json!(src),
            json!({"b": "1.2.3.4", "a": "x", "c": "203.0.113.9"}),
        ));
        assert_eq!(
            m[0].metadata["header_count"],
            json!(2),
            "suspicious headers only"
        );
    }

    #[test]
    fn a_non_ip_source_makes_every_ip_token_suspicious() {
        let kit = kit();
        assert_eq!(
            suspicious(&kit, "not-an-ip", json!({"X-Real-IP": "1.2.3.4"})),
            Some(vec!["X-Real-IP".into()])
        );
        let no_src =
            json!({"event_type": "x.y", "proxy_headers": {"X-Real-IP": "1.2.3.4", "X-Empty": ""}});
        assert_eq!(
            kit.eval(&no_src)[0].metadata["headers"],
            json!(["X-Real-IP"])
        );
    }

    #[test]
    fn ignored_on_trusted_routes_or_without_headers() {
        let kit = kit();
        let trusted = json!({"event_type": "http.response.success", "srcip": "1.1.1.1", "trusted_route": true,
                             "proxy_headers": {"X-Forwarded-For": "9.9.9.9"}});
        assert!(kit.eval(&trusted).is_empty());
        let untrusted = json!({"event_type": "http.response.success", "srcip": "1.1.1.1", "trusted_route": false,
                               "proxy_headers": {"X-Forwarded-For": "9.9.9.9"}});
        assert_eq!(kit.eval(&untrusted).len(), 1);
        for headers in [
            json!({}),
            json!(null),
            json!("X-Forwarded-For: 9.9.9.9"),
            json!(["9.9.9.9"]),
        ] {
            assert!(
                kit.eval(&ev(json!("1.1.1.1"), headers.clone())).is_empty(),
                "{headers}"
            );
        }
        assert!(kit
            .eval(&json!({"event_type": "http.response.success", "srcip": "1.1.1.1"}))
            .is_empty());
    }

    #[test]
    fn non_string_values_use_their_text() {
        let kit = kit();
        let src = "203.0.113.9";
        assert_eq!(
            suspicious(&kit, src, json!({"n": 5, "t": true})),
            Some(vec!["n".into(), "t".into()])
        );
        assert_eq!(
            suspicious(&kit, src, json!({"list": ["203.0.113.9", "203.0.113.9"]})),
            None
        );
        assert_eq!(
            suspicious(&kit, src, json!({"list": ["203.0.113.9", "1.1.1.1"]})),
            Some(vec!["list".into()])
        );
        assert_eq!(
            suspicious(&kit, src, json!({"obj": {"a": 1}, "empty": {}, "arr": []})),
            Some(vec!["obj".into()])
        );
    }

    #[test]
    fn ingress_only_when_configured() {
        let pre = json!({"event_type": "audit.http.request.pre", "srcip": "1.1.1.1",
                         "proxy_headers": {"X-Forwarded-For": "9.9.9.9"}});
        assert!(
            kit().ingress(&pre).is_empty(),
            "not ingress-safe by default"
        );
        let kit = Kit::new(&[
            json!({"builtin": "suspicious_proxy_header", "safe_for_enforcement": true,
                                    "decision": "temp_block"}),
        ]);
        let m = kit.ingress(&pre);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].decision, Some(ActionKind::TempBlock));
    }
}
