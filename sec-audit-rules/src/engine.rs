//! The engine: runs the registered rules over one event (`docs/rules.md`,
//! "How rules run"). Nothing a rule does — an error or a panic — can crash the
//! engine or its caller.

use std::collections::BTreeSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sec_audit_core::log_coalesce::{log_coalesced, Level};
use sec_audit_core::{AuditEvent, Clock, Scrubber, SystemClock};

use crate::config::RuleConfig;
use crate::history::HistoryReader;
use crate::rule::{HistoryContext, Match, Rule, RuleContext, RuleError};
use crate::scope::{ScopeKey, ScopeRegistry};
use crate::state::{Counters, HistoryRetention, HistoryStore, MemoryCounters, MemoryHistory};
use crate::summary::{build_entry_with, SummaryScrub};
use sec_audit_core::history_entry::{HistoryEntry, RowRuleAttrs, RuleAttrs};

/// Event-type prefixes the engine never evaluates: enforcement can never
/// trigger itself.
pub const IGNORED_PREFIXES: [&str; 3] = ["audit.rule.", "audit.enforcement.", "audit.context."];

/// Why the engine did not run a rule on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The ingress pass runs only `safe_for_enforcement` rules.
    NotIngressSafe,
    /// The rule's `event_types` do not include the event's type.
    EventType,
}

/// How one rule's evaluation ended.
#[derive(Debug, Clone, Copy)]
pub enum RuleOutcome<'m> {
    Matched(&'m Match),
    NoMatch,
    /// An error or a panic (its short kind), isolated by the engine.
    Failed(&'static str),
}

/// Watches what the engine does with each rule of each pass (what
/// `sec-audit explain` prints). Called on the evaluating thread, in order:
/// `pass_started`, then per registered rule either `rule_skipped` or
/// `rule_started` followed by `rule_finished`. Every method defaults to
/// nothing; an engine without an observer pays one branch per rule.
pub trait EvaluationObserver: Send + Sync {
    /// A pass over `event` begins (`enforcement_only`: the ingress pass).
    /// Not called for the event types the engine ignores.
    fn pass_started(&self, _event: &AuditEvent, _enforcement_only: bool) {}
    fn rule_skipped(&self, _rule: &str, _reason: SkipReason) {}
    /// The rule is about to run: the state reads that follow are its own.
    fn rule_started(&self, _rule: &str) {}
    fn rule_finished(&self, _rule: &str, _outcome: RuleOutcome<'_>) {}
}

/// The type of the synthetic event the ingress check builds.
pub const INGRESS_EVENT_TYPE: &str = "audit.http.request.pre";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("rule name must be non-empty")]
    EmptyRuleName,
    #[error("rule `{0}` is registered twice")]
    DuplicateRule(String),
    #[error("rule `{rule}`: severity {severity} outside 1-10")]
    BadSeverity { rule: String, severity: u8 },
    #[error("rule `{rule}`: history context: {reason}")]
    BadHistoryContext { rule: String, reason: String },
    #[error("building the event summary or scope keys failed")]
    SummaryFailed,
    #[error("rule `{rule}` failed on the ingress pass ({kind})")]
    RuleFailed { rule: String, kind: &'static str },
}

impl EngineError {
    /// A short, stable name of the error kind, safe to put in an event.
    pub fn kind(&self) -> &'static str {
        match self {
            EngineError::EmptyRuleName => "empty_rule_name",
            EngineError::DuplicateRule(_) => "duplicate_rule",
            EngineError::BadSeverity { .. } => "bad_severity",
            EngineError::BadHistoryContext { .. } => "bad_history_context",
            EngineError::SummaryFailed => "summary_failed",
            EngineError::RuleFailed { .. } => "rule_failed",
        }
    }
}

/// What one pass found ([`Engine::evaluate_scoped`]).
#[derive(Debug, Default)]
pub struct Evaluation {
    pub matches: Vec<Match>,
    /// The event's scope keys, in precedence order, as the pass extracted
    /// them (history and counters were keyed by these).
    pub keys: Vec<ScopeKey>,
}

/// Engine behavior switches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineOptions {
    /// On a summary failure return no matches; on the ingress pass, let a
    /// rule failure pass. Default true.
    pub fail_open: bool,
    /// History rows kept per scope key. Default 100.
    pub max_events_per_key: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            fail_open: true,
            max_events_per_key: 100,
        }
    }
}

struct Registered {
    rule: Arc<dyn Rule>,
    name: String,
    /// `name`, shared by the rows that keep this rule's attributes.
    shared_name: Arc<str>,
    event_types: Vec<String>,
    /// `event_types` interned, when every one of them is a contract type
    /// (then an event's type is matched by its id, not by text).
    event_type_ids: Option<Vec<u16>>,
    safe_for_enforcement: bool,
    config: RuleConfig,
}

