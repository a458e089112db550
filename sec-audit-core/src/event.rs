//! The audit event: an `event_type` and a flat map of OTel-style attributes.
//!
//! See the crate README and `docs/ARCHITECTURE.md` for the contract this
//! follows: aliasing of five OTel keys into their raw forms, `field()` lookup
//! through flat then nested keys, and typed accessors that never fail.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::client_ip::parse_ip_token;

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
///
/// The fields every pass reads (request id, client address, user, session,
/// method, path, routes, status code) are resolved once, when the event is
/// built, into typed slots; their accessors read a slot instead of looking
/// keys up in the attribute map. The attributes stay the event's contract
/// (plugins, summaries, `field` lookups) and are never changed after
/// construction, so the slots always agree with them.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    event_type: String,
    attributes: Map<String, Value>,
    slots: Slots,
}

/// The resolved fields, in [`Slots::text`] order.
#[derive(Debug, Clone, Copy)]
enum Slot {
    RequestId,
    Srcip,
    UserId,
    SessionId,
    Username,
    Route,
    Method,
    Path,
    Url,
    RoutePattern,
    RouteName,
    /// The ip scope value: the client address as the ingress check reads
    /// it, in canonical text; empty when `srcip` is not an address.
    IpKey,
}

const SLOTS: usize = 12;

/// Every slot's text in one buffer (one allocation per event), the status
/// code and the parsed client address.
#[derive(Debug, Clone, PartialEq)]
struct Slots {
    text: String,
    spans: [(u32, u32); SLOTS],
    status_code: i64,
    client_ip: Option<IpAddr>,
    /// Whether [`AuditEvent::body`] finds an object (most events have
    /// none, and then it costs one branch).
    has_body: bool,
}

