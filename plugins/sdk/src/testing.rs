//! A test host for plugin authors: feed events to your rules and read their
//! matches, counters and history in a plain `cargo test`, without building
//! a `.so` or loading it into sec-audit.
//!
//! [`TestHost`] calls your rules through the same [`Event`] and
//! [`Context`] views (and the same boundary value conversions) the real
//! host uses, over in-memory counters and history that follow the host's
//! rules: fixed-window counters on the host's clock, history appended per
//! scope key after every egress event, reads scoped and capped by the
//! rule's declared [`HistoryContext`](crate::HistoryContext), the engine's
//! checks on rules and matches. The clock is yours: [`TestHost::set_now`],
//! [`TestHost::advance`].
//!
//! ```
//! use sec_audit_plugin_sdk::serde_json::json;
//! use sec_audit_plugin_sdk::testing::TestHost;
//! use sec_audit_plugin_sdk::{
//!     ConfigError, Context, Event, PluginConfig, PluginMatch, PluginRule, RuleError,
//! };
//!
//! struct Teapot { threshold: i64 }
//!
//! impl PluginRule for Teapot {
//!     fn name(&self) -> &str { "teapot" }
//!     fn severity(&self) -> u8 { 3 }
//!     fn evaluate(&self, event: &Event<'_>, ctx: &Context<'_>) -> Result<Option<PluginMatch>, RuleError> {
//!         if event.status_code() != 418 { return Ok(None); }
//!         let n = ctx.counters.incr(&format!("teapot:{}", event.srcip()), 1, Some(60));
//!         Ok((n >= self.threshold).then(|| PluginMatch::new(self, "Too many teapots")))
//!     }
//! }
//!
//! #[derive(sec_audit_plugin_sdk::serde::Deserialize)]
//! #[serde(crate = "sec_audit_plugin_sdk::serde", deny_unknown_fields)]
//! struct Params { threshold: i64 }
//!
//! fn make_rules(config: &PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError> {
//!     let p: Params = config.deserialize("teapot")?;
//!     Ok(vec![Box::new(Teapot { threshold: p.threshold })])
//! }
//!
//! let mut host = TestHost::from_factory(make_rules, json!({"threshold": 2})).unwrap();
//! let teapot = json!({"event_type": "http.response.client_error",
//!                     "source.address": "203.0.113.9", "http.response.status_code": 418});
//! assert!(host.evaluate(&teapot).unwrap().is_empty());
//! host.advance(1.0);
//! let matches = host.evaluate(&teapot).unwrap();
//! assert_eq!(matches[0].rule_name, "teapot");
//! assert_eq!(host.counter("teapot:203.0.113.9"), Some(2));
//! host.advance(60.0); // the window is over
//! assert_eq!(host.counter("teapot:203.0.113.9"), None);
//! ```
//!
//! What it does not do: resolve actions (a match here is what the engine
//! would hand the action policy; `rule_actions` decides what happens to it),
//! scrub history summaries (the default sensitive list never touches a
//! summary's fields), or cap the number of keys.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RCowStr, ROption, RResult, RStr, RString};
use serde_json::{Map, Value};

use crate::config::{ConfigError, PluginConfig};
use crate::context::Context;
use crate::event::{value_to_ffi, Event};
use crate::ffi::{
    FfiAccessor, FfiContext, FfiCounters, FfiCounters_TO, FfiErrorKind, FfiEvent, FfiEvent_TO,
    FfiHistory, FfiHistory_TO, FfiQuery, FfiRowsBox, FfiRows_TO, FfiRuleError, FfiValue,
};
use crate::rule::{HistoryContext, PluginMatch, PluginRule, RuleError};

/// The synthetic event type of the host's ingress pass.
pub const INGRESS_EVENT_TYPE: &str = "audit.http.request.pre";

/// The default start of the clock (seconds since the epoch).
pub const DEFAULT_NOW: f64 = 1_000_000.0;

/// Rows kept per history key when no rule asks for more (the host's
/// `max_events_per_key`).
const DEFAULT_ROWS_PER_KEY: usize = 100;
/// The host's ceiling on `max_events` and rows per key.
pub const MAX_EVENTS_CEILING: usize = 1000;

/// Event types the host's engine never evaluates (enforcement cannot
/// trigger itself).
const IGNORED_PREFIXES: [&str; 3] = ["audit.rule.", "audit.enforcement.", "audit.context."];

