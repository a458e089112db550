//! The eight built-in rules (`docs/rules.md`), each constructible from a configuration table:
//! `builtin = "<name>"` plus its parameters, a serde struct per rule
//! (unknown parameters are errors). Every built-in accepts `severity`,
//! `message` and `tags` overrides; those that suggest a decision accept
//! `decision`. [`BUILTINS`] is the one registry of them: name, constructor,
//! default action and ingress safety.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{ConfigError, Decision, RuleConfig, Severity, StringList};
use crate::policy::{ActionKind, ActionSpec};
use crate::rule::Rule;

mod brute_force_login;
mod login_throttle;
mod repeated_client_error;
mod repeated_route;
mod request_body_threshold;
mod resource_enumeration;
mod sensitive_field_change;
mod suspicious_proxy_header;

pub use brute_force_login::BruteForceLogin;
pub use login_throttle::LoginThrottle;
pub use repeated_client_error::RepeatedClientError;
pub use repeated_route::RepeatedRoute;
pub use request_body_threshold::RequestBodyThreshold;
pub use resource_enumeration::ResourceEnumeration;
pub use sensitive_field_change::SensitiveFieldChange;
pub use suspicious_proxy_header::SuspiciousProxyHeader;

/// Whether a built-in runs on the ingress pass (`safe_for_enforcement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressSafety {
    /// Never: it needs the response or the application's view.
    Never,
    /// Always: it is written for the ingress pass.
    Always,
    /// When its `safe_for_enforcement` parameter says so (default false).
    Configurable,
}

/// A built-in's default action: what it does when `rule_actions` names no
/// action for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultAction {
    pub action: ActionKind,
    pub scopes: &'static [&'static str],
}

const TEMP_BLOCK_IP: Option<DefaultAction> = Some(DefaultAction {
    action: ActionKind::TempBlock,
    scopes: &["ip"],
});

/// One built-in rule: its name, how it is built from its parameters, its
/// default action and whether it runs on the ingress pass.
#[derive(Clone, Copy)]
pub struct BuiltinRule {
    pub name: &'static str,
    pub default_action: Option<DefaultAction>,
    pub ingress: IngressSafety,
    build: Constructor,
}

/// Builds a built-in named `name` from its table.
type Constructor = fn(&str, &RuleConfig) -> Result<Arc<dyn Rule>, ConfigError>;

impl std::fmt::Debug for BuiltinRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinRule")
            .field("name", &self.name)
            .field("default_action", &self.default_action)
            .field("ingress", &self.ingress)
            .finish()
    }
}

impl BuiltinRule {
    /// Builds the rule from its parameter table (a `builtin` key in the
    /// table is allowed and ignored).
    pub fn build(&self, table: &RuleConfig) -> Result<Arc<dyn Rule>, ConfigError> {
        (self.build)(self.name, table)
    }

    /// The default action as a `rule_actions` entry.
    pub fn default_action(&self) -> Option<ActionSpec> {
        self.default_action
            .map(|d| ActionSpec::action(d.action).with_scopes(d.scopes.iter().copied()))
    }
}

/// A built-in rule type: its parameters are a serde struct.
pub trait FromParams: Rule + Sized + 'static {
    /// The rule's parameters (`#[serde(deny_unknown_fields, default)]`).
    type Params: DeserializeOwned;
    fn from_params(name: &str, params: Self::Params) -> Result<Self, ConfigError>;
}

fn build_as<R: FromParams>(name: &str, table: &RuleConfig) -> Result<Arc<dyn Rule>, ConfigError> {
    let p = crate::config::params::<R::Params>(name, table)?;
    Ok(Arc::new(R::from_params(name, p)?))
}

/// The registry of built-in rules: the one list of their names, how each is
/// built, its default action and its ingress safety.
pub static BUILTINS: [BuiltinRule; 8] = TABLE;

