//! Core types of sec-audit: the audit event and how one input line becomes
//! one ([`event`]), scrubbing of sensitive data ([`scrub`]), the bounded OTel
//! JSONL log record ([`record`]), trusted-proxy client-IP resolution
//! ([`client_ip`]) and the injectable clock ([`clock`]).
//!
//! Nothing here performs I/O beyond writing to a caller-supplied `Write`, and
//! nothing here panics on input.

pub mod attributes;
pub mod client_ip;
pub mod clock;
pub mod event;
pub mod history_entry;
pub mod log_coalesce;
pub mod record;
pub mod scope_key;
pub mod scrub;
pub mod state;

pub use attributes::{AttrKey, Attributes, Known};
pub use client_ip::{ClientIpResolver, TrustedProxyError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use event::{parse_line, AuditEvent, EventError, ParsedLine};
pub use history_entry::{HistoryEntry, RowRuleAttrs, RuleAttrs};
pub use record::{LogRecord, RecordBounds, RecordHead, RecordWriter, Severity};
pub use scope_key::ScopeKey;
pub use scrub::{ScrubError, Scrubber, REDACTED};
pub use state::{Counters, HistoryRetention, HistoryRow, HistoryStore, Summary};