/// The built-in scopes, in the host's precedence order.
const SCOPES: [&str; 4] = ["user", "session", "ip", "route"];

/// OTel keys that fill their raw alias when the raw key is absent or empty.
const ALIASES: [(&str, &str); 5] = [
    ("session.id", "session_id"),
    ("user.id", "user_id"),
    ("source.address", "srcip"),
    ("http.route", "route"),
    ("http.route_name", "route_name"),
];

/// Attributes a history summary keeps (`status` is the status code).
const SUMMARY_FIELDS: [&str; 17] = [
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

/// Why the test host refused something, or a rule failed.
#[derive(Debug, Clone, PartialEq)]
pub enum TestError {
    /// The event is not an object with a non-empty string `event_type`.
    BadEvent(String),
    /// The factory rejected its configuration.
    Config(ConfigError),
    /// A rule the host would refuse to register (empty or duplicate name,
    /// severity outside 1–10, bad history context).
    InvalidRule { rule: String, reason: String },
    /// `evaluate` returned an error (the host isolates it as a rule
    /// failure; the other rules still ran).
    RuleFailed { rule: String, error: RuleError },
    /// `evaluate` panicked (the host isolates it the same way).
    Panicked { rule: String, message: String },
    /// The match does not carry the rule's own name or has a severity
    /// outside 1–10 (the host refuses it as a rule failure).
    InvalidMatch { rule: String, reason: String },
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestError::BadEvent(r) => write!(f, "not an audit event: {r}"),
            TestError::Config(e) => write!(f, "configuration rejected: {e}"),
            TestError::InvalidRule { rule, reason } => {
                write!(f, "rule `{rule}` would be refused: {reason}")
            }
            TestError::RuleFailed { rule, error } => write!(f, "rule `{rule}` failed: {error}"),
            TestError::Panicked { rule, message } => {
                write!(f, "rule `{rule}` panicked: {message}")
            }
            TestError::InvalidMatch { rule, reason } => {
                write!(f, "rule `{rule}` returned an invalid match: {reason}")
            }
        }
    }
}

impl std::error::Error for TestError {}

struct Hosted {
    rule: Box<dyn PluginRule>,
    name: String,
    event_types: Vec<String>,
    safe_for_enforcement: bool,
    history: Option<HistoryContext>,
}

/// An in-process stand-in for the sec-audit host (see the module docs).
pub struct TestHost {
    rules: Vec<Hosted>,
    config: Map<String, Value>,
    now: f64,
    counters: MemoryCounters,
    history: MemoryHistory,
    /// `(window, rows per key)` when some rule declares history.
    retention: Option<(f64, usize)>,
}

