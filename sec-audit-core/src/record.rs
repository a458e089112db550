//! The OTel log record as one JSONL line, and the bounded projection that
//! keeps every record writable.
//!
//! Attributes are scrubbed, then bounded (depth, entries per object or
//! array, string length, number of attributes); a record still over the
//! byte limit is replaced by a minimal `audit.logging.malformed_record`
//! record — never dropped silently.

use std::io::{self, Write};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::scrub::Scrubber;

/// Body and event type of the replacement for a record that cannot fit.
pub const MALFORMED_RECORD: &str = "audit.logging.malformed_record";
const TRUNCATED: &str = "[TRUNCATED]";

/// OTel severity with the texts existing dashboards filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn text(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }
    pub fn number(self) -> u8 {
        match self {
            Severity::Info => 9,
            Severity::Warning => 13,
            Severity::Error => 17,
        }
    }
}

/// Size limits applied to every record before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordBounds {
    pub max_depth: usize,
    pub max_entries: usize,
    pub max_string_chars: usize,
    pub max_attributes: usize,
    pub max_record_bytes: usize,
}

impl Default for RecordBounds {
    fn default() -> Self {
        RecordBounds {
            max_depth: 8,
            max_entries: 100,
            max_string_chars: 4096,
            max_attributes: 128,
            max_record_bytes: 256 * 1024,
        }
    }
}

/// One log record. `attributes` hold all context, including `event_type`
/// and `schema_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub timestamp_ns: i64,
    pub observed_timestamp_ns: i64,
    pub severity: Severity,
    pub body: String,
    pub service_name: String,
    pub scope_name: String,
    pub scope_version: String,
    pub attributes: Map<String, Value>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    #[serde(rename = "service.name")]
    service_name: &'a str,
}

#[derive(Serialize)]
struct ScopeOut<'a> {
    name: &'a str,
    version: &'a str,
}

#[derive(Serialize)]
struct RecordOut<'a, A: Serialize + ?Sized> {
    timestamp: i64,
    observed_timestamp: i64,
    severity_text: &'static str,
    severity_number: u8,
    body: &'a str,
    resource: ResourceOut<'a>,
    instrumentation_scope: ScopeOut<'a>,
    attributes: &'a A,
    event_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span_id: Option<&'a str>,
}

/// Everything of a record but its attributes, borrowed: what a typed
/// record (one that keeps its attributes in its own form) writes its line
/// with, through [`RecordHead::write_line`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecordHead<'a> {
    pub timestamp_ns: i64,
    pub observed_timestamp_ns: i64,
    pub severity: Severity,
    pub body: &'a str,
    pub service_name: &'a str,
    pub scope_name: &'a str,
    pub scope_version: &'a str,
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
}

impl<'a> RecordHead<'a> {
    fn out<A: Serialize + ?Sized>(&self, attrs: &'a A, body: &'a str) -> RecordOut<'a, A> {
        RecordOut {
            timestamp: self.timestamp_ns,
            observed_timestamp: self.observed_timestamp_ns,
            severity_text: self.severity.text(),
            severity_number: self.severity.number(),
            body,
            resource: ResourceOut {
                service_name: self.service_name,
            },
            instrumentation_scope: ScopeOut {
                name: self.scope_name,
                version: self.scope_version,
            },
            attributes: attrs,
            event_name: body,
            trace_id: self.trace_id,
            span_id: self.span_id,
        }
    }

    /// The record line and its newline, appended to `out`, with `attrs`
    /// (already scrubbed and bounded: they serialize as the attribute
    /// object) — replaced by a malformed-record record when over
    /// `bounds.max_record_bytes`. `schema_version` is the record's
    /// `schema_version` attribute as it was before the projection (the
    /// replacement names it).
    pub fn write_line<A: Serialize + ?Sized>(
        &self,
        attrs: &A,
        schema_version: Option<&str>,
        bounds: &RecordBounds,
        out: &mut Vec<u8>,
    ) {
        let start = out.len();
        if serde_json::to_writer(&mut *out, &self.out(attrs, self.body)).is_err() {
            out.truncate(start);
            out.extend_from_slice(self.fallback().as_bytes());
        } else if out.len() - start > bounds.max_record_bytes {
            let bytes = out.len() - start;
            out.truncate(start);
            tracing::warn!(
                body = %truncate_for_log(self.body),
                bytes,
                "log record over the size bound; writing a malformed-record marker instead"
            );
            out.extend_from_slice(
                self.malformed("record_too_large", schema_version)
                    .as_bytes(),
            );
        }
        out.push(b'\n');
    }

    fn encode_with<A: Serialize + ?Sized>(&self, attrs: &A, body: &str) -> String {
        let out = self.out(attrs, body);
        // Serializing a struct of strings, integers and a string-keyed map
        // cannot fail; the fallback keeps this function total anyway.
        serde_json::to_string(&out).unwrap_or_else(|_| self.fallback())
    }

    fn malformed(&self, reason: &str, schema_version: Option<&str>) -> String {
        let mut attrs = Map::new();
        attrs.insert("event_type".into(), Value::String(MALFORMED_RECORD.into()));
        if let Some(s) = schema_version {
            let mut s = s.to_string();
            cut_string(&mut s, 64);
            attrs.insert("schema_version".into(), Value::String(s));
        }
        let mut original = self.body.to_string();
        cut_string(&mut original, 256);
        attrs.insert("original.event_type".into(), Value::String(original));
        attrs.insert("error.type".into(), Value::String(reason.into()));
        let m = RecordHead {
            severity: Severity::Error,
            body: MALFORMED_RECORD,
            ..*self
        };
        m.encode_with(&attrs, MALFORMED_RECORD)
    }

    fn fallback(&self) -> String {
        format!(
            "{{\"timestamp\":{},\"body\":\"{MALFORMED_RECORD}\",\"event_name\":\"{MALFORMED_RECORD}\"}}",
            self.timestamp_ns
        )
    }
}

