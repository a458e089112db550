//! A plugin rule seen as a native [`Rule`]: the adapter calls across the
//! boundary with borrowed views of the event, the counters and the history
//! reader, and converts what comes back. Nothing is serialized per call
//! except what a rule explicitly asks for (an object or array field, the
//! metadata of a match, history attributes).

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RCowStr, ROption, RResult, RStr, RString};
use sec_audit_core::event::lookup;
use sec_audit_core::AuditEvent;
use sec_audit_plugin_sdk::ffi::{
    FfiAccessor, FfiContext, FfiCounters, FfiCounters_TO, FfiDecision, FfiErrorKind, FfiEvent,
    FfiEvent_TO, FfiHistory, FfiHistory_TO, FfiMatch, FfiQuery, FfiRows, FfiRowsBox, FfiRows_TO,
    FfiRuleBox, FfiRuleError, FfiValue,
};
use sec_audit_plugin_sdk::{map_from_ffi, value_to_ffi};
use sec_audit_rules::{
    ActionKind, Counters, HistoryContext, HistoryQuery, HistoryReader, HistoryRow, Match, Rule,
    RuleContext, RuleError,
};
use serde_json::{Map, Value};

fn rcow(c: Cow<'_, str>) -> RCowStr<'_> {
    match c {
        Cow::Borrowed(s) => RCowStr::Borrowed(RStr::from_str(s)),
        Cow::Owned(s) => RCowStr::Owned(RString::from(s)),
    }
}

/// The host's event, as a plugin reads it.
struct HostEvent<'e>(&'e AuditEvent);

impl FfiEvent for HostEvent<'_> {
    fn event_type(&self) -> RStr<'_> {
        RStr::from_str(self.0.event_type())
    }
    fn text(&self, key: RStr<'_>) -> RCowStr<'_> {
        rcow(self.0.text(key.as_str()))
    }
    fn field(&self, key: RStr<'_>) -> FfiValue<'_> {
        value_to_ffi(self.0.field(key.as_str()))
    }
    fn accessor(&self, which: FfiAccessor) -> RCowStr<'_> {
        let e = self.0;
        rcow(match which {
            FfiAccessor::RequestId => e.request_id(),
            FfiAccessor::Srcip => e.srcip(),
            FfiAccessor::UserId => e.user_id(),
            FfiAccessor::SessionId => e.session_id(),
            FfiAccessor::Method => e.method(),
            FfiAccessor::Path => e.path(),
            FfiAccessor::Url => e.url(),
            FfiAccessor::RoutePattern => e.route_pattern(),
            FfiAccessor::RouteName => e.route_name(),
        })
    }
    fn status_code(&self) -> i64 {
        self.0.status_code()
    }
    fn body(&self) -> FfiValue<'_> {
        match self.0.body() {
            Some(m) => FfiValue::Json(serde_json::to_string(m).unwrap_or_default().into()),
            None => FfiValue::Absent,
        }
    }
    fn body_field(&self, key: RStr<'_>) -> FfiValue<'_> {
        value_to_ffi(self.0.body().and_then(|b| lookup(b, key.as_str())))
    }
}

/// The host's counters. A panicking store degrades like an unreachable one
/// (detection-state calls never fail) instead of unwinding
/// through the plugin.
struct HostCounters<'c>(&'c dyn Counters);

impl HostCounters<'_> {
    fn guard<T>(&self, op: &'static str, fallback: T, f: impl FnOnce() -> T) -> T {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
            tracing::warn!(op, "counter store panicked during a plugin call; degraded");
            fallback
        })
    }
}

impl FfiCounters for HostCounters<'_> {
    fn incr(&self, key: RStr<'_>, amount: i64, ttl_secs: ROption<u64>) -> i64 {
        self.guard("incr", amount, || {
            self.0.incr(key.as_str(), amount, ttl_secs.into_option())
        })
    }
    fn get_int(&self, key: RStr<'_>, default: i64) -> i64 {
        self.guard("get_int", default, || self.0.get_int(key.as_str(), default))
    }
    fn set(&self, key: RStr<'_>, value: i64, ttl_secs: ROption<u64>) {
        self.guard("set", (), || {
            self.0.set(key.as_str(), value, ttl_secs.into_option())
        })
    }
    fn delete(&self, key: RStr<'_>) {
        self.guard("delete", (), || self.0.delete(key.as_str()))
    }
    fn expire(&self, key: RStr<'_>, ttl_secs: u64) {
        self.guard("expire", (), || self.0.expire(key.as_str(), ttl_secs))
    }
}

/// History rows handed to a plugin (shared, not copied).
struct HostRows(Vec<HistoryRow>);

impl HostRows {
    fn row(&self, i: u64) -> Option<&HistoryRow> {
        usize::try_from(i).ok().and_then(|i| self.0.get(i))
    }
}