const TABLE: [BuiltinRule; 8] = [
    BuiltinRule {
        name: "brute_force_login",
        default_action: TEMP_BLOCK_IP,
        ingress: IngressSafety::Never,
        build: build_as::<BruteForceLogin>,
    },
    BuiltinRule {
        name: "login_throttle",
        default_action: TEMP_BLOCK_IP,
        ingress: IngressSafety::Always,
        build: build_as::<LoginThrottle>,
    },
    BuiltinRule {
        name: "repeated_client_error",
        default_action: TEMP_BLOCK_IP,
        ingress: IngressSafety::Never,
        build: build_as::<RepeatedClientError>,
    },
    BuiltinRule {
        name: "repeated_route",
        default_action: TEMP_BLOCK_IP,
        ingress: IngressSafety::Always,
        build: build_as::<RepeatedRoute>,
    },
    BuiltinRule {
        name: "request_body_threshold",
        default_action: TEMP_BLOCK_IP,
        ingress: IngressSafety::Always,
        build: build_as::<RequestBodyThreshold>,
    },
    BuiltinRule {
        name: "resource_enumeration",
        default_action: None,
        ingress: IngressSafety::Never,
        build: build_as::<ResourceEnumeration>,
    },
    BuiltinRule {
        name: "sensitive_field_change",
        default_action: Some(DefaultAction {
            action: ActionKind::PersistBlock,
            scopes: &["user", "session"],
        }),
        ingress: IngressSafety::Never,
        build: build_as::<SensitiveFieldChange>,
    },
    BuiltinRule {
        name: "suspicious_proxy_header",
        default_action: TEMP_BLOCK_IP,
        ingress: IngressSafety::Configurable,
        build: build_as::<SuspiciousProxyHeader>,
    },
];

/// Names of the built-in rules (of [`BUILTINS`]).
pub const BUILTIN_NAMES: [&str; TABLE.len()] = {
    let mut names = [""; TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        names[i] = TABLE[i].name;
        i += 1;
    }
    names
};

/// The built-in named `name`.
pub fn find(name: &str) -> Option<&'static BuiltinRule> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// The `http.response.*` event types.
pub const HTTP_RESPONSE_TYPES: [&str; 4] = [
    "http.response.success",
    "http.response.redirect",
    "http.response.client_error",
    "http.response.server_error",
];

/// The canonical text of a source address used in counter keys: an IP in
/// its canonical form (IPv4-mapped IPv6 as IPv4, IPv6 compressed and
/// lower-case), anything else trimmed. Egress events carry the address as
/// logged while the ingress check resolves it: both must reach one key.
pub fn ip_key(ip: &str) -> Cow<'_, str> {
    let t = ip.trim();
    match t.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => Cow::Owned(v4.to_string()),
            None => Cow::Owned(v6.to_string()),
        },
        Ok(IpAddr::V4(v4)) if v4.to_string() != t => Cow::Owned(v4.to_string()),
        _ => Cow::Borrowed(t),
    }
}

/// The counter key under which `brute_force_login` counts failures of one
/// source IP and `login_throttle` reads them. Part of the contract.
pub fn login_failure_key(ip: &str) -> String {
    format!("login_failures:{}", ip_key(ip))
}

/// Longest text a built-in keeps in a counter key or in history; longer
/// values keep a prefix and a hash of the whole, so distinct values stay
/// distinct while a 5 000-character path cannot inflate memory.
pub const MAX_KEPT_TEXT: usize = 256;

/// `s` itself when short, else its first 200 characters, `#` and a 64-bit
/// hash of the whole in hex.
pub fn bounded_text(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_KEPT_TEXT {
        return Cow::Borrowed(s);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    let prefix: String = s.chars().take(200).collect();
    Cow::Owned(format!("{prefix}#{:016x}", h.finish()))
}

/// Builds the built-in named by the table's `builtin` key.
pub fn build(table: &RuleConfig) -> Result<Arc<dyn Rule>, ConfigError> {
    match table.get("builtin") {
        Some(Value::String(name)) => build_named(name, table),
        Some(other) => Err(ConfigError::UnknownBuiltin(other.to_string())),
        None => Err(ConfigError::MissingBuiltin),
    }
}

/// Builds built-in `name` from its parameter table (a `builtin` key in the
/// table is allowed and ignored).
pub fn build_named(name: &str, table: &RuleConfig) -> Result<Arc<dyn Rule>, ConfigError> {
    find(name)
        .ok_or_else(|| ConfigError::UnknownBuiltin(name.to_string()))?
        .build(table)
}

/// The overrides every built-in accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub name: String,
    pub severity: u8,
    pub message: String,
    pub tags: Vec<String>,
    pub decision: Option<ActionKind>,
}

impl Common {
    /// `severity`, `message`, `tags` and `decision` (none for rules that
    /// never suggest one) as configured.
    pub fn new(
        name: &str,
        severity: Severity,
        message: String,
        tags: StringList,
        decision: Decision,
    ) -> Self {
        Common {
            name: name.to_string(),
            severity: severity.0,
            message,
            tags: tags.0,
            decision: decision.0,
        }
    }

    /// The match every built-in returns: the configured message, decision
    /// (none for rules that never suggest one) and tags, with `metadata`.
    pub fn matched(
        &self,
        rule: &(impl Rule + ?Sized),
        event: &sec_audit_core::AuditEvent,
        now: f64,
        metadata: serde_json::Map<String, Value>,
    ) -> crate::rule::Match {
        crate::rule::Match::new(rule, event, now, self.message.clone())
            .with_decision(self.decision)
            .with_tags(&self.tags)
            .with_metadata(metadata)
    }
}

