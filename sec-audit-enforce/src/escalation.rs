//! Escalating bans (`[escalation]`, like fail2ban's `bantime.increment`):
//! each new temporary block of the same scope while its offense count is
//! alive multiplies the TTL, up to `max_ttl`; with `permanent_after = N`
//! the N-th offense (and any later one) is a permanent block.
//!
//! The offense count of a scope is a detection-state counter
//! (`offense:{scope}:{value}`: memory or Redis, on the runtime's clock, so
//! a replay escalates on the log's clock). It lives `window` seconds past
//! the end of the latest block: an offense counts as a repeat when it
//! comes within `window` of the previous ban *ending* (a ban of `max_ttl`
//! never outlives its own count). On Redis the key's TTL is that, never
//! absent.
//!
//! A re-block of a scope that is still blocked (another match in the same
//! burst, a second worker) is not a new offense: it gets the current
//! count's TTL again. An operator's revocation forgets the count.

use std::sync::Arc;

use sec_audit_rules::{ActionPolicy, Counters, ScopeKey};

use crate::config::{ConfigError, EscalationConfig};

/// The longest `max_ttl` and `window` accepted: ten years.
pub const MAX_SECONDS: u64 = 10 * 365 * 86_400;

/// Checks what the reader cannot: `factor` a finite number of at least 1,
/// `max_ttl` and `window` within [`MAX_SECONDS`], `permanent_after` at
/// least 2 (1 would make every temporary block permanent:
/// `persist_block` says that).
pub fn validate(c: &EscalationConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, reason: String| ConfigError::Invalid {
        key: format!("escalation.{key}"),
        reason,
    };
    if !c.factor.is_finite() || c.factor < 1.0 {
        return Err(invalid(
            "factor",
            format!("must be a number of at least 1 (got {})", c.factor),
        ));
    }
    for (key, v) in [("max_ttl", c.max_ttl), ("window", c.window)] {
        if v == 0 || v > MAX_SECONDS {
            return Err(invalid(key, format!("must be 1-{MAX_SECONDS} (got {v})")));
        }
    }
    if let Some(n) = c.permanent_after {
        if n < 2 {
            return Err(invalid(
                "permanent_after",
                format!(
                    "must be at least 2 (got {n}); use persist_block for a permanent first block"
                ),
            ));
        }
    }
    Ok(())
}

/// One temporary block of a scope, escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offense {
    /// The scope's offense count (1: the first).
    pub count: u64,
    /// Seconds; `None`: permanent (the `permanent_after`-th offense or
    /// later).
    pub ttl: Option<u64>,
}

/// Escalation over a detection-state counter store.
pub struct Escalation {
    config: EscalationConfig,
    counters: Arc<dyn Counters>,
}

impl std::fmt::Debug for Escalation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalation")
            .field("config", &self.config)
            .finish()
    }
}

/// The counter key of a scope's offense count.
pub fn offense_key(scope: &ScopeKey) -> String {
    format!("offense:{}", scope.as_str())
}

/// Whether a rule's escalated block may be permanent on `scope`: never on
/// `ip` unless the operator wrote `ip` in the rule's `rule_actions` scopes
/// (a permanent ban on an address locks out everyone behind it; the same
/// rule as for `persist_block`). Elsewhere the block stays temporary at
/// the escalated TTL.
pub fn permanent_allowed(policy: &ActionPolicy, rule: &str, scope: &ScopeKey) -> bool {
    scope.scope() != "ip"
        || policy
            .rule_actions
            .get(rule)
            .and_then(|s| s.scopes.as_ref())
            .is_some_and(|s| s.iter().any(|s| s == "ip"))
}

impl Escalation {
    pub fn new(config: EscalationConfig, counters: Arc<dyn Counters>) -> Self {
        Escalation { config, counters }
    }

    pub fn config(&self) -> &EscalationConfig {
        &self.config
    }

