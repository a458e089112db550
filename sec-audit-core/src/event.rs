//! The audit event: an `event_type` and a flat map of OTel-style attributes.
//!
//! See the crate README and `docs/ARCHITECTURE.md` for the contract this
//! follows: aliasing of five OTel keys into their raw forms, `field()` lookup
//! through flat then nested keys, and typed accessors that never fail.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// OTel keys that fill their raw alias when the raw key is absent or empty.
pub const ALIASES: [(&str, &str); 5] = [
    ("session.id", "session_id"),
    ("user.id", "user_id"),
    ("source.address", "srcip"),
    ("http.route", "route"),
    ("http.route_name", "route_name"),
];

/// Why an input line or attribute map is not an audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("line is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("line is not a JSON object")]
    NotAnObject,
    #[error("`attributes` is present but is not an object")]
    AttributesNotAnObject,
    #[error("event has no non-empty string `event_type`")]
    MissingEventType,
}

impl EventError {
    /// A short, stable name of the error kind, safe to put in an emitted event.
    pub fn kind(&self) -> &'static str {
        match self {
            EventError::InvalidJson(_) => "invalid_json",
            EventError::NotAnObject => "not_an_object",
            EventError::AttributesNotAnObject => "attributes_not_an_object",
            EventError::MissingEventType => "missing_event_type",
        }
    }
}

/// One audit event. Cheap to read: every accessor borrows from the event.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    event_type: String,
    attributes: Map<String, Value>,
}

fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

impl AuditEvent {
    /// Builds an event from its attributes. The `event_type` attribute must be
    /// a non-empty string. Aliases are filled (see [`ALIASES`]).
    pub fn from_attributes(mut attributes: Map<String, Value>) -> Result<Self, EventError> {
        let event_type = match attributes.get("event_type") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => return Err(EventError::MissingEventType),
        };
        for (otel, raw) in ALIASES {
            if is_empty_value(attributes.get(raw)) && !is_empty_value(attributes.get(otel)) {
                if let Some(v) = attributes.get(otel).cloned() {
                    attributes.insert(raw.to_string(), v);
                }
            }
        }
        Ok(AuditEvent {
            event_type,
            attributes,
        })
    }

    /// Builds an event of `event_type` from attributes; the `event_type`
    /// attribute is set to match.
    pub fn new(
        event_type: impl Into<String>,
        mut attributes: Map<String, Value>,
    ) -> Result<Self, EventError> {
        attributes.insert("event_type".into(), Value::String(event_type.into()));
        Self::from_attributes(attributes)
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// All attributes, aliases filled.
    pub fn attributes(&self) -> &Map<String, Value> {
        &self.attributes
    }

    /// Consumes the event, returning its attributes.
    pub fn into_attributes(self) -> Map<String, Value> {
        self.attributes
    }

    /// The flat key `key` if present and not null; otherwise the walk through
    /// nested objects along the dot-separated parts of `key`.
    pub fn field(&self, key: &str) -> Option<&Value> {
        lookup(&self.attributes, key)
    }

    /// The value of `key` as text: strings as they are, numbers and booleans
    /// formatted, anything else (or absent) empty.
    pub fn text(&self, key: &str) -> Cow<'_, str> {
        value_text(self.field(key))
    }

    fn first_text(&self, keys: &[&str]) -> Cow<'_, str> {
        for k in keys {
            let t = self.text(k);
            if !t.is_empty() {
                return t;
            }
        }
        Cow::Borrowed("")
    }

    pub fn request_id(&self) -> Cow<'_, str> {
        self.text("request_id")
    }
    /// Resolved client IP (`source.address` / `srcip`), as text.
    pub fn srcip(&self) -> Cow<'_, str> {
        self.text("srcip")
    }
    pub fn user_id(&self) -> Cow<'_, str> {
        self.text("user_id")
    }
    pub fn session_id(&self) -> Cow<'_, str> {
        self.text("session_id")
    }
    pub fn method(&self) -> Cow<'_, str> {
        self.first_text(&["http.request.method", "method"])
    }
    pub fn path(&self) -> Cow<'_, str> {
        self.first_text(&["url.path", "path"])
    }
    pub fn url(&self) -> Cow<'_, str> {
        self.first_text(&["url.full", "url"])
    }
    /// Route template: `http.route`, else `route_pattern`, else `route`.
    pub fn route_pattern(&self) -> Cow<'_, str> {
        self.first_text(&["http.route", "route_pattern", "route"])
    }
    pub fn route_name(&self) -> Cow<'_, str> {
        self.first_text(&["http.route_name", "route_name"])
    }
    /// Status code from an integer or a numeric string; 0 when absent or odd.
    pub fn status_code(&self) -> i64 {
        for k in ["http.response.status_code", "status_code", "status"] {
            if let Some(v) = self.field(k) {
                if let Some(n) = value_as_i64(v) {
                    return n;
                }
            }
        }
        0
    }
    /// The parsed request body when it is an object.
    pub fn body(&self) -> Option<&Map<String, Value>> {
        for k in ["request.body", "body"] {
            if let Some(Value::Object(m)) = self.field(k) {
                return Some(m);
            }
        }
        None
    }
}

