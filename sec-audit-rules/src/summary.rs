//! The history summary: the reduced, scrubbed form of an event that history
//! stores (`docs/rules.md`, "How rules run").

use std::borrow::Cow;

use sec_audit_core::{AuditEvent, HistoryEntry, Known, Scrubber, REDACTED};
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

/// Every key a summary may have, sorted bytewise (the order of its JSON
/// object): [`SUMMARY_FIELDS`], `actor` and `target`.
const SORTED_KEYS: [&str; 19] = [
    "action",
    "actor",
    "app_label",
    "changed_fields",
    "crud_action",
    "event_type",
    "model",
    "model_label",
    "object_id",
    "request_id",
    "route",
    "route_name",
    "route_pattern",
    "session_id",
    "srcip",
    "status",
    "target",
    "user_id",
    "username",
];

/// [`SORTED_KEYS`] as the event's known keys: a summary reads each
/// attribute by its resolved position, not by comparing key strings.
const SORTED_KNOWN: [Known; 19] = [
    Known::Action,
    Known::Actor,
    Known::AppLabel,
    Known::ChangedFields,
    Known::CrudAction,
    Known::EventType,
    Known::Model,
    Known::ModelLabel,
    Known::ObjectId,
    Known::RequestId,
    Known::Route,
    Known::RouteName,
    Known::RoutePattern,
    Known::SessionId,
    Known::Srcip,
    Known::Status,
    Known::Target,
    Known::UserId,
    Known::Username,
];

/// Positions in [`SORTED_KEYS`] of the keys not read from the attribute of
/// their name.
const ACTOR: usize = 1;
const STATUS: usize = 15;
const TARGET: usize = 16;

/// Which summary keys a scrubber redacts outright: the keys are fixed, so
/// this is worked out once per scrubber instead of once per event.
#[derive(Debug, Clone)]
pub struct SummaryScrub {
    /// By position in [`SORTED_KEYS`]: exempt (a scope field), redacted
    /// (a sensitive key) or scrubbed inside.
    sensitive: [Option<bool>; SORTED_KEYS.len()],
}

impl SummaryScrub {
    pub fn new(scrubber: &Scrubber) -> Self {
        let mut sensitive = [None; SORTED_KEYS.len()];
        for (s, key) in sensitive.iter_mut().zip(SORTED_KEYS) {
            if !SCOPE_FIELDS.contains(&key) {
                *s = Some(scrubber.is_sensitive_key(key));
            }
        }
        SummaryScrub { sensitive }
    }
}

/// Builds the scrubbed summary of `event` as a history entry (without
/// `recorded_at` and `rule_attrs`, which the engine adds).
pub fn build_entry(event: &AuditEvent, scrubber: &Scrubber) -> HistoryEntry {
    build_entry_with(event, scrubber, &SummaryScrub::new(scrubber))
}

