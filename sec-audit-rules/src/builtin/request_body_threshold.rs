//! `request_body_threshold` — to be written (see rules.md).

use sec_audit_core::AuditEvent;

use crate::config::{ConfigError, Params};
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct RequestBodyThreshold {
    name: String,
}

impl RequestBodyThreshold {
    pub fn from_params(p: &Params<'_>) -> Result<Self, ConfigError> {
        Ok(RequestBodyThreshold { name: p.rule().to_string() })
    }
}

impl Rule for RequestBodyThreshold {
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
