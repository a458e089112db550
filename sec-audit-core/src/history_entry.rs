//! [`HistoryEntry`]: one history row, typed.
//!
//! A row is the scrubbed summary of an event plus `recorded_at` and, when
//! some rule keeps attributes, `rule_attrs`. As JSON it is one object whose
//! keys are sorted bytewise (the order a `serde_json::Map` keeps); the entry
//! holds the same pairs in the same order in a small vector, with the
//! positions of the fields the hot path reads (`event_type`, `rule_attrs`)
//! and `recorded_at` as a number, so that reading them is no map search.
//!
//! `rule_attrs` (rule name → attribute object) is held typed, as
//! [`RowRuleAttrs`]: a short vector of (rule, [`RuleAttrs`]) sorted by rule
//! name, each rule's attributes a short vector of (key, value) sorted by
//! key. Its JSON is byte for byte that of the object form; the object form
//! itself (for [`HistoryEntry::get`], indexing, [`HistoryEntry::iter`]) is
//! built on first demand and kept.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// The key of the time a row was recorded at.
pub const RECORDED_AT: &str = "recorded_at";
/// The key of the rules' attributes (rule name → object).
pub const RULE_ATTRS: &str = "rule_attrs";
/// The key of the event type.
pub const EVENT_TYPE: &str = "event_type";

/// One rule's attributes in a row: (key, value) pairs, keys distinct and
/// sorted bytewise (the order of a `serde_json::Map`). Its JSON is that of
/// the object of the same pairs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleAttrs {
    pairs: Vec<(Box<str>, Value)>,
}

impl RuleAttrs {
    /// The attributes of a JSON object.
    pub fn from_map(map: Map<String, Value>) -> Self {
        Self::from_pairs(
            map.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect(),
        )
    }

    /// The attributes of the given pairs; pairs out of order are sorted (a
    /// later duplicate wins).
    pub fn from_pairs(pairs: Vec<(Box<str>, Value)>) -> Self {
        RuleAttrs {
            pairs: sorted_distinct(pairs),
        }
    }

    /// The value of `key`.
    #[inline]
    pub fn get(&self, key: &str) -> Option<&Value> {
        // Short: a scan, the length compared before the bytes.
        self.pairs
            .iter()
            .find(|(k, _)| k.len() == key.len() && k.as_ref() == key)
            .map(|(_, v)| v)
    }

    /// The value of `key` when it is a string.
    #[inline]
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The pairs, keys sorted bytewise.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.pairs.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The attributes as a JSON object.
    pub fn to_json_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }
}

impl Serialize for RuleAttrs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(self.pairs.len()))?;
        for (k, v) in &self.pairs {
            m.serialize_entry(k.as_ref(), v)?;
        }
        m.end()
    }
}

impl From<Map<String, Value>> for RuleAttrs {
    fn from(map: Map<String, Value>) -> Self {
        Self::from_map(map)
    }
}

/// What a row holds for one rule under `rule_attrs`.
#[derive(Debug, Clone, PartialEq)]
enum RuleSlot {
    Attrs(RuleAttrs),
    /// A value that is no object (only in rows read back from outside).
    Other(Value),
}

impl RuleSlot {
    fn of(v: Value) -> Self {
        match v {
            Value::Object(m) => RuleSlot::Attrs(RuleAttrs::from_map(m)),
            other => RuleSlot::Other(other),
        }
    }

    fn to_json_value(&self) -> Value {
        match self {
            RuleSlot::Attrs(a) => Value::Object(a.to_json_map()),
            RuleSlot::Other(v) => v.clone(),
        }
    }
}

impl Serialize for RuleSlot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RuleSlot::Attrs(a) => a.serialize(serializer),
            RuleSlot::Other(v) => v.serialize(serializer),
        }
    }
}

/// A row's `rule_attrs`: (rule name, attributes) sorted by rule name,
/// names distinct. Its JSON is that of the object rule name → attributes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RowRuleAttrs {
    rules: Vec<(Arc<str>, RuleSlot)>,
}

impl RowRuleAttrs {
    /// The attributes of the given rules; out of order they are sorted (a
    /// later duplicate wins).
    pub fn from_rules(rules: Vec<(Arc<str>, RuleAttrs)>) -> Self {
        RowRuleAttrs {
            rules: sorted_distinct(
                rules
                    .into_iter()
                    .map(|(n, a)| (n, RuleSlot::Attrs(a)))
                    .collect(),
            ),
        }
    }

    /// The `rule_attrs` of a JSON object (rule name → attribute object; a
    /// rule's value that is no object is kept as it is, and has no
    /// [`RuleAttrs`]).
    pub fn from_map(map: Map<String, Value>) -> Self {
        RowRuleAttrs {
            rules: sorted_distinct(
                map.into_iter()
                    .map(|(k, v)| (Arc::from(k), RuleSlot::of(v)))
                    .collect(),
            ),
        }
    }

