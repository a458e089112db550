//! Enforcement events (`docs/events.md`): what goes out, and how.
//!
//! Every decision becomes one [`EnforcementEvent`]. The [`EventEmitter`]
//! produces it through the `opentelemetry` logs API; the default processor,
//! [`JsonlProcessor`], writes each record as one OTel JSONL line (scrubbed
//! and bounded by `sec-audit-core`). After the write — the durable trail
//! comes first — the event is offered to subscribers registered in code,
//! each isolated from the others' errors and panics.

use std::borrow::Cow;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{
    AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity as OtelSeverity,
};
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider};
use parking_lot::RwLock;
use sec_audit_core::record::{bound_attribute_value, cut_str};
use sec_audit_core::{
    LogRecord, RecordBounds, RecordHead, RecordWriter, Scrubber, Severity, REDACTED,
};
use serde_json::{Map, Value};

/// Name of the instrumentation scope of every enforcement record.
pub const SCOPE_NAME: &str = "sec-audit-enforce";
/// The `service.name` resource attribute.
pub const SERVICE_NAME: &str = "sec-audit";

/// The five enforcement event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Alert,
    Blocked,
    BlockApplied,
    BlockRevoked,
    EvaluationFailed,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::Alert,
        EventType::Blocked,
        EventType::BlockApplied,
        EventType::BlockRevoked,
        EventType::EvaluationFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Alert => "audit.enforcement.alert",
            EventType::Blocked => "audit.enforcement.blocked",
            EventType::BlockApplied => "audit.enforcement.block_applied",
            EventType::BlockRevoked => "audit.enforcement.block_revoked",
            EventType::EvaluationFailed => "audit.enforcement.evaluation_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn severity(self) -> Severity {
        match self {
            EventType::BlockRevoked => Severity::Info,
            EventType::EvaluationFailed => Severity::Error,
            _ => Severity::Warning,
        }
    }
}

/// The attribute keys of enforcement records (`docs/events.md`), each
/// defined once: emitters and readers name them through these constants.
pub mod keys {
    /// The event type (`audit.enforcement.*`), added by the emitter.
    pub const EVENT_TYPE: &str = "event_type";
    /// The record schema version, added by the emitter.
    pub const SCHEMA_VERSION: &str = "schema_version";
    pub const RULE_NAME: &str = "security_rule.name";
    pub const RULE_DESCRIPTION: &str = "security_rule.description";
    pub const RULE_SEVERITY: &str = "security_rule.severity";
    pub const SCOPE_TYPE: &str = "scope.type";
    pub const SCOPE_VALUE: &str = "scope.value";
    pub const ACTION: &str = "enforcement.action";
    pub const REASON: &str = "enforcement.reason";
    pub const TTL: &str = "enforcement.ttl";
    pub const EXPIRES_AT: &str = "enforcement.expires_at";
    pub const REVOKED_BY: &str = "enforcement.revoked_by";
    pub const FAIL_MODE: &str = "enforcement.fail_mode";
    pub const SAFELISTED: &str = "enforcement.safelisted";
    pub const OFFENSE: &str = "enforcement.offense";
    /// How many failures a coalesced `evaluation_failed` record stands for.
    pub const FAILURE_COUNT: &str = "enforcement.failure_count";
    pub const ERROR_TYPE: &str = "error.type";
    pub const STATUS_CODE: &str = "http.response.status_code";
    pub const SOURCE_ADDRESS: &str = "source.address";
    pub const USER_ID: &str = "user.id";
    pub const SESSION_ID: &str = "session.id";
}

/// An attribute key: one of the [`keys`] constants (or any other
/// `&'static str`) without a copy, or an owned key for extra attributes.
pub type AttrKey = Cow<'static, str>;

/// An attribute value. Scalars are typed; arrays and objects stay JSON.
/// An integer is an [`AttrValue::I64`] whenever it fits (a `u64` only
/// beyond `i64::MAX`), so that every value has one form.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(Cow<'static, str>),
    I64(i64),
    /// An integer beyond `i64::MAX`.
    U64(u64),
    /// A finite double (a non-finite one is no value: left out).
    F64(f64),
    Bool(bool),
    /// An array or an object.
    Json(Value),
}

impl AttrValue {
    /// Null and the empty string: values an event leaves out.
    fn is_empty(&self) -> bool {
        matches!(self, AttrValue::Str(s) if s.is_empty())
            || matches!(self, AttrValue::Json(Value::Null))
    }

    /// The value as JSON (what the attribute map of an event held).
    pub fn to_json(&self) -> Value {
        match self {
            AttrValue::Str(s) => Value::String(s.to_string()),
            AttrValue::I64(i) => Value::from(*i),
            AttrValue::U64(u) => Value::from(*u),
            AttrValue::F64(f) => Value::from(*f),
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Json(v) => v.clone(),
        }
    }

    /// A string value, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value in `i64`, if this is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::I64(i) => Some(*i),
            _ => None,
        }
    }

    /// A non-negative integer value, if this is one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            AttrValue::I64(i) => u64::try_from(*i).ok(),
            AttrValue::U64(u) => Some(*u),
            _ => None,
        }
    }

    /// A boolean value, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl From<Value> for AttrValue {
    fn from(v: Value) -> Self {
        match v {
            Value::String(s) => AttrValue::Str(Cow::Owned(s)),
            Value::Bool(b) => AttrValue::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => AttrValue::I64(i),
                (None, Some(u), _) => AttrValue::U64(u),
                (None, None, Some(f)) => AttrValue::F64(f),
                (None, None, None) => AttrValue::Json(Value::Number(n)),
            },
            other => AttrValue::Json(other),
        }
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(Cow::Owned(s.to_string()))
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(Cow::Owned(s))
    }
}

impl From<&String> for AttrValue {
    fn from(s: &String) -> Self {
        AttrValue::Str(Cow::Owned(s.clone()))
    }
}

impl From<Cow<'static, str>> for AttrValue {
    fn from(s: Cow<'static, str>) -> Self {
        AttrValue::Str(s)
    }
}