/// An IPv4-mapped IPv6 address is the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl Slots {
    fn resolve(attributes: &Map<String, Value>) -> Slots {
        let text_of = |key: &str| value_text(lookup(attributes, key));
        let first_text = |keys: &[&str]| {
            keys.iter()
                .map(|k| text_of(k))
                .find(|t| !t.is_empty())
                .unwrap_or(Cow::Borrowed(""))
        };
        let srcip = text_of("srcip");
        let t = srcip.trim();
        let client_ip = parse_ip_token(t).map(canonical_ip);
        let ip_key: Cow<'_, str> = match client_ip {
            // Bare digits and dots parse only from the canonical IPv4 text
            // (four decimal octets, no leading zeros): it is the key.
            Some(IpAddr::V4(_)) if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                Cow::Borrowed(t)
            }
            Some(ip) => Cow::Owned(ip.to_string()),
            None => Cow::Borrowed(""),
        };
        let texts: [Cow<'_, str>; SLOTS] = [
            text_of("request_id"),
            srcip.clone(),
            text_of("user_id"),
            text_of("session_id"),
            text_of("username"),
            text_of("route"),
            first_text(&["http.request.method", "method"]),
            first_text(&["url.path", "path"]),
            first_text(&["url.full", "url"]),
            first_text(&["http.route", "route_pattern", "route"]),
            first_text(&["http.route_name", "route_name"]),
            ip_key.clone(),
        ];
        let mut text = String::with_capacity(texts.iter().map(|t| t.len()).sum());
        let mut spans = [(0u32, 0u32); SLOTS];
        for (span, t) in spans.iter_mut().zip(texts.iter()) {
            // A slot longer than 4 GiB (no input line is) stays empty and
            // its accessor falls back to the map.
            let (Ok(start), Ok(len)) = (u32::try_from(text.len()), u32::try_from(t.len())) else {
                *span = (0, u32::MAX);
                continue;
            };
            text.push_str(t);
            *span = (start, len);
        }
        let status_code = ["http.response.status_code", "status_code", "status"]
            .iter()
            .find_map(|k| lookup(attributes, k).and_then(value_as_i64))
            .unwrap_or(0);
        Slots {
            text,
            spans,
            status_code,
            client_ip,
            has_body: body_of(attributes).is_some(),
        }
    }

    /// The slot's text; `None` only for a slot too long to keep.
    fn get(&self, slot: Slot) -> Option<&str> {
        let (start, len) = self.spans[slot as usize];
        if len == u32::MAX {
            return None;
        }
        self.text.get(start as usize..start as usize + len as usize)
    }
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
        let slots = Slots::resolve(&attributes);
        Ok(AuditEvent {
            event_type,
            attributes,
            slots,
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

    /// A resolved slot, or (for a slot too long to keep) what `fallback`
    /// reads from the map.
    fn slot<'a>(&'a self, slot: Slot, fallback: impl FnOnce() -> Cow<'a, str>) -> Cow<'a, str> {
        match self.slots.get(slot) {
            Some(t) => Cow::Borrowed(t),
            None => fallback(),
        }
    }

    pub fn request_id(&self) -> Cow<'_, str> {
        self.slot(Slot::RequestId, || self.text("request_id"))
    }
    /// Resolved client IP (`source.address` / `srcip`), as text.
    pub fn srcip(&self) -> Cow<'_, str> {
        self.slot(Slot::Srcip, || self.text("srcip"))
    }
    /// The client address of [`AuditEvent::srcip`], parsed as the ingress
    /// check parses a peer address (`ip:port`, `[v6]` accepted) and
    /// canonical (an IPv4-mapped IPv6 address is the IPv4 address); `None`
    /// when it is not an address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.slots.client_ip
    }
    /// [`AuditEvent::client_ip`] as the `ip` scope's value: the canonical
    /// text (the logged text itself when that is canonical IPv4); empty
    /// when there is no address.
    pub fn client_ip_key(&self) -> Cow<'_, str> {
        self.slot(Slot::IpKey, || {
            Cow::Owned(
                self.client_ip()
                    .map(|ip| ip.to_string())
                    .unwrap_or_default(),
            )
        })
    }
    pub fn user_id(&self) -> Cow<'_, str> {
        self.slot(Slot::UserId, || self.text("user_id"))
    }
    pub fn session_id(&self) -> Cow<'_, str> {
        self.slot(Slot::SessionId, || self.text("session_id"))
    }
    /// `username` as text (no alias: `user.name` is not read here).
    pub fn username(&self) -> Cow<'_, str> {
        self.slot(Slot::Username, || self.text("username"))
    }
    /// `route` as text (`http.route` fills it when it is empty).
    pub fn route(&self) -> Cow<'_, str> {
        self.slot(Slot::Route, || self.text("route"))
    }
    pub fn method(&self) -> Cow<'_, str> {
        self.slot(Slot::Method, || {
            self.first_text(&["http.request.method", "method"])
        })
    }
    pub fn path(&self) -> Cow<'_, str> {
        self.slot(Slot::Path, || self.first_text(&["url.path", "path"]))
    }
    pub fn url(&self) -> Cow<'_, str> {
        self.slot(Slot::Url, || self.first_text(&["url.full", "url"]))
    }
    /// Route template: `http.route`, else `route_pattern`, else `route`.
    pub fn route_pattern(&self) -> Cow<'_, str> {
        self.slot(Slot::RoutePattern, || {
            self.first_text(&["http.route", "route_pattern", "route"])
        })
    }
    pub fn route_name(&self) -> Cow<'_, str> {
        self.slot(Slot::RouteName, || {
            self.first_text(&["http.route_name", "route_name"])
        })
    }
    /// Status code from an integer or a numeric string; 0 when absent or odd.
    pub fn status_code(&self) -> i64 {
        self.slots.status_code
    }
    /// The parsed request body when it is an object.
    pub fn body(&self) -> Option<&Map<String, Value>> {
        if !self.slots.has_body {
            return None;
        }
        body_of(&self.attributes)
    }
}

/// The body an event's attributes carry: `request.body`, else `body`,
/// when it is an object.
fn body_of(attributes: &Map<String, Value>) -> Option<&Map<String, Value>> {
    for k in ["request.body", "body"] {
        if let Some(Value::Object(m)) = lookup(attributes, k) {
            return Some(m);
        }
    }
    None
}

/// `field()` lookup over any attribute map: flat key first, then nested walk.
/// Null counts as absent.
pub fn lookup<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    lookup_with(|k| map.get(k), key)
}

