//! [`HistoryEntry`]: one history row, typed.
//!
//! A row is the scrubbed summary of an event plus `recorded_at` and, when
//! some rule keeps attributes, `rule_attrs`. As JSON it is one object whose
//! keys are sorted bytewise (the order a `serde_json::Map` keeps); the entry
//! holds the same pairs in the same order in a small vector, with the
//! positions of the fields the hot path reads (`event_type`, `rule_attrs`)
//! and `recorded_at` as a number, so that reading them is no map search.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The key of the time a row was recorded at.
pub const RECORDED_AT: &str = "recorded_at";
/// The key of the rules' attributes (rule name → object).
pub const RULE_ATTRS: &str = "rule_attrs";
/// The key of the event type.
pub const EVENT_TYPE: &str = "event_type";

/// One history row. Its JSON ([`HistoryEntry::to_json`], `Serialize`) is
/// exactly that of the object it was built from or as.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryEntry {
    /// Keys distinct, sorted bytewise.
    fields: Vec<(Cow<'static, str>, Value)>,
    event_type: Option<u32>,
    rule_attrs: Option<u32>,
    /// `recorded_at` as a number (0 when absent or not a number).
    recorded_at: f64,
}

impl HistoryEntry {
    /// An entry of the given pairs. They must have distinct keys sorted
    /// bytewise; pairs out of order are sorted (a later duplicate wins).
    pub fn from_sorted(mut fields: Vec<(Cow<'static, str>, Value)>) -> Self {
        if !fields.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable: of equal keys, the last stays last.
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out: Vec<(Cow<'static, str>, Value)> = Vec::with_capacity(fields.len());
            for (k, v) in fields {
                match out.last_mut() {
                    Some(last) if last.0 == k => last.1 = v,
                    _ => out.push((k, v)),
                }
            }
            fields = out;
        }
        let mut e = HistoryEntry {
            fields,
            event_type: None,
            rule_attrs: None,
            recorded_at: 0.0,
        };
        e.reindex();
        e
    }

    /// The entry of a JSON object (as the Redis store reads rows back).
    pub fn from_json(map: Map<String, Value>) -> Self {
        // A map iterates in key order.
        Self::from_sorted(map.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }

    fn reindex(&mut self) {
        self.event_type = self.position(EVENT_TYPE).map(|i| i as u32);
        self.rule_attrs = self.position(RULE_ATTRS).map(|i| i as u32);
        self.recorded_at = self
            .position(RECORDED_AT)
            .and_then(|i| self.fields[i].1.as_f64())
            .unwrap_or(0.0);
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.fields
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
    }

    /// Sets `key` to `value` (replacing a value already there).
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: Value) {
        let key = key.into();
        match self
            .fields
            .binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref()))
        {
            Ok(i) => {
                if key == RECORDED_AT {
                    self.recorded_at = value.as_f64().unwrap_or(0.0);
                }
                self.fields[i].1 = value;
            }
            Err(i) => {
                // The positions at and after `i` move up by one.
                let at = i as u32;
                for p in [&mut self.event_type, &mut self.rule_attrs]
                    .into_iter()
                    .flatten()
                {
                    if *p >= at {
                        *p += 1;
                    }
                }
                match key.as_ref() {
                    EVENT_TYPE => self.event_type = Some(at),
                    RULE_ATTRS => self.rule_attrs = Some(at),
                    RECORDED_AT => self.recorded_at = value.as_f64().unwrap_or(0.0),
                    _ => {}
                }
                self.fields.insert(i, (key, value));
            }
        }
    }

    /// Sets `recorded_at` (a non-finite time is stored as null, as
    /// `Value::from(f64)` does).
    pub fn set_recorded_at(&mut self, at: f64) {
        self.insert(RECORDED_AT, Value::from(at));
    }

    /// The value of top-level key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = match key {
            EVENT_TYPE => self.event_type.map(|i| i as usize),
            RULE_ATTRS => self.rule_attrs.map(|i| i as usize),
            _ => self.position(key),
        }?;
        self.fields.get(i).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// `field()`-style lookup (as `sec_audit_core::event::lookup` over a
    /// map): the flat key first, then a walk through nested objects on
    /// `.`; null counts as absent.
    pub fn lookup(&self, key: &str) -> Option<&Value> {
        crate::event::lookup_with(|k| self.get(k), key)
    }

    /// The event type, when it is a string.
    pub fn event_type(&self) -> Option<&str> {
        self.event_type
            .and_then(|i| self.fields.get(i as usize))
            .and_then(|(_, v)| v.as_str())
    }

    /// `recorded_at` as a number; 0 when absent or not a number.
    pub fn recorded_at(&self) -> f64 {
        self.recorded_at
    }

    /// The attributes rule `rule` kept in this row.
    pub fn rule_attrs(&self, rule: &str) -> Option<&Map<String, Value>> {
        self.rule_attrs
            .and_then(|i| self.fields.get(i as usize))
            .and_then(|(_, v)| v.as_object())
            .and_then(|m| m.get(rule))
            .and_then(Value::as_object)
    }

    /// The pairs, keys sorted bytewise.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The row as a JSON object.
    pub fn to_json_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// The row as a JSON value (an object).
    pub fn to_json_value(&self) -> Value {
        Value::Object(self.to_json_map())
    }

    /// The row's JSON text: byte for byte that of [`Self::to_json_map`].
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