impl From<bool> for AttrValue {
    fn from(b: bool) -> Self {
        AttrValue::Bool(b)
    }
}

impl From<f64> for AttrValue {
    /// A non-finite double is no value (null, as in JSON).
    fn from(f: f64) -> Self {
        if f.is_finite() {
            AttrValue::F64(f)
        } else {
            AttrValue::Json(Value::Null)
        }
    }
}

impl From<f32> for AttrValue {
    fn from(f: f32) -> Self {
        AttrValue::from(f64::from(f))
    }
}

impl From<u64> for AttrValue {
    fn from(u: u64) -> Self {
        i64::try_from(u).map_or(AttrValue::U64(u), AttrValue::I64)
    }
}

impl From<usize> for AttrValue {
    fn from(u: usize) -> Self {
        AttrValue::from(u as u64)
    }
}

macro_rules! attr_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for AttrValue {
            fn from(i: $t) -> Self {
                AttrValue::I64(i64::from(i))
            }
        }
    )*};
}
attr_from_int!(i8, i16, i32, i64, u8, u16, u32);

impl<T: Into<Value>> From<Vec<T>> for AttrValue {
    fn from(v: Vec<T>) -> Self {
        AttrValue::Json(Value::from(v))
    }
}

impl<T: Into<AttrValue>> From<Option<T>> for AttrValue {
    /// `None` is no value.
    fn from(v: Option<T>) -> Self {
        v.map_or(AttrValue::Json(Value::Null), Into::into)
    }
}

/// One enforcement decision: its type, when, and its attributes (including
/// `event_type` and `schema_version`; empty values left out), kept sorted
/// by key, one value per key — the order of the JSONL record.
#[derive(Debug, Clone, PartialEq)]
pub struct EnforcementEvent {
    pub event_type: EventType,
    pub timestamp_ns: i64,
    attrs: Vec<(AttrKey, AttrValue)>,
}

impl EnforcementEvent {
    /// A new event; call [`EnforcementEvent::attr`] to add attributes.
    pub fn new(event_type: EventType, timestamp_ns: i64) -> Self {
        EnforcementEvent {
            event_type,
            timestamp_ns,
            attrs: Vec::with_capacity(12),
        }
    }

    /// Adds an attribute unless it is null or an empty string; a key added
    /// again takes the new value.
    pub fn attr(mut self, key: impl Into<AttrKey>, value: impl Into<AttrValue>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.set(key.into(), value);
        }
        self
    }

    /// Sets an attribute, empty or not.
    fn set(&mut self, key: AttrKey, value: AttrValue) {
        match self.position(&key) {
            Ok(i) => self.attrs[i].1 = value,
            Err(i) => self.attrs.insert(i, (key, value)),
        }
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        // Appended in key order (the usual case): no search.
        match self.attrs.last() {
            None => Err(0),
            Some((k, _)) if k.as_ref() < key => Err(self.attrs.len()),
            _ => self.attrs.binary_search_by(|(k, _)| k.as_ref().cmp(key)),
        }
    }

    /// An attribute, if present.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.attrs
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| &self.attrs[i].1)
    }

    /// A string attribute, if present.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(AttrValue::as_str)
    }

    /// An integer attribute, if present.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(AttrValue::as_i64)
    }

    /// A non-negative integer attribute, if present.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(AttrValue::as_u64)
    }

    /// A boolean attribute, if present.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(AttrValue::as_bool)
    }

    /// Every attribute, in key order (the order of the JSONL record).
    pub fn attributes(&self) -> impl ExactSizeIterator<Item = (&str, &AttrValue)> {
        self.attrs.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The attributes as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect()
    }

    /// The record line of this event and its newline, appended to `out`:
    /// the bytes [`JsonlProcessor`] writes for the record the OTel path
    /// carries (attribute values as they come back from OTel `AnyValue`s: a
    /// nested null is an empty string, an integer beyond `i64` a double;
    /// timestamps before the epoch at 0), scrubbed and bounded as
    /// `sec_audit_core::record::project_attributes` does it — each
    /// attribute once, strings borrowed.
    fn write_json_line(&self, scrubber: &Scrubber, bounds: &RecordBounds, out: &mut Vec<u8>) {
        let ts = self.timestamp_ns.max(0);
        let head = RecordHead {
            timestamp_ns: ts,
            observed_timestamp_ns: ts,
            severity: self.event_type.severity(),
            body: self.event_type.as_str(),
            service_name: SERVICE_NAME,
            scope_name: SCOPE_NAME,
            scope_version: env!("CARGO_PKG_VERSION"),
            trace_id: None,
            span_id: None,
        };
        let schema_version = self.get_str(keys::SCHEMA_VERSION);
        let present = self.attrs.iter().filter(|(_, v)| !v.is_empty());
        let n = present.clone().count();
        // Over the attribute bound: `event_type` and `schema_version`
        // always stay, then the others in key order.
        let reserved = self
            .attrs
            .iter()
            .filter(|(k, v)| is_reserved(k) && !v.is_empty())
            .count();
        let mut others = 0usize;
        let projected: Vec<(&str, Projected<'_>)> = present
            .filter(|(k, _)| {
                n <= bounds.max_attributes || is_reserved(k) || {
                    others += 1;
                    others + reserved <= bounds.max_attributes
                }
            })
            .map(|(k, v)| (k.as_ref(), project(k, v, scrubber, bounds)))
            .collect();
        head.write_line(&ProjectedAttrs(&projected), schema_version, bounds, out);
    }
}

fn is_reserved(key: &str) -> bool {
    key == keys::EVENT_TYPE || key == keys::SCHEMA_VERSION
}

/// One attribute value as the record carries it: scrubbed and bounded.
enum Projected<'a> {
    Str(&'a str),
    I64(i64),
    F64(f64),
    Bool(bool),
    Json(Value),
}