/// A plain-literal pattern's fast form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Literal {
    /// `^literal`: the path starts with it.
    Prefix(String),
    /// `literal`: the path contains it.
    Anywhere(String),
}

/// The literal a regex pattern matches when it is nothing but a literal,
/// optionally anchored at the start with `^` (no metacharacter, escape,
/// flag or whitespace anywhere).
fn literal_of(pattern: &str) -> Option<Literal> {
    let (anchored, rest) = match pattern.strip_prefix('^') {
        Some(rest) => (true, rest),
        None => (false, pattern),
    };
    let plain = rest
        .chars()
        .all(|c| !c.is_whitespace() && !"\\.+*?()|[]{}^$#".contains(c));
    plain.then(|| {
        if anchored {
            Literal::Prefix(rest.to_string())
        } else {
            Literal::Anywhere(rest.to_string())
        }
    })
}

/// A rule's `paths` list: a path passes when any regex finds a match in it, and an empty list passes
/// every path. A pattern that is a plain literal (such as `^/api/transfer`
/// or `/login`) is checked as `starts_with` / `contains` — exactly what the
/// regex would find — without running the regex engine.
#[derive(Debug, Clone)]
pub struct PathFilter {
    patterns: Vec<(regex::Regex, Option<Literal>)>,
}

impl PathFilter {
    pub fn new(regexes: Vec<regex::Regex>) -> Self {
        PathFilter {
            patterns: regexes
                .into_iter()
                .map(|r| {
                    let lit = literal_of(r.as_str());
                    (r, lit)
                })
                .collect(),
        }
    }

    /// Whether `path` passes.
    pub fn allows(&self, path: &str) -> bool {
        self.patterns.is_empty()
            || self.patterns.iter().any(|(r, lit)| match lit {
                Some(Literal::Prefix(p)) => path.starts_with(p.as_str()),
                Some(Literal::Anywhere(p)) => path.contains(p.as_str()),
                None => r.is_match(path),
            })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The regexes, in configuration order.
    pub fn regexes(&self) -> impl Iterator<Item = &regex::Regex> {
        self.patterns.iter().map(|(r, _)| r)
    }
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_keys_are_canonical() {
        assert_eq!(ip_key(" 1.2.3.4 "), "1.2.3.4");
        assert_eq!(ip_key("::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(ip_key("2001:DB8::1"), "2001:db8::1");
        assert_eq!(ip_key("not-an-ip"), "not-an-ip");
        assert_eq!(
            login_failure_key("::ffff:10.0.0.1"),
            login_failure_key("10.0.0.1")
        );
    }

    #[test]
    fn literal_path_patterns_match_as_their_regex_does() {
        let patterns = [
            "^/accounts/login/",
            "/login",
            "^/api/transfer",
            "",
            "^",
            "^/wp-login.php",
            "/sso$",
            "(?i)^/ADMIN",
            "^/a b",
            "^/é/",
            "^/x#y",
        ];
        let paths = [
            "/accounts/login/",
            "/accounts/login",
            "/x/accounts/login/",
            "/login",
            "/api/login?next=/",
            "/api/transfer/",
            "/api/transfers",
            "",
            "/wp-loginXphp",
            "/wp-login.php",
            "/auth/sso",
            "/admin/x",
            "/a b",
            "/é/1",
            "/x#y",
        ];
        for p in patterns {
            let r = regex::Regex::new(p).unwrap();
            let f = PathFilter::new(vec![r.clone()]);
            for path in paths {
                assert_eq!(f.allows(path), r.is_match(path), "{p:?} on {path:?}");
            }
        }
        assert_eq!(literal_of("^/api/"), Some(Literal::Prefix("/api/".into())));
        assert_eq!(
            literal_of("/login"),
            Some(Literal::Anywhere("/login".into()))
        );
        assert_eq!(literal_of("^/a.b"), None);
        assert!(PathFilter::new(vec![]).allows("/anything"));
    }

    #[test]
    fn long_text_is_bounded_and_stays_distinct() {
        let a = "/".to_string() + &"a".repeat(5000);
        let b = "/".to_string() + &"a".repeat(4999) + "b";
        assert_eq!(bounded_text("/short"), "/short");
        assert!(bounded_text(&a).len() < 300);
        assert_ne!(bounded_text(&a), bounded_text(&b));
        assert_eq!(bounded_text(&a), bounded_text(&a));
        assert!(bounded_text(&"é".repeat(1000)).starts_with("éé"));
    }
}
