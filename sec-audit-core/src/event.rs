//! The audit event: an `event_type` and a flat map of OTel-style attributes.
//!
//! See the crate README and `docs/ARCHITECTURE.md` for the contract this
//! follows: aliasing of five OTel keys into their raw forms, `field()` lookup
//! through flat then nested keys, and typed accessors that never fail.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::attributes::{AttrKey, Attributes, Known};
use crate::client_ip::parse_ip_token;

/// OTel keys that fill their raw alias when the raw key is absent or empty.
pub const ALIASES: [(&str, &str); 5] = [
    ("session.id", "session_id"),
    ("user.id", "user_id"),
    ("source.address", "srcip"),
    ("http.route", "route"),
    ("http.route_name", "route_name"),
];

/// [`ALIASES`] as known keys.
const KNOWN_ALIASES: [(Known, Known); 5] = [
    (Known::SessionDotId, Known::SessionId),
    (Known::UserDotId, Known::UserId),
    (Known::SourceAddress, Known::Srcip),
    (Known::HttpRoute, Known::Route),
    (Known::HttpRouteName, Known::RouteName),
];

/// The event types of the contract, interned: an event of one of these
/// types carries its index ([`AuditEvent::event_type_id`]), so a consumer
/// that resolved its own types once compares numbers, not strings. Sorted
/// bytewise (a test checks it).
pub const EVENT_TYPES: [&str; 13] = [
    "audit.http.request.pre",
    "auth.login.failed",
    "auth.login.success",
    "auth.logout.success",
    "auth.logout.unknown",
    "http.response.client_error",
    "http.response.redirect",
    "http.response.server_error",
    "http.response.success",
    "model.access",
    "model.create",
    "model.delete",
    "model.update",
];

/// The index of `event_type` in [`EVENT_TYPES`].
pub fn event_type_id(event_type: &str) -> Option<u16> {
    EVENT_TYPES
        .binary_search(&event_type)
        .ok()
        .and_then(|i| u16::try_from(i).ok())
}

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
/// The attributes are a compact map sorted by key ([`Attributes`]): known
/// keys are not allocated and their positions are resolved. The fields
/// every pass reads (request id, client address, user, session, method,
/// path, routes, status code) are resolved once, when the event is built,
/// into typed slots: a slot points at the attribute string it reads (no
/// copy), or at a text the event keeps for it (a formatted number, a
/// nested value, the canonical address). The attributes stay the event's
/// contract (plugins, summaries, `field` lookups) and are never changed
/// after construction, so the slots always agree with them.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    attributes: Attributes,
    slots: Slots,
    /// The event type's index in [`EVENT_TYPES`].
    event_type_id: Option<u16>,
}

/// The resolved fields, in [`Slots::texts`] order.
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

/// Where a slot's text is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SlotText {
    Empty,
    /// The string attribute at this position of the attributes.
    Attribute(u32),
    /// This span of [`Slots::text`].
    Kept(u32, u32),
    /// Too long to keep a span of: the accessor reads the map.
    Lookup,
}

/// Every slot's text, the status code and the parsed client address.
#[derive(Debug, Clone, PartialEq)]
struct Slots {
    texts: [SlotText; SLOTS],
    /// The texts a slot cannot borrow from an attribute string (empty,
    /// with no allocation, for most events).
    text: String,
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

/// A resolved text before it is placed: borrowed from the attribute at a
/// position, or a text to keep.
enum Found<'a> {
    Empty,
    Attribute(usize, &'a str),
    Text(Cow<'a, str>),
}

impl Found<'_> {
    fn as_str(&self) -> &str {
        match self {
            Found::Empty => "",
            Found::Attribute(_, s) => s,
            Found::Text(t) => t,
        }
    }
}

/// `value_text(lookup(attributes, key))`, keeping where the text is.
fn find_text(attributes: &Attributes, key: Known) -> Found<'_> {
    if let Some(at) = attributes.position(key) {
        match attributes.value_at(at) {
            Some(Value::Null) | None => {}
            Some(Value::String(s)) if s.is_empty() => return Found::Empty,
            Some(Value::String(s)) => return Found::Attribute(at, s),
            v => return text_found(v),
        }
    }
    if !key.as_str().contains('.') {
        return Found::Empty;
    }
    text_found(lookup_with(|k| attributes.get(k), key.as_str()))
}

fn text_found(v: Option<&Value>) -> Found<'_> {
    let t = value_text(v);
    if t.is_empty() {
        Found::Empty
    } else {
        Found::Text(t)
    }
}

/// The first non-empty of [`find_text`] over `keys`.
fn find_first<'a>(attributes: &'a Attributes, keys: &[Known]) -> Found<'a> {
    for k in keys {
        let found = find_text(attributes, *k);
        if !matches!(found, Found::Empty) {
            return found;
        }
    }
    Found::Empty
}