/// [`lookup`] over any object whose top-level keys `get` reads (an
/// attribute map, a history entry): the flat key `key` when present and
/// not null, else the walk through nested objects along its dot-separated
/// parts; null counts as absent.
pub fn lookup_with<'a>(get: impl Fn(&str) -> Option<&'a Value>, key: &str) -> Option<&'a Value> {
    match get(key) {
        Some(Value::Null) => {}
        Some(v) => return Some(v),
        None => {}
    }
    if !key.contains('.') {
        return None;
    }
    let mut parts = key.split('.');
    let mut cur = get(parts.next()?)?;
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

    /// What each slot accessor returned before the slots: the map lookups.
    fn uncached(e: &AuditEvent) -> Vec<String> {
        let first = |keys: &[&str]| {
            keys.iter()
                .map(|k| e.text(k).into_owned())
                .find(|t| !t.is_empty())
                .unwrap_or_default()
        };
        let status = ["http.response.status_code", "status_code", "status"]
            .iter()
            .find_map(|k| e.field(k).and_then(value_as_i64))
            .unwrap_or(0);
        vec![
            e.text("request_id").into_owned(),
            e.text("srcip").into_owned(),
            e.text("user_id").into_owned(),
            e.text("session_id").into_owned(),
            e.text("username").into_owned(),
            e.text("route").into_owned(),
            first(&["http.request.method", "method"]),
            first(&["url.path", "path"]),
            first(&["url.full", "url"]),
            first(&["http.route", "route_pattern", "route"]),
            first(&["http.route_name", "route_name"]),
            status.to_string(),
            format!("{:?}", body_of(e.attributes())),
        ]
    }

    fn cached(e: &AuditEvent) -> Vec<String> {
        vec![
            e.request_id().into_owned(),
            e.srcip().into_owned(),
            e.user_id().into_owned(),
            e.session_id().into_owned(),
            e.username().into_owned(),
            e.route().into_owned(),
            e.method().into_owned(),
            e.path().into_owned(),
            e.url().into_owned(),
            e.route_pattern().into_owned(),
            e.route_name().into_owned(),
            e.status_code().to_string(),
            format!("{:?}", e.body()),
        ]
    }

    #[test]
    fn slots_agree_with_the_map_lookups_they_replace() {
        let events = [
            json!({"event_type": "x"}),
            json!({"event_type": "x", "request_id": 17, "source.address": "203.0.113.9",
                   "user.id": 7, "session.id": "s", "username": "bob", "http.route": "/a/{id}",
                   "http.request.method": "POST", "method": "GET", "url.path": "", "path": "/p",
                   "url": {"full": "http://h/p"}, "route_pattern": "/rp", "http.route_name": "n",
                   "http.response.status_code": "nope", "status_code": "404"}),
            json!({"event_type": "x", "srcip": true, "user_id": 1.5, "route": "/r",
                   "http": {"request": {"method": "DELETE"}, "route": null},
                   "url": {"path": "/nested"}, "status": 201.0}),
            json!({"event_type": "x", "source": {"address": "::ffff:10.0.0.1"}, "srcip": "",
                   "request_id": "  padded  ", "status_code": {"no": 1}}),
            json!({"event_type": "x", "srcip": "[2001:db8::1]:443", "path": 5}),
            json!({"event_type": "x", "request.body": {"a": 1}, "body": {"b": 2}}),
            json!({"event_type": "x", "request.body": "text", "body": {"b": 2}}),
            json!({"event_type": "x", "request": {"body": {"n": 1}}}),
            json!({"event_type": "x", "request.body": null, "request": {"body": {"n": 2}}}),
            json!({"event_type": "x", "body": [1]}),
        ];
        for v in events {
            let e = ev(v.clone());
            assert_eq!(cached(&e), uncached(&e), "{v}");
        }
    }

    #[test]
    fn the_client_address_is_parsed_once_and_canonical() {
        let cases = [
            ("203.0.113.9", Some("203.0.113.9")),
            (" 203.0.113.9 ", Some("203.0.113.9")),
            ("203.0.113.9:8080", Some("203.0.113.9")),
            ("::ffff:198.51.100.7", Some("198.51.100.7")),
            ("[2001:DB8::1]:443", Some("2001:db8::1")),
            ("999.1.1.1", None),
            ("203.0.113.014", None),
            ("not-an-ip", None),
            ("", None),
        ];
        for (raw, want) in cases {
            let e = ev(json!({"event_type": "x", "source.address": raw}));
            assert_eq!(
                e.client_ip().map(|ip| ip.to_string()).as_deref(),
                want,
                "{raw}"
            );
            assert_eq!(e.client_ip_key(), want.unwrap_or(""), "{raw}");
        }
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