impl FfiRows for HostRows {
    fn row_count(&self) -> u64 {
        self.0.len() as u64
    }
    fn text(&self, row: u64, key: RStr<'_>) -> RCowStr<'_> {
        rcow(sec_audit_core::event::value_text(
            self.row(row).and_then(|r| r.lookup(key.as_str())),
        ))
    }
    fn field(&self, row: u64, key: RStr<'_>) -> FfiValue<'_> {
        value_to_ffi(self.row(row).and_then(|r| r.lookup(key.as_str())))
    }
}

fn rule_error_to_ffi(e: RuleError) -> FfiRuleError {
    let (kind, message) = match e {
        RuleError::UndeclaredScope(s) => (FfiErrorKind::UndeclaredScope, s),
        RuleError::NoHistoryContext => (FfiErrorKind::NoHistoryContext, String::new()),
        other => (FfiErrorKind::Failed, other.to_string()),
    };
    FfiRuleError {
        kind,
        message: message.into(),
    }
}

/// The rule's scoped history reader.
struct HostHistory<'h>(HistoryReader<'h>);

impl FfiHistory for HostHistory<'_> {
    fn events(&self, scope: RStr<'_>, query: &FfiQuery<'_>) -> RResult<FfiRowsBox, FfiRuleError> {
        let types: Option<Vec<String>> = query
            .event_types
            .as_ref()
            .map(|t| t.iter().map(|s| s.as_str().to_string()).collect())
            .into_option();
        let q = HistoryQuery {
            event_types: types.as_deref(),
            since: query.since.into_option(),
            limit: query
                .limit
                .into_option()
                .map(|l| usize::try_from(l).unwrap_or(usize::MAX)),
            window_seconds: query.window_seconds.into_option(),
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| self.0.events(scope.as_str(), &q)))
            .unwrap_or_else(|_| Err(RuleError::Failed("history store panicked".into())));
        match outcome {
            Ok(rows) => RResult::ROk(FfiRows_TO::from_ptr(RBox::new(HostRows(rows)), TD_Opaque)),
            Err(e) => RResult::RErr(rule_error_to_ffi(e)),
        }
    }
}

/// A plugin rule registered with the engine like any native rule.
pub(crate) struct PluginRuleAdapter {
    pub(crate) name: String,
    pub(crate) severity: u8,
    pub(crate) event_types: Vec<String>,
    pub(crate) safe_for_enforcement: bool,
    pub(crate) history: Option<HistoryContext>,
    pub(crate) ffi: FfiRuleBox,
    pub(crate) path: Arc<Path>,
}

impl std::fmt::Debug for PluginRuleAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRule")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn decision(d: FfiDecision) -> ActionKind {
    match d {
        FfiDecision::Observe => ActionKind::Observe,
        FfiDecision::Alert => ActionKind::Alert,
        FfiDecision::TempBlock => ActionKind::TempBlock,
        FfiDecision::PersistBlock => ActionKind::PersistBlock,
        FfiDecision::Block => ActionKind::Block,
    }
}

impl PluginRuleAdapter {
    /// Calls `f` with the borrowed views of one call.
    fn call<T>(&self, ctx: &RuleContext<'_>, f: impl FnOnce(&FfiContext<'_>) -> T) -> T {
        let counters = HostCounters(ctx.counters);
        let history = HostHistory(ctx.history);
        let fctx = FfiContext {
            now: ctx.now,
            counters: FfiCounters_TO::from_ptr(&counters, TD_Opaque),
            history: FfiHistory_TO::from_ptr(&history, TD_Opaque),
        };
        f(&fctx)
    }

    fn error(&self, e: FfiRuleError) -> RuleError {
        match e.kind {
            FfiErrorKind::Panicked => {
                tracing::warn!(
                    rule = %self.name,
                    plugin = %self.path.display(),
                    panic = %e.message,
                    "plugin rule panicked; isolated"
                );
                RuleError::Panicked
            }
            FfiErrorKind::UndeclaredScope => RuleError::UndeclaredScope(e.message.into_string()),
            FfiErrorKind::NoHistoryContext => RuleError::NoHistoryContext,
            FfiErrorKind::Failed => RuleError::Failed(e.message.into_string()),
        }
    }

    fn to_match(&self, m: FfiMatch, event: &AuditEvent, now: f64) -> Result<Match, RuleError> {
        let mut out = Match::new(self, event, now, m.message.into_string());
        if let ROption::RSome(name) = m.rule_name {
            out.rule_name = name.into_string();
        }
        out.severity = m.severity;
        out.decision = m.decision.into_option().map(decision);
        out.subject = m.subject.into_option().map(RString::into_string);
        out.tags = m.tags.into_iter().map(RString::into_string).collect();
        if !m.metadata.is_empty() {
            out.metadata = Arc::new(map_from_ffi(m.metadata));
        }
        Ok(out)
    }
}

impl Rule for PluginRuleAdapter {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> u8 {
        self.severity
    }
    fn event_types(&self) -> &[String] {
        &self.event_types
    }
    fn safe_for_enforcement(&self) -> bool {
        self.safe_for_enforcement
    }
    fn history_context(&self) -> Option<&HistoryContext> {
        self.history.as_ref()
    }

    fn evaluate(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Match>, RuleError> {
        let host_event = HostEvent(event);
        let outcome = self.call(ctx, |fctx| {
            self.ffi
                .evaluate(FfiEvent_TO::from_ptr(&host_event, TD_Opaque), fctx)
        });
        match outcome {
            RResult::ROk(ROption::RSome(m)) => self.to_match(m, event, ctx.now).map(Some),
            RResult::ROk(ROption::RNone) => Ok(None),
            RResult::RErr(e) => Err(self.error(e)),
        }
    }

    fn history_attributes(
        &self,
        event: &AuditEvent,
        ctx: &RuleContext<'_>,
    ) -> Result<Option<Map<String, Value>>, RuleError> {
        let host_event = HostEvent(event);
        let outcome = self.call(ctx, |fctx| {
            self.ffi
                .history_attributes(FfiEvent_TO::from_ptr(&host_event, TD_Opaque), fctx)
        });
        match outcome {
            RResult::ROk(ROption::RSome(entries)) => Ok(Some(map_from_ffi(entries))),
            RResult::ROk(ROption::RNone) => Ok(None),
            RResult::RErr(e) => Err(self.error(e)),
        }
    }
}
