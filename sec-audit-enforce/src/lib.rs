//! The enforcement runtime of sec-audit: configuration,
//! the runtime builder, the enforcer, the ingress check and egress,
//! enforcement events, the block management API and the configuration
//! check. With the `tower` feature, a layer that puts the ingress check in
//! front of any tower service.

pub mod check;
pub mod config;
pub mod config_checks;
pub mod egress_queue;
pub mod enforcer;
pub mod escalation;
pub mod events;
pub mod failure_coalescer;
pub mod request;
pub mod rules;
pub mod runtime;
pub mod safelist;
pub mod stores;
#[cfg(feature = "tower")]
pub mod tower;

pub use check::{check, Finding, Level};
pub use config::{
    Config, ConfigError, ConfigSource, EscalationConfig, Location, PluginEntry, RuleEntry,
    SafelistConfig,
};
pub use egress_queue::{EgressQueue, EgressQueueStats, QueueFull};
pub use enforcer::{Applied, Enforcer};
pub use escalation::{Escalation, Offense};
pub use events::{AttrKey, AttrValue, EnforcementEvent, EventEmitter, EventType, Sink};
pub use failure_coalescer::{FailureReporter, FailureStats, FAILURE_COUNT_ATTR};
pub use request::{DenyReason, IngressDecision, RequestView};
pub use runtime::{BlockApiError, BuildError, ManualBlock, Runtime, RuntimeBuilder};
pub use safelist::Safelist;
pub use sec_audit_store::{BlockEntry, TrailRow};
pub use stores::Stores;
