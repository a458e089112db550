//! `repeated_route` — to be written (see rules.md).

use sec_audit_core::AuditEvent;

use crate::config::{ConfigError, Params};
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct RepeatedRoute {
    name: String,
}

impl RepeatedRoute {
    pub fn from_params(p: &Params<'_>) -> Result<Self, ConfigError> {
        Ok(RepeatedRoute { name: p.rule().to_string() })
    }
}

impl Rule for RepeatedRoute {
    fn name(&self) -> &str {
        &self.name
    }
    fn severity(&self) -> u8 {
        1
    }
    fn evaluate(&self, _event: &AuditEvent, _ctx: &RuleContext<'_>) -> Result<Option<Match>, RuleError> {
        Ok(None)
    }
}