    /// The TTL of the `offense`-th block of a rule whose own TTL is
    /// `base`: `base * factor^(offense - 1)` (rounded), at most `max_ttl`,
    /// never less than `base` (the cap bounds the escalation, it does not
    /// shorten a rule's own TTL).
    pub fn ttl(&self, base: u64, offense: u64) -> u64 {
        let exp = i32::try_from(offense.saturating_sub(1)).unwrap_or(i32::MAX);
        let grown = base as f64 * self.config.factor.powi(exp);
        let max = self.config.max_ttl as f64;
        let capped = if grown.is_finite() {
            grown.min(max)
        } else {
            max
        };
        (capped.round() as u64).max(base)
    }

    /// Whether the `offense`-th block is permanent.
    pub fn is_permanent(&self, offense: u64) -> bool {
        self.config
            .permanent_after
            .is_some_and(|n| offense >= u64::from(n))
    }

    /// Records a temporary block of `scope` (the rule's TTL `base`) and
    /// returns its count and TTL. `blocked`: the scope has an active block
    /// already, so this is a re-block of the same ban and not a new
    /// offense (unless its count was lost). Never fails: a counter store
    /// that cannot answer degrades to a first offense.
    pub fn offend(&self, scope: &ScopeKey, base: u64, blocked: bool) -> Offense {
        let key = offense_key(scope);
        let current = if blocked {
            self.counters.get_int(&key, 0)
        } else {
            0
        };
        let count = if current >= 1 {
            current
        } else {
            self.counters
                .incr(&key, 1, Some(base.saturating_add(self.config.window)))
        };
        let count = u64::try_from(count).unwrap_or(1).max(1);
        let ttl = self.ttl(base, count);
        let permanent = self.is_permanent(count);
        // The count lives `window` past the end of this block.
        let lives = if permanent { self.config.max_ttl } else { ttl };
        self.counters
            .expire(&key, lives.saturating_add(self.config.window));
        Offense {
            count,
            ttl: (!permanent).then_some(ttl),
        }
    }

    /// Forgets a scope's offense count (an operator revoked its blocks).
    pub fn forgive(&self, scope: &ScopeKey) {
        self.counters.delete(&offense_key(scope));
    }

    /// The scope's live offense count (0: none).
    pub fn count(&self, scope: &ScopeKey) -> u64 {
        u64::try_from(self.counters.get_int(&offense_key(scope), 0)).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sec_audit_core::ManualClock;
    use sec_audit_rules::{ActionSpec, MemoryCounters};

    fn config(
        factor: f64,
        max_ttl: u64,
        window: u64,
        permanent_after: Option<u32>,
    ) -> EscalationConfig {
        EscalationConfig {
            factor,
            max_ttl,
            window,
            permanent_after,
        }
    }

    fn esc(c: EscalationConfig) -> (Escalation, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::at_secs(1_780_000_000.0));
        let counters = Arc::new(MemoryCounters::new(clock.clone()));
        (Escalation::new(c, counters), clock)
    }

    #[test]
    fn ttl_grows_by_the_factor_up_to_the_cap_never_below_the_base() {
        let (e, _) = esc(config(2.0, 3_600, 86_400, None));
        let ttls: Vec<u64> = (1..=7).map(|n| e.ttl(300, n)).collect();
        assert_eq!(ttls, [300, 600, 1_200, 2_400, 3_600, 3_600, 3_600]);
        assert_eq!(e.ttl(300, u64::MAX), 3_600, "no overflow");
        assert_eq!(e.ttl(7_200, 3), 7_200, "a rule TTL above the cap stays");
        let (e, _) = esc(config(1.5, 100_000, 60, None));
        assert_eq!(e.ttl(300, 2), 450);
        let (e, _) = esc(config(1.1, 100_000, 60, None));
        assert_eq!(
            e.ttl(300, 2),
            330,
            "rounded, not ceiled from 330.00000000000006"
        );
        let (e, _) = esc(config(1.0, 100_000, 60, None));
        assert_eq!(e.ttl(300, 9), 300);
    }