impl Registered {
    /// Whether the rule evaluates events of `event`'s type.
    fn takes(&self, event: &AuditEvent, event_type: &str) -> bool {
        if self.event_types.is_empty() {
            return true;
        }
        match (&self.event_type_ids, event.event_type_id()) {
            // Both interned: equal ids are equal texts.
            (Some(ids), Some(id)) => ids.contains(&id),
            // An interned rule list and an event type outside the contract.
            (Some(_), None) => false,
            (None, _) => self.event_types.iter().any(|t| t == event_type),
        }
    }
}

/// Builds an [`Engine`]; memory stores and the system clock by default.
pub struct EngineBuilder {
    clock: Arc<dyn Clock>,
    scopes: ScopeRegistry,
    counters: Option<Arc<dyn Counters>>,
    history: Option<Arc<dyn HistoryStore>>,
    scrubber: Scrubber,
    options: EngineOptions,
    rules: Vec<(Arc<dyn Rule>, RuleConfig)>,
    observer: Option<Arc<dyn EvaluationObserver>>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        EngineBuilder {
            clock: Arc::new(SystemClock),
            scopes: ScopeRegistry::builtin(),
            counters: None,
            history: None,
            scrubber: Scrubber::default(),
            options: EngineOptions::default(),
            rules: Vec::new(),
            observer: None,
        }
    }
}

impl EngineBuilder {
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    pub fn scopes(mut self, scopes: ScopeRegistry) -> Self {
        self.scopes = scopes;
        self
    }
    pub fn counters(mut self, counters: Arc<dyn Counters>) -> Self {
        self.counters = Some(counters);
        self
    }
    pub fn history(mut self, history: Arc<dyn HistoryStore>) -> Self {
        self.history = Some(history);
        self
    }
    pub fn scrubber(mut self, scrubber: Scrubber) -> Self {
        self.scrubber = scrubber;
        self
    }
    /// Watches every pass (see [`EvaluationObserver`]).
    pub fn observer(mut self, observer: Arc<dyn EvaluationObserver>) -> Self {
        self.observer = Some(observer);
        self
    }
    pub fn options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }
    /// Registers a rule (evaluated in registration order).
    pub fn rule(self, rule: Arc<dyn Rule>) -> Self {
        self.rule_with_config(rule, RuleConfig::new())
    }
    /// Registers a rule with the configuration table its context exposes.
    pub fn rule_with_config(mut self, rule: Arc<dyn Rule>, config: RuleConfig) -> Self {
        self.rules.push((rule, config));
        self
    }

    pub fn build(self) -> Result<Engine, EngineError> {
        let mut names = BTreeSet::new();
        let mut registered = Vec::with_capacity(self.rules.len());
        let mut retention: Option<HistoryRetention> = None;
        for (rule, config) in self.rules {
            let name = rule.name().to_string();
            if name.is_empty() {
                return Err(EngineError::EmptyRuleName);
            }
            if !names.insert(name.clone()) {
                return Err(EngineError::DuplicateRule(name));
            }
            let severity = rule.severity();
            if !(1..=10).contains(&severity) {
                return Err(EngineError::BadSeverity {
                    rule: name,
                    severity,
                });
            }
            if let Some(ctx) = rule.history_context() {
                let bad = |reason: String| EngineError::BadHistoryContext {
                    rule: name.clone(),
                    reason,
                };
                if !(ctx.window_seconds > 0.0 && ctx.window_seconds.is_finite()) {
                    return Err(bad("window_seconds must be > 0".into()));
                }
                if ctx.max_events == 0 {
                    return Err(bad("max_events must be > 0".into()));
                }
                if ctx.max_events > HistoryContext::MAX_EVENTS_CEILING {
                    return Err(bad(format!(
                        "max_events {} is above the ceiling of {} rows per history key",
                        ctx.max_events,
                        HistoryContext::MAX_EVENTS_CEILING
                    )));
                }
                if let Some(s) = ctx.scopes.iter().find(|s| self.scopes.get(s).is_none()) {
                    return Err(bad(format!("unknown scope `{s}`")));
                }
                let r = retention.get_or_insert(HistoryRetention {
                    window_seconds: 0.0,
                    max_events_per_key: self.options.max_events_per_key,
                });
                r.window_seconds = r.window_seconds.max(ctx.window_seconds);
                // A rule that asks for more rows than the default keeps must
                // get them, or a high threshold could never be reached.
                // Never above the ceiling, whatever the options say.
                r.max_events_per_key = r
                    .max_events_per_key
                    .max(ctx.max_events)
                    .min(HistoryContext::MAX_EVENTS_CEILING);
            }
            registered.push(Registered {
                event_types: rule.event_types().to_vec(),
                event_type_ids: rule
                    .event_types()
                    .iter()
                    .map(|t| sec_audit_core::event::event_type_id(t))
                    .collect(),
                safe_for_enforcement: rule.safe_for_enforcement(),
                rule,
                shared_name: Arc::from(name.as_str()),
                name,
                config,
            });
        }
        let clock = self.clock;
        let ingress_rules = registered
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.safe_for_enforcement
                    && (r.event_types.is_empty()
                        || r.event_types.iter().any(|t| t == INGRESS_EVENT_TYPE))
            })
            .map(|(i, _)| i)
            .collect();
        Ok(Engine {
            ingress_rules,
            counters: self
                .counters
                .unwrap_or_else(|| Arc::new(MemoryCounters::new(Arc::clone(&clock)))),
            history: self
                .history
                .unwrap_or_else(|| Arc::new(MemoryHistory::new())),
            clock,
            scopes: Arc::new(self.scopes),
            summary_scrub: SummaryScrub::new(&self.scrubber),
            scrubber: self.scrubber,
            options: self.options,
            retention,
            rules: registered,
            rule_failures: AtomicU64::new(0),
            observer: self.observer,
        })
    }
}