    fn slot(&self, rule: &str) -> Option<&RuleSlot> {
        self.rules
            .iter()
            .find(|(k, _)| k.len() == rule.len() && k.as_ref() == rule)
            .map(|(_, s)| s)
    }

    /// The attributes rule `rule` kept.
    #[inline]
    pub fn get(&self, rule: &str) -> Option<&RuleAttrs> {
        match self.slot(rule)? {
            RuleSlot::Attrs(a) => Some(a),
            RuleSlot::Other(_) => None,
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule names, sorted bytewise.
    pub fn rules(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|(k, _)| k.as_ref())
    }

    /// The object form (rule name → attribute object).
    pub fn to_json_map(&self) -> Map<String, Value> {
        self.rules
            .iter()
            .map(|(k, s)| (k.to_string(), s.to_json_value()))
            .collect()
    }

    pub fn to_json_value(&self) -> Value {
        Value::Object(self.to_json_map())
    }
}

impl Serialize for RowRuleAttrs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut m = serializer.serialize_map(Some(self.rules.len()))?;
        for (k, s) in &self.rules {
            m.serialize_entry(k.as_ref(), s)?;
        }
        m.end()
    }
}

/// `pairs` with keys sorted bytewise and distinct (stable: of equal keys
/// the last wins); in order already, they are returned as they are.
fn sorted_distinct<K: Ord, V>(mut pairs: Vec<(K, V)>) -> Vec<(K, V)> {
    if pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        return pairs;
    }
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(K, V)> = Vec::with_capacity(pairs.len());
    for (k, v) in pairs {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1 = v,
            _ => out.push((k, v)),
        }
    }
    out
}

