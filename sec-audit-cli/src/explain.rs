//! `sec-audit explain`: why the engine decided what it did for chosen
//! events of a log — for tuning a rule before arming it (like
//! `cscli explain`).
//!
//! The whole log up to the last chosen event is replayed exactly as
//! `sec-audit replay` does (same runtime, same request window, the log as
//! the clock), but always on **memory** stores: explaining never writes a
//! block, a counter or a history row to the configured Redis or Postgres.
//! For each chosen event it prints, in order, the passes it went through
//! (ingress for a request's first event, then egress), each rule that ran
//! or why it was skipped, what the rule read (counters, history rows),
//! whether it matched, the action the match resolved to and which
//! configuration entry decided it, the block an ingress denial hit, and
//! the enforcement records the event produced.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use sec_audit_core::{AuditEvent, Clock};
use sec_audit_enforce::{DenyReason, IngressDecision, Runtime, Sink, Stores};
use sec_audit_rules::policy::ResolvedBy;
use sec_audit_rules::{
    ActionPolicy, Counters, Effect, EvaluationObserver, HistoryRetention, HistoryRow, HistoryStore,
    Match, RuleOutcome, ScopeKey, SkipReason,
};
use serde_json::{Map, Value};

use crate::error::{CliError, EXIT_OK};
use crate::lines::LineReader;
use crate::replay::{LineOutcome, Replayer, MIN_REQUEST_WINDOW};
use crate::util::load_config;

/// Which events to explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The event on this line (1-based).
    Line(u64),
    /// Every event of this request id.
    RequestId(String),
    /// Every event whose scope keys include this one (`ip` values are
    /// compared canonically).
    Subject(ScopeKey),
}