    #[test]
    fn offenses_count_within_the_window_after_the_block_ends() {
        let (e, clock) = esc(config(2.0, 86_400, 600, Some(4)));
        let ip = ScopeKey::new("ip", "203.0.113.9");
        assert_eq!(
            e.offend(&ip, 300, false),
            Offense {
                count: 1,
                ttl: Some(300)
            }
        );
        // The block ends at +300; the count lives to +900.
        clock.advance_secs(899.0);
        assert_eq!(
            e.offend(&ip, 300, false),
            Offense {
                count: 2,
                ttl: Some(600)
            }
        );
        // This block ends at +600 from now; the count lives 600 past it.
        clock.advance_secs(1_199.0);
        assert_eq!(
            e.offend(&ip, 300, false),
            Offense {
                count: 3,
                ttl: Some(1_200)
            }
        );
        // A re-block while blocked keeps the count and its TTL.
        assert_eq!(
            e.offend(&ip, 300, true),
            Offense {
                count: 3,
                ttl: Some(1_200)
            }
        );
        assert_eq!(
            e.offend(&ip, 300, false),
            Offense {
                count: 4,
                ttl: None
            }
        );
        assert!(e.count(&ip) == 4);
        // Another scope has its own count.
        let other = ScopeKey::new("ip", "203.0.113.10");
        assert_eq!(e.offend(&other, 300, false).count, 1);
        // Quiet for longer than the window after the end: forgotten.
        let (e, clock) = esc(config(2.0, 86_400, 600, None));
        e.offend(&ip, 300, false);
        clock.advance_secs(900.0);
        assert_eq!(e.offend(&ip, 300, false).count, 1);
        // Revocation forgets.
        e.offend(&ip, 300, false);
        e.forgive(&ip);
        assert_eq!(e.count(&ip), 0);
        assert_eq!(e.offend(&ip, 300, false).count, 1);
        // A re-block whose count was lost counts as a first offense.
        e.forgive(&ip);
        assert_eq!(
            e.offend(&ip, 300, true),
            Offense {
                count: 1,
                ttl: Some(300)
            }
        );
    }

    #[test]
    fn permanent_ip_needs_the_operator_to_have_written_ip() {
        let mut policy = ActionPolicy::default();
        let ip = ScopeKey::new("ip", "203.0.113.9");
        let user = ScopeKey::new("user", "u1");
        assert!(!permanent_allowed(&policy, "brute_force_login", &ip));
        assert!(permanent_allowed(&policy, "brute_force_login", &user));
        policy.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec::default().with_scopes(["user"]),
        );
        assert!(!permanent_allowed(&policy, "brute_force_login", &ip));
        policy.rule_actions.insert(
            "brute_force_login".into(),
            ActionSpec::default().with_scopes(["ip", "user"]),
        );
        assert!(permanent_allowed(&policy, "brute_force_login", &ip));
    }

    #[test]
    fn validation_names_the_key() {
        let err = |c: EscalationConfig| validate(&c).unwrap_err().to_string();
        assert!(err(config(0.5, 10, 10, None)).contains("`escalation.factor`"));
        assert!(err(config(f64::NAN, 10, 10, None)).contains("`escalation.factor`"));
        assert!(err(config(f64::INFINITY, 10, 10, None)).contains("`escalation.factor`"));
        assert!(err(config(2.0, 0, 10, None)).contains("`escalation.max_ttl`"));
        assert!(err(config(2.0, MAX_SECONDS + 1, 10, None)).contains("`escalation.max_ttl`"));
        assert!(err(config(2.0, 10, 0, None)).contains("`escalation.window`"));
        assert!(err(config(2.0, 10, 10, Some(1))).contains("`escalation.permanent_after`"));
        assert!(validate(&config(1.0, 10, 10, Some(2))).is_ok());
    }
}
