//! An audit event's attributes: a compact map sorted by key, with the
//! positions of the fixed fields resolved.
//!
//! The entries are one vector in bytewise key order, the order of a
//! `serde_json::Map` (so the JSON is the same bytes). Keys the hot path reads
//! and the common keys of the contract are [`Known`]: they are not
//! allocated, and their position in the vector is kept in a table, so
//! reading a fixed field is an index, not a string comparison.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

macro_rules! known_keys {
    ($($variant:ident = $text:literal,)*) => {
        /// The attribute keys known at compile time, in bytewise order of
        /// their text (the `known_keys_are_sorted` test checks it).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Known {
            $($variant,)*
        }

        impl Known {
            /// Every known key, in order.
            pub const ALL: &'static [Known] = &[$(Known::$variant,)*];
            const TEXT: &'static [&'static str] = &[$($text,)*];
        }
    };
}

known_keys! {
    Action = "action",
    ActionName = "action.name",
    Actor = "actor",
    AppLabel = "app_label",
    Attributes = "attributes",
    Body = "body",
    ChangedFields = "changed_fields",
    CrudAction = "crud_action",
    DurationNs = "duration_ns",
    EventType = "event_type",
    HttpRequestMethod = "http.request.method",
    HttpResponseStatusCode = "http.response.status_code",
    HttpRoute = "http.route",
    HttpRouteName = "http.route_name",
    Method = "method",
    Model = "model",
    ModelLabel = "model_label",
    ObjectId = "object_id",
    Outcome = "outcome",
    Path = "path",
    ProxyHeaders = "proxy_headers",
    RequestBody = "request.body",
    RequestId = "request_id",
    Route = "route",
    RouteName = "route_name",
    RoutePattern = "route_pattern",
    SchemaVersion = "schema_version",
    SessionDotId = "session.id",
    SessionId = "session_id",
    SourceAddress = "source.address",
    Srcip = "srcip",
    Status = "status",
    StatusCode = "status_code",
    Target = "target",
    Timestamp = "timestamp",
    TrustedRoute = "trusted_route",
    Url = "url",
    UrlFull = "url.full",
    UrlPath = "url.path",
    UserDotId = "user.id",
    UserDotName = "user.name",
    UserId = "user_id",
    Username = "username",
}

const KNOWN: usize = Known::TEXT.len();

impl Known {
    pub fn as_str(self) -> &'static str {
        Known::TEXT[self as usize]
    }

    /// The known key spelled `key`, if any.
    pub fn of(key: &str) -> Option<Known> {
        Known::TEXT.binary_search(&key).ok().map(|i| Known::ALL[i])
    }
}

/// An attribute key: known (no allocation) or any other text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrKey {
    Known(Known),
    Other(Box<str>),
}

impl AttrKey {
    /// The key for `text`: known when it is one.
    pub fn new(text: &str) -> AttrKey {
        match Known::of(text) {
            Some(k) => AttrKey::Known(k),
            None => AttrKey::Other(text.into()),
        }
    }

    /// Like [`AttrKey::new`], keeping an owned text's allocation.
    pub fn from_string(text: String) -> AttrKey {
        match Known::of(&text) {
            Some(k) => AttrKey::Known(k),
            None => AttrKey::Other(text.into_boxed_str()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            AttrKey::Known(k) => k.as_str(),
            AttrKey::Other(s) => s,
        }
    }
}

/// No position: the known key is absent.
const ABSENT: u32 = u32::MAX;

/// The attributes of one event: entries sorted by key, each key once.
#[derive(Debug, Clone)]
pub struct Attributes {
    entries: Vec<(AttrKey, Value)>,
    /// Position in `entries` of each known key, by [`Known`].
    known: [u32; KNOWN],
}

impl Default for Attributes {
    fn default() -> Self {
        Attributes {
            entries: Vec::new(),
            known: [ABSENT; KNOWN],
        }
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((ka, va), (kb, vb))| ka == kb && va == vb)
    }
}

