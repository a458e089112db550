//! The enforcer: applies a resolved action: alert records, or one block per scope.

use std::sync::Arc;

use sec_audit_core::{Clock, Scrubber};
use sec_audit_rules::{ActionPolicy, Effect, Match, ResolvedAction, ScopeKey, ScopeRegistry};
use sec_audit_store::{BlockEntry, BlockStore, IpRange, NewBlock, StoreError};
use serde_json::Value;

use crate::escalation::{self, Escalation};
use crate::events::{keys, rfc3339, EnforcementEvent, EventEmitter, EventType};
use crate::failure_coalescer::FailureReporter;
use crate::safelist::Safelist;

/// What applying one match did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub action: ResolvedAction,
    /// The blocks written.
    pub blocks: Vec<BlockEntry>,
    /// Block writes that failed (already logged).
    pub errors: Vec<StoreError>,
    /// Targets left unblocked because they are safelisted (each emitted as
    /// an `alert` with `enforcement.safelisted = true`).
    pub safelisted: Vec<ScopeKey>,
    /// Status code and message a request should be denied with when the
    /// action is blocking.
    pub status_code: u16,
    pub message: String,
}

impl Applied {
    /// Whether a request should be denied for this match: a blocking
    /// action, unless every target it had was safelisted.
    pub fn is_blocking(&self) -> bool {
        self.action.effect.is_block()
            && !(self.blocks.is_empty() && self.errors.is_empty() && !self.safelisted.is_empty())
    }

    /// The `Retry-After` seconds of a deny by this match at `now`: the
    /// longest time left of the temporary blocks it wrote (all of them
    /// keep the request's subject out), or the action's TTL when it wrote
    /// none (a failed write, no scope to block); `None` when a block is
    /// permanent.
    pub fn retry_after(&self, now: f64) -> Option<u64> {
        if self.action.effect != Effect::TempBlock || self.blocks.iter().any(|b| b.is_permanent()) {
            return None;
        }
        self.blocks
            .iter()
            .filter_map(|b| b.expires_at)
            .map(|at| crate::request::seconds_left(at, now))
            .max()
            .or(self.action.ttl.map(|t| t.max(1)))
    }
}

/// The block metadata key naming the address whose covering range a rule
/// blocked (`rule_actions` `range_prefix_v4` / `range_prefix_v6`).
pub const RANGE_ADDRESS_KEY: &str = "range_address";

/// With a range prefix for the address's family, an ip block of `scope`
/// blocks the covering range instead: the range's key and the address.
fn covering_range(scope: &ScopeKey, action: &ResolvedAction) -> Option<(ScopeKey, String)> {
    if scope.scope() != sec_audit_store::ranges::IP_SCOPE {
        return None;
    }
    let ip: std::net::IpAddr = scope.value().parse().ok()?;
    let len = match ip {
        std::net::IpAddr::V4(_) => action.range_prefix_v4,
        std::net::IpAddr::V6(_) => action.range_prefix_v6,
    }?;
    // A prefix of 32 / 128 is the address itself: `covering` is None.
    let range = IpRange::covering(ip, len)?;
    Some((range.scope_key(), scope.value().to_string()))
}

/// Turns matches into actions and actions into blocks and events.
pub struct Enforcer {
    blocks: Arc<dyn BlockStore>,
    policy: ActionPolicy,
    scopes: Arc<ScopeRegistry>,
    emitter: Arc<EventEmitter>,
    scrubber: Scrubber,
    clock: Arc<dyn Clock>,
    default_status: u16,
    default_message: String,
    failures: Arc<FailureReporter>,
    safelist: Arc<Safelist>,
    escalation: Option<Arc<Escalation>>,
}