/// A value scrubbed (the key's value redacted when the key is sensitive,
/// a string when it matches a value pattern, recursively) and bounded, as
/// it comes back from OTel.
fn project<'a>(
    key: &str,
    v: &'a AttrValue,
    scrubber: &Scrubber,
    bounds: &RecordBounds,
) -> Projected<'a> {
    let exempt = sec_audit_core::record::EXEMPT_ATTRIBUTES.contains(&key);
    if !exempt && scrubber.is_sensitive_key(key) {
        return Projected::Str(cut_str(REDACTED, bounds.max_string_chars));
    }
    match v {
        AttrValue::Str(s) if !exempt && scrubber.value_matches(s) => {
            Projected::Str(cut_str(REDACTED, bounds.max_string_chars))
        }
        AttrValue::Str(s) => Projected::Str(cut_str(s, bounds.max_string_chars)),
        AttrValue::I64(i) => Projected::I64(*i),
        AttrValue::U64(u) => Projected::F64(*u as f64),
        AttrValue::F64(f) => Projected::F64(*f),
        AttrValue::Bool(b) => Projected::Bool(*b),
        AttrValue::Json(j) => {
            let mut j = as_otel(j);
            if !exempt {
                scrubber.scrub_value(&mut j);
            }
            bound_attribute_value(&mut j, bounds);
            Projected::Json(j)
        }
    }
}

struct ProjectedAttrs<'a>(&'a [(&'a str, Projected<'a>)]);

impl serde::Serialize for ProjectedAttrs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            match v {
                Projected::Str(x) => m.serialize_entry(k, x)?,
                Projected::I64(x) => m.serialize_entry(k, x)?,
                Projected::F64(x) => m.serialize_entry(k, x)?,
                Projected::Bool(x) => m.serialize_entry(k, x)?,
                Projected::Json(x) => m.serialize_entry(k, x)?,
            }
        }
        m.end()
    }
}

/// A value as it comes back from an OTel `AnyValue` (see `json_to_any` and
/// `any_to_json`), without the round trip.
fn as_otel(v: &Value) -> Value {
    match v {
        Value::Null => Value::String(String::new()),
        Value::Number(n) if n.as_i64().is_none() => {
            serde_json::Number::from_f64(n.as_f64().unwrap_or(0.0))
                .map_or(Value::Null, Value::Number)
        }
        Value::Array(a) => Value::Array(a.iter().map(as_otel).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), as_otel(v))).collect()),
        other => other.clone(),
    }
}

/// How long a buffered sink may hold a written record before it reaches
/// the writer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// A buffered sink hands its buffer to the writer once it holds this much.
pub const BUFFER_BYTES: usize = 64 * 1024;

struct JsonlState {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

/// Writes enforcement events as JSONL records straight from the event: one
/// projection (scrubbed, bounded), serialized into a buffer. Write-through
/// (the buffer goes to the writer after every record) or buffered (at
/// [`BUFFER_BYTES`], at most [`FLUSH_INTERVAL`] later, on flush and on
/// drop).
struct JsonlWriter {
    state: parking_lot::Mutex<JsonlState>,
    scrubber: Scrubber,
    bounds: RecordBounds,
    buffered: AtomicBool,
}

impl JsonlWriter {
    fn new(out: Box<dyn Write + Send>, scrubber: Scrubber, buffered: bool) -> Arc<Self> {
        let w = Arc::new(JsonlWriter {
            state: parking_lot::Mutex::new(JsonlState {
                out,
                buf: Vec::with_capacity(if buffered { BUFFER_BYTES + 4096 } else { 4096 }),
            }),
            scrubber,
            bounds: RecordBounds::default(),
            buffered: AtomicBool::new(buffered),
        });
        if buffered {
            let weak = Arc::downgrade(&w);
            let spawned = std::thread::Builder::new()
                .name("sec-audit-records".into())
                .spawn(move || loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    match weak.upgrade() {
                        Some(w) => w.flush(),
                        None => return,
                    }
                });
            if spawned.is_err() {
                // No flusher: write through rather than hold records.
                tracing::warn!("no thread for the record flusher; records are written through");
                w.buffered.store(false, Ordering::Relaxed);
            }
        }
        w
    }

    fn write(&self, event: &EnforcementEvent) {
        let mut state = self.state.lock();
        let st = &mut *state;
        event.write_json_line(&self.scrubber, &self.bounds, &mut st.buf);
        if !self.buffered.load(Ordering::Relaxed) || st.buf.len() >= BUFFER_BYTES {
            Self::drain(st);
        }
    }

    /// Hands the buffer to the writer (`write_all`), without flushing it.
    fn drain(st: &mut JsonlState) -> bool {
        if st.buf.is_empty() {
            return true;
        }
        let r = st.out.write_all(&st.buf);
        st.buf.clear();
        if let Err(e) = r {
            report_write_error(&e);
            return false;
        }
        true
    }

    fn flush(&self) {
        let mut state = self.state.lock();
        let st = &mut *state;
        if Self::drain(st) {
            if let Err(e) = st.out.flush() {
                report_write_error(&e);
            }
        }
    }
}

impl Drop for JsonlWriter {
    /// Nothing is lost: what is still buffered goes out.
    fn drop(&mut self) {
        self.flush();
    }
}

fn report_write_error(e: &std::io::Error) {
    crate::failure_coalescer::log_coalesced(
        crate::failure_coalescer::Level::Error,
        "writing an enforcement record failed",
        &format!("{:?}", e.kind()),
    );
}

/// The JSON form of a block entry, the same in every interface that shows
/// one (`sec-audit blocks list --json`, the HTTP block API): times as
/// RFC 3339, `kind` = `permanent` or `temp`.
pub fn block_entry_json(e: &sec_audit_store::BlockEntry) -> Value {
    serde_json::json!({
        "scope_type": e.scope_type,
        "scope_value": e.scope_value,
        "kind": if e.is_permanent() { "permanent" } else { "temp" },
        "rule_name": e.rule_name,
        "reason": e.reason,
        "status_code": e.status_code,
        "message": e.message,
        "created_at": rfc3339(e.created_at),
        "expires_at": e.expires_at.map(rfc3339),
        "metadata": e.metadata,
    })
}