impl std::fmt::Debug for TestHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestHost")
            .field("rules", &self.rule_names())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl TestHost {
    /// Hosts these rules, with an empty configuration table.
    pub fn new(rules: Vec<Box<dyn PluginRule>>) -> Result<Self, TestError> {
        Self::with_config(rules, Map::new())
    }

    /// Builds the rules with `factory` (your `export_rules!` factory) from
    /// `config` (a JSON object: what `[rules.config]` holds), as the host
    /// does for a configuration entry without `rule = "..."`.
    pub fn from_factory<F>(factory: F, config: Value) -> Result<Self, TestError>
    where
        F: FnOnce(&PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError>,
    {
        Self::build(factory, config, None)
    }

    /// Like [`TestHost::from_factory`] for an entry with `rule = "<rule>"`:
    /// the factory sees the selection ([`PluginConfig::wants`]) and only
    /// that rule is kept.
    pub fn from_factory_selecting<F>(
        factory: F,
        config: Value,
        rule: &str,
    ) -> Result<Self, TestError>
    where
        F: FnOnce(&PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError>,
    {
        Self::build(factory, config, Some(rule))
    }

    fn build<F>(factory: F, config: Value, selected: Option<&str>) -> Result<Self, TestError>
    where
        F: FnOnce(&PluginConfig) -> Result<Vec<Box<dyn PluginRule>>, ConfigError>,
    {
        let values = match config {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                return Err(TestError::Config(ConfigError {
                    rule: selected.map(str::to_string),
                    key: None,
                    reason: format!("configuration is not a JSON object: {other}"),
                }))
            }
        };
        let plugin_config = PluginConfig::new(values.clone(), selected.map(str::to_string));
        let mut rules = factory(&plugin_config).map_err(|mut e| {
            if e.rule.is_none() {
                e.rule = selected.map(str::to_string);
            }
            TestError::Config(e)
        })?;
        if let Some(name) = selected {
            rules.retain(|r| r.name() == name);
            if rules.is_empty() {
                return Err(TestError::InvalidRule {
                    rule: name.to_string(),
                    reason: "the library does not export it".into(),
                });
            }
        }
        Self::with_config(rules, values)
    }

    /// Hosts these rules; every rule's context exposes `config`.
    pub fn with_config(
        rules: Vec<Box<dyn PluginRule>>,
        config: Map<String, Value>,
    ) -> Result<Self, TestError> {
        let mut hosted = Vec::with_capacity(rules.len());
        let mut names = BTreeSet::new();
        let mut retention: Option<(f64, usize)> = None;
        for rule in rules {
            let name = rule.name().to_string();
            let bad = |reason: String| TestError::InvalidRule {
                rule: name.clone(),
                reason,
            };
            if name.is_empty() {
                return Err(bad("empty rule name".into()));
            }
            if !names.insert(name.clone()) {
                return Err(bad("a rule of this name is already registered".into()));
            }
            let severity = rule.severity();
            if !(1..=10).contains(&severity) {
                return Err(bad(format!("severity {severity} outside 1-10")));
            }
            let history = rule.history_context().cloned();
            if let Some(h) = &history {
                if !(h.window_seconds > 0.0 && h.window_seconds.is_finite()) {
                    return Err(bad("history window_seconds must be > 0".into()));
                }
                if h.max_events == 0 || h.max_events > MAX_EVENTS_CEILING {
                    return Err(bad(format!(
                        "history max_events must be 1-{MAX_EVENTS_CEILING}"
                    )));
                }
                if let Some(s) = h.scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
                    return Err(bad(format!("unknown scope `{s}`")));
                }
                let r = retention.get_or_insert((0.0, DEFAULT_ROWS_PER_KEY));
                r.0 = r.0.max(h.window_seconds);
                r.1 = r.1.max(h.max_events).min(MAX_EVENTS_CEILING);
            }
            hosted.push(Hosted {
                event_types: rule.event_types().to_vec(),
                safe_for_enforcement: rule.safe_for_enforcement(),
                history,
                name,
                rule,
            });
        }
        Ok(TestHost {
            rules: hosted,
            config,
            now: DEFAULT_NOW,
            counters: MemoryCounters::default(),
            history: MemoryHistory::default(),
            retention,
        })
    }

    /// The hosted rules' names, in registration order.
    pub fn rule_names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// The clock: seconds since the epoch (starts at [`DEFAULT_NOW`]).
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Sets the clock. Like the host's replay clock, it never moves
    /// backwards: an earlier time is ignored.
    pub fn set_now(&mut self, now: f64) {
        if now.is_finite() && now > self.now {
            self.now = now;
        }
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&mut self, secs: f64) {
        self.set_now(self.now + secs);
    }

    /// The egress pass on one event (an object of OTel-style attributes
    /// with `event_type`, as an application logs it): every rule that wants
    /// its type runs, then the event's summary is appended to history. The
    /// matches, in rule order; the first rule failure as an error (the
    /// other rules still ran, and history was still appended, as in the
    /// host).
    pub fn evaluate(&mut self, event: &Value) -> Result<Vec<PluginMatch>, TestError> {
        self.run(event, false)
    }

    /// The ingress pass: only `safe_for_enforcement` rules run, and nothing
    /// is appended to history. The host runs it on a synthetic
    /// [`INGRESS_EVENT_TYPE`] event holding `url.path`,
    /// `http.request.method`, `source.address`, `user.id`, `session.id`,
    /// `request_id` and `request.body` when the request has them.
    pub fn evaluate_ingress(&mut self, event: &Value) -> Result<Vec<PluginMatch>, TestError> {
        self.run(event, true)
    }

    /// A counter's value now, `None` when absent or expired.
    pub fn counter(&self, key: &str) -> Option<i64> {
        self.counters.get(key, self.now)
    }

    /// The history rows kept under `scope:value`, newest first (each a
    /// summary with `recorded_at` and `rule_attrs`).
    pub fn history(&self, scope: &str, value: &str) -> Vec<Map<String, Value>> {
        self.history
            .rows(&format!("{scope}:{value}"))
            .into_iter()
            .rev()
            .map(|(_, row)| row)
            .collect()
    }

    fn run(
        &mut self,
        event: &Value,
        enforcement_only: bool,
    ) -> Result<Vec<PluginMatch>, TestError> {
        let event = TestEvent::parse(event)?;
        if IGNORED_PREFIXES
            .iter()
            .any(|p| event.event_type.starts_with(p))
        {
            return Ok(Vec::new());
        }
        let now = self.now;
        let keys = event.scope_keys();
        let record = !enforcement_only && self.retention.is_some();
        let mut matches = Vec::new();
        let mut failure: Option<TestError> = None;
        let mut rule_attrs: Option<Map<String, Value>> = None;
        for r in &self.rules {
            if enforcement_only && !r.safe_for_enforcement {
                continue;
            }
            if !r.event_types.is_empty() && !r.event_types.contains(&event.event_type) {
                continue;
            }
            let reader = Reader {
                history: &self.history,
                keys: &keys,
                context: r.history.as_ref(),
                now,
            };
            let counters = CountersView {
                counters: &self.counters,
                now,
            };
            let fctx = FfiContext {
                now,
                counters: FfiCounters_TO::from_ptr(&counters, TD_Opaque),
                history: FfiHistory_TO::from_ptr(&reader, TD_Opaque),
            };
            let ctx = Context::new(&fctx, &self.config);
            let view = Event::new(FfiEvent_TO::from_ptr(&event, TD_Opaque));
            let outcome = catch_unwind(AssertUnwindSafe(|| r.rule.evaluate(&view, &ctx)));
            match outcome {
                Ok(Ok(Some(m))) => match validate(&m, &r.name) {
                    Ok(()) => matches.push(m),
                    Err(reason) => {
                        failure.get_or_insert(TestError::InvalidMatch {
                            rule: r.name.clone(),
                            reason,
                        });
                    }
                },
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    failure.get_or_insert(TestError::RuleFailed {
                        rule: r.name.clone(),
                        error,
                    });
                }
                Err(payload) => {
                    failure.get_or_insert(TestError::Panicked {
                        rule: r.name.clone(),
                        message: panic_text(&*payload),
                    });
                }
            }
            if record {
                let attrs =
                    catch_unwind(AssertUnwindSafe(|| r.rule.history_attributes(&view, &ctx)));
                // As in the host: a failing `history_attributes` never drops
                // the match; it is ignored.
                if let Ok(Ok(Some(attrs))) = attrs {
                    rule_attrs
                        .get_or_insert_with(Map::new)
                        .insert(r.name.clone(), Value::Object(attrs));
                }
            }
        }
        if let (true, Some((window, rows))) = (record, self.retention) {
            if !keys.is_empty() {
                let mut summary = event.summary();
                summary.insert("recorded_at".into(), Value::from(now));
                if let Some(attrs) = rule_attrs {
                    summary.insert("rule_attrs".into(), Value::Object(attrs));
                }
                self.history.append(&keys, now, summary, window, rows);
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(matches),
        }
    }
}

