//! What a rule gets per call besides the event: the engine's time, the
//! host's counters, the scoped history reader and the rule's configuration.

use abi_stable::std_types::{RNone, ROption, RResult, RSome, RStr};
use serde_json::{Map, Value};

use crate::event::HistoryRows;
use abi_stable::sabi_types::RRef;

use crate::ffi::{FfiContext, FfiCounters_TO, FfiHistory_TO, FfiQuery};
use crate::rule::RuleError;

/// The per-call context.
pub struct Context<'a> {
    /// Seconds since the epoch, from the engine's clock (tests and replays
    /// drive it).
    pub now: f64,
    /// Fixed-window counters shared with every rule of the host.
    pub counters: Counters<'a>,
    /// The history reader, bound to the current event's scope keys and to
    /// the rule's declared history context.
    pub history: History<'a>,
    /// The rule's own configuration (the `[rules.config]` table).
    pub config: &'a Map<String, Value>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(ffi: &'a FfiContext<'_>, config: &'a Map<String, Value>) -> Self {
        Context {
            now: ffi.now,
            counters: Counters {
                ffi: ffi.counters.sabi_reborrow(),
            },
            history: History {
                ffi: ffi.history.sabi_reborrow(),
            },
            config,
        }
    }
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

fn opt_u64(v: Option<u64>) -> ROption<u64> {
    match v {
        Some(x) => RSome(x),
        None => RNone,
    }
}

/// Fixed-window counters. A TTL is set only when a
/// key is created; a key created at `t` with TTL `w` is gone from `t + w`
/// on. Counter calls never fail: a host whose store cannot answer degrades
/// (an `incr` returns `amount`, a read returns the default).
///
/// Keys are shared with every other rule of the host: prefix yours with the
/// rule name.
pub struct Counters<'a> {
    ffi: FfiCounters_TO<'a, RRef<'a, ()>>,
}

impl Counters<'_> {
    /// Adds `amount` and returns the new value; creates the key (with
    /// `ttl_secs`) when absent or expired.
    pub fn incr(&self, key: &str, amount: i64, ttl_secs: Option<u64>) -> i64 {
        self.ffi
            .incr(RStr::from_str(key), amount, opt_u64(ttl_secs))
    }
    pub fn get_int(&self, key: &str, default: i64) -> i64 {
        self.ffi.get_int(RStr::from_str(key), default)
    }
    pub fn set(&self, key: &str, value: i64, ttl_secs: Option<u64>) {
        self.ffi.set(RStr::from_str(key), value, opt_u64(ttl_secs))
    }
    pub fn delete(&self, key: &str) {
        self.ffi.delete(RStr::from_str(key))
    }
    pub fn expire(&self, key: &str, ttl_secs: u64) {
        self.ffi.expire(RStr::from_str(key), ttl_secs)
    }
}

/// Optional narrowing of a history read; every field is intersected with,
/// or capped by, the rule's declared [`HistoryContext`](crate::HistoryContext).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HistoryQuery<'q> {
    pub event_types: Option<&'q [&'q str]>,
    /// Only rows with `recorded_at > since`.
    pub since: Option<f64>,
    pub limit: Option<usize>,
    pub window_seconds: Option<f64>,
}

/// The scoped history reader.
pub struct History<'a> {
    ffi: FfiHistory_TO<'a, RRef<'a, ()>>,
}

impl History<'_> {
    /// Rows of `scope` for the current event, newest first. Reading a scope
    /// the rule did not declare is an error (return it: the evaluation
    /// fails and is isolated).
    pub fn events(&self, scope: &str, query: &HistoryQuery<'_>) -> Result<HistoryRows, RuleError> {
        let types: Option<Vec<RStr<'_>>> = query
            .event_types
            .map(|t| t.iter().map(|s| RStr::from_str(s)).collect());
        let q = FfiQuery {
            event_types: match &types {
                Some(t) => RSome(t.as_slice().into()),
                None => RNone,
            },
            since: query.since.into(),
            limit: opt_u64(query.limit.map(|l| l as u64)),
            window_seconds: query.window_seconds.into(),
        };
        match self.ffi.events(RStr::from_str(scope), &q) {
            RResult::ROk(rows) => Ok(HistoryRows::new(rows)),
            RResult::RErr(e) => Err(RuleError::from_ffi(e)),
        }
    }

    /// The number of rows [`History::events`] would return.
    pub fn count(&self, scope: &str, query: &HistoryQuery<'_>) -> Result<usize, RuleError> {
        self.events(scope, query).map(|r| r.len())
    }
}