/// `field()` lookup over any attribute map: flat key first, then nested walk.
/// Null counts as absent.
pub fn lookup<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    match map.get(key) {
        Some(Value::Null) => {}
        Some(v) => return Some(v),
        None => {}
    }
    if !key.contains('.') {
        return None;
    }
    let mut parts = key.split('.');
    let mut cur = map.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    if cur.is_null() {
        None
    } else {
        Some(cur)
    }
}

/// A value as text: strings borrowed, numbers and booleans formatted,
/// anything else empty.
pub fn value_text(v: Option<&Value>) -> Cow<'_, str> {
    match v {
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::Number(n)) => Cow::Owned(n.to_string()),
        Some(Value::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        _ => Cow::Borrowed(""),
    }
}

/// An integer from an integer, an integral float or a numeric string.
pub fn value_as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
}

/// One parsed input line: the event and the record's `timestamp` (integer
/// nanoseconds since the epoch) when it had one.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    pub event: AuditEvent,
    pub timestamp_ns: Option<i64>,
}

/// Parses one input line: an OTel log record with an `attributes` object (the
/// event is the attributes, the time is the record's `timestamp`), or a bare
/// attribute object with `event_type` (and optionally `timestamp`).
pub fn parse_line(line: &str) -> Result<ParsedLine, EventError> {
    let value: Value = serde_json::from_str(line.trim_end_matches(['\r', '\n']))
        .map_err(|e| EventError::InvalidJson(format!("line {} column {}", e.line(), e.column())))?;
    parse_value(value)
}

/// Like [`parse_line`], from an already decoded JSON value.
pub fn parse_value(value: Value) -> Result<ParsedLine, EventError> {
    let Value::Object(mut obj) = value else {
        return Err(EventError::NotAnObject);
    };
    let timestamp_ns = obj.get("timestamp").and_then(integer_ns);
    match obj.remove("attributes") {
        Some(Value::Object(attrs)) => Ok(ParsedLine {
            event: AuditEvent::from_attributes(attrs)?,
            timestamp_ns,
        }),
        Some(_) => Err(EventError::AttributesNotAnObject),
        None => Ok(ParsedLine {
            event: AuditEvent::from_attributes(obj)?,
            timestamp_ns,
        }),
    }
}

