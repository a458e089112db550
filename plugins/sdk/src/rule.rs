//! The rule contract a plugin author implements; it mirrors the native one
//! (`sec_audit_rules::Rule`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::context::Context;
use crate::event::Event;
use crate::ffi::{FfiDecision, FfiErrorKind, FfiRuleError};

/// A pure detector. It writes no logs, touches no store but through
/// `ctx.counters`, and calls nothing external.
///
/// Everything but [`PluginRule::evaluate`] and
/// [`PluginRule::history_attributes`] is read once, when the host loads the
/// library.
pub trait PluginRule: Send + Sync + 'static {
    /// Unique among every rule the host registers, non-empty.
    fn name(&self) -> &str;
    /// 1–10.
    fn severity(&self) -> u8;
    /// The event types it wants; empty = every type.
    fn event_types(&self) -> &[String] {
        &[]
    }
    /// Whether it may also run on the ingress pass (on every request, on the
    /// synthetic `audit.http.request.pre` event). Default false.
    fn safe_for_enforcement(&self) -> bool {
        false
    }
    /// Its history needs, if any. Reading history without declaring them
    /// is an error.
    fn history_context(&self) -> Option<&HistoryContext> {
        None
    }
    /// A match, nothing, or an error. A panic is caught and becomes a rule
    /// failure, isolated by the engine.
    fn evaluate(
        &self,
        event: &Event<'_>,
        ctx: &Context<'_>,
    ) -> Result<Option<PluginMatch>, RuleError>;
    /// A small map the engine stores with this event in history under
    /// `rule_attrs.<name>`, so later events can correlate on derived data.
    /// It is not scrubbed: it must hold no secret or personal data.
    fn history_attributes(
        &self,
        _event: &Event<'_>,
        _ctx: &Context<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        Ok(None)
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

/// An action a rule may suggest. A plugin's suggestion is ignored until the
/// operator maps the rule in `rule_actions`; it is informational.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Observe,
    Alert,
    TempBlock,
    PersistBlock,
    /// Permanent at or above the host's `block_severity`, else temporary.
    Block,
}

impl Decision {
    pub(crate) fn to_ffi(self) -> FfiDecision {
        match self {
            Decision::Observe => FfiDecision::Observe,
            Decision::Alert => FfiDecision::Alert,
            Decision::TempBlock => FfiDecision::TempBlock,
            Decision::PersistBlock => FfiDecision::PersistBlock,
            Decision::Block => FfiDecision::Block,
        }
    }

    /// Parses an action name (`observe`, `alert`, `temp_block`,
    /// `persist_block`, `block`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "observe" => Decision::Observe,
            "alert" => Decision::Alert,
            "temp_block" => Decision::TempBlock,
            "persist_block" => Decision::PersistBlock,
            "block" => Decision::Block,
            _ => return None,
        })
    }
}

/// A detection. The host adds the event's identifying fields (`event_type`,
/// `request_id`, `session_id`, `srcip`, `user_id`) and `matched_at`.
///
/// Build one with [`PluginMatch::new`], which takes the rule's name and
/// severity. The host checks what every match must satisfy — the producing
/// rule's name and a severity of 1–10 — and treats a violation as a rule
/// failure.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginMatch {
    pub rule_name: String,
    pub severity: u8,
    pub message: String,
    pub decision: Option<Decision>,
    pub subject: Option<String>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
}

impl PluginMatch {
    /// A match of `rule`, with its name and severity.
    pub fn new(rule: &(impl PluginRule + ?Sized), message: impl Into<String>) -> Self {
        PluginMatch {
            rule_name: rule.name().to_string(),
            severity: rule.severity(),
            message: message.into(),
            decision: None,
            subject: None,
            tags: Vec::new(),
            metadata: Map::new(),
        }
    }
    /// Overrides the rule's severity for this match (1–10).
    pub fn with_severity(mut self, severity: u8) -> Self {
        self.severity = severity;
        self
    }
    pub fn with_decision(mut self, decision: Option<Decision>) -> Self {
        self.decision = decision;
        self
    }
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
    pub fn with_tags<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tags: I) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }
    pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Why a rule's evaluation failed. The engine isolates it: counted, logged,
/// and the other rules still run. Any `String` or `&str` converts into it,
/// so `Err("bad input".into())` and `?` on string errors work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The rule read a history scope it did not declare.
    UndeclaredScope(String),
    /// The rule read history without declaring a history context.
    NoHistoryContext,
    /// Anything else.
    Failed(String),
}

impl RuleError {
    pub(crate) fn from_ffi(e: FfiRuleError) -> Self {
        match e.kind {
            FfiErrorKind::UndeclaredScope => RuleError::UndeclaredScope(e.message.into_string()),
            FfiErrorKind::NoHistoryContext => RuleError::NoHistoryContext,
            FfiErrorKind::Failed | FfiErrorKind::Panicked => {
                RuleError::Failed(e.message.into_string())
            }
        }
    }

    pub(crate) fn into_ffi(self) -> FfiRuleError {
        let (kind, message) = match self {
            RuleError::UndeclaredScope(s) => (FfiErrorKind::UndeclaredScope, s),
            RuleError::NoHistoryContext => (FfiErrorKind::NoHistoryContext, String::new()),
            RuleError::Failed(m) => (FfiErrorKind::Failed, m),
        };
        FfiRuleError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleError::UndeclaredScope(s) => {
                write!(f, "rule read history scope `{s}` it did not declare")
            }
            RuleError::NoHistoryContext => {
                f.write_str("rule has no history context but read history")
            }
            RuleError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for RuleError {}

impl From<String> for RuleError {
    fn from(s: String) -> Self {
        RuleError::Failed(s)
    }
}

impl From<&str> for RuleError {
    fn from(s: &str) -> Self {
        RuleError::Failed(s.to_string())
    }
}