/// An RFC 3339 UTC timestamp with millisecond precision.
pub fn rfc3339(secs: f64) -> String {
    let total_ms = (secs * 1000.0).round() as i64;
    let ms = total_ms.rem_euclid(1000);
    let total_s = total_ms.div_euclid(1000);
    let days = total_s.div_euclid(86_400);
    let sod = total_s.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Why a subscriber failed.
pub type SubscriberError = Box<dyn std::error::Error + Send + Sync>;

type SubscriberFn = dyn Fn(&EnforcementEvent) -> Result<(), SubscriberError> + Send + Sync;

struct Subscriber {
    filter: Option<Vec<EventType>>,
    f: Arc<SubscriberFn>,
}

/// Writes OTel log records as JSONL lines: the default sink.
pub struct JsonlProcessor {
    writer: RecordWriter<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for JsonlProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonlProcessor")
    }
}

impl JsonlProcessor {
    pub fn new(out: Box<dyn Write + Send>, scrubber: Scrubber) -> Self {
        JsonlProcessor {
            writer: RecordWriter::new(out, scrubber, RecordBounds::default()),
        }
    }
}

fn ns_of(t: Option<SystemTime>) -> i64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn any_to_json(v: &AnyValue) -> Value {
    match v {
        AnyValue::Int(i) => Value::from(*i),
        AnyValue::Double(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AnyValue::String(s) => Value::String(s.as_str().to_string()),
        AnyValue::Boolean(b) => Value::Bool(*b),
        AnyValue::ListAny(items) => Value::Array(items.iter().map(any_to_json).collect()),
        AnyValue::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), any_to_json(v)))
                .collect(),
        ),
        AnyValue::Bytes(b) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        _ => Value::Null,
    }
}

fn json_to_any(v: &Value) -> AnyValue {
    match v {
        Value::Null => AnyValue::String("".into()),
        Value::Bool(b) => AnyValue::Boolean(*b),
        Value::Number(n) => n
            .as_i64()
            .map(AnyValue::Int)
            .unwrap_or_else(|| AnyValue::Double(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => AnyValue::String(s.clone().into()),
        Value::Array(a) => AnyValue::ListAny(Box::new(a.iter().map(json_to_any).collect())),
        Value::Object(o) => AnyValue::Map(Box::new(
            o.iter()
                .map(|(k, v)| (Key::new(k.clone()), json_to_any(v)))
                .collect(),
        )),
    }
}

/// An attribute value as an OTel `AnyValue`: the one `json_to_any` makes
/// of its JSON form.
fn attr_to_any(v: &AttrValue) -> AnyValue {
    match v {
        AttrValue::Str(s) => AnyValue::String(match s {
            Cow::Borrowed(s) => (*s).into(),
            Cow::Owned(s) => s.clone().into(),
        }),
        AttrValue::I64(i) => AnyValue::Int(*i),
        AttrValue::U64(u) => AnyValue::Double(*u as f64),
        AttrValue::F64(f) => AnyValue::Double(*f),
        AttrValue::Bool(b) => AnyValue::Boolean(*b),
        AttrValue::Json(j) => json_to_any(j),
    }
}

fn severity_of(n: Option<OtelSeverity>) -> Severity {
    match n {
        Some(OtelSeverity::Error) => Severity::Error,
        Some(OtelSeverity::Info) => Severity::Info,
        _ => Severity::Warning,
    }
}

impl LogProcessor for JsonlProcessor {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        let attributes: Map<String, Value> = data
            .attributes_iter()
            .map(|(k, v)| (k.as_str().to_string(), any_to_json(v)))
            .collect();
        let body = match data.body() {
            Some(AnyValue::String(s)) => s.as_str().to_string(),
            _ => data.event_name().unwrap_or_default().to_string(),
        };
        let trace = data.trace_context();
        let record = LogRecord {
            timestamp_ns: ns_of(data.timestamp()),
            observed_timestamp_ns: ns_of(data.observed_timestamp().or(data.timestamp())),
            severity: severity_of(data.severity_number()),
            body,
            service_name: SERVICE_NAME.into(),
            scope_name: instrumentation.name().to_string(),
            scope_version: instrumentation.version().unwrap_or_default().to_string(),
            attributes,
            trace_id: trace.map(|t| t.trace_id.to_string()),
            span_id: trace.map(|t| t.span_id.to_string()),
        };
        if let Err(e) = self.writer.write(&record) {
            crate::failure_coalescer::log_coalesced(
                crate::failure_coalescer::Level::Error,
                "writing an enforcement record failed",
                &format!("{:?}", e.kind()),
            );
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// Where enforcement records go.
pub enum Sink {
    /// Standard output (the default), buffered: a record reaches it at most
    /// [`FLUSH_INTERVAL`] after it was emitted, at once on
    /// [`EventEmitter::flush`] and when the emitter is dropped.
    Stdout,
    /// Any writer: a file, a buffer, a pipe. Written through: each record
    /// is handed to the writer (one `write_all`) as it is emitted; the
    /// writer is flushed on [`EventEmitter::flush`] and on drop.
    Writer(Box<dyn Write + Send>),
    /// Any writer, buffered like [`Sink::Stdout`]: records are handed over
    /// in batches of up to [`BUFFER_BYTES`], at most [`FLUSH_INTERVAL`]
    /// later, on [`EventEmitter::flush`] and on drop.
    Buffered(Box<dyn Write + Send>),
    /// Nothing is written (subscribers still run).
    Discard,
}

impl Sink {
    /// Appends to a file, creating it when missing.
    pub fn file(path: &std::path::Path) -> std::io::Result<Sink> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Sink::Writer(Box::new(f)))
    }

    fn into_writer(self, scrubber: Scrubber) -> Option<Arc<JsonlWriter>> {
        match self {
            Sink::Stdout => Some(JsonlWriter::new(
                Box::new(std::io::stdout()),
                scrubber,
                true,
            )),
            Sink::Writer(w) => Some(JsonlWriter::new(w, scrubber, false)),
            Sink::Buffered(w) => Some(JsonlWriter::new(w, scrubber, true)),
            Sink::Discard => None,
        }
    }
}

/// Produces enforcement events and offers them to subscribers. The JSONL
/// trail is written straight from the event (the same bytes as
/// [`JsonlProcessor`] writes); an OTel logger provider, when there is one
/// (OTLP export, [`EventEmitter::with_provider`]), gets every record
/// through the OTel logs API. Subscribers run inline, after the write: they
/// must hand slow work off (a channel, a queue) rather than block the
/// request.
pub struct EventEmitter {
    jsonl: Option<Arc<JsonlWriter>>,
    otel: Option<(SdkLoggerProvider, SdkLogger)>,
    subscribers: RwLock<Vec<Subscriber>>,
    schema_version: String,
}

impl std::fmt::Debug for EventEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventEmitter")
            .field("schema_version", &self.schema_version)
            .finish()
    }
}

