//! `repeated_client_error` — to be written (see rules.md).

use sec_audit_core::AuditEvent;

use crate::config::{ConfigError, Params};
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct RepeatedClientError {
    name: String,
}

impl RepeatedClientError {
    pub fn from_params(p: &Params<'_>) -> Result<Self, ConfigError> {
        Ok(RepeatedClientError { name: p.rule().to_string() })
    }
}

impl Rule for RepeatedClientError {
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