fn validate(m: &PluginMatch, rule: &str) -> Result<(), String> {
    if m.rule_name.is_empty() {
        return Err("empty rule name".into());
    }
    if m.rule_name != rule {
        return Err(format!("a match named `{}`", m.rule_name));
    }
    if !(1..=10).contains(&m.severity) {
        return Err(format!("severity {} outside 1-10", m.severity));
    }
    Ok(())
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

// --- the event -------------------------------------------------------------

/// An audit event with the host's reading rules (aliases filled).
struct TestEvent {
    event_type: String,
    attrs: Map<String, Value>,
}

fn is_empty_value(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Flat key first, then the nested walk; null is absent.
fn lookup<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
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
    (!cur.is_null()).then_some(cur)
}

fn value_text(v: Option<&Value>) -> Cow<'_, str> {
    match v {
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::Number(n)) => Cow::Owned(n.to_string()),
        Some(Value::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        _ => Cow::Borrowed(""),
    }
}

fn value_as_i64(v: &Value) -> Option<i64> {
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

/// The client-IP token grammar of the host (bare address, `ip:port`,
/// `[v6]:port`, quoted).
fn parse_ip_token(token: &str) -> Option<IpAddr> {
    let t = token.trim().trim_matches(|c| c == '"' || c == '\'');
    if t.is_empty() {
        return None;
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    t.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

impl TestEvent {
    fn parse(v: &Value) -> Result<Self, TestError> {
        let Value::Object(obj) = v else {
            return Err(TestError::BadEvent("not a JSON object".into()));
        };
        // An OTel record line: the event is its attributes.
        let mut attrs = match obj.get("attributes") {
            Some(Value::Object(a)) => a.clone(),
            Some(_) => return Err(TestError::BadEvent("`attributes` is not an object".into())),
            None => obj.clone(),
        };
        let event_type = match attrs.get("event_type") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => {
                return Err(TestError::BadEvent(
                    "no non-empty string `event_type`".into(),
                ))
            }
        };
        for (otel, raw) in ALIASES {
            if is_empty_value(attrs.get(raw)) && !is_empty_value(attrs.get(otel)) {
                if let Some(v) = attrs.get(otel).cloned() {
                    attrs.insert(raw.to_string(), v);
                }
            }
        }
        Ok(TestEvent { event_type, attrs })
    }

    fn field(&self, key: &str) -> Option<&Value> {
        lookup(&self.attrs, key)
    }

    fn text(&self, key: &str) -> Cow<'_, str> {
        value_text(self.field(key))
    }

    fn first_text(&self, keys: &[&str]) -> Cow<'_, str> {
        keys.iter()
            .map(|k| self.text(k))
            .find(|t| !t.is_empty())
            .unwrap_or(Cow::Borrowed(""))
    }

    fn status(&self) -> i64 {
        ["http.response.status_code", "status_code", "status"]
            .iter()
            .find_map(|k| self.field(k).and_then(value_as_i64))
            .unwrap_or(0)
    }

    fn body(&self) -> Option<&Map<String, Value>> {
        ["request.body", "body"]
            .iter()
            .find_map(|k| self.field(k).and_then(Value::as_object))
    }

    /// `scope:value` keys, in precedence order (user, session, ip, route).
    fn scope_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |scope: &str, v: &str| {
            let v = v.trim();
            if !v.is_empty() {
                out.push(format!("{scope}:{v}"));
            }
        };
        let user = ["user_id", "actor.id", "username", "actor.name"]
            .iter()
            .map(|k| self.text(k))
            .find(|t| !t.trim().is_empty())
            .unwrap_or(Cow::Borrowed(""));
        push("user", &user);
        push("session", &self.text("session_id"));
        if let Some(ip) = parse_ip_token(self.text("srcip").trim()) {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            push("ip", &ip.to_string());
        }
        push("route", &self.text("route"));
        out
    }

    /// The history summary (without `recorded_at` and `rule_attrs`).
    fn summary(&self) -> Map<String, Value> {
        fn non_empty(v: &Value) -> bool {
            match v {
                Value::Null => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            }
        }
        fn pick(src: Option<&Value>, keys: &[&str]) -> Option<Value> {
            let obj = src?.as_object()?;
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
        let mut s = Map::new();
        for key in SUMMARY_FIELDS {
            if key == "status" {
                let code = self.status();
                if code != 0 {
                    s.insert("status".into(), Value::from(code));
                }
            } else if let Some(v) = self.attrs.get(key).filter(|v| non_empty(v)) {
                s.insert(key.into(), v.clone());
            }
        }
        if let Some(actor) = pick(self.attrs.get("actor"), &["id", "name"]) {
            s.insert("actor".into(), actor);
        }
        if let Some(target) = pick(self.attrs.get("target"), &["app", "model", "object_id"]) {
            s.insert("target".into(), target);
        }
        s
    }
}