fn scoped_logger(provider: &SdkLoggerProvider) -> SdkLogger {
    let scope = InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    provider.logger_with_scope(scope)
}

#[cfg(any(test, feature = "otlp"))]
fn provider_builder() -> opentelemetry_sdk::logs::LoggerProviderBuilder {
    SdkLoggerProvider::builder().with_resource(
        opentelemetry_sdk::Resource::builder_empty()
            .with_service_name(SERVICE_NAME)
            .build(),
    )
}

impl EventEmitter {
    /// An emitter writing to `sink` (scrubbed by `scrubber`).
    pub fn new(sink: Sink, scrubber: Scrubber, schema_version: &str) -> Self {
        EventEmitter {
            jsonl: sink.into_writer(scrubber),
            otel: None,
            subscribers: RwLock::new(Vec::new()),
            schema_version: schema_version.to_string(),
        }
    }

    /// An emitter writing to `sink` and also exporting every record over
    /// OTLP/HTTP (protobuf) to `endpoint` (e.g.
    /// `http://collector:4318/v1/logs`), batched on a background thread so
    /// the request path never waits on the collector. The JSONL sink stays
    /// the durable trail. Feature `otlp`.
    #[cfg(feature = "otlp")]
    pub fn with_otlp(
        sink: Sink,
        scrubber: Scrubber,
        schema_version: &str,
        endpoint: &str,
    ) -> Result<Self, opentelemetry_otlp::ExporterBuildError> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_http()
            .with_endpoint(endpoint)
            .build()?;
        let provider = provider_builder().with_batch_exporter(exporter).build();
        let logger = scoped_logger(&provider);
        Ok(EventEmitter {
            jsonl: sink.into_writer(scrubber),
            otel: Some((provider, logger)),
            subscribers: RwLock::new(Vec::new()),
            schema_version: schema_version.to_string(),
        })
    }

    /// An emitter over any OTel logger provider (add an OTLP exporter, or
    /// several processors, to the provider before passing it): every record
    /// goes through the OTel logs API only (add a [`JsonlProcessor`] for a
    /// JSONL trail).
    pub fn with_provider(provider: SdkLoggerProvider, schema_version: &str) -> Self {
        let logger = scoped_logger(&provider);
        EventEmitter {
            jsonl: None,
            otel: Some((provider, logger)),
            subscribers: RwLock::new(Vec::new()),
            schema_version: schema_version.to_string(),
        }
    }

    /// Registers a subscriber for the given event types (`None`: all).
    pub fn subscribe<F>(&self, filter: Option<Vec<EventType>>, f: F)
    where
        F: Fn(&EnforcementEvent) -> Result<(), SubscriberError> + Send + Sync + 'static,
    {
        self.subscribers.write().push(Subscriber {
            filter,
            f: Arc::new(f),
        });
    }

    /// Emits one event: `event_type` and `schema_version` are added, the
    /// record is written, then subscribers are called.
    pub fn emit(&self, mut event: EnforcementEvent) {
        let ty = event.event_type;
        event.set(
            Cow::Borrowed(keys::EVENT_TYPE),
            AttrValue::Str(Cow::Borrowed(ty.as_str())),
        );
        event.set(
            Cow::Borrowed(keys::SCHEMA_VERSION),
            AttrValue::Str(Cow::Owned(self.schema_version.clone())),
        );
        let written = catch_unwind(AssertUnwindSafe(|| {
            if let Some(w) = &self.jsonl {
                w.write(&event);
            }
            if let Some((_, logger)) = &self.otel {
                emit_otel(logger, &event);
            }
        }));
        if written.is_err() {
            tracing::error!(
                event_type = ty.as_str(),
                "emitting an enforcement record panicked"
            );
        }
        let subscribers: Vec<Arc<SubscriberFn>> = self
            .subscribers
            .read()
            .iter()
            .filter(|s| s.filter.as_ref().is_none_or(|f| f.contains(&ty)))
            .map(|s| Arc::clone(&s.f))
            .collect();
        for f in subscribers {
            match catch_unwind(AssertUnwindSafe(|| f(&event))) {
                Ok(Ok(())) => {}
                // Per event for a broken subscriber: coalesced, the event
                // type only (its error text is the subscriber's own).
                Ok(Err(_)) => crate::failure_coalescer::log_coalesced(
                    crate::failure_coalescer::Level::Warn,
                    "enforcement event subscriber failed; isolated",
                    ty.as_str(),
                ),
                Err(_) => crate::failure_coalescer::log_coalesced(
                    crate::failure_coalescer::Level::Warn,
                    "enforcement event subscriber panicked; isolated",
                    ty.as_str(),
                ),
            }
        }
    }

    /// Flushes the JSONL sink (what is buffered goes to the writer, then
    /// the writer is flushed) and every processor of the OTel provider.
    pub fn flush(&self) {
        if let Some(w) = &self.jsonl {
            w.flush();
        }
        if let Some((provider, _)) = &self.otel {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(error = %e, "flushing enforcement records failed");
            }
        }
    }
}