/// One history row. Its JSON ([`HistoryEntry::to_json`], `Serialize`) is
/// exactly that of the object it was built from or as.
#[derive(Debug, Clone, Default)]
pub struct HistoryEntry {
    /// Keys distinct, sorted bytewise. When `attrs` holds `rule_attrs`, its
    /// slot here holds null.
    fields: Vec<(Cow<'static, str>, Value)>,
    event_type: Option<u32>,
    rule_attrs: Option<u32>,
    /// `rule_attrs`, typed, when it is an object.
    attrs: Option<RowRuleAttrs>,
    /// The object form of `attrs`, built on first demand.
    attrs_json: OnceLock<Value>,
    /// `recorded_at` as a number (0 when absent or not a number).
    recorded_at: f64,
}

impl PartialEq for HistoryEntry {
    fn eq(&self, other: &Self) -> bool {
        // `attrs_json` is a cache of `attrs`.
        self.fields == other.fields
            && self.event_type == other.event_type
            && self.rule_attrs == other.rule_attrs
            && self.attrs == other.attrs
            && self.recorded_at == other.recorded_at
    }
}

impl HistoryEntry {
    /// An entry of the given pairs. They must have distinct keys sorted
    /// bytewise; pairs out of order are sorted (a later duplicate wins).
    pub fn from_sorted(fields: Vec<(Cow<'static, str>, Value)>) -> Self {
        let mut e = HistoryEntry {
            fields: sorted_distinct(fields),
            ..Default::default()
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
        if let Some(i) = self.rule_attrs {
            if let Some((_, v)) = self.fields.get_mut(i as usize) {
                if v.is_object() {
                    self.attrs = match std::mem::take(v) {
                        Value::Object(m) => Some(RowRuleAttrs::from_map(m)),
                        _ => None,
                    };
                }
            }
        }
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
        if key == RULE_ATTRS {
            match value {
                Value::Object(m) => self.set_rule_attrs(RowRuleAttrs::from_map(m)),
                other => {
                    self.attrs = None;
                    self.attrs_json = OnceLock::new();
                    self.put(key, other);
                }
            }
            return;
        }
        self.put(key, value);
    }

    /// Sets `rule_attrs` (replacing any there).
    pub fn set_rule_attrs(&mut self, attrs: RowRuleAttrs) {
        self.attrs = Some(attrs);
        self.attrs_json = OnceLock::new();
        self.put(Cow::Borrowed(RULE_ATTRS), Value::Null);
    }

    fn put(&mut self, key: Cow<'static, str>, value: Value) {
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

    /// The object form of the typed `rule_attrs` (built once).
    fn attrs_json(&self, attrs: &RowRuleAttrs) -> &Value {
        self.attrs_json.get_or_init(|| attrs.to_json_value())
    }

    /// The value at position `i` of `fields`, the typed `rule_attrs` as
    /// its object form.
    fn value_at(&self, i: usize) -> Option<&Value> {
        let (_, v) = self.fields.get(i)?;
        match &self.attrs {
            Some(a) if self.rule_attrs == Some(i as u32) => Some(self.attrs_json(a)),
            _ => Some(v),
        }
    }

    /// The value of top-level key `key` (`rule_attrs` as its object form,
    /// built on first demand: the hot path reads [`Self::rule_attrs`]).
    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = match key {
            EVENT_TYPE => self.event_type.map(|i| i as usize),
            RULE_ATTRS => self.rule_attrs.map(|i| i as usize),
            _ => self.position(key),
        }?;
        self.value_at(i)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        match key {
            EVENT_TYPE => self.event_type.is_some(),
            RULE_ATTRS => self.rule_attrs.is_some(),
            _ => self.position(key).is_some(),
        }
    }

    /// `field()`-style lookup (as `sec_audit_core::event::lookup` over a
    /// map): the flat key first, then a walk through nested objects on
    /// `.`; null counts as absent.
    pub fn lookup(&self, key: &str) -> Option<&Value> {
        // `rule_attrs.<rule>.<key>...` walks the typed form (the same walk
        // over the object form, without building it).
        if let (Some(rest), Some(attrs)) = (
            key.strip_prefix(RULE_ATTRS)
                .and_then(|r| r.strip_prefix('.')),
            self.attrs.as_ref(),
        ) {
            if let Some((rule, path)) = rest.split_once('.') {
                match self.position(key).and_then(|i| self.value_at(i)) {
                    Some(Value::Null) | None => {}
                    Some(v) => return Some(v),
                }
                let mut parts = path.split('.');
                let mut cur = match attrs.slot(rule)? {
                    RuleSlot::Attrs(a) => a.get(parts.next()?)?,
                    RuleSlot::Other(v) => v.as_object()?.get(parts.next()?)?,
                };
                for p in parts {
                    cur = cur.as_object()?.get(p)?;
                }
                return if cur.is_null() { None } else { Some(cur) };
            }
        }
        crate::event::lookup_with(|k| self.get(k), key)
    }

    /// The event type, when it is a string.
    #[inline]
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
    #[inline]
    pub fn rule_attrs(&self, rule: &str) -> Option<&RuleAttrs> {
        self.attrs.as_ref()?.get(rule)
    }

    /// The row's `rule_attrs`, typed, when it is an object.
    pub fn all_rule_attrs(&self) -> Option<&RowRuleAttrs> {
        self.attrs.as_ref()
    }

    /// The pairs, keys sorted bytewise (`rule_attrs` as its object form).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        (0..self.fields.len()).filter_map(move |i| {
            let k = self.fields[i].0.as_ref();
            self.value_at(i).map(|v| (k, v))
        })
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The row as a JSON object.
    pub fn to_json_map(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let v = match &self.attrs {
                    Some(a) if self.rule_attrs == Some(i as u32) => match self.attrs_json.get() {
                        Some(j) => j.clone(),
                        None => a.to_json_value(),
                    },
                    _ => v.clone(),
                };
                (k.to_string(), v)
            })
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
        for (i, (k, v)) in self.fields.iter().enumerate() {
            match &self.attrs {
                Some(a) if self.rule_attrs == Some(i as u32) => m.serialize_entry(k.as_ref(), a)?,
                _ => m.serialize_entry(k.as_ref(), v)?,
            }
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
            assert_eq!(
                e.rule_attrs("r"),
                Some(&RuleAttrs::from_map(obj(json!({"k": 1})))),
                "{k}"
            );
        }
        e.insert(RECORDED_AT, json!(3.5));
        assert_eq!(e.recorded_at(), 3.5);
        e.insert(EVENT_TYPE, json!("u"));
        assert_eq!(e.event_type(), Some("u"));
        let again = HistoryEntry::from_json(e.to_json_map());
        assert_eq!(again, e);
    }

    /// The typed `rule_attrs` serializes to exactly the JSON of the object
    /// form it replaced: several rules, escapes, nested values, empty
    /// objects, unsorted input, odd (non-object) rule values.
    #[test]
    fn typed_rule_attrs_serialize_as_the_object_form() {
        let cases = [
            json!({}),
            json!({"r": {}}),
            json!({"resource_enumeration": {"route": "/a/{id}", "path": "/a/1"}}),
            json!({
                "zeta": {"b": 1, "a": [1, {"x": null}], "c": {"nested": {"deep": true}}},
                "alpha": {"q\"uote": "back\\slash", "tab\t": "new\nline", "é": "ü\u{1F600}"},
                "Upper": {"": "", "k": -1.5e300, "n": null},
                "a.b": {"x.y": {"z": "dots"}},
                "\u{0001}ctl": {"v": "\u{0000}\u{001f}"}
            }),
            json!({"r": 5, "s": {"k": "v"}, "t": [1, 2], "u": null, "v": "str"}),
        ];
        for attrs in cases {
            let m = obj(attrs.clone());
            let typed = RowRuleAttrs::from_map(m.clone());
            assert_eq!(
                serde_json::to_string(&typed).unwrap(),
                serde_json::to_string(&attrs).unwrap(),
                "{attrs}"
            );
            assert_eq!(typed.to_json_value(), attrs);
            // Within a row, built from JSON and by insert.
            let mut row = obj(json!({"event_type": "t", "srcip": "1.1.1.1", "zz": 1}));
            row.insert(RULE_ATTRS.into(), attrs.clone());
            let from_json = HistoryEntry::from_json(row.clone());
            let want = serde_json::to_string(&row).unwrap();
            assert_eq!(from_json.to_json().unwrap(), want);
            assert_eq!(from_json.to_json_map(), row);
            assert_eq!(from_json.get(RULE_ATTRS), Some(&attrs));
            assert_eq!(from_json["rule_attrs"], attrs);
            assert_eq!(
                serde_json::to_string(&from_json.to_json_map()).unwrap(),
                want
            );
            let pairs: Map<String, Value> = from_json
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            assert_eq!(pairs, row);
            let mut inserted = HistoryEntry::from_json(obj(
                json!({"event_type": "t", "srcip": "1.1.1.1", "zz": 1}),
            ));
            inserted.insert(RULE_ATTRS, attrs.clone());
            assert_eq!(inserted.to_json().unwrap(), want);
            assert_eq!(inserted, from_json);
            // Every lookup answers as the walk over the object form does.
            for (rule, v) in m.iter() {
                let mut keys = vec![format!("rule_attrs.{rule}")];
                if let Some(o) = v.as_object() {
                    for (k, inner) in o {
                        keys.push(format!("rule_attrs.{rule}.{k}"));
                        if let Some(io) = inner.as_object() {
                            for k2 in io.keys() {
                                keys.push(format!("rule_attrs.{rule}.{k}.{k2}"));
                            }
                        }
                    }
                }
                keys.push(format!("rule_attrs.{rule}.missing"));
                for key in keys {
                    assert_eq!(
                        from_json.lookup(&key),
                        crate::event::lookup(&row, &key),
                        "{key}"
                    );
                }
            }
        }
    }

    #[test]
    fn rules_built_typed_serialize_sorted_as_a_map_would() {
        let typed = RowRuleAttrs::from_rules(vec![
            (
                Arc::from("zz"),
                RuleAttrs::from_pairs(vec![("b".into(), json!(2)), ("a".into(), json!(1))]),
            ),
            (
                Arc::from("aa"),
                RuleAttrs::from_map(obj(json!({"route": "/", "path": "/x"}))),
            ),
            (Arc::from("mm"), RuleAttrs::default()),
        ]);
        let mut m = Map::new();
        m.insert("zz".into(), json!({"b": 2, "a": 1}));
        m.insert("aa".into(), json!({"route": "/", "path": "/x"}));
        m.insert("mm".into(), json!({}));
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        let mut e = HistoryEntry::from_sorted(vec![(Cow::Borrowed("event_type"), json!("t"))]);
        e.set_rule_attrs(typed);
        let mut want = obj(json!({"event_type": "t"}));
        want.insert(RULE_ATTRS.into(), Value::Object(m));
        assert_eq!(e.to_json().unwrap(), serde_json::to_string(&want).unwrap());
        assert_eq!(
            e.rule_attrs("aa").and_then(|a| a.get_str("path")),
            Some("/x")
        );
        assert_eq!(e.rule_attrs("mm").map(RuleAttrs::len), Some(0));
        assert_eq!(e.rule_attrs("nope"), None);
        assert_eq!(HistoryEntry::from_json(want), e);
    }

    #[test]
    fn a_rule_attrs_value_that_is_no_object_stays_as_it_is() {
        for odd in [json!("text"), json!(3), json!([1, {"r": {}}]), json!(null)] {
            let row = obj(json!({"event_type": "t", "rule_attrs": odd.clone()}));
            let e = HistoryEntry::from_json(row.clone());
            assert_eq!(e.to_json().unwrap(), serde_json::to_string(&row).unwrap());
            assert_eq!(e.get(RULE_ATTRS), Some(&odd));
            assert_eq!(e.rule_attrs("r"), None);
            assert_eq!(e.lookup("rule_attrs.r.x"), None);
        }
        let row = obj(json!({"rule_attrs": {"r": "flat", "s": {"k": "v"}}}));
        let e = HistoryEntry::from_json(row);
        assert_eq!(e.rule_attrs("r"), None);
        assert_eq!(e.lookup("rule_attrs.r"), Some(&json!("flat")));
        assert_eq!(e.lookup("rule_attrs.s.k"), Some(&json!("v")));
    }
}