fn rcow(c: Cow<'_, str>) -> RCowStr<'_> {
    match c {
        Cow::Borrowed(s) => RCowStr::Borrowed(RStr::from_str(s)),
        Cow::Owned(s) => RCowStr::Owned(RString::from(s)),
    }
}

impl FfiEvent for TestEvent {
    fn event_type(&self) -> RStr<'_> {
        RStr::from_str(&self.event_type)
    }
    fn text(&self, key: RStr<'_>) -> RCowStr<'_> {
        rcow(TestEvent::text(self, key.as_str()))
    }
    fn field(&self, key: RStr<'_>) -> FfiValue<'_> {
        value_to_ffi(TestEvent::field(self, key.as_str()))
    }
    fn accessor(&self, which: FfiAccessor) -> RCowStr<'_> {
        rcow(match which {
            FfiAccessor::RequestId => TestEvent::text(self, "request_id"),
            FfiAccessor::Srcip => TestEvent::text(self, "srcip"),
            FfiAccessor::UserId => TestEvent::text(self, "user_id"),
            FfiAccessor::SessionId => TestEvent::text(self, "session_id"),
            FfiAccessor::Method => self.first_text(&["http.request.method", "method"]),
            FfiAccessor::Path => self.first_text(&["url.path", "path"]),
            FfiAccessor::Url => self.first_text(&["url.full", "url"]),
            FfiAccessor::RoutePattern => self.first_text(&["http.route", "route_pattern", "route"]),
            FfiAccessor::RouteName => self.first_text(&["http.route_name", "route_name"]),
        })
    }
    fn status_code(&self) -> i64 {
        self.status()
    }
    fn body(&self) -> FfiValue<'_> {
        match TestEvent::body(self) {
            Some(m) => FfiValue::Json(serde_json::to_string(m).unwrap_or_default().into()),
            None => FfiValue::Absent,
        }
    }
    fn body_field(&self, key: RStr<'_>) -> FfiValue<'_> {
        value_to_ffi(TestEvent::body(self).and_then(|b| lookup(b, key.as_str())))
    }
}

// --- counters --------------------------------------------------------------

#[derive(Default)]
struct MemoryCounters {
    /// key -> (value, expires_at)
    map: RefCell<HashMap<String, (i64, f64)>>,
}

impl MemoryCounters {
    fn get(&self, key: &str, now: f64) -> Option<i64> {
        match self.map.borrow().get(key) {
            Some((v, exp)) if *exp > now => Some(*v),
            _ => None,
        }
    }
}

fn expiry(now: f64, ttl: Option<u64>) -> f64 {
    ttl.map_or(f64::INFINITY, |t| now + t as f64)
}

/// The counters as one call sees them (at the call's `now`).
struct CountersView<'c> {
    counters: &'c MemoryCounters,
    now: f64,
}

