//! The body of the `replay` fuzz target (`fuzz/fuzz_targets/replay.rs`),
//! shared with `tests/fuzz_corpus.rs` so that `cargo test` runs every
//! committed corpus file and former crash through the same code.
//!
//! The input is an audit log: any bytes, split into lines by the CLI's
//! bounded [`LineReader`], fed to a [`Replayer`] over memory stores with all
//! eight built-in rules at low thresholds (so that a few lines block). Beyond
//! "no panic", it checks what the replay promises: every line is counted
//! once (an event or a rejection), and every output line is one JSON object
//! with a `body` and a `timestamp` that never moves backwards. (Replaying
//! each input twice to compare the outputs halved a throughput that building
//! the runtime already bounds; byte-identical output is tested by the CLI's
//! `tests/replay.rs` on the sample log.)

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use sec_audit_cli::lines::LineReader;
use sec_audit_cli::replay::{Replayer, Stats};
use sec_audit_enforce::{Config, Sink};

/// Every built-in at thresholds a handful of lines reach, plus actions that
/// make permanent user blocks and alerts.
pub const CONFIG: &str = r#"
enabled = true
default_temp_ttl = 60

[[rules]]
builtin = "brute_force_login"
threshold = 3
window_seconds = 60

[[rules]]
builtin = "login_throttle"
threshold = 2
paths = ["^/accounts/login/"]

[[rules]]
builtin = "repeated_client_error"
threshold = 3
window_seconds = 60

[[rules]]
builtin = "repeated_route"
threshold = 4
window_seconds = 30

[[rules]]
builtin = "resource_enumeration"
threshold = 3
window_seconds = 60

[[rules]]
builtin = "request_body_threshold"
paths = ["^/api/transfer"]
field = "amount"
threshold = 1000

[[rules]]
builtin = "sensitive_field_change"
fields = ["password", "is_superuser"]
model_labels = ["auth.user"]

[[rules]]
builtin = "suspicious_proxy_header"

[rule_actions]
resource_enumeration = "alert"
repeated_route = { action = "persist_block", scopes = ["user", "session"] }
"#;

/// Lines longer than this are rejected as too long (small, so that the
/// fuzzer reaches the bound).
pub const MAX_LINE_BYTES: usize = 4096;
/// A small request-id window, so that eviction is exercised.
pub const REQUEST_WINDOW: usize = 8;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Replays `data` as a log; returns the counts and the output bytes.
fn replay(data: &[u8]) -> (Stats, Vec<u8>) {
    let config = Config::from_toml_str(CONFIG).expect("the fuzz configuration is valid");
    let out = Buf::default();
    let mut replayer = Replayer::new(config, Sink::Writer(Box::new(out.clone())), REQUEST_WINDOW)
        .expect("the fuzz runtime builds");
    let mut lines = LineReader::new(data, MAX_LINE_BYTES);
    let mut n = 0u64;
    while let Some(line) = lines.next_line().expect("reading a byte slice cannot fail") {
        n += 1;
        replayer.line(n, line);
    }
    assert_eq!(
        lines.bytes_read(),
        data.len() as u64,
        "every byte is consumed"
    );
    let (stats, _tally) = replayer.finish();
    assert_eq!(stats.lines, n, "every line is counted");
    let bytes = out.0.lock().map(|b| b.clone()).unwrap_or_default();
    (stats, bytes)
}

/// The fuzz target's body.
pub fn run(data: &[u8]) {
    let (stats, out) = replay(data);
    assert_eq!(
        stats.events + stats.rejected,
        stats.lines,
        "a line is an event or a rejection: {stats:?}"
    );
    assert_eq!(
        stats.egress_events + stats.dropped_events,
        stats.events,
        "an event goes to egress or is dropped: {stats:?}"
    );
    assert!(stats.denied_requests <= stats.requests, "{stats:?}");
    assert!(stats.rejections.len() as u64 <= stats.rejected, "{stats:?}");

    let text = std::str::from_utf8(&out).expect("the output is UTF-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the output ends with a newline"
    );
    let mut last_ts = i64::MIN;
    for record in text.lines() {
        let v: serde_json::Value = serde_json::from_str(record)
            .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {record}"));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {record}"));
        assert!(
            obj.get("body").and_then(|b| b.as_str()).is_some(),
            "no body: {record}"
        );
        let ts = obj
            .get("timestamp")
            .and_then(|t| t.as_i64())
            .unwrap_or_else(|| panic!("no integer timestamp: {record}"));
        assert!(ts >= last_ts, "timestamps move backwards: {record}");
        last_ts = ts;
    }
}