impl Slots {
    fn resolve(attributes: &Attributes) -> Slots {
        let srcip = find_text(attributes, Known::Srcip);
        let t = srcip.as_str().trim();
        let client_ip = parse_ip_token(t).map(canonical_ip);
        let ip_key = match client_ip {
            // Bare digits and dots parse only from the canonical IPv4 text
            // (four decimal octets, no leading zeros): it is the key.
            Some(IpAddr::V4(_)) if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                match &srcip {
                    Found::Attribute(at, s) if s.len() == t.len() => Found::Attribute(*at, s),
                    _ => Found::Text(Cow::Owned(t.to_string())),
                }
            }
            Some(ip) => Found::Text(Cow::Owned(ip.to_string())),
            None => Found::Empty,
        };
        let found: [Found<'_>; SLOTS] = [
            find_text(attributes, Known::RequestId),
            srcip,
            find_text(attributes, Known::UserId),
            find_text(attributes, Known::SessionId),
            find_text(attributes, Known::Username),
            find_text(attributes, Known::Route),
            find_first(attributes, &[Known::HttpRequestMethod, Known::Method]),
            find_first(attributes, &[Known::UrlPath, Known::Path]),
            find_first(attributes, &[Known::UrlFull, Known::Url]),
            find_first(
                attributes,
                &[Known::HttpRoute, Known::RoutePattern, Known::Route],
            ),
            find_first(attributes, &[Known::HttpRouteName, Known::RouteName]),
            ip_key,
        ];
        let mut text = String::new();
        let mut texts = [SlotText::Empty; SLOTS];
        for (slot, f) in texts.iter_mut().zip(found) {
            *slot = match f {
                Found::Empty => SlotText::Empty,
                Found::Attribute(at, _) => match u32::try_from(at) {
                    Ok(at) => SlotText::Attribute(at),
                    Err(_) => SlotText::Lookup,
                },
                Found::Text(t) => {
                    match (u32::try_from(text.len()), u32::try_from(t.len())) {
                        (Ok(start), Ok(len)) => {
                            text.push_str(&t);
                            SlotText::Kept(start, len)
                        }
                        // A text longer than 4 GiB (no input line is):
                        // the accessor reads the map.
                        _ => SlotText::Lookup,
                    }
                }
            };
        }
        let status_code = [
            Known::HttpResponseStatusCode,
            Known::StatusCode,
            Known::Status,
        ]
        .iter()
        .find_map(|k| {
            match attributes.known(*k) {
                Some(Value::Null) | None => lookup_with(|k| attributes.get(k), k.as_str()),
                v => v,
            }
            .and_then(value_as_i64)
        })
        .unwrap_or(0);
        Slots {
            texts,
            text,
            status_code,
            client_ip,
            has_body: body_of(attributes).is_some(),
        }
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
    pub fn from_attributes(attributes: Map<String, Value>) -> Result<Self, EventError> {
        Self::from_compact(Attributes::from_map(attributes))
    }