impl FfiCounters for CountersView<'_> {
    fn incr(&self, key: RStr<'_>, amount: i64, ttl_secs: ROption<u64>) -> i64 {
        let mut map = self.counters.map.borrow_mut();
        let entry = map
            .entry(key.as_str().to_string())
            .or_insert((0, f64::NEG_INFINITY));
        if entry.1 > self.now {
            entry.0 = entry.0.saturating_add(amount);
        } else {
            *entry = (amount, expiry(self.now, ttl_secs.into_option()));
        }
        entry.0
    }
    fn get_int(&self, key: RStr<'_>, default: i64) -> i64 {
        self.counters.get(key.as_str(), self.now).unwrap_or(default)
    }
    fn set(&self, key: RStr<'_>, value: i64, ttl_secs: ROption<u64>) {
        self.counters.map.borrow_mut().insert(
            key.as_str().to_string(),
            (value, expiry(self.now, ttl_secs.into_option())),
        );
    }
    fn delete(&self, key: RStr<'_>) {
        self.counters.map.borrow_mut().remove(key.as_str());
    }
    fn expire(&self, key: RStr<'_>, ttl_secs: u64) {
        if let Some(e) = self.counters.map.borrow_mut().get_mut(key.as_str()) {
            if e.1 > self.now {
                e.1 = self.now + ttl_secs as f64;
            }
        }
    }
}

// --- history ---------------------------------------------------------------

/// One history row with its `recorded_at`.
type Row = (f64, Map<String, Value>);

#[derive(Default)]
struct MemoryHistory {
    /// scope key -> rows, oldest first.
    map: RefCell<HashMap<String, VecDeque<Row>>>,
}

impl MemoryHistory {
    fn append(
        &self,
        keys: &[String],
        recorded_at: f64,
        row: Map<String, Value>,
        window: f64,
        max: usize,
    ) {
        let cutoff = recorded_at - window;
        let mut map = self.map.borrow_mut();
        for key in keys {
            let rows = map.entry(key.clone()).or_default();
            while rows.front().is_some_and(|(t, _)| *t <= cutoff) {
                rows.pop_front();
            }
            rows.push_back((recorded_at, row.clone()));
            while rows.len() > max.max(1) {
                rows.pop_front();
            }
        }
    }

