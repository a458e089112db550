//! `suspicious_proxy_header` — to be written (see rules.md).

use sec_audit_core::AuditEvent;

use crate::config::{ConfigError, Params};
use crate::rule::{Match, Rule, RuleContext, RuleError};

#[derive(Debug, Clone)]
pub struct SuspiciousProxyHeader {
    name: String,
}

impl SuspiciousProxyHeader {
    pub fn from_params(p: &Params<'_>) -> Result<Self, ConfigError> {
        Ok(SuspiciousProxyHeader { name: p.rule().to_string() })
    }
}

impl Rule for SuspiciousProxyHeader {
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