impl Serialize for HistoryEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(self.fields.len()))?;
        for (k, v) in &self.fields {
            m.serialize_entry(k.as_ref(), v)?;
        }
        m.end()
    }
}

/// `entry["key"]`: the value, or null when absent (as indexing a
/// `serde_json::Value` does; never panics).
impl std::ops::Index<&str> for HistoryEntry {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl From<Map<String, Value>> for HistoryEntry {
    fn from(map: Map<String, Value>) -> Self {
        Self::from_json(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn json_is_that_of_the_map() {
        let m = obj(
            json!({"event_type": "http.response", "srcip": "1.2.3.4", "status": 404,
            "route": "/a/{id}", "route_name": "a", "recorded_at": 1700000000.123,
            "rule_attrs": {"z": {"path": "/a/1"}, "resource_enumeration": {"route": "/a/{id}", "path": "/a/1"}},
            "actor": {"id": 1, "name": "n"}, "changed_fields": ["x", "y"]}),
        );
        let e = HistoryEntry::from_json(m.clone());
        assert_eq!(e.to_json().unwrap(), serde_json::to_string(&m).unwrap());
        assert_eq!(e.to_json_map(), m);
        assert_eq!(e.event_type(), Some("http.response"));
        assert_eq!(e.recorded_at(), 1700000000.123);
        assert_eq!(
            e.rule_attrs("resource_enumeration")
                .and_then(|a| a.get("route")),
            Some(&json!("/a/{id}"))
        );
        assert_eq!(e.lookup("actor.name"), Some(&json!("n")));
        assert_eq!(e.lookup("rule_attrs.z.path"), Some(&json!("/a/1")));
        assert_eq!(e.get("nope"), None);
    }

    #[test]
    fn inserts_keep_the_order_of_a_map() {
        let mut e = HistoryEntry::from_sorted(vec![
            (Cow::Borrowed("srcip"), json!("1.1.1.1")),
            (Cow::Borrowed("event_type"), json!("x")),
            (Cow::Borrowed("action"), json!({"a": 1})),
        ]);
        let mut m = obj(json!({"srcip": "1.1.1.1", "event_type": "x", "action": {"a": 1}}));
        e.set_recorded_at(12.5);
        m.insert("recorded_at".into(), Value::from(12.5));
        e.insert(RULE_ATTRS, json!({"r": {"route": "/"}}));
        m.insert("rule_attrs".into(), json!({"r": {"route": "/"}}));
        assert_eq!(e.to_json().unwrap(), serde_json::to_string(&m).unwrap());
        assert_eq!(e.event_type(), Some("x"));
        assert_eq!(e.recorded_at(), 12.5);
        assert!(e.rule_attrs("r").is_some());
        e.set_recorded_at(f64::NAN);
        m.insert("recorded_at".into(), Value::from(f64::NAN));
        assert_eq!(e.to_json().unwrap(), serde_json::to_string(&m).unwrap());
        assert_eq!(e.recorded_at(), 0.0);
    }

    #[test]
    fn unsorted_pairs_are_sorted_and_later_duplicates_win() {
        let e = HistoryEntry::from_sorted(vec![
            (Cow::Borrowed("b"), json!(1)),
            (Cow::Borrowed("a"), json!(2)),
            (Cow::Borrowed("b"), json!(3)),
        ]);
        assert_eq!(e.to_json().unwrap(), r#"{"a":2,"b":3}"#);
    }

    #[test]
    fn positions_follow_inserts() {
        let mut e = HistoryEntry::from_sorted(vec![
            (Cow::Borrowed("event_type"), json!("t")),
            (Cow::Borrowed("zz"), json!(1)),
        ]);
        e.insert(RULE_ATTRS, json!({"r": {"k": 1}}));
        for k in ["a", "f", "s", "recorded_at", "zzz", "b"] {
            e.insert(k, json!(k));
            assert_eq!(e.event_type(), Some("t"), "{k}");
            assert_eq!(e.rule_attrs("r"), Some(&obj(json!({"k": 1}))), "{k}");
        }
        e.insert(RECORDED_AT, json!(3.5));
        assert_eq!(e.recorded_at(), 3.5);
        e.insert(EVENT_TYPE, json!("u"));
        assert_eq!(e.event_type(), Some("u"));
        let again = HistoryEntry::from_json(e.to_json_map());
        assert_eq!(again, e);
    }
}