    fn rows(&self, key: &str) -> Vec<Row> {
        self.map
            .borrow()
            .get(key)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// A rule's scoped history reader for one call.
struct Reader<'h> {
    history: &'h MemoryHistory,
    keys: &'h [String],
    context: Option<&'h HistoryContext>,
    now: f64,
}

fn ffi_error(e: RuleError) -> FfiRuleError {
    let (kind, message) = match e {
        RuleError::UndeclaredScope(s) => (FfiErrorKind::UndeclaredScope, s),
        RuleError::NoHistoryContext => (FfiErrorKind::NoHistoryContext, String::new()),
        RuleError::Failed(m) => (FfiErrorKind::Failed, m),
    };
    FfiRuleError {
        kind,
        message: message.into(),
    }
}

impl Reader<'_> {
    fn read(&self, scope: &str, q: &FfiQuery<'_>) -> Result<Vec<Map<String, Value>>, RuleError> {
        let ctx = self.context.ok_or(RuleError::NoHistoryContext)?;
        if !ctx.scopes.contains(scope) {
            return Err(RuleError::UndeclaredScope(scope.to_string()));
        }
        let window = q
            .window_seconds
            .into_option()
            .filter(|w| *w > 0.0)
            .map_or(ctx.window_seconds, |w| w.min(ctx.window_seconds));
        let floor = self.now - window;
        let since = q.since.into_option().map_or(floor, |s| s.max(floor));
        let limit = q.limit.into_option().map_or(ctx.max_events, |l| {
            usize::try_from(l).unwrap_or(usize::MAX).min(ctx.max_events)
        });
        let asked: Option<Vec<String>> = q
            .event_types
            .as_ref()
            .map(|t| t.iter().map(|s| s.as_str().to_string()).collect())
            .into_option();
        let types: Option<Vec<String>> = match (&ctx.event_types, asked) {
            (None, t) => t,
            (Some(d), None) => Some(d.clone()),
            (Some(d), Some(t)) => Some(t.into_iter().filter(|x| d.contains(x)).collect()),
        };
        if limit == 0 || types.as_ref().is_some_and(|t| t.is_empty()) {
            return Ok(Vec::new());
        }
        let prefix = format!("{scope}:");
        let mut rows: Vec<Row> = Vec::new();
        for key in self.keys.iter().filter(|k| k.starts_with(&prefix)) {
            let kept = self.history.rows(key);
            rows.extend(
                kept.into_iter()
                    .rev()
                    .take_while(|(t, _)| *t > since)
                    .filter(|(_, row)| match &types {
                        None => true,
                        Some(types) => row
                            .get("event_type")
                            .and_then(Value::as_str)
                            .is_some_and(|t| types.iter().any(|x| x == t)),
                    })
                    .take(limit),
            );
        }
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        rows.truncate(limit);
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }
}

impl FfiHistory for Reader<'_> {
    fn events(&self, scope: RStr<'_>, query: &FfiQuery<'_>) -> RResult<FfiRowsBox, FfiRuleError> {
        match self.read(scope.as_str(), query) {
            Ok(rows) => RResult::ROk(FfiRows_TO::from_ptr(RBox::new(Rows(rows)), TD_Opaque)),
            Err(e) => RResult::RErr(ffi_error(e)),
        }
    }
}

struct Rows(Vec<Map<String, Value>>);

impl Rows {
    fn row(&self, i: u64) -> Option<&Map<String, Value>> {
        usize::try_from(i).ok().and_then(|i| self.0.get(i))
    }
}

