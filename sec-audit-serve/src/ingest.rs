//! Turning ingest bodies into audit events: JSONL (`/v1/events`, the two
//! line shapes `sec-audit replay` reads) and OTLP logs (`/v1/logs`,
//! protobuf or JSON). Pure functions over a body already bounded in size.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use sec_audit_core::{parse_line, AuditEvent, EventError};
use serde::Serialize;
use serde_json::{Map, Value};

/// Rejected lines (or records) listed one by one in a response; the rest
/// are only counted.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// One rejected line (1-based) or record (0-based index in the request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineError {
    pub line: u64,
    pub reason: String,
}

/// The events of a body and what was rejected.
#[derive(Debug, Default)]
pub struct Batch {
    /// Each event with its line number (JSONL) or record index (OTLP).
    pub events: Vec<(u64, AuditEvent)>,
    pub rejected: u64,
    /// The first [`MAX_REPORTED_ERRORS`] rejections.
    pub errors: Vec<LineError>,
}

impl Batch {
    /// Counts a rejection, listing it while there is room.
    pub fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.rejected += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(LineError {
                line,
                reason: reason.into(),
            });
        }
    }
}

fn reason_of(e: &EventError) -> &'static str {
    match e {
        EventError::InvalidJson(_) => "not valid JSON",
        EventError::NotAnObject => "not a JSON object",
        EventError::AttributesNotAnObject => "`attributes` is not an object",
        EventError::MissingEventType => "no non-empty `event_type`",
    }
}

/// Keeps the record's time on the event as its `timestamp` attribute
/// (integer nanoseconds), where a bare attribute line carries it, unless
/// the attributes have one already.
fn with_time(event: AuditEvent, ns: Option<i64>) -> Result<AuditEvent, EventError> {
    match ns {
        Some(ns) if !event.attributes().contains_key("timestamp") => {
            let mut attrs = event.into_attributes();
            attrs.insert("timestamp".into(), Value::from(ns));
            AuditEvent::from_attributes(attrs)
        }
        _ => Ok(event),
    }
}

/// Parses a JSONL body: one event per line, an OTel log record with an
/// `attributes` object or a bare attribute object with `event_type`. Blank
/// lines are skipped; a line longer than `max_line` bytes, not UTF-8 or not
/// an event is rejected with its 1-based number.
pub fn parse_jsonl(body: &[u8], max_line: usize) -> Batch {
    let mut batch = Batch::default();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.len() > max_line {
            batch.reject(
                line,
                format!("longer than the line limit ({} bytes)", raw.len()),
            );
            continue;
        }
        if raw.trim_ascii().is_empty() {
            continue;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            batch.reject(line, "not UTF-8");
            continue;
        };
        match parse_line(text).and_then(|p| with_time(p.event, p.timestamp_ns)) {
            Ok(event) => batch.events.push((line, event)),
            Err(e) => batch.reject(line, reason_of(&e)),
        }
    }
    batch
}

fn any_to_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(attributes(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => {
            let mut hex = String::with_capacity(b.len() * 2);
            for byte in b {
                use std::fmt::Write as _;
                let _ = write!(hex, "{byte:02x}");
            }
            Value::String(hex)
        }
        // A value kind newer than this decoder (e.g. a string-table
        // reference): kept out of the event rather than guessed.
        #[allow(unreachable_patterns)]
        Some(_) => Value::Null,
    }
}

fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .filter(|kv| !kv.key.is_empty())
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, any_to_json),
            )
        })
        .filter(|(_, v)| !v.is_null())
        .collect()
}

fn non_empty(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// One log record as an audit event: its attributes are the event; the
/// event type is the `event_type` attribute, else the record's
/// `event_name`, else an `event.name` attribute, else a string body; the
/// record's time (`time_unix_nano`, else `observed_time_unix_nano`) becomes
/// the `timestamp` attribute.
pub fn record_event(record: &LogRecord) -> Result<AuditEvent, &'static str> {
    let mut attrs = attributes(&record.attributes);
    let body = record.body.as_ref().and_then(|b| match &b.value {
        Some(any_value::Value::StringValue(s)) => Some(Value::String(s.clone())),
        _ => None,
    });
    let event_type = non_empty(attrs.get("event_type"))
        .or_else(|| non_empty(Some(&Value::String(record.event_name.clone()))))
        .or_else(|| non_empty(attrs.get("event.name")))
        .or_else(|| non_empty(body.as_ref()))
        .ok_or("no event type (an `event_type` attribute, `event_name`, an `event.name` attribute or a string body)")?;
    attrs.insert("event_type".into(), Value::String(event_type));
    let ns = [record.time_unix_nano, record.observed_time_unix_nano]
        .into_iter()
        .find(|&t| t != 0)
        .and_then(|t| i64::try_from(t).ok());
    let event = AuditEvent::from_attributes(attrs).map_err(|e| reason_of(&e))?;
    with_time(event, ns).map_err(|e| reason_of(&e))
}