/// [`build_entry`] with the key sensitivity of `scrubber` worked out
/// already (`plan` must be `SummaryScrub::new(scrubber)`).
pub fn build_entry_with(
    event: &AuditEvent,
    scrubber: &Scrubber,
    plan: &SummaryScrub,
) -> HistoryEntry {
    // Built in key order: the entry needs no sorting and no map.
    let mut entries: Vec<(Cow<'static, str>, Value)> = Vec::with_capacity(SORTED_KEYS.len() + 2);
    for (i, ((key, known), sensitive)) in SORTED_KEYS
        .into_iter()
        .zip(SORTED_KNOWN)
        .zip(plan.sensitive)
        .enumerate()
    {
        let value = match i {
            STATUS => {
                let code = event.status_code();
                (code != 0).then(|| Value::from(code))
            }
            ACTOR => event.known(known).and_then(|a| pick(a, &["id", "name"])),
            TARGET => event
                .known(known)
                .and_then(|t| pick(t, &["app", "model", "object_id"])),
            _ => event.known(known).filter(|v| non_empty(v)).cloned(),
        };
        let Some(mut value) = value else {
            continue;
        };
        // As `Scrubber::scrub_map_except(.., &SCOPE_FIELDS)` over the map.
        match sensitive {
            None => {}
            Some(true) => value = Value::String(REDACTED.to_string()),
            Some(false) => scrubber.scrub_value(&mut value),
        }
        entries.push((Cow::Borrowed(key), value));
    }
    HistoryEntry::from_sorted(entries)
}

/// Builds the scrubbed summary of `event` as a JSON object (without
/// `recorded_at` and `rule_attrs`).
pub fn build_summary(event: &AuditEvent, scrubber: &Scrubber) -> Summary {
    build_entry(event, scrubber).to_json_map()
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

    /// The summary as it was built before entries: a map, then scrubbed.
    fn reference(event: &AuditEvent, scrubber: &Scrubber) -> Summary {
        let attrs = event.attributes();
        let mut s = Map::new();
        for key in SUMMARY_FIELDS {
            if key == "status" {
                let code = event.status_code();
                if code != 0 {
                    s.insert("status".into(), Value::from(code));
                }
                continue;
            }
            if let Some(v) = attrs.get(key).filter(|v| non_empty(v)) {
                s.insert(key.to_string(), v.clone());
            }
        }
        if let Some(actor) = attrs.get("actor").and_then(|a| pick(a, &["id", "name"])) {
            s.insert("actor".into(), actor);
        }
        if let Some(target) = attrs
            .get("target")
            .and_then(|t| pick(t, &["app", "model", "object_id"]))
        {
            s.insert("target".into(), target);
        }
        scrubber.scrub_map_except(&mut s, &SCOPE_FIELDS);
        s
    }

    #[test]
    fn sorted_keys_are_the_summary_fields_in_map_order() {
        let mut all: Vec<&str> = SUMMARY_FIELDS.to_vec();
        all.extend(["actor", "target"]);
        all.sort_unstable();
        assert_eq!(all, SORTED_KEYS.to_vec());
        let known: Vec<&str> = SORTED_KNOWN.iter().map(|k| k.as_str()).collect();
        assert_eq!(known, SORTED_KEYS.to_vec());
        assert_eq!(SORTED_KEYS[ACTOR], "actor");
        assert_eq!(SORTED_KEYS[STATUS], "status");
        assert_eq!(SORTED_KEYS[TARGET], "target");
    }

    #[test]
    fn entry_json_is_the_reference_map_json() {
        let scrubbers = [
            Scrubber::default(),
            // Sensitive names that hit summary keys, scope fields included.
            Scrubber::new(
                ["route", "model", "action", "actor", "user_id", "name"],
                [] as [&str; 0],
                [] as [&str; 0],
            )
            .unwrap(),
        ];
        let events = [
            json!({"event_type": "model.update", "request_id": "r1", "session.id": "s",
                   "user.id": "7", "source.address": "1.2.3.4", "http.route": "/a/{id}",
                   "http.response.status_code": "404", "changed_fields": ["password"],
                   "object_id": "", "actor": {"id": 1, "name": "n", "token": "t"},
                   "target": {"app": "auth", "secret": "x", "object_id": 3}, "password": "hunter2",
                   "model": {"token": "x", "k": [{"secret": 1}]}, "action": "update",
                   "crud_action": "u", "app_label": "a", "model_label": "m", "username": "bob",
                   "route_name": "rn", "route_pattern": "/a/{id}"}),
            json!({"event_type": "http.response", "status": 200}),
            json!({"event_type": "x", "actor": {"token": "t"}, "target": {}}),
        ];
        for scrubber in &scrubbers {
            for ev in &events {
                let e = AuditEvent::from_attributes(ev.as_object().cloned().unwrap()).unwrap();
                let want = reference(&e, scrubber);
                let got = build_entry(&e, scrubber);
                assert_eq!(
                    got.to_json().unwrap(),
                    serde_json::to_string(&want).unwrap()
                );
                assert_eq!(build_summary(&e, scrubber), want);
            }
        }
    }
}