impl Selector {
    /// Parses `--subject scope:value`.
    pub fn subject(s: &str) -> Result<Selector, String> {
        let (scope, value) = s
            .split_once(':')
            .filter(|(s, v)| !s.trim().is_empty() && !v.trim().is_empty())
            .ok_or_else(|| format!("--subject `{s}`: expected SCOPE:VALUE, e.g. ip:192.0.2.1"))?;
        let scope = scope.trim();
        let value = value.trim();
        let value = if scope == "ip" {
            match value.parse::<IpAddr>() {
                Ok(ip) => canonical_ip(ip).to_string(),
                Err(_) => return Err(format!("--subject `{s}`: `{value}` is not an IP address")),
            }
        } else {
            value.to_string()
        };
        Ok(Selector::Subject(ScopeKey::new(scope, value)))
    }
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// What `sec-audit explain` was asked to do.
#[derive(Debug, Clone)]
pub struct ExplainOptions {
    pub config: PathBuf,
    /// A path, or `-` for standard input.
    pub log: String,
    pub select: Selector,
    /// At most this many chosen events are explained.
    pub limit: usize,
    pub max_line_bytes: usize,
}

/// One state read or write a rule made.
type Access = String;

#[derive(Debug)]
enum RuleStatus {
    Skipped(SkipReason),
    Running,
    Matched {
        severity: u8,
        message: String,
        metadata: Map<String, Value>,
        action: String,
    },
    NoMatch,
    Failed(&'static str),
}

#[derive(Debug)]
struct RuleTrace {
    name: String,
    status: RuleStatus,
    accesses: Vec<Access>,
}

#[derive(Debug)]
struct PassTrace {
    ingress: bool,
    rules: Vec<RuleTrace>,
}

/// What the engine reported for the event being explained.
#[derive(Debug, Default)]
struct Trace {
    active: bool,
    passes: Vec<PassTrace>,
}

impl Trace {
    fn access(&mut self, what: impl FnOnce() -> String) {
        if !self.active {
            return;
        }
        if let Some(rule) = self
            .passes
            .last_mut()
            .and_then(|p| p.rules.last_mut())
            .filter(|r| matches!(r.status, RuleStatus::Running))
        {
            rule.accesses.push(what());
        }
    }
}

/// What the observer needs to know of the runtime, set once it is built.
struct Known {
    policy: ActionPolicy,
}

struct Observer {
    trace: Arc<Mutex<Trace>>,
    known: Arc<OnceLock<Known>>,
}

fn lock(trace: &Mutex<Trace>) -> std::sync::MutexGuard<'_, Trace> {
    match trace.lock() {
        Ok(t) => t,
        Err(p) => p.into_inner(),
    }
}

impl EvaluationObserver for Observer {
    fn pass_started(&self, _event: &AuditEvent, enforcement_only: bool) {
        let mut t = lock(&self.trace);
        if t.active {
            t.passes.push(PassTrace {
                ingress: enforcement_only,
                rules: Vec::new(),
            });
        }
    }
    fn rule_skipped(&self, rule: &str, reason: SkipReason) {
        self.push(rule, RuleStatus::Skipped(reason));
    }
    fn rule_started(&self, rule: &str) {
        self.push(rule, RuleStatus::Running);
    }
    fn rule_finished(&self, rule: &str, outcome: RuleOutcome<'_>) {
        let status = match outcome {
            RuleOutcome::Matched(m) => RuleStatus::Matched {
                severity: m.severity,
                message: m.message.clone(),
                metadata: (*m.metadata).clone(),
                action: self
                    .known
                    .get()
                    .map(|k| describe_action(&k.policy, m))
                    .unwrap_or_default(),
            },
            RuleOutcome::NoMatch => RuleStatus::NoMatch,
            RuleOutcome::Failed(kind) => RuleStatus::Failed(kind),
        };
        let mut t = lock(&self.trace);
        if !t.active {
            return;
        }
        if let Some(r) = t
            .passes
            .last_mut()
            .and_then(|p| p.rules.last_mut())
            .filter(|r| r.name == rule)
        {
            r.status = status;
        }
    }
}

impl Observer {
    fn push(&self, rule: &str, status: RuleStatus) {
        let mut t = lock(&self.trace);
        if !t.active {
            return;
        }
        if let Some(p) = t.passes.last_mut() {
            p.rules.push(RuleTrace {
                name: rule.to_string(),
                status,
                accesses: Vec::new(),
            });
        }
    }
}

/// The action a match resolves to, and which entry of the configuration
/// decided it.
fn describe_action(policy: &ActionPolicy, m: &Match) -> String {
    let a = policy.resolve(m);
    let what = match a.effect {
        Effect::Observe => "observe (recorded, no record emitted)".to_string(),
        Effect::Alert => "alert".to_string(),
        Effect::TempBlock => {
            let rule = &m.rule_name;
            let from_entry = matches!(a.resolved_by, ResolvedBy::RuleActions)
                && policy
                    .entry(rule)
                    .is_some_and(|(spec, _)| spec.ttl.is_some());
            let source = if from_entry {
                format!("rule_actions.{rule}.ttl")
            } else if policy.block_rules.contains_key(rule) {
                format!("block_rules.{rule}")
            } else if ["block_ttl", "ttl"]
                .iter()
                .any(|k| m.metadata.contains_key(*k))
            {
                "the match's own ttl".to_string()
            } else {
                "default_temp_ttl".to_string()
            };
            format!(
                "temp_block on {} for {} s ({source})",
                a.scopes.join(", "),
                a.ttl.unwrap_or(policy.default_temp_ttl)
            )
        }
        Effect::PermanentBlock => format!("permanent block on {}", a.scopes.join(", ")),
    };
    let rule = &m.rule_name;
    let why = match a.resolved_by {
        ResolvedBy::RuleActions => {
            let user = policy.rule_actions.contains_key(rule);
            let builtin = policy.builtin_rules.contains(rule);
            match (user, builtin) {
                (true, true) => {
                    format!("rule_actions.{rule} (over the built-in default of {rule})")
                }
                (true, false) => format!("rule_actions.{rule}"),
                _ => format!("the built-in default of {rule} (no rule_actions entry)"),
            }
        }
        ResolvedBy::BlockRules => format!("block_rules.{rule}"),
        ResolvedBy::Decision => "the rule's own suggested decision".to_string(),
        ResolvedBy::Default if policy.plugin_rules.contains(rule) => {
            "a plugin rule only observes until rule_actions arms it".to_string()
        }
        ResolvedBy::Default => {
            "no rule_actions, block_rules or decision for it: observe".to_string()
        }
    };
    let gate = match (a.effect, policy.block_severity) {
        (Effect::PermanentBlock | Effect::TempBlock, Some(gate))
            if matches!(m.decision, Some(sec_audit_rules::ActionKind::Block))
                || policy
                    .entry(rule)
                    .and_then(|(s, _)| s.action)
                    .is_some_and(|k| k == sec_audit_rules::ActionKind::Block) =>
        {
            format!(
                "; `block` with block_severity = {gate}: severity {} {} {gate}",
                m.severity,
                if m.severity >= gate { ">=" } else { "<" }
            )
        }
        _ => String::new(),
    };
    format!("{what} — from {why}{gate}")
}

/// Counters that note every call of the rule being explained.
struct RecordingCounters {
    inner: Arc<dyn Counters>,
    trace: Arc<Mutex<Trace>>,
}

impl Counters for RecordingCounters {
    fn incr(&self, key: &str, amount: i64, ttl_secs: Option<u64>) -> i64 {
        let v = self.inner.incr(key, amount, ttl_secs);
        lock(&self.trace).access(|| format!("counter {key} += {amount} -> {v}"));
        v
    }
    fn get_int(&self, key: &str, default: i64) -> i64 {
        let v = self.inner.get_int(key, default);
        lock(&self.trace).access(|| format!("counter {key} = {v}"));
        v
    }
    fn set(&self, key: &str, value: i64, ttl_secs: Option<u64>) {
        self.inner.set(key, value, ttl_secs);
        lock(&self.trace).access(|| format!("counter {key} set to {value}"));
    }
    fn delete(&self, key: &str) {
        self.inner.delete(key);
        lock(&self.trace).access(|| format!("counter {key} deleted"));
    }
    fn expire(&self, key: &str, ttl_secs: u64) {
        self.inner.expire(key, ttl_secs);
        lock(&self.trace).access(|| format!("counter {key} expires in {ttl_secs} s"));
    }
    fn answers_locally(&self) -> bool {
        self.inner.answers_locally()
    }
}

/// History that notes every read of the rule being explained.
struct RecordingHistory {
    inner: Arc<dyn HistoryStore>,
    trace: Arc<Mutex<Trace>>,
}

fn types_of(event_types: Option<&[String]>) -> String {
    match event_types {
        None => "any type".into(),
        Some(t) => t.join(", "),
    }
}

impl HistoryStore for RecordingHistory {
    fn append(
        &self,
        keys: &[ScopeKey],
        recorded_at: f64,
        row: HistoryRow,
        retention: &HistoryRetention,
    ) {
        self.inner.append(keys, recorded_at, row, retention);
    }
    fn query(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
    ) -> Vec<HistoryRow> {
        let rows = self.inner.query(key, since, event_types, limit);
        lock(&self.trace).access(|| {
            format!(
                "history {key}: {} row(s) ({}, newer than {since:.3}, at most {limit})",
                rows.len(),
                types_of(event_types)
            )
        });
        rows
    }
    fn visit_all(
        &self,
        key: &ScopeKey,
        since: f64,
        event_types: Option<&[String]>,
        limit: usize,
        f: &mut dyn FnMut(&mut dyn Iterator<Item = &HistoryRow>),
    ) {
        let mut n = 0usize;
        self.inner
            .visit_all(key, since, event_types, limit, &mut |rows| {
                let mut counted = rows.inspect(|_| n += 1);
                f(&mut counted);
                // Rows `f` left unread count too.
                counted.for_each(|_| ());
            });
        lock(&self.trace).access(|| {
            format!(
                "history {key}: {n} row(s) ({}, newer than {since:.3}, at most {limit})",
                types_of(event_types)
            )
        });
    }
    fn answers_locally(&self) -> bool {
        self.inner.answers_locally()
    }
}

/// The enforcement records written so far (the replay's JSONL output).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(b),
            Err(p) => p.into_inner().extend_from_slice(b),
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> Vec<u8> {
        match self.0.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

/// The explaining replayer: [`Replayer`] on memory stores with the
/// recording wrappers and the engine observer.
pub struct Explainer {
    replayer: Replayer,
    trace: Arc<Mutex<Trace>>,
    records: Captured,
    select: Selector,
    /// Chosen events explained so far.
    pub explained: usize,
    /// Chosen events beyond the limit (counted, not explained).
    pub more: usize,
    limit: usize,
}

impl Explainer {
    pub fn new(
        config: sec_audit_enforce::Config,
        select: Selector,
        limit: usize,
    ) -> Result<Self, sec_audit_enforce::BuildError> {
        let trace = Arc::new(Mutex::new(Trace::default()));
        let known = Arc::new(OnceLock::new());
        let observer = Arc::new(Observer {
            trace: Arc::clone(&trace),
            known: Arc::clone(&known),
        });
        let records = Captured::default();
        let t = Arc::clone(&trace);
        let replayer = Replayer::with_runtime(
            config,
            Sink::Writer(Box::new(records.clone())),
            MIN_REQUEST_WINDOW,
            move |b, clock: Arc<dyn Clock>| {
                let memory = Stores::memory(clock);
                b.stores(Stores {
                    counters: Arc::new(RecordingCounters {
                        inner: memory.counters,
                        trace: Arc::clone(&t),
                    }),
                    history: Arc::new(RecordingHistory {
                        inner: memory.history,
                        trace: t,
                    }),
                    blocks: memory.blocks,
                })
                .engine_observer(observer)
            },
        )?;
        let _ = known.set(Known {
            policy: replayer.runtime().enforcer().policy().clone(),
        });
        Ok(Explainer {
            replayer,
            trace,
            records,
            select,
            explained: 0,
            more: 0,
            limit,
        })
    }

    /// Whether every chosen event has been seen (the rest of the log
    /// cannot change them).
    pub fn done(&self, line_no: u64) -> bool {
        matches!(self.select, Selector::Line(n) if line_no >= n)
    }

    /// Feeds one line; appends the explanation to `out` when it is chosen.
    pub fn line(&mut self, line_no: u64, line: crate::lines::Line<'_>, out: &mut String) {
        let mut picked: Option<(String, String)> = None;
        let limit_reached = self.explained >= self.limit;
        // `line_traced` borrows the replayer: decide on clones of the
        // selector and the scope registry.
        let select = self.select.clone();
        let scopes = Arc::clone(self.replayer.runtime().engine().scopes());
        let trace = Arc::clone(&self.trace);
        let mut seen = |e: &AuditEvent| {
            let chosen = match &select {
                Selector::Line(n) => *n == line_no,
                Selector::RequestId(id) => e.request_id().trim() == id,
                Selector::Subject(key) => scopes.extract(e).iter().any(|k| k == key),
            };
            if chosen {
                picked = Some((event_header(line_no, e), e.path().into_owned()));
                if !limit_reached {
                    let mut t = lock(&trace);
                    t.active = true;
                    t.passes.clear();
                }
            }
        };
        // Records of earlier events are not this event's.
        self.records.take();
        let outcome = self.replayer.line_traced(line_no, line, &mut seen);
        let Some((header, path)) = picked else {
            if let (Selector::Line(n), LineOutcome::Rejected(reason)) = (&self.select, &outcome) {
                if *n == line_no {
                    let _ = writeln!(out, "line {line_no}: not an event ({reason})");
                }
            }
            return;
        };
        if limit_reached {
            self.more += 1;
            return;
        }
        self.replayer.runtime().flush();
        let passes = {
            let mut t = lock(&self.trace);
            t.active = false;
            std::mem::take(&mut t.passes)
        };
        self.explained += 1;
        self.render(out, &header, &path, &outcome, passes);
    }

    fn render(
        &self,
        out: &mut String,
        header: &str,
        path: &str,
        outcome: &LineOutcome,
        passes: Vec<PassTrace>,
    ) {
        let _ = writeln!(out, "{header}");
        let runtime = self.replayer.runtime();
        let (ingress, egress): (Vec<_>, Vec<_>) = passes.into_iter().partition(|p| p.ingress);
        match outcome {
            LineOutcome::Rejected(reason) => {
                let _ = writeln!(out, "  not an event: {reason}");
            }
            LineOutcome::DroppedDeniedRequest => {
                let _ = writeln!(
                    out,
                    "  dropped: ingress already denied an earlier event of this request; no pass ran"
                );
            }
            LineOutcome::Denied(decision) => {
                render_ingress(out, runtime, Some(decision), &ingress, path);
                let _ = writeln!(out, "  egress: not run (the request was denied)");
            }
            LineOutcome::Egress { ingress: decision } => {
                if decision.is_some() {
                    render_ingress(out, runtime, decision.as_ref(), &ingress, path);
                } else {
                    let _ = writeln!(
                        out,
                        "  ingress: not run (no request id, or not its request's first event)"
                    );
                }
                if egress.is_empty() {
                    let _ = writeln!(
                        out,
                        "  egress: no rule pass (the engine ignores audit.rule.*, audit.enforcement.* and audit.context.* events)"
                    );
                }
                for p in &egress {
                    let _ = writeln!(out, "  egress:");
                    self.render_rules(out, p, path);
                }
            }
        }
        let records = self.records.take();
        let text = String::from_utf8_lossy(&records);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            let _ = writeln!(out, "  records: none");
        } else {
            let _ = writeln!(out, "  records:");
            for l in lines {
                let _ = writeln!(out, "    {}", describe_record(l));
            }
        }
        let _ = writeln!(out);
    }

    fn render_rules(&self, out: &mut String, pass: &PassTrace, path: &str) {
        for r in &pass.rules {
            let line = match &r.status {
                RuleStatus::Skipped(SkipReason::NotIngressSafe) => {
                    format!("rule {}: skipped — not ingress-safe", r.name)
                }
                RuleStatus::Skipped(SkipReason::EventType) => format!(
                    "rule {}: skipped — runs only on {}",
                    r.name,
                    self.event_types_of(&r.name)
                ),
                RuleStatus::Running => format!("rule {}: ran (no outcome reported)", r.name),
                RuleStatus::NoMatch => format!(
                    "rule {}: ran, no match{}",
                    r.name,
                    self.path_note(&r.name, path)
                ),
                RuleStatus::Failed(kind) => {
                    format!(
                        "rule {}: FAILED ({kind}); isolated, the other rules ran",
                        r.name
                    )
                }
                RuleStatus::Matched {
                    severity, message, ..
                } => format!("rule {}: MATCHED (severity {severity}): {message}", r.name),
            };
            let _ = writeln!(out, "    {line}");
            for a in &r.accesses {
                let _ = writeln!(out, "      read: {a}");
            }
            if let RuleStatus::Matched {
                metadata, action, ..
            } = &r.status
            {
                if !metadata.is_empty() {
                    let _ = writeln!(out, "      evidence: {}", Value::Object(metadata.clone()));
                }
                let _ = writeln!(out, "      action: {action}");
            }
        }
    }

    /// ` — its path filter excludes PATH` when the rule promises it
    /// cannot match the path.
    fn path_note(&self, rule: &str, path: &str) -> String {
        path_note(self.replayer.runtime(), rule, path)
    }

    fn event_types_of(&self, rule: &str) -> String {
        self.replayer
            .runtime()
            .engine()
            .rules()
            .find(|r| r.name() == rule)
            .map(|r| r.event_types().join(", "))
            .unwrap_or_default()
    }

    /// Flushes the runtime; the explanation of the events seen is complete.
    pub fn finish(self) -> (usize, usize) {
        self.replayer.runtime().flush();
        (self.explained, self.more)
    }
}

fn render_ingress(
    out: &mut String,
    runtime: &Runtime,
    decision: Option<&IngressDecision>,
    passes: &[PassTrace],
    path: &str,
) {
    let verdict = match decision {
        None | Some(IngressDecision::Allow) => "allowed".to_string(),
        Some(IngressDecision::Deny {
            status_code,
            reason,
            retry_after,
            ..
        }) => {
            let why = match reason {
                DenyReason::Blocked {
                    scope_type,
                    scope_value,
                    rule_name,
                } => format!("active block on {scope_type}:{scope_value} (written by {rule_name})"),
                DenyReason::RuleMatched { rule_name } => {
                    format!("the ingress rule {rule_name} matched and its action blocks")
                }
                DenyReason::FailClosed => {
                    "the block store did not answer and the path is fail-closed".into()
                }
                DenyReason::Error => "an unexpected error with fail_open = false".into(),
            };
            let retry = retry_after
                .map(|s| format!(", Retry-After {s} s"))
                .unwrap_or_default();
            format!("DENIED {status_code}{retry} — {why}")
        }
    };
    let _ = writeln!(out, "  ingress (the request's first event): {verdict}");
    if passes.is_empty() {
        let reason = if !runtime.config().eval_safe_on_ingress {
            "eval_safe_on_ingress = false"
        } else if matches!(
            decision,
            Some(IngressDecision::Deny {
                reason: DenyReason::Blocked { .. },
                ..
            })
        ) {
            "an active block denied first"
        } else if !runtime.engine().has_ingress_rules() {
            "no ingress-safe rule is configured"
        } else {
            "no ingress-safe rule can match this path"
        };
        let _ = writeln!(out, "    rule pass: not run ({reason})");
    }
    for p in passes {
        for r in &p.rules {
            let line = match &r.status {
                RuleStatus::Skipped(SkipReason::NotIngressSafe) => {
                    format!("rule {}: skipped — not ingress-safe", r.name)
                }
                RuleStatus::Skipped(SkipReason::EventType) => {
                    format!(
                        "rule {}: skipped — does not run on audit.http.request.pre",
                        r.name
                    )
                }
                RuleStatus::Running => format!("rule {}: ran (no outcome reported)", r.name),
                RuleStatus::NoMatch => format!(
                    "rule {}: ran, no match{}",
                    r.name,
                    path_note(runtime, &r.name, path)
                ),
                RuleStatus::Failed(kind) => format!("rule {}: FAILED ({kind})", r.name),
                RuleStatus::Matched {
                    severity, message, ..
                } => format!("rule {}: MATCHED (severity {severity}): {message}", r.name),
            };
            let _ = writeln!(out, "    {line}");
            for a in &r.accesses {
                let _ = writeln!(out, "      read: {a}");
            }
            if let RuleStatus::Matched { action, .. } = &r.status {
                let _ = writeln!(out, "      action: {action}");
            }
        }
    }
}

fn path_note(runtime: &Runtime, rule: &str, path: &str) -> String {
    let excluded = runtime
        .engine()
        .rules()
        .find(|r| r.name() == rule)
        .is_some_and(|r| {
            !std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.may_match_path(path)))
                .unwrap_or(true)
        });
    if excluded {
        format!(" — its path filter excludes {path}")
    } else {
        String::new()
    }
}