impl Attributes {
    /// From entries in any order; of a key given twice the last one is
    /// kept (as inserting into a map does).
    pub fn from_entries(mut entries: Vec<(AttrKey, Value)>) -> Attributes {
        let sorted = entries
            .windows(2)
            .all(|w| w[0].0.as_str() < w[1].0.as_str());
        if !sorted {
            // Stable: of equal keys the last given stays last.
            entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            let mut deduped: Vec<(AttrKey, Value)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match deduped.last_mut() {
                    Some(last) if last.0.as_str() == entry.0.as_str() => *last = entry,
                    _ => deduped.push(entry),
                }
            }
            entries = deduped;
        }
        let mut attributes = Attributes {
            entries,
            known: [ABSENT; KNOWN],
        };
        attributes.index();
        attributes
    }

    /// From a JSON map (already sorted, each key once).
    pub fn from_map(map: Map<String, Value>) -> Attributes {
        Attributes::from_entries(
            map.into_iter()
                .map(|(k, v)| (AttrKey::from_string(k), v))
                .collect(),
        )
    }

    /// Recomputes the known keys' positions.
    fn index(&mut self) {
        self.known = [ABSENT; KNOWN];
        for (i, (key, _)) in self.entries.iter().enumerate() {
            let known = match key {
                AttrKey::Known(k) => Some(*k),
                // A caller may spell a known key as `Other`.
                AttrKey::Other(s) => Known::of(s),
            };
            if let (Some(k), Ok(at)) = (known, u32::try_from(i)) {
                self.known[k as usize] = at;
            }
        }
    }

    /// The value of a known key, by its resolved position.
    pub fn known(&self, key: Known) -> Option<&Value> {
        let at = self.known[key as usize];
        if at == ABSENT {
            return None;
        }
        self.entries.get(at as usize).map(|(_, v)| v)
    }

    /// The position of a known key's entry.
    pub(crate) fn position(&self, key: Known) -> Option<usize> {
        let at = self.known[key as usize];
        (at != ABSENT).then_some(at as usize)
    }

    /// The value at an entry position.
    pub(crate) fn value_at(&self, at: usize) -> Option<&Value> {
        self.entries.get(at).map(|(_, v)| v)
    }

    /// The value of `key` (the flat key only; see [`crate::event::lookup_with`]
    /// for the nested walk).
    pub fn get(&self, key: &str) -> Option<&Value> {
        if let Some(k) = Known::of(key) {
            return self.known(k);
        }
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets a known key (replacing its value when present).
    pub(crate) fn insert_known(&mut self, key: Known, value: Value) {
        if let Some(at) = self.position(key) {
            self.entries[at].1 = value;
            return;
        }
        let at = self
            .entries
            .partition_point(|(k, _)| k.as_str() < key.as_str());
        self.entries.insert(at, (AttrKey::Known(key), value));
        self.index();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every attribute, in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The attributes as a JSON map.
    pub fn to_map(&self) -> Map<String, Value> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// The attributes as a JSON map, by move.
    pub fn into_map(self) -> Map<String, Value> {
        self.entries
            .into_iter()
            .map(|(k, v)| {
                let k = match k {
                    AttrKey::Known(k) => k.as_str().to_string(),
                    AttrKey::Other(s) => s.into_string(),
                };
                (k, v)
            })
            .collect()
    }
}

/// The same JSON as the map of [`Attributes::to_map`].
impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl std::ops::Index<&str> for Attributes {
    type Output = Value;

    /// The value of `key`, or null when absent (as indexing a `Map` by a
    /// missing key through `Value` does).
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn known_keys_are_sorted_and_named_once() {
        assert!(Known::TEXT.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Known::ALL.len(), Known::TEXT.len());
        for (i, k) in Known::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
            assert_eq!(Known::of(k.as_str()), Some(*k));
        }
        assert_eq!(Known::of("nope"), None);
        assert_eq!(Known::of(""), None);
    }

    #[test]
    fn entries_keep_the_last_of_a_key_and_the_map_order() {
        let a = Attributes::from_entries(vec![
            (AttrKey::new("zeta"), json!(1)),
            (AttrKey::new("srcip"), json!("a")),
            (AttrKey::new("Zeta"), json!(2)),
            (AttrKey::new("srcip"), json!("b")),
            (AttrKey::new("é"), json!(3)),
            (AttrKey::new("event_type"), json!("x")),
        ]);
        let mut m = Map::new();
        for (k, v) in [
            ("zeta", json!(1)),
            ("srcip", json!("a")),
            ("Zeta", json!(2)),
            ("srcip", json!("b")),
            ("é", json!(3)),
            ("event_type", json!("x")),
        ] {
            m.insert(k.into(), v);
        }
        assert_eq!(
            serde_json::to_string(&a).ok(),
            serde_json::to_string(&m).ok()
        );
        assert_eq!(a.to_map(), m);
        assert_eq!(a.clone().into_map(), m);
        assert_eq!(a.known(Known::Srcip), Some(&json!("b")));
        assert_eq!(a.get("srcip"), Some(&json!("b")));
        assert_eq!(a.get("Zeta"), Some(&json!(2)));
        assert_eq!(a.get("missing"), None);
        assert_eq!(a["missing"], Value::Null);
        assert_eq!(a.known(Known::UserId), None);
        assert_eq!(Attributes::from_map(m), a);
    }

    #[test]
    fn a_known_key_spelled_as_other_is_still_found() {
        let a = Attributes::from_entries(vec![
            (AttrKey::Other("srcip".into()), json!("1.2.3.4")),
            (AttrKey::Known(Known::EventType), json!("x")),
        ]);
        assert_eq!(a.known(Known::Srcip), Some(&json!("1.2.3.4")));
        assert_eq!(a.get("srcip"), Some(&json!("1.2.3.4")));
    }

    #[test]
    fn inserting_a_known_key_keeps_order_and_positions() {
        let mut a = Attributes::from_map(
            json!({"b": 1, "srcip": "", "zz": 2})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        a.insert_known(Known::Route, json!("/r"));
        a.insert_known(Known::Srcip, json!("1.2.3.4"));
        a.insert_known(Known::Action, json!("x"));
        let keys: Vec<&str> = a.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["action", "b", "route", "srcip", "zz"]);
        for k in Known::ALL {
            assert_eq!(
                a.known(*k),
                a.iter().find(|(t, _)| *t == k.as_str()).map(|(_, v)| v)
            );
        }
    }
}
