//! Scopes: the dimensions blocks, counters and history are keyed on.
//!
//! One [`ScopeRegistry`] serves history keys, counters and blocks, so a rule
//! that fires on `ip` blocks exactly the `ip` the ingress check later reads.

use std::fmt;
use std::sync::Arc;

use sec_audit_core::event::value_text;
use sec_audit_core::AuditEvent;
pub use sec_audit_core::ScopeKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope `{0}` is defined twice")]
    Duplicate(String),
    #[error("unknown scope `{0}`")]
    Unknown(String),
    #[error("a scope name must be non-empty and contain no `:`")]
    BadName,
}

/// Extracts a custom scope's values from an event.
pub type ScopeExtractor = Arc<dyn Fn(&AuditEvent) -> Vec<String> + Send + Sync>;

#[derive(Clone)]
enum Extract {
    User,
    Session,
    Ip,
    Route,
    Custom(ScopeExtractor),
}

/// A named scope definition.
#[derive(Clone)]
pub struct ScopeDef {
    name: String,
    block_eligible: bool,
    extract: Extract,
}

impl fmt::Debug for ScopeDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeDef")
            .field("name", &self.name)
            .field("block_eligible", &self.block_eligible)
            .finish()
    }
}

impl ScopeDef {
    /// A custom scope whose values `extract` takes from the event.
    pub fn custom(
        name: impl Into<String>,
        block_eligible: bool,
        extract: impl Fn(&AuditEvent) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        ScopeDef {
            name: name.into(),
            block_eligible,
            extract: Extract::Custom(Arc::new(extract)),
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn block_eligible(&self) -> bool {
        self.block_eligible
    }

    fn values(&self, event: &AuditEvent, out: &mut Vec<ScopeKey>) {
        let mut push = |v: &str| {
            let v = v.trim();
            if !v.is_empty() {
                out.push(ScopeKey::new(&self.name, v));
            }
        };
        match &self.extract {
            Extract::User => {
                // The first non-blank of these, read only as far as needed.
                let mut v = event.user_id();
                if v.trim().is_empty() {
                    v = value_text(event.field("actor.id"));
                }
                if v.trim().is_empty() {
                    v = event.username();
                }
                if v.trim().is_empty() {
                    v = value_text(event.field("actor.name"));
                }
                push(&v);
            }
            Extract::Session => push(&event.session_id()),
            Extract::Ip => {
                // Read exactly as the ingress check reads a peer address
                // (`parse_ip_token`, then canonical), so a block written
                // here is one ingress can match. Text that is not an
                // address (`999.1.1.1`, `203.0.113.014`) gives no ip scope
                // at all, as at ingress. The event resolved it once.
                push(&event.client_ip_key())
            }
            Extract::Route => push(&event.route()),
            Extract::Custom(f) => {
                for v in f(event) {
                    push(&v);
                }
            }
        }
    }
}

/// Named scopes in precedence order.
#[derive(Debug, Clone)]
pub struct ScopeRegistry {
    defs: Vec<ScopeDef>,
}

impl Default for ScopeRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl ScopeRegistry {
    /// `user`, `session`, `ip` (block-eligible) and `route` (not).
    pub fn builtin() -> Self {
        let def = |name: &str, block_eligible, extract| ScopeDef {
            name: name.into(),
            block_eligible,
            extract,
        };
        ScopeRegistry {
            defs: vec![
                def("user", true, Extract::User),
                def("session", true, Extract::Session),
                def("ip", true, Extract::Ip),
                def("route", false, Extract::Route),
            ],
        }
    }

    /// Adds a scope after the existing ones.
    pub fn add(&mut self, def: ScopeDef) -> Result<(), ScopeError> {
        if def.name.is_empty() || def.name.contains(':') {
            return Err(ScopeError::BadName);
        }
        if self.get(&def.name).is_some() {
            return Err(ScopeError::Duplicate(def.name));
        }
        self.defs.push(def);
        Ok(())
    }

    /// Reorders: the named scopes first in the given order, then the rest in
    /// their original order.
    pub fn with_block_precedence<S: AsRef<str>>(mut self, order: &[S]) -> Result<Self, ScopeError> {
        let mut front = Vec::with_capacity(self.defs.len());
        for name in order {
            let name = name.as_ref();
            let pos = self
                .defs
                .iter()
                .position(|d| d.name == name)
                .ok_or_else(|| {
                    if front.iter().any(|d: &ScopeDef| d.name == name) {
                        ScopeError::Duplicate(name.to_string())
                    } else {
                        ScopeError::Unknown(name.to_string())
                    }
                })?;
            front.push(self.defs.remove(pos));
        }
        front.append(&mut self.defs);
        self.defs = front;
        Ok(self)
    }

    pub fn get(&self, name: &str) -> Option<&ScopeDef> {
        self.defs.iter().find(|d| d.name == name)
    }

    /// Scope names in precedence order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.defs.iter().map(|d| d.name.as_str())
    }

    /// Whether any scope has a custom extractor (code supplied by the
    /// integrator, which may fail).
    pub fn has_custom(&self) -> bool {
        self.defs
            .iter()
            .any(|d| matches!(d.extract, Extract::Custom(_)))
    }

    pub fn is_block_eligible(&self, name: &str) -> bool {
        self.get(name).is_some_and(|d| d.block_eligible)
    }

    /// Every scope key of the event, in precedence order.
    pub fn extract(&self, event: &AuditEvent) -> Vec<ScopeKey> {
        let mut out = Vec::with_capacity(self.defs.len());
        for d in &self.defs {
            d.values(event, &mut out);
        }
        out
    }

    /// The block-eligible keys among `keys` whose scope is in `allowed`, in
    /// precedence order.
    pub fn block_scopes<'k, S: AsRef<str>>(
        &self,
        keys: &'k [ScopeKey],
        allowed: &[S],
    ) -> Vec<&'k ScopeKey> {
        let mut out = Vec::new();
        for d in self.defs.iter().filter(|d| d.block_eligible) {
            if !allowed.iter().any(|a| a.as_ref() == d.name) {
                continue;
            }
            out.extend(keys.iter().filter(|k| k.scope() == d.name));
        }
        out
    }

    /// Orders `(scope, value)` candidates by precedence, keeping only
    /// block-eligible scopes.
    pub fn block_candidates(&self, candidates: &[(&str, &str)]) -> Vec<ScopeKey> {
        let mut out = Vec::new();
        self.fill_block_candidates(candidates, &mut out);
        out
    }

    /// [`ScopeRegistry::block_candidates`] into `out`, reusing the buffers
    /// of the keys already there (no allocation once they are large
    /// enough).
    pub fn fill_block_candidates(&self, candidates: &[(&str, &str)], out: &mut Vec<ScopeKey>) {
        let mut n = 0;
        for d in self.defs.iter().filter(|d| d.block_eligible) {
            for (s, v) in candidates {
                if *s != d.name {
                    continue;
                }
                let v = v.trim();
                if !v.is_empty() {
                    match out.get_mut(n) {
                        Some(k) => k.assign(s, v),
                        None => out.push(ScopeKey::new(s, v)),
                    }
                    n += 1;
                }
            }
        }
        out.truncate(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(v: serde_json::Value) -> AuditEvent {
        AuditEvent::from_attributes(v.as_object().cloned().unwrap()).unwrap()
    }

    #[test]
    fn builtin_extraction_in_precedence_order() {
        let r = ScopeRegistry::builtin();
        let e = ev(
            json!({"event_type": "x", "user.id": " 42 ", "session.id": "s", "source.address": "1.2.3.4",
                          "http.route": "/a/{id}"}),
        );
        let keys: Vec<String> = r.extract(&e).iter().map(|k| k.to_string()).collect();
        assert_eq!(
            keys,
            vec!["user:42", "session:s", "ip:1.2.3.4", "route:/a/{id}"]
        );
    }

    #[test]
    fn user_falls_back_through_actor_and_username() {
        let r = ScopeRegistry::builtin();
        let k = |v| {
            r.extract(&ev(v))
                .into_iter()
                .find(|k| k.scope() == "user")
                .map(|k| k.value().to_string())
        };
        assert_eq!(
            k(json!({"event_type": "x", "actor": {"id": 9, "name": "n"}})),
            Some("9".into())
        );
        assert_eq!(
            k(json!({"event_type": "x", "username": "bob", "actor": {"name": "n"}})),
            Some("bob".into())
        );
        assert_eq!(
            k(json!({"event_type": "x", "actor": {"name": "n"}})),
            Some("n".into())
        );
        assert_eq!(k(json!({"event_type": "x", "user.name": "victim"})), None);
        assert_eq!(k(json!({"event_type": "x", "user_id": "  "})), None);
    }

    #[test]
    fn ip_values_are_canonical() {
        let r = ScopeRegistry::builtin();
        let keys = r.extract(&ev(json!({"event_type": "x", "srcip": "2001:DB8::1"})));
        assert_eq!(keys[0].to_string(), "ip:2001:db8::1");
        assert_eq!(keys[0].scope(), "ip");
        assert_eq!(keys[0].value(), "2001:db8::1");
        let keys = r.extract(&ev(json!({"event_type": "x", "srcip": "::ffff:10.0.0.1"})));
        assert_eq!(keys[0].value(), "10.0.0.1");
    }

    #[test]
    fn ip_scope_reads_the_address_as_ingress_does() {
        // Egress and ingress must meet on one key: the same text gives the
        // same canonical address as `ClientIpResolver` (the ingress check),
        // or no ip scope at all when ingress would have none.
        let r = ScopeRegistry::builtin();
        let resolver = sec_audit_core::ClientIpResolver::direct();
        for text in [
            "999.1.1.1",
            "[::1]:80",
            "203.0.113.014",
            "1.2.3.4:8080",
            "'198.51.100.7'",
            "::ffff:10.0.0.1",
            "not an ip",
            "1.2.3",
        ] {
            let keys = r.extract(&ev(json!({"event_type": "x", "srcip": text})));
            let egress = keys
                .iter()
                .find(|k| k.scope() == "ip")
                .map(|k| k.value().to_string());
            let ingress = resolver.resolve(text, None).map(|ip| ip.to_string());
            assert_eq!(egress, ingress, "{text}");
        }
        let keys = r.extract(&ev(json!({"event_type": "x", "srcip": "[::1]:80"})));
        assert_eq!(keys[0].to_string(), "ip:::1");
    }

    #[test]
    fn ipv4_keys_are_the_display_form_of_what_parses() {
        // The extractor keeps the trimmed text of a parsed IPv4 address: it
        // must always be the address's canonical form.
        for text in ["1.2.3.4", " 10.0.0.1 ", "255.255.255.255", "0.0.0.0"] {
            let ip: std::net::Ipv4Addr = text.trim().parse().unwrap();
            assert_eq!(ip.to_string(), text.trim());
        }
        for odd in ["01.2.3.4", "1.2.3", "1.2.3.4.5", "+1.2.3.4", "1.2.3.256"] {
            assert!(odd.parse::<std::net::Ipv4Addr>().is_err(), "{odd}");
        }
        let r = ScopeRegistry::builtin();
        let keys = r.extract(&ev(json!({"event_type": "x", "srcip": " 10.0.0.1 "})));
        assert_eq!(keys[0].to_string(), "ip:10.0.0.1");
    }

    #[test]
    fn block_precedence_reorders_and_route_is_never_block_eligible() {
        let r = ScopeRegistry::builtin()
            .with_block_precedence(&["ip"])
            .unwrap();
        assert_eq!(
            r.names().collect::<Vec<_>>(),
            vec!["ip", "user", "session", "route"]
        );
        assert!(!r.is_block_eligible("route"));
        assert!(matches!(
            ScopeRegistry::builtin().with_block_precedence(&["nope"]),
            Err(ScopeError::Unknown(_))
        ));
        assert!(matches!(
            ScopeRegistry::builtin().with_block_precedence(&["ip", "ip"]),
            Err(ScopeError::Duplicate(_))
        ));
        let e = ev(json!({"event_type": "x", "user_id": "u", "srcip": "1.1.1.1", "route": "/r"}));
        let keys = r.extract(&e);
        let blocks: Vec<String> = r
            .block_scopes(&keys, &["user", "ip", "route"])
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(blocks, vec!["ip:1.1.1.1", "user:u"]);
    }

    #[test]
    fn custom_scopes_and_duplicates() {
        let mut r = ScopeRegistry::builtin();
        r.add(ScopeDef::custom("tenant", true, |e| {
            vec![e.text("tenant").into_owned()]
        }))
        .unwrap();
        assert!(matches!(
            r.add(ScopeDef::custom("tenant", false, |_| vec![])),
            Err(ScopeError::Duplicate(_))
        ));
        assert!(matches!(
            r.add(ScopeDef::custom("a:b", false, |_| vec![])),
            Err(ScopeError::BadName)
        ));
        let keys = r.extract(&ev(json!({"event_type": "x", "tenant": "acme"})));
        assert_eq!(keys.last().unwrap().to_string(), "tenant:acme");
        let c = r.block_candidates(&[
            ("ip", "1.1.1.1"),
            ("tenant", "t"),
            ("route", "/x"),
            ("user", " "),
        ]);
        assert_eq!(
            c.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            vec!["ip:1.1.1.1", "tenant:t"]
        );
    }
}