fn event_header(line_no: u64, e: &AuditEvent) -> String {
    let mut h = format!("line {line_no}: {}", e.event_type());
    for (label, v) in [
        ("request", e.request_id()),
        ("ip", e.srcip()),
        ("user", e.user_id()),
        ("session", e.session_id()),
        ("path", e.path()),
    ] {
        if !v.trim().is_empty() {
            let _ = write!(h, " {label}={}", v.trim());
        }
    }
    h
}

/// One enforcement record in a line: its type and the attributes an
/// operator looks at.
fn describe_record(line: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return "(unreadable record)".into();
    };
    let attrs = v.get("attributes").and_then(Value::as_object);
    let get = |k: &str| -> Option<String> {
        attrs.and_then(|a| a.get(k)).and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        })
    };
    let ty = get("event_type").unwrap_or_else(|| "?".into());
    let mut s = ty;
    for k in [
        "security_rule.name",
        "enforcement.action",
        "scope.type",
        "scope.value",
        "http.response.status_code",
        "enforcement.ttl",
        "enforcement.offense",
        "enforcement.safelisted",
        "error.type",
    ] {
        if let Some(v) = get(k) {
            let _ = write!(s, " {k}={v}");
        }
    }
    s
}

/// Runs `sec-audit explain`. Writes the explanation to standard output.
pub fn run(opts: &ExplainOptions) -> Result<u8, CliError> {
    let mut config = load_config(&opts.config)?;
    // As replay: the question is what the rules would have done.
    config.enabled = true;
    let reader: Box<dyn BufRead> = if opts.log == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let f = File::open(&opts.log)
            .map_err(|e| CliError::runtime(format!("cannot open log {}: {e}", opts.log)))?;
        Box::new(BufReader::new(f))
    };
    let mut explainer = Explainer::new(config, opts.select.clone(), opts.limit)
        .map_err(|e| CliError::from_build(&opts.config, &e))?;
    let mut lines = LineReader::new(reader, opts.max_line_bytes);
    let mut out = String::new();
    let mut n = 0u64;
    loop {
        let line = match lines.next_line() {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                return Err(CliError::runtime(format!(
                    "reading {} failed after line {n}: {e}",
                    opts.log
                )))
            }
        };
        n += 1;
        explainer.line(n, line, &mut out);
        if !out.is_empty() {
            crate::out!("{out}")?;
            out.clear();
        }
        if explainer.done(n) {
            break;
        }
    }
    let (explained, more) = explainer.finish();
    if let Selector::Line(want) = &opts.select {
        if n < *want {
            return Err(CliError::config(format!(
                "--line {want}: the log has only {n} line(s)"
            )));
        }
    } else if explained == 0 {
        crate::err!("no event of the log matches the selection");
    }
    if more > 0 {
        crate::err!(
            "{more} more chosen event(s) not explained (--limit {}); raise --limit to see them",
            opts.limit
        );
    }
    Ok(EXIT_OK)
}
