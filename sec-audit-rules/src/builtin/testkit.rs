//! Test helpers for built-in rules: an engine over memory stores with a
//! settable clock.

use std::sync::Arc;

use sec_audit_core::{AuditEvent, ManualClock};
use serde_json::Value;

use crate::engine::Engine;
use crate::rule::Match;

pub struct Kit {
    pub clock: Arc<ManualClock>,
    pub engine: Engine,
}

impl Kit {
    /// An engine with the built-ins described by `tables`, at t = 1 000 000 s.
    pub fn new(tables: &[Value]) -> Self {
        let clock = Arc::new(ManualClock::at_secs(1_000_000.0));
        let mut b = Engine::builder().clock(clock.clone());
        for t in tables {
            let table = t.as_object().cloned().expect("test table is an object");
            b = b.rule(super::build(&table).expect("test rule builds"));
        }
        Kit {
            clock,
            engine: b.build().expect("test engine builds"),
        }
    }

    pub fn event(v: &Value) -> AuditEvent {
        AuditEvent::from_attributes(v.as_object().cloned().expect("test event is an object"))
            .expect("test event is valid")
    }

    /// Egress evaluation.
    pub fn eval(&self, v: &Value) -> Vec<Match> {
        self.engine
            .evaluate(&Self::event(v), false)
            .expect("fail-open engine never errors")
    }

    /// Ingress (enforcement-only) evaluation.
    pub fn ingress(&self, v: &Value) -> Vec<Match> {
        self.engine
            .evaluate(&Self::event(v), true)
            .expect("fail-open engine never errors")
    }
}