fn integer_ns(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: Value) -> AuditEvent {
        AuditEvent::from_attributes(v.as_object().cloned().unwrap_or_default()).unwrap()
    }

    #[test]
    fn otel_keys_fill_empty_raw_aliases_but_explicit_raw_wins() {
        let e = ev(
            json!({"event_type": "x", "source.address": "1.2.3.4", "srcip": "",
                          "user.id": 7, "user_id": "explicit", "http.route": "/a/{id}",
                          "session.id": "s1", "http.route_name": "a-detail"}),
        );
        assert_eq!(e.srcip(), "1.2.3.4");
        assert_eq!(e.user_id(), "explicit");
        assert_eq!(e.session_id(), "s1");
        assert_eq!(e.text("route"), "/a/{id}");
        assert_eq!(e.text("route_name"), "a-detail");
    }

    #[test]
    fn user_name_is_not_aliased_to_username() {
        let e = ev(json!({"event_type": "auth.login.failed", "user.name": "victim"}));
        assert_eq!(e.text("username"), "");
        assert_eq!(e.text("user.name"), "victim");
    }

    #[test]
    fn field_prefers_flat_then_nested_and_null_is_absent() {
        let e = ev(
            json!({"event_type": "x", "a.b": 1, "a": {"b": 2, "c": {"d": "deep"}},
                          "n": null, "x": {"y": null}}),
        );
        assert_eq!(e.field("a.b"), Some(&json!(1)));
        assert_eq!(e.field("a.c.d"), Some(&json!("deep")));
        assert_eq!(e.field("n"), None);
        assert_eq!(e.field("x.y"), None);
        assert_eq!(e.field("a.b.c"), None);
        assert_eq!(e.field("missing.key"), None);
        let e2 = ev(json!({"event_type": "x", "a.b": null, "a": {"b": 3}}));
        assert_eq!(e2.field("a.b"), Some(&json!(3)));
    }

    #[test]
    fn typed_accessors_accept_either_form_and_never_fail() {
        let e = ev(
            json!({"event_type": "x", "status": "404", "method": "GET", "path": "/p",
                          "url": "http://h/p", "route_pattern": "/r/{id}", "body": {"amount": 1}}),
        );
        assert_eq!(e.status_code(), 404);
        assert_eq!(e.method(), "GET");
        assert_eq!(e.path(), "/p");
        assert_eq!(e.url(), "http://h/p");
        assert_eq!(e.route_pattern(), "/r/{id}");
        assert!(e.body().is_some());
        let odd = ev(
            json!({"event_type": "x", "http.response.status_code": {"no": 1},
                            "url.path": 5, "request.body": "text"}),
        );
        assert_eq!(odd.status_code(), 0);
        assert_eq!(odd.path(), "5");
        assert!(odd.body().is_none());
        assert_eq!(odd.method(), "");
        let f = ev(json!({"event_type": "x", "http.response.status_code": 401.0}));
        assert_eq!(f.status_code(), 401);
    }

    #[test]
    fn parse_both_shapes_and_reject_the_rest() {
        let otel = r#"{"timestamp": 5, "body": "b", "attributes": {"event_type": "auth.login.failed", "srcip": "1.1.1.1"}}"#;
        let p = parse_line(otel).unwrap();
        assert_eq!(p.event.event_type(), "auth.login.failed");
        assert_eq!(p.timestamp_ns, Some(5));
        let bare = r#"{"event_type": "model.update", "timestamp": 9}"#;
        let p = parse_line(bare).unwrap();
        assert_eq!(p.event.event_type(), "model.update");
        assert_eq!(p.timestamp_ns, Some(9));
        assert!(matches!(parse_line("{"), Err(EventError::InvalidJson(_))));
        assert_eq!(parse_line("[1,2]"), Err(EventError::NotAnObject));
        assert_eq!(parse_line("\"s\""), Err(EventError::NotAnObject));
        assert_eq!(
            parse_line(r#"{"attributes": 3}"#),
            Err(EventError::AttributesNotAnObject)
        );
        assert_eq!(
            parse_line(r#"{"attributes": {"event_type": ""}}"#),
            Err(EventError::MissingEventType)
        );
        assert_eq!(
            parse_line(r#"{"event_type": 5}"#),
            Err(EventError::MissingEventType)
        );
        let p = parse_line(r#"{"event_type": "x", "timestamp": "12"}"#).unwrap();
        assert_eq!(p.timestamp_ns, None);
    }

    #[test]
    fn odd_values_flow_through() {
        let long = "/".to_string() + &"a".repeat(5000);
        let mut deep = json!("leaf");
        for _ in 0..200 {
            deep = json!({ "k": deep });
        }
        let e = ev(
            json!({"event_type": "http.response.success", "source.address": "not-an-ip",
                          "url.path": long, "nested": deep, "user.name": "üser☃",
                          "http.response.status_code": "NaN"}),
        );
        assert_eq!(e.srcip(), "not-an-ip");
        assert_eq!(e.path().len(), 5001);
        assert_eq!(e.status_code(), 0);
        assert!(e.field("nested.k.k.k.k").is_some());
    }
}