/// `s` cut to at most `max_chars` characters (the bound of a string
/// attribute), without a copy.
pub fn cut_str(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

/// Bounds one attribute value in place (depth, entries, string length),
/// as [`project_attributes`] bounds each value.
pub fn bound_attribute_value(value: &mut Value, b: &RecordBounds) {
    bound_value(value, 1, b);
}

fn cut_string(s: &mut String, max_chars: usize) {
    if let Some((idx, _)) = s.char_indices().nth(max_chars) {
        s.truncate(idx);
    }
}

/// Bounds a value in place; `depth` is the depth of `value` itself (1 for a
/// top-level attribute value).
fn bound_value(value: &mut Value, depth: usize, b: &RecordBounds) {
    match value {
        Value::String(s) => cut_string(s, b.max_string_chars),
        Value::Array(items) => {
            if depth >= b.max_depth {
                *value = Value::String(TRUNCATED.into());
                return;
            }
            items.truncate(b.max_entries);
            for v in items.iter_mut() {
                bound_value(v, depth + 1, b);
            }
        }
        Value::Object(map) => {
            if depth >= b.max_depth {
                *value = Value::String(TRUNCATED.into());
                return;
            }
            if map.len() > b.max_entries {
                let keep: Vec<String> = map.keys().take(b.max_entries).cloned().collect();
                map.retain(|k, _| keep.contains(k));
            }
            for (_, v) in map.iter_mut() {
                bound_value(v, depth + 1, b);
            }
        }
        _ => {}
    }
}

/// Top-level attributes exempt from key-based scrubbing: `session.id` is the
/// audit session id (never the raw session cookie), which a
/// `sessionid` entry of the sensitive list would otherwise redact. Value
/// regexes still apply below the top level.
pub const EXEMPT_ATTRIBUTES: [&str; 1] = ["session.id"];

/// Scrubs and bounds attributes: at most `max_attributes` entries (the
/// `event_type` and `schema_version` attributes are always kept), values
/// bounded in depth, entries and string length. Null and empty-string
/// attributes are left out.
pub fn project_attributes(attrs: &mut Map<String, Value>, scrubber: &Scrubber, b: &RecordBounds) {
    attrs
        .retain(|_, v| !matches!(v, Value::Null) && !matches!(v, Value::String(s) if s.is_empty()));
    scrubber.scrub_map_except(attrs, &EXEMPT_ATTRIBUTES);
    if attrs.len() > b.max_attributes {
        let mut kept = 0usize;
        let reserved = ["event_type", "schema_version"]
            .iter()
            .filter(|k| attrs.contains_key(**k))
            .count();
        attrs.retain(|k, _| {
            if k == "event_type" || k == "schema_version" {
                return true;
            }
            kept += 1;
            kept + reserved <= b.max_attributes
        });
    }
    for (_, v) in attrs.iter_mut() {
        bound_value(v, 1, b);
    }
}

impl LogRecord {
    /// Everything of the record but its attributes.
    pub fn head(&self) -> RecordHead<'_> {
        RecordHead {
            timestamp_ns: self.timestamp_ns,
            observed_timestamp_ns: self.observed_timestamp_ns,
            severity: self.severity,
            body: &self.body,
            service_name: &self.service_name,
            scope_name: &self.scope_name,
            scope_version: &self.scope_version,
            trace_id: self.trace_id.as_deref(),
            span_id: self.span_id.as_deref(),
        }
    }

    fn schema_version(&self) -> Option<&str> {
        match self.attributes.get("schema_version") {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The record as one JSON line (no trailing newline), scrubbed and
    /// bounded; replaced by a malformed-record record when it cannot fit.
    pub fn to_json_line(&self, scrubber: &Scrubber, bounds: &RecordBounds) -> String {
        let mut attrs = self.attributes.clone();
        project_attributes(&mut attrs, scrubber, bounds);
        let head = self.head();
        let line = head.encode_with(&attrs, &self.body);
        if line.len() <= bounds.max_record_bytes {
            return line;
        }
        tracing::warn!(
            body = %truncate_for_log(&self.body),
            bytes = line.len(),
            "log record over the size bound; writing a malformed-record marker instead"
        );
        head.malformed("record_too_large", self.schema_version())
    }

    /// The record as one JSON line and its newline, appended to `out`:
    /// the same bytes as [`LogRecord::to_json_line`] plus `\n`, but the
    /// attributes are scrubbed and bounded in place (the record is
    /// consumed: no copy) and serialized straight into `out`.
    pub fn write_json_line(
        mut self,
        scrubber: &Scrubber,
        bounds: &RecordBounds,
        out: &mut Vec<u8>,
    ) {
        let mut attrs = std::mem::take(&mut self.attributes);
        // The malformed-record replacement names the schema version as it
        // was before the projection.
        let schema_version = match attrs.get("schema_version") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        project_attributes(&mut attrs, scrubber, bounds);
        self.head()
            .write_line(&attrs, schema_version.as_deref(), bounds, out);
    }
}

fn truncate_for_log(s: &str) -> String {
    let mut s = s.to_string();
    cut_string(&mut s, 128);
    s
}

/// Writes records as JSON lines to any `Write`, one `write_all` per line.
pub struct RecordWriter<W: Write + Send> {
    out: Mutex<W>,
    scrubber: Scrubber,
    bounds: RecordBounds,
}

impl<W: Write + Send> RecordWriter<W> {
    pub fn new(out: W, scrubber: Scrubber, bounds: RecordBounds) -> Self {
        RecordWriter {
            out: Mutex::new(out),
            scrubber,
            bounds,
        }
    }

    /// Writes one record (and its newline) and flushes.
    pub fn write(&self, record: &LogRecord) -> io::Result<()> {
        let mut line = record.to_json_line(&self.scrubber, &self.bounds);
        line.push('\n');
        let mut out = self
            .out
            .lock()
            .map_err(|_| io::Error::other("record writer lock poisoned"))?;
        out.write_all(line.as_bytes())?;
        out.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> io::Result<W> {
        self.out
            .into_inner()
            .map_err(|_| io::Error::other("record writer lock poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(attrs: Value) -> LogRecord {
        LogRecord {
            timestamp_ns: 1_780_000_000_023_000_000,
            observed_timestamp_ns: 1_780_000_000_023_000_000,
            severity: Severity::Warning,
            body: "audit.enforcement.block_applied".into(),
            service_name: "sec-audit".into(),
            scope_name: "sec-audit-enforce".into(),
            scope_version: "0.1.0".into(),
            attributes: attrs.as_object().cloned().unwrap_or_default(),
            trace_id: None,
            span_id: None,
        }
    }

    #[test]
    fn record_shape_matches_the_contract() {
        let r = record(
            json!({"event_type": "audit.enforcement.block_applied", "schema_version": "1.0",
                              "scope.type": "ip", "empty": "", "none": null}),
        );
        let line = r.to_json_line(&Scrubber::default(), &RecordBounds::default());
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["timestamp"], json!(1_780_000_000_023_000_000i64));
        assert_eq!(v["severity_text"], json!("WARNING"));
        assert_eq!(v["severity_number"], json!(13));
        assert_eq!(v["body"], json!("audit.enforcement.block_applied"));
        assert_eq!(v["event_name"], json!("audit.enforcement.block_applied"));
        assert_eq!(v["resource"], json!({"service.name": "sec-audit"}));
        assert_eq!(
            v["instrumentation_scope"],
            json!({"name": "sec-audit-enforce", "version": "0.1.0"})
        );
        assert_eq!(
            v["attributes"],
            json!({"event_type": "audit.enforcement.block_applied",
                                           "schema_version": "1.0", "scope.type": "ip"})
        );
        assert!(v.get("trace_id").is_none());
        assert!(line.starts_with("{\"timestamp\":"));
    }

    #[test]
    fn attributes_are_scrubbed_and_bounded() {
        let mut deep = json!("leaf");
        for _ in 0..20 {
            deep = json!({ "k": deep });
        }
        let many: Map<String, Value> = (0..300).map(|i| (format!("k{i:03}"), json!(i))).collect();
        let r = record(
            json!({"event_type": "e", "schema_version": "1.0", "password": "p",
                              "session.id": "audit-sess-1", "sessionid": "raw-cookie",
                              "long": "x".repeat(10_000), "deep": deep,
                              "list": (0..500).collect::<Vec<_>>(), "many": many}),
        );
        let line = r.to_json_line(&Scrubber::default(), &RecordBounds::default());
        let v: Value = serde_json::from_str(&line).unwrap();
        let a = &v["attributes"];
        assert_eq!(a["password"], json!("[REDACTED]"));
        assert_eq!(a["session.id"], json!("audit-sess-1"));
        assert_eq!(a["sessionid"], json!("[REDACTED]"));
        assert_eq!(a["long"].as_str().unwrap().chars().count(), 4096);
        assert_eq!(a["list"].as_array().unwrap().len(), 100);
        assert_eq!(a["many"].as_object().unwrap().len(), 100);
        let mut d = &a["deep"];
        let mut depth = 1;
        while let Some(next) = d.get("k") {
            d = next;
            depth += 1;
        }
        assert_eq!(d, &json!("[TRUNCATED]"));
        assert_eq!(depth, 8);
    }

    #[test]
    fn at_most_128_attributes_and_the_type_survives() {
        let mut attrs: Map<String, Value> =
            (0..500).map(|i| (format!("a{i:03}"), json!(i))).collect();
        attrs.insert("event_type".into(), json!("e"));
        attrs.insert("schema_version".into(), json!("1.0"));
        let r = record(Value::Object(attrs));
        let v: Value =
            serde_json::from_str(&r.to_json_line(&Scrubber::default(), &RecordBounds::default()))
                .unwrap();
        let a = v["attributes"].as_object().unwrap();
        assert_eq!(a.len(), 128);
        assert_eq!(a["event_type"], json!("e"));
        assert_eq!(a["schema_version"], json!("1.0"));
    }

    #[test]
    fn oversized_record_becomes_a_malformed_record() {
        let attrs: Map<String, Value> = (0..120)
            .map(|i| (format!("a{i:03}"), json!("é".repeat(4000))))
            .chain([
                ("event_type".to_string(), json!("e")),
                ("schema_version".to_string(), json!("1.0")),
            ])
            .collect();
        let r = record(Value::Object(attrs));
        let line = r.to_json_line(&Scrubber::default(), &RecordBounds::default());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["body"], json!(MALFORMED_RECORD));
        assert_eq!(v["severity_text"], json!("ERROR"));
        assert_eq!(
            v["attributes"]["original.event_type"],
            json!("audit.enforcement.block_applied")
        );
        assert_eq!(v["attributes"]["schema_version"], json!("1.0"));
        assert!(line.len() < 1024);
    }

    #[test]
    fn write_json_line_is_to_json_line_and_a_newline() {
        let mut deep = json!("leaf");
        for _ in 0..20 {
            deep = json!({ "k": deep, "token": "t" });
        }
        let big: Map<String, Value> = (0..120)
            .map(|i| (format!("a{i:03}"), json!("é".repeat(4000))))
            .chain([("schema_version".to_string(), json!("1.0"))])
            .collect();
        let cases = [
            json!({"event_type": "a", "schema_version": "1.0", "scope.type": "ip", "empty": "", "none": null}),
            json!({"event_type": "e", "schema_version": "1.0", "password": "p",
                   "session.id": "audit-sess-1", "sessionid": "raw-cookie",
                   "long": "x".repeat(10_000), "deep": deep,
                   "list": (0..500).collect::<Vec<_>>(), "f": 1.5, "u": u64::MAX}),
            Value::Object((0..300).map(|i| (format!("k{i:03}"), json!(i))).collect()),
            Value::Object(big),
        ];
        let scrubber = Scrubber::default();
        let bounds = RecordBounds::default();
        let mut out = Vec::new();
        for c in cases {
            let r = record(c);
            let mut want = r.to_json_line(&scrubber, &bounds);
            want.push('\n');
            out.clear();
            r.write_json_line(&scrubber, &bounds, &mut out);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), want);
        }
    }

    #[test]
    fn writer_writes_one_line_per_record() {
        let w = RecordWriter::new(Vec::new(), Scrubber::default(), RecordBounds::default());
        w.write(&record(json!({"event_type": "a"}))).unwrap();
        w.write(&record(json!({"event_type": "b"}))).unwrap();
        let out = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(out.lines().count(), 2);
        assert!(out.ends_with('\n'));
    }
}
