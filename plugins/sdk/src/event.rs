//! The event a rule sees, and history rows: read-only views over the host's
//! data, borrowed for the duration of one call. Nothing is copied until a
//! rule asks for a value.

use std::borrow::Cow;

use abi_stable::std_types::{RCowStr, RStr};
use serde_json::{Map, Number, Value};

use abi_stable::std_types::{RString, RVec};

use crate::ffi::{FfiAccessor, FfiEntry, FfiEventRef, FfiOwnedValue, FfiRowsBox, FfiValue};

/// One audit event (`docs/events.md`): an `event_type` and attributes with
/// OTel-style dotted keys. Typed accessors never fail: a missing or
/// mistyped value reads as empty (`""`, `0`, `None`).
pub struct Event<'a> {
    ffi: FfiEventRef<'a>,
}

impl<'a> Event<'a> {
    pub(crate) fn new(ffi: FfiEventRef<'a>) -> Self {
        Event { ffi }
    }

    pub fn event_type(&self) -> &str {
        self.ffi.event_type().as_str()
    }

    /// The flat key `key` if present and not null, otherwise the walk
    /// through nested objects along the dot-separated parts of `key`.
    /// Strings are copied; arrays and objects are decoded from the host.
    pub fn field(&self, key: &str) -> Option<Value> {
        value_from_ffi(self.ffi.field(RStr::from_str(key)))
    }

    /// [`Event::field`] as text: strings as they are (borrowed, no copy),
    /// numbers and booleans formatted, anything else (or absent) empty.
    pub fn text(&self, key: &str) -> Cow<'_, str> {
        cow(self.ffi.text(RStr::from_str(key)))
    }

    fn accessor(&self, which: FfiAccessor) -> Cow<'_, str> {
        cow(self.ffi.accessor(which))
    }

    pub fn request_id(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::RequestId)
    }
    /// The resolved client IP (`source.address` / `srcip`).
    pub fn srcip(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::Srcip)
    }
    /// `user.id` / `user_id`.
    pub fn user_id(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::UserId)
    }
    /// `session.id` / `session_id`.
    pub fn session_id(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::SessionId)
    }
    /// `http.request.method` / `method`.
    pub fn method(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::Method)
    }
    /// `url.path` / `path`.
    pub fn path(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::Path)
    }
    /// `url.full` / `url`.
    pub fn url(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::Url)
    }
    /// The route template: `http.route`, else `route_pattern`, else `route`.
    pub fn route_pattern(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::RoutePattern)
    }
    /// `http.route_name` / `route_name`.
    pub fn route_name(&self) -> Cow<'_, str> {
        self.accessor(FfiAccessor::RouteName)
    }
    /// The status code from an integer or a numeric string; 0 when absent
    /// or odd.
    pub fn status_code(&self) -> i64 {
        self.ffi.status_code()
    }
    /// The parsed request body (`request.body` / `body`) when it is an
    /// object. Copies the whole body: prefer [`Event::body_field`].
    pub fn body(&self) -> Option<Map<String, Value>> {
        match value_from_ffi(self.ffi.body()) {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        }
    }
    /// One field of the request body (flat key, then nested walk).
    pub fn body_field(&self, key: &str) -> Option<Value> {
        value_from_ffi(self.ffi.body_field(RStr::from_str(key)))
    }
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("event_type", &self.event_type())
            .finish_non_exhaustive()
    }
}

/// History rows for the current event's scope key, newest first. Each row is
/// an event summary (`docs/rules.md`, "How rules run") with `recorded_at` and,
/// where rules contributed them, `rule_attrs.<rule name>.<key>`.
pub struct HistoryRows {
    ffi: Option<FfiRowsBox>,
    len: usize,
}

impl HistoryRows {
    pub(crate) fn new(ffi: FfiRowsBox) -> Self {
        let len = usize::try_from(ffi.row_count()).unwrap_or(usize::MAX);
        HistoryRows {
            ffi: Some(ffi),
            len,
        }
    }

    /// No rows.
    pub fn empty() -> Self {
        HistoryRows { ffi: None, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Row `index` (0 = newest).
    pub fn get(&self, index: usize) -> Option<Row<'_>> {
        match &self.ffi {
            Some(ffi) if index < self.len => Some(Row {
                ffi,
                index: index as u64,
            }),
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> + '_ {
        (0..self.len).filter_map(move |i| self.get(i))
    }
}

impl std::fmt::Debug for HistoryRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryRows")
            .field("len", &self.len)
            .finish()
    }
}

/// One history row.
#[derive(Clone, Copy)]
pub struct Row<'r> {
    ffi: &'r FfiRowsBox,
    index: u64,
}