impl crate::ffi::FfiRows for Rows {
    fn row_count(&self) -> u64 {
        self.0.len() as u64
    }
    fn text(&self, row: u64, key: RStr<'_>) -> RCowStr<'_> {
        rcow(value_text(
            self.row(row).and_then(|r| lookup(r, key.as_str())),
        ))
    }
    fn field(&self, row: u64, key: RStr<'_>) -> FfiValue<'_> {
        value_to_ffi(self.row(row).and_then(|r| lookup(r, key.as_str())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Context, Event, HistoryQuery};
    use serde_json::json;

    /// Reads history of `scope` and reports what it saw.
    struct Reads {
        scope: &'static str,
        context: HistoryContext,
    }

    impl PluginRule for Reads {
        fn name(&self) -> &str {
            "reads"
        }
        fn severity(&self) -> u8 {
            4
        }
        fn history_context(&self) -> Option<&HistoryContext> {
            Some(&self.context)
        }
        fn evaluate(
            &self,
            event: &Event<'_>,
            ctx: &Context<'_>,
        ) -> Result<Option<PluginMatch>, RuleError> {
            let rows = ctx.history.events(self.scope, &HistoryQuery::default())?;
            let paths: Vec<Value> = rows
                .iter()
                .map(|r| Value::String(r.text("rule_attrs.reads.path").into_owned()))
                .collect();
            let mut meta = Map::new();
            meta.insert("paths".into(), Value::Array(paths));
            meta.insert("path".into(), Value::String(event.path().into_owned()));
            Ok(Some(PluginMatch::new(self, "read").with_metadata(meta)))
        }
        fn history_attributes(
            &self,
            event: &Event<'_>,
            _ctx: &Context<'_>,
        ) -> Result<Option<Map<String, Value>>, RuleError> {
            let mut m = Map::new();
            m.insert("path".into(), Value::String(event.path().into_owned()));
            Ok(Some(m))
        }
    }

    fn reads(scope: &'static str) -> TestHost {
        TestHost::new(vec![Box::new(Reads {
            scope,
            context: HistoryContext::new(["ip"])
                .window_seconds(10.0)
                .max_events(2),
        })])
        .unwrap()
    }

    #[test]
    fn history_is_scoped_windowed_capped_and_newest_first() {
        let mut host = reads("ip");
        let ev = |p: &str| json!({"event_type": "e", "source.address": "::ffff:198.51.100.1", "url.path": p});
        for p in ["/a", "/b", "/c"] {
            host.evaluate(&ev(p)).unwrap();
            host.advance(1.0);
        }
        let m = host.evaluate(&ev("/d")).unwrap();
        // max_events = 2, newest first; the canonical ip key.
        assert_eq!(m[0].metadata["paths"], json!(["/c", "/b"]));
        assert_eq!(host.history("ip", "198.51.100.1").len(), 4);
        host.advance(20.0);
        let m = host.evaluate(&ev("/e")).unwrap();
        assert_eq!(m[0].metadata["paths"], json!([]), "older than the window");
        // The ingress pass appends nothing.
        host.evaluate_ingress(&ev("/f")).unwrap();
        assert_eq!(
            host.history("ip", "198.51.100.1")[0]["rule_attrs"]["reads"]["path"],
            "/e"
        );
    }

    #[test]
    fn an_undeclared_scope_is_a_rule_failure() {
        let mut host = reads("user");
        let e = json!({"event_type": "e", "user.id": "u1"});
        assert_eq!(
            host.evaluate(&e).unwrap_err(),
            TestError::RuleFailed {
                rule: "reads".into(),
                error: RuleError::UndeclaredScope("user".into())
            }
        );
    }

    struct Bad(u8, &'static str);
    impl PluginRule for Bad {
        fn name(&self) -> &str {
            "bad"
        }
        fn severity(&self) -> u8 {
            self.0
        }
        fn evaluate(
            &self,
            _: &Event<'_>,
            _: &Context<'_>,
        ) -> Result<Option<PluginMatch>, RuleError> {
            match self.1 {
                "panic" => panic!("boom"),
                "foreign" => Ok(Some(PluginMatch {
                    rule_name: "brute_force_login".into(),
                    ..PluginMatch::new(self, "x")
                })),
                _ => Ok(Some(PluginMatch::new(self, "x").with_severity(0))),
            }
        }
    }

    #[test]
    fn the_hosts_checks_on_rules_and_matches_apply() {
        assert!(matches!(
            TestHost::new(vec![Box::new(Bad(11, ""))]),
            Err(TestError::InvalidRule { .. })
        ));
        let e = json!({"event_type": "e"});
        let mut host = TestHost::new(vec![Box::new(Bad(5, "panic"))]).unwrap();
        assert!(
            matches!(host.evaluate(&e), Err(TestError::Panicked { message, .. }) if message == "boom")
        );
        let mut host = TestHost::new(vec![Box::new(Bad(5, "foreign"))]).unwrap();
        assert!(matches!(
            host.evaluate(&e),
            Err(TestError::InvalidMatch { .. })
        ));
        let mut host = TestHost::new(vec![Box::new(Bad(5, "zero"))]).unwrap();
        assert!(matches!(
            host.evaluate(&e),
            Err(TestError::InvalidMatch { .. })
        ));
        // Enforcement never triggers itself.
        assert_eq!(
            host.evaluate(&json!({"event_type": "audit.enforcement.blocked"}))
                .unwrap(),
            vec![]
        );
        assert!(matches!(
            host.evaluate(&json!({"event_type": ""})),
            Err(TestError::BadEvent(_))
        ));
    }
}
