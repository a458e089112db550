//! `sec-audit replay`: the whole pipeline over an audit log as
//! if enforcement had been live when it was written, with the log as the
//! clock.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sec_audit_core::{parse_line, AuditEvent, Clock, EventError, ManualClock};
use sec_audit_enforce::{
    BuildError, Config, FailureStats, IngressDecision, RequestView, Runtime, RuntimeBuilder, Sink,
};

use crate::error::{CliError, EXIT_OK, EXIT_STORE_FAILURES};
use crate::lines::Line;
use crate::parse_ahead::ReadError;
use crate::progress::Progress;
use crate::summary::Tally;
use crate::util::{load_config, OutputTarget, WatchedWriter, WriteWatch};
use crate::window::{RequestState, RequestWindow};

/// The smallest request-id window: at least the last 100 000 distinct ids
/// are remembered.
pub const MIN_REQUEST_WINDOW: usize = 100_000;
/// Default bound on one input line.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;
/// Rejected lines listed one by one; the rest are counted.
pub const REPORTED_REJECTIONS: usize = 10;
/// Buffer of the input reader.
const READ_BUFFER: usize = 256 * 1024;

/// What `sec-audit replay` was asked to do.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub config: PathBuf,
    /// A path, or `-` for standard input.
    pub log: String,
    pub output: OutputTarget,
    pub progress: bool,
    pub request_window: usize,
    pub max_line_bytes: usize,
}

/// A rejected input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub reason: String,
}

/// Counts of one run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Input lines read.
    pub lines: u64,
    /// Lines that were valid events.
    pub events: u64,
    pub rejected: u64,
    /// The first [`REPORTED_REJECTIONS`] rejected lines.
    pub rejections: Vec<Rejection>,
    /// Distinct request ids that got an ingress pass.
    pub requests: u64,
    pub denied_requests: u64,
    /// Events dropped because their request was denied (including the
    /// denied first event).
    pub dropped_events: u64,
    /// Events that went through the egress pass.
    pub egress_events: u64,
    /// Outcomes that store (or other) failures decided: requests let
    /// through or denied because the check failed, block writes that
    /// failed. Filled by [`Replayer::finish`].
    pub failures: FailureStats,
}

/// What became of one input line.
#[derive(Debug, Clone, PartialEq)]
pub enum LineOutcome {
    /// Not an event (the reason, in words).
    Rejected(String),
    /// A later event of a request that ingress denied: dropped.
    DroppedDeniedRequest,
    /// The first event of its request, denied at ingress (and dropped).
    Denied(IngressDecision),
    /// Went through the egress pass; `ingress` is the allow decision when
    /// it was its request's first event.
    Egress { ingress: Option<IngressDecision> },
}

/// Why a parsed line is rejected, in words.
fn reason_of(e: &EventError) -> String {
    match e {
        EventError::InvalidJson(_) => "not valid JSON".into(),
        EventError::NotAnObject => "not a JSON object".into(),
        EventError::AttributesNotAnObject => "`attributes` is not an object".into(),
        EventError::MissingEventType => "no non-empty `event_type`".into(),
    }
}

/// The request view of a request's first event: `url.path`,
/// `http.request.method`, `source.address` (as the peer: it is the already
/// resolved client address), `user.id`, `session.id`, `request.body`.
pub fn request_view<'a>(event: &'a AuditEvent, request_id: &'a str) -> RequestView<'a> {
    let some = |c: Cow<'a, str>| (!c.trim().is_empty()).then_some(c);
    RequestView {
        method: event.method(),
        path: event.path(),
        peer_addr: event.srcip(),
        forwarded_for: None,
        user_id: some(event.user_id()),
        session_id: some(event.session_id()),
        request_id: Some(Cow::Borrowed(request_id)),
        body: event.body().map(Cow::Borrowed),
    }
}

/// One input line as the replay's parse step leaves it: the event and its
/// (non-negative, integer) timestamp, or why the line is rejected. The
/// step reads no replay state, so it runs ahead of evaluation on another
/// thread ([`run`] does); [`Replayer::parsed`] takes the result in order.
#[derive(Debug)]
pub struct ParsedInput(Result<(AuditEvent, i64), String>);

impl ParsedInput {
    /// Parses one line.
    pub fn of(line: Line<'_>) -> ParsedInput {
        ParsedInput(Self::parse(line))
    }