    /// [`AuditEvent::from_attributes`] from the compact form.
    pub fn from_compact(mut attributes: Attributes) -> Result<Self, EventError> {
        let event_type_id = match attributes.known(Known::EventType) {
            Some(Value::String(s)) if !s.trim().is_empty() => event_type_id(s),
            _ => return Err(EventError::MissingEventType),
        };
        for (otel, raw) in KNOWN_ALIASES {
            if is_empty_value(attributes.known(raw)) && !is_empty_value(attributes.known(otel)) {
                if let Some(v) = attributes.known(otel).cloned() {
                    attributes.insert_known(raw, v);
                }
            }
        }
        let slots = Slots::resolve(&attributes);
        Ok(AuditEvent {
            attributes,
            slots,
            event_type_id,
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
        self.attributes
            .known(Known::EventType)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The event type interned: its index in [`EVENT_TYPES`], when it is
    /// one of them.
    pub fn event_type_id(&self) -> Option<u16> {
        self.event_type_id
    }

    /// All attributes, aliases filled.
    pub fn attributes(&self) -> &Attributes {
        &self.attributes
    }

    /// Consumes the event, returning its attributes as a JSON map.
    pub fn into_attributes(self) -> Map<String, Value> {
        self.attributes.into_map()
    }

    /// The value of a known key (the flat key; no nested walk).
    pub fn known(&self, key: Known) -> Option<&Value> {
        self.attributes.known(key)
    }

    /// The flat key `key` if present and not null; otherwise the walk through
    /// nested objects along the dot-separated parts of `key`.
    pub fn field(&self, key: &str) -> Option<&Value> {
        lookup_with(|k| self.attributes.get(k), key)
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
        let text = match self.slots.texts[slot as usize] {
            SlotText::Empty => Some(""),
            SlotText::Attribute(at) => self
                .attributes
                .value_at(at as usize)
                .and_then(Value::as_str),
            SlotText::Kept(start, len) => self
                .slots
                .text
                .get(start as usize..start as usize + len as usize),
            SlotText::Lookup => None,
        };
        match text {
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
fn body_of(attributes: &Attributes) -> Option<&Map<String, Value>> {
    for k in ["request.body", "body"] {
        if let Some(Value::Object(m)) = lookup_with(|k| attributes.get(k), k) {
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
///
/// The line is parsed once, straight into the event's compact attributes:
/// keys are read borrowed from the line (a known key is never allocated),
/// and no intermediate map is built. It accepts and rejects exactly what
/// decoding the line into a `serde_json::Value` and [`parse_value`] do.
pub fn parse_line(line: &str) -> Result<ParsedLine, EventError> {
    let text = line.trim_end_matches(['\r', '\n']);
    let mut de = serde_json::Deserializer::from_str(text);
    let record = RecordSeed
        .deserialize(&mut de)
        .and_then(|record| de.end().map(|()| record))
        .map_err(|e| EventError::InvalidJson(format!("line {} column {}", e.line(), e.column())))?;
    record.into_parsed()
}

/// What the top level of a line held.
enum Record {
    NotAnObject,
    Object {
        /// Every top-level entry but `attributes` (the event, when there
        /// is no `attributes`).
        top: Vec<(AttrKey, Value)>,
        /// The last `attributes` entry: its entries, or `None` when it
        /// was not an object.
        attributes: Option<Option<Vec<(AttrKey, Value)>>>,
    },
}

impl Record {
    fn into_parsed(self) -> Result<ParsedLine, EventError> {
        let Record::Object { top, attributes } = self else {
            return Err(EventError::NotAnObject);
        };
        let top = Attributes::from_entries(top);
        let timestamp_ns = top.known(Known::Timestamp).and_then(integer_ns);
        let attributes = match attributes {
            Some(Some(entries)) => Attributes::from_entries(entries),
            Some(None) => return Err(EventError::AttributesNotAnObject),
            None => top,
        };
        Ok(ParsedLine {
            event: AuditEvent::from_compact(attributes)?,
            timestamp_ns,
        })
    }
}

/// Reads a top-level value.
struct RecordSeed;

impl<'de> DeserializeSeed<'de> for RecordSeed {
    type Value = Record;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Record, D::Error> {
        d.deserialize_any(RecordVisitor)
    }
}

struct RecordVisitor;

/// The visits of a value that is not an object: `$outcome` after reading
/// it in full (an array's elements as `Value`s, so that what is rejected
/// stays what decoding into a `Value` rejects).
macro_rules! not_an_object {
    ($outcome:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($outcome)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($outcome)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($outcome)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($outcome)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok($outcome)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($outcome)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<Value>()?.is_some() {}
            Ok($outcome)
        }
    };
}

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    not_an_object!(Record::NotAnObject);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record, A::Error> {
        let mut top = Vec::new();
        let mut attributes = None;
        while let Some(key) = map.next_key_seed(AttrKeySeed)? {
            match key {
                AttrKey::Known(Known::Attributes) => {
                    attributes = Some(map.next_value_seed(AttributesSeed)?)
                }
                key => top.push((key, map.next_value::<Value>()?)),
            }
        }
        Ok(Record::Object { top, attributes })
    }
}

/// Reads the `attributes` value: its entries when it is an object.
struct AttributesSeed;

impl<'de> DeserializeSeed<'de> for AttributesSeed {
    type Value = Option<Vec<(AttrKey, Value)>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(AttributesSeed)
    }
}

impl<'de> Visitor<'de> for AttributesSeed {
    type Value = Option<Vec<(AttrKey, Value)>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    not_an_object!(None);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key_seed(AttrKeySeed)? {
            entries.push((key, map.next_value::<Value>()?));
        }
        Ok(Some(entries))
    }
}

/// Reads a key, not allocating a known one (`attributes` included).
struct AttrKeySeed;

impl<'de> DeserializeSeed<'de> for AttrKeySeed {
    type Value = AttrKey;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<AttrKey, D::Error> {
        d.deserialize_str(AttrKeySeed)
    }
}

impl<'de> Visitor<'de> for AttrKeySeed {
    type Value = AttrKey;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, key: &str) -> Result<AttrKey, E> {
        Ok(AttrKey::new(key))
    }
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

    /// How a line was parsed before the one-pass parser: into a `Value`,
    /// then [`parse_value`].
    fn parse_via_value(line: &str) -> Result<ParsedLine, EventError> {
        let value: Value =
            serde_json::from_str(line.trim_end_matches(['\r', '\n'])).map_err(|e| {
                EventError::InvalidJson(format!("line {} column {}", e.line(), e.column()))
            })?;
        parse_value(value)
    }

    #[test]
    fn the_one_pass_parser_agrees_with_decoding_into_a_value() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let deep_attr = format!(r#"{{"attributes": {{"event_type": "x", "d": {deep}}}}}"#);
        let deep_top = format!(r#"{{"body": {deep}, "attributes": {{"event_type": "x"}}}}"#);
        let lines = [
            r#"{"timestamp":1780000000021000000,"observed_timestamp":1,"severity_text":"INFO","severity_number":9,"body":"http.response","resource":{"service.name":"d"},"instrumentation_scope":{"name":"s","version":"0"},"attributes":{"event_type":"http.response.success","request_id":"req-7-000001","session.id":"sess-5a9196f0","source.address":"203.0.113.230","user.id":"6028","http.request.method":"GET","http.response.status_code":200,"url.path":"/api/accounts/100/","http.route":"/api/accounts/{id}/","http.route_name":"account-detail","action.name":"response","outcome":"success","duration_ns":84000000,"schema_version":"1.0"},"event_name":"http.response.success"}"#,
            r#"{"event_type": "model.update", "timestamp": 9, "changed_fields": ["a"], "srcip": "1.2.3.4"}"#,
            r#"{"event_type": "x", "timestamp": "12"}"#,
            r#"{"attributes": {"event_type": "x", "srcip": "a", "srcip": "b", "zA": 1, "é": 2}, "timestamp": 1, "timestamp": 2}"#,
            r#"{"attributes": {"event_type": "x"}, "attributes": {"event_type": "y"}}"#,
            r#"{"attributes": {"event_type": "x"}, "attributes": 3}"#,
            r#"{"attributes": 3, "attributes": {"event_type": "y"}}"#,
            r#"{"attributes": null}"#,
            r#"{"attributes": [1, 2]}"#,
            r#"{"attributes": "s"}"#,
            r#"{"attributes": {"event_type": ""}}"#,
            r#"{"attributes": {"event_type": "  "}}"#,
            r#"{"attributes": {"event_type": 5}}"#,
            r#"{"attributes": {}}"#,
            r#"{"event_type": "x", "attributes": {"srcip": "1.1.1.1"}}"#,
            r#"{"event_type": "x", "source": {"address": "10.0.0.1"}, "url": {"path": "/n"}, "http": {"response": {"status_code": "404"}}}"#,
            r#"{"event_type": "x", "srcip": " 10.0.0.1 ", "user.id": 7, "user_id": null}"#,
            r#"{"event_type": "x", "n": 1e999}"#,
            r#"{"body": 1e999, "attributes": {"event_type": "x"}}"#,
            r#"{"body": [1e999], "attributes": {"event_type": "x"}}"#,
            r#"[1e999]"#,
            r#"[1, {"a": 2}]"#,
            r#"{"event_type": "x"} trailing"#,
            r#"{"event_type": "x"}"#,
            "{\"event_type\": \"x\"}\r\n",
            "  {\"event_type\": \"x\"}  ",
            r#"{"event_type": "x""#,
            r#"{"event_type": "x",}"#,
            r#"{"event_type": "x", 1: 2}"#,
            r#""s""#,
            "null",
            "7",
            "",
            r#"{"event_type": "x", "big": 18446744073709551615, "neg": -9223372036854775808, "f": 0.1}"#,
            r#"{"event_type": "x", "bad": "\ud800"}"#,
            &deep_attr,
            &deep_top,
        ];
        for line in lines {
            let a = parse_line(line);
            let b = parse_via_value(line);
            assert_eq!(a, b, "{line}");
            if let (Ok(a), Ok(b)) = (&a, &b) {
                assert_eq!(
                    serde_json::to_string(a.event.attributes()).ok(),
                    serde_json::to_string(&b.event.attributes().to_map()).ok(),
                    "{line}"
                );
                assert_eq!(cached(&a.event), uncached(&b.event), "{line}");
            }
        }
    }

    #[test]
    fn contract_event_types_are_interned() {
        assert!(EVENT_TYPES.windows(2).all(|w| w[0] < w[1]));
        for (i, t) in EVENT_TYPES.iter().enumerate() {
            let e = ev(json!({ "event_type": t }));
            assert_eq!(e.event_type_id(), Some(i as u16), "{t}");
        }
        assert_eq!(
            ev(json!({"event_type": "custom.thing"})).event_type_id(),
            None
        );
        assert_eq!(
            ev(json!({"event_type": " model.update"})).event_type_id(),
            None
        );
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
