//! The history summary: the reduced, scrubbed form of an event that history
//! stores (`docs/rules.md`, "How rules run").

use sec_audit_core::{AuditEvent, Scrubber};
use serde_json::{Map, Value};

pub use sec_audit_core::state::Summary;

/// Attributes a summary keeps, when non-empty. `status` is the event's status
/// code (from any of its accepted keys).
pub const SUMMARY_FIELDS: [&str; 17] = [
    "event_type",
    "request_id",
    "user_id",
    "username",
    "session_id",
    "srcip",
    "route_name",
    "route_pattern",
    "route",
    "model_label",
    "app_label",
    "model",
    "object_id",
    "action",
    "crud_action",
    "changed_fields",
    "status",
];

/// Scope-key fields: exempt from scrubbing, their values are the keys
/// history is stored under.
pub const SCOPE_FIELDS: [&str; 5] = ["session_id", "srcip", "user_id", "username", "route"];

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn pick(src: &Value, keys: &[&str]) -> Option<Value> {
    let obj = src.as_object()?;
    let out: Map<String, Value> = keys
        .iter()
        .filter_map(|k| {
            obj.get(*k)
                .filter(|v| non_empty(v))
                .map(|v| ((*k).to_string(), v.clone()))
        })
        .collect();
    (!out.is_empty()).then_some(Value::Object(out))
}

/// Builds the scrubbed summary of `event` (without `recorded_at` and
/// `rule_attrs`, which the engine adds).
pub fn build_summary(event: &AuditEvent, scrubber: &Scrubber) -> Summary {
    let attrs = event.attributes();
    // Collected first and built in one go: the map is bulk-built from
    // sorted entries instead of searched for every insert.
    let mut entries: Vec<(String, Value)> = Vec::with_capacity(SUMMARY_FIELDS.len() + 2);
    for key in SUMMARY_FIELDS {
        if key == "status" {
            let code = event.status_code();
            if code != 0 {
                entries.push(("status".into(), Value::from(code)));
            }
            continue;
        }
        if let Some(v) = attrs.get(key).filter(|v| non_empty(v)) {
            entries.push((key.to_string(), v.clone()));
        }
    }
    if let Some(actor) = attrs.get("actor").and_then(|a| pick(a, &["id", "name"])) {
        entries.push(("actor".into(), actor));
    }
    if let Some(target) = attrs
        .get("target")
        .and_then(|t| pick(t, &["app", "model", "object_id"]))
    {
        entries.push(("target".into(), target));
    }
    // Keys are distinct, so the order of insertion does not matter.
    let mut s: Map<String, Value> = entries.into_iter().collect();
    scrubber.scrub_map_except(&mut s, &SCOPE_FIELDS);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_keeps_listed_fields_scrubs_and_exempts_scope_fields() {
        let e = AuditEvent::from_attributes(
            json!({"event_type": "model.update", "request_id": "r1", "session.id": "sessionid-like",
                   "user.id": "7", "source.address": "1.2.3.4", "http.route": "/a/{id}",
                   "http.response.status_code": "404", "changed_fields": ["password"],
                   "object_id": "", "actor": {"id": 1, "name": "n", "token": "t"},
                   "target": {"app": "auth", "secret": "x"}, "password": "hunter2",
                   "url.path": "/a/1", "action": {"api_token": "abc"}})
                .as_object().cloned().unwrap(),
        )
        .unwrap();
        let s = build_summary(&e, &Scrubber::default());
        assert_eq!(s["session_id"], json!("sessionid-like"));
        assert_eq!(s["user_id"], json!("7"));
        assert_eq!(s["srcip"], json!("1.2.3.4"));
        assert_eq!(s["route"], json!("/a/{id}"));
        assert_eq!(s["status"], json!(404));
        assert_eq!(s["actor"], json!({"id": 1, "name": "n"}));
        assert_eq!(s["target"], json!({"app": "auth"}));
        assert_eq!(s["action"], json!({"api_token": "[REDACTED]"}));
        assert!(!s.contains_key("password"));
        assert!(!s.contains_key("object_id"));
        assert!(!s.contains_key("url.path"));
        assert_eq!(s["changed_fields"], json!(["password"]));
    }
}