    fn parse(line: Line<'_>) -> Result<(AuditEvent, i64), String> {
        let bytes = match line {
            Line::TooLong(n) => return Err(format!("longer than the line limit ({n} bytes)")),
            Line::Text(b) => b,
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err("not UTF-8".into());
        };
        if text.trim().is_empty() {
            return Err("empty line".into());
        }
        let parsed = parse_line(text).map_err(|e| reason_of(&e))?;
        let Some(ts) = parsed.timestamp_ns else {
            return Err("no integer `timestamp`".into());
        };
        if ts < 0 {
            return Err("negative `timestamp`".into());
        }
        Ok((parsed.event, ts))
    }
}

/// The replay engine: a runtime on a log-driven clock, the request window
/// and the counts. Feed it lines in file order.
pub struct Replayer {
    runtime: Runtime,
    clock: Arc<ManualClock>,
    window: RequestWindow,
    tally: Arc<Mutex<Tally>>,
    pub stats: Stats,
}

impl Replayer {
    /// A replayer over `config` (taken as it is: the caller decides about
    /// `enabled`), writing enforcement records to `sink`.
    pub fn new(config: Config, sink: Sink, request_window: usize) -> Result<Self, BuildError> {
        Self::with_runtime(config, sink, request_window, |b, _| b)
    }

    /// [`Replayer::new`] with a last say on the runtime (explicit stores,
    /// an engine observer): `customize` gets the builder with the replay
    /// clock and `sink` already set, and the clock.
    pub fn with_runtime(
        config: Config,
        sink: Sink,
        request_window: usize,
        customize: impl FnOnce(RuntimeBuilder, Arc<dyn Clock>) -> RuntimeBuilder,
    ) -> Result<Self, BuildError> {
        let clock = Arc::new(ManualClock::new(0));
        let runtime = customize(
            Runtime::builder(config).clock(clock.clone()).sink(sink),
            clock.clone(),
        )
        .build()?;
        let tally = Arc::new(Mutex::new(Tally::default()));
        let t = Arc::clone(&tally);
        runtime
            .emitter()
            .subscribe(Some(Tally::event_types()), move |e| {
                t.lock().map_err(|_| "summary lock poisoned")?.record(e);
                Ok(())
            });
        Ok(Replayer {
            runtime,
            clock,
            window: RequestWindow::new(request_window),
            tally,
            stats: Stats::default(),
        })
    }

    fn reject(&mut self, line: u64, reason: String) -> LineOutcome {
        self.stats.rejected += 1;
        if self.stats.rejections.len() < REPORTED_REJECTIONS {
            self.stats.rejections.push(Rejection {
                line,
                reason: reason.clone(),
            });
        }
        LineOutcome::Rejected(reason)
    }

    /// Handles one input line.
    pub fn line(&mut self, line_no: u64, line: Line<'_>) {
        self.line_traced(line_no, line, &mut |_| {});
    }

    /// [`Replayer::line`], calling `seen` with the parsed event before it
    /// is handled (what `sec-audit explain` uses to pick its events), and
    /// returning what became of the line.
    pub fn line_traced(
        &mut self,
        line_no: u64,
        line: Line<'_>,
        seen: &mut dyn FnMut(&AuditEvent),
    ) -> LineOutcome {
        self.parsed_traced(line_no, &ParsedInput::of(line), seen)
    }

    /// Handles one line already parsed by [`ParsedInput::of`] (on any
    /// thread): the same as [`Replayer::line`] on the line it came from.
    pub fn parsed(&mut self, line_no: u64, input: &ParsedInput) {
        self.parsed_traced(line_no, input, &mut |_| {});
    }

    fn parsed_traced(
        &mut self,
        line_no: u64,
        input: &ParsedInput,
        seen: &mut dyn FnMut(&AuditEvent),
    ) -> LineOutcome {
        self.stats.lines += 1;
        let (event, ts) = match &input.0 {
            Err(reason) => return self.reject(line_no, reason.clone()),
            Ok(ok) => ok,
        };
        self.stats.events += 1;
        self.clock.advance_to(*ts);
        seen(event);
        self.event(event)
    }