/// Every log record of an OTLP export request, as events; records are
/// numbered in request order from 0.
pub fn otlp_batch(request: &ExportLogsServiceRequest) -> Batch {
    let mut batch = Batch::default();
    let records = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records);
    for (i, record) in records.enumerate() {
        match record_event(record) {
            Ok(e) => batch.events.push((i as u64, e)),
            Err(reason) => batch.reject(i as u64, reason),
        }
    }
    batch
}

/// Decodes an OTLP/HTTP logs body (`application/x-protobuf` or
/// `application/json`).
pub fn decode_otlp(body: &[u8], json: bool) -> Result<ExportLogsServiceRequest, String> {
    if json {
        serde_json::from_slice(body).map_err(|e| {
            format!(
                "not an OTLP JSON logs request (line {} column {})",
                e.line(),
                e.column()
            )
        })
    } else {
        <ExportLogsServiceRequest as prost::Message>::decode(body)
            .map_err(|_| "not an OTLP protobuf logs request".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use prost::Message as _;

    #[test]
    fn both_line_shapes_and_rejections() {
        let body = b"{\"event_type\":\"auth.login.failure\",\"srcip\":\"1.2.3.4\"}\n\
            {\"timestamp\":5,\"attributes\":{\"event_type\":\"x\",\"user.id\":\"u\"}}\r\n\
            \n\
            not json\n\
            [1]\n\
            {\"srcip\":\"1.2.3.4\"}\n\
            \xff\xfe\n\
            {\"event_type\":\"y\",\"pad\":\"01234567890123456789012345678901234567890123456789\"}\n";
        let b = parse_jsonl(body, 70);
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.events[0].0, 1);
        assert_eq!(b.events[0].1.srcip(), "1.2.3.4");
        assert_eq!(b.events[1].1.user_id(), "u");
        assert_eq!(b.events[1].1.attributes()["timestamp"], 5);
        assert_eq!(b.rejected, 5);
        let lines: Vec<u64> = b.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7, 8]);
        assert_eq!(b.errors[0].reason, "not valid JSON");
        assert_eq!(b.errors[2].reason, "no non-empty `event_type`");
        assert_eq!(b.errors[3].reason, "not UTF-8");
        assert!(b.errors[4].reason.starts_with("longer than the line limit"));
    }

    #[test]
    fn the_error_list_is_bounded() {
        let body = "x\n".repeat(1000);
        let b = parse_jsonl(body.as_bytes(), 100);
        assert_eq!(b.rejected, 1000);
        assert_eq!(b.errors.len(), MAX_REPORTED_ERRORS);
    }

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn otlp_records_become_events() {
        use any_value::Value as V;
        let records = vec![
            LogRecord {
                time_unix_nano: 7,
                event_name: "auth.login.failure".into(),
                attributes: vec![
                    kv("source.address", V::StringValue("10.0.0.1".into())),
                    kv("http.response.status_code", V::IntValue(401)),
                    kv("ok", V::BoolValue(false)),
                ],
                ..Default::default()
            },
            LogRecord {
                observed_time_unix_nano: 9,
                body: Some(AnyValue {
                    value: Some(V::StringValue("from.body".into())),
                }),
                ..Default::default()
            },
            LogRecord {
                attributes: vec![kv("event_type", V::StringValue("from.attr".into()))],
                event_name: "ignored".into(),
                ..Default::default()
            },
            LogRecord::default(),
        ];
        let req = request(records);
        // Protobuf round trip, then JSON.
        let bytes = req.encode_to_vec();
        let decoded = decode_otlp(&bytes, false).unwrap();
        let b = otlp_batch(&decoded);
        assert_eq!(b.events.len(), 3);
        let e = &b.events[0].1;
        assert_eq!(e.event_type(), "auth.login.failure");
        assert_eq!(e.srcip(), "10.0.0.1");
        assert_eq!(e.status_code(), 401);
        assert_eq!(e.attributes()["timestamp"], 7);
        assert_eq!(b.events[1].1.event_type(), "from.body");
        assert_eq!(b.events[1].1.attributes()["timestamp"], 9);
        assert_eq!(b.events[2].1.event_type(), "from.attr");
        assert_eq!((b.rejected, b.errors[0].line), (1, 3));

        let json = serde_json::to_vec(&req).unwrap();
        let b2 = otlp_batch(&decode_otlp(&json, true).unwrap());
        assert_eq!(b2.events.len(), 3);
        assert_eq!(b2.events[0].1, b.events[0].1);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert!(decode_otlp(b"\xff\xff\xff\xff", false).is_err());
        assert!(decode_otlp(b"{\"resourceLogs\": 5}", true).is_err());
        assert!(decode_otlp(b"\x00\x01", true).is_err());
        let deep = "[".repeat(10_000);
        assert!(decode_otlp(deep.as_bytes(), true).is_err());
    }
}
