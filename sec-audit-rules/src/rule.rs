//! The rule contract: a pure detector over one event.

use std::collections::BTreeSet;
use std::sync::Arc;

use sec_audit_core::AuditEvent;
use serde_json::{Map, Value};

use crate::config::RuleConfig;
use crate::history::HistoryReader;
use crate::policy::ActionKind;
use crate::state::Counters;

/// Why a rule's evaluation failed. The engine isolates it: counted, logged,
/// and the other rules still run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("rule read history scope `{0}` it did not declare")]
    UndeclaredScope(String),
    #[error("rule has no history context but read history")]
    NoHistoryContext,
    #[error("rule panicked")]
    Panicked,
    #[error("rule returned an invalid match: {0}")]
    InvalidMatch(String),
    #[error("{0}")]
    Failed(String),
}

impl RuleError {
    /// A short, stable name of the error kind, safe to put in an event.
    pub fn kind(&self) -> &'static str {
        match self {
            RuleError::UndeclaredScope(_) => "undeclared_scope",
            RuleError::NoHistoryContext => "no_history_context",
            RuleError::Panicked => "rule_panicked",
            RuleError::InvalidMatch(_) => "invalid_match",
            RuleError::Failed(_) => "rule_failed",
        }
    }
}

/// The history a rule may read: which scopes, which event types, how far
/// back and how many rows.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryContext {
    pub scopes: BTreeSet<String>,
    /// `None`: every type.
    pub event_types: Option<Vec<String>>,
    pub window_seconds: f64,
    pub max_events: usize,
}

impl HistoryContext {
    pub const DEFAULT_WINDOW_SECONDS: f64 = 900.0;
    pub const DEFAULT_MAX_EVENTS: usize = 100;
    /// The hard ceiling on `max_events`, and so on the rows kept per
    /// history key, whatever a rule or its thresholds ask: every rule read
    /// scans at most this many rows, so replay stays linear in the log. A
    /// rule asking for more is a configuration error, never a silent cut.
    pub const MAX_EVENTS_CEILING: usize = 1000;

    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self {
        HistoryContext {
            scopes: scopes.into_iter().map(Into::into).collect(),
            event_types: None,
            window_seconds: Self::DEFAULT_WINDOW_SECONDS,
            max_events: Self::DEFAULT_MAX_EVENTS,
        }
    }
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = Some(types.into_iter().map(Into::into).collect());
        self
    }
    pub fn window_seconds(mut self, w: f64) -> Self {
        self.window_seconds = w;
        self
    }
    pub fn max_events(mut self, n: usize) -> Self {
        self.max_events = n;
        self
    }
}

/// What a rule gets per call besides the event.
pub struct RuleContext<'a> {
    /// Seconds since the epoch, from the engine's clock.
    pub now: f64,
    pub counters: &'a dyn Counters,
    pub history: HistoryReader<'a>,
    /// The rule's own configuration table.
    pub config: &'a RuleConfig,
}

/// A detection. Build one with [`Match::new`], which copies the event's
/// identifying fields; metadata is immutable once the match is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub rule_name: String,
    pub severity: u8,
    pub matched_at: f64,
    pub message: String,
    pub event_type: String,
    pub request_id: String,
    pub session_id: String,
    pub srcip: String,
    pub user_id: String,
    pub decision: Option<ActionKind>,
    pub subject: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Arc<Map<String, Value>>,
}

impl Match {
    /// A match of `rule` on `event` at `now`, with the rule's name and
    /// severity.
    pub fn new(
        rule: &(impl Rule + ?Sized),
        event: &AuditEvent,
        now: f64,
        message: impl Into<String>,
    ) -> Self {
        Match {
            rule_name: rule.name().to_string(),
            severity: rule.severity(),
            matched_at: now,
            message: message.into(),
            event_type: event.event_type().to_string(),
            request_id: event.request_id().into_owned(),
            session_id: event.session_id().into_owned(),
            srcip: event.srcip().into_owned(),
            user_id: event.user_id().into_owned(),
            decision: None,
            subject: None,
            tags: Vec::new(),
            metadata: Arc::new(Map::new()),
        }
    }
    pub fn with_decision(mut self, decision: Option<ActionKind>) -> Self {
        self.decision = decision;
        self
    }
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    pub fn with_tags(mut self, tags: &[String]) -> Self {
        self.tags = tags.to_vec();
        self
    }
    pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Arc::new(metadata);
        self
    }
    /// Checks what every match must satisfy: the producing rule's name and a
    /// severity of 1–10.
    pub fn validate(&self, rule_name: &str) -> Result<(), RuleError> {
        if self.rule_name.is_empty() {
            return Err(RuleError::InvalidMatch("empty rule name".into()));
        }
        if self.rule_name != rule_name {
            return Err(RuleError::InvalidMatch(format!(
                "rule `{rule_name}` returned a match named `{}`",
                self.rule_name
            )));
        }
        if !(1..=10).contains(&self.severity) {
            return Err(RuleError::InvalidMatch(format!(
                "severity {} outside 1-10",
                self.severity
            )));
        }
        Ok(())
    }
}

/// A pure detector. It writes no logs, touches no store but through
/// `ctx.counters`, and calls nothing external.
pub trait Rule: Send + Sync {
    /// Unique, non-empty.
    fn name(&self) -> &str;
    /// 1–10.
    fn severity(&self) -> u8;
    /// The event types it wants; empty = every type.
    fn event_types(&self) -> &[String] {
        &[]
    }
    /// Whether it may also run on the ingress pass.
    fn safe_for_enforcement(&self) -> bool {
        false
    }
    /// Its history needs, if any.
    fn history_context(&self) -> Option<&HistoryContext> {
        None
    }
    /// A cheap pre-check for the ingress pass: `false` promises that
    /// `evaluate` returns `Ok(None)`, with no side effect, for every event
    /// whose `path()` is `path`, so the runtime may skip the pass (and
    /// building its synthetic event) when no ingress-safe rule could apply.
    /// Default: `true` (no promise).
    fn may_match_path(&self, _path: &str) -> bool {
        true
    }
    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError>;
    /// A small map stored with this event in history under
    /// `rule_attrs[name]`. Not scrubbed: it must hold no secret.
    fn history_attributes(
        &self,
        _event: &AuditEvent,
        _ctx: &RuleContext<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        Ok(None)
    }
}