    fn event(&mut self, event: &AuditEvent) -> LineOutcome {
        let rid = event.request_id();
        let rid = rid.trim();
        let mut ingress = None;
        if !rid.is_empty() {
            match self.window.get(rid) {
                Some(RequestState::Denied) => {
                    self.stats.dropped_events += 1;
                    return LineOutcome::DroppedDeniedRequest;
                }
                Some(RequestState::Allowed) => {}
                None => {
                    self.stats.requests += 1;
                    let decision = self.runtime.ingress_check(&request_view(event, rid));
                    if let IngressDecision::Deny { .. } = decision {
                        self.window.insert(rid, RequestState::Denied);
                        self.stats.denied_requests += 1;
                        self.stats.dropped_events += 1;
                        return LineOutcome::Denied(decision);
                    }
                    self.window.insert(rid, RequestState::Allowed);
                    ingress = Some(decision);
                }
            }
        }
        self.stats.egress_events += 1;
        self.runtime.handle_event(event);
        LineOutcome::Egress { ingress }
    }

    /// The runtime the replay runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The tally so far.
    pub fn tally(&self) -> Tally {
        match self.tally.lock() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Flushes and drops the runtime (closing the output).
    pub fn finish(self) -> (Stats, Tally) {
        self.runtime.flush();
        let tally = self.tally();
        let mut stats = self.stats;
        stats.failures = self.runtime.failure_stats();
        drop(self.runtime);
        (stats, tally)
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Runs `sec-audit replay`. Prints the summary on standard error. Returns
/// the exit status: [`EXIT_OK`], or [`EXIT_STORE_FAILURES`] when failures
/// decided some outcomes (the summary counts them).
pub fn run(opts: &ReplayOptions) -> Result<u8, CliError> {
    let mut config = load_config(&opts.config)?;
    let was_enabled = config.enabled;
    // Replay answers "what would have been blocked": it enforces whatever
    // the file's master switch says.
    config.enabled = true;
    crate::check_cmd::preflight(&config)?;

    if let OutputTarget::File { path, .. } = &opts.output {
        if opts.log != "-" && same_file(path, Path::new(&opts.log)) {
            return Err(CliError::config(format!(
                "--output {} is the input log: refusing to overwrite it",
                path.display()
            )));
        }
    }
    let (reader, total): (Box<dyn BufRead + Send>, Option<u64>) = if opts.log == "-" {
        (
            Box::new(BufReader::with_capacity(READ_BUFFER, io::stdin())),
            None,
        )
    } else {
        let f = File::open(&opts.log)
            .map_err(|e| CliError::runtime(format!("cannot open log {}: {e}", opts.log)))?;
        let size = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
        (Box::new(BufReader::with_capacity(READ_BUFFER, f)), size)
    };
    let log_name = if opts.log == "-" {
        "standard input".to_string()
    } else {
        opts.log.clone()
    };

    let watch = WriteWatch::default();
    let writer: WatchedWriter = opts.output.open(&watch)?;
    let mut replayer = Replayer::new(
        config,
        Sink::Writer(Box::new(writer)),
        opts.request_window.max(MIN_REQUEST_WINDOW),
    )
    .map_err(|e| CliError::from_build(&opts.config, &e))?;

    let output_failed = |watch: &WriteWatch| watch.to_error(&opts.output.describe());

    let started = Instant::now();
    let mut progress = Progress::new(opts.progress && io::stderr().is_terminal(), total);
    // Parsing runs ahead on a second thread; evaluation takes the batches
    // in file order here.
    let read = crate::parse_ahead::drive(reader, opts.max_line_bytes, |batch| {
        for input in &batch.lines {
            let n = replayer.stats.lines + 1;
            replayer.parsed(n, input);
            // One relaxed atomic load: stop at the first failed write (a
            // closed pipe, a full disk) rather than replay into the void.
            if watch.failed() {
                return ControlFlow::Break(());
            }
        }
        progress.update(batch.bytes_read, replayer.stats.lines);
        ControlFlow::Continue(())
    });
    match read {
        Ok(()) => {}
        Err(ReadError::Io { lines, source }) => {
            return Err(CliError::runtime(format!(
                "reading {log_name} failed after line {lines}: {source}"
            )))
        }
        Err(e) => return Err(CliError::runtime(format!("reading {log_name}: {e}"))),
    }
    progress.finish();
    let (stats, tally) = replayer.finish();
    if let Some(e) = output_failed(&watch) {
        return Err(e);
    }
    let elapsed = started.elapsed().as_secs_f64();
    crate::err!(
        "{}",
        render_summary(
            &log_name,
            &opts.output,
            was_enabled,
            &stats,
            &tally,
            elapsed
        )
    );
    Ok(if stats.failures.any() {
        EXIT_STORE_FAILURES
    } else {
        EXIT_OK
    })
}

/// The summary printed at the end of a run.
pub fn render_summary(
    log_name: &str,
    output: &OutputTarget,
    was_enabled: bool,
    stats: &Stats,
    tally: &Tally,
    elapsed_secs: f64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "replay of {log_name}");
    if !was_enabled {
        let _ = writeln!(
            s,
            "  (the configuration says enabled = false; replay enforces it anyway)"
        );
    }
    let rows = [
        ("lines read", stats.lines, String::new()),
        ("events replayed", stats.events, String::new()),
        ("rejected lines", stats.rejected, String::new()),
        ("requests", stats.requests, String::new()),
        (
            "denied requests",
            stats.denied_requests,
            format!("({} events dropped)", stats.dropped_events),
        ),
        (
            "enforcement events",
            tally.events,
            format!("(written to {})", output.describe()),
        ),
    ];
    for (label, n, note) in rows {
        let _ = writeln!(s, "  {label:<20}{n:>10}  {note}");
        if label == "rejected lines" {
            for r in &stats.rejections {
                let _ = writeln!(s, "      line {}: {}", r.line, r.reason);
            }
            let more = stats.rejected - stats.rejections.len() as u64;
            if more > 0 {
                let _ = writeln!(s, "      … and {more} more rejected lines");
            }
        }
    }
    let rate = if elapsed_secs > 0.0 {
        stats.lines as f64 / elapsed_secs
    } else {
        0.0
    };
    let _ = writeln!(
        s,
        "  {:<20}{elapsed_secs:>10.2}s ({rate:.0} lines/s)",
        "time"
    );
    let f = &stats.failures;
    if f.any() {
        let _ = writeln!(
            s,
            "  {:<20}{:>10}  (failed open {}, failed closed {}; {} failed block writes) — exit status 3",
            "decided by failures",
            f.fail_open + f.fail_closed,
            f.fail_open,
            f.fail_closed,
            f.block_writes_failed
        );
    }
    s.push('\n');
    s.push_str(&tally.render());
    // Lines are trimmed of trailing spaces (empty notes).
    s.lines().map(|l| l.trim_end().to_string() + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write;

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

    const CONFIG: &str = r#"
        enabled = true
        [[rules]]
        builtin = "brute_force_login"
        threshold = 3
        [[rules]]
        builtin = "request_body_threshold"
        threshold = 1000
    "#;

    fn replay(lines: &[String]) -> (Stats, Tally, Vec<serde_json::Value>) {
        let buf = Buf::default();
        let config = Config::from_toml_str(CONFIG).unwrap();
        let mut r = Replayer::new(config, Sink::Writer(Box::new(buf.clone())), 1000).unwrap();
        for (i, l) in lines.iter().enumerate() {
            r.line(i as u64 + 1, Line::Text(l.as_bytes()));
        }
        let (stats, tally) = r.finish();
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let recs = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (stats, tally, recs)
    }

    const T0: i64 = 1_780_000_000_000_000_000;

    fn fail(i: i64, rid: &str) -> String {
        json!({"timestamp": T0 + i * 1_000_000_000, "attributes": {"event_type": "auth.login.failed",
               "request_id": rid, "source.address": "203.0.113.9", "user.name": "alice"}})
        .to_string()
    }

    #[test]
    fn brute_force_blocks_then_later_requests_are_denied_and_dropped() {
        let mut lines: Vec<String> = (0..3).map(|i| fail(i, &format!("r{i}"))).collect();
        // A second event of an allowed request goes to egress.
        lines.push(json!({"timestamp": T0 + 3_500_000_000i64, "attributes": {"event_type": "http.response.client_error",
                          "request_id": "r2", "source.address": "203.0.113.9", "http.response.status_code": 401}}).to_string());
        // A new request from the blocked address is denied, and so is its
        // second event.
        lines.push(fail(4, "r4"));
        lines.push(fail(5, "r4"));
        let (stats, tally, recs) = replay(&lines);
        assert_eq!(stats.events, 6);
        assert_eq!(stats.requests, 4);
        assert_eq!(stats.denied_requests, 1);
        assert_eq!(stats.dropped_events, 2);
        assert_eq!(stats.egress_events, 4);
        let kinds: Vec<&str> = recs.iter().map(|r| r["body"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "audit.enforcement.block_applied",
                "audit.enforcement.blocked"
            ]
        );
        // The replay clock stamps every record.
        assert_eq!(recs[0]["timestamp"], json!(T0 + 2_000_000_000));
        assert_eq!(recs[1]["timestamp"], json!(T0 + 4_000_000_000i64));
        assert_eq!(
            recs[0]["attributes"]["enforcement.expires_at"],
            "2026-05-28T20:31:42.000Z"
        );
        assert_eq!(
            tally.count("brute_force_login", "ip", crate::summary::Outcome::Denied),
            1
        );
    }

    fn fail_from(i: i64, rid: &str, addr: &str) -> String {
        json!({"timestamp": T0 + i * 1_000_000_000, "attributes": {"event_type": "auth.login.failed",
               "request_id": rid, "source.address": addr, "user.name": "alice"}})
        .to_string()
    }

    #[test]
    fn a_source_address_that_is_not_an_address_makes_no_ip_block() {
        for addr in ["999.1.1.1", "203.0.113.014", "not-an-ip"] {
            let lines: Vec<String> = (0..5)
                .map(|i| fail_from(i, &format!("r{i}"), addr))
                .collect();
            let (stats, _, recs) = replay(&lines);
            assert!(
                recs.iter()
                    .all(|r| r["body"] != "audit.enforcement.block_applied"),
                "{addr}: {recs:?}"
            );
            assert_eq!(stats.denied_requests, 0, "{addr}");
        }
    }

    #[test]
    fn an_address_with_a_port_blocks_the_canonical_address_ingress_matches() {
        let mut lines: Vec<String> = (0..3)
            .map(|i| fail_from(i, &format!("r{i}"), "[::1]:80"))
            .collect();
        // The same client logged without the port: ingress matches the block.
        lines.push(fail_from(4, "r4", "::1"));
        let (stats, _, recs) = replay(&lines);
        assert_eq!(recs[0]["attributes"]["scope.value"], "::1", "{recs:?}");
        assert_eq!(stats.denied_requests, 1);
    }

    #[test]
    fn time_never_moves_backwards() {
        // Three failures with the last one out of order: still one window.
        let lines = vec![fail(10, "a"), fail(11, "b"), fail(0, "c")];
        let (_, _, recs) = replay(&lines);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["timestamp"], json!(T0 + 11_000_000_000));
    }

    #[test]
    fn ingress_pass_reads_the_request_body() {
        let line = |amount: &str, rid: &str| {
            json!({"timestamp": T0, "attributes": {"event_type": "http.response.success", "request_id": rid,
                   "source.address": "198.51.100.7", "url.path": "/api/transfer/", "http.request.method": "POST",
                   "request.body": {"amount": amount}}})
            .to_string()
        };
        let (stats, tally, _) = replay(&[line("10.00", "a"), line("5000.00", "b")]);
        assert_eq!(stats.denied_requests, 1);
        assert_eq!(stats.egress_events, 1);
        assert_eq!(
            tally.count(
                "request_body_threshold",
                "ip",
                crate::summary::Outcome::TempBlock
            ),
            1
        );
    }

    #[test]
    fn bad_lines_are_counted_with_their_numbers() {
        let lines: Vec<String> = vec![
            "{not json".into(),
            "[1,2]".into(),
            json!({"timestamp": T0, "attributes": {"event_type": ""}}).to_string(),
            json!({"attributes": {"event_type": "x"}}).to_string(),
            json!({"timestamp": 1.5, "event_type": "x"}).to_string(),
            json!({"timestamp": T0, "event_type": "x"}).to_string(),
            "".into(),
            json!({"timestamp": T0, "attributes": 5}).to_string(),
        ];
        let (stats, _, _) = replay(&lines);
        assert_eq!(stats.lines, 8);
        assert_eq!(stats.events, 1);
        assert_eq!(stats.rejected, 7);
        let got: Vec<(u64, &str)> = stats
            .rejections
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (1, "not valid JSON"),
                (2, "not a JSON object"),
                (3, "no non-empty `event_type`"),
                (4, "no integer `timestamp`"),
                (5, "no integer `timestamp`"),
                (7, "empty line"),
                (8, "`attributes` is not an object"),
            ]
        );
    }

    #[test]
    fn only_the_first_rejections_are_listed() {
        let lines: Vec<String> = (0..25).map(|_| "x".to_string()).collect();
        let (stats, tally, _) = replay(&lines);
        assert_eq!(stats.rejected, 25);
        assert_eq!(stats.rejections.len(), REPORTED_REJECTIONS);
        let text = render_summary("log", &OutputTarget::Stdout, true, &stats, &tally, 0.5);
        assert!(text.contains("      line 10: not valid JSON\n"), "{text}");
        assert!(!text.contains("line 11:"), "{text}");
        assert!(text.contains("… and 15 more rejected lines"), "{text}");
    }
}