impl<'r> Row<'r> {
    /// Field lookup, with the same semantics as [`Event::field`]; e.g.
    /// `row.field("rule_attrs.my_rule.route")`.
    pub fn field(&self, key: &str) -> Option<Value> {
        value_from_ffi(self.ffi.field(self.index, RStr::from_str(key)))
    }
    /// [`Row::field`] as text (strings borrowed).
    pub fn text(&self, key: &str) -> Cow<'r, str> {
        cow(self.ffi.text(self.index, RStr::from_str(key)))
    }
    pub fn event_type(&self) -> Cow<'r, str> {
        self.text("event_type")
    }
    /// When the host recorded the row (seconds since the epoch).
    pub fn recorded_at(&self) -> f64 {
        match self.field("recorded_at") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
            _ => 0.0,
        }
    }
}

fn cow(c: RCowStr<'_>) -> Cow<'_, str> {
    match c {
        RCowStr::Borrowed(s) => Cow::Borrowed(s.as_str()),
        RCowStr::Owned(s) => Cow::Owned(s.into_string()),
    }
}

/// Converts a host value into a JSON value (`Absent` is `None`).
pub(crate) fn value_from_ffi(v: FfiValue<'_>) -> Option<Value> {
    Some(match v {
        FfiValue::Absent => return None,
        FfiValue::Bool(b) => Value::Bool(b),
        FfiValue::Int(i) => Value::Number(Number::from(i)),
        FfiValue::UInt(u) => Value::Number(Number::from(u)),
        FfiValue::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        FfiValue::Str(s) => Value::String(s.as_str().to_owned()),
        FfiValue::Json(text) => serde_json::from_str(text.as_str()).ok()?,
    })
}

/// Converts a JSON value into its host representation (used by hosts and by
/// [`crate::testing`]).
pub fn value_to_ffi(v: Option<&Value>) -> FfiValue<'_> {
    match v {
        None | Some(Value::Null) => FfiValue::Absent,
        Some(Value::Bool(b)) => FfiValue::Bool(*b),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                FfiValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                FfiValue::UInt(u)
            } else {
                FfiValue::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Some(Value::String(s)) => FfiValue::Str(RStr::from_str(s)),
        Some(other) => FfiValue::Json(serde_json::to_string(other).unwrap_or_default().into()),
    }
}

/// A map into its boundary form (scalars and strings moved, arrays and
/// objects as JSON text).
pub fn map_to_ffi(map: Map<String, Value>) -> RVec<FfiEntry> {
    map.into_iter()
        .map(|(k, v)| FfiEntry {
            key: k.into(),
            value: match v {
                Value::Null => FfiOwnedValue::Null,
                Value::Bool(b) => FfiOwnedValue::Bool(b),
                Value::Number(n) => {
                    if let Some(i) = n.as_i64() {
                        FfiOwnedValue::Int(i)
                    } else if let Some(u) = n.as_u64() {
                        FfiOwnedValue::UInt(u)
                    } else {
                        FfiOwnedValue::Float(n.as_f64().unwrap_or(0.0))
                    }
                }
                Value::String(s) => FfiOwnedValue::Str(s.into()),
                other => {
                    FfiOwnedValue::Json(serde_json::to_string(&other).unwrap_or_default().into())
                }
            },
        })
        .collect()
}

/// The boundary form back into a map. An undecodable nested value reads as
/// `null`.
pub fn map_from_ffi(entries: RVec<FfiEntry>) -> Map<String, Value> {
    entries
        .into_iter()
        .map(|e| {
            let value = match e.value {
                FfiOwnedValue::Null => Value::Null,
                FfiOwnedValue::Bool(b) => Value::Bool(b),
                FfiOwnedValue::Int(i) => Value::Number(Number::from(i)),
                FfiOwnedValue::UInt(u) => Value::Number(Number::from(u)),
                FfiOwnedValue::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
                FfiOwnedValue::Str(s) => Value::String(s.into_string()),
                FfiOwnedValue::Json(text) => {
                    serde_json::from_str(text.as_str()).unwrap_or(Value::Null)
                }
            };
            (RString::into_string(e.key), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_round_trip_through_the_ffi_representation() {
        for v in [
            json!(true),
            json!(-3),
            json!(u64::MAX),
            json!(1.25),
            json!("text ☃"),
            json!([1, "a", null]),
            json!({"k": {"n": 1}}),
        ] {
            assert_eq!(value_from_ffi(value_to_ffi(Some(&v))), Some(v.clone()));
        }
        assert_eq!(value_from_ffi(value_to_ffi(Some(&Value::Null))), None);
        assert_eq!(value_from_ffi(value_to_ffi(None)), None);
    }

    #[test]
    fn maps_round_trip_through_the_ffi_representation() {
        let m = json!({"n": null, "b": false, "i": -1, "u": u64::MAX, "f": 0.5, "s": "x",
                       "a": [1, {"k": "v"}], "o": {"deep": [true]}});
        let Value::Object(m) = m else { unreachable!() };
        assert_eq!(map_from_ffi(map_to_ffi(m.clone())), m);
    }
}