impl Enforcer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        blocks: Arc<dyn BlockStore>,
        policy: ActionPolicy,
        scopes: Arc<ScopeRegistry>,
        emitter: Arc<EventEmitter>,
        scrubber: Scrubber,
        clock: Arc<dyn Clock>,
        default_status: u16,
        default_message: String,
    ) -> Self {
        let failures = Arc::new(FailureReporter::new(
            Arc::clone(&emitter),
            Arc::clone(&clock),
        ));
        Enforcer {
            blocks,
            policy,
            scopes,
            emitter,
            scrubber,
            clock,
            default_status,
            default_message,
            failures,
            safelist: Arc::new(Safelist::default()),
            escalation: None,
        }
    }

    /// Never blocks a safelisted target: its match is an alert with
    /// `enforcement.safelisted = true` instead.
    pub fn with_safelist(mut self, safelist: Arc<Safelist>) -> Self {
        self.safelist = safelist;
        self
    }

    /// Escalates repeated temporary blocks of a scope.
    pub fn with_escalation(mut self, escalation: Option<Arc<Escalation>>) -> Self {
        self.escalation = escalation;
        self
    }

    pub fn safelist(&self) -> &Safelist {
        &self.safelist
    }

    pub fn escalation(&self) -> Option<&Escalation> {
        self.escalation.as_deref()
    }

    /// Reports failed block writes through `failures` (the runtime's, so
    /// its records are coalesced and counted with the others).
    pub fn with_failures(mut self, failures: Arc<FailureReporter>) -> Self {
        self.failures = failures;
        self
    }

    /// Where failed block writes are reported.
    pub fn failures(&self) -> &Arc<FailureReporter> {
        &self.failures
    }

    /// The scrubber of the records this enforcer emits.
    pub fn scrubber(&self) -> &Scrubber {
        &self.scrubber
    }

    pub fn policy(&self) -> &ActionPolicy {
        &self.policy
    }

    /// Resolves and applies `m`; `subject` is the event's unscrubbed scope
    /// keys.
    pub fn apply(&self, m: &Match, subject: &[ScopeKey]) -> Applied {
        let action = self.policy.resolve(m);
        self.apply_action(m, action, subject)
    }

    /// Applies an already resolved action.
    pub fn apply_action(&self, m: &Match, action: ResolvedAction, subject: &[ScopeKey]) -> Applied {
        let status_code = action.status_code.unwrap_or(self.default_status);
        let message = action
            .message
            .clone()
            .unwrap_or_else(|| self.default_message.clone());
        let mut applied = Applied {
            action,
            blocks: Vec::new(),
            errors: Vec::new(),
            safelisted: Vec::new(),
            status_code,
            message,
        };
        match applied.action.effect {
            Effect::Observe => {}
            Effect::Alert => self.emitter.emit(self.alert(m)),
            Effect::TempBlock | Effect::PermanentBlock => {
                let targets = self.scopes.block_scopes(subject, &applied.action.scopes);
                if targets.is_empty() {
                    tracing::debug!(rule = %m.rule_name, "blocking action but the event has none of its scopes");
                }
                let mut metadata = (*m.metadata).clone();
                self.scrubber.scrub_map(&mut metadata);
                for scope in targets {
                    if self.safelist.contains(scope) {
                        self.emitter.emit(
                            self.alert(m)
                                .attr(keys::SCOPE_TYPE, scope.scope())
                                .attr(keys::SCOPE_VALUE, scope.value())
                                .attr(keys::SAFELISTED, true),
                        );
                        applied.safelisted.push(scope.clone());
                        continue;
                    }
                    let (scope, metadata) = match covering_range(scope, &applied.action) {
                        Some((range, ip)) => {
                            let mut md = metadata.clone();
                            md.insert(RANGE_ADDRESS_KEY.into(), Value::String(ip));
                            (range, md)
                        }
                        None => (scope.clone(), metadata.clone()),
                    };
                    let mut ttl = applied
                        .action
                        .ttl
                        .filter(|_| applied.action.effect == Effect::TempBlock);
                    let mut offense = None;
                    if let (Some(esc), Some(base)) = (&self.escalation, ttl) {
                        let blocked = matches!(self.blocks.get_active(&scope), Ok(Some(_)));
                        let o = esc.offend(&scope, base, blocked);
                        ttl = match o.ttl {
                            Some(t) => Some(t),
                            None if escalation::permanent_allowed(
                                &self.policy,
                                &m.rule_name,
                                &scope,
                            ) =>
                            {
                                None
                            }
                            None => Some(esc.ttl(base, o.count)),
                        };
                        offense = Some(o.count);
                    }
                    let new = NewBlock {
                        scope,
                        reason: m.message.clone(),
                        rule_name: m.rule_name.clone(),
                        status_code: applied.status_code,
                        message: applied.message.clone(),
                        ttl,
                        metadata,
                    };
                    match self.write_block_as(&new, offense) {
                        Ok(entry) => applied.blocks.push(entry),
                        Err(e) => {
                            // Coalesced: one record and one log line per
                            // kind per second, counted exactly.
                            self.failures.block_write_failed(e.kind());
                            applied.errors.push(e);
                        }
                    }
                }
            }
        }
        applied
    }

    /// The `alert` of a match.
    fn alert(&self, m: &Match) -> EnforcementEvent {
        EnforcementEvent::new(EventType::Alert, self.clock.now_ns())
            .attr(keys::RULE_NAME, m.rule_name.as_str())
            .attr(keys::RULE_SEVERITY, m.severity)
            .attr(keys::RULE_DESCRIPTION, m.message.as_str())
            .attr(keys::ACTION, "alert")
            .attr(keys::SOURCE_ADDRESS, m.srcip.as_str())
            .attr(keys::SESSION_ID, m.session_id.as_str())
            .attr(keys::USER_ID, m.user_id.as_str())
    }

    /// Writes a block and emits `block_applied`.
    pub fn write_block(&self, new: &NewBlock) -> Result<BlockEntry, StoreError> {
        self.write_block_as(new, None)
    }

    /// [`Enforcer::write_block`] of an escalated block: `block_applied`
    /// also carries `enforcement.offense`.
    fn write_block_as(
        &self,
        new: &NewBlock,
        offense: Option<u64>,
    ) -> Result<BlockEntry, StoreError> {
        let entry = self.blocks.block(new)?;
        let mut event = EnforcementEvent::new(EventType::BlockApplied, self.clock.now_ns())
            .attr(keys::SCOPE_TYPE, entry.scope_type.as_str())
            .attr(keys::SCOPE_VALUE, entry.scope_value.as_str())
            .attr(keys::RULE_NAME, entry.rule_name.as_str())
            .attr(
                keys::ACTION,
                if entry.is_permanent() {
                    "permanent"
                } else {
                    "temp"
                },
            );
        if let Some(ttl) = new.ttl {
            event = event.attr(keys::TTL, ttl);
        }
        if let Some(expires_at) = entry.expires_at {
            event = event.attr(keys::EXPIRES_AT, Value::String(rfc3339(expires_at)));
        }
        if let Some(n) = offense {
            event = event.attr(keys::OFFENSE, n);
        }
        self.emitter.emit(event);
        Ok(entry)
    }
}