/// Runs rules over events. Cheap to share: `evaluate` takes `&self`.
pub struct Engine {
    rules: Vec<Registered>,
    /// Indexes of the rules that run on a synthetic ingress event
    /// (`safe_for_enforcement`, and `audit.http.request.pre` among their
    /// event types).
    ingress_rules: Vec<usize>,
    scopes: Arc<ScopeRegistry>,
    counters: Arc<dyn Counters>,
    history: Arc<dyn HistoryStore>,
    clock: Arc<dyn Clock>,
    scrubber: Scrubber,
    /// The summary keys `scrubber` redacts.
    summary_scrub: SummaryScrub,
    options: EngineOptions,
    /// `None` when no rule reads history: then nothing is appended.
    retention: Option<HistoryRetention>,
    rule_failures: AtomicU64,
    observer: Option<Arc<dyn EvaluationObserver>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rule_names().collect::<Vec<_>>())
            .field("options", &self.options)
            .finish()
    }
}

impl Engine {
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.name.as_str())
    }
    pub fn rules(&self) -> impl Iterator<Item = &Arc<dyn Rule>> {
        self.rules.iter().map(|r| &r.rule)
    }
    pub fn scopes(&self) -> &Arc<ScopeRegistry> {
        &self.scopes
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    pub fn counters(&self) -> &Arc<dyn Counters> {
        &self.counters
    }
    pub fn history(&self) -> &Arc<dyn HistoryStore> {
        &self.history
    }
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }
    /// How many rule evaluations failed (errors and panics) so far.
    pub fn rule_failures(&self) -> u64 {
        self.rule_failures.load(Ordering::Relaxed)
    }
    /// Whether any registered rule runs on the ingress pass.
    pub fn has_ingress_rules(&self) -> bool {
        self.rules.iter().any(|r| r.safe_for_enforcement)
    }

    /// Whether the ingress pass over a request for `path` is known to end
    /// with no match and no failure, so that the caller may skip it (and
    /// building its synthetic `audit.http.request.pre` event): every rule
    /// that would run on that event promises, through
    /// [`Rule::may_match_path`], that it cannot match this path, and
    /// building the scope keys cannot fail the pass (no custom scope
    /// extractor, or fail-open).
    pub fn ingress_pass_is_noop(&self, path: &str) -> bool {
        if self.scopes.has_custom() && !self.options.fail_open {
            return false;
        }
        self.ingress_rules.iter().all(|&i| {
            let rule = &self.rules[i].rule;
            // A panicking pre-check promises nothing: the pass runs and
            // isolates the rule as usual.
            matches!(
                catch_unwind(AssertUnwindSafe(|| rule.may_match_path(path))),
                Ok(false)
            )
        })
    }

    /// Evaluates every applicable rule on `event`. With `enforcement_only`,
    /// only `safe_for_enforcement` rules run and nothing is appended to
    /// history.
    pub fn evaluate(
        &self,
        event: &AuditEvent,
        enforcement_only: bool,
    ) -> Result<Vec<Match>, EngineError> {
        self.evaluate_scoped(event, enforcement_only)
            .map(|e| e.matches)
    }

    /// [`Engine::evaluate`], also handing over the event's scope keys the
    /// pass extracted (the subject the matches' actions apply to), so the
    /// caller need not extract them again. The keys are empty when the
    /// pass ends early (an ignored event type, a failed extraction under
    /// `fail_open`).
    pub fn evaluate_scoped(
        &self,
        event: &AuditEvent,
        enforcement_only: bool,
    ) -> Result<Evaluation, EngineError> {
        let event_type = event.event_type();
        if IGNORED_PREFIXES.iter().any(|p| event_type.starts_with(p)) {
            return Ok(Evaluation::default());
        }
        let now = self.clock.now();
        let record = !enforcement_only && self.retention.is_some();
        let prepared = catch_unwind(AssertUnwindSafe(|| {
            let keys = self.scopes.extract(event);
            let summary =
                record.then(|| build_entry_with(event, &self.scrubber, &self.summary_scrub));
            (keys, summary)
        }));
        let (keys, summary) = match prepared {
            Ok(p) => p,
            Err(_) => {
                log_coalesced(
                    Level::Error,
                    "building the event summary or scope keys panicked",
                    "panic",
                );
                return if self.options.fail_open {
                    Ok(Evaluation::default())
                } else {
                    Err(EngineError::SummaryFailed)
                };
            }
        };

        let observer = self.observer.as_deref();
        if let Some(o) = observer {
            o.pass_started(event, enforcement_only);
        }
        let mut matches = Vec::new();
        let mut rule_attrs: Vec<(Arc<str>, RuleAttrs)> = Vec::new();
        for r in &self.rules {
            if enforcement_only && !r.safe_for_enforcement {
                if let Some(o) = observer {
                    o.rule_skipped(&r.name, SkipReason::NotIngressSafe);
                }
                continue;
            }
            if !r.takes(event, event_type) {
                if let Some(o) = observer {
                    o.rule_skipped(&r.name, SkipReason::EventType);
                }
                continue;
            }
            if let Some(o) = observer {
                o.rule_started(&r.name);
            }
            let ctx = RuleContext {
                now,
                counters: self.counters.as_ref(),
                history: HistoryReader::new(
                    self.history.as_ref(),
                    &keys,
                    r.rule.history_context(),
                    now,
                ),
                config: &r.config,
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| r.rule.evaluate(event, &ctx)))
                .unwrap_or(Err(RuleError::Panicked))
                .and_then(|m| match m {
                    Some(m) => m.validate(&r.name).map(|()| Some(m)),
                    None => Ok(None),
                });
            if let Some(o) = observer {
                o.rule_finished(
                    &r.name,
                    match &outcome {
                        Ok(Some(m)) => RuleOutcome::Matched(m),
                        Ok(None) => RuleOutcome::NoMatch,
                        Err(e) => RuleOutcome::Failed(e.kind()),
                    },
                );
            }
            match outcome {
                Ok(Some(m)) => matches.push(m),
                Ok(None) => {}
                Err(e) => {
                    self.rule_failures.fetch_add(1, Ordering::Relaxed);
                    // Per event for a broken rule: coalesced, rule and kind
                    // only (a rule's message may carry event data).
                    log_coalesced(
                        Level::Warn,
                        "rule evaluation failed; isolated",
                        &format!("{}: {}", r.name, e.kind()),
                    );
                    if enforcement_only && !self.options.fail_open {
                        return Err(EngineError::RuleFailed {
                            rule: r.name.clone(),
                            kind: e.kind(),
                        });
                    }
                }
            }
            if record {
                match catch_unwind(AssertUnwindSafe(|| r.rule.history_attributes(event, &ctx))) {
                    Ok(Ok(Some(attrs))) => {
                        rule_attrs.push((Arc::clone(&r.shared_name), RuleAttrs::from_map(attrs)));
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => {
                        log_coalesced(
                            Level::Warn,
                            "history_attributes failed; ignored",
                            &format!("{}: {}", r.name, e.kind()),
                        );
                    }
                    Err(_) => {
                        log_coalesced(
                            Level::Warn,
                            "history_attributes panicked; ignored",
                            &format!("{}: panic", r.name),
                        );
                    }
                }
            }
        }

        if let (Some(mut summary), Some(retention)) = (summary, self.retention.as_ref()) {
            if !keys.is_empty() {
                self.append(&mut summary, rule_attrs, now, &keys, retention);
            }
        }
        Ok(Evaluation { matches, keys })
    }

    fn append(
        &self,
        summary: &mut HistoryEntry,
        rule_attrs: Vec<(Arc<str>, RuleAttrs)>,
        now: f64,
        keys: &[ScopeKey],
        retention: &HistoryRetention,
    ) {
        summary.set_recorded_at(now);
        if !rule_attrs.is_empty() {
            summary.set_rule_attrs(RowRuleAttrs::from_rules(rule_attrs));
        }
        let row = Arc::new(std::mem::take(summary));
        self.history.append(keys, now, row, retention);
    }
}