impl Drop for EventEmitter {
    /// Nothing is lost at exit: buffered records go out.
    fn drop(&mut self) {
        if let Some(w) = &self.jsonl {
            w.flush();
        }
    }
}

/// One event as an OTel log record, through the logs API.
fn emit_otel(logger: &SdkLogger, event: &EnforcementEvent) {
    let ty = event.event_type;
    let mut record = logger.create_log_record();
    let at = UNIX_EPOCH + Duration::from_nanos(u64::try_from(event.timestamp_ns).unwrap_or(0));
    record.set_timestamp(at);
    record.set_observed_timestamp(at);
    record.set_event_name(ty.as_str());
    record.set_severity_text(ty.severity().text());
    record.set_severity_number(match ty.severity() {
        Severity::Info => OtelSeverity::Info,
        Severity::Warning => OtelSeverity::Warn,
        Severity::Error => OtelSeverity::Error,
    });
    record.set_body(AnyValue::String(ty.as_str().into()));
    record.add_attributes(event.attrs.iter().map(|(k, v)| {
        let key = match k {
            Cow::Borrowed(k) => Key::from_static_str(k),
            Cow::Owned(k) => Key::new(k.clone()),
        };
        (key, attr_to_any(v))
    }));
    logger.emit(record);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[cfg(feature = "otlp")]
    #[test]
    fn otlp_export_to_an_unreachable_collector_never_blocks_the_trail() {
        let buf = SharedBuf::default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let emitter = EventEmitter::with_otlp(
            Sink::Writer(Box::new(buf.clone())),
            Scrubber::default(),
            "1.0",
            &format!("http://127.0.0.1:{port}/v1/logs"),
        )
        .unwrap();
        let start = std::time::Instant::now();
        for _ in 0..100 {
            emitter
                .emit(EnforcementEvent::new(EventType::Alert, 1).attr("security_rule.name", "r"));
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "batched off the request path"
        );
        assert_eq!(
            String::from_utf8(buf.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .count(),
            100
        );
    }
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);
    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn varied_events() -> Vec<EnforcementEvent> {
        let mut deep = serde_json::json!("leaf");
        for _ in 0..12 {
            deep = serde_json::json!({ "k": deep, "token": "t0ps3cret", "n": null });
        }
        let mut events = Vec::new();
        for (i, ty) in EventType::ALL.into_iter().enumerate() {
            let ts = 1_780_000_000_023_000_000 + i as i64;
            events.push(EnforcementEvent::new(ty, ts));
            events.push(
                EnforcementEvent::new(ty, ts)
                    .attr(keys::RULE_NAME, "brute_force_login")
                    .attr(keys::SCOPE_TYPE, "ip")
                    .attr(keys::SCOPE_VALUE, "203.0.113.9")
                    .attr(keys::TTL, 300)
                    .attr(keys::SAFELISTED, true)
                    .attr(keys::OFFENSE, 3)
                    .attr(
                        keys::REASON,
                        "quote \" backslash \\ nl \n tab \t ctl \u{1} é 😀",
                    )
                    .attr(keys::USER_ID, "")
                    .attr(keys::SESSION_ID, "audit-sess-1")
                    .attr("sessionid", "raw-cookie")
                    .attr("password", "hunter2")
                    .attr("note", "Bearer abc.def.ghi and password=hunter2")
                    .attr("f", 1.5)
                    .attr("whole_f", 2.0)
                    .attr("neg", -7)
                    .attr("big", u64::MAX)
                    .attr("long", "é".repeat(5000))
                    .attr("deep", deep.clone())
                    .attr("list", (0..300).collect::<Vec<_>>())
                    .attr("nulls", serde_json::json!([null, {"a": null}, ""]))
                    .attr("metadata", serde_json::json!({"api_key": "k", "ok": 1})),
            );
        }
        let mut many = EnforcementEvent::new(EventType::Alert, -5);
        for i in 0..200 {
            many = many.attr(format!("a{i:03}"), i);
        }
        events.push(many);
        let mut huge = EnforcementEvent::new(EventType::Blocked, 7);
        for i in 0..100 {
            huge = huge.attr(format!("h{i:03}"), "x".repeat(4000));
        }
        events.push(huge);
        events
    }

    fn scrubber() -> Scrubber {
        Scrubber::new(
            ["password", "token", "api_key", "sessionid"],
            Vec::<String>::new(),
            [r"Bearer [A-Za-z0-9._-]+"],
        )
        .unwrap()
    }

    #[test]
    fn direct_jsonl_is_byte_identical_to_the_otel_path() {
        let old = SharedBuf::default();
        let provider = provider_builder()
            .with_log_processor(JsonlProcessor::new(Box::new(old.clone()), scrubber()))
            .build();
        let legacy = EventEmitter::with_provider(provider, "1.0");
        let new = SharedBuf::default();
        let direct = EventEmitter::new(Sink::Writer(Box::new(new.clone())), scrubber(), "1.0");
        let buffered_out = SharedBuf::default();
        let buffered = EventEmitter::new(
            Sink::Buffered(Box::new(buffered_out.clone())),
            scrubber(),
            "1.0",
        );
        for e in varied_events() {
            legacy.emit(e.clone());
            direct.emit(e.clone());
            buffered.emit(e);
        }
        drop(buffered);
        let old = String::from_utf8(old.0.lock().unwrap().clone()).unwrap();
        let new = String::from_utf8(new.0.lock().unwrap().clone()).unwrap();
        let buffered = String::from_utf8(buffered_out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(old.lines().count(), varied_events().len());
        for (o, n) in old.lines().zip(new.lines()) {
            assert_eq!(o, n);
        }
        assert_eq!(old, new);
        assert_eq!(old, buffered);
        assert!(old.contains("[REDACTED]") && old.contains(MALFORMED));
    }
    const MALFORMED: &str = sec_audit_core::record::MALFORMED_RECORD;

    /// The event as it was: a JSON map, `attr` leaving null and empty
    /// strings out, `Map::insert` for the rest (last write wins).
    fn legacy_attr(m: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
        let value = value.into();
        let empty =
            matches!(&value, Value::Null) || matches!(&value, Value::String(s) if s.is_empty());
        if !empty {
            m.insert(key.to_string(), value);
        }
    }

    /// The line the map-based event wrote: its record as the OTel path
    /// carries it, through `LogRecord::write_json_line`.
    fn legacy_line(
        ty: EventType,
        ts: i64,
        attrs: &Map<String, Value>,
        scrubber: &Scrubber,
        bounds: &RecordBounds,
    ) -> Vec<u8> {
        let ts = ts.max(0);
        let record = LogRecord {
            timestamp_ns: ts,
            observed_timestamp_ns: ts,
            severity: ty.severity(),
            body: ty.as_str().to_string(),
            service_name: SERVICE_NAME.into(),
            scope_name: SCOPE_NAME.into(),
            scope_version: env!("CARGO_PKG_VERSION").into(),
            attributes: attrs.iter().map(|(k, v)| (k.clone(), as_otel(v))).collect(),
            trace_id: None,
            span_id: None,
        };
        let mut out = Vec::new();
        record.write_json_line(scrubber, bounds, &mut out);
        out
    }

    #[test]
    fn typed_event_writes_exactly_what_the_map_it_replaces_wrote() {
        macro_rules! both {
            ($e:ident, $m:ident, $k:expr, $v:expr) => {{
                let k: String = $k.to_string();
                $e = $e.attr(k.clone(), $v);
                legacy_attr(&mut $m, &k, $v);
            }};
        }
        let mut deep = serde_json::json!("leaf");
        for _ in 0..12 {
            deep = serde_json::json!({ "k": deep, "token": "t0ps3cret", "n": null, "u": u64::MAX });
        }
        let mut cases: Vec<(EnforcementEvent, Map<String, Value>, &str)> = Vec::new();
        for (i, ty) in EventType::ALL.into_iter().enumerate() {
            let ts = 1_780_000_000_023_000_000 + i as i64;
            let mut e = EnforcementEvent::new(ty, ts);
            let mut m = Map::new();
            // Out of key order, with duplicates and empties.
            both!(e, m, keys::SCOPE_VALUE, "203.0.113.9");
            both!(e, m, keys::RULE_NAME, "first");
            both!(e, m, keys::RULE_NAME, "brute_force_login");
            both!(e, m, keys::RULE_NAME, "");
            both!(e, m, keys::RULE_NAME, Value::Null);
            both!(e, m, keys::TTL, 300);
            both!(e, m, keys::TTL, 301u64);
            both!(e, m, keys::OFFENSE, 3u8);
            both!(e, m, keys::STATUS_CODE, 429u16);
            both!(e, m, keys::SAFELISTED, true);
            both!(e, m, keys::SAFELISTED, false);
            both!(e, m, keys::USER_ID, "");
            both!(e, m, keys::USER_ID, "alice");
            both!(e, m, keys::SCOPE_TYPE, "ip");
            both!(e, m, keys::SCOPE_TYPE, 7);
            both!(e, m, keys::SESSION_ID, "Bearer abc.def");
            both!(
                e,
                m,
                keys::REASON,
                "quote \" backslash \\ nl \n ctl \u{1} é 😀"
            );
            both!(e, m, "sessionid", "raw-cookie");
            both!(e, m, "password", 5);
            both!(e, m, "api_key", serde_json::json!({"a": 1}));
            both!(e, m, "note", "Bearer abc.def.ghi");
            both!(e, m, "f", 1.5);
            both!(e, m, "whole_f", 2.0);
            both!(e, m, "neg_zero", -0.0);
            both!(e, m, "huge_f", 1e300);
            both!(e, m, "nan", f64::NAN);
            both!(e, m, "inf", f64::INFINITY);
            both!(e, m, "neg", -7);
            both!(e, m, "min", i64::MIN);
            both!(e, m, "max", i64::MAX);
            both!(e, m, "big", u64::MAX);
            both!(e, m, "big_json", serde_json::json!(u64::MAX));
            both!(e, m, "float_json", serde_json::json!(3.0));
            both!(e, m, "str_json", serde_json::json!("as json"));
            both!(e, m, "empty_json", serde_json::json!(""));
            both!(e, m, "null_json", serde_json::json!(null));
            both!(e, m, "empty_list", serde_json::json!([]));
            both!(e, m, "empty_obj", serde_json::json!({}));
            both!(e, m, "long", "é".repeat(5000));
            both!(e, m, "deep", deep.clone());
            both!(e, m, "list", (0..300).collect::<Vec<i32>>());
            both!(e, m, "nulls", serde_json::json!([null, {"a": null}, ""]));
            both!(e, m, "ünï.cødé", "x");
            both!(e, m, "Z", "upper sorts first");
            both!(e, m, "", "empty key");
            cases.push((e, m, "1.0"));
        }
        // Empty schema version (set as `emit` sets it: kept in the event,
        // left out of the record, named by a malformed replacement).
        let mut e = EnforcementEvent::new(EventType::Blocked, -5);
        let mut m = Map::new();
        for i in (0..200).rev() {
            both!(e, m, format!("a{i:03}"), i);
        }
        cases.push((e, m, ""));
        let mut e = EnforcementEvent::new(EventType::Blocked, 7);
        let mut m = Map::new();
        for i in 0..100 {
            both!(e, m, format!("h{i:03}"), "x".repeat(4000));
        }
        cases.push((e.clone(), m.clone(), "2.0"));
        cases.push((e, m, ""));
        cases.push((
            EnforcementEvent::new(EventType::Alert, 0),
            Map::new(),
            "1.0",
        ));

        let bounds = [
            RecordBounds::default(),
            RecordBounds {
                max_depth: 2,
                max_entries: 3,
                max_string_chars: 5,
                max_attributes: 4,
                max_record_bytes: 2048,
            },
        ];
        for (mut e, mut m, version) in cases {
            // What `emit` adds, both ways.
            let ty = e.event_type;
            e.set(
                Cow::Borrowed(keys::EVENT_TYPE),
                AttrValue::Str(Cow::Borrowed(ty.as_str())),
            );
            e.set(
                Cow::Borrowed(keys::SCHEMA_VERSION),
                AttrValue::from(version),
            );
            m.insert(keys::EVENT_TYPE.into(), Value::from(ty.as_str()));
            m.insert(keys::SCHEMA_VERSION.into(), Value::from(version));
            assert_eq!(e.to_map(), m);
            assert_eq!(e.attributes().len(), m.len());
            for ((k, v), (mk, mv)) in e.attributes().zip(&m) {
                assert_eq!(k, mk.as_str());
                assert_eq!(&v.to_json(), mv);
                assert_eq!(e.get_str(k), mv.as_str());
                assert_eq!(e.get_i64(k), mv.as_i64());
                assert_eq!(e.get_u64(k), mv.as_u64());
                assert_eq!(e.get_bool(k), mv.as_bool());
            }
            assert_eq!(e.get("missing"), None);
            for s in [scrubber(), Scrubber::default()] {
                for b in &bounds {
                    let want = legacy_line(e.event_type, e.timestamp_ns, &m, &s, b);
                    let mut got = Vec::new();
                    e.write_json_line(&s, b, &mut got);
                    assert_eq!(
                        String::from_utf8(got).unwrap(),
                        String::from_utf8(want).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn buffered_sink_holds_records_briefly_and_loses_none() {
        let out = SharedBuf::default();
        let emitter = EventEmitter::new(
            Sink::Buffered(Box::new(out.clone())),
            Scrubber::default(),
            "1.0",
        );
        emitter.emit(EnforcementEvent::new(EventType::Alert, 1));
        // Idle: the flusher hands it over within a few intervals.
        let start = std::time::Instant::now();
        while out.0.lock().unwrap().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "flushed while idle"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // A burst then a flush: all there.
        for i in 0..1000 {
            emitter.emit(EnforcementEvent::new(EventType::Blocked, i));
        }
        emitter.flush();
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .count(),
            1001
        );
        // Dropped with records still buffered: written on the way out.
        for i in 0..10 {
            emitter.emit(EnforcementEvent::new(EventType::Blocked, i));
        }
        drop(emitter);
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .count(),
            1011
        );
    }

    #[test]
    fn written_through_sink_has_each_record_at_once() {
        let out = SharedBuf::default();
        let emitter = EventEmitter::new(
            Sink::Writer(Box::new(out.clone())),
            Scrubber::default(),
            "1.0",
        );
        for i in 0..3 {
            emitter.emit(EnforcementEvent::new(EventType::Alert, i));
            assert_eq!(
                String::from_utf8(out.0.lock().unwrap().clone())
                    .unwrap()
                    .lines()
                    .count(),
                i as usize + 1
            );
        }
    }

    #[test]
    fn rfc3339_formats_utc_with_millis() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_780_000_000.023), "2026-05-28T20:26:40.023Z");
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn severities_match_the_contract() {
        assert_eq!(EventType::Alert.severity().text(), "WARNING");
        assert_eq!(EventType::Blocked.severity().number(), 13);
        assert_eq!(EventType::BlockApplied.severity().number(), 13);
        assert_eq!(EventType::BlockRevoked.severity().text(), "INFO");
        assert_eq!(EventType::BlockRevoked.severity().number(), 9);
        assert_eq!(EventType::EvaluationFailed.severity().text(), "ERROR");
        assert_eq!(EventType::EvaluationFailed.severity().number(), 17);
    }

    #[test]
    fn record_goes_through_otel_to_jsonl_then_subscribers() {
        let buf = SharedBuf::default();
        let emitter = EventEmitter::new(
            Sink::Writer(Box::new(buf.clone())),
            Scrubber::default(),
            "1.0",
        );
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let b = buf.clone();
        emitter.subscribe(Some(vec![EventType::BlockApplied]), move |e| {
            // The durable trail is written before subscribers run.
            assert!(!b.0.lock().unwrap().is_empty());
            assert_eq!(e.get_str("scope.type"), Some("ip"));
            s.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        emitter.subscribe(None, |_| Err("subscriber down".into()));
        emitter.subscribe(None, |_| panic!("subscriber bug"));
        emitter.emit(
            EnforcementEvent::new(EventType::BlockApplied, 1_780_000_000_023_000_000)
                .attr("scope.type", "ip")
                .attr("scope.value", "203.0.113.9")
                .attr("enforcement.ttl", 300)
                .attr("empty", ""),
        );
        emitter.emit(EnforcementEvent::new(
            EventType::BlockRevoked,
            1_780_000_000_000_000_000,
        ));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let r = &lines[0];
        assert_eq!(
            r["timestamp"],
            serde_json::json!(1_780_000_000_023_000_000i64)
        );
        assert_eq!(r["observed_timestamp"], r["timestamp"]);
        assert_eq!(r["severity_text"], "WARNING");
        assert_eq!(r["severity_number"], 13);
        assert_eq!(r["body"], "audit.enforcement.block_applied");
        assert_eq!(r["event_name"], "audit.enforcement.block_applied");
        assert_eq!(
            r["resource"],
            serde_json::json!({"service.name": "sec-audit"})
        );
        assert_eq!(r["instrumentation_scope"]["name"], "sec-audit-enforce");
        assert_eq!(
            r["attributes"],
            serde_json::json!({"event_type": "audit.enforcement.block_applied", "schema_version": "1.0",
                               "scope.type": "ip", "scope.value": "203.0.113.9", "enforcement.ttl": 300})
        );
        assert_eq!(lines[1]["severity_text"], "INFO");
        assert_eq!(lines[1]["severity_number"], 9);
    }
}
