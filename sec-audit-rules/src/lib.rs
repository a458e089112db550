//! Detection for sec-audit: the rule contract ([`rule`]), detection state
//! traits and their memory implementations ([`state`]), the scoped history
//! reader ([`history`]), scopes ([`scope`]), the history summary
//! ([`summary`]), the engine ([`engine`]), the eight built-in rules
//! ([`builtin`]) and the pure action-resolution policy ([`policy`]).

pub mod builtin;
pub mod config;
pub mod engine;
pub mod history;
pub mod policy;
pub mod rule;
pub mod scope;
pub mod state;
pub mod summary;

pub use config::{ConfigError, RuleConfig};
pub use engine::{
    Engine, EngineBuilder, EngineError, EngineOptions, Evaluation, EvaluationObserver, RuleOutcome,
    SkipReason,
};
pub use history::{HistoryQuery, HistoryReader};
pub use policy::{ActionKind, ActionPolicy, ActionSpec, Effect, ResolvedAction};
pub use rule::{HistoryContext, Match, Rule, RuleContext, RuleError};
pub use scope::{ScopeDef, ScopeKey, ScopeRegistry};
pub use state::{
    Counters, HistoryRetention, HistoryRow, HistoryStore, MemoryCounters, MemoryHistory,
};
pub use summary::Summary;
